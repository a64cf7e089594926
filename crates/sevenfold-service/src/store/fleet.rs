//! The fleet view: what the dashboard counts and lists across a tenant's
//! devices, answered from per-device columns (`devices.attestation_verdict`,
//! `runtime_version`, …, kept current by [`Store::record_verdict`]) and
//! per-day problem counts (`problem_days`, kept by ingest), so that no page
//! reads a device's or a problem's whole history. Every query is bounded:
//! aggregates return one row per state or version, lists are keyset pages.

use std::collections::BTreeMap;

use sqlx::any::AnyRow;
use sqlx::AnyConnection;

use super::{col, col_enum, to_count, AttestationRecord, DeviceMode, ReportRow, Store, StoreError};

/// A device's standing, as the fleet view classifies it at a moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FleetState {
    /// Its latest verdict passed and its certificate is still valid.
    Attested,
    /// Its latest verdict passed but the certificate has expired: the
    /// device has not renewed (offline, or stuck).
    Expired,
    /// Its latest verdict failed.
    Failing,
    /// Claimed but never attested.
    NeverAttested,
    /// Revoked by an operator.
    Revoked,
}

impl FleetState {
    /// Every state, in the order the dashboard shows them.
    pub const ALL: [FleetState; 5] = [
        FleetState::Attested,
        FleetState::Expired,
        FleetState::Failing,
        FleetState::NeverAttested,
        FleetState::Revoked,
    ];

    /// Wire and URL name.
    pub fn as_str(self) -> &'static str {
        match self {
            FleetState::Attested => "attested",
            FleetState::Expired => "expired",
            FleetState::Failing => "failing",
            FleetState::NeverAttested => "never-attested",
            FleetState::Revoked => "revoked",
        }
    }

    /// The state a name names.
    pub fn parse(name: &str) -> Option<FleetState> {
        FleetState::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// How recently devices were seen (a pass, or a mutual-TLS call).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LastSeen {
    /// Within the last hour.
    Hour,
    /// Within the last day.
    Day,
    /// Within the last week.
    Week,
    /// Longer ago.
    Older,
    /// Never.
    Never,
}

impl LastSeen {
    /// Every bucket, most recent first.
    pub const ALL: [LastSeen; 5] = [
        LastSeen::Hour,
        LastSeen::Day,
        LastSeen::Week,
        LastSeen::Older,
        LastSeen::Never,
    ];

    /// Name used in SQL and shown to operators.
    pub fn as_str(self) -> &'static str {
        match self {
            LastSeen::Hour => "last hour",
            LastSeen::Day => "last day",
            LastSeen::Week => "last week",
            LastSeen::Older => "longer ago",
            LastSeen::Never => "never",
        }
    }
}

/// A tenant's fleet in numbers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FleetSummary {
    /// Devices claimed by the tenant.
    pub total: u64,
    /// Devices per state (every state present, zero included).
    pub by_state: BTreeMap<FleetState, u64>,
    /// Devices per last-seen bucket (every bucket present).
    pub by_last_seen: BTreeMap<LastSeen, u64>,
    /// Devices per runtime version (`None`: not yet known), most first.
    pub runtimes: Vec<(Option<String>, u64)>,
    /// Devices per application and version, most first: (app name,
    /// version, devices).
    pub apps: Vec<(String, String, u64)>,
}

/// One device as the fleet view lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetDevice {
    /// Device ID.
    pub id: String,
    /// Its device group.
    pub group_id: Option<String>,
    /// Field or development.
    pub mode: DeviceMode,
    /// Standing now.
    pub state: FleetState,
    /// Last seen (ms).
    pub last_seen: Option<i64>,
    /// Latest verdict (ms).
    pub attested_at: Option<i64>,
    /// Its certificate's expiry (ms).
    pub certificate_not_after: Option<i64>,
    /// Runtime version it last measured.
    pub runtime_version: Option<String>,
    /// Applications it last measured, `name version, …`.
    pub app_versions: Option<String>,
}

