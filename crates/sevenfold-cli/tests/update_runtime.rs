//! Runtime self-update end to end, with real processes: a runtime image is
//! deployed through the group's TUF repository, the agent installs its
//! executable to the inactive runtime slot on trial, and `sevenfold agent
//! supervise` starts it. A new runtime that exits at once is rolled back
//! (the previous runtime is started again and the deployment says why);
//! one that stays up past the health-check period is committed. A runtime
//! slot keeps the package it came from, so the next runtime arrives as a
//! delta from it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use support::fleet::{device_row, file_sha256, update, Fleet};
use support::{ok_json, s};

const RUNTIME: &str = "0c7f3e52-9a41-4d7b-8e2f-5b6a1d9c3e70";

/// Packages `script` as runtime `version` (an executable payload), uploads it.
fn runtime_image(f: &Fleet, version: &str, security_version: u32, script: &str) -> String {
    let manifest = json!({
        "SchemaVersion": 1,
        "Name": "sevenfold-runtime",
        "ComponentId": RUNTIME,
        "Version": version,
        "SecurityVersion": security_version,
        "ImageType": "Runtime",
        "EntryPoint": "sevenfold",
    });
    let manifest_path = f.path(&format!("runtime-{version}.json"));
    std::fs::write(&manifest_path, manifest.to_string()).unwrap();
    let payload = f.path(&format!("runtime-{version}.sh"));
    std::fs::write(&payload, script).unwrap();
    let out = f.path(&format!("runtime-{version}.imagepackage"));
    ok_json(&[
        "package",
        "--manifest",
        s(&manifest_path),
        "--payload",
        s(&payload),
        "--key",
        s(&f.path("release.pem")),
        "--out",
        s(&out),
    ]);
    f.op(&["image", "add", s(&out), "--tenant", "acme"])["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn slot_toml(state: &Path) -> String {
    std::fs::read_to_string(state.join("runtime/slot.toml")).unwrap_or_default()
}

fn supervise(state: &Path, health_secs: u64) -> Child {
    supervise_checking(state, health_secs, 3600)
}

/// The supervisor, its runtime checking for updates every `interval` s.
fn supervise_checking(state: &Path, health_secs: u64, interval: u64) -> Child {
    Command::new(support::bin())
        .args([
            "--output",
            "json",
            "agent",
            "supervise",
            "--state-dir",
            s(state),
            "--health-period",
            &health_secs.to_string(),
            "--",
            "--update-interval",
            &interval.to_string(),
        ])
        .env("RUST_LOG", "info")
        .env("SEVENFOLD_APP_HEALTH_SECS", "1")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(state.with_extension("supervise.log")).unwrap())
        .spawn()
        .unwrap()
}

