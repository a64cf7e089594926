//! What one app's store holds.

use std::path::PathBuf;
use std::sync::Arc;

use wasmtime_wasi::p1::WasiP1Ctx;

use crate::control::AppControl;
use crate::cpu::CpuMeter;
use crate::hostapi::{Handles, HostServices};
use crate::limiter::MemoryLimiter;
use crate::policy::AppPolicy;
use crate::wasi_shadow::Trampoline;

/// The data of an app's [`wasmtime::Store`].
pub(crate) struct AppState {
    pub(crate) wasi: WasiP1Ctx,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) cpu: CpuMeter,
    pub(crate) control: Arc<AppControl>,
    pub(crate) policy: Arc<AppPolicy>,
    pub(crate) services: Arc<HostServices>,
    pub(crate) storage_dir: Option<PathBuf>,
    pub(crate) handles: Handles,
    /// Set once the trampoline is attached (right after instantiation).
    pub(crate) trampoline: Option<Trampoline>,
}
