//! Certificate-based device identity through the public API only: a tenant CA
//! issues a 24-hour device certificate after attestation, the service's
//! device API verifies it, the CA key is stored wrapped, and the CA rotates.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::{SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SubjectPublicKeyInfo,
};
use sevenfold_pki::{
    certificate_public_key, chain_pem, verify_device_certificate, CaCertificate, KeyWrap,
    ManufacturerCa, PkiError, ServiceCa, TenantCa, TenantCaFiles, CLOCK_SKEW_SECONDS,
    DEVICE_CERTIFICATE_VALIDITY_SECONDS,
};
use sevenfold_rot::{DeviceId, KeyAlgorithm, SoftwareKey};
use x509_parser::prelude::{FromDer, X509Certificate};

const TENANT_A: &str = "0b7e6f1a-2c3d-4e5f-8a9b-0c1d2e3f4a5b";
const TENANT_B: &str = "9f8e7d6c-5b4a-4392-8180-7f6e5d4c3b2a";
const DAY: i64 = 86_400;

fn now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

fn tenant_ca(id: &str, name: &str) -> (TenantCa, TenantCaFiles) {
    TenantCa::generate(id, name, 365).unwrap()
}

/// A software device: root-of-trust key (its ID) and a separate TLS key.
fn soft_device() -> (DeviceId, SoftwareKey) {
    let (rot, _) = SoftwareKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let (tls, _) = SoftwareKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    (DeviceId::of(rot.public_key()), tls)
}

/// The service's view of a tenant's CAs: parsed back from the published bundle.
fn published(files: &[&TenantCaFiles]) -> Vec<CaCertificate> {
    let bundle: String = files.iter().map(|f| f.cert_pem.as_str()).collect();
    CaCertificate::parse_bundle(&bundle).unwrap()
}

#[test]
fn a_device_certificate_is_issued_and_verified() {
    let (ca, files) = tenant_ca(TENANT_A, "Contoso");
    let (device_id, tls) = soft_device();
    let now = now();
    let cert = ca
        .issue_device_certificate(
            &device_id,
            TENANT_A,
            tls.public_key(),
            now,
            DEVICE_CERTIFICATE_VALIDITY_SECONDS,
        )
        .unwrap();

    let trusted = published(&[&files]);
    for input in [cert.der().to_vec(), cert.to_pem().into_bytes()] {
        let identity = verify_device_certificate(&[&input], &trusted, now).unwrap();
        assert_eq!(identity.device_id(), device_id);
        assert_eq!(identity.tenant_id(), TENANT_A);
        assert_eq!(identity.ca_fingerprint(), trusted[0].fingerprint());
        assert_eq!(identity.not_after(), cert.not_after());
        assert_eq!(identity.serial_hex(), cert.serial_hex());
    }
    // The chain as a TLS client sends it (leaf, then its CA) verifies too.
    let with_ca = verify_device_certificate(&[cert.der(), ca.certificate().der()], &trusted, now);
    assert_eq!(with_ca.unwrap().device_id(), device_id);
    // The device checks the certificate it was given is for its own TLS key.
    assert_eq!(
        &certificate_public_key(cert.to_pem().as_bytes()).unwrap(),
        tls.public_key()
    );
}

#[test]
fn validity_is_24_hours_with_a_5_minute_skew_window() {
    let (ca, files) = tenant_ca(TENANT_A, "Contoso");
    let (device_id, tls) = soft_device();
    let now = now();
    let cert = ca
        .issue_device_certificate(&device_id, TENANT_A, tls.public_key(), now, 86_400)
        .unwrap();
    assert_eq!(cert.not_after() - now, 86_400);
    assert_eq!(CLOCK_SKEW_SECONDS, 300);
    let (_, parsed) = X509Certificate::from_der(cert.der()).unwrap();
    assert_eq!(parsed.validity().not_before.timestamp(), now - 300);
    assert_eq!(parsed.validity().not_after.timestamp(), now + 86_400);

    let trusted = published(&[&files]);
    let at = |t: i64| verify_device_certificate(&[cert.der()], &trusted, t);
    assert!(
        at(now - 300).is_ok(),
        "a verifier 5 minutes behind accepts it"
    );
    assert!(at(now + DAY).is_ok(), "the last second of its 24 hours");
    assert!(matches!(at(now - 301), Err(PkiError::NotYetValid { .. })));
    assert!(matches!(at(now + DAY + 1), Err(PkiError::Expired { .. })));
    let err = at(now + 2 * DAY).unwrap_err();
    assert!(matches!(err, PkiError::Expired { .. }), "{err}");
    assert!(err.to_string().contains(&device_id.to_string()), "{err}");
}

