//! `sevenfold agent init|endorse|trust-key|install|run|status|whoami`: the
//! device runtime, over `sevenfold-agent`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;
use sevenfold_agent::{
    Agent, Apps, AttestError, Attestation, InitOptions, RotBackend, RunEvent, RuntimeImage,
    ShutdownSignals, StateDir, Status, WhoAmI,
};
use sevenfold_compartment::{
    EventSink, LinuxPeripherals, Peripherals, SimulatedPeripherals, SupervisorConfig,
};
use tracing_subscriber::EnvFilter;

use super::agent_update;
use crate::cli::{AgentCommand, AgentRunArgs, OutputMode, PeripheralsArg, RotArg, StateDirArg};
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
        text.push_str("Apps:\n");
        if self.apps.is_empty() {
            text.push_str("  -\n");
        }
        for app in &self.apps {
            text.push_str(&format!(
                "  {} {} ({})  {}  restarts {}  memory {} KiB (peak {} KiB)  cpu {} ms\n",
                app.name,
                app.version,
                app.component_id,
                app.state,
                app.restarts,
                app.memory_bytes / 1024,
                app.memory_peak_bytes / 1024,
                app.cpu_ms
            ));
            if let Some(failure) = &app.last_failure {
                text.push_str(&format!("      last failure: {failure}\n"));
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
                    RotArg::Tpm => RotBackend::Tpm,
                },
                tcti: args.state.tcti.clone(),
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
            let state = open(&args.state)?;
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
            let state = open(&args.state)?;
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
            let state = open(&args.state)?;
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
        AgentCommand::Run(args) => run_agent(mode, &args).await,
        AgentCommand::Update(args) => {
            let options = sevenfold_agent::UpdateOptions { now: args.now };
            let health = sevenfold_agent::RunCheck {
                period: std::time::Duration::from_secs(args.health.app_health_secs),
            };
            agent_update::update_now(mode, &args.state, options, health).await
        }
        AgentCommand::Status(args) => {
            let state = open(&args.state)?;
            let status = state.read_status()?.with_context(|| {
                format!(
                    "the agent has not run yet; start it with `sevenfold agent run --state-dir {}`",
                    args.state.state_dir.display()
                )
            })?;
            success(mode, &status)
        }
        AgentCommand::Logs(args) => app_logs(&args).await,
        AgentCommand::Supervise(args) => super::agent_supervise::run(mode, &args).await,
        AgentCommand::Whoami(args) => {
            let state = open(&args.state)?;
            let answer = sevenfold_agent::whoami(&state)
                .await
                .context("the service did not accept the device certificate")?;
            success(mode, &answer)
        }
    }
}

async fn run_agent(mode: OutputMode, args: &AgentRunArgs) -> anyhow::Result<ExitCode> {
    let once = args.once;
    let update_interval = std::time::Duration::from_secs(args.update_interval.max(1));
    let health = sevenfold_agent::RunCheck {
        period: std::time::Duration::from_secs(args.health.app_health_secs),
    };
    init_logging(mode == OutputMode::Json);
    let peripherals = peripherals(args)?;
    // Listen before the boot, so a signal during it is not lost.
    let signals = ShutdownSignals::new();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let signal = signals.wait().await;
        tracing::info!(signal, "shutting down");
        let _ = stop_tx.send(true);
    });
    loop {
        let state = open(&args.state)?;
        let runtime = RuntimeImage::current()?;
        let boot_state = state.clone();
        let agent = blocking(move || Agent::start(boot_state, &runtime))
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
        let agent = std::sync::Arc::new(agent);
        // The apps boot measured, each in its own compartment. Their
        // failures (crashes, traps, limits, denials) go to the journal.
        let apps = {
            let agent = std::sync::Arc::clone(&agent);
            let peripherals = peripherals.clone();
            let sink: EventSink = agent.app_failure_sink();
            blocking(move || {
                Apps::start(
                    agent.state(),
                    agent.boot_report(),
                    peripherals,
                    SupervisorConfig::default(),
                    sink,
                )
            })
            .await?
            .context("the app compartments could not be set up")?
        };
        let apps = std::sync::Arc::new(apps);
        // Updates run beside attestation; a round that changes the installed
        // images ends this boot, and the loop boots again so the new images
        // are measured, attested and started.
        let (restart_tx, restart_rx) = tokio::sync::watch::channel(false);
        let runtime_installed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let updater = tokio::spawn(agent_update::update_loop(
            mode,
            state,
            (update_interval, health),
            (restart_tx, std::sync::Arc::clone(&runtime_installed)),
            stop_rx.clone(),
        ));
        let shutdown = agent_update::until_either(stop_rx.clone(), restart_rx);
        let record_apps = async {
            loop {
                if let Err(e) = agent.record_apps(apps.status()) {
                    tracing::warn!(error = %e, "cannot record the apps' status");
                }
                tokio::time::sleep(APP_STATUS_INTERVAL).await;
            }
        };
        tokio::select! {
            () = agent.run(shutdown, |event: &RunEvent| {
                print_outcome(mode, &event.outcome, Some(event.next_attempt_in));
            }) => {}
            () = record_apps => {}
        }
        updater.abort();
        let stopping = std::sync::Arc::clone(&apps);
        blocking(move || stopping.stop()).await?;
        agent
            .record_apps(apps.status())
            .context("cannot record the apps' final status")?;
        if *stop_rx.borrow() {
            return Ok(ExitCode::SUCCESS);
        }
        if runtime_installed.load(std::sync::atomic::Ordering::SeqCst) {
            if std::env::var_os(sevenfold_agent::runtime::SUPERVISED_ENV).is_some() {
                tracing::info!(
                    "a new runtime is installed; exiting for the supervisor to start it"
                );
                return Ok(ExitCode::from(
                    u8::try_from(sevenfold_agent::runtime::RESTART_EXIT_CODE).unwrap_or(1),
                ));
            }
            tracing::warn!(
                "a new runtime is installed; it starts under `sevenfold agent supervise` \
                 (this agent is not supervised, so it keeps running the current one)"
            );
        }
        tracing::info!("the installed images changed; booting again to measure them");
    }
}

