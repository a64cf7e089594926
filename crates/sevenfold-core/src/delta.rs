//! Binary deltas between two versions of an image package file.
//!
//! The service makes a delta from the package a device has (the *base*) to
//! the one it publishes (the *target*); the device rebuilds the target from
//! its base and the delta, and then checks the result against the target's
//! signed length and SHA-256 — a delta is never trusted, it is only a
//! cheaper way to get bytes that are verified like a full download.
//!
//! Format ([`FORMAT`], `bsdiff4`): a bsdiff 4 patch (bzip2-compressed
//! control, diff and extra blocks, as `bsdiff`/`bspatch` write and read
//! them), made and applied with the `qbsdiff` crate. bsdiff was chosen
//! over zstd with the base as reference prefix (`zstd --patch-from`) after
//! measuring both on Sevenfold's own builds (docs/benchmarks.md, "Delta
//! updates"): the same size within a few dozen bytes on wasm apps, about a
//! third of zstd's size on a native runtime build, and faster to make than
//! zstd at the level that comes close. A bsdiff patch carries no checksum;
//! the base is checked by hash before, the result by the signed hash after.

use std::io::Write;

/// The only delta format: a bsdiff 4 patch.
pub const FORMAT: &str = "bsdiff4";

/// Largest base or target a delta is made for (the suffix array of the base
/// needs several times its size in memory on the service).
pub const MAX_INPUT_LEN: usize = 1 << 30;

/// Why a delta could not be made or applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeltaError {
    /// Base or target is larger than [`MAX_INPUT_LEN`].
    #[error("base ({base} bytes) or target ({target} bytes) is too large for a delta")]
    TooLarge {
        /// Base length.
        base: usize,
        /// Target length.
        target: usize,
    },
    /// The patch could not be made.
    #[error("cannot make the delta: {0}")]
    Create(String),
    /// The delta is not a valid patch, or does not apply to this base.
    #[error("the delta does not apply to this base: {0}")]
    Corrupt(String),
    /// The rebuilt file is not (or would not be) the expected length; more
    /// output is cut off at the bound, never allocated.
    #[error("the delta rebuilds {actual} bytes, not the expected {expected}")]
    WrongLength {
        /// Expected (signed) length.
        expected: u64,
        /// What the delta announces or produced (up to `expected + 1`).
        actual: u64,
    },
}

/// Makes a delta that turns `base` into `target`.
pub fn create(base: &[u8], target: &[u8]) -> Result<Vec<u8>, DeltaError> {
    if base.len() > MAX_INPUT_LEN || target.len() > MAX_INPUT_LEN {
        return Err(DeltaError::TooLarge {
            base: base.len(),
            target: target.len(),
        });
    }
    let mut patch = Vec::new();
    qbsdiff::Bsdiff::new(base, target)
        .compare(std::io::Cursor::new(&mut patch))
        .map_err(|e| DeltaError::Create(e.to_string()))?;
    Ok(patch)
}

/// Checks the 32-byte bsdiff 4 header (magic, then the control and diff
/// block lengths and the target length as sign-magnitude little-endian
/// integers) before qbsdiff reads it; returns the target length.
fn check_header(delta: &[u8]) -> Result<u64, DeltaError> {
    let corrupt = |what: &str| DeltaError::Corrupt(what.to_owned());
    let field = |at: usize| -> Result<u64, DeltaError> {
        let bytes: [u8; 8] = delta
            .get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| corrupt("shorter than a bsdiff header"))?;
        let value = u64::from_le_bytes(bytes);
        if value >> 63 != 0 {
            return Err(corrupt("a negative length in the header"));
        }
        Ok(value)
    };
    if delta.get(..8) != Some(b"BSDIFF40".as_slice()) {
        return Err(corrupt("not a bsdiff 4 patch"));
    }
    let (control, diff, target) = (field(8)?, field(16)?, field(24)?);
    let blocks = control
        .checked_add(diff)
        .and_then(|n| n.checked_add(32))
        .ok_or_else(|| corrupt("block lengths overflow"))?;
    if blocks > delta.len() as u64 {
        return Err(corrupt("block lengths past the end of the patch"));
    }
    Ok(target)
}

/// A writer that refuses to hold more than `limit` bytes.
struct Bounded {
    out: Vec<u8>,
    limit: u64,
}

