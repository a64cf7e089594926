//! Issue 5 end to end: a real server process and real agent processes.
//! Images are published through the device group's TUF repository with
//! `sevenfold deployment create`; `sevenfold agent update --now` fetches
//! through TUF, installs to the inactive slot, health-checks, commits and
//! raises the anti-rollback counter (or rolls back), and re-attests.
//! Attacks and failures are refused with their reason recorded on the
//! deployment.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::path::PathBuf;
use std::process::Command;

use serde_json::json;
use support::fleet::{active_sha256, device_row, file_sha256, update, Fleet, BLINK};
use support::{s, sevenfold};

#[test]
fn deployed_update_installs_commits_raises_the_counter_and_reattests_and_attacks_are_refused() {
    let f = Fleet::start(&[]);
    let (_v1, v1_file) = f.image("1.0.0", 1, "release");
    let (state, device) = f.device("dev1", &v1_file);

    // Nothing published yet: the group's repository is empty but valid.
    let nothing = update(&state);
    assert_eq!(nothing["outcomes"], json!([]), "{nothing}");
    assert_eq!(nothing["changed"], false);

    // v2: installed to slot B, committed, counter raised, re-attested.
    let (v2, v2_file) = f.image("2.0.0", 2, "release");
    let d2 = f.deploy(&v2, &[]);
    let pending = f.show(&d2);
    assert_eq!(device_row(&pending, &device)["state"], "pending");
    let report = update(&state);
    assert_eq!(report["outcomes"][0]["state"], "installed", "{report}");
    assert_eq!(report["outcomes"][0]["version"], "2.0.0");
    assert_eq!(report["changed"], true);
    assert_eq!(report["attestation"], "pass", "{report}");
    assert_eq!(active_sha256(&state), file_sha256(&v2_file));
    let slot =
        std::fs::read_to_string(state.join(format!("updates/slots/{BLINK}/slot.toml"))).unwrap();
    assert!(slot.contains("active = \"b\""), "{slot}");
    assert!(slot.contains("security_version = 2"), "{slot}");
    // The counter is at 2: the old version no longer installs even by hand.
    let refused = sevenfold(&["agent", "install", "--state-dir", s(&state), s(&v1_file)]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("anti-rollback counter 2"), "{stderr}");
    // The service saw the new measurement in the re-attestation.
    let history = f.admin.get(&format!(
        "/api/v1/tenants/{}/devices/{device}/attestations",
        f.tenant
    ));
    assert_eq!(history.body[0]["verdict"], "pass", "{:?}", history.body);
    assert!(
        history.body[0].to_string().contains(&v2),
        "{}",
        history.body[0]
    );
    let shown = f.show(&d2);
    assert_eq!(device_row(&shown, &device)["state"], "installed", "{shown}");
    assert_eq!(shown["counts"]["installed"], 1);
    // A second round finds it up to date.
    let again = update(&state);
    assert_eq!(again["outcomes"][0]["state"], "up-to-date", "{again}");
    assert_eq!(again["changed"], false);

    // Rollback attack: a validly signed older version is refused.
    let d1 = f.deploy(&_v1, &[]);
    let report = update(&state);
    assert_eq!(report["outcomes"][0]["state"], "failed", "{report}");
    let reason = report["outcomes"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("security version 1 is below"), "{reason}");
    assert_eq!(active_sha256(&state), file_sha256(&v2_file));
    let row = f.show(&d1);
    assert_eq!(device_row(&row, &device)["state"], "failed");
    assert!(device_row(&row, &device)["reason"]
        .as_str()
        .unwrap()
        .contains("older version"));

    // A v3 that fails its health check (signed by a key the device does
    // not trust): switched, checked, rolled back to v2, reported.
    let (v3, _) = f.image("3.0.0", 3, "other");
    let d3 = f.deploy(&v3, &[]);
    let report = update(&state);
    assert_eq!(report["outcomes"][0]["state"], "rolled-back", "{report}");
    assert_eq!(report["attestation"], "pass", "{report}");
    assert_eq!(active_sha256(&state), file_sha256(&v2_file));
    let row = f.show(&d3);
    assert_eq!(device_row(&row, &device)["state"], "rolled-back");
    assert!(device_row(&row, &device)["reason"]
        .as_str()
        .unwrap()
        .contains("boot verification"));

    // Substitution: the stored target is swapped after publication.
    let (v4, _) = f.image("4.0.0", 4, "release");
    let d4 = f.deploy(&v4, &[]);
    let blob = f
        .server
        .data_dir
        .join(format!("blobs/blobs/images/{}/{v4}", f.tenant));
    let mut bytes = std::fs::read(&blob).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&blob, bytes).unwrap();
    // The delta from v2 (which the device runs) goes too, so the device
    // falls back to the full image.
    std::fs::remove_dir_all(
        f.server
            .data_dir
            .join(format!("blobs/blobs/deltas/{}", f.tenant)),
    )
    .unwrap();
    let report = update(&state);
    assert_eq!(report["outcomes"][0]["state"], "failed", "{report}");
    assert_eq!(report["outcomes"][0]["delta_used"], false, "{report}");
    let reason = report["outcomes"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("does not match the signed"), "{reason}");
    assert_eq!(active_sha256(&state), file_sha256(&v2_file));
    assert_eq!(device_row(&f.show(&d4), &device)["state"], "failed");

    // Every deployment is listed, newest first.
    let list = f.op(&["deployment", "list", "--tenant", "acme"]);
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 4, "{list}");
    assert_eq!(ids[0], d4);
}

