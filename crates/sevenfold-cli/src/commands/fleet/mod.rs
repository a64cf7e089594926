//! `sevenfold fleet simulate`: many devices from one process.
//!
//! Setup goes through the operator API like a person would: the
//! manufacturer CA that endorses the devices and this runtime build are
//! made known to the service (found if they already are), and each device
//! is claimed into the group. Then every device is an in-process agent on
//! its own task ([`device::live`]); a semaphore bounds how many talk to the
//! service at once. A deterministic share (`--faulty-percent`, the first
//! devices by index) is faulty.
//!
//! Output: progress while devices are made and attest, then a `ready`
//! summary (text, or one JSON line with `--output json`), a status line
//! every ten seconds, and a final `stopped` summary on Ctrl-C or after
//! `--duration`.

mod device;

pub(crate) use device::journal_simulated_crash;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::stream::{self, StreamExt};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use sevenfold_agent::{RuntimeImage, ShutdownSignals};
use tokio::sync::{mpsc, watch, Semaphore};

use crate::cli::{FleetArgs, FleetCommand, OutputMode, SimulateArgs};
use crate::client::Client;
use crate::commands::enrolment::{
    absolute, blocking, claim_into_group, ensure_runtime_release, load_or_make_maker,
    trust_manufacturer,
};
use crate::files;
use device::{Env, Stats};

/// The manufacturer CA the simulator makes when given none.
const MAKER_NAME: &str = "Sevenfold fleet simulator CA";
const MAKER_DAYS: u32 = 3650;
/// How often the status line is printed.
const STATUS_EVERY: Duration = Duration::from_secs(10);

/// Dispatches `sevenfold fleet …`.
pub(crate) async fn run(mode: OutputMode, args: FleetArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        FleetCommand::Simulate(simulate) => {
            let client = Client::connect(&args.conn, &args.tenant)?;
            run_simulation(mode, &client, &simulate).await
        }
    }
}

/// What the fleet did, as printed.
#[derive(Serialize)]
struct Summary {
    event: &'static str,
    devices: u32,
    faulty: u32,
    booted: u64,
    attested: u64,
    refused: u64,
    errors: u64,
    renewals: u64,
    updates_installed: u64,
    updates_rolled_back: u64,
    crashes: u64,
    records_uploaded: u64,
    seconds: u64,
}

impl Summary {
    fn of(
        event: &'static str,
        args: &SimulateArgs,
        faulty: u32,
        stats: &Stats,
        since: Instant,
    ) -> Summary {
        let n = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        Summary {
            event,
            devices: args.devices,
            faulty,
            booted: n(&stats.booted),
            attested: n(&stats.attested),
            refused: n(&stats.refused),
            errors: n(&stats.errors),
            renewals: n(&stats.renewals),
            updates_installed: n(&stats.installed),
            updates_rolled_back: n(&stats.rolled_back),
            crashes: n(&stats.crashes),
            records_uploaded: n(&stats.uploaded),
            seconds: since.elapsed().as_secs(),
        }
    }

    fn print(&self, mode: OutputMode) {
        match mode {
            OutputMode::Json => {
                if let Ok(line) = serde_json::to_string(self) {
                    println!("{line}");
                }
            }
            OutputMode::Text => println!(
                "{}: {} devices ({} faulty) after {} s: {} attestations passed, {} refused, {} errors; \
                 {} renewals; updates {} installed, {} rolled back; {} crashes, {} records uploaded",
                self.event,
                self.devices,
                self.faulty,
                self.seconds,
                self.attested,
                self.refused,
                self.errors,
                self.renewals,
                self.updates_installed,
                self.updates_rolled_back,
                self.crashes,
                self.records_uploaded,
            ),
        }
    }
}

fn progress(mode: OutputMode, len: u64, message: &'static str) -> ProgressBar {
    if mode == OutputMode::Json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({elapsed})") {
        bar.set_style(style);
    }
    bar.set_message(message);
    bar
}

/// Whether device `index` of `devices` is faulty: the first
/// `faulty_percent` of them.
fn is_faulty(index: u32, devices: u32, faulty_percent: u8) -> bool {
    u64::from(index) * 100 < u64::from(devices) * u64::from(faulty_percent)
}

