//! Storage: everything the Security Service persists, on SQLite (embedded
//! default) or PostgreSQL (scale-out), behind one [`Store`].
//!
//! # Design
//!
//! * **One set of queries for both back-ends.** The store talks to the
//!   database through sqlx's `Any` driver with runtime queries (no compile-time
//!   checked macros). Queries use PostgreSQL's `$1` placeholders, which
//!   sqlx's SQLite driver also binds by number, so no rewriting is needed.
//!   Rows are mapped by hand with `try_get`; a value that does not decode is
//!   [`StoreError::Corrupt`], never a panic.
//! * **Portable column types.** The `Any` driver carries only integers,
//!   floats, text and bytes, so: ids are `TEXT`; timestamps are `BIGINT` unix
//!   milliseconds; flags are `BIGINT` 0/1 (the `Any` driver refuses a SQLite
//!   column declared `BOOLEAN`); DER blobs are `BYTEA`, PostgreSQL's binary type,
//!   which SQLite accepts as a type name and stores blobs in unchanged; hashes
//!   and key ids are lowercase hex `TEXT`. Enumerations are `TEXT` with a
//!   `CHECK`.
//! * **One migration directory.** `migrations/*.sql` is written in the
//!   dialect the two databases share, and is embedded in the binary with
//!   `include_str!` (sqlx's `migrate!` macro needs its `macros` feature, which
//!   this crate does not enable) and applied by [`Store::connect`] under
//!   sqlx's migrator, which takes an advisory lock on PostgreSQL so replicas
//!   starting together migrate once.
//! * **Stateless replicas.** Nothing shared lives in memory. Exclusivity is
//!   the database's job: a device id is a primary key (a claim is exclusive
//!   across replicas), one pending transfer per device is a partial unique
//!   index, and the audit chain's next position is a primary key, with
//!   appenders serialised through one locked row (see
//!   [`Store::append_audit`]).
//! * **Tenant isolation in depth.** Every query on tenant-owned data carries
//!   `tenant_id = $n` in its `WHERE` clause, and cross-object references are
//!   composite foreign keys on `(tenant_id, id)`, so even a bug in the API's
//!   checks cannot read or link another tenant's objects.
//! * **SQLite specifics.** WAL journal (readers never block the writer; set
//!   at connect, persistent in the file), foreign keys on and a 5 s busy
//!   timeout (sqlx's defaults), the file is created if missing (`mode=rwc`),
//!   and write transactions start with `BEGIN IMMEDIATE` so two writers queue
//!   instead of failing on a lock upgrade. `sqlite::memory:` works too (one
//!   shared in-memory database per [`Store`], for tests).
//!
//! Each concern has its own file and `impl Store` block: `tenants.rs` (users,
//! tokens, roles, tenants), `products.rs` (products, groups), `devices.rs`
//! (manufacturer CAs, devices, transfers), `tpm.rs` (TPM credential
//! activation: challenges and bindings), `images.rs` (signing keys, images),
//! `tuf.rs` (TUF keys and metadata), `deployments.rs` (deployments, device
//! progress), `deltas.rs` (binary deltas published with deployments, their bases and the delta job), `audit.rs` (the hash-chained audit log), `failures.rs` (failure
//! reports, problems, retention), `ingest.rs` (batched, idempotent ingest of
//! failure reports), `webhooks.rs` (webhooks and their delivery queue).

mod attestation;
mod audit;
mod deltas;
mod deployments;
mod devices;
mod error;
mod failures;
mod fleet;
mod images;
mod ingest;
mod model;
mod products;
mod remediation;
mod report_export;
mod tenants;
mod tpm;
mod tuf;
mod webhooks;

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Row, SqlSafeStr};

