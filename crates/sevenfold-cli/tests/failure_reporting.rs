//! Issue 7 end to end: a real server process and real agent processes.
//! Failures journaled on devices (boot checks, refused attestations,
//! heartbeats) reach the service exactly once, also when they were recorded
//! while the server was down and when a batch is resent; the same failure on
//! several devices is one problem; resolve and regression; the error report
//! as CSV and JSON; a webhook receiver checks the HMAC of every notification.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sevenfold_agent::journal::{Journal, DEFAULT_MAX_BYTES, JOURNAL_DIR};
use support::{cli, cli_ok, TestServer};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn sevenfold(args: &[&str]) -> Output {
    Command::new(support::bin())
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn ok_json(args: &[&str]) -> Value {
    let mut all = vec!["--output", "json"];
    all.extend_from_slice(args);
    let out = sevenfold(&all);
    assert!(
        out.status.success(),
        "sevenfold {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP request the webhook receiver got.
#[derive(Clone, Debug)]
struct Delivery {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Delivery {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A minimal HTTP/1.1 receiver on loopback: 500 to the first POST, 200 to
/// every other.
fn webhook_receiver() -> (String, Arc<Mutex<Vec<Delivery>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut headers = Vec::new();
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                let h = h.trim_end();
                if h.is_empty() {
                    break;
                }
                let (k, v) = h.split_once(':').unwrap();
                headers.push((k.trim().to_owned(), v.trim().to_owned()));
            }
            let len: usize = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .map(|(_, v)| v.parse().unwrap())
                .unwrap_or(0);
            let mut body = vec![0u8; len];
            reader.read_exact(&mut body).unwrap();
            let first = {
                let mut got = sink.lock().unwrap();
                got.push(Delivery { headers, body });
                got.len() == 1
            };
            // The very first delivery is refused, to exercise the retry.
            let status = if first {
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            let _ = stream.write_all(
                format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .as_bytes(),
            );
        }
    });
    (url, got)
}

/// Checks `t=<secs>,v1=<hex>` against HMAC-SHA256(secret, "<secs>." ‖ body).
fn signature_ok(secret_hex: &str, delivery: &Delivery) -> bool {
    let Some(sig) = delivery.header("x-sevenfold-signature") else {
        return false;
    };
    let mut t = None;
    let mut v1 = None;
    for part in sig.split(',') {
        match part.split_once('=') {
            Some(("t", x)) => t = Some(x.to_owned()),
            Some(("v1", x)) => v1 = Some(x.to_owned()),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let secret: Vec<u8> = (0..secret_hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&secret_hex[i..i + 2], 16).unwrap())
        .collect();
    let tag: Vec<u8> = (0..v1.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&v1[i..i + 2], 16).unwrap())
        .collect();
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &secret);
    let mut message = format!("{t}.").into_bytes();
    message.extend_from_slice(&delivery.body);
    aws_lc_rs::hmac::verify(&key, &message, &tag).is_ok()
}

struct Lab {
    dir: tempfile::TempDir,
    device_port: u16,
    server: Option<TestServer>,
    token: String,
}

impl Lab {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn server(&self) -> &TestServer {
        self.server.as_ref().unwrap()
    }

    fn start_server(&mut self) {
        let port = format!("127.0.0.1:{}", self.device_port);
        let server = TestServer::start(
            &self.path("data"),
            None,
            &[
                ("SEVENFOLD_DEVICE_LISTEN", port.as_str()),
                // The test's webhook receiver is on loopback.
                ("SEVENFOLD_DANGER_LOOPBACK_WEBHOOKS", "1"),
            ],
        );
        if let Some(token) = &server.bootstrap_token {
            self.token = token.clone();
        }
        self.server = Some(server);
    }

    fn stop_server(&mut self) {
        assert!(self.server.take().unwrap().stop(), "server stopped cleanly");
    }

    fn op(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["--tenant", "acme"]);
        cli_ok(self.server(), &self.token, &self.path("config"), &all)
    }

    fn op_raw(&self, args: &[&str]) -> Output {
        let mut all = args.to_vec();
        all.extend(["--tenant", "acme"]);
        cli(self.server(), &self.token, &self.path("config"), &all)
    }

    /// A factory-initialised device claimed by acme with the app installed.
    fn device(&self, name: &str) -> (PathBuf, String) {
        let state = self.path(name);
        let init = ok_json(&[
            "agent",
            "init",
            "--state-dir",
            s(&state),
            "--service",
            &self.server().device_url,
            "--service-ca",
            s(&self.server().ca_file),
            "--endorse-with",
            s(&self.path("maker")),
        ]);
        let id = init["device_id"].as_str().unwrap().to_owned();
        self.op(&[
            "device",
            "claim",
            &id,
            "--endorsement",
            s(&state.join("endorsement.pem")),
        ]);
        ok_json(&[
            "agent",
            "trust-key",
            "--state-dir",
            s(&state),
            s(&self.path("release.pub.pem")),
        ]);
        self.install_good(&state);
        (state, id)
    }

    fn install_good(&self, state: &Path) {
        ok_json(&[
            "agent",
            "install",
            "--state-dir",
            s(state),
            s(&self.path("blink.imagepackage")),
        ]);
    }
}