fn wait_for(what: &str, state: &Path, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting: {what}; runtime/slot.toml:\n{}\nsupervisor log:\n{}",
            slot_toml(state),
            std::fs::read_to_string(state.with_extension("supervise.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// SIGTERM, then the supervisor's JSON lines (it must exit cleanly).
fn stop(mut child: Child) -> String {
    let status = Command::new("kill")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(40);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the supervisor did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(child.wait().unwrap().success());
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    out
}

fn started_pids(out: &str) -> Vec<(String, u32)> {
    out.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "started")
        .map(|v| {
            (
                v["slot"].as_str().unwrap().to_owned(),
                v["pid"].as_u64().unwrap() as u32,
            )
        })
        .collect()
}

fn alive(pid: u32) -> bool {
    PathBuf::from(format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

#[test]
fn a_new_runtime_that_exits_at_once_is_rolled_back_and_one_that_stays_up_is_committed() {
    let f = Fleet::start(&[]);
    let (_, v1_file) = f.image("1.0.0", 1, "release");
    let (state, device) = f.device("dev1", &v1_file);

    // A runtime that exits at once.
    let broken = runtime_image(&f, "2.0.0", 2, "#!/bin/sh\nexit 3\n");
    let d2 = f.deploy(&broken, &[]);
    let report = update(&state);
    assert_eq!(
        report["outcomes"][0]["state"], "restart-pending",
        "{report}"
    );
    let slot = slot_toml(&state);
    assert!(
        slot.contains("trial = true") && slot.contains("active = \"a\""),
        "{slot}"
    );

    let supervisor = supervise(&state, 3);
    wait_for("rollback of the broken runtime", &state, || {
        slot_toml(&state).contains("last_rollback")
    });
    // The previous (factory) runtime is started again and keeps running.
    std::thread::sleep(Duration::from_secs(2));
    let out = stop(supervisor);
    let slot = slot_toml(&state);
    assert!(slot.contains("trial = false"), "{slot}");
    assert!(!slot.contains("active ="), "{slot}");
    assert!(slot.contains("exit code 3"), "{slot}");
    let started = started_pids(&out);
    assert_eq!(started[0].0, "a", "{out}");
    assert_eq!(started[1].0, "factory", "{out}");
    assert!(out.contains(r#""event":"rolled-back""#), "{out}");
    for (_, pid) in &started {
        assert!(!alive(*pid), "runtime {pid} outlived its supervisor");
    }
    // The next round reports the rollback; the broken runtime is not retried.
    let report = update(&state);
    assert_eq!(report["outcomes"][0]["state"], "rolled-back", "{report}");
    let row = f.show(&d2);
    assert_eq!(device_row(&row, &device)["state"], "rolled-back", "{row}");
    assert!(device_row(&row, &device)["reason"]
        .as_str()
        .unwrap()
        .contains("health check"));

    // A runtime that stays up: the real runtime behind a wrapper.
    let good = runtime_image(
        &f,
        "3.0.0",
        3,
        &format!("#!/bin/sh\nexec '{}' \"$@\"\n", support::bin()),
    );
    let d3 = f.deploy(&good, &[]);
    assert_eq!(update(&state)["outcomes"][0]["state"], "restart-pending");
    let supervisor = supervise(&state, 2);
    wait_for("commit of the good runtime", &state, || {
        let slot = slot_toml(&state);
        slot.contains("trial = false") && slot.contains("version = \"3.0.0\"")
    });
    let slot = slot_toml(&state);
    assert!(slot.contains("security_version = 3"), "{slot}");
    assert!(!slot.contains("last_rollback"), "{slot}");
    // It is still the one running, and it reports its own install.
    wait_for("the committed runtime reports", &state, || {
        device_row(&f.show(&d3), &device)["state"] == "installed"
    });
    let out = stop(supervisor);
    assert!(out.contains(r#""event":"committed""#), "{out}");
    let started = started_pids(&out);
    assert_eq!(started.len(), 1, "{out}");
    assert!(!alive(started[0].1));
    // The runtime's anti-rollback counter is at 3 now: 2 is refused.
    let older = runtime_image(&f, "2.5.0", 2, "#!/bin/sh\nexit 0\n");
    f.deploy(&older, &[]);
    let report = update(&state);
    assert_eq!(report["outcomes"][0]["state"], "failed", "{report}");
    assert!(report["outcomes"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("security version 2 is below"));
}

#[test]
fn a_supervised_runtime_installs_a_new_runtime_and_hands_over_to_it() {
    let f = Fleet::start(&[]);
    let (_, v1_file) = f.image("1.0.0", 1, "release");
    let (state, device) = f.device("dev1", &v1_file);
    // The factory runtime runs under the supervisor and checks every second.
    let supervisor = supervise_checking(&state, 2, 1);
    let good = runtime_image(
        &f,
        "2.0.0",
        2,
        &format!("#!/bin/sh\nexec '{}' \"$@\"\n", support::bin()),
    );
    let d2 = f.deploy(&good, &[]);
    // It installs the runtime, exits with 75, and the supervisor starts the
    // new one on trial and commits it.
    wait_for("the handover to the new runtime", &state, || {
        let slot = slot_toml(&state);
        slot.contains("trial = false") && slot.contains("version = \"2.0.0\"")
    });
    wait_for("the new runtime reports its install", &state, || {
        device_row(&f.show(&d2), &device)["state"] == "installed"
    });
    let out = stop(supervisor);
    let started = started_pids(&out);
    assert_eq!(started[0].0, "factory", "{out}");
    assert_eq!(started[1].0, "a", "{out}");
    assert!(out.contains(r#""event":"committed""#), "{out}");
    for (_, pid) in &started {
        assert!(!alive(*pid));
    }
}

/// A runtime that execs the real one, padded like a real build (so a
/// delta between two builds is much smaller than either), `build` marking
/// the change.
fn padded_runtime(build: u32) -> String {
    let mut script = format!("#!/bin/sh\n# sevenfold test runtime, build {build}\n");
    for line in 0..2000 {
        script.push_str(&format!(
            "# {line:05} the quick brown fox jumps over the lazy dog {}\n",
            line * 7919 % 10007
        ));
    }
    script.push_str(&format!("exec '{}' \"$@\"\n", support::bin()));
    script
}

#[test]
fn a_runtime_update_goes_through_a_delta_from_the_package_its_slot_keeps() {
    let f = Fleet::start(&[]);
    let (_, v1_file) = f.image("1.0.0", 1, "release");
    let (state, device) = f.device("dev1", &v1_file);
    let v2 = runtime_image(&f, "2.0.0", 2, &padded_runtime(2));
    let v2_file = f.path("runtime-2.0.0.imagepackage");
    f.deploy(&v2, &[]);
    // From the factory runtime: no package to start from, the full image.
    let report = update(&state);
    assert_eq!(
        report["outcomes"][0]["state"], "restart-pending",
        "{report}"
    );
    assert_eq!(report["outcomes"][0]["delta_used"], false, "{report}");
    let supervisor = supervise(&state, 2);
    wait_for("commit of runtime 2", &state, || {
        let slot = slot_toml(&state);
        slot.contains("trial = false") && slot.contains("version = \"2.0.0\"")
    });
    stop(supervisor);
    // The slot keeps the package file it came from.
    let kept = state.join("runtime/a/package");
    assert_eq!(file_sha256(&kept), file_sha256(&v2_file));

    let v3 = runtime_image(&f, "3.0.0", 3, &padded_runtime(3));
    let v3_file = f.path("runtime-3.0.0.imagepackage");
    let d3 = f.deploy(&v3, &[]);
    let shown = f.show(&d3);
    let deltas = shown["deltas"].as_array().unwrap();
    assert_eq!(deltas.len(), 1, "{shown}");
    assert_eq!(deltas[0]["base_sha256"], file_sha256(&v2_file).as_str());
    let delta_len = deltas[0]["length"].as_u64().unwrap();
    let full_len = std::fs::metadata(&v3_file).unwrap().len();
    assert!(delta_len * 10 < full_len, "{delta_len} vs {full_len}");

    let report = update(&state);
    let outcome = &report["outcomes"][0];
    assert_eq!(outcome["state"], "restart-pending", "{report}");
    assert_eq!(outcome["delta_used"], true, "{report}");
    assert_eq!(outcome["downloaded_bytes"], delta_len, "{report}");
    // Rebuilt, verified against the signed hash, installed to slot b.
    assert_eq!(
        file_sha256(&state.join("runtime/b/package")),
        file_sha256(&v3_file)
    );
    let supervisor = supervise(&state, 2);
    wait_for("commit of runtime 3", &state, || {
        let slot = slot_toml(&state);
        slot.contains("trial = false") && slot.contains("version = \"3.0.0\"")
    });
    wait_for("runtime 3 reports its install", &state, || {
        device_row(&f.show(&d3), &device)["state"] == "installed"
    });
    let out = stop(supervisor);
    assert!(out.contains(r#""event":"committed""#), "{out}");
    let slot = slot_toml(&state);
    assert!(slot.contains("active = \"b\""), "{slot}");
    assert!(slot.contains(&file_sha256(&v3_file)), "{slot}");
}

#[test]
fn a_device_on_a_revoked_runtime_fails_attestation_and_fetches_only_the_remediating_update() {
    let f = Fleet::start(&[]);
    let (_, v1_file) = f.image("1.0.0", 1, "release");
    let (state, device) = f.device("dev1", &v1_file);
    // The group publishes a new runtime and a new version of the app.
    let fixed = runtime_image(&f, "2.0.0", 2, &padded_runtime(2));
    let fixed_file = f.path("runtime-2.0.0.imagepackage");
    let d_runtime = f.deploy(&fixed, &[]);
    let (v2, v2_file) = f.image("2.0.0", 2, "release");
    f.deploy(&v2, &[]);

    // The device attests and holds a certificate; then the runtime build it
    // runs (the test binary) is revoked.
    let attested = support::sevenfold(&["agent", "run", "--state-dir", s(&state), "--once"]);
    assert!(attested.status.success(), "{attested:?}");
    let old_certificate = std::fs::read(state.join("device-cert.pem")).unwrap();
    let digest = file_sha256(Path::new(support::bin()));
    f.op(&["runtime", "release", "revoke", &digest]);

    let report = update(&state);
    let outcome = |name: &str| {
        report["outcomes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["name"] == name)
            .unwrap_or_else(|| panic!("no outcome for {name}: {report}"))
            .clone()
    };
    // Refused, but genuine: the runtime update is fetched, verified and
    // installed to the inactive slot; the app update is not offered.
    assert_eq!(
        outcome("sevenfold-runtime")["state"],
        "restart-pending",
        "{report}"
    );
    let app = outcome("blink");
    assert_eq!(app["state"], "skipped", "{report}");
    assert!(
        app["reason"]
            .as_str()
            .unwrap()
            .contains("restricted session"),
        "{report}"
    );
    assert_eq!(
        file_sha256(&state.join("runtime/a/package")),
        file_sha256(&fixed_file)
    );
    assert!(
        !state.join("device-cert.pem").exists(),
        "a failing verdict leaves no certificate"
    );
    let attestations = f.op(&["device", "attestation", &device, "--tenant", "acme"]);
    assert!(
        attestations
            .to_string()
            .contains("is revoked; the device must update"),
        "{attestations}"
    );
    // The deployment hears from the device through the session.
    assert_ne!(device_row(&f.show(&d_runtime), &device)["state"], "pending");

    // The service enforces the restriction, whatever the agent asks for.
    let session: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("remediation.json")).unwrap()).unwrap();
    assert_eq!(session["components"], json!(["runtime"]), "{session}");
    let ca = std::fs::read_to_string(&f.server.ca_file).unwrap();
    let token = session["token"].as_str().unwrap();
    let as_session = support::Api::new(&f.server.device_url, &ca, token);
    let target = |file: &Path| format!("/device/v1/tuf/targets/{}.x", file_sha256(file));
    assert_eq!(as_session.get_raw(&target(&fixed_file)).0, 200);
    let (status, body) = as_session.get_raw(&target(&v2_file));
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        as_session.get("/device/v1/whoami").status,
        401,
        "the session is not a device certificate"
    );
    let forged = support::Api::new(&f.server.device_url, &ca, &"0".repeat(64));
    assert_eq!(forged.get_raw(&target(&fixed_file)).0, 401);

    // A device that kept its earlier certificate gains nothing by it: the
    // failing verdict came after it was issued.
    std::fs::write(state.join("device-cert.pem"), old_certificate).unwrap();
    let refused = support::sevenfold(&["agent", "whoami", "--state-dir", s(&state)]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("failed its latest attestation"),
        "{refused:?}"
    );
}
