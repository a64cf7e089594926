//! Measured boot: verify every installed image, measure what passes into
//! the root of trust, refuse the rest.
//!
//! See [`measured_boot`] for the order and the rules.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use sevenfold_core::attestation::{
    BootFailure, ComponentKind, EventLog, MeasurementEvent, MAX_EVENTS, RUNTIME_COMPONENT_ID,
};
use sevenfold_core::manifest::ImageType;
use sevenfold_core::package::{read_package, Limits, TrustedKeys, UnverifiedPackage};
use sevenfold_rot::{CounterIndex, Digest, Hasher, RootOfTrust};

use crate::counters::CounterMap;
use crate::measurement_log::{MeasurementLog, Resumed};
use crate::state::security_version_reason;
use crate::{AgentError, StateDir};

/// Name recorded for the runtime's own measurement.
pub const RUNTIME_NAME: &str = "sevenfold";

/// The runtime executable to measure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeImage {
    path: PathBuf,
    version: String,
    /// The digest, computed once and shared by clones: the executable a
    /// process runs does not change under it (an update replaces the file,
    /// not the running image), and a process hosting many simulated devices
    /// must not hash itself once per boot.
    digest: std::sync::Arc<std::sync::OnceLock<Digest>>,
}

impl RuntimeImage {
    /// This process's executable, at this crate's version.
    pub fn current() -> Result<RuntimeImage, AgentError> {
        let path = std::env::current_exe()
            .map_err(|e| AgentError::io("locate", "the running executable", e))?;
        Ok(RuntimeImage::new(path, env!("CARGO_PKG_VERSION")))
    }

    /// An explicit executable and version (tests, other front-ends).
    pub fn new(path: impl Into<PathBuf>, version: impl Into<String>) -> RuntimeImage {
        RuntimeImage {
            path: path.into(),
            version: version.into(),
            digest: std::sync::Arc::default(),
        }
    }

    /// The executable.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The version recorded in the event log.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// SHA-256 of the executable, read in chunks the first time.
    pub fn digest(&self) -> Result<Digest, AgentError> {
        if let Some(digest) = self.digest.get() {
            return Ok(*digest);
        }
        let digest = self.hash_file()?;
        Ok(*self.digest.get_or_init(|| digest))
    }

    fn hash_file(&self) -> Result<Digest, AgentError> {
        let mut file =
            File::open(&self.path).map_err(|e| AgentError::io("measure", &self.path, e))?;
        let mut hasher = Hasher::new();
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let n = file
                .read(&mut buffer)
                .map_err(|e| AgentError::io("measure", &self.path, e))?;
            if n == 0 {
                break;
            }
            hasher.update(buffer.get(..n).unwrap_or_default());
        }
        Ok(hasher.finish())
    }
}

/// An image that passed every boot check and was measured: the only kind the
/// compartments may start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedImage {
    /// The package file. Whoever loads it later must check its digest
    /// against [`VerifiedImage::package_digest`] again (the file could have
    /// changed since boot).
    pub path: PathBuf,
    /// Component ID (UUID).
    pub component_id: String,
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Security version.
    pub security_version: u32,
    /// The measured package digest.
    pub package_digest: Digest,
    /// The component's anti-rollback counter.
    pub counter: CounterIndex,
}

/// What a boot measured and what it refused.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BootReport {
    /// The measurements of this power cycle, in the order they were
    /// extended: earlier starts of the agent since the registers were
    /// reset, then this boot's (from [`BootReport::boot_start`] on). The
    /// registers replay from it; it is what attestation sends.
    pub log: EventLog,
    /// Where this boot's measurements begin in [`BootReport::log`].
    pub boot_start: usize,
    /// Images refused, and why.
    pub failures: Vec<BootFailure>,
    /// Images measured (and so allowed to start), in boot order.
    pub verified_images: Vec<VerifiedImage>,
}

impl BootReport {
    /// This boot's measurements: the runtime, then the images it admitted.
    pub fn this_boot(&self) -> &[MeasurementEvent] {
        self.log.events().get(self.boot_start..).unwrap_or_default()
    }
}

