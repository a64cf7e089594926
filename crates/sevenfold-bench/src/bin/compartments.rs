//! Compartment costs (issue 6): start times, memory per idle app, how many
//! idle apps fit in 1 GiB, and wasm speed next to native.
//!
//! ```sh
//! cargo build --release --target wasm32-wasip1 --manifest-path apps/Cargo.toml --target-dir target/apps
//! cargo run --release -p sevenfold-bench --bin compartments -- [--apps 10,50,100,200] [--rounds 2000]
//! ```
//!
//! 1. **Cold start**: a new engine with an empty module cache starts
//!    `bench-idle` (which returns at once): compile, instantiate, `_start`,
//!    exit. **Warm start (disk)**: a new engine over the same cache directory
//!    (an agent restart). **Warm start**: the same engine again (median of 21).
//! 2. **Memory**: the process's resident set (VmRSS) before and after starting
//!    N idle apps (each waits in `sleep` until asked to stop), per app.
//! 3. **Capacity**: idle apps within 1 GiB, from the per-app figure at the
//!    largest N (and that N is really run).
//! 4. **CPU**: the same Rust kernel (`apps/bench/src/kernel.rs`: a sieve and a
//!    hash loop) natively here and inside a compartment (timed by the app with
//!    the WASI clock, so start-up is not counted); the ratio wasm / native.
//!
//! Timings are only meaningful from a release build on a quiet machine.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use semver::Version;
use sevenfold_compartment::{
    AppImage, ChannelHub, CompartmentEngine, CompartmentEvent, HostServices, RunSettings,
    SimulatedPeripherals, StorageArea, Supervisor, SupervisorConfig,
};
use sevenfold_core::manifest::AppManifest;
use sevenfold_rot::Digest;
use uuid::Uuid;

include!("../../../../apps/bench/src/kernel.rs");

#[derive(Parser)]
struct Args {
    /// The built apps (`bench-idle.wasm`, `bench-cpu.wasm`).
    #[arg(long, default_value = "target/apps/wasm32-wasip1/release")]
    apps_dir: PathBuf,
    /// Numbers of idle apps to hold at once.
    #[arg(long, value_delimiter = ',', default_value = "10,50,100,200")]
    apps: Vec<usize>,
    /// Sieve limit of the CPU kernel.
    #[arg(long, default_value_t = 1_000_000)]
    sieve_limit: usize,
    /// Hash rounds of the CPU kernel.
    #[arg(long, default_value_t = 2_000)]
    rounds: u32,
}

struct Rig {
    supervisor: Supervisor,
    events: mpsc::Receiver<CompartmentEvent>,
}

fn rig(cache: &Path, storage: &Path) -> Rig {
    let engine = Arc::new(CompartmentEngine::new(cache).unwrap());
    let (tx, events) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let services = Arc::new(HostServices {
        peripherals: Arc::new(SimulatedPeripherals::new()),
        channels: ChannelHub::new(),
        certificate: None,
        signer: None,
        listen_ip: "127.0.0.1".parse().unwrap(),
    });
    let config = SupervisorConfig {
        run: RunSettings {
            cpu_budget: Duration::from_secs(600),
        },
        ..SupervisorConfig::default()
    };
    let supervisor = Supervisor::new(
        engine,
        StorageArea::new(storage).unwrap(),
        services,
        config,
        Arc::new(move |e: &CompartmentEvent| {
            let _ = tx.lock().unwrap().send(e.clone());
        }),
    );
    Rig { supervisor, events }
}

fn image(wasm: &[u8], name: &str, n: u128) -> AppImage {
    let manifest = AppManifest::builder(
        name,
        Uuid::from_u128(n),
        Version::new(1, 0, 0),
        1,
        format!("{name}.wasm"),
    )
    .memory_kb(4096)
    .build()
    .unwrap();
    AppImage::new(manifest, wasm, Digest::of(wasm)).unwrap()
}

