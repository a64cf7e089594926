//! The device's failure journal: an append-only, crash-safe record store in
//! `<state-dir>/journal/`.
//!
//! * `journal.log` holds checksummed, length-prefixed frames (see
//!   `frame.rs`). [`Journal::record`] appends one and `fdatasync`s before it
//!   returns, so an acknowledged record survives a power cut. On open, a
//!   torn or damaged tail (a write cut short, a flipped bit) is detected by
//!   the frame check and cut off; every record before it is kept.
//! * `cursor` holds the sequence number of the last record the service has
//!   acknowledged, replaced atomically (temp file, fsync, rename, fsync of
//!   the directory). A crash between upload and cursor write makes the
//!   device send a batch again; the service stores each record ID once.
//! * The file is bounded ([`DEFAULT_MAX_BYTES`], configurable). When a
//!   record would not fit, the journal is compacted into a new file
//!   (atomically): acknowledged records go first, then the oldest
//!   unacknowledged ones, and a `records-dropped` record with the count is
//!   written in the same step, so the loss itself is reported.
//!
//! Record IDs are 128 random bits, unique without coordination; the
//! sequence number orders records and tracks the upload cursor.
//!
//! One process writes a journal: the running agent. Other parts of the
//! runtime (the compartment supervisor) share its [`Journal`] through an
//! `Arc` and call [`Journal::record`].

mod frame;
mod panic;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use sevenfold_core::report::{FailureKind, FailureRecord, RecordId, ReportError};

pub use panic::install_panic_hook;

/// The journal's directory inside the state directory.
pub const JOURNAL_DIR: &str = "journal";
/// The record file.
pub const JOURNAL_FILE: &str = "journal.log";
/// The upload cursor file.
pub const CURSOR_FILE: &str = "cursor";
/// Default bound on `journal.log`: 4 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 4 * 1024 * 1024;
/// Smallest bound accepted (a few full-size records must fit).
pub const MIN_MAX_BYTES: u64 = 64 * 1024;
/// The component ID of records about the runtime itself.
pub const RUNTIME_COMPONENT: &str = "runtime";

/// Why the journal could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// A file operation failed (the record was not acknowledged).
    #[error("journal: cannot {action} {path}: {error}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        error: std::io::Error,
    },
    /// The record does not encode within the format's bounds.
    #[error("journal: {0}")]
    Record(#[from] ReportError),
    /// The system random number generator failed (no record ID).
    #[error("journal: the random number generator failed")]
    Random,
    /// The bound is too small to hold records.
    #[error("journal: a bound of {0} bytes is below the minimum of {MIN_MAX_BYTES}")]
    BoundTooSmall(u64),
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> JournalError {
    let path = path.to_path_buf();
    move |error| JournalError::Io {
        action,
        path,
        error,
    }
}

/// One record in the journal.
#[derive(Debug, Clone)]
struct Entry {
    seq: u64,
    frame: Vec<u8>,
    record: FailureRecord,
}

struct Inner {
    file: File,
    len: u64,
    entries: VecDeque<Entry>,
    next_seq: u64,
    acked: u64,
    dropped_total: u64,
}

/// A snapshot of the journal's counters (for status and metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JournalStats {
    /// Bytes in `journal.log`.
    pub bytes: u64,
    /// Records not yet acknowledged by the service.
    pub pending: u64,
    /// Records dropped because the journal was full, since it was opened.
    pub dropped: u64,
    /// Bytes of damaged tail cut off when it was opened.
    pub discarded_tail_bytes: u64,
}

/// The journal. Thread-safe; share it in an `Arc`.
pub struct Journal {
    dir: PathBuf,
    max_bytes: u64,
    discarded_tail_bytes: u64,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("dir", &self.dir)
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

impl Journal {
    /// Opens (creating if needed, mode 0700/0600) the journal in `dir`,
    /// cutting off any damaged tail.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Journal, JournalError> {
        if max_bytes < MIN_MAX_BYTES {
            return Err(JournalError::BoundTooSmall(max_bytes));
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io("create", dir))?;
        let path = dir.join(JOURNAL_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
            .map_err(io("open", &path))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io("read", &path))?;
        let scanned = frame::scan(&bytes);
        let discarded = (bytes.len() as u64).saturating_sub(scanned.good_len);
        if discarded > 0 {
            tracing::warn!(
                bytes = discarded,
                kept = scanned.records.len(),
                "journal: cut off a damaged tail (a write interrupted by a crash or power loss)"
            );
            file.set_len(scanned.good_len)
                .map_err(io("truncate", &path))?;
            file.sync_all().map_err(io("sync", &path))?;
        }
        file.seek(SeekFrom::End(0)).map_err(io("seek", &path))?;
        let acked = read_cursor(dir);
        let last_seq = scanned.records.last().map(|r| r.seq).unwrap_or(0);
        let entries = scanned
            .records
            .into_iter()
            .map(|s| Entry {
                seq: s.seq,
                frame: s.frame,
                record: s.record,
            })
            .collect();
        Ok(Journal {
            dir: dir.to_path_buf(),
            max_bytes,
            discarded_tail_bytes: discarded,
            inner: Mutex::new(Inner {
                file,
                len: scanned.good_len,
                entries,
                next_seq: last_seq.max(acked).saturating_add(1),
                acked,
                dropped_total: 0,
            }),
        })
    }

