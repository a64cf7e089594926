//! Power loss during an update: the agent is killed with SIGKILL at random
//! points of `agent update --now` (download, install, switch, health check,
//! commit, counter, re-attestation). After each kill, restarting the agent
//! must leave the device running a verified version, old or new, never a
//! partial or uncommitted one, with the counter matching what is committed.
//!
//! 50 trials by default; `SEVENFOLD_POWER_LOSS_TRIALS=N` runs more.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{cli_ok, ok_json, s, sevenfold, TestServer};

const BLINK: &str = "5b9a1c52-3f0b-4a39-9d7e-6f2d1c3e8a10";

fn sha256(path: &Path) -> Option<String> {
    std::fs::read(path)
        .ok()
        .map(|b| sevenfold_rot::Digest::of(&b).to_hex())
}

/// A random number below `bound` from the system's CSPRNG.
fn random_below(bound: u64) -> u64 {
    let bytes = sevenfold_rot::random_nonce().unwrap();
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(word) % bound.max(1)
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    let status = Command::new("cp")
        .args(["-a", s(from), s(to)])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn sigkill_at_random_points_of_an_update_never_leaves_an_unverified_image() {
    let dir = tempfile::tempdir().unwrap();
    let path = |n: &str| dir.path().join(n);
    let server = TestServer::start(&path("data"), None, &[]);
    let token = server.bootstrap_token.clone().unwrap();
    let admin = server.client(&token);
    let op = |args: &[&str]| cli_ok(&server, &token, &path("config"), args);

    ok_json(&["manufacturer", "init", "--out-dir", s(&path("maker"))]);
    let ca = std::fs::read_to_string(path("maker/ca.pem")).unwrap();
    assert_eq!(
        admin
            .post("/api/v1/manufacturer-cas", json!({"certificate_pem": ca}))
            .status,
        201
    );
    let runtime = sevenfold_rot::Digest::of(&std::fs::read(support::bin()).unwrap());
    admin.post(
        "/api/v1/runtime-releases",
        json!({"digest": runtime.to_hex(), "version": "test"}),
    );
    ok_json(&["keygen", "--out", s(&path("release.pem"))]);
    op(&["tenant", "create", "acme"]);
    op(&[
        "signing-key",
        "add",
        s(&path("release.pub.pem")),
        "--name",
        "release",
        "--tenant",
        "acme",
    ]);
    let product = op(&["product", "create", "lamp", "--tenant", "acme"]);
    let group_named = |name: &str| {
        product["device_groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == name)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let group = group_named("Field Test");
    let package = |version: &str, sv: u32| -> (String, PathBuf) {
        let mut manifest: Value = serde_json::from_str(
            &std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../../apps/blink/app_manifest.json"),
            )
            .unwrap(),
        )
        .unwrap();
        manifest["Version"] = json!(version);
        manifest["SecurityVersion"] = json!(sv);
        let m = path(&format!("m-{version}.json"));
        std::fs::write(&m, manifest.to_string()).unwrap();
        let out = path(&format!("blink-{version}.imagepackage"));
        ok_json(&[
            "package",
            "--manifest",
            s(&m),
            "--payload",
            s(&Path::new(env!("SEVENFOLD_SAMPLE_WASM_DIR")).join("blink.wasm")),
            "--key",
            s(&path("release.pem")),
            "--out",
            s(&out),
        ]);
        let id = op(&["image", "add", s(&out), "--tenant", "acme"])["id"]
            .as_str()
            .unwrap()
            .to_owned();
        (id, out)
    };
    let (v1_id, v1) = package("1.0.0", 1);
    let (v2_id, v2) = package("2.0.0", 2);

    let state = path("device");
    let id = support::enrol(
        &server,
        &state,
        &path("maker"),
        &path("release.pub.pem"),
        &[],
        |args| {
            let mut args = args.to_vec();
            args.extend(["--tenant", "acme"]);
            op(&args)
        },
    );
    op(&[
        "device", "assign", &id, "--group", &group, "--tenant", "acme",
    ]);
    ok_json(&["agent", "install", "--state-dir", s(&state), s(&v1)]);
    // Pin the group's root, then publish v2 and keep this state as the
    // starting point of every trial.
    ok_json(&["agent", "update", "--now", "--state-dir", s(&state)]);
    // The Development group's policy takes no application updates.
    let refused = support::cli_err(
        &server,
        &token,
        &path("config"),
        &[
            "deployment",
            "create",
            "--group",
            &group_named("Development"),
            "--image",
            &v2_id,
            "--tenant",
            "acme",
        ],
    );
    assert!(refused.contains("no-app-updates"), "{refused}");
    op(&[
        "deployment",
        "create",
        "--group",
        &group,
        "--image",
        &v2_id,
        "--tenant",
        "acme",
    ]);
    let snapshot = path("snapshot");
    copy_dir(&state, &snapshot);

    // How long an uninterrupted update takes on this machine: kills are
    // spread uniformly over it.
    let started = Instant::now();
    let full = ok_json(&["agent", "update", "--now", "--state-dir", s(&state)]);
    assert_eq!(full["outcomes"][0]["state"], "installed", "{full}");
    let span = started.elapsed().as_millis() as u64;

    let v1_sha = sha256(&v1).unwrap();
    let v2_sha = sha256(&v2).unwrap();
    let active = state.join(format!("images/{BLINK}.imagepackage"));
    let trials: usize = std::env::var("SEVENFOLD_POWER_LOSS_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let (mut old, mut new) = (0, 0);
    for trial in 0..trials {
        copy_dir(&snapshot, &state);
        let delay = random_below(span);
        let mut child = Command::new(support::bin())
            .args(["agent", "update", "--now", "--state-dir", s(&state)])
            .env("RUST_LOG", "error")
            .env("SEVENFOLD_APP_HEALTH_SECS", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();

        // Restart: boot (with recovery) must measure a verified v1 or v2 and
        // attest (a refusal only for the device's attestation rate limit,
        // which 50 restarts a minute exceed, is not a verdict).
        let restart = sevenfold(&["agent", "run", "--once", "--state-dir", s(&state)]);
        let stderr = String::from_utf8_lossy(&restart.stderr);
        assert!(
            restart.status.success() || stderr.contains("rate-limiting"),
            "trial {trial} (killed after {delay} ms): restart failed:\n{}\n{stderr}",
            String::from_utf8_lossy(&restart.stdout),
        );
        let status: Value =
            serde_json::from_slice(&std::fs::read(state.join("status.json")).unwrap()).unwrap();
        assert_eq!(
            status["boot_failures"],
            json!([]),
            "trial {trial}: {status}"
        );
        let measured: Vec<&str> = status["boot_measurements"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["component_id"] == BLINK)
            .map(|m| m["digest"].as_str().unwrap())
            .collect();
        assert_eq!(measured.len(), 1, "trial {trial}: {status}");
        assert!(
            measured[0] == v1_id || measured[0] == v2_id,
            "trial {trial}: measured {measured:?}"
        );
        let running = sha256(&active).expect("no active image");
        let slot = std::fs::read_to_string(state.join(format!("updates/slots/{BLINK}/slot.toml")))
            .unwrap_or_default();
        assert!(!slot.contains("trial = true"), "trial {trial}: {slot}");
        if running == v2_sha {
            assert_eq!(measured[0], v2_id, "trial {trial}");
            new += 1;
            // Committed: the counter is at 2, so v1 is refused.
            let again = sevenfold(&["agent", "install", "--state-dir", s(&state), s(&v1)]);
            assert!(!again.status.success(), "trial {trial}: counter not raised");
        } else {
            assert_eq!(
                running, v1_sha,
                "trial {trial}: neither v1 nor v2 is active"
            );
            old += 1;
        }
        // Whatever happened, a later round completes the update.
        if trial % 10 == 9 {
            let done = ok_json(&["agent", "update", "--now", "--state-dir", s(&state)]);
            let outcome = done["outcomes"][0]["state"].as_str().unwrap();
            assert!(
                outcome == "installed" || outcome == "up-to-date",
                "trial {trial}: {done}"
            );
            assert_eq!(sha256(&active).unwrap(), v2_sha);
        }
    }
    eprintln!("power-loss trials: {trials} ({old} left on v1, {new} on v2; span {span} ms)");
    assert_eq!(old + new, trials);
}
