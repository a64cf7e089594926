//! The operator audit log: append-only and hash-chained.
//!
//! Entry `n` stores the hash of entry `n - 1` (`prev_hash`, 64 zeros for
//! entry 1) and its own `hash`: SHA-256 over an unambiguous encoding of
//! `prev_hash` and all its fields (see [`entry_hash`]). [`Store::verify_audit`]
//! walks the chain and finds an entry that was altered (its hash no longer
//! matches its contents), removed (a gap in `seq`), or re-hashed to hide an
//! alteration (the next entry no longer links to it).
//!
//! **Concurrency.** Several replicas may append at once. Each append runs in
//! one transaction that first updates the single `audit_head` row (which
//! serialises appenders: a row lock on PostgreSQL, the write lock on SQLite),
//! then reads the last entry and inserts the next one with `seq` as the primary
//! key. Should two appenders ever read the same head anyway, the second insert
//! fails on the primary key and is retried on the new head, so the chain
//! never forks.
//!
//! **Limits.** The chain proves the log is consistent with itself, not that
//! it is the log that was written: someone with write access to the database
//! who rewrites an entry *and every entry after it*, recomputing the hashes,
//! produces a chain that verifies. `audit_head.appends` (the number of
//! committed appends) catches a plain truncation of the tail, but it too can
//! be rewritten. Catching a consistent rewrite needs the head hash anchored
//! outside the database (published, or countersigned elsewhere); see
//! [`Store::audit_head`].

use std::time::Duration;

use sqlx::any::AnyRow;

use super::error::is_unique_violation;
use super::{
    clamp_limit, col, col_enum, now_millis, AuditEntry, AuditFilter, AuditOutcome,
    AuditVerification, NewAuditEntry, Store, StoreError,
};

/// `prev_hash` of the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// How many times an append is retried after losing a race for a position.
const MAX_APPEND_ATTEMPTS: u32 = 20;

/// How many entries [`Store::verify_audit`] reads per query.
const VERIFY_BATCH: i64 = 500;

/// Domain separator, so an audit hash can never be confused with another
/// SHA-256 the service computes.
const HASH_DOMAIN: &[u8] = b"sevenfold-audit-entry-v1";

macro_rules! audit_columns {
    () => {
        "seq, at, actor, tenant_id, action, target, outcome, source, details, prev_hash, hash"
    };
}

/// The fields an entry's hash covers, borrowed.
struct HashInput<'a> {
    prev_hash: &'a str,
    seq: i64,
    at: i64,
    actor: &'a str,
    tenant_id: Option<&'a str>,
    action: &'a str,
    target: &'a str,
    outcome: &'a str,
    source: &'a str,
    details: &'a str,
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u64).to_be_bytes());
    buf.extend_from_slice(s.as_bytes());
}

/// Hex SHA-256 of an entry: the domain separator, then each field in a fixed
/// order, strings as an 8-byte big-endian length followed by their UTF-8
/// bytes, integers as 8 bytes big-endian, and the optional tenant as a 0 or 1
/// byte followed (if 1) by the string. Every encoding is decodable, so two
/// different entries never hash the same input.
fn entry_hash(input: &HashInput<'_>) -> String {
    let mut buf = Vec::with_capacity(256);
    buf.extend_from_slice(HASH_DOMAIN);
    put_str(&mut buf, input.prev_hash);
    buf.extend_from_slice(&input.seq.to_be_bytes());
    buf.extend_from_slice(&input.at.to_be_bytes());
    put_str(&mut buf, input.actor);
    match input.tenant_id {
        None => buf.push(0),
        Some(tenant) => {
            buf.push(1);
            put_str(&mut buf, tenant);
        }
    }
    put_str(&mut buf, input.action);
    put_str(&mut buf, input.target);
    put_str(&mut buf, input.outcome);
    put_str(&mut buf, input.source);
    put_str(&mut buf, input.details);
    sevenfold_rot::Digest::of(&buf).to_hex()
}

/// An entry as stored, with the outcome left as text so that verification
/// can report an entry whose outcome was tampered with as altered rather than
/// fail to decode it.
struct RawEntry {
    seq: i64,
    at: i64,
    actor: String,
    tenant_id: Option<String>,
    action: String,
    target: String,
    outcome: String,
    source: String,
    details: String,
    prev_hash: String,
    hash: String,
}

impl RawEntry {
    fn from_row(row: &AnyRow) -> Result<RawEntry, StoreError> {
        Ok(RawEntry {
            seq: col(row, "seq")?,
            at: col(row, "at")?,
            actor: col(row, "actor")?,
            tenant_id: col(row, "tenant_id")?,
            action: col(row, "action")?,
            target: col(row, "target")?,
            outcome: col(row, "outcome")?,
            source: col(row, "source")?,
            details: col(row, "details")?,
            prev_hash: col(row, "prev_hash")?,
            hash: col(row, "hash")?,
        })
    }

