//! `sevenfold agent update --now`, and the periodic update check that
//! `agent run` keeps beside attestation.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use sevenfold_agent::{
    update_once, Agent, AttestError, Attestation, RunCheck, RuntimeImage, UpdateError,
    UpdateOptions, UpdateReport,
};
use tokio::sync::watch;

use super::agent::{blocking, init_logging, open};
use crate::cli::OutputMode;
use crate::output::{success, Render};

/// Largest share by which an update interval is shortened at random, so a
/// fleet started together does not poll in lock-step.
const UPDATE_JITTER: f64 = 0.25;
/// First check after boot (after the first attestation has had its turn).
const FIRST_CHECK: Duration = Duration::from_secs(3);
/// Retry when there is no certificate yet or the service is unreachable.
const RETRY: Duration = Duration::from_secs(30);

/// `agent update --now`'s report.
#[derive(Serialize)]
struct UpdateNowReport {
    #[serde(flatten)]
    update: UpdateReport,
    /// The re-attestation after a change: "pass", "fail: …", or absent.
    attestation: Option<String>,
}

impl Render for UpdateNowReport {
    fn human(&self) -> String {
        let mut text = format!("Targets version {}\n", self.update.targets_version);
        for c in &self.update.recovered {
            text.push_str(&format!("  {c}: an interrupted update was rolled back\n"));
        }
        for o in &self.update.outcomes {
            text.push_str(&format!(
                "  {} {} (security version {}): {}{}\n",
                o.name,
                o.version,
                o.security_version,
                o.state,
                o.reason
                    .as_ref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ));
        }
        if self.update.outcomes.is_empty() {
            text.push_str("  (nothing published for this device's group)\n");
        }
        if let Some(a) = &self.attestation {
            text.push_str(&format!("Re-attested after the change: {a}\n"));
        }
        text
    }
}

fn verdict_text(outcome: &Result<Attestation, AttestError>) -> String {
    match outcome {
        Ok(_) => "pass".to_owned(),
        Err(AttestError::Refused { reasons, .. }) => format!("fail: {}", reasons.join("; ")),
        Err(e) => format!("error: {e}"),
    }
}

/// Boot, attest, one update round; after a change, boot and attest again
/// (registers start from zero, as after a reboot).
pub(super) async fn update_now(
    mode: OutputMode,
    state_dir: &crate::cli::StateDirArg,
    options: UpdateOptions,
    health: RunCheck,
) -> anyhow::Result<ExitCode> {
    init_logging(mode == OutputMode::Json);
    let state = open(state_dir)?;
    let runtime = RuntimeImage::current()?;
    let (boot_state, boot_runtime) = (state.clone(), runtime.clone());
    let agent = blocking(move || Agent::start(boot_state, &boot_runtime))
        .await?
        .context("measured boot failed; the agent did not start")?;
    match agent.attest().await {
        Ok(_) => {}
        // A certificate from an earlier attestation still serves; the
        // service refuses it if it is no longer valid.
        Err(AttestError::RateLimited { .. }) if state.certificate_pem().is_ok() => {
            tracing::info!(
                "attestation is rate-limited; fetching updates with the current certificate"
            )
        }
        // Genuine, but running refused software: fetch only the remedy.
        Err(AttestError::Refused {
            reasons,
            remediation: Some(session),
        }) => tracing::warn!(
            reasons = %reasons.join("; "),
            components = %session.components.join(", "),
            "attestation failed; fetching only the remediating update in a restricted session"
        ),
        Err(e) => {
            return Err(
                anyhow::Error::new(e).context("the device must attest before it can fetch updates")
            )
        }
    }
    drop(agent);
    let update = update_once(&state, &health, options)
        .await
        .context("the update round did not run")?;
    let mut attestation = None;
    if update.changed {
        let agent = blocking(move || Agent::start(state, &runtime))
            .await?
            .context("measured boot after the update failed")?;
        attestation = Some(verdict_text(&agent.attest().await));
    }
    success(
        mode,
        &UpdateNowReport {
            update,
            attestation,
        },
    )
}

/// One line of `agent run --output json` per update round.
#[derive(Serialize)]
struct UpdateLine<'a> {
    event: &'static str,
    #[serde(flatten)]
    report: &'a UpdateReport,
}

