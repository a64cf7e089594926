//! Sevenfold's formats (in progress).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod manifest;
