//! The Security Service's own TLS identity.
//!
//! The service runs a small CA of its own (`ServiceCa`) and issues its TLS
//! server certificate from it. Devices (at `agent init`) and the CLI pin that
//! CA certificate rather than trusting the web PKI, so the service can run
//! on `localhost`, a bare IP address or a private name.

use std::fmt;
use std::net::IpAddr;

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose,
    SanType,
};
use rustls_pki_types::DnsName;
use sevenfold_rot::{KeyAlgorithm, SoftwareKey};
use zeroize::Zeroizing;

use crate::authority::{ia5, Authority};
use crate::input::to_pem;
use crate::validity::Validity;
use crate::{CaCertificate, PkiError};

/// The organization (`O=`) of a service CA made by [`ServiceCa::generate`].
pub const SERVICE_ORGANIZATION: &str = "Sevenfold service";

/// Validity of a service CA made by [`ServiceCa::generate`], in days (10 years).
pub const SERVICE_CA_VALIDITY_DAYS: u32 = 3_650;

/// The CA behind the Security Service's TLS certificates.
pub struct ServiceCa {
    authority: Authority,
}

impl ServiceCa {
    /// Makes a new service CA: ECDSA P-256, `CN=<name>, O=Sevenfold service`,
    /// basicConstraints CA with pathLenConstraint 0, keyUsage keyCertSign +
    /// cRLSign, valid for [`SERVICE_CA_VALIDITY_DAYS`].
    ///
    /// Returns the CA with its certificate PEM (to distribute and pin) and its
    /// PKCS#8 private key PEM (to keep secret; wiped from memory on drop).
    pub fn generate(name: &str) -> Result<(ServiceCa, String, Zeroizing<String>), PkiError> {
        let new = Authority::generate(
            name,
            SERVICE_ORGANIZATION,
            Validity::days_from_now(SERVICE_CA_VALIDITY_DAYS)?,
        )?;
        Ok((
            ServiceCa {
                authority: new.authority,
            },
            new.cert_pem,
            new.key_pem,
        ))
    }

    /// Loads a service CA from its certificate and private key PEM; fails
    /// with [`PkiError::KeyMismatch`] if the key is not the certificate's.
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<ServiceCa, PkiError> {
        Ok(ServiceCa {
            authority: Authority::load(cert_pem, key_pem)?,
        })
    }

    /// The CA certificate (what devices and the CLI pin).
    pub fn certificate(&self) -> &CaCertificate {
        self.authority.certificate()
    }

    /// Issues a TLS server certificate for `hostnames` with a fresh ECDSA
    /// P-256 key, valid from an hour ago for `validity_days` days (but not
    /// past the CA's own expiry).
    ///
    /// Each hostname becomes a DNS SAN, or an IP SAN if it is an IPv4 or IPv6
    /// literal (`"localhost"`, `"127.0.0.1"`, `"::1"`). The first one is also
    /// the subject CN. extendedKeyUsage serverAuth, keyUsage digitalSignature.
    ///
    /// Returns the chain PEM (server certificate, then the CA certificate),
    /// ready for a TLS server, and the server's PKCS#8 private key PEM.
    pub fn issue_server_cert(
        &self,
        hostnames: &[String],
        validity_days: u32,
    ) -> Result<(String, Zeroizing<String>), PkiError> {
        let first = hostnames.first().ok_or_else(|| {
            PkiError::InvalidArgument("a server certificate needs at least one hostname".into())
        })?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        if first.len() <= 64 {
            params
                .distinguished_name
                .push(DnType::CommonName, first.as_str());
        }
        params.subject_alt_names = hostnames
            .iter()
            .map(|host| subject_alt_name(host))
            .collect::<Result<_, _>>()?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.is_ca = IsCa::ExplicitNoCa;

        let (key, pkcs8) = SoftwareKey::generate(KeyAlgorithm::EcdsaP256)
            .map_err(|e| PkiError::Internal(format!("server key generation: {e}")))?;
        let der = self.authority.issue(
            params,
            key.public_key(),
            Validity::days_from_now(validity_days)?,
        )?;
        let chain_pem = format!("{}{}", to_pem(&der), self.certificate().to_pem());
        Ok((chain_pem, SoftwareKey::pkcs8_to_pem(&pkcs8)))
    }
}

