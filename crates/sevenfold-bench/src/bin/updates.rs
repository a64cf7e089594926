//! Update benchmarks (issue 5): the end-to-end install rate of a large app
//! image, and how long a fleet takes to fetch and verify one update.
//!
//! ```sh
//! CARGO_TARGET_DIR=target cargo build --release -p sevenfold-bench --bin updates
//! target/release/updates [--size-mib 100] [--devices 1000] [--concurrency 64]
//! ```
//!
//! One real server (this binary as `__serve`: `sevenfold_service::server::start`
//! on SQLite in a temporary directory, a child process so its CPU time is
//! its own). Setup goes through the operator API: tenant, two products (each
//! its own "Field Test" group, so the two deployments do not mix), a
//! signing key, the manufacturer CA that endorses the devices, this binary
//! as a known runtime release. Devices are real agent state directories
//! with a soft root of trust (`StateDir::init`, endorsed), claimed, put in
//! the group, booted (`Agent::start`) and attested, so they hold a device
//! certificate; an update round is the agent library's own
//! `update::update_once` with `BootCheck` and `--now`: the TUF metadata over
//! mutual TLS (tough), the target fetched and checked against its signed
//! length and SHA-256, written to the inactive slot, fsynced, switched, the
//! package verified again as boot will (signature, hash, security
//! version), committed; each step reported to the server.
//!
//! 1. Install: one device, one image of `--size-mib` MiB (a valid, signed
//!    package whose payload is the WebAssembly magic followed by random
//!    bytes: nothing on the install path runs it). Baseline on the same
//!    file, same disk, same run: `sha256sum` and `cp` (+ `sync` of the copy).
//! 2. Fleet: `--devices` devices, a ~60 KB image, all devices run their
//!    round at once, `--concurrency` at a time; wall time, per-device p50
//!    and p99, failures, and the server's CPU time.
//!
//! Output: one JSON line per result on stdout, a human summary on stderr.

// A benchmark binary: a failed set-up step should stop the run at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{json, Value};
use sevenfold_agent::update::{update_once, UpdateOptions};
use sevenfold_agent::{Agent, BootCheck, InitOptions, RotBackend, RuntimeImage, StateDir};
use sevenfold_bench::server::{
    cpu_model, for_each_concurrent, load_average, serve_if_asked, Operator, ServerProcess,
};
use sevenfold_bench::{percentile, ticks_per_second, tree_cpu};
use sevenfold_core::manifest::AppManifest;
use sevenfold_core::package::write_package;
use sevenfold_pki::ManufacturerCa;
use sevenfold_rot::{KeyAlgorithm, SoftwareKey};

/// Update benchmarks: install rate of a large image, a fleet's update round.
#[derive(Debug, Parser)]
struct Args {
    /// Size of the install benchmark's image payload, MiB (0 skips it).
    #[arg(long, default_value_t = 100)]
    size_mib: u64,
    /// Devices in the fleet benchmark (0 skips it).
    #[arg(long, default_value_t = 1000)]
    devices: usize,
    /// Devices talking to the server at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Size of the fleet benchmark's image payload, bytes.
    #[arg(long, default_value_t = 60_000)]
    fleet_image_bytes: usize,
    /// Work here (server data, devices, files) instead of a temporary
    /// directory; it must be on the disk to measure.
    #[arg(long)]
    dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    if let Some(code) = serve_if_asked() {
        return code;
    }
    let args = Args::parse();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(args));
    ExitCode::SUCCESS
}

/// Prints one JSON result line.
fn emit(value: &Value) {
    println!("{value}");
}

/// What the devices of a run share.
struct Setup {
    op: Operator,
    tenant: String,
    key: SoftwareKey,
    maker_dir: PathBuf,
    ca_file: PathBuf,
    device_url: String,
    runtime: RuntimeImage,
}

