//! The `tpm` root of trust against a real TPM 2.0 simulator (swtpm).
//!
//! Each test manufactures its own swtpm (with EK certificates) on free
//! loopback ports. swtpm serves one connection at a time, so a `TpmRoot` is
//! dropped before another client (a second `TpmRoot`, `tpm2_pcrread`) talks
//! to the same simulator.
#![cfg(feature = "tpm")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;
use std::process::Command;

use sevenfold_rot::tpm::simulator::Swtpm;
use sevenfold_rot::tpm::{TpmRoot, MAX_COUNTER_STEP};
use sevenfold_rot::{
    extend, CounterIndex, Digest, Quote, QuoteFormat, RegisterIndex, RegisterValues, RootOfTrust,
    RotError, SealPolicy, APPLICATION_REGISTER, RUNTIME_REGISTER,
};

fn simulator() -> Swtpm {
    Swtpm::start().expect("swtpm and swtpm_setup must be installed (apt: swtpm swtpm-tools)")
}

fn reg(i: u32) -> RegisterIndex {
    RegisterIndex::new(i).unwrap()
}

fn counter(i: u32) -> CounterIndex {
    CounterIndex::new(i).unwrap()
}

#[test]
fn identity_persists_and_is_bound_to_its_tpm() {
    let tpm = simulator();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("rot");
    let created = TpmRoot::create(&state, &tpm.tcti()).unwrap();
    assert_eq!(created.backend(), "tpm");
    let id = created.device_id();
    assert!(matches!(
        TpmRoot::create(&state, &tpm.tcti()),
        Err(RotError::AlreadyInitialised(_))
    ));
    drop(created);

    let opened = TpmRoot::open(&state, &tpm.tcti()).unwrap();
    assert_eq!(opened.device_id(), id);
    drop(opened);

    // Across a power cycle too.
    let mut tpm = tpm;
    tpm.restart().unwrap();
    assert_eq!(TpmRoot::open(&state, &tpm.tcti()).unwrap().device_id(), id);

    // Another TPM cannot load this TPM's attestation key.
    let other = simulator();
    let err = TpmRoot::open(&state, &other.tcti()).unwrap_err();
    assert!(matches!(err, RotError::Tpm { .. }), "{err}");

    let empty = dir.path().join("empty");
    assert!(matches!(
        TpmRoot::open(&empty, &tpm.tcti()),
        Err(RotError::NotInitialised(_))
    ));
    assert!(matches!(
        TpmRoot::create(&dir.path().join("x"), "bogus:tcti"),
        Err(RotError::Tpm { .. })
    ));
}

#[test]
fn pcrs_extend_like_registers_and_tpm2_pcrread_sees_them() {
    let mut tpm = simulator();
    let dir = tempfile::tempdir().unwrap();
    let rot = TpmRoot::create(dir.path(), &tpm.tcti()).unwrap();
    let zero = rot
        .read_registers(&[RUNTIME_REGISTER, APPLICATION_REGISTER])
        .unwrap();
    assert!(zero.iter().all(|(_, v)| *v == Digest::ZERO));

    let runtime = Digest::of(b"runtime build");
    let app = Digest::of(b"app package");
    let expected_runtime = extend(&Digest::ZERO, &runtime);
    assert_eq!(
        rot.extend(RUNTIME_REGISTER, &runtime).unwrap(),
        expected_runtime
    );
    let expected_app = extend(&extend(&Digest::ZERO, &app), &app);
    rot.extend(APPLICATION_REGISTER, &app).unwrap();
    assert_eq!(
        rot.extend(APPLICATION_REGISTER, &app).unwrap(),
        expected_app
    );
    let values = rot
        .read_registers(&[APPLICATION_REGISTER, RUNTIME_REGISTER])
        .unwrap();
    assert_eq!(values.get(RUNTIME_REGISTER), Some(&expected_runtime));
    assert_eq!(values.get(APPLICATION_REGISTER), Some(&expected_app));
    assert!(rot.read_registers(&[reg(3), reg(3)]).is_err());
    // All 24 at once (the TPM answers 8 per read).
    let all: Vec<_> = (0..24).map(reg).collect();
    assert_eq!(rot.read_registers(&all).unwrap().len(), 24);
    drop(rot);

    let out = Command::new("tpm2_pcrread")
        .args(["-T", &tpm.tcti(), "sha256:14,15"])
        .output()
        .expect("tpm2-tools must be installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(
        text.contains(&format!("14: 0x{}", expected_runtime.to_hex())),
        "{text}"
    );
    assert!(
        text.contains(&format!("15: 0x{}", expected_app.to_hex())),
        "{text}"
    );

    // PCRs reset only with the platform.
    tpm.restart().unwrap();
    let rot = TpmRoot::open(dir.path(), &tpm.tcti()).unwrap();
    let after = rot.read_registers(&[RUNTIME_REGISTER]).unwrap();
    assert_eq!(after.get(RUNTIME_REGISTER), Some(&Digest::ZERO));
}

