//! Failure reports: what a device journals and uploads
//! (`POST /device/v1/reports`), and the operator's view of them.
//!
//! A [`FailureRecord`] is one thing that went wrong on a device (an app exit,
//! a trap, a denied capability, a failed boot check, a failed attestation, a
//! runtime panic …) or one hourly heartbeat. The device journals each record
//! before it acknowledges it and uploads records in a [`ReportBatch`]; the
//! record's [`RecordId`] makes delivery idempotent, so a batch resent after a
//! cut connection is stored once.
//!
//! [`FailureRecord::encode`] and [`FailureRecord::read`] are the pair the
//! journal uses on disk; [`ReportBatch::read`] is what the service runs on a
//! request body. Both check every size bound ([`MAX_RECORD_LEN`],
//! [`MAX_BATCH_RECORDS`] …) and every field, and return a typed
//! [`ReportError`] on bad input, never panic.

mod api;
mod record;
#[cfg(test)]
mod tests;

pub use api::{
    write_csv_record, CreateWebhook, ErrorReportPage, ErrorReportRow, FailureSettings, Occurrence,
    ProblemDetail, ProblemInfo, ProblemPage, ResolveProblem, WebhookCreated, WebhookInfo,
    ERROR_REPORT_EXPORT, WEBHOOK_EVENTS,
};
pub use record::{
    FailureKind, FailureRecord, RecordId, ReportAck, ReportBatch, ReportError, MAX_BATCH_LEN,
    MAX_BATCH_RECORDS, MAX_DETAILS, MAX_DETAIL_KEY_LEN, MAX_DETAIL_VALUE_LEN, MAX_FIELD_LEN,
    MAX_FRAMES, MAX_FRAME_LEN, MAX_REASON_LEN, MAX_RECORD_LEN, OUTPUT_TAIL_DETAIL, REPORTS_PATH,
    SIGNATURE_FRAMES,
};