async fn run_simulation(
    mode: OutputMode,
    client: &Client,
    args: &SimulateArgs,
) -> anyhow::Result<ExitCode> {
    super::init_quiet_logging();
    let stop_signal = ShutdownSignals::new().wait();
    tokio::pin!(stop_signal);
    let since = Instant::now();

    let tenant = client.tenant_id().await?;
    let group = client.resolve_group(&tenant, &args.group).await?;
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let maker_dir = match &args.maker {
        Some(dir) => dir.clone(),
        None => args.dir.join("maker"),
    };
    let (maker, _) = {
        let dir = maker_dir.clone();
        blocking(move || load_or_make_maker(&dir, MAKER_NAME, MAKER_DAYS)).await??
    };
    trust_manufacturer(client, &maker).await.context(
        "the service must trust the devices' manufacturer CA (a server administrator's step)",
    )?;
    let runtime = RuntimeImage::current()?;
    let digest = {
        let runtime = runtime.clone();
        blocking(move || runtime.digest()).await??.to_hex()
    };
    ensure_runtime_release(client, &digest)
        .await
        .context("the service must know this runtime build (a server administrator's step)")?;
    let mut trust_keys = Vec::new();
    for path in &args.trust_keys {
        trust_keys.push((files::read_text(path)?, absolute(path)));
    }
    let env = Arc::new(Env {
        device_url: args.device_api.clone(),
        ca_file: absolute(&args.service_ca),
        maker_dir: absolute(&maker_dir),
        trust_keys,
        runtime,
        interval: Duration::from_secs(args.interval),
        permits: Semaphore::new(usize::try_from(args.concurrency).unwrap_or(32)),
        stats: Stats::default(),
    });

    // Make and claim every device, `concurrency` at a time.
    let bar = progress(mode, u64::from(args.devices), "making and claiming devices");
    let made: Vec<anyhow::Result<(u32, sevenfold_agent::StateDir)>> = stream::iter(0..args.devices)
        .map(|i| {
            let env = env.clone();
            let dir = args.dir.join("devices").join(format!("device-{i:05}"));
            let (client, tenant, group_id, bar) = (client, &tenant, &group.id, &bar);
            async move {
                let state = blocking(move || device::prepare(&dir, &env)).await??;
                claim_into_group(client, tenant, group_id, &state).await?;
                bar.inc(1);
                Ok((i, state))
            }
        })
        .buffer_unordered(usize::try_from(args.concurrency).unwrap_or(32))
        .collect()
        .await;
    bar.finish_and_clear();
    let devices: Vec<_> = made.into_iter().collect::<anyhow::Result<_>>()?;
    let faulty = devices
        .iter()
        .filter(|(i, _)| is_faulty(*i, args.devices, args.faulty_percent))
        .count();
    let faulty = u32::try_from(faulty).unwrap_or(u32::MAX);

    // Run them; wait until each has attested once.
    let (stop, stopped) = watch::channel(false);
    let (ready_tx, mut ready_rx) = mpsc::channel(1024);
    let mut tasks = tokio::task::JoinSet::new();
    for (i, state) in devices {
        let is_faulty = is_faulty(i, args.devices, args.faulty_percent);
        tasks.spawn(device::live(
            state,
            env.clone(),
            is_faulty,
            0x9E37_79B9_7F4A_7C15 ^ u64::from(i),
            stopped.clone(),
            ready_tx.clone(),
        ));
    }
    drop(ready_tx);
    let deadline = args
        .duration
        .map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    let until_deadline = async {
        match deadline {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(until_deadline);
    let bar = progress(mode, u64::from(args.devices), "booting and attesting");
    let mut interrupted = false;
    for _ in 0..args.devices {
        tokio::select! {
            got = ready_rx.recv() => match got {
                Some(()) => bar.inc(1),
                None => break,
            },
            _ = &mut stop_signal => { interrupted = true; break; }
            () = &mut until_deadline => { interrupted = true; break; }
        }
    }
    bar.finish_and_clear();
    if !interrupted {
        Summary::of("ready", args, faulty, &env.stats, since).print(mode);
        let mut ticker = tokio::time::interval(STATUS_EVERY);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    if mode == OutputMode::Text {
                        Summary::of("running", args, faulty, &env.stats, since).print(mode);
                    }
                }
                _ = &mut stop_signal => break,
                () = &mut until_deadline => break,
            }
        }
    }
    let _ = stop.send(true);
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(30), drain)
        .await
        .is_err()
    {
        tasks.abort_all();
    }
    Summary::of("stopped", args, faulty, &env.stats, since).print(mode);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_faulty_share_is_the_first_devices_and_about_the_percentage() {
        let count = |n: u32, p: u8| (0..n).filter(|i| is_faulty(*i, n, p)).count();
        assert_eq!(count(20, 25), 5);
        assert_eq!(count(10_000, 5), 500);
        assert_eq!(count(7, 0), 0);
        assert_eq!(count(7, 100), 7);
        assert!(is_faulty(0, 20, 25) && !is_faulty(5, 20, 25));
    }
}
