//! One run of one app: a fresh store and instance, `_start`, and what ended it.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::{Linker, Store, Trap, UpdateDeadline, WasmBacktrace};
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

use crate::control::AppControl;
use crate::cpu::CpuMeter;
use crate::engine::CompartmentEngine;
use crate::error::{CompartmentError, HostTrap};
use crate::events::{CompartmentEvent, Limit};
use crate::hostapi::{self, Handles, HostServices};
use crate::image::AppImage;
use crate::limiter::MemoryLimiter;
use crate::policy::AppPolicy;
use crate::state::AppState;
use crate::storage::StorageArea;
use crate::wasi_shadow;

/// Where the app's storage appears in its file system.
pub const STORAGE_MOUNT: &str = "/data";

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RunOutcome {
    /// `_start` returned (code 0) or the app called `proc_exit(code)`.
    Exited(i32),
    /// The app trapped, hit a limit, or could not be instantiated.
    Crashed {
        /// What happened.
        reason: String,
        /// The limit behind it, if a limit stopped it.
        limit: Option<Limit>,
        /// The wasm backtrace, innermost frame first.
        backtrace: Vec<String>,
    },
    /// The supervisor killed it after its grace period.
    Killed,
}

/// Everything a run needs besides the image.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// Longest an app may run wasm without entering the host.
    pub cpu_budget: Duration,
}

impl Default for RunSettings {
    fn default() -> Self {
        RunSettings {
            cpu_budget: Duration::from_secs(5),
        }
    }
}

pub(crate) struct RunContext<'a> {
    pub(crate) engine: &'a CompartmentEngine,
    pub(crate) services: &'a Arc<HostServices>,
    pub(crate) storage: &'a StorageArea,
    pub(crate) settings: &'a RunSettings,
}

/// Runs `image` once to its end. Errors are the host's (storage, compile);
/// whatever the app does is in the [`RunOutcome`].
pub(crate) fn run_once(
    cx: &RunContext<'_>,
    image: &AppImage,
    control: &Arc<AppControl>,
) -> Result<RunOutcome, CompartmentError> {
    let manifest = image.manifest();
    let policy = Arc::new(AppPolicy::from_manifest(manifest));
    let module = cx
        .engine
        .module(manifest.name(), image.digest(), image.wasm())?;

    let mut wasi = WasiCtxBuilder::new();
    wasi.arg(manifest.name())
        .envs(image.env())
        .allow_blocking_current_thread(true)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    let storage_dir = match policy.storage_bytes() {
        Some(_) => {
            let dir = cx.storage.dir_for(manifest.component_id())?;
            wasi.preopened_dir(&dir, STORAGE_MOUNT, FsPerms::ReadWrite)
                .map_err(|e| CompartmentError::Io {
                    action: "preopen",
                    path: dir.clone(),
                    source: std::io::Error::other(e.to_string()),
                })?;
            Some(dir)
        }
        None => None,
    };

    let state = AppState {
        wasi: wasi.build_p1(),
        limiter: MemoryLimiter::new(policy.memory_bytes(), Arc::clone(control)),
        cpu: CpuMeter::new(policy.cpu_percent(), cx.settings.cpu_budget),
        control: Arc::clone(control),
        policy: Arc::clone(&policy),
        services: Arc::clone(cx.services),
        storage_dir,
        handles: Handles::default(),
        trampoline: None,
    };
    let mut store = Store::new(cx.engine.engine(), state);
    store.limiter(|s| &mut s.limiter);
    store.call_hook(|mut ctx, hook| {
        ctx.data_mut().cpu.hook(hook);
        Ok(())
    });
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|mut ctx| {
        let state = ctx.data_mut();
        if state.control.killed() {
            return Err(wasmtime::Error::new(HostTrap::Killed));
        }
        if let Err(trap) = state.cpu.tick() {
            state.control.emit(CompartmentEvent::LimitHit {
                app: state.control.id().clone(),
                limit: Limit::Cpu,
                detail: trap.to_string(),
            });
            return Err(wasmtime::Error::new(trap));
        }
        Ok(UpdateDeadline::Continue(1))
    });

    let result = (|| -> wasmtime::Result<()> {
        let mut linker: Linker<AppState> = Linker::new(cx.engine.engine());
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |s| &mut s.wasi)?;
        let originals = wasi_shadow::install(&mut linker, &mut store)?;
        hostapi::add_to_linker(&mut linker)?;
        let instance = linker.instantiate(&mut store, &module)?;
        wasi_shadow::attach(&mut store, cx.engine.trampoline(), &instance, originals)?;
        let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
        start.call(&mut store, ())
    })();
    control.add_cpu(store.data().cpu.total());
    Ok(classify(result))
}

fn classify(result: wasmtime::Result<()>) -> RunOutcome {
    let err = match result {
        Ok(()) => return RunOutcome::Exited(0),
        Err(err) => err,
    };
    if let Some(exit) = err.downcast_ref::<I32Exit>() {
        return RunOutcome::Exited(exit.0);
    }
    let limit = match err.downcast_ref::<HostTrap>() {
        Some(HostTrap::Killed) => return RunOutcome::Killed,
        Some(HostTrap::Memory { .. } | HostTrap::Table { .. }) => Some(Limit::Memory),
        Some(HostTrap::Cpu { .. }) => Some(Limit::Cpu),
        None => None,
    };
    let reason = match (err.downcast_ref::<HostTrap>(), err.downcast_ref::<Trap>()) {
        (Some(host), _) => host.to_string(),
        (None, Some(trap)) => format!("wasm trap: {trap}"),
        (None, None) => format!("{err:#}"),
    };
    let backtrace = err
        .downcast_ref::<WasmBacktrace>()
        .map(|bt| {
            bt.frames()
                .iter()
                .map(|frame| {
                    // Demangled without the hash, so the same function has
                    // the same name in every build (journal signatures group by it).
                    let name = frame.func_name().map_or_else(
                        || format!("<func {}>", frame.func_index()),
                        |raw| format!("{:#}", rustc_demangle::demangle(raw)),
                    );
                    match frame.module_offset() {
                        Some(offset) => format!("{name} @ {offset:#x}"),
                        None => name,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    RunOutcome::Crashed {
        reason,
        limit,
        backtrace,
    }
}
