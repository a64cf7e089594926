//! Tenant CAs and the device certificates they issue.
//!
//! Each tenant has its own CA (ECDSA P-256). After a device passes
//! attestation, the Security Service issues it a short-lived (24 h) TLS
//! client certificate from the CA of the tenant that holds its claim. The
//! certificate is for the device's TLS key, which the CA never holds the
//! private half of, and names the device and the tenant:
//!
//! - subject `CN=<device-id>, O=<tenant-id>`;
//! - SAN URIs `urn:sevenfold:device:<device-id>` and
//!   `urn:sevenfold:tenant:<tenant-id>`;
//! - extendedKeyUsage clientAuth only, keyUsage digitalSignature, not a CA.
//!
//! A tenant CA names its tenant in a SAN URI `urn:sevenfold:tenant:<tenant-id>`
//! and in its subject OU, so [`crate::verify_device_certificate`] can insist
//! that a certificate's tenant is the tenant of the CA that signed it.
//!
//! Rotation: [`TenantCa::generate_successor`] makes a new CA (new key, the
//! generation number in its CN). During the overlap the service publishes
//! both CA certificates ([`chain_pem`]) and verifies against both, issuing
//! from the successor only; once every device certificate from the old CA has
//! expired (24 h), the old CA can be retired.

use std::fmt;

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose,
    SanType,
};
use sevenfold_rot::{DeviceId, KeyAlgorithm, PublicKey, SoftwareKey};
use x509_parser::x509::X509Name;
use zeroize::Zeroizing;

use crate::authority::{ia5, Authority};
use crate::input::{parse_x509, to_pem};
use crate::validity::{now_unix, Validity, MAX_VALIDITY_DAYS};
use crate::{CaCertificate, PkiError, DEVICE_URI_PREFIX};

/// Prefix of the URI subject alternative name that names a tenant, in tenant
/// CAs and in device certificates: `urn:sevenfold:tenant:<tenant-id>`.
pub const TENANT_URI_PREFIX: &str = "urn:sevenfold:tenant:";

/// The organization (`O=`) of a tenant CA made by [`TenantCa::generate`].
pub const TENANT_ORGANIZATION: &str = "Sevenfold tenant";

/// How long a device certificate is valid after issuance: 24 hours.
pub const DEVICE_CERTIFICATE_VALIDITY_SECONDS: u32 = 86_400;

/// How far before "now" a device certificate starts, so that a verifier
/// whose clock is a little behind the service's still accepts it: 5 minutes.
pub const CLOCK_SKEW_SECONDS: i64 = 300;

/// A reasonable validity for a tenant CA, in days (5 years). Rotate well
/// before the end: device certificates are never issued past the CA's expiry.
pub const TENANT_CA_VALIDITY_DAYS: u32 = 1_825;

/// Longest tenant ID accepted (a UUID is 36 characters).
pub const MAX_TENANT_ID_LEN: usize = 64;

/// Longest proof-of-possession verification code accepted.
pub const MAX_VERIFICATION_CODE_LEN: usize = 64;

/// Validity of a proof-of-possession certificate, in days.
const PROOF_OF_POSSESSION_DAYS: u32 = 1;

/// Longest CN of a tenant CA (X.520 `ub-common-name`).
const MAX_CA_COMMON_NAME_LEN: usize = 64;

/// What every tenant CA's CN ends with (before an optional generation).
const CA_NAME_SUFFIX: &str = " device CA";

/// A tenant's CA: certificate and private key, able to issue device certificates.
pub struct TenantCa {
    pub(crate) authority: Authority,
    tenant_id: String,
    generation: u32,
}