pub use attestation::{
    AttestationRecord, NewNonce, RateLimit, RuntimeRelease, TenantCaRecord, VerdictWrite,
};
pub use audit::GENESIS_HASH;
pub use deltas::{DeltaBase, DeltaJob, DeploymentDelta, DELTA_LEASE_MS};
pub use deployments::{
    Deployment, DeploymentImage, DeploymentStatus, DeviceProgress, NewDeployment, ProgressState,
};
pub use error::StoreError;
pub use failures::{
    version_newer, IngestOutcome, NewReport, ProblemEvent, ProblemKey, ProblemRecord, ReportCursor,
    ReportRow, StoredReport, DEFAULT_RETENTION_DAYS,
};
pub use fleet::{FleetDevice, FleetFilter, FleetState, FleetSummary, LastSeen};
use model::clamp_limit;
pub use model::{
    AuditEntry, AuditFilter, AuditOutcome, AuditVerification, CaKind, Device, DeviceGroup,
    DeviceMode, GroupUpdate, Image, ManufacturerCa, NewAuditEntry, NewDevice, NewGroup, NewImage,
    Page, Principal, Product, Role, RoleAssignment, RuntimeFeed, SigningKey, Tenant, Transfer,
    TransferStatus, UpdatePolicy, User,
};
pub use products::DEFAULT_GROUPS;
pub use remediation::RemediationGrant;
pub use report_export::ReportRowRef;
pub use tpm::{CredentialChallenge, TpmBinding};
pub use tuf::{TufKeyRecord, TufMetadataRecord};
pub use webhooks::{DueDelivery, WebhookRecord, MAX_ATTEMPTS};

/// A day in unix milliseconds.
pub(crate) const DAY_MS: i64 = 86_400_000;

/// A migration's SQL: one file for both back-ends (`NNNN_name.sql`), or one
/// per back-end (`NNNN_name.sqlite.sql`, `NNNN_name.postgres.sql`) where
/// what is best differs between them (a database only ever sees its own).
enum MigrationSql {
    Both(&'static str),
    PerBackend {
        sqlite: &'static str,
        postgres: &'static str,
    },
}

impl MigrationSql {
    fn for_backend(&self, backend: Backend) -> &'static str {
        match (self, backend) {
            (MigrationSql::Both(sql), _) => sql,
            (MigrationSql::PerBackend { sqlite, .. }, Backend::Sqlite) => sqlite,
            (MigrationSql::PerBackend { postgres, .. }, Backend::Postgres) => postgres,
        }
    }
}

/// The schema migrations, in order: (version, description, SQL). Embedded
/// with `include_str!`; a new file in `migrations/` must be added here
/// too (a unit test checks the two agree). Never edit an applied migration:
/// the migrator records each one's checksum and refuses a changed file.
const MIGRATIONS: &[(i64, &str, MigrationSql)] = &[
    (
        1,
        "initial",
        MigrationSql::Both(include_str!("../../migrations/0001_initial.sql")),
    ),
    (
        2,
        "attestation",
        MigrationSql::Both(include_str!("../../migrations/0002_attestation.sql")),
    ),
    (
        3,
        "updates",
        MigrationSql::Both(include_str!("../../migrations/0003_updates.sql")),
    ),
    (
        4,
        "failures",
        MigrationSql::Both(include_str!("../../migrations/0004_failures.sql")),
    ),
    (
        5,
        "deltas_windows",
        MigrationSql::Both(include_str!("../../migrations/0005_deltas_windows.sql")),
    ),
    (
        6,
        "crash_details",
        MigrationSql::Both(include_str!("../../migrations/0006_crash_details.sql")),
    ),
    (
        7,
        "tpm_credentials",
        MigrationSql::Both(include_str!("../../migrations/0007_tpm_credentials.sql")),
    ),
    (
        9,
        "fleet_view",
        MigrationSql::Both(include_str!("../../migrations/0009_fleet_view.sql")),
    ),
    (
        10,
        "delta_jobs",
        MigrationSql::Both(include_str!("../../migrations/0010_delta_jobs.sql")),
    ),
    (
        11,
        "report_order",
        MigrationSql::PerBackend {
            sqlite: include_str!("../../migrations/0011_report_order.sqlite.sql"),
            postgres: include_str!("../../migrations/0011_report_order.postgres.sql"),
        },
    ),
    (
        12,
        "remediation",
        MigrationSql::Both(include_str!("../../migrations/0012_remediation.sql")),
    ),
];

