//! Image packages: the signed unit of software a Sevenfold device installs.
//!
//! One file, `*.imagepackage`, holds a header naming the format
//! version, the signature algorithm and the signing key's ID; the app
//! manifest (JSON); the payload (a `.wasm` for apps, a runtime build for the
//! runtime component); and a signature over the SHA-256 of everything before
//! it (the *package digest*, which is also what measured boot extends into the
//! root of trust).
//!
//! Lifecycle as types: bytes become an [`UnverifiedPackage`] through
//! [`UnverifiedPackage::parse`] (structure only, bounded by [`Limits`]), and
//! only [`UnverifiedPackage::verify`] against [`TrustedKeys`] turns it into a
//! [`VerifiedPackage`]. Code that installs or runs software takes a
//! `VerifiedPackage`, so it cannot be handed an unchecked one.
//!
//! ```
//! use sevenfold_core::manifest::AppManifest;
//! use sevenfold_core::package::{write_package, Limits, TrustedKeys, UnverifiedPackage};
//! use sevenfold_rot::{KeyAlgorithm, SoftwareKey};
//!
//! let (key, _pkcs8) = SoftwareKey::generate(KeyAlgorithm::Ed25519).unwrap();
//! let manifest = AppManifest::from_json(br#"{"SchemaVersion":1,"Name":"blink",
//!     "ComponentId":"5b9a1c52-3f0b-4a39-9d7e-6f2d1c3e8a10","Version":"1.0.0",
//!     "SecurityVersion":1,"EntryPoint":"app.wasm"}"#).unwrap();
//! let bytes = write_package(&manifest, b"\0asm\x01\0\0\0", &key).unwrap();
//!
//! let mut trusted = TrustedKeys::new();
//! trusted.add(key.public_key().clone());
//! let package = UnverifiedPackage::parse(&bytes, &Limits::default()).unwrap();
//! let verified = package.verify(&trusted).unwrap();
//! assert_eq!(verified.manifest().name(), "blink");
//! ```

mod header;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::io::Read;

use sevenfold_rot::{Digest, KeyAlgorithm, PublicKey, RotError, SoftwareKey};

use crate::manifest::{AppManifest, ManifestError, MAX_MANIFEST_LEN};
use header::{Header, SIG_LEN_FIELD};
pub use header::{FORMAT_VERSION, HEADER_LEN, MAGIC};

/// Conventional file extension.
pub const FILE_EXTENSION: &str = "imagepackage";

/// Domain separation: what the key signs is this tag followed by the package
/// digest, so a package signature can never be replayed as another kind of
/// Sevenfold signature (and vice versa).
const SIGNING_CONTEXT: &[u8] = b"sevenfold image package v1\0";

/// Size bounds applied before anything is allocated or hashed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest manifest accepted, in bytes.
    pub max_manifest_len: usize,
    /// Largest payload accepted, in bytes.
    pub max_payload_len: u64,
}

impl Default for Limits {
    /// 64 KiB of manifest, 1 GiB of payload.
    fn default() -> Self {
        Limits {
            max_manifest_len: MAX_MANIFEST_LEN,
            max_payload_len: 1 << 30,
        }
    }
}