/// What to keep of a new tenant CA.
///
/// `cert_pem` is public (publish it: devices' peers and third parties trust
/// it). `key_pkcs8` is the CA's private key as PKCS#8 DER; store it only
/// wrapped (see [`crate::KeyWrap`]). It is wiped from memory on drop.
pub struct TenantCaFiles {
    /// The CA certificate, one PEM `CERTIFICATE` block.
    pub cert_pem: String,
    /// The CA private key, PKCS#8 DER.
    pub key_pkcs8: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for TenantCaFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantCaFiles")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

impl TenantCa {
    /// Makes a new tenant CA: an ECDSA P-256 key and a self-signed certificate
    /// with `CN=<tenant_name> device CA, O=Sevenfold tenant, OU=<tenant_id>`,
    /// SAN URI `urn:sevenfold:tenant:<tenant_id>`, basicConstraints CA with
    /// pathLenConstraint 0, keyUsage keyCertSign + cRLSign, valid from an hour
    /// ago for `validity_days` days (see [`TENANT_CA_VALIDITY_DAYS`]).
    ///
    /// `tenant_id` must be 1 to [`MAX_TENANT_ID_LEN`] characters of
    /// `A-Z a-z 0-9 - _ .` (a UUID fits). `tenant_name` is only for people to
    /// read; it is shortened to fit the 64-character CN limit.
    pub fn generate(
        tenant_id: &str,
        tenant_name: &str,
        validity_days: u32,
    ) -> Result<(TenantCa, TenantCaFiles), PkiError> {
        TenantCa::generate_generation(tenant_id, tenant_name, validity_days, 1)
    }

    /// Makes the successor of this CA for rotation: a new key and certificate
    /// for the same tenant, one generation later (`CN=<tenant_name> device CA
    /// (gen N)`). Publish both certificates until the device certificates of
    /// this CA have expired, and issue from the successor.
    pub fn generate_successor(
        &self,
        tenant_id: &str,
        tenant_name: &str,
        validity_days: u32,
    ) -> Result<(TenantCa, TenantCaFiles), PkiError> {
        if tenant_id != self.tenant_id {
            return Err(PkiError::InvalidArgument(format!(
                "this CA belongs to tenant {:?}, so its successor cannot be made for tenant {tenant_id:?}",
                self.tenant_id
            )));
        }
        let generation = self.generation.checked_add(1).ok_or_else(|| {
            PkiError::InvalidArgument("the tenant CA generation number is exhausted".into())
        })?;
        TenantCa::generate_generation(tenant_id, tenant_name, validity_days, generation)
    }

    fn generate_generation(
        tenant_id: &str,
        tenant_name: &str,
        validity_days: u32,
        generation: u32,
    ) -> Result<(TenantCa, TenantCaFiles), PkiError> {
        check_tenant_id(tenant_id)?;
        let common_name = ca_common_name(tenant_name, generation)?;
        let uri = ia5(format!("{TENANT_URI_PREFIX}{tenant_id}"))?;
        let new = Authority::generate_with(
            &common_name,
            TENANT_ORGANIZATION,
            Validity::days_from_now(validity_days)?,
            |params| {
                params
                    .distinguished_name
                    .push(DnType::OrganizationalUnitName, tenant_id);
                params.subject_alt_names = vec![SanType::URI(uri)];
                Ok(())
            },
        )?;
        if new.authority.certificate().tenant_id() != Some(tenant_id) {
            return Err(PkiError::Internal(
                "the tenant CA just made does not name its tenant".into(),
            ));
        }
        let files = TenantCaFiles {
            cert_pem: new.cert_pem,
            key_pkcs8: new.key_pkcs8,
        };
        Ok((
            TenantCa {
                authority: new.authority,
                tenant_id: tenant_id.to_owned(),
                generation,
            },
            files,
        ))
    }

    /// Loads a tenant CA from its certificate (PEM or DER) and its private
    /// key (PKCS#8, DER or PEM), checking that they belong together
    /// ([`PkiError::KeyMismatch`]) and that the certificate names its tenant
    /// ([`PkiError::MissingIdentity`]).
    pub fn load(cert_der_or_pem: &[u8], key_pkcs8: &[u8]) -> Result<TenantCa, PkiError> {
        let cert = CaCertificate::parse(cert_der_or_pem)?;
        let key = if key_pkcs8.first() == Some(&0x30) {
            SoftwareKey::from_pkcs8_der(key_pkcs8)
        } else {
            let text = std::str::from_utf8(key_pkcs8)
                .map_err(|_| PkiError::InvalidKey("neither PKCS#8 DER nor PEM text".into()))?;
            SoftwareKey::from_pem(text)
        }
        .map_err(|e| PkiError::InvalidKey(e.to_string()))?;
        let tenant_id = cert.tenant_id().map(str::to_owned).ok_or_else(|| {
            PkiError::MissingIdentity(format!(
                "CA certificate \"{}\" does not name a tenant (one SAN URI \
                 {TENANT_URI_PREFIX}<tenant-id>); load a certificate made by TenantCa::generate",
                cert.subject()
            ))
        })?;
        let generation = generation_of(cert.der())?;
        Ok(TenantCa {
            authority: Authority::from_parts(cert, key)?,
            tenant_id,
            generation,
        })
    }

