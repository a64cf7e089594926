//! Sealing for the soft root of trust: AES-256-GCM under a per-device key.
//!
//! The sealing key is 32 random bytes in `<state_dir>/sealing-key.bin`,
//! created with the device key and never leaving this module. A sealed blob
//! (version 1) is:
//!
//! ```text
//! version u8 = 1 | count u8 | count × register index u8 (strictly ascending)
//! | nonce (12, random) | ciphertext | tag (16)
//! ```
//!
//! `count = 0` is [`SealPolicy::Device`](crate::SealPolicy::Device). The
//! additional authenticated data, which is never stored but recomputed at
//! unseal time, binds everything the secret depends on:
//!
//! ```text
//! "sevenfold-seal-v1" | version | device ID (32) | count | indices
//! | count × register value (32)
//! ```
//!
//! The register values are those at seal time; at unseal the *current* values
//! are used, so a changed register makes the tag fail. Another device has a
//! different sealing key and device ID, so its blobs fail too.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, MAX_TAG_LEN, NONCE_LEN};
use zeroize::Zeroizing;

use crate::{DeviceId, RegisterIndex, RegisterValues, RotError, MAX_SEALED_LEN, REGISTER_COUNT};

/// Length of the sealing key file.
pub(super) const SEALING_KEY_LEN: usize = 32;

const DOMAIN: &[u8] = b"sevenfold-seal-v1";
const VERSION: u8 = 1;
const TAG_LEN: usize = MAX_TAG_LEN;
/// Longest blob `seal` can produce; anything longer is refused unread.
const MAX_BLOB_LEN: usize = 2 + REGISTER_COUNT as usize + NONCE_LEN + MAX_SEALED_LEN + TAG_LEN;

/// The AES-256-GCM key that seals and unseals.
pub(super) struct Sealer {
    key: LessSafeKey,
}

impl Sealer {
    /// A fresh random sealing key, for a new state directory.
    pub(super) fn generate_key() -> Result<Zeroizing<[u8; SEALING_KEY_LEN]>, RotError> {
        let mut key = Zeroizing::new([0u8; SEALING_KEY_LEN]);
        aws_lc_rs::rand::fill(key.as_mut_slice())
            .map_err(|_| RotError::Crypto("sealing key generation"))?;
        Ok(key)
    }

    /// Loads the key bytes read from the sealing key file; `None` if they
    /// are not a key (the caller reports the file as corrupt).
    pub(super) fn new(key: &[u8]) -> Option<Sealer> {
        if key.len() != SEALING_KEY_LEN {
            return None;
        }
        let key = UnboundKey::new(&AES_256_GCM, key).ok()?;
        Some(Sealer {
            key: LessSafeKey::new(key),
        })
    }

    /// Seals `secret` to `device` and to `registers` (the policy's registers
    /// with their current values; empty for a device-only policy).
    pub(super) fn seal(
        &self,
        device: &DeviceId,
        registers: &RegisterValues,
        secret: &[u8],
    ) -> Result<Vec<u8>, RotError> {
        if secret.len() > MAX_SEALED_LEN {
            return Err(RotError::SealTooLarge(secret.len()));
        }
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| RotError::Crypto("random sealing nonce"))?;
        let indices: Vec<RegisterIndex> = registers.indices().collect();
        let mut blob = Zeroizing::new(Vec::with_capacity(MAX_BLOB_LEN));
        blob.push(VERSION);
        encode_indices(&mut blob, &indices)?;
        blob.extend_from_slice(&nonce);
        let start = blob.len();
        blob.extend_from_slice(secret);
        let plaintext = blob
            .get_mut(start..)
            .ok_or(RotError::Crypto("sealing buffer"))?;
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(device, registers)?),
                plaintext,
            )
            .map_err(|_| RotError::Crypto("AES-GCM seal"))?;
        blob.extend_from_slice(tag.as_ref());
        // Ciphertext only from here on; hand it out and let the (now empty)
        // zeroizing wrapper drop.
        Ok(std::mem::take(&mut *blob))
    }

    /// Opens a blob checked by [`SealedBlob::parse`], given the current values
    /// of the registers it names.
    pub(super) fn unseal(
        &self,
        device: &DeviceId,
        blob: &SealedBlob<'_>,
        current: &RegisterValues,
    ) -> Result<Zeroizing<Vec<u8>>, RotError> {
        if !current.indices().eq(blob.indices.iter().copied()) {
            return Err(RotError::Unseal(
                "register selection does not match the blob",
            ));
        }
        let aad = aad(device, current).map_err(|_| RotError::Unseal("malformed policy"))?;
        let mut buffer = Zeroizing::new(blob.ciphertext.to_vec());
        let len = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(blob.nonce),
                Aad::from(aad),
                buffer.as_mut_slice(),
            )
            .map_err(|_| RotError::Unseal("wrong device, changed registers or tampered blob"))?
            .len();
        buffer.truncate(len);
        Ok(buffer)
    }
}

/// A sealed blob whose structure has been checked (not yet its tag).
pub(super) struct SealedBlob<'a> {
    indices: Vec<RegisterIndex>,
    nonce: [u8; NONCE_LEN],
    ciphertext: &'a [u8],
}

