//! Running the measured apps: the bridge from measured boot to the
//! compartments of `sevenfold-compartment`.
//!
//! The supervisor starts exactly [`BootReport::verified_images`], each
//! loaded again from its package file and refused unless its digest is the
//! one boot measured. Compiled modules are cached under `module-cache/`;
//! each app's `MutableStorage` lives under `app-storage/<component ID>/`, its
//! output in `app-logs/<component ID>.log`.

use std::os::unix::fs::DirBuilderExt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sevenfold_compartment::{
    AppImage, AppStatus, ChannelHub, CompartmentEngine, CompartmentError, DeviceSigner, EventSink,
    HostServices, Peripherals, StorageArea, Supervisor, SupervisorConfig,
};

use crate::boot::BootReport;
use crate::state::DEVICE_CERT_FILE;
use crate::{AgentError, StateDir};

/// Compiled-module cache, inside the state directory.
pub const MODULE_CACHE_DIR: &str = "module-cache";
/// Apps' mutable storage, inside the state directory.
pub const APP_STORAGE_DIR: &str = "app-storage";
/// Apps' output (`<component ID>.log`, rotated at 1 MiB), inside the state directory.
pub const APP_LOGS_DIR: &str = "app-logs";

/// The running apps of a booted device.
#[derive(Debug)]
pub struct Apps {
    supervisor: Supervisor,
    refused: Vec<AppStatusEntry>,
}

impl Apps {
    /// Starts every image boot verified and measured, and nothing else.
    /// An image that cannot be loaded or compiled is not started and is
    /// listed in [`status`](Self::status) with why.
    ///
    /// # Errors
    /// [`AgentError::Compartment`] if the engine or the storage area cannot
    /// be set up.
    pub fn start(
        state: &StateDir,
        boot: &BootReport,
        peripherals: Arc<dyn Peripherals>,
        mut config: SupervisorConfig,
        sink: EventSink,
    ) -> Result<Apps, AgentError> {
        let root = state.root();
        let logs = root.join(APP_LOGS_DIR);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&logs)
            .map_err(|e| AgentError::io("create", logs.clone(), e))?;
        config.log_dir = Some(logs);
        let engine = Arc::new(CompartmentEngine::new(&root.join(MODULE_CACHE_DIR))?);
        let storage = StorageArea::new(&root.join(APP_STORAGE_DIR))?;
        let services = Arc::new(HostServices {
            peripherals,
            channels: ChannelHub::new(),
            certificate: Some(root.join(DEVICE_CERT_FILE)),
            signer: Some(Arc::new(TlsKeySigner(state.clone()))),
            listen_ip: std::net::IpAddr::from([0, 0, 0, 0]),
        });
        let supervisor = Supervisor::new(engine, storage, services, config, sink);
        let mut refused = Vec::new();
        for image in &boot.verified_images {
            let started = AppImage::load_measured(&image.path, &image.package_digest)
                .and_then(|app| supervisor.start(app));
            if let Err(e) = started {
                tracing::warn!(app = %image.name, component = %image.component_id, error = %e, "app not started");
                refused.push(AppStatusEntry::refused(image, &e));
            }
        }
        Ok(Apps {
            supervisor,
            refused,
        })
    }

    /// The supervisor (to stop, update or inspect apps).
    pub fn supervisor(&self) -> &Supervisor {
        &self.supervisor
    }

    /// Every app's status, for `status.json`.
    pub fn status(&self) -> Vec<AppStatusEntry> {
        let mut entries: Vec<AppStatusEntry> = self
            .supervisor
            .status()
            .iter()
            .map(AppStatusEntry::from_status)
            .collect();
        entries.extend(self.refused.iter().cloned());
        entries
    }

    /// Stops every app, each with its grace period.
    pub fn stop(&self) {
        self.supervisor.stop_all();
    }
}

/// Signs for apps with `DeviceAuthentication` with the device's TLS key
/// (the key its certificate certifies), read afresh for every call so it
/// always matches the current certificate. The key never enters an app.
struct TlsKeySigner(StateDir);

impl DeviceSigner for TlsKeySigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        self.0
            .tls_key()
            .and_then(|key| key.sign(message))
            .map_err(|e| e.to_string())
    }
}

/// One app in `status.json` (`apps`): a stable file format.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AppStatusEntry {
    /// Component ID.
    pub component_id: String,
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// `running`, `backing-off`, `exited`, `stopped`, or `not-started`.
    pub state: String,
    /// The exit code, when `exited`.
    pub exit_code: Option<i32>,
    /// Restarts after crashes.
    pub restarts: u32,
    /// Linear memory now, in bytes.
    pub memory_bytes: u64,
    /// Most linear memory so far, in bytes.
    pub memory_peak_bytes: u64,
    /// Time spent running the app's wasm, in milliseconds.
    pub cpu_ms: u64,
    /// Why the last failed run ended (or why the app was not started).
    pub last_failure: Option<String>,
    /// Recent crashes, limit hits and denials, oldest first.
    pub recent_failures: Vec<String>,
}

impl AppStatusEntry {
    fn from_status(status: &AppStatus) -> AppStatusEntry {
        AppStatusEntry {
            component_id: status.app.component_id.to_string(),
            name: status.app.name.clone(),
            version: status.version.clone(),
            state: status.state.as_str().to_owned(),
            exit_code: match status.state {
                sevenfold_compartment::AppRunState::Exited(code) => Some(code),
                _ => None,
            },
            restarts: status.restarts,
            memory_bytes: status.memory_bytes,
            memory_peak_bytes: status.memory_peak_bytes,
            cpu_ms: u64::try_from(status.cpu.as_millis()).unwrap_or(u64::MAX),
            last_failure: status.last_failure.clone(),
            recent_failures: status
                .recent_events
                .iter()
                .filter(|e| e.is_failure())
                .map(ToString::to_string)
                .collect(),
        }
    }

    fn refused(image: &crate::boot::VerifiedImage, error: &CompartmentError) -> AppStatusEntry {
        AppStatusEntry {
            component_id: image.component_id.clone(),
            name: image.name.clone(),
            version: image.version.clone(),
            state: "not-started".to_owned(),
            last_failure: Some(error.to_string()),
            ..AppStatusEntry::default()
        }
    }
}
