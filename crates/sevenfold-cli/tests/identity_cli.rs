//! The device identity commands (`device attestation|revoke`, `tenant ca …`,
//! `runtime release …`) without a server: their command lines parse, usage
//! errors are usage errors, and what can be checked locally is checked
//! before anything is sent (the server address used is a closed port, so
//! reaching the network shows up as "cannot reach").

// Test helpers outside `#[test]` functions may panic: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A tenant ID: a UUID needs no lookup, so tenant commands get as far as
/// their own checks without a server.
const TENANT: &str = "00000000-0000-4000-8000-000000000001";

struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Home {
        Home {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs the binary with no connection settings but, when `connect`,
    /// `--server` (a closed port), `--token`, `--ca` and `--tenant` appended.
    fn run(&self, args: &[&str], connect: bool) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sevenfold"));
        cmd.args(args)
            .env("SEVENFOLD_CONFIG_DIR", self.path("config"))
            .env("HOME", self.dir.path());
        for name in [
            "SEVENFOLD_SERVER",
            "SEVENFOLD_TOKEN",
            "SEVENFOLD_CA",
            "SEVENFOLD_TENANT",
        ] {
            cmd.env_remove(name);
        }
        if connect {
            let ca = self.some_ca();
            let server = format!("https://127.0.0.1:{}", closed_port());
            cmd.args(["--server", &server, "--token", "sf_x", "--ca", s(&ca)]);
            // Runtime releases are server-wide: those commands take no tenant.
            if args.first() != Some(&"runtime") {
                cmd.args(["--tenant", TENANT]);
            }
        }
        cmd.output().unwrap()
    }

    /// Runs, expects failure with `code`, returns standard error.
    fn fails(&self, args: &[&str], connect: bool, code: i32) -> String {
        let out = self.run(args, connect);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(code),
            "sevenfold {args:?}: stdout {}, stderr {err}",
            String::from_utf8_lossy(&out.stdout)
        );
        err
    }

    /// A CA certificate to pass as `--ca` (no TLS handshake happens).
    fn some_ca(&self) -> PathBuf {
        let dir = self.path("someca");
        if !dir.join("ca.pem").exists() {
            let out = self.run(&["manufacturer", "init", "--out-dir", s(&dir)], false);
            assert!(out.status.success());
        }
        dir.join("ca.pem")
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn every_new_command_has_help() {
    let home = Home::new();
    for (args, needles) in [
        (
            &["device", "attestation", "--help"][..],
            &["DEVICE_ID", "--limit"][..],
        ),
        (&["device", "revoke", "--help"][..], &["DEVICE_ID"][..]),
        (
            &["tenant", "ca", "--help"][..],
            &["download", "prove", "rotate"][..],
        ),
        (
            &["tenant", "ca", "download", "--help"][..],
            &["--out", "--force", "--tenant"][..],
        ),
        (
            &["tenant", "ca", "prove", "--help"][..],
            &["--code", "--out"][..],
        ),
        (&["tenant", "ca", "rotate", "--help"][..], &["--tenant"][..]),
        (
            &["runtime", "release", "--help"][..],
            &["add", "revoke", "list"][..],
        ),
        (
            &["runtime", "release", "add", "--help"][..],
            &[
                "--digest",
                "--file",
                "--version",
                "--server",
                "SEVENFOLD_TOKEN",
            ][..],
        ),
        (
            &["runtime", "release", "revoke", "--help"][..],
            &["DIGEST"][..],
        ),
        (
            &["runtime", "release", "list", "--help"][..],
            &["--server"][..],
        ),
    ] {
        let out = home.run(args, false);
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for needle in needles {
            assert!(
                help.contains(needle),
                "{args:?} help lacks {needle}:\n{help}"
            );
        }
    }
    // Runtime releases are server-wide: no --tenant.
    let out = home.run(&["runtime", "release", "list", "--help"], false);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("--tenant"));
}

