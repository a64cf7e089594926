//! The one wasmtime [`Engine`] of an agent: compiled modules cached on disk
//! and in memory, and the epoch ticker that lets the host interrupt any app.

use std::collections::HashMap;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use sevenfold_rot::Digest;
use wasmtime::{Cache, CacheConfig, Config, Engine, Module};

use crate::error::CompartmentError;

/// How often the epoch advances: the granularity of CPU accounting,
/// throttling and kills.
pub const TICK: Duration = Duration::from_millis(10);

/// Most frames kept in a crash's wasm backtrace.
pub const MAX_BACKTRACE_FRAMES: usize = 32;

/// Largest wasm stack an app may use.
pub const MAX_WASM_STACK: usize = 512 * 1024;

/// The engine, its module caches and its ticker. Dropping it stops the
/// ticker.
pub struct CompartmentEngine {
    engine: Engine,
    cache_dir: PathBuf,
    modules: Mutex<HashMap<Digest, Module>>,
    trampoline: Module,
    ticker_stop: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
}

impl CompartmentEngine {
    /// An engine whose compiled modules are kept under `cache_dir` (created
    /// if missing), so that an app compiles once per engine version and
    /// starts warm afterwards, across restarts of the agent.
    ///
    /// The disk cache is wasmtime's own: its key is the SHA-256 of the module
    /// bytes (the payload the image package's digest covers), the compiler
    /// settings and the engine version, so a new wasmtime never loads code an
    /// older one compiled. In memory, modules are keyed by the package digest
    /// boot measured.
    ///
    /// # Errors
    /// [`CompartmentError::Io`] if the directory cannot be made,
    /// [`CompartmentError::Engine`] if wasmtime refuses the configuration.
    pub fn new(cache_dir: &Path) -> Result<CompartmentEngine, CompartmentError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(cache_dir)
            .map_err(|e| CompartmentError::io("create", cache_dir, e))?;
        let cache_dir = cache_dir
            .canonicalize()
            .map_err(|e| CompartmentError::io("resolve", cache_dir, e))?;
        let mut cache_config = CacheConfig::new();
        cache_config.with_directory(&cache_dir);
        let cache =
            Cache::new(cache_config).map_err(|e| CompartmentError::Engine(e.to_string()))?;
        let mut config = Config::new();
        config
            .epoch_interruption(true)
            .max_wasm_stack(MAX_WASM_STACK)
            .wasm_backtrace_max_frames(std::num::NonZeroUsize::new(MAX_BACKTRACE_FRAMES))
            .cache(Some(cache));
        let engine = Engine::new(&config).map_err(|e| CompartmentError::Engine(e.to_string()))?;
        let trampoline = Module::new(&engine, crate::wasi_shadow::trampoline_wat())
            .map_err(|e| CompartmentError::Engine(format!("WASI trampoline: {e:#}")))?;
        let ticker_stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let engine = engine.clone();
            let stop = Arc::clone(&ticker_stop);
            std::thread::Builder::new()
                .name("compartment-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| CompartmentError::io("spawn the epoch ticker for", &cache_dir, e))?
        };
        Ok(CompartmentEngine {
            engine,
            cache_dir,
            modules: Mutex::new(HashMap::new()),
            trampoline,
            ticker_stop,
            ticker: Some(ticker),
        })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The WASI trampoline module (see `wasi_shadow`).
    pub(crate) fn trampoline(&self) -> &Module {
        &self.trampoline
    }

    /// Where compiled modules are cached.
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// The compiled module of an app: from memory, else from the disk cache,
    /// else compiled now (and cached).
    ///
    /// # Errors
    /// [`CompartmentError::Compile`] if the bytes are not a valid module.
    pub fn module(
        &self,
        name: &str,
        digest: &Digest,
        wasm: &[u8],
    ) -> Result<Module, CompartmentError> {
        if let Some(module) = self
            .modules
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(digest)
        {
            return Ok(module.clone());
        }
        let module = Module::new(&self.engine, wasm).map_err(|e| CompartmentError::Compile {
            name: name.to_owned(),
            reason: format!("{e:#}"),
        })?;
        self.modules
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(*digest, module.clone());
        Ok(module)
    }

    /// Forgets the in-memory copy of a module (after an update replaced it).
    pub fn evict(&self, digest: &Digest) {
        self.modules
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(digest);
    }
}

impl Drop for CompartmentEngine {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
        if let Some(ticker) = self.ticker.take() {
            let _ = ticker.join();
        }
    }
}

impl std::fmt::Debug for CompartmentEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompartmentEngine")
            .field("cache_dir", &self.cache_dir)
            .finish_non_exhaustive()
    }
}