    /// Reads the journal in `dir` without changing anything (safe while an
    /// agent is writing it): every whole record, oldest first, with whether
    /// it was delivered. A tail being written is simply not shown.
    pub fn inspect(dir: &Path) -> Result<Vec<(FailureRecord, bool)>, JournalError> {
        let path = dir.join(JOURNAL_FILE);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io("read", &path)(e)),
        };
        let acked = read_cursor(dir);
        Ok(frame::scan(&bytes)
            .records
            .into_iter()
            .map(|s| (s.record, s.seq <= acked))
            .collect())
    }

    /// A new record with a fresh random ID, stamped now.
    pub fn new_record(
        kind: FailureKind,
        component_id: &str,
        component_version: &str,
        reason: &str,
    ) -> Result<FailureRecord, JournalError> {
        Ok(FailureRecord::new(
            fresh_id()?,
            now_millis(),
            kind,
            component_id,
            component_version,
            reason,
        ))
    }

    /// Appends `record` durably: when this returns `Ok`, the record is on
    /// stable storage and will reach the service (unless the journal fills
    /// before it is uploaded; then the loss is counted and reported).
    pub fn record(&self, record: &FailureRecord) -> Result<RecordId, JournalError> {
        let mut inner = self.lock();
        self.append(&mut inner, record)
    }

    /// [`Journal::record`] that gives up instead of waiting if the journal
    /// is busy (for the panic hook, which may run while this thread holds
    /// the lock).
    pub fn try_record(&self, record: &FailureRecord) -> Option<Result<RecordId, JournalError>> {
        let mut inner = match self.inner.try_lock() {
            Ok(guard) => guard,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        Some(self.append(&mut inner, record))
    }

    /// Records not yet acknowledged, oldest first: at most `max_records`,
    /// and at most `max_bytes` of encoded records (at least one).
    pub fn pending(&self, max_records: usize, max_bytes: usize) -> Vec<(u64, FailureRecord)> {
        let inner = self.lock();
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for entry in inner.entries.iter().filter(|e| e.seq > inner.acked) {
            let size = entry.frame.len().max(1);
            if out.len() >= max_records || (!out.is_empty() && bytes + size > max_bytes) {
                break;
            }
            bytes += size;
            out.push((entry.seq, entry.record.clone()));
        }
        out
    }

    /// Marks every record up to sequence `seq` as delivered (durably).
    pub fn acknowledge(&self, seq: u64) -> Result<(), JournalError> {
        let mut inner = self.lock();
        if seq <= inner.acked {
            return Ok(());
        }
        write_cursor(&self.dir, seq)?;
        inner.acked = seq;
        Ok(())
    }

    /// Counters for status and metrics.
    pub fn stats(&self) -> JournalStats {
        let inner = self.lock();
        JournalStats {
            bytes: inner.len,
            pending: inner.entries.iter().filter(|e| e.seq > inner.acked).count() as u64,
            dropped: inner.dropped_total,
            discarded_tail_bytes: self.discarded_tail_bytes,
        }
    }

    /// Every record in the file, oldest first, with whether it was delivered.
    pub fn records(&self) -> Vec<(FailureRecord, bool)> {
        let inner = self.lock();
        inner
            .entries
            .iter()
            .map(|e| (e.record.clone(), e.seq <= inner.acked))
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn append(&self, inner: &mut Inner, record: &FailureRecord) -> Result<RecordId, JournalError> {
        let payload = record.encode()?;
        let frame_len = (frame::HEADER_LEN + payload.len()) as u64;
        if inner.len + frame_len > self.max_bytes {
            self.compact(inner, frame_len)?;
        }
        // After a compaction, which may have used a sequence number.
        let seq = inner.next_seq;
        let frame = frame::encode(seq, &payload);
        let path = self.dir.join(JOURNAL_FILE);
        let written = inner
            .file
            .write_all(&frame)
            .and_then(|()| inner.file.sync_data());
        if let Err(error) = written {
            // Leave no partial frame behind for the next record to follow.
            let _ = inner.file.set_len(inner.len);
            return Err(JournalError::Io {
                action: "append to",
                path,
                error,
            });
        }
        inner.len += frame.len() as u64;
        inner.next_seq = seq.saturating_add(1);
        inner.entries.push_back(Entry {
            seq,
            frame,
            record: record.clone(),
        });
        Ok(record.id.clone())
    }

    /// Rewrites the file without acknowledged records and, if that is not
    /// enough, without the oldest pending ones (adding a `records-dropped`
    /// record), so that `incoming` more bytes fit with room to spare.
    fn compact(&self, inner: &mut Inner, incoming: u64) -> Result<(), JournalError> {
        // Leave a quarter free so compaction is not needed on every append.
        let target = (self.max_bytes / 4 * 3).saturating_sub(incoming);
        let acked = inner.acked;
        let mut kept: VecDeque<Entry> = inner
            .entries
            .iter()
            .filter(|e| e.seq > acked)
            .cloned()
            .collect();
        let notice_room = 1024u64;
        let mut size: u64 = kept.iter().map(|e| e.frame.len() as u64).sum();
        let mut dropped = 0u64;
        // Counts of earlier `records-dropped` notices that are dropped now:
        // carried into the new notice, so no loss goes unreported.
        let mut carried = 0u64;
        while size
            + if dropped + carried > 0 {
                notice_room
            } else {
                0
            }
            > target
        {
            match kept.pop_front() {
                Some(e) => {
                    size -= e.frame.len() as u64;
                    if e.record.kind == FailureKind::RecordsDropped {
                        carried += e
                            .record
                            .details
                            .get("count")
                            .and_then(|c| c.parse::<u64>().ok())
                            .unwrap_or(0);
                    } else {
                        dropped += 1;
                    }
                }
                None => break,
            }
        }
        let mut next_seq = inner.next_seq;
        if dropped + carried > 0 {
            let total = dropped + carried;
            let notice = Journal::new_record(
                FailureKind::RecordsDropped,
                RUNTIME_COMPONENT,
                env!("CARGO_PKG_VERSION"),
                &format!("the journal was full; {total} oldest undelivered records were dropped"),
            )?
            .with_detail("count", total);
            let frame = frame::encode(next_seq, &notice.encode()?);
            kept.push_back(Entry {
                seq: next_seq,
                frame,
                record: notice,
            });
            next_seq = next_seq.saturating_add(1);
            tracing::warn!(
                dropped,
                "journal full: dropped the oldest undelivered records"
            );
        }
        let bytes: Vec<u8> = kept.iter().flat_map(|e| e.frame.iter().copied()).collect();
        let path = self.dir.join(JOURNAL_FILE);
        let temp = self.dir.join(format!("{JOURNAL_FILE}.tmp"));
        write_durably(&temp, &bytes)?;
        fs::rename(&temp, &path).map_err(io("replace", &path))?;
        sync_dir(&self.dir)?;
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io("open", &path))?;
        inner.file = file;
        inner.len = bytes.len() as u64;
        inner.entries = kept;
        inner.next_seq = next_seq;
        inner.dropped_total += dropped;
        Ok(())
    }
}

fn fresh_id() -> Result<RecordId, JournalError> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| JournalError::Random)?;
    Ok(RecordId::from_random(bytes))
}

/// Now, in unix milliseconds.
pub(crate) fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The acknowledged sequence number; 0 (send everything again, which the
/// service deduplicates) if the cursor is missing or unreadable.
fn read_cursor(dir: &Path) -> u64 {
    let path = dir.join(CURSOR_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => text.trim().parse().unwrap_or_else(|_| {
            tracing::warn!(path = %path.display(), "journal cursor unreadable; resending from the start");
            0
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "journal cursor unreadable; resending from the start");
            0
        }
    }
}

fn write_cursor(dir: &Path, seq: u64) -> Result<(), JournalError> {
    let temp = dir.join(format!("{CURSOR_FILE}.tmp"));
    write_durably(&temp, format!("{seq}\n").as_bytes())?;
    let path = dir.join(CURSOR_FILE);
    fs::rename(&temp, &path).map_err(io("replace", &path))?;
    sync_dir(dir)
}

fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), JournalError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io("create", path))?;
    file.write_all(bytes).map_err(io("write", path))?;
    file.sync_all().map_err(io("sync", path))
}

fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync", dir))
}
