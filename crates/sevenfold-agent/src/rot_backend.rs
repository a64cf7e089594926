//! Creating and opening the configured root-of-trust backend.
//!
//! `soft` is always built. `tpm` needs the crate's `tpm` feature (and so the
//! system's libtss2); without it, a device configured for a TPM is refused
//! with [`AgentError::UnsupportedRot`] rather than silently run in software.
//!
//! Which TPM: the TCTI given on the command line, else the environment
//! (`TPM2TOOLS_TCTI`, then `TCTI`, as tpm2-tools reads them), else the one
//! `agent init` recorded in `agent.toml`, else `device:/dev/tpmrm0`.

use std::path::Path;
use std::sync::Arc;

use sevenfold_rot::soft::SoftRoot;
use sevenfold_rot::{RootOfTrust, RotError};

use crate::{AgentError, RotBackend};

/// The TCTI that wins: `explicit` (a flag), the environment, `configured`
/// (`agent.toml`), or the kernel resource manager.
pub fn resolve_tcti(explicit: Option<&str>, configured: Option<&str>) -> String {
    explicit
        .map(str::to_owned)
        .or_else(tcti_from_env)
        .or_else(|| configured.map(str::to_owned))
        .unwrap_or_else(|| DEFAULT_TCTI.to_owned())
}

/// The TCTI used when nothing else names one.
pub const DEFAULT_TCTI: &str = "device:/dev/tpmrm0";

fn tcti_from_env() -> Option<String> {
    ["TPM2TOOLS_TCTI", "TCTI"]
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .find(|value| !value.trim().is_empty())
}

/// Creates a new identity in `dir` (or finishes an interrupted `init`: an
/// identity that exists but was never configured is reused).
pub(crate) fn create(
    backend: RotBackend,
    dir: &Path,
    tcti: &str,
) -> Result<Arc<dyn RootOfTrust>, AgentError> {
    match backend {
        RotBackend::Soft => match SoftRoot::create(dir) {
            Ok(rot) => Ok(Arc::new(rot)),
            Err(RotError::AlreadyInitialised(_)) => Ok(Arc::new(SoftRoot::open(dir)?)),
            Err(e) => Err(e.into()),
        },
        RotBackend::Tpm => tpm::create(dir, tcti),
    }
}

/// Opens the identity in `dir`.
pub(crate) fn open(
    backend: RotBackend,
    dir: &Path,
    tcti: &str,
) -> Result<Arc<dyn RootOfTrust>, AgentError> {
    match backend {
        RotBackend::Soft => Ok(Arc::new(SoftRoot::open(dir)?)),
        RotBackend::Tpm => tpm::open(dir, tcti),
    }
}

#[cfg(feature = "tpm")]
mod tpm {
    use std::path::{Path, PathBuf};
    use std::sync::{Arc, Mutex, PoisonError, Weak};

    use sevenfold_rot::tpm::TpmRoot;
    use sevenfold_rot::{RootOfTrust, RotError};

    use crate::AgentError;

    /// TPM roots open in this process, by state directory and TCTI.
    ///
    /// Several parts of the agent open the root of trust; with a TPM each
    /// open is a connection, and a simulator (or a TPM without a resource
    /// manager) serves one connection at a time. So an open root is shared
    /// while anyone holds it.
    type OpenRoots = Vec<(PathBuf, String, Weak<TpmRoot>)>;
    static OPEN: Mutex<OpenRoots> = Mutex::new(Vec::new());

    pub(super) fn create(dir: &Path, tcti: &str) -> Result<Arc<dyn RootOfTrust>, AgentError> {
        match TpmRoot::create(dir, tcti) {
            Ok(rot) => Ok(remember(dir, tcti, rot)),
            Err(RotError::AlreadyInitialised(_)) => open(dir, tcti),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) fn open(dir: &Path, tcti: &str) -> Result<Arc<dyn RootOfTrust>, AgentError> {
        let mut open = OPEN.lock().unwrap_or_else(PoisonError::into_inner);
        open.retain(|(_, _, weak)| weak.strong_count() > 0);
        if let Some(rot) = open
            .iter()
            .find(|(d, t, _)| d == dir && t == tcti)
            .and_then(|(_, _, weak)| weak.upgrade())
        {
            return Ok(rot);
        }
        let rot = Arc::new(TpmRoot::open(dir, tcti)?);
        open.push((dir.to_path_buf(), tcti.to_owned(), Arc::downgrade(&rot)));
        Ok(rot)
    }

    fn remember(dir: &Path, tcti: &str, rot: TpmRoot) -> Arc<dyn RootOfTrust> {
        let rot = Arc::new(rot);
        OPEN.lock().unwrap_or_else(PoisonError::into_inner).push((
            dir.to_path_buf(),
            tcti.to_owned(),
            Arc::downgrade(&rot),
        ));
        rot
    }
}

#[cfg(not(feature = "tpm"))]
mod tpm {
    use std::path::Path;
    use std::sync::Arc;

    use sevenfold_rot::RootOfTrust;

    use crate::AgentError;

    pub(super) fn create(_: &Path, _: &str) -> Result<Arc<dyn RootOfTrust>, AgentError> {
        Err(AgentError::UnsupportedRot("tpm".into()))
    }

    pub(super) fn open(_: &Path, _: &str) -> Result<Arc<dyn RootOfTrust>, AgentError> {
        Err(AgentError::UnsupportedRot("tpm".into()))
    }
}
