//! `CaCertificate`: a certificate checked to be a CA, ready to be a trust anchor.

use std::fmt;

use rustls_pki_types::{CertificateDer, TrustAnchor};
use sevenfold_rot::Digest;

use crate::input::{certificates, one_certificate, parse_x509, to_pem};
use x509_parser::extensions::GeneralName;

use crate::tenant::{check_tenant_id, strip_prefix_ignore_case};
use crate::validity::check_period;
use crate::{PkiError, TENANT_URI_PREFIX};

/// An X.509 certificate that is a CA: basicConstraints CA=true and keyUsage
/// keyCertSign. Manufacturer CAs (the service's trust anchors for
/// endorsements) and the service CA (the device's pinned anchor) are both
/// held as this type.
///
/// Parsing does not check the validity period, because it has no clock;
/// [`CaCertificate::check_valid_at`] does, and [`crate::verify_endorsement`]
/// calls it for the CA a chain ends at.
#[derive(Clone)]
pub struct CaCertificate {
    der: Vec<u8>,
    subject: String,
    fingerprint: String,
    not_before: i64,
    not_after: i64,
    spki_der: Vec<u8>,
    tenant_id: Option<String>,
    anchor: TrustAnchor<'static>,
}

impl CaCertificate {
    /// Parses one certificate, PEM (`CERTIFICATE` block) or DER, and checks it is a CA.
    pub fn parse(input: &[u8]) -> Result<CaCertificate, PkiError> {
        CaCertificate::from_der(&one_certificate(input)?)
    }

    /// Parses PEM text holding one or more CA certificates (a trust-store file).
    pub fn parse_bundle(pem_text: &str) -> Result<Vec<CaCertificate>, PkiError> {
        certificates(pem_text.as_bytes())?
            .iter()
            .map(|der| CaCertificate::from_der(der))
            .collect()
    }

    /// Parses a DER certificate and checks it is a CA.
    pub fn from_der(der: &[u8]) -> Result<CaCertificate, PkiError> {
        let cert = parse_x509(der)?;
        let subject = cert.subject().to_string();
        match cert.basic_constraints() {
            Ok(Some(bc)) if bc.value.ca => {}
            Ok(Some(_)) => {
                return Err(PkiError::NotCa(format!(
                    "basicConstraints CA is false in \"{subject}\""
                )))
            }
            Ok(None) => {
                return Err(PkiError::NotCa(format!(
                    "\"{subject}\" has no basicConstraints extension"
                )))
            }
            Err(e) => return Err(PkiError::Malformed(format!("basicConstraints: {e}"))),
        }
        match cert.key_usage() {
            Ok(Some(ku)) if ku.value.key_cert_sign() => {}
            Ok(Some(_)) => {
                return Err(PkiError::NotCa(format!(
                    "keyUsage of \"{subject}\" lacks keyCertSign"
                )))
            }
            Ok(None) => {
                return Err(PkiError::NotCa(format!(
                    "\"{subject}\" has no keyUsage extension"
                )))
            }
            Err(e) => return Err(PkiError::Malformed(format!("keyUsage: {e}"))),
        }
        let not_before = cert.validity().not_before.timestamp();
        let not_after = cert.validity().not_after.timestamp();
        let spki_der = cert.public_key().raw.to_vec();
        let tenant_id = match cert.subject_alternative_name() {
            Ok(san) => san.and_then(|san| named_tenant(&san.value.general_names)),
            Err(e) => return Err(PkiError::Malformed(format!("subjectAltName: {e}"))),
        };
        let anchor = webpki::anchor_from_trusted_cert(&CertificateDer::from(der))
            .map_err(|e| PkiError::Malformed(format!("unusable as a trust anchor: {e}")))?
            .to_owned();
        Ok(CaCertificate {
            der: der.to_vec(),
            fingerprint: Digest::of(der).to_hex(),
            subject,
            not_before,
            not_after,
            spki_der,
            tenant_id,
            anchor,
        })
    }

    /// The certificate, DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The certificate as a PEM `CERTIFICATE` block.
    pub fn to_pem(&self) -> String {
        to_pem(&self.der)
    }

    /// The subject name, e.g. `CN=Example Silicon, O=Sevenfold manufacturer`.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// SHA-256 of the DER, 64 lower-case hex characters: names this exact certificate.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Start of the validity period, unix seconds.
    pub fn not_before(&self) -> i64 {
        self.not_before
    }

    /// End of the validity period (inclusive), unix seconds.
    pub fn not_after(&self) -> i64 {
        self.not_after
    }

    /// The CA's public key, DER `SubjectPublicKeyInfo`.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// Fails with [`PkiError::Expired`] or [`PkiError::NotYetValid`] unless
    /// `now_unix` lies within the validity period.
    pub fn check_valid_at(&self, now_unix: i64) -> Result<(), PkiError> {
        check_period(&self.subject, self.not_before, self.not_after, now_unix)
    }

    /// The tenant a tenant CA belongs to: the ID in its one
    /// `urn:sevenfold:tenant:<tenant-id>` SAN URI. `None` for manufacturer and
    /// service CAs, and for a CA that names no tenant, several, or an invalid
    /// ID; [`crate::verify_device_certificate`] accepts device certificates
    /// only from a CA that names exactly the certificate's tenant.
    pub fn tenant_id(&self) -> Option<&str> {
        self.tenant_id.as_deref()
    }

