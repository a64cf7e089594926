//! Failure reporting commands: `error-report`, `problem`, `webhook`.

use clap::{Args, Subcommand, ValueEnum};

use super::operator::{ConnectionArgs, TenantArg};

/// Format of `error-report`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ReportFormat {
    /// A table for people (the default).
    Table,
    /// Comma-separated values with a header row (RFC 4180 quoting).
    Csv,
    /// One JSON document: `{"rows": [...]}`.
    Json,
}

#[derive(Debug, Args)]
pub(crate) struct ErrorReportArgs {
    #[command(flatten)]
    pub(crate) conn: ConnectionArgs,
    #[command(flatten)]
    pub(crate) tenant: TenantArg,
    /// How many days back (by time of receipt), 1 to 3650.
    #[arg(long, default_value_t = 14,
          value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub(crate) days: u32,
    /// Only devices in this device group (PRODUCT/GROUP, group name, or ID).
    #[arg(long, value_name = "GROUP")]
    pub(crate) group: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub(crate) format: ReportFormat,
    /// At most this many rows (default: all; the server is paged through).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) limit: Option<u64>,
}

#[derive(Debug, Args)]
pub(crate) struct ProblemArgs {
    #[command(flatten)]
    pub(crate) conn: ConnectionArgs,
    #[command(flatten)]
    pub(crate) tenant: TenantArg,
    #[command(subcommand)]
    pub(crate) command: ProblemCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ProblemCommand {
    /// List problems (failures grouped by signature), most recently seen first.
    List {
        /// Only problems in this state.
        #[arg(long, value_parser = ["open", "resolved", "regression"])]
        status: Option<String>,
        /// At most this many problems.
        #[arg(long, value_name = "N", default_value_t = 100,
              value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
    },
    /// Show a problem with its affected devices and versions.
    Show {
        /// Problem ID.
        id: String,
    },
    /// Mark a problem resolved; it reopens as a regression when it is seen
    /// again in a newer version than the fix.
    Resolve {
        /// Problem ID.
        id: String,
        /// The version that fixes it [default: the newest version seen].
        #[arg(long, value_name = "VERSION")]
        fixed_in: Option<String>,
    },
    /// Show, or with --set change, how many days failure reports are kept.
    Retention {
        /// New retention in days (1 to 3650; administrators).
        #[arg(long, value_name = "DAYS",
              value_parser = clap::value_parser!(u32).range(1..=3650))]
        set: Option<u32>,
    },
}

#[derive(Debug, Args)]
pub(crate) struct WebhookArgs {
    #[command(flatten)]
    pub(crate) conn: ConnectionArgs,
    #[command(flatten)]
    pub(crate) tenant: TenantArg,
    #[command(subcommand)]
    pub(crate) command: WebhookCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum WebhookCommand {
    /// Add a webhook; prints its HMAC secret once. Receivers check
    /// `X-Sevenfold-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "t." + body>`.
    Add {
        /// Where to POST (https://; loopback targets only on a server run with
        /// SEVENFOLD_DANGER_LOOPBACK_WEBHOOKS=1).
        url: String,
        /// Events to send, comma-separated.
        #[arg(long, value_delimiter = ',', required = true,
              value_parser = ["new-problem", "regression", "attestation-failed", "rollout-halted"])]
        events: Vec<String>,
    },
    /// List the tenant's webhooks.
    List,
    /// Remove a webhook.
    Remove {
        /// Webhook ID.
        id: String,
    },
}