#[test]
fn runtime_release_add_needs_exactly_one_of_digest_and_file() {
    let home = Home::new();
    let err = home.fails(
        &["runtime", "release", "add", "--version", "1.0.0"],
        false,
        2,
    );
    assert!(err.contains("--digest") && err.contains("--file"), "{err}");

    let digest = "ab".repeat(32);
    let err = home.fails(
        &[
            "runtime",
            "release",
            "add",
            "--version",
            "1.0.0",
            "--digest",
            &digest,
            "--file",
            "x",
        ],
        false,
        2,
    );
    assert!(err.contains("cannot be used with"), "{err}");

    let err = home.fails(
        &["runtime", "release", "add", "--digest", &digest],
        false,
        2,
    );
    assert!(err.contains("--version"), "{err}");
}

#[test]
fn runtime_release_digests_are_checked_and_computed_here() {
    let home = Home::new();
    // A malformed digest is refused before anything is sent.
    let err = home.fails(
        &[
            "runtime",
            "release",
            "add",
            "--digest",
            "abc",
            "--version",
            "1",
        ],
        true,
        1,
    );
    assert!(
        err.contains("64 hex characters") && !err.contains("cannot reach"),
        "{err}"
    );
    let err = home.fails(&["runtime", "release", "revoke", "xyz"], true, 1);
    assert!(
        err.contains("64 hex characters") && err.contains("runtime release list"),
        "{err}"
    );
    // A missing file is named.
    let missing = home.path("no-such-runtime");
    let err = home.fails(
        &[
            "runtime",
            "release",
            "add",
            "--file",
            s(&missing),
            "--version",
            "1",
        ],
        true,
        1,
    );
    assert!(
        err.contains("no-such-runtime") && !err.contains("cannot reach"),
        "{err}"
    );
    // A readable file is hashed, then the server is asked.
    let runtime = home.path("runtime");
    std::fs::write(&runtime, b"a runtime build").unwrap();
    let err = home.fails(
        &[
            "runtime",
            "release",
            "add",
            "--file",
            s(&runtime),
            "--version",
            "1",
        ],
        true,
        1,
    );
    assert!(err.contains("cannot reach"), "{err}");
}

#[test]
fn local_mistakes_are_caught_before_the_server_is_asked() {
    let home = Home::new();
    // `--limit` is bounded like the server's.
    let err = home.fails(&["device", "attestation", "d", "--limit", "0"], false, 2);
    assert!(err.contains("--limit"), "{err}");
    let err = home.fails(&["device", "attestation", "d", "--limit", "1001"], false, 2);
    assert!(err.contains("--limit"), "{err}");
    // `--out` is required, and an existing file is not replaced without
    // --force (nothing is signed for nothing).
    let err = home.fails(&["tenant", "ca", "download"], false, 2);
    assert!(err.contains("--out"), "{err}");
    let err = home.fails(&["tenant", "ca", "prove", "--code", "c"], false, 2);
    assert!(err.contains("--out"), "{err}");
    let existing = home.path("proof.pem");
    std::fs::write(&existing, "keep me").unwrap();
    let err = home.fails(
        &[
            "tenant",
            "ca",
            "prove",
            "--code",
            "c",
            "--out",
            s(&existing),
        ],
        true,
        1,
    );
    assert!(
        err.contains("--force") && !err.contains("cannot reach"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "keep me");
    // With everything in order, the commands get as far as the network.
    for args in [
        &["device", "attestation", "d", "--limit", "5"][..],
        &["device", "revoke", "d"][..],
        &["tenant", "ca", "download", "--out", s(&home.path("ca.pem"))][..],
        &["tenant", "ca", "rotate"][..],
        &["runtime", "release", "list"][..],
    ] {
        let err = home.fails(args, true, 1);
        assert!(err.contains("cannot reach"), "{args:?}: {err}");
    }
    assert!(!home.path("ca.pem").exists());
}
