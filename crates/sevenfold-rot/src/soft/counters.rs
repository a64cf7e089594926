//! Monotonic counters of the soft root of trust: one small file per counter.
//!
//! `<state_dir>/counters/counter-NNNNN` (NNNNN the decimal index) holds a
//! 40-byte record:
//!
//! ```text
//! value u64 BE (8) | SHA-256("sevenfold-counter-v1" | index u32 BE | value u64 BE) (32)
//! ```
//!
//! The checksum catches damage (a torn sector, a flipped bit, a file copied
//! from another counter) so that a damaged counter is
//! [`RotError::CorruptState`] rather than silently read as some other value:
//! the store fails closed. It is not a MAC; it does not stop someone who can
//! write the directory from forging or deleting a record (a missing file reads
//! 0). That is the soft backend's documented limit.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use crate::{CounterIndex, Digest, Hasher, RotError, DIGEST_LEN};

use super::fs;

const DOMAIN: &[u8] = b"sevenfold-counter-v1";
const VALUE_LEN: usize = 8;
const RECORD_LEN: usize = VALUE_LEN + DIGEST_LEN;

/// The counters directory, with updates serialised.
pub(super) struct CounterStore {
    dir: PathBuf,
    /// Held across read–compare–write so two advances cannot interleave.
    write_lock: Mutex<()>,
    /// Test hook: when set, `advance` stops after the temp file is written
    /// and fsynced, before the rename, as if the power failed there.
    #[cfg(test)]
    crash_before_rename: std::sync::atomic::AtomicBool,
}

impl CounterStore {
    /// Opens `dir`, creating it (0700) if absent, refusing it if exposed, and
    /// deleting temp files a crash left behind (they never count).
    pub(super) fn open(dir: PathBuf) -> Result<CounterStore, RotError> {
        if fs::exists(&dir)? {
            fs::check_private_dir(&dir)?;
        } else {
            fs::create_private_dir(&dir)?;
        }
        fs::remove_stale_temps(&dir)?;
        Ok(CounterStore {
            dir,
            write_lock: Mutex::new(()),
            #[cfg(test)]
            crash_before_rename: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The counter's value; 0 if it was never written.
    pub(super) fn read(&self, index: CounterIndex) -> Result<u64, RotError> {
        let path = self.path(index);
        match fs::read_private_file(&path, RECORD_LEN)? {
            None => Ok(0),
            Some(record) => decode(&path, index, &record),
        }
    }

    /// Raises the counter to `value`, durably; see
    /// [`crate::RootOfTrust::advance_counter`].
    pub(super) fn advance(&self, index: CounterIndex, value: u64) -> Result<u64, RotError> {
        // The guarded data is `()`: a panic elsewhere cannot have left it
        // half-updated, so a poisoned lock is safe to take over.
        let _guard = self
            .write_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let current = self.read(index)?;
        if value < current {
            return Err(RotError::CounterRollback {
                index: index.get(),
                current,
                requested: value,
            });
        }
        if value == current {
            return Ok(current);
        }
        let temp = fs::write_temp(&self.dir, &file_name(index), &encode(index, value))?;
        #[cfg(test)]
        if self
            .crash_before_rename
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return Err(RotError::io(
                temp,
                std::io::Error::other("simulated crash between write and rename"),
            ));
        }
        fs::commit_temp(&temp, &self.path(index), &self.dir)?;
        Ok(value)
    }

    fn path(&self, index: CounterIndex) -> PathBuf {
        self.dir.join(file_name(index))
    }

    #[cfg(test)]
    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }
}

fn file_name(index: CounterIndex) -> String {
    format!("counter-{:05}", index.get())
}

fn checksum(index: CounterIndex, value: u64) -> Digest {
    let mut h = Hasher::new();
    h.update(DOMAIN);
    h.update(&index.get().to_be_bytes());
    h.update(&value.to_be_bytes());
    h.finish()
}

fn encode(index: CounterIndex, value: u64) -> Vec<u8> {
    let mut record = Vec::with_capacity(RECORD_LEN);
    record.extend_from_slice(&value.to_be_bytes());
    record.extend_from_slice(checksum(index, value).as_bytes());
    record
}

fn decode(path: &Path, index: CounterIndex, record: &[u8]) -> Result<u64, RotError> {
    if record.len() != RECORD_LEN {
        return Err(fs::corrupt(
            path,
            &format!(
                "counter record is {} bytes, expected {RECORD_LEN}",
                record.len()
            ),
        ));
    }
    let (value, sum) = record
        .split_first_chunk::<VALUE_LEN>()
        .ok_or_else(|| fs::corrupt(path, "counter record is truncated"))?;
    let value = u64::from_be_bytes(*value);
    if sum != checksum(index, value).as_bytes() {
        return Err(fs::corrupt(path, "counter record checksum does not match"));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::soft::SoftRoot;
    use crate::RootOfTrust;

    fn idx(i: u32) -> CounterIndex {
        CounterIndex::new(i).unwrap()
    }

    fn counter_file(root: &SoftRoot, i: u32) -> PathBuf {
        root.counters.dir().join(file_name(idx(i)))
    }

    #[test]
    fn counters_start_at_zero_and_only_rise() {
        let dir = tempfile::tempdir().unwrap();
        let rot = SoftRoot::create(dir.path()).unwrap();
        assert_eq!(rot.read_counter(idx(1)).unwrap(), 0);
        assert_eq!(rot.advance_counter(idx(1), 5).unwrap(), 5);
        assert_eq!(rot.read_counter(idx(1)).unwrap(), 5);
        assert!(matches!(
            rot.advance_counter(idx(1), 3),
            Err(RotError::CounterRollback {
                index: 1,
                current: 5,
                requested: 3
            })
        ));
        assert_eq!(rot.read_counter(idx(1)).unwrap(), 5);
        // Other counters are independent.
        assert_eq!(rot.read_counter(idx(2)).unwrap(), 0);
    }

    #[test]
    fn equal_value_is_a_no_op_that_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let rot = SoftRoot::create(dir.path()).unwrap();
        assert_eq!(rot.advance_counter(idx(7), 0).unwrap(), 0);
        assert!(!counter_file(&rot, 7).exists());
        rot.advance_counter(idx(7), 4).unwrap();
        let before = std::fs::metadata(counter_file(&rot, 7)).unwrap();
        assert_eq!(rot.advance_counter(idx(7), 4).unwrap(), 4);
        let after = std::fs::metadata(counter_file(&rot, 7)).unwrap();
        // A rename would have given the file a new inode.
        use std::os::unix::fs::MetadataExt;
        assert_eq!(before.ino(), after.ino());
    }

    #[test]
    fn counters_survive_reopen_with_private_files() {
        let dir = tempfile::tempdir().unwrap();
        let rot = SoftRoot::create(dir.path()).unwrap();
        rot.advance_counter(idx(MAX_INDEX), u64::MAX).unwrap();
        rot.advance_counter(idx(0), 12).unwrap();
        drop(rot);
        let rot = SoftRoot::open(dir.path()).unwrap();
        assert_eq!(rot.read_counter(idx(MAX_INDEX)).unwrap(), u64::MAX);
        assert_eq!(rot.read_counter(idx(0)).unwrap(), 12);
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(rot.counters.dir()), 0o700);
        assert_eq!(mode(&counter_file(&rot, 0)), 0o600);
    }

