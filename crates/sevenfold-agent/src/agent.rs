//! The runtime: boot once, then attest and keep the certificate fresh.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sevenfold_compartment::EventSink;
use sevenfold_core::attestation::EvidenceBody;
use sevenfold_core::report::FailureKind;
use sevenfold_rot::{DeviceId, PublicKey, RootOfTrust};
use time::OffsetDateTime;

use crate::app_failures::{journaling_sink, CrashDetails};
use crate::apps::AppStatusEntry;
use crate::attest::{self, AttestError, Attestation};
use crate::boot::{measured_boot, BootReport, RuntimeImage};
use crate::client::ServiceClient;
use crate::journal::{Journal, JOURNAL_DIR, RUNTIME_COMPONENT};
use crate::reporter;
use crate::state::TlsKey;
use crate::status::{rfc3339, Status, VERDICT_FAIL, VERDICT_PASS};
use crate::{AgentError, StateDir};

/// First retry delay after a failed attempt.
pub const MIN_RETRY: Duration = Duration::from_secs(1);
/// Longest retry delay (the back-off doubles up to this).
pub const MAX_RETRY: Duration = Duration::from_secs(300);
/// Longest time between two attestations, whatever the certificate's lifetime.
pub const MAX_RENEWAL_INTERVAL: Duration = Duration::from_secs(24 * 3600);
/// Largest share by which a delay is shortened at random, so that a fleet
/// restarted together does not attest in lock-step.
pub const JITTER: f64 = 0.10;

/// A booted device: its measurements are in the root of trust, and it can
/// attest.
pub struct Agent {
    state: StateDir,
    rot: Arc<dyn RootOfTrust>,
    tls_key: TlsKey,
    boot: BootReport,
    client: ServiceClient,
    status: Mutex<Status>,
    journal: Arc<Journal>,
    started: Instant,
    /// Wakes the upload loop (after an attestation pass).
    upload_now: tokio::sync::Notify,
    /// Records the service acknowledged since start.
    uploaded: std::sync::atomic::AtomicU64,
    /// Whether app failure records carry crash details (the group's choice).
    crash_details: Arc<CrashDetails>,
    /// Whether this start completed TPM credential activation (a root of
    /// trust without a TPM needs none).
    credential_activated: std::sync::atomic::AtomicBool,
}

/// One attestation attempt of [`Agent::run`], and when the next one is.
#[derive(Debug)]
pub struct RunEvent {
    /// Pass, or why not ([`AttestError::Refused`] is a fail verdict).
    pub outcome: Result<Attestation, AttestError>,
    /// Delay before the next attempt.
    pub next_attempt_in: Duration,
}

impl Agent {
    /// Opens the root of trust and the TLS key, runs [`measured_boot`], and
    /// records the boot in `status.json`. Blocking (it reads every package):
    /// call it from a blocking context.
    pub fn start(state: StateDir, runtime: &RuntimeImage) -> Result<Agent, AgentError> {
        // An update interrupted by a crash is rolled back before anything is
        // measured, so boot sees committed images only.
        match crate::update::recover(&state) {
            Ok(rolled_back) if !rolled_back.is_empty() => {
                tracing::warn!(components = ?rolled_back, "rolled back updates a restart interrupted")
            }
            Ok(_) => {}
            Err(crate::update::UpdateError::Local(e)) => return Err(e),
            Err(e) => tracing::warn!(error = %e, "update recovery skipped"),
        }
        let rot = state.open_rot()?;
        let tls_key = state.tls_key()?;
        let client = ServiceClient::new(&state)?;
        let journal = Arc::new(Journal::open(
            &state.path(JOURNAL_DIR),
            state.config().reporting.journal_max_bytes,
        )?);
        let boot = measured_boot(&state, rot.as_ref(), runtime)?;
        for failure in &boot.failures {
            // An image is stored as `<component ID>.imagepackage`: report the
            // component ID, so its failures group with the app's others.
            let suffix = format!(".{}", sevenfold_core::package::FILE_EXTENSION);
            let component = failure
                .component
                .strip_suffix(&suffix)
                .unwrap_or(&failure.component);
            let record =
                Journal::new_record(FailureKind::BootCheckFailed, component, "", &failure.reason)?
                    .with_detail("file", &failure.component);
            journal.record(&record)?;
        }
        let mut status = match state.read_status() {
            Ok(Some(status)) if status.device_id == state.device_id().to_string() => status,
            Ok(_) => Status::new(state.device_id().to_string()),
            Err(e) => {
                tracing::warn!(error = %e, "status.json is unreadable; starting a new one");
                Status::new(state.device_id().to_string())
            }
        };
        let now = OffsetDateTime::now_utc();
        status.record_boot(&boot, now);
        status.updated_at = Some(rfc3339(now));
        state.write_status(&status)?;
        tracing::info!(
            device = %state.device_id(),
            measured = boot.log.events().len(),
            failures = boot.failures.len(),
            "measured boot done"
        );
        Ok(Agent {
            rot,
            tls_key,
            boot,
            client,
            status: Mutex::new(status),
            journal,
            started: Instant::now(),
            upload_now: tokio::sync::Notify::new(),
            uploaded: std::sync::atomic::AtomicU64::new(0),
            crash_details: Arc::new(CrashDetails::load(&state)),
            credential_activated: std::sync::atomic::AtomicBool::new(false),
            state,
        })
    }

