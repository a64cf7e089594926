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
    FailureKind, RecordId, ReportAck, ReportBatch, MAX_BATCH_LEN, MAX_BATCH_RECORDS, REPORTS_PATH,
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
}

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
    loop {
        let batch = journal.pending(MAX_BATCH_RECORDS, MAX_BATCH_LEN - BATCH_OVERHEAD);
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
