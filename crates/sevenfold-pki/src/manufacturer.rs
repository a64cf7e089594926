//! The device maker's tools: a manufacturer CA and endorsement certificates.
//!
//! The manufacturer CA stands in for a silicon vendor or TPM maker. At the
//! factory, the device's root of trust hands out its public key; the
//! manufacturer signs an *endorsement certificate* over it, saying "this key
//! lives in a device we made". The manufacturer never holds the device's
//! private key.

use std::fmt;

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose,
    SanType,
};
use sevenfold_rot::{DeviceId, PublicKey};
use zeroize::Zeroizing;

use crate::authority::{ia5, Authority};
use crate::input::to_pem;
use crate::validity::{now_unix, Validity};
use crate::{CaCertificate, PkiError};

/// The extended key usage that marks an endorsement certificate:
/// `1.3.6.1.4.1.59999.7.1` ("Sevenfold device endorsement").
///
/// The arc `1.3.6.1.4.1.59999` is a placeholder under IANA's Private
/// Enterprise Numbers that is not registered to Sevenfold; a production
/// deployment should move to a registered PEN (changing this constant
/// invalidates existing endorsements).
pub const ENDORSEMENT_EKU: &[u64] = &[1, 3, 6, 1, 4, 1, 59999, 7, 1];

/// Prefix of the URI subject alternative name an endorsement carries:
/// `urn:sevenfold:device:<device-id>`.
pub const DEVICE_URI_PREFIX: &str = "urn:sevenfold:device:";

/// The organization (`O=`) of a manufacturer CA made by [`ManufacturerCa::generate`].
pub const MANUFACTURER_ORGANIZATION: &str = "Sevenfold manufacturer";

/// A manufacturer CA: certificate and private key, able to endorse device keys.
pub struct ManufacturerCa {
    pub(crate) authority: Authority,
}

/// The two files a new manufacturer CA must be kept as.
///
/// `cert_pem` is public (it is what the Security Service is configured to
/// trust); `key_pem` is the CA's private key and is wiped from memory on drop.
pub struct ManufacturerCaFiles {
    /// The CA certificate, one PEM `CERTIFICATE` block.
    pub cert_pem: String,
    /// The CA private key, one PEM `PRIVATE KEY` (PKCS#8) block.
    pub key_pem: Zeroizing<String>,
}

impl ManufacturerCa {
    /// Makes a new manufacturer CA: an ECDSA P-256 key and a self-signed
    /// certificate with `CN=<name>, O=Sevenfold manufacturer`,
    /// basicConstraints CA with pathLenConstraint 0, keyUsage keyCertSign +
    /// cRLSign, valid from an hour ago for `validity_days` days.
    pub fn generate(
        name: &str,
        validity_days: u32,
    ) -> Result<(ManufacturerCa, ManufacturerCaFiles), PkiError> {
        let new = Authority::generate(
            name,
            MANUFACTURER_ORGANIZATION,
            Validity::days_from_now(validity_days)?,
        )?;
        let files = ManufacturerCaFiles {
            cert_pem: new.cert_pem,
            key_pem: new.key_pem,
        };
        Ok((
            ManufacturerCa {
                authority: new.authority,
            },
            files,
        ))
    }

    /// Loads a manufacturer CA from its certificate and private key PEM;
    /// fails with [`PkiError::KeyMismatch`] if the key is not the certificate's.
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<ManufacturerCa, PkiError> {
        Ok(ManufacturerCa {
            authority: Authority::load(cert_pem, key_pem)?,
        })
    }

    /// The CA certificate (what verifiers trust).
    pub fn certificate(&self) -> &CaCertificate {
        self.authority.certificate()
    }

    /// Issues an endorsement certificate over `device_key`, valid from an hour
    /// ago for `validity_days` days (but not past the CA's own expiry).
    ///
    /// The certificate has subject `CN=<device-id>`, SAN
    /// `URI:urn:sevenfold:device:<device-id>`, extendedKeyUsage
    /// [`ENDORSEMENT_EKU`], keyUsage digitalSignature, basicConstraints CA=false.
    /// Before returning, it is checked with [`crate::verify_endorsement`]
    /// against this CA, so a certificate this function hands out always passes
    /// the service's verifier.
    pub fn endorse(
        &self,
        device_key: &PublicKey,
        validity_days: u32,
    ) -> Result<EndorsementCertificate, PkiError> {
        let now = now_unix();
        self.certificate().check_valid_at(now)?;
        let der = self.authority.issue(
            endorsement_params(&DeviceId::of(device_key))?,
            device_key,
            Validity::days_from_now(validity_days)?,
        )?;
        let checked =
            crate::verify_endorsement(&der, std::slice::from_ref(self.certificate()), now)
                .map_err(|e| {
                    PkiError::Internal(format!(
                        "the endorsement just issued fails verification: {e}"
                    ))
                })?;
        if checked.public_key() != device_key {
            return Err(PkiError::Internal(
                "the endorsement just issued names another key".into(),
            ));
        }
        Ok(EndorsementCertificate { der })
    }
}

impl fmt::Debug for ManufacturerCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManufacturerCa")
            .field("certificate", self.certificate())
            .finish_non_exhaustive()
    }
}

/// The certificate contents of an endorsement for `device_id` (everything but
/// the key, serial and validity, which [`Authority::issue`] fills in).
pub(crate) fn endorsement_params(device_id: &DeviceId) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, device_id.to_string());
    params.subject_alt_names = vec![SanType::URI(ia5(format!(
        "{DEVICE_URI_PREFIX}{device_id}"
    ))?)];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::Other(ENDORSEMENT_EKU.to_vec())];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.is_ca = IsCa::ExplicitNoCa;
    Ok(params)
}