impl<'a> SealedBlob<'a> {
    /// Splits an untrusted blob into its parts; never panics.
    pub(super) fn parse(bytes: &'a [u8]) -> Result<SealedBlob<'a>, RotError> {
        const TRUNCATED: RotError = RotError::Unseal("truncated blob");
        if bytes.len() > MAX_BLOB_LEN {
            return Err(RotError::Unseal("blob is longer than any sealed secret"));
        }
        let (&version, rest) = bytes.split_first().ok_or(TRUNCATED)?;
        if version != VERSION {
            return Err(RotError::Unseal("unknown blob version"));
        }
        let (&count, rest) = rest.split_first().ok_or(TRUNCATED)?;
        if u32::from(count) > REGISTER_COUNT {
            return Err(RotError::Unseal("policy names too many registers"));
        }
        let (index_bytes, rest) = rest.split_at_checked(usize::from(count)).ok_or(TRUNCATED)?;
        let mut indices: Vec<RegisterIndex> = Vec::with_capacity(index_bytes.len());
        for &b in index_bytes {
            let index = RegisterIndex::new(u32::from(b))
                .map_err(|_| RotError::Unseal("policy names a register that does not exist"))?;
            if indices.last().is_some_and(|last| *last >= index) {
                return Err(RotError::Unseal(
                    "policy registers are not strictly ascending",
                ));
            }
            indices.push(index);
        }
        let (nonce, ciphertext) = rest.split_first_chunk::<NONCE_LEN>().ok_or(TRUNCATED)?;
        if ciphertext.len() < TAG_LEN {
            return Err(TRUNCATED);
        }
        Ok(SealedBlob {
            indices,
            nonce: *nonce,
            ciphertext,
        })
    }

    /// The registers the blob is sealed to, ascending.
    pub(super) fn indices(&self) -> &[RegisterIndex] {
        &self.indices
    }
}

fn encode_indices(out: &mut Vec<u8>, indices: &[RegisterIndex]) -> Result<(), RotError> {
    let count = u8::try_from(indices.len()).map_err(|_| RotError::Crypto("policy too large"))?;
    out.push(count);
    for index in indices {
        out.push(u8::try_from(index.get()).map_err(|_| RotError::NoSuchRegister(index.get()))?);
    }
    Ok(())
}

fn aad(device: &DeviceId, registers: &RegisterValues) -> Result<Vec<u8>, RotError> {
    let indices: Vec<RegisterIndex> = registers.indices().collect();
    let mut aad = Vec::with_capacity(DOMAIN.len() + 1 + 32 + 1 + indices.len() * 33);
    aad.extend_from_slice(DOMAIN);
    aad.push(VERSION);
    aad.extend_from_slice(device.digest().as_bytes());
    encode_indices(&mut aad, &indices)?;
    for (_, value) in registers.iter() {
        aad.extend_from_slice(value.as_bytes());
    }
    Ok(aad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soft::SoftRoot;
    use crate::{Digest, RootOfTrust, SealPolicy, APPLICATION_REGISTER, RUNTIME_REGISTER};

    fn root() -> (tempfile::TempDir, SoftRoot) {
        let dir = tempfile::tempdir().unwrap();
        let rot = SoftRoot::create(dir.path()).unwrap();
        (dir, rot)
    }

    #[test]
    fn device_policy_round_trips() {
        let (_dir, rot) = root();
        for secret in [&b""[..], b"disk key", &[0xA5; MAX_SEALED_LEN]] {
            let blob = rot.seal(secret, &SealPolicy::Device).unwrap();
            assert_eq!(blob.len(), 2 + NONCE_LEN + secret.len() + TAG_LEN);
            if !secret.is_empty() {
                assert!(
                    !blob.windows(secret.len()).any(|w| w == secret),
                    "plaintext visible in the blob"
                );
            }
            assert_eq!(rot.unseal(&blob).unwrap().as_slice(), secret);
            // Registers do not matter to a device-only policy.
            rot.extend(RUNTIME_REGISTER, &Digest::of(b"x")).unwrap();
            assert_eq!(rot.unseal(&blob).unwrap().as_slice(), secret);
        }
        // Two seals of one secret differ (random nonce).
        let a = rot.seal(b"s", &SealPolicy::Device).unwrap();
        let b = rot.seal(b"s", &SealPolicy::Device).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn survives_reopen() {
        let (dir, rot) = root();
        let blob = rot.seal(b"secret", &SealPolicy::Device).unwrap();
        drop(rot);
        let rot = SoftRoot::open(dir.path()).unwrap();
        assert_eq!(rot.unseal(&blob).unwrap().as_slice(), b"secret");
    }

    #[test]
    fn register_policy_fails_once_the_register_changes() {
        let (_dir, rot) = root();
        rot.extend(APPLICATION_REGISTER, &Digest::of(b"app v1"))
            .unwrap();
        let policy = SealPolicy::Registers(vec![APPLICATION_REGISTER]);
        let blob = rot.seal(b"app secret", &policy).unwrap();
        // Another register changing does not matter.
        rot.extend(RUNTIME_REGISTER, &Digest::of(b"runtime"))
            .unwrap();
        assert_eq!(rot.unseal(&blob).unwrap().as_slice(), b"app secret");
        rot.extend(APPLICATION_REGISTER, &Digest::of(b"evil"))
            .unwrap();
        assert!(matches!(rot.unseal(&blob), Err(RotError::Unseal(_))));
    }

    #[test]
    fn register_policy_does_not_survive_a_reboot_with_other_values() {
        let (dir, rot) = root();
        rot.extend(APPLICATION_REGISTER, &Digest::of(b"app v1"))
            .unwrap();
        let policy = SealPolicy::Registers(vec![APPLICATION_REGISTER, APPLICATION_REGISTER]);
        let blob = rot.seal(b"s", &policy).unwrap();
        drop(rot);
        let rot = SoftRoot::open(dir.path()).unwrap();
        assert!(matches!(rot.unseal(&blob), Err(RotError::Unseal(_))));
        // Measuring the same thing again restores access.
        rot.extend(APPLICATION_REGISTER, &Digest::of(b"app v1"))
            .unwrap();
        assert_eq!(rot.unseal(&blob).unwrap().as_slice(), b"s");
    }

    #[test]
    fn another_device_cannot_unseal() {
        let (_a_dir, a) = root();
        let (_b_dir, b) = root();
        for policy in [
            SealPolicy::Device,
            SealPolicy::Registers(vec![RUNTIME_REGISTER]),
        ] {
            let blob = a.seal(b"secret", &policy).unwrap();
            assert!(matches!(b.unseal(&blob), Err(RotError::Unseal(_))));
        }
    }

    #[test]
    fn any_flipped_byte_or_truncation_fails() {
        let (_dir, rot) = root();
        let policy = SealPolicy::Registers(vec![RUNTIME_REGISTER, APPLICATION_REGISTER]);
        let blob = rot.seal(b"secret", &policy).unwrap();
        for i in 0..blob.len() {
            for bit in [0x01, 0x80] {
                let mut bad = blob.clone();
                bad[i] ^= bit;
                assert!(
                    matches!(rot.unseal(&bad), Err(RotError::Unseal(_))),
                    "byte {i} bit {bit:#x}"
                );
            }
        }
        for len in 0..blob.len() {
            assert!(
                matches!(rot.unseal(&blob[..len]), Err(RotError::Unseal(_))),
                "length {len}"
            );
        }
        let mut longer = blob.clone();
        longer.push(0);
        assert!(matches!(rot.unseal(&longer), Err(RotError::Unseal(_))));
        assert_eq!(rot.unseal(&blob).unwrap().as_slice(), b"secret");
    }

    #[test]
    fn too_large_secret_is_refused() {
        let (_dir, rot) = root();
        assert!(matches!(
            rot.seal(&[0; MAX_SEALED_LEN + 1], &SealPolicy::Device),
            Err(RotError::SealTooLarge(129))
        ));
        assert!(matches!(
            rot.unseal(&[VERSION; MAX_BLOB_LEN + 1]),
            Err(RotError::Unseal(_))
        ));
    }

    #[test]
    fn malformed_policies_are_refused() {
        let (_dir, rot) = root();
        let tail = [0u8; NONCE_LEN + TAG_LEN];
        let blob = |head: &[u8]| [head, &tail[..]].concat();
        for head in [
            &[2u8, 0][..],         // unknown version
            &[VERSION, 25],        // too many registers
            &[VERSION, 1, 24],     // no such register
            &[VERSION, 2, 15, 14], // not ascending
            &[VERSION, 2, 15, 15], // repeated
        ] {
            assert!(
                matches!(rot.unseal(&blob(head)), Err(RotError::Unseal(_))),
                "{head:?}"
            );
        }
    }

    #[test]
    fn unsealing_arbitrary_bytes_never_panics() {
        use proptest::prelude::*;
        let (_dir, rot) = root();
        rot.extend(RUNTIME_REGISTER, &Digest::of(b"r")).unwrap();
        let valid = rot
            .seal(b"secret", &SealPolicy::Registers(vec![RUNTIME_REGISTER]))
            .unwrap();
        let mut runner = proptest::test_runner::TestRunner::default();
        // Arbitrary bytes, and arbitrary bytes behind a plausible header.
        let strategy = (
            proptest::collection::vec(any::<u8>(), 0..300),
            any::<bool>(),
        );
        runner
            .run(&strategy, |(bytes, with_header)| {
                let input = if with_header {
                    [&valid[..3], &bytes[..]].concat()
                } else {
                    bytes
                };
                prop_assert!(rot.unseal(&input).is_err());
                Ok(())
            })
            .unwrap();
        // And every single-byte change to a valid blob.
        runner
            .run(&(0..valid.len(), 1..=255u8), |(i, x)| {
                let mut bad = valid.clone();
                bad[i] ^= x;
                prop_assert!(matches!(rot.unseal(&bad), Err(RotError::Unseal(_))));
                Ok(())
            })
            .unwrap();
    }
}