/// `agent logs`: the app's log file (after its rotated predecessor), then,
/// with `--follow`, whatever is appended (starting over after a rotation).
async fn app_logs(args: &crate::cli::AgentLogsArgs) -> anyhow::Result<ExitCode> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let state = open(&args.state)?;
    let component = match args.app.parse::<uuid::Uuid>() {
        Ok(id) => id.to_string(),
        Err(_) => {
            let status = state
                .read_status()?
                .unwrap_or_else(|| Status::new(String::new()));
            status
                .apps
                .iter()
                .find(|a| a.name == args.app)
                .map(|a| a.component_id.clone())
                .with_context(|| {
                    format!(
                        "no app named {} in status.json; give its component ID, or run the agent first",
                        args.app
                    )
                })?
        }
    };
    let path = state
        .root()
        .join(sevenfold_agent::APP_LOGS_DIR)
        .join(format!("{component}.log"));
    let mut out = std::io::stdout().lock();
    let rotated = path.with_extension("log.1");
    if let Ok(old) = std::fs::read(&rotated) {
        out.write_all(&old)?;
    }
    let mut offset = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match std::fs::File::open(&path) {
            Ok(mut file) => {
                let len = file.metadata()?.len();
                if len < offset {
                    offset = 0; // rotated: the new file starts over
                }
                file.seek(SeekFrom::Start(offset))?;
                loop {
                    let n = file.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    out.write_all(buf.get(..n).unwrap_or_default())?;
                    offset += n as u64;
                }
                out.flush()?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && args.follow => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                anyhow::bail!(
                    "{} has no output yet ({} does not exist)",
                    args.app,
                    path.display()
                )
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
        if !args.follow {
            return Ok(ExitCode::SUCCESS);
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// How often `agent run` writes the apps' status to `status.json`.
const APP_STATUS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

fn peripherals(args: &AgentRunArgs) -> anyhow::Result<std::sync::Arc<dyn Peripherals>> {
    Ok(match args.peripherals {
        PeripheralsArg::Simulated => {
            anyhow::ensure!(
                args.uarts.is_empty(),
                "--uart maps devices of --peripherals linux; the simulated UARTs need no mapping"
            );
            std::sync::Arc::new(SimulatedPeripherals::new())
        }
        PeripheralsArg::Linux => {
            let mut uarts = std::collections::HashMap::new();
            for entry in &args.uarts {
                let (name, device) = entry.split_once('=').with_context(|| {
                    format!("--uart {entry}: write NAME=DEVICE, e.g. ISU0=/dev/ttyS0")
                })?;
                uarts.insert(name.to_owned(), PathBuf::from(device));
            }
            std::sync::Arc::new(LinuxPeripherals::new(
                PathBuf::from("/sys/class/gpio"),
                uarts,
            ))
        }
    })
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
        (OutputMode::Text, Err(AttestError::Refused { reasons, .. })) => {
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
        (OutputMode::Json, Err(AttestError::Refused { reasons, .. })) => {
            json_line(&AttestationLine {
                event: "attestation",
                verdict: sevenfold_agent::VERDICT_FAIL,
                reasons,
                certificate_not_after: None,
                tenant_id: None,
                next_attempt_in_seconds,
            })
        }
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

/// Opens the state directory, with the `--tcti` of this command if given.
pub(super) fn open(state: &StateDirArg) -> anyhow::Result<StateDir> {
    Ok(StateDir::open(&state.state_dir)?.with_tcti(state.tcti.clone()))
}

/// Runs blocking file and root-of-trust work off the async workers.
pub(super) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .context("a background task failed")
}

/// Logs to standard error, filtered by `RUST_LOG` (default `info`).
pub(super) fn init_logging(json: bool) {
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