/// Why a package was refused. Every variant names what is wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PackageError {
    /// The input ends before a part it announces.
    #[error(
        "package is truncated: the {part} needs {needed} bytes but only {available} are there"
    )]
    Truncated {
        /// Which part is cut short.
        part: &'static str,
        /// Bytes the part needs.
        needed: u64,
        /// Bytes that were there.
        available: u64,
    },
    /// Not an image package at all.
    #[error("not an image package: bad magic (expected \"SVNFPKG\\0\")")]
    BadMagic,
    /// A format version this build does not read.
    #[error(
        "unsupported image package format version {0} (this build reads version {FORMAT_VERSION})"
    )]
    UnsupportedFormatVersion(u16),
    /// The header names no known signature algorithm.
    #[error("unknown signature algorithm code {0}")]
    UnknownSignatureAlgorithm(u8),
    /// The reserved header byte is not zero.
    #[error("reserved header byte is not zero")]
    ReservedByteSet,
    /// The manifest is larger than the limit.
    #[error("manifest of {len} bytes exceeds the {max}-byte limit")]
    ManifestTooLarge {
        /// Announced length.
        len: u64,
        /// Limit.
        max: u64,
    },
    /// The payload is larger than the limit.
    #[error("payload of {len} bytes exceeds the {max}-byte limit")]
    PayloadTooLarge {
        /// Announced length.
        len: u64,
        /// Limit.
        max: u64,
    },
    /// The signature is longer than the algorithm allows.
    #[error("signature of {len} bytes is longer than {algorithm} allows ({max})")]
    SignatureTooLong {
        /// Announced length.
        len: usize,
        /// Algorithm from the header.
        algorithm: KeyAlgorithm,
        /// Longest valid signature.
        max: usize,
    },
    /// The signature is empty.
    #[error("package is unsigned (empty signature)")]
    Unsigned,
    /// Bytes follow the signature.
    #[error("{0} unexpected bytes after the signature")]
    TrailingData(u64),
    /// The manifest inside the package is not valid.
    #[error("manifest inside the package is invalid: {0}")]
    Manifest(#[from] ManifestError),
    /// The package names a signer that is not trusted.
    #[error("package is signed by key {0}, which is not a trusted signing key")]
    UntrustedSigner(Digest),
    /// The header's algorithm is not the trusted key's algorithm.
    #[error("header says {header} but the trusted key {key_id} is {key}")]
    AlgorithmMismatch {
        /// Algorithm in the header.
        header: KeyAlgorithm,
        /// Algorithm of the key.
        key: KeyAlgorithm,
        /// The key.
        key_id: Digest,
    },
    /// The signature does not match the content: the package was altered or
    /// signed by someone else.
    #[error(
        "signature does not verify: the package was altered after signing or not signed by key {0}"
    )]
    BadSignature(Digest),
    /// Signing failed (writer side).
    #[error("signing failed: {0}")]
    Signing(#[source] RotError),
    /// Reading the package failed.
    #[error("reading the package failed: {0}")]
    Io(#[from] std::io::Error),
}

/// The signing keys a verifier accepts, looked up by key ID.
#[derive(Clone, Debug, Default)]
pub struct TrustedKeys(HashMap<Digest, PublicKey>);

impl TrustedKeys {
    /// No trusted keys: every package is refused.
    pub fn new() -> TrustedKeys {
        TrustedKeys::default()
    }

    /// Trusts `key`.
    pub fn add(&mut self, key: PublicKey) {
        self.0.insert(key.key_id(), key);
    }

    /// The trusted key with this ID, if any.
    pub fn get(&self, key_id: &Digest) -> Option<&PublicKey> {
        self.0.get(key_id)
    }
}

impl FromIterator<PublicKey> for TrustedKeys {
    fn from_iter<I: IntoIterator<Item = PublicKey>>(iter: I) -> Self {
        let mut keys = TrustedKeys::new();
        for key in iter {
            keys.add(key);
        }
        keys
    }
}

/// A structurally valid package whose signature has not been checked.
#[derive(Debug)]
pub struct UnverifiedPackage<'a> {
    header: Header,
    manifest: AppManifest,
    signed: &'a [u8],
    payload: &'a [u8],
    signature: &'a [u8],
}

impl<'a> UnverifiedPackage<'a> {
    /// Checks the structure of `bytes`: header, lengths within `limits`, a
    /// valid manifest, a signature of plausible size, and nothing after it.
    /// Does not hash the payload or check the signature.
    pub fn parse(bytes: &'a [u8], limits: &Limits) -> Result<UnverifiedPackage<'a>, PackageError> {
        let header = Header::decode(bytes, limits)?;
        let total = bytes.len() as u64;
        let manifest_end = HEADER_LEN as u64 + u64::from(header.manifest_len);
        let signed_len = header.signed_len();
        let need = |part, needed: u64| PackageError::Truncated {
            part,
            needed,
            available: total,
        };
        if total < manifest_end {
            return Err(need("manifest", manifest_end));
        }
        if total < signed_len {
            return Err(need("payload", signed_len));
        }
        if total < signed_len + SIG_LEN_FIELD as u64 {
            return Err(need("signature length", signed_len + SIG_LEN_FIELD as u64));
        }
        // All offsets below are within `bytes` (checked above), so they fit usize.
        let (signed, trailer) = bytes.split_at(signed_len as usize);
        let (head_and_manifest, payload) = signed.split_at(manifest_end as usize);
        let manifest_bytes = head_and_manifest.get(HEADER_LEN..).unwrap_or_default();
        let (len_field, signature) = trailer.split_at(SIG_LEN_FIELD);
        let sig_len = usize::from(u16::from_be_bytes([
            len_field.first().copied().unwrap_or_default(),
            len_field.get(1).copied().unwrap_or_default(),
        ]));
        let max = header.algorithm.max_signature_len();
        if sig_len > max {
            return Err(PackageError::SignatureTooLong {
                len: sig_len,
                algorithm: header.algorithm,
                max,
            });
        }
        if sig_len == 0 {
            return Err(PackageError::Unsigned);
        }
        if signature.len() < sig_len {
            return Err(need(
                "signature",
                signed_len + (SIG_LEN_FIELD + sig_len) as u64,
            ));
        }
        if signature.len() > sig_len {
            return Err(PackageError::TrailingData(
                (signature.len() - sig_len) as u64,
            ));
        }
        let manifest = AppManifest::from_json(manifest_bytes)?;
        Ok(UnverifiedPackage {
            header,
            manifest,
            signed,
            payload,
            signature,
        })
    }

    /// The manifest, as the package claims it (not yet authenticated).
    pub fn manifest(&self) -> &AppManifest {
        &self.manifest
    }

    /// The ID of the key the package claims to be signed by.
    pub fn signer_key_id(&self) -> &Digest {
        &self.header.key_id
    }

    /// The signature algorithm from the header.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.header.algorithm
    }

