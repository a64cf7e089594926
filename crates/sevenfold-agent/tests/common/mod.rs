//! Shared fixtures: a device state directory, signing keys, image packages.

#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};

use sevenfold_agent::{InitOptions, RotBackend, RuntimeImage, StateDir};
use sevenfold_core::manifest::AppManifest;
use sevenfold_core::package::write_package;
use sevenfold_pki::{ManufacturerCa, ServiceCa};
use sevenfold_rot::{KeyAlgorithm, SoftwareKey};

pub const BLINK: &str = "5b9a1c52-3f0b-4a39-9d7e-6f2d1c3e8a10";
pub const SENSOR: &str = "0f3c7a8e-6d2b-4c1a-8e5f-9b7d3a1c2e40";

/// A device in a temporary directory, with what made it.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub state: StateDir,
    pub manufacturer: ManufacturerCa,
    pub service_ca: ServiceCa,
    pub service_ca_pem: String,
    pub signer: SoftwareKey,
}

impl Fixture {
    /// A device initialised and endorsed in one go, trusting one signing key.
    pub fn new() -> Fixture {
        Fixture::with_endorsement(true)
    }

    pub fn with_endorsement(endorse: bool) -> Fixture {
        Fixture::build(endorse, RotBackend::Soft, None)
    }

    /// A device whose root of trust is the TPM behind `tcti`, endorsed.
    pub fn on_tpm(tcti: &str) -> Fixture {
        Fixture::build(true, RotBackend::Tpm, Some(tcti.to_owned()))
    }

    fn build(endorse: bool, rot: RotBackend, tcti: Option<String>) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let (service_ca, service_ca_pem, _key) = ServiceCa::generate("test service").unwrap();
        std::fs::write(dir.path().join("service-ca.pem"), &service_ca_pem).unwrap();
        let (manufacturer, files) = ManufacturerCa::generate("Test Silicon", 365).unwrap();
        let maker = dir.path().join("maker");
        std::fs::create_dir(&maker).unwrap();
        std::fs::write(maker.join("ca.pem"), &files.cert_pem).unwrap();
        std::fs::write(maker.join("ca.key"), files.key_pem.as_bytes()).unwrap();
        let (state, _) = StateDir::init(&InitOptions {
            state_dir: dir.path().join("device"),
            service_url: "https://127.0.0.1:8444".into(),
            service_ca: dir.path().join("service-ca.pem"),
            rot,
            tcti,
            endorse_with: endorse.then_some(maker),
        })
        .unwrap();
        let (signer, _) = SoftwareKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        state
            .trust_key(&signer.public_key().to_pem(), Path::new("signer.pub.pem"))
            .unwrap();
        Fixture {
            dir,
            state,
            manufacturer,
            service_ca,
            service_ca_pem,
            signer,
        }
    }

    /// A stand-in runtime executable.
    pub fn runtime(&self) -> RuntimeImage {
        let path = self.dir.path().join("sevenfold-runtime");
        if !path.exists() {
            std::fs::write(&path, b"runtime build 1").unwrap();
        }
        RuntimeImage::new(path, "0.1.0-test")
    }

    /// Writes a package straight into `images/` (as an update would), under `file`.
    pub fn put_image(&self, file: &str, bytes: &[u8]) -> PathBuf {
        let path = self.state.path(sevenfold_agent::IMAGES_DIR).join(file);
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

/// A signed package for `component` at `security_version`.
pub fn package(
    key: &SoftwareKey,
    name: &str,
    component: &str,
    version: &str,
    security_version: u32,
) -> Vec<u8> {
    let manifest = AppManifest::from_json(
        format!(
            r#"{{"SchemaVersion":1,"Name":"{name}","ComponentId":"{component}","Version":"{version}",
                "SecurityVersion":{security_version},"EntryPoint":"app.wasm"}}"#
        )
        .as_bytes(),
    )
    .unwrap();
    write_package(&manifest, b"\0asm\x01\0\0\0 payload of the app", key).unwrap()
}

/// File mode bits.
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Flips one bit of the payload of a package made by [`package`].
pub fn tamper(mut bytes: Vec<u8>) -> Vec<u8> {
    let needle = b"payload of the app";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap();
    bytes[at] ^= 1;
    bytes
}
