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
///   [`DeviceIdMismatch`](PkiError::DeviceIdMismatch), [`UnsupportedKey`](PkiError::UnsupportedKey),
///   [`MissingIdentity`](PkiError::MissingIdentity), [`IdentityMismatch`](PkiError::IdentityMismatch);
/// - the caller asked for something impossible: [`InvalidKey`](PkiError::InvalidKey),
///   [`KeyMismatch`](PkiError::KeyMismatch), [`InvalidArgument`](PkiError::InvalidArgument),
///   [`CaExpiresTooSoon`](PkiError::CaExpiresTooSoon);
/// - stored data cannot be used: [`KeyUnwrap`](PkiError::KeyUnwrap) (a wrapped
///   key does not open under this master key and context);
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
        "not a CA certificate: {0}; a manufacturer, service or tenant CA needs \
         basicConstraints CA=true and keyUsage keyCertSign"
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
    /// The certificate does not chain to any trusted CA. The message says
    /// which CAs were tried and what to do (trust the manufacturer's CA for an
    /// endorsement; attest again for a device certificate).
    #[error("untrusted issuer: {0}")]
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
    /// A device certificate lacks the names that say which device and tenant
    /// it is for (or has more than one of them), or a tenant CA certificate
    /// does not name its tenant. The message says what to do.
    #[error("missing identity: {0}")]
    MissingIdentity(String),
    /// The names in a device certificate disagree with each other (subject CN
    /// and device SAN URI) or with the tenant of the CA that issued it.
    #[error("identity mismatch: {0}; the certificate is refused, have the device attest again")]
    IdentityMismatch(String),
    /// A certificate would outlive the CA asked to issue it.
    #[error(
        "the CA \"{ca_subject}\" expires at {}, before the certificate asked for would (at {}); \
         rotate the tenant CA (make a successor and publish both CA certificates during \
         the overlap) and issue from the successor",
        display_unix(*ca_not_after),
        display_unix(*requested_not_after)
    )]
    CaExpiresTooSoon {
        /// Subject of the issuing CA.
        ca_subject: String,
        /// The CA's notAfter, unix seconds.
        ca_not_after: i64,
        /// The notAfter the new certificate would have had, unix seconds.
        requested_not_after: i64,
    },
    /// A wrapped (encrypted at rest) key does not open.
    #[error(
        "cannot unwrap the stored key: {0}; check that the server's master key is the one \
         the key was wrapped with and that the row was not copied from another tenant or altered"
    )]
    KeyUnwrap(String),
    /// An argument is out of range (empty name, zero validity, bad hostname, …).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Key generation, signing or certificate encoding failed inside the library.
    #[error("internal error while issuing a certificate: {0}")]
    Internal(String),
}
