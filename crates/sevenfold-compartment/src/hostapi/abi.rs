//! The `sevenfold` import module's ABI: function names are those of
//! `apps/sevenfold-app`; every function returns an `i32`, negative for one of
//! these codes.

/// The import module name.
pub const MODULE: &str = "sevenfold";

/// Success (for calls that return no count or handle).
pub const OK: i32 = 0;
/// Not granted by the manifest (and reported).
pub const DENIED: i32 = -1;
/// A bad pointer, length, handle or name, or too many handles.
pub const INVALID: i32 = -2;
/// The host's I/O failed (connection refused, device error).
pub const IO: i32 = -3;
/// Nothing yet (no message, no data within the timeout, queue full).
pub const WOULD_BLOCK: i32 = -4;
/// No such pin, port, peer or certificate.
pub const NOT_FOUND: i32 = -5;
