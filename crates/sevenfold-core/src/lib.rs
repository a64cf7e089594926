//! Sevenfold's formats: what crosses a boundary between device, service and
//! operator, with its parser and its writer side by side.
//!
//! - [`package`]: the signed `*.imagepackage` file (header, manifest,
//!   payload, signature), its reader that rejects any malformed, truncated,
//!   oversized or tampered input with a typed error, and its writer.
//! - [`attestation`]: evidence a device sends to attest, the event log and
//!   the checks that need no database (quote, log replay).
//! - [`credential`]: TPM credential activation (EK certificate, challenge,
//!   answer) between a TPM device and the service.
//! - [`api`]: request and response bodies of the operator API.
//! - [`delta`]: binary deltas between two versions of a package file.
//! - [`update`]: TUF target custom metadata, rollout membership, progress
//!   reports and deployment bodies.
//! - [`window`]: update windows and bounded app deferrals.
//! - [`report`]: failure records a device journals and uploads, and the
//!   operator bodies for problems, error reports and webhooks.
//! - [`manifest`]: the application manifest (`app_manifest.json`), validated
//!   into a domain type; every problem is reported with its JSON path.
//!
//! Design rule: this crate is pure. It does no network or file-system I/O of
//! its own (readers take `std::io::Read`), has no async runtime, and knows
//! nothing of databases or HTTP; the service and the agent build on it.
//! Signature checking is delegated to `sevenfold-rot`, so one piece of code
//! decides what a valid signature is.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod attestation;
pub mod credential;
pub mod delta;
pub mod manifest;
pub mod package;
pub mod report;
pub mod update;
pub mod window;
