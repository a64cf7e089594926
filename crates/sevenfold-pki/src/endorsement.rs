//! The service side: is this endorsement certificate genuine, and which device is it?
//!
//! Two checks, in order:
//! 1. **Trust**: the certificate chains to one of the configured manufacturer
//!    CAs, every certificate is within its validity period at `now`, and the
//!    chain allows the endorsement purpose. rustls-webpki does the chain, so
//!    endorsements are judged by the same code that judges TLS certificates.
//! 2. **Identity**: the device ID is computed from the certificate's public
//!    key (never read from a name), and every name that claims a device ID —
//!    the subject CN and `urn:sevenfold:device:` SAN URIs — must agree with it.
//!    A disagreement fails closed.

use rustls_pki_types::{SignatureVerificationAlgorithm, UnixTime};
use sevenfold_rot::{DeviceId, PublicKey};
use webpki::{ExtendedKeyUsageValidator, KeyPurposeId, KeyPurposeIdIter};
use x509_parser::extensions::{ExtendedKeyUsage, GeneralName};

use crate::chain;
use crate::input::{one_certificate, parse_x509};
use crate::validity::check_period;
use crate::{CaCertificate, PkiError, DEVICE_URI_PREFIX, ENDORSEMENT_EKU};

/// The extended key usage of a TPM endorsement key certificate,
/// `2.23.133.8.1` (`tcg-kp-EKCertificate`, TCG EK Credential Profile).
pub const TPM_EK_CERTIFICATE_EKU: &[u64] = &[2, 23, 133, 8, 1];

/// Most intermediate certificates accepted between an endorsement and its CA.
pub const MAX_INTERMEDIATES: usize = 8;

/// What to do about an endorsement from an untrusted issuer.
const TRUST_ADVICE: &str = "; add the manufacturer's CA certificate to the trusted CAs, or have \
                            the device endorsed by a manufacturer CA that is trusted";

/// Signature algorithms accepted in endorsement chains: Sevenfold's own
/// (ECDSA P-256, Ed25519), plus P-384 and RSA, which TPM vendors' EK
/// certificate chains use.
pub(crate) static SIGNATURE_ALGORITHMS: &[&dyn SignatureVerificationAlgorithm] = &[
    webpki::aws_lc_rs::ECDSA_P256_SHA256,
    webpki::aws_lc_rs::ECDSA_P256_SHA384,
    webpki::aws_lc_rs::ECDSA_P384_SHA256,
    webpki::aws_lc_rs::ECDSA_P384_SHA384,
    webpki::aws_lc_rs::ED25519,
    webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA256,
    webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA384,
    webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA512,
    webpki::aws_lc_rs::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
    webpki::aws_lc_rs::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
    webpki::aws_lc_rs::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
];

/// What an endorsement certificate must be issued for.
///
/// The default, [`EndorsementPolicy::sevenfold`], requires [`ENDORSEMENT_EKU`]
/// (what [`crate::ManufacturerCa::endorse`] issues). A TPM's EK certificate
/// carries [`TPM_EK_CERTIFICATE_EKU`] instead: use [`EndorsementPolicy::tpm_ek`].
/// There is deliberately no policy that accepts any usage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndorsementPolicy {
    required_eku: Vec<u64>,
}

impl EndorsementPolicy {
    /// Requires [`ENDORSEMENT_EKU`].
    pub fn sevenfold() -> EndorsementPolicy {
        EndorsementPolicy::requiring_eku(ENDORSEMENT_EKU)
    }

    /// Requires [`TPM_EK_CERTIFICATE_EKU`].
    pub fn tpm_ek() -> EndorsementPolicy {
        EndorsementPolicy::requiring_eku(TPM_EK_CERTIFICATE_EKU)
    }

    /// Requires the extended key usage `oid` (its arcs, e.g. `&[2, 23, 133, 8, 1]`).
    pub fn requiring_eku(oid: &[u64]) -> EndorsementPolicy {
        EndorsementPolicy {
            required_eku: oid.to_vec(),
        }
    }

    /// The extended key usage the leaf must carry.
    pub fn required_eku(&self) -> &[u64] {
        &self.required_eku
    }
}

impl Default for EndorsementPolicy {
    fn default() -> Self {
        EndorsementPolicy::sevenfold()
    }
}

