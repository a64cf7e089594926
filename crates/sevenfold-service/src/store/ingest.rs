//! Ingest of failure reports, batched: per batch one multi-row insert of the
//! reports (`ON CONFLICT DO NOTHING RETURNING`, which names the records that
//! are new), and per problem in the batch one upsert and one update, however
//! many records it holds. Everything, webhook deliveries included, happens
//! in one transaction.

use std::collections::{BTreeMap, BTreeSet};

use super::error::StoreError;
use super::failures::{problem_in, version_newer, IngestOutcome, NewReport, ProblemEvent};
use super::{col, new_id, Store};

/// Reports per multi-row `INSERT` (11 parameters each).
const INSERT_CHUNK: usize = 100;
/// Devices or versions per multi-row `INSERT` (2 parameters each).
const MEMBER_CHUNK: usize = 200;

/// What the new records of one problem add up to.
#[derive(Default)]
struct Tally<'a> {
    count: i64,
    first: i64,
    last: i64,
    newest: Option<&'a str>,
    /// The record (device, record ID) that happened last.
    latest: Option<(&'a str, &'a str)>,
    devices: BTreeSet<&'a str>,
    versions: BTreeSet<&'a str>,
    /// Occurrences per unix day of the record's time.
    days: BTreeMap<i64, i64>,
}