/// `agent update --now` on a TPM boots twice in one process, and the PCRs
/// keep the first boot's measurements: the second boot appends to the power
/// cycle's measurement log, and the re-attestation passes with the new
/// version as what runs now.
#[cfg(feature = "tpm")]
#[test]
fn on_a_tpm_update_now_installs_and_reattests_within_one_power_cycle() {
    let tpm = sevenfold_rot::tpm::simulator::Swtpm::start().expect("swtpm must be installed");
    let f = Fleet::start(&[]);
    for file in ["swtpm-localca-rootca-cert.pem", "issuercert.pem"] {
        f.op(&[
            "manufacturer",
            "trust",
            s(&tpm.ca_dir().join(file)),
            "--kind",
            "tpm",
        ]);
    }
    let (v1, v1_file) = f.image("1.0.0", 1, "release");
    let tcti = tpm.tcti();
    let (state, device) = f.device_on("dev1", &v1_file, &["--rot", "tpm", "--tcti", &tcti]);
    let (v2, v2_file) = f.image("2.0.0", 2, "release");
    f.deploy(&v2, &[]);
    let report = update(&state);
    assert_eq!(report["outcomes"][0]["state"], "installed", "{report}");
    assert_eq!(report["changed"], true);
    assert_eq!(report["attestation"], "pass", "{report}");
    assert_eq!(active_sha256(&state), file_sha256(&v2_file));
    // Two boots in this power cycle: the runtime and v1, then the runtime and v2.
    let log = std::fs::read_to_string(state.join("measurements.log")).unwrap();
    assert_eq!(log.lines().count(), 4, "{log}");
    let history = f.admin.get(&format!(
        "/api/v1/tenants/{}/devices/{device}/attestations",
        f.tenant
    ));
    let latest = history.body[0].to_string();
    assert_eq!(history.body[0]["verdict"], "pass", "{latest}");
    assert_eq!(history.body[1]["verdict"], "pass", "{:?}", history.body);
    assert!(latest.contains(&v2) && !latest.contains(&v1), "{latest}");
}

#[test]
fn an_expired_timestamp_is_refused() {
    let f = Fleet::start(&[("SEVENFOLD_TUF_TIMESTAMP_TTL_SECS", "2")]);
    let (_, v1_file) = f.image("1.0.0", 1, "release");
    let (state, _) = f.device("dev1", &v1_file);
    let (v2, _) = f.image("2.0.0", 2, "release");
    f.deploy(&v2, &[]);
    std::thread::sleep(std::time::Duration::from_secs(4));
    let out = sevenfold(&["agent", "update", "--now", "--state-dir", s(&state)]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("expired"), "{stderr}");
    // Nothing was installed.
    assert_eq!(active_sha256(&state), file_sha256(&v1_file));
}

