//! Failure reporting on the service: records uploaded by devices and failed
//! attestations the verifier recorded, grouped into problems by signature
//! (`signature.rs`), and webhooks that announce new problems, regressions
//! and failed attestations (`webhook.rs`).
//!
//! Ingest is idempotent: the store keys each record by device and record ID,
//! so a batch resent after a cut connection counts once. Failed attestations
//! join the same view without touching the verifier: housekeeping (and every
//! operator query) copies new `fail` verdicts from `attestations` into the
//! failure reports, keyed by the attestation's ID, so they too count once.

pub(crate) mod signature;
pub(crate) mod webhook;

use axum::extract::State;
use axum::Json;
use sevenfold_core::report::{FailureKind, FailureRecord, ReportAck, ReportBatch};

use crate::api::error::ApiError;
use crate::api::extract::JsonBody;
use crate::api::AppState;
use crate::device_api::AuthenticatedDevice;
use crate::store::{now_millis, IngestOutcome, NewReport, RateLimit, Store, StoreError};

/// `POST /device/v1/reports` (mutual TLS): stores a batch of the device's
/// journal. Every record in the answer's count is stored; resent records
/// count as duplicates and change nothing.
pub(crate) async fn upload(
    State(state): State<AppState>,
    device: AuthenticatedDevice,
    JsonBody(batch): JsonBody<ReportBatch>,
) -> Result<Json<ReportAck>, ApiError> {
    // A device's uploads are bounded (counters in the database, so across
    // replicas): a compromised device cannot flood the store.
    let now = now_millis();
    let limit = RateLimit {
        bucket: format!("reports-device:{}", device.device_id),
        max: UPLOADS_PER_WINDOW,
        window_ms: UPLOAD_WINDOW_MS,
    };
    match state.store.hit_rate_limit(&limit).await {
        Ok(()) => {}
        Err(StoreError::RateLimited(_)) => {
            metrics::counter!("sevenfold_device_rate_limited_total").increment(1);
            return Err(ApiError::TooManyRequests(
                "too many report uploads from this device; retry after the current minute".into(),
            ));
        }
        Err(e) => return Err(e.into()),
    }
    batch
        .validate()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    // The verifier's own records of failed attestations are the service's
    // to write: a device cannot add to (or pose as) them.
    if let Some(record) = batch
        .records
        .iter()
        .find(|r| r.component_id == ATTESTATION_COMPONENT)
    {
        return Err(ApiError::BadRequest(format!(
            "record {}: component {ATTESTATION_COMPONENT:?} is reserved for the service's \
             records of failed attestations",
            record.id
        )));
    }
    // Crash details are the group's choice, and the service enforces it: a
    // device that has not heard the group turned them off yet sends them
    // once more, and they are not kept.
    let crash_details = state
        .store
        .crash_details(&device.tenant_id, &device.device_id)
        .await?;
    let mut records = batch.records;
    if !crash_details {
        records = records
            .into_iter()
            .map(FailureRecord::without_crash_details)
            .collect();
    }
    let outcome = ingest(
        &state.store,
        &device.tenant_id,
        &device.device_id,
        &records,
        now,
    )
    .await?;
    Ok(Json(ReportAck {
        stored: outcome.stored,
        duplicates: outcome.duplicates,
        crash_details,
    }))
}

/// Rate-limit window of report uploads.
const UPLOAD_WINDOW_MS: i64 = 60_000;
/// Upload batches per device per window (100 records each: a full 4 MiB
/// journal drains in a few minutes).
const UPLOADS_PER_WINDOW: i64 = 300;

/// Component ID of failures the service itself recorded (attestations).
pub(crate) const ATTESTATION_COMPONENT: &str = "attestation";
/// How far back the attestation copy looks.
const ATTESTATION_LOOKBACK_MS: i64 = 14 * 86_400_000;

/// The stored form of a device's record.
pub(crate) fn new_report(device_id: &str, record: &FailureRecord) -> NewReport {
    NewReport {
        device_id: device_id.to_owned(),
        record_id: record.id.to_string(),
        at: record.at,
        component_id: record.component_id.clone(),
        component_version: record.component_version.clone(),
        kind: record.kind.as_str().to_owned(),
        reason: record.reason.clone(),
        frames: serde_json::to_string(&record.frames).unwrap_or_else(|_| "[]".into()),
        details: serde_json::to_string(&record.details).unwrap_or_else(|_| "{}".into()),
        problem: record.kind.is_failure().then(|| {
            signature::problem_key(
                &record.component_id,
                record.kind,
                &record.reason,
                &record.frames,
            )
        }),
    }
}

