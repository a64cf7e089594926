//! The compartment health check: the new version of an app must pass boot
//! verification ([`BootCheck`]) and then *run* for a set time without
//! crashing before its update is committed.
//!
//! The new version is started in its own compartment, under a supervisor
//! of its own, from the switched slot's package (loaded only if its digest
//! is the one just verified). A trap, a limit hit that ends the run, a
//! non-zero exit or a failure to compile within the period rolls the update
//! back; returning from `main` with 0 is not a crash. The trial runs
//! against simulated peripherals (the old version may still own the real
//! ones) and the app's real storage (the new version's anyway), with no
//! device signer (a trial signs nothing with the device's key).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sevenfold_compartment::{
    AppImage, AppRunState, ChannelHub, CompartmentEngine, CompartmentEvent, EventSink,
    HostServices, SimulatedPeripherals, StorageArea, Supervisor, SupervisorConfig,
};
use sevenfold_rot::RootOfTrust;

use super::health::{BootCheck, HealthCheck};
use crate::boot::VerifiedImage;
use crate::state::DEVICE_CERT_FILE;
use crate::{AgentError, StateDir, APP_STORAGE_DIR, MODULE_CACHE_DIR};

const POLL: Duration = Duration::from_millis(50);

/// Boot verification, then `period` of running without a crash.
#[derive(Clone, Copy, Debug)]
pub struct RunCheck {
    /// How long the new version must run.
    pub period: Duration,
}

impl HealthCheck for RunCheck {
    fn check(
        &self,
        state: &StateDir,
        rot: &dyn RootOfTrust,
        image: &std::path::Path,
        component_id: &str,
    ) -> Result<Result<VerifiedImage, String>, AgentError> {
        let verified = match BootCheck.check(state, rot, image, component_id)? {
            Ok(verified) => verified,
            Err(reason) => return Ok(Err(reason)),
        };
        if self.period.is_zero() {
            return Ok(Ok(verified));
        }
        Ok(run_for(state, &verified, self.period)?.map(|()| verified))
    }
}

fn run_for(
    state: &StateDir,
    verified: &VerifiedImage,
    period: Duration,
) -> Result<Result<(), String>, AgentError> {
    let app = match AppImage::load_measured(&verified.path, &verified.package_digest) {
        Ok(app) => app,
        Err(e) => return Ok(Err(format!("the new version cannot be loaded: {e}"))),
    };
    let root = state.root();
    let engine = Arc::new(CompartmentEngine::new(&root.join(MODULE_CACHE_DIR))?);
    let storage = StorageArea::new(&root.join(APP_STORAGE_DIR))?;
    let services = Arc::new(HostServices {
        peripherals: Arc::new(SimulatedPeripherals::new()),
        channels: ChannelHub::new(),
        certificate: Some(root.join(DEVICE_CERT_FILE)),
        signer: None,
        listen_ip: std::net::IpAddr::from([127, 0, 0, 1]),
    });
    let crashes = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = Arc::clone(&crashes);
    let sink: EventSink = Arc::new(move |event: &CompartmentEvent| {
        if let CompartmentEvent::Crashed { .. } | CompartmentEvent::LimitHit { .. } = event {
            if let Ok(mut seen) = seen.lock() {
                seen.push(event.to_string());
            }
        }
    });
    // No restarts within the trial: the first crash decides.
    let config = SupervisorConfig {
        min_backoff: period,
        max_backoff: period,
        ..SupervisorConfig::default()
    };
    let supervisor = Supervisor::new(engine, storage, services, config, sink);
    let id = app.manifest().component_id();
    if let Err(e) = supervisor.start(app) {
        return Ok(Err(format!("the new version does not start: {e}")));
    }
    let started = Instant::now();
    let verdict = loop {
        let status = supervisor
            .status()
            .into_iter()
            .find(|s| s.app.component_id == id);
        let failed = match &status {
            Some(s) => match s.state {
                AppRunState::BackingOff => true,
                AppRunState::Exited(code) => code != 0,
                _ => s.restarts > 0,
            },
            None => true,
        };
        if failed {
            let why = status
                .and_then(|s| s.last_failure)
                .or_else(|| crashes.lock().ok().and_then(|c| c.first().cloned()))
                .unwrap_or_else(|| "it stopped".to_owned());
            break Err(format!(
                "the new version crashed {:.1} s after it started, within the {} s health check: {why}",
                started.elapsed().as_secs_f64(),
                period.as_secs()
            ));
        }
        if started.elapsed() >= period {
            break Ok(());
        }
        std::thread::sleep(POLL);
    };
    supervisor.stop_all();
    Ok(verdict)
}
