//! Operator API throughput (issue 3): device claims per second and paging
//! through a 100 000-device tenant, on SQLite and on PostgreSQL, each next to
//! a baseline measured in the same run directly through the [`Store`] (no
//! HTTP, TLS, JSON, authentication or endorsement check).
//!
//! Run:
//!
//! ```sh
//! cargo bench -p sevenfold-service --bench operator_api
//! cargo bench -p sevenfold-service --bench operator_api -- --devices 20000 --backend sqlite
//! ```
//!
//! Options (after `--`): `--devices N` (100000), `--backend sqlite|postgres|both`
//! (both), `--claims K` timed claims per claim measurement and round (2000),
//! `--rounds R` rounds of the three claim measurements (2),
//! `--concurrency C` concurrent clients for claims (16), `--seed-concurrency T`
//! seeding tasks (4 on SQLite, 10 on PostgreSQL), `--phase-seconds S` cap on
//! each timed phase (120; a phase that hits it stops and says so; seeding
//! gets five times as long).
//!
//! The whole default run takes about five and a half minutes on a 2-core
//! machine, most of it seeding (one fsync per claim on SQLite); `--devices
//! 20000` takes about one.
//!
//! PostgreSQL: a fresh database `sevenfold_bench_<random>` is created on the
//! server named by `SEVENFOLD_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`, a user that may `CREATE
//! DATABASE`) and dropped at the end. `SEVENFOLD_SKIP_POSTGRES=1` skips
//! PostgreSQL when it is unreachable.
//!
//! What runs, per back-end:
//!
//! 1. a real server, in-process (`server::start`), HTTPS on 127.0.0.1;
//! 2. set-up through the API: a tenant, a trusted manufacturer CA;
//! 3. claims, in R rounds (odd rounds in reverse order): K pre-endorsed
//!    devices `POST`ed by C clients (each with its own keep-alive
//!    connection); baselines: K `Store::claim_device` + `Store::append_audit`
//!    (the database work the handler does), and K `Store::claim_device`
//!    alone, both with C tasks; keys and endorsements are made before
//!    anything is timed;
//! 4. seeding the rest of the N devices through `Store::claim_device`
//!    (untimed as an API figure; its duration is printed);
//! 5. paging: one client walks every page (`limit` 100 and 1000, following
//!    `next`), as `sevenfold device list --all` does; baselines: the same walk
//!    through `Store::list_devices` + `Store::count_devices` (what the handler
//!    queries), through `Store::list_devices` alone, and through a
//!    hand-written page query that leaves out the two DER columns the API
//!    never shows. An untimed warm-up walk comes first.
//!
//! The server, the client and (for PostgreSQL) the database share the
//! machine, so on a small machine the API figures include the client's own
//! TLS and JSON work.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use sevenfold_core::api::{ClaimDevice, CreateTenant, DevicePage, TenantInfo, TrustManufacturer};
use sevenfold_pki::ManufacturerCa;
use sevenfold_rot::{Digest, KeyAlgorithm, SoftwareKey};
use sevenfold_service::config::{ConfigLayer, ServerConfig};
use sevenfold_service::server::{self, RunningServer};
use sevenfold_service::store::{AuditOutcome, NewAuditEntry, NewDevice, Page, Store};
use sqlx::{Connection, Row};

const DEFAULT_PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// Pool size of the baseline and seeding stores: the server's default.
const STORE_POOL: u32 = 10;
/// Seeding tasks on SQLite (one writer at a time; more only contend).
const SQLITE_SEED_TASKS: usize = 4;

// ---------------------------------------------------------------------------
// Options

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

struct Args {
    devices: usize,
    backends: Vec<Backend>,
    claims: usize,
    rounds: usize,
    concurrency: usize,
    seed_concurrency: Option<usize>,
    phase_limit: Duration,
}

