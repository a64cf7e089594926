//! Attestation throughput and device-API handshake cost (issue 4).
//!
//! ```sh
//! cargo run --release -p sevenfold-bench --bin attestation -- \
//!     [--devices 2000] [--concurrency 32] [--backend sqlite|postgres|both] [--handshakes 2000]
//! ```
//!
//! What one run does, all on 127.0.0.0/8, stopping by itself:
//!
//! 1. Baselines: `openssl speed -seconds 3 ecdsap256 ecdhx25519` (the crypto
//!    ceiling: an attestation needs at least one ECDSA verify and one sign, so
//!    on `cores` cores at most `cores / (1/sign + 1/verify)` per second), and
//!    in-process timings of each cryptographic step the server takes.
//! 2. Per back-end (SQLite in a fresh data directory; PostgreSQL in a fresh
//!    database on `--postgres-url`, dropped afterwards): a real server as a
//!    child process (this binary re-executed as `__serve`, which runs
//!    `sevenfold_service::server::start` exactly as `sevenfold server` does;
//!    `--server-bin target/release/sevenfold` runs the CLI binary instead).
//!    Set-up, untimed: a tenant, a trusted manufacturer CA, a runtime release,
//!    and N + warm-up simulated devices, each with its own soft root of trust
//!    (`SoftRoot`), manufacturer endorsement, TLS key and measured runtime,
//!    claimed through the operator API. Then C concurrent tasks attest the
//!    devices, each device once over its own TLS connection from its own
//!    loopback source address (127.0.0.2–254, so no source passes the
//!    per-source rate limits): nonce → quote → evidence → 24 h certificate.
//!    Reported: attestations/s, latency percentiles, per-phase times (client
//!    and server side, from the server's `/metrics`), CPU time per attestation
//!    of the server, the clients and PostgreSQL (from `/proc`).
//! 3. Handshakes: N full TLS 1.3 mutual-TLS handshakes (no resumption, X25519,
//!    ECDSA P-256 on both sides) with the attested devices' certificates, each
//!    followed by `GET /device/v1/whoami`, and again with no request; the
//!    server's CPU time (utime + stime) divided by N.
//! 4. The same client against nginx (`ssl_verify_client on`, the tenant CA as
//!    `ssl_client_certificate`, no session cache or tickets, one worker),
//!    `GET /`; CPU of master + worker divided by N.
//! 5. A database-only baseline: the exact sequence of `Store` calls the two
//!    attestation handlers make, with C tasks on the same database, no HTTP,
//!    TLS or cryptography.
//!
//! `--perf-dir DIR` also records `perf` profiles of the server during the
//! timed phases (perf costs CPU: do not quote figures from such a run).

// A benchmark binary, not service code: a failed set-up step should stop the
// run at once with the reason, so panicking on unexpected states is the
// intended behaviour here (the workspace denies these lints for product code).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, ValueEnum};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{json, Value};
use sevenfold_bench::server::{
    cpu_model, device_tls, for_each_concurrent, load_average, roots, serve_if_asked, signal,
    Operator, ServerProcess,
};
use sevenfold_bench::{
    cpu_of_processes_named, machine_jiffies, percentile, proc_stat, route_duration, tree_cpu,
    CpuTicks, OpensslSpeed,
};
use sevenfold_core::attestation::{
    quote_nonce, ComponentKind, EventLog, EvidenceBody, MeasurementEvent, ATTESTED_REGISTERS,
    RUNTIME_COMPONENT_ID,
};
use sevenfold_pki::{KeyWrap, ManufacturerCa, ServiceCa, TenantCa};
use sevenfold_rot::soft::SoftRoot;
use sevenfold_rot::{Digest, KeyAlgorithm, RootOfTrust, SoftwareKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the simulated devices measure as their runtime (registered as a
/// runtime release, so the verifier accepts it).
const RUNTIME_BUILD: &[u8] = b"sevenfold-bench simulated runtime build 1.0.0";
/// Loopback source addresses the devices are spread over (127.0.0.2–254).
const SOURCES: usize = 253;
/// Per-source limits of the device API (nonces and evidence per minute).
const PER_SOURCE_LIMIT: usize = 300;
/// Devices whose certificates the handshake phase presents, in turn.
const HANDSHAKE_IDENTITIES: usize = 16;
/// Rounds of handshake measurements (the median is reported).
const HANDSHAKE_ROUNDS: usize = 3;
/// Handshakes done before each measured handshake run.
const HANDSHAKE_WARMUP: usize = 100;
const NONCE_ROUTE: &str = "/device/v1/attestation/nonce";
const EVIDENCE_ROUTE: &str = "/device/v1/attestation/evidence";
const WHOAMI_REQUEST: &[u8] =
    b"GET /device/v1/whoami HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
const ROOT_REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum BackendChoice {
    Sqlite,
    Postgres,
    Both,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

/// Attestation throughput and device-API handshake cost (issue 4).
#[derive(Parser, Debug)]
#[command(name = "attestation")]
struct Args {
    /// Devices attested in the timed phase (each once).
    #[arg(long, default_value_t = 2000)]
    devices: usize,
    /// Devices attesting at the same time.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Database back-end(s).
    #[arg(long, value_enum, default_value = "both")]
    backend: BackendChoice,
    /// Full mutual-TLS handshakes per handshake measurement.
    #[arg(long, default_value_t = 2000)]
    handshakes: usize,
    /// Concurrent connections in the handshake measurements.
    #[arg(long, default_value_t = 4)]
    handshake_concurrency: usize,
    /// Untimed attestations before the timed phase.
    #[arg(long, default_value_t = 64)]
    warmup: usize,
    /// Seconds per `openssl speed` measurement.
    #[arg(long, default_value_t = 3)]
    openssl_seconds: u32,
    /// Iterations of each in-process crypto step timing.
    #[arg(long, default_value_t = 1000)]
    micro_iterations: usize,
    /// PostgreSQL server (a user that may CREATE DATABASE); a fresh database
    /// is made on it and dropped at the end.
    #[arg(
        long,
        env = "SEVENFOLD_TEST_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/test"
    )]
    postgres_url: String,
    /// Run this `sevenfold` binary as the server instead of re-executing
    /// this benchmark as one.
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// nginx executable for the handshake baseline.
    #[arg(long, default_value = "nginx")]
    nginx: String,
    /// Skip the nginx baseline.
    #[arg(long)]
    no_nginx: bool,
    /// Record `perf` profiles of the server into this directory.
    #[arg(long)]
    perf_dir: Option<PathBuf>,
    /// Directory for temporary state (data directories, device state);
    /// default: the system temporary directory.
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    if let Some(code) = serve_if_asked() {
        return code;
    }
    let args = Args::parse();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    run(args);
    ExitCode::SUCCESS
}

// PostgreSQL database per run

/// A fresh PostgreSQL database, dropped on drop.
struct PgDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl PgDatabase {
    fn create(admin_url: &str) -> PgDatabase {
        assert!(
            admin_url.contains("@127.") || admin_url.contains("@localhost"),
            "the benchmark only talks to a PostgreSQL on loopback: {admin_url}"
        );
        let name = format!("sevenfold_bench_{}", random_hex(6));
        run_sql(admin_url, &format!("CREATE DATABASE {name}"));
        let base = admin_url
            .rsplit_once('/')
            .map(|(b, _)| b.to_owned())
            .unwrap();
        PgDatabase {
            admin_url: admin_url.to_owned(),
            url: format!("{base}/{name}"),
            name,
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        run_sql(
            &self.admin_url,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
        println!("dropped database {}", self.name);
    }
}

/// Runs one statement on its own thread and runtime (callable from anywhere).
fn run_sql(url: &str, sql: &str) {
    let (url, sql) = (url.to_owned(), sql.to_owned());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&url)
                .await
                .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone()))
                .execute(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        });
    })
    .join()
    .expect("SQL statement");
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .unwrap();
    hex::encode(b)
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------
// Simulated devices

