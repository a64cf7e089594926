//! `sevenfold agent …`: the device runtime.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

/// The device's state directory, shared by every agent command.
#[derive(Debug, Args)]
pub(crate) struct StateDirArg {
    /// The device's state directory (mode 0700; holds its identity).
    #[arg(
        long,
        value_name = "DIR",
        env = "SEVENFOLD_STATE_DIR",
        default_value = "/var/lib/sevenfold"
    )]
    pub(crate) state_dir: PathBuf,
    /// The TPM to use with `--rot tpm`, as a TCTI: `device:/dev/tpmrm0` on a
    /// board, `swtpm:host=127.0.0.1,port=2321` for a simulator. Default: the
    /// `TPM2TOOLS_TCTI` or `TCTI` environment variable, else what `agent
    /// init` recorded, else `device:/dev/tpmrm0`.
    #[arg(long, value_name = "TCTI")]
    pub(crate) tcti: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AgentCommand {
    /// Create a device: a new identity in the root of trust, the pinned
    /// service CA, a TLS key, and the endorsement request (`device.pub.pem`).
    /// Prints the device ID.
    Init(AgentInitArgs),
    /// Record the manufacturer's endorsement certificate (refused unless it
    /// certifies this device's root-of-trust key).
    Endorse(AgentEndorseArgs),
    /// Trust an image signing key: packages it signed pass the boot check.
    TrustKey(AgentTrustKeyArgs),
    /// Verify an image package against the trusted keys and install it
    /// (a development helper until over-the-air updates).
    Install(AgentInstallArgs),
    /// Run the device: measured boot, then attest and keep the device
    /// certificate renewed until SIGINT or SIGTERM. Beside that it checks
    /// the device group's TUF repository for updates after the first
    /// attestation and every `--update-interval` seconds; an update that
    /// changes the installed images ends the boot and the agent boots again
    /// (measuring the new images) and re-attests.
    ///
    /// Prints one line per attestation to standard output:
    /// `attested: pass, certificate valid until <RFC 3339>` or
    /// `attested: fail: <reasons>` (with `--output json`, one JSON object per
    /// line with `event`, `verdict`, `reasons`, `certificate_not_after`,
    /// `tenant_id`, `next_attempt_in_seconds`). Attempts that get no verdict
    /// are logged to standard error (`RUST_LOG`) and retried with back-off.
    ///
    /// Failures (boot checks, refused attestations, runtime panics) and an
    /// hourly heartbeat go to the journal in STATE_DIR/journal and are
    /// uploaded over mutual TLS whenever the device holds a certificate
    /// (`[reporting]` in agent.toml tunes the bound and intervals).
    Run(AgentRunArgs),
    /// Check for updates and apply them: boot and attest, walk the device group's
    /// TUF repository, install each new image to its inactive slot,
    /// health-check it, then commit and raise its anti-rollback counter or
    /// roll back; after a change, boot again and re-attest. Prints the
    /// outcome per target (`--output json`: `targets_version`, `outcomes`,
    /// `recovered`, `changed`, `attestation`).
    Update(AgentUpdateArgs),
    /// Run the runtime under a tiny supervisor (what the systemd unit
    /// starts): runs the active runtime slot's `sevenfold agent run` (the
    /// factory runtime, this executable, until a runtime update is
    /// installed); a new runtime on trial that exits within the health-check
    /// period is rolled back to the previous one and that one started; one
    /// that stays up is committed and its anti-rollback counter raised.
    /// Prints one line per event (`--output json`: one object per line with
    /// `event` = started, committed, rolled-back or exited).
    Supervise(AgentSuperviseArgs),
    /// Show what the agent last did (`status.json`).
    Status(AgentStatusArgs),
    /// Print an app's output (standard output and error), by name or
    /// component ID; `--follow` keeps printing as it grows.
    Logs(AgentLogsArgs),
    /// Ask the service who this device is, over mutual TLS with the device
    /// certificate: proves the certificate works.
    Whoami(AgentWhoamiArgs),
}

/// Root-of-trust backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum RotArg {
    /// File-backed, for development and boards without a TPM.
    Soft,
    /// A TPM 2.0 chip or simulator (see `--tcti`); needs a build with
    /// `--features tpm`.
    Tpm,
}

