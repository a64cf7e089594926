//! End-to-end tests of the `sevenfold` binary: real processes, real files,
//! the real sample app compiled to WebAssembly.

// Test helpers outside `#[test]` functions may panic: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

fn sevenfold(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sevenfold"))
        .args(args)
        .output()
        .expect("run sevenfold")
}

fn ok_json(args: &[&str]) -> Value {
    let mut all = vec!["--output", "json"];
    all.extend_from_slice(args);
    let out = sevenfold(&all);
    assert!(
        out.status.success(),
        "sevenfold {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn blink_wasm() -> PathBuf {
    let dir = env!("SEVENFOLD_SAMPLE_WASM_DIR");
    assert!(
        !dir.is_empty(),
        "sample apps were not built; run `rustup target add wasm32-wasip1`"
    );
    Path::new(dir).join("blink.wasm")
}

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn keygen(&self, name: &str, algorithm: &str) -> Value {
        ok_json(&[
            "keygen",
            "--out",
            s(&self.path(name)),
            "--algorithm",
            algorithm,
        ])
    }

    fn package_blink(&self, key: &str, out: &str) -> Value {
        let manifest = repo().join("apps/blink/app_manifest.json");
        ok_json(&[
            "package",
            "--manifest",
            s(&manifest),
            "--payload",
            s(&blink_wasm()),
            "--key",
            s(&self.path(key)),
            "--out",
            s(&self.path(out)),
        ])
    }
}