/// Which database a [`Store`] is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// An SQLite file: one server process, no external database.
    Sqlite,
    /// PostgreSQL: may be shared by many stateless server replicas.
    Postgres,
}

impl Backend {
    /// The back-end a database URL names: `sqlite:` or `postgres://` /
    /// `postgresql://`.
    pub fn from_url(url: &str) -> Result<Backend, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            Err(StoreError::Invalid(
                "unsupported database URL: expected sqlite:PATH or postgres://…".to_owned(),
            ))
        }
    }

    /// "sqlite" or "postgres", for logs and health output.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// The service's storage: a connection pool and the back-end it is on.
///
/// Cheap to clone (the pool is reference-counted); clones share connections.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// SQLite only: the process's write queue (see [`Store::begin_write`]).
    write_gate: Option<Arc<tokio::sync::Mutex<()>>>,
    /// SQLite only: connections whose commits do not wait for the disk
    /// (see [`Store::begin_write_relaxed`]).
    relaxed: Option<AnyPool>,
    /// Where a reader of its own connects (see `report_export`): the
    /// database as an SQLite URI, or the PostgreSQL URL.
    reader_url: Arc<str>,
    /// How long a claim on a delta job lasts, milliseconds (see
    /// [`Store::with_delta_lease`]).
    delta_lease_ms: i64,
}

impl Store {
    /// The default PostgreSQL pool size.
    pub const DEFAULT_MAX_CONNECTIONS: u32 = 10;

