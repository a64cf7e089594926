//! Failure reports and problems: idempotent ingest (a record is stored once
//! per device and record ID), grouping into problems by signature, the
//! paged error report, resolve and regression, retention.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::error::StoreError;
use super::{col, to_count, Store};

/// Default retention of failure reports, in days.
pub const DEFAULT_RETENTION_DAYS: u32 = 14;
use super::DAY_MS;

/// A record to store, already validated and given its problem key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewReport {
    /// Device that reported it.
    pub device_id: String,
    /// The device's record ID (or an attestation's ID).
    pub record_id: String,
    /// When it happened (ms).
    pub at: i64,
    /// Component.
    pub component_id: String,
    /// Component version.
    pub component_version: String,
    /// Kind (wire spelling).
    pub kind: String,
    /// Reason.
    pub reason: String,
    /// Frames, JSON array.
    pub frames: String,
    /// Details, JSON object.
    pub details: String,
    /// The problem it belongs to; `None` for heartbeats.
    pub problem: Option<ProblemKey>,
}

/// What groups a failure: its signature and the problem's title.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProblemKey {
    /// Hex SHA-256 of the normalised signature.
    pub signature: String,
    /// Normalised reason and top frame.
    pub title: String,
}

/// A problem's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProblemRecord {
    /// ID.
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Signature.
    pub signature: String,
    /// Component.
    pub component_id: String,
    /// Kind.
    pub kind: String,
    /// Title.
    pub title: String,
    /// `open`, `resolved` or `regression`.
    pub status: String,
    /// First occurrence (ms).
    pub first_seen: i64,
    /// Latest occurrence (ms).
    pub last_seen: i64,
    /// Occurrences.
    pub occurrences: u64,
    /// Distinct devices.
    pub devices: u64,
    /// Newest version seen.
    pub last_version: String,
    /// When resolved (ms).
    pub resolved_at: Option<i64>,
    /// Version it was resolved in.
    pub resolved_version: Option<String>,
}

/// Why a webhook notification is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemEvent {
    /// A signature seen for the first time.
    NewProblem,
    /// A resolved problem seen again in a newer version.
    Regression,
    /// A failed attestation (recorded by the service).
    AttestationFailed,
}

impl ProblemEvent {
    /// The event name webhooks subscribe to.
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemEvent::NewProblem => "new-problem",
            ProblemEvent::Regression => "regression",
            ProblemEvent::AttestationFailed => "attestation-failed",
        }
    }
}

/// What an ingest did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IngestOutcome {
    /// Records stored now.
    pub stored: u32,
    /// Records already stored (resent).
    pub duplicates: u32,
    /// Notifications queued.
    pub events: Vec<(ProblemEvent, String)>,
}

/// One row of the error report.
///
/// Its fields are in the order of the report query's columns: the packed
/// form of a row (a JSON array of those columns) deserialises into it
/// directly.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReportRow {
    /// Device.
    pub device_id: String,
    /// Record ID.
    pub record_id: String,
    /// The device's group, if any.
    pub group_id: Option<String>,
    /// When it happened (ms).
    pub at: i64,
    /// When it was received (ms).
    pub received_at: i64,
    /// Component.
    pub component_id: String,
    /// Version.
    pub component_version: String,
    /// Kind.
    pub kind: String,
    /// Reason.
    pub reason: String,
    /// Its problem.
    pub problem_id: Option<String>,
}

/// One stored record in full: a problem's latest occurrence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredReport {
    /// Device.
    pub device_id: String,
    /// Record ID.
    pub record_id: String,
    /// When it happened (ms, device clock).
    pub at: i64,
    /// Version of the component.
    pub component_version: String,
    /// Reason.
    pub reason: String,
    /// Backtrace frames, innermost first (JSON array as stored).
    pub frames: String,
    /// Further facts (JSON object as stored), the output tail among them
    /// when the device's group has crash details on.
    pub details: String,
}

/// Keyset position in the error report: (received_at, device_id, record_id).
pub type ReportCursor = (i64, String, String);

/// Whether version `a` is newer than `b`: semantic versions compare as
/// such; otherwise any difference counts as newer (a rebuilt component with
/// an unparseable version must not hide a regression).
pub fn version_newer(a: &str, b: &str) -> bool {
    match (semver::Version::parse(a), semver::Version::parse(b)) {
        (Ok(a), Ok(b)) => a > b,
        _ => a != b,
    }
}