/// Which devices a fleet page lists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FleetFilter {
    /// Only this device group.
    pub group_id: Option<String>,
    /// Only devices in this state.
    pub state: Option<FleetState>,
    /// Keyset: device IDs after this one.
    pub after: Option<String>,
}

/// The SQL `CASE` that classifies a device row (alias `d`) at `$2` (now).
const STATE_CASE: &str = "CASE WHEN d.revoked_at IS NOT NULL THEN 'revoked' \
     WHEN d.attestation_verdict IS NULL THEN 'never-attested' \
     WHEN d.attestation_verdict = 'fail' THEN 'failing' \
     WHEN d.certificate_not_after IS NULL OR d.certificate_not_after < $2 THEN 'expired' \
     ELSE 'attested' END";

const DEVICE_COLUMNS: &str = "d.id, d.group_id, d.mode, d.last_seen, d.attested_at, \
     d.certificate_not_after, d.runtime_version, d.app_versions";

const HOUR_MS: i64 = 3_600_000;

impl Store {
    /// Counts a tenant's devices by state, last seen, runtime and
    /// application versions, as of `now` (ms).
    pub async fn fleet_summary(
        &self,
        tenant_id: &str,
        now: i64,
    ) -> Result<FleetSummary, StoreError> {
        let mut summary = FleetSummary {
            by_state: FleetState::ALL.into_iter().map(|s| (s, 0)).collect(),
            by_last_seen: LastSeen::ALL.into_iter().map(|s| (s, 0)).collect(),
            ..FleetSummary::default()
        };
        // One pass over the tenant's devices, grouped by everything the
        // overview counts: the groups are few (states × buckets × versions).
        let sql = format!(
            "SELECT {STATE_CASE} AS state, \
             CASE WHEN d.last_seen IS NULL THEN 'never' WHEN d.last_seen >= $2 - $3 THEN 'last hour' \
             WHEN d.last_seen >= $2 - $4 THEN 'last day' WHEN d.last_seen >= $2 - $5 THEN 'last week' \
             ELSE 'longer ago' END AS seen, d.runtime_version AS runtime, d.app_versions AS apps, \
             COUNT(*) AS n FROM devices d WHERE d.tenant_id = $1 GROUP BY 1, 2, 3, 4"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id)
            .bind(now)
            .bind(HOUR_MS)
            .bind(24 * HOUR_MS)
            .bind(7 * 24 * HOUR_MS)
            .fetch_all(self.pool())
            .await?;
        let mut runtimes: BTreeMap<Option<String>, u64> = BTreeMap::new();
        let mut apps: BTreeMap<(String, String), u64> = BTreeMap::new();
        for row in &rows {
            let n = count(row)?;
            let state = col_enum(row, "state", FleetState::parse)?;
            let seen = col_enum(row, "seen", |s| {
                LastSeen::ALL.into_iter().find(|b| b.as_str() == s)
            })?;
            summary.total += n;
            *summary.by_state.entry(state).or_default() += n;
            *summary.by_last_seen.entry(seen).or_default() += n;
            *runtimes.entry(col(row, "runtime")?).or_default() += n;
            let set: Option<String> = col(row, "apps")?;
            for app in set
                .iter()
                .flat_map(|s| s.split(", "))
                .filter(|a| !a.is_empty())
            {
                let (name, version) = app.rsplit_once(' ').unwrap_or((app, ""));
                *apps
                    .entry((name.to_owned(), version.to_owned()))
                    .or_default() += n;
            }
        }
        let mut runtimes: Vec<_> = runtimes.into_iter().collect();
        runtimes.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        summary.runtimes = runtimes;
        let mut apps: Vec<_> = apps.into_iter().map(|((a, v), n)| (a, v, n)).collect();
        apps.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
        summary.apps = apps;
        Ok(summary)
    }

