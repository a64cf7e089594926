//! The command line: every subcommand, flag and help text, and nothing else.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

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
    /// Walk through the platform on this machine: sign a sample app, verify
    /// it, and measure and attest it with a software root of trust.
    Quickstart(QuickstartArgs),
    /// Generate a signing key pair for image packages (PKCS#8 PEM, private
    /// key file mode 0600).
    Keygen(KeygenArgs),
    /// Build and sign an image package from an app manifest and a payload.
    Package(PackageArgs),
    /// Work with image packages.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Print a shell completion script.
    Completions(CompletionsArgs),
}

#[derive(Debug, Args)]
pub(crate) struct QuickstartArgs {
    /// Directory for keys, packages and the device state; reused if it exists.
    #[arg(long, default_value = "sevenfold-quickstart")]
    pub(crate) data_dir: PathBuf,
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
