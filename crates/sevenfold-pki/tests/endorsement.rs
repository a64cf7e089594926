//! The endorsement flow through the public API only: a device maker endorses
//! a soft root-of-trust key, the service verifies it, and every way of getting
//! it wrong is refused with the error that names the problem.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::{SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use sevenfold_pki::{
    verify_endorsement, CaCertificate, ManufacturerCa, ManufacturerCaFiles, PkiError, ServiceCa,
};
use sevenfold_rot::{DeviceId, KeyAlgorithm, SoftwareKey};

const YEAR: i64 = 365 * 86_400;

fn now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

fn maker(name: &str) -> (ManufacturerCa, ManufacturerCaFiles) {
    ManufacturerCa::generate(name, 3650).unwrap()
}

fn soft_device_key() -> SoftwareKey {
    SoftwareKey::generate(KeyAlgorithm::EcdsaP256).unwrap().0
}

/// The service's view: trusted CAs as read from the maker's certificate file.
fn trusted(files: &ManufacturerCaFiles) -> Vec<CaCertificate> {
    CaCertificate::parse_bundle(&files.cert_pem).unwrap()
}

#[test]
fn a_soft_device_key_is_endorsed_and_verified() {
    let (_, files) = maker("Example Silicon");
    // The maker reloads its CA from the files it stored.
    let ca = ManufacturerCa::load(&files.cert_pem, &files.key_pem).unwrap();
    let device = soft_device_key();
    let endorsement = ca.endorse(device.public_key(), 3650).unwrap();

    let verified =
        verify_endorsement(endorsement.to_pem().as_bytes(), &trusted(&files), now()).unwrap();
    assert_eq!(verified.device_id(), DeviceId::of(device.public_key()));
    assert_eq!(verified.public_key(), device.public_key());
    assert_eq!(
        verified.manufacturer_fingerprint(),
        trusted(&files)[0].fingerprint()
    );
}

#[test]
fn another_manufacturers_endorsement_is_untrusted() {
    let (_, files) = maker("Example Silicon");
    let (other, _) = maker("Other Silicon");
    let endorsement = other.endorse(soft_device_key().public_key(), 30).unwrap();
    let err = verify_endorsement(endorsement.der(), &trusted(&files), now()).unwrap_err();
    assert!(matches!(err, PkiError::UntrustedIssuer(_)), "{err}");
}

#[test]
fn an_impostor_ca_with_a_trusted_name_is_caught_by_the_signature() {
    // Same subject name as the trusted CA, different key: the chain is built
    // by name, then the signature check against the trusted key fails.
    let (_, files) = maker("Example Silicon");
    let (impostor, _) = maker("Example Silicon");
    let endorsement = impostor
        .endorse(soft_device_key().public_key(), 30)
        .unwrap();
    let err = verify_endorsement(endorsement.der(), &trusted(&files), now()).unwrap_err();
    assert!(matches!(err, PkiError::BadSignature(_)), "{err}");
}

#[test]
fn validity_is_enforced_at_the_given_time() {
    let (ca, files) = maker("Example Silicon");
    let endorsement = ca.endorse(soft_device_key().public_key(), 30).unwrap();
    let check = |at: i64| verify_endorsement(endorsement.der(), &trusted(&files), at);
    assert!(check(now()).is_ok());
    assert!(matches!(check(now() + YEAR), Err(PkiError::Expired { .. })));
    assert!(matches!(
        check(now() - YEAR),
        Err(PkiError::NotYetValid { .. })
    ));
    // The CA outlives the endorsement; past the CA's own expiry it fails too.
    assert!(matches!(
        check(now() + 20 * YEAR),
        Err(PkiError::Expired { .. })
    ));
}