    /// One page of a tenant's devices in ID order, as of `now` (ms).
    pub async fn fleet_devices(
        &self,
        tenant_id: &str,
        filter: &FleetFilter,
        now: i64,
        limit: u32,
    ) -> Result<Vec<FleetDevice>, StoreError> {
        let mut sql = format!(
            "SELECT {DEVICE_COLUMNS}, {STATE_CASE} AS state FROM devices d WHERE d.tenant_id = $1"
        );
        let mut next = 3;
        if filter.group_id.is_some() {
            sql.push_str(&format!(" AND d.group_id = ${next}"));
            next += 1;
        }
        if filter.state.is_some() {
            sql.push_str(&format!(" AND {STATE_CASE} = ${next}"));
            next += 1;
        }
        if filter.after.is_some() {
            sql.push_str(&format!(" AND d.id > ${next}"));
            next += 1;
        }
        sql.push_str(&format!(" ORDER BY d.id LIMIT ${next}"));
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id)
            .bind(now);
        if let Some(group) = &filter.group_id {
            query = query.bind(group);
        }
        if let Some(state) = filter.state {
            query = query.bind(state.as_str());
        }
        if let Some(after) = &filter.after {
            query = query.bind(after);
        }
        let rows = query
            .bind(i64::from(limit.clamp(1, 1000)))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(fleet_device).collect()
    }

    /// One device as the fleet view sees it.
    pub async fn fleet_device(
        &self,
        tenant_id: &str,
        device_id: &str,
        now: i64,
    ) -> Result<FleetDevice, StoreError> {
        let sql = format!(
            "SELECT {DEVICE_COLUMNS}, {STATE_CASE} AS state FROM devices d \
             WHERE d.tenant_id = $1 AND d.id = $3"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id)
            .bind(now)
            .bind(device_id)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::not_found("device", device_id))?;
        fleet_device(&row)
    }

    /// A device's latest failure records (heartbeats excluded), newest first.
    pub async fn device_failures(
        &self,
        tenant_id: &str,
        device_id: &str,
        limit: u32,
    ) -> Result<Vec<ReportRow>, StoreError> {
        let sql = format!(
            "SELECT {} FROM failure_reports r LEFT JOIN devices d \
             ON d.id = r.device_id AND d.tenant_id = r.tenant_id \
             WHERE r.tenant_id = $1 AND r.device_id = $2 AND r.kind <> 'heartbeat' \
             ORDER BY r.at DESC, r.record_id DESC LIMIT $3",
            super::failures::REPORT_COLUMNS
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id)
            .bind(device_id)
            .bind(i64::from(limit.clamp(1, 1000)))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(super::failures::report_row).collect()
    }

    /// A problem's occurrences per unix day from `since_day` on, oldest
    /// first (days without any are absent).
    pub async fn problem_days(
        &self,
        tenant_id: &str,
        problem_id: &str,
        since_day: i64,
    ) -> Result<Vec<(i64, u64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT pd.day, pd.occurrences FROM problem_days pd \
             JOIN problems p ON p.id = pd.problem_id \
             WHERE p.tenant_id = $1 AND pd.problem_id = $2 AND pd.day >= $3 ORDER BY pd.day",
        )
        .bind(tenant_id)
        .bind(problem_id)
        .bind(since_day)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| Ok((col(row, "day")?, to_count(col(row, "occurrences")?)?)))
            .collect()
    }
}

fn count(row: &AnyRow) -> Result<u64, StoreError> {
    to_count(col(row, "n")?)
}

fn fleet_device(row: &AnyRow) -> Result<FleetDevice, StoreError> {
    Ok(FleetDevice {
        id: col(row, "id")?,
        group_id: col(row, "group_id")?,
        mode: col_enum(row, "mode", DeviceMode::parse)?,
        state: col_enum(row, "state", FleetState::parse)?,
        last_seen: col(row, "last_seen")?,
        attested_at: col(row, "attested_at")?,
        certificate_not_after: col(row, "certificate_not_after")?,
        runtime_version: col(row, "runtime_version")?,
        app_versions: col(row, "app_versions")?,
    })
}