fn setup() -> Lab {
    let mut lab = Lab {
        dir: tempfile::tempdir().unwrap(),
        device_port: free_port(),
        server: None,
        token: String::new(),
    };
    lab.start_server();
    let admin = lab.server().client(&lab.token);
    ok_json(&[
        "manufacturer",
        "init",
        "--out-dir",
        s(&lab.path("maker")),
        "--name",
        "Test Silicon",
    ]);
    let ca = std::fs::read_to_string(lab.path("maker/ca.pem")).unwrap();
    let r = admin.post("/api/v1/manufacturer-cas", json!({ "certificate_pem": ca }));
    assert_eq!(r.status, 201, "{r:?}");
    let runtime = sevenfold_rot::Digest::of(&std::fs::read(support::bin()).unwrap());
    let r = admin.post(
        "/api/v1/runtime-releases",
        json!({"digest": runtime.to_hex(), "version": "test"}),
    );
    assert_eq!(r.status, 201, "{r:?}");
    ok_json(&["keygen", "--out", s(&lab.path("release.pem"))]);
    cli_ok(
        lab.server(),
        &lab.token,
        &lab.path("config"),
        &["tenant", "create", "acme"],
    );
    lab.op(&[
        "signing-key",
        "add",
        s(&lab.path("release.pub.pem")),
        "--name",
        "release",
    ]);
    ok_json(&[
        "package",
        "--manifest",
        s(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../apps/blink/app_manifest.json")),
        "--payload",
        s(&Path::new(env!("SEVENFOLD_SAMPLE_WASM_DIR")).join("blink.wasm")),
        "--key",
        s(&lab.path("release.pem")),
        "--out",
        s(&lab.path("blink.imagepackage")),
    ]);
    lab.op(&["image", "add", s(&lab.path("blink.imagepackage"))]);
    lab
}

/// Flips a byte of the installed image, so its boot check fails.
fn tamper(state: &Path) {
    let image = std::fs::read_dir(state.join("images"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "imagepackage"))
        .unwrap();
    let mut bytes = std::fs::read(&image).unwrap();
    let at = bytes.len() - 100;
    bytes[at] ^= 0x01;
    std::fs::write(&image, bytes).unwrap();
}

fn run_once(state: &Path) -> Output {
    sevenfold(&["agent", "run", "--state-dir", s(state), "--once"])
}

/// Record IDs of a device's journal: (all, delivered).
fn journal_ids(state: &Path) -> (BTreeSet<String>, BTreeSet<String>) {
    let journal = Journal::open(&state.join(JOURNAL_DIR), DEFAULT_MAX_BYTES).unwrap();
    let records = journal.records();
    let all = records.iter().map(|(r, _)| r.id.to_string()).collect();
    let delivered = records
        .iter()
        .filter(|(_, d)| *d)
        .map(|(r, _)| r.id.to_string())
        .collect();
    (all, delivered)
}

/// The device records the service stored for `device`, with how often each
/// ID occurs (the primary key makes that 1; the test checks it anyway).
fn stored_ids(lab: &Lab, device: &str) -> Vec<String> {
    let url = format!("sqlite://{}", lab.path("data/sevenfold.db").display());
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            use sqlx::{Connection, Row};
            sqlx::any::install_default_drivers();
            let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
            sqlx::query(
                "SELECT record_id FROM failure_reports WHERE device_id = $1 \
                 AND component_id <> 'attestation' ORDER BY record_id",
            )
            .bind(device)
            .fetch_all(&mut conn)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String, _>("record_id"))
            .collect()
        })
}

fn problems(lab: &Lab) -> Vec<Value> {
    lab.op(&["problem", "list"])["problems"]
        .as_array()
        .unwrap()
        .clone()
}

fn problem_of(lab: &Lab, component: &str, kind: &str) -> Value {
    problems(lab)
        .into_iter()
        .find(|p| p["kind"] == kind && p["component_id"] == component)
        .unwrap_or_else(|| panic!("no {kind} problem of {component}: {:?}", problems(lab)))
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The sample app's component ID (its image file is `<ID>.imagepackage`).
const BLINK: &str = "5b9a1c52-3f0b-4a39-9d7e-6f2d1c3e8a10";

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

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
    let agent = Running(
        Command::new(support::bin())
            .args(["agent", "run", "--state-dir", s(&dev1)])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
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

/// Runs one SQL statement on the (stopped) server's SQLite database.
fn sql(lab: &Lab, statement: &str) {
    let url = format!("sqlite://{}", lab.path("data/sevenfold.db").display());
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            use sqlx::Connection;
            sqlx::any::install_default_drivers();
            let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_owned()))
                .execute(&mut conn)
                .await
                .unwrap();
        });
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
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut recorded = 0usize;
    let (mut delivered_some, mut cut_short, mut before) = (0, 0, 0usize);
    for trial in 0..50 {
        // Failures recorded while the agent was down (150: two batches).
        {
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
            recorded += 150;
        }
        let mut agent = Command::new(support::bin())
            .args(["agent", "run", "--state-dir", s(&state)])
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(100 + seed % 1400));
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
        delivered_some += usize::from(stored_set.len() > before);
        cut_short += usize::from(delivered.len() < all.len());
        before = stored_set.len();
    }
    // The kills landed both after uploads and before all was delivered.
    assert!(
        delivered_some >= 5 && cut_short >= 5,
        "{delivered_some} {cut_short}"
    );
    // Whatever was still pending arrives on the next run, each record once.
    assert!(run_once(&state).status.success());
    let (all, delivered) = journal_ids(&state);
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