    pub(crate) fn anchor(&self) -> &TrustAnchor<'static> {
        &self.anchor
    }
}

/// The tenant ID of the single tenant URI among `names`, if there is exactly
/// one and it is a valid tenant ID.
fn named_tenant(names: &[GeneralName<'_>]) -> Option<String> {
    let mut tenants = names.iter().filter_map(|name| match name {
        GeneralName::URI(uri) => strip_prefix_ignore_case(uri, TENANT_URI_PREFIX),
        _ => None,
    });
    match (tenants.next(), tenants.next()) {
        (Some(id), None) if check_tenant_id(id).is_ok() && has_exact_prefix(names) => {
            Some(id.to_owned())
        }
        _ => None,
    }
}

/// Whether the tenant URI is spelled in lower case, as issued.
fn has_exact_prefix(names: &[GeneralName<'_>]) -> bool {
    names
        .iter()
        .any(|name| matches!(name, GeneralName::URI(uri) if uri.starts_with(TENANT_URI_PREFIX)))
}

impl PartialEq for CaCertificate {
    fn eq(&self, other: &Self) -> bool {
        self.der == other.der
    }
}

impl Eq for CaCertificate {}

impl fmt::Debug for CaCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaCertificate")
            .field("subject", &self.subject)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, KeyUsagePurpose};

    use super::*;
    use crate::validity::now_unix;
    use crate::ManufacturerCa;

    /// A certificate made by rcgen with `edit` applied to default parameters.
    fn made(edit: impl FnOnce(&mut CertificateParams)) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        edit(&mut params);
        params.self_signed(&key).unwrap().der().to_vec()
    }

    fn check(name: &str, der: &[u8], expected: Result<(), &str>) {
        match (CaCertificate::parse(der), expected) {
            (Ok(_), Ok(())) => {}
            (Err(e), Err(needle)) => assert!(e.to_string().contains(needle), "{name}: {e}"),
            (got, expected) => panic!("{name}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn only_cas_are_accepted() {
        let ca = |p: &mut CertificateParams| {
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        };
        check("a CA", &made(ca), Ok(()));
        check(
            "CA=false",
            &made(|p| {
                ca(p);
                p.is_ca = IsCa::ExplicitNoCa;
            }),
            Err("not a CA certificate: basicConstraints CA is false"),
        );
        check(
            "no basicConstraints",
            &made(|_| {}),
            Err("no basicConstraints"),
        );
        check(
            "no keyCertSign",
            &made(|p| {
                ca(p);
                p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            }),
            Err("lacks keyCertSign"),
        );
        check(
            "no keyUsage",
            &made(|p| {
                ca(p);
                p.key_usages.clear();
            }),
            Err("no keyUsage"),
        );
        check("garbage", b"\x30\x03abc", Err("malformed certificate"));
        check("not PEM", b"hello", Err("not PEM"));
    }

    #[test]
    fn fields_of_a_generated_ca() {
        let (maker, files) = ManufacturerCa::generate("Example Silicon", 10).unwrap();
        let ca = CaCertificate::parse(files.cert_pem.as_bytes()).unwrap();
        assert_eq!(&ca, maker.certificate());
        assert_eq!(ca.subject(), "CN=Example Silicon, O=Sevenfold manufacturer");
        assert_eq!(ca.fingerprint(), Digest::of(ca.der()).to_hex());
        assert_eq!(ca.fingerprint().len(), 64);
        let now = now_unix();
        assert!(ca.not_before() <= now && now <= ca.not_after());
        assert!((ca.not_after() - now - 10 * 86_400).abs() < 60);
        assert_eq!(CaCertificate::parse(ca.to_pem().as_bytes()).unwrap(), ca);
        assert_eq!(CaCertificate::from_der(ca.der()).unwrap(), ca);
        ca.check_valid_at(now).unwrap();
        assert!(matches!(
            ca.check_valid_at(ca.not_after() + 1),
            Err(PkiError::Expired { .. })
        ));
        assert!(matches!(
            ca.check_valid_at(ca.not_before() - 1),
            Err(PkiError::NotYetValid { .. })
        ));
        let err = ca
            .check_valid_at(ca.not_after() + 1)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("Example Silicon") && err.contains("expired at"),
            "{err}"
        );
    }

    #[test]
    fn bundles_hold_several_cas_and_single_parse_refuses_them() {
        let (a, _) = ManufacturerCa::generate("A", 10).unwrap();
        let (b, _) = ManufacturerCa::generate("B", 10).unwrap();
        let bundle = format!("{}{}", a.certificate().to_pem(), b.certificate().to_pem());
        let parsed = CaCertificate::parse_bundle(&bundle).unwrap();
        assert_eq!(
            parsed,
            vec![a.certificate().clone(), b.certificate().clone()]
        );
        assert!(matches!(
            CaCertificate::parse(bundle.as_bytes()),
            Err(PkiError::Malformed(_))
        ));
    }
}
