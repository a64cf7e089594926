//! Signature keys: the public half anyone may hold, and the software private key.
//!
//! Sevenfold signs with two algorithms only, ECDSA P-256 with SHA-256 (what a TPM
//! 2.0 offers and what X.509 tooling expects) and Ed25519. Public keys travel as
//! DER `SubjectPublicKeyInfo` (SPKI); a key's ID is the SHA-256 of that DER, so
//! the ID names the key and its algorithm together.

use std::fmt;

use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self as sig, EcdsaKeyPair, Ed25519KeyPair, KeyPair, ParsedPublicKey};
use zeroize::Zeroizing;

use crate::{Digest, RotError};

const PKCS8_PEM_TAG: &str = "PRIVATE KEY";
const SPKI_PEM_TAG: &str = "PUBLIC KEY";

/// A signature algorithm Sevenfold accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyAlgorithm {
    /// ECDSA over NIST P-256 with SHA-256; signatures are ASN.1 DER.
    EcdsaP256,
    /// Ed25519 (RFC 8032); signatures are 64 bytes.
    Ed25519,
}

impl KeyAlgorithm {
    /// Stable name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            KeyAlgorithm::EcdsaP256 => "ecdsa-p256",
            KeyAlgorithm::Ed25519 => "ed25519",
        }
    }

    /// Parses [`KeyAlgorithm::name`].
    pub fn from_name(name: &str) -> Option<KeyAlgorithm> {
        match name {
            "ecdsa-p256" => Some(KeyAlgorithm::EcdsaP256),
            "ed25519" => Some(KeyAlgorithm::Ed25519),
            _ => None,
        }
    }

    /// One-byte code used in binary formats (image packages, quotes).
    pub fn code(self) -> u8 {
        match self {
            KeyAlgorithm::EcdsaP256 => 1,
            KeyAlgorithm::Ed25519 => 2,
        }
    }

    /// Inverse of [`KeyAlgorithm::code`].
    pub fn from_code(code: u8) -> Option<KeyAlgorithm> {
        match code {
            1 => Some(KeyAlgorithm::EcdsaP256),
            2 => Some(KeyAlgorithm::Ed25519),
            _ => None,
        }
    }

    /// Largest signature this algorithm produces, in bytes.
    pub fn max_signature_len(self) -> usize {
        match self {
            KeyAlgorithm::EcdsaP256 => 72,
            KeyAlgorithm::Ed25519 => 64,
        }
    }

    fn verification(self) -> &'static dyn sig::VerificationAlgorithm {
        match self {
            KeyAlgorithm::EcdsaP256 => &sig::ECDSA_P256_SHA256_ASN1,
            KeyAlgorithm::Ed25519 => &sig::ED25519,
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A public key: what verifiers hold to check signatures.
#[derive(Clone)]
pub struct PublicKey {
    algorithm: KeyAlgorithm,
    spki_der: Vec<u8>,
    parsed: std::sync::Arc<ParsedPublicKey>,
}

impl PublicKey {
    /// Parses a DER `SubjectPublicKeyInfo` of an ECDSA P-256 or Ed25519 key.
    pub fn from_spki_der(der: &[u8]) -> Result<PublicKey, RotError> {
        // A raw EC point would also be accepted by the library; insist on SPKI
        // (a DER SEQUENCE) so that the key ID is well defined.
        if der.first() != Some(&0x30) {
            return Err(RotError::MalformedKey(
                "expected a DER SubjectPublicKeyInfo".into(),
            ));
        }
        for algorithm in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Ed25519] {
            if let Ok(parsed) = ParsedPublicKey::new(algorithm.verification(), der) {
                return Ok(PublicKey {
                    algorithm,
                    spki_der: der.to_vec(),
                    parsed: std::sync::Arc::new(parsed),
                });
            }
        }
        Err(RotError::UnsupportedAlgorithm(
            "public key is neither ECDSA P-256 nor Ed25519".into(),
        ))
    }

    /// Parses a PEM `PUBLIC KEY` block.
    pub fn from_pem(text: &str) -> Result<PublicKey, RotError> {
        let block = pem::parse(text).map_err(|e| RotError::MalformedKey(e.to_string()))?;
        if block.tag() != SPKI_PEM_TAG {
            return Err(RotError::MalformedKey(format!(
                "expected a PEM \"{SPKI_PEM_TAG}\" block, found \"{}\"",
                block.tag()
            )));
        }
        PublicKey::from_spki_der(block.contents())
    }

    /// The key as a PEM `PUBLIC KEY` block.
    pub fn to_pem(&self) -> String {
        pem::encode(&pem::Pem::new(SPKI_PEM_TAG, self.spki_der.clone()))
    }

    /// The DER `SubjectPublicKeyInfo`.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// SHA-256 of the SPKI DER: the key's stable identifier (and, for a device
    /// key, the device ID).
    pub fn key_id(&self) -> Digest {
        Digest::of(&self.spki_der)
    }

    /// Checks `signature` over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), RotError> {
        self.parsed
            .verify_sig(message, signature)
            .map_err(|_| RotError::BadSignature)
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.spki_der == other.spki_der
    }
}

impl Eq for PublicKey {}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("algorithm", &self.algorithm)
            .field("key_id", &self.key_id())
            .finish()
    }
}