#[test]
fn quotes_verify_here_and_with_tpm2_checkquote() {
    let tpm = simulator();
    let dir = tempfile::tempdir().unwrap();
    let rot = TpmRoot::create(&dir.path().join("rot"), &tpm.tcti()).unwrap();
    rot.extend(RUNTIME_REGISTER, &Digest::of(b"runtime"))
        .unwrap();
    rot.extend(APPLICATION_REGISTER, &Digest::of(b"app"))
        .unwrap();
    let selection = [RUNTIME_REGISTER, APPLICATION_REGISTER];
    let nonce = [0x5a; 32];
    let (quote, values) = rot.quote(&nonce, &selection).unwrap();
    assert_eq!(quote.format(), QuoteFormat::Tpm2);
    let key = &rot.device_public_key().clone();
    quote.verify(key, &nonce, &values).unwrap();
    Quote::from_bytes(&quote.to_bytes())
        .unwrap()
        .verify(key, &nonce, &values)
        .unwrap();

    // Wrong nonce, wrong values, fewer registers.
    assert!(matches!(
        quote.verify(key, &[0x5b; 32], &values),
        Err(RotError::NonceMismatch)
    ));
    let forged = RegisterValues::new(vec![
        (RUNTIME_REGISTER, *values.get(RUNTIME_REGISTER).unwrap()),
        (APPLICATION_REGISTER, Digest::of(b"unknown measurement")),
    ])
    .unwrap();
    assert!(matches!(
        quote.verify(key, &nonce, &forged),
        Err(RotError::RegisterDigestMismatch)
    ));
    // PCRs extended with an unknown measurement: the new quote's values no
    // longer match what the verifier expects, and the old quote no longer
    // matches the current values.
    rot.extend(APPLICATION_REGISTER, &Digest::of(b"unknown"))
        .unwrap();
    let now = rot.read_registers(&selection).unwrap();
    assert!(quote.verify(key, &nonce, &now).is_err());
    let (q2, v2) = rot.quote(&nonce, &selection).unwrap();
    assert!(q2.verify(key, &nonce, &values).is_err());
    q2.verify(key, &nonce, &v2).unwrap();

    // Long nonces and duplicate registers are refused; an empty selection works.
    assert!(matches!(
        rot.quote(&[0; 65], &selection),
        Err(RotError::NonceTooLong(65))
    ));
    assert!(rot.quote(b"n", &[reg(3), reg(3)]).is_err());
    let (q, v) = rot.quote(b"n", &[]).unwrap();
    q.verify(key, b"n", &v).unwrap();

    // The independent check: tpm2_checkquote on the same quote.
    check_with_tpm2_tools(dir.path(), &quote, &values, key.to_pem(), &nonce);
    drop(rot);

    // A quote from a different TPM does not verify with this device's key.
    let other_tpm = simulator();
    let other_dir = tempfile::tempdir().unwrap();
    let other = TpmRoot::create(other_dir.path(), &other_tpm.tcti()).unwrap();
    other
        .extend(RUNTIME_REGISTER, &Digest::of(b"runtime"))
        .unwrap();
    other
        .extend(APPLICATION_REGISTER, &Digest::of(b"app"))
        .unwrap();
    let (foreign, foreign_values) = other.quote(&nonce, &selection).unwrap();
    assert_eq!(foreign_values, values);
    assert!(matches!(
        foreign.verify(key, &nonce, &foreign_values),
        Err(RotError::BadSignature)
    ));
}