    /// The CA certificate (what verifiers of device certificates trust).
    pub fn certificate(&self) -> &CaCertificate {
        self.authority.certificate()
    }

    /// The tenant this CA belongs to.
    pub fn tenant_id(&self) -> &str {
        &self.tenant_id
    }

    /// The CA's generation: 1 for [`TenantCa::generate`], one more for each
    /// [`TenantCa::generate_successor`].
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// Issues a device certificate for `tls_key` (the device's TLS key, whose
    /// private half this CA never holds) after the device has attested.
    ///
    /// Subject `CN=<device-id>, O=<tenant-id>`; SAN URIs
    /// `urn:sevenfold:device:<device-id>` and `urn:sevenfold:tenant:<tenant-id>`;
    /// extendedKeyUsage clientAuth; keyUsage digitalSignature; not a CA;
    /// a random serial. Valid from `now_unix` − [`CLOCK_SKEW_SECONDS`] until
    /// `now_unix + validity_seconds` (use [`DEVICE_CERTIFICATE_VALIDITY_SECONDS`]).
    ///
    /// Refuses, rather than shortening the certificate, when it would outlive
    /// the CA ([`PkiError::CaExpiresTooSoon`]: rotate the tenant CA), when the
    /// CA is not valid at `now_unix`, and when `tenant_id` is not this CA's
    /// tenant.
    pub fn issue_device_certificate(
        &self,
        device_id: &DeviceId,
        tenant_id: &str,
        tls_key: &PublicKey,
        now_unix: i64,
        validity_seconds: u32,
    ) -> Result<DeviceCertificate, PkiError> {
        if tenant_id != self.tenant_id {
            return Err(PkiError::InvalidArgument(format!(
                "this CA belongs to tenant {:?}, not {tenant_id:?}; issue with that tenant's CA",
                self.tenant_id
            )));
        }
        if validity_seconds == 0 || validity_seconds / 86_400 > MAX_VALIDITY_DAYS {
            return Err(PkiError::InvalidArgument(format!(
                "device certificate validity of {validity_seconds} seconds; use \
                 {DEVICE_CERTIFICATE_VALIDITY_SECONDS} (24 hours)"
            )));
        }
        let ca = self.certificate();
        ca.check_valid_at(now_unix)?;
        let requested_not_after = now_unix.saturating_add(i64::from(validity_seconds));
        if requested_not_after > ca.not_after() {
            return Err(PkiError::CaExpiresTooSoon {
                ca_subject: ca.subject().to_owned(),
                ca_not_after: ca.not_after(),
                requested_not_after,
            });
        }
        let validity = Validity {
            not_before: now_unix
                .saturating_sub(CLOCK_SKEW_SECONDS)
                .max(ca.not_before()),
            not_after: requested_not_after,
        };
        let der = self.authority.issue(
            device_certificate_params(device_id, tenant_id)?,
            tls_key,
            validity,
        )?;
        // The signature is this CA's own, made a moment ago: read back the
        // serial and expiry without re-verifying it (the round trip through
        // `verify_device_certificate` is covered by this module's tests).
        let parsed = parse_x509(&der)?;
        let not_after = parsed.validity().not_after.timestamp();
        if not_after != validity.not_after {
            return Err(PkiError::Internal(format!(
                "the device certificate just issued expires at {not_after}, not {}",
                validity.not_after
            )));
        }
        let serial_hex = hex::encode(parsed.raw_serial());
        Ok(DeviceCertificate {
            not_after,
            serial_hex,
            der,
        })
    }

    /// A proof-of-possession ("verification") certificate, PEM: a leaf signed
    /// by this CA whose subject CN is `verification_code`, valid for a day
    /// (not past the CA's expiry), for a fresh key that is thrown away.
    ///
    /// This is how a cloud IoT hub that is asked to trust this CA checks that
    /// the requester controls it: the hub hands out a code, and the
    /// certificate proves the CA's key signed it. The certificate carries no
    /// extendedKeyUsage and no device names, so it is useless as a device
    /// certificate. The code must be 1 to [`MAX_VERIFICATION_CODE_LEN`]
    /// characters of `A-Z a-z 0-9 -`.
    pub fn proof_of_possession(&self, verification_code: &str) -> Result<String, PkiError> {
        check_verification_code(verification_code)?;
        self.certificate().check_valid_at(now_unix())?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, verification_code);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.is_ca = IsCa::ExplicitNoCa;
        let (throwaway, _pkcs8) = SoftwareKey::generate(KeyAlgorithm::EcdsaP256)
            .map_err(|e| PkiError::Internal(format!("key generation: {e}")))?;
        let der = self.authority.issue(
            params,
            throwaway.public_key(),
            Validity::days_from_now(PROOF_OF_POSSESSION_DAYS)?,
        )?;
        Ok(to_pem(&der))
    }
}