enum KeyPairInner {
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// A private signing key held in software (a PKCS#8 file).
///
/// Used for operator keys (image signing) and by the `soft` root of trust for
/// the device key. The private half never leaves this type except through
/// [`SoftwareKey::generate`], which hands the new PKCS#8 document to the caller
/// once so it can be stored.
pub struct SoftwareKey {
    inner: KeyPairInner,
    public: PublicKey,
}

impl SoftwareKey {
    /// Generates a key; returns it with its PKCS#8 DER (zeroized on drop) for storage.
    pub fn generate(
        algorithm: KeyAlgorithm,
    ) -> Result<(SoftwareKey, Zeroizing<Vec<u8>>), RotError> {
        let rng = SystemRandom::new();
        let pkcs8 = match algorithm {
            KeyAlgorithm::EcdsaP256 => {
                EcdsaKeyPair::generate_pkcs8(&sig::ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
                    .map_err(|_| RotError::Crypto("ECDSA key generation"))?
            }
            KeyAlgorithm::Ed25519 => Ed25519KeyPair::generate_pkcs8(&rng)
                .map_err(|_| RotError::Crypto("Ed25519 key generation"))?,
        };
        let pkcs8 = Zeroizing::new(pkcs8.as_ref().to_vec());
        let key = SoftwareKey::from_pkcs8_der(&pkcs8)?;
        Ok((key, pkcs8))
    }

    /// Loads a PKCS#8 DER private key (ECDSA P-256 or Ed25519).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<SoftwareKey, RotError> {
        let inner =
            if let Ok(k) = EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_ASN1_SIGNING, der) {
                KeyPairInner::Ecdsa(k)
            } else if let Ok(k) = Ed25519KeyPair::from_pkcs8(der) {
                KeyPairInner::Ed25519(k)
            } else {
                return Err(RotError::MalformedKey(
                    "not a PKCS#8 ECDSA P-256 or Ed25519 private key".into(),
                ));
            };
        let spki = match &inner {
            KeyPairInner::Ecdsa(k) => AsDer::<PublicKeyX509Der>::as_der(k.public_key()),
            KeyPairInner::Ed25519(k) => AsDer::<PublicKeyX509Der>::as_der(k.public_key()),
        }
        .map_err(|_| RotError::Crypto("public key encoding"))?;
        let public = PublicKey::from_spki_der(spki.as_ref())?;
        Ok(SoftwareKey { inner, public })
    }

    /// Loads a PEM `PRIVATE KEY` (PKCS#8) block.
    pub fn from_pem(text: &str) -> Result<SoftwareKey, RotError> {
        let block = pem::parse(text).map_err(|e| RotError::MalformedKey(e.to_string()))?;
        if block.tag() != PKCS8_PEM_TAG {
            return Err(RotError::MalformedKey(format!(
                "expected a PEM \"{PKCS8_PEM_TAG}\" (PKCS#8) block, found \"{}\"",
                block.tag()
            )));
        }
        let der = Zeroizing::new(block.into_contents());
        SoftwareKey::from_pkcs8_der(&der)
    }

    /// Encodes a PKCS#8 DER document as PEM, for writing to a key file.
    pub fn pkcs8_to_pem(pkcs8_der: &[u8]) -> Zeroizing<String> {
        Zeroizing::new(pem::encode(&pem::Pem::new(
            PKCS8_PEM_TAG,
            pkcs8_der.to_vec(),
        )))
    }

    /// The public half.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.public.algorithm
    }

    /// Signs `message` (hashing it with SHA-256 for ECDSA; Ed25519 signs it whole).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, RotError> {
        match &self.inner {
            KeyPairInner::Ecdsa(k) => k
                .sign(&SystemRandom::new(), message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| RotError::Crypto("ECDSA signing")),
            KeyPairInner::Ed25519(k) => Ok(k.sign(message).as_ref().to_vec()),
        }
    }
}

impl fmt::Debug for SoftwareKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SoftwareKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_both_algorithms() {
        for alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Ed25519] {
            let (key, pkcs8) = SoftwareKey::generate(alg).unwrap();
            assert_eq!(key.algorithm(), alg);
            let sig = key.sign(b"message").unwrap();
            assert!(sig.len() <= alg.max_signature_len());
            key.public_key().verify(b"message", &sig).unwrap();
            assert!(matches!(
                key.public_key().verify(b"messagf", &sig),
                Err(RotError::BadSignature)
            ));
            // PEM round trips keep the same identity.
            let reloaded = SoftwareKey::from_pem(&SoftwareKey::pkcs8_to_pem(&pkcs8)).unwrap();
            assert_eq!(reloaded.public_key(), key.public_key());
            let public = PublicKey::from_pem(&key.public_key().to_pem()).unwrap();
            assert_eq!(public.key_id(), key.public_key().key_id());
            assert_eq!(public.algorithm(), alg);
        }
    }

    #[test]
    fn other_key_is_refused() {
        let (a, _) = SoftwareKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let (b, _) = SoftwareKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let sig = a.sign(b"m").unwrap();
        assert!(b.public_key().verify(b"m", &sig).is_err());
        assert_ne!(a.public_key().key_id(), b.public_key().key_id());
    }

    #[test]
    fn garbage_is_a_clear_error() {
        assert!(matches!(
            PublicKey::from_spki_der(&[0x30, 0x00]),
            Err(RotError::UnsupportedAlgorithm(_))
        ));
        assert!(matches!(
            PublicKey::from_spki_der(&[4; 65]),
            Err(RotError::MalformedKey(_))
        ));
        assert!(SoftwareKey::from_pkcs8_der(b"nope").is_err());
        assert!(PublicKey::from_pem("not pem").is_err());
        let (k, pkcs8) = SoftwareKey::generate(KeyAlgorithm::Ed25519).unwrap();
        // A private key where a public key is expected is refused by tag.
        let err = PublicKey::from_pem(&SoftwareKey::pkcs8_to_pem(&pkcs8)).unwrap_err();
        assert!(err.to_string().contains("PUBLIC KEY"), "{err}");
        assert!(SoftwareKey::from_pem(&k.public_key().to_pem()).is_err());
    }
}