/// A verified endorsement: this device key was endorsed by a trusted manufacturer.
///
/// Only [`verify_endorsement`] and [`verify_endorsement_chain`] make one.
#[derive(Clone, Debug)]
pub struct Endorsement {
    device_id: DeviceId,
    public_key: PublicKey,
    manufacturer_fingerprint: String,
    not_after: i64,
    certificate_der: Vec<u8>,
}

impl Endorsement {
    /// The device ID, computed from the endorsed public key.
    pub fn device_id(&self) -> DeviceId {
        self.device_id
    }

    /// The endorsed root-of-trust public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    /// [`CaCertificate::fingerprint`] of the trusted CA the chain ended at.
    pub fn manufacturer_fingerprint(&self) -> &str {
        &self.manufacturer_fingerprint
    }

    /// End of the endorsement certificate's validity, unix seconds.
    pub fn not_after(&self) -> i64 {
        self.not_after
    }

    /// The endorsement certificate itself (DER), for the record.
    pub fn certificate_der(&self) -> &[u8] {
        &self.certificate_der
    }
}

/// Verifies a Sevenfold endorsement certificate (PEM or DER) issued directly
/// by one of the `trusted` manufacturer CAs, at time `now_unix`, under the
/// default [`EndorsementPolicy`].
///
/// See [`verify_endorsement_chain`] for what is checked.
pub fn verify_endorsement(
    cert: &[u8],
    trusted: &[CaCertificate],
    now_unix: i64,
) -> Result<Endorsement, PkiError> {
    verify_endorsement_chain(cert, &[], trusted, now_unix, &EndorsementPolicy::default())
}

/// Verifies an endorsement certificate `leaf` that chains through
/// `intermediates` (each PEM or DER, any order, at most [`MAX_INTERMEDIATES`])
/// to one of the `trusted` CAs, at time `now_unix`.
///
/// Checks, failing closed with a typed [`PkiError`]:
/// - the leaf and every certificate used are within their validity periods
///   ([`PkiError::Expired`], [`PkiError::NotYetValid`]), the trusted CA included;
/// - the chain ends at a trusted CA with good signatures
///   ([`PkiError::UntrustedIssuer`], [`PkiError::BadSignature`]);
/// - the leaf is not a CA and carries `policy`'s extended key usage, and no
///   intermediate's extended key usage excludes it ([`PkiError::WrongUsage`]);
/// - the leaf's key is ECDSA P-256 or Ed25519 ([`PkiError::UnsupportedKey`]);
/// - every subject CN, and every `urn:sevenfold:device:` SAN URI, names the
///   device ID of that key ([`PkiError::DeviceIdMismatch`]). Names that are
///   absent are not required: the device ID always comes from the key.
pub fn verify_endorsement_chain(
    leaf: &[u8],
    intermediates: &[&[u8]],
    trusted: &[CaCertificate],
    now_unix: i64,
    policy: &EndorsementPolicy,
) -> Result<Endorsement, PkiError> {
    // 1. Trust.
    let TrustedLeaf {
        der: leaf_der,
        facts,
        ca,
    } = trusted_leaf(leaf, intermediates, trusted, now_unix, policy)?;

    // 2. Identity.
    let public_key = PublicKey::from_spki_der(&facts.spki_der)
        .map_err(|e| PkiError::UnsupportedKey(e.to_string()))?;
    let device_id = DeviceId::of(&public_key);
    for cn in &facts.common_names {
        if cn.as_deref().and_then(DeviceId::from_hex) != Some(device_id) {
            return Err(PkiError::DeviceIdMismatch {
                computed: device_id,
                field: "subject CN",
                found: cn.clone().unwrap_or_else(|| "<not a string>".into()),
            });
        }
    }
    for uri in &facts.device_uris {
        // `device_uris` holds only URIs with the prefix, in any case.
        if uri
            .get(DEVICE_URI_PREFIX.len()..)
            .and_then(DeviceId::from_hex)
            != Some(device_id)
        {
            return Err(PkiError::DeviceIdMismatch {
                computed: device_id,
                field: "SAN URI",
                found: uri.clone(),
            });
        }
    }

    Ok(Endorsement {
        device_id,
        public_key,
        manufacturer_fingerprint: ca.fingerprint().to_owned(),
        not_after: facts.not_after,
        certificate_der: leaf_der,
    })
}

/// A leaf certificate whose chain to a trusted CA checked out.
pub(crate) struct TrustedLeaf<'t> {
    /// The leaf, DER.
    pub(crate) der: Vec<u8>,
    /// Its fields.
    pub(crate) facts: LeafFacts,
    /// The trusted CA the chain ends at.
    pub(crate) ca: &'t CaCertificate,
}

