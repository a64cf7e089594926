//! Measurement registers: extend-only, like a TPM's SHA-256 PCR bank.
//!
//! A register starts at zero on every boot and can only be *extended*:
//! `new = SHA-256(old || measurement)`. Whatever was measured cannot be taken
//! back, so the register value commits to the whole sequence of measurements,
//! and an event log that lists them can be replayed by a verifier.

use std::fmt;

use crate::{Digest, Hasher, RotError};

/// Number of registers in the bank (a TPM 2.0 PC client has 24 PCRs).
pub const REGISTER_COUNT: u32 = 24;

/// Register that holds the runtime's own measurement (its executable's hash).
///
/// Fixed for all backends so reference values mean the same thing everywhere;
/// on a TPM it is PCR 14 of the SHA-256 bank.
pub const RUNTIME_REGISTER: RegisterIndex = RegisterIndex(14);

/// Register that holds the measurements of installed image packages, in boot order.
/// On a TPM it is PCR 15 of the SHA-256 bank.
pub const APPLICATION_REGISTER: RegisterIndex = RegisterIndex(15);

/// Index of one register in the bank; always `< REGISTER_COUNT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegisterIndex(u32);

impl RegisterIndex {
    /// Checks that `index` names a register of the bank.
    pub fn new(index: u32) -> Result<RegisterIndex, RotError> {
        if index < REGISTER_COUNT {
            Ok(RegisterIndex(index))
        } else {
            Err(RotError::NoSuchRegister(index))
        }
    }

    /// The numeric index.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for RegisterIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The value a register takes when `measurement` is extended into `old`.
pub fn extend(old: &Digest, measurement: &Digest) -> Digest {
    let mut h = Hasher::new();
    h.update(old.as_bytes());
    h.update(measurement.as_bytes());
    h.finish()
}

/// Values of a selection of registers, in ascending index order without repeats.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RegisterValues(Vec<(RegisterIndex, Digest)>);

impl RegisterValues {
    /// Builds a snapshot; sorts by index and refuses a register named twice.
    pub fn new(mut values: Vec<(RegisterIndex, Digest)>) -> Result<RegisterValues, RotError> {
        values.sort_by_key(|(i, _)| *i);
        if values.windows(2).any(|w| matches!(w, [a, b] if a.0 == b.0)) {
            return Err(RotError::MalformedQuote(
                "a register is listed twice".into(),
            ));
        }
        Ok(RegisterValues(values))
    }

    /// The selected indices, ascending.
    pub fn indices(&self) -> impl Iterator<Item = RegisterIndex> + '_ {
        self.0.iter().map(|(i, _)| *i)
    }

    /// The value of one register, if selected.
    pub fn get(&self, index: RegisterIndex) -> Option<&Digest> {
        self.0.iter().find(|(i, _)| *i == index).map(|(_, d)| d)
    }

    /// Pairs of (index, value), ascending.
    pub fn iter(&self) -> impl Iterator<Item = &(RegisterIndex, Digest)> {
        self.0.iter()
    }

    /// Number of registers selected.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no register is selected.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// SHA-256 over the concatenated values in index order: what a quote
    /// signs (the same construction as a TPM quote's `pcrDigest`).
    pub fn composite_digest(&self) -> Digest {
        let mut h = Hasher::new();
        for (_, value) in &self.0 {
            h.update(value.as_bytes());
        }
        h.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_bounds() {
        assert!(RegisterIndex::new(REGISTER_COUNT - 1).is_ok());
        assert!(matches!(
            RegisterIndex::new(REGISTER_COUNT),
            Err(RotError::NoSuchRegister(24))
        ));
    }

    #[test]
    fn extend_is_order_sensitive() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let ab = extend(&extend(&Digest::ZERO, &a), &b);
        let ba = extend(&extend(&Digest::ZERO, &b), &a);
        assert_ne!(ab, ba);
        assert_ne!(ab, Digest::ZERO);
    }

    #[test]
    fn snapshot_is_sorted_and_rejects_duplicates() {
        let r = |i| RegisterIndex::new(i).unwrap();
        let v =
            RegisterValues::new(vec![(r(15), Digest::ZERO), (r(14), Digest::of(b"x"))]).unwrap();
        assert_eq!(v.indices().collect::<Vec<_>>(), vec![r(14), r(15)]);
        assert!(RegisterValues::new(vec![(r(1), Digest::ZERO), (r(1), Digest::ZERO)]).is_err());
    }
}
