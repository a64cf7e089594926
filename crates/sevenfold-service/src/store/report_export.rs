//! The whole error report in one pass, for export (`GET …/error-report/export`,
//! `sevenfold error-report --format csv|json`).
//!
//! A million-row report is read once, newest first, and each row is handed
//! to an encoder as borrowed text, never copied into a row of its own. The
//! encoder (CSV or NDJSON: the API's concern) fills text buffers, sent on as
//! they fill, so memory stays bounded and a slow reader slows the read rather
//! than piling rows up.
//!
//! - **SQLite**: a native read-only connection (rusqlite, on the same
//!   SQLite library as the pool) on a blocking thread runs the report's
//!   query as one statement: one consistent snapshot, and no per-row hop
//!   through the pooled driver's worker thread nor conversion of every value,
//!   which had been most of the cost of a large report.
//! - **PostgreSQL**: the same one statement on a connection of its own,
//!   streamed and decoded by the native driver as borrowed text (the pooled
//!   `Any` driver would convert every value into an owned one first).

use std::time::Duration;

use rusqlite::types::ValueRef;
use tokio::sync::mpsc;

use super::error::StoreError;
use super::failures::{report_sql, ReportRow};
use super::{Backend, Store};

/// What the reader sends: a buffer of encoded rows, or the error that ended it.
type Sent = Result<String, StoreError>;

/// Bytes of encoded rows per buffer sent.
const BUFFER_BYTES: usize = 256 * 1024;
/// Buffers encoded ahead of the reader.
const BUFFERS_AHEAD: usize = 4;

/// One row of the error report, borrowed from the database's row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReportRowRef<'a> {
    /// Device.
    pub device_id: &'a str,
    /// Record ID.
    pub record_id: &'a str,
    /// The device's group, if any.
    pub group_id: Option<&'a str>,
    /// When it happened (ms).
    pub at: i64,
    /// When it was received (ms).
    pub received_at: i64,
    /// Component.
    pub component_id: &'a str,
    /// Version.
    pub component_version: &'a str,
    /// Kind.
    pub kind: &'a str,
    /// Reason.
    pub reason: &'a str,
    /// Its problem.
    pub problem_id: Option<&'a str>,
}

impl ReportRowRef<'_> {
    /// An owned copy.
    pub fn to_row(&self) -> ReportRow {
        ReportRow {
            device_id: self.device_id.to_owned(),
            record_id: self.record_id.to_owned(),
            group_id: self.group_id.map(str::to_owned),
            at: self.at,
            received_at: self.received_at,
            component_id: self.component_id.to_owned(),
            component_version: self.component_version.to_owned(),
            kind: self.kind.to_owned(),
            reason: self.reason.to_owned(),
            problem_id: self.problem_id.map(str::to_owned),
        }
    }
}

impl ReportRow {
    /// This row, borrowed.
    pub fn as_row_ref(&self) -> ReportRowRef<'_> {
        ReportRowRef {
            device_id: &self.device_id,
            record_id: &self.record_id,
            group_id: self.group_id.as_deref(),
            at: self.at,
            received_at: self.received_at,
            component_id: &self.component_id,
            component_version: &self.component_version,
            kind: &self.kind,
            reason: &self.reason,
            problem_id: self.problem_id.as_deref(),
        }
    }
}

impl Store {
    /// The whole error report (the rows [`Store::report_page`] pages, in the
    /// same order), each row passed to `encode`, which appends it to a
    /// buffer; the buffers arrive on the returned channel as they fill. An
    /// error ends the stream (after the buffers before it); dropping the
    /// receiver stops the read.
    pub fn report_export<E>(
        &self,
        tenant_id: &str,
        since: i64,
        group: Option<&str>,
        encode: E,
    ) -> mpsc::Receiver<Result<String, StoreError>>
    where
        E: FnMut(&ReportRowRef<'_>, &mut String) + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(BUFFERS_AHEAD);
        let query = ExportQuery {
            tenant_id: tenant_id.to_owned(),
            since,
            group: group.map(str::to_owned),
        };
        let url = self.reader_url();
        match self.backend() {
            Backend::Sqlite => {
                tokio::task::spawn_blocking(move || {
                    let mut out = Output::new(tx, encode);
                    let read = read_sqlite(&url, &query, &mut out);
                    out.finish(read);
                });
            }
            Backend::Postgres => {
                tokio::spawn(async move {
                    let mut out = Output::new(tx, encode);
                    let read = read_postgres(&url, &query, &mut out).await;
                    out.finish_async(read).await;
                });
            }
        }
        rx
    }
}

