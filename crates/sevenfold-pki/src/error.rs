//! The one error type of the PKI crate.

use sevenfold_rot::DeviceId;

use crate::validity::display_unix;

/// Why a certificate could not be parsed, issued or verified.
///
/// Split by who is at fault, as rustls does:
/// - the certificate (or file) presented is bad: [`Malformed`](PkiError::Malformed),
///   [`NotCa`](PkiError::NotCa), [`Expired`](PkiError::Expired),
///   [`NotYetValid`](PkiError::NotYetValid), [`UntrustedIssuer`](PkiError::UntrustedIssuer),
///   [`BadSignature`](PkiError::BadSignature), [`WrongUsage`](PkiError::WrongUsage),
///   [`DeviceIdMismatch`](PkiError::DeviceIdMismatch), [`UnsupportedKey`](PkiError::UnsupportedKey);
/// - the caller asked for something impossible: [`InvalidKey`](PkiError::InvalidKey),
///   [`KeyMismatch`](PkiError::KeyMismatch), [`InvalidArgument`](PkiError::InvalidArgument);
/// - something inside failed: [`Internal`](PkiError::Internal).
///
/// A service maps the first group to "reject the device / 4xx", the second to a
/// usage message, the third to a 5xx and a log line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// The bytes are not a well-formed X.509 certificate (or not PEM or DER at all).
    #[error("malformed certificate: {0}")]
    Malformed(String),
    /// A certificate given as a CA (trust anchor or issuer) is not one.
    #[error(
        "not a CA certificate: {0}; a manufacturer or service CA needs basicConstraints \
         CA=true and keyUsage keyCertSign"
    )]
    NotCa(String),
    /// A certificate's validity period ended before the time it was checked at.
    #[error("certificate \"{subject}\" expired at {}; issue a new one", display_unix(*not_after))]
    Expired {
        /// Subject of the expired certificate (or which certificate of the chain it is).
        subject: String,
        /// Its notAfter, unix seconds.
        not_after: i64,
    },
    /// A certificate's validity period starts after the time it was checked at.
    #[error(
        "certificate \"{subject}\" is not valid before {}; check the clocks of the issuer and of this machine",
        display_unix(*not_before)
    )]
    NotYetValid {
        /// Subject of the certificate (or which certificate of the chain it is).
        subject: String,
        /// Its notBefore, unix seconds.
        not_before: i64,
    },
    /// The certificate does not chain to any trusted CA.
    #[error(
        "untrusted issuer: {0}; add the manufacturer's CA certificate to the trusted CAs, \
         or have the device endorsed by a manufacturer CA that is trusted"
    )]
    UntrustedIssuer(String),
    /// A signature in the chain does not verify: the certificate was altered,
    /// or signed by a different key under the same CA name.
    #[error("certificate signature does not verify: {0}")]
    BadSignature(String),
    /// The certificate chains correctly but is not issued for this purpose
    /// (e.g. a TLS server certificate presented as an endorsement).
    #[error("wrong certificate usage: {0}")]
    WrongUsage(String),
    /// A name in the certificate claims a different device than its public key.
    #[error(
        "device ID mismatch: the certificate's key is device {computed}, but its {field} says \
         {found:?}; the certificate was not issued for this key and is refused"
    )]
    DeviceIdMismatch {
        /// The device ID computed from the certificate's public key.
        computed: DeviceId,
        /// Which name disagreed (`"subject CN"` or `"SAN URI"`).
        field: &'static str,
        /// What that name held.
        found: String,
    },
    /// The certificate's subject key is not one a Sevenfold device key can be.
    #[error("unsupported device key: {0}; Sevenfold device keys are ECDSA P-256 or Ed25519")]
    UnsupportedKey(String),
    /// A CA private key file could not be read.
    #[error("invalid CA private key: {0}; expected a PEM \"PRIVATE KEY\" (PKCS#8) block")]
    InvalidKey(String),
    /// The CA private key does not belong to the CA certificate.
    #[error(
        "the private key does not match the CA certificate \"{subject}\"; load the key file \
         that was generated together with this certificate"
    )]
    KeyMismatch {
        /// Subject of the CA certificate.
        subject: String,
    },
    /// An argument is out of range (empty name, zero validity, bad hostname, …).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Key generation, signing or certificate encoding failed inside the library.
    #[error("internal error while issuing a certificate: {0}")]
    Internal(String),
}