impl fmt::Debug for TenantCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantCa")
            .field("tenant_id", &self.tenant_id)
            .field("generation", &self.generation)
            .field("certificate", self.certificate())
            .finish_non_exhaustive()
    }
}

/// The CA certificates `cas` as one PEM bundle, in the order given: the
/// "tenant CA download" a third party installs as its trust store. During a
/// rotation it holds the current CA and its successor.
pub fn chain_pem(cas: &[&CaCertificate]) -> String {
    cas.iter().map(|ca| ca.to_pem()).collect()
}

/// A device certificate as issued: give it to the device with the chain
/// ([`TenantCa::certificate`]) for its TLS client identity.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceCertificate {
    der: Vec<u8>,
    not_after: i64,
    serial_hex: String,
}

impl DeviceCertificate {
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

    /// End of its validity (inclusive), unix seconds: when the device must
    /// have a new one (it re-attests well before).
    pub fn not_after(&self) -> i64 {
        self.not_after
    }

    /// The serial number, lower-case hex (for records and revocation lists).
    pub fn serial_hex(&self) -> &str {
        &self.serial_hex
    }
}

impl fmt::Debug for DeviceCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceCertificate")
            .field("serial_hex", &self.serial_hex)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// The contents of a device certificate (everything but the key, serial and
/// validity, which [`Authority::issue`] fills in).
pub(crate) fn device_certificate_params(
    device_id: &DeviceId,
    tenant_id: &str,
) -> Result<CertificateParams, PkiError> {
    check_tenant_id(tenant_id)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, device_id.to_string());
    params
        .distinguished_name
        .push(DnType::OrganizationName, tenant_id);
    params.subject_alt_names = vec![
        SanType::URI(ia5(format!("{DEVICE_URI_PREFIX}{device_id}"))?),
        SanType::URI(ia5(format!("{TENANT_URI_PREFIX}{tenant_id}"))?),
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.is_ca = IsCa::ExplicitNoCa;
    Ok(params)
}

/// A tenant ID: 1 to [`MAX_TENANT_ID_LEN`] characters of `A-Z a-z 0-9 - _ .`,
/// so that it can stand in a URN and a subject name as it is.
pub(crate) fn check_tenant_id(tenant_id: &str) -> Result<(), PkiError> {
    let ok = !tenant_id.is_empty()
        && tenant_id.len() <= MAX_TENANT_ID_LEN
        && tenant_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(PkiError::InvalidArgument(format!(
            "tenant ID {tenant_id:?} must be 1 to {MAX_TENANT_ID_LEN} characters of \
             A-Z, a-z, 0-9, '-', '_' and '.'"
        )))
    }
}

/// `s` without `prefix`, if it starts with it in any letter case.
pub(crate) fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

/// `<tenant_name> device CA` or `<tenant_name> device CA (gen N)`, the name
/// shortened so the whole fits in 64 characters.
fn ca_common_name(tenant_name: &str, generation: u32) -> Result<String, PkiError> {
    let name = tenant_name.trim();
    if name.is_empty() || name.chars().any(char::is_control) {
        return Err(PkiError::InvalidArgument(format!(
            "tenant name {tenant_name:?} must be non-empty, without control characters"
        )));
    }
    let suffix = if generation <= 1 {
        CA_NAME_SUFFIX.to_owned()
    } else {
        format!("{CA_NAME_SUFFIX} (gen {generation})")
    };
    let budget = MAX_CA_COMMON_NAME_LEN.saturating_sub(suffix.chars().count());
    let short: String = name.chars().take(budget).collect();
    Ok(format!("{}{suffix}", short.trim_end()))
}