#[test]
fn a_phased_rollout_reaches_its_share_only_and_halts_past_the_failure_threshold() {
    let f = Fleet::start(&[]);
    let (_, v1_file) = f.image("1.0.0", 1, "release");
    let devices: Vec<(PathBuf, String)> = (0..6)
        .map(|i| f.device(&format!("dev{i}"), &v1_file))
        .collect();
    let (v2, v2_file) = f.image("2.0.0", 2, "release");
    let d2 = f.deploy(&v2, &["--percent", "50"]);
    let mut inside = 0;
    for (state, id) in &devices {
        let member = sevenfold_core::update::in_rollout(id, &d2, 50);
        let report = update(state);
        let expected = if member {
            "installed"
        } else {
            "not-in-rollout"
        };
        assert_eq!(report["outcomes"][0]["state"], expected, "{id}: {report}");
        let running = active_sha256(state);
        assert_eq!(running == file_sha256(&v2_file), member, "{id}");
        inside += usize::from(member);
    }
    let shown = f.show(&d2);
    assert_eq!(shown["counts"]["targeted"], inside as u64, "{shown}");
    assert_eq!(shown["counts"]["installed"], inside as u64, "{shown}");

    // Raise to 100%: the rest follow.
    f.op(&[
        "deployment",
        "raise",
        &d2,
        "--percent",
        "100",
        "--tenant",
        "acme",
    ]);
    for (state, _) in &devices {
        let report = update(state);
        let state_text = report["outcomes"][0]["state"].as_str().unwrap().to_owned();
        assert!(
            state_text == "installed" || state_text == "up-to-date",
            "{report}"
        );
    }
    assert_eq!(f.show(&d2)["counts"]["installed"], 6);

    // A failing v3 with a 10% threshold halts after the first failure;
    // the other devices then see it halted and do not start.
    let (v3, _) = f.image("3.0.0", 3, "other");
    let d3 = f.deploy(&v3, &["--max-failure-percent", "10"]);
    let first = update(&devices[0].0);
    assert_eq!(first["outcomes"][0]["state"], "rolled-back", "{first}");
    let halted = f.show(&d3);
    assert_eq!(halted["status"], "halted", "{halted}");
    assert!(halted["halt_reason"].as_str().unwrap().contains("1 of 6"));
    let second = update(&devices[1].0);
    assert_eq!(second["outcomes"][0]["state"], "halted", "{second}");
    // Cancel: the image leaves the group's targets.
    let cancelled = f.op(&["deployment", "cancel", &d3, "--tenant", "acme"]);
    assert_eq!(cancelled["status"], "cancelled");
    let after = update(&devices[1].0);
    assert_eq!(after["outcomes"], json!([]), "{after}");
}

