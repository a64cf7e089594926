//! End-to-end tests of the `sevenfold` binary: real processes, real files,
//! the real sample app compiled to WebAssembly.

// Test helpers outside `#[test]` functions may panic: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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

#[test]
fn quickstart_runs_and_reuses_its_data_directory() {
    let f = Fixture::new();
    let dir = f.path("qs");
    let first = ok_json(&["quickstart", "--data-dir", s(&dir)]);
    assert_eq!(first["quote_verified"], true);
    assert!(first["tampered_package_refused"]
        .as_str()
        .unwrap()
        .contains("signature does not verify"));
    assert_eq!(first["apps"][0]["name"], "blink");
    let second = ok_json(&["quickstart", "--data-dir", s(&dir)]);
    assert_eq!(first["device_id"], second["device_id"]);
    assert_eq!(first["signing_key_id"], second["signing_key_id"]);
    let mode = std::fs::metadata(dir.join("device"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700);
}
