//! The state directory: init, permissions, endorsement, trusted keys, install.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{mode, package, Fixture, BLINK};
use sevenfold_agent::{AgentError, InitOptions, RotBackend, StateDir};
use sevenfold_pki::ManufacturerCa;
use sevenfold_rot::{DeviceId, KeyAlgorithm, PublicKey, SoftwareKey};

#[test]
fn init_creates_a_private_directory_with_every_file() {
    let f = Fixture::new();
    let root = f.state.root();
    assert_eq!(mode(root), 0o700);
    for dir in ["rot", "trusted-keys", "images"] {
        assert!(root.join(dir).is_dir(), "{dir}");
        assert_eq!(mode(&root.join(dir)), 0o700, "{dir}");
    }
    for file in [
        "agent.toml",
        "service-ca.pem",
        "device.pub.pem",
        "endorsement.pem",
        "tls-key.p8",
        "counters.toml",
    ] {
        assert!(root.join(file).is_file(), "{file}");
        assert_eq!(mode(&root.join(file)), 0o600, "{file}");
    }
    // Nothing else, and no temp file left behind.
    let mut names: Vec<String> = fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "agent.toml",
            "counters.toml",
            "device.pub.pem",
            "endorsement.pem",
            "images",
            "rot",
            "service-ca.pem",
            "tls-key.p8",
            "trusted-keys"
        ]
    );

    // The device ID is the root-of-trust key's, and agent.toml says so.
    let key =
        PublicKey::from_pem(&fs::read_to_string(root.join("device.pub.pem")).unwrap()).unwrap();
    assert_eq!(DeviceId::of(&key), f.state.device_id());
    let config: toml::Value =
        toml::from_str(&fs::read_to_string(root.join("agent.toml")).unwrap()).unwrap();
    assert_eq!(
        config["device_id"].as_str().unwrap(),
        f.state.device_id().to_string()
    );
    assert_eq!(
        config["service_url"].as_str().unwrap(),
        "https://127.0.0.1:8444/"
    );
    assert_eq!(config["rot"].as_str().unwrap(), "soft");
    assert_eq!(
        fs::read_to_string(root.join("service-ca.pem")).unwrap(),
        f.service_ca_pem
    );

    // The endorsement made by --endorse-with certifies this device's key.
    let endorsement = fs::read(root.join("endorsement.pem")).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let verified = sevenfold_pki::verify_endorsement(
        &endorsement,
        std::slice::from_ref(f.manufacturer.certificate()),
        now,
    )
    .unwrap();
    assert_eq!(verified.device_id(), f.state.device_id());

    // The TLS key is a separate P-256 key.
    let tls = f.state.tls_key().unwrap();
    assert_ne!(tls.public_key(), &key);
    assert_eq!(tls.public_key().algorithm(), KeyAlgorithm::EcdsaP256);

    // It reopens as the same device.
    let again = StateDir::open(root).unwrap();
    assert_eq!(again.device_id(), f.state.device_id());
    assert_eq!(again.open_rot().unwrap().device_id(), f.state.device_id());
}

#[test]
fn init_refuses_an_initialised_directory() {
    let f = Fixture::new();
    let before = fs::read(f.state.path("device.pub.pem")).unwrap();
    let err = StateDir::init(&InitOptions {
        state_dir: f.state.root().to_path_buf(),
        service_url: "https://127.0.0.1:8444".into(),
        service_ca: f.dir.path().join("service-ca.pem"),
        rot: RotBackend::Soft,
        tcti: None,
        endorse_with: None,
    })
    .unwrap_err();
    assert!(matches!(err, AgentError::AlreadyInitialised(_)), "{err}");
    assert!(err.to_string().contains("refusing to replace"), "{err}");
    assert_eq!(fs::read(f.state.path("device.pub.pem")).unwrap(), before);
}

#[test]
fn init_checks_its_arguments_before_touching_the_disk() {
    let f = Fixture::new();
    let target = f.dir.path().join("new-device");
    let options = |url: &str, ca: &Path| InitOptions {
        state_dir: target.clone(),
        service_url: url.into(),
        service_ca: ca.to_path_buf(),
        rot: RotBackend::Soft,
        tcti: None,
        endorse_with: None,
    };
    let ca = f.dir.path().join("service-ca.pem");
    let err = StateDir::init(&options("http://127.0.0.1:8444", &ca)).unwrap_err();
    assert!(matches!(err, AgentError::InvalidServiceUrl { .. }), "{err}");
    let not_ca = f.dir.path().join("not-a-ca.pem");
    fs::write(&not_ca, "hello").unwrap();
    let err = StateDir::init(&options("https://127.0.0.1:8444", &not_ca)).unwrap_err();
    assert!(matches!(err, AgentError::InvalidServiceCa { .. }), "{err}");
    assert!(!target.exists());

    // A directory holding other things is not taken over (nor chmod-ed).
    fs::create_dir(&target).unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(target.join("notes.txt"), "mine").unwrap();
    let err = StateDir::init(&options("https://127.0.0.1:8444", &ca)).unwrap_err();
    assert!(matches!(err, AgentError::StateDirNotEmpty(_)), "{err}");
    assert_eq!(mode(&target), 0o755);
    // An empty one is fine.
    fs::remove_file(target.join("notes.txt")).unwrap();
    StateDir::init(&options("https://127.0.0.1:8444", &ca)).unwrap();
    assert_eq!(mode(&target), 0o700);
    assert!(matches!(
        RotBackend::from_name("hsm"),
        Err(AgentError::UnsupportedRot(_))
    ));
    assert_eq!(RotBackend::from_name("tpm").unwrap(), RotBackend::Tpm);
    // A build without the `tpm` feature refuses a TPM device instead of
    // quietly running it in software.
    #[cfg(not(feature = "tpm"))]
    {
        let err = StateDir::init(&InitOptions {
            state_dir: f.dir.path().join("tpm-device"),
            rot: RotBackend::Tpm,
            tcti: Some("swtpm:host=127.0.0.1,port=1".into()),
            ..options("https://127.0.0.1:8444", &ca)
        })
        .unwrap_err();
        assert!(matches!(err, AgentError::UnsupportedRot(_)), "{err}");
    }
}