    /// The payload bytes (not yet authenticated).
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// SHA-256 of the signed region. This is the package's measurement.
    pub fn package_digest(&self) -> Digest {
        Digest::of(self.signed)
    }

    /// Verifies the signature against a trusted key; only success yields a
    /// [`VerifiedPackage`].
    pub fn verify(self, trusted: &TrustedKeys) -> Result<VerifiedPackage<'a>, PackageError> {
        let key_id = self.header.key_id;
        let key = trusted
            .get(&key_id)
            .ok_or(PackageError::UntrustedSigner(key_id))?;
        if key.algorithm() != self.header.algorithm {
            return Err(PackageError::AlgorithmMismatch {
                header: self.header.algorithm,
                key: key.algorithm(),
                key_id,
            });
        }
        let digest = self.package_digest();
        key.verify(&signing_message(&digest), self.signature)
            .map_err(|_| PackageError::BadSignature(key_id))?;
        Ok(VerifiedPackage {
            inner: self,
            digest,
        })
    }
}

/// A package whose signature verified against a trusted key.
#[derive(Debug)]
pub struct VerifiedPackage<'a> {
    inner: UnverifiedPackage<'a>,
    digest: Digest,
}

impl<'a> VerifiedPackage<'a> {
    /// The authenticated manifest.
    pub fn manifest(&self) -> &AppManifest {
        &self.inner.manifest
    }

    /// The authenticated payload.
    pub fn payload(&self) -> &'a [u8] {
        self.inner.payload
    }

    /// SHA-256 of the signed region: what measured boot extends.
    pub fn package_digest(&self) -> &Digest {
        &self.digest
    }

    /// The key that signed it.
    pub fn signer_key_id(&self) -> &Digest {
        &self.inner.header.key_id
    }
}

fn signing_message(digest: &Digest) -> Vec<u8> {
    let mut message = Vec::with_capacity(SIGNING_CONTEXT.len() + digest.as_bytes().len());
    message.extend_from_slice(SIGNING_CONTEXT);
    message.extend_from_slice(digest.as_bytes());
    message
}

/// Builds and signs a package from a manifest and a payload.
pub fn write_package(
    manifest: &AppManifest,
    payload: &[u8],
    key: &SoftwareKey,
) -> Result<Vec<u8>, PackageError> {
    let manifest_json = manifest.to_json().into_bytes();
    let limits = Limits::default();
    if manifest_json.len() > limits.max_manifest_len {
        return Err(PackageError::ManifestTooLarge {
            len: manifest_json.len() as u64,
            max: limits.max_manifest_len as u64,
        });
    }
    let header = Header {
        algorithm: key.algorithm(),
        key_id: key.public_key().key_id(),
        manifest_len: manifest_json.len() as u32, // bounded by the limit above
        payload_len: payload.len() as u64,
    };
    let signature_room = SIG_LEN_FIELD + key.algorithm().max_signature_len();
    let mut out =
        Vec::with_capacity(HEADER_LEN + manifest_json.len() + payload.len() + signature_room);
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(&manifest_json);
    out.extend_from_slice(payload);
    let digest = Digest::of(&out);
    let signature = key
        .sign(&signing_message(&digest))
        .map_err(PackageError::Signing)?;
    out.extend_from_slice(&(signature.len() as u16).to_be_bytes());
    out.extend_from_slice(&signature);
    Ok(out)
}

/// Reads one whole package from `reader` into memory, enforcing `limits`
/// from the header before reading the rest, and growing the buffer only as
/// data actually arrives (a header that lies about its lengths cannot make
/// this allocate more than the stream holds, up to the limits).
pub fn read_package<R: Read>(mut reader: R, limits: &Limits) -> Result<Vec<u8>, PackageError> {
    let mut bytes = Vec::with_capacity(HEADER_LEN);
    (&mut reader)
        .take(HEADER_LEN as u64)
        .read_to_end(&mut bytes)?;
    let header = Header::decode(&bytes, limits)?;
    // Everything up to the end of the longest possible signature, plus one
    // byte so that trailing data is noticed.
    let max_rest = header.signed_len() - HEADER_LEN as u64
        + (SIG_LEN_FIELD + header.algorithm.max_signature_len()) as u64
        + 1;
    reader.take(max_rest).read_to_end(&mut bytes)?;
    Ok(bytes)
}
