//! The supervisor: one thread and one compartment per app; restarts crashed
//! apps with exponential back-off, stops them with a grace period, and keeps
//! each app's status.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::control::AppControl;
use crate::engine::CompartmentEngine;
use crate::error::CompartmentError;
use crate::events::{AppId, CompartmentEvent, EventSink};
use crate::hostapi::HostServices;
use crate::image::AppImage;
use crate::policy::AppPolicy;
use crate::run::{run_once, RunContext, RunOutcome, RunSettings};
use crate::storage::StorageArea;

/// How the supervisor treats apps.
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    /// First restart delay after a crash.
    pub min_backoff: Duration,
    /// Longest restart delay (the delay doubles up to this).
    pub max_backoff: Duration,
    /// A run at least this long resets the back-off.
    pub stable_after: Duration,
    /// How long a stopping app has to return from `main` before it is killed.
    pub grace: Duration,
    /// Per-run limits.
    pub run: RunSettings,
    /// Where each app's output is also written (`<component ID>.log`,
    /// rotated at 1 MiB); `None` keeps it in memory only.
    pub log_dir: Option<PathBuf>,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        SupervisorConfig {
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(300),
            stable_after: Duration::from_secs(60),
            grace: Duration::from_secs(5),
            run: RunSettings::default(),
            log_dir: None,
        }
    }
}

/// Delay before restart number `failures + 1` of a crash loop: `min`
/// doubling up to `max`.
pub fn backoff(failures: u32, min: Duration, max: Duration) -> Duration {
    let factor = 1u32.checked_shl(failures.min(31)).unwrap_or(u32::MAX);
    min.saturating_mul(factor).min(max)
}

/// Where an app is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AppRunState {
    /// Its instance is running.
    Running,
    /// It crashed and waits to be restarted.
    BackingOff,
    /// It returned from `main` (or exited with this code) and is not restarted.
    Exited(i32),
    /// The supervisor stopped it.
    Stopped,
}

impl AppRunState {
    /// `running`, `backing-off`, `exited`, `stopped`.
    pub fn as_str(self) -> &'static str {
        match self {
            AppRunState::Running => "running",
            AppRunState::BackingOff => "backing-off",
            AppRunState::Exited(_) => "exited",
            AppRunState::Stopped => "stopped",
        }
    }
}

/// One app's status, for `sevenfold agent status`.
#[derive(Debug, Clone)]
pub struct AppStatus {
    /// The app.
    pub app: AppId,
    /// Its version.
    pub version: String,
    /// Where it is.
    pub state: AppRunState,
    /// Restarts after crashes so far.
    pub restarts: u32,
    /// Linear memory now (0 when no instance is alive).
    pub memory_bytes: u64,
    /// Most linear memory it ever had.
    pub memory_peak_bytes: u64,
    /// Time spent running its wasm, all runs together.
    pub cpu: Duration,
    /// Why the last run that ended in a crash (or a non-zero exit) ended.
    pub last_failure: Option<String>,
    /// Recent events, oldest first.
    pub recent_events: Vec<CompartmentEvent>,
    /// Lines of output the app wrote in all.
    pub output_lines: u64,
    /// Denials and limit hits past [`MAX_REPORTS_PER_RUN`](crate::MAX_REPORTS_PER_RUN)
    /// in a run, counted but not reported.
    pub suppressed_reports: u64,
}

struct Shared {
    engine: Arc<CompartmentEngine>,
    storage: StorageArea,
    services: Arc<HostServices>,
    config: SupervisorConfig,
    sink: EventSink,
}

struct Progress {
    state: AppRunState,
    restarts: u32,
    last_failure: Option<String>,
}

struct AppSlot {
    image: AppImage,
    control: Arc<AppControl>,
    progress: Arc<Mutex<Progress>>,
    thread: Option<JoinHandle<()>>,
}

/// Runs the device's apps.
pub struct Supervisor {
    shared: Arc<Shared>,
    apps: Mutex<BTreeMap<Uuid, AppSlot>>,
}

impl Supervisor {
    /// A supervisor with no apps. `sink` receives every event, on the
    /// thread of the app it is about.
    pub fn new(
        engine: Arc<CompartmentEngine>,
        storage: StorageArea,
        services: Arc<HostServices>,
        config: SupervisorConfig,
        sink: EventSink,
    ) -> Supervisor {
        Supervisor {
            shared: Arc::new(Shared {
                engine,
                storage,
                services,
                config,
                sink,
            }),
            apps: Mutex::new(BTreeMap::new()),
        }
    }

