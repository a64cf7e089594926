//! `sevenfold tuf …`: a device group's TUF repository keys, held by the
//! service or, offline, by the tenant's key holders.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use super::{ConnectionArgs, TenantArg};

#[derive(Debug, Args)]
pub(crate) struct TufArgs {
    #[command(flatten)]
    pub(crate) conn: ConnectionArgs,
    #[command(flatten)]
    pub(crate) tenant: TenantArg,
    #[command(subcommand)]
    pub(crate) command: TufCommand,
}

/// A role whose keys belong to the tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum TufRoleArg {
    /// The root of trust of the group's repository.
    Root,
    /// The role that signs what devices install.
    Targets,
}

impl TufRoleArg {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            TufRoleArg::Root => "root",
            TufRoleArg::Targets => "targets",
        }
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum TufCommand {
    /// Show the group repository's root: version, expiry, each role's key
    /// IDs and threshold.
    Show {
        /// The device group: ID, or `PRODUCT/GROUP` by name.
        #[arg(long, value_name = "GROUP")]
        group: String,
    },
    /// Replace the root or targets keys with new ones the service makes and
    /// holds, N of which must sign (administrators). Devices walk to the new
    /// root, which the old root keys cross-sign. Only while the service
    /// holds the root keys; see `tuf root` for keys the tenant holds.
    Rotate {
        /// The device group: ID, or `PRODUCT/GROUP` by name.
        #[arg(long, value_name = "GROUP")]
        group: String,
        /// Which role's keys.
        #[arg(long, value_enum)]
        role: TufRoleArg,
        /// How many new keys (1 to 16).
        #[arg(long, value_name = "N", default_value_t = 1)]
        keys: usize,
        /// How many of them must sign.
        #[arg(long, value_name = "N", default_value_t = 1)]
        threshold: usize,
    },
    /// A key the tenant holds offline (no server needed).
    #[command(subcommand)]
    Key(TufKeyCommand),
    /// Rotate the root (and targets) keys to keys the tenant holds, signed
    /// offline by several key holders: draft, sign (once per holder), submit.
    #[command(subcommand)]
    Root(TufRootCommand),
    /// Sign the group's targets with the tenant's offline targets keys:
    /// draft, sign (once per holder), submit.
    #[command(subcommand)]
    Targets(TufTargetsCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum TufKeyCommand {
    /// Generate an Ed25519 key: FILE (PKCS#8 PEM, mode 0600, keep it
    /// offline) and FILE's stem + `.pub.json` (the TUF public key, for
    /// `tuf root draft`). Prints the TUF key ID.
    Generate {
        /// Where to write the private key.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum TufRootCommand {
    /// Write the group's next root version, unsigned, with new root keys
    /// (and optionally new targets keys) the tenant holds.
    Draft {
        /// The device group: ID, or `PRODUCT/GROUP` by name.
        #[arg(long, value_name = "GROUP")]
        group: String,
        /// A new root key's public file (`.pub.json`); repeat for each key.
        #[arg(long = "root-key-pub", value_name = "FILE", required = true, num_args = 1..)]
        root_keys: Vec<PathBuf>,
        /// How many root keys must sign.
        #[arg(long, value_name = "N")]
        threshold: u64,
        /// A new targets key's public file; repeat for each key. Once the
        /// tenant holds the targets keys, every change to the group's
        /// deployments waits for `tuf targets draft|sign|submit`.
        #[arg(long = "targets-key-pub", value_name = "FILE", num_args = 1..)]
        targets_keys: Vec<PathBuf>,
        /// How many targets keys must sign.
        #[arg(long, value_name = "M", requires = "targets_keys")]
        targets_threshold: Option<u64>,
        /// How long the new root is valid.
        #[arg(long, value_name = "DAYS", default_value_t = 365)]
        expires_days: u32,
        /// Where to write the draft.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Add one signature to a root draft with one key (offline; run by each
    /// holder of a current or new root key).
    Sign(DraftSignArgs),
    /// Upload a signed root draft; the service verifies and publishes it.
    Submit(DraftSubmitArgs),
}

#[derive(Debug, Subcommand)]
pub(crate) enum TufTargetsCommand {
    /// Write the group's next targets (its live deployments), unsigned.
    Draft {
        /// The device group: ID, or `PRODUCT/GROUP` by name.
        #[arg(long, value_name = "GROUP")]
        group: String,
        /// Where to write the draft.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Add one signature to a targets draft with one targets key (offline).
    Sign(DraftSignArgs),
    /// Upload signed targets; the service verifies them and publishes them
    /// with a new snapshot and timestamp.
    Submit(DraftSubmitArgs),
}

/// `tuf root|targets sign`.
#[derive(Debug, Args)]
pub(crate) struct DraftSignArgs {
    /// The draft file; rewritten with the signature added.
    pub(crate) draft: PathBuf,
    /// The private key file.
    #[arg(long, value_name = "FILE")]
    pub(crate) key: PathBuf,
}

/// `tuf root|targets submit`.
#[derive(Debug, Args)]
pub(crate) struct DraftSubmitArgs {
    /// The device group: ID, or `PRODUCT/GROUP` by name.
    #[arg(long, value_name = "GROUP")]
    pub(crate) group: String,
    /// The signed draft file.
    pub(crate) draft: PathBuf,
}
