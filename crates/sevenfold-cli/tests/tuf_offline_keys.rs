//! Root and targets keys held by the tenant, end to end with a real server
//! and a real agent: key holders make keys and sign drafts offline (no
//! server settings in their environment), the operator submits, the service
//! refuses what breaks a rule with its reason, and the device walks to each
//! new root and still installs what is deployed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::Value;
use support::fleet::{active_sha256, file_sha256, update, Fleet};
use support::{ok_json, s, sevenfold};

/// `tuf key generate`, run with no server: returns the private key file.
fn key(f: &Fleet, name: &str) -> PathBuf {
    let path = f.path(&format!("holders/{name}.pem"));
    let made = ok_json(&["tuf", "key", "generate", "--out", s(&path)]);
    let id = made["key_id"].as_str().unwrap();
    assert_eq!(id.len(), 64, "{made}");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let public = f.path(&format!("holders/{name}.pub.json"));
    assert_eq!(made["public_key"], s(&public));
    path
}

fn public(key: &Path) -> String {
    key.with_extension("pub.json").to_str().unwrap().to_owned()
}

/// `tuf root|targets sign`, offline.
fn sign(kind: &str, draft: &Path, key: &Path) -> Value {
    ok_json(&["tuf", kind, "sign", s(draft), "--key", s(key)])
}

fn sign_fails(kind: &str, draft: &Path, key: &Path) -> String {
    let out = sevenfold(&["tuf", kind, "sign", s(draft), "--key", s(key)]);
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `tuf root|targets submit` of `draft` to the fleet's group.
fn submit_args<'a>(f: &'a Fleet, kind: &'a str, draft: &'a Path) -> [&'a str; 8] {
    let group = f.group.as_str();
    [
        "tuf",
        kind,
        "submit",
        "--group",
        group,
        s(draft),
        "--tenant",
        "acme",
    ]
}

fn submit_fails(f: &Fleet, kind: &str, draft: &Path) -> String {
    let args = submit_args(f, kind, draft);
    support::cli_err(&f.server, &f.token, &f.path("config"), &args)
}

fn submit(f: &Fleet, kind: &str, draft: &Path) -> Value {
    f.op(&submit_args(f, kind, draft))
}

/// `tuf root draft` with three new root keys, two of which must sign.
fn draft_root(f: &Fleet, keys: &[PathBuf], extra: &[&str], out: &Path) -> Value {
    let publics: Vec<String> = keys.iter().map(|k| public(k)).collect();
    let mut args = vec![
        "tuf",
        "root",
        "draft",
        "--group",
        &f.group,
        "--root-key-pub",
    ];
    args.extend(publics.iter().map(String::as_str));
    args.extend(["--threshold", "2", "--out", s(out), "--tenant", "acme"]);
    args.extend_from_slice(extra);
    f.op(&args)
}

fn root_version(f: &Fleet) -> u64 {
    f.op(&["tuf", "show", "--group", &f.group, "--tenant", "acme"])["root_version"]
        .as_u64()
        .unwrap()
}