impl Store {
    /// A page of the error report: failures (not heartbeats) received since
    /// `since`, newest first, optionally only from devices in `group`.
    pub async fn report_page(
        &self,
        tenant_id: &str,
        since: i64,
        group: Option<&str>,
        after: Option<&ReportCursor>,
        limit: u32,
    ) -> Result<Vec<ReportRow>, StoreError> {
        let limit = i64::from(limit.clamp(1, 10_000));
        let mut query = sqlx::query(sqlx::AssertSqlSafe(report_sql(
            group.is_some(),
            after.is_some(),
            true,
        )))
        .bind(tenant_id.to_owned())
        .bind(since);
        if let Some(group) = group {
            query = query.bind(group.to_owned());
        }
        if let Some((at, device, record)) = after {
            query = query.bind(*at).bind(device.clone()).bind(record.clone());
        }
        let rows = query.bind(limit).fetch_all(self.pool()).await?;
        rows.iter().map(report_row).collect()
    }

    /// The latest occurrence of a problem of `tenant_id`, if it is still
    /// stored (retention may have purged it).
    pub async fn problem_latest(
        &self,
        tenant_id: &str,
        problem_id: &str,
    ) -> Result<Option<StoredReport>, StoreError> {
        let row = sqlx::query(
            "SELECT r.device_id, r.record_id, r.at, r.component_version, r.reason, r.frames, \
             r.details FROM problems p JOIN failure_reports r \
             ON r.device_id = p.latest_device_id AND r.record_id = p.latest_record_id \
             WHERE p.tenant_id = $1 AND p.id = $2 AND r.tenant_id = p.tenant_id",
        )
        .bind(tenant_id)
        .bind(problem_id)
        .fetch_optional(self.pool())
        .await?;
        row.map(|row| {
            Ok(StoredReport {
                device_id: col(&row, "device_id")?,
                record_id: col(&row, "record_id")?,
                at: col(&row, "at")?,
                component_version: col(&row, "component_version")?,
                reason: col(&row, "reason")?,
                frames: col(&row, "frames")?,
                details: col(&row, "details")?,
            })
        })
        .transpose()
    }