    /// Starts an app in its own compartment.
    ///
    /// # Errors
    /// [`CompartmentError::AlreadyRunning`] if its component is running, and
    /// [`CompartmentError::Compile`] if its module does not compile (checked
    /// here, so that a bad image is refused rather than crash-looped).
    pub fn start(&self, image: AppImage) -> Result<(), CompartmentError> {
        let manifest = image.manifest();
        let id = manifest.component_id();
        // Compile (or fetch from the caches) before taking the lock, so a
        // cold compile does not hold up status() and the other apps.
        self.shared
            .engine
            .module(manifest.name(), image.digest(), image.wasm())?;
        let mut apps = self.apps.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = apps.get_mut(&id) {
            let finished = slot.thread.as_ref().is_none_or(|t| t.is_finished())
                || matches!(
                    slot.progress
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .state,
                    AppRunState::Exited(_) | AppRunState::Stopped
                );
            if !finished {
                return Err(CompartmentError::AlreadyRunning(id));
            }
            // Its thread has ended or is returning: wait for it.
            if let Some(thread) = slot.thread.take() {
                let _ = thread.join();
            }
        }
        let policy = AppPolicy::from_manifest(manifest);
        self.shared.services.channels.register(id, policy.peers());
        let control = Arc::new(AppControl::new(
            policy.id().clone(),
            Arc::clone(&self.shared.sink),
            self.shared.config.log_dir.as_deref(),
        ));
        let progress = Arc::new(Mutex::new(Progress {
            state: AppRunState::Running,
            restarts: 0,
            last_failure: None,
        }));
        let thread = {
            let shared = Arc::clone(&self.shared);
            let image = image.clone();
            let control = Arc::clone(&control);
            let progress = Arc::clone(&progress);
            std::thread::Builder::new()
                .name(format!("app-{}", manifest.name()))
                .spawn(move || supervise(&shared, &image, &control, &progress))
                .map_err(|e| CompartmentError::io("spawn a thread for", manifest.name(), e))?
        };
        apps.insert(
            id,
            AppSlot {
                image,
                control,
                progress,
                thread: Some(thread),
            },
        );
        Ok(())
    }

    /// Starts each image; returns the ones that could not be started, with why.
    pub fn start_all(&self, images: Vec<AppImage>) -> Vec<(AppId, CompartmentError)> {
        let mut refused = Vec::new();
        for image in images {
            let id = AppPolicy::from_manifest(image.manifest()).id().clone();
            if let Err(e) = self.start(image) {
                tracing::warn!(app = %id, error = %e, "app not started");
                refused.push((id, e));
            }
        }
        refused
    }

    /// Asks the app to stop (`should_stop` turns true), waits up to the grace
    /// period, then kills it. Returns whether it had to be killed.
    ///
    /// # Errors
    /// [`CompartmentError::UnknownApp`].
    pub fn stop(&self, component_id: Uuid) -> Result<bool, CompartmentError> {
        let (control, thread) = {
            let mut apps = self.apps.lock().unwrap_or_else(PoisonError::into_inner);
            let slot = apps
                .get_mut(&component_id)
                .ok_or(CompartmentError::UnknownApp(component_id))?;
            (Arc::clone(&slot.control), slot.thread.take())
        };
        let Some(thread) = thread else {
            return Ok(false);
        };
        control.request_stop();
        let grace = self.shared.config.grace;
        let killed = !wait_finished(&thread, grace);
        if killed {
            control.kill();
            // The kill lands at the next epoch tick in wasm; a host call in
            // progress ends within its own timeout.
            if !wait_finished(&thread, grace) {
                tracing::warn!(app = %control.id(), "app thread still in a host call after the kill; detaching it");
            }
        }
        if thread.is_finished() {
            let _ = thread.join();
        }
        self.shared.services.channels.unregister(component_id);
        control.emit(CompartmentEvent::Stopped {
            app: control.id().clone(),
            killed,
        });
        Ok(killed)
    }

    /// Replaces a running app with a new image of the same component (its
    /// storage is kept); starts it if it was not running.
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub fn update(&self, image: AppImage) -> Result<(), CompartmentError> {
        let id = image.manifest().component_id();
        let old_digest = {
            let apps = self.apps.lock().unwrap_or_else(PoisonError::into_inner);
            apps.get(&id).map(|slot| *slot.image.digest())
        };
        if let Some(digest) = old_digest {
            self.stop(id)?;
            if digest != *image.digest() {
                self.shared.engine.evict(&digest);
            }
        }
        self.start(image)
    }

    /// Stops every app (each with its grace period).
    pub fn stop_all(&self) {
        let ids: Vec<Uuid> = {
            let apps = self.apps.lock().unwrap_or_else(PoisonError::into_inner);
            apps.keys().copied().collect()
        };
        for id in ids {
            let _ = self.stop(id);
        }
    }

