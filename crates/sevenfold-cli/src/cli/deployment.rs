//! `sevenfold deployment …`: publishing images to device groups.

use clap::{Args, Subcommand};

use super::{ConnectionArgs, TenantArg};

#[derive(Debug, Args)]
pub(crate) struct DeploymentArgs {
    #[command(flatten)]
    pub(crate) conn: ConnectionArgs,
    #[command(flatten)]
    pub(crate) tenant: TenantArg,
    #[command(subcommand)]
    pub(crate) command: DeploymentCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum DeploymentCommand {
    /// Publish images to a device group: they become the targets of the
    /// group's TUF repository, offered to a stable share of its devices.
    Create {
        /// The device group: ID, or `PRODUCT/GROUP` by name.
        #[arg(long, value_name = "GROUP")]
        group: String,
        /// Image IDs (one per component); repeat or separate with commas.
        #[arg(
            long = "image",
            value_name = "ID",
            required = true,
            value_delimiter = ','
        )]
        images: Vec<String>,
        /// Share of the group's devices that install it, 1 to 100; the same
        /// devices stay in as it is raised [default: the group's rollout
        /// percentage]
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=100))]
        percent: Option<u8>,
        /// Halt the rollout by itself once more than this share of the
        /// targeted devices failed or rolled back (100: never).
        #[arg(long, value_name = "N", default_value_t = 100,
              value_parser = clap::value_parser!(u8).range(0..=100))]
        max_failure_percent: u8,
    },
    /// List deployments, newest first.
    List {
        /// Only this device group (ID or `PRODUCT/GROUP`).
        #[arg(long, value_name = "GROUP")]
        group: Option<String>,
    },
    /// Show a deployment with each targeted device's progress.
    Show {
        /// Deployment ID.
        id: String,
    },
    /// Raise a rollout's share of the group.
    Raise {
        /// Deployment ID.
        id: String,
        /// New share, at least the current one.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=100))]
        percent: u8,
    },
    /// Resume a halted rollout.
    Resume {
        /// Deployment ID.
        id: String,
    },
    /// Cancel a deployment: its images leave the group's targets.
    Cancel {
        /// Deployment ID.
        id: String,
    },
}