    /// Connects to `url` with at most `max_connections` pooled connections
    /// and applies any pending schema migrations.
    ///
    /// SQLite URLs get `mode=rwc` (create the file if missing) unless they
    /// name a mode; see [`Store::sqlite_url`]. Connecting twice to the same
    /// database is safe: applied migrations are recorded and skipped.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(url)?;
        let url = match backend {
            Backend::Sqlite => sqlite_connect_url(url),
            Backend::Postgres => url.to_owned(),
        };
        let mut options = AnyPoolOptions::new().max_connections(max_connections.max(1));
        if url.contains("mode=memory") {
            // An in-memory database lives only while a connection to it is
            // open: keep one open for the life of the pool.
            options = options
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
        }
        let pool = options.connect(&url).await?;
        if backend == Backend::Sqlite {
            // Persistent in the file; needs no other connection to be writing,
            // which holds before migrations on a server's own database.
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await?;
        }
        let (write_gate, relaxed) = match backend {
            Backend::Sqlite => (
                Some(Arc::new(tokio::sync::Mutex::new(()))),
                Some(relaxed_sqlite_pool(&url).await?),
            ),
            Backend::Postgres => (None, None),
        };
        let reader_url = match backend {
            Backend::Sqlite => sqlite_uri(&url).into(),
            Backend::Postgres => url.as_str().into(),
        };
        let store = Store {
            pool,
            backend,
            write_gate,
            relaxed,
            reader_url,
            delta_lease_ms: DELTA_LEASE_MS,
        };
        store.migrate().await?;
        tracing::debug!(backend = backend.as_str(), "store connected and migrated");
        Ok(store)
    }

    /// The `sqlite:` URL for a database file at `path` (created if missing).
    /// `%`, `?` and `#` in the path are percent-encoded, as the driver
    /// decodes them; a non-UTF-8 path is converted lossily.
    pub fn sqlite_url(path: &Path) -> String {
        let path = path
            .display()
            .to_string()
            .replace('%', "%25")
            .replace('?', "%3F")
            .replace('#', "%23");
        format!("sqlite://{path}?mode=rwc")
    }

    /// Applies pending migrations.
    async fn migrate(&self) -> Result<(), StoreError> {
        migrator(self.backend, i64::MAX).run(&self.pool).await?;
        Ok(())
    }

    /// The same store, whose claims on delta jobs last `lease` (default
    /// [`DELTA_LEASE_MS`]). Shorter means a dead replica's job is taken
    /// over sooner; the lease must outlast the longest job, or two
    /// replicas make the same deltas (harmless, since recording them is
    /// idempotent, but wasted work).
    pub fn with_delta_lease(mut self, lease: std::time::Duration) -> Store {
        self.delta_lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        self
    }

    /// How long a claim on a delta job lasts, milliseconds.
    pub(crate) fn delta_lease_ms(&self) -> i64 {
        self.delta_lease_ms
    }

    /// Which database this store is on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Where a reader of its own connects: an SQLite URI that
    /// `sqlite3_open_v2` reads, or the PostgreSQL URL.
    fn reader_url(&self) -> String {
        self.reader_url.to_string()
    }

    /// Checks the database answers (for readiness probes).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// `(open connections, idle connections)` of the pool, for metrics.
    pub fn pool_size(&self) -> (u32, usize) {
        (self.pool.size(), self.pool.num_idle())
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        if let Some(relaxed) = &self.relaxed {
            relaxed.close().await;
        }
        self.pool.close().await;
    }

    /// Starts a transaction that will write.
    ///
    /// On SQLite, where one writer holds the database at a time, writers
    /// first queue in this process's write gate (a fair, FIFO async mutex)
    /// and then take the write lock up front (`BEGIN IMMEDIATE`). Without the
    /// gate, concurrent writers would poll SQLite's busy handler, which
    /// sleeps with growing back-off and turns contention into long tail
    /// latency. Another process writing the same file still works (the busy
    /// timeout covers it); it just does not queue fairly. PostgreSQL needs no
    /// gate.
    pub(crate) async fn begin_write(&self) -> Result<WriteTx, StoreError> {
        Ok(self.begin_write_raw().await?)
    }

    /// [`Store::begin_write`] with the error unmapped.
    pub(crate) async fn begin_write_raw(&self) -> Result<WriteTx, sqlx::Error> {
        let gate = self.enter_write_gate().await;
        let tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        Ok(WriteTx { tx, _gate: gate })
    }

    /// [`Store::begin_write`] for writes whose loss in a power cut (not a
    /// process crash) is harmless: attestation nonces, rate-limit counters
    /// and verdicts. Their commits do not wait for the disk: on PostgreSQL
    /// `synchronous_commit = off` for this transaction; on SQLite connections
    /// with `synchronous = NORMAL` (in WAL mode: no fsync per commit; the
    /// next checkpoint or ordinary commit makes them durable, and the
    /// database stays consistent either way). A power cut may thus undo the
    /// last fraction of a second of them: a device then asks for a nonce
    /// again, and a lost pass verdict only shortens a device's history
    /// (its certificate was bound to its own key). Operator changes, audit
    /// entries, claims and revocations always use [`Store::begin_write`].
    pub(crate) async fn begin_write_relaxed(&self) -> Result<WriteTx, StoreError> {
        let gate = self.enter_write_gate().await;
        let tx = match (&self.relaxed, self.backend) {
            (Some(relaxed), _) => relaxed.begin_with("BEGIN IMMEDIATE").await?,
            (None, Backend::Sqlite) => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            (None, Backend::Postgres) => {
                let mut tx = self.pool.begin().await?;
                sqlx::query("SET LOCAL synchronous_commit TO OFF")
                    .execute(&mut *tx)
                    .await?;
                tx
            }
        };
        Ok(WriteTx { tx, _gate: gate })
    }

    /// Waits for this process's turn to write (SQLite; `None` on PostgreSQL,
    /// which needs no gate).
    async fn enter_write_gate(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        match &self.write_gate {
            Some(gate) => Some(Arc::clone(gate).lock_owned().await),
            None => None,
        }
    }

    /// The pool, for the per-concern `impl Store` blocks.
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