impl Store {
    /// Stores `reports` of one tenant in one transaction: each new record is
    /// grouped into its problem (created, counted, reopened as a regression
    /// when seen in a version newer than the one it was resolved in);
    /// records already stored are counted as duplicates and change nothing.
    /// `attestation` marks service-side attestation failures, which also
    /// raise `attestation-failed`. Webhook deliveries for the events are
    /// queued in the same transaction.
    pub async fn ingest_reports(
        &self,
        tenant_id: &str,
        reports: &[NewReport],
        attestation: bool,
        now: i64,
    ) -> Result<IngestOutcome, StoreError> {
        let mut tx = self.begin_write().await?;
        // 1. The problems of the batch, created if new (with no occurrences yet).
        let mut problems: BTreeMap<&str, (String, bool)> = BTreeMap::new();
        for report in reports {
            let Some(key) = &report.problem else { continue };
            if problems.contains_key(key.signature.as_str()) {
                continue;
            }
            let id = new_id();
            let created = sqlx::query(
                "INSERT INTO problems (id, tenant_id, signature, component_id, kind, title, \
                 status, first_seen, last_seen, occurrences, last_version) \
                 VALUES ($1, $2, $3, $4, $5, $6, 'open', $7, $7, 0, $8) \
                 ON CONFLICT (tenant_id, signature) DO NOTHING",
            )
            .bind(&id)
            .bind(tenant_id)
            .bind(&key.signature)
            .bind(&report.component_id)
            .bind(&report.kind)
            .bind(&key.title)
            .bind(report.at)
            .bind(&report.component_version)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            let id = if created {
                id
            } else {
                let row =
                    sqlx::query("SELECT id FROM problems WHERE tenant_id = $1 AND signature = $2")
                        .bind(tenant_id)
                        .bind(&key.signature)
                        .fetch_one(&mut *tx)
                        .await?;
                col(&row, "id")?
            };
            problems.insert(&key.signature, (id, created));
        }
        // 2. The reports; the database says which are new.
        let mut new: BTreeSet<(String, String)> = BTreeSet::new();
        for chunk in reports.chunks(INSERT_CHUNK) {
            let mut sql = String::from(
                "INSERT INTO failure_reports (device_id, record_id, tenant_id, at, received_at, \
                 component_id, component_version, kind, reason, frames, details, problem_id) VALUES ",
            );
            for n in 0..chunk.len() {
                let b = n * 12;
                if n > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!(
                    "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6,
                    b + 7,
                    b + 8,
                    b + 9,
                    b + 10,
                    b + 11,
                    b + 12
                ));
            }
            sql.push_str(
                " ON CONFLICT (device_id, record_id) DO NOTHING RETURNING device_id, record_id",
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for r in chunk {
                let problem_id = r
                    .problem
                    .as_ref()
                    .and_then(|k| problems.get(k.signature.as_str()))
                    .map(|(id, _)| id.clone());
                query = query
                    .bind(r.device_id.clone())
                    .bind(r.record_id.clone())
                    .bind(tenant_id.to_owned())
                    .bind(r.at)
                    .bind(now)
                    .bind(r.component_id.clone())
                    .bind(r.component_version.clone())
                    .bind(r.kind.clone())
                    .bind(r.reason.clone())
                    .bind(r.frames.clone())
                    .bind(r.details.clone())
                    .bind(problem_id);
            }
            for row in query.fetch_all(&mut *tx).await? {
                new.insert((col(&row, "device_id")?, col(&row, "record_id")?));
            }
        }
        let mut outcome = IngestOutcome {
            stored: u32::try_from(new.len()).unwrap_or(u32::MAX),
            duplicates: u32::try_from(reports.len() - new.len()).unwrap_or(u32::MAX),
            events: Vec::new(),
        };
        // 3. Count the new records into their problems.
        let mut tallies: BTreeMap<&str, Tally<'_>> = BTreeMap::new();
        for r in reports {
            let Some(key) = &r.problem else { continue };
            if !new.contains(&(r.device_id.clone(), r.record_id.clone())) {
                continue;
            }
            let t = tallies
                .entry(key.signature.as_str())
                .or_insert_with(|| Tally {
                    first: i64::MAX,
                    last: i64::MIN,
                    ..Tally::default()
                });
            t.count += 1;
            t.first = t.first.min(r.at);
            if r.at >= t.last {
                t.latest = Some((&r.device_id, &r.record_id));
            }
            t.last = t.last.max(r.at);
            if t.newest
                .is_none_or(|v| version_newer(&r.component_version, v))
            {
                t.newest = Some(&r.component_version);
            }
            t.devices.insert(&r.device_id);
            t.versions.insert(&r.component_version);
            *t.days.entry(r.at.div_euclid(super::DAY_MS)).or_default() += 1;
        }
        // Every problem's per-day counts of the batch, written in one statement.
        let mut day_counts: Vec<(&str, i64, i64)> = Vec::new();
        for (signature, (id, created)) in &problems {
            let Some(tally) = tallies.get(signature) else {
                if *created {
                    // Only duplicates named it: leave no empty problem behind.
                    sqlx::query("DELETE FROM problems WHERE id = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
                continue;
            };
            let regression = count_into(&mut tx, id, tally).await?;
            day_counts.extend(tally.days.iter().map(|(day, n)| (id.as_str(), *day, *n)));
            if *created {
                outcome.events.push((ProblemEvent::NewProblem, id.clone()));
            } else if regression {
                outcome.events.push((ProblemEvent::Regression, id.clone()));
            }
            if attestation {
                for _ in 0..tally.count {
                    outcome
                        .events
                        .push((ProblemEvent::AttestationFailed, id.clone()));
                }
            }
        }
        super::fleet::count_problem_days(&mut tx, &day_counts).await?;
        for (event, problem_id) in &outcome.events {
            let problem = problem_in(&mut tx, tenant_id, problem_id).await?;
            super::webhooks::enqueue(&mut tx, tenant_id, *event, &problem, now).await?;
        }
        tx.commit().await?;
        Ok(outcome)
    }
}

/// Adds a tally to its problem; returns whether that made it a regression.
async fn count_into(
    conn: &mut sqlx::AnyConnection,
    id: &str,
    tally: &Tally<'_>,
) -> Result<bool, StoreError> {
    let row = sqlx::query(
        "SELECT status, resolved_version, last_version, first_seen, last_seen, occurrences \
         FROM problems WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&mut *conn)
    .await?;
    let status: String = col(&row, "status")?;
    let resolved_version: Option<String> = col(&row, "resolved_version")?;
    let last_version: String = col(&row, "last_version")?;
    let occurrences: i64 = col(&row, "occurrences")?;
    let newest = tally.newest.unwrap_or("");
    let regression = status == "resolved"
        && resolved_version
            .as_deref()
            .is_none_or(|fixed| tally.versions.iter().any(|v| version_newer(v, fixed)));
    let status = if regression { "regression" } else { &status };
    let last_version = if occurrences == 0 || version_newer(newest, &last_version) {
        newest.to_owned()
    } else {
        last_version
    };
    let stored_last: i64 = col(&row, "last_seen")?;
    let (first, last) = if occurrences == 0 {
        (tally.first, tally.last)
    } else {
        (
            col::<i64>(&row, "first_seen")?.min(tally.first),
            stored_last.max(tally.last),
        )
    };
    // The batch's latest record becomes the problem's sample unless an
    // earlier batch held a later one (NULLs keep the stored sample).
    let latest = tally
        .latest
        .filter(|_| occurrences == 0 || tally.last >= stored_last);
    sqlx::query(
        "UPDATE problems SET occurrences = occurrences + $1, first_seen = $2, last_seen = $3, \
         last_version = $4, status = $5, latest_device_id = COALESCE($7, latest_device_id), \
         latest_record_id = COALESCE($8, latest_record_id) WHERE id = $6",
    )
    .bind(tally.count)
    .bind(first)
    .bind(last)
    .bind(&last_version)
    .bind(status)
    .bind(id)
    .bind(latest.map(|(device, _)| device.to_owned()))
    .bind(latest.map(|(_, record)| record.to_owned()))
    .execute(&mut *conn)
    .await?;
    for (table, column, members) in [
        ("problem_devices", "device_id", &tally.devices),
        ("problem_versions", "version", &tally.versions),
    ] {
        let members: Vec<&&str> = members.iter().collect();
        for chunk in members.chunks(MEMBER_CHUNK) {
            let values: Vec<String> = (0..chunk.len())
                .map(|n| format!("($1, ${})", n + 2))
                .collect();
            let sql = format!(
                "INSERT INTO {table} (problem_id, {column}) VALUES {} \
                 ON CONFLICT (problem_id, {column}) DO NOTHING",
                values.join(", ")
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.to_owned());
            for m in chunk {
                query = query.bind((**m).to_owned());
            }
            query.execute(&mut *conn).await?;
        }
    }
    Ok(regression)
}
