//! The agent runs exactly what measured boot verified, each app in its own
//! compartment, with the real sample apps.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Fixture;
use sevenfold_agent::{Agent, Apps, StateDir, APP_STORAGE_DIR};
use sevenfold_compartment::{EventSink, RunSettings, SimulatedPeripherals, SupervisorConfig};
use sevenfold_core::manifest::AppManifest;
use sevenfold_core::package::write_package;

/// Builds `apps/` for wasm32-wasip1 (as `sevenfold-cli`'s build script does).
fn wasm(name: &str) -> Vec<u8> {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir.join("../../target"))
        .join("apps");
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.args([
        "build",
        "--release",
        "--target",
        "wasm32-wasip1",
        "--manifest-path",
    ])
    .arg(manifest_dir.join("../../apps/Cargo.toml"))
    .arg("--target-dir")
    .arg(&target);
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
    ] {
        cmd.env_remove(var);
    }
    assert!(cmd.status().unwrap().success(), "building apps/ failed");
    std::fs::read(
        target
            .join("wasm32-wasip1/release")
            .join(format!("{name}.wasm")),
    )
    .unwrap()
}

fn sample_manifest(name: &str) -> AppManifest {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../apps/{name}/app_manifest.json"));
    AppManifest::from_json(&std::fs::read(path).unwrap()).unwrap()
}

fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_agent_runs_exactly_the_measured_apps_and_reports_them_in_status() {
    let f = Fixture::new();
    let blink = write_package(&sample_manifest("blink"), &wasm("blink"), &f.signer).unwrap();
    let notes = write_package(&sample_manifest("notes"), &wasm("notes"), &f.signer).unwrap();
    let telemetry =
        write_package(&sample_manifest("telemetry"), &wasm("telemetry"), &f.signer).unwrap();
    f.put_image("1-blink.imagepackage", &blink);
    let notes_path = f.put_image("2-notes.imagepackage", &notes);
    // Tampered: refused at boot, so never started.
    let mut bad = telemetry.clone();
    let at = bad.len() - 200;
    bad[at] ^= 1;
    f.put_image("3-telemetry.imagepackage", &bad);

    let state = StateDir::open(f.state.root()).unwrap();
    let agent = Agent::start(state, &f.runtime()).unwrap();
    let boot = agent.boot_report();
    assert_eq!(boot.verified_images.len(), 2, "{:?}", boot.failures);
    assert_eq!(boot.failures.len(), 1);

    let peripherals = SimulatedPeripherals::new();
    let sink: EventSink = Arc::new(|_| {});
    let config = SupervisorConfig {
        min_backoff: Duration::from_millis(50),
        grace: Duration::from_millis(500),
        run: RunSettings::default(),
        ..SupervisorConfig::default()
    };
    let apps = Apps::start(
        agent.state(),
        boot,
        Arc::new(peripherals.clone()),
        config.clone(),
        sink.clone(),
    )
    .unwrap();
    eventually("blink to toggle GPIO 8", || peripherals.toggles(8) >= 4);
    eventually("notes to finish", || {
        apps.status()
            .iter()
            .any(|a| a.name == "notes" && a.state == "exited")
    });
    let status = apps.status();
    assert_eq!(status.len(), 2, "{status:?}");
    let blink = status.iter().find(|a| a.name == "blink").unwrap();
    assert_eq!((blink.state.as_str(), blink.restarts), ("running", 0));
    assert!(blink.memory_bytes > 0);
    agent.record_apps(status.clone()).unwrap();
    let on_disk = f.state.read_status().unwrap().unwrap();
    assert_eq!(on_disk.apps, status);
    let component = sample_manifest("notes").component_id().to_string();
    let notes_file = f
        .state
        .root()
        .join(APP_STORAGE_DIR)
        .join(&component)
        .join("notes.txt");
    assert_eq!(std::fs::read_to_string(&notes_file).unwrap(), "note 1\n");
    apps.stop();
    assert!(apps.status().iter().all(|a| a.state != "running"));

    // A package swapped after boot is not the one measured: not started.
    std::fs::write(&notes_path, &telemetry).unwrap();
    let apps = Apps::start(
        agent.state(),
        boot,
        Arc::new(SimulatedPeripherals::new()),
        config,
        sink,
    )
    .unwrap();
    let notes = apps
        .status()
        .into_iter()
        .find(|a| a.name == "notes")
        .unwrap();
    assert_eq!(notes.state, "not-started");
    assert!(notes.last_failure.unwrap().contains("changed since boot"));
    apps.stop();
}