/// A second, small pool on the same SQLite database whose connections use
/// `synchronous = NORMAL`, for [`Store::begin_write_relaxed`].
async fn relaxed_sqlite_pool(url: &str) -> Result<AnyPool, StoreError> {
    let mut options = AnyPoolOptions::new()
        .max_connections(2)
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                sqlx::query("PRAGMA synchronous = NORMAL")
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            })
        });
    if url.contains("mode=memory") {
        options = options.idle_timeout(None).max_lifetime(None);
    }
    Ok(options.connect_lazy(url)?)
}

/// A write transaction from [`Store::begin_write`]: a transaction that, on
/// SQLite, also holds the process's write gate until it ends. Use it as a
/// connection (`&mut *tx`); [`WriteTx::commit`] ends it, and dropping it
/// rolls back.
pub(crate) struct WriteTx {
    // Field order matters: the transaction is dropped (rolled back) before
    // the gate is released.
    tx: sqlx::Transaction<'static, sqlx::Any>,
    _gate: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl WriteTx {
    /// Commits the transaction, then lets the next writer in.
    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }

    /// Rolls the transaction back, then lets the next writer in.
    pub(crate) async fn rollback(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }
}

impl std::ops::Deref for WriteTx {
    type Target = sqlx::AnyConnection;

    fn deref(&self) -> &sqlx::AnyConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut sqlx::AnyConnection {
        &mut self.tx
    }
}

/// The URL the SQLite driver is given for `url`: `mode=rwc` (create the file
/// if missing) unless a mode is named, and `sqlite::memory:` turned into a
/// uniquely named shared-cache in-memory database. (The `Any` driver parses
/// the URL again for every pooled connection, and a plain `:memory:` would
/// give each connection a database of its own.)
fn sqlite_connect_url(url: &str) -> String {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let database = rest.split('?').next().unwrap_or(rest);
    if database == ":memory:" {
        return format!(
            "sqlite:file:sevenfold-memory-{}?mode=memory&cache=shared",
            uuid::Uuid::new_v4().simple()
        );
    }
    if url.contains("mode=") {
        return url.to_owned();
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}mode=rwc")
}

/// The migrator of [`MIGRATIONS`] up to version `up_to`, in `backend`'s SQL.
fn migrator(backend: Backend, up_to: i64) -> Migrator {
    let migrations = MIGRATIONS
        .iter()
        .filter(|(version, _, _)| *version <= up_to)
        .map(|(version, description, sql)| {
            Migration::new(
                *version,
                Cow::Borrowed(*description),
                MigrationType::Simple,
                sql.for_backend(backend).into_sql_str(),
                false,
            )
        })
        .collect();
    Migrator::with_migrations(migrations)
}

/// The SQLite URI (`file:PATH?mode=ro`, or the shared in-memory database
/// as named) of a connect URL made by [`sqlite_connect_url`], for a reader
/// that opens the same database with SQLite's own URI rules (the path stays
/// percent-encoded as the driver's URL has it; SQLite decodes it the same way).
fn sqlite_uri(connect_url: &str) -> String {
    let rest = connect_url
        .strip_prefix("sqlite://")
        .or_else(|| connect_url.strip_prefix("sqlite:"))
        .unwrap_or(connect_url);
    if rest.starts_with("file:") {
        return rest.to_owned();
    }
    let path = rest.split('?').next().unwrap_or(rest);
    format!("file:{path}?mode=ro")
}