    fn computed_hash(&self) -> String {
        entry_hash(&HashInput {
            prev_hash: &self.prev_hash,
            seq: self.seq,
            at: self.at,
            actor: &self.actor,
            tenant_id: self.tenant_id.as_deref(),
            action: &self.action,
            target: &self.target,
            outcome: &self.outcome,
            source: &self.source,
            details: &self.details,
        })
    }
}

impl AuditEntry {
    /// Recomputes this entry's hash from its fields and `prev_hash`, as
    /// [`Store::verify_audit`] does: equal to `hash` unless the entry was
    /// altered. Lets a tool outside the server verify an exported log.
    pub fn computed_hash(&self) -> String {
        entry_hash(&HashInput {
            prev_hash: &self.prev_hash,
            seq: self.seq,
            at: self.at,
            actor: &self.actor,
            tenant_id: self.tenant_id.as_deref(),
            action: &self.action,
            target: &self.target,
            outcome: self.outcome.as_str(),
            source: &self.source,
            details: &self.details,
        })
    }
}

fn entry_from_row(row: &AnyRow) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        seq: col(row, "seq")?,
        at: col(row, "at")?,
        actor: col(row, "actor")?,
        tenant_id: col(row, "tenant_id")?,
        action: col(row, "action")?,
        target: col(row, "target")?,
        outcome: col_enum(row, "outcome", AuditOutcome::parse)?,
        source: col(row, "source")?,
        details: col(row, "details")?,
        prev_hash: col(row, "prev_hash")?,
        hash: col(row, "hash")?,
    })
}

/// Why one append attempt failed.
enum AppendError {
    /// Another appender took the position first (unique violation on `seq`).
    LostRace,
    /// Anything else: not worth retrying.
    Failed(StoreError),
}

impl From<sqlx::Error> for AppendError {
    fn from(err: sqlx::Error) -> AppendError {
        if is_unique_violation(&err) {
            AppendError::LostRace
        } else {
            AppendError::Failed(StoreError::Database(err))
        }
    }
}

impl From<StoreError> for AppendError {
    fn from(err: StoreError) -> AppendError {
        AppendError::Failed(err)
    }
}

/// A short random pause before retrying an append: 1..=2^attempt ms, at most
/// 64 ms, so racing replicas spread out.
fn backoff(attempt: u32) -> Duration {
    let ceiling = 1u128 << attempt.min(6);
    let jitter = uuid::Uuid::new_v4().as_u128() % ceiling;
    Duration::from_millis(u64::try_from(jitter).unwrap_or(0) + 1)
}