    const MAX_INDEX: u32 = crate::MAX_COUNTER_INDEX;

    /// A crash after the temp file is durable but before the rename must
    /// leave the old value, and the leftover must not block later updates.
    #[test]
    fn crash_between_write_and_rename_keeps_the_old_value() {
        let dir = tempfile::tempdir().unwrap();
        let rot = SoftRoot::create(dir.path()).unwrap();
        rot.advance_counter(idx(3), 5).unwrap();
        rot.counters
            .crash_before_rename
            .store(true, Ordering::SeqCst);
        assert!(matches!(
            rot.advance_counter(idx(3), 9),
            Err(RotError::Io { .. })
        ));
        let counters_dir = rot.counters.dir().to_path_buf();
        let temps = || {
            std::fs::read_dir(&counters_dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|n| n != "counter-00003")
                .collect::<Vec<_>>()
        };
        // The temp record for 9 is on disk, fully written.
        let left = temps();
        assert_eq!(left.len(), 1, "{left:?}");
        let temp = std::fs::read(counters_dir.join(&left[0])).unwrap();
        assert_eq!(temp, encode(idx(3), 9));
        drop(rot);

        let rot = SoftRoot::open(dir.path()).unwrap();
        assert_eq!(rot.read_counter(idx(3)).unwrap(), 5);
        assert!(temps().is_empty(), "stale temp files are removed at open");
        assert_eq!(rot.advance_counter(idx(3), 6).unwrap(), 6);
        drop(rot);
        let rot = SoftRoot::open(dir.path()).unwrap();
        assert_eq!(rot.read_counter(idx(3)).unwrap(), 6);
    }

    #[test]
    fn any_flipped_byte_is_corrupt_state_for_read_and_advance() {
        let dir = tempfile::tempdir().unwrap();
        let rot = SoftRoot::create(dir.path()).unwrap();
        rot.advance_counter(idx(2), 5).unwrap();
        let path = counter_file(&rot, 2);
        let good = std::fs::read(&path).unwrap();
        assert_eq!(good.len(), RECORD_LEN);
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            std::fs::write(&path, &bad).unwrap();
            assert!(
                matches!(rot.read_counter(idx(2)), Err(RotError::CorruptState { .. })),
                "byte {i}"
            );
            assert!(
                matches!(
                    rot.advance_counter(idx(2), 1_000),
                    Err(RotError::CorruptState { .. })
                ),
                "byte {i}"
            );
        }
        std::fs::write(&path, &good).unwrap();
        assert_eq!(rot.read_counter(idx(2)).unwrap(), 5);
    }

    #[test]
    fn truncated_empty_or_foreign_record_is_corrupt_state() {
        let dir = tempfile::tempdir().unwrap();
        let rot = SoftRoot::create(dir.path()).unwrap();
        rot.advance_counter(idx(2), 5).unwrap();
        let path = counter_file(&rot, 2);
        let good = std::fs::read(&path).unwrap();
        for len in [0, 1, 8, RECORD_LEN - 1] {
            std::fs::write(&path, &good[..len]).unwrap();
            let err = rot.read_counter(idx(2)).unwrap_err();
            assert!(
                matches!(&err, RotError::CorruptState { path: p, .. } if *p == path),
                "len {len}: {err}"
            );
        }
        let mut longer = good.clone();
        longer.push(0);
        std::fs::write(&path, &longer).unwrap();
        assert!(matches!(
            rot.read_counter(idx(2)),
            Err(RotError::CorruptState { .. })
        ));
        // A valid record of counter 2 copied to counter 4 does not count.
        fs::write_atomic(rot.counters.dir(), &file_name(idx(4)), &good).unwrap();
        assert!(matches!(
            rot.read_counter(idx(4)),
            Err(RotError::CorruptState { .. })
        ));
    }

    #[test]
    fn record_round_trips() {
        for (i, v) in [(0, 0), (1, 1), (MAX_INDEX, u64::MAX)] {
            let r = encode(idx(i), v);
            assert_eq!(decode(Path::new("x"), idx(i), &r).unwrap(), v);
        }
    }
}