/// What a verdict's measurements say runs on the device now: the runtime
/// version and the applications of the last boot in the log (a log may
/// hold several boots of one power cycle; each starts with the runtime).
fn measured_software(measurements: &str) -> Option<(Option<String>, String)> {
    let events: Vec<serde_json::Value> = serde_json::from_str(measurements).ok()?;
    if events.is_empty() {
        return None;
    }
    let mut runtime = None;
    let mut apps: Vec<String> = Vec::new();
    for event in &events {
        let field = |name: &str| event.get(name).and_then(|v| v.as_str()).unwrap_or("");
        match field("kind") {
            "runtime" => {
                runtime = Some(field("version").to_owned());
                apps.clear();
            }
            "application" => {
                let name = field("name");
                let name = if name.is_empty() {
                    field("component_id")
                } else {
                    name
                };
                // ", " separates applications and the last space the
                // version: keep both unambiguous.
                let name = name.replace(", ", " ").replace(' ', "-");
                apps.push(format!("{name} {}", field("version").replace(' ', "-")));
            }
            _ => {}
        }
    }
    apps.sort();
    Some((runtime, apps.join(", ")))
}

/// Keeps the device's fleet columns current with a verdict, in the
/// verdict's transaction. A refusal counts only if it carries measurements
/// (evidence the device's key signed): anyone can send garbage naming a
/// device ID, and that must not turn a healthy device red.
pub(super) async fn record_latest_verdict(
    conn: &mut AnyConnection,
    tenant_id: &str,
    record: &AttestationRecord,
) -> Result<(), StoreError> {
    let software = measured_software(&record.measurements);
    if !record.passed && software.is_none() {
        return Ok(());
    }
    let (runtime, apps) = match software {
        Some((runtime, apps)) => (runtime, Some(apps)),
        None => (None, None),
    };
    sqlx::query(
        "UPDATE devices SET attestation_verdict = $3, attested_at = $4, \
         certificate_not_after = COALESCE($5, certificate_not_after), \
         runtime_version = COALESCE($6, runtime_version), app_versions = COALESCE($7, app_versions), \
         measured_images = COALESCE($8, measured_images) \
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant_id)
    .bind(&record.device_id)
    .bind(if record.passed { "pass" } else { "fail" })
    .bind(record.at)
    .bind(record.certificate_not_after)
    .bind(runtime)
    .bind(apps)
    .bind(super::deltas::measured_images(&record.measurements))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Adds a batch's per-day occurrences, `(problem, day, count)`, to the
/// problems' day counts: one statement for the whole batch (ingest's rate
/// is a target; a statement per problem cost it a tenth).
pub(super) async fn count_problem_days(
    conn: &mut AnyConnection,
    backend: super::Backend,
    counts: &[(&str, i64, i64)],
) -> Result<(), StoreError> {
    // Three binds per row; well under both databases' bind limits.
    for chunk in counts.chunks(300) {
        let sql = format!(
            "INSERT INTO problem_days (problem_id, day, occurrences) VALUES {} \
             ON CONFLICT (problem_id, day) DO UPDATE \
             SET occurrences = problem_days.occurrences + excluded.occurrences",
            super::values_list(backend, chunk.len(), 3)
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (problem, day, n) in chunk {
            query = query.bind((*problem).to_owned()).bind(*day).bind(*n);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn software_is_the_last_boot_of_the_log() {
        let log = r#"[
            {"kind":"runtime","component_id":"rt","name":"sevenfold","version":"0.1.0","digest":"00"},
            {"kind":"application","component_id":"a","name":"thermostat","version":"1.0.0","digest":"01"},
            {"kind":"runtime","component_id":"rt","name":"sevenfold","version":"0.2.0","digest":"02"},
            {"kind":"application","component_id":"b","name":"logger","version":"2.0.0","digest":"03"},
            {"kind":"application","component_id":"a","name":"thermostat","version":"1.1.0","digest":"04"}
        ]"#;
        assert_eq!(
            measured_software(log),
            Some((
                Some("0.2.0".to_owned()),
                "logger 2.0.0, thermostat 1.1.0".to_owned()
            ))
        );
        assert_eq!(measured_software("[]"), None);
        assert_eq!(measured_software("not json"), None);
    }

    #[test]
    fn every_state_has_a_name_that_parses_back() {
        for state in FleetState::ALL {
            assert_eq!(FleetState::parse(state.as_str()), Some(state));
        }
        assert_eq!(FleetState::parse("bogus"), None);
    }
}