/// The generation a tenant CA's CN states: `N` for `… device CA (gen N)`,
/// else 1.
fn generation_of(ca_der: &[u8]) -> Result<u32, PkiError> {
    let cert = parse_x509(ca_der)?;
    Ok(common_name(cert.subject())
        .as_deref()
        .and_then(parse_generation)
        .unwrap_or(1))
}

fn common_name(name: &X509Name<'_>) -> Option<String> {
    name.iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned)
}

fn parse_generation(cn: &str) -> Option<u32> {
    let rest = cn.strip_suffix(')')?;
    let (head, number) = rest.rsplit_once(" (gen ")?;
    if !head.ends_with(CA_NAME_SUFFIX) {
        return None;
    }
    number.parse().ok().filter(|n| *n >= 2)
}

/// A proof-of-possession code: 1 to 64 characters of `A-Z a-z 0-9 -`.
fn check_verification_code(code: &str) -> Result<(), PkiError> {
    let ok = !code.is_empty()
        && code.len() <= MAX_VERIFICATION_CODE_LEN
        && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(PkiError::InvalidArgument(format!(
            "verification code {code:?} must be 1 to {MAX_VERIFICATION_CODE_LEN} characters of \
             A-Z, a-z, 0-9 and '-'; copy it exactly as the hub shows it"
        )))
    }
}

#[cfg(test)]
mod tests {
    use x509_parser::extensions::GeneralName;

    use super::*;
    use crate::input::one_certificate;

    const TENANT: &str = "6f1c2b9e-8d4a-4c1e-9a57-3b2d1e0f4a6c";

    fn new_ca() -> (TenantCa, TenantCaFiles) {
        TenantCa::generate(TENANT, "Contoso", 30).unwrap()
    }

    fn device_key() -> SoftwareKey {
        SoftwareKey::generate(KeyAlgorithm::EcdsaP256).unwrap().0
    }

    #[test]
    fn ca_certificate_profile() {
        let (ca, files) = new_ca();
        assert_eq!(ca.tenant_id(), TENANT);
        assert_eq!(ca.generation(), 1);
        let der = one_certificate(files.cert_pem.as_bytes()).unwrap();
        assert_eq!(der, ca.certificate().der());
        let cert = parse_x509(&der).unwrap();
        assert_eq!(
            cert.subject().to_string(),
            format!("CN=Contoso device CA, O=Sevenfold tenant, OU={TENANT}")
        );
        assert_eq!(cert.subject(), cert.issuer());
        let bc = cert.basic_constraints().unwrap().unwrap();
        assert!(bc.critical && bc.value.ca);
        assert_eq!(bc.value.path_len_constraint, Some(0));
        let ku = cert.key_usage().unwrap().unwrap().value;
        assert!(ku.key_cert_sign() && ku.crl_sign() && !ku.digital_signature());
        let san = cert.subject_alternative_name().unwrap().unwrap();
        let uri = format!("{TENANT_URI_PREFIX}{TENANT}");
        assert_eq!(
            san.value.general_names,
            vec![GeneralName::URI(uri.as_str())]
        );
        assert_eq!(ca.certificate().tenant_id(), Some(TENANT));
        // The key file is PKCS#8 DER of the certificate's key.
        let key = SoftwareKey::from_pkcs8_der(&files.key_pkcs8).unwrap();
        assert_eq!(key.public_key().spki_der(), ca.certificate().spki_der());
        assert!(!format!("{files:?}").contains("key_pkcs8"));
        assert!(format!("{ca:?}").contains(TENANT));
    }