    /// Uploads every pending journal record now (one round, no retry);
    /// needs a device certificate.
    pub async fn upload_reports(&self) -> Result<reporter::UploadOutcome, AttestError> {
        let outcome =
            reporter::upload_pending(&self.state, &self.journal, &self.crash_details).await?;
        self.uploaded.fetch_add(
            u64::from(outcome.records),
            std::sync::atomic::Ordering::Relaxed,
        );
        Ok(outcome)
    }

    /// The local metrics text (`[reporting] metrics_listen` serves it).
    pub fn metrics_text(&self) -> String {
        let status = self
            .status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        reporter::metrics::render(&reporter::metrics::Facts {
            uptime: self.started.elapsed(),
            journal: Some(self.journal.stats()),
            uploaded_records: self.uploaded.load(std::sync::atomic::Ordering::Relaxed),
            admitted_apps: self.boot.verified_images.len(),
            boot_failures: self.boot.failures.len(),
            last_attestation_unix: reporter::metrics::unix(status.last_attestation_at.as_deref()),
            last_attestation_passed: status.verdict.as_deref().map(|v| v == VERDICT_PASS),
            certificate_not_after_unix: reporter::metrics::unix(
                status.certificate_not_after.as_deref(),
            ),
        })
    }

    /// The failure journal. The compartment supervisor records app
    /// failures through it ([`Journal::record`]); the agent uploads them.
    pub fn journal(&self) -> &Arc<Journal> {
        &self.journal
    }

    /// The sink that journals the apps' failures (with crash details while
    /// the device's group has them on).
    pub fn app_failure_sink(&self) -> EventSink {
        journaling_sink(
            Arc::clone(&self.journal),
            &self.boot,
            &self.state,
            Arc::clone(&self.crash_details),
        )
    }

    /// The state directory.
    pub fn state(&self) -> &StateDir {
        &self.state
    }

    /// This device.
    pub fn device_id(&self) -> DeviceId {
        self.state.device_id()
    }

    /// What boot measured and refused.
    pub fn boot_report(&self) -> &BootReport {
        &self.boot
    }

    /// The root of trust (its registers hold this boot's measurements).
    pub fn rot(&self) -> &dyn RootOfTrust {
        self.rot.as_ref()
    }

    /// The TLS public key attestation asks to have certified.
    pub fn tls_public_key(&self) -> &PublicKey {
        self.tls_key.public_key()
    }

    /// The evidence for a service nonce (no network); see
    /// [`build_evidence`](crate::build_evidence). It carries the power
    /// cycle's log as it is now: another start of the agent in this power
    /// cycle may have appended to it (and extended the PCRs) since this
    /// boot. The log stays locked (shared) until the quote is made.
    pub fn evidence(&self, service_nonce: &[u8]) -> Result<EvidenceBody, AgentError> {
        let endorsement = self.state.endorsement_pem()?;
        let (log, _locked) = crate::measurement_log::current(&self.state, &self.boot.log)?;
        let boot = BootReport {
            log,
            ..self.boot.clone()
        };
        attest::build_evidence(
            self.rot.as_ref(),
            &boot,
            &endorsement,
            self.tls_key.public_key(),
            service_nonce,
        )
    }