async fn run(args: Args) {
    let temp = tempfile::tempdir_in(args.dir.as_deref().unwrap_or(Path::new("/var/tmp")))
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    let dir = temp.path().to_path_buf();
    // Every simulated device comes from 127.0.0.1, as a fleet behind one
    // NAT would: let them attest at fleet speed.
    let server = ServerProcess::start_with_env(
        None,
        &dir.join("server"),
        None,
        &[("SEVENFOLD_NONCES_PER_SOURCE", "1000000")],
    );
    let setup = Arc::new(setup(&server, &dir).await);
    eprintln!(
        "machine: {}, {} cores, load average {} at start",
        cpu_model(),
        std::thread::available_parallelism().map_or(1, usize::from),
        load_average()
    );
    if args.size_mib > 0 {
        install(&args, &setup, &server, &dir).await;
    }
    if args.devices > 0 {
        fleet(&args, &setup, &server, &dir).await;
    }
    eprintln!("load average at the end: {}", load_average());
    server.stop();
}

async fn setup(server: &ServerProcess, dir: &Path) -> Setup {
    let op = Operator::new(server);
    let tenant = op.post("/api/v1/tenants", json!({"name": "bench"})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (key, _) = SoftwareKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    op.post(
        &format!("/api/v1/tenants/{tenant}/signing-keys"),
        json!({"name": "release", "public_key_pem": key.public_key().to_pem()}),
    )
    .await;
    let maker_dir = dir.join("maker");
    std::fs::create_dir_all(&maker_dir).unwrap();
    let (maker, files) = ManufacturerCa::generate("Sevenfold update bench CA", 365).unwrap();
    std::fs::write(maker_dir.join("ca.pem"), &files.cert_pem).unwrap();
    std::fs::write(maker_dir.join("ca.key"), files.key_pem.as_bytes()).unwrap();
    op.post(
        "/api/v1/manufacturer-cas",
        json!({"certificate_pem": maker.certificate().to_pem()}),
    )
    .await;
    let runtime = RuntimeImage::current().unwrap();
    let digest = runtime.digest().unwrap().to_hex();
    op.post(
        "/api/v1/runtime-releases",
        json!({"digest": digest, "version": runtime.version()}),
    )
    .await;
    let ca_file = dir.join("service-ca.pem");
    std::fs::write(&ca_file, &server.ca_pem).unwrap();
    Setup {
        op,
        tenant,
        key,
        maker_dir,
        ca_file,
        device_url: server.device_url(),
        runtime,
    }
}

/// A product's "Field Test" group ID (a product per benchmark keeps the
/// two deployments, and so the two TUF repositories, apart).
async fn group_of_new_product(setup: &Setup, name: &str) -> String {
    let product = setup
        .op
        .post(
            &format!("/api/v1/tenants/{}/products", setup.tenant),
            json!({"name": name}),
        )
        .await;
    product["device_groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "Field Test")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A signed image package of `payload_len` bytes of payload (the
/// WebAssembly magic, then pseudo-random bytes), uploaded; (image ID,
/// package bytes).
async fn image(setup: &Setup, name: &str, payload_len: usize, seed: u64) -> (String, Vec<u8>) {
    let manifest = json!({
        "SchemaVersion": 1, "Name": name, "ComponentId": uuid::Uuid::new_v4().to_string(),
        "Version": "2.0.0", "SecurityVersion": 1, "EntryPoint": format!("{name}.wasm"),
        "Capabilities": {}
    });
    let manifest = AppManifest::from_json(manifest.to_string().as_bytes()).unwrap();
    let mut payload = Vec::with_capacity(payload_len.max(8));
    payload.extend_from_slice(b"\0asm\x01\0\0\0");
    let mut x = seed | 1;
    while payload.len() < payload_len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        payload.extend_from_slice(&x.to_le_bytes());
    }
    payload.truncate(payload_len.max(8));
    let package = write_package(&manifest, &payload, &setup.key).unwrap();
    let image = setup
        .op
        .upload(
            &format!("/api/v1/tenants/{}/images", setup.tenant),
            package.clone(),
        )
        .await;
    (image["id"].as_str().unwrap().to_owned(), package)
}

/// Deploys `image` to `group` (100 %) and waits until its deltas are made.
async fn deploy(setup: &Setup, group: &str, image: &str) -> String {
    let t = &setup.tenant;
    let created = setup
        .op
        .post(
            &format!("/api/v1/tenants/{t}/deployments"),
            json!({"group": group, "images": [image], "percent": 100}),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    for _ in 0..1200 {
        let shown = setup
            .op
            .get(&format!("/api/v1/tenants/{t}/deployments/{id}"))
            .await;
        if shown["deltas_state"] != "making" {
            return id;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("deployment {id}: deltas still being made after 120 s");
}

/// A device in `group`: state directory, endorsed, claimed, trusting the
/// release key, booted and attested (it holds a device certificate).
async fn device(setup: &Setup, dir: PathBuf, group: &str) -> StateDir {
    let options = InitOptions {
        state_dir: dir,
        service_url: setup.device_url.clone(),
        service_ca: setup.ca_file.clone(),
        rot: RotBackend::Soft,
        tcti: None,
        endorse_with: Some(setup.maker_dir.clone()),
    };
    let key_pem = setup.key.public_key().to_pem();
    let key_file = setup.maker_dir.join("release.pub.pem");
    let state = tokio::task::spawn_blocking(move || {
        let (state, _) = StateDir::init(&options).unwrap();
        state.trust_key(&key_pem, &key_file).unwrap();
        state
    })
    .await
    .unwrap();
    let t = &setup.tenant;
    let device_id = state.device_id().to_string();
    setup
        .op
        .post(
            &format!("/api/v1/tenants/{t}/devices"),
            json!({"device_id": device_id, "endorsement_pem": state.endorsement_pem().unwrap()}),
        )
        .await;
    let (status, reply) = setup
        .op
        .send(
            reqwest::Method::PUT,
            &format!("/api/v1/tenants/{t}/devices/{device_id}/group"),
            Some(json!({"group_id": group})),
        )
        .await;
    assert!((200..300).contains(&status), "assign: {status} {reply}");
    let agent = {
        let (state, runtime) = (state.clone(), setup.runtime.clone());
        tokio::task::spawn_blocking(move || Agent::start(state, &runtime))
            .await
            .unwrap()
            .unwrap()
    };
    agent.attest().await.unwrap();
    state
}

/// One update round; (time, the single target's state, bytes fetched).
async fn round(state: &StateDir) -> (Duration, String, u64) {
    let start = Instant::now();
    let report = update_once(state, &BootCheck, UpdateOptions { now: true }).await;
    let took = start.elapsed();
    match report {
        Ok(r) => match r.outcomes.as_slice() {
            [one] => (
                took,
                match &one.reason {
                    Some(why) if one.state != "installed" => format!("{}: {why}", one.state),
                    _ => one.state.clone(),
                },
                one.transfer.downloaded_bytes,
            ),
            other => (took, format!("{} targets", other.len()), 0),
        },
        Err(e) => (took, format!("error: {e}"), 0),
    }
}

/// Wall time of a shell command.
fn timed(program: &str, args: &[&Path]) -> Duration {
    let start = Instant::now();
    let status = Command::new(program)
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "{program} failed");
    start.elapsed()
}

fn mb_per_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

async fn install(args: &Args, setup: &Setup, server: &ServerProcess, dir: &Path) {
    let group = group_of_new_product(setup, "big").await;
    let size = usize::try_from(args.size_mib << 20).unwrap();
    let (image_id, package) = image(setup, "big", size, 0x5EED).await;
    let bytes = package.len() as u64;
    deploy(setup, &group, &image_id).await;
    let state = device(setup, dir.join("install-device"), &group).await;

    // Baselines on the same bytes, same disk: hash, copy, copy + sync.
    let file = dir.join("big.imagepackage");
    let copy = dir.join("big.copy");
    std::fs::write(&file, &package).unwrap();
    drop(package);
    let sha = timed("sha256sum", &[&file]);
    let cp = timed("cp", &[&file, &copy]);
    std::fs::remove_file(&copy).unwrap();
    let cp_sync = timed("cp", &[&file, &copy]) + timed("sync", &[&copy]);

    let load = load_average();
    let cpu_before = tree_cpu(server.pid());
    let (took, outcome, fetched) = round(&state).await;
    let server_cpu = tree_cpu(server.pid())
        .since(cpu_before)
        .seconds(ticks_per_second());
    let line = json!({
        "event": "install", "package_bytes": bytes, "downloaded_bytes": fetched,
        "outcome": outcome, "seconds": took.as_secs_f64(), "mb_per_s": mb_per_s(bytes, took),
        "server_cpu_seconds": server_cpu,
        "sha256sum_seconds": sha.as_secs_f64(), "sha256sum_mb_per_s": mb_per_s(bytes, sha),
        "cp_seconds": cp.as_secs_f64(), "cp_mb_per_s": mb_per_s(bytes, cp),
        "cp_sync_seconds": cp_sync.as_secs_f64(),
        "sha256sum_plus_cp_sync_mb_per_s": mb_per_s(bytes, sha + cp_sync),
        "load_average": load,
    });
    emit(&line);
    eprintln!(
        "install of a {:.1} MB package ({outcome}): {:.2} s = {:.0} MB/s (server CPU {server_cpu:.2} s); \
         same file: sha256sum {:.2} s ({:.0} MB/s), cp {:.2} s ({:.0} MB/s), cp+sync {:.2} s, \
         sha256sum+cp+sync {:.0} MB/s; load {load}",
        bytes as f64 / 1e6,
        took.as_secs_f64(),
        mb_per_s(bytes, took),
        sha.as_secs_f64(),
        mb_per_s(bytes, sha),
        cp.as_secs_f64(),
        mb_per_s(bytes, cp),
        cp_sync.as_secs_f64(),
        mb_per_s(bytes, sha + cp_sync),
    );
}

async fn fleet(args: &Args, setup: &Arc<Setup>, server: &ServerProcess, dir: &Path) {
    let group = group_of_new_product(setup, "fleet").await;
    let made = Instant::now();
    let devices: Vec<StateDir> = {
        let (s, g, d) = (setup.clone(), Arc::new(group.clone()), dir.join("fleet"));
        for_each_concurrent(args.devices, args.concurrency, move |i| {
            let (s, g, path) = (s.clone(), g.clone(), d.join(format!("device-{i:05}")));
            async move { device(&s, path, &g).await }
        })
        .await
    };
    eprintln!(
        "{} devices made, claimed and attested in {:.1} s",
        devices.len(),
        made.elapsed().as_secs_f64()
    );
    let (image_id, package) = image(setup, "lamp", args.fleet_image_bytes, 0xF1EE7).await;
    deploy(setup, &group, &image_id).await;

    let load_before = load_average();
    let cpu_before = tree_cpu(server.pid());
    let start = Instant::now();
    let devices = Arc::new(devices);
    let results = {
        let devices = devices.clone();
        for_each_concurrent(devices.len(), args.concurrency, move |i| {
            let devices = devices.clone();
            async move { round(&devices[i]).await }
        })
        .await
    };
    let wall = start.elapsed();
    let server_cpu = tree_cpu(server.pid())
        .since(cpu_before)
        .seconds(ticks_per_second());
    let load_after = load_average();
    let mut times: Vec<Duration> = results.iter().map(|r| r.0).collect();
    times.sort();
    let failures: Vec<&String> = results
        .iter()
        .map(|r| &r.1)
        .filter(|o| *o != "installed")
        .collect();
    let (p50, p99) = (percentile(&times, 50.0), percentile(&times, 99.0));
    emit(&json!({
        "event": "fleet", "devices": devices.len(), "concurrency": args.concurrency,
        "package_bytes": package.len(), "wall_seconds": wall.as_secs_f64(),
        "p50_seconds": p50.as_secs_f64(), "p99_seconds": p99.as_secs_f64(),
        "max_seconds": times.last().copied().unwrap_or_default().as_secs_f64(),
        "failures": failures.len(), "first_failure": failures.first(),
        "server_cpu_seconds": server_cpu,
        "load_average_before": load_before, "load_average_after": load_after,
    }));
    eprintln!(
        "fleet: {} devices fetched, verified and installed a {} B package in {:.1} s \
         ({} at a time): per device p50 {:.0} ms, p99 {:.0} ms; {} failures{}; server CPU {server_cpu:.1} s; \
         load {load_before} -> {load_after}",
        devices.len(),
        package.len(),
        wall.as_secs_f64(),
        args.concurrency,
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        failures.len(),
        failures
            .first()
            .map(|f| format!(" (first: {f})"))
            .unwrap_or_default(),
    );
}
