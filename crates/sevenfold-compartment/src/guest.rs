//! Bounds-checked access to an app's linear memory from host functions.
//! Every pointer and length comes from untrusted wasm: a bad one is an
//! error code for the app, never a panic of the host.

use wasmtime::{AsContext, AsContextMut, Caller, Extern, Memory};

/// The app's exported `memory`, if it has one.
pub(crate) fn memory<T>(caller: &mut Caller<'_, T>) -> Option<Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(memory)) => Some(memory),
        _ => None,
    }
}

/// Copies `len` bytes at `ptr` out of guest memory.
pub(crate) fn read(
    memory: &Memory,
    store: impl AsContext,
    ptr: i32,
    len: i32,
    max: usize,
) -> Option<Vec<u8>> {
    let (start, len) = span(ptr, len)?;
    if len > max {
        return None;
    }
    memory
        .data(&store)
        .get(start..start.checked_add(len)?)
        .map(<[u8]>::to_vec)
}

/// Copies `bytes` into guest memory at `ptr`.
pub(crate) fn write(
    memory: &Memory,
    store: impl AsContextMut,
    ptr: i32,
    bytes: &[u8],
) -> Option<()> {
    let start = address(ptr)?;
    memory.write(store, start, bytes).ok()
}

/// The `(buf, len)` pairs of a WASI iovec array, and their total length.
pub(crate) fn iovecs(
    memory: &Memory,
    store: impl AsContext,
    iovs: i32,
    count: i32,
) -> Option<(Vec<(usize, usize)>, u64)> {
    const MAX_IOVECS: usize = 1024;
    let count = address(count)?;
    if count > MAX_IOVECS {
        return None;
    }
    let raw = read(
        memory,
        &store,
        iovs,
        i32::try_from(count * 8).ok()?,
        MAX_IOVECS * 8,
    )?;
    let mut out = Vec::with_capacity(count);
    let mut total: u64 = 0;
    for pair in raw.chunks_exact(8) {
        let (buf, len) = pair.split_at(4);
        let buf = u32::from_le_bytes(buf.try_into().ok()?);
        let len = u32::from_le_bytes(len.try_into().ok()?);
        total = total.checked_add(u64::from(len))?;
        out.push((usize::try_from(buf).ok()?, usize::try_from(len).ok()?));
    }
    Some((out, total))
}

/// Gathers the bytes an iovec array points at (at most `max`).
pub(crate) fn gather(
    memory: &Memory,
    store: impl AsContext,
    iovecs: &[(usize, usize)],
    max: usize,
) -> Option<Vec<u8>> {
    let data = memory.data(&store);
    let mut out = Vec::new();
    for &(buf, len) in iovecs {
        let take = len.min(max.saturating_sub(out.len()));
        out.extend_from_slice(data.get(buf..buf.checked_add(take)?)?);
    }
    Some(out)
}

fn span(ptr: i32, len: i32) -> Option<(usize, usize)> {
    Some((address(ptr)?, address(len)?))
}

/// A wasm32 `i32` holding a pointer or length is unsigned: reinterpret it.
pub(crate) fn address(value: i32) -> Option<usize> {
    usize::try_from(u32::from_ne_bytes(value.to_ne_bytes())).ok()
}