fn parse_args() -> Args {
    let mut args = Args {
        devices: 100_000,
        backends: vec![Backend::Sqlite, Backend::Postgres],
        claims: 2000,
        rounds: 2,
        concurrency: 16,
        seed_concurrency: None,
        phase_limit: Duration::from_secs(120),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
            None => (arg.clone(), None),
        };
        let mut value = |name: &str| -> String {
            inline
                .clone()
                .or_else(|| it.next())
                .unwrap_or_else(|| usage(&format!("{name} needs a value")))
        };
        let number = |name: &str, v: String| -> usize {
            v.parse()
                .ok()
                .filter(|n| *n > 0)
                .unwrap_or_else(|| usage(&format!("{name}: {v:?} is not a positive number")))
        };
        match name.as_str() {
            // `cargo bench` passes `--bench` to every bench binary.
            "--bench" => {}
            "--devices" => args.devices = number("--devices", value("--devices")),
            "--claims" => args.claims = number("--claims", value("--claims")),
            "--rounds" => args.rounds = number("--rounds", value("--rounds")),
            "--concurrency" => args.concurrency = number("--concurrency", value("--concurrency")),
            "--seed-concurrency" => {
                args.seed_concurrency =
                    Some(number("--seed-concurrency", value("--seed-concurrency")));
            }
            "--phase-seconds" => {
                let secs = number("--phase-seconds", value("--phase-seconds"));
                args.phase_limit = Duration::from_secs(secs as u64);
            }
            "--backend" => {
                args.backends = match value("--backend").as_str() {
                    "sqlite" => vec![Backend::Sqlite],
                    "postgres" => vec![Backend::Postgres],
                    "both" => vec![Backend::Sqlite, Backend::Postgres],
                    other => usage(&format!(
                        "--backend: {other:?} is not sqlite, postgres or both"
                    )),
                }
            }
            "-h" | "--help" => usage(""),
            // A name filter, as criterion-style benches take: not supported.
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    args
}

fn usage(problem: &str) -> ! {
    if !problem.is_empty() {
        eprintln!("operator_api: {problem}");
    }
    eprintln!(
        "usage: cargo bench -p sevenfold-service --bench operator_api -- \
         [--devices N] [--backend sqlite|postgres|both] [--claims K] [--rounds R] [--concurrency C] \
         [--seed-concurrency T] [--phase-seconds S]"
    );
    std::process::exit(if problem.is_empty() { 0 } else { 2 })
}

// ---------------------------------------------------------------------------
// Measurements

/// One timed phase: how many operations, how long, their latencies, errors.
struct Measured {
    what: String,
    ops: usize,
    items: usize,
    wall: Duration,
    latencies: Vec<Duration>,
    errors: usize,
    error_samples: BTreeMap<String, usize>,
    hit_deadline: bool,
    /// Rate of each round, when a figure is measured in rounds.
    round_rates: Vec<f64>,
}

impl Measured {
    fn new(what: impl Into<String>) -> Measured {
        Measured {
            what: what.into(),
            ops: 0,
            items: 0,
            wall: Duration::ZERO,
            latencies: Vec::new(),
            errors: 0,
            error_samples: BTreeMap::new(),
            hit_deadline: false,
            round_rates: Vec::new(),
        }
    }

    fn error(&mut self, message: String) {
        self.errors += 1;
        *self.error_samples.entry(message).or_insert(0) += 1;
    }

    fn merge(&mut self, other: Measured) {
        self.ops += other.ops;
        self.items += other.items;
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
        for (message, n) in other.error_samples {
            *self.error_samples.entry(message).or_insert(0) += n;
        }
        self.hit_deadline |= other.hit_deadline;
    }

    /// Adds one round of the same measurement.
    fn add_round(&mut self, round: Measured) {
        self.round_rates.push(round.rate());
        self.wall += round.wall;
        self.merge(round);
    }

    fn rate(&self) -> f64 {
        self.ops as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    fn item_rate(&self) -> f64 {
        self.items as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
        sorted[rank.min(sorted.len() - 1)]
    }

    fn print_errors(&self) {
        if self.errors == 0 {
            return;
        }
        println!("    {}: {} errors", self.what, self.errors);
        for (message, n) in self.error_samples.iter().take(5) {
            println!("      {n} × {message}");
        }
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

// ---------------------------------------------------------------------------
// Fixtures made before anything is timed

/// A device with a real key and a real endorsement from the bench's CA.
struct EndorsedDevice {
    id: String,
    endorsement_pem: String,
    public_key_der: Vec<u8>,
    endorsement_der: Vec<u8>,
}

fn endorse_devices(ca: &ManufacturerCa, count: usize) -> Vec<EndorsedDevice> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_thread = count.div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let n = per_thread.min(count.saturating_sub(t * per_thread));
                scope.spawn(move || {
                    (0..n)
                        .map(|_| {
                            let (key, _pkcs8) =
                                SoftwareKey::generate(KeyAlgorithm::EcdsaP256).expect("device key");
                            let cert = ca.endorse(key.public_key(), 365).expect("endorsement");
                            EndorsedDevice {
                                id: key.public_key().key_id().to_hex(),
                                endorsement_pem: cert.to_pem(),
                                public_key_der: key.public_key().spki_der().to_vec(),
                                endorsement_der: cert.der().to_vec(),
                            }
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("key generation thread"))
            .collect()
    })
}

struct Fixtures {
    ca_pem: String,
    ca_fingerprint: String,
    /// Per round: the devices claimed through the API, through the store
    /// with an audit entry each, and through the store alone.
    claim_sets: Vec<[Vec<EndorsedDevice>; 3]>,
}

// ---------------------------------------------------------------------------
// Databases

fn postgres_admin_url() -> String {
    std::env::var("SEVENFOLD_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_PG_ADMIN_URL.to_owned())
}

fn with_database(admin: &str, name: &str) -> String {
    let (base, query) = match admin.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (admin, None),
    };
    let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

/// A database for one back-end's run, and what to clean up afterwards.
struct BenchDb {
    url: String,
    _dir: tempfile::TempDir,
    pg: Option<(String, String)>, // (admin URL, database name)
}

impl BenchDb {
    fn sqlite() -> BenchDb {
        let dir = tempfile::tempdir().expect("temporary directory");
        BenchDb {
            url: Store::sqlite_url(&dir.path().join("sevenfold.db")),
            _dir: dir,
            pg: None,
        }
    }

    /// `None` if PostgreSQL is unreachable and `SEVENFOLD_SKIP_POSTGRES=1`.
    async fn postgres() -> Option<BenchDb> {
        let admin = postgres_admin_url();
        let mut conn = match sqlx::postgres::PgConnection::connect(&admin).await {
            Ok(conn) => conn,
            Err(e) if std::env::var("SEVENFOLD_SKIP_POSTGRES").as_deref() == Ok("1") => {
                println!(
                    "PostgreSQL at {admin} unreachable ({e}): skipped (SEVENFOLD_SKIP_POSTGRES=1)"
                );
                return None;
            }
            Err(e) => panic!(
                "PostgreSQL at {admin} is unreachable: {e}. Start it, point \
                 SEVENFOLD_TEST_POSTGRES_URL at a server where this user may CREATE DATABASE, \
                 pass --backend sqlite, or set SEVENFOLD_SKIP_POSTGRES=1."
            ),
        };
        let name = format!("sevenfold_bench_{}", uuid::Uuid::new_v4().simple());
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("CREATE DATABASE");
        let _ = conn.close().await;
        println!("  database {name} created (dropped at the end)");
        Some(BenchDb {
            url: with_database(&admin, &name),
            _dir: tempfile::tempdir().expect("temporary directory"),
            pg: Some((admin, name)),
        })
    }

    fn data_dir(&self) -> &Path {
        self._dir.path()
    }

    /// Runs SQL as the administrator on the bench database (PostgreSQL only).
    async fn admin_sql(&self, sql: &str) {
        if self.pg.is_some() {
            let mut conn = sqlx::postgres::PgConnection::connect(&self.url)
                .await
                .expect("connect to the bench database");
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                .execute(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            let _ = conn.close().await;
        }
    }

    async fn cleanup(self) {
        if let Some((admin, name)) = &self.pg {
            match sqlx::postgres::PgConnection::connect(admin).await {
                Ok(mut conn) => {
                    let dropped = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await;
                    if let Err(e) = dropped {
                        eprintln!("could not drop database {name}: {e}");
                    }
                    let _ = conn.close().await;
                }
                Err(e) => eprintln!("could not drop database {name}: {e}"),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// HTTPS client

fn http_client(ca_pem: &str) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("CA certificate");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .https_only(true)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(15))
        .timeout(Duration::from_secs(60))
        .build()
        .expect("HTTPS client")
}

struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    fn new(addr: SocketAddr, ca_pem: &str, token: &str) -> Api {
        Api {
            http: http_client(ca_pem),
            base: format!("https://{addr}/api/v1"),
            token: token.to_owned(),
        }
    }

    /// POSTs JSON; `Ok(body)` on success, `Err("status: detail")` otherwise.
    async fn post<B: serde::Serialize>(&self, path: &str, body: &B) -> Result<Vec<u8>, String> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        read(response).await
    }

    async fn get(&self, path_and_query: &str) -> Result<Vec<u8>, String> {
        let response = self
            .http
            .get(format!("{}{path_and_query}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        read(response).await
    }
}

async fn read(response: reqwest::Response) -> Result<Vec<u8>, String> {
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("{status}: body: {e}"))?;
    if status.is_success() {
        Ok(body.to_vec())
    } else {
        let detail = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("detail").and_then(|d| d.as_str()).map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        Err(format!("{status}: {detail}"))
    }
}

// ---------------------------------------------------------------------------
// Phases

/// Runs `work(i)` for i in 0..count on `workers` tasks, each with its own
/// `ctx` (a client, a store handle), until done or past `deadline`.
async fn run_concurrent<C, F, Fut>(
    what: &str,
    count: usize,
    workers: usize,
    limit: Duration,
    make_ctx: impl Fn() -> C,
    work: F,
) -> Measured
where
    C: Send + Sync + 'static,
    F: Fn(Arc<C>, usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let deadline = start + limit;
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let ctx = Arc::new(make_ctx());
        let next = next.clone();
        let work = work.clone();
        tasks.push(tokio::spawn(async move {
            let mut m = Measured::new("");
            loop {
                if Instant::now() >= deadline {
                    m.hit_deadline = true;
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let t = Instant::now();
                let result = work(ctx.clone(), i).await;
                m.latencies.push(t.elapsed());
                match result {
                    Ok(()) => {
                        m.ops += 1;
                        m.items += 1;
                    }
                    Err(e) => m.error(e),
                }
            }
            m
        }));
    }
    let mut total = Measured::new(what);
    for task in tasks {
        total.merge(task.await.expect("worker task"));
    }
    total.wall = start.elapsed();
    total
}

/// Follows `next` through every page of the tenant's devices.
async fn walk<F, Fut>(what: String, limit: Duration, expected: usize, mut fetch: F) -> Measured
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<(usize, Option<String>, Option<u64>), String>>,
{
    let mut m = Measured::new(what);
    let start = Instant::now();
    let mut after = None;
    loop {
        if start.elapsed() >= limit {
            m.hit_deadline = true;
            break;
        }
        let t = Instant::now();
        let result = fetch(after.take()).await;
        m.latencies.push(t.elapsed());
        match result {
            Ok((n, next, total)) => {
                m.ops += 1;
                m.items += n;
                if let Some(total) = total {
                    if total != expected as u64 {
                        m.error(format!("total {total}, expected {expected}"));
                    }
                }
                match next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            Err(e) => {
                m.error(e);
                break;
            }
        }
    }
    m.wall = start.elapsed();
    if !m.hit_deadline && m.errors == 0 && m.items != expected {
        m.error(format!("walked {} devices, expected {expected}", m.items));
    }
    m
}

fn api_page(body: &[u8]) -> Result<(usize, Option<String>, Option<u64>), String> {
    let page: DevicePage =
        serde_json::from_slice(body).map_err(|e| format!("undecodable page: {e}"))?;
    Ok((page.devices.len(), page.next, Some(page.total)))
}

fn store_next(devices: &[sevenfold_service::store::Device], limit: u32) -> Option<String> {
    if devices.len() == limit as usize {
        devices.last().map(|d| d.id.clone())
    } else {
        None
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClaimKind {
    Api = 0,
    StoreWithAudit = 1,
    Store = 2,
}

/// `POST /tenants/{t}/devices` for each device, from `c` clients.
async fn api_claims(
    server: &RunningServer,
    token: &str,
    tenant: &str,
    devices: &[EndorsedDevice],
    c: usize,
    limit: Duration,
) -> Measured {
    let bodies = Arc::new(
        devices
            .iter()
            .map(|d| ClaimDevice {
                device_id: d.id.clone(),
                endorsement_pem: d.endorsement_pem.clone(),
            })
            .collect::<Vec<_>>(),
    );
    let path = Arc::new(format!("/tenants/{tenant}/devices"));
    let (addr, ca_pem) = (server.operator_addr, server.ca_pem.clone());
    run_concurrent(
        "",
        bodies.len(),
        c,
        limit,
        || Api::new(addr, &ca_pem, token),
        move |api: Arc<Api>, i| {
            let bodies = bodies.clone();
            let path = path.clone();
            async move { api.post(&path, &bodies[i]).await.map(drop) }
        },
    )
    .await
}

/// `Store::claim_device` (and, if `audit`, the `Store::append_audit` the
/// claim handler makes) for each device, from `c` tasks.
async fn store_claims(
    store: &Store,
    tenant: &str,
    fingerprint: &str,
    devices: &[EndorsedDevice],
    audit: bool,
    c: usize,
    limit: Duration,
) -> Measured {
    let rows = Arc::new(
        devices
            .iter()
            .map(|d| NewDevice {
                id: d.id.clone(),
                public_key_der: d.public_key_der.clone(),
                endorsement_der: d.endorsement_der.clone(),
                manufacturer_fingerprint: fingerprint.to_owned(),
            })
            .collect::<Vec<_>>(),
    );
    let tenant = Arc::new(tenant.to_owned());
    let store = store.clone();
    run_concurrent(
        "",
        rows.len(),
        c,
        limit,
        move || store.clone(),
        move |store: Arc<Store>, i| {
            let rows = rows.clone();
            let t = tenant.clone();
            async move {
                let device = store
                    .claim_device(&t, rows[i].clone())
                    .await
                    .map_err(|e| e.to_string())?;
                if !audit {
                    return Ok(());
                }
                store
                    .append_audit(NewAuditEntry {
                        actor: "admin".to_owned(),
                        tenant_id: Some(t.to_string()),
                        action: "device.claim".to_owned(),
                        target: device.id.clone(),
                        outcome: AuditOutcome::Ok,
                        source: "127.0.0.1".to_owned(),
                        details:
                            serde_json::json!({"manufacturer": device.manufacturer_fingerprint})
                                .to_string(),
                    })
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
        },
    )
    .await
}

// ---------------------------------------------------------------------------
// One back-end

struct Report {
    backend: Backend,
    devices: usize,
    claims: Vec<Measured>,
    seed: Measured,
    walks: Vec<(u32, Vec<Measured>)>,
}

async fn run_backend(backend: Backend, db: &BenchDb, args: &Args, fx: &Fixtures) -> Report {
    let phase = args.phase_limit;
    let config = ServerConfig::resolve(
        ConfigLayer {
            data_dir: Some(db.data_dir().to_path_buf()),
            database: Some(db.url.clone()),
            listen: Some("127.0.0.1:0".parse().expect("address")),
            ..ConfigLayer::default()
        },
        ConfigLayer::default(),
        None,
    )
    .expect("server configuration");
    let pool_size = config.database_max_connections;
    let server: RunningServer = server::start(config).await.expect("server starts");
    let token = server
        .bootstrap_token
        .clone()
        .expect("a fresh server prints a bootstrap token");
    println!(
        "  server on https://{} ({} pool of {pool_size})",
        server.operator_addr,
        backend.name()
    );
    let admin = Api::new(server.operator_addr, &server.ca_pem, &token);

    // Set-up through the API.
    let tenant: TenantInfo = serde_json::from_slice(
        &admin
            .post(
                "/tenants",
                &CreateTenant {
                    name: "bench".to_owned(),
                },
            )
            .await
            .expect("create tenant"),
    )
    .expect("tenant JSON");
    admin
        .post(
            "/manufacturer-cas",
            &TrustManufacturer {
                kind: Default::default(),
                certificate_pem: fx.ca_pem.clone(),
            },
        )
        .await
        .expect("trust manufacturer CA");
    let t = tenant.id.clone();

    // Claims: each round measures the API, then the handler's database work
    // through the store, then the insert alone; odd rounds run in the
    // opposite order, so neither side always goes first.
    let store = Store::connect(&db.url, STORE_POOL)
        .await
        .expect("store connects");
    let c = args.concurrency;
    let mut claims = vec![
        Measured::new(format!("claim: API POST …/devices (C={c})")),
        Measured::new(format!("claim: store claim_device + append_audit (C={c})")),
        Measured::new(format!("claim: store claim_device only (C={c})")),
    ];
    for (round, sets) in fx.claim_sets.iter().enumerate() {
        let mut order = [ClaimKind::Api, ClaimKind::StoreWithAudit, ClaimKind::Store];
        if round % 2 == 1 {
            order.reverse();
        }
        for kind in order {
            let devices = &sets[kind as usize];
            let m = match kind {
                ClaimKind::Api => {
                    api_claims(&server, &token, &t, devices, c, args.phase_limit).await
                }
                ClaimKind::StoreWithAudit | ClaimKind::Store => {
                    store_claims(
                        &store,
                        &t,
                        &fx.ca_fingerprint,
                        devices,
                        kind == ClaimKind::StoreWithAudit,
                        c,
                        args.phase_limit,
                    )
                    .await
                }
            };
            claims[kind as usize].add_round(m);
        }
    }

    // Seed the rest: unique ids, real endorsement blobs (cycled).
    let claimed = store.count_devices(&t, None).await.expect("count") as usize;
    let to_seed = args.devices.saturating_sub(claimed);
    let seed_workers = args.seed_concurrency.unwrap_or(match backend {
        Backend::Sqlite => SQLITE_SEED_TASKS,
        Backend::Postgres => STORE_POOL as usize,
    });
    let blobs = Arc::new(
        fx.claim_sets[0][0]
            .iter()
            .map(|d| (d.public_key_der.clone(), d.endorsement_der.clone()))
            .collect::<Vec<_>>(),
    );
    let seed = {
        let t = t.clone();
        let fingerprint = fx.ca_fingerprint.clone();
        let store = store.clone();
        let blobs = blobs.clone();
        run_concurrent(
            &format!("seed: store claim_device ({seed_workers} tasks)"),
            to_seed,
            seed_workers,
            // Seeding is not a figure, but it must end too.
            phase * 5,
            move || store.clone(),
            move |store: Arc<Store>, i| {
                let t = t.clone();
                let fingerprint = fingerprint.clone();
                let (public_key_der, endorsement_der) = blobs[i % blobs.len()].clone();
                async move {
                    let id = Digest::of(format!("sevenfold bench seed {i}").as_bytes()).to_hex();
                    store
                        .claim_device(
                            &t,
                            NewDevice {
                                id,
                                public_key_der,
                                endorsement_der,
                                manufacturer_fingerprint: fingerprint,
                            },
                        )
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string())
                }
            },
        )
        .await
    };
    let total = store.count_devices(&t, None).await.expect("count") as usize;
    println!(
        "  seeded {} devices in {:.1} s ({:.0}/s, {} errors); tenant holds {total}",
        seed.ops,
        seed.wall.as_secs_f64(),
        seed.rate(),
        seed.errors
    );
    if backend == Backend::Postgres {
        // What autovacuum does soon after a bulk load: visibility map and
        // planner statistics, so COUNT(*) can be an index-only scan.
        let t0 = Instant::now();
        db.admin_sql("VACUUM (ANALYZE) devices").await;
        println!(
            "  VACUUM (ANALYZE) devices: {:.1} s",
            t0.elapsed().as_secs_f64()
        );
    }

    // Warm-up (untimed): one walk through the store and one through the API,
    // so no measured walk is the one that brings the tables into the caches.
    let warm = Instant::now();
    let mut after = None;
    loop {
        let page = Page {
            after: after.take(),
            limit: 1000,
        };
        let devices = store.list_devices(&t, None, &page).await.expect("list");
        match store_next(&devices, 1000) {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let mut path = format!("/tenants/{t}/devices?limit=1000");
    loop {
        let (_, next, _) = api_page(&admin.get(&path).await.expect("list")).expect("page");
        match next {
            Some(next) => path = format!("/tenants/{t}/devices?limit=1000&after={next}"),
            None => break,
        }
    }
    println!(
        "  warm-up walks (store, API): {:.1} s",
        warm.elapsed().as_secs_f64()
    );

    // A pool for the hand-written query below.
    let raw = sqlx::any::AnyPoolOptions::new()
        .max_connections(2)
        .connect(&db.url)
        .await
        .expect("raw pool");

    // Paging: the store's list+count first, then the API, then the parts.
    let mut walks = Vec::new();
    for limit in [100u32, 1000] {
        let mut results = Vec::new();
        let store_full = walk(
            format!("list L={limit}: store list_devices + count_devices"),
            phase,
            total,
            |after| {
                let store = store.clone();
                let t = t.clone();
                async move {
                    let page = Page { after, limit };
                    let devices = store
                        .list_devices(&t, None, &page)
                        .await
                        .map_err(|e| e.to_string())?;
                    let n = store
                        .count_devices(&t, None)
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok((devices.len(), store_next(&devices, limit), Some(n)))
                }
            },
        )
        .await;
        let store_list = walk(
            format!("list L={limit}: store list_devices only"),
            phase,
            total,
            |after| {
                let store = store.clone();
                let t = t.clone();
                async move {
                    let page = Page { after, limit };
                    let devices = store
                        .list_devices(&t, None, &page)
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok((devices.len(), store_next(&devices, limit), None))
                }
            },
        )
        .await;
        let api_walk = walk(
            format!("list L={limit}: API GET …/devices"),
            phase,
            total,
            |after| {
                let mut path = format!("/tenants/{t}/devices?limit={limit}");
                if let Some(after) = after {
                    path.push_str("&after=");
                    path.push_str(&after);
                }
                let admin = &admin;
                async move { api_page(&admin.get(&path).await?) }
            },
        )
        .await;
        // What listing costs without the two DER columns (about 0.8 kB a
        // row) that `list_devices` reads but the API's DeviceInfo never shows.
        let narrow = walk(
            format!("list L={limit}: SQL page without DER columns"),
            phase,
            total,
            |after| {
                let raw = &raw;
                let t = t.clone();
                async move {
                    let rows = sqlx::query(
                        "SELECT id, tenant_id, group_id, manufacturer_fingerprint, mode, \
                         claimed_at, revoked_at, last_seen FROM devices \
                         WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3",
                    )
                    .bind(t)
                    .bind(after.unwrap_or_default())
                    .bind(i64::from(limit))
                    .fetch_all(raw)
                    .await
                    .map_err(|e| e.to_string())?;
                    let mut last = None;
                    for row in &rows {
                        let id: String = row.try_get("id").map_err(|e| e.to_string())?;
                        let _: String = row.try_get("tenant_id").map_err(|e| e.to_string())?;
                        let _: Option<String> =
                            row.try_get("group_id").map_err(|e| e.to_string())?;
                        let _: String = row
                            .try_get("manufacturer_fingerprint")
                            .map_err(|e| e.to_string())?;
                        let _: String = row.try_get("mode").map_err(|e| e.to_string())?;
                        let _: i64 = row.try_get("claimed_at").map_err(|e| e.to_string())?;
                        let _: Option<i64> =
                            row.try_get("revoked_at").map_err(|e| e.to_string())?;
                        let _: Option<i64> = row.try_get("last_seen").map_err(|e| e.to_string())?;
                        last = Some(id);
                    }
                    let next = if rows.len() == limit as usize {
                        last
                    } else {
                        None
                    };
                    Ok((rows.len(), next, None))
                }
            },
        )
        .await;
        results.push(api_walk);
        results.push(store_full);
        results.push(store_list);
        results.push(narrow);
        walks.push((limit, results));
    }

    raw.close().await;
    store.close().await;
    server.shutdown();
    server.wait().await;
    Report {
        backend,
        devices: total,
        claims,
        seed,
        walks,
    }
}

fn print_report(r: &Report) {
    println!();
    println!(
        "== {} — {} devices in one tenant ==",
        r.backend.name(),
        r.devices
    );
    println!(
        "{:<52} {:>6} {:>8} {:>10} {:>9} {:>9}",
        "claims", "ok", "wall s", "claims/s", "p50 ms", "p99 ms"
    );
    for m in &r.claims {
        let rounds: Vec<String> = m.round_rates.iter().map(|r| format!("{r:.0}")).collect();
        println!(
            "{:<52} {:>6} {:>8.2} {:>10.0} {:>9} {:>9}  rounds: {}{}",
            m.what,
            m.ops,
            m.wall.as_secs_f64(),
            m.rate(),
            ms(m.percentile(50.0)),
            ms(m.percentile(99.0)),
            rounds.join(" / "),
            if m.hit_deadline {
                "  (stopped at the phase limit)"
            } else {
                ""
            }
        );
    }
    if let [api, audit, plain] = r.claims.as_slice() {
        println!(
            "  API claims run at {:.0}% of store claim+audit and {:.0}% of store claim alone",
            100.0 * api.rate() / audit.rate().max(1e-9),
            100.0 * api.rate() / plain.rate().max(1e-9)
        );
    }
    println!(
        "  (seeding, untimed as an API figure: {} devices in {:.1} s, {:.0}/s)",
        r.seed.ops,
        r.seed.wall.as_secs_f64(),
        r.seed.rate()
    );
    println!();
    println!(
        "{:<52} {:>6} {:>8} {:>8} {:>10} {:>9} {:>9}",
        "paging (walk all pages, one client)",
        "pages",
        "wall s",
        "pages/s",
        "devices/s",
        "p50 ms",
        "p99 ms"
    );
    for (_, results) in &r.walks {
        for m in results {
            println!(
                "{:<52} {:>6} {:>8.2} {:>8.1} {:>10.0} {:>9} {:>9}{}",
                m.what,
                m.ops,
                m.wall.as_secs_f64(),
                m.rate(),
                m.item_rate(),
                ms(m.percentile(50.0)),
                ms(m.percentile(99.0)),
                if m.hit_deadline {
                    "  (stopped at the phase limit)"
                } else {
                    ""
                }
            );
        }
        if let [api, full, list, _] = results.as_slice() {
            let per_page = |m: &Measured| m.wall.as_secs_f64() * 1000.0 / m.ops.max(1) as f64;
            println!(
                "  API walk takes {:.2}× the store's list+count walk; per page: API {:.2} ms, \
                 list+count {:.2} ms, of which COUNT(*) ≈ {:.2} ms",
                api.wall.as_secs_f64() / full.wall.as_secs_f64().max(1e-9),
                per_page(api),
                per_page(full),
                per_page(full) - per_page(list),
            );
        }
    }
    let all = r
        .claims
        .iter()
        .chain(std::iter::once(&r.seed))
        .chain(r.walks.iter().flat_map(|(_, w)| w.iter()));
    let mut any = false;
    for m in all {
        if m.errors > 0 {
            if !any {
                println!();
                println!("  errors:");
                any = true;
            }
            m.print_errors();
        }
    }
    if !any {
        println!("  no errors");
    }
}

/// The 1, 5 and 15 minute load averages (Linux), to show whether something
/// else was competing for the CPUs while the figures were taken.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".to_owned())
}

fn main() {
    let args = parse_args();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let rounds = args.rounds;
    let claims = args.claims.min(args.devices / (3 * rounds)).max(1);
    println!(
        "operator_api: {} devices, {rounds} rounds of {claims} timed claims per claim \
         measurement, {} concurrent claim clients, {cpus} CPUs, phase limit {} s",
        args.devices,
        args.concurrency,
        args.phase_limit.as_secs()
    );

    // Keys and endorsements, before anything is timed.
    let t0 = Instant::now();
    let (ca, files) =
        ManufacturerCa::generate("Sevenfold bench manufacturer", 3650).expect("manufacturer CA");
    let ca_fingerprint = ca.certificate().fingerprint().to_owned();
    let mut devices = endorse_devices(&ca, 3 * rounds * claims).into_iter();
    let mut take = || devices.by_ref().take(claims).collect::<Vec<_>>();
    let claim_sets = (0..rounds).map(|_| [take(), take(), take()]).collect();
    let fixtures = Fixtures {
        ca_pem: files.cert_pem.clone(),
        ca_fingerprint,
        claim_sets,
    };
    println!(
        "  {} device keys generated and endorsed in {:.1} s (untimed)",
        3 * rounds * claims,
        t0.elapsed().as_secs_f64()
    );

    println!("  load average at start: {}", load_average());
    let started = Instant::now();
    let mut reports = Vec::new();
    for backend in args.backends.clone() {
        println!();
        println!("-- {} --", backend.name());
        let db = match backend {
            Backend::Sqlite => Some(BenchDb::sqlite()),
            Backend::Postgres => runtime.block_on(BenchDb::postgres()),
        };
        let Some(db) = db else { continue };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            runtime.block_on(run_backend(backend, &db, &args, &fixtures))
        }));
        runtime.block_on(db.cleanup());
        match result {
            Ok(report) => {
                print_report(&report);
                println!("  load average now: {}", load_average());
                reports.push(report);
            }
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
    println!();
    println!(
        "operator_api: done in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    drop(runtime);
}