/// Starts an app that returns at once; the time until its exit.
fn timed_start(rig: &Rig, wasm: &[u8], n: u128) -> Duration {
    let started = Instant::now();
    rig.supervisor
        .start(image(wasm, "bench-idle", n).with_env("IDLE_EXIT", "1"))
        .unwrap();
    loop {
        match rig.events.recv_timeout(Duration::from_secs(60)).unwrap() {
            CompartmentEvent::Exited { app, .. } if app.component_id == Uuid::from_u128(n) => {
                return started.elapsed()
            }
            CompartmentEvent::Crashed { reason, .. } => panic!("bench app crashed: {reason}"),
            _ => {}
        }
    }
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let args = Args::parse();
    let read = |name: &str| {
        let path = args.apps_dir.join(format!("{name}.wasm"));
        std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; build the apps first (see this file's header)",
                path.display()
            )
        })
    };
    let idle = read("bench-idle");
    let cpu = read("bench-cpu");
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("module-cache");
    let storage = dir.path().join("storage");

    println!("## Start");
    let first = rig(&cache, &storage);
    let cold = timed_start(&first, &idle, 1);
    drop(first);
    let second = rig(&cache, &storage);
    let warm_disk = timed_start(&second, &idle, 1);
    let mut warm: Vec<Duration> = (0..21).map(|_| timed_start(&second, &idle, 1)).collect();
    warm.sort();
    drop(second);
    println!("| cold start (compile) | {} |", ms(cold));
    println!(
        "| warm start, new engine (disk cache) | {} |",
        ms(warm_disk)
    );
    println!(
        "| warm start, same engine (median of 21) | {} |",
        ms(warm[10])
    );

    println!("\n## Idle apps");
    let holder = rig(&cache, &storage);
    // Compile once before the baseline, so the module is not counted per app.
    timed_start(&holder, &idle, 1);
    std::thread::sleep(Duration::from_millis(200));
    let base = rss_bytes();
    let mut running: usize = 0;
    let mut per_app = 0.0;
    for &target in &args.apps {
        while running < target {
            running += 1;
            holder
                .supervisor
                .start(image(&idle, "bench-idle", 1000 + running as u128))
                .unwrap();
        }
        std::thread::sleep(Duration::from_millis(500));
        let rss = rss_bytes();
        per_app = (rss.saturating_sub(base)) as f64 / running as f64;
        println!(
            "| {running} idle apps | RSS {:.1} MiB | +{:.1} MiB | {:.0} KiB per app |",
            rss as f64 / 1048576.0,
            (rss.saturating_sub(base)) as f64 / 1048576.0,
            per_app / 1024.0
        );
    }
    let capacity = ((1u64 << 30).saturating_sub(base)) as f64 / per_app.max(1.0);
    println!("| idle apps within 1 GiB (from the last row) | {capacity:.0} |");
    holder.supervisor.stop_all();
    drop(holder);

    println!("\n## CPU-bound kernel");
    let started = Instant::now();
    let native_result = kernel(
        std::hint::black_box(args.sieve_limit),
        std::hint::black_box(args.rounds),
    );
    let native = started.elapsed();
    let cpu_rig = rig(&cache, &storage);
    cpu_rig
        .supervisor
        .start(
            image(&cpu, "bench-cpu", 2)
                .with_env("SIEVE_LIMIT", args.sieve_limit.to_string())
                .with_env("ROUNDS", args.rounds.to_string()),
        )
        .unwrap();
    loop {
        match cpu_rig
            .events
            .recv_timeout(Duration::from_secs(600))
            .unwrap()
        {
            CompartmentEvent::Exited { .. } => break,
            CompartmentEvent::Crashed { reason, .. } => panic!("bench-cpu crashed: {reason}"),
            _ => {}
        }
    }
    let line = cpu_rig
        .supervisor
        .output(Uuid::from_u128(2))
        .unwrap()
        .join("\n");
    let (result, micros) = line
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(4)
        .find(|w| w[0] == "result" && w[2] == "in")
        .map(|w| (w[1].parse::<u64>().unwrap(), w[3].parse::<u64>().unwrap()))
        .unwrap_or_else(|| panic!("unexpected bench-cpu output: {line}"));
    assert_eq!(
        result, native_result,
        "wasm and native computed different results"
    );
    let wasm = Duration::from_micros(micros);
    println!("| native | {} |", ms(native));
    println!("| wasm (in compartment) | {} |", ms(wasm));
    println!(
        "| ratio wasm / native | {:.2} |",
        wasm.as_secs_f64() / native.as_secs_f64()
    );
}