/// A device built from the same libraries the agent uses.
struct SimDevice {
    rot: SoftRoot,
    tls: SoftwareKey,
    tls_pkcs8: Vec<u8>,
    endorsement_pem: String,
    log: EventLog,
    source: IpAddr,
}

impl SimDevice {
    fn create(dir: &Path, maker: &ManufacturerCa, source: IpAddr) -> SimDevice {
        let rot = SoftRoot::create(dir).unwrap();
        let endorsement_pem = maker
            .endorse(rot.device_public_key(), 365)
            .unwrap()
            .to_pem();
        let (tls, pkcs8) = SoftwareKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let digest = Digest::of(RUNTIME_BUILD);
        rot.extend(ComponentKind::Runtime.register(), &digest)
            .unwrap();
        let mut log = EventLog::new();
        log.push(MeasurementEvent {
            kind: ComponentKind::Runtime,
            component_id: RUNTIME_COMPONENT_ID.into(),
            name: "sevenfold".into(),
            version: "1.0.0".into(),
            digest,
        });
        SimDevice {
            rot,
            tls,
            tls_pkcs8: pkcs8.to_vec(),
            endorsement_pem,
            log,
            source,
        }
    }

    fn id(&self) -> String {
        self.rot.device_id().to_string()
    }

    /// Honest evidence over `nonce` (the quote is the device's signature).
    fn evidence(&self, nonce: &[u8]) -> EvidenceBody {
        let (quote, regs) = self
            .rot
            .quote(
                &quote_nonce(nonce, self.tls.public_key()),
                &ATTESTED_REGISTERS,
            )
            .unwrap();
        EvidenceBody::new(
            &self.rot.device_id(),
            nonce,
            &quote,
            &regs,
            &self.log,
            &self.endorsement_pem,
            self.tls.public_key(),
            vec![],
        )
    }
}

fn source_address(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (i % SOURCES) as u8))
}

/// Makes `count` devices under `dir` on a few threads (key generation,
/// endorsement and fsyncs of the soft root's files).
fn make_devices(dir: &Path, maker: &ManufacturerCa, count: usize) -> Vec<SimDevice> {
    let threads = 8;
    let next = AtomicUsize::new(0);
    let mut all: Vec<(usize, SimDevice)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= count {
                            break;
                        }
                        let d = SimDevice::create(
                            &dir.join(format!("device-{i}")),
                            maker,
                            source_address(i),
                        );
                        mine.push((i, d));
                    }
                    mine
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, d)| d).collect()
}

// ---------------------------------------------------------------------------
// One attestation

#[derive(Clone, Debug, Default)]
struct Outcome {
    total: Duration,
    /// Client build, TCP connect, TLS handshake and the nonce round trip.
    nonce: Duration,
    /// The device's quote and evidence body.
    quote: Duration,
    /// The evidence round trip (verification and certificate issuance).
    evidence: Duration,
    chain_pem: Option<String>,
    error: Option<String>,
}

