//! The fixed-size header at the front of every image package.
//!
//! ```text
//! offset size field
//!      0    8 magic "SVNFPKG\0"
//!      8    2 format version (u16 BE) = 1
//!     10    1 signature algorithm (1 = ECDSA P-256/SHA-256, 2 = Ed25519)
//!     11    1 reserved, must be 0
//!     12   32 signing key ID (SHA-256 of the key's SubjectPublicKeyInfo DER)
//!     44    4 manifest length (u32 BE)
//!     48    8 payload length (u64 BE)
//! ```
//! The manifest (UTF-8 JSON) and the payload follow, then the trailer:
//! signature length (u16 BE) and the signature.

use sevenfold_rot::{Digest, KeyAlgorithm, DIGEST_LEN};

use super::{Limits, PackageError};

/// Identifies an image package file.
pub const MAGIC: [u8; 8] = *b"SVNFPKG\0";
/// The one format version this code reads and writes.
pub const FORMAT_VERSION: u16 = 1;
/// Size of the header in bytes.
pub const HEADER_LEN: usize = 56;
/// Size of the trailer's length field.
pub(crate) const SIG_LEN_FIELD: usize = 2;

/// A decoded, bounds-checked header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) algorithm: KeyAlgorithm,
    pub(crate) key_id: Digest,
    pub(crate) manifest_len: u32,
    pub(crate) payload_len: u64,
}

impl Header {
    pub(crate) fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        let fields: [&[u8]; 7] = [
            &MAGIC,
            &FORMAT_VERSION.to_be_bytes(),
            &[self.algorithm.code()],
            &[0],
            self.key_id.as_bytes(),
            &self.manifest_len.to_be_bytes(),
            &self.payload_len.to_be_bytes(),
        ];
        let mut at = 0;
        for field in fields {
            if let Some(dst) = out.get_mut(at..at + field.len()) {
                dst.copy_from_slice(field);
            }
            at += field.len();
        }
        out
    }

    /// Decodes and checks a header against `limits`; never panics.
    pub(crate) fn decode(bytes: &[u8], limits: &Limits) -> Result<Header, PackageError> {
        let Some(h) = bytes.get(..HEADER_LEN) else {
            return Err(PackageError::Truncated {
                part: "header",
                needed: HEADER_LEN as u64,
                available: bytes.len() as u64,
            });
        };
        let field = |from: usize, len: usize| h.get(from..from + len).unwrap_or_default();
        if field(0, 8) != MAGIC {
            return Err(PackageError::BadMagic);
        }
        let version = u16::from_be_bytes(array(field(8, 2)));
        if version != FORMAT_VERSION {
            return Err(PackageError::UnsupportedFormatVersion(version));
        }
        let code = field(10, 1).first().copied().unwrap_or_default();
        let algorithm =
            KeyAlgorithm::from_code(code).ok_or(PackageError::UnknownSignatureAlgorithm(code))?;
        if field(11, 1) != [0] {
            return Err(PackageError::ReservedByteSet);
        }
        let key_id = Digest(array::<DIGEST_LEN>(field(12, DIGEST_LEN)));
        let manifest_len = u32::from_be_bytes(array(field(44, 4)));
        let payload_len = u64::from_be_bytes(array(field(48, 8)));
        if manifest_len as usize > limits.max_manifest_len {
            return Err(PackageError::ManifestTooLarge {
                len: u64::from(manifest_len),
                max: limits.max_manifest_len as u64,
            });
        }
        if payload_len > limits.max_payload_len {
            return Err(PackageError::PayloadTooLarge {
                len: payload_len,
                max: limits.max_payload_len,
            });
        }
        Ok(Header {
            algorithm,
            key_id,
            manifest_len,
            payload_len,
        })
    }

    /// Offset of the signature trailer (end of the signed region).
    pub(crate) fn signed_len(&self) -> u64 {
        HEADER_LEN as u64 + u64::from(self.manifest_len) + self.payload_len
    }
}

/// Copies a slice of exactly `N` bytes into an array (zero-filled if shorter,
/// which the callers rule out by slicing a checked header).
fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    for (dst, src) in out.iter_mut().zip(bytes) {
        *dst = *src;
    }
    out
}
