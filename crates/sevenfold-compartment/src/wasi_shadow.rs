//! The host's own versions of the WASI preview-1 calls that write: they
//! capture standard output, enforce the storage quota, and report attempts
//! to leave the storage directory. Everything else of WASI is wasmtime-wasi's.
//!
//! wasmtime-wasi 48 has no hook for a write quota, so the linker is given
//! the standard preview-1 functions first, the originals are taken out of
//! it for this app's store, and same-named wrappers shadow them: a wrapper
//! checks, then calls the original. The app cannot reach the originals, so
//! the quota is enforced by the host, not by the app's good manners.
//!
//! The originals find the app's memory through their caller's `memory`
//! export, so they must be called *from wasm*: a tiny trampoline module
//! (instantiated in the app's store right after the app, importing the app's
//! memory and re-exporting it) forwards each call. The app never sees the
//! trampoline; it is [`TRAMPOLINE`]'s text, compiled once per engine.
//!
//! Usage is measured (not estimated) before each growing write; a write that
//! would take it past `MutableStorage.SizeKB` fails whole with `NOSPC`. A
//! write that overwrites bytes in place is still charged in full for that
//! check — the error is on the side of the quota.

use wasmtime::{Caller, Extern, Instance, Linker, Module, Store, TypedFunc};

use crate::events::{Capability, CompartmentEvent, Limit};
use crate::guest;
use crate::state::AppState;
use crate::storage::{self, ENTRY_COST};

const MODULE: &str = "wasi_snapshot_preview1";

/// WASI errno values used here.
pub(crate) mod errno {
    pub(crate) const SUCCESS: i32 = 0;
    pub(crate) const FAULT: i32 = 21;
    pub(crate) const INVAL: i32 = 28;
    pub(crate) const NOSPC: i32 = 51;
    pub(crate) const PERM: i32 = 63;
    pub(crate) const NOTCAPABLE: i32 = 76;
}

/// `oflags::creat`.
const O_CREAT: i32 = 1;
/// Most standard output taken from one `fd_write`.
const MAX_STDOUT_WRITE: usize = 64 * 1024;
/// Longest path read for a report.
const MAX_PATH: usize = 4096;

type FdWrite = TypedFunc<(i32, i32, i32, i32), i32>;
type FdPwrite = TypedFunc<(i32, i32, i32, i64, i32), i32>;
type FdAllocate = TypedFunc<(i32, i64, i64), i32>;
type FdSetSize = TypedFunc<(i32, i64), i32>;
type PathOpen = TypedFunc<(i32, i32, i32, i32, i32, i64, i64, i32, i32), i32>;
type PathCreateDirectory = TypedFunc<(i32, i32, i32), i32>;
type PathSymlink = TypedFunc<(i32, i32, i32, i32, i32), i32>;

/// The shadowed functions and their wasm parameter types.
const SHADOWED: [(&str, &str); 7] = [
    ("fd_write", "i32 i32 i32 i32"),
    ("fd_pwrite", "i32 i32 i32 i64 i32"),
    ("fd_allocate", "i32 i64 i64"),
    ("fd_filestat_set_size", "i32 i64"),
    ("path_open", "i32 i32 i32 i32 i32 i64 i64 i32 i32"),
    ("path_create_directory", "i32 i32 i32"),
    ("path_symlink", "i32 i32 i32 i32 i32"),
];

/// The trampoline module's text: imports the app's memory and the original
/// functions; exports the memory and one forwarder per function.
pub(crate) fn trampoline_wat() -> String {
    let mut wat = String::from("(module\n  (import \"app\" \"memory\" (memory 0))\n");
    for (i, (name, params)) in SHADOWED.iter().enumerate() {
        wat.push_str(&format!(
            "  (import \"wasi\" \"{name}\" (func $f{i} (param {params}) (result i32)))\n"
        ));
    }
    wat.push_str("  (export \"memory\" (memory 0))\n");
    for (i, (name, params)) in SHADOWED.iter().enumerate() {
        let gets: String = (0..params.split(' ').count())
            .map(|n| format!(" local.get {n}"))
            .collect();
        wat.push_str(&format!(
            "  (func (export \"{name}\") (param {params}) (result i32){gets} call $f{i})\n"
        ));
    }
    wat.push(')');
    wat
}

/// The originals, for one app's store, in [`SHADOWED`] order.
pub(crate) struct Originals(Vec<Extern>);

/// Typed forwarders of the trampoline instance.
#[derive(Clone)]
pub(crate) struct Trampoline {
    fd_write: FdWrite,
    fd_pwrite: FdPwrite,
    fd_allocate: FdAllocate,
    fd_set_size: FdSetSize,
    path_open: PathOpen,
    create_dir: PathCreateDirectory,
    symlink: PathSymlink,
}

