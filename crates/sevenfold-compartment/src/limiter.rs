//! `MemoryKB`: wasmtime's resource limiter for one app's store. Growing past
//! the limit raises a trap in that app only (and is reported), rather than
//! failing `memory.grow`, so the backtrace shows what asked for the memory.

use std::sync::Arc;

use wasmtime::ResourceLimiter;

use crate::control::AppControl;
use crate::error::HostTrap;
use crate::events::{CompartmentEvent, Limit};
use crate::policy::MAX_TABLE_ELEMENTS;

/// The limiter kept in the store.
pub(crate) struct MemoryLimiter {
    limit: usize,
    control: Arc<AppControl>,
}

impl MemoryLimiter {
    pub(crate) fn new(limit: usize, control: Arc<AppControl>) -> Self {
        MemoryLimiter { limit, control }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.control.emit(CompartmentEvent::LimitHit {
                app: self.control.id().clone(),
                limit: Limit::Memory,
                detail: format!(
                    "linear memory {current} -> {desired} bytes; MemoryKB allows {}",
                    self.limit
                ),
            });
            return Err(wasmtime::Error::new(HostTrap::Memory {
                desired,
                limit: self.limit,
            }));
        }
        self.control.set_memory(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            self.control.emit(CompartmentEvent::LimitHit {
                app: self.control.id().clone(),
                limit: Limit::Memory,
                detail: format!("table of {desired} elements; at most {MAX_TABLE_ELEMENTS}"),
            });
            return Err(wasmtime::Error::new(HostTrap::Table {
                desired,
                limit: MAX_TABLE_ELEMENTS,
            }));
        }
        Ok(true)
    }

    /// The app and the host's WASI trampoline.
    fn instances(&self) -> usize {
        2
    }

    fn tables(&self) -> usize {
        4
    }

    fn memories(&self) -> usize {
        1
    }
}
