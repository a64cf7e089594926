//! The tiny supervisor behind `sevenfold agent supervise`: it runs the
//! active runtime slot's executable (`agent run`), health-checks a runtime
//! on trial, and rolls a failed one back.
//!
//! The loop: start the active slot's executable (no slot yet: the factory
//! runtime, the supervisor's own executable). If that slot is on trial and
//! the process exits within the health-check period, the slot is rolled
//! back and the previous runtime is started at once; if it is still up
//! when the period ends, the trial is committed and the runtime's
//! anti-rollback counter raised to its security version. After that, an
//! exit with [`RESTART_EXIT_CODE`] (the runtime installed a new runtime)
//! starts the active slot again at once; any other exit restarts it after a
//! back-off (1 s doubling to 30 s). On a stop request (SIGTERM/SIGINT to
//! the supervisor) the runtime gets SIGTERM and the supervisor returns
//! once it has exited.
//!
//! The supervisor does no network I/O and loads no app: it is small so
//! that it rarely needs an update itself (it is the factory binary, updated
//! with the operating system; systemd's `Restart=` supervises it).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::slots::RuntimeSlots;
use crate::update::Slot;
use crate::{AgentError, StateDir};

/// Exit code with which a runtime asks its supervisor to start the active
/// slot again (it has just installed a new runtime there).
pub const RESTART_EXIT_CODE: i32 = 75;
/// Set in the runtime's environment when a supervisor runs it.
pub const SUPERVISED_ENV: &str = "SEVENFOLD_SUPERVISED";
/// The slot the supervisor started (`a`, `b` or `factory`), in the
/// runtime's environment: a runtime on trial knows it is the trial.
pub const RUNTIME_SLOT_ENV: &str = "SEVENFOLD_RUNTIME_SLOT";

const POLL: Duration = Duration::from_millis(100);
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A run this long resets the back-off.
const STABLE_RUN: Duration = Duration::from_secs(60);
/// How long a stopping runtime gets before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(20);

/// How to supervise.
#[derive(Clone, Debug)]
pub struct SuperviseOptions {
    /// The factory runtime, run while no slot is active.
    pub factory: PathBuf,
    /// Arguments of the runtime (`agent run --state-dir …`).
    pub args: Vec<OsString>,
    /// How long a runtime on trial must stay up to be committed.
    pub health_period: Duration,
}

/// What the supervisor did, for its caller to print.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SupervisorEvent {
    /// A runtime was started.
    Started {
        /// Its slot (`None`: the factory runtime).
        slot: Option<Slot>,
        /// Its process ID.
        pid: u32,
        /// Whether it is on trial.
        trial: bool,
    },
    /// A trial passed the health check and was committed.
    Committed {
        /// The slot.
        slot: Slot,
        /// The runtime's version.
        version: String,
    },
    /// A trial failed and was rolled back.
    RolledBack {
        /// Why.
        reason: String,
    },
    /// A committed runtime exited; it is started again.
    Exited {
        /// How it ended.
        status: String,
    },
}

fn describe(status: ExitStatus) -> String {
    match status.code() {
        Some(code) => format!("exit code {code}"),
        None => format!("{status}"),
    }
}

/// Sends SIGTERM, waits up to [`STOP_GRACE`], then kills.
fn terminate(child: &mut Child) {
    let pid = rustix::process::Pid::from_child(child);
    if rustix::process::kill_process(pid, rustix::process::Signal::TERM).is_ok() {
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(POLL);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Waits until the child exits or `stop` is set; `None` when stopped.
fn wait(child: &mut Child, stop: &AtomicBool, until: Option<Instant>) -> std::io::Result<Wait> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Wait::Exited(status));
        }
        if stop.load(Ordering::SeqCst) {
            return Ok(Wait::Stopped);
        }
        if until.is_some_and(|t| Instant::now() >= t) {
            return Ok(Wait::StillUp);
        }
        std::thread::sleep(POLL);
    }
}

enum Wait {
    Exited(ExitStatus),
    Stopped,
    StillUp,
}

fn sleep_unless_stopped(pause: Duration, stop: &AtomicBool) {
    let deadline = Instant::now() + pause;
    while Instant::now() < deadline && !stop.load(Ordering::SeqCst) {
        std::thread::sleep(POLL);
    }
}

enum Trial {
    Passed(String),
    Failed(String),
    Stopped,
}

