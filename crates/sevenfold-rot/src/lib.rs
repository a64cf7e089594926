//! The root of trust of a Sevenfold device — the trusted computing base.
//!
//! Everything that touches a device's private key lives here, behind the
//! [`RootOfTrust`] trait: the device key (sign and public key out, never the
//! key itself), measurement registers that only extend, monotonic counters
//! that only rise, sealing of small secrets to the device, and quotes that
//! prove the register values to a remote verifier.
//!
//! Backends:
//! - [`soft::SoftRoot`]: a file-backed root of trust in a state directory, for
//!   development and for boards without a TPM. It gives the *interface* of a
//!   hardware root of trust, not its guarantees: whoever is root on the device
//!   can read its key file.
//! - `tpm` (a later, feature-gated backend): TPM 2.0 through tss-esapi.
//!
//! The crate also carries the signature primitives that verifiers share with
//! it ([`PublicKey`], [`SoftwareKey`], [`Digest`]), so that one piece of code
//! decides what a valid signature is.
//!
//! Design rule: this crate is small and dependency-light. It does no network
//! I/O, has no async runtime and no serde; its only heavy dependency is the
//! crypto library.
//!
//! ```
//! use sevenfold_rot::{soft::SoftRoot, RootOfTrust, Digest, RUNTIME_REGISTER};
//! let dir = tempfile::tempdir().unwrap();
//! let rot = SoftRoot::create(dir.path()).unwrap();
//! rot.extend(RUNTIME_REGISTER, &Digest::of(b"runtime build")).unwrap();
//! let (quote, registers) = rot.quote(b"verifier nonce", &[RUNTIME_REGISTER]).unwrap();
//! quote.verify(rot.device_public_key(), b"verifier nonce", &registers).unwrap();
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod credential;
mod digest;
mod error;
mod keys;
mod quote;
mod registers;
mod root;
pub mod soft;
mod tls_key;
#[cfg(feature = "tpm")]
pub mod tpm;
mod tpm2_wire;

pub use digest::{Digest, Hasher, DIGEST_LEN};
pub use error::RotError;
pub use keys::{KeyAlgorithm, PublicKey, SoftwareKey};
pub use quote::{random_nonce, Quote, QuoteFormat, MAX_NONCE_LEN};
pub use registers::{
    extend, RegisterIndex, RegisterValues, APPLICATION_REGISTER, REGISTER_COUNT, RUNTIME_REGISTER,
};
pub use root::{
    CounterIndex, DeviceId, RootOfTrust, SealPolicy, MAX_COUNTER_INDEX, MAX_SEALED_LEN,
    MAX_SIGNED_LEN,
};
pub use tls_key::ResidentTlsKey;