    /// Whether `device`'s group has crash details on (false for a device in
    /// no group, or an unknown one: details stay off unless asked for).
    pub async fn crash_details(
        &self,
        tenant_id: &str,
        device_id: &str,
    ) -> Result<bool, StoreError> {
        let on: Option<i64> = sqlx::query_scalar(
            "SELECT g.crash_details FROM devices d JOIN device_groups g \
             ON g.tenant_id = d.tenant_id AND g.id = d.group_id \
             WHERE d.tenant_id = $1 AND d.id = $2",
        )
        .bind(tenant_id)
        .bind(device_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(on.unwrap_or(0) != 0)
    }

    /// Problems, most recently seen first, after the keyset `(last_seen, id)`.
    pub async fn list_problems(
        &self,
        tenant_id: &str,
        status: Option<&str>,
        after: Option<&(i64, String)>,
        limit: u32,
    ) -> Result<Vec<ProblemRecord>, StoreError> {
        let (c_seen, c_id) = match after {
            Some((seen, id)) => (*seen, id.as_str()),
            None => (i64::MAX, "\u{10FFFF}"),
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{PROBLEM_SELECT} WHERE p.tenant_id = $1 AND ($2 = '' OR p.status = $2) \
             AND (p.last_seen < $3 OR (p.last_seen = $3 AND p.id < $4)) \
             ORDER BY p.last_seen DESC, p.id DESC LIMIT $5"
        )))
        .bind(tenant_id)
        .bind(status.unwrap_or(""))
        .bind(c_seen)
        .bind(c_id)
        .bind(i64::from(limit.clamp(1, 1000)))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(problem_from_row).collect()
    }

    /// One problem with up to 1000 affected devices and its versions.
    pub async fn problem(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> Result<(ProblemRecord, Vec<String>, Vec<String>), StoreError> {
        let mut conn = self.pool().acquire().await?;
        let problem = problem_in(&mut conn, tenant_id, id).await?;
        let devices = sqlx::query(
            "SELECT device_id FROM problem_devices WHERE problem_id = $1 ORDER BY device_id LIMIT 1000",
        )
        .bind(id)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| col::<String>(r, "device_id"))
        .collect::<Result<Vec<_>, _>>()?;
        let mut versions =
            sqlx::query("SELECT version FROM problem_versions WHERE problem_id = $1")
                .bind(id)
                .fetch_all(&mut *conn)
                .await?
                .iter()
                .map(|r| col::<String>(r, "version"))
                .collect::<Result<Vec<_>, _>>()?;
        versions.sort_by(|a, b| {
            if version_newer(a, b) {
                std::cmp::Ordering::Greater
            } else if version_newer(b, a) {
                std::cmp::Ordering::Less
            } else {
                a.cmp(b)
            }
        });
        Ok((problem, devices, versions))
    }

    /// Marks a problem resolved in `fixed_in` (default: the newest version
    /// seen); an occurrence in a newer version reopens it as a regression.
    pub async fn resolve_problem(
        &self,
        tenant_id: &str,
        id: &str,
        fixed_in: Option<&str>,
        now: i64,
    ) -> Result<ProblemRecord, StoreError> {
        let mut tx = self.begin_write().await?;
        let problem = problem_in(&mut tx, tenant_id, id).await?;
        let version = fixed_in.unwrap_or(&problem.last_version).to_owned();
        sqlx::query(
            "UPDATE problems SET status = 'resolved', resolved_at = $1, resolved_version = $2 \
             WHERE tenant_id = $3 AND id = $4",
        )
        .bind(now)
        .bind(&version)
        .bind(tenant_id)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let problem = problem_in(&mut tx, tenant_id, id).await?;
        tx.commit().await?;
        Ok(problem)
    }

    /// How many problems are open or regressed, over all tenants (a metric).
    pub async fn count_open_problems(&self) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM problems WHERE status <> 'resolved'")
            .fetch_one(self.pool())
            .await?;
        to_count(col(&row, "n")?)
    }

    /// A tenant's retention of failure reports, in days.
    pub async fn retention_days(&self, tenant_id: &str) -> Result<u32, StoreError> {
        let row = sqlx::query("SELECT retention_days FROM failure_settings WHERE tenant_id = $1")
            .bind(tenant_id)
            .fetch_optional(self.pool())
            .await?;
        match row {
            None => Ok(DEFAULT_RETENTION_DAYS),
            Some(row) => u32::try_from(col::<i64>(&row, "retention_days")?)
                .map_err(|_| StoreError::Corrupt("retention_days out of range".into())),
        }
    }

    /// Sets a tenant's retention (1 to 3650 days).
    pub async fn set_retention_days(&self, tenant_id: &str, days: u32) -> Result<(), StoreError> {
        if !(1..=3650).contains(&days) {
            return Err(StoreError::Invalid(
                "retention must be between 1 and 3650 days".into(),
            ));
        }
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM failure_settings WHERE tenant_id = $1")
            .bind(tenant_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO failure_settings (tenant_id, retention_days) VALUES ($1, $2)")
            .bind(tenant_id)
            .bind(i64::from(days))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes failure reports older than their tenant's retention (by time
    /// of receipt), and finished webhook deliveries older than the default
    /// retention. Problems stay (they are small, and a resolved one must be
    /// remembered to detect a regression). Returns the reports deleted.
    pub async fn purge_failure_reports(&self, now: i64) -> Result<u64, StoreError> {
        let deleted = sqlx::query(
            "DELETE FROM failure_reports WHERE received_at < $1 - $2 * COALESCE(\
             (SELECT s.retention_days FROM failure_settings s \
              WHERE s.tenant_id = failure_reports.tenant_id), $3)",
        )
        .bind(now)
        .bind(DAY_MS)
        .bind(i64::from(DEFAULT_RETENTION_DAYS))
        .execute(self.pool())
        .await?
        .rows_affected();
        sqlx::query(
            "DELETE FROM problem_days WHERE day < ($1 - $2 * COALESCE(\
             (SELECT s.retention_days FROM failure_settings s JOIN problems p ON p.tenant_id = s.tenant_id \
              WHERE p.id = problem_days.problem_id), $3)) / $2",
        )
        .bind(now)
        .bind(DAY_MS)
        .bind(i64::from(DEFAULT_RETENTION_DAYS))
        .execute(self.pool())
        .await?;
        sqlx::query(
            "DELETE FROM webhook_deliveries WHERE created_at < $1 \
             AND (delivered_at IS NOT NULL OR attempts >= $2)",
        )
        .bind(now - DAY_MS * i64::from(DEFAULT_RETENTION_DAYS))
        .bind(super::webhooks::MAX_ATTEMPTS)
        .execute(self.pool())
        .await?;
        Ok(deleted)
    }

    /// Failed attestations of claimed devices since `since` that are not yet
    /// in the failure reports: (attestation ID, device, tenant, at, reasons JSON).
    pub async fn unreported_attestation_failures(
        &self,
        since: i64,
        limit: u32,
    ) -> Result<Vec<(String, String, String, i64, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT a.id, a.device_id, a.tenant_id, a.at, a.reasons FROM attestations a \
             WHERE a.verdict = 'fail' AND a.tenant_id IS NOT NULL AND a.at >= $1 \
             AND NOT EXISTS (SELECT 1 FROM failure_reports r \
                             WHERE r.device_id = a.device_id AND r.record_id = a.id) \
             ORDER BY a.at LIMIT $2",
        )
        .bind(since)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    col(r, "id")?,
                    col(r, "device_id")?,
                    col(r, "tenant_id")?,
                    col(r, "at")?,
                    col(r, "reasons")?,
                ))
            })
            .collect()
    }
}