#[derive(Debug, Args)]
pub(crate) struct AgentInitArgs {
    #[command(flatten)]
    pub(crate) state: StateDirArg,
    /// The Security Service's device API, e.g. `https://127.0.0.1:8444`.
    #[arg(long, value_name = "URL")]
    pub(crate) service: String,
    /// The service CA to pin (`DATA_DIR/tls/ca.pem` on the server).
    #[arg(long, value_name = "CA.pem")]
    pub(crate) service_ca: PathBuf,
    /// Root-of-trust backend.
    #[arg(long, value_enum, default_value_t = RotArg::Soft)]
    pub(crate) rot: RotArg,
    /// Endorse the new device right away with the manufacturer CA in this
    /// directory (`ca.pem`, `ca.key` from `sevenfold manufacturer init`).
    #[arg(long, value_name = "MANUFACTURER_DIR")]
    pub(crate) endorse_with: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct AgentEndorseArgs {
    #[command(flatten)]
    pub(crate) state: StateDirArg,
    /// The endorsement certificate (PEM) from `sevenfold manufacturer endorse`.
    #[arg(long, value_name = "CERT.pem")]
    pub(crate) certificate: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct AgentTrustKeyArgs {
    #[command(flatten)]
    pub(crate) state: StateDirArg,
    /// The public key (PEM), e.g. `signing.pub.pem` from `sevenfold keygen`.
    #[arg(value_name = "KEY.pub.pem")]
    pub(crate) key: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct AgentInstallArgs {
    #[command(flatten)]
    pub(crate) state: StateDirArg,
    /// The image package.
    #[arg(value_name = "FILE.imagepackage")]
    pub(crate) package: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct AgentRunArgs {
    #[command(flatten)]
    pub(crate) state: StateDirArg,
    /// Exit after the first attestation (and, on a pass, one upload of the
    /// failure journal): 0 on pass, non-zero on fail or error. Starts no apps.
    #[arg(long)]
    pub(crate) once: bool,
    /// Seconds between update checks (shortened by up to a quarter at
    /// random); the first check follows the first attestation.
    #[arg(long, value_name = "SECONDS", default_value_t = 4 * 3600)]
    pub(crate) update_interval: u64,
    /// Peripherals the apps' GPIO and UART calls drive: `simulated` (in
    /// memory; development machines and tests) or `linux` (GPIO through
    /// /sys/class/gpio, UARTs as mapped by --uart).
    #[arg(long, value_enum, default_value = "simulated")]
    pub(crate) peripherals: PeripheralsArg,
    /// A UART of the `linux` peripherals: manifest name = device, e.g.
    /// `ISU0=/dev/ttyS0`. Repeatable.
    #[arg(long = "uart", value_name = "NAME=DEVICE")]
    pub(crate) uarts: Vec<String>,
    #[command(flatten)]
    pub(crate) health: AppHealthArg,
}

#[derive(Debug, Args)]
pub(crate) struct AgentUpdateArgs {
    #[command(flatten)]
    pub(crate) state: StateDirArg,
    /// Apply what is found now, even outside the group's update window and
    /// despite app deferrals (the operator's override). Without it the round
    /// behaves like the running agent's scheduled check: outside the window,
    /// or while an app defers, updates are downloaded and verified but
    /// applied only by a later round.
    #[arg(long)]
    pub(crate) now: bool,
    #[command(flatten)]
    pub(crate) health: AppHealthArg,
}

/// The compartment health check of app updates.
#[derive(Debug, Args)]
pub(crate) struct AppHealthArg {
    /// Seconds a new app version must run in its compartment without
    /// crashing (trap, limit, non-zero exit) before its update is committed;
    /// 0 checks only what boot checks.
    #[arg(
        long,
        value_name = "SECONDS",
        env = "SEVENFOLD_APP_HEALTH_SECS",
        default_value_t = 10
    )]
    pub(crate) app_health_secs: u64,
}

#[derive(Debug, Args)]
pub(crate) struct AgentSuperviseArgs {
    #[command(flatten)]
    pub(crate) state: StateDirArg,
    /// Seconds a new runtime must stay up before it is committed.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub(crate) health_period: u64,
    /// Further arguments for `agent run` (after `--`), e.g.
    /// `-- --update-interval 3600 --peripherals linux`.
    #[arg(last = true, value_name = "RUN_ARGS")]
    pub(crate) run_args: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum PeripheralsArg {
    Simulated,
    Linux,
}

#[derive(Debug, Args)]
pub(crate) struct AgentStatusArgs {
    #[command(flatten)]
    pub(crate) state: StateDirArg,
}

#[derive(Debug, Args)]
pub(crate) struct AgentLogsArgs {
    #[command(flatten)]
    pub(crate) state: StateDirArg,
    /// The app: its name or its component ID.
    pub(crate) app: String,
    /// Keep printing new output until interrupted.
    #[arg(long, short)]
    pub(crate) follow: bool,
}

#[derive(Debug, Args)]
pub(crate) struct AgentWhoamiArgs {
    #[command(flatten)]
    pub(crate) state: StateDirArg,
}
