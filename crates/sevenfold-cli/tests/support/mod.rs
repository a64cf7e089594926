//! Shared harness for end-to-end tests: a real `sevenfold server` process, the
//! real `sevenfold` CLI, and a raw HTTPS client that pins the service CA.

#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

pub mod browser;
pub mod fleet;

use futures_util::StreamExt;
use serde_json::Value;

/// A path as the `&str` a command line takes.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs the `sevenfold` binary (logging at `warn`).
pub fn sevenfold(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env("RUST_LOG", "warn")
        // App updates must run 1 s in their compartment (not the default 10 s).
        .env("SEVENFOLD_APP_HEALTH_SECS", "1")
        .output()
        .unwrap()
}

/// Runs `sevenfold --output json ARGS`, which must succeed, and parses its output.
pub fn ok_json(args: &[&str]) -> Value {
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

/// Path of the binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_sevenfold")
}

/// The PostgreSQL server used by tests (a fresh database is made per test).
pub fn postgres_admin_url() -> String {
    std::env::var("SEVENFOLD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Whether PostgreSQL tests are skipped on purpose.
pub fn skip_postgres() -> bool {
    std::env::var("SEVENFOLD_SKIP_POSTGRES").is_ok_and(|v| v == "1")
}

/// A fresh PostgreSQL database, dropped when this value is dropped.
pub struct TestDatabase {
    pub url: String,
    name: String,
}

impl TestDatabase {
    pub fn create() -> TestDatabase {
        let name = format!("sevenfold_e2e_{}", random_hex(8));
        run_sql(&postgres_admin_url(), &format!("CREATE DATABASE {name}"));
        let admin = postgres_admin_url();
        let base = admin.rsplit_once('/').map(|(b, _)| b.to_owned()).unwrap();
        TestDatabase {
            url: format!("{base}/{name}"),
            name,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        run_sql(
            &postgres_admin_url(),
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// Runs one SQL statement on any database URL (SQLite or PostgreSQL).
pub fn run_sql(url: &str, sql: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {url}: {e} (is PostgreSQL running? set SEVENFOLD_SKIP_POSTGRES=1 to skip)"));
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    });
}

pub fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .unwrap();
    hex::encode(b)
}

/// A running `sevenfold server` child process.
pub struct TestServer {
    pub child: Child,
    pub url: String,
    pub device_url: String,
    pub ca_file: PathBuf,
    pub bootstrap_token: Option<String>,
    pub data_dir: PathBuf,
}

impl TestServer {
    /// Starts a server on a free port with `data_dir`, optionally on `database`,
    /// with extra environment variables; waits for its ready line.
    pub fn start(data_dir: &Path, database: Option<&str>, env: &[(&str, &str)]) -> TestServer {
        Self::start_on(data_dir, database, env, "127.0.0.1:0", None)
    }

    /// Kills the server with SIGKILL (no graceful shutdown: a crash or a
    /// power cut) and starts another on the same data directory, database
    /// and ports, so devices find it where they knew it.
    pub fn crash_and_restart(&mut self, database: Option<&str>, env: &[(&str, &str)]) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let addr = |url: &str| {
            url.trim_start_matches("https://")
                .trim_end_matches('/')
                .to_owned()
        };
        let listen = [addr(&self.url), addr(&self.device_url)];
        let restarted = Self::start_on(&self.data_dir, database, env, &listen[0], Some(&listen[1]));
        *self = restarted;
    }

    fn start_on(
        data_dir: &Path,
        database: Option<&str>,
        env: &[(&str, &str)],
        listen: &str,
        device_listen: Option<&str>,
    ) -> TestServer {
        let mut cmd = Command::new(bin());
        cmd.args(["--output", "json", "server", "--listen", listen]);
        // Unless given, the device port follows the operator port (or
        // `SEVENFOLD_DEVICE_LISTEN` in `env`).
        if let Some(device_listen) = device_listen {
            cmd.args(["--device-listen", device_listen]);
        }
        cmd.arg("--data-dir")
            .arg(data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .env("RUST_LOG", "warn");
        if let Some(db) = database {
            cmd.args(["--database", db]);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start sevenfold server");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the server never blocks on a full pipe.
            for _ in lines {}
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("server printed no ready line within 60 s");
        let ready: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("ready line {line:?}: {e}"));
        assert_eq!(ready["event"], "ready", "{line}");
        TestServer {
            child,
            url: ready["operator_api"].as_str().unwrap().to_owned(),
            device_url: ready["device_api"].as_str().unwrap().to_owned(),
            ca_file: PathBuf::from(ready["ca_file"].as_str().unwrap()),
            bootstrap_token: ready["bootstrap_token"].as_str().map(str::to_owned),
            data_dir: data_dir.to_path_buf(),
        }
    }

    /// Sends SIGTERM and waits; returns whether it exited successfully.
    pub fn stop(mut self) -> bool {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        for _ in 0..300 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        false
    }

    /// A client of the device API (no token, no client certificate).
    pub fn device_client(&self) -> Api {
        Api::new(
            &self.device_url,
            &std::fs::read_to_string(&self.ca_file).unwrap(),
            "",
        )
    }

    /// A client for this server with `token`.
    pub fn client(&self, token: &str) -> Api {
        Api::new(
            &self.url,
            &std::fs::read_to_string(&self.ca_file).unwrap(),
            token,
        )
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the CLI against `server` as `token`, with its own config directory.
pub fn cli(server: &TestServer, token: &str, config_dir: &Path, args: &[&str]) -> Output {
    let mut all = vec!["--output", "json"];
    all.extend_from_slice(args);
    Command::new(bin())
        .args(&all)
        .env("SEVENFOLD_SERVER", &server.url)
        .env("SEVENFOLD_TOKEN", token)
        .env("SEVENFOLD_CA", &server.ca_file)
        .env("SEVENFOLD_CONFIG_DIR", config_dir)
        .env_remove("SEVENFOLD_TENANT")
        .output()
        .unwrap()
}

/// Like [`cli`], asserting success and parsing stdout as JSON.
pub fn cli_ok(server: &TestServer, token: &str, config_dir: &Path, args: &[&str]) -> Value {
    let out = cli(server, token, config_dir, args);
    assert!(
        out.status.success(),
        "sevenfold {args:?} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "sevenfold {args:?}: stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Like [`cli`], asserting failure; returns stderr.
pub fn cli_err(server: &TestServer, token: &str, config_dir: &Path, args: &[&str]) -> String {
    let out = cli(server, token, config_dir, args);
    assert!(
        !out.status.success(),
        "sevenfold {args:?} should have failed but printed {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A raw HTTPS client of the operator API.
pub struct Api {
    base: String,
    ca_pem: String,
    token: String,
    http: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

/// Status and parsed body of a response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Api {
    pub fn new(base: &str, ca_pem: &str, token: &str) -> Api {
        Api::new_from(base, ca_pem, token, None)
    }

    /// A client whose connections come from `local` (e.g. 127.0.0.2), so
    /// tests can play several hosts on loopback.
    pub fn new_from(base: &str, ca_pem: &str, token: &str, local: Option<std::net::IpAddr>) -> Api {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pki_types::pem::PemObject::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let tls = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let http = reqwest::Client::builder()
            .local_address(local)
            .tls_backend_preconfigured(tls)
            .build()
            .unwrap();
        Api {
            base: base.trim_end_matches('/').to_owned(),
            ca_pem: ca_pem.to_owned(),
            token: token.to_owned(),
            http,
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        }
    }

    pub fn with_token(&self, token: &str) -> Api {
        Api::new(&self.base, &self.ca_pem, token)
    }

    pub fn send(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        let url = format!("{}{path}", self.base);
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(method, &url).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.finish(req)
    }

    pub fn send_bytes(&self, method: &str, path: &str, bytes: Vec<u8>) -> Reply {
        let url = format!("{}{path}", self.base);
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let req = self
            .http
            .request(method, &url)
            .bearer_auth(&self.token)
            .header("content-type", "application/octet-stream")
            .body(bytes);
        self.finish(req)
    }

    /// Uploads `bytes` in `pieces` chunks with `delay` between them (a slow client).
    pub fn send_slowly(&self, path: &str, bytes: Vec<u8>, pieces: usize, delay: Duration) -> Reply {
        let url = format!("{}{path}", self.base);
        let size = bytes.len().div_ceil(pieces.max(1));
        let chunks: Vec<Vec<u8>> = bytes.chunks(size.max(1)).map(<[u8]>::to_vec).collect();
        let stream = futures_util::stream::iter(chunks).then(move |chunk| async move {
            tokio::time::sleep(delay).await;
            Ok::<_, std::io::Error>(chunk)
        });
        let req = self
            .http
            .post(&url)
            .bearer_auth(&self.token)
            .header("content-type", "application/octet-stream")
            .body(reqwest::Body::wrap_stream(stream));
        self.finish(req)
    }

    pub fn get_raw(&self, path: &str) -> (u16, Vec<u8>) {
        let url = format!("{}{path}", self.base);
        self.rt.block_on(async {
            let resp = self
                .http
                .get(&url)
                .bearer_auth(&self.token)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.bytes().await.unwrap().to_vec())
        })
    }

    fn finish(&self, req: reqwest::RequestBuilder) -> Reply {
        self.rt.block_on(async {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap();
            let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
            Reply { status, body }
        })
    }

    pub fn get(&self, path: &str) -> Reply {
        self.send("GET", path, None)
    }

    pub fn post(&self, path: &str, body: Value) -> Reply {
        self.send("POST", path, Some(body))
    }
}

/// Enrols a new device as a factory and its owner would: `agent init` in
/// `state` against `server`, endorsed by the manufacturer CA in `maker`;
/// claimed with `claim` (the owning tenant's `sevenfold` call, which adds
/// its own login and tenant); trusting the release key `release_pub`.
/// `init_args` go to `agent init` too (say `--rot tpm --tcti …`).
/// Returns the device ID.
pub fn enrol(
    server: &TestServer,
    state: &Path,
    maker: &Path,
    release_pub: &Path,
    init_args: &[&str],
    claim: impl Fn(&[&str]) -> Value,
) -> String {
    let mut args = vec![
        "agent",
        "init",
        "--state-dir",
        s(state),
        "--service",
        &server.device_url,
        "--service-ca",
        s(&server.ca_file),
        "--endorse-with",
        s(maker),
    ];
    args.extend_from_slice(init_args);
    let init = ok_json(&args);
    let id = init["device_id"].as_str().unwrap().to_owned();
    claim(&[
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
        s(state),
        s(release_pub),
    ]);
    id
}
