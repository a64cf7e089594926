//! `sevenfold fleet …`: many simulated devices from one process.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{ConnectionArgs, TenantArg};

#[derive(Debug, Args)]
pub(crate) struct FleetArgs {
    #[command(flatten)]
    pub(crate) conn: ConnectionArgs,
    #[command(flatten)]
    pub(crate) tenant: TenantArg,
    #[command(subcommand)]
    pub(crate) command: FleetCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum FleetCommand {
    /// Run many simulated devices against a Security Service: each has its
    /// own soft root of trust and state directory and speaks the real
    /// device protocol over TLS (measured boot, attestation, mutual-TLS
    /// renewals, TUF updates with A/B install, failure reports). A share of
    /// them is faulty: their apps crash and their updates fail the health
    /// check and roll back. Runs until Ctrl-C (or `--duration`).
    Simulate(SimulateArgs),
}

#[derive(Debug, Args)]
pub(crate) struct SimulateArgs {
    /// How many devices.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub(crate) devices: u32,
    /// The device group they join: ID, or `PRODUCT/GROUP` by name.
    #[arg(long, value_name = "GROUP")]
    pub(crate) group: String,
    /// The service's device API, e.g. `https://sevenfold.example:8444`.
    #[arg(long, value_name = "URL")]
    pub(crate) device_api: String,
    /// The service CA the devices pin (the server's `DATA_DIR/tls/ca.pem`).
    #[arg(long, value_name = "CA.pem")]
    pub(crate) service_ca: PathBuf,
    /// Where the devices' state directories (and the manufacturer CA, if
    /// made here) live; reused by the next run.
    #[arg(long, value_name = "DIR", default_value = "sevenfold-fleet")]
    pub(crate) dir: PathBuf,
    /// A manufacturer CA directory (`ca.pem`, `ca.key`) the service trusts;
    /// default: `DIR/maker`, made and trusted now (needs a server
    /// administrator's token).
    #[arg(long, value_name = "DIR")]
    pub(crate) maker: Option<PathBuf>,
    /// Image signing keys the devices trust (public PEM); repeat.
    #[arg(long = "trust-key", value_name = "PUBLIC.pem")]
    pub(crate) trust_keys: Vec<PathBuf>,
    /// Share of faulty devices, 0 to 100.
    #[arg(long, value_name = "N", default_value_t = 5,
          value_parser = clap::value_parser!(u8).range(0..=100))]
    pub(crate) faulty_percent: u8,
    /// Seconds between a device's update checks and report uploads (each
    /// device jitters it by ±25%).
    #[arg(long, value_name = "SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub(crate) interval: u64,
    /// Devices making requests at the same moment.
    #[arg(long, value_name = "N", default_value_t = 32,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub(crate) concurrency: u32,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long, value_name = "SECONDS")]
    pub(crate) duration: Option<u64>,
}
