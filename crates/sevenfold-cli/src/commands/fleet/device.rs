//! One simulated device: a real agent state directory with a soft root of
//! trust, driven through the agent library's own steps (measured boot,
//! attestation, report upload, TUF update rounds), so it speaks exactly the
//! protocol a real device speaks. Only two things are simulated: a faulty
//! device's apps crash (a trap record with a stable backtrace, so a
//! thousand of them group into one problem), and its updates fail their
//! health check and roll back.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sevenfold_agent::journal::{Journal, JournalError};
use sevenfold_agent::update::{update_once, UpdateOptions};
use sevenfold_agent::{
    renewal_delay, Agent, AgentError, AttestError, BootCheck, HealthCheck, RuntimeImage, StateDir,
    VerifiedImage,
};
use sevenfold_core::report::FailureKind;
use sevenfold_rot::RootOfTrust;
use tokio::sync::{watch, Semaphore};

use crate::commands::enrolment::{blocking, open_or_make_device};

/// What every device of a run shares.
pub(super) struct Env {
    pub(super) device_url: String,
    pub(super) ca_file: PathBuf,
    pub(super) maker_dir: PathBuf,
    /// (public PEM, file) of each image signing key to trust.
    pub(super) trust_keys: Vec<(String, PathBuf)>,
    pub(super) runtime: RuntimeImage,
    pub(super) interval: Duration,
    /// Devices making requests at the same moment.
    pub(super) permits: Semaphore,
    pub(super) stats: Stats,
}

/// What the fleet did, counted as it happens.
#[derive(Default)]
pub(super) struct Stats {
    pub(super) booted: AtomicU64,
    pub(super) attested: AtomicU64,
    pub(super) refused: AtomicU64,
    pub(super) errors: AtomicU64,
    pub(super) renewals: AtomicU64,
    pub(super) installed: AtomicU64,
    pub(super) rolled_back: AtomicU64,
    pub(super) crashes: AtomicU64,
    pub(super) uploaded: AtomicU64,
}

impl Stats {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Makes (or reopens) a device's state directory: initialised and
/// endorsed by the manufacturer CA, pointed at this run's service,
/// trusting the signing keys. Blocking.
pub(super) fn prepare(dir: &Path, env: &Env) -> anyhow::Result<StateDir> {
    let state = open_or_make_device(dir, &env.device_url, &env.ca_file, &env.maker_dir)?;
    anyhow::ensure!(
        state.config().service_url.as_str().trim_end_matches('/')
            == env.device_url.trim_end_matches('/'),
        "{} belongs to a device of another service ({}); use another --dir",
        dir.display(),
        state.config().service_url
    );
    for (pem, path) in &env.trust_keys {
        state.trust_key(pem, path)?;
    }
    Ok(state)
}

/// A faulty device's health check: every new version "crashes on start".
struct CrashesOnStart;

impl HealthCheck for CrashesOnStart {
    fn check(
        &self,
        _: &StateDir,
        _: &dyn RootOfTrust,
        _: &Path,
        _: &str,
    ) -> Result<Result<VerifiedImage, String>, AgentError> {
        Ok(Err(
            "the new version crashed on start: wasm trap: unreachable (simulated fault)".into(),
        ))
    }
}

/// Runs one device until `stop`: boot, attest, then every interval (with
/// jitter) upload reports, run an update round (re-booting and re-attesting
/// after a change) and renew the certificate when due. `ready` is told once
/// the first attestation is over, whatever its verdict.
pub(super) async fn live(
    state: StateDir,
    env: Arc<Env>,
    faulty: bool,
    seed: u64,
    mut stop: watch::Receiver<bool>,
    ready: tokio::sync::mpsc::Sender<()>,
) {
    let mut random = Jitter(seed | 1);
    let mut ready = Some(ready);
    let health: &dyn HealthCheck = if faulty { &CrashesOnStart } else { &BootCheck };
    // Spread the fleet's first boots over one interval's first tenth.
    let start = env.interval.mul_f64(random.unit() * 0.1);
    if sleep_or_stop(start, &mut stop).await {
        return;
    }
    'boot: while !*stop.borrow() {
        let agent = {
            let (state, runtime) = (state.clone(), env.runtime.clone());
            match blocking(move || Agent::start(state, &runtime)).await {
                Ok(Ok(agent)) => agent,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "simulated device cannot boot");
                    Stats::bump(&env.stats.errors);
                    if sleep_or_stop(env.interval, &mut stop).await {
                        return;
                    }
                    continue 'boot;
                }
                Err(e) => {
                    tracing::error!(error = %e, "simulated device task failed");
                    return;
                }
            }
        };
        Stats::bump(&env.stats.booted);
        let mut expires = attest(&agent, &env).await;
        if let Some(ready) = ready.take() {
            // The receiver may be gone (nobody waits any more): fine.
            let _ = ready.send(()).await;
        }
        loop {
            let pause = env.interval.mul_f64(0.75 + random.unit() * 0.5);
            if sleep_or_stop(pause, &mut stop).await {
                return;
            }
            let _permit = env.permits.acquire().await;
            if faulty {
                crash(&agent, &env.stats);
            }
            if expires.is_some() {
                match agent.upload_reports().await {
                    Ok(outcome) => {
                        env.stats
                            .uploaded
                            .fetch_add(u64::from(outcome.records), Ordering::Relaxed);
                    }
                    Err(e) => tracing::debug!(error = %e, "upload failed; retried next round"),
                }
                match update_once(agent.state(), health, UpdateOptions::default()).await {
                    Ok(report) => {
                        for outcome in &report.outcomes {
                            match outcome.state.as_str() {
                                "installed" => Stats::bump(&env.stats.installed),
                                "rolled-back" | "failed" => Stats::bump(&env.stats.rolled_back),
                                _ => {}
                            }
                        }
                        if report.changed {
                            // New software: measured boot again, then attest.
                            continue 'boot;
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "update round failed; retried next round")
                    }
                }
            }
            let due = match expires {
                None => true,
                Some(not_after) => {
                    let remaining = (not_after - time::OffsetDateTime::now_utc())
                        .try_into()
                        .unwrap_or(Duration::ZERO);
                    renewal_delay(remaining, random.unit() * 0.1) <= pause
                }
            };
            if due {
                Stats::bump(&env.stats.renewals);
                expires = attest(&agent, &env).await.or(expires);
            }
        }
    }
}