#[test]
fn another_tenants_certificate_is_untrusted() {
    let (ca_a, _) = tenant_ca(TENANT_A, "Contoso");
    let (_, files_b) = tenant_ca(TENANT_B, "Fabrikam");
    let (device_id, tls) = soft_device();
    let cert = ca_a
        .issue_device_certificate(&device_id, TENANT_A, tls.public_key(), now(), 86_400)
        .unwrap();
    let err = verify_device_certificate(&[cert.der()], &published(&[&files_b]), now()).unwrap_err();
    assert!(matches!(err, PkiError::UntrustedIssuer(_)), "{err}");
    assert!(err.to_string().contains("attest again"), "{err}");
    // Even a tenant CA with the same display name is another CA.
    let (_, same_name) = tenant_ca(TENANT_A, "Contoso");
    let err =
        verify_device_certificate(&[cert.der()], &published(&[&same_name]), now()).unwrap_err();
    assert!(
        matches!(
            err,
            PkiError::UntrustedIssuer(_) | PkiError::BadSignature(_)
        ),
        "{err}"
    );
    // A CA refuses to issue for another tenant.
    assert!(matches!(
        ca_a.issue_device_certificate(&device_id, TENANT_B, tls.public_key(), now(), 86_400),
        Err(PkiError::InvalidArgument(_))
    ));
}

#[test]
fn endorsements_and_server_certificates_are_not_device_certificates() {
    let now = now();
    let (maker, maker_files) = ManufacturerCa::generate("Example Silicon", 365).unwrap();
    let (rot, _) = SoftwareKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let endorsement = maker.endorse(rot.public_key(), 365).unwrap();
    let (service, service_ca_pem, _) = ServiceCa::generate("Service").unwrap();
    let (server_chain, _) = service
        .issue_server_cert(&["localhost".to_owned()], 30)
        .unwrap();
    let server_leaf = server_chain
        .split_inclusive("-----END CERTIFICATE-----\n")
        .next()
        .unwrap();
    let (_, tenant_files) = tenant_ca(TENANT_A, "Contoso");

    let cases: [(&str, &[u8], Vec<CaCertificate>); 5] = [
        (
            "endorsement, its own CA trusted",
            endorsement.der(),
            published_one(&maker_files.cert_pem),
        ),
        (
            "endorsement, tenant CA trusted",
            endorsement.der(),
            published(&[&tenant_files]),
        ),
        (
            "server certificate, its own CA trusted",
            server_leaf.as_bytes(),
            published_one(&service_ca_pem),
        ),
        (
            "server certificate, tenant CA trusted",
            server_leaf.as_bytes(),
            published(&[&tenant_files]),
        ),
        (
            "the tenant CA itself",
            tenant_files.cert_pem.as_bytes(),
            published(&[&tenant_files]),
        ),
    ];
    for (name, cert, trusted) in cases {
        let got = verify_device_certificate(&[cert], &trusted, now);
        assert!(
            matches!(got, Err(PkiError::WrongUsage(_) | PkiError::Malformed(_))),
            "{name}: {got:?}"
        );
    }
}

fn published_one(pem: &str) -> Vec<CaCertificate> {
    CaCertificate::parse_bundle(pem).unwrap()
}

