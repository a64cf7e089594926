//! Operator API bodies for failure reports, problems and webhooks
//! (`/api/v1/tenants/{tenant}/…`). Same conventions as [`crate::api`]:
//! stable field names, requests refuse unknown fields, RFC 3339 timestamps.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The events a webhook can subscribe to.
pub const WEBHOOK_EVENTS: [&str; 4] = [
    "new-problem",
    "regression",
    "attestation-failed",
    "rollout-halted",
];

/// One row of `error-report`: a stored failure record (or a failed
/// attestation the service recorded), newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorReportRow {
    /// When it happened (device clock for device records).
    pub at: String,
    /// When the service received it.
    pub received_at: String,
    /// Device ID.
    pub device_id: String,
    /// Device group ID, if the device is in one.
    pub group_id: Option<String>,
    /// Component ID (`runtime`, `attestation`, or an app's ID).
    pub component_id: String,
    /// Component version.
    pub component_version: String,
    /// Failure kind (`app-exit`, `boot-check-failed`, …).
    pub kind: String,
    /// Reason.
    pub reason: String,
    /// The problem it was grouped into.
    pub problem_id: Option<String>,
    /// The record's ID (from the device, or the attestation's ID).
    pub record_id: String,
}

impl ErrorReportRow {
    /// The CSV form's header: the column names, in order.
    pub const CSV_HEADER: &'static str = "at,received_at,device_id,group_id,component_id,\
        component_version,kind,reason,problem_id,record_id\r\n";

    /// Appends this row to `out` as one CSV record (RFC 4180: fields with a
    /// comma, quote or line break quoted, lines ending in CRLF), in the
    /// order of [`ErrorReportRow::CSV_HEADER`].
    pub fn write_csv(&self, out: &mut String) {
        write_csv_record(
            out,
            &[
                self.at.as_str(),
                &self.received_at,
                &self.device_id,
                self.group_id.as_deref().unwrap_or(""),
                &self.component_id,
                &self.component_version,
                &self.kind,
                &self.reason,
                self.problem_id.as_deref().unwrap_or(""),
                &self.record_id,
            ],
        );
    }
}

/// Appends one CSV record to `out` (RFC 4180: a field with a comma, quote
/// or line break is quoted, quotes doubled; the line ends in CRLF). The one
/// encoding of [`ErrorReportRow::write_csv`] and of the server's export,
/// which writes rows it has not copied into an [`ErrorReportRow`].
pub fn write_csv_record(out: &mut String, fields: &[&str]) {
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        if field.contains([',', '"', '\n', '\r']) {
            out.push('"');
            out.push_str(&field.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(field);
        }
    }
    out.push_str("\r\n");
}

/// Path of the whole error report as one streamed download, below the
/// tenant (`GET …/error-report/export?days=&group=&format=csv|ndjson`).
pub const ERROR_REPORT_EXPORT: &str = "error-report/export";

/// A page of the error report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorReportPage {
    /// Rows, newest first.
    pub rows: Vec<ErrorReportRow>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A problem: failures grouped by signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProblemInfo {
    /// Problem ID.
    pub id: String,
    /// Hex SHA-256 of the normalised signature.
    pub signature: String,
    /// Component ID.
    pub component_id: String,
    /// Failure kind.
    pub kind: String,
    /// The normalised reason and top frames that define the group.
    pub title: String,
    /// `open`, `resolved` or `regression` (reopened in a newer version).
    pub status: String,
    /// First occurrence.
    pub first_seen: String,
    /// Latest occurrence.
    pub last_seen: String,
    /// Occurrences.
    pub count: u64,
    /// Distinct devices affected.
    pub devices: u64,
    /// Newest component version seen.
    pub last_version: String,
}

/// A problem with its affected devices and versions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProblemDetail {
    /// The summary.
    #[serde(flatten)]
    pub problem: ProblemInfo,
    /// Affected device IDs (at most 1000).
    pub device_ids: Vec<String>,
    /// Component versions seen.
    pub versions: Vec<String>,
    /// When it was resolved, and in which version.
    pub resolved_at: Option<String>,
    /// The version it was resolved in (a newer one reopens it).
    pub resolved_version: Option<String>,
    /// Its latest occurrence in full, while retention keeps it.
    #[serde(default)]
    pub latest: Option<Occurrence>,
}

/// One occurrence of a problem, as the device recorded it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Occurrence {
    /// The device.
    pub device_id: String,
    /// The record's ID.
    pub record_id: String,
    /// When it happened (device clock).
    pub at: String,
    /// The component's version.
    pub component_version: String,
    /// The reason.
    pub reason: String,
    /// Backtrace frames, innermost first: the top few that identify it, or
    /// the whole backtrace when the device's group has crash details on.
    pub frames: Vec<String>,
    /// Further facts; `output_tail` is the app's last output, present only
    /// with crash details on.
    pub details: std::collections::BTreeMap<String, String>,
}

/// A page of problems.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProblemPage {
    /// Problems, most recently seen first.
    pub problems: Vec<ProblemInfo>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// `POST /tenants/{tenant}/problems/{problem}/resolve`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveProblem {
    /// The version that fixes it; a later occurrence in a newer version
    /// reopens the problem as a regression. Default: the newest version seen.
    #[serde(default)]
    pub fixed_in: Option<String>,
}

/// `POST /tenants/{tenant}/webhooks`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// Where to POST notifications (`https://…`, or `http://` to loopback).
    pub url: String,
    /// Events to send (see [`WEBHOOK_EVENTS`]).
    pub events: Vec<String>,
}

/// A webhook.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WebhookInfo {
    /// Webhook ID.
    pub id: String,
    /// Target URL.
    pub url: String,
    /// Subscribed events.
    pub events: Vec<String>,
    /// When it was added.
    pub created_at: String,
}

/// A new webhook and its signing secret, shown once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WebhookCreated {
    /// The webhook.
    #[serde(flatten)]
    pub webhook: WebhookInfo,
    /// HMAC-SHA256 key (hex) for `X-Sevenfold-Signature`; store it now, it is
    /// not shown again.
    pub secret: String,
}

/// `GET|PUT /tenants/{tenant}/failure-settings`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailureSettings {
    /// Days failure reports are kept (1 to 3650; default 14).
    pub retention_days: u32,
}