/// Watches a runtime on trial for the health-check period: rolls it back
/// if it exits, commits it (and raises its counter) if it stays up.
#[allow(clippy::too_many_arguments)]
fn health_check(
    state: &StateDir,
    slots: &RuntimeSlots,
    slot: &super::slots::RuntimeSlotState,
    active: Slot,
    options: &SuperviseOptions,
    started: Instant,
    stop: &AtomicBool,
    child: &mut Child,
) -> Result<Trial, AgentError> {
    let exe = slots.executable(active);
    let until = Some(started + options.health_period);
    match wait(child, stop, until).map_err(|e| AgentError::io("watch", &exe, e))? {
        Wait::Exited(status) => {
            let reason = format!(
                "the new runtime {} exited ({}) {:.1} s after it started, within the {} s health check; rolled back",
                slot.version.as_deref().unwrap_or("?"),
                describe(status),
                started.elapsed().as_secs_f64(),
                options.health_period.as_secs()
            );
            tracing::warn!(%reason, "runtime update failed its health check");
            slots.rollback(&reason)?;
            Ok(Trial::Failed(reason))
        }
        Wait::Stopped => {
            // Undecided: the trial stays, and is tried again at the next start.
            terminate(child);
            Ok(Trial::Stopped)
        }
        Wait::StillUp => {
            let committed = slots.commit()?;
            if let (Some(component), Some(version)) =
                (&committed.component_id, committed.security_version)
            {
                let rot = state.open_rot()?;
                crate::update::raise_counter(state, rot.as_ref(), component, version)?;
            }
            let version = committed.version.unwrap_or_default();
            tracing::info!(%version, "runtime update passed its health check; committed");
            Ok(Trial::Passed(version))
        }
    }
}

/// Runs the supervisor loop until `stop` is set; see the module documentation.
pub fn supervise(
    state: &StateDir,
    options: &SuperviseOptions,
    stop: &AtomicBool,
    on_event: &mut dyn FnMut(&SupervisorEvent),
) -> Result<(), AgentError> {
    let slots = RuntimeSlots::new(state);
    let mut backoff = FIRST_BACKOFF;
    while !stop.load(Ordering::SeqCst) {
        let slot = slots.load()?;
        let exe = slot
            .active
            .map_or_else(|| options.factory.clone(), |s| slots.executable(s));
        let started = Instant::now();
        let spawned = Command::new(&exe)
            .args(&options.args)
            .env(SUPERVISED_ENV, "1")
            .env(RUNTIME_SLOT_ENV, slot.active.map_or("factory", Slot::name))
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) if slot.trial => {
                let reason = format!("the new runtime could not be started: {e}");
                slots.rollback(&reason)?;
                on_event(&SupervisorEvent::RolledBack { reason });
                continue;
            }
            Err(e) => return Err(AgentError::io("start", &exe, e)),
        };
        on_event(&SupervisorEvent::Started {
            slot: slot.active,
            pid: child.id(),
            trial: slot.trial,
        });
        if let (true, Some(active)) = (slot.trial, slot.active) {
            let checked = health_check(
                state, &slots, &slot, active, options, started, stop, &mut child,
            );
            match checked {
                Ok(Trial::Passed(version)) => on_event(&SupervisorEvent::Committed {
                    slot: active,
                    version,
                }),
                Ok(Trial::Failed(reason)) => {
                    on_event(&SupervisorEvent::RolledBack { reason });
                    continue;
                }
                Ok(Trial::Stopped) => return Ok(()),
                Err(e) => {
                    // Never leave a runtime behind without its supervisor.
                    terminate(&mut child);
                    return Err(e);
                }
            }
        }
        let io = |e| AgentError::io("watch", &exe, e);
        match wait(&mut child, stop, None).map_err(io)? {
            Wait::Exited(status) if status.code() == Some(RESTART_EXIT_CODE) => {
                backoff = FIRST_BACKOFF;
            }
            Wait::Exited(status) => {
                on_event(&SupervisorEvent::Exited {
                    status: describe(status),
                });
                if started.elapsed() >= STABLE_RUN {
                    backoff = FIRST_BACKOFF;
                }
                sleep_unless_stopped(backoff, stop);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Wait::Stopped | Wait::StillUp => {
                terminate(&mut child);
                return Ok(());
            }
        }
    }
    Ok(())
}