#[test]
fn certificates_that_are_not_cas_are_refused_as_trust_anchors() {
    let (ca, _) = maker("Example Silicon");
    let endorsement = ca.endorse(soft_device_key().public_key(), 30).unwrap();
    let (service, _, _) = ServiceCa::generate("Service").unwrap();
    let (chain, _) = service
        .issue_server_cert(&["localhost".to_owned()], 30)
        .unwrap();
    let server_leaf = chain
        .split_inclusive("-----END CERTIFICATE-----\n")
        .next()
        .unwrap();
    for (name, input) in [
        ("endorsement", endorsement.to_pem()),
        ("server certificate", server_leaf.to_owned()),
    ] {
        let err = CaCertificate::parse(input.as_bytes()).unwrap_err();
        assert!(
            matches!(&err, PkiError::NotCa(why) if why.contains("basicConstraints CA is false")),
            "{name}: {err}"
        );
    }
}

#[test]
fn a_server_certificate_for_the_device_key_is_the_wrong_usage() {
    // The maker's CA key signs a certificate for the device key, but as a TLS
    // server certificate (as a misconfigured or compromised tool might).
    let (_, files) = maker("Example Silicon");
    let device = soft_device_key();
    let issuer = rcgen::Issuer::from_ca_cert_pem(
        &files.cert_pem,
        rcgen::KeyPair::from_pem(&files.key_pem).unwrap(),
    )
    .unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["device.example".to_owned()]).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        DeviceId::of(device.public_key()).to_string(),
    );
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let spki = rcgen::SubjectPublicKeyInfo::from_der(device.public_key().spki_der()).unwrap();
    let cert = params.signed_by(&spki, &issuer).unwrap();

    let err = verify_endorsement(cert.der(), &trusted(&files), now()).unwrap_err();
    assert!(matches!(err, PkiError::WrongUsage(_)), "{err}");
}

#[test]
fn tampering_is_detected() {
    let (ca, files) = maker("Example Silicon");
    let device = soft_device_key();
    let endorsement = ca.endorse(device.public_key(), 30).unwrap().into_der();

    let mut signature_flipped = endorsement.clone();
    *signature_flipped.last_mut().unwrap() ^= 0x80;
    // Change one hex digit of the device ID in the subject (covered by the signature).
    let id = DeviceId::of(device.public_key()).to_string();
    let at = endorsement
        .windows(id.len())
        .position(|w| w == id.as_bytes())
        .unwrap();
    let mut subject_changed = endorsement.clone();
    subject_changed[at] = if subject_changed[at] == b'0' {
        b'1'
    } else {
        b'0'
    };

    for (name, der) in [
        ("signature", signature_flipped),
        ("subject", subject_changed),
    ] {
        let err = verify_endorsement(&der, &trusted(&files), now()).unwrap_err();
        assert!(matches!(err, PkiError::BadSignature(_)), "{name}: {err}");
    }
}

#[test]
fn garbage_is_malformed() {
    let (_, files) = maker("Example Silicon");
    let key_as_cert = files.key_pem.as_bytes();
    for (name, input) in [
        ("empty", &b""[..]),
        ("text", b"hello"),
        ("a private key", key_as_cert),
        ("half a PEM", &files.cert_pem.as_bytes()[..100]),
        ("DER-looking junk", &[0x30, 0x82, 0xff, 0xff, 0x00][..]),
    ] {
        let err = verify_endorsement(input, &trusted(&files), now()).unwrap_err();
        assert!(matches!(err, PkiError::Malformed(_)), "{name}: {err}");
        assert!(
            matches!(CaCertificate::parse(input), Err(PkiError::Malformed(_))),
            "{name}"
        );
    }
}

proptest! {
    #[test]
    fn arbitrary_input_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..4096), now in any::<i64>()) {
        prop_assert!(verify_endorsement(&bytes, &[], now).is_err());
        let _ = CaCertificate::parse(&bytes);
    }

    #[test]
    fn arbitrary_pem_never_panics(body in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let text = pem::encode(&pem::Pem::new("CERTIFICATE", body));
        prop_assert!(verify_endorsement(text.as_bytes(), &[], 0).is_err());
        let _ = CaCertificate::parse_bundle(&text);
    }
}