fn check_with_tpm2_tools(
    dir: &Path,
    quote: &Quote,
    values: &RegisterValues,
    key_pem: String,
    nonce: &[u8],
) {
    let files = dir.join("checkquote");
    std::fs::create_dir(&files).unwrap();
    std::fs::write(files.join("ak.pem"), key_pem).unwrap();
    std::fs::write(files.join("quote.msg"), quote.body()).unwrap();
    std::fs::write(files.join("quote.sig"), quote.signature()).unwrap();
    let pcrs: Vec<u8> = values.iter().flat_map(|(_, v)| v.0).collect();
    std::fs::write(files.join("quote.pcrs"), pcrs).unwrap();
    let run = |nonce_hex: &str| {
        Command::new("tpm2_checkquote")
            .current_dir(&files)
            .args([
                "-u",
                "ak.pem",
                "-m",
                "quote.msg",
                "-s",
                "quote.sig",
                "-f",
                "quote.pcrs",
                "-l",
                "sha256:14,15",
                "-g",
                "sha256",
                "-q",
                nonce_hex,
            ])
            .output()
            .expect("tpm2-tools must be installed")
    };
    let ok = run(&hex(nonce));
    assert!(
        ok.status.success(),
        "tpm2_checkquote refused: {}{}",
        String::from_utf8_lossy(&ok.stdout),
        String::from_utf8_lossy(&ok.stderr)
    );
    // And it agrees with us that another nonce fails.
    assert!(!run(&hex(&[0u8; 32])).status.success());
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn nv_counters_only_rise() {
    let mut tpm = simulator();
    let dir = tempfile::tempdir().unwrap();
    let rot = TpmRoot::create(dir.path(), &tpm.tcti()).unwrap();
    assert_eq!(rot.read_counter(counter(7)).unwrap(), 0);
    assert_eq!(rot.advance_counter(counter(7), 0).unwrap(), 0);
    assert_eq!(rot.advance_counter(counter(7), 3).unwrap(), 3);
    assert_eq!(rot.read_counter(counter(7)).unwrap(), 3);
    assert_eq!(rot.advance_counter(counter(7), 3).unwrap(), 3);
    assert!(matches!(
        rot.advance_counter(counter(7), 2),
        Err(RotError::CounterRollback {
            index: 7,
            current: 3,
            requested: 2
        })
    ));
    assert!(matches!(
        rot.advance_counter(counter(7), 3 + MAX_COUNTER_STEP + 1),
        Err(RotError::CounterStepTooLarge { .. })
    ));
    // Counters are independent.
    assert_eq!(rot.read_counter(counter(8)).unwrap(), 0);
    assert_eq!(rot.advance_counter(counter(0xFFFF), 1).unwrap(), 1);
    drop(rot);

    // They survive a restart and a power cycle.
    tpm.restart().unwrap();
    let rot = TpmRoot::open(dir.path(), &tpm.tcti()).unwrap();
    assert_eq!(rot.read_counter(counter(7)).unwrap(), 3);
    assert!(matches!(
        rot.advance_counter(counter(7), 1),
        Err(RotError::CounterRollback { current: 3, .. })
    ));
    assert_eq!(rot.advance_counter(counter(7), 5).unwrap(), 5);
}

#[test]
fn sealing_binds_to_the_tpm_and_its_pcrs() {
    let tpm = simulator();
    let dir = tempfile::tempdir().unwrap();
    let rot = TpmRoot::create(dir.path(), &tpm.tcti()).unwrap();
    let secret = b"disk key material";

    let plain = rot.seal(secret, &SealPolicy::Device).unwrap();
    assert_eq!(rot.unseal(&plain).unwrap().as_slice(), secret);

    rot.extend(RUNTIME_REGISTER, &Digest::of(b"good runtime"))
        .unwrap();
    let bound = rot
        .seal(
            secret,
            &SealPolicy::Registers(vec![RUNTIME_REGISTER, RUNTIME_REGISTER]),
        )
        .unwrap();
    assert_eq!(rot.unseal(&bound).unwrap().as_slice(), secret);
    // Another register changing does not matter.
    rot.extend(APPLICATION_REGISTER, &Digest::of(b"app"))
        .unwrap();
    assert_eq!(rot.unseal(&bound).unwrap().as_slice(), secret);
    // Extending the bound register does.
    rot.extend(RUNTIME_REGISTER, &Digest::of(b"unknown"))
        .unwrap();
    assert!(matches!(rot.unseal(&bound), Err(RotError::Unseal(_))));
    // The device-bound blob still opens.
    assert_eq!(rot.unseal(&plain).unwrap().as_slice(), secret);

    // Too large, damaged, or foreign blobs are refused.
    assert!(matches!(
        rot.seal(&[0; 129], &SealPolicy::Device),
        Err(RotError::SealTooLarge(129))
    ));
    let mut tampered = plain.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert!(matches!(rot.unseal(&tampered), Err(RotError::Unseal(_))));
    assert!(matches!(rot.unseal(b"nonsense"), Err(RotError::Unseal(_))));
    assert!(rot.unseal(&plain[..plain.len() - 3]).is_err());
    drop(rot);

    let other_tpm = simulator();
    let other_dir = tempfile::tempdir().unwrap();
    let other = TpmRoot::create(other_dir.path(), &other_tpm.tcti()).unwrap();
    assert!(matches!(other.unseal(&plain), Err(RotError::Unseal(_))));
}

#[test]
fn sign_uses_the_attestation_key_but_never_signs_quote_shapes() {
    let tpm = simulator();
    let dir = tempfile::tempdir().unwrap();
    let rot = TpmRoot::create(dir.path(), &tpm.tcti()).unwrap();
    let sig = rot.sign(b"proof of possession").unwrap();
    rot.device_public_key()
        .verify(b"proof of possession", &sig)
        .unwrap();
    assert!(rot
        .device_public_key()
        .verify(b"proof of possessioN", &sig)
        .is_err());
    rot.sign(&[7; sevenfold_rot::MAX_SIGNED_LEN]).unwrap();
    assert!(matches!(
        rot.sign(&[7; sevenfold_rot::MAX_SIGNED_LEN + 1]),
        Err(RotError::MessageTooLong(_))
    ));
    assert!(matches!(
        rot.sign(b"\xff\x54\x43\x47SVNF\x02forged"),
        Err(RotError::QuoteLikeMessage)
    ));
    assert!(matches!(
        rot.sign(&[0xff, 0x54, 0x43, 0x47, 0x80, 0x18]),
        Err(RotError::QuoteLikeMessage)
    ));
}

#[test]
fn shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<TpmRoot>();
    let tpm = simulator();
    let dir = tempfile::tempdir().unwrap();
    let rot = std::sync::Arc::new(TpmRoot::create(dir.path(), &tpm.tcti()).unwrap());
    let m = Digest::of(b"m");
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let rot = rot.clone();
            std::thread::spawn(move || {
                for _ in 0..5 {
                    rot.extend(reg(5), &m).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let mut expected = Digest::ZERO;
    for _ in 0..20 {
        expected = extend(&expected, &m);
    }
    assert_eq!(
        rot.read_registers(&[reg(5)]).unwrap().get(reg(5)),
        Some(&expected)
    );
}

/// The EK certificate chains to the simulator maker's CA, and credential
/// activation (MakeCredential here in pure Rust, ActivateCredential in the
/// TPM) proves the attestation key shares a TPM with that EK.
#[test]
fn credential_activation_binds_the_attestation_key_to_the_ek() {
    use sevenfold_rot::credential::{make_credential, AttestationKey};
    let tpm = simulator();
    let dir = tempfile::tempdir().unwrap();
    let rot = TpmRoot::create(&dir.path().join("rot"), &tpm.tcti()).unwrap();

    let ek_cert = dir.path().join("ek.der");
    std::fs::write(&ek_cert, rot.endorsement_certificate().unwrap()).unwrap();
    let ca = tpm.ca_dir();
    let pem = dir.path().join("ek.pem");
    let converted = Command::new("openssl")
        .args(["x509", "-inform", "DER", "-in"])
        .arg(&ek_cert)
        .arg("-out")
        .arg(&pem)
        .status()
        .unwrap();
    assert!(converted.success());
    let verify = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(ca.join("swtpm-localca-rootca-cert.pem"))
        .arg("-untrusted")
        .arg(ca.join("issuercert.pem"))
        .arg(&pem)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    // And not to some other maker's CA.
    let foreign = simulator();
    let refused = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(foreign.ca_dir().join("swtpm-localca-rootca-cert.pem"))
        .arg("-untrusted")
        .arg(foreign.ca_dir().join("issuercert.pem"))
        .arg(&pem)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let ek_spki = ek_spki(&ek_cert);

    let ak = AttestationKey::parse(&rot.attestation_key_public_area().unwrap()).unwrap();
    assert_eq!(ak.public_key(), rot.device_public_key());
    let challenge =
        make_credential(&ek_spki, ak.name(), b"a fresh 32-byte secret, once!!!!").unwrap();
    assert_eq!(
        rot.activate_credential(challenge).unwrap().as_slice(),
        b"a fresh 32-byte secret, once!!!!"
    );

    // An AK that is not in the EK's TPM: a challenge for the other TPM's AK
    // name fails here, and the other TPM cannot answer a challenge for this EK.
    let other_tpm = simulator();
    let other_dir = tempfile::tempdir().unwrap();
    let other = TpmRoot::create(other_dir.path(), &other_tpm.tcti()).unwrap();
    let other_ak = AttestationKey::parse(&other.attestation_key_public_area().unwrap()).unwrap();
    let wrong_name = make_credential(&ek_spki, other_ak.name(), b"secret").unwrap();
    assert!(rot.activate_credential(wrong_name).is_err());
    let wrong_ek = make_credential(&ek_spki, other_ak.name(), b"secret").unwrap();
    assert!(other.activate_credential(wrong_ek).is_err());
    // A tampered challenge fails its integrity check.
    let mut tampered = make_credential(&ek_spki, ak.name(), b"secret").unwrap();
    let last = tampered.id_object.len() - 1;
    tampered.id_object[last] ^= 1;
    assert!(rot.activate_credential(tampered).is_err());
}

/// The EK's SubjectPublicKeyInfo (DER) from its certificate, via openssl.
fn ek_spki(cert_der: &Path) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(["x509", "-inform", "DER", "-noout", "-pubkey", "-in"])
        .arg(cert_der)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    pem::parse(&out.stdout).unwrap().into_contents()
}

#[test]
fn tls_key_is_an_unrestricted_tpm_key_bound_to_its_tpm() {
    let tpm = simulator();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("rot");
    let rot = TpmRoot::create(&state, &tpm.tcti()).unwrap();
    assert!(state.join("tls.pub").exists() && state.join("tls.priv").exists());
    let tls = rot.resident_tls_key().expect("a TPM holds the TLS key");
    let public = tls.tls_public_key().clone();
    assert_ne!(
        &public,
        rot.device_public_key(),
        "the TLS key is not the AK"
    );

    // Unrestricted: it signs any message, quote-shaped ones included (it is
    // not the device key, so that forges nothing), and the signature verifies.
    for message in [
        &b"TLS 1.3, client CertificateVerify"[..],
        b"\xff\x54\x43\x47SVNF",
    ] {
        let sig = tls.sign_tls(message).unwrap();
        public.verify(message, &sig).unwrap();
        assert!(rot.device_public_key().verify(message, &sig).is_err());
    }
    let digest = Digest::of(b"handshake transcript");
    let sig = tls.sign_tls_digest(&digest).unwrap();
    public.verify(b"handshake transcript", &sig).unwrap();
    assert!(public.verify(b"handshake transcripT", &sig).is_err());
    drop(rot);

    // Kept across opens.
    let opened = TpmRoot::open(&state, &tpm.tcti()).unwrap();
    assert_eq!(opened.resident_tls_key().unwrap().tls_public_key(), &public);
    drop(opened);

    // Another TPM loads its own AK but not this TPM's TLS key.
    let other = simulator();
    let other_state = dir.path().join("other");
    drop(TpmRoot::create(&other_state, &other.tcti()).unwrap());
    for name in ["tls.pub", "tls.priv"] {
        std::fs::copy(state.join(name), other_state.join(name)).unwrap();
    }
    match TpmRoot::open(&other_state, &other.tcti()) {
        Err(RotError::Tpm { operation, .. }) => assert_eq!(operation, "loading the TLS key"),
        other => panic!("another TPM must not load the TLS key: {other:?}"),
    }

    // A swapped tls.pub (the restricted AK's) is refused, not loaded.
    std::fs::copy(state.join("ak.pub"), other_state.join("tls.pub")).unwrap();
    assert!(matches!(
        TpmRoot::open(&other_state, &other.tcti()),
        Err(RotError::CorruptState { .. })
    ));
}

#[test]
fn tpm_state_without_a_tls_key_gets_one_at_open() {
    let tpm = simulator();
    let dir = tempfile::tempdir().unwrap();
    let rot = TpmRoot::create(dir.path(), &tpm.tcti()).unwrap();
    let (id, first) = (
        rot.device_id(),
        rot.resident_tls_key().unwrap().tls_public_key().clone(),
    );
    drop(rot);
    // A state directory from before the TLS key lived in the TPM.
    std::fs::remove_file(dir.path().join("tls.pub")).unwrap();
    std::fs::remove_file(dir.path().join("tls.priv")).unwrap();

    let rot = TpmRoot::open(dir.path(), &tpm.tcti()).unwrap();
    assert_eq!(rot.device_id(), id);
    let tls = rot.resident_tls_key().unwrap();
    let created = tls.tls_public_key().clone();
    assert_ne!(created, first);
    created.verify(b"m", &tls.sign_tls(b"m").unwrap()).unwrap();
    drop(rot);
    let again = TpmRoot::open(dir.path(), &tpm.tcti()).unwrap();
    assert_eq!(again.resident_tls_key().unwrap().tls_public_key(), &created);
}
