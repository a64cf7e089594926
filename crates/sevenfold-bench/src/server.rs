//! The server side of the process-level benchmarks: the Security Service
//! run as a child process (the benchmark binary itself as `__serve`, or a
//! `sevenfold` binary), an operator API client with the bootstrap token,
//! TLS pinned to the service CA, a bounded-concurrency driver, and the
//! machine facts every report prints (CPU model, load average).
//!
//! Shared by `attestation` and `updates`, so both start and talk to the
//! server the same way.

// Benchmark harness: a failed set-up step should stop the run at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde_json::{json, Value};

/// If this process was started as the server (`BIN __serve …`), runs it
/// and returns its exit code; `None` for a normal benchmark run.
pub fn serve_if_asked() -> Option<ExitCode> {
    let raw: Vec<String> = std::env::args().collect();
    if raw.get(1).map(String::as_str) == Some("__serve") {
        return Some(serve(raw.get(2..).unwrap_or_default()));
    }
    None
}

/// Runs the Security Service like `sevenfold --output json server --listen
/// 127.0.0.1:0 --device-listen 127.0.0.1:0 --data-dir D [--database URL]`:
/// the same library call, configuration layers and ready line.
pub fn serve(args: &[String]) -> ExitCode {
    use sevenfold_service::config::{ConfigLayer, ServerConfig};
    let mut data_dir = None;
    let mut database = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--data-dir" => data_dir = it.next().map(PathBuf::from),
            "--database" => database = it.next().cloned(),
            other => {
                eprintln!("__serve: unknown argument {other}");
                return ExitCode::FAILURE;
            }
        }
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).unwrap();
        let mut int = signal(SignalKind::interrupt()).unwrap();
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let flags = ConfigLayer {
            data_dir: data_dir.clone(),
            database,
            listen: Some(any),
            device_listen: Some(any),
            ..ConfigLayer::default()
        };
        let env = ConfigLayer::from_env(|name| std::env::var(name).ok()).unwrap();
        let config = ServerConfig::resolve(flags, env, None).unwrap();
        let ca_file = std::path::absolute(config.data_dir.join("tls").join("ca.pem")).unwrap();
        let server = sevenfold_service::server::start(config).await.unwrap();
        let ready = json!({
            "event": "ready",
            "operator_api": format!("https://{}", server.operator_addr),
            "device_api": format!("https://{}", server.device_addr),
            "ca_file": ca_file,
            "bootstrap_token": server.bootstrap_token,
        });
        println!("{ready}");
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        server.shutdown();
        server.wait().await;
    });
    rt.shutdown_timeout(Duration::from_secs(5));
    ExitCode::SUCCESS
}

/// A running server child process; killed on drop.
pub struct ServerProcess {
    /// The server process.
    pub child: Child,
    /// `https://127.0.0.1:PORT` of the operator API.
    pub operator_url: String,
    /// Address of the device API (mutual TLS).
    pub device_addr: SocketAddr,
    /// The service CA, PEM (pin it).
    pub ca_pem: String,
    /// The bootstrap administrator token.
    pub token: String,
}

impl ServerProcess {
    /// Starts `server_bin` (a `sevenfold` binary) or, without one, this
    /// binary as `__serve`, on loopback, and waits for its ready line.
    pub fn start(
        server_bin: Option<&Path>,
        data_dir: &Path,
        database: Option<&str>,
    ) -> ServerProcess {
        ServerProcess::start_with_env(server_bin, data_dir, database, &[])
    }

