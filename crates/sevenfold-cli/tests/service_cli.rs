//! The object lifecycle of issue 3 driven through the real `sevenfold` CLI
//! against a real server process, and the audit log that records it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::path::{Path, PathBuf};

use serde_json::Value;
use support::{cli_err, cli_ok, TestServer};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn blink_wasm() -> PathBuf {
    Path::new(env!("SEVENFOLD_SAMPLE_WASM_DIR")).join("blink.wasm")
}

fn blink_manifest() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../apps/blink/app_manifest.json")
}

#[test]
fn lifecycle_through_the_cli_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let d = |name: &str| dir.path().join(name);
    let server = TestServer::start(&d("data"), None, &[]);
    let token = server.bootstrap_token.clone().unwrap();
    let config = d("config");
    let run = |args: &[&str]| cli_ok(&server, &token, &config, args);

    let login = run(&[
        "login",
        "--server",
        &server.url,
        "--token",
        &token,
        "--ca",
        s(&server.ca_file),
    ]);
    assert_eq!(login["user"], "admin");
    assert_eq!(login["server_admin"], true);

    let tenant = run(&["tenant", "create", "acme"]);
    let tenant_id = tenant["id"].as_str().unwrap().to_owned();
    let t = ["--tenant", "acme"];
    let with_t = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend_from_slice(&t);
        run(&all)
    };

    let product = with_t(&[
        "product",
        "create",
        "thermostat",
        "--description",
        "smart thermostat",
    ]);
    assert_eq!(product["device_groups"].as_array().unwrap().len(), 5);
    let group = with_t(&[
        "device-group",
        "create",
        "--product",
        "thermostat",
        "Beta",
        "--rollout-percent",
        "50",
    ]);
    assert_eq!(group["rollout_percent"], 50);
    let updated = with_t(&[
        "device-group",
        "update",
        "thermostat/Beta",
        "--update-policy",
        "no-app-updates",
    ]);
    assert_eq!(updated["update_policy"], "no-app-updates");
    assert_eq!(
        with_t(&["device-group", "list", "--product", "thermostat"])
            .as_array()
            .unwrap()
            .len(),
        6
    );

    // A device maker endorses a device key; the server trusts the maker.
    run(&[
        "manufacturer",
        "init",
        "--out-dir",
        s(&d("maker")),
        "--name",
        "Test Silicon",
    ]);
    run(&["keygen", "--out", s(&d("device.pem"))]);
    let endorsed = run(&[
        "manufacturer",
        "endorse",
        "--ca-dir",
        s(&d("maker")),
        "--device-key",
        s(&d("device.pub.pem")),
        "--out",
        s(&d("endorsement.pem")),
    ]);
    let device_id = endorsed["device_id"].as_str().unwrap().to_owned();
    run(&["manufacturer", "trust", s(&d("maker/ca.pem"))]);

    let claimed = with_t(&[
        "device",
        "claim",
        &device_id,
        "--endorsement",
        s(&d("endorsement.pem")),
    ]);
    assert_eq!(claimed["id"], device_id.as_str());
    assert_eq!(with_t(&["device", "list"])["total"], 1);
    with_t(&["device", "assign", &device_id, "--group", "thermostat/Beta"]);
    with_t(&["device", "enable-development", &device_id]);
    let shown = with_t(&["device", "show", &device_id]);
    assert_eq!(shown["mode"], "development");
    assert_eq!(shown["group_id"], group["id"]);

    // Images: signed with a registered key, uploaded, listed, downloaded intact.
    run(&["keygen", "--out", s(&d("release.pem"))]);
    with_t(&[
        "signing-key",
        "add",
        s(&d("release.pub.pem")),
        "--name",
        "release",
    ]);
    run(&[
        "package",
        "--manifest",
        s(&blink_manifest()),
        "--payload",
        s(&blink_wasm()),
        "--key",
        s(&d("release.pem")),
        "--out",
        s(&d("blink.imagepackage")),
    ]);
    let image = with_t(&["image", "add", s(&d("blink.imagepackage"))]);
    let image_id = image["id"].as_str().unwrap().to_owned();
    assert_eq!(image["name"], "blink");
    assert_eq!(
        with_t(&["image", "list"])["images"][0]["id"],
        image_id.as_str()
    );
    with_t(&[
        "image",
        "download",
        &image_id,
        "--out",
        s(&d("copy.imagepackage")),
    ]);
    assert_eq!(
        std::fs::read(d("copy.imagepackage")).unwrap(),
        std::fs::read(d("blink.imagepackage")).unwrap()
    );

    // A reader is refused changes with a message that says why.
    let reader = with_t(&["role", "add", "rita", "--role", "reader"]);
    let rita = reader["token"].as_str().unwrap().to_owned();
    let err = cli_err(
        &server,
        &rita,
        &d("rita"),
        &["product", "create", "x", "--tenant", &tenant_id],
    );
    assert!(err.contains("reader"), "{err}");

    // A group with devices cannot be deleted; once empty, it can.
    let err = cli_err(
        &server,
        &token,
        &config,
        &[
            "device-group",
            "delete",
            "thermostat/Beta",
            "--tenant",
            "acme",
        ],
    );
    assert!(err.contains("still has devices"), "{err}");
    with_t(&[
        "device",
        "assign",
        &device_id,
        "--group",
        "thermostat/Production",
    ]);
    with_t(&["device-group", "delete", "thermostat/Beta"]);

    // The audit log has each action with the right actor and outcome.
    let audit = with_t(&["audit", "list", "--limit", "1000"]);
    let entries = audit["entries"].as_array().unwrap();
    let has = |action: &str, actor: &str, outcome: &str| {
        entries.iter().any(|e: &Value| {
            e["action"] == action && e["actor"] == actor && e["outcome"] == outcome
        })
    };
    for action in [
        "tenant.create",
        "product.create",
        "device-group.create",
        "device-group.update",
        "device.claim",
        "device.assign",
        "device.enable-development",
        "signing-key.add",
        "image.add",
        "role.add",
        "device-group.delete",
    ] {
        assert!(
            has(action, "admin", "ok"),
            "audit lacks {action} by admin: {entries:#?}"
        );
    }
    assert!(has("product.create", "rita", "denied"));
    assert!(entries.iter().all(|e| e["source"] == "127.0.0.1"));
    let verify = run(&["audit", "verify"]);
    assert_eq!(verify["intact"], true);
    assert!(server.stop());
}
