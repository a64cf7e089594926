//! The Sevenfold device runtime (`sevenfold agent …`), first part: the
//! device's state, measured boot, and attestation for a device certificate.
//!
//! A device is a [`StateDir`]: its root of trust (`rot/`), the pinned service
//! CA, its manufacturer endorsement, the image signing keys it trusts, its
//! installed image packages, its TLS key and its latest certificate
//! ([`StateDir::init`] makes one; [`StateDir::open`] refuses one that other
//! users can read). [`Agent::start`] runs [`measured_boot`]: it measures the
//! runtime, then verifies each installed package (signature, anti-rollback
//! counter) and measures only those that pass into the root of trust,
//! writing the [`EventLog`](sevenfold_core::attestation::EventLog) that
//! replays to those registers. [`Agent::attest`] then proves that state to
//! the Security Service and, on a pass, stores the 24-hour device
//! certificate; [`Agent::run`] keeps it renewed. [`whoami`] uses the
//! certificate for mutual TLS.
//!
//! [`Apps::start`] then runs exactly the measured images, each in its own
//! WebAssembly compartment (`sevenfold-compartment`), and their status goes
//! to `status.json` (`apps`).
//!
//! Main types: [`StateDir`], [`Agent`], [`BootReport`], [`Attestation`], [`Apps`],
//! [`Status`] (`status.json`), and the errors [`AgentError`] (the device
//! itself) and [`AttestError`] (talking to the service).
//!
//! Key decision: **nothing unverified is measured, and nothing unmeasured
//! runs.** Boot is the only place images are admitted; what the compartments
//! may start is exactly [`BootReport::verified_images`], whose digests are in
//! the event log and the registers. A refused image is reported as a
//! [`BootFailure`](sevenfold_core::attestation::BootFailure) in the next
//! evidence, so the verifier sees it too.
//!
//! Invariants:
//! - The event log and the registers agree: every event is written to the
//!   power cycle's log on disk (and fsynced) before its extend, a failed
//!   extend stops the boot, and a start whose log does not replay to the
//!   registers refuses to run (`measurements.log`; on a TPM several starts
//!   share one power cycle).
//! - A TPM device proves its key is in the TPM of a trusted EK (credential
//!   activation) before its first attestation of each start.
//! - The runtime measures itself first, into its own register.
//! - The only TLS trust anchor is the pinned `service-ca.pem`.
//! - Every file is written atomically (temp file, fsync, rename, fsync of the
//!   directory) with mode 0600 in 0700 directories.
//! - The device key never leaves the root of trust; the TLS key is a
//!   separate key (inside the TPM on a `tpm` device), bound to each
//!   attestation by the quote's nonce (see
//!   [`TlsKey`] for why).
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use sevenfold_agent::{Agent, RuntimeImage, StateDir};
//! let state = StateDir::open(std::path::Path::new("/var/lib/sevenfold"))?;
//! let agent = Agent::start(state, &RuntimeImage::current()?)?;
//! let pass = agent.attest().await?;
//! println!("certificate valid until {}", pass.not_after);
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod agent;
mod app_failures;
mod apps;
mod attest;
mod boot;
mod certs;
mod client;
mod counters;
mod credential;
mod error;
mod fsutil;
pub mod journal;
mod measurement_log;
pub mod reporter;
mod rot_backend;
pub mod runtime;
mod state;
mod status;
mod tls_signer;
pub mod update;
mod whoami;

pub use agent::{
    renewal_delay, retry_delay, Agent, RunEvent, ShutdownSignals, JITTER, MAX_RENEWAL_INTERVAL,
    MAX_RETRY, MIN_RETRY,
};
pub use app_failures::{journaling_sink, CrashDetails, CRASH_LOOP_RESTARTS, OUTPUT_TAIL_BYTES};
pub use apps::{AppStatusEntry, Apps, APP_LOGS_DIR, APP_STORAGE_DIR, MODULE_CACHE_DIR};
pub use attest::{build_evidence, AttestError, Attestation, EVIDENCE_PATH, NONCE_PATH};
pub use boot::{measured_boot, BootReport, RuntimeImage, VerifiedImage, RUNTIME_NAME};
pub use counters::CounterMap;
pub use error::AgentError;
pub use measurement_log::MEASUREMENT_LOG_FILE;
pub use rot_backend::{resolve_tcti, DEFAULT_TCTI};
pub use state::{
    AgentConfig, InitOptions, InitReport, InstalledImage, RotBackend, StateDir, TlsKey,
    TrustedKeyReport, CONFIG_FILE, DEVICE_CERT_FILE, DEVICE_PUBLIC_KEY_FILE, ENDORSEMENT_FILE,
    ENDORSEMENT_VALIDITY_DAYS, IMAGES_DIR, ROT_DIR, SERVICE_CA_FILE, TLS_KEY_FILE,
    TRUSTED_KEYS_DIR, TRUSTED_KEY_SUFFIX,
};
pub use status::{MeasurementStatus, Status, VERDICT_FAIL, VERDICT_PASS};
pub use update::health::{BootCheck, HealthCheck};
pub use update::RunCheck;
pub use update::{
    update_once, TargetOutcome, Transfer, UpdateError, UpdateOptions, UpdateReport, UPDATES_DIR,
};
pub use whoami::{whoami, WhoAmI, WHOAMI_PATH};

/// `counters.toml`.
pub const COUNTERS_FILE: &str = counters::COUNTERS_FILE;
/// `status.json`.
pub const STATUS_FILE: &str = status::STATUS_FILE;