#[test]
fn the_tenant_takes_root_and_targets_keys_offline_and_devices_follow() {
    let f = Fleet::start(&[]);
    let (_, v1_file) = f.image("1.0.0", 1, "release");
    let (state, _) = f.device("dev1", &v1_file);
    let (v2, _) = f.image("2.0.0", 2, "release");
    f.deploy(&v2, &[]);
    // The device pins root 1, signed by the service's key.
    assert_eq!(update(&state)["outcomes"][0]["state"], "installed");

    // Three holders make root keys; the root goes offline, 2 of 3.
    let r: Vec<PathBuf> = (1..=3).map(|i| key(&f, &format!("root{i}"))).collect();
    let draft = f.path("root-2.json");
    let drafted = draft_root(&f, &r, &[], &draft);
    assert_eq!(drafted["version"], 2, "{drafted}");
    assert_eq!(drafted["roles"][0]["threshold"], 2, "{drafted}");
    let signed = sign("root", &draft, &r[0]);
    assert_eq!(signed["signing"]["signed_as"][0], "new root", "{signed}");
    // Below the new root's threshold: refused, nothing changes.
    let err = submit_fails(&f, "root", &draft);
    assert!(
        err.contains("1 valid signature(s) by the new root's root keys; 2 needed"),
        "{err}"
    );
    assert_eq!(root_version(&f), 1);
    // A key in neither root cannot sign.
    let stranger = key(&f, "stranger");
    let err = sign_fails("root", &draft, &stranger);
    assert!(err.contains("is not a root key"), "{err}");
    let signed = sign("root", &draft, &r[2]);
    assert_eq!(signed["draft"]["progress"]["new_root"]["valid"], 2);
    let accepted = submit(&f, "root", &draft);
    assert_eq!(accepted["root_version"], 2, "{accepted}");
    assert_eq!(accepted["service_cross_signed"], true);
    assert_eq!(accepted["service_signs_targets"], true);
    let shown = f.op(&["tuf", "show", "--group", &f.group, "--tenant", "acme"]);
    assert_eq!(shown["service_holds_root_keys"], false, "{shown}");
    // The service can no longer rotate the root by itself.
    let err = support::cli_err(
        &f.server,
        &f.token,
        &f.path("config"),
        &[
            "tuf", "rotate", "--group", &f.group, "--role", "root", "--tenant", "acme",
        ],
    );
    assert!(err.contains("held by the tenant"), "{err}");
    // The device walks root 1 → 2 and installs v3.
    let (v3, v3_file) = f.image("3.0.0", 3, "release");
    f.deploy(&v3, &[]);
    let report = update(&state);
    assert_eq!(report["outcomes"][0]["state"], "installed", "{report}");
    assert_eq!(active_sha256(&state), file_sha256(&v3_file));

    // The next rotation is the holders' alone, and takes targets offline too.
    let n: Vec<PathBuf> = (1..=3).map(|i| key(&f, &format!("next{i}"))).collect();
    let t: Vec<PathBuf> = (1..=2).map(|i| key(&f, &format!("targets{i}"))).collect();
    let draft3 = f.path("root-3.json");
    let targets_keys = [public(&t[0]), public(&t[1])];
    let extra = [
        "--targets-key-pub",
        &targets_keys[0],
        &targets_keys[1],
        "--targets-threshold",
        "2",
    ];
    draft_root(&f, &n, &extra, &draft3);
    // A copy that moves the snapshot role to a tenant key, fully signed.
    let mut moved: Value = serde_json::from_slice(&std::fs::read(&draft3).unwrap()).unwrap();
    let tenant_key = moved["next"]["signed"]["roles"]["root"]["keyids"][0].clone();
    moved["next"]["signed"]["roles"]["snapshot"]["keyids"] = Value::Array(vec![tenant_key]);
    let moved_path = f.path("root-3-moved.json");
    std::fs::write(&moved_path, serde_json::to_vec(&moved).unwrap()).unwrap();
    for k in [&r[0], &r[1], &n[0], &n[1]] {
        sign("root", &moved_path, k);
    }
    let err = submit_fails(&f, "root", &moved_path);
    assert!(err.contains("changes the snapshot keys"), "{err}");
    // One old key only: below the current root's threshold.
    let signed = sign("root", &draft3, &r[0]);
    assert_eq!(
        signed["signing"]["signed_as"][0], "current root",
        "{signed}"
    );
    sign("root", &draft3, &n[0]);
    sign("root", &draft3, &n[2]);
    let err = submit_fails(&f, "root", &draft3);
    assert!(
        err.contains("1 valid signature(s) by the current root's root keys; 2 needed"),
        "{err}"
    );
    assert_eq!(root_version(&f), 2);
    sign("root", &draft3, &r[1]);
    let accepted = submit(&f, "root", &draft3);
    assert_eq!(accepted["root_version"], 3, "{accepted}");
    assert_eq!(accepted["service_cross_signed"], false);
    assert_eq!(accepted["service_signs_targets"], false);
    // The old draft, fully signed but for version 2, is refused now.
    let err = submit_fails(&f, "root", &draft);
    assert!(err.contains("so the next must be 4"), "{err}");

    // A deployment now awaits the targets holders.
    let (v4, v4_file) = f.image("4.0.0", 4, "release");
    // Not waiting for its deltas: the draft does.
    let d4 = f.create_deployment(&v4, &[])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let shown = f.show(&d4);
    assert_eq!(shown["awaiting_targets_signature"], true, "{shown}");
    let targets = f.path("targets.json");
    let drafted = f.op(&[
        "tuf",
        "targets",
        "draft",
        "--group",
        &f.group,
        "--out",
        s(&targets),
        "--tenant",
        "acme",
    ]);
    assert_eq!(drafted["targets"][0][1], file_sha256(&v4_file), "{drafted}");
    // What the holders sign already carries the delta from v3, which the
    // device runs.
    let draft_file: Value = serde_json::from_slice(&std::fs::read(&targets).unwrap()).unwrap();
    let signed_targets = draft_file["targets"]["signed"]["targets"]
        .as_object()
        .unwrap();
    let offered = &signed_targets.values().next().unwrap()["custom"]["delta"];
    assert!(offered.get(file_sha256(&v3_file)).is_some(), "{offered}");
    assert_eq!(f.show(&d4)["deltas_state"], "ready");
    let err = sign_fails("targets", &targets, &n[0]);
    assert!(err.contains("not a targets key"), "{err}");
    sign("targets", &targets, &t[0]);
    let err = submit_fails(&f, "targets", &targets);
    assert!(
        err.contains("1 valid signature(s) by the root's targets keys; 2 needed"),
        "{err}"
    );
    sign("targets", &targets, &t[1]);
    let published = submit(&f, "targets", &targets);
    assert!(
        published["targets_version"].as_i64().unwrap() > 1,
        "{published}"
    );
    assert_eq!(f.show(&d4)["awaiting_targets_signature"], false);
    // The device walks root 2 → 3, verifies the tenant's targets, installs
    // v4 through the delta the holders signed.
    let report = update(&state);
    assert_eq!(report["outcomes"][0]["state"], "installed", "{report}");
    assert_eq!(report["outcomes"][0]["delta_used"], true, "{report}");
    assert_eq!(active_sha256(&state), file_sha256(&v4_file));
}