    #[test]
    fn device_certificate_profile() {
        let (ca, _) = new_ca();
        let key = device_key();
        let id = DeviceId::of(device_key().public_key());
        let now = now_unix();
        let cert = ca
            .issue_device_certificate(&id, TENANT, key.public_key(), now, 86_400)
            .unwrap();
        let parsed = parse_x509(cert.der()).unwrap();
        assert_eq!(parsed.subject().to_string(), format!("CN={id}, O={TENANT}"));
        assert_eq!(
            parsed.issuer(),
            &parse_x509(ca.certificate().der())
                .unwrap()
                .subject()
                .clone()
        );
        assert_eq!(parsed.public_key().raw, key.public_key().spki_der());
        let device_uri = format!("{DEVICE_URI_PREFIX}{id}");
        let tenant_uri = format!("{TENANT_URI_PREFIX}{TENANT}");
        assert_eq!(
            parsed
                .subject_alternative_name()
                .unwrap()
                .unwrap()
                .value
                .general_names,
            vec![
                GeneralName::URI(device_uri.as_str()),
                GeneralName::URI(tenant_uri.as_str())
            ]
        );
        let eku = parsed.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth && !eku.any && eku.other.is_empty());
        let ku = parsed.key_usage().unwrap().unwrap().value;
        assert!(ku.digital_signature() && !ku.key_cert_sign());
        assert!(!parsed.basic_constraints().unwrap().unwrap().value.ca);
        assert_eq!(parsed.validity().not_before.timestamp(), now - 300);
        assert_eq!(parsed.validity().not_after.timestamp(), now + 86_400);
        assert_eq!(cert.not_after(), now + 86_400);
        assert_eq!(cert.serial_hex().len(), 32);
        assert_eq!(
            cert.serial_hex(),
            parsed
                .raw_serial()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        let again = ca
            .issue_device_certificate(&id, TENANT, key.public_key(), now, 86_400)
            .unwrap();
        assert_ne!(again.serial_hex(), cert.serial_hex());
        assert!(format!("{cert:?}").contains(cert.serial_hex()));
    }

    #[test]
    fn issuance_is_refused_past_the_ca_or_for_another_tenant() {
        let (ca, _) = TenantCa::generate(TENANT, "Contoso", 1).unwrap();
        let key = device_key();
        let id = DeviceId::of(key.public_key());
        let now = now_unix();
        let err = ca
            .issue_device_certificate(&id, TENANT, key.public_key(), now, 2 * 86_400)
            .unwrap_err();
        assert!(
            matches!(err, PkiError::CaExpiresTooSoon { .. })
                && err.to_string().contains("rotate the tenant CA"),
            "{err}"
        );
        // Up to the CA's own end is fine.
        let until_end = u32::try_from(ca.certificate().not_after() - now).unwrap();
        let cert = ca
            .issue_device_certificate(&id, TENANT, key.public_key(), now, until_end)
            .unwrap();
        assert_eq!(cert.not_after(), ca.certificate().not_after());
        for (tenant, seconds) in [("other-tenant", 60), (TENANT, 0)] {
            let got = ca.issue_device_certificate(&id, tenant, key.public_key(), now, seconds);
            assert!(matches!(got, Err(PkiError::InvalidArgument(_))), "{got:?}");
        }
        let got = ca.issue_device_certificate(
            &id,
            TENANT,
            key.public_key(),
            ca.certificate().not_after() + 10,
            60,
        );
        assert!(matches!(got, Err(PkiError::Expired { .. })), "{got:?}");
    }

