//! The service side of device certificates: which device, of which tenant, is
//! this TLS client?
//!
//! Two checks, in order:
//! 1. **Trust**: the certificate chains to one of the tenant CAs given, every
//!    certificate is within its validity period, and the chain allows TLS
//!    client authentication (rustls-webpki, as the TLS stack checks it); the
//!    leaf itself states clientAuth and is not a CA.
//! 2. **Identity**: exactly one `urn:sevenfold:device:` and one
//!    `urn:sevenfold:tenant:` SAN URI, the subject CN equal to that device ID,
//!    and the tenant equal to the tenant the verifying CA names. Unlike an
//!    endorsement, the certified key is the device's TLS key, not its
//!    root-of-trust key, so the device ID is read from the certificate, which
//!    is why only a tenant CA's word for it is taken.

use rustls_pki_types::UnixTime;
use sevenfold_rot::{DeviceId, PublicKey};
use webpki::KeyUsage;
use x509_parser::extensions::GeneralName;

use crate::chain;
use crate::endorsement::{dotted_list, eku_oids};
use crate::input::{one_certificate, parse_x509};
use crate::tenant::{check_tenant_id, strip_prefix_ignore_case};
use crate::validity::check_period;
use crate::{CaCertificate, PkiError, DEVICE_URI_PREFIX, TENANT_URI_PREFIX};

/// `id-kp-clientAuth`, 1.3.6.1.5.5.7.3.2.
const CLIENT_AUTH: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 3, 2];

/// What to do about a device certificate that is not acceptable.
const ATTEST_AGAIN: &str = "; have the device attest again to get a new device certificate";

/// A verified device certificate: this TLS client is this device of this tenant.
///
/// Only [`verify_device_certificate`] makes one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceIdentity {
    device_id: DeviceId,
    tenant_id: String,
    not_after: i64,
    ca_fingerprint: String,
    serial_hex: String,
}

impl DeviceIdentity {
    /// The device, from the certificate's `urn:sevenfold:device:` SAN URI.
    pub fn device_id(&self) -> DeviceId {
        self.device_id
    }

    /// The tenant, from the certificate's `urn:sevenfold:tenant:` SAN URI
    /// (and equal to the tenant of the CA that verified it).
    pub fn tenant_id(&self) -> &str {
        &self.tenant_id
    }

    /// End of the certificate's validity (inclusive), unix seconds.
    pub fn not_after(&self) -> i64 {
        self.not_after
    }

    /// [`CaCertificate::fingerprint`] of the tenant CA that verified it (during
    /// a rotation, tells the old CA from its successor).
    pub fn ca_fingerprint(&self) -> &str {
        &self.ca_fingerprint
    }

    /// The certificate's serial number, lower-case hex.
    pub fn serial_hex(&self) -> &str {
        &self.serial_hex
    }
}

