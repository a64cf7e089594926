//! The `RootOfTrust` trait: what the rest of Sevenfold may ask of the device's
//! root of trust, and nothing more.

use std::fmt;

use zeroize::Zeroizing;

use crate::credential::TpmEndorsement;
use crate::{Digest, PublicKey, Quote, RegisterIndex, RegisterValues, ResidentTlsKey, RotError};

/// Largest secret [`RootOfTrust::seal`] accepts (a TPM seals at most 128 bytes
/// of `TPM2B_SENSITIVE_DATA`; larger secrets are sealed as a key that wraps them).
pub const MAX_SEALED_LEN: usize = 128;

/// Longest message [`RootOfTrust::sign`] accepts. A TPM's restricted
/// attestation key signs only digests the TPM made itself (`TPM2_Hash` hands
/// out the ticket `TPM2_Sign` needs), and `TPM2_Hash` takes at most
/// `MAX_DIGEST_BUFFER` = 1024 bytes; every backend keeps the same limit.
pub const MAX_SIGNED_LEN: usize = 1024;

/// Checks a message [`RootOfTrust::sign`] may sign: at most
/// [`MAX_SIGNED_LEN`] bytes, and not starting with a TPM's
/// `TPM_GENERATED_VALUE`, which every quote body of either format starts
/// with (and which a TPM itself refuses to sign as external data), so that
/// `sign` can never be used to forge a quote. Every backend calls it first.
pub(crate) fn check_signable(message: &[u8]) -> Result<(), RotError> {
    if message.len() > MAX_SIGNED_LEN {
        return Err(RotError::MessageTooLong(message.len()));
    }
    if message.starts_with(&crate::tpm2_wire::TPM_GENERATED_VALUE.to_be_bytes()) {
        return Err(RotError::QuoteLikeMessage);
    }
    Ok(())
}

/// Highest counter index (a TPM maps each to one NV index in a fixed range).
pub const MAX_COUNTER_INDEX: u32 = 0xFFFF;

/// A device's stable identity: SHA-256 of its root-of-trust public key's SPKI DER.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId(Digest);

impl DeviceId {
    /// The ID of the device whose root-of-trust public key is `key`.
    pub fn of(key: &PublicKey) -> DeviceId {
        DeviceId(key.key_id())
    }

    /// Parses the 64-hex-character form.
    pub fn from_hex(s: &str) -> Option<DeviceId> {
        Digest::from_hex(s).map(DeviceId)
    }

    /// The digest.
    pub fn digest(&self) -> &Digest {
        &self.0
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceId({})", self.0)
    }
}

/// Index of a monotonic counter; one per component's security version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CounterIndex(u32);

impl CounterIndex {
    /// Checks the index is within `0..=MAX_COUNTER_INDEX`.
    pub fn new(index: u32) -> Option<CounterIndex> {
        (index <= MAX_COUNTER_INDEX).then_some(CounterIndex(index))
    }

    /// The numeric index.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for CounterIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What a sealed secret is bound to, besides the device itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SealPolicy {
    /// Only this device can unseal, whatever software it runs.
    Device,
    /// Only this device, and only while these registers hold the values they
    /// held at sealing time (a TPM PCR policy).
    Registers(Vec<RegisterIndex>),
}

/// A device's root of trust.
///
/// The device key never leaves it: callers get signatures and the public key,
/// never the private key. Registers only extend; counters only rise. Methods
/// take `&self` so one root of trust can be shared (`Arc<dyn RootOfTrust>`)
/// by the agent's tasks; backends serialise access internally.
///
/// The model is a TPM 2.0's: the device key is an attestation key handle,
/// registers are the SHA-256 PCR bank, counters are NV counters, sealing is a
/// sealed data object under a policy.
pub trait RootOfTrust: Send + Sync {
    /// Short backend name, e.g. `"soft"` or `"tpm"`.
    fn backend(&self) -> &'static str;

    /// The device key's public half.
    fn device_public_key(&self) -> &PublicKey;

    /// The device ID derived from the device key.
    fn device_id(&self) -> DeviceId {
        DeviceId::of(self.device_public_key())
    }

    /// Signs `message` with the device key (for certificate requests and
    /// proofs of possession; quotes go through [`RootOfTrust::quote`]).
    ///
    /// Refuses messages longer than [`MAX_SIGNED_LEN`]
    /// ([`RotError::MessageTooLong`]) and messages that begin like a quote
    /// body ([`RotError::QuoteLikeMessage`]): a signature from `sign` must
    /// never pass as a quote.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, RotError>;

    /// Extends `measurement` into `register`; returns the register's new value.
    fn extend(&self, register: RegisterIndex, measurement: &Digest) -> Result<Digest, RotError>;

    /// Reads the current values of the selected registers.
    fn read_registers(&self, selection: &[RegisterIndex]) -> Result<RegisterValues, RotError>;

    /// Signs the nonce and the selected registers; returns the quote and the
    /// register values it covers.
    fn quote(
        &self,
        nonce: &[u8],
        selection: &[RegisterIndex],
    ) -> Result<(Quote, RegisterValues), RotError>;

    /// Reads a monotonic counter; a counter never written reads 0.
    fn read_counter(&self, index: CounterIndex) -> Result<u64, RotError>;

    /// Raises a counter to `value`. Asking for the current value is a no-op;
    /// asking for a lower one is [`RotError::CounterRollback`]. Durable before
    /// it returns.
    fn advance_counter(&self, index: CounterIndex, value: u64) -> Result<u64, RotError>;

    /// Seals a small secret to this device (and optionally its registers).
    fn seal(&self, secret: &[u8], policy: &SealPolicy) -> Result<Vec<u8>, RotError>;

    /// Opens a blob made by [`RootOfTrust::seal`] on this device.
    fn unseal(&self, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, RotError>;

    /// The TPM endorsement key behind the device key, for credential
    /// activation; `None` (the default) for a backend without a TPM.
    fn tpm_endorsement(&self) -> Option<&dyn TpmEndorsement> {
        None
    }

    /// The TLS client key held inside this root of trust; `None` (the
    /// default) for a backend that has none (the agent then keeps a software
    /// TLS key).
    fn resident_tls_key(&self) -> Option<&dyn ResidentTlsKey> {
        None
    }
}