struct ExportQuery {
    tenant_id: String,
    since: i64,
    group: Option<String>,
}

/// The encoder and the buffer it fills.
struct Output<E> {
    tx: mpsc::Sender<Sent>,
    encode: E,
    buffer: String,
}

impl<E> Output<E>
where
    E: FnMut(&ReportRowRef<'_>, &mut String),
{
    fn new(tx: mpsc::Sender<Sent>, encode: E) -> Self {
        Output {
            tx,
            encode,
            buffer: String::with_capacity(BUFFER_BYTES + 4096),
        }
    }

    /// Encodes a row; returns the buffer once it is full.
    fn push(&mut self, row: &ReportRowRef<'_>) -> Option<String> {
        (self.encode)(row, &mut self.buffer);
        (self.buffer.len() >= BUFFER_BYTES).then(|| {
            std::mem::replace(&mut self.buffer, String::with_capacity(BUFFER_BYTES + 4096))
        })
    }

    /// Sends a buffer from a blocking thread; false when nobody listens.
    fn send_blocking(&self, buffer: String) -> bool {
        self.tx.blocking_send(Ok(buffer)).is_ok()
    }

    /// What is left to send after the read: the last buffer, or the error
    /// that ended the read (nothing when the read ended on a full buffer).
    fn last(self, read: Result<(), StoreError>) -> (mpsc::Sender<Sent>, Option<Sent>) {
        let last = match read {
            Ok(()) if self.buffer.is_empty() => None,
            Ok(()) => Some(Ok(self.buffer)),
            Err(e) => Some(Err(e)),
        };
        (self.tx, last)
    }

    /// Sends what is left, from a blocking thread.
    fn finish(self, read: Result<(), StoreError>) {
        if let (tx, Some(last)) = self.last(read) {
            let _ = tx.blocking_send(last);
        }
    }

    /// Sends what is left, from a task.
    async fn finish_async(self, read: Result<(), StoreError>) {
        if let (tx, Some(last)) = self.last(read) {
            let _ = tx.send(last).await;
        }
    }
}

/// The report in one statement on a read-only connection of its own
/// (SQLite). Runs on a blocking thread.
fn read_sqlite<E>(uri: &str, query: &ExportQuery, out: &mut Output<E>) -> Result<(), StoreError>
where
    E: FnMut(&ReportRowRef<'_>, &mut String),
{
    use rusqlite::OpenFlags;
    // NO_MUTEX: the connection never leaves this thread, so SQLite's
    // per-call locking (a sixth of the read's time) is not needed.
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = rusqlite::Connection::open_with_flags(uri, flags).map_err(export_error)?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(export_error)?;
    let sql = report_sql(query.group.is_some(), false, false);
    let mut statement = conn.prepare(&sql).map_err(export_error)?;
    let mut rows = match &query.group {
        Some(group) => statement.query(rusqlite::params![query.tenant_id, query.since, group]),
        None => statement.query(rusqlite::params![query.tenant_id, query.since]),
    }
    .map_err(export_error)?;
    while let Some(row) = rows.next().map_err(export_error)? {
        if let Some(full) = out.push(&row_ref(row)?) {
            if !out.send_blocking(full) {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// The report in one statement on a connection of its own (PostgreSQL),
/// its rows decoded by the native driver as borrowed text.
async fn read_postgres<E>(
    url: &str,
    query: &ExportQuery,
    out: &mut Output<E>,
) -> Result<(), StoreError>
where
    E: FnMut(&ReportRowRef<'_>, &mut String),
{
    use futures_util::TryStreamExt;
    use sqlx::Connection;
    // Sent through a clone: a future holding `&Output` would need the
    // encoder to be `Sync`.
    let tx = out.tx.clone();
    let mut conn = sqlx::PgConnection::connect(url).await?;
    let sql = report_sql(query.group.is_some(), false, false);
    let mut statement = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&query.tenant_id)
        .bind(query.since);
    if let Some(group) = &query.group {
        statement = statement.bind(group);
    }
    let mut rows = statement.fetch(&mut conn);
    while let Some(row) = rows.try_next().await? {
        if let Some(full) = out.push(&row_ref(&row)?) {
            if tx.send(Ok(full)).await.is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}

fn export_error(e: rusqlite::Error) -> StoreError {
    StoreError::Export(e.to_string())
}

/// A row of the report's query, read by column position: the one thing
/// the two native readers do differently.
trait ReportColumns<'r>: Copy {
    fn optional_text(self, i: usize) -> Result<Option<&'r str>, StoreError>;
    fn integer(self, i: usize) -> Result<i64, StoreError>;
}

fn column_error(i: usize, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("error report column {i}: {e}"))
}

impl<'r> ReportColumns<'r> for &'r rusqlite::Row<'_> {
    fn optional_text(self, i: usize) -> Result<Option<&'r str>, StoreError> {
        match self.get_ref(i).map_err(export_error)? {
            ValueRef::Null => Ok(None),
            ValueRef::Text(bytes) => std::str::from_utf8(bytes)
                .map(Some)
                .map_err(|e| column_error(i, e)),
            other => Err(column_error(
                i,
                format!("expected text, found {}", other.data_type()),
            )),
        }
    }

    fn integer(self, i: usize) -> Result<i64, StoreError> {
        match self.get_ref(i).map_err(export_error)? {
            ValueRef::Integer(n) => Ok(n),
            other => Err(column_error(
                i,
                format!("expected an integer, found {}", other.data_type()),
            )),
        }
    }
}

impl<'r> ReportColumns<'r> for &'r sqlx::postgres::PgRow {
    fn optional_text(self, i: usize) -> Result<Option<&'r str>, StoreError> {
        sqlx::Row::try_get::<Option<&str>, _>(self, i).map_err(|e| column_error(i, e))
    }

    fn integer(self, i: usize) -> Result<i64, StoreError> {
        sqlx::Row::try_get::<i64, _>(self, i).map_err(|e| column_error(i, e))
    }
}

/// The row as the encoder takes it, in the column order of `report_sql`.
fn row_ref<'r>(row: impl ReportColumns<'r>) -> Result<ReportRowRef<'r>, StoreError> {
    let text = |i: usize| row.optional_text(i)?.ok_or_else(|| column_error(i, "NULL"));
    Ok(ReportRowRef {
        device_id: text(0)?,
        record_id: text(1)?,
        group_id: row.optional_text(2)?,
        at: row.integer(3)?,
        received_at: row.integer(4)?,
        component_id: text(5)?,
        component_version: text(6)?,
        kind: text(7)?,
        reason: text(8)?,
        problem_id: row.optional_text(9)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewReport;

    fn report(record: &str, at: i64) -> NewReport {
        NewReport {
            device_id: "d".into(),
            record_id: record.into(),
            at,
            component_id: "app".into(),
            component_version: "1.0".into(),
            kind: "trap".into(),
            reason: format!("why {record}"),
            frames: "[]".into(),
            details: "{}".into(),
            problem: None,
        }
    }

    async fn export(store: &Store, tenant: &str) -> Vec<ReportRow> {
        let mut buffers = store.report_export(tenant, 0, None, |row, out| {
            out.push_str(&serde_json::to_string(&row.to_row()).unwrap());
            out.push('\n');
        });
        let mut rows = Vec::new();
        while let Some(buffer) = buffers.recv().await {
            for line in buffer.unwrap().lines() {
                rows.push(serde_json::from_str(line).unwrap());
            }
        }
        rows
    }

    /// The reader opens an in-memory database (the pool's shared cache) as
    /// it opens a file.
    #[tokio::test]
    async fn the_sqlite_reader_reads_an_in_memory_database() {
        let store = Store::connect("sqlite::memory:", 2).await.unwrap();
        let tenant = store.create_tenant("t").await.unwrap().id;
        let reports = [report("a", 1), report("b", 2)];
        store
            .ingest_reports(&tenant, &reports[..1], false, 10)
            .await
            .unwrap();
        store
            .ingest_reports(&tenant, &reports[1..], false, 20)
            .await
            .unwrap();
        let rows = export(&store, &tenant).await;
        let records: Vec<&str> = rows.iter().map(|r| r.record_id.as_str()).collect();
        assert_eq!(records, ["b", "a"], "newest first");
        assert_eq!(
            rows,
            store.report_page(&tenant, 0, None, None, 10).await.unwrap()
        );
    }

    /// A reader that cannot open the database ends the stream with an error.
    #[tokio::test]
    async fn an_unreadable_database_is_an_error_not_an_empty_report() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let store = Store::connect(&Store::sqlite_url(&path), 2).await.unwrap();
        let tenant = store.create_tenant("t").await.unwrap().id;
        store.close().await;
        std::fs::remove_file(&path).unwrap();
        let mut buffers = store.report_export(&tenant, 0, None, |_, _| {});
        let first = buffers.recv().await.expect("an error, not silence");
        assert!(matches!(first, Err(StoreError::Export(_))), "{first:?}");
    }
}
