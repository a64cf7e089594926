//! Issue 7 end to end: a real server process and real agent processes.
//! Failures journaled on devices (boot checks, refused attestations,
//! heartbeats) reach the service exactly once, also when they were recorded
//! while the server was down and when a batch is resent; the same failure on
//! several devices is one problem; resolve and regression; the error report
//! as CSV and JSON; a webhook receiver checks the HMAC of every notification.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod failure_lab;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use failure_lab::*;
use serde_json::{json, Value};
use sevenfold_agent::journal::{Journal, DEFAULT_MAX_BYTES, JOURNAL_DIR};

#[test]
fn failures_reach_the_operator_once_grouped_resolvable_and_signed() {
    let mut lab = setup();
    let (hook_url, deliveries) = webhook_receiver();
    let hook = lab.op(&[
        "webhook",
        "add",
        &hook_url,
        "--events",
        "new-problem,regression,attestation-failed",
    ]);
    let secret = hook["secret"].as_str().unwrap().to_owned();

    // Three devices with the same broken image: each journals the boot check
    // failure and is refused; after the fix they pass and upload.
    let devices: Vec<(PathBuf, String)> = (1..=3).map(|n| lab.device(&format!("dev{n}"))).collect();
    for (state, _) in &devices {
        tamper(state);
        let out = run_once(state);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains("attested: fail"));
        lab.install_good(state);
        let out = run_once(state);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (_, ids) = &devices[0];
    let boot = problem_of(&lab, BLINK, "boot-check-failed");
    assert_eq!(boot["count"], 3, "{boot}");
    assert_eq!(boot["devices"], 3, "{boot}");
    assert_eq!(boot["status"], "open");
    // The refusals as the service recorded them, and as the devices saw them.
    let verifier = problem_of(&lab, "attestation", "attestation-failed");
    assert_eq!(
        (verifier["count"].as_u64(), verifier["devices"].as_u64()),
        (Some(3), Some(3))
    );
    let seen = problem_of(&lab, "runtime", "attestation-failed");
    assert_eq!(seen["count"], 3);
    let detail = lab.op(&["problem", "show", boot["id"].as_str().unwrap()]);
    assert_eq!(detail["device_ids"].as_array().unwrap().len(), 3);
    assert!(detail["device_ids"].to_string().contains(ids.as_str()));

    // Offline: the server is down while dev1 fails its boot check again and
    // journals heartbeats; all of it arrives once the server is back.
    lab.stop_server();
    let (dev1, dev1_id) = devices[0].clone();
    tamper(&dev1);
    assert!(!run_once(&dev1).status.success());
    lab.install_good(&dev1);
    let config = std::fs::read_to_string(dev1.join("agent.toml")).unwrap();
    std::fs::write(
        dev1.join("agent.toml"),
        format!("{config}\n[reporting]\nheartbeat_interval_secs = 1\nupload_interval_secs = 1\n"),
    )
    .unwrap();
    let agent = Running(spawn_agent(&dev1));
    wait_for("heartbeats while offline", Duration::from_secs(30), || {
        // The agent appends concurrently: read without touching the file.
        Journal::inspect(&dev1.join(JOURNAL_DIR)).is_ok_and(|records| {
            records
                .iter()
                .filter(|(r, _)| r.kind.as_str() == "heartbeat")
                .count()
                >= 3
        })
    });
    lab.start_server();
    wait_for(
        "the offline failures to arrive",
        Duration::from_secs(60),
        || problem_of(&lab, BLINK, "boot-check-failed")["count"] == 4,
    );
    wait_for("heartbeats to arrive", Duration::from_secs(30), || {
        stored_ids(&lab, &dev1_id).len() >= 6
    });
    // Stop the agent (SIGTERM) and compare journal and store.
    let _ = Command::new("kill")
        .args(["-TERM", &agent.0.id().to_string()])
        .status();
    drop(agent);
    let (all, delivered) = journal_ids(&dev1);
    let stored = stored_ids(&lab, &dev1_id);
    let stored_set: BTreeSet<String> = stored.iter().cloned().collect();
    assert_eq!(stored.len(), stored_set.len(), "a record was stored twice");
    assert!(
        delivered.is_subset(&stored_set),
        "an acknowledged record is missing"
    );
    assert!(
        stored_set.is_subset(&all),
        "the service holds a record the device never made"
    );
    // Deliver the rest, then resend everything as after a cut connection
    // (the cursor reset to the start): nothing is stored twice.
    assert!(run_once(&dev1).status.success());
    let after = stored_ids(&lab, &dev1_id);
    assert_eq!(
        after.iter().cloned().collect::<BTreeSet<_>>(),
        journal_ids(&dev1).0
    );
    std::fs::write(dev1.join(JOURNAL_DIR).join("cursor"), "0\n").unwrap();
    assert!(run_once(&dev1).status.success());
    assert_eq!(
        stored_ids(&lab, &dev1_id),
        after,
        "a resent batch was stored again"
    );
    assert_eq!(problem_of(&lab, BLINK, "boot-check-failed")["count"], 4);

    // Resolve the device-side refusal as fixed in 0.0.9; it comes back in
    // this runtime's (newer) version: a regression, announced by webhook.
    let seen = problem_of(&lab, "runtime", "attestation-failed");
    let resolved = lab.op(&[
        "problem",
        "resolve",
        seen["id"].as_str().unwrap(),
        "--fixed-in",
        "0.0.9",
    ]);
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(
        lab.op(&["problem", "list", "--status", "resolved"])["problems"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let (dev2, _) = &devices[1];
    tamper(dev2);
    assert!(!run_once(dev2).status.success());
    lab.install_good(dev2);
    assert!(run_once(dev2).status.success());
    let again = lab.op(&["problem", "show", seen["id"].as_str().unwrap()]);
    assert_eq!(again["status"], "regression", "{again}");
    assert_eq!(again["count"], 4);

    // The error report: JSON and CSV agree, newest first, no cap.
    let report = lab.op(&["error-report", "--days", "14", "--format", "json"]);
    let rows = report["rows"].as_array().unwrap();
    assert!(rows.len() >= 12, "{}", rows.len());
    assert!(rows.iter().all(|r| r["kind"] != "heartbeat"));
    let csv = lab.op_raw(&["error-report", "--format", "csv"]);
    assert!(csv.status.success());
    let csv = String::from_utf8(csv.stdout).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("at,received_at,device_id,group_id,component_id"));
    assert_eq!(lines.len(), rows.len() + 1);
    assert!(csv.contains(&dev1_id));
    // The whole report streams from the export; paged, it is the same.
    let paged = lab.op(&["error-report", "--limit", "100000", "--format", "json"]);
    assert_eq!(paged["rows"], report["rows"]);
    let limited = lab.op(&["error-report", "--limit", "2", "--format", "json"]);
    assert_eq!(limited["rows"].as_array().unwrap().len(), 2);
    // A device group filter: only dev3 is in "thermo/Field Test".
    lab.op(&["product", "create", "thermo"]);
    lab.op(&[
        "device",
        "assign",
        &devices[2].1,
        "--group",
        "thermo/Field Test",
    ]);
    let grouped = lab.op(&[
        "error-report",
        "--group",
        "thermo/Field Test",
        "--format",
        "json",
    ]);
    let grouped = grouped["rows"].as_array().unwrap();
    assert!(!grouped.is_empty());
    assert!(grouped
        .iter()
        .all(|r| r["device_id"] == devices[2].1.as_str()));

    // Webhooks: every notification is correctly signed; the receiver saw new
    // problems, refused attestations and the regression.
    wait_for("the regression webhook", Duration::from_secs(30), || {
        deliveries
            .lock()
            .unwrap()
            .iter()
            .any(|d| d.header("x-sevenfold-event") == Some("regression"))
    });
    let got = deliveries.lock().unwrap().clone();
    for d in &got {
        assert!(signature_ok(&secret, d), "bad signature on {d:?}");
        let body: Value = serde_json::from_slice(&d.body).unwrap();
        assert_eq!(
            Some(body["event"].as_str().unwrap()),
            d.header("x-sevenfold-event")
        );
    }
    let events: BTreeSet<&str> = got
        .iter()
        .filter_map(|d| d.header("x-sevenfold-event"))
        .collect();
    assert!(
        events.contains("new-problem") && events.contains("attestation-failed"),
        "{events:?}"
    );
    // The refused first delivery came again (same delivery ID) and was taken.
    let first_id = got[0].header("x-sevenfold-delivery").unwrap();
    assert!(
        got.iter()
            .skip(1)
            .any(|d| d.header("x-sevenfold-delivery") == Some(first_id)),
        "the refused delivery was not retried"
    );
    let mut forged = got[0].clone();
    forged.body.push(b' ');
    assert!(!signature_ok(&secret, &forged));

    // Retention: shown and changed per tenant, and enforced by the server's
    // background purge: a report received 20 days ago goes, one from 10 days
    // ago stays (retention 14 days).
    assert_eq!(lab.op(&["problem", "retention"])["retention_days"], 14);
    let tenant = lab.op(&["tenant", "show", "acme"])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    lab.stop_server();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for (record, days) in [("old-record", 20), ("recent-record", 10)] {
        sql(
            &lab,
            &format!(
                "INSERT INTO failure_reports (device_id, record_id, tenant_id, at, received_at, \
                 component_id, component_version, kind, reason, frames, details) VALUES \
                 ('{dev1_id}', '{record}', '{tenant}', {t}, {t}, 'app', '1', 'trap', 'x', '[]', '{{}}')",
                t = now_ms - days * 86_400_000
            ),
        );
    }
    lab.start_server();
    wait_for("the retention purge", Duration::from_secs(30), || {
        !stored_ids(&lab, &dev1_id).contains(&"old-record".to_owned())
    });
    assert!(stored_ids(&lab, &dev1_id).contains(&"recent-record".to_owned()));
    assert_eq!(
        lab.op(&["problem", "retention", "--set", "30"])["retention_days"],
        30
    );
}

#[test]
fn sigkill_during_upload_loses_nothing_and_stores_nothing_twice() {
    let lab = setup();
    let (state, id) = lab.device("dev1");
    assert!(run_once(&state).status.success());
    let config = std::fs::read_to_string(state.join("agent.toml")).unwrap();
    std::fs::write(
        state.join("agent.toml"),
        format!("{config}\n[reporting]\nupload_interval_secs = 1\n"),
    )
    .unwrap();
    // Failures recorded while the agent was down (150: two batches).
    let record_offline = || {
        let journal = Journal::open(&state.join(JOURNAL_DIR), DEFAULT_MAX_BYTES).unwrap();
        for n in 0..150 {
            let record = Journal::new_record(
                sevenfold_core::report::FailureKind::Trap,
                BLINK,
                "1.0.0",
                &format!("wasm trap at 0x{:x}: unreachable", n * 16),
            )
            .unwrap()
            .with_frames(["blink::run+0x1f", "_start"]);
            journal.record(&record).unwrap();
        }
        150
    };
    // How long boot, attestation and delivery take on this machine now (a
    // loaded CI machine is several times slower than an idle one): the
    // kills are spread over that span, so they land in every phase.
    let mut recorded = record_offline();
    let calibration = Running(spawn_agent(&state));
    let started = std::time::Instant::now();
    wait_for(
        "the calibration run to deliver",
        Duration::from_secs(120),
        || {
            let (all, delivered) = journal_ids(&state);
            all == delivered
        },
    );
    let mut span_ms = (started.elapsed().as_millis() as u64).clamp(500, 4000) * 5 / 4;
    drop(calibration);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let (mut delivered_some, mut cut_short) = (0, 0);
    let mut before = stored_ids(&lab, &id).len();
    for trial in 0..50 {
        recorded += record_offline();
        let mut agent = spawn_agent(&state);
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(span_ms / 10 + seed % span_ms));
        agent.kill().unwrap(); // SIGKILL, anywhere in boot, attestation or upload
        agent.wait().unwrap();
        let (all, delivered) = journal_ids(&state);
        let stored = stored_ids(&lab, &id);
        let stored_set: BTreeSet<String> = stored.iter().cloned().collect();
        assert_eq!(
            stored.len(),
            stored_set.len(),
            "trial {trial}: stored twice"
        );
        assert!(
            delivered.is_subset(&stored_set),
            "trial {trial}: acknowledged but not stored"
        );
        assert!(
            stored_set.is_subset(&all),
            "trial {trial}: stored but never journaled"
        );
        let some = stored_set.len() > before;
        let short = delivered.len() < all.len();
        delivered_some += usize::from(some);
        cut_short += usize::from(short);
        before = stored_set.len();
        // The machine's speed changes under other load: follow it, so the
        // kills keep landing both before and during delivery.
        if !short {
            span_ms = (span_ms * 17 / 20).max(300);
        } else if !some {
            span_ms = (span_ms * 23 / 20).min(10_000);
        }
    }
    // The kills landed both after uploads and before all was delivered.
    assert!(
        delivered_some >= 5 && cut_short >= 5,
        "{delivered_some} {cut_short}"
    );
    // Whatever was still pending arrives on the next run, each record once.
    // Fifty restarts in under a minute exhaust the device's nonce allowance
    // (20 a minute), so the agent may be told to wait before it attests
    // again; it still uploads with the certificate it holds.
    let mut agent = spawn_agent(&state);
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let (all, delivered) = loop {
        let (all, delivered) = journal_ids(&state);
        if all == delivered || std::time::Instant::now() > deadline {
            break (all, delivered);
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    agent.kill().unwrap();
    agent.wait().unwrap();
    assert_eq!(all, delivered);
    let stored = stored_ids(&lab, &id);
    assert_eq!(stored.len(), all.len());
    assert!(stored.len() >= recorded);
    // All those traps, at different addresses, are one problem.
    let trap = problem_of(&lab, BLINK, "trap");
    assert_eq!(trap["count"].as_u64(), Some(recorded as u64));
    assert_eq!(
        trap["title"],
        "wasm trap at <addr>: unreachable @ blink::run+<addr>"
    );
}

#[test]
fn a_record_the_service_refuses_is_set_aside_and_reported_not_retried_forever() {
    let lab = setup();
    let (state, id) = lab.device("dev1");
    // Seven records; the fourth poses as the verifier's own record of a
    // failed attestation, which the service refuses from a device.
    let mut refused = String::new();
    {
        let journal = Journal::open(&state.join(JOURNAL_DIR), DEFAULT_MAX_BYTES).unwrap();
        for n in 0..7 {
            let component = if n == 3 { "attestation" } else { BLINK };
            let record = Journal::new_record(
                sevenfold_core::report::FailureKind::AppExit,
                component,
                "1.0.0",
                &format!("exited with code {n}"),
            )
            .unwrap();
            if n == 3 {
                refused = record.id.to_string();
            }
            journal.record(&record).unwrap();
        }
    }
    let out = run_once(&state);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Everything left the journal; the service has all but the refused one,
    // and a notice that says what it refused and why.
    let (all, delivered) = journal_ids(&state);
    assert_eq!(all, delivered, "a refused record must not hold up the rest");
    let stored = stored_ids(&lab, &id);
    assert!(!stored.contains(&refused));
    assert_eq!(
        all.iter()
            .filter(|r| !stored.contains(r))
            .collect::<Vec<_>>(),
        [&refused]
    );
    let exits = problem_of(&lab, BLINK, "app-exit");
    assert_eq!(exits["count"], 6, "{exits}");
    let notice = problem_of(&lab, "runtime", "records-dropped");
    assert!(
        notice["title"].as_str().unwrap().contains("reserved"),
        "{notice}"
    );
    // The next run has nothing left to send.
    assert!(run_once(&state).status.success());
    assert_eq!(stored_ids(&lab, &id).len(), stored.len());
}

/// The hostile `trap` app: prints a line, then traps (index out of bounds).
const TRAP: &str = "0c1d2e3f-4a5b-4c6d-8e7f-a0b1c2d3e4f5";

/// Stored trap records of `device`: (frames, details) as JSON.
fn stored_traps(lab: &Lab, device: &str) -> Vec<(Vec<String>, BTreeMap<String, String>)> {
    query_rows(
        lab,
        "SELECT frames, details FROM failure_reports WHERE device_id = $1 AND kind = 'trap'",
        device,
    )
    .into_iter()
    .map(|(frames, details)| {
        (
            serde_json::from_str(&frames).unwrap(),
            serde_json::from_str(&details).unwrap(),
        )
    })
    .collect()
}

#[test]
fn a_crashing_app_is_one_problem_across_devices_and_crash_details_follow_the_group() {
    let lab = setup();
    // The real trap app, packaged, signed and released like any other.
    let manifest = lab.path("trap.json");
    std::fs::write(
        &manifest,
        json!({
            "SchemaVersion": 1,
            "Name": "trap",
            "ComponentId": TRAP,
            "Version": "1.0.0",
            "SecurityVersion": 1,
            "EntryPoint": "hostile-trap.wasm",
            "Capabilities": { "MemoryKB": 2048, "CpuPercent": 5 }
        })
        .to_string(),
    )
    .unwrap();
    ok_json(&[
        "package",
        "--manifest",
        s(&manifest),
        "--payload",
        s(&Path::new(env!("SEVENFOLD_SAMPLE_WASM_DIR")).join("hostile-trap.wasm")),
        "--key",
        s(&lab.path("release.pem")),
        "--out",
        s(&lab.path("trap.imagepackage")),
    ]);
    lab.op(&["image", "add", s(&lab.path("trap.imagepackage"))]);
    lab.op(&["product", "create", "gadget"]);
    let group = lab.op(&["device-group", "show", "gadget/Field Test"]);
    assert_eq!(group["crash_details"], false, "off by default: {group}");
    let group = lab.op(&[
        "device-group",
        "update",
        "gadget/Field Test",
        "--crash-details",
        "on",
    ]);
    assert_eq!(group["crash_details"], true, "{group}");

    // Two devices in the group with crash details on, one in a group without.
    let mut agents = Vec::new();
    let mut devices = Vec::new();
    for (name, group) in [
        ("dev1", "gadget/Field Test"),
        ("dev2", "gadget/Field Test"),
        ("dev3", "gadget/Production"),
    ] {
        let (state, id) = lab.device(name);
        ok_json(&[
            "agent",
            "install",
            "--state-dir",
            s(&state),
            s(&lab.path("trap.imagepackage")),
        ]);
        lab.op(&["device", "assign", &id, "--group", group]);
        let config = std::fs::read_to_string(state.join("agent.toml")).unwrap();
        std::fs::write(
            state.join("agent.toml"),
            format!("{config}\n[reporting]\nupload_interval_secs = 1\n"),
        )
        .unwrap();
        agents.push(Running(spawn_agent(&state)));
        devices.push(id);
    }
    // The app crashes and is restarted with back-off on every device. The
    // first crash may come before a device has heard its group's choice;
    // the later ones carry the output tail where the group wants it.
    let has_tail = |device: &str| {
        stored_traps(&lab, device)
            .iter()
            .any(|(_, details)| details.contains_key("output_tail"))
    };
    wait_for(
        "crashes from every device, with crash details from the first two",
        Duration::from_secs(90),
        || {
            devices.iter().all(|d| !stored_traps(&lab, d).is_empty())
                && has_tail(&devices[0])
                && has_tail(&devices[1])
        },
    );
    drop(agents);
    std::thread::sleep(Duration::from_millis(500));

    // One problem across the three devices, counting every stored crash.
    let stored: usize = devices.iter().map(|d| stored_traps(&lab, d).len()).sum();
    let trap = problem_of(&lab, TRAP, "trap");
    assert_eq!(trap["devices"], 3, "{trap}");
    assert_eq!(trap["count"].as_u64(), Some(stored as u64), "{trap}");
    assert_eq!(
        problems(&lab)
            .iter()
            .filter(|p| p["component_id"] == TRAP && p["kind"] == "trap")
            .count(),
        1
    );

    // With crash details on: the app's last output and the whole backtrace.
    let detailed = stored_traps(&lab, &devices[0]);
    let (frames, details) = detailed
        .iter()
        .find(|(_, d)| d.contains_key("output_tail"))
        .unwrap();
    assert!(
        details["output_tail"].contains("hostile-trap: about to fail"),
        "{details:?}"
    );
    assert!(!frames.is_empty(), "a trap has a backtrace");
    // Off: the top frames that identify the crash, nothing the app wrote.
    for (frames, details) in stored_traps(&lab, &devices[2]) {
        assert!(!details.contains_key("output_tail"), "{details:?}");
        assert!(frames.len() <= sevenfold_core::report::SIGNATURE_FRAMES);
    }
    // The operator sees the latest occurrence in full.
    let shown = lab.op(&["problem", "show", trap["id"].as_str().unwrap()]);
    let latest = &shown["latest"];
    assert!(
        devices.iter().any(|d| latest["device_id"] == d.as_str()),
        "{shown}"
    );
    assert!(
        latest["reason"].as_str().unwrap().contains("wasm"),
        "{shown}"
    );
}
