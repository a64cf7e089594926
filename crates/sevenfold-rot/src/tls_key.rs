//! A TLS client key held inside the root of trust.
//!
//! The device key (a TPM attestation key) is restricted: it signs only what
//! the root of trust made itself, never a TLS handshake a server chooses. A
//! backend that can also hold an *unrestricted* signing key inside the chip
//! offers it through [`RootOfTrust::resident_tls_key`]: the agent then puts
//! that key, not a software key file, behind the device certificate.
//!
//! [`RootOfTrust::resident_tls_key`]: crate::RootOfTrust::resident_tls_key

use crate::{Digest, PublicKey, RotError};

/// An ECDSA P-256 / SHA-256 signing key that never leaves the root of trust,
/// for TLS client authentication and the apps' `DeviceAuthentication`.
///
/// Unlike [`RootOfTrust::sign`](crate::RootOfTrust::sign) it signs any
/// digest: it is not the device key, so nothing it signs can pass for a
/// quote (a verifier checks quotes against the endorsed device key only).
pub trait ResidentTlsKey: Send + Sync {
    /// The key's public half (what the device certificate certifies).
    fn tls_public_key(&self) -> &PublicKey;

    /// Signs a SHA-256 digest; the signature is ECDSA P-256, DER-encoded
    /// (as X.509 and TLS carry it).
    fn sign_tls_digest(&self, digest: &Digest) -> Result<Vec<u8>, RotError>;

    /// Signs `message` (hashed with SHA-256 here, then signed in the root
    /// of trust); the signature is ECDSA P-256/SHA-256, DER-encoded.
    fn sign_tls(&self, message: &[u8]) -> Result<Vec<u8>, RotError> {
        self.sign_tls_digest(&Digest::of(message))
    }
}
