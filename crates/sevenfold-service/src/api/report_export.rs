//! The whole error report as one streamed download
//! (`GET …/error-report/export`): CSV or NDJSON, encoded as the store reads
//! it (`Store::report_export`), never held whole in memory.

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sevenfold_core::report::{write_csv_record, ErrorReportRow};

use super::error::ApiError;
use super::failures::report_days;
use super::{timestamp, AppState};
use crate::auth::{Access, Operator};
use crate::failures::sync_attestation_failures;
use crate::store::{now_millis, ReportRowRef, DAY_MS};

/// Query of the error report export.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExportQuery {
    days: Option<u32>,
    group: Option<String>,
    format: Option<String>,
}

/// The whole error report in one download, streamed as the database reads
/// it (no paging, no row cap): CSV with a header row, or NDJSON (one row
/// object per line). Newest first. A failure part-way aborts the transfer,
/// so a cut-short report never looks complete.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/error-report/export", tag = "failures",
    params(
        ("days" = Option<u32>, Query, description = "how far back, 1 to 3650 (default 14)"),
        ("group" = Option<String>, Query, description = "only devices in this device group (ID)"),
        ("format" = Option<String>, Query, description = "csv (default) or ndjson"),
    ),
    responses((status = 200, description = "text/csv or application/x-ndjson, streamed")))]
pub(crate) async fn export_report(
    State(state): State<AppState>,
    operator: Operator,
    Path(tenant): Path<String>,
    Query(query): Query<ExportQuery>,
) -> Result<Response, ApiError> {
    operator
        .authorize(&state, &tenant, Access::Read, "error-report", &tenant)
        .await?;
    let days = report_days(query.days)?;
    let csv = match query.format.as_deref() {
        None | Some("csv") => true,
        Some("ndjson") => false,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "format must be csv or ndjson, not {other:?}"
            )))
        }
    };
    let now = now_millis();
    sync_attestation_failures(&state.store, now).await?;
    let since = now - i64::from(days) * DAY_MS;
    let group = query.group.as_deref();
    let mut encoder = ReportEncoder::default();
    let buffers = if csv {
        state
            .store
            .report_export(&tenant, since, group, move |row, out| encoder.csv(row, out))
    } else {
        state
            .store
            .report_export(&tenant, since, group, move |row, out| {
                encoder.ndjson(row, out)
            })
    };
    let header = csv.then(|| Bytes::from_static(ErrorReportRow::CSV_HEADER.as_bytes()));
    let body =
        futures_util::stream::unfold((buffers, header), move |(mut buffers, header)| async move {
            if let Some(header) = header {
                return Some((Ok(header), (buffers, None)));
            }
            match buffers.recv().await? {
                Ok(text) => Some((Ok(Bytes::from(text)), (buffers, None))),
                Err(e) => {
                    tracing::error!(error = %e, "error report export failed part-way");
                    Some((Err(e), (buffers, None)))
                }
            }
        });
    let content_type = if csv {
        "text/csv; charset=utf-8"
    } else {
        "application/x-ndjson"
    };
    Ok((
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(body),
    )
        .into_response())
}

/// Encodes error report rows as the export sends them: each exactly as the
/// paged report's [`ErrorReportRow`] would be written, its timestamps
/// formatted through a per-day cache (a report's rows come in time order).
/// Public for the benchmark, which times the store's export with it.
#[derive(Debug, Default)]
pub struct ReportEncoder {
    timestamps: Timestamps,
    at: String,
    received_at: String,
}

impl ReportEncoder {
    fn format_times(&mut self, row: &ReportRowRef<'_>) {
        self.at.clear();
        self.timestamps.write(row.at, &mut self.at);
        self.received_at.clear();
        self.timestamps
            .write(row.received_at, &mut self.received_at);
    }

    /// Appends one CSV record, in [`ErrorReportRow::CSV_HEADER`]'s order.
    pub fn csv(&mut self, row: &ReportRowRef<'_>, out: &mut String) {
        self.format_times(row);
        write_csv_record(
            out,
            &[
                &self.at,
                &self.received_at,
                row.device_id,
                row.group_id.unwrap_or(""),
                row.component_id,
                row.component_version,
                row.kind,
                row.reason,
                row.problem_id.unwrap_or(""),
                row.record_id,
            ],
        );
    }