/// The trust half of [`verify_endorsement_chain`] (what a TPM's EK
/// certificate needs too): the leaf is valid now, chains through
/// `intermediates` to one of `trusted`, is not a CA, and carries `policy`'s
/// extended key usage, which no certificate of the chain excludes.
pub(crate) fn trusted_leaf<'t>(
    leaf: &[u8],
    intermediates: &[&[u8]],
    trusted: &'t [CaCertificate],
    now_unix: i64,
    policy: &EndorsementPolicy,
) -> Result<TrustedLeaf<'t>, PkiError> {
    let leaf_der = one_certificate(leaf)?;
    let intermediates = chain::intermediates(intermediates)?;
    let facts = LeafFacts::read(&leaf_der)?;
    check_period(&facts.subject, facts.not_before, facts.not_after, now_unix)?;

    if trusted.is_empty() {
        return Err(PkiError::UntrustedIssuer(format!(
            "no manufacturer CA is configured as trusted{TRUST_ADVICE}"
        )));
    }
    let rule = EkuRule {
        required: policy.required_eku(),
    };
    let ca = chain::path_to_trusted(&leaf_der, &intermediates, trusted, now_unix, &rule, |e| {
        from_webpki(e, &facts, policy, trusted.len())
    })?;

    // The chain allows the usage; the leaf must also state it explicitly.
    match &facts.ekus {
        Some(ekus) if ekus.iter().any(|e| e == policy.required_eku()) => {}
        Some(ekus) => {
            return Err(PkiError::WrongUsage(format!(
                "extendedKeyUsage is {}, not {}",
                dotted_list(ekus),
                dotted(policy.required_eku())
            )))
        }
        None => {
            return Err(PkiError::WrongUsage(format!(
                "no extendedKeyUsage; an endorsement must carry {}",
                dotted(policy.required_eku())
            )))
        }
    }
    Ok(TrustedLeaf {
        der: leaf_der.to_vec(),
        facts,
        ca,
    })
}

/// The leaf's fields that the verifier cross-checks, read with x509-parser.
pub(crate) struct LeafFacts {
    subject: String,
    issuer: String,
    not_before: i64,
    pub(crate) not_after: i64,
    pub(crate) spki_der: Vec<u8>,
    /// Each CN; `None` where it is not a decodable string.
    common_names: Vec<Option<String>>,
    /// SAN URIs in the `urn:sevenfold:device:` namespace (any case).
    device_uris: Vec<String>,
    /// The extendedKeyUsage OIDs, or `None` without the extension.
    ekus: Option<Vec<Vec<u64>>>,
}

impl LeafFacts {
    fn read(der: &[u8]) -> Result<LeafFacts, PkiError> {
        let cert = parse_x509(der)?;
        let common_names = cert
            .subject()
            .iter_common_name()
            .map(|cn| cn.as_str().ok().map(str::to_owned))
            .collect();
        let device_uris = match cert.subject_alternative_name() {
            Ok(Some(san)) => san
                .value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::URI(uri) if has_device_prefix(uri) => Some((*uri).to_owned()),
                    _ => None,
                })
                .collect(),
            Ok(None) => Vec::new(),
            Err(e) => return Err(PkiError::Malformed(format!("subjectAltName: {e}"))),
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
            spki_der: cert.public_key().raw.to_vec(),
            common_names,
            device_uris,
            ekus,
        })
    }
}

/// Whether `uri` is in the device namespace; compared without regard to
/// case so that `URN:Sevenfold:Device:…` cannot slip past the check.
fn has_device_prefix(uri: &str) -> bool {
    uri.get(..DEVICE_URI_PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(DEVICE_URI_PREFIX))
}