const PROBLEM_SELECT: &str = "SELECT p.id, p.tenant_id, p.signature, p.component_id, p.kind, \
     p.title, p.status, p.first_seen, p.last_seen, p.occurrences, p.last_version, p.resolved_at, \
     p.resolved_version, (SELECT COUNT(*) FROM problem_devices d WHERE d.problem_id = p.id) AS devices \
     FROM problems p";

fn problem_from_row(row: &AnyRow) -> Result<ProblemRecord, StoreError> {
    Ok(ProblemRecord {
        id: col(row, "id")?,
        tenant_id: col(row, "tenant_id")?,
        signature: col(row, "signature")?,
        component_id: col(row, "component_id")?,
        kind: col(row, "kind")?,
        title: col(row, "title")?,
        status: col(row, "status")?,
        first_seen: col(row, "first_seen")?,
        last_seen: col(row, "last_seen")?,
        occurrences: to_count(col(row, "occurrences")?)?,
        devices: to_count(col(row, "devices")?)?,
        last_version: col(row, "last_version")?,
        resolved_at: col(row, "resolved_at")?,
        resolved_version: col(row, "resolved_version")?,
    })
}

pub(super) async fn problem_in(
    conn: &mut sqlx::AnyConnection,
    tenant_id: &str,
    id: &str,
) -> Result<ProblemRecord, StoreError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{PROBLEM_SELECT} WHERE p.tenant_id = $1 AND p.id = $2"
    )))
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| StoreError::not_found("problem", id))?;
    problem_from_row(&row)
}

/// The columns of one report row over `failure_reports r` joined with
/// `devices d`. Their order is what [`report_row`] reads and
/// [`ReportRow`]'s field order.
pub(super) const REPORT_COLUMNS: &str = "r.device_id, r.record_id, d.group_id, r.at, \
    r.received_at, r.component_id, r.component_version, r.kind, r.reason, r.problem_id";

/// The error report's query. Assembled from fixed pieces so that each shape
/// gets a plan that walks the report's order: on SQLite the table itself is
/// stored clustered by (tenant_id, received_at, device_id, record_id)
/// (migration 0011), on PostgreSQL the index of those columns is walked
/// backwards; the keyset is a row-value comparison, which both match against
/// that order. Parameters: $1 tenant, $2 since, then the group, the keyset
/// (3) and the limit, each if asked for.
pub(super) fn report_sql(group: bool, keyset: bool, limit: bool) -> String {
    let mut sql = format!(
        "SELECT {REPORT_COLUMNS} FROM failure_reports r LEFT JOIN devices d \
         ON d.id = r.device_id AND d.tenant_id = r.tenant_id \
         WHERE r.tenant_id = $1 AND r.received_at >= $2 AND r.kind <> 'heartbeat'"
    );
    let mut next = 3;
    if group {
        sql.push_str(&format!(" AND d.group_id = ${next}"));
        next += 1;
    }
    if keyset {
        sql.push_str(&format!(
            " AND (r.received_at, r.device_id, r.record_id) < (${}, ${}, ${})",
            next,
            next + 1,
            next + 2
        ));
        next += 3;
    }
    sql.push_str(" ORDER BY r.received_at DESC, r.device_id DESC, r.record_id DESC");
    if limit {
        sql.push_str(&format!(" LIMIT ${next}"));
    }
    sql
}

/// One row of [`report_sql`], read by position (a report reads millions).
pub(super) fn report_row(row: &AnyRow) -> Result<ReportRow, StoreError> {
    fn at<'r, T>(row: &'r AnyRow, i: usize) -> Result<T, StoreError>
    where
        T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
    {
        row.try_get::<T, _>(i)
            .map_err(|e| StoreError::Corrupt(format!("error report column {i}: {e}")))
    }
    Ok(ReportRow {
        device_id: at(row, 0)?,
        record_id: at(row, 1)?,
        group_id: at(row, 2)?,
        at: at(row, 3)?,
        received_at: at(row, 4)?,
        component_id: at(row, 5)?,
        component_version: at(row, 6)?,
        kind: at(row, 7)?,
        reason: at(row, 8)?,
        problem_id: at(row, 9)?,
    })
}