/// The placeholders of a multi-row `VALUES` list that holds all of its
/// statement's parameters: `rows` tuples of `columns`, numbered `$1` on,
/// row by row.
///
/// On SQLite they are written as plain `?`, which the driver binds to the
/// arguments in order: the same binding. The reason is cost: the driver
/// looks up the name of every named parameter, and SQLite finds a name by
/// walking the list of them, so a statement with a thousand `$N` spent more
/// time binding than running. (The driver counts `?` from the first
/// argument whatever `$N` precede them, hence only for a statement's only
/// parameters.)
pub(crate) fn values_list(backend: Backend, rows: usize, columns: usize) -> String {
    let mut sql = String::with_capacity(rows * columns * 6);
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..columns {
            if column > 0 {
                sql.push_str(", ");
            }
            match backend {
                Backend::Sqlite => sql.push('?'),
                Backend::Postgres => {
                    sql.push('$');
                    sql.push_str(&(1 + row * columns + column).to_string());
                }
            }
        }
        sql.push(')');
    }
    sql
}

/// Now, in unix milliseconds (0 if the clock is before 1970).
pub(crate) fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A fresh random id (UUID v4, hyphenated).
pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Reads column `col` of `row`; a missing or undecodable value is
/// [`StoreError::Corrupt`].
pub(crate) fn col<'r, T>(row: &'r AnyRow, col: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get::<T, _>(col)
        .map_err(|e| StoreError::Corrupt(format!("column {col}: {e}")))
}

/// Reads a 0/1 flag column.
pub(crate) fn col_flag(row: &AnyRow, name: &str) -> Result<bool, StoreError> {
    match col::<i64>(row, name)? {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(StoreError::Corrupt(format!(
            "column {name}: {other} is not a 0/1 flag"
        ))),
    }
}

/// Reads a text column and parses it with `parse` (an enum's spelling).
pub(crate) fn col_enum<T>(
    row: &AnyRow,
    name: &str,
    parse: fn(&str) -> Option<T>,
) -> Result<T, StoreError> {
    let text: String = col(row, name)?;
    parse(&text)
        .ok_or_else(|| StoreError::Corrupt(format!("column {name}: unknown value {text:?}")))
}