impl fmt::Debug for ServiceCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceCa")
            .field("certificate", self.certificate())
            .finish_non_exhaustive()
    }
}

/// An IP SAN for an IP literal, a DNS SAN for a valid DNS name, else an error.
fn subject_alt_name(host: &str) -> Result<SanType, PkiError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    DnsName::try_from(host).map_err(|_| {
        PkiError::InvalidArgument(format!(
            "{host:?} is neither a DNS name nor an IP address literal"
        ))
    })?;
    Ok(SanType::DnsName(ia5(host.to_owned())?))
}

#[cfg(test)]
mod tests {
    use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
    use webpki::{EndEntityCert, KeyUsage};

    use super::*;
    use crate::input::certificates;

    fn hosts(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn server_cert_validates_for_its_names_with_webpki() {
        let (ca, ca_pem, _) = ServiceCa::generate("Test service CA").unwrap();
        let (chain_pem, key_pem) = ca
            .issue_server_cert(&hosts(&["localhost", "127.0.0.1", "::1"]), 30)
            .unwrap();
        let chain = certificates(chain_pem.as_bytes()).unwrap();
        assert_eq!(chain.len(), 2);
        assert_eq!(chain[1], ca.certificate().der());
        assert_eq!(
            CaCertificate::parse(ca_pem.as_bytes()).unwrap(),
            *ca.certificate()
        );

        let leaf = CertificateDer::from(chain[0].as_slice());
        let ee = EndEntityCert::try_from(&leaf).unwrap();
        let anchors = [ca.certificate().anchor().clone()];
        ee.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            &[],
            UnixTime::now(),
            KeyUsage::server_auth(),
            None,
            None,
        )
        .unwrap();
        // A client certificate check must refuse it: the EKU is serverAuth only.
        assert!(ee
            .verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                &anchors,
                &[],
                UnixTime::now(),
                KeyUsage::client_auth(),
                None,
                None,
            )
            .is_err());
        for (name, valid) in [
            ("localhost", true),
            ("127.0.0.1", true),
            ("::1", true),
            ("example.com", false),
            ("127.0.0.2", false),
        ] {
            let server_name = ServerName::try_from(name).unwrap();
            assert_eq!(
                ee.verify_is_valid_for_subject_name(&server_name).is_ok(),
                valid,
                "{name}"
            );
        }
        // The key file holds the key the certificate was issued for.
        let key = SoftwareKey::from_pem(&key_pem).unwrap();
        let parsed = crate::input::parse_x509(&chain[0]).unwrap();
        assert_eq!(parsed.public_key().raw, key.public_key().spki_der());
    }

    #[test]
    fn bad_hostnames_are_refused() {
        let (ca, _, _) = ServiceCa::generate("Test service CA").unwrap();
        for bad in [&[][..], &["bad host"], &[""], &["a..b"], &["héllo.example"]] {
            let err = ca.issue_server_cert(&hosts(bad), 30).unwrap_err();
            assert!(
                matches!(err, PkiError::InvalidArgument(_)),
                "{bad:?}: {err}"
            );
        }
        assert!(matches!(
            ca.issue_server_cert(&hosts(&["localhost"]), 0),
            Err(PkiError::InvalidArgument(_))
        ));
    }

    #[test]
    fn load_round_trips_and_checks_the_key() {
        let (ca, cert_pem, key_pem) = ServiceCa::generate("Test service CA").unwrap();
        let loaded = ServiceCa::load(&cert_pem, &key_pem).unwrap();
        assert_eq!(loaded.certificate(), ca.certificate());
        assert!(loaded
            .certificate()
            .subject()
            .contains(SERVICE_ORGANIZATION));
        let (_, _, other_key) = ServiceCa::generate("Other").unwrap();
        assert!(matches!(
            ServiceCa::load(&cert_pem, &other_key),
            Err(PkiError::KeyMismatch { .. })
        ));
    }
}
