//! `sevenfold tuf …`: a device group's TUF repository keys.

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
    /// Replace the root or targets keys with new ones, N of which must sign
    /// (administrators). Devices walk to the new root, which the old root
    /// keys cross-sign.
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
}
