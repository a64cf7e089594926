//! The lab of the failure reporting end-to-end tests: a real server whose
//! device port survives restarts, a tenant with the sample app, devices,
//! a webhook receiver, and readers of the journal and the database.

#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sevenfold_agent::journal::{Journal, DEFAULT_MAX_BYTES, JOURNAL_DIR};

pub use crate::support::{ok_json, s, sevenfold};

use crate::support::{self, cli, cli_ok, TestServer};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP request the webhook receiver got.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Delivery {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A minimal HTTP/1.1 receiver on loopback: 500 to the first POST, 200 to
/// every other.
pub fn webhook_receiver() -> (String, Arc<Mutex<Vec<Delivery>>>) {
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
pub fn signature_ok(secret_hex: &str, delivery: &Delivery) -> bool {
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

pub struct Lab {
    dir: tempfile::TempDir,
    device_port: u16,
    server: Option<TestServer>,
    token: String,
}

impl Lab {
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn server(&self) -> &TestServer {
        self.server.as_ref().unwrap()
    }

    pub fn start_server(&mut self) {
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

    pub fn stop_server(&mut self) {
        assert!(self.server.take().unwrap().stop(), "server stopped cleanly");
    }

    pub fn op(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["--tenant", "acme"]);
        cli_ok(self.server(), &self.token, &self.path("config"), &all)
    }

    pub fn op_raw(&self, args: &[&str]) -> Output {
        let mut all = args.to_vec();
        all.extend(["--tenant", "acme"]);
        cli(self.server(), &self.token, &self.path("config"), &all)
    }

    /// A factory-initialised device claimed by acme with the app installed.
    pub fn device(&self, name: &str) -> (PathBuf, String) {
        let state = self.path(name);
        let id = support::enrol(
            self.server(),
            &state,
            &self.path("maker"),
            &self.path("release.pub.pem"),
            &[],
            |args| self.op(args),
        );
        self.install_good(&state);
        (state, id)
    }

    pub fn install_good(&self, state: &Path) {
        ok_json(&[
            "agent",
            "install",
            "--state-dir",
            s(state),
            s(&self.path("blink.imagepackage")),
        ]);
    }
}

pub fn setup() -> Lab {
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
pub fn tamper(state: &Path) {
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

/// Starts `agent run` on `state`, its output discarded.
pub fn spawn_agent(state: &Path) -> Child {
    Command::new(support::bin())
        .args(["agent", "run", "--state-dir", s(state)])
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

pub fn run_once(state: &Path) -> Output {
    sevenfold(&["agent", "run", "--state-dir", s(state), "--once"])
}

/// Record IDs of a device's journal: (all, delivered).
pub fn journal_ids(state: &Path) -> (BTreeSet<String>, BTreeSet<String>) {
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
pub fn stored_ids(lab: &Lab, device: &str) -> Vec<String> {
    query_rows(
        lab,
        "SELECT record_id, '' FROM failure_reports WHERE device_id = $1 \
         AND component_id <> 'attestation' ORDER BY record_id",
        device,
    )
    .into_iter()
    .map(|(record, _)| record)
    .collect()
}

/// Runs a query of two text columns, bound to one parameter, on the
/// server's SQLite database (which allows readers beside the server).
pub fn query_rows(lab: &Lab, query: &str, param: &str) -> Vec<(String, String)> {
    let url = format!("sqlite://{}", lab.path("data/sevenfold.db").display());
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            use sqlx::{Connection, Row};
            sqlx::any::install_default_drivers();
            let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(query.to_owned()))
                .bind(param.to_owned())
                .fetch_all(&mut conn)
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get::<String, _>(0), r.get::<String, _>(1)))
                .collect()
        })
}

pub fn problems(lab: &Lab) -> Vec<Value> {
    lab.op(&["problem", "list"])["problems"]
        .as_array()
        .unwrap()
        .clone()
}

pub fn problem_of(lab: &Lab, component: &str, kind: &str) -> Value {
    problems(lab)
        .into_iter()
        .find(|p| p["kind"] == kind && p["component_id"] == component)
        .unwrap_or_else(|| panic!("no {kind} problem of {component}: {:?}", problems(lab)))
}

pub fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The sample app's component ID (its image file is `<ID>.imagepackage`).
pub const BLINK: &str = "5b9a1c52-3f0b-4a39-9d7e-6f2d1c3e8a10";

pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs one SQL statement on the (stopped) server's SQLite database.
pub fn sql(lab: &Lab, statement: &str) {
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