/// Verifies a device's TLS client certificate `chain` (leaf first, then any
/// intermediates; each one certificate, DER or PEM) against the `tenant_cas`
/// (during a rotation, both the old CA and its successor) at `now_unix`.
///
/// Fails closed with a typed [`PkiError`]:
/// - [`PkiError::Expired`] / [`PkiError::NotYetValid`]: the leaf, an
///   intermediate or the CA is outside its validity period;
/// - [`PkiError::UntrustedIssuer`]: no tenant CA given issued it (another
///   tenant's, a retired CA), or the CA names no tenant;
/// - [`PkiError::BadSignature`]: the certificate was altered;
/// - [`PkiError::WrongUsage`]: not a TLS client certificate (a server
///   certificate, an endorsement, a CA, a proof-of-possession certificate);
/// - [`PkiError::MissingIdentity`]: the device or tenant SAN URI, or the CN,
///   is absent, repeated or not in canonical form;
/// - [`PkiError::IdentityMismatch`]: the CN (or O) disagrees with the SAN
///   URIs, or the tenant is not the verifying CA's tenant;
/// - [`PkiError::Malformed`]: the bytes are not a certificate.
pub fn verify_device_certificate(
    chain: &[&[u8]],
    tenant_cas: &[CaCertificate],
    now_unix: i64,
) -> Result<DeviceIdentity, PkiError> {
    let (leaf, rest) = chain.split_first().ok_or_else(|| {
        PkiError::Malformed("no certificate given; the leaf must come first".into())
    })?;
    let intermediates = chain::intermediates(rest)?;
    let leaf_der = one_certificate(leaf)?;
    let facts = LeafFacts::read(&leaf_der)?;
    check_period(&facts.subject, facts.not_before, facts.not_after, now_unix)?;

    // 1. Trust.
    if tenant_cas.is_empty() {
        return Err(PkiError::UntrustedIssuer(format!(
            "no tenant CA was given to verify the device certificate against{ATTEST_AGAIN}"
        )));
    }
    let ca = chain::path_to_trusted(
        &leaf_der,
        &intermediates,
        tenant_cas,
        now_unix,
        KeyUsage::client_auth(),
        |e| from_webpki(e, &facts, tenant_cas.len()),
    )?;
    match &facts.ekus {
        Some(ekus) if ekus.iter().any(|e| e == CLIENT_AUTH) => {}
        Some(ekus) => {
            return Err(PkiError::WrongUsage(format!(
                "extendedKeyUsage is {}, not TLS client authentication (1.3.6.1.5.5.7.3.2){ATTEST_AGAIN}",
                dotted_list(ekus)
            )))
        }
        None => {
            return Err(PkiError::WrongUsage(format!(
                "no extendedKeyUsage; a device certificate carries TLS client authentication \
                 (1.3.6.1.5.5.7.3.2){ATTEST_AGAIN}"
            )))
        }
    }

    // 2. Identity.
    let device_uri = exactly_one(&facts.device_uris, "device", DEVICE_URI_PREFIX)?;
    let device_id = device_uri
        .strip_prefix(DEVICE_URI_PREFIX)
        .and_then(|hex| DeviceId::from_hex(hex).filter(|id| id.to_string() == hex))
        .ok_or_else(|| {
            PkiError::MissingIdentity(format!(
                "SAN URI {device_uri:?} is not {DEVICE_URI_PREFIX}<64 lower-case hex digits>{ATTEST_AGAIN}"
            ))
        })?;
    let tenant_uri = exactly_one(&facts.tenant_uris, "tenant", TENANT_URI_PREFIX)?;
    let tenant_id = tenant_uri
        .strip_prefix(TENANT_URI_PREFIX)
        .filter(|id| check_tenant_id(id).is_ok())
        .ok_or_else(|| {
            PkiError::MissingIdentity(format!(
                "SAN URI {tenant_uri:?} is not {TENANT_URI_PREFIX}<tenant-id>{ATTEST_AGAIN}"
            ))
        })?;
    match facts.common_names.as_slice() {
        [Some(cn)] if *cn == device_id.to_string() => {}
        [Some(cn)] => {
            return Err(PkiError::IdentityMismatch(format!(
                "subject CN {cn:?} is not the device {device_id} the SAN URI names"
            )))
        }
        [None] => {
            return Err(PkiError::MissingIdentity(format!(
                "the subject CN is not a readable string{ATTEST_AGAIN}"
            )))
        }
        names => {
            return Err(PkiError::MissingIdentity(format!(
                "the subject has {} CNs; a device certificate has one, the device ID{ATTEST_AGAIN}",
                names.len()
            )))
        }
    }
    for org in &facts.organizations {
        if org.as_deref() != Some(tenant_id) {
            return Err(PkiError::IdentityMismatch(format!(
                "subject O {} is not the tenant {tenant_id:?} the SAN URI names",
                org.as_deref()
                    .map_or_else(|| "<not a string>".to_owned(), |o| format!("{o:?}"))
            )));
        }
    }
    match ca.tenant_id() {
        Some(ca_tenant) if ca_tenant == tenant_id => {}
        Some(ca_tenant) => {
            return Err(PkiError::IdentityMismatch(format!(
                "the certificate claims tenant {tenant_id:?} but was issued by the CA of tenant \
                 {ca_tenant:?} (\"{}\")",
                ca.subject()
            )))
        }
        None => {
            return Err(PkiError::UntrustedIssuer(format!(
                "CA \"{}\" names no tenant (SAN URI {TENANT_URI_PREFIX}<tenant-id>), so it cannot \
                 vouch for device certificates; pass tenant CAs only",
                ca.subject()
            )))
        }
    }

    Ok(DeviceIdentity {
        device_id,
        tenant_id: tenant_id.to_owned(),
        not_after: facts.not_after,
        ca_fingerprint: ca.fingerprint().to_owned(),
        serial_hex: facts.serial_hex,
    })
}