/// Runs measured boot against `rot`.
///
/// Order matters and is fixed:
/// 1. The power cycle's measurement log (`measurements.log`) is locked and
///    reconciled with the registers (see `measurement_log.rs`):
///    registers at zero start a new log; otherwise the log must replay to
///    them, and this boot adds its measurements after it.
/// 2. The runtime measures itself first (SHA-256 of its own executable) into
///    [`RUNTIME_REGISTER`](sevenfold_rot::RUNTIME_REGISTER), so nothing it does afterwards can hide what it is.
/// 3. Each `images/*.imagepackage`, in file-name order, is read within
///    [`Limits`], parsed, verified against `trusted-keys/`, and its security
///    version compared with the component's anti-rollback counter. Only if
///    all of that passes is its package digest extended into
///    [`APPLICATION_REGISTER`](sevenfold_rot::APPLICATION_REGISTER) and recorded in the [`EventLog`], and only
///    then may it be started. A package that fails any check is neither
///    measured nor started; a [`BootFailure`] says why, and is reported at
///    the next attestation and in `status.json`.
///
/// The log and the registers always agree: each event is written (and
/// fsynced) before its extend, and an extend that fails stops the boot (the
/// agent must not run with registers it cannot account for).
///
/// Fails (and the agent must not go on) only if the log cannot be
/// reconciled with the registers ([`AgentError::MeasurementLogMismatch`]),
/// this power cycle's log has no room for this boot
/// ([`AgentError::MeasurementLogFull`]: a reboot starts a new one), the
/// runtime cannot be measured, a register cannot be extended, or
/// `counters.toml` cannot be read or written; every problem with a single
/// image is a [`BootFailure`].
pub fn measured_boot(
    state: &StateDir,
    rot: &dyn RootOfTrust,
    runtime: &RuntimeImage,
) -> Result<BootReport, AgentError> {
    let mut report = BootReport::default();
    let (mut log, resumed) = MeasurementLog::open(state, rot)?;
    let earlier = log.events().events().len();
    match resumed {
        Resumed::NewCycle => tracing::info!("registers at zero: a new power cycle, a new measurement log"),
        Resumed::Continued => tracing::info!(events = earlier, "continuing this power cycle's measurement log"),
        Resumed::DroppedUnextended => tracing::warn!(
            events = earlier,
            "the last logged measurement was never extended (the agent stopped between the two); dropped it"
        ),
    }
    let images = state.installed_images()?;
    // The runtime and every image must fit, or some would run unmeasured
    // only because an earlier start of this cycle used the room.
    let needed = images.len().saturating_add(1);
    if earlier > 0 && earlier.saturating_add(needed) > MAX_EVENTS {
        return Err(AgentError::MeasurementLogFull {
            events: earlier,
            needed,
            max: MAX_EVENTS,
        });
    }
    report.boot_start = earlier;

    let digest = runtime.digest()?;
    log.measure(
        rot,
        MeasurementEvent {
            kind: ComponentKind::Runtime,
            component_id: RUNTIME_COMPONENT_ID.to_owned(),
            name: RUNTIME_NAME.to_owned(),
            version: runtime.version().to_owned(),
            digest,
        },
    )?;
    tracing::info!(digest = %digest, version = runtime.version(), "measured the runtime");

    let (trusted, key_problems) = state.trusted_keys()?;
    for (file, reason) in key_problems {
        let failure = BootFailure {
            component: format!("{}/{file}", crate::state::TRUSTED_KEYS_DIR),
            reason,
        };
        tracing::warn!(component = %failure.component, reason = %failure.reason, "trusted key ignored");
        report.failures.push(failure);
    }
    let mut counters = state.counters()?;
    // Component ID → the file it was measured from.
    let mut measured: BTreeMap<String, String> = BTreeMap::new();
    let limits = Limits::default();

    for (file_name, path) in images {
        if log.events().events().len() >= MAX_EVENTS {
            fail(
                &mut report,
                &file_name,
                format!(
                    "more than {} images are installed; this one is not started",
                    MAX_EVENTS - 1
                ),
            );
            continue;
        }
        let checked = check_image(&path, &limits, &trusted, &mut counters, rot, &measured)?;
        match checked {
            Err(reason) => fail(&mut report, &file_name, reason),
            Ok(image) => {
                log.measure(
                    rot,
                    MeasurementEvent {
                        kind: ComponentKind::Application,
                        component_id: image.component_id.clone(),
                        name: image.name.clone(),
                        version: image.version.clone(),
                        digest: image.package_digest,
                    },
                )?;
                tracing::info!(
                    file = %file_name,
                    component = %image.component_id,
                    name = %image.name,
                    version = %image.version,
                    digest = %image.package_digest,
                    "measured image"
                );
                measured.insert(image.component_id.clone(), file_name);
                report.verified_images.push(image);
            }
        }
    }
    report.log = log.into_log();
    Ok(report)
}

fn fail(report: &mut BootReport, file_name: &str, reason: String) {
    tracing::warn!(file = %file_name, %reason, "image refused at boot; it is not measured and not started");
    report.failures.push(BootFailure {
        component: file_name.to_owned(),
        reason,
    });
}

/// All checks of one image. The outer error stops the boot; the inner one
/// refuses this image only.
pub(crate) fn check_image(
    path: &Path,
    limits: &Limits,
    trusted: &TrustedKeys,
    counters: &mut CounterMap,
    rot: &dyn RootOfTrust,
    measured: &BTreeMap<String, String>,
) -> Result<Result<VerifiedImage, String>, AgentError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) => return Ok(Err(format!("cannot be read: {e}"))),
    };
    if !meta.is_file() {
        return Ok(Err("not a regular file".into()));
    }
    let bytes = match File::open(path)
        .map_err(sevenfold_core::package::PackageError::from)
        .and_then(|f| read_package(f, limits))
    {
        Ok(bytes) => bytes,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let parsed = match UnverifiedPackage::parse(&bytes, limits) {
        Ok(parsed) => parsed,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let verified = match parsed.verify(trusted) {
        Ok(verified) => verified,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let manifest = verified.manifest();
    let component_id = manifest.component_id().to_string();
    if manifest.image_type() != ImageType::Application {
        return Ok(Err(format!(
            "component {component_id} is a {} image, which is not started from images/",
            manifest.image_type().as_str()
        )));
    }
    if let Some(other) = measured.get(&component_id) {
        return Ok(Err(format!(
            "component {component_id} was already measured from {other}; only one package per component is started"
        )));
    }
    // Allocated only for a verified package: untrusted files cannot use up counters.
    let counter = counters.get_or_allocate(&component_id)?;
    let current = match rot.read_counter(counter) {
        Ok(value) => value,
        Err(e) => {
            return Ok(Err(format!(
                "the anti-rollback counter of component {component_id} cannot be read: {e}"
            )))
        }
    };
    if u64::from(manifest.security_version()) < current {
        return Ok(Err(security_version_reason(
            manifest.security_version(),
            current,
            &component_id,
        )));
    }
    Ok(Ok(VerifiedImage {
        path: path.to_path_buf(),
        component_id,
        name: manifest.name().to_owned(),
        version: manifest.version().to_string(),
        security_version: manifest.security_version(),
        package_digest: *verified.package_digest(),
        counter,
    }))
}
