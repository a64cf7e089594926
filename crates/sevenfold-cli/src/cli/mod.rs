//! The command line: every subcommand, flag and help text, and nothing else.
//!
//! This module holds the top level and the local tools; [`operator`] holds
//! the commands that talk to a Security Service, [`server`] the server itself.

mod agent;
mod deployment;
mod failures;
mod fleet;
mod operator;
mod server;
mod tuf;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub(crate) use self::agent::*;
pub(crate) use self::deployment::*;
pub(crate) use self::failures::*;
pub(crate) use self::fleet::*;
pub(crate) use self::operator::*;
pub(crate) use self::server::ServerArgs;
pub(crate) use self::tuf::*;

/// Sevenfold: make connected devices meet the seven properties of highly
/// secure devices.
///
/// One binary carries the Security Service, the device runtime and the
/// operator tools. New here? Run `sevenfold quickstart`.
#[derive(Debug, Parser)]
#[command(name = "sevenfold", version, propagate_version = true)]
pub(crate) struct Cli {
    /// How results are printed: `text` for people, `json` for programs
    /// (stable field names).
    #[arg(long, global = true, value_enum, default_value_t = OutputMode::Text)]
    pub(crate) output: OutputMode,

    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum OutputMode {
    /// Tables and sentences.
    Text,
    /// One JSON document on standard output.
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the platform on this machine: a Security Service, a tenant, the
    /// sample app signed and uploaded, three devices that boot, attest and
    /// get certificates, and one tampered device that is refused.
    ///
    /// Everything lives in the data directory and is reused on the next run
    /// (same devices, same admin token). Serves until SIGINT or SIGTERM.
    /// With `--output json`, standard output carries one `ready` line.
    Quickstart(QuickstartArgs),
    /// Generate a signing key pair for image packages (PKCS#8 PEM, private
    /// key file mode 0600).
    Keygen(KeygenArgs),
    /// Build and sign an image package from an app manifest and a payload.
    Package(PackageArgs),
    /// Work with image packages: inspect files here, or upload, list and
    /// download a tenant's images on the Security Service.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Print a shell completion script.
    Completions(CompletionsArgs),
    /// Run the Security Service (operator API over HTTPS).
    ///
    /// Each setting comes from the flag, else its `SEVENFOLD_*` environment
    /// variable, else the TOML file (`--config` or `SEVENFOLD_CONFIG`), else
    /// the default. Once listening, one line goes to standard output (with
    /// `--output json`, a JSON object with `event`, `operator_api`, `ca_file`
    /// and `bootstrap_token`); logs go to standard error (`RUST_LOG`).
    /// SIGINT or SIGTERM shut down gracefully.
    Server(ServerArgs),
    /// Check a server address and API token, and save them (with the
    /// service CA and a default tenant) for the other commands.
    Login(LoginArgs),
    /// Tenants: the owners of devices, products and images.
    Tenant(TenantArgs),
    /// Users' roles in a tenant (administrator, contributor, reader).
    Role(RoleArgs),
    /// Products: a kind of device, with its device groups.
    Product(ProductArgs),
    /// Device groups: which devices get which updates.
    DeviceGroup(DeviceGroupArgs),
    /// Manufacturer CAs: make one and endorse device keys (local), or make
    /// the server trust one.
    #[command(subcommand)]
    Manufacturer(ManufacturerCommand),
    /// Devices: claim, list, assign to groups, change mode, transfer,
    /// revoke, see attestation verdicts.
    Device(DeviceArgs),
    /// Public keys whose signatures the tenant's image packages may carry.
    SigningKey(SigningKeyArgs),
    /// The hash-chained operator audit log.
    Audit(AuditArgs),
    /// Deployments: publish images to a device group's TUF repository,
    /// phased (`--percent`), halting by itself past `--max-failure-percent`.
    Deployment(DeploymentArgs),
    /// Failures devices reported (and failed attestations), newest first,
    /// as a table, CSV or JSON; paged, no cap.
    ErrorReport(ErrorReportArgs),
    /// Problems: failures grouped by signature; list, show, resolve, retention.
    Problem(ProblemArgs),
    /// Webhooks notified of new problems, regressions, failed attestations
    /// and halted rollouts, signed with HMAC-SHA256.
    Webhook(WebhookArgs),
    /// A device group's TUF repository: show its root, rotate root or
    /// targets keys with a threshold.
    Tuf(TufArgs),
    /// Simulated devices in bulk, for demos, load and benchmarks.
    Fleet(FleetArgs),
    /// The Sevenfold runtime builds devices may run (server administrators
    /// add and revoke them).
    Runtime(RuntimeArgs),
    /// The device runtime: create a device, install images, run measured
    /// boot and attestation.
    #[command(subcommand)]
    Agent(AgentCommand),
}

#[derive(Debug, Args)]
pub(crate) struct QuickstartArgs {
    /// Directory for the server's data, the admin token, keys, packages and
    /// the devices' state; reused if it exists.
    #[arg(long, default_value = "sevenfold-quickstart")]
    pub(crate) data_dir: PathBuf,
    /// Stop the server right after the ready line instead of serving until
    /// SIGINT or SIGTERM (for scripts and CI).
    #[arg(long)]
    pub(crate) exit_when_ready: bool,
}

/// Signature algorithm of a new key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum AlgorithmArg {
    /// ECDSA over NIST P-256 with SHA-256 (what TPMs and X.509 tools speak).
    EcdsaP256,
    /// Ed25519.
    Ed25519,
}