#[test]
fn the_running_agent_checks_for_updates_on_its_interval_and_boots_again() {
    let f = Fleet::start(&[]);
    let (_, v1_file) = f.image("1.0.0", 1, "release");
    let (state, device) = f.device("dev1", &v1_file);
    let agent = Command::new(support::bin())
        .args([
            "--output",
            "json",
            "agent",
            "run",
            "--state-dir",
            s(&state),
            "--update-interval",
            "1",
        ])
        .env("RUST_LOG", "warn")
        .env("SEVENFOLD_APP_HEALTH_SECS", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (v2, v2_file) = f.image("2.0.0", 2, "release");
    let d2 = f.deploy(&v2, &[]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    while active_sha256(&state) != file_sha256(&v2_file) {
        assert!(std::time::Instant::now() < deadline, "v2 was not installed");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // After the change it boots again and re-attests with v2 measured.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let history = f.admin.get(&format!(
            "/api/v1/tenants/{}/devices/{device}/attestations",
            f.tenant
        ));
        if history.body[0]["verdict"] == "pass" && history.body[0].to_string().contains(&v2) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{:?}", history.body);
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(device_row(&f.show(&d2), &device)["state"], "installed");
    let _ = Command::new("kill")
        .arg(agent.id().to_string())
        .status()
        .unwrap();
    let mut agent = agent;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while agent.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = agent.kill();
            panic!("the agent did not stop on SIGTERM");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let out = agent.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(r#""event":"update""#), "{stdout}");
    assert!(stdout.contains(r#""state":"installed""#), "{stdout}");
}

#[test]
fn a_device_moved_to_another_group_refuses_that_groups_repository() {
    let f = Fleet::start(&[]);
    let (_, v1_file) = f.image("1.0.0", 1, "release");
    let (state, device) = f.device("dev1", &v1_file);
    // The device pins its group's root on first contact.
    update(&state);
    let product = f.op(&["product", "show", "lamp", "--tenant", "acme"]);
    let production = product["device_groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "Production")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    f.op(&[
        "device",
        "assign",
        &device,
        "--group",
        &production,
        "--tenant",
        "acme",
    ]);
    let (v2, _) = f.image("2.0.0", 2, "release");
    f.op(&[
        "deployment",
        "create",
        "--group",
        &production,
        "--image",
        &v2,
        "--tenant",
        "acme",
    ]);
    let out = sevenfold(&["agent", "update", "--now", "--state-dir", s(&state)]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("update repository was refused"), "{stderr}");
    assert_eq!(active_sha256(&state), file_sha256(&v1_file));
}

#[test]
fn devices_follow_root_and_targets_key_rotations_with_thresholds() {
    let f = Fleet::start(&[]);
    let (_, v1_file) = f.image("1.0.0", 1, "release");
    let (state, _) = f.device("dev1", &v1_file);
    let (v2, v2_file) = f.image("2.0.0", 2, "release");
    f.deploy(&v2, &[]);
    assert_eq!(update(&state)["outcomes"][0]["state"], "installed");
    let rotated = f.op(&[
        "tuf",
        "rotate",
        "--group",
        &f.group,
        "--role",
        "root",
        "--keys",
        "3",
        "--threshold",
        "2",
        "--tenant",
        "acme",
    ]);
    assert_eq!(rotated["root_version"], 2, "{rotated}");
    f.op(&[
        "tuf",
        "rotate",
        "--group",
        &f.group,
        "--role",
        "targets",
        "--keys",
        "2",
        "--threshold",
        "2",
        "--tenant",
        "acme",
    ]);
    let shown = f.op(&["tuf", "show", "--group", &f.group, "--tenant", "acme"]);
    assert_eq!(shown["root_version"], 3, "{shown}");
    assert_eq!(shown["roles"][0]["role"], "root");
    assert_eq!(shown["roles"][0]["threshold"], 2);
    assert_eq!(shown["roles"][1]["key_ids"].as_array().unwrap().len(), 2);
    // The device walks root 1 → 2 → 3 and still installs what is deployed.
    let (v3, v3_file) = f.image("3.0.0", 3, "release");
    f.deploy(&v3, &[]);
    let report = update(&state);
    assert_eq!(report["outcomes"][0]["state"], "installed", "{report}");
    assert_eq!(active_sha256(&state), file_sha256(&v3_file));
    assert_ne!(file_sha256(&v2_file), file_sha256(&v3_file));
    // Snapshot and timestamp keys stay the service's.
    let err = support::cli_err(
        &f.server,
        &f.token,
        &f.path("config"),
        &[
            "tuf", "rotate", "--group", &f.group, "--role", "snapshot", "--tenant", "acme",
        ],
    );
    assert!(err.contains("invalid value"), "{err}");
}

#[test]
fn a_device_running_an_image_its_tenant_never_deployed_is_remedied_through_its_restricted_session()
{
    let f = Fleet::start(&[]);
    // A validly signed blink the tenant never uploaded: the device runs it.
    let blink = std::path::Path::new(env!("SEVENFOLD_SAMPLE_WASM_DIR")).join("blink.wasm");
    let stray = f.package("0.9.9", 1, "release", &blink);
    let (state, device) = f.device("dev1", &stray);
    let (v2, v2_file) = f.image("2.0.0", 2, "release");
    let d2 = f.deploy(&v2, &[]);

    // Refused (unknown image), but genuine: the restricted session fetches
    // blink's update only, installs and commits it, and the device, now
    // running what the tenant deployed, passes and has a certificate again.
    let report = update(&state);
    let outcome = &report["outcomes"][0];
    assert_eq!(outcome["state"], "installed", "{report}");
    assert_eq!(report["attestation"], "pass", "{report}");
    assert_eq!(active_sha256(&state), file_sha256(&v2_file));
    assert!(state.join("device-cert.pem").exists());
    assert!(
        !state.join("remediation.json").exists(),
        "a pass ends the restricted session on the device"
    );
    assert_eq!(device_row(&f.show(&d2), &device)["state"], "installed");
    let history = f.op(&["device", "attestation", &device, "--tenant", "acme"]);
    assert!(
        history.to_string().contains("unknown image hash"),
        "{history}"
    );
}