    /// Appends one NDJSON line: an [`ErrorReportRow`] object.
    pub fn ndjson(&mut self, row: &ReportRowRef<'_>, out: &mut String) {
        self.format_times(row);
        let row = ErrorReportRow {
            at: self.at.clone(),
            received_at: self.received_at.clone(),
            device_id: row.device_id.to_owned(),
            group_id: row.group_id.map(str::to_owned),
            component_id: row.component_id.to_owned(),
            component_version: row.component_version.to_owned(),
            kind: row.kind.to_owned(),
            reason: row.reason.to_owned(),
            problem_id: row.problem_id.map(str::to_owned),
            record_id: row.record_id.to_owned(),
        };
        // A row of strings always serialises.
        out.push_str(&serde_json::to_string(&row).unwrap_or_default());
        out.push('\n');
    }
}

/// [`timestamp`]'s RFC 3339 text for a run of timestamps, byte for byte,
/// formatting each day's date once: a report's rows come in time order,
/// so nearly every row shares the day of the row before it, and the time
/// of day is plain arithmetic.
#[derive(Debug, Default)]
struct Timestamps {
    /// The last day seen and its `YYYY-MM-DDT` (`None`: a day [`timestamp`]
    /// writes some other way, e.g. past year 9999; then it formats each).
    day: Option<(i64, Option<String>)>,
}

impl Timestamps {
    fn write(&mut self, ms: i64, out: &mut String) {
        let day = ms.div_euclid(DAY_MS);
        let prefix = match &self.day {
            Some((cached, prefix)) if *cached == day => prefix,
            _ => {
                let midnight = day.checked_mul(DAY_MS).map(timestamp);
                let prefix = midnight.as_deref().and_then(|m| {
                    m.strip_suffix("00:00:00Z")
                        .filter(|p| p.len() == "YYYY-MM-DDT".len())
                        .map(str::to_owned)
                });
                &self.day.insert((day, prefix)).1
            }
        };
        let Some(prefix) = prefix else {
            out.push_str(&timestamp(ms));
            return;
        };
        let of_day = ms.rem_euclid(DAY_MS);
        let (seconds, millis) = (of_day / 1000, of_day % 1000);
        out.push_str(prefix);
        push_two_digits(out, seconds / 3600);
        out.push(':');
        push_two_digits(out, seconds / 60 % 60);
        out.push(':');
        push_two_digits(out, seconds % 60);
        if millis != 0 {
            // As many digits as the value needs (RFC 3339 allows any).
            let digits = [millis / 100, millis / 10 % 10, millis % 10];
            let used = if millis % 10 != 0 {
                3
            } else if millis % 100 != 0 {
                2
            } else {
                1
            };
            out.push('.');
            for digit in digits.iter().take(used) {
                out.push(digit_char(*digit));
            }
        }
        out.push('Z');
    }
}

fn push_two_digits(out: &mut String, n: i64) {
    out.push(digit_char(n / 10));
    out.push(digit_char(n % 10));
}

fn digit_char(n: i64) -> char {
    char::from_digit(u32::try_from(n).unwrap_or(0), 10).unwrap_or('0')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_match_the_api_s_format_byte_for_byte() {
        let mut cached = Timestamps::default();
        let mut values: Vec<i64> = vec![
            0,
            1,
            10,
            100,
            999,
            1000,
            DAY_MS - 1,
            DAY_MS,
            -1,
            -DAY_MS - 1,
            1_764_460_800_123,
            1_764_460_800_120,
            1_764_460_800_100,
            253_402_300_799_999, // 9999-12-31T23:59:59.999Z
            253_402_300_800_000, // year 10000: not RFC 3339
            i64::MAX,
            i64::MIN,
        ];
        // A run in time order, as a report reads, across day boundaries.
        let mut t = 1_764_460_000_000i64;
        for _ in 0..20_000 {
            t += 7_777;
            values.push(t);
        }
        for ms in values {
            let mut out = String::new();
            cached.write(ms, &mut out);
            assert_eq!(out, timestamp(ms), "{ms}");
        }
    }

    #[test]
    fn csv_rows_are_the_paged_report_s_rows() {
        let row = ReportRowRef {
            device_id: "d",
            record_id: "r",
            group_id: None,
            at: 1_764_460_800_123,
            received_at: 1_764_460_800_000,
            component_id: "app",
            component_version: "1.0",
            kind: "app-exit",
            reason: "trap \"x\",\nat 0x1",
            problem_id: Some("p"),
        };
        let mut encoder = ReportEncoder::default();
        let mut csv = String::new();
        encoder.csv(&row, &mut csv);
        let mut ndjson = String::new();
        encoder.ndjson(&row, &mut ndjson);
        let owned: ErrorReportRow = serde_json::from_str(ndjson.trim_end()).unwrap();
        let mut expected = String::new();
        owned.write_csv(&mut expected);
        assert_eq!(csv, expected);
        assert_eq!(owned.at, timestamp(row.at));
        assert_eq!(owned.received_at, timestamp(row.received_at));
        assert_eq!(owned.group_id, None);
    }
}