impl From<AlgorithmArg> for sevenfold_rot::KeyAlgorithm {
    fn from(a: AlgorithmArg) -> Self {
        match a {
            AlgorithmArg::EcdsaP256 => sevenfold_rot::KeyAlgorithm::EcdsaP256,
            AlgorithmArg::Ed25519 => sevenfold_rot::KeyAlgorithm::Ed25519,
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct KeygenArgs {
    /// Private key file to write; the public key goes beside it as `<stem>.pub.pem`.
    #[arg(long, short)]
    pub(crate) out: PathBuf,
    /// Signature algorithm.
    #[arg(long, value_enum, default_value_t = AlgorithmArg::EcdsaP256)]
    pub(crate) algorithm: AlgorithmArg,
    /// Replace existing key files.
    #[arg(long)]
    pub(crate) force: bool,
}

#[derive(Debug, Args)]
pub(crate) struct PackageArgs {
    /// The app manifest (`app_manifest.json`).
    #[arg(long)]
    pub(crate) manifest: PathBuf,
    /// The payload: the app's `.wasm` module (or a runtime build).
    #[arg(long)]
    pub(crate) payload: PathBuf,
    /// Private signing key (PKCS#8 PEM, from `sevenfold keygen`).
    #[arg(long)]
    pub(crate) key: PathBuf,
    /// Package file to write (conventionally `*.imagepackage`).
    #[arg(long, short)]
    pub(crate) out: PathBuf,
    /// Replace the output file if it exists.
    #[arg(long)]
    pub(crate) force: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ImageCommand {
    /// Show a package's manifest, hashes and signer, and check its signature
    /// against the given public keys. Exits non-zero if keys are given and
    /// none verifies the package.
    Inspect(InspectArgs),
    /// Upload an image package to the tenant (verified by the server against
    /// the tenant's signing keys).
    Add(ImageAddArgs),
    /// List the tenant's images.
    List(ImageListArgs),
    /// Show one image's metadata.
    Show(ImageShowArgs),
    /// Download an image package and check it is the image asked for.
    Download(ImageDownloadArgs),
}

#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// The `*.imagepackage` file.
    pub(crate) file: PathBuf,
    /// Public key(s) (PEM) to check the signature against; repeatable.
    #[arg(long = "public-key")]
    pub(crate) public_keys: Vec<PathBuf>,
}

/// Shells with completion scripts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ShellArg {
    /// GNU Bash.
    Bash,
    /// Z shell.
    Zsh,
    /// fish.
    Fish,
}

#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub(crate) shell: ShellArg,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