/// x509-parser splits well-known EKUs into flags; put them back as OIDs.
pub(crate) fn eku_oids(eku: &ExtendedKeyUsage<'_>) -> Vec<Vec<u64>> {
    const KP: [u64; 8] = [1, 3, 6, 1, 5, 5, 7, 3];
    let kp = |n: u64| {
        let mut oid = KP.to_vec();
        oid.push(n);
        oid
    };
    let flags = [
        (eku.any, vec![2, 5, 29, 37, 0]),
        (eku.server_auth, kp(1)),
        (eku.client_auth, kp(2)),
        (eku.code_signing, kp(3)),
        (eku.email_protection, kp(4)),
        (eku.time_stamping, kp(8)),
        (eku.ocsp_signing, kp(9)),
    ];
    let mut oids: Vec<Vec<u64>> = flags
        .into_iter()
        .filter_map(|(set, oid)| set.then_some(oid))
        .collect();
    for oid in &eku.other {
        match oid.iter() {
            Some(arcs) => oids.push(arcs.collect()),
            // An arc too large for u64 cannot be the one required; keep a
            // placeholder so the extension does not read as empty.
            None => oids.push(Vec::new()),
        }
    }
    oids
}

/// Tells webpki which extended key usages a chain may carry: each
/// certificate with the extension must include the required purpose; one
/// without it does not restrict (CA certificates usually have none). The
/// leaf's explicit EKU is checked separately, after the chain.
struct EkuRule<'a> {
    required: &'a [u64],
}

impl ExtendedKeyUsageValidator for EkuRule<'_> {
    fn validate(&self, iter: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        // Compare encoded OIDs: webpki 0.103's `KeyPurposeId::to_decoded_oid`
        // shifts by 8 bits per base-128 digit, so multi-byte arcs (59999, 133)
        // decode wrongly. An OID that cannot be encoded matches nothing.
        let required = encode_oid(self.required);
        let required = required.as_deref().map(KeyPurposeId::new);
        let mut empty = true;
        for purpose in iter {
            empty = false;
            if Some(purpose?) == required {
                return Ok(());
            }
        }
        if empty {
            Ok(())
        } else {
            // The variant with context needs a `'static` OID; this one is
            // deprecated but still part of webpki 0.103's API.
            #[allow(deprecated)]
            Err(webpki::Error::RequiredEkuNotFound)
        }
    }
}

/// DER contents of an OBJECT IDENTIFIER (X.690 8.19), or `None` if `arcs` is
/// not a valid OID.
fn encode_oid(arcs: &[u64]) -> Option<Vec<u8>> {
    let (&first, &second, rest) = match arcs {
        [first, second, rest @ ..] => (first, second, rest),
        _ => return None,
    };
    if first > 2 || (first < 2 && second >= 40) {
        return None;
    }
    let mut out = Vec::new();
    for arc in
        std::iter::once(first.checked_mul(40)?.checked_add(second)?).chain(rest.iter().copied())
    {
        let mut digits = vec![u8::try_from(arc & 0x7f).ok()?];
        let mut more = arc >> 7;
        while more > 0 {
            digits.push(u8::try_from(more & 0x7f).ok()? | 0x80);
            more >>= 7;
        }
        out.extend(digits.iter().rev());
    }
    Some(out)
}

