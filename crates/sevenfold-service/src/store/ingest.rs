//! Ingest of failure reports, batched: per batch one multi-row insert of the
//! problems it names and one read of their state, one multi-row insert of the
//! reports (`ON CONFLICT DO NOTHING RETURNING`, which names the records that
//! are new), one update per problem however many records it holds, and one
//! insert each for the problems' devices, versions and per-day counts.
//! Everything, webhook deliveries included, happens in one transaction.

use std::collections::{BTreeMap, BTreeSet};

use super::error::StoreError;
use super::failures::{problem_in, version_newer, IngestOutcome, NewReport, ProblemEvent};
use super::{col, new_id, values_list, Backend, Store};

/// Reports per multi-row `INSERT` (11 parameters each).
const INSERT_CHUNK: usize = 100;
/// (problem, device or version) pairs per multi-row `INSERT` (2 parameters each).
const MEMBER_CHUNK: usize = 400;
/// Problems per multi-row `INSERT` (7 parameters each) and `SELECT`.
const PROBLEM_CHUNK: usize = 100;

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
        // 1. The problems of the batch, created if new (with no occurrences
        //    yet), and their state, in two statements however many there are.
        let mut keys: BTreeMap<&str, &NewReport> = BTreeMap::new();
        for report in reports {
            if let Some(key) = &report.problem {
                keys.entry(key.signature.as_str()).or_insert(report);
            }
        }
        let problems = open_problems(&mut tx, tenant_id, &keys).await?;
        // 2. The reports; the database says which are new.
        let mut new: BTreeSet<(String, String)> = BTreeSet::new();
        for chunk in reports.chunks(INSERT_CHUNK) {
            let mut sql = String::from(
                "INSERT INTO failure_reports (device_id, record_id, tenant_id, at, received_at, \
                 component_id, component_version, kind, reason, frames, details, problem_id) VALUES ",
            );
            sql.push_str(&values_list(self.backend(), chunk.len(), 12));
            sql.push_str(
                " ON CONFLICT (device_id, record_id) DO NOTHING RETURNING device_id, record_id",
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for r in chunk {
                let problem_id = r
                    .problem
                    .as_ref()
                    .and_then(|k| problems.get(k.signature.as_str()))
                    .map(|p| p.id.clone());
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
        // Every problem's per-day counts, devices and versions of the batch,
        // each written in one statement.
        let mut day_counts: Vec<(&str, i64, i64)> = Vec::new();
        let mut devices: Vec<(&str, &str)> = Vec::new();
        let mut versions: Vec<(&str, &str)> = Vec::new();
        for (signature, problem) in &problems {
            let Some(tally) = tallies.get(signature) else {
                if problem.created {
                    // Only duplicates named it: leave no empty problem behind.
                    sqlx::query("DELETE FROM problems WHERE id = $1")
                        .bind(&problem.id)
                        .execute(&mut *tx)
                        .await?;
                }
                continue;
            };
            let regression = count_into(&mut tx, problem, tally).await?;
            let id = problem.id.as_str();
            day_counts.extend(tally.days.iter().map(|(day, n)| (id, *day, *n)));
            devices.extend(tally.devices.iter().map(|d| (id, *d)));
            versions.extend(tally.versions.iter().map(|v| (id, *v)));
            if problem.created {
                outcome
                    .events
                    .push((ProblemEvent::NewProblem, problem.id.clone()));
            } else if regression {
                outcome
                    .events
                    .push((ProblemEvent::Regression, problem.id.clone()));
            }
            if attestation {
                for _ in 0..tally.count {
                    outcome
                        .events
                        .push((ProblemEvent::AttestationFailed, problem.id.clone()));
                }
            }
        }
        let backend = self.backend();
        add_members(&mut tx, backend, "problem_devices", "device_id", &devices).await?;
        add_members(&mut tx, backend, "problem_versions", "version", &versions).await?;
        super::fleet::count_problem_days(&mut tx, backend, &day_counts).await?;
        for (event, problem_id) in &outcome.events {
            let problem = problem_in(&mut tx, tenant_id, problem_id).await?;
            super::webhooks::enqueue(&mut tx, tenant_id, *event, &problem, now).await?;
        }
        tx.commit().await?;
        Ok(outcome)
    }
}

/// A problem of the batch as it stood before the batch.
struct OpenProblem {
    id: String,
    /// Made by this batch.
    created: bool,
    status: String,
    resolved_version: Option<String>,
    last_version: String,
    first_seen: i64,
    last_seen: i64,
    occurrences: i64,
}

/// Creates the problems of `keys` (signature → a report naming it) that do
/// not exist yet, and reads the state of all of them: one insert and one
/// select per [`PROBLEM_CHUNK`] problems.
async fn open_problems<'a>(
    conn: &mut sqlx::AnyConnection,
    tenant_id: &str,
    keys: &BTreeMap<&'a str, &NewReport>,
) -> Result<BTreeMap<&'a str, OpenProblem>, StoreError> {
    let keys: Vec<(&'a str, &NewReport)> = keys.iter().map(|(s, r)| (*s, *r)).collect();
    let mut problems = BTreeMap::new();
    for chunk in keys.chunks(PROBLEM_CHUNK) {
        let sql = format!(
            "INSERT INTO problems (id, tenant_id, signature, component_id, kind, title, \
             status, first_seen, last_seen, occurrences, last_version) VALUES {} \
             ON CONFLICT (tenant_id, signature) DO NOTHING RETURNING signature",
            (0..chunk.len())
                .map(|n| {
                    let b = 7 * n + 2;
                    format!(
                        "(${}, $1, ${}, ${}, ${}, ${}, 'open', ${}, ${}, 0, ${})",
                        b,
                        b + 1,
                        b + 2,
                        b + 3,
                        b + 4,
                        b + 5,
                        b + 5,
                        b + 6
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant_id.to_owned());
        for (signature, report) in chunk {
            let title = report.problem.as_ref().map_or("", |k| k.title.as_str());
            insert = insert
                .bind(new_id())
                .bind((*signature).to_owned())
                .bind(report.component_id.clone())
                .bind(report.kind.clone())
                .bind(title.to_owned())
                .bind(report.at)
                .bind(report.component_version.clone());
        }
        let mut created = BTreeSet::new();
        for row in insert.fetch_all(&mut *conn).await? {
            created.insert(col::<String>(&row, "signature")?);
        }
        let sql = format!(
            "SELECT id, signature, status, resolved_version, last_version, first_seen, \
             last_seen, occurrences FROM problems WHERE tenant_id = $1 AND signature IN ({})",
            (0..chunk.len())
                .map(|n| format!("${}", n + 2))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut select = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant_id.to_owned());
        for (signature, _) in chunk {
            select = select.bind((*signature).to_owned());
        }
        for row in select.fetch_all(&mut *conn).await? {
            let signature: String = col(&row, "signature")?;
            let Some((key, _)) = chunk.iter().find(|(s, _)| *s == signature) else {
                continue;
            };
            problems.insert(
                *key,
                OpenProblem {
                    id: col(&row, "id")?,
                    created: created.contains(&signature),
                    status: col(&row, "status")?,
                    resolved_version: col(&row, "resolved_version")?,
                    last_version: col(&row, "last_version")?,
                    first_seen: col(&row, "first_seen")?,
                    last_seen: col(&row, "last_seen")?,
                    occurrences: col(&row, "occurrences")?,
                },
            );
        }
    }
    Ok(problems)
}

/// Adds a tally to its problem; returns whether that made it a regression.
async fn count_into(
    conn: &mut sqlx::AnyConnection,
    problem: &OpenProblem,
    tally: &Tally<'_>,
) -> Result<bool, StoreError> {
    let newest = tally.newest.unwrap_or("");
    let regression = problem.status == "resolved"
        && problem
            .resolved_version
            .as_deref()
            .is_none_or(|fixed| tally.versions.iter().any(|v| version_newer(v, fixed)));
    let status = if regression {
        "regression"
    } else {
        &problem.status
    };
    let occurrences = problem.occurrences;
    let last_version = if occurrences == 0 || version_newer(newest, &problem.last_version) {
        newest
    } else {
        &problem.last_version
    };
    let (first, last) = if occurrences == 0 {
        (tally.first, tally.last)
    } else {
        (
            problem.first_seen.min(tally.first),
            problem.last_seen.max(tally.last),
        )
    };
    // The batch's latest record becomes the problem's sample unless an
    // earlier batch held a later one (NULLs keep the stored sample).
    let latest = tally
        .latest
        .filter(|_| occurrences == 0 || tally.last >= problem.last_seen);
    sqlx::query(
        "UPDATE problems SET occurrences = occurrences + $1, first_seen = $2, last_seen = $3, \
         last_version = $4, status = $5, latest_device_id = COALESCE($7, latest_device_id), \
         latest_record_id = COALESCE($8, latest_record_id) WHERE id = $6",
    )
    .bind(tally.count)
    .bind(first)
    .bind(last)
    .bind(last_version.to_owned())
    .bind(status.to_owned())
    .bind(problem.id.clone())
    .bind(latest.map(|(device, _)| device.to_owned()))
    .bind(latest.map(|(_, record)| record.to_owned()))
    .execute(&mut *conn)
    .await?;
    Ok(regression)
}

/// Records (problem, member) pairs in `table` (`problem_devices` or
/// `problem_versions`), skipping those already there.
async fn add_members(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    table: &str,
    column: &str,
    members: &[(&str, &str)],
) -> Result<(), StoreError> {
    for chunk in members.chunks(MEMBER_CHUNK) {
        let sql = format!(
            "INSERT INTO {table} (problem_id, {column}) VALUES {} \
             ON CONFLICT (problem_id, {column}) DO NOTHING",
            values_list(backend, chunk.len(), 2)
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (problem, member) in chunk {
            query = query.bind((*problem).to_owned()).bind((*member).to_owned());
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}