/// Replaces the writing calls of `linker` (which already holds wasmtime-wasi's
/// preview 1) with the host's wrappers; returns the originals for [`attach`].
pub(crate) fn install(
    linker: &mut Linker<AppState>,
    store: &mut Store<AppState>,
) -> wasmtime::Result<Originals> {
    let mut originals = Vec::with_capacity(SHADOWED.len());
    for (name, _) in SHADOWED {
        originals.push(linker.get(&mut *store, MODULE, name)?);
    }
    linker.allow_shadowing(true);

    linker.func_wrap(
        MODULE,
        "fd_write",
        |mut caller: Caller<'_, AppState>, fd: i32, iovs: i32, len: i32, nwritten: i32| {
            if fd == 1 || fd == 2 {
                return Ok(capture_output(&mut caller, iovs, len, nwritten));
            }
            let Some(t) = trampoline(&caller) else {
                return Ok(errno::FAULT);
            };
            match written_len(&mut caller, iovs, len) {
                Err(code) => Ok(code),
                Ok(adding) if over_quota(&mut caller, adding, "write") => Ok(errno::NOSPC),
                Ok(_) => t.fd_write.call(&mut caller, (fd, iovs, len, nwritten)),
            }
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_pwrite",
        |mut caller: Caller<'_, AppState>,
         fd: i32,
         iovs: i32,
         len: i32,
         offset: i64,
         nwritten: i32| {
            let Some(t) = trampoline(&caller) else {
                return Ok(errno::FAULT);
            };
            match written_len(&mut caller, iovs, len) {
                Err(code) => Ok(code),
                Ok(adding) if over_quota(&mut caller, adding, "pwrite") => Ok(errno::NOSPC),
                Ok(_) => t
                    .fd_pwrite
                    .call(&mut caller, (fd, iovs, len, offset, nwritten)),
            }
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_allocate",
        |mut caller: Caller<'_, AppState>, fd: i32, offset: i64, len: i64| {
            let Some(t) = trampoline(&caller) else {
                return Ok(errno::FAULT);
            };
            let adding = u64::try_from(len).unwrap_or(u64::MAX);
            if over_quota(&mut caller, adding, "allocate") {
                return Ok(errno::NOSPC);
            }
            t.fd_allocate.call(&mut caller, (fd, offset, len))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_filestat_set_size",
        |mut caller: Caller<'_, AppState>, fd: i32, size: i64| {
            let Some(t) = trampoline(&caller) else {
                return Ok(errno::FAULT);
            };
            let adding = u64::try_from(size).unwrap_or(u64::MAX);
            if adding > 0 && over_quota(&mut caller, adding, "set size") {
                return Ok(errno::NOSPC);
            }
            t.fd_set_size.call(&mut caller, (fd, size))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "path_open",
        |mut caller: Caller<'_, AppState>,
         fd: i32,
         dirflags: i32,
         path: i32,
         path_len: i32,
         oflags: i32,
         base: i64,
         inheriting: i64,
         fdflags: i32,
         opened: i32| {
            let Some(t) = trampoline(&caller) else {
                return Ok(errno::FAULT);
            };
            if oflags & O_CREAT != 0 && over_quota(&mut caller, ENTRY_COST, "create") {
                return Ok(errno::NOSPC);
            }
            let code = t.path_open.call(
                &mut caller,
                (
                    fd, dirflags, path, path_len, oflags, base, inheriting, fdflags, opened,
                ),
            )?;
            report_escape(&mut caller, code, path, path_len);
            Ok(code)
        },
    )?;
    linker.func_wrap(
        MODULE,
        "path_create_directory",
        |mut caller: Caller<'_, AppState>, fd: i32, path: i32, path_len: i32| {
            let Some(t) = trampoline(&caller) else {
                return Ok(errno::FAULT);
            };
            if over_quota(&mut caller, ENTRY_COST, "mkdir") {
                return Ok(errno::NOSPC);
            }
            let code = t.create_dir.call(&mut caller, (fd, path, path_len))?;
            report_escape(&mut caller, code, path, path_len);
            Ok(code)
        },
    )?;
    linker.func_wrap(
        MODULE,
        "path_symlink",
        |mut caller: Caller<'_, AppState>,
         old: i32,
         old_len: i32,
         fd: i32,
         new: i32,
         new_len: i32| {
            let Some(t) = trampoline(&caller) else {
                return Ok(errno::FAULT);
            };
            if over_quota(&mut caller, ENTRY_COST, "symlink") {
                return Ok(errno::NOSPC);
            }
            let code = t
                .symlink
                .call(&mut caller, (old, old_len, fd, new, new_len))?;
            report_escape(&mut caller, code, new, new_len);
            Ok(code)
        },
    )?;
    linker.allow_shadowing(false);
    Ok(Originals(originals))
}