/// The public key a certificate (PEM or DER) certifies, ECDSA P-256 or Ed25519.
///
/// Nothing about the certificate is verified: use it to check that a
/// certificate handed to a device (an endorsement, a device certificate) is
/// for the device's own key, e.g. `certificate_public_key(pem)? == *key.public_key()`.
pub fn certificate_public_key(cert: &[u8]) -> Result<PublicKey, PkiError> {
    let der = one_certificate(cert)?;
    let parsed = parse_x509(&der)?;
    PublicKey::from_spki_der(parsed.public_key().raw)
        .map_err(|e| PkiError::UnsupportedKey(e.to_string()))
}

/// The only element of `found`, or `MissingIdentity` naming what is wrong.
fn exactly_one<'a>(found: &'a [String], what: &str, prefix: &str) -> Result<&'a str, PkiError> {
    match found {
        [one] => Ok(one),
        [] => Err(PkiError::MissingIdentity(format!(
            "the certificate has no {what} SAN URI ({prefix}…), so it is not a Sevenfold \
             device certificate{ATTEST_AGAIN}"
        ))),
        many => Err(PkiError::MissingIdentity(format!(
            "the certificate has {} {what} SAN URIs ({prefix}…); a device certificate has \
             exactly one{ATTEST_AGAIN}",
            many.len()
        ))),
    }
}

/// The leaf's fields the verifier checks, read with x509-parser.
struct LeafFacts {
    subject: String,
    issuer: String,
    not_before: i64,
    not_after: i64,
    serial_hex: String,
    /// Each CN; `None` where it is not a decodable string.
    common_names: Vec<Option<String>>,
    /// Each O; `None` where it is not a decodable string.
    organizations: Vec<Option<String>>,
    /// SAN URIs in the `urn:sevenfold:device:` namespace (any case).
    device_uris: Vec<String>,
    /// SAN URIs in the `urn:sevenfold:tenant:` namespace (any case).
    tenant_uris: Vec<String>,
    /// The extendedKeyUsage OIDs, or `None` without the extension.
    ekus: Option<Vec<Vec<u64>>>,
}

impl LeafFacts {
    fn read(der: &[u8]) -> Result<LeafFacts, PkiError> {
        let cert = parse_x509(der)?;
        let strings =
            |attrs: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue<'_>>| {
                attrs
                    .map(|a| a.as_str().ok().map(str::to_owned))
                    .collect::<Vec<_>>()
            };
        let common_names = strings(&mut cert.subject().iter_common_name());
        let organizations = strings(&mut cert.subject().iter_organization());
        let uris: Vec<&str> = match cert.subject_alternative_name() {
            Ok(Some(san)) => san
                .value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::URI(uri) => Some(*uri),
                    _ => None,
                })
                .collect(),
            Ok(None) => Vec::new(),
            Err(e) => return Err(PkiError::Malformed(format!("subjectAltName: {e}"))),
        };
        let in_namespace = |prefix: &str| -> Vec<String> {
            uris.iter()
                .filter(|uri| strip_prefix_ignore_case(uri, prefix).is_some())
                .map(|uri| (*uri).to_owned())
                .collect()
        };
        let ekus = match cert.extended_key_usage() {
            Ok(Some(eku)) => Some(eku_oids(eku.value)),
            Ok(None) => None,
            Err(e) => return Err(PkiError::Malformed(format!("extendedKeyUsage: {e}"))),
        };
        Ok(LeafFacts {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            serial_hex: hex::encode(cert.raw_serial()),
            common_names,
            organizations,
            device_uris: in_namespace(DEVICE_URI_PREFIX),
            tenant_uris: in_namespace(TENANT_URI_PREFIX),
            ekus,
        })
    }
}