impl Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.out.len() as u64 + buf.len() as u64 > self.limit {
            return Err(std::io::Error::other(
                "the delta writes past the expected length",
            ));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Rebuilds the target from `base` and `delta`. Never produces (or
/// allocates for) more than `expected_len` bytes; a delta announcing or
/// producing another length is refused. The caller still checks the
/// signed hash (a bsdiff patch applied to another base yields wrong bytes,
/// not an error).
pub fn apply(base: &[u8], delta: &[u8], expected_len: u64) -> Result<Vec<u8>, DeltaError> {
    let announced = check_header(delta)?;
    if announced != expected_len {
        return Err(DeltaError::WrongLength {
            expected: expected_len,
            actual: announced,
        });
    }
    let patch = qbsdiff::Bspatch::new(delta).map_err(|e| DeltaError::Corrupt(e.to_string()))?;
    let capacity = usize::try_from(expected_len.min(64 * 1024 * 1024)).unwrap_or(0);
    let mut out = Bounded {
        out: Vec::with_capacity(capacity),
        limit: expected_len,
    };
    // qbsdiff trusts the control block's numbers (it can overflow or slice
    // out of range on a forged patch). Deltas are applied only after their
    // signed hash matched, so this is defence in depth: a panic in there is
    // a refused delta, not a dead agent.
    let applied =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| patch.apply(base, &mut out)))
            .map_err(|_| DeltaError::Corrupt("malformed control data".into()))?;
    applied.map_err(|e| DeltaError::Corrupt(e.to_string()))?;
    if out.out.len() as u64 != expected_len {
        return Err(DeltaError::WrongLength {
            expected: expected_len,
            actual: out.out.len() as u64,
        });
    }
    Ok(out.out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// A "small code change": a few bytes edited, a block inserted.
    fn edited(base: &[u8]) -> Vec<u8> {
        let mut v = base.to_vec();
        for i in (1000..v.len()).step_by(50_000) {
            v[i] ^= 0x5a;
        }
        let at = v.len() / 3;
        v.splice(at..at, pseudo_random(300, 7));
        v
    }

    #[test]
    fn a_delta_rebuilds_the_target_and_is_small() {
        let base = pseudo_random(400_000, 1);
        let target = edited(&base);
        let delta = create(&base, &target).unwrap();
        assert!(delta.len() < 2_000, "{}", delta.len());
        assert_eq!(apply(&base, &delta, target.len() as u64).unwrap(), target);
    }

    #[test]
    fn another_base_or_a_damaged_delta_never_yields_the_target() {
        let base = pseudo_random(100_000, 1);
        let target = edited(&base);
        let delta = create(&base, &target).unwrap();
        // bsdiff has no checksum: another base gives other bytes (which the
        // caller's signed hash refuses), never the target.
        let other = pseudo_random(100_000, 2);
        let len = target.len() as u64;
        assert!(apply(&other, &delta, len).map_or(true, |out| out != target));
        // Damage in the header or the compressed blocks is an error or
        // other bytes. (A flipped padding bit at the very end may change
        // nothing; every byte is still checked by the caller's hash.)
        for at in [0, 10, 30, delta.len() / 2] {
            let mut bad = delta.clone();
            bad[at] ^= 0x01;
            let out = apply(&base, &bad, len);
            assert!(out.map_or(true, |out| out != target), "{at}");
        }
        for at in 0..delta.len() {
            let mut bad = delta.clone();
            bad[at] ^= 0x80;
            if let Ok(out) = apply(&base, &bad, len) {
                assert_eq!(out.len() as u64, len);
            }
        }
        assert!(apply(&base, b"not a delta", 10).is_err());
    }

    #[test]
    fn output_is_bounded_by_the_expected_length() {
        let base = pseudo_random(10_000, 1);
        let target = vec![0u8; 5_000_000];
        let delta = create(&base, &target).unwrap();
        for expected in [1000, 6_000_000] {
            let err = apply(&base, &delta, expected).unwrap_err();
            assert!(
                matches!(
                    err,
                    DeltaError::WrongLength {
                        actual: 5_000_000,
                        ..
                    }
                ),
                "{err}"
            );
        }
        // A patch that lies about its length is cut off at the bound.
        let mut lying = delta.clone();
        lying[24..32].copy_from_slice(&1000u64.to_le_bytes());
        assert!(apply(&base, &lying, 1000).is_err());
    }

    #[test]
    fn empty_inputs_work() {
        let delta = create(b"", b"").unwrap();
        assert_eq!(apply(b"", &delta, 0).unwrap(), b"");
        let delta = create(b"", b"abc").unwrap();
        assert_eq!(apply(b"", &delta, 3).unwrap(), b"abc");
    }
}
