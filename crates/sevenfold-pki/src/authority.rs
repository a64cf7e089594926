//! What every Sevenfold CA does: make its own certificate, reload it with its
//! key, and sign certificates for public keys it does not hold.
//!
//! rcgen lays out the certificate bytes; the signature itself is made by
//! `sevenfold_rot::SoftwareKey`, so the platform has one signing code path.
//! The subject key of an issued certificate is given as a
//! `sevenfold_rot::PublicKey` (an SPKI), which is how a manufacturer endorses
//! a device key it never sees the private half of.

use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyUsagePurpose,
    PublicKeyData, SerialNumber, SignatureAlgorithm, SigningKey,
};
use rustls_pki_types::CertificateDer;
use sevenfold_rot::{KeyAlgorithm, PublicKey, SoftwareKey};
use zeroize::Zeroizing;

use crate::input::parse_x509;
use crate::validity::Validity;
use crate::{CaCertificate, PkiError};

/// Longest common name accepted (X.520 `ub-common-name`).
const MAX_COMMON_NAME_LEN: usize = 64;

/// A CA certificate together with its private key.
pub(crate) struct Authority {
    cert: CaCertificate,
    key: SoftwareKey,
}

/// A new CA and what to keep of it: the certificate PEM and the PKCS#8 key,
/// as PEM (for files) and as DER (for wrapping into a database row).
pub(crate) struct NewAuthority {
    pub(crate) authority: Authority,
    pub(crate) cert_pem: String,
    pub(crate) key_pem: Zeroizing<String>,
    pub(crate) key_pkcs8: Zeroizing<Vec<u8>>,
}

impl Authority {
    /// Generates an ECDSA P-256 key and a self-signed CA certificate:
    /// `CN=<common_name>, O=<organization>`, basicConstraints CA with
    /// pathLenConstraint 0 (it signs end-entity certificates only),
    /// keyUsage keyCertSign + cRLSign.
    pub(crate) fn generate(
        common_name: &str,
        organization: &str,
        validity: Validity,
    ) -> Result<NewAuthority, PkiError> {
        Authority::generate_with(common_name, organization, validity, |_| Ok(()))
    }

    /// [`Authority::generate`], letting `customize` add to the certificate
    /// (more subject attributes, subject alternative names) before it is signed.
    pub(crate) fn generate_with(
        common_name: &str,
        organization: &str,
        validity: Validity,
        customize: impl FnOnce(&mut CertificateParams) -> Result<(), PkiError>,
    ) -> Result<NewAuthority, PkiError> {
        check_common_name(common_name)?;
        let (key, pkcs8) = SoftwareKey::generate(KeyAlgorithm::EcdsaP256)
            .map_err(|e| PkiError::Internal(format!("CA key generation: {e}")))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, organization);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        (params.not_before, params.not_after) = validity.to_offsets()?;
        params.serial_number = Some(random_serial()?);
        customize(&mut params)?;
        let signer = Signer::new(&key)?;
        let cert = params.self_signed(&signer).map_err(internal)?;
        // Read back what we wrote, through the same checks a loader applies.
        let cert = CaCertificate::from_der(cert.der())?;
        let cert_pem = cert.to_pem();
        Ok(NewAuthority {
            authority: Authority { cert, key },
            cert_pem,
            key_pem: SoftwareKey::pkcs8_to_pem(&pkcs8),
            key_pkcs8: pkcs8,
        })
    }

    /// Loads a CA certificate and its PKCS#8 private key, checking they belong together.
    pub(crate) fn load(cert_pem: &str, key_pem: &str) -> Result<Authority, PkiError> {
        let cert = CaCertificate::parse(cert_pem.as_bytes())?;
        let key =
            SoftwareKey::from_pem(key_pem).map_err(|e| PkiError::InvalidKey(e.to_string()))?;
        Authority::from_parts(cert, key)
    }

    /// Pairs a CA certificate with its private key, checking they belong together.
    pub(crate) fn from_parts(cert: CaCertificate, key: SoftwareKey) -> Result<Authority, PkiError> {
        if key.public_key().spki_der() != cert.spki_der() {
            return Err(PkiError::KeyMismatch {
                subject: cert.subject().to_owned(),
            });
        }
        Ok(Authority { cert, key })
    }

    /// The CA certificate.
    pub(crate) fn certificate(&self) -> &CaCertificate {
        &self.cert
    }

    /// Signs `params` for `subject_key`, filling in a random serial, the
    /// validity (capped at the CA's own notAfter) and the authority key
    /// identifier. Returns the DER.
    pub(crate) fn issue(
        &self,
        params: CertificateParams,
        subject_key: &PublicKey,
        validity: Validity,
    ) -> Result<Vec<u8>, PkiError> {
        self.issue_for_spki(params, subject_key.spki_der(), validity)
    }

    /// [`Authority::issue`] for any DER SPKI rcgen can encode (tests use it
    /// for keys a `PublicKey` refuses).
    pub(crate) fn issue_for_spki(
        &self,
        mut params: CertificateParams,
        subject_spki: &[u8],
        validity: Validity,
    ) -> Result<Vec<u8>, PkiError> {
        let subject = rcgen::SubjectPublicKeyInfo::from_der(subject_spki)
            .map_err(|e| PkiError::UnsupportedKey(e.to_string()))?;
        (params.not_before, params.not_after) =
            validity.capped_at(self.cert.not_after()).to_offsets()?;
        params.serial_number = Some(random_serial()?);
        params.use_authority_key_identifier_extension = true;
        let issuer = Issuer::from_ca_cert_der(
            &CertificateDer::from(self.cert.der()),
            Signer::new(&self.key)?,
        )
        .map_err(internal)?;
        let der = params.signed_by(&subject, &issuer).map_err(internal)?;
        let der = der.der().to_vec();
        // rcgen re-encodes the key from its parts; the device ID is a hash of
        // the exact SPKI bytes, so insist they came out unchanged.
        if parse_x509(&der)?.public_key().raw != subject_spki {
            return Err(PkiError::Internal(
                "the issued certificate does not carry the subject key byte for byte".into(),
            ));
        }
        Ok(der)
    }
}

