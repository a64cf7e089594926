//! `sevenfold agent init|endorse|trust-key|install|run|status|whoami`: the
//! device runtime, over `sevenfold-agent`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;
use sevenfold_agent::{
    Agent, AttestError, Attestation, InitOptions, RotBackend, RunEvent, RuntimeImage,
    ShutdownSignals, StateDir, Status, WhoAmI,
};
use tracing_subscriber::EnvFilter;

use crate::cli::{AgentCommand, OutputMode, RotArg};
use crate::files;
use crate::output::{fields, or_dash, success, Render};

#[derive(Serialize)]
struct InitReport {
    device_id: String,
    state_dir: PathBuf,
    endorsement_request: PathBuf,
    endorsement: Option<PathBuf>,
}

impl Render for InitReport {
    fn human(&self) -> String {
        let next = match &self.endorsement {
            Some(_) => format!(
                "Next: claim it with `sevenfold device claim {} --endorsement {}`, then run \
                 `sevenfold agent run --state-dir {}`.",
                self.device_id,
                self.state_dir.join(sevenfold_agent::ENDORSEMENT_FILE).display(),
                self.state_dir.display()
            ),
            None => format!(
                "Next: have the manufacturer endorse {} (`sevenfold manufacturer endorse --device-key …`), \
                 then record it with `sevenfold agent endorse --state-dir {} --certificate CERT.pem`.",
                self.endorsement_request.display(),
                self.state_dir.display()
            ),
        };
        format!(
            "Initialised device {}\n{}{next}\n",
            self.device_id,
            fields(&[
                ("state directory", self.state_dir.display().to_string()),
                (
                    "endorsement request",
                    self.endorsement_request.display().to_string()
                ),
                (
                    "endorsement",
                    self.endorsement
                        .as_ref()
                        .map_or_else(|| "not yet".to_owned(), |p| p.display().to_string())
                ),
            ])
        )
    }
}

#[derive(Serialize)]
struct EndorseReport {
    device_id: String,
    endorsement: PathBuf,
}

impl Render for EndorseReport {
    fn human(&self) -> String {
        format!(
            "Recorded the endorsement of device {} in {}\n",
            self.device_id,
            self.endorsement.display()
        )
    }
}

#[derive(Serialize)]
struct TrustKeyReport {
    key_id: String,
    algorithm: String,
    path: PathBuf,
}

impl Render for TrustKeyReport {
    fn human(&self) -> String {
        format!(
            "The device now trusts image signing key {} ({})\n{}",
            self.key_id,
            self.algorithm,
            fields(&[("stored as", self.path.display().to_string())])
        )
    }
}

#[derive(Serialize)]
struct InstallReport {
    component_id: String,
    name: String,
    version: String,
    security_version: u32,
    package_digest: String,
    path: PathBuf,
    replaced: bool,
}

impl Render for InstallReport {
    fn human(&self) -> String {
        format!(
            "Installed {} {} ({}){}\n{}It is measured and started at the next `sevenfold agent run`.\n",
            self.name,
            self.version,
            self.component_id,
            if self.replaced {
                ", replacing the installed package"
            } else {
                ""
            },
            fields(&[
                ("security version", self.security_version.to_string()),
                ("package digest", self.package_digest.clone()),
                ("stored as", self.path.display().to_string()),
            ])
        )
    }
}

impl Render for Status {
    fn human(&self) -> String {
        let mut text = format!(
            "Device {}\n{}",
            self.device_id,
            fields(&[
                (
                    "last attestation",
                    or_dash(self.last_attestation_at.as_deref())
                ),
                ("verdict", or_dash(self.verdict.as_deref())),
                (
                    "reasons",
                    if self.reasons.is_empty() {
                        "-".to_owned()
                    } else {
                        self.reasons.join("; ")
                    }
                ),
                ("tenant", or_dash(self.tenant_id.as_deref())),
                (
                    "certificate valid until",
                    or_dash(self.certificate_not_after.as_deref())
                ),
                ("next renewal", or_dash(self.next_renewal.as_deref())),
                ("last error", or_dash(self.last_error.as_deref())),
                ("booted", or_dash(self.booted_at.as_deref())),
            ])
        );
        text.push_str("Measured at boot:\n");
        if self.boot_measurements.is_empty() {
            text.push_str("  -\n");
        }
        for m in &self.boot_measurements {
            text.push_str(&format!(
                "  register {:>2}  {} {} ({})  {}\n",
                m.register, m.name, m.version, m.component_id, m.digest
            ));
        }
        if !self.boot_failures.is_empty() {
            text.push_str("Refused at boot (not started):\n");
            for f in &self.boot_failures {
                text.push_str(&format!("  {}: {}\n", f.component, f.reason));
            }
        }
        text
    }
}

impl Render for WhoAmI {
    fn human(&self) -> String {
        format!(
            "The service knows this device as {}\n{}",
            self.device_id,
            fields(&[
                ("tenant", self.tenant_id.clone()),
                (
                    "certificate valid until",
                    self.certificate_not_after.clone()
                ),
            ])
        )
    }
}

/// One line of `agent run --output json`.
#[derive(Serialize)]
struct AttestationLine<'a> {
    event: &'static str,
    verdict: &'static str,
    reasons: &'a [String],
    certificate_not_after: Option<String>,
    tenant_id: Option<&'a str>,
    next_attempt_in_seconds: Option<u64>,
}