async fn attest(device: &SimDevice, device_url: &str, tls: &rustls::ClientConfig) -> Outcome {
    let start = Instant::now();
    let mut out = Outcome::default();
    let client = reqwest::Client::builder()
        .local_address(device.source)
        .tls_backend_preconfigured(tls.clone())
        .https_only(true)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let reply = client
        .post(format!("{device_url}{NONCE_ROUTE}"))
        .json(&json!({"device_id": device.id()}))
        .send()
        .await;
    let nonce = match reply {
        Ok(r) if r.status() == 200 => {
            let body: Value = r.json().await.unwrap_or_default();
            hex::decode(body["nonce"].as_str().unwrap_or_default()).unwrap_or_default()
        }
        Ok(r) => {
            out.error = Some(format!(
                "nonce: HTTP {} {}",
                r.status(),
                r.text().await.unwrap_or_default()
            ));
            return out;
        }
        Err(e) => {
            out.error = Some(format!("nonce: {e:?}"));
            return out;
        }
    };
    out.nonce = start.elapsed();
    let t = Instant::now();
    let body = serde_json::to_vec(&device.evidence(&nonce)).unwrap();
    out.quote = t.elapsed();
    let t = Instant::now();
    let reply = client
        .post(format!("{device_url}{EVIDENCE_ROUTE}"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    match reply {
        Ok(r) => {
            let status = r.status();
            let body: Value = r.json().await.unwrap_or_default();
            out.evidence = t.elapsed();
            out.total = start.elapsed();
            if status == 200 && body["verdict"] == "pass" {
                out.chain_pem = body["certificate_chain_pem"].as_str().map(str::to_owned);
            } else {
                out.error = Some(format!("evidence: HTTP {status} {body}"));
            }
        }
        Err(e) => out.error = Some(format!("evidence: {e:?}")),
    }
    out
}

// ---------------------------------------------------------------------------
// Mutual-TLS handshakes

/// A client identity: certificate chain and PKCS#8 key.
#[derive(Clone)]
struct Identity {
    chain_pem: String,
    key_pkcs8: Vec<u8>,
}

/// A handshake client: TLS 1.3 only, X25519 only, no resumption, client
/// certificate, aws-lc-rs: the same for both servers.
fn handshake_config(ca_pem: &str, id: &Identity) -> Arc<rustls::ClientConfig> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.kx_groups = vec![rustls::crypto::aws_lc_rs::kx_group::X25519];
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(id.chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
    let key = PrivateKeyDer::Pkcs8(id.key_pkcs8.clone().into());
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots(ca_pem))
        .with_client_auth_cert(chain, key)
        .unwrap();
    config.resumption = rustls::client::Resumption::disabled();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// What the client saw of one handshake.
#[derive(Clone, Debug, Default)]
struct Negotiated {
    suite: String,
    group: String,
}

/// One full handshake, then `request` (reading the whole answer) or, with
/// none, close_notify and wait for the server to close.
async fn handshake_once(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    request: Option<&'static [u8]>,
) -> Result<Negotiated, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let connector = tokio_rustls::TlsConnector::from(config);
    let name = ServerName::IpAddress(Ipv4Addr::LOCALHOST.into());
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let conn = tls.get_ref().1;
    let negotiated = Negotiated {
        suite: conn
            .negotiated_cipher_suite()
            .map(|s| format!("{:?}", s.suite()))
            .unwrap_or_default(),
        group: conn
            .negotiated_key_exchange_group()
            .map(|g| format!("{:?}", g.name()))
            .unwrap_or_default(),
    };
    let mut answer = Vec::new();
    match request {
        Some(req) => {
            tls.write_all(req).await.map_err(|e| e.to_string())?;
            tls.flush().await.map_err(|e| e.to_string())?;
        }
        None => {
            let _ = tls.shutdown().await;
        }
    }
    let mut buf = [0u8; 4096];
    loop {
        match tls.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    if request.is_some() && !answer.starts_with(b"HTTP/1.1 200") {
        let line = String::from_utf8_lossy(&answer);
        return Err(format!(
            "answer: {:?}",
            line.lines()
                .next()
                .unwrap_or("(nothing; the server refused the client certificate?)")
        ));
    }
    Ok(negotiated)
}

#[derive(Clone, Debug, Default)]
struct HandshakeRun {
    count: usize,
    failures: usize,
    first_error: Option<String>,
    wall: Duration,
    server_cpu: f64,
    postgres_cpu: f64,
    client_cpu: f64,
    negotiated: Negotiated,
}

impl HandshakeRun {
    fn server_micros(&self) -> f64 {
        self.server_cpu / self.count.max(1) as f64 * 1e6
    }

    fn client_micros(&self) -> f64 {
        self.client_cpu / self.count.max(1) as f64 * 1e6
    }
}

/// The run with the median server CPU per handshake.
fn median_run(mut runs: Vec<HandshakeRun>) -> Option<HandshakeRun> {
    runs.sort_by(|a, b| a.server_micros().total_cmp(&b.server_micros()));
    let middle = runs.len() / 2;
    runs.into_iter().nth(middle)
}

/// `n` handshakes (+ `request`) against `addr`, measuring `server_cpu`
/// (CPU ticks of the server's processes) around them.
#[allow(clippy::too_many_arguments)]
async fn handshakes(
    addr: SocketAddr,
    ca_pem: &str,
    identities: &[Identity],
    n: usize,
    offset: usize,
    concurrency: usize,
    request: Option<&'static [u8]>,
    server_cpu: impl Fn() -> CpuTicks,
    postgres: bool,
    ticks: u64,
) -> HandshakeRun {
    let configs: Arc<Vec<Arc<rustls::ClientConfig>>> = Arc::new(
        identities
            .iter()
            .map(|id| handshake_config(ca_pem, id))
            .collect(),
    );
    let go = |count: usize, offset: usize| {
        let configs = configs.clone();
        for_each_concurrent(count, concurrency, move |i| {
            let config = configs[(offset + i) % configs.len()].clone();
            async move { handshake_once(addr, config, request).await }
        })
    };
    let warm = go(HANDSHAKE_WARMUP, 0).await;
    if let Some(Err(e)) = warm.iter().find(|r| r.is_err()) {
        panic!("handshake warm-up failed against {addr}: {e}");
    }
    let s0 = server_cpu();
    let p0 = postgres.then(|| cpu_of_processes_named("postgres"));
    let c0 = proc_stat(std::process::id()).unwrap().own;
    let t0 = Instant::now();
    let results = go(n, offset).await;
    let wall = t0.elapsed();
    let c1 = proc_stat(std::process::id()).unwrap().own;
    let s1 = server_cpu();
    let p1 = postgres.then(|| cpu_of_processes_named("postgres"));
    let failures = results.iter().filter(|r| r.is_err()).count();
    HandshakeRun {
        count: n,
        failures,
        first_error: results.iter().find_map(|r| r.clone().err()),
        wall,
        server_cpu: s1.since(s0).seconds(ticks),
        postgres_cpu: match (p0, p1) {
            (Some(a), Some(b)) => b.since(a).seconds(ticks),
            _ => 0.0,
        },
        client_cpu: c1.since(c0).seconds(ticks),
        negotiated: results
            .iter()
            .find_map(|r| r.clone().ok())
            .unwrap_or_default(),
    }
}

// ---------------------------------------------------------------------------
// nginx

/// An nginx master process (and its worker); stopped on drop.
struct Nginx {
    child: Child,
    port: u16,
    ca_pem: String,
    _dir: tempfile::TempDir,
}

impl Nginx {
    fn start(nginx: &str, work: &Path, client_ca_pem: &str) -> Option<Nginx> {
        let dir = tempfile::Builder::new()
            .prefix("nginx-")
            .tempdir_in(work)
            .unwrap();
        let (ca, ca_pem, _) = ServiceCa::generate("Sevenfold bench nginx CA").unwrap();
        let (chain, key) = ca.issue_server_cert(&["127.0.0.1".to_owned()], 30).unwrap();
        let p = |name: &str| dir.path().join(name);
        std::fs::write(p("server.pem"), chain).unwrap();
        std::fs::write(p("server.key"), key.as_bytes()).unwrap();
        std::fs::write(p("clients-ca.pem"), client_ca_pem).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = sevenfold_bench::nginx_config(
            dir.path(),
            port,
            &p("server.pem"),
            &p("server.key"),
            &p("clients-ca.pem"),
        );
        std::fs::write(p("nginx.conf"), config).unwrap();
        let child = Command::new(nginx)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(p("nginx.conf"))
            .arg("-e")
            .arg(p("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                println!("nginx baseline skipped: cannot run {nginx}: {e}");
                return None;
            }
        };
        for _ in 0..100 {
            if let Ok(Some(status)) = child.try_wait() {
                println!(
                    "nginx baseline skipped: nginx exited ({status}): {}",
                    std::fs::read_to_string(p("error.log")).unwrap_or_default()
                );
                return None;
            }
            let up = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
            let workers = tree_children(child.id());
            if up && !workers.is_empty() {
                return Some(Nginx {
                    child,
                    port,
                    ca_pem,
                    _dir: dir,
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        println!("nginx baseline skipped: nginx did not come up");
        None
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let workers = tree_children(self.child.id());
        signal(self.child.id(), "TERM");
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        for w in workers {
            if proc_stat(w).is_some_and(|p| p.ppid == self.child.id()) {
                signal(w, "KILL");
            }
        }
    }
}

fn tree_children(pid: u32) -> Vec<u32> {
    sevenfold_bench::all_processes()
        .into_iter()
        .filter(|p| p.ppid == pid)
        .map(|p| p.pid)
        .collect()
}

// ---------------------------------------------------------------------------
// perf

/// `perf record` (a profile) and `perf stat` (fsync and fdatasync calls) of
/// some processes, until stopped.
struct Perf(Vec<Child>);

fn perf_start(dir: Option<&Path>, name: &str, pids: &[u32]) -> Option<Perf> {
    let dir = dir?;
    std::fs::create_dir_all(dir).unwrap();
    let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
    let record = Command::new("perf")
        .args(["record", "-F", "999", "-g", "-o"])
        .arg(dir.join(format!("{name}.perf.data")))
        .args(["-p", &pids.join(",")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let stat = Command::new("perf")
        .args([
            "stat",
            "-e",
            "syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync",
            "-o",
        ])
        .arg(dir.join(format!("{name}.perf-stat.txt")))
        .args(["-p", &pids.join(",")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    std::thread::sleep(Duration::from_millis(500));
    Some(Perf(std::iter::once(record).chain(stat.ok()).collect()))
}

fn perf_stop(perf: Option<Perf>) {
    if let Some(Perf(children)) = perf {
        for mut child in children {
            signal(child.id(), "INT");
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------------------
// Baselines: openssl speed and in-process crypto steps

fn openssl_speed(seconds: u32) -> (OpensslSpeed, String) {
    let out = Command::new("openssl")
        .args([
            "speed",
            "-seconds",
            &seconds.to_string(),
            "ecdsap256",
            "ecdhx25519",
        ])
        .output()
        .expect("run openssl speed");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let speed = OpensslSpeed::parse(&text)
        .unwrap_or_else(|| panic!("cannot parse openssl speed output:\n{text}"));
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.contains("sign/s")
                || l.contains("op/s")
                || l.contains("(nistp256)")
                || l.contains("(X25519)")
        })
        .collect();
    (speed, rows.join("\n"))
}

/// Microseconds per call of `f`, over `n` calls (after n/10 warm-up calls).
fn time_micros(n: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..n / 10 {
        f();
    }
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed().as_secs_f64() * 1e6 / n.max(1) as f64
}

/// One row of the in-process timings.
struct Step {
    name: &'static str,
    micros: f64,
    in_attestation: bool,
}

/// Times, in this process on one core, each CPU step the server takes for
/// one attestation (and the whoami certificate check), with the server's
/// own library calls and realistic inputs.
fn crypto_steps(n: usize, work: &Path) -> Vec<Step> {
    let dir = tempfile::tempdir_in(work).unwrap();
    let (maker, _) = ManufacturerCa::generate("Bench Silicon", 365).unwrap();
    let device = SimDevice::create(&dir.path().join("d"), &maker, source_address(0));
    let now = now_millis() / 1000;
    let makers = vec![maker.certificate().clone()];
    let nonce = [7u8; 32];
    let body_json = serde_json::to_vec(&device.evidence(&nonce)).unwrap();
    let tenant_id = "0b4b5a38-7f52-4a2e-9c1e-2f7f5d1d9a10";
    let (tenant_ca, files) = TenantCa::generate(tenant_id, "bench", 3 * 365).unwrap();
    let master = KeyWrap::generate_master_key().unwrap();
    let wrap = KeyWrap::new(&master);
    let context = format!("tenant-ca:{tenant_id}:1");
    let wrapped = wrap.wrap(&files.key_pkcs8, &context).unwrap();
    let ca_der = tenant_ca.certificate().der().to_vec();
    let device_id = device.rot.device_id();
    let cert = tenant_ca
        .issue_device_certificate(&device_id, tenant_id, device.tls.public_key(), now, 86_400)
        .unwrap();
    let cert_der = cert.der().to_vec();
    let tenant_cas = vec![tenant_ca.certificate().clone()];
    let (key, _) = SoftwareKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let message = [1u8; 64];
    let signature = key.sign(&message).unwrap();

    let mut steps = vec![
        Step {
            name: "ECDSA P-256 sign (aws-lc-rs, `SoftwareKey::sign`)",
            micros: time_micros(n, || {
                key.sign(&message).unwrap();
            }),
            in_attestation: false,
        },
        Step {
            name: "ECDSA P-256 verify (aws-lc-rs, `PublicKey::verify`)",
            micros: time_micros(n, || key.public_key().verify(&message, &signature).unwrap()),
            in_attestation: false,
        },
        Step {
            name: "evidence JSON → `EvidenceBody` (serde)",
            micros: time_micros(n, || {
                serde_json::from_slice::<EvidenceBody>(&body_json).unwrap();
            }),
            in_attestation: true,
        },
    ];
    let body: EvidenceBody = serde_json::from_slice(&body_json).unwrap();
    let endorsement =
        sevenfold_pki::verify_endorsement(device.endorsement_pem.as_bytes(), &makers, now).unwrap();
    steps.push(Step {
        name: "`verify_endorsement` (manufacturer chain: 1 verify)",
        micros: time_micros(n, || {
            sevenfold_pki::verify_endorsement(device.endorsement_pem.as_bytes(), &makers, now)
                .unwrap();
        }),
        in_attestation: true,
    });
    steps.push(Step {
        name: "`Evidence::parse` + `check` (quote: 1 verify; log replay)",
        micros: time_micros(n, || {
            let e = sevenfold_core::attestation::Evidence::parse(&body).unwrap();
            e.check(endorsement.public_key(), &nonce).unwrap();
        }),
        in_attestation: true,
    });
    steps.push(Step {
        name: "tenant CA key unwrap + `TenantCa::load` (per attestation)",
        micros: time_micros(n, || {
            let k = wrap.unwrap(&wrapped, &context).unwrap();
            TenantCa::load(&ca_der, &k).unwrap();
        }),
        in_attestation: true,
    });
    steps.push(Step {
        name: "`issue_device_certificate` (1 sign + self-check)",
        micros: time_micros(n, || {
            tenant_ca
                .issue_device_certificate(
                    &device_id,
                    tenant_id,
                    device.tls.public_key(),
                    now,
                    86_400,
                )
                .unwrap();
        }),
        in_attestation: true,
    });
    steps.push(Step {
        name: "`verify_device_certificate` (whoami chain check: 1 verify)",
        micros: time_micros(n, || {
            sevenfold_pki::verify_device_certificate(&[&cert_der, &ca_der], &tenant_cas, now)
                .unwrap();
        }),
        in_attestation: false,
    });
    steps
}

// ---------------------------------------------------------------------------
// Database-only baseline

/// The `Store` calls of one attestation, in the handlers' order: the nonce
/// issued with its two rate-limit hits (one commit); the nonce, device,
/// manufacturer CAs, runtime release and tenant CAs read; the verdict
/// written with the nonce consumed and last-seen updated (one commit).
async fn store_attestation(
    store: &sevenfold_service::store::Store,
    device_id: &str,
    tenant: &str,
    runtime: &str,
    source: &str,
) {
    use sevenfold_service::store::{AttestationRecord, NewNonce, RateLimit, VerdictWrite};
    let now = now_millis();
    let limit = |bucket: String| RateLimit {
        bucket,
        max: i64::MAX,
        window_ms: 60_000,
    };
    let nonce = random_hex(32);
    store
        .issue_nonce(
            &NewNonce {
                nonce: &nonce,
                device_id,
                source,
                expires_at: now + 60_000,
            },
            &[
                limit(format!("nonce-source:{source}")),
                limit(format!("nonce-device:{device_id}")),
            ],
        )
        .await
        .unwrap();
    store.outstanding_nonce(&nonce).await.unwrap().unwrap();
    store.device_by_id(device_id).await.unwrap().unwrap();
    store.list_manufacturer_cas().await.unwrap();
    store.runtime_release(runtime).await.unwrap().unwrap();
    store.tenant_cas(tenant).await.unwrap();
    let record = AttestationRecord {
        id: String::new(),
        device_id: device_id.to_owned(),
        tenant_id: Some(tenant.to_owned()),
        at: now_millis(),
        passed: true,
        reasons: "[]".to_owned(),
        measurements: format!(
            "[{{\"kind\":\"runtime\",\"component_id\":\"runtime\",\"name\":\"sevenfold\",\"version\":\"1.0.0\",\"digest\":\"{runtime}\"}}]"
        ),
        certificate_serial: Some(random_hex(16)),
        certificate_not_after: Some(now + 86_400_000),
        source: source.to_owned(),
    };
    store
        .record_verdict(&VerdictWrite {
            record: &record,
            nonce: Some(&nonce),
            limit: None,
        })
        .await
        .unwrap();
}

// ---------------------------------------------------------------------------
// One back-end

#[derive(Default)]
struct BackendReport {
    name: &'static str,
    setup: Duration,
    timed: usize,
    wall: Duration,
    failures: usize,
    first_errors: Vec<String>,
    latencies: Vec<Duration>,
    nonce: Vec<Duration>,
    quote: Vec<Duration>,
    evidence: Vec<Duration>,
    server_nonce_mean: f64,
    server_evidence_mean: f64,
    server_cpu: f64,
    client_cpu: f64,
    postgres_cpu: f64,
    machine_busy: f64,
    /// Share of the machine used by processes other than the server, the
    /// benchmark and PostgreSQL during the timed phase.
    machine_other: f64,
    whoami: HandshakeRun,
    /// Each certificate's first connection (nothing remembered).
    whoami_first: Option<HandshakeRun>,
    bare: HandshakeRun,
    /// nginx with a request and handshake only, interleaved with the above.
    nginx: Option<(HandshakeRun, HandshakeRun)>,
    store_only_rate: f64,
    store_only_wall: Duration,
}

impl BackendReport {
    fn rate(&self) -> f64 {
        (self.timed - self.failures) as f64 / self.wall.as_secs_f64()
    }
    fn per_attestation_micros(&self, cpu: f64) -> f64 {
        cpu / self.timed.max(1) as f64 * 1e6
    }
}

fn run_backend(
    args: &Args,
    rt: &tokio::runtime::Runtime,
    backend: Backend,
    work: &Path,
    ticks: u64,
) -> BackendReport {
    println!("\n== {} ==", backend.name());
    let mut report = BackendReport {
        name: backend.name(),
        ..BackendReport::default()
    };
    let setup_start = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("sevenfold-bench-")
        .tempdir_in(work)
        .unwrap();
    let database = (backend == Backend::Postgres).then(|| PgDatabase::create(&args.postgres_url));
    let server = ServerProcess::start(
        args.server_bin.as_deref(),
        &dir.path().join("data"),
        database.as_ref().map(|d| d.url.as_str()),
    );
    println!(
        "server pid {} (device API {}, {})",
        server.pid(),
        server.device_addr,
        match &args.server_bin {
            Some(b) => format!("{}", b.display()),
            None => "this binary as `__serve`".to_owned(),
        }
    );
    let op = Operator::new(&server);
    let (maker, _) = ManufacturerCa::generate("Bench Silicon", 365).unwrap();
    let runtime_digest = Digest::of(RUNTIME_BUILD).to_hex();
    let tenant = rt.block_on(async {
        let tenant = op.post("/api/v1/tenants", json!({"name": "bench"})).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        op.post(
            "/api/v1/manufacturer-cas",
            json!({"certificate_pem": maker.certificate().to_pem()}),
        )
        .await;
        op.post(
            "/api/v1/runtime-releases",
            json!({"digest": runtime_digest, "version": "1.0.0"}),
        )
        .await;
        tenant
    });

    let total = args.devices + args.warmup;
    let t = Instant::now();
    let devices = Arc::new(make_devices(&dir.path().join("devices"), &maker, total));
    println!("{total} devices made in {:.1} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let op = Arc::new(op);
    rt.block_on({
        let (op, devices, tenant) = (op.clone(), devices.clone(), tenant.clone());
        for_each_concurrent(total, 8, move |i| {
            let (op, devices, tenant) = (op.clone(), devices.clone(), tenant.clone());
            async move {
                let d = &devices[i];
                op.post(
                    &format!("/api/v1/tenants/{tenant}/devices"),
                    json!({"device_id": d.id(), "endorsement_pem": d.endorsement_pem}),
                )
                .await;
            }
        })
    });
    println!(
        "{total} devices claimed in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let client_ca_pem: String = rt.block_on(async {
        let cas = op.get(&format!("/api/v1/tenants/{tenant}/ca")).await;
        cas.as_array()
            .unwrap()
            .iter()
            .map(|c| c["certificate_pem"].as_str().unwrap().to_owned())
            .collect()
    });

    let tls = Arc::new(device_tls(&server.ca_pem));
    let device_url = Arc::new(server.device_url());
    let attest_range = |from: usize, count: usize| {
        let (devices, tls, url) = (devices.clone(), tls.clone(), device_url.clone());
        for_each_concurrent(count, args.concurrency, move |i| {
            let (devices, tls, url) = (devices.clone(), tls.clone(), url.clone());
            async move { attest(&devices[from + i], &url, &tls).await }
        })
    };
    let warm = rt.block_on(attest_range(args.devices, args.warmup));
    if let Some(e) = warm.iter().find_map(|o| o.error.clone()) {
        panic!("warm-up attestation failed: {e}");
    }
    report.setup = setup_start.elapsed();

    // The timed phase.
    let metrics_before = rt.block_on(op.metrics());
    let perf = perf_start(
        args.perf_dir.as_deref(),
        &format!("attest-{}", backend.name().to_lowercase()),
        &[server.pid()],
    );
    let s0 = proc_stat(server.pid()).unwrap().own;
    let c0 = proc_stat(std::process::id()).unwrap().own;
    let p0 = cpu_of_processes_named("postgres");
    let m0 = machine_jiffies();
    let t0 = Instant::now();
    let outcomes = rt.block_on(attest_range(0, args.devices));
    report.wall = t0.elapsed();
    let s1 = proc_stat(server.pid()).unwrap().own;
    let c1 = proc_stat(std::process::id()).unwrap().own;
    let p1 = cpu_of_processes_named("postgres");
    let m1 = machine_jiffies();
    perf_stop(perf);
    let metrics_after = rt.block_on(op.metrics());

    report.timed = outcomes.len();
    report.server_cpu = s1.since(s0).seconds(ticks);
    report.client_cpu = c1.since(c0).seconds(ticks);
    report.postgres_cpu = p1.since(p0).seconds(ticks);
    if let (Some((b0, t0)), Some((b1, t1))) = (m0, m1) {
        let total = (t1 - t0).max(1) as f64;
        report.machine_busy = (b1 - b0) as f64 / total;
        let ours = s1.since(s0).plus(c1.since(c0)).plus(p1.since(p0)).total() as f64;
        report.machine_other = ((b1 - b0) as f64 - ours).max(0.0) / total;
    }
    let route_mean = |route: &str| {
        let (s0, n0) = route_duration(&metrics_before, route);
        let (s1, n1) = route_duration(&metrics_after, route);
        (s1 - s0) / (n1.saturating_sub(n0)).max(1) as f64
    };
    report.server_nonce_mean = route_mean(NONCE_ROUTE);
    report.server_evidence_mean = route_mean(EVIDENCE_ROUTE);
    let mut identities = Vec::new();
    for (i, o) in outcomes.iter().enumerate() {
        match (&o.error, &o.chain_pem) {
            (None, Some(chain)) => {
                report.latencies.push(o.total);
                report.nonce.push(o.nonce);
                report.quote.push(o.quote);
                report.evidence.push(o.evidence);
                if identities.len() < HANDSHAKE_IDENTITIES + HANDSHAKE_WARMUP + args.handshakes {
                    identities.push(Identity {
                        chain_pem: chain.clone(),
                        key_pkcs8: devices[i].tls_pkcs8.clone(),
                    });
                }
            }
            (error, _) => {
                report.failures += 1;
                if report.first_errors.len() < 5 {
                    report
                        .first_errors
                        .push(error.clone().unwrap_or_else(|| "no certificate".into()));
                }
            }
        }
    }
    for v in [
        &mut report.latencies,
        &mut report.nonce,
        &mut report.quote,
        &mut report.evidence,
    ] {
        v.sort();
    }
    println!(
        "attested {} devices in {:.2} s: {:.0}/s, {} failed",
        report.timed,
        report.wall.as_secs_f64(),
        report.rate(),
        report.failures
    );
    for e in &report.first_errors {
        println!("  failure: {e}");
    }
    assert!(
        !identities.is_empty(),
        "no device passed attestation; cannot measure handshakes"
    );

    // Handshakes: the device API and nginx (trusting this tenant's CA),
    // interleaved round by round so both see the same machine; the median
    // round of each is reported.
    let nginx = if args.no_nginx {
        None
    } else {
        Nginx::start(&args.nginx, work, &client_ca_pem)
    };
    if let Some(n) = &nginx {
        println!("nginx pid {} on port {}", n.pid(), n.port);
    }
    let pid = server.pid();
    let postgres = backend == Backend::Postgres;
    let lower = backend.name().to_lowercase();
    let mut rounds: [Vec<HandshakeRun>; 4] = Default::default();
    // Rounds reuse a few certificates, as devices reconnecting during the
    // day do (the server remembers certificates it verified); one extra run
    // uses each remaining certificate once, as on a device's first
    // connection after attesting.
    let (repeat, fresh) = identities.split_at(HANDSHAKE_IDENTITIES.min(identities.len()));
    for round in 0..HANDSHAKE_ROUNDS {
        let perf_dir = if round == 0 {
            args.perf_dir.as_deref()
        } else {
            None
        };
        let perf = perf_start(perf_dir, &format!("handshake-{lower}"), &[pid]);
        rounds[0].push(rt.block_on(handshakes(
            server.device_addr,
            &server.ca_pem,
            repeat,
            args.handshakes,
            0,
            args.handshake_concurrency,
            Some(WHOAMI_REQUEST),
            move || proc_stat(pid).map(|p| p.own).unwrap_or_default(),
            postgres,
            ticks,
        )));
        perf_stop(perf);
        let first_contacts = fresh
            .len()
            .saturating_sub(HANDSHAKE_WARMUP)
            .min(args.handshakes);
        if round == 0 && first_contacts > 0 {
            report.whoami_first = Some(rt.block_on(handshakes(
                server.device_addr,
                &server.ca_pem,
                fresh,
                first_contacts,
                HANDSHAKE_WARMUP,
                args.handshake_concurrency,
                Some(WHOAMI_REQUEST),
                move || proc_stat(pid).map(|p| p.own).unwrap_or_default(),
                postgres,
                ticks,
            )));
        }
        rounds[1].push(rt.block_on(handshakes(
            server.device_addr,
            &server.ca_pem,
            repeat,
            args.handshakes,
            0,
            args.handshake_concurrency,
            None,
            move || proc_stat(pid).map(|p| p.own).unwrap_or_default(),
            postgres,
            ticks,
        )));
        if let Some(n) = &nginx {
            let npid = n.pid();
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, n.port));
            let pids: Vec<u32> = std::iter::once(npid).chain(tree_children(npid)).collect();
            let perf = perf_start(perf_dir, &format!("handshake-nginx-{lower}"), &pids);
            rounds[2].push(rt.block_on(handshakes(
                addr,
                &n.ca_pem,
                repeat,
                args.handshakes,
                0,
                args.handshake_concurrency,
                Some(ROOT_REQUEST),
                move || tree_cpu(npid),
                false,
                ticks,
            )));
            perf_stop(perf);
            rounds[3].push(rt.block_on(handshakes(
                addr,
                &n.ca_pem,
                repeat,
                args.handshakes,
                0,
                args.handshake_concurrency,
                None,
                move || tree_cpu(npid),
                false,
                ticks,
            )));
        }
        let show = |runs: &[HandshakeRun]| {
            runs.last()
                .map(|r| format!("{:.0} µs", r.server_micros()))
                .unwrap_or_else(|| "-".into())
        };
        println!(
            "round {}: server CPU per handshake: sevenfold {} (+ whoami), {} (bare); nginx {} (+ GET /), {} (bare)",
            round + 1,
            show(&rounds[0]),
            show(&rounds[1]),
            show(&rounds[2]),
            show(&rounds[3])
        );
    }
    drop(nginx);
    let [whoami, bare, nginx_request, nginx_bare] = rounds;
    report.whoami = median_run(whoami).unwrap();
    report.bare = median_run(bare).unwrap();
    report.nginx = median_run(nginx_request).zip(median_run(nginx_bare));

    // Stop the server, then the database-only baseline on its database.
    server.stop();
    let store_url = match &database {
        Some(db) => db.url.clone(),
        None => sevenfold_service::store::Store::sqlite_url(
            &dir.path().join("data").join("sevenfold.db"),
        ),
    };
    let ids: Arc<Vec<String>> = Arc::new(
        devices
            .iter()
            .take(args.devices)
            .map(SimDevice::id)
            .collect(),
    );
    let (rate, wall) = rt.block_on(async {
        let store = Arc::new(
            sevenfold_service::store::Store::connect(&store_url, 10)
                .await
                .unwrap(),
        );
        let n = ids.len();
        let t = Instant::now();
        let (store2, ids2, tenant2, runtime2) = (
            store.clone(),
            ids.clone(),
            tenant.clone(),
            runtime_digest.clone(),
        );
        for_each_concurrent(n, args.concurrency, move |i| {
            let (store, ids, tenant, runtime) = (
                store2.clone(),
                ids2.clone(),
                tenant2.clone(),
                runtime2.clone(),
            );
            async move {
                let source = source_address(i).to_string();
                store_attestation(&store, &ids[i], &tenant, &runtime, &source).await;
            }
        })
        .await;
        let wall = t.elapsed();
        store.close().await;
        (n as f64 / wall.as_secs_f64(), wall)
    });
    report.store_only_rate = rate;
    report.store_only_wall = wall;
    println!("database only: {rate:.0} attestations/s");
    drop(database);
    report
}

// ---------------------------------------------------------------------------
// The run

fn run(args: Args) {
    assert!(args.devices > 0 && args.concurrency > 0 && args.handshakes > 0);
    let per_source = (args.devices + args.warmup).div_ceil(SOURCES);
    if per_source > PER_SOURCE_LIMIT - 10 {
        println!(
            "warning: {per_source} devices per source address; the device API allows \
             {PER_SOURCE_LIMIT} per minute per source, so some may be refused (429)"
        );
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let ticks = sevenfold_bench::ticks_per_second();
    let work = args.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&work).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();

    println!(
        "machine: {cores} cores; {}; load average {}",
        cpu_model(),
        load_average()
    );
    println!(
        "openssl speed -seconds {} ecdsap256 ecdhx25519 …",
        args.openssl_seconds
    );
    let (speed, openssl_rows) = openssl_speed(args.openssl_seconds);
    println!("{openssl_rows}");
    let openssl_version = Command::new("openssl")
        .arg("version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    println!(
        "in-process crypto steps ({} iterations each) …",
        args.micro_iterations
    );
    let steps = crypto_steps(args.micro_iterations, &work);

    let backends: Vec<Backend> = match args.backend {
        BackendChoice::Sqlite => vec![Backend::Sqlite],
        BackendChoice::Postgres => vec![Backend::Postgres],
        BackendChoice::Both => vec![Backend::Sqlite, Backend::Postgres],
    };
    let reports: Vec<BackendReport> = backends
        .into_iter()
        .map(|backend| run_backend(&args, &rt, backend, &work, ticks))
        .collect();

    summary(
        &args,
        cores,
        &speed,
        &openssl_rows,
        &openssl_version,
        &steps,
        &reports,
        &nginx_version(&args.nginx),
    );
}

fn nginx_version(nginx: &str) -> String {
    Command::new(nginx)
        .arg("-v")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_owned())
        .unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

#[allow(clippy::too_many_arguments)]
fn summary(
    args: &Args,
    cores: usize,
    speed: &OpensslSpeed,
    openssl_rows: &str,
    openssl_version: &str,
    steps: &[Step],
    reports: &[BackendReport],
    nginx_version: &str,
) {
    let ceiling = speed.attestation_ceiling(cores);
    println!("\n================ summary ================");
    println!("load average at the end: {}", load_average());
    println!(
        "machine: {cores} cores, {}; {openssl_version}; devices {}, concurrency {}, handshakes {} (concurrency {})",
        cpu_model(),
        args.devices,
        args.concurrency,
        args.handshakes,
        args.handshake_concurrency
    );
    println!(
        "\nopenssl speed -seconds {} ecdsap256 ecdhx25519:",
        args.openssl_seconds
    );
    println!("{openssl_rows}");
    println!(
        "ceiling: {cores} / (1/{:.0} + 1/{:.0}) = {ceiling:.0} attestations/s (one ECDSA sign + one verify each, all cores)",
        speed.ecdsa_p256_sign, speed.ecdsa_p256_verify
    );

    println!("\n### Attestation (nonce → evidence → certificate)\n");
    println!("| back-end | attestations/s | % of ceiling | p50 | p99 | max | failed |");
    println!("|---|---|---|---|---|---|---|");
    for r in reports {
        println!(
            "| {} | {:.0} | {:.1}% | {} | {} | {} | {} |",
            r.name,
            r.rate(),
            100.0 * r.rate() / ceiling,
            ms(percentile(&r.latencies, 50.0)),
            ms(percentile(&r.latencies, 99.0)),
            ms(percentile(&r.latencies, 100.0)),
            r.failures
        );
    }
    println!("| crypto ceiling (`openssl speed`) | {ceiling:.0} | 100% | | | | |");

    println!("\n### Where the time goes (per attestation)\n");
    println!(
        "| | {} |",
        reports
            .iter()
            .map(|r| r.name)
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|{}", "---|".repeat(reports.len()));
    let row = |label: &str, f: &dyn Fn(&BackendReport) -> String| {
        println!(
            "| {label} | {} |",
            reports.iter().map(f).collect::<Vec<_>>().join(" | ")
        );
    };
    row("client: connect + TLS + nonce, p50", &|r| {
        ms(percentile(&r.nonce, 50.0))
    });
    row("client: quote + evidence body, p50", &|r| {
        ms(percentile(&r.quote, 50.0))
    });
    row("client: evidence round trip, p50", &|r| {
        ms(percentile(&r.evidence, 50.0))
    });
    row("server: nonce handler, mean", &|r| {
        format!("{:.2} ms", r.server_nonce_mean * 1e3)
    });
    row("server: evidence handler, mean", &|r| {
        format!("{:.2} ms", r.server_evidence_mean * 1e3)
    });
    row("server CPU", &|r| {
        format!("{:.0} µs", r.per_attestation_micros(r.server_cpu))
    });
    row("… of which TLS handshake (handshake-only run)", &|r| {
        format!("{:.0} µs", r.bare.server_micros())
    });
    row("benchmark clients' CPU (devices)", &|r| {
        format!("{:.0} µs", r.per_attestation_micros(r.client_cpu))
    });
    row("PostgreSQL CPU", &|r| {
        format!("{:.0} µs", r.per_attestation_micros(r.postgres_cpu))
    });
    row("machine busy during the run (other processes)", &|r| {
        format!(
            "{:.0}% ({:.0}%)",
            100.0 * r.machine_busy,
            100.0 * r.machine_other
        )
    });
    row("server-CPU-bound rate (cores / server CPU)", &|r| {
        format!(
            "{:.0}/s",
            cores as f64 / (r.server_cpu / r.timed.max(1) as f64)
        )
    });
    row("database only (same `Store` calls, C tasks)", &|r| {
        format!("{:.0}/s", r.store_only_rate)
    });

    println!("\n### Server CPU steps, in process, one core\n");
    println!("| step | µs |");
    println!("|---|---|");
    let mut in_attestation = 0.0;
    for s in steps {
        println!("| {} | {:.1} |", s.name, s.micros);
        if s.in_attestation {
            in_attestation += s.micros;
        }
    }
    println!("| sum of the attestation steps above (no TLS, no database) | {in_attestation:.1} |");

    println!(
        "\n### Mutual-TLS handshake, server CPU per handshake (median of {HANDSHAKE_ROUNDS} interleaved rounds of {})\n",
        args.handshakes
    );
    let floor = speed.mutual_tls_handshake_seconds().map(|s| s * 1e6);
    println!("| server | + one request | handshake only | handshakes/s (+ request) | client CPU (+ request) | negotiated |");
    println!("|---|---|---|---|---|---|");
    for r in reports {
        let pg = if r.whoami.postgres_cpu > 0.0 {
            format!(
                " (+ {:.0} µs PostgreSQL)",
                r.whoami.postgres_cpu / r.whoami.count.max(1) as f64 * 1e6
            )
        } else {
            String::new()
        };
        println!(
            "| sevenfold device API ({}), `GET /device/v1/whoami` | {:.0} µs{pg} | {:.0} µs | {:.0} | {:.0} µs | {} {} |",
            r.name,
            r.whoami.server_micros(),
            r.bare.server_micros(),
            r.whoami.count as f64 / r.whoami.wall.as_secs_f64(),
            r.whoami.client_micros(),
            r.whoami.negotiated.suite,
            r.whoami.negotiated.group
        );
        if let Some(first) = &r.whoami_first {
            println!(
                "| … first connection of each certificate ({}, {} certificates) | {:.0} µs | | {:.0} | {:.0} µs | {} {} |",
                r.name,
                first.count,
                first.server_micros(),
                first.count as f64 / first.wall.as_secs_f64(),
                first.client_micros(),
                first.negotiated.suite,
                first.negotiated.group
            );
            if first.failures > 0 {
                println!("  ({} failed: {:?})", first.failures, first.first_error);
            }
        }
        if r.whoami.failures > 0 || r.bare.failures > 0 {
            println!(
                "  ({} + {} failed: {:?})",
                r.whoami.failures,
                r.bare.failures,
                r.whoami
                    .first_error
                    .as_ref()
                    .or(r.bare.first_error.as_ref())
            );
        }
    }
    for r in reports {
        let Some((with_request, bare)) = &r.nginx else {
            continue;
        };
        println!(
            "| {nginx_version}, `ssl_verify_client on`, `GET /` (during the {} run) | {:.0} µs | {:.0} µs | {:.0} | {:.0} µs | {} {} |",
            r.name,
            with_request.server_micros(),
            bare.server_micros(),
            with_request.count as f64 / with_request.wall.as_secs_f64(),
            with_request.client_micros(),
            with_request.negotiated.suite,
            with_request.negotiated.group
        );
        if with_request.failures > 0 || bare.failures > 0 {
            println!(
                "  ({} + {} failed: {:?})",
                with_request.failures,
                bare.failures,
                with_request
                    .first_error
                    .as_ref()
                    .or(bare.first_error.as_ref())
            );
        }
    }
    for r in reports {
        if let Some((with_request, bare)) = &r.nginx {
            println!(
                "sevenfold ({}) / nginx: {:.2}× with the request, {:.2}× handshake only (target ≤ 0.5×)",
                r.name,
                r.whoami.server_micros() / with_request.server_micros(),
                r.bare.server_micros() / bare.server_micros()
            );
        }
    }
    if let Some(floor) = floor {
        println!(
            "public-key crypto per handshake by `openssl speed` (1 sign + 2 verify + 2 X25519): {floor:.0} µs"
        );
    }
}
