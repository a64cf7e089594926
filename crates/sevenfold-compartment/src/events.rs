//! What happened in a compartment: the typed events the supervisor hands to
//! the agent (for its log, its status and, later, the failure journal).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

/// Which app an event is about: its component ID (stable across versions)
/// and its name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AppId {
    /// `ComponentId` from the manifest.
    pub component_id: Uuid,
    /// `Name` from the manifest.
    pub name: String,
}

impl fmt::Display for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.component_id)
    }
}

/// A resource limit the host enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Limit {
    /// `MemoryKB`: linear memory (and table) growth.
    Memory,
    /// The CPU budget: wasm ran without entering the host for too long.
    Cpu,
    /// `MutableStorage.SizeKB`: bytes in the app's storage directory.
    Storage,
}

impl Limit {
    /// The manifest's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Memory => "MemoryKB",
            Limit::Cpu => "CpuPercent",
            Limit::Storage => "MutableStorage",
        }
    }
}

/// A door of the manifest an app knocked on without having it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Capability {
    /// Outbound connection to a host not in `AllowedConnections`.
    AllowedConnections,
    /// Listening on a port not in `AllowedTcpServerPorts`.
    AllowedTcpServerPorts,
    /// A path outside the app's storage (or storage not granted).
    MutableStorage,
    /// A GPIO pin not in `Gpio`.
    Gpio,
    /// A UART not in `Uart`.
    Uart,
    /// A channel to an app that is not listed, or does not list this one.
    AllowedApplicationConnections,
    /// The device certificate without `DeviceAuthentication`.
    DeviceAuthentication,
}

impl Capability {
    /// The manifest's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::AllowedConnections => "AllowedConnections",
            Capability::AllowedTcpServerPorts => "AllowedTcpServerPorts",
            Capability::MutableStorage => "MutableStorage",
            Capability::Gpio => "Gpio",
            Capability::Uart => "Uart",
            Capability::AllowedApplicationConnections => "AllowedApplicationConnections",
            Capability::DeviceAuthentication => "DeviceAuthentication",
        }
    }
}

/// Everything the supervisor reports about an app. Crashes, traps, limit
/// hits and denials are failures the journal records; the rest is the
/// lifecycle around them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CompartmentEvent {
    /// An instance was created and its `_start` called.
    Started {
        /// The app.
        app: AppId,
        /// Which start this is (0 for the first, then the restart count).
        attempt: u32,
    },
    /// `_start` returned, or the app called `proc_exit`.
    Exited {
        /// The app.
        app: AppId,
        /// Exit code (0 for a normal return).
        code: i32,
    },
    /// The app trapped or could not be instantiated; it is restarted with
    /// back-off.
    Crashed {
        /// The app.
        app: AppId,
        /// What went wrong (the trap message).
        reason: String,
        /// The wasm backtrace, innermost frame first (empty when none).
        backtrace: Vec<String>,
    },
    /// The app reached a limit; what happens next (a failed write, a trap)
    /// follows from the limit.
    LimitHit {
        /// The app.
        app: AppId,
        /// Which limit.
        limit: Limit,
        /// Numbers, for people.
        detail: String,
    },
    /// The app asked for something its manifest does not grant; the call
    /// failed in the app.
    Denied {
        /// The app.
        app: AppId,
        /// Which capability it lacks.
        capability: Capability,
        /// What it asked for (a host, a pin, a path).
        detail: String,
    },
    /// The app will be started again after `delay`.
    Restarting {
        /// The app.
        app: AppId,
        /// Restarts so far, including this one.
        restarts: u32,
        /// The back-off delay.
        delay: Duration,
    },
    /// The supervisor stopped the app.
    Stopped {
        /// The app.
        app: AppId,
        /// Whether it had to be killed after the grace period.
        killed: bool,
    },
}

impl CompartmentEvent {
    /// The app the event is about.
    pub fn app(&self) -> &AppId {
        match self {
            CompartmentEvent::Started { app, .. }
            | CompartmentEvent::Exited { app, .. }
            | CompartmentEvent::Crashed { app, .. }
            | CompartmentEvent::LimitHit { app, .. }
            | CompartmentEvent::Denied { app, .. }
            | CompartmentEvent::Restarting { app, .. }
            | CompartmentEvent::Stopped { app, .. } => app,
        }
    }

    /// Whether this is a failure the journal must keep (crash, trap, limit
    /// hit, denial, non-zero exit).
    pub fn is_failure(&self) -> bool {
        match self {
            CompartmentEvent::Crashed { .. }
            | CompartmentEvent::LimitHit { .. }
            | CompartmentEvent::Denied { .. } => true,
            CompartmentEvent::Exited { code, .. } => *code != 0,
            _ => false,
        }
    }
}

impl fmt::Display for CompartmentEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompartmentEvent::Started { app, attempt } => {
                write!(f, "{app}: started (attempt {attempt})")
            }
            CompartmentEvent::Exited { app, code } => write!(f, "{app}: exited with code {code}"),
            CompartmentEvent::Crashed {
                app,
                reason,
                backtrace,
            } => {
                write!(f, "{app}: crashed: {reason}")?;
                for frame in backtrace {
                    write!(f, "\n    at {frame}")?;
                }
                Ok(())
            }
            CompartmentEvent::LimitHit { app, limit, detail } => {
                write!(f, "{app}: {} limit hit: {detail}", limit.as_str())
            }
            CompartmentEvent::Denied {
                app,
                capability,
                detail,
            } => write!(
                f,
                "{app}: denied ({} not granted): {detail}",
                capability.as_str()
            ),
            CompartmentEvent::Restarting {
                app,
                restarts,
                delay,
            } => write!(f, "{app}: restart {restarts} in {} ms", delay.as_millis()),
            CompartmentEvent::Stopped { app, killed } => {
                if *killed {
                    write!(f, "{app}: killed after the grace period")
                } else {
                    write!(f, "{app}: stopped")
                }
            }
        }
    }
}

/// Where events go: called on the thread that runs the app, so it must be
/// quick (hand the event to a channel or a journal writer).
pub type EventSink = Arc<dyn Fn(&CompartmentEvent) + Send + Sync>;