pub(crate) async fn run(mode: OutputMode, command: AgentCommand) -> anyhow::Result<ExitCode> {
    match command {
        AgentCommand::Init(args) => {
            let options = InitOptions {
                state_dir: args.state.state_dir.clone(),
                service_url: args.service.clone(),
                service_ca: args.service_ca.clone(),
                rot: match args.rot {
                    RotArg::Soft => RotBackend::Soft,
                },
                endorse_with: args.endorse_with.clone(),
            };
            let (_, report) = blocking(move || StateDir::init(&options))
                .await?
                .context("cannot initialise the device")?;
            success(
                mode,
                &InitReport {
                    device_id: report.device_id.to_string(),
                    state_dir: args.state.state_dir,
                    endorsement_request: report.endorsement_request,
                    endorsement: report.endorsement,
                },
            )
        }
        AgentCommand::Endorse(args) => {
            let state = open(&args.state.state_dir)?;
            let pem = files::read_text(&args.certificate)?;
            let path = state
                .endorse(&pem)
                .with_context(|| format!("{} was not recorded", args.certificate.display()))?;
            success(
                mode,
                &EndorseReport {
                    device_id: state.device_id().to_string(),
                    endorsement: path,
                },
            )
        }
        AgentCommand::TrustKey(args) => {
            let state = open(&args.state.state_dir)?;
            let pem = files::read_text(&args.key)?;
            let trusted = state.trust_key(&pem, &args.key)?;
            success(
                mode,
                &TrustKeyReport {
                    key_id: trusted.key_id.to_string(),
                    algorithm: trusted.algorithm.name().to_owned(),
                    path: trusted.path,
                },
            )
        }
        AgentCommand::Install(args) => {
            let state = open(&args.state.state_dir)?;
            let package = args.package.clone();
            let installed = blocking(move || state.install(&package)).await??;
            success(
                mode,
                &InstallReport {
                    component_id: installed.component_id,
                    name: installed.name,
                    version: installed.version,
                    security_version: installed.security_version,
                    package_digest: installed.package_digest.to_string(),
                    path: installed.path,
                    replaced: installed.replaced,
                },
            )
        }
        AgentCommand::Run(args) => run_agent(mode, &args.state.state_dir, args.once).await,
        AgentCommand::Status(args) => {
            let state = open(&args.state.state_dir)?;
            let status = state.read_status()?.with_context(|| {
                format!(
                    "the agent has not run yet; start it with `sevenfold agent run --state-dir {}`",
                    args.state.state_dir.display()
                )
            })?;
            success(mode, &status)
        }
        AgentCommand::Whoami(args) => {
            let state = open(&args.state.state_dir)?;
            let answer = sevenfold_agent::whoami(&state)
                .await
                .context("the service did not accept the device certificate")?;
            success(mode, &answer)
        }
    }
}

async fn run_agent(mode: OutputMode, state_dir: &Path, once: bool) -> anyhow::Result<ExitCode> {
    init_logging(mode == OutputMode::Json);
    // Listen before the boot, so a signal during it is not lost.
    let signals = ShutdownSignals::new();
    let state = open(state_dir)?;
    let runtime = RuntimeImage::current()?;
    let agent = blocking(move || Agent::start(state, &runtime))
        .await?
        .context("measured boot failed; the agent did not start")?;
    // From here on a panic of the runtime is journaled before the process ends.
    sevenfold_agent::journal::install_panic_hook(agent.journal().clone());
    if once {
        let outcome = agent.attest().await;
        print_outcome(mode, &outcome, None);
        outcome?;
        // Deliver what the journal holds while the certificate is fresh.
        match agent.upload_reports().await {
            Ok(done) if done.records > 0 => tracing::info!(
                records = done.records,
                duplicates = done.duplicates,
                "failure reports delivered"
            ),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "failure reports not delivered; the next run retries")
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let shutdown = async move {
        let signal = signals.wait().await;
        tracing::info!(signal, "shutting down");
    };
    agent
        .run(shutdown, |event: &RunEvent| {
            print_outcome(mode, &event.outcome, Some(event.next_attempt_in));
        })
        .await;
    Ok(ExitCode::SUCCESS)
}

/// The one line per verdict that `agent run` prints to standard output.
/// Attempts without a verdict go to the log only.
fn print_outcome(
    mode: OutputMode,
    outcome: &Result<Attestation, AttestError>,
    next: Option<std::time::Duration>,
) {
    let next_attempt_in_seconds = next.map(|d| d.as_secs());
    let line = match (mode, outcome) {
        (OutputMode::Text, Ok(pass)) => format!(
            "attested: pass, certificate valid until {}",
            rfc3339(pass.not_after)
        ),
        (OutputMode::Text, Err(AttestError::Refused { reasons })) => {
            format!("attested: fail: {}", reasons.join("; "))
        }
        (OutputMode::Json, Ok(pass)) => json_line(&AttestationLine {
            event: "attestation",
            verdict: sevenfold_agent::VERDICT_PASS,
            reasons: &[],
            certificate_not_after: Some(rfc3339(pass.not_after)),
            tenant_id: Some(&pass.tenant_id),
            next_attempt_in_seconds,
        }),
        (OutputMode::Json, Err(AttestError::Refused { reasons })) => json_line(&AttestationLine {
            event: "attestation",
            verdict: sevenfold_agent::VERDICT_FAIL,
            reasons,
            certificate_not_after: None,
            tenant_id: None,
            next_attempt_in_seconds,
        }),
        (_, Err(_)) => return,
    };
    println!("{line}");
}

fn json_line(line: &AttestationLine<'_>) -> String {
    serde_json::to_string(line).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

fn rfc3339(at: time::OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| at.unix_timestamp().to_string())
}

fn open(state_dir: &Path) -> anyhow::Result<StateDir> {
    Ok(StateDir::open(state_dir)?)
}

/// Runs blocking file and root-of-trust work off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .context("a background task failed")
}

/// Logs to standard error, filtered by `RUST_LOG` (default `info`).
fn init_logging(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