#[test]
fn open_refuses_exposed_state_and_uninitialised_directories() {
    let f = Fixture::new();
    let root = f.state.root();
    fs::set_permissions(root, fs::Permissions::from_mode(0o755)).unwrap();
    let err = StateDir::open(root).unwrap_err();
    assert!(
        matches!(err, AgentError::InsecurePermissions { mode: 0o755, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("chmod go-rwx"), "{err}");
    fs::set_permissions(root, fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(root.join("tls-key.p8"), fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(
        StateDir::open(root),
        Err(AgentError::InsecurePermissions { mode: 0o644, .. })
    ));
    fs::set_permissions(root.join("tls-key.p8"), fs::Permissions::from_mode(0o600)).unwrap();
    StateDir::open(root).unwrap();

    let empty = f.dir.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let err = StateDir::open(&empty).unwrap_err();
    assert!(matches!(err, AgentError::NotInitialised(_)), "{err}");
    assert!(err.to_string().contains("sevenfold agent init"), "{err}");
}

#[test]
fn endorse_accepts_only_a_certificate_for_this_device() {
    let f = Fixture::with_endorsement(false);
    assert!(!f.state.path("endorsement.pem").exists());
    assert!(matches!(
        f.state.endorsement_pem(),
        Err(AgentError::NotEndorsed(_))
    ));

    // Another device's endorsement is refused and nothing is written.
    let (other, _) = SoftwareKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let foreign = f.manufacturer.endorse(other.public_key(), 30).unwrap();
    let err = f.state.endorse(&foreign.to_pem()).unwrap_err();
    assert!(
        matches!(err, AgentError::EndorsementKeyMismatch { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("device.pub.pem"), "{err}");
    assert!(!f.state.path("endorsement.pem").exists());
    assert!(f.state.endorse("not a certificate").is_err());

    // The manufacturer's signature over device.pub.pem is accepted.
    let request =
        PublicKey::from_pem(&fs::read_to_string(f.state.path("device.pub.pem")).unwrap()).unwrap();
    let (maker, _) = ManufacturerCa::generate("Another Maker", 30).unwrap();
    let pem = maker.endorse(&request, 30).unwrap().to_pem();
    let path = f.state.endorse(&pem).unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), pem);
    assert_eq!(mode(&path), 0o600);
    assert_eq!(f.state.endorsement_pem().unwrap(), pem);
}

#[test]
fn trusted_keys_are_stored_by_key_id() {
    let f = Fixture::new();
    let (key, _) = SoftwareKey::generate(KeyAlgorithm::Ed25519).unwrap();
    let report = f
        .state
        .trust_key(&key.public_key().to_pem(), Path::new("k.pub.pem"))
        .unwrap();
    assert_eq!(report.key_id, key.public_key().key_id());
    assert_eq!(
        report.path.file_name().unwrap().to_str().unwrap(),
        format!("{}.pub.pem", key.public_key().key_id())
    );
    let (trusted, problems) = f.state.trusted_keys().unwrap();
    assert!(problems.is_empty());
    assert!(trusted.get(&key.public_key().key_id()).is_some());
    assert!(trusted.get(&f.signer.public_key().key_id()).is_some());
    let err = f
        .state
        .trust_key("-----BEGIN PRIVATE KEY-----\n", Path::new("bad.pem"))
        .unwrap_err();
    assert!(matches!(err, AgentError::InvalidPublicKey { .. }), "{err}");
}

#[test]
fn install_verifies_before_copying() {
    let f = Fixture::new();
    let source = f.dir.path().join("blink.imagepackage");
    fs::write(&source, package(&f.signer, "blink", BLINK, "1.0.0", 1)).unwrap();
    let installed = f.state.install(&source).unwrap();
    assert_eq!(installed.component_id, BLINK);
    assert_eq!(installed.security_version, 1);
    assert!(!installed.replaced);
    assert_eq!(
        installed.path,
        f.state.path("images").join(format!("{BLINK}.imagepackage"))
    );
    assert_eq!(
        fs::read(&installed.path).unwrap(),
        fs::read(&source).unwrap()
    );
    assert_eq!(mode(&installed.path), 0o600);

    // A newer version replaces it.
    fs::write(&source, package(&f.signer, "blink", BLINK, "1.1.0", 1)).unwrap();
    assert!(f.state.install(&source).unwrap().replaced);

    // Untrusted signer: refused, nothing copied.
    let (stranger, _) = SoftwareKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let other = f.dir.path().join("other.imagepackage");
    fs::write(
        &other,
        package(&stranger, "other", common::SENSOR, "1.0.0", 1),
    )
    .unwrap();
    let err = f.state.install(&other).unwrap_err();
    assert!(
        err.to_string().contains("not a trusted signing key"),
        "{err}"
    );

    // Tampered: refused.
    let bytes = common::tamper(package(&f.signer, "other", common::SENSOR, "1.0.0", 1));
    fs::write(&other, bytes).unwrap();
    let err = f.state.install(&other).unwrap_err();
    assert!(err.to_string().contains("signature"), "{err}");
    assert_eq!(f.state.installed_images().unwrap().len(), 1);
}

#[test]
fn an_interrupted_init_is_completed_with_the_identity_it_made() {
    let f = Fixture::new();
    let target = f.dir.path().join("interrupted");
    // The first run got as far as creating the root of trust.
    let rot = sevenfold_rot::soft::SoftRoot::create(&target.join("rot")).unwrap();
    let made = sevenfold_rot::RootOfTrust::device_id(&rot);
    drop(rot);
    let (state, report) = StateDir::init(&InitOptions {
        state_dir: target,
        service_url: "https://127.0.0.1:8444".into(),
        service_ca: f.dir.path().join("service-ca.pem"),
        rot: RotBackend::Soft,
        tcti: None,
        endorse_with: None,
    })
    .unwrap();
    assert_eq!(report.device_id, made);
    assert_eq!(state.device_id(), made);
    assert_eq!(report.endorsement, None);
}

/// On a TPM the TLS key is the TPM's: `init` makes no `tls-key.p8`, and what
/// apps with `DeviceAuthentication` get signed (through [`TlsKey::sign`],
/// the path of the agent's `DeviceSigner`) is signed by the TPM. A TPM state
/// directory from before gets its TPM TLS key at the next open, and an old
/// `tls-key.p8` left there is not used.
///
/// [`TlsKey::sign`]: sevenfold_agent::TlsKey::sign
#[cfg(feature = "tpm")]
#[test]
fn a_tpm_device_keeps_its_tls_key_in_the_tpm() {
    let f = Fixture::new();
    let tpm = sevenfold_rot::tpm::simulator::Swtpm::start().expect("swtpm must be installed");
    let root = f.dir.path().join("tpm-device");
    let (state, _) = StateDir::init(&InitOptions {
        state_dir: root.clone(),
        service_url: "https://127.0.0.1:8444".into(),
        service_ca: f.dir.path().join("service-ca.pem"),
        rot: RotBackend::Tpm,
        tcti: Some(tpm.tcti()),
        endorse_with: None,
    })
    .unwrap();
    assert!(!root.join("tls-key.p8").exists());
    for blob in ["rot/tls.pub", "rot/tls.priv"] {
        assert_eq!(mode(&root.join(blob)), 0o600, "{blob}");
    }
    let first = {
        let tls = state.tls_key().unwrap();
        assert!(tls.is_resident());
        let rot = state.open_rot().unwrap();
        assert_eq!(
            tls.public_key(),
            rot.resident_tls_key().unwrap().tls_public_key()
        );
        assert_ne!(tls.public_key(), rot.device_public_key());
        let signature = tls.sign(b"an app's token").unwrap();
        tls.public_key()
            .verify(b"an app's token", &signature)
            .unwrap();
        tls.public_key().clone()
    };

    // State from before the TLS key moved into the TPM: no rot/tls.*, and a
    // software key file. The TPM makes a new key; the file is not used.
    fs::remove_file(root.join("rot/tls.pub")).unwrap();
    fs::remove_file(root.join("rot/tls.priv")).unwrap();
    let (_, pkcs8) = SoftwareKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    fs::write(root.join("tls-key.p8"), &pkcs8).unwrap();
    fs::set_permissions(root.join("tls-key.p8"), fs::Permissions::from_mode(0o600)).unwrap();
    let old = SoftwareKey::from_pkcs8_der(&pkcs8).unwrap();
    let reopened = StateDir::open(&root).unwrap();
    let tls = reopened.tls_key().unwrap();
    assert!(tls.is_resident());
    assert!(root.join("rot/tls.pub").exists());
    assert_ne!(tls.public_key(), &first);
    assert_ne!(tls.public_key(), old.public_key());
    let signature = tls.sign(b"m").unwrap();
    tls.public_key().verify(b"m", &signature).unwrap();
}