fn from_webpki(error: webpki::Error, leaf: &LeafFacts, tenant_cas: usize) -> PkiError {
    use webpki::Error as E;
    let secs = |t: UnixTime| i64::try_from(t.as_secs()).unwrap_or(i64::MAX);
    let eku = || {
        leaf.ekus
            .as_deref()
            .map_or_else(|| "none".into(), dotted_list)
    };
    #[allow(deprecated)]
    match error {
        E::UnknownIssuer => PkiError::UntrustedIssuer(format!(
            "issuer \"{}\" is none of the {tenant_cas} tenant CA(s) given: the certificate is \
             another tenant's or from a retired tenant CA{ATTEST_AGAIN}",
            leaf.issuer
        )),
        E::CertExpired { not_after, .. } => PkiError::Expired {
            subject: "intermediate certificate of the chain".into(),
            not_after: secs(not_after),
        },
        E::CertNotValidYet { not_before, .. } => PkiError::NotYetValid {
            subject: "intermediate certificate of the chain".into(),
            not_before: secs(not_before),
        },
        E::InvalidSignatureForPublicKey | E::SignatureAlgorithmMismatch => PkiError::BadSignature(
            format!("\"{}\" ({error}); it was altered or not signed by its named issuer", leaf.subject),
        ),
        E::RequiredEkuNotFound | E::RequiredEkuNotFoundContext(_) | E::EmptyEkuExtension => {
            PkiError::WrongUsage(format!(
                "the certificate is not for TLS client authentication (its extendedKeyUsage is {}){ATTEST_AGAIN}",
                eku()
            ))
        }
        E::CaUsedAsEndEntity => PkiError::WrongUsage(
            "this is a CA certificate, not a device certificate".into(),
        ),
        E::EndEntityUsedAsCa
        | E::PathLenConstraintViolated
        | E::NameConstraintViolation
        | E::CertDistrusted
        | E::CertRevoked
        | E::MaximumPathDepthExceeded
        | E::MaximumPathBuildCallsExceeded
        | E::MaximumSignatureChecksExceeded => PkiError::UntrustedIssuer(format!(
            "the chain is not acceptable ({error}){ATTEST_AGAIN}"
        )),
        other => PkiError::Malformed(format!("{other}")),
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose as Eku, SanType};
    use sevenfold_rot::{KeyAlgorithm, SoftwareKey};

    use super::*;
    use crate::authority::ia5;
    use crate::tenant::device_certificate_params;
    use crate::validity::{now_unix, Validity};
    use crate::{ManufacturerCa, ServiceCa, TenantCa};

    const TENANT: &str = "tenant-a";
    const DAY: i64 = 86_400;

    fn device() -> (DeviceId, SoftwareKey) {
        let (rot, _) = SoftwareKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let (tls, _) = SoftwareKey::generate(KeyAlgorithm::Ed25519).unwrap();
        (DeviceId::of(rot.public_key()), tls)
    }

    /// What a case must come to.
    #[derive(Debug)]
    enum Want {
        Device,
        Untrusted,
        Expired,
        NotYetValid,
        WrongUsage,
        Missing,
        Mismatch,
        BadSignature,
        Malformed,
    }

    /// Name, chain, tenant CAs, time of the check, expected outcome.
    type Case<'a> = (&'static str, &'a [&'a [u8]], &'a [CaCertificate], i64, Want);

    fn check(name: &str, chain: &[&[u8]], cas: &[CaCertificate], now: i64, want: &Want) {
        let got = verify_device_certificate(chain, cas, now);
        let ok = matches!(
            (&got, want),
            (Ok(_), Want::Device)
                | (Err(PkiError::UntrustedIssuer(_)), Want::Untrusted)
                | (Err(PkiError::Expired { .. }), Want::Expired)
                | (Err(PkiError::NotYetValid { .. }), Want::NotYetValid)
                | (Err(PkiError::WrongUsage(_)), Want::WrongUsage)
                | (Err(PkiError::MissingIdentity(_)), Want::Missing)
                | (Err(PkiError::IdentityMismatch(_)), Want::Mismatch)
                | (Err(PkiError::BadSignature(_)), Want::BadSignature)
                | (Err(PkiError::Malformed(_)), Want::Malformed)
        );
        assert!(ok, "{name}: wanted {want:?}, got {got:?}");
    }

    /// A device certificate of `ca` whose contents `edit` may change.
    fn custom(
        ca: &TenantCa,
        tls: &SoftwareKey,
        id: &DeviceId,
        edit: impl FnOnce(&mut CertificateParams),
    ) -> Vec<u8> {
        let mut params = device_certificate_params(id, TENANT).unwrap();
        edit(&mut params);
        let now = now_unix();
        ca.authority
            .issue(
                params,
                tls.public_key(),
                Validity {
                    not_before: now - 300,
                    not_after: now + DAY,
                },
            )
            .unwrap()
    }

    #[test]
    fn device_certificate_cases() {
        use Want::*;
        let (ca, _) = TenantCa::generate(TENANT, "Tenant A", 30).unwrap();
        let (other_tenant, _) = TenantCa::generate("tenant-b", "Tenant B", 30).unwrap();
        let cas = [ca.certificate().clone()];
        let (id, tls) = device();
        let (other_id, _) = device();
        let now = now_unix();
        let uri = |s: String| SanType::URI(ia5(s).unwrap());
        let edited = |edit: &dyn Fn(&mut CertificateParams)| custom(&ca, &tls, &id, edit);

        let good = ca
            .issue_device_certificate(&id, TENANT, tls.public_key(), now, 86_400)
            .unwrap()
            .into_der();
        let other = other_tenant
            .issue_device_certificate(&id, "tenant-b", tls.public_key(), now, 86_400)
            .unwrap()
            .into_der();
        let claims_b = edited(&|p| {
            p.distinguished_name = rcgen::DistinguishedName::new();
            p.distinguished_name
                .push(DnType::CommonName, id.to_string());
            p.subject_alt_names = vec![
                uri(format!("{DEVICE_URI_PREFIX}{id}")),
                uri(format!("{TENANT_URI_PREFIX}tenant-b")),
            ];
        });
        let no_sans = edited(&|p| p.subject_alt_names.clear());
        let no_tenant = edited(&|p| {
            p.subject_alt_names.pop();
        });
        let two_devices = edited(&|p| {
            p.subject_alt_names
                .push(uri(format!("URN:SEVENFOLD:DEVICE:{other_id}")));
        });
        let upper_id = edited(&|p| {
            p.subject_alt_names[0] = uri(format!(
                "{DEVICE_URI_PREFIX}{}",
                id.to_string().to_uppercase()
            ));
        });
        let bad_tenant = edited(&|p| {
            p.subject_alt_names[1] = uri(format!("{TENANT_URI_PREFIX}a/b"));
        });
        let other_cn = edited(&|p| {
            p.distinguished_name = rcgen::DistinguishedName::new();
            p.distinguished_name
                .push(DnType::CommonName, other_id.to_string());
        });
        let no_cn = edited(&|p| p.distinguished_name = rcgen::DistinguishedName::new());
        let other_org = edited(&|p| {
            p.distinguished_name
                .push(DnType::OrganizationName, "tenant-b");
        });
        let server_auth = edited(&|p| p.extended_key_usages = vec![Eku::ServerAuth]);
        let no_eku = edited(&|p| p.extended_key_usages.clear());
        let both_ekus = edited(&|p| p.extended_key_usages.push(Eku::ServerAuth));
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        let trailing = [good.as_slice(), &[0]].concat();
        let pem = crate::input::to_pem(&good);
        let ca_der = ca.certificate().der();

        let both = [ca.certificate().clone(), other_tenant.certificate().clone()];
        let t = &cas[..];
        let cases: &[Case<'_>] = &[
            ("as issued", &[&good], t, now, Device),
            ("as PEM", &[pem.as_bytes()], t, now, Device),
            ("with its CA after it", &[&good, ca_der], t, now, Device),
            ("among several CAs", &[&good], &both, now, Device),
            ("24 h later", &[&good], t, now + DAY, Device),
            ("after 24 h", &[&good], t, now + DAY + 1, Expired),
            ("in 2 days", &[&good], t, now + 2 * DAY, Expired),
            (
                "before the skew window",
                &[&good],
                t,
                now - 301,
                NotYetValid,
            ),
            ("within the skew window", &[&good], t, now - 300, Device),
            ("other tenant's", &[&other], t, now, Untrusted),
            ("no CAs", &[&good], &[], now, Untrusted),
            ("claims another tenant", &[&claims_b], t, now, Mismatch),
            ("no SANs", &[&no_sans], t, now, Missing),
            ("no tenant SAN", &[&no_tenant], t, now, Missing),
            ("two device SANs", &[&two_devices], t, now, Missing),
            ("upper-case device ID", &[&upper_id], t, now, Missing),
            ("invalid tenant ID", &[&bad_tenant], t, now, Missing),
            ("CN of another device", &[&other_cn], t, now, Mismatch),
            ("no CN", &[&no_cn], t, now, Missing),
            ("O of another tenant", &[&other_org], t, now, Mismatch),
            ("serverAuth", &[&server_auth], t, now, WrongUsage),
            ("no EKU", &[&no_eku], t, now, WrongUsage),
            ("clientAuth and serverAuth", &[&both_ekus], t, now, Device),
            ("the CA itself", &[ca_der], t, now, WrongUsage),
            ("signature altered", &[&flipped], t, now, BadSignature),
            ("trailing byte", &[&trailing], t, now, Malformed),
            ("empty chain", &[], t, now, Malformed),
            ("garbage", &[b"garbage"], t, now, Malformed),
        ];
        for (name, chain, cas, now, want) in cases {
            check(name, chain, cas, *now, want);
        }
    }

    #[test]
    fn identity_fields_and_the_verifying_ca() {
        let (old, _) = TenantCa::generate(TENANT, "Tenant A", 30).unwrap();
        let (new, _) = old.generate_successor(TENANT, "Tenant A", 30).unwrap();
        let (id, tls) = device();
        let now = now_unix();
        let cert = new
            .issue_device_certificate(&id, TENANT, tls.public_key(), now, 86_400)
            .unwrap();
        let both = [old.certificate().clone(), new.certificate().clone()];
        let got = verify_device_certificate(&[cert.der()], &both, now).unwrap();
        assert_eq!(got.device_id(), id);
        assert_eq!(got.tenant_id(), TENANT);
        assert_eq!(got.not_after(), now + DAY);
        assert_eq!(got.ca_fingerprint(), new.certificate().fingerprint());
        assert_eq!(got.serial_hex(), cert.serial_hex());
    }

    #[test]
    fn other_kinds_of_certificate_are_refused() {
        let (maker, _) = ManufacturerCa::generate("Maker", 30).unwrap();
        let (rot, _) = SoftwareKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let endorsement = maker.endorse(rot.public_key(), 30).unwrap();
        let now = now_unix();
        let own_ca = [maker.certificate().clone()];
        check(
            "endorsement",
            &[endorsement.der()],
            &own_ca,
            now,
            &Want::WrongUsage,
        );
        let (tenant, _) = TenantCa::generate(TENANT, "Tenant A", 30).unwrap();
        let tenant_cas = [tenant.certificate().clone()];
        // webpki checks the usage before looking for the issuer.
        check(
            "endorsement",
            &[endorsement.der()],
            &tenant_cas,
            now,
            &Want::WrongUsage,
        );

        let (service, _, _) = ServiceCa::generate("Service").unwrap();
        let (chain_pem, _) = service
            .issue_server_cert(&["localhost".to_owned()], 30)
            .unwrap();
        let chain = crate::input::certificates(chain_pem.as_bytes()).unwrap();
        let own_ca = [service.certificate().clone()];
        check("server cert", &[&chain[0]], &own_ca, now, &Want::WrongUsage);
        check(
            "server cert",
            &[&chain[0]],
            &tenant_cas,
            now,
            &Want::WrongUsage,
        );

        // A clientAuth certificate with device names from a CA that names no
        // tenant (here, a manufacturer CA misused) is refused.
        let (id, tls) = device();
        let der = maker
            .authority
            .issue(
                device_certificate_params(&id, TENANT).unwrap(),
                tls.public_key(),
                Validity::days_from_now(1).unwrap(),
            )
            .unwrap();
        let got = verify_device_certificate(&[&der], &[maker.certificate().clone()], now);
        assert!(
            matches!(&got, Err(PkiError::UntrustedIssuer(m)) if m.contains("names no tenant")),
            "{got:?}"
        );
    }

    #[test]
    fn certificate_public_key_reads_the_certified_key() {
        let (ca, _) = TenantCa::generate(TENANT, "Tenant A", 30).unwrap();
        let (id, tls) = device();
        let cert = ca
            .issue_device_certificate(&id, TENANT, tls.public_key(), now_unix(), 60)
            .unwrap();
        assert_eq!(
            &certificate_public_key(cert.der()).unwrap(),
            tls.public_key()
        );
        assert_eq!(
            &certificate_public_key(cert.to_pem().as_bytes()).unwrap(),
            tls.public_key()
        );
        assert_eq!(
            certificate_public_key(ca.certificate().der())
                .unwrap()
                .spki_der(),
            ca.certificate().spki_der()
        );
        assert!(matches!(
            certificate_public_key(b"nope"),
            Err(PkiError::Malformed(_))
        ));
        // A P-384 key is not a Sevenfold key.
        let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let der = CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .self_signed(&p384)
            .unwrap();
        assert!(matches!(
            certificate_public_key(der.der()),
            Err(PkiError::UnsupportedKey(_))
        ));
    }

    mod props {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            #[test]
            fn arbitrary_bytes_are_refused_without_panic(
                bytes in proptest::collection::vec(any::<u8>(), 0..2048),
                der_body in proptest::collection::vec(any::<u8>(), 0..600),
            ) {
                let (ca, _) = TenantCa::generate(TENANT, "T", 2).unwrap();
                let cas = [ca.certificate().clone()];
                prop_assert!(verify_device_certificate(&[&bytes], &cas, now_unix()).is_err());
                let mut der = vec![0x30, 0x82];
                der.extend_from_slice(&u16::try_from(der_body.len()).unwrap().to_be_bytes());
                der.extend_from_slice(&der_body);
                prop_assert!(verify_device_certificate(&[&der], &cas, now_unix()).is_err());
                prop_assert!(verify_device_certificate(&[&der, &bytes], &cas, 0).is_err());
                let _ = certificate_public_key(&bytes);
                let _ = certificate_public_key(&der);
            }
        }

        #[test]
        fn every_single_byte_change_is_refused() {
            let (ca, _) = TenantCa::generate(TENANT, "T", 2).unwrap();
            let cas = [ca.certificate().clone()];
            let (id, tls) = device();
            let now = now_unix();
            let cert = ca
                .issue_device_certificate(&id, TENANT, tls.public_key(), now, 86_400)
                .unwrap()
                .into_der();
            let mut runner =
                proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(512));
            runner
                .run(&(0..cert.len(), 1u8..=255), |(at, xor)| {
                    let mut changed = cert.clone();
                    changed[at] ^= xor;
                    let got = verify_device_certificate(&[&changed], &cas, now);
                    prop_assert!(
                        got.is_err(),
                        "byte {} ^ {:#04x} accepted: {:?}",
                        at,
                        xor,
                        got
                    );
                    Ok(())
                })
                .unwrap();
        }
    }
}