#[test]
fn keygen_writes_a_private_key_only_the_owner_can_read() {
    let f = Fixture::new();
    for alg in ["ecdsa-p256", "ed25519"] {
        let name = format!("{alg}.pem");
        let report = f.keygen(&name, alg);
        assert_eq!(report["algorithm"], alg);
        assert_eq!(report["key_id"].as_str().unwrap().len(), 64);
        let mode = std::fs::metadata(f.path(&name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "private key mode");
        let private = std::fs::read_to_string(f.path(&name)).unwrap();
        assert!(private.starts_with("-----BEGIN PRIVATE KEY-----"));
        let public = std::fs::read_to_string(f.path(&format!("{alg}.pub.pem"))).unwrap();
        assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"));
    }
    // Never overwrite a key by accident.
    let again = sevenfold(&["keygen", "--out", s(&f.path("ed25519.pem"))]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
}

#[test]
fn package_round_trip_and_inspect_verifies_against_the_signer_only() {
    let f = Fixture::new();
    f.keygen("dev.pem", "ecdsa-p256");
    f.keygen("other.pem", "ed25519");
    let packaged = f.package_blink("dev.pem", "blink.imagepackage");
    assert_eq!(packaged["name"], "blink");
    assert_eq!(packaged["version"], "1.0.0");

    let inspected = ok_json(&[
        "image",
        "inspect",
        s(&f.path("blink.imagepackage")),
        "--public-key",
        s(&f.path("dev.pub.pem")),
    ]);
    assert_eq!(inspected["signature"]["status"], "verified");
    assert_eq!(inspected["package_digest"], packaged["package_digest"]);
    assert_eq!(inspected["payload_sha256"], packaged["payload_sha256"]);
    assert_eq!(inspected["manifest"]["Capabilities"]["Gpio"][0], 8);
    let wasm = std::fs::read(blink_wasm()).unwrap();
    assert_eq!(inspected["payload_size"], wasm.len() as u64);

    // Without keys: shown, not checked, success.
    let unchecked = ok_json(&["image", "inspect", s(&f.path("blink.imagepackage"))]);
    assert_eq!(unchecked["signature"]["status"], "not_checked");

    // Another key: refused, non-zero exit, reason given.
    let out = sevenfold(&[
        "--output",
        "json",
        "image",
        "inspect",
        s(&f.path("blink.imagepackage")),
        "--public-key",
        s(&f.path("other.pub.pem")),
    ]);
    assert!(!out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["signature"]["status"], "failed");
    assert!(report["signature"]["reason"]
        .as_str()
        .unwrap()
        .contains("not a trusted signing key"));
}

#[test]
fn tampered_package_is_refused_by_inspect() {
    let f = Fixture::new();
    f.keygen("dev.pem", "ecdsa-p256");
    f.package_blink("dev.pem", "blink.imagepackage");
    let path = f.path("blink.imagepackage");
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() - 200; // inside the wasm payload
    bytes[at] ^= 0x20;
    std::fs::write(&path, bytes).unwrap();
    let out = sevenfold(&[
        "image",
        "inspect",
        s(&path),
        "--public-key",
        s(&f.path("dev.pub.pem")),
    ]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("FAILED: signature does not verify"), "{text}");
}

#[test]
fn package_refuses_bad_input_with_clear_messages() {
    let f = Fixture::new();
    f.keygen("dev.pem", "ecdsa-p256");
    let manifest = repo().join("apps/blink/app_manifest.json");

    // A payload that is not WebAssembly.
    std::fs::write(f.path("not.wasm"), b"#!/bin/sh\necho hi\n").unwrap();
    let out = sevenfold(&[
        "package",
        "--manifest",
        s(&manifest),
        "--payload",
        s(&f.path("not.wasm")),
        "--key",
        s(&f.path("dev.pem")),
        "--out",
        s(&f.path("x.imagepackage")),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a WebAssembly module"));

    // A manifest with an error: the JSON path is named.
    std::fs::write(
        f.path("bad.json"),
        br#"{"SchemaVersion":1,"Name":"x","ComponentId":"not-a-uuid","Version":"1.0.0","SecurityVersion":1,"EntryPoint":"x.wasm"}"#,
    )
    .unwrap();
    let out = sevenfold(&[
        "package",
        "--manifest",
        s(&f.path("bad.json")),
        "--payload",
        s(&blink_wasm()),
        "--key",
        s(&f.path("dev.pem")),
        "--out",
        s(&f.path("x.imagepackage")),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("$.ComponentId"), "{err}");

    // A public key where the private key belongs.
    let out = sevenfold(&[
        "package",
        "--manifest",
        s(&manifest),
        "--payload",
        s(&blink_wasm()),
        "--key",
        s(&f.path("dev.pub.pem")),
        "--out",
        s(&f.path("x.imagepackage")),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a signing key"));

    // Errors in JSON mode are JSON on stderr.
    let out = sevenfold(&[
        "--output",
        "json",
        "image",
        "inspect",
        s(&f.path("missing")),
    ]);
    assert!(!out.status.success());
    let err: Value = serde_json::from_slice(&out.stderr).unwrap();
    assert!(err["error"].as_str().unwrap().contains("cannot open"));
}

#[test]
fn inspect_rejects_a_file_that_is_not_a_package() {
    let f = Fixture::new();
    std::fs::write(f.path("junk"), vec![0x42; 100]).unwrap();
    let out = sevenfold(&["image", "inspect", s(&f.path("junk"))]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad magic"));
}

#[test]
fn completions_for_every_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = sevenfold(&["completions", shell]);
        assert!(out.status.success());
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(
            script.contains("sevenfold") && script.contains("keygen"),
            "{shell}"
        );
    }
    let json = ok_json(&["completions", "fish"]);
    assert_eq!(json["shell"], "fish");
}

/// A running `sevenfold --output json quickstart` child, killed if the test
/// panics.
struct Quickstart {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Quickstart {
    fn spawn(data_dir: &Path, extra: &[&str]) -> Quickstart {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sevenfold"))
            .args(["--output", "json", "quickstart", "--data-dir", s(data_dir)])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start sevenfold quickstart");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Quickstart { child, lines }
    }

    /// The ready line, parsed.
    fn ready(&self) -> Value {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(120))
            .expect("quickstart printed no ready line within 120 s");
        let ready: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("ready line {line:?}: {e}"));
        assert_eq!(ready["event"], "ready", "{line}");
        ready
    }

    fn signal(&self, name: &str) {
        let sent = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(sent.success());
    }

    /// Waits up to `limit` for the process to exit; returns its status.
    fn exit_status(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "quickstart did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Quickstart {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Device IDs of a ready line: (healthy ones, sorted; the tampered one).
fn quickstart_devices(ready: &Value) -> (Vec<String>, String) {
    let mut healthy: Vec<String> = ready["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device_id"].as_str().unwrap().to_owned())
        .collect();
    healthy.sort();
    let failed = ready["failed_device"]["device_id"]
        .as_str()
        .unwrap()
        .to_owned();
    (healthy, failed)
}

/// Checks, through the operator API as the quickstart's admin, that its
/// tenant has the four devices in the Field Test group, three of them last
/// attested "pass" and the tampered one "fail" for its boot check.
fn check_quickstart_platform(ready: &Value) {
    let ca_pem = std::fs::read_to_string(ready["ca_file"].as_str().unwrap()).unwrap();
    let api = support::Api::new(
        ready["operator_api"].as_str().unwrap(),
        &ca_pem,
        ready["token"].as_str().unwrap(),
    );
    let tenant = ready["tenant_id"].as_str().unwrap();
    let (healthy, failed) = quickstart_devices(ready);
    assert_eq!(healthy.len(), 3, "{ready}");

    let products = api.get(&format!("/api/v1/tenants/{tenant}/products"));
    assert_eq!(products.status, 200, "{products:?}");
    let product = products
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "Sample thermostat")
        .expect("the sample product");
    let field_test = product["device_groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "Field Test")
        .expect("its Field Test group")["id"]
        .clone();

    let devices = api.get(&format!("/api/v1/tenants/{tenant}/devices"));
    assert_eq!(devices.status, 200, "{devices:?}");
    assert_eq!(devices.body["total"], 4, "{devices:?}");
    let mut claimed: Vec<String> = devices.body["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            assert_eq!(d["group_id"], field_test, "{d}");
            d["id"].as_str().unwrap().to_owned()
        })
        .collect();
    claimed.sort();
    let mut expected = healthy.clone();
    expected.push(failed.clone());
    expected.sort();
    assert_eq!(claimed, expected);

    let latest = |device: &str| {
        let r = api.get(&format!(
            "/api/v1/tenants/{tenant}/devices/{device}/attestations?limit=1"
        ));
        assert_eq!(r.status, 200, "{r:?}");
        r.body[0].clone()
    };
    for device in &healthy {
        let verdict = latest(device);
        assert_eq!(verdict["verdict"], "pass", "{device}: {verdict}");
        assert!(verdict["certificate_not_after"].is_string(), "{verdict}");
    }
    // The sample app arrived by deployment and an update was committed on
    // every healthy device; the crashing app is a problem.
    let deployments = ready["deployment_ids"].as_array().unwrap();
    let update = deployments.last().unwrap().as_str().unwrap();
    let shown = api.get(&format!("/api/v1/tenants/{tenant}/deployments/{update}"));
    assert_eq!(shown.status, 200, "{shown:?}");
    assert_eq!(shown.body["counts"]["installed"], 3, "{shown:?}");
    for device in &healthy {
        let row = shown.body["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["device_id"] == device.as_str())
            .unwrap_or_else(|| panic!("{device} is not in the update's progress"));
        assert_eq!(row["state"], "installed", "{row}");
        let measured = latest(device)["measurements"].to_string();
        assert!(
            measured.contains("1.1.0"),
            "{device} runs the update: {measured}"
        );
    }
    let problem = ready["problem_id"].as_str().unwrap();
    let shown = api.get(&format!("/api/v1/tenants/{tenant}/problems/{problem}"));
    assert_eq!(shown.status, 200, "{shown:?}");
    assert!(shown.body["count"].as_u64() >= Some(1), "{shown:?}");
    let dashboard = ready["dashboard"].as_str().unwrap();
    assert!(dashboard.ends_with("/ui/"), "{ready}");
    assert!(ready["login_link"]
        .as_str()
        .unwrap()
        .contains("/ui/login#token=sf_"));

    let verdict = latest(&failed);
    assert_eq!(verdict["verdict"], "fail", "{verdict}");
    let reasons = verdict["reasons"].to_string();
    assert!(reasons.contains("boot check failed"), "{reasons}");
    assert!(
        ready["failed_device"]["reasons"]
            .to_string()
            .contains("boot check failed"),
        "{ready}"
    );
}

#[test]
fn quickstart_runs_the_platform_and_reuses_its_data_directory() {
    let f = Fixture::new();
    let dir = f.path("qs");

    // First run: serves until SIGINT.
    let mut first = Quickstart::spawn(&dir, &[]);
    let ready = first.ready();
    check_quickstart_platform(&ready);
    let token = ready["token"].as_str().unwrap();
    assert!(token.starts_with("sf_"), "{ready}");
    let token_file = dir.join("admin-token");
    assert_eq!(std::fs::read_to_string(&token_file).unwrap().trim(), token);
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    first.signal("INT");
    let status = first.exit_status(Duration::from_secs(30));
    assert!(
        status.success(),
        "SIGINT should stop quickstart cleanly: {status}"
    );

    // Keep the first run's device port busy, so the second run has to move
    // its devices to another one. (A listener with SO_REUSEADDR, as the
    // server's, can bind while connections of the first run linger.)
    let device_api = ready["device_api"].as_str().unwrap().to_owned();
    let device_addr: std::net::SocketAddr =
        device_api.trim_start_matches("https://").parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let blocker = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(device_addr).unwrap();
        socket.listen(1).unwrap()
    });

    // Second run on the same directory: same devices, same token, and the
    // devices attest again (at the new device address).
    let mut second = Quickstart::spawn(&dir, &["--exit-when-ready"]);
    let again = second.ready();
    let status = second.exit_status(Duration::from_secs(30));
    assert!(
        status.success(),
        "--exit-when-ready should exit 0: {status}"
    );
    drop(blocker);
    assert_eq!(again["token"], ready["token"]);
    assert_eq!(again["tenant_id"], ready["tenant_id"]);
    assert_eq!(quickstart_devices(&again), quickstart_devices(&ready));
    assert_ne!(again["device_api"], ready["device_api"], "{again}");
    for device in again["devices"].as_array().unwrap() {
        assert_eq!(device["verdict"], "pass", "{device}");
        assert!(device["certificate_not_after"].is_string(), "{device}");
    }
    assert!(
        again["failed_device"]["reasons"]
            .to_string()
            .contains("boot check failed"),
        "{again}"
    );
    let mode = std::fs::metadata(dir.join("devices/device-1"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700);
}