/// A client certificate made with rcgen directly from the tenant CA's key
/// files: trusted, but without the SANs that name device and tenant.
#[test]
fn a_hand_made_certificate_without_names_is_refused() {
    let (ca, files) = tenant_ca(TENANT_A, "Contoso");
    let (device_id, tls) = soft_device();
    let ca_key = KeyPair::try_from(files.key_pkcs8.as_slice()).unwrap();
    let issuer = Issuer::from_ca_cert_der(
        &rustls_pki_types::CertificateDer::from(ca.certificate().der()),
        ca_key,
    )
    .unwrap();

    let make = |edit: &dyn Fn(&mut CertificateParams)| {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, device_id.to_string());
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.is_ca = IsCa::ExplicitNoCa;
        edit(&mut params);
        let spki = SubjectPublicKeyInfo::from_der(tls.public_key().spki_der()).unwrap();
        params.signed_by(&spki, &issuer).unwrap().der().to_vec()
    };
    let trusted = published(&[&files]);
    let verify = |der: &[u8]| verify_device_certificate(&[der], &trusted, now());

    let no_sans = make(&|_| {});
    let err = verify(&no_sans).unwrap_err();
    assert!(
        matches!(&err, PkiError::MissingIdentity(m) if m.contains("no device SAN URI")),
        "{err}"
    );
    let device_only = make(&|p| {
        p.subject_alt_names = vec![rcgen::SanType::URI(
            format!("urn:sevenfold:device:{device_id}")
                .try_into()
                .unwrap(),
        )];
    });
    let err = verify(&device_only).unwrap_err();
    assert!(
        matches!(&err, PkiError::MissingIdentity(m) if m.contains("no tenant SAN URI")),
        "{err}"
    );
    // With both names it is accepted: the names, not the tool, make a device certificate.
    let named = make(&|p| {
        p.subject_alt_names = vec![
            rcgen::SanType::URI(
                format!("urn:sevenfold:device:{device_id}")
                    .try_into()
                    .unwrap(),
            ),
            rcgen::SanType::URI(
                format!("urn:sevenfold:tenant:{TENANT_A}")
                    .try_into()
                    .unwrap(),
            ),
        ];
    });
    assert_eq!(verify(&named).unwrap().device_id(), device_id);
}

#[test]
fn device_certificates_verify_across_a_ca_rotation() {
    let (old, old_files) = tenant_ca(TENANT_A, "Contoso");
    let (new, new_files) = old.generate_successor(TENANT_A, "Contoso", 365).unwrap();
    assert_eq!((old.generation(), new.generation()), (1, 2));
    let (device_id, tls) = soft_device();
    let now = now();
    let from_old = old
        .issue_device_certificate(&device_id, TENANT_A, tls.public_key(), now, 86_400)
        .unwrap();
    let from_new = new
        .issue_device_certificate(&device_id, TENANT_A, tls.public_key(), now, 86_400)
        .unwrap();

    // The download bundle during the overlap holds both.
    let bundle = chain_pem(&[old.certificate(), new.certificate()]);
    assert_eq!(
        bundle,
        format!("{}{}", old_files.cert_pem, new_files.cert_pem)
    );
    let both = CaCertificate::parse_bundle(&bundle).unwrap();
    for (cert, ca) in [(&from_old, &old), (&from_new, &new)] {
        let identity = verify_device_certificate(&[cert.der()], &both, now).unwrap();
        assert_eq!(identity.device_id(), device_id);
        assert_eq!(identity.ca_fingerprint(), ca.certificate().fingerprint());
    }
    // Once the old CA is retired, its certificates are refused; the new ones are not.
    let only_new = CaCertificate::parse_bundle(&new_files.cert_pem).unwrap();
    assert!(matches!(
        verify_device_certificate(&[from_old.der()], &only_new, now),
        Err(PkiError::UntrustedIssuer(_))
    ));
    assert!(verify_device_certificate(&[from_new.der()], &only_new, now).is_ok());
}

