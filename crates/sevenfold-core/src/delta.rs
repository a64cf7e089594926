//! Binary deltas between two versions of an image package file.
//!
//! The service makes a delta from the package a device has (the *base*) to
//! the one it publishes (the *target*); the device rebuilds the target from
//! its base and the delta, and then checks the result against the target's
//! signed length and SHA-256 — a delta is never trusted, it is only a
//! cheaper way to get bytes that are verified like a full download.
//!
//! Format ([`FORMAT`], `zstd-prefix`): one zstd frame of the target,
//! compressed with the base as a *reference prefix* (what `zstd
//! --patch-from` does) and long-distance matching, with a window that spans
//! base and target so matches reach anywhere in the base. zstd was chosen
//! over bsdiff after measuring both on Sevenfold's own images
//! (docs/benchmarks.md, "Delta updates"): similar or smaller deltas, an
//! order of magnitude faster to create, and a streaming decoder whose
//! output is bounded here by the signed length.

use std::io::Read;

/// The only delta format: a zstd frame with the base as reference prefix.
pub const FORMAT: &str = "zstd-prefix";

/// The compression level the service uses (see docs/benchmarks.md).
pub const DEFAULT_LEVEL: i32 = 19;

/// Largest window a delta may need: 2^31 bytes (base and target together).
const MAX_WINDOW_LOG: u32 = 31;
/// Smallest window asked of the encoder.
const MIN_WINDOW_LOG: u32 = 10;

/// Why a delta could not be made or applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeltaError {
    /// Base and target together are larger than a delta window can span.
    #[error("base ({base} bytes) and target ({target} bytes) are too large for a delta")]
    TooLarge {
        /// Base length.
        base: usize,
        /// Target length.
        target: usize,
    },
    /// The encoder failed.
    #[error("cannot make the delta: {0}")]
    Create(String),
    /// The delta is not a valid patch for this base.
    #[error("the delta does not apply to this base: {0}")]
    Corrupt(String),
    /// The rebuilt file is not the expected length (more output is cut off
    /// at the bound, never allocated).
    #[error("the rebuilt file is {actual} bytes, not the expected {expected}")]
    WrongLength {
        /// Expected (signed) length.
        expected: u64,
        /// What the delta produced (up to `expected + 1`).
        actual: u64,
    },
}

/// `ceil(log2(n))`, at least [`MIN_WINDOW_LOG`].
fn window_log(n: usize) -> u32 {
    let bits = usize::BITS - n.saturating_sub(1).leading_zeros();
    bits.max(MIN_WINDOW_LOG)
}

/// Makes a delta that turns `base` into `target` at zstd `level` (1..=22).
pub fn create(base: &[u8], target: &[u8], level: i32) -> Result<Vec<u8>, DeltaError> {
    let too_large = || DeltaError::TooLarge {
        base: base.len(),
        target: target.len(),
    };
    let log = window_log(base.len().checked_add(target.len()).ok_or_else(too_large)?);
    if log > MAX_WINDOW_LOG {
        return Err(too_large());
    }
    let create = |e: std::io::Error| DeltaError::Create(e.to_string());
    let mut encoder =
        zstd::stream::write::Encoder::with_ref_prefix(Vec::new(), level, base).map_err(create)?;
    encoder.long_distance_matching(true).map_err(create)?;
    encoder.window_log(log).map_err(create)?;
    encoder
        .set_pledged_src_size(Some(target.len() as u64))
        .map_err(create)?;
    encoder.include_checksum(true).map_err(create)?;
    std::io::Write::write_all(&mut encoder, target).map_err(create)?;
    encoder.finish().map_err(create)
}

/// Rebuilds the target from `base` and `delta`. Never produces (or
/// allocates for) more than `expected_len + 1` bytes; a result of another
/// length is refused. The caller still checks the signed hash.
pub fn apply(base: &[u8], delta: &[u8], expected_len: u64) -> Result<Vec<u8>, DeltaError> {
    let corrupt = |e: std::io::Error| DeltaError::Corrupt(e.to_string());
    let mut decoder =
        zstd::stream::read::Decoder::with_ref_prefix(std::io::BufReader::new(delta), base)
            .map_err(corrupt)?;
    decoder.window_log_max(MAX_WINDOW_LOG).map_err(corrupt)?;
    let capacity = usize::try_from(expected_len.min(64 * 1024 * 1024)).unwrap_or(0);
    let mut out = Vec::with_capacity(capacity);
    decoder
        .take(expected_len.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(corrupt)?;
    if out.len() as u64 != expected_len {
        return Err(DeltaError::WrongLength {
            expected: expected_len,
            actual: out.len() as u64,
        });
    }
    Ok(out)
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
        let delta = create(&base, &target, 3).unwrap();
        assert!(delta.len() < 2_000, "{}", delta.len());
        assert_eq!(apply(&base, &delta, target.len() as u64).unwrap(), target);
    }

    #[test]
    fn another_base_or_a_damaged_delta_is_refused() {
        let base = pseudo_random(100_000, 1);
        let target = edited(&base);
        let delta = create(&base, &target, 3).unwrap();
        let other = pseudo_random(100_000, 2);
        // The frame's checksum catches a wrong base.
        assert!(apply(&other, &delta, target.len() as u64).is_err());
        for at in [0, delta.len() / 2, delta.len() - 1] {
            let mut bad = delta.clone();
            bad[at] ^= 0x01;
            assert!(apply(&base, &bad, target.len() as u64).is_err(), "{at}");
        }
        assert!(apply(&base, b"not a delta", 10).is_err());
    }

    #[test]
    fn output_is_bounded_by_the_expected_length() {
        let base = pseudo_random(10_000, 1);
        let target = vec![0u8; 5_000_000];
        let delta = create(&base, &target, 3).unwrap();
        let err = apply(&base, &delta, 1000).unwrap_err();
        assert!(
            matches!(
                err,
                DeltaError::WrongLength {
                    expected: 1000,
                    actual: 1001
                }
            ),
            "{err}"
        );
        let err = apply(&base, &delta, 6_000_000).unwrap_err();
        assert!(matches!(err, DeltaError::WrongLength { .. }), "{err}");
    }

    #[test]
    fn empty_inputs_work() {
        let delta = create(b"", b"", 3).unwrap();
        assert_eq!(apply(b"", &delta, 0).unwrap(), b"");
        let delta = create(b"", b"abc", 3).unwrap();
        assert_eq!(apply(b"", &delta, 3).unwrap(), b"abc");
    }
}