/// Stores a device's batch and counts it in the metrics.
pub(crate) async fn ingest(
    store: &Store,
    tenant_id: &str,
    device_id: &str,
    records: &[FailureRecord],
    now: i64,
) -> Result<IngestOutcome, StoreError> {
    let reports: Vec<NewReport> = records.iter().map(|r| new_report(device_id, r)).collect();
    let outcome = store
        .ingest_reports(tenant_id, &reports, false, now)
        .await?;
    metrics::counter!("sevenfold_reports_received_total", "outcome" => "stored")
        .increment(u64::from(outcome.stored));
    metrics::counter!("sevenfold_reports_received_total", "outcome" => "duplicate")
        .increment(u64::from(outcome.duplicates));
    Ok(outcome)
}

/// Copies failed attestations not yet in the failure reports (bounded per
/// call). Safe on many replicas at once: the copy is keyed by the
/// attestation's ID, so a race stores it once.
pub(crate) async fn sync_attestation_failures(store: &Store, now: i64) -> Result<u32, StoreError> {
    let pending = store
        .unreported_attestation_failures(now - ATTESTATION_LOOKBACK_MS, 500)
        .await?;
    let mut stored = 0;
    for (id, device_id, tenant_id, at, reasons_json) in pending {
        let reasons: Vec<String> = serde_json::from_str(&reasons_json).unwrap_or_default();
        // One record per verdict; the first reason names the problem.
        let reason = reasons
            .first()
            .cloned()
            .unwrap_or_else(|| "attestation failed".to_owned());
        let key = signature::problem_key(
            ATTESTATION_COMPONENT,
            FailureKind::AttestationFailed,
            &reason,
            &[],
        );
        let report = NewReport {
            device_id,
            record_id: id,
            at,
            component_id: ATTESTATION_COMPONENT.to_owned(),
            component_version: String::new(),
            kind: FailureKind::AttestationFailed.as_str().to_owned(),
            reason: reasons.join("; "),
            frames: "[]".to_owned(),
            details: serde_json::json!({ "reasons": reasons }).to_string(),
            problem: Some(key),
        };
        stored += store
            .ingest_reports(&tenant_id, &[report], true, now)
            .await?
            .stored;
    }
    Ok(stored)
}

/// Interval of the background loop (webhook deliveries).
const TICK: std::time::Duration = std::time::Duration::from_secs(2);
/// Ticks between copies of failed attestations.
const SYNC_EVERY: u32 = 5;
/// Ticks between retention purges.
const PURGE_EVERY: u32 = 30;

/// The failure-reporting background work of every replica: webhook
/// deliveries, the copy of failed attestations, the retention purge and
/// the open-problems gauge. All coordination is in the database.
pub(crate) async fn background(
    store: Store,
    wrap: std::sync::Arc<sevenfold_pki::KeyWrap>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let http = webhook::client();
    let mut tick: u32 = 0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = shutdown.changed() => return,
        }
        tick = tick.wrapping_add(1);
        let now = now_millis();
        if tick % SYNC_EVERY == 1 {
            if let Err(e) = sync_attestation_failures(&store, now).await {
                tracing::warn!(error = %e, "copying failed attestations into the failure reports failed");
            }
        }
        if tick % PURGE_EVERY == 1 {
            match store.purge_failure_reports(now).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "purged failure reports past retention"),
                Err(e) => tracing::warn!(error = %e, "failure report purge failed"),
            }
            match store.count_open_problems().await {
                Ok(n) => metrics::gauge!("sevenfold_problems_open").set(n as f64),
                Err(e) => tracing::warn!(error = %e, "cannot count open problems"),
            }
        }
        if let Some(http) = &http {
            if let Err(e) = webhook::deliver_due(&store, &wrap, http).await {
                tracing::warn!(error = %e, "webhook deliveries failed");
            }
        }
    }
}
