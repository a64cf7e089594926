//! The agent's local error type: state directory, root of trust, packages.
//!
//! Network errors of the attestation client are [`crate::AttestError`]; this
//! type is everything that goes wrong on the device itself.
//!
//! Each message is complete on its own (it includes its cause's text), so
//! variants carry their cause as a plain field rather than as
//! `Error::source`, and a front-end printing the chain does not repeat it.

use std::path::PathBuf;

use sevenfold_core::package::PackageError;
use sevenfold_pki::PkiError;
use sevenfold_rot::{DeviceId, Digest, RotError};

/// Why a local agent operation failed. Every message says what to do.
///
/// Split by who is at fault: the operator's input (`InvalidServiceUrl`,
/// `InvalidServiceCa`, `EndorsementKeyMismatch`, `Package`, …), the state
/// directory (`NotInitialised`, `AlreadyInitialised`, `InsecurePermissions`,
/// `CorruptState`), and the device itself (`Io`, `Rot`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The directory holds no initialised device.
    #[error(
        "{0} is not an initialised device state directory (no agent.toml); \
         run `sevenfold agent init --state-dir {0} --service URL --service-ca CA.pem` first"
    )]
    NotInitialised(PathBuf),
    /// `init` on a directory that already holds a device.
    #[error(
        "{0} already holds a device identity; refusing to replace it \
         (choose another --state-dir; deleting the directory destroys this device's identity)"
    )]
    AlreadyInitialised(PathBuf),
    /// `init` on an existing directory that holds other things.
    #[error(
        "{0} exists and holds files that are not a device's state; \
         choose a new or empty directory for --state-dir"
    )]
    StateDirNotEmpty(PathBuf),
    /// State readable or writable by group or others.
    #[error(
        "{path} has mode {mode:o}, which exposes the device's state to other users; \
         run `chmod go-rwx {path}` (the agent refuses to run until it is private)"
    )]
    InsecurePermissions {
        /// The exposed path.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// A state file exists but cannot be used.
    #[error("{path} is damaged: {reason}; restore it or re-create the device state")]
    CorruptState {
        /// The damaged file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The failure journal failed.
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
    /// Reading or writing a file failed.
    #[error("cannot {action} {path}: {error}")]
    Io {
        /// What was being done (`read`, `write`, `create`, …).
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        error: std::io::Error,
    },
    /// The service address is not usable.
    #[error("{url:?} is not a usable service address: {reason}; pass the device listener, e.g. https://service.example:8444")]
    InvalidServiceUrl {
        /// What was given.
        url: String,
        /// Why it is refused.
        reason: String,
    },
    /// The pinned service CA is not usable.
    #[error(
        "{path} is not a usable service CA: {reason}; pass the service's CA certificate \
         (DATA_DIR/tls/ca.pem on the server)"
    )]
    InvalidServiceCa {
        /// The file.
        path: PathBuf,
        /// Why it is refused.
        reason: String,
    },
    /// The backend is unknown, or `tpm` in a build without the `tpm` feature.
    #[error("root-of-trust backend {0:?} is not available in this build (known: soft, and tpm when built with `--features tpm`)")]
    UnsupportedRot(String),
    /// The power cycle's measurement log does not account for the
    /// registers: missing, damaged or edited, or the registers were
    /// extended by someone else. The agent does not run with measurements
    /// it cannot prove (fail closed).
    #[error(
        "the measurement log {path} does not match the root of trust's registers: {detail}; \
         the agent refuses to run with measurements it cannot account for. Reboot the device \
         (a new power cycle resets the registers and starts a new log); if this happens again, \
         the device's state directory or TPM is being tampered with"
    )]
    MeasurementLogMismatch {
        /// The log file.
        path: PathBuf,
        /// What does not match.
        detail: String,
    },
    /// Another start of the agent is measuring into the log right now.
    #[error(
        "another start of the agent is measuring into {0} right now; the attestation is \
         retried once that boot is done"
    )]
    MeasurementLogBusy(PathBuf),
    /// This power cycle's measurement log has no room for another boot.
    #[error(
        "this power cycle's measurement log holds {events} of at most {max} events and this \
         boot needs {needed} more (the runtime and every installed image): the agent was \
         restarted too often since the device booted; reboot the device to start a new log"
    )]
    MeasurementLogFull {
        /// Events already in the log.
        events: usize,
        /// Events this boot would add at most.
        needed: usize,
        /// The limit ([`MAX_EVENTS`](sevenfold_core::attestation::MAX_EVENTS)).
        max: usize,
    },
    /// The TPM could not answer the service's credential-activation
    /// challenge: the EK certificate it presented, or the attestation key,
    /// is not this TPM's.
    #[error(
        "the TPM could not activate the service's credential ({0}): the EK certificate in its \
         NV or the attestation key in rot/ does not belong to this TPM; the device cannot prove \
         its key is a TPM's, and attestation is refused until it can"
    )]
    CredentialActivation(String),
    /// The root of trust refused or failed.
    #[error("root of trust: {0}")]
    Rot(#[from] RotError),
    /// A certificate could not be read or issued.
    #[error("{context}: {error}")]
    Certificate {
        /// What was being done.
        context: String,
        /// The cause.
        error: PkiError,
    },
    /// An endorsement certificate certifies some other key.
    #[error(
        "the certificate certifies key {found} (device {found_device}), not this device's \
         root-of-trust key (device {expected}); endorse this device's device.pub.pem instead"
    )]
    EndorsementKeyMismatch {
        /// This device.
        expected: DeviceId,
        /// Key ID of the key in the certificate.
        found: Digest,
        /// The device ID that key would have.
        found_device: DeviceId,
    },
    /// The device has no endorsement yet.
    #[error(
        "the device is not endorsed ({0} is missing); have the manufacturer sign device.pub.pem \
         (`sevenfold manufacturer endorse`) and run `sevenfold agent endorse --certificate CERT.pem`"
    )]
    NotEndorsed(PathBuf),
    /// No device certificate yet.
    #[error(
        "the device holds no certificate ({0} is missing); run `sevenfold agent run` until it attests successfully"
    )]
    NoCertificate(PathBuf),
    /// A key file is not a public key.
    #[error("{path} is not a usable public key: {error}; pass a PEM `PUBLIC KEY` (e.g. from `sevenfold keygen`)")]
    InvalidPublicKey {
        /// The file.
        path: PathBuf,
        /// The cause.
        error: RotError,
    },
    /// An image package was refused.
    #[error("{path}: {error}")]
    Package {
        /// The package file.
        path: PathBuf,
        /// Why.
        error: PackageError,
    },
    /// An image package is not something this command accepts.
    #[error("{path}: {reason}")]
    PackageRefused {
        /// The package file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// More components than the root of trust has counters for.
    #[error("no root-of-trust counter is left for component {0}; the device cannot track more components")]
    CountersExhausted(String),
    /// TLS configuration could not be built.
    #[error("cannot set up TLS: {0}")]
    Tls(String),
    /// The compartments (engine, storage) could not be set up.
    #[error("apps: {0}")]
    Compartment(#[from] sevenfold_compartment::CompartmentError),
}

impl AgentError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        error: std::io::Error,
    ) -> Self {
        AgentError::Io {
            action,
            path: path.into(),
            error,
        }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        AgentError::CorruptState {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