    /// One attestation. On pass, `device-cert.pem` and `status.json` are
    /// replaced atomically; on a fail verdict the reasons go to
    /// `status.json` and `device-cert.pem` is removed (a device the verifier
    /// refused holds no certificate); any other error is recorded as
    /// `last_error`.
    pub async fn attest(&self) -> Result<Attestation, AttestError> {
        let outcome = self.attempt().await;
        let now = OffsetDateTime::now_utc();
        let recorded = match &outcome {
            Ok(pass) => self
                .state
                .save_certificate(&pass.certificate_chain_pem)
                .and_then(|()| self.state.save_remediation(None))
                .and_then(|()| {
                    self.update_status(|s| {
                        s.last_attestation_at = Some(rfc3339(now));
                        s.verdict = Some(VERDICT_PASS.to_owned());
                        s.reasons.clear();
                        s.tenant_id = Some(pass.tenant_id.clone());
                        s.certificate_not_after = Some(rfc3339(pass.not_after));
                        s.last_error = None;
                    })
                }),
            Err(AttestError::Refused {
                reasons,
                remediation,
            }) => {
                self.journal_refusal(reasons);
                let saved = self
                    .state
                    .remove_certificate()
                    .and_then(|()| self.state.save_remediation(remediation.as_ref()));
                saved.and_then(|()| {
                    self.update_status(|s| {
                        s.last_attestation_at = Some(rfc3339(now));
                        s.verdict = Some(VERDICT_FAIL.to_owned());
                        s.reasons = reasons.clone();
                        s.certificate_not_after = None;
                        s.last_error = None;
                    })
                })
            }
            Err(e) => {
                let text = e.to_string();
                self.update_status(|s| s.last_error = Some(text))
            }
        };
        match (outcome, recorded) {
            (Ok(_), Err(e)) => Err(AttestError::Local(e)),
            (outcome, Err(e)) => {
                tracing::warn!(error = %e, "cannot record the attestation outcome");
                outcome
            }
            (outcome, Ok(())) => outcome,
        }
    }

    /// Journals a fail verdict as the device saw it (it is uploaded once the
    /// device passes again).
    fn journal_refusal(&self, reasons: &[String]) {
        let recorded = Journal::new_record(
            FailureKind::AttestationFailed,
            RUNTIME_COMPONENT,
            env!("CARGO_PKG_VERSION"),
            &reasons.join("; "),
        )
        .map(|r| r.with_detail("reasons", reasons.len()))
        .and_then(|r| self.journal.record(&r));
        if let Err(e) = recorded {
            tracing::warn!(error = %e, "cannot journal the failed attestation");
        }
    }

    async fn attempt(&self) -> Result<Attestation, AttestError> {
        // Refuse early, before using up a nonce, if there is nothing to send.
        self.state.endorsement_pem()?;
        // A TPM's quotes count only once its key is bound to its EK: once
        // per start, before the first attestation.
        if let Some(tpm) = self.rot.tpm_endorsement() {
            use std::sync::atomic::Ordering;
            if !self.credential_activated.load(Ordering::SeqCst) {
                crate::credential::activate(&self.client, &self.device_id(), tpm).await?;
                self.credential_activated.store(true, Ordering::SeqCst);
            }
        }
        let nonce = attest::request_nonce(&self.client, &self.device_id()).await?;
        let evidence = self.evidence(&nonce)?;
        attest::submit(&self.client, &evidence, self.tls_key.public_key()).await
    }