    #[test]
    fn tenant_ids_and_names_are_checked() {
        for bad in ["", "a b", "ten/ant", "ümlaut", &"x".repeat(65), "a:b"] {
            assert!(
                matches!(
                    TenantCa::generate(bad, "Name", 10),
                    Err(PkiError::InvalidArgument(_))
                ),
                "{bad:?}"
            );
        }
        for bad in ["", "  ", "line\nbreak"] {
            assert!(
                matches!(
                    TenantCa::generate(TENANT, bad, 10),
                    Err(PkiError::InvalidArgument(_))
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            TenantCa::generate(TENANT, "Name", 0),
            Err(PkiError::InvalidArgument(_))
        ));
        assert!(check_tenant_id(&"a".repeat(64)).is_ok());
        assert!(check_tenant_id("Tenant_1.example-2").is_ok());
    }

    #[test]
    fn long_names_are_shortened_and_generations_parse_back() {
        let long = "Ä".repeat(200);
        for generation in [1, 2, 17, u32::MAX] {
            let cn = ca_common_name(&long, generation).unwrap();
            assert_eq!(cn.chars().count(), 64, "{cn}");
            let expected = if generation == 1 {
                None
            } else {
                Some(generation)
            };
            assert_eq!(parse_generation(&cn), expected, "{cn}");
        }
        assert_eq!(ca_common_name("  Acme  ", 1).unwrap(), "Acme device CA");
        assert_eq!(ca_common_name("Acme", 3).unwrap(), "Acme device CA (gen 3)");
        for cn in [
            "Acme (gen 2)",
            "Acme device CA (gen x)",
            "Acme device CA (gen 1)",
        ] {
            assert_eq!(parse_generation(cn), None, "{cn}");
        }
        let (ca, _) = TenantCa::generate(TENANT, &"Long name ".repeat(20), 10).unwrap();
        assert!(ca.certificate().subject().contains("device CA"));
    }

    #[test]
    fn successors_count_generations_and_reload() {
        let (first, _) = new_ca();
        let (second, files) = first.generate_successor(TENANT, "Contoso", 30).unwrap();
        assert_eq!(second.generation(), 2);
        assert_ne!(
            second.certificate().spki_der(),
            first.certificate().spki_der()
        );
        assert!(second
            .certificate()
            .subject()
            .starts_with("CN=Contoso device CA (gen 2), O=Sevenfold tenant"));
        let reloaded = TenantCa::load(files.cert_pem.as_bytes(), &files.key_pkcs8).unwrap();
        assert_eq!(reloaded.generation(), 2);
        assert_eq!(reloaded.tenant_id(), TENANT);
        let third = reloaded
            .generate_successor(TENANT, "Contoso", 30)
            .unwrap()
            .0;
        assert_eq!(third.generation(), 3);
        assert!(matches!(
            first.generate_successor("someone-else", "Contoso", 30),
            Err(PkiError::InvalidArgument(_))
        ));
    }

    #[test]
    fn load_takes_der_or_pem_and_checks_key_and_tenant() {
        let (ca, files) = new_ca();
        let key_pem = SoftwareKey::pkcs8_to_pem(&files.key_pkcs8);
        for (cert, key) in [
            (files.cert_pem.as_bytes(), files.key_pkcs8.as_slice()),
            (ca.certificate().der(), key_pem.as_bytes()),
        ] {
            let loaded = TenantCa::load(cert, key).unwrap();
            assert_eq!(loaded.certificate(), ca.certificate());
            assert_eq!(loaded.generation(), 1);
        }
        let (_, other) = new_ca();
        assert!(matches!(
            TenantCa::load(files.cert_pem.as_bytes(), &other.key_pkcs8),
            Err(PkiError::KeyMismatch { .. })
        ));
        for bad in [&b"junk"[..], &[0x30, 0x00], &[0xff, 0xfe]] {
            assert!(
                matches!(
                    TenantCa::load(files.cert_pem.as_bytes(), bad),
                    Err(PkiError::InvalidKey(_))
                ),
                "{bad:?}"
            );
        }
        // A manufacturer CA names no tenant.
        let new = Authority::generate("Maker", "M", Validity::days_from_now(2).unwrap()).unwrap();
        let err = TenantCa::load(new.cert_pem.as_bytes(), &new.key_pkcs8).unwrap_err();
        assert!(
            matches!(&err, PkiError::MissingIdentity(m) if m.contains("does not name a tenant")),
            "{err}"
        );
    }

    #[test]
    fn proof_of_possession_certificate() {
        let (ca, _) = new_ca();
        let code = "A1B2-c3d4-0000";
        let pem = ca.proof_of_possession(code).unwrap();
        let der = one_certificate(pem.as_bytes()).unwrap();
        let cert = parse_x509(&der).unwrap();
        assert_eq!(cert.subject().to_string(), format!("CN={code}"));
        assert!(cert.extended_key_usage().unwrap().is_none());
        assert!(!cert.basic_constraints().unwrap().unwrap().value.ca);
        let lifetime =
            cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
        assert!(lifetime <= 86_400 + 3_600, "{lifetime}");
        // Not usable as a device certificate.
        let got = crate::verify_device_certificate(
            &[&der],
            std::slice::from_ref(ca.certificate()),
            now_unix(),
        );
        assert!(matches!(got, Err(PkiError::WrongUsage(_))), "{got:?}");
        for bad in ["", "has space", "semi;colon", "ü", &"a".repeat(65), "a\n"] {
            assert!(
                matches!(
                    ca.proof_of_possession(bad),
                    Err(PkiError::InvalidArgument(_))
                ),
                "{bad:?}"
            );
        }
        assert!(ca.proof_of_possession(&"Z9-".repeat(21)).is_ok());
    }

    #[test]
    fn chain_pem_concatenates_in_order() {
        let (a, _) = new_ca();
        let (b, _) = a.generate_successor(TENANT, "Contoso", 30).unwrap();
        let bundle = chain_pem(&[a.certificate(), b.certificate()]);
        assert_eq!(
            CaCertificate::parse_bundle(&bundle).unwrap(),
            vec![a.certificate().clone(), b.certificate().clone()]
        );
        assert_eq!(chain_pem(&[]), "");
    }
}
