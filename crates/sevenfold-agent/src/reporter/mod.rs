//! Getting journaled records to the Security Service, and the heartbeat.
//!
//! [`upload_pending`] sends what the journal holds beyond its cursor in
//! batches over mutual TLS (`POST /device/v1/reports`) and moves the cursor
//! after each batch the service acknowledged. Delivery is at least once from
//! the device's side (a crash between the answer and the cursor write sends
//! a batch again) and exactly once in the service's store, which keys
//! records by device and record ID. [`heartbeat`] journals the hourly
//! liveness record. The loops that call both live in `agent.rs`.

mod config;
pub(crate) mod metrics;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use sevenfold_core::report::{
    FailureKind, FailureRecord, RecordId, ReportAck, ReportBatch, MAX_BATCH_LEN, MAX_BATCH_RECORDS,
    REPORTS_PATH,
};

pub(crate) use config::ReportingFile;
pub use config::{ReportingConfig, DEFAULT_HEARTBEAT, DEFAULT_UPLOAD_INTERVAL, MAX_JOURNAL_BYTES};

use crate::app_failures::CrashDetails;
use crate::attest::AttestError;
use crate::boot::BootReport;
use crate::client::ServiceClient;
use crate::journal::{Journal, JournalError, RUNTIME_COMPONENT};
use crate::{AgentError, StateDir};

/// Room left in a batch body for the JSON around the records.
const BATCH_OVERHEAD: usize = 4 * 1024;

/// What one upload round did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UploadOutcome {
    /// Batches the service acknowledged.
    pub batches: u32,
    /// Records in them.
    pub records: u32,
    /// Of those, records the service already had (a resend).
    pub duplicates: u32,
    /// Records the service refused as invalid, set aside (and reported as
    /// dropped) so they cannot hold up the ones behind them.
    pub refused: u32,
}

/// Whether `status` says the service will never take this content: sending
/// it again cannot help (unlike an outage, a rate limit, or an expired or
/// revoked certificate, which a later round may get past).
fn refuses_content(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE | StatusCode::UNPROCESSABLE_ENTITY
    )
}

/// Marks a record the service refused as delivered, so the ones behind it
/// go, and journals a `records-dropped` notice with the service's reason,
/// so the loss itself reaches the operator. A refused notice of this kind
/// is only logged (a notice about a notice could loop).
fn set_aside(
    journal: &Journal,
    seq: u64,
    record: &FailureRecord,
    error: &AttestError,
) -> Result<(), AttestError> {
    tracing::error!(record = %record.id, kind = %record.kind, error = %error,
        "the service refused a failure record; it is set aside");
    journal
        .acknowledge(seq)
        .map_err(|e| AttestError::Local(AgentError::Journal(e)))?;
    if record.kind == FailureKind::RecordsDropped && record.details.contains_key(REFUSED_DETAIL) {
        return Ok(());
    }
    let notice = Journal::new_record(
        FailureKind::RecordsDropped,
        RUNTIME_COMPONENT,
        env!("CARGO_PKG_VERSION"),
        &format!("the service refused a {} record: {error}", record.kind),
    )
    .and_then(|notice| {
        let notice = notice
            .with_detail("count", 1)
            .with_detail(REFUSED_DETAIL, &record.id);
        journal.record(&notice)
    });
    notice.map_err(|e| AttestError::Local(AgentError::Journal(e)))?;
    Ok(())
}

/// Detail key of a `records-dropped` notice for a refused record: its ID.
const REFUSED_DETAIL: &str = "refused_record";

/// Uploads every pending record, batch by batch, with the device
/// certificate, and takes the group's crash-details choice from the answers. Without a certificate there is nothing to do yet
/// (`Ok` with zero batches): the next attestation pass starts a new round.
pub async fn upload_pending(
    state: &StateDir,
    journal: &Journal,
    crash_details: &CrashDetails,
) -> Result<UploadOutcome, AttestError> {
    let mut outcome = UploadOutcome::default();
    if journal.pending(1, usize::MAX).is_empty() {
        return Ok(outcome);
    }
    let chain = match state.certificate_pem() {
        Ok(chain) => chain,
        Err(AgentError::NoCertificate(_)) => return Ok(outcome),
        Err(e) => return Err(e.into()),
    };
    let key = state.tls_key()?;
    let client = ServiceClient::with_identity(state, &chain, &key)?;
    // After the service refuses a batch's content, records go one by one
    // until the one it refuses is found and set aside.
    let mut one_by_one = false;
    loop {
        let most = if one_by_one { 1 } else { MAX_BATCH_RECORDS };
        let batch = journal.pending(most, MAX_BATCH_LEN - BATCH_OVERHEAD);
        let Some(last_seq) = batch.last().map(|(seq, _)| *seq) else {
            return Ok(outcome);
        };
        let body = ReportBatch {
            records: batch.into_iter().map(|(_, r)| r).collect(),
        };
        let count = body.records.len() as u32;
        let reply = client
            .send(Method::POST, &REPORTS_PATH, Some(&body))
            .await?;
        if refuses_content(reply.status) {
            let error = reply.into_error();
            match body.records.as_slice() {
                [record] => {
                    set_aside(journal, last_seq, record, &error)?;
                    outcome.refused += 1;
                    one_by_one = false;
                }
                _ => one_by_one = true,
            }
            continue;
        }
        if reply.status != StatusCode::OK {
            return Err(reply.into_error());
        }
        let ack: ReportAck = serde_json::from_slice(&reply.body)
            .map_err(|e| AttestError::Protocol(format!("reports answer: {e}")))?;
        if ack.stored.saturating_add(ack.duplicates) != count {
            return Err(AttestError::Protocol(format!(
                "the service acknowledged {} of {count} records",
                ack.stored.saturating_add(ack.duplicates)
            )));
        }
        journal
            .acknowledge(last_seq)
            .map_err(|e| AttestError::Local(AgentError::Journal(e)))?;
        crash_details.set(ack.crash_details)?;
        outcome.batches += 1;
        outcome.records += count;
        outcome.duplicates += ack.duplicates;
        tracing::info!(
            records = count,
            duplicates = ack.duplicates,
            "failure reports delivered"
        );
    }
}

/// Journals a heartbeat: uptime, resident memory, journal state and the
/// versions this boot admitted. (Per-app restart counts join it when the
/// compartment supervisor reports them.)
pub fn heartbeat(
    journal: &Journal,
    uptime: Duration,
    boot: &BootReport,
) -> Result<RecordId, JournalError> {
    let stats = journal.stats();
    let mut record = Journal::new_record(
        FailureKind::Heartbeat,
        RUNTIME_COMPONENT,
        env!("CARGO_PKG_VERSION"),
        "heartbeat",
    )?
    .with_detail("uptime_secs", uptime.as_secs())
    .with_detail("journal_bytes", stats.bytes)
    .with_detail("journal_pending", stats.pending)
    .with_detail("journal_dropped", stats.dropped);
    if let Some(rss) = resident_memory_kib() {
        record = record.with_detail("memory_rss_kib", rss);
    }
    for image in &boot.verified_images {
        record = record.with_detail(&format!("version.{}", image.name), &image.version);
    }
    journal.record(&record)
}

/// `VmRSS` of this process from `/proc/self/status`, in KiB.
fn resident_memory_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