/// One attestation, counted; the certificate's expiry on a pass.
async fn attest(agent: &Agent, env: &Env) -> Option<time::OffsetDateTime> {
    let _permit = env.permits.acquire().await;
    match agent.attest().await {
        Ok(pass) => {
            Stats::bump(&env.stats.attested);
            Some(pass.not_after)
        }
        Err(AttestError::Refused { reasons, .. }) => {
            tracing::info!(reasons = ?reasons, "simulated device refused");
            Stats::bump(&env.stats.refused);
            None
        }
        Err(e) => {
            tracing::debug!(error = %e, "simulated device could not attest");
            Stats::bump(&env.stats.errors);
            None
        }
    }
}

/// Journals a crash of the device's first app (or of a stand-in app when
/// none is installed), with the same reason and backtrace every time, so
/// the crashes of many devices group into one problem. An injected fault:
/// the record is what a real trap in that app would journal.
pub(crate) fn journal_simulated_crash(agent: &Agent) -> Result<(), JournalError> {
    let (component, version) = agent
        .boot_report()
        .verified_images
        .first()
        .map(|i| (i.component_id.clone(), i.version.clone()))
        .unwrap_or_else(|| ("simulated-app".to_owned(), "1.0.0".to_owned()));
    let record = Journal::new_record(
        FailureKind::Trap,
        &component,
        &version,
        "wasm trap: unreachable (simulated fault)",
    )?
    .with_frames(["sensor::read_calibration", "control::step", "app::main"]);
    agent.journal().record(&record).map(|_| ())
}

fn crash(agent: &Agent, stats: &Stats) {
    match journal_simulated_crash(agent) {
        Ok(()) => Stats::bump(&stats.crashes),
        Err(e) => {
            tracing::warn!(error = %e, "cannot journal the simulated crash");
            Stats::bump(&stats.errors);
        }
    }
}

/// Sleeps for `pause`; true if `stop` came first.
async fn sleep_or_stop(pause: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        () = tokio::time::sleep(pause) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

/// A small per-device pseudo-random sequence (xorshift64) for timing
/// jitter: no cryptographic use.
struct Jitter(u64);

impl Jitter {
    /// A number in [0, 1).
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}