impl Store {
    /// Appends an entry at the head of the chain and returns it as stored.
    ///
    /// Safe to call from many tasks and many replicas at once: appends are
    /// serialised by the database, and an append that loses a race for a
    /// position is retried (up to 20 times) on the new head.
    pub async fn append_audit(&self, new: NewAuditEntry) -> Result<AuditEntry, StoreError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.try_append_audit(&new).await {
                Ok(entry) => return Ok(entry),
                Err(AppendError::LostRace) if attempt < MAX_APPEND_ATTEMPTS => {
                    tracing::debug!(
                        attempt,
                        "audit append lost a race for its position; retrying"
                    );
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(AppendError::LostRace) => {
                    return Err(StoreError::Conflict(format!(
                        "could not append to the audit log: lost the race for a position \
                         {MAX_APPEND_ATTEMPTS} times"
                    )))
                }
                Err(AppendError::Failed(e)) => return Err(e),
            }
        }
    }

    /// One append attempt.
    async fn try_append_audit(&self, new: &NewAuditEntry) -> Result<AuditEntry, AppendError> {
        let mut tx = self.begin_write_raw().await?;
        sqlx::query("UPDATE audit_head SET appends = appends + 1 WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        let last = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *tx)
            .await?;
        let (seq, prev_hash) = match last {
            Some(row) => {
                let last: i64 = col(&row, "seq")?;
                let next = last.checked_add(1).ok_or_else(|| {
                    StoreError::Corrupt(format!("audit seq {last} cannot be followed"))
                })?;
                (next, col(&row, "hash")?)
            }
            None => (1, GENESIS_HASH.to_owned()),
        };
        let at = now_millis();
        let hash = entry_hash(&HashInput {
            prev_hash: &prev_hash,
            seq,
            at,
            actor: &new.actor,
            tenant_id: new.tenant_id.as_deref(),
            action: &new.action,
            target: &new.target,
            outcome: new.outcome.as_str(),
            source: &new.source,
            details: &new.details,
        });
        sqlx::query(concat!(
            "INSERT INTO audit_log (",
            audit_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        ))
        .bind(seq)
        .bind(at)
        .bind(&new.actor)
        .bind(new.tenant_id.as_deref())
        .bind(&new.action)
        .bind(&new.target)
        .bind(new.outcome.as_str())
        .bind(&new.source)
        .bind(&new.details)
        .bind(&prev_hash)
        .bind(&hash)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(AuditEntry {
            seq,
            at,
            actor: new.actor.clone(),
            tenant_id: new.tenant_id.clone(),
            action: new.action.clone(),
            target: new.target.clone(),
            outcome: new.outcome,
            source: new.source.clone(),
            details: new.details.clone(),
            prev_hash,
            hash,
        })
    }

    /// Entries matching `filter`, in seq order. Page with
    /// `filter.after_seq` = the last seq returned.
    pub async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            audit_columns!(),
            " FROM audit_log \
              WHERE ($1 IS NULL OR tenant_id = $1) AND ($2 IS NULL OR actor = $2) \
              AND ($3 IS NULL OR at >= $3) AND seq > $4 \
              ORDER BY seq LIMIT $5"
        ))
        .bind(filter.tenant_id.as_deref())
        .bind(filter.actor.as_deref())
        .bind(filter.since)
        .bind(filter.after_seq.unwrap_or(0))
        .bind(i64::from(clamp_limit(filter.limit)))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(entry_from_row).collect()
    }

    /// The last entry's `(seq, hash)`, or `None` for an empty log. Publishing
    /// or countersigning this value outside the database is what makes a
    /// consistent rewrite of the chain detectable.
    pub async fn audit_head(&self) -> Result<Option<(i64, String)>, StoreError> {
        let row = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(self.pool())
            .await?;
        match row {
            Some(row) => Ok(Some((col(&row, "seq")?, col(&row, "hash")?))),
            None => Ok(None),
        }
    }

    /// Walks the whole chain in seq order, a batch at a time, and reports the
    /// first entry that is missing, altered or unlinked. See the module
    /// documentation for what this can and cannot detect.
    pub async fn verify_audit(&self) -> Result<AuditVerification, StoreError> {
        let mut checked: u64 = 0;
        let mut expected_seq: i64 = 1;
        let mut expected_prev = GENESIS_HASH.to_owned();
        loop {
            let rows = sqlx::query(concat!(
                "SELECT ",
                audit_columns!(),
                " FROM audit_log WHERE seq >= $1 ORDER BY seq LIMIT $2"
            ))
            .bind(expected_seq)
            .bind(VERIFY_BATCH)
            .fetch_all(self.pool())
            .await?;
            let batch_len = rows.len();
            for row in &rows {
                let entry = RawEntry::from_row(row)?;
                let broken = |seq: i64, reason: String| {
                    Ok(AuditVerification {
                        entries: checked,
                        first_broken: Some((seq, reason)),
                    })
                };
                if entry.seq != expected_seq {
                    return broken(expected_seq, format!("entry {expected_seq} is missing"));
                }
                if entry.computed_hash() != entry.hash {
                    return broken(
                        entry.seq,
                        format!(
                            "entry {} was altered: its hash does not match its contents",
                            entry.seq
                        ),
                    );
                }
                if entry.prev_hash != expected_prev {
                    return broken(
                        entry.seq,
                        format!(
                            "entry {} does not link to entry {}",
                            entry.seq,
                            entry.seq - 1
                        ),
                    );
                }
                checked += 1;
                expected_seq += 1;
                expected_prev = entry.hash;
            }
            if i64::try_from(batch_len).unwrap_or(i64::MAX) < VERIFY_BATCH {
                break;
            }
        }
        // Entries 1..expected_seq verified. A tail removed outright leaves no
        // gap; the append counter still remembers how many were committed.
        let row = sqlx::query("SELECT appends FROM audit_head WHERE id = 1")
            .fetch_optional(self.pool())
            .await?;
        let appended: i64 = match row {
            Some(row) => col(&row, "appends")?,
            None => {
                return Ok(AuditVerification {
                    entries: checked,
                    first_broken: Some((
                        expected_seq,
                        "the audit head record is missing".to_owned(),
                    )),
                })
            }
        };
        let last = expected_seq - 1;
        if appended > last {
            return Ok(AuditVerification {
                entries: checked,
                first_broken: Some((
                    expected_seq,
                    format!(
                        "entry {expected_seq} is missing: {appended} entries were appended \
                         but the log ends at entry {last}"
                    ),
                )),
            });
        }
        Ok(AuditVerification {
            entries: checked,
            first_broken: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input<'a>(actor: &'a str, target: &'a str) -> HashInput<'a> {
        HashInput {
            prev_hash: GENESIS_HASH,
            seq: 1,
            at: 1000,
            actor,
            tenant_id: None,
            action: "x",
            target,
            outcome: "ok",
            source: "s",
            details: "{}",
        }
    }

    #[test]
    fn hash_is_hex_sha256() {
        let h = entry_hash(&input("alice", "t"));
        assert_eq!(h.len(), 64);
        assert!(h.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn field_boundaries_are_unambiguous() {
        // Moving characters between adjacent fields changes the hash.
        assert_ne!(entry_hash(&input("ab", "c")), entry_hash(&input("a", "bc")));
    }

    #[test]
    fn absent_and_empty_tenant_differ() {
        let mut a = input("a", "b");
        let none = entry_hash(&a);
        a.tenant_id = Some("");
        assert_ne!(none, entry_hash(&a));
    }

    #[test]
    fn backoff_is_bounded() {
        for attempt in 0..30 {
            let d = backoff(attempt);
            assert!(d >= Duration::from_millis(1) && d <= Duration::from_millis(65));
        }
    }
}