    /// Attests, then keeps attesting until `shutdown` completes: after a pass
    /// at half the certificate's remaining lifetime (at most
    /// [`MAX_RENEWAL_INTERVAL`]); after a failure with exponential back-off
    /// from [`MIN_RETRY`] to [`MAX_RETRY`] (at least the service's
    /// `Retry-After`). Every delay is shortened by up to [`JITTER`] at random.
    /// `on_event` sees each attempt's outcome; `status.json` records it.
    ///
    /// Beside attestation it runs the failure reporting loops: uploads of
    /// the journal (after every pass, every upload interval while records
    /// are pending, with back-off while the service is unreachable) and the
    /// heartbeat.
    pub async fn run<F>(&self, shutdown: F, on_event: impl FnMut(&RunEvent))
    where
        F: Future<Output = ()>,
    {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let trigger = async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        };
        tokio::join!(
            trigger,
            self.attest_loop(stopped(stop_rx.clone()), on_event),
            self.upload_loop(stopped(stop_rx.clone())),
            self.heartbeat_loop(stopped(stop_rx.clone())),
            self.metrics_loop(stopped(stop_rx)),
        );
        tracing::info!("agent stopped");
    }

    async fn attest_loop<F>(&self, shutdown: F, mut on_event: impl FnMut(&RunEvent))
    where
        F: Future<Output = ()>,
    {
        tokio::pin!(shutdown);
        let mut failures: u32 = 0;
        loop {
            let outcome = tokio::select! {
                () = &mut shutdown => break,
                outcome = self.attest() => outcome,
            };
            let delay = match &outcome {
                Ok(pass) => {
                    failures = 0;
                    self.upload_now.notify_one();
                    let remaining = pass.not_after - OffsetDateTime::now_utc();
                    renewal_delay(
                        Duration::try_from(remaining).unwrap_or(Duration::ZERO),
                        jitter(),
                    )
                }
                Err(e) => {
                    let delay = retry_delay(failures, jitter());
                    failures = failures.saturating_add(1);
                    match e {
                        AttestError::RateLimited {
                            retry_after: Some(after),
                        } => delay.max(*after),
                        _ => delay,
                    }
                }
            };
            let next = OffsetDateTime::now_utc() + delay;
            if let Err(e) = self.update_status(|s| s.next_renewal = Some(rfc3339(next))) {
                tracing::warn!(error = %e, "cannot record the next attestation time");
            }
            match &outcome {
                Ok(pass) => {
                    tracing::info!(not_after = %rfc3339(pass.not_after), next_in = ?delay, "attestation passed")
                }
                Err(e) => tracing::warn!(error = %e, retry_in = ?delay, "attestation did not pass"),
            }
            on_event(&RunEvent {
                outcome,
                next_attempt_in: delay,
            });
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// Uploads pending records: when an attestation passes, and every upload
    /// interval; after a failure with back-off from [`MIN_RETRY`] doubling
    /// up to the upload interval.
    async fn upload_loop<F: Future<Output = ()>>(&self, shutdown: F) {
        tokio::pin!(shutdown);
        let interval = self.state.config().reporting.upload_interval;
        let mut failures: u32 = 0;
        loop {
            let delay = match self.upload_reports().await {
                Ok(_) => {
                    failures = 0;
                    interval
                }
                Err(e) => {
                    let delay = retry_delay(failures, jitter()).min(interval);
                    failures = failures.saturating_add(1);
                    tracing::warn!(error = %e, retry_in = ?delay, "failure reports not delivered yet");
                    delay
                }
            };
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep(delay) => {}
                () = self.upload_now.notified() => {}
            }
        }
    }

    /// Serves `GET /metrics` on `[reporting] metrics_listen`, if set.
    async fn metrics_loop<F: Future<Output = ()>>(&self, shutdown: F) {
        let Some(addr) = self.state.config().reporting.metrics_listen else {
            return;
        };
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(%addr, error = %e, "cannot serve local metrics");
                return;
            }
        };
        tracing::info!(%addr, "local metrics at /metrics");
        tokio::pin!(shutdown);
        loop {
            let stream = tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "metrics listener");
                        continue;
                    }
                },
            };
            if let Err(e) = reporter::metrics::answer(stream, || self.metrics_text()).await {
                tracing::debug!(error = %e, "metrics connection");
            }
        }
    }

    /// Journals a heartbeat every heartbeat interval.
    async fn heartbeat_loop<F: Future<Output = ()>>(&self, shutdown: F) {
        tokio::pin!(shutdown);
        let interval = self.state.config().reporting.heartbeat_interval;
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep(interval) => {}
            }
            match reporter::heartbeat(&self.journal, self.started.elapsed(), &self.boot) {
                Ok(_) => self.upload_now.notify_one(),
                Err(e) => tracing::warn!(error = %e, "cannot journal the heartbeat"),
            }
        }
    }

    /// Records the apps' status in `status.json`.
    pub fn record_apps(&self, apps: Vec<AppStatusEntry>) -> Result<(), AgentError> {
        self.update_status(|s| s.apps = apps)
    }

    fn update_status(&self, change: impl FnOnce(&mut Status)) -> Result<(), AgentError> {
        let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        change(&mut status);
        status.updated_at = Some(rfc3339(OffsetDateTime::now_utc()));
        self.state.write_status(&status)
    }
}

