//! What can go wrong in the store, split by who is at fault: the caller asked
//! for something absent ([`StoreError::NotFound`]), something that clashes with
//! what is stored ([`StoreError::Conflict`]) or something malformed
//! ([`StoreError::Invalid`]); or the database itself failed or holds data that
//! does not decode ([`StoreError::Database`], [`StoreError::Migrate`],
//! [`StoreError::Corrupt`]). The API layer maps these to HTTP statuses in one
//! place.

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The object does not exist, or not in the tenant that asked (the two are
    /// deliberately indistinguishable, so ids of other tenants leak nothing).
    #[error("{what} {id} not found")]
    NotFound {
        /// What kind of object: "tenant", "device", ...
        what: &'static str,
        /// The id that was looked up.
        id: String,
    },
    /// The request clashes with stored state: a name is taken, a device is
    /// already claimed, a group still has devices, a transfer is no longer
    /// pending.
    #[error("{0}")]
    Conflict(String),
    /// A rate limit refused the write; nothing was written. Carries the
    /// limit's bucket (what was counted, e.g. `nonce-source:10.0.0.7`).
    #[error("rate limit reached for {0}; retry after the current window")]
    RateLimited(String),
    /// The attestation nonce was used (or expired) before the verdict that
    /// needed it could be written: a replay that raced the first use.
    #[error("the nonce is no longer outstanding (already used or expired)")]
    NonceSpent,
    /// The request itself is malformed (a value out of range, say).
    #[error("{0}")]
    Invalid(String),
    /// The database failed (unreachable, timed out, or an unexpected error).
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    /// The schema migrations could not be applied.
    #[error("database migration failed: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// The error report export's own SQLite reader failed.
    #[error("error report export: {0}")]
    Export(String),
    /// A stored row does not decode into its type: the database holds data
    /// this version of the service did not write.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Shorthand for [`StoreError::NotFound`].
    pub(crate) fn not_found(what: &'static str, id: &str) -> StoreError {
        StoreError::NotFound {
            what,
            id: id.to_owned(),
        }
    }
}

impl From<sqlx::Error> for StoreError {
    /// A unique violation becomes [`StoreError::Conflict`] with the database's
    /// message; callers that know what clashed map it first with a better one
    /// (see `conflict_on_unique`). Everything else is [`StoreError::Database`].
    fn from(err: sqlx::Error) -> StoreError {
        if is_unique_violation(&err) {
            let message = match &err {
                sqlx::Error::Database(db) => db.message().to_owned(),
                other => other.to_string(),
            };
            return StoreError::Conflict(message);
        }
        StoreError::Database(err)
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(err: sqlx::migrate::MigrateError) -> StoreError {
        StoreError::Migrate(err)
    }
}

/// Whether the database refused a write because of a unique or primary-key
/// constraint.
pub(crate) fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Whether the database refused a write because of a foreign-key constraint.
pub(crate) fn is_foreign_key_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_foreign_key_violation())
}

/// Maps a unique violation to [`StoreError::Conflict`] with `message`; any
/// other error as [`From`] does.
pub(crate) fn conflict_on_unique(err: sqlx::Error, message: impl FnOnce() -> String) -> StoreError {
    if is_unique_violation(&err) {
        StoreError::Conflict(message())
    } else {
        StoreError::from(err)
    }
}
