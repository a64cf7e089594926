//! Errors of the compartment host, split by who has to act.

use std::path::PathBuf;

/// Why an app could not be loaded or started. (What goes wrong *while* it
/// runs is not an error of the host: it is a [`CompartmentEvent`](crate::CompartmentEvent).)
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CompartmentError {
    /// The package is not a valid image package.
    #[error("image package refused: {0}")]
    Package(#[from] sevenfold_core::package::PackageError),
    /// The package on disk is not the one boot measured.
    #[error("image package {path} changed since boot: measured {measured}, found {found}")]
    DigestMismatch {
        /// The package file.
        path: PathBuf,
        /// The digest boot measured (hex).
        measured: String,
        /// The digest of the file now (hex).
        found: String,
    },
    /// The package is not an application.
    #[error("{name}: image type {image_type} is not an application")]
    NotAnApplication {
        /// Manifest name.
        name: String,
        /// Its image type.
        image_type: &'static str,
    },
    /// The payload is not a WebAssembly module this engine accepts.
    #[error("{name}: not a valid WebAssembly module: {reason}")]
    Compile {
        /// Manifest name.
        name: String,
        /// What the compiler said.
        reason: String,
    },
    /// The engine could not be configured (cache directory, settings).
    #[error("compartment engine: {0}")]
    Engine(String),
    /// A file or directory of the host could not be used.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// An app with this component ID is already running.
    #[error("app {0} is already running; stop it or use update")]
    AlreadyRunning(uuid::Uuid),
    /// No app with this component ID is known.
    #[error("no app with component ID {0}")]
    UnknownApp(uuid::Uuid),
}

impl CompartmentError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        CompartmentError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// Why the host stopped an app from the inside: raised as a trap so that only
/// that app's store unwinds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HostTrap {
    #[error(
        "memory limit: growing linear memory to {desired} bytes exceeds MemoryKB ({limit} bytes)"
    )]
    Memory { desired: usize, limit: usize },
    #[error("table limit: growing a table to {desired} elements exceeds {limit}")]
    Table { desired: usize, limit: usize },
    #[error("CPU budget: ran {busy_ms} ms of wasm without returning to the host (budget {budget_ms} ms)")]
    Cpu { busy_ms: u128, budget_ms: u128 },
    #[error("killed: did not stop within the grace period")]
    Killed,
}