/// Checks for updates shortly after boot and then every `interval` (minus
/// up to a quarter at random) until `stop`; a round that changes the
/// installed images signals `restart` and ends.
pub(super) async fn update_loop(
    mode: OutputMode,
    state: sevenfold_agent::StateDir,
    (interval, health): (Duration, RunCheck),
    restart: (
        watch::Sender<bool>,
        std::sync::Arc<std::sync::atomic::AtomicBool>,
    ),
    mut stop: watch::Receiver<bool>,
) {
    let (restart, runtime_installed) = restart;
    let mut delay = FIRST_CHECK;
    loop {
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = stop.changed() => return,
        }
        delay = jittered(interval);
        match update_once(&state, &health, UpdateOptions::default()).await {
            Ok(report) => {
                match mode {
                    OutputMode::Json => println!(
                        "{}",
                        serde_json::to_string(&UpdateLine {
                            event: "update",
                            report: &report
                        })
                        .unwrap_or_default()
                    ),
                    OutputMode::Text => {
                        for o in &report.outcomes {
                            if o.state != "up-to-date" && o.state != "not-in-rollout" {
                                println!("update: {} {}: {}", o.name, o.version, o.state);
                            }
                        }
                    }
                }
                // Only a supervisor can start the new runtime; unsupervised,
                // the round's outcome says it waits for one.
                let supervised =
                    std::env::var_os(sevenfold_agent::runtime::SUPERVISED_ENV).is_some();
                let runtime = report.runtime_restart && supervised;
                if runtime {
                    runtime_installed.store(true, std::sync::atomic::Ordering::SeqCst);
                }
                if report.changed || runtime {
                    let _ = restart.send(true);
                    return;
                }
                // A held-back update: come back when its window opens or
                // its deferral runs out, not an interval later. A second
                // past the moment, spread by up to a tenth of the wait (at
                // most a minute) so a fleet does not arrive all at once.
                if let Some(secs) = report.next_round_in_secs {
                    let spread = Duration::from_secs(secs.min(600) / 10);
                    let wake = Duration::from_secs(secs + 1) + spread - jittered_part(spread);
                    delay = delay.min(wake);
                }
            }
            Err(e @ (UpdateError::NoCertificate | UpdateError::Network(_) | UpdateError::Busy)) => {
                tracing::info!(error = %e, "update check postponed");
                delay = RETRY.min(delay);
            }
            Err(e) => tracing::warn!(error = %e, "update check failed"),
        }
    }
}

/// Completes when either watch turns true. A watch whose sender is gone
/// without turning true never completes, and never stops the other one
/// from being watched.
pub(super) async fn until_either(a: watch::Receiver<bool>, b: watch::Receiver<bool>) {
    async fn turned_true(mut rx: watch::Receiver<bool>) {
        if rx.wait_for(|v| *v).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
    tokio::select! {
        () = turned_true(a) => {}
        () = turned_true(b) => {}
    }
}

/// `interval` shortened by up to [`UPDATE_JITTER`] at random.
fn jittered(interval: Duration) -> Duration {
    interval - jittered_part(interval.mul_f64(UPDATE_JITTER))
}

/// A random share of `span`, from zero to all of it.
fn jittered_part(span: Duration) -> Duration {
    let bytes = sevenfold_rot::random_nonce().unwrap_or_default();
    let mut word = [0u8; 8];
    for (w, b) in word.iter_mut().zip(bytes.iter()) {
        *w = *b;
    }
    let share = u64::from_le_bytes(word) as f64 / u64::MAX as f64;
    span.mul_f64(share)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stop_is_seen_even_after_the_other_sender_is_gone() {
        for _ in 0..50 {
            let (stop_tx, stop_rx) = watch::channel(false);
            let (restart_tx, restart_rx) = watch::channel(false);
            drop(restart_tx);
            let waiting = tokio::spawn(until_either(stop_rx, restart_rx));
            stop_tx.send(true).unwrap();
            drop(stop_tx);
            tokio::time::timeout(Duration::from_secs(5), waiting)
                .await
                .expect("the stop was missed")
                .unwrap();
        }
    }
}