/// Converts a count from the database.
pub(crate) fn to_count(n: i64) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("negative count {n}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_file_is_embedded() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".sql"))
            .collect();
        files.sort();
        let mut embedded: Vec<(String, &str)> = Vec::new();
        for (version, description, sql) in MIGRATIONS {
            match sql {
                MigrationSql::Both(sql) => {
                    embedded.push((format!("{version:04}_{description}.sql"), sql));
                }
                MigrationSql::PerBackend { sqlite, postgres } => {
                    embedded.push((format!("{version:04}_{description}.postgres.sql"), postgres));
                    embedded.push((format!("{version:04}_{description}.sqlite.sql"), sqlite));
                }
            }
        }
        let names: Vec<&String> = embedded.iter().map(|(name, _)| name).collect();
        assert_eq!(files.iter().collect::<Vec<_>>(), names);
        for (name, sql) in embedded {
            let on_disk = std::fs::read_to_string(dir.join(&name)).unwrap();
            assert_eq!(on_disk, sql, "{name}");
        }
    }

    #[tokio::test]
    async fn failure_reports_move_into_report_order_with_nothing_lost() {
        let dir = tempfile::tempdir().unwrap();
        let url = Store::sqlite_url(&dir.path().join("old.db"));
        // A database as a server before migration 11 left it, with a report.
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .connect(&sqlite_connect_url(&url))
            .await
            .unwrap();
        migrator(Backend::Sqlite, 10).run(&pool).await.unwrap();
        sqlx::raw_sql(
            "INSERT INTO tenants (id, name, created_at) VALUES ('t', 't', 0); \
             INSERT INTO failure_reports (device_id, record_id, tenant_id, at, received_at, \
             component_id, component_version, kind, reason, frames, details, problem_id) \
             VALUES ('d', 'r', 't', 5, 7, 'app', '1.0', 'trap', 'why', '[]', '{}', NULL)",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
        let store = Store::connect(&url, 2).await.unwrap();
        let rows = store.report_page("t", 0, None, None, 10).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].at, rows[0].received_at), (5, 7));
        assert_eq!(rows[0].reason, "why");
        // The record stays unique: a resend is a duplicate.
        let resend = NewReport {
            device_id: "d".into(),
            record_id: "r".into(),
            at: 5,
            component_id: "app".into(),
            component_version: "1.0".into(),
            kind: "trap".into(),
            reason: "why".into(),
            frames: "[]".into(),
            details: "{}".into(),
            problem: None,
        };
        let outcome = store
            .ingest_reports("t", &[resend], false, 9)
            .await
            .unwrap();
        assert_eq!((outcome.stored, outcome.duplicates), (0, 1));
    }

    #[test]
    fn values_lists_number_their_parameters_row_by_row() {
        let pg = Backend::Postgres;
        assert_eq!(values_list(pg, 2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(values_list(pg, 0, 2), "");
        assert_eq!(values_list(Backend::Sqlite, 2, 2), "(?, ?), (?, ?)");
    }

    /// The `?` form binds the arguments in order, as `$1…` do.
    #[tokio::test]
    async fn sqlite_binds_plain_placeholders_in_order() {
        let store = Store::connect("sqlite::memory:", 1).await.unwrap();
        let sql = format!(
            "SELECT v.* FROM (VALUES {}) AS v",
            values_list(Backend::Sqlite, 1, 3)
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind("a")
            .bind("b")
            .bind("c")
            .fetch_one(store.pool())
            .await
            .unwrap();
        let got: (String, String, String) = (
            row.try_get(0).unwrap(),
            row.try_get(1).unwrap(),
            row.try_get(2).unwrap(),
        );
        assert_eq!(got, ("a".into(), "b".into(), "c".into()));
    }

    #[test]
    fn sqlite_uris_for_readers() {
        assert_eq!(
            sqlite_uri(&sqlite_connect_url(&Store::sqlite_url(Path::new(
                "/d/a?b.db"
            )))),
            "file:/d/a%3Fb.db?mode=ro"
        );
        assert_eq!(sqlite_uri("sqlite:x.db?mode=rwc"), "file:x.db?mode=ro");
        let memory = sqlite_connect_url("sqlite::memory:");
        assert_eq!(sqlite_uri(&memory), memory.strip_prefix("sqlite:").unwrap());
    }

    #[test]
    fn sqlite_urls() {
        assert_eq!(
            Store::sqlite_url(Path::new("/data/a?b#c%d.db")),
            "sqlite:///data/a%3Fb%23c%25d.db?mode=rwc"
        );
        assert_eq!(
            sqlite_connect_url("sqlite:///x.db"),
            "sqlite:///x.db?mode=rwc"
        );
        assert_eq!(
            sqlite_connect_url("sqlite:///x.db?cache=private"),
            "sqlite:///x.db?cache=private&mode=rwc"
        );
        assert_eq!(
            sqlite_connect_url("sqlite:x.db?mode=ro"),
            "sqlite:x.db?mode=ro"
        );
        for memory in ["sqlite::memory:", "sqlite://:memory:"] {
            let url = sqlite_connect_url(memory);
            assert!(url.starts_with("sqlite:file:sevenfold-memory-"), "{url}");
            assert!(url.ends_with("?mode=memory&cache=shared"), "{url}");
        }
        assert_ne!(
            sqlite_connect_url("sqlite::memory:"),
            sqlite_connect_url("sqlite::memory:")
        );
    }

    #[test]
    fn backend_names() {
        assert_eq!(Backend::from_url("sqlite:x").unwrap(), Backend::Sqlite);
        assert_eq!(
            Backend::from_url("postgres://h/d").unwrap(),
            Backend::Postgres
        );
        assert!(Backend::from_url("mysql://h/d").is_err());
    }
}
