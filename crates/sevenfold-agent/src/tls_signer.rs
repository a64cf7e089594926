//! rustls signing with the TLS key inside the root of trust (a TPM).
//!
//! [`ResidentSigningKey`] is a [`rustls::sign::SigningKey`] whose private
//! half never leaves the chip: each handshake's `CertificateVerify` is
//! hashed here and signed by the TPM ([`ResidentTlsKey::sign_tls`]). The key
//! is ECDSA P-256, so it offers exactly `ECDSA_NISTP256_SHA256` (TLS 1.3 and
//! 1.2), with the DER signature rustls sends as is.
//!
//! The signature is made synchronously on the TPM thread (a few
//! milliseconds; see docs/tpm.md), on whatever thread drives the handshake:
//! acceptable for a device that makes a handful of connections an hour.
//!
//! [`ResidentTlsKey::sign_tls`]: sevenfold_rot::ResidentTlsKey::sign_tls

use std::sync::Arc;

use rustls::sign::{Signer, SigningKey};
use rustls::{SignatureAlgorithm, SignatureScheme};
use rustls_pki_types::SubjectPublicKeyInfoDer;
use sevenfold_rot::{PublicKey, RootOfTrust};

/// The only scheme a P-256 key with SHA-256 signs.
const SCHEME: SignatureScheme = SignatureScheme::ECDSA_NISTP256_SHA256;

/// A rustls signing key backed by the root of trust's resident TLS key.
#[derive(Clone)]
pub(crate) struct ResidentSigningKey {
    rot: Arc<dyn RootOfTrust>,
    public: PublicKey,
}

impl ResidentSigningKey {
    /// The key `rot` holds, whose public half is `public` (checked by
    /// rustls against the certificate before any handshake).
    pub(crate) fn new(rot: Arc<dyn RootOfTrust>, public: PublicKey) -> ResidentSigningKey {
        ResidentSigningKey { rot, public }
    }
}

impl SigningKey for ResidentSigningKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        offered
            .contains(&SCHEME)
            .then(|| Box::new(self.clone()) as Box<dyn Signer>)
    }

    fn public_key(&self) -> Option<SubjectPublicKeyInfoDer<'_>> {
        Some(SubjectPublicKeyInfoDer::from(self.public.spki_der()))
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::ECDSA
    }
}

impl Signer for ResidentSigningKey {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        let key = self
            .rot
            .resident_tls_key()
            .ok_or_else(|| rustls::Error::General("the root of trust holds no TLS key".into()))?;
        key.sign_tls(message)
            .map_err(|e| rustls::Error::General(format!("the TPM could not sign: {e}")))
    }

    fn scheme(&self) -> SignatureScheme {
        SCHEME
    }
}

impl std::fmt::Debug for ResidentSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResidentSigningKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, feature = "tpm"))]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use sevenfold_rot::tpm::{simulator::Swtpm, TpmRoot};

    #[test]
    fn signs_through_the_tpm_and_rustls_signatures_verify() {
        let tpm = Swtpm::start().expect("swtpm must be installed");
        let dir = tempfile::tempdir().unwrap();
        let rot: Arc<dyn RootOfTrust> = Arc::new(TpmRoot::create(dir.path(), &tpm.tcti()).unwrap());
        let public = rot.resident_tls_key().unwrap().tls_public_key().clone();
        let key = ResidentSigningKey::new(rot.clone(), public.clone());
        assert_eq!(
            key.public_key().unwrap().as_ref(),
            public.spki_der(),
            "rustls compares this with the certificate's SPKI"
        );
        assert!(key
            .choose_scheme(&[SignatureScheme::RSA_PSS_SHA256, SignatureScheme::ED25519])
            .is_none());
        let signer = key
            .choose_scheme(&[SignatureScheme::ED25519, SCHEME])
            .unwrap();
        assert_eq!(signer.scheme(), SCHEME);
        let message = b"TLS 1.3, client CertificateVerify\x00transcript hash";
        let signature = signer.sign(message).unwrap();
        // DER ECDSA over SHA-256, as a TLS peer verifies it.
        public.verify(message, &signature).unwrap();
        assert!(public.verify(b"another transcript", &signature).is_err());
    }
}