/// Instantiates the trampoline over the app's memory, so the wrappers can
/// reach the originals. Call right after instantiating the app.
pub(crate) fn attach(
    store: &mut Store<AppState>,
    trampoline_module: &Module,
    app: &Instance,
    originals: Originals,
) -> wasmtime::Result<()> {
    let memory = app
        .get_memory(&mut *store, "memory")
        .ok_or_else(|| wasmtime::format_err!("the app exports no memory"))?;
    let mut imports: Vec<Extern> = Vec::with_capacity(1 + originals.0.len());
    imports.push(memory.into());
    imports.extend(originals.0);
    let instance = Instance::new(&mut *store, trampoline_module, &imports)?;
    let trampoline = Trampoline {
        fd_write: instance.get_typed_func(&mut *store, "fd_write")?,
        fd_pwrite: instance.get_typed_func(&mut *store, "fd_pwrite")?,
        fd_allocate: instance.get_typed_func(&mut *store, "fd_allocate")?,
        fd_set_size: instance.get_typed_func(&mut *store, "fd_filestat_set_size")?,
        path_open: instance.get_typed_func(&mut *store, "path_open")?,
        create_dir: instance.get_typed_func(&mut *store, "path_create_directory")?,
        symlink: instance.get_typed_func(&mut *store, "path_symlink")?,
    };
    store.data_mut().trampoline = Some(trampoline);
    Ok(())
}

fn trampoline(caller: &Caller<'_, AppState>) -> Option<Trampoline> {
    caller.data().trampoline.clone()
}

/// Standard output and error go to the app's log, not the agent's.
fn capture_output(caller: &mut Caller<'_, AppState>, iovs: i32, len: i32, nwritten: i32) -> i32 {
    let Some(memory) = guest::memory(caller) else {
        return errno::FAULT;
    };
    let Some((vecs, total)) = guest::iovecs(&memory, &*caller, iovs, len) else {
        return errno::FAULT;
    };
    let Some(bytes) = guest::gather(&memory, &*caller, &vecs, MAX_STDOUT_WRITE) else {
        return errno::FAULT;
    };
    caller.data().control.write_output(&bytes);
    let taken = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    debug_assert!(u64::from(taken) <= total);
    match guest::write(&memory, &mut *caller, nwritten, &taken.to_le_bytes()) {
        Some(()) => errno::SUCCESS,
        None => errno::FAULT,
    }
}

fn written_len(caller: &mut Caller<'_, AppState>, iovs: i32, len: i32) -> Result<u64, i32> {
    let memory = guest::memory(caller).ok_or(errno::FAULT)?;
    let (_, total) = guest::iovecs(&memory, &*caller, iovs, len).ok_or(errno::INVAL)?;
    Ok(total)
}

/// Whether adding `adding` bytes would take the app past its quota (and if
/// so, reports it). No storage means nothing to charge: without a preopened
/// directory the app has no file to write.
fn over_quota(caller: &mut Caller<'_, AppState>, adding: u64, what: &str) -> bool {
    let state = caller.data();
    let (Some(dir), Some(quota)) = (&state.storage_dir, state.policy.storage_bytes()) else {
        return false;
    };
    // Unmeasurable storage counts as full: fail closed.
    let used = storage::usage(dir).unwrap_or(u64::MAX);
    if used.saturating_add(adding) <= quota {
        return false;
    }
    state.control.emit(CompartmentEvent::LimitHit {
        app: state.control.id().clone(),
        limit: Limit::Storage,
        detail: format!(
            "{what} of {adding} bytes refused with NOSPC: {used} of {quota} bytes used"
        ),
    });
    true
}

/// A path the sandbox refused (outside the storage directory) is a denial.
fn report_escape(caller: &mut Caller<'_, AppState>, code: i32, path: i32, len: i32) {
    if code != errno::NOTCAPABLE && code != errno::PERM {
        return;
    }
    let shown = guest::memory(caller)
        .and_then(|m| guest::read(&m, &*caller, path, len, MAX_PATH))
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_else(|| "<unreadable path>".into());
    let control = &caller.data().control;
    control.emit(CompartmentEvent::Denied {
        app: control.id().clone(),
        capability: Capability::MutableStorage,
        detail: format!("path '{shown}' is outside the app's storage"),
    });
}