/// An endorsement certificate as issued: bytes to store on the device and
/// send with attestation evidence. Verify with [`crate::verify_endorsement`].
#[derive(Clone, PartialEq, Eq)]
pub struct EndorsementCertificate {
    der: Vec<u8>,
}

impl EndorsementCertificate {
    /// The certificate, DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The certificate, DER, by value.
    pub fn into_der(self) -> Vec<u8> {
        self.der
    }

    /// The certificate as a PEM `CERTIFICATE` block.
    pub fn to_pem(&self) -> String {
        to_pem(&self.der)
    }
}

impl fmt::Debug for EndorsementCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndorsementCertificate")
            .field("len", &self.der.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use sevenfold_rot::{KeyAlgorithm, SoftwareKey};
    use x509_parser::extensions::GeneralName;

    use super::*;
    use crate::input::parse_x509;
    use crate::validity::now_unix;

    #[test]
    fn ca_certificate_profile() {
        let (maker, _) = ManufacturerCa::generate("Example Silicon", 365).unwrap();
        let cert = parse_x509(maker.certificate().der()).unwrap();
        let bc = cert.basic_constraints().unwrap().unwrap();
        assert!(bc.critical);
        assert!(bc.value.ca);
        assert_eq!(bc.value.path_len_constraint, Some(0));
        let ku = cert.key_usage().unwrap().unwrap().value;
        assert!(ku.key_cert_sign() && ku.crl_sign() && !ku.digital_signature());
        assert_eq!(cert.subject(), cert.issuer());
        assert!(cert.extended_key_usage().unwrap().is_none());
    }

    #[test]
    fn endorsement_certificate_profile() {
        let (maker, _) = ManufacturerCa::generate("Example Silicon", 365).unwrap();
        let (key, _) = SoftwareKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let id = DeviceId::of(key.public_key()).to_string();
        let endorsement = maker.endorse(key.public_key(), 30).unwrap();
        let cert = parse_x509(endorsement.der()).unwrap();
        let ca = parse_x509(maker.certificate().der()).unwrap();

        assert_eq!(cert.subject().to_string(), format!("CN={id}"));
        assert_eq!(cert.issuer(), ca.subject());
        assert_eq!(cert.public_key().raw, key.public_key().spki_der());
        let san = cert.subject_alternative_name().unwrap().unwrap();
        let uri = format!("{DEVICE_URI_PREFIX}{id}");
        assert_eq!(
            san.value.general_names,
            vec![GeneralName::URI(uri.as_str())]
        );
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(!eku.any && !eku.server_auth && !eku.client_auth);
        assert_eq!(eku.other.len(), 1);
        assert_eq!(
            eku.other[0].iter().unwrap().collect::<Vec<_>>(),
            ENDORSEMENT_EKU
        );
        let ku = cert.key_usage().unwrap().unwrap().value;
        assert!(ku.digital_signature() && !ku.key_cert_sign());
        assert!(!cert.basic_constraints().unwrap().unwrap().value.ca);
        // The authority key identifier names the CA's subject key identifier.
        let aki = cert
            .iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(a) => {
                    a.key_identifier.clone()
                }
                _ => None,
            })
            .unwrap();
        let ski = ca
            .iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => {
                    Some(k.clone())
                }
                _ => None,
            })
            .unwrap();
        assert_eq!(aki.0, ski.0);
        // Serial numbers are random, so two endorsements of one key differ.
        let again = maker.endorse(key.public_key(), 30).unwrap();
        assert_ne!(
            parse_x509(again.der()).unwrap().raw_serial(),
            cert.raw_serial()
        );
        assert_eq!(
            crate::CaCertificate::parse(endorsement.to_pem().as_bytes())
                .unwrap_err()
                .to_string(),
            "not a CA certificate: basicConstraints CA is false in \"CN=".to_owned()
                + &id
                + "\"; a manufacturer, service or tenant CA needs basicConstraints CA=true and keyUsage keyCertSign"
        );
    }

    #[test]
    fn a_loaded_ca_endorses_like_the_original() {
        let (maker, files) = ManufacturerCa::generate("Example Silicon", 365).unwrap();
        let loaded = ManufacturerCa::load(&files.cert_pem, &files.key_pem).unwrap();
        let (key, _) = SoftwareKey::generate(KeyAlgorithm::Ed25519).unwrap();
        let cert = loaded.endorse(key.public_key(), 30).unwrap();
        let e = crate::verify_endorsement(
            cert.der(),
            std::slice::from_ref(maker.certificate()),
            now_unix(),
        )
        .unwrap();
        assert_eq!(e.device_id(), DeviceId::of(key.public_key()));
    }

    #[test]
    fn bad_arguments_are_refused() {
        assert!(matches!(
            ManufacturerCa::generate("Maker", 0),
            Err(PkiError::InvalidArgument(_))
        ));
        assert!(matches!(
            ManufacturerCa::generate("", 10),
            Err(PkiError::InvalidArgument(_))
        ));
        let (maker, files) = ManufacturerCa::generate("Maker", 10).unwrap();
        let (key, _) = SoftwareKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        assert!(matches!(
            maker.endorse(key.public_key(), crate::MAX_VALIDITY_DAYS + 1),
            Err(PkiError::InvalidArgument(_))
        ));
        assert!(matches!(
            ManufacturerCa::load(&files.key_pem, &files.key_pem),
            Err(PkiError::Malformed(_))
        ));
        assert!(format!("{maker:?}").contains("Maker"));
        assert!(!format!("{maker:?}").contains("PRIVATE"));
    }
}