#[test]
fn issuing_past_the_ca_expiry_asks_for_rotation() {
    let (ca, _) = TenantCa::generate(TENANT_A, "Contoso", 1).unwrap();
    let (device_id, tls) = soft_device();
    let err = ca
        .issue_device_certificate(&device_id, TENANT_A, tls.public_key(), now(), 2 * 86_400)
        .unwrap_err();
    assert!(matches!(err, PkiError::CaExpiresTooSoon { .. }), "{err}");
    assert!(err.to_string().contains("rotate the tenant CA"), "{err}");
}

/// What the service does: wrap the new CA key under the master key, store it,
/// later unwrap and load it to issue.
#[test]
fn the_ca_key_is_stored_wrapped_and_loads_back() {
    let master = KeyWrap::generate_master_key().unwrap();
    let config_value = KeyWrap::master_key_to_hex(&master);
    let wrap = KeyWrap::from_hex(&config_value).unwrap();
    let (_, files) = tenant_ca(TENANT_A, "Contoso");
    let stored = wrap.wrap(&files.key_pkcs8, TENANT_A).unwrap();
    assert!(!stored
        .windows(files.key_pkcs8.len())
        .any(|w| w == files.key_pkcs8.as_slice()));

    let key = wrap.unwrap(&stored, TENANT_A).unwrap();
    let ca = TenantCa::load(files.cert_pem.as_bytes(), &key).unwrap();
    let (device_id, tls) = soft_device();
    let cert = ca
        .issue_device_certificate(&device_id, TENANT_A, tls.public_key(), now(), 86_400)
        .unwrap();
    assert!(verify_device_certificate(&[cert.der()], &published(&[&files]), now()).is_ok());
}

#[test]
fn key_wrap_refuses_every_kind_of_mistake() {
    let wrap = KeyWrap::new(&KeyWrap::generate_master_key().unwrap());
    let secret = b"-----PKCS#8 stand-in-----";
    let blob = wrap.wrap(secret, TENANT_A).unwrap();
    assert_eq!(wrap.unwrap(&blob, TENANT_A).unwrap().as_slice(), secret);

    let is_unwrap_error = |got: Result<_, PkiError>| matches!(got, Err(PkiError::KeyUnwrap(_)));
    assert!(
        is_unwrap_error(wrap.unwrap(&blob, TENANT_B)),
        "wrong context"
    );
    let other = KeyWrap::new(&KeyWrap::generate_master_key().unwrap());
    assert!(is_unwrap_error(other.unwrap(&blob, TENANT_A)), "wrong key");
    let mut flipped = blob.clone();
    flipped[20] ^= 0x80;
    assert!(
        is_unwrap_error(wrap.unwrap(&flipped, TENANT_A)),
        "flipped byte"
    );
    assert!(
        is_unwrap_error(wrap.unwrap(&blob[..blob.len() - 1], TENANT_A)),
        "truncated"
    );
    assert!(is_unwrap_error(wrap.unwrap(&[], TENANT_A)), "empty");
    let err = other.unwrap(&blob, TENANT_A).unwrap_err().to_string();
    assert!(
        err.contains("master key") && err.contains("another tenant"),
        "{err}"
    );
}

proptest! {
    #[test]
    fn verify_never_panics_on_arbitrary_bytes(
        leaf in proptest::collection::vec(any::<u8>(), 0..1500),
        extra in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let (_, files) = TenantCa::generate(TENANT_A, "T", 2).unwrap();
        let trusted = published(&[&files]);
        prop_assert!(verify_device_certificate(&[&leaf], &trusted, now()).is_err());
        prop_assert!(verify_device_certificate(&[&leaf, &extra], &trusted, now()).is_err());
        let _ = certificate_public_key(&leaf);
    }

    #[test]
    fn unwrap_never_panics_on_arbitrary_bytes(
        blob in proptest::collection::vec(any::<u8>(), 0..512),
        context in "\\PC{1,40}",
    ) {
        let wrap = KeyWrap::new(&[7; 32]);
        prop_assert!(wrap.unwrap(&blob, &context).is_err());
    }
}
