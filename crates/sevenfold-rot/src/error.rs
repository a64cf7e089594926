//! The one error type of the root of trust.

use std::path::PathBuf;

/// Why a root-of-trust operation failed.
///
/// Split by who is at fault, as rustls does: bad input from outside
/// (`Malformed*`, `BadSignature`, `NonceMismatch`, …), a caller asking for
/// something the root of trust refuses (`CounterRollback`, `NoSuchRegister`),
/// and the device's own storage failing (`Io`, `CorruptState`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RotError {
    /// A key file or encoded key could not be read as the expected format.
    #[error("malformed key: {0}")]
    MalformedKey(String),
    /// The key uses an algorithm Sevenfold does not accept.
    #[error("unsupported key algorithm: {0}")]
    UnsupportedAlgorithm(String),
    /// A signature did not verify against the public key.
    #[error("signature does not verify against the given public key")]
    BadSignature,
    /// An encoded quote was truncated or structurally wrong.
    #[error("malformed quote: {0}")]
    MalformedQuote(String),
    /// The quote was made over a different nonce than the verifier expected.
    #[error("quote nonce does not match the expected nonce")]
    NonceMismatch,
    /// The register values sent with a quote do not hash to the quoted digest.
    #[error("register values do not match the quoted register digest")]
    RegisterDigestMismatch,
    /// Register index outside the bank.
    #[error("no measurement register {0} (the bank has {count})", count = crate::REGISTER_COUNT)]
    NoSuchRegister(u32),
    /// A nonce longer than a quote can carry.
    #[error("nonce of {0} bytes is too long (at most {max})", max = crate::MAX_NONCE_LEN)]
    NonceTooLong(usize),
    /// Monotonic counters never go backwards.
    #[error("counter {index} is at {current}; refusing to move it back to {requested}")]
    CounterRollback {
        /// Counter index.
        index: u32,
        /// Value the counter holds.
        current: u64,
        /// Lower value that was asked for.
        requested: u64,
    },
    /// Counter at its maximum.
    #[error("counter {0} is exhausted")]
    CounterExhausted(u32),
    /// A sealed blob could not be opened: wrong device, changed registers or tampering.
    #[error("sealed data cannot be unsealed: {0}")]
    Unseal(&'static str),
    /// Secret too large to seal.
    #[error("secret of {0} bytes is too large to seal (at most {max})", max = crate::MAX_SEALED_LEN)]
    SealTooLarge(usize),
    /// Stored state exists but is damaged; the root of trust fails closed.
    #[error("root-of-trust state at {path} is corrupt: {reason}")]
    CorruptState {
        /// File that is damaged.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The state directory was not initialised (no device key).
    #[error("no root of trust in {0}; run `sevenfold agent init` first")]
    NotInitialised(PathBuf),
    /// The state directory already holds a device identity.
    #[error("a root of trust already exists in {0}; refusing to replace the device identity")]
    AlreadyInitialised(PathBuf),
    /// The state directory or a state file has permissions that expose it.
    #[error("{path} has mode {mode:o}; it must not be accessible to group or others")]
    InsecurePermissions {
        /// The exposed path.
        path: PathBuf,
        /// Its current mode bits.
        mode: u32,
    },
    /// Reading or writing state failed.
    #[error("root-of-trust storage error at {path}: {source}")]
    Io {
        /// Path being accessed.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A counter may rise by at most this much in one call (a TPM NV counter
    /// moves one step per write, and NV writes wear the chip).
    #[error(
        "counter {index} would have to rise by {step}, more than the {max} allowed in one step"
    )]
    CounterStepTooLarge {
        /// Counter index.
        index: u32,
        /// Requested rise.
        step: u64,
        /// Largest rise allowed.
        max: u64,
    },
    /// The message is longer than the root of trust can sign.
    #[error("message of {0} bytes is too long to sign (at most {max})", max = crate::MAX_SIGNED_LEN)]
    MessageTooLong(usize),
    /// The message looks like a structure the root of trust signs for quotes,
    /// which `sign` must never produce.
    #[error("refusing to sign a message that starts like a quote")]
    QuoteLikeMessage,
    /// The TPM (or the software stack in front of it) reported an error.
    #[error("TPM error during {operation}: {detail}")]
    Tpm {
        /// What was being done.
        operation: &'static str,
        /// The TPM's or TSS's response.
        detail: String,
    },
    /// The cryptographic library reported an internal failure.
    #[error("cryptographic operation failed: {0}")]
    Crypto(&'static str),
}

impl RotError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        RotError::Io {
            path: path.into(),
            source,
        }
    }
}