    /// [`ServerProcess::start`] with extra environment variables for the
    /// server (its `SEVENFOLD_*` settings).
    pub fn start_with_env(
        server_bin: Option<&Path>,
        data_dir: &Path,
        database: Option<&str>,
        env: &[(&str, &str)],
    ) -> ServerProcess {
        let mut cmd = match server_bin {
            Some(bin) => {
                let mut c = Command::new(bin);
                c.args([
                    "--output",
                    "json",
                    "server",
                    "--listen",
                    "127.0.0.1:0",
                    "--device-listen",
                    "127.0.0.1:0",
                    "--data-dir",
                ])
                .arg(data_dir);
                c
            }
            None => {
                let mut c = Command::new(std::env::current_exe().unwrap());
                c.args(["__serve", "--data-dir"]).arg(data_dir);
                c
            }
        };
        if let Some(db) = database {
            cmd.args(["--database", db]);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied());
        let mut child = cmd.spawn().expect("start the server");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        let line = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("the server printed no ready line within 120 s");
        let ready: Value = serde_json::from_str(&line).expect("ready line is JSON");
        assert_eq!(ready["event"], "ready", "{line}");
        let device_url = ready["device_api"].as_str().unwrap();
        let device_addr: SocketAddr = device_url
            .trim_start_matches("https://")
            .parse()
            .expect("device API address");
        assert!(
            device_addr.ip().is_loopback(),
            "server must listen on loopback"
        );
        let ca_file = PathBuf::from(ready["ca_file"].as_str().unwrap());
        ServerProcess {
            child,
            operator_url: ready["operator_api"].as_str().unwrap().to_owned(),
            device_addr,
            ca_pem: std::fs::read_to_string(ca_file).unwrap(),
            token: ready["bootstrap_token"]
                .as_str()
                .expect("a fresh server prints a bootstrap token")
                .to_owned(),
        }
    }

    /// The server's process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `https://` URL of the device API.
    pub fn device_url(&self) -> String {
        format!("https://{}", self.device_addr)
    }

    /// SIGTERM, then wait (SIGKILL after 30 s).
    pub fn stop(mut self) {
        signal(self.child.id(), "TERM");
        for _ in 0..300 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sends `SIGname` to one process we started.
pub fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

// ---------------------------------------------------------------------------
// HTTP helpers

/// The service CA as a root store.
pub fn roots(ca_pem: &str) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    roots
}

/// The devices' TLS configuration for attestation: server-authenticated,
/// pinned service CA, the default aws-lc-rs provider (as the agent uses).
pub fn device_tls(ca_pem: &str) -> rustls::ClientConfig {
    rustls::ClientConfig::builder()
        .with_root_certificates(roots(ca_pem))
        .with_no_client_auth()
}

/// An operator API client.
pub struct Operator {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Operator {
    /// A client of `server`'s operator API with its bootstrap token.
    pub fn new(server: &ServerProcess) -> Operator {
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(device_tls(&server.ca_pem))
            .build()
            .unwrap();
        Operator {
            http,
            base: server.operator_url.clone(),
            token: server.token.clone(),
        }
    }

    /// One request; (status, JSON answer or the text).
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// `POST`, which must succeed; the answer.
    pub async fn post(&self, path: &str, body: Value) -> Value {
        let (status, reply) = self.send(reqwest::Method::POST, path, Some(body)).await;
        assert!(
            (200..300).contains(&status),
            "POST {path}: {status} {reply}"
        );
        reply
    }

    /// `POST` of raw bytes (an image package upload); the JSON answer.
    pub async fn upload(&self, path: &str, bytes: Vec<u8>) -> Value {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("content-type", "application/octet-stream")
            .body(bytes)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        assert!((200..300).contains(&status), "POST {path}: {status} {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// `GET`, which must answer 200; the answer.
    pub async fn get(&self, path: &str) -> Value {
        let (status, reply) = self.send(reqwest::Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path}: {reply}");
        reply
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        match self.get("/metrics").await {
            Value::String(s) => s,
            other => other.to_string(),
        }
    }
}

/// Runs `f(0..n)` with `concurrency` tasks; results in index order.
pub async fn for_each_concurrent<T, F, Fut>(n: usize, concurrency: usize, f: F) -> Vec<T>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let f = Arc::new(f);
    let next = Arc::new(AtomicUsize::new(0));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (f, next) = (f.clone(), next.clone());
        set.spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                out.push((i, f(i).await));
            }
            out
        });
    }
    let mut all = Vec::with_capacity(n);
    while let Some(done) = set.join_next().await {
        all.extend(done.unwrap());
    }
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, t)| t).collect()
}

/// The CPU model from `/proc/cpuinfo`.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// The 1, 5 and 15 minute load averages from `/proc/loadavg`.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