    /// Every app's status, by component ID.
    pub fn status(&self) -> Vec<AppStatus> {
        let apps = self.apps.lock().unwrap_or_else(PoisonError::into_inner);
        apps.values()
            .map(|slot| {
                let progress = slot.progress.lock().unwrap_or_else(PoisonError::into_inner);
                let (memory_bytes, memory_peak_bytes) = slot.control.memory();
                AppStatus {
                    app: slot.control.id().clone(),
                    version: slot.image.manifest().version().to_string(),
                    state: progress.state,
                    restarts: progress.restarts,
                    memory_bytes,
                    memory_peak_bytes,
                    cpu: slot.control.cpu(),
                    last_failure: progress.last_failure.clone(),
                    recent_events: slot.control.recent_events(),
                    output_lines: slot.control.output().1,
                    suppressed_reports: slot.control.suppressed(),
                }
            })
            .collect()
    }

    /// The last lines an app wrote to standard output and error.
    ///
    /// # Errors
    /// [`CompartmentError::UnknownApp`].
    pub fn output(&self, component_id: Uuid) -> Result<Vec<String>, CompartmentError> {
        let apps = self.apps.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = apps
            .get(&component_id)
            .ok_or(CompartmentError::UnknownApp(component_id))?;
        Ok(slot.control.output().0)
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.stop_all();
    }
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor").finish_non_exhaustive()
    }
}

fn wait_finished(thread: &JoinHandle<()>, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while !thread.is_finished() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

/// The app's thread: run, and restart after crashes until stopped.
fn supervise(
    shared: &Shared,
    image: &AppImage,
    control: &Arc<AppControl>,
    progress: &Mutex<Progress>,
) {
    let set = |change: &dyn Fn(&mut Progress)| {
        change(&mut progress.lock().unwrap_or_else(PoisonError::into_inner));
    };
    let cx = RunContext {
        engine: &shared.engine,
        services: &shared.services,
        storage: &shared.storage,
        settings: &shared.config.run,
    };
    let mut failures: u32 = 0;
    loop {
        if control.stop_requested() {
            set(&|p| p.state = AppRunState::Stopped);
            return;
        }
        let attempt = progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .restarts;
        set(&|p| p.state = AppRunState::Running);
        control.emit(CompartmentEvent::Started {
            app: control.id().clone(),
            attempt,
        });
        let started = Instant::now();
        let outcome = run_once(&cx, image, control);
        control.set_memory(0);
        let failure = match outcome {
            Ok(RunOutcome::Exited(code)) => {
                let done = code == 0 || control.stop_requested();
                if done {
                    // State first: whoever sees the event may start it again.
                    let state = if control.stop_requested() {
                        AppRunState::Stopped
                    } else {
                        AppRunState::Exited(code)
                    };
                    set(&|p| p.state = state);
                }
                control.emit(CompartmentEvent::Exited {
                    app: control.id().clone(),
                    code,
                });
                if done {
                    return;
                }
                format!("exited with code {code}")
            }
            Ok(RunOutcome::Killed) => {
                set(&|p| p.state = AppRunState::Stopped);
                return;
            }
            Ok(RunOutcome::Crashed {
                reason, backtrace, ..
            }) => {
                control.emit(CompartmentEvent::Crashed {
                    app: control.id().clone(),
                    reason: reason.clone(),
                    backtrace,
                });
                reason
            }
            Err(e) => {
                let reason = e.to_string();
                control.emit(CompartmentEvent::Crashed {
                    app: control.id().clone(),
                    reason: reason.clone(),
                    backtrace: Vec::new(),
                });
                reason
            }
        };
        if control.stop_requested() {
            set(&|p| p.state = AppRunState::Stopped);
            return;
        }
        if started.elapsed() >= shared.config.stable_after {
            failures = 0;
        }
        let delay = backoff(
            failures,
            shared.config.min_backoff,
            shared.config.max_backoff,
        );
        failures = failures.saturating_add(1);
        let restarts = {
            let mut p = progress.lock().unwrap_or_else(PoisonError::into_inner);
            p.state = AppRunState::BackingOff;
            p.last_failure = Some(failure);
            p.restarts = p.restarts.saturating_add(1);
            p.restarts
        };
        control.emit(CompartmentEvent::Restarting {
            app: control.id().clone(),
            restarts,
            delay,
        });
        let until = Instant::now() + delay;
        while Instant::now() < until && !control.stop_requested() {
            std::thread::sleep(Duration::from_millis(10).min(delay));
        }
    }
}