/// rcgen's view of a `SoftwareKey`: its public half and a way to sign.
struct Signer<'a> {
    key: &'a SoftwareKey,
    public: rcgen::SubjectPublicKeyInfo,
}

impl<'a> Signer<'a> {
    fn new(key: &'a SoftwareKey) -> Result<Signer<'a>, PkiError> {
        let public = rcgen::SubjectPublicKeyInfo::from_der(key.public_key().spki_der())
            .map_err(|e| PkiError::Internal(format!("CA public key: {e}")))?;
        Ok(Signer { key, public })
    }
}

impl PublicKeyData for Signer<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.public.der_bytes()
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        // ecPublicKey/P-256 maps to ecdsa-with-SHA256 and Ed25519 to Ed25519,
        // which is what `SoftwareKey::sign` produces for those keys.
        self.public.algorithm()
    }
}

impl SigningKey for Signer<'_> {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.key.sign(msg).map_err(|_| rcgen::Error::RemoteKeyError)
    }
}

/// A name for a CA's CN: 1 to 64 characters, no control characters.
fn check_common_name(name: &str) -> Result<(), PkiError> {
    if name.trim().is_empty() || name.chars().count() > MAX_COMMON_NAME_LEN {
        return Err(PkiError::InvalidArgument(format!(
            "CA name {name:?} must be 1 to {MAX_COMMON_NAME_LEN} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(PkiError::InvalidArgument(format!(
            "CA name {name:?} contains control characters"
        )));
    }
    Ok(())
}

/// 16 random bytes, positive (RFC 5280 allows up to 20 octets).
fn random_serial() -> Result<SerialNumber, PkiError> {
    let random = sevenfold_rot::random_nonce()
        .map_err(|e| PkiError::Internal(format!("serial number: {e}")))?;
    let mut serial = [0u8; 16];
    for (out, byte) in serial.iter_mut().zip(random) {
        *out = byte;
    }
    serial[0] = (serial[0] & 0x7f) | 0x01;
    Ok(SerialNumber::from_slice(&serial))
}

/// An IA5 (ASCII) string for a SAN, or `InvalidArgument`.
pub(crate) fn ia5(s: String) -> Result<Ia5String, PkiError> {
    Ia5String::try_from(s).map_err(|e| PkiError::InvalidArgument(format!("not ASCII: {e}")))
}

fn internal(e: rcgen::Error) -> PkiError {
    PkiError::Internal(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_names_are_checked() {
        for bad in ["", "   ", "tab\there", &"x".repeat(65)] {
            let err = Authority::generate(bad, "O", Validity::days_from_now(1).unwrap());
            assert!(matches!(err, Err(PkiError::InvalidArgument(_))), "{bad:?}");
        }
        assert!(check_common_name(&"é".repeat(64)).is_ok());
    }

    #[test]
    fn serials_are_positive_and_differ() {
        let a = random_serial().unwrap().to_bytes();
        let b = random_serial().unwrap().to_bytes();
        assert_eq!(a.len(), 16);
        assert!(a[0] & 0x80 == 0 && a[0] != 0);
        assert_ne!(a, b);
    }

    #[test]
    fn generated_ca_reloads_and_refuses_a_foreign_key() {
        let new =
            Authority::generate("Test CA", "Test", Validity::days_from_now(2).unwrap()).unwrap();
        let reloaded = Authority::load(&new.cert_pem, &new.key_pem).unwrap();
        assert_eq!(reloaded.certificate(), new.authority.certificate());
        let other =
            Authority::generate("Test CA", "Test", Validity::days_from_now(2).unwrap()).unwrap();
        assert!(matches!(
            Authority::load(&new.cert_pem, &other.key_pem),
            Err(PkiError::KeyMismatch { .. })
        ));
        assert!(matches!(
            Authority::load(&new.cert_pem, &new.cert_pem),
            Err(PkiError::InvalidKey(_))
        ));
    }

    #[test]
    fn issued_validity_is_capped_at_the_ca() {
        let new =
            Authority::generate("Short CA", "Test", Validity::days_from_now(1).unwrap()).unwrap();
        let (key, _) = SoftwareKey::generate(KeyAlgorithm::Ed25519).unwrap();
        let der = new
            .authority
            .issue(
                CertificateParams::default(),
                key.public_key(),
                Validity::days_from_now(365).unwrap(),
            )
            .unwrap();
        let cert = parse_x509(&der).unwrap();
        assert_eq!(
            cert.validity().not_after.timestamp(),
            new.authority.certificate().not_after()
        );
    }
}