/// Completes when the watched flag turns true (or its sender is gone).
async fn stopped(mut rx: tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// SIGINT and SIGTERM, listened for from creation on (create it before a
/// long boot so that a signal during boot is not lost).
pub struct ShutdownSignals {
    terminate: Option<tokio::signal::unix::Signal>,
    interrupt: Option<tokio::signal::unix::Signal>,
}

impl ShutdownSignals {
    /// Starts listening. Needs a tokio runtime.
    pub fn new() -> ShutdownSignals {
        use tokio::signal::unix::{signal, SignalKind};
        ShutdownSignals {
            terminate: signal(SignalKind::terminate()).ok(),
            interrupt: signal(SignalKind::interrupt()).ok(),
        }
    }

    /// Completes at the first SIGINT or SIGTERM; returns its name.
    pub async fn wait(mut self) -> &'static str {
        let terminate = async {
            match self.terminate.as_mut() {
                Some(s) => s.recv().await,
                None => std::future::pending().await,
            }
        };
        let interrupt = async {
            match self.interrupt.as_mut() {
                Some(s) => s.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = terminate => "SIGTERM",
            _ = interrupt => "SIGINT",
        }
    }
}

impl Default for ShutdownSignals {
    fn default() -> Self {
        ShutdownSignals::new()
    }
}

/// Delay before renewing a certificate with `remaining` lifetime: half of
/// it, at most [`MAX_RENEWAL_INTERVAL`], at least [`MIN_RETRY`], shortened
/// by `jitter` (0..=1) × [`JITTER`].
pub fn renewal_delay(remaining: Duration, jitter: f64) -> Duration {
    shorten(
        (remaining / 2).clamp(MIN_RETRY, MAX_RENEWAL_INTERVAL),
        jitter,
    )
}

/// Delay before retrying after `failures` earlier consecutive failures:
/// [`MIN_RETRY`] doubling up to [`MAX_RETRY`], shortened by `jitter` (0..=1)
/// × [`JITTER`].
pub fn retry_delay(failures: u32, jitter: f64) -> Duration {
    let factor = 1u32.checked_shl(failures.min(31)).unwrap_or(u32::MAX);
    shorten(MIN_RETRY.saturating_mul(factor).min(MAX_RETRY), jitter)
}

fn shorten(delay: Duration, jitter: f64) -> Duration {
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    delay.mul_f64(1.0 - JITTER * jitter)
}

/// A uniform random number in 0..=1 from the system's CSPRNG.
fn jitter() -> f64 {
    let bytes = sevenfold_rot::random_nonce().unwrap_or_default();
    let mut word = [0u8; 8];
    for (w, b) in word.iter_mut().zip(bytes.iter()) {
        *w = *b;
    }
    u64::from_le_bytes(word) as f64 / u64::MAX as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_to_five_minutes() {
        let secs: Vec<u64> = (0..12).map(|n| retry_delay(n, 0.0).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(retry_delay(u32::MAX, 0.0), MAX_RETRY);
        // Jitter only shortens, by at most 10%.
        assert_eq!(retry_delay(9, 1.0), Duration::from_secs(270));
        for n in 0..20 {
            let d = retry_delay(n, jitter());
            assert!(d <= MAX_RETRY && d >= MIN_RETRY.mul_f64(0.9), "{d:?}");
        }
    }

    #[test]
    fn renewal_at_half_life_and_at_least_daily() {
        let day = Duration::from_secs(86_400);
        assert_eq!(renewal_delay(day, 0.0), day / 2);
        assert_eq!(renewal_delay(day * 10, 0.0), MAX_RENEWAL_INTERVAL);
        assert_eq!(renewal_delay(Duration::ZERO, 0.0), MIN_RETRY);
        assert_eq!(renewal_delay(day, 1.0), (day / 2).mul_f64(0.9));
        assert_eq!(renewal_delay(day, f64::NAN), day / 2);
        let j = jitter();
        assert!((0.0..=1.0).contains(&j));
    }
}