fn from_webpki(
    error: webpki::Error,
    leaf: &LeafFacts,
    policy: &EndorsementPolicy,
    trusted: usize,
) -> PkiError {
    use webpki::Error as E;
    let secs = |t: UnixTime| i64::try_from(t.as_secs()).unwrap_or(i64::MAX);
    #[allow(deprecated)]
    match error {
        E::UnknownIssuer => PkiError::UntrustedIssuer(format!(
            "issuer \"{}\" is none of the {trusted} trusted CA(s), and no intermediate leads to \
             one{TRUST_ADVICE}",
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
        E::InvalidSignatureForPublicKey | E::SignatureAlgorithmMismatch => {
            PkiError::BadSignature(format!(
                "\"{}\" ({error}); it was altered or not signed by its named issuer",
                leaf.subject
            ))
        }
        E::RequiredEkuNotFound | E::RequiredEkuNotFoundContext(_) | E::EmptyEkuExtension => {
            PkiError::WrongUsage(format!(
                "the chain does not allow extendedKeyUsage {} (the certificate has {})",
                dotted(policy.required_eku()),
                leaf.ekus
                    .as_deref()
                    .map_or_else(|| "none".into(), dotted_list)
            ))
        }
        E::CaUsedAsEndEntity => {
            PkiError::WrongUsage("this is a CA certificate, not a device endorsement".into())
        }
        E::EndEntityUsedAsCa
        | E::PathLenConstraintViolated
        | E::NameConstraintViolation
        | E::CertDistrusted
        | E::CertRevoked
        | E::MaximumPathDepthExceeded
        | E::MaximumPathBuildCallsExceeded
        | E::MaximumSignatureChecksExceeded => PkiError::UntrustedIssuer(format!(
            "the chain is not acceptable ({error}){TRUST_ADVICE}"
        )),
        other => PkiError::Malformed(format!("{other}")),
    }
}

fn dotted(oid: &[u64]) -> String {
    oid.iter().map(u64::to_string).collect::<Vec<_>>().join(".")
}

pub(crate) fn dotted_list(oids: &[Vec<u64>]) -> String {
    oids.iter()
        .map(|o| dotted(o))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose as Eku, IsCa, Issuer, KeyPair,
        KeyUsagePurpose, SanType,
    };
    use sevenfold_rot::{KeyAlgorithm, SoftwareKey};

    use super::*;
    use crate::authority::{ia5, Authority};
    use crate::manufacturer::endorsement_params;
    use crate::validity::{now_unix, Validity};
    use crate::ManufacturerCa;

    const DAY: i64 = 86_400;

    /// What a case must come to.
    #[derive(Debug)]
    enum Want {
        Device,
        Untrusted,
        Expired,
        NotYetValid,
        WrongUsage,
        CnMismatch,
        SanMismatch,
        BadSignature,
        Malformed,
        UnsupportedKey,
    }

    /// Name, certificate, trusted CAs, time of the check, expected outcome.
    type Case<'a> = (&'static str, &'a [u8], &'a [CaCertificate], i64, Want);

    fn check(name: &str, cert: &[u8], trusted: &[CaCertificate], now: i64, want: &Want) {
        let got = verify_endorsement(cert, trusted, now);
        let ok = match (&got, want) {
            (Ok(_), Want::Device) => true,
            (Err(PkiError::UntrustedIssuer(_)), Want::Untrusted) => true,
            (Err(PkiError::Expired { .. }), Want::Expired) => true,
            (Err(PkiError::NotYetValid { .. }), Want::NotYetValid) => true,
            (Err(PkiError::WrongUsage(_)), Want::WrongUsage) => true,
            (Err(PkiError::DeviceIdMismatch { field, .. }), Want::CnMismatch) => {
                *field == "subject CN"
            }
            (Err(PkiError::DeviceIdMismatch { field, .. }), Want::SanMismatch) => {
                *field == "SAN URI"
            }
            (Err(PkiError::BadSignature(_)), Want::BadSignature) => true,
            (Err(PkiError::Malformed(_)), Want::Malformed) => true,
            (Err(PkiError::UnsupportedKey(_)), Want::UnsupportedKey) => true,
            _ => false,
        };
        assert!(ok, "{name}: wanted {want:?}, got {got:?}");
    }

    fn maker(name: &str) -> ManufacturerCa {
        ManufacturerCa::generate(name, 3650).unwrap().0
    }

    fn device(alg: KeyAlgorithm) -> SoftwareKey {
        SoftwareKey::generate(alg).unwrap().0
    }

    fn days(from: i64, to: i64) -> Validity {
        let now = now_unix();
        Validity {
            not_before: now + from * DAY,
            not_after: now + to * DAY,
        }
    }

    /// An endorsement of `key` by `maker` whose contents `edit` may change.
    fn custom(
        maker: &ManufacturerCa,
        key: &SoftwareKey,
        validity: Validity,
        edit: impl FnOnce(&mut CertificateParams),
    ) -> Vec<u8> {
        let mut params = endorsement_params(&DeviceId::of(key.public_key())).unwrap();
        edit(&mut params);
        maker
            .authority
            .issue(params, key.public_key(), validity)
            .unwrap()
    }

    #[test]
    fn endorsements_of_both_key_algorithms_verify() {
        let maker = maker("Maker");
        let trusted = [maker.certificate().clone()];
        for alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Ed25519] {
            let key = device(alg);
            let cert = maker.endorse(key.public_key(), 30).unwrap();
            for input in [cert.der().to_vec(), cert.to_pem().into_bytes()] {
                let e = verify_endorsement(&input, &trusted, now_unix()).unwrap();
                assert_eq!(e.device_id(), DeviceId::of(key.public_key()));
                assert_eq!(e.public_key(), key.public_key());
                assert_eq!(
                    e.manufacturer_fingerprint(),
                    maker.certificate().fingerprint()
                );
                assert!((e.not_after() - (now_unix() + 30 * DAY)).abs() < 60);
            }
        }
    }

    #[test]
    fn the_ca_the_chain_ends_at_is_reported() {
        let (a, b) = (maker("A"), maker("B"));
        let key = device(KeyAlgorithm::EcdsaP256);
        let cert = b.endorse(key.public_key(), 30).unwrap();
        let trusted = [a.certificate().clone(), b.certificate().clone()];
        let e = verify_endorsement(cert.der(), &trusted, now_unix()).unwrap();
        assert_eq!(e.manufacturer_fingerprint(), b.certificate().fingerprint());
    }

    #[test]
    fn endorsement_cases() {
        use Want::*;
        let maker = maker("Maker");
        let trusted = [maker.certificate().clone()];
        let key = device(KeyAlgorithm::EcdsaP256);
        let other_id = DeviceId::of(device(KeyAlgorithm::EcdsaP256).public_key());
        let good = days(0, 30);
        let now = now_unix();
        let edited = |edit: &dyn Fn(&mut CertificateParams)| custom(&maker, &key, good, edit);
        let uri = |s: String| SanType::URI(ia5(s).unwrap());

        let endorsed = custom(&maker, &key, good, |_| {});
        let by_other_maker = custom(&self::maker("Other"), &key, good, |_| {});
        let expired = custom(&maker, &key, days(-10, -1), |_| {});
        let future = custom(&maker, &key, days(1, 10), |_| {});
        let server_auth = edited(&|p| p.extended_key_usages = vec![Eku::ServerAuth]);
        let no_eku = edited(&|p| p.extended_key_usages.clear());
        let extra_eku = edited(&|p| p.extended_key_usages.push(Eku::ClientAuth));
        let other_cn = edited(&|p| {
            p.distinguished_name = rcgen::DistinguishedName::new();
            p.distinguished_name
                .push(rcgen::DnType::CommonName, other_id.to_string());
        });
        let cn_not_an_id = edited(&|p| {
            p.distinguished_name
                .push(rcgen::DnType::CommonName, "dev-7")
        });
        let other_san = edited(&|p| {
            p.subject_alt_names = vec![uri(format!("{DEVICE_URI_PREFIX}{other_id}"))];
        });
        let second_san_shouting = edited(&|p| {
            p.subject_alt_names
                .push(uri(format!("URN:SEVENFOLD:DEVICE:{other_id}")));
        });
        let right_san_shouting = edited(&|p| {
            let id = DeviceId::of(key.public_key()).to_string().to_uppercase();
            p.subject_alt_names = vec![uri(format!("URN:SEVENFOLD:DEVICE:{id}"))];
        });
        let no_names = edited(&|p| {
            p.distinguished_name = rcgen::DistinguishedName::new();
            p.subject_alt_names = vec![uri("https://example.com/".into())];
        });
        let p384 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let p384_key = maker
            .authority
            .issue_for_spki(
                endorsement_params(&other_id).unwrap(),
                &rcgen::PublicKeyData::subject_public_key_info(&p384),
                good,
            )
            .unwrap();
        let mut flipped = endorsed.clone();
        *flipped.last_mut().unwrap() ^= 0x01;
        let half = &endorsed[..endorsed.len() / 2];
        let trailing = [endorsed.as_slice(), &[0]].concat();
        let ca_itself = maker.certificate().der();
        let late = now + 30 * DAY - 120;

        let t = &trusted[..];
        let after = now + 31 * DAY;
        let cases: &[Case<'_>] = &[
            ("as issued", &endorsed, t, now, Device),
            ("just before its end", &endorsed, t, late, Device),
            ("another maker's", &by_other_maker, t, now, Untrusted),
            ("no CA trusted", &endorsed, &[], now, Untrusted),
            ("expired", &expired, t, now, Expired),
            ("checked after its end", &endorsed, t, after, Expired),
            ("not yet valid", &future, t, now, NotYetValid),
            ("checked before 1970", &endorsed, t, -5, NotYetValid),
            ("serverAuth EKU", &server_auth, t, now, WrongUsage),
            ("no EKU", &no_eku, t, now, WrongUsage),
            ("an extra EKU", &extra_eku, t, now, Device),
            ("the CA itself", ca_itself, t, now, WrongUsage),
            ("CN of another device", &other_cn, t, now, CnMismatch),
            ("CN not a device ID", &cn_not_an_id, t, now, CnMismatch),
            ("SAN of another device", &other_san, t, now, SanMismatch),
            ("upper-case SAN", &second_san_shouting, t, now, SanMismatch),
            (
                "upper-case SAN, this device",
                &right_san_shouting,
                t,
                now,
                Device,
            ),
            ("no device names", &no_names, t, now, Device),
            ("P-384 key", &p384_key, t, now, UnsupportedKey),
            ("signature altered", &flipped, t, now, BadSignature),
            ("garbage", b"garbage", t, now, Malformed),
            ("empty", b"", t, now, Malformed),
            ("truncated", half, t, now, Malformed),
            ("trailing bytes", &trailing, t, now, Malformed),
        ];
        for (name, cert, trusted, now, want) in cases {
            check(name, cert, trusted, *now, want);
        }
    }

    #[test]
    fn an_expired_or_future_ca_is_refused_even_with_a_valid_leaf() {
        // The leaf is capped at the CA's notAfter, but not at its notBefore.
        let future = Authority::generate("Future", "T", days(1, 100))
            .unwrap()
            .authority;
        let maker = ManufacturerCa { authority: future };
        let key = device(KeyAlgorithm::Ed25519);
        let leaf = custom(&maker, &key, days(0, 10), |_| {});
        let err =
            verify_endorsement(&leaf, &[maker.certificate().clone()], now_unix()).unwrap_err();
        assert!(
            matches!(&err, PkiError::NotYetValid { subject, .. } if subject.contains("Future")),
            "{err}"
        );
        // And `endorse` refuses to issue from a CA outside its validity.
        assert!(matches!(
            maker.endorse(key.public_key(), 10),
            Err(PkiError::NotYetValid { .. })
        ));
    }

    /// A TPM-like chain: root → intermediate → EK-style leaf without names.
    struct Chain {
        root: CaCertificate,
        intermediate: Vec<u8>,
        leaf: Vec<u8>,
        key: SoftwareKey,
    }

    fn chain(intermediate_eku: Vec<Eku>) -> Chain {
        let root_key = KeyPair::generate().unwrap();
        let mut root = CertificateParams::new(Vec::<String>::new()).unwrap();
        root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        root.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let root_cert = root.self_signed(&root_key).unwrap();
        let root_issuer = Issuer::new(root, root_key);

        let mid_key = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let mut mid = CertificateParams::new(Vec::<String>::new()).unwrap();
        mid.distinguished_name
            .push(rcgen::DnType::CommonName, "EK intermediate");
        mid.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        mid.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        mid.extended_key_usages = intermediate_eku;
        let mid_cert = mid.signed_by(&mid_key, &root_issuer).unwrap();
        let mid_issuer = Issuer::new(mid, mid_key);

        let key = device(KeyAlgorithm::EcdsaP256);
        let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
        leaf.distinguished_name = rcgen::DistinguishedName::new();
        leaf.subject_alt_names = vec![SanType::URI(ia5("urn:example:tpm".into()).unwrap())];
        leaf.extended_key_usages = vec![Eku::Other(TPM_EK_CERTIFICATE_EKU.to_vec())];
        let spki = rcgen::SubjectPublicKeyInfo::from_der(key.public_key().spki_der()).unwrap();
        let leaf_cert = leaf.signed_by(&spki, &mid_issuer).unwrap();
        Chain {
            root: CaCertificate::from_der(root_cert.der()).unwrap(),
            intermediate: mid_cert.der().to_vec(),
            leaf: leaf_cert.der().to_vec(),
            key,
        }
    }

    #[test]
    fn tpm_style_chain_with_an_intermediate() {
        let c = chain(Vec::new());
        let trusted = [c.root.clone()];
        let now = now_unix();
        let tpm = EndorsementPolicy::tpm_ek();
        let e = verify_endorsement_chain(&c.leaf, &[&c.intermediate], &trusted, now, &tpm).unwrap();
        assert_eq!(e.device_id(), DeviceId::of(c.key.public_key()));
        assert_eq!(e.manufacturer_fingerprint(), c.root.fingerprint());

        let without = verify_endorsement_chain(&c.leaf, &[], &trusted, now, &tpm);
        assert!(
            matches!(without, Err(PkiError::UntrustedIssuer(_))),
            "{without:?}"
        );
        let default = verify_endorsement_chain(
            &c.leaf,
            &[&c.intermediate],
            &trusted,
            now,
            &EndorsementPolicy::default(),
        );
        assert!(
            matches!(default, Err(PkiError::WrongUsage(_))),
            "{default:?}"
        );
        let many = vec![c.intermediate.as_slice(); MAX_INTERMEDIATES + 1];
        let too_many = verify_endorsement_chain(&c.leaf, &many, &trusted, now, &tpm);
        assert!(
            matches!(too_many, Err(PkiError::Malformed(_))),
            "{too_many:?}"
        );
    }

    #[test]
    fn an_intermediate_restricted_to_another_usage_breaks_the_chain() {
        let c = chain(vec![Eku::ServerAuth]);
        let got = verify_endorsement_chain(
            &c.leaf,
            &[&c.intermediate],
            std::slice::from_ref(&c.root),
            now_unix(),
            &EndorsementPolicy::tpm_ek(),
        );
        assert!(matches!(got, Err(PkiError::WrongUsage(_))), "{got:?}");
    }

    #[test]
    fn oids_encode_as_der() {
        let check = |arcs: &[u64], expected: Option<&[u8]>| {
            assert_eq!(encode_oid(arcs).as_deref(), expected, "{arcs:?}");
        };
        check(
            ENDORSEMENT_EKU,
            Some(&[0x2b, 6, 1, 4, 1, 0x83, 0xd4, 0x5f, 7, 1]),
        );
        check(TPM_EK_CERTIFICATE_EKU, Some(&[0x67, 0x81, 0x05, 8, 1]));
        check(
            &[1, 3, 6, 1, 5, 5, 7, 3, 1],
            Some(&[0x2b, 6, 1, 5, 5, 7, 3, 1]),
        );
        check(&[2, 999, 0], Some(&[0x88, 0x37, 0]));
        check(&[1], None);
        check(&[3, 1], None);
        check(&[1, 40], None);
        check(&[2, u64::MAX], None);
    }

    #[test]
    fn policy_defaults_to_the_sevenfold_eku() {
        assert_eq!(EndorsementPolicy::default().required_eku(), ENDORSEMENT_EKU);
        assert_eq!(dotted(ENDORSEMENT_EKU), "1.3.6.1.4.1.59999.7.1");
        assert_eq!(
            dotted(EndorsementPolicy::tpm_ek().required_eku()),
            "2.23.133.8.1"
        );
    }

    #[test]
    fn error_messages_say_what_to_do() {
        let maker = maker("Maker");
        let key = device(KeyAlgorithm::EcdsaP256);
        let cert = maker.endorse(key.public_key(), 1).unwrap();
        let err = verify_endorsement(cert.der(), &[], now_unix()).unwrap_err();
        assert!(
            err.to_string().contains("add the manufacturer's CA"),
            "{err}"
        );
        let err = verify_endorsement(
            cert.der(),
            &[maker.certificate().clone()],
            now_unix() + 2 * DAY,
        )
        .unwrap_err();
        let id = DeviceId::of(key.public_key()).to_string();
        assert!(
            err.to_string().contains(&id) && err.to_string().contains("expired at 20"),
            "{err}"
        );
    }

    mod props {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            #[test]
            fn arbitrary_bytes_are_refused_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
                let maker = maker("Maker");
                prop_assert!(verify_endorsement(&bytes, &[maker.certificate().clone()], now_unix()).is_err());
                let _ = CaCertificate::parse(&bytes);
            }

            #[test]
            fn arbitrary_der_sequences_are_refused_without_panic(body in proptest::collection::vec(any::<u8>(), 0..600)) {
                let mut bytes = vec![0x30, 0x82];
                bytes.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
                bytes.extend_from_slice(&body);
                prop_assert!(verify_endorsement(&bytes, &[], 0).is_err());
                let _ = CaCertificate::parse(&bytes);
            }
        }

        #[test]
        fn every_single_byte_change_is_refused() {
            let maker = maker("Maker");
            let trusted = [maker.certificate().clone()];
            let key = device(KeyAlgorithm::EcdsaP256);
            let cert = maker.endorse(key.public_key(), 30).unwrap().into_der();
            let now = now_unix();
            let runner_config = ProptestConfig::with_cases(512);
            let mut runner = proptest::test_runner::TestRunner::new(runner_config);
            runner
                .run(&(0..cert.len(), 1u8..=255), |(at, xor)| {
                    let mut changed = cert.clone();
                    changed[at] ^= xor;
                    let got = verify_endorsement(&changed, &trusted, now);
                    prop_assert!(got.is_err(), "byte {} ^ {:#04x} accepted", at, xor);
                    Ok(())
                })
                .unwrap();
        }
    }
}
