//! Shared set-up: the real sample apps built for wasm32-wasip1, a real
//! engine and supervisor in a temporary directory, and an event recorder.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use semver::Version;
use sevenfold_compartment::{
    AppImage, ChannelHub, CompartmentEngine, CompartmentEvent, EventSink, HostServices,
    RunSettings, SimulatedPeripherals, StorageArea, Supervisor, SupervisorConfig,
};
use sevenfold_core::manifest::{AppManifest, AppManifestBuilder};
use sevenfold_rot::Digest;
use uuid::Uuid;

/// Builds `apps/` once per test process (cargo makes concurrent builds wait
/// for each other) and returns the directory of the `.wasm` files.
pub fn wasm_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let apps = manifest_dir.join("../../apps");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| manifest_dir.join("../../target"))
            .join("apps");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip1",
            "--manifest-path",
        ])
        .arg(apps.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target);
        for var in [
            "RUSTFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
            "RUSTC_WRAPPER",
            "RUSTC_WORKSPACE_WRAPPER",
            "CARGO_TARGET_DIR",
            "CARGO_BUILD_TARGET",
        ] {
            cmd.env_remove(var);
        }
        let status = cmd.status().expect("run cargo for the sample apps");
        assert!(
            status.success(),
            "building apps/ for wasm32-wasip1 failed (rustup target add wasm32-wasip1?)"
        );
        target.join("wasm32-wasip1/release")
    })
}

/// The bytes of a built app.
pub fn wasm(name: &str) -> Vec<u8> {
    let path = wasm_dir().join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A manifest builder for `name` with a component ID derived from `n`.
pub fn manifest(name: &str, n: u128) -> AppManifestBuilder {
    AppManifest::builder(
        name,
        Uuid::from_u128(n),
        Version::new(1, 0, 0),
        1,
        format!("{name}.wasm"),
    )
}

/// An image of the built app `wasm_name` under `manifest`.
pub fn image(wasm_name: &str, manifest: AppManifestBuilder) -> AppImage {
    let bytes = wasm(wasm_name);
    let manifest = manifest.build().expect("valid manifest");
    // Digest of payload and manifest, as a package digest would be.
    let mut keyed = bytes.clone();
    keyed.extend_from_slice(manifest.to_json().as_bytes());
    AppImage::new(manifest, &bytes, Digest::of(&keyed)).expect("application image")
}

/// Records every event.
#[derive(Clone, Default)]
pub struct Recorder(Arc<Mutex<Vec<(Instant, CompartmentEvent)>>>);

impl Recorder {
    pub fn sink(&self) -> EventSink {
        let events = Arc::clone(&self.0);
        Arc::new(move |e: &CompartmentEvent| {
            events.lock().unwrap().push((Instant::now(), e.clone()))
        })
    }

    pub fn events(&self) -> Vec<(Instant, CompartmentEvent)> {
        self.0.lock().unwrap().clone()
    }

    /// Events about component `n`.
    pub fn of(&self, n: u128) -> Vec<CompartmentEvent> {
        self.events()
            .into_iter()
            .map(|(_, e)| e)
            .filter(|e| e.app().component_id == Uuid::from_u128(n))
            .collect()
    }

    /// Waits until an event about component `n` matches.
    pub fn wait_for(
        &self,
        n: u128,
        what: &str,
        within: Duration,
        pred: impl Fn(&CompartmentEvent) -> bool,
    ) -> CompartmentEvent {
        let deadline = Instant::now() + within;
        loop {
            if let Some(e) = self.of(n).into_iter().find(|e| pred(e)) {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} event for component {n} within {within:?}; events: {:#?}",
                self.of(n)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A supervisor in a temporary directory, with simulated peripherals.
pub struct Rig {
    pub dir: tempfile::TempDir,
    pub supervisor: Supervisor,
    pub peripherals: SimulatedPeripherals,
    pub events: Recorder,
    pub engine: Arc<CompartmentEngine>,
}

/// Fast settings for tests: short back-off, budget and grace.
pub fn test_config() -> SupervisorConfig {
    SupervisorConfig {
        min_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(800),
        stable_after: Duration::from_secs(30),
        grace: Duration::from_millis(500),
        run: RunSettings {
            cpu_budget: Duration::from_millis(300),
        },
        log_dir: None,
    }
}

pub fn rig(config: SupervisorConfig, certificate: Option<PathBuf>) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    rig_in(dir, config, certificate)
}

pub fn rig_in(
    dir: tempfile::TempDir,
    config: SupervisorConfig,
    certificate: Option<PathBuf>,
) -> Rig {
    let engine = Arc::new(CompartmentEngine::new(&dir.path().join("module-cache")).unwrap());
    let storage = StorageArea::new(&dir.path().join("storage")).unwrap();
    let peripherals = SimulatedPeripherals::new();
    let services = Arc::new(HostServices {
        peripherals: Arc::new(peripherals.clone()),
        channels: ChannelHub::new(),
        certificate,
        signer: Some(Arc::new(TestSigner(test_signing_key()))),
        listen_ip: "127.0.0.1".parse().unwrap(),
    });
    let events = Recorder::default();
    let supervisor = Supervisor::new(
        Arc::clone(&engine),
        storage,
        services,
        config,
        events.sink(),
    );
    Rig {
        dir,
        supervisor,
        peripherals,
        events,
        engine,
    }
}

/// Polls `cond` until it holds.
pub fn eventually(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The app's output so far, one string.
pub fn output(rig: &Rig, n: u128) -> String {
    rig.supervisor
        .output(Uuid::from_u128(n))
        .unwrap()
        .join("\n")
}

/// The key the rig's host signs with for apps (the device certificate's key
/// on a real device), the same one every call.
pub fn test_signing_key() -> &'static sevenfold_rot::SoftwareKey {
    static KEY: std::sync::OnceLock<sevenfold_rot::SoftwareKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        sevenfold_rot::SoftwareKey::generate(sevenfold_rot::KeyAlgorithm::EcdsaP256)
            .unwrap()
            .0
    })
}

struct TestSigner(&'static sevenfold_rot::SoftwareKey);

impl sevenfold_compartment::DeviceSigner for TestSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        self.0.sign(message).map_err(|e| e.to_string())
    }
}
