//! Dynamic compartments: each application runs in its own WebAssembly
//! sandbox, and its manifest's capabilities are the only doors.
//!
//! An app is a `wasm32-wasip1` module from a verified image package
//! ([`AppImage`]). The [`Supervisor`] runs each app on its own thread, in its
//! own wasmtime store and instance of the one [`CompartmentEngine`], and
//! restarts it with exponential back-off when it crashes. What the host
//! enforces, from the manifest ([`AppPolicy`]), deny by default:
//!
//! | capability | how |
//! |---|---|
//! | `MemoryKB` | a [`wasmtime::ResourceLimiter`]: growing past it traps that app |
//! | `CpuPercent` | epoch interruption every [`TICK`]: an app over its share is paused; one that runs wasm for longer than the budget without entering the host is stopped |
//! | `MutableStorage` | its own directory (by component ID) preopened at `/data`, its only file system; the writing WASI calls are shadowed by wrappers that measure usage and return `NOSPC` past the quota |
//! | `AllowedConnections`, `AllowedTcpServerPorts` | TCP only through the host API, which resolves names itself and checks host and port as written |
//! | `Gpio`, `Uart` | the host API over a [`Peripherals`] backend ([`SimulatedPeripherals`], [`LinuxPeripherals`]) |
//! | `AllowedApplicationConnections` | channels through the [`ChannelHub`], only when both list each other |
//! | `DeviceAuthentication` | the device certificate (never the key) |
//!
//! Everything an app does that matters to the device — start, exit, crash
//! (with its wasm backtrace), limit hit, denial, restart, stop — is a typed
//! [`CompartmentEvent`] handed to the [`EventSink`] with the app's component
//! ID, logged with `tracing`, and kept in [`AppStatus`].
//!
//! Key decision: **one store per app, one thread per app, synchronous
//! wasmtime.** Stores share nothing but the engine's compiled code, so a
//! trap, a limit or a kill unwinds exactly one app; a blocked or spinning app
//! holds only its own thread, and epoch interruption reaches it there. This
//! crate has no async runtime of its own and knows nothing of the service.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use sevenfold_compartment::*;
//!
//! let engine = Arc::new(CompartmentEngine::new("/var/lib/sevenfold/module-cache".as_ref())?);
//! let storage = StorageArea::new("/var/lib/sevenfold/app-storage".as_ref())?;
//! let services = Arc::new(HostServices {
//!     peripherals: Arc::new(SimulatedPeripherals::new()),
//!     channels: ChannelHub::new(),
//!     certificate: None,
//!     signer: None,
//!     listen_ip: "0.0.0.0".parse()?,
//! });
//! let sink: EventSink = Arc::new(|event| eprintln!("{event}"));
//! let supervisor = Supervisor::new(engine, storage, services, SupervisorConfig::default(), sink);
//! // The package digest boot measured (`VerifiedImage::package_digest`).
//! let measured = sevenfold_rot::Digest::default();
//! let image = AppImage::load_measured("app.imagepackage".as_ref(), &measured)?;
//! supervisor.start(image)?;
//! for app in supervisor.status() {
//!     println!("{} {} restarts={}", app.app, app.state.as_str(), app.restarts);
//! }
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod control;
mod cpu;
mod engine;
mod error;
mod events;
mod guest;
pub mod hostapi;
mod image;
mod limiter;
mod policy;
mod run;
mod state;
mod storage;
mod supervisor;
mod wasi_shadow;

pub use control::{LOG_LINES, MAX_LINE, MAX_LOG_FILE, MAX_REPORTS_PER_RUN, RECENT_EVENTS};
pub use cpu::WINDOW;
pub use engine::{CompartmentEngine, MAX_BACKTRACE_FRAMES, MAX_WASM_STACK, TICK};
pub use error::CompartmentError;
pub use events::{AppId, Capability, CompartmentEvent, EventSink, Limit};
pub use hostapi::channels::{ChannelError, ChannelHub, MAX_MESSAGE, MAX_QUEUED};
pub use hostapi::peripherals::{LinuxPeripherals, Peripherals, SimulatedPeripherals, UartPort};
pub use hostapi::{DeviceSigner, HostServices, MAX_SIGNED_MESSAGE};
pub use image::AppImage;
pub use policy::{AppPolicy, DEFAULT_MEMORY_KB, MAX_TABLE_ELEMENTS};
pub use run::{RunOutcome, RunSettings, STORAGE_MOUNT};
pub use storage::{usage as storage_usage, StorageArea, ENTRY_COST};
pub use supervisor::{backoff, AppRunState, AppStatus, Supervisor, SupervisorConfig};
