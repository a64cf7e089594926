//! The device side of updates, behind mutual TLS or, for a device that
//! failed attestation on its software, a restricted session that fetches
//! only the refused components' targets ([`UpdateCaller`]): the device's
//! group comes from its row, read on every request by the authentication,
//! so a device only ever sees its own group's repository.
//!
//! - `GET /device/v1/tuf/metadata/{file}`: `timestamp.json`, `N.root.json`,
//!   `N.snapshot.json`, `N.targets.json` (consistent snapshots), and
//!   `root.json` / `snapshot.json` / `targets.json` (newest) for clients
//!   without consistent snapshots.
//! - `GET /device/v1/tuf/targets/{sha256}.{name}`: a package file, only if a
//!   live deployment of the group publishes it, or a delta file a live
//!   deployment publishes with a target; honours `Range: bytes=N-` so a cut
//!   download resumes. Bytes sent are counted in
//!   `sevenfold_update_bytes_served_total{kind="full"|"delta"}`.
//! - `POST /device/v1/updates/progress`: a [`ProgressReport`].

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use sevenfold_core::update::ProgressReport;
use tokio::io::AsyncSeekExt;

use crate::api::error::ApiError;
use crate::api::extract::JsonBody;
use crate::api::AppState;
use crate::device_api::AuthenticatedDevice;
use crate::remediation::UpdateCaller;
use crate::store::{ProgressState, StoreError};

/// Longest failure reason stored.
const MAX_REASON_LEN: usize = 2000;

fn group_of(device: &AuthenticatedDevice) -> Result<String, ApiError> {
    device.group_id.clone().ok_or_else(|| {
        ApiError::NotFound("the device is in no device group, so it has no updates".into())
    })
}

/// `GET /device/v1/tuf/metadata/{file}`.
pub(crate) async fn metadata(
    State(state): State<AppState>,
    caller: UpdateCaller,
    Path(file): Path<String>,
) -> Result<Response, ApiError> {
    let device = caller.device;
    let group = group_of(&device)?;
    let missing = || ApiError::NotFound(format!("no TUF metadata {file} in this group"));
    let stem = file.strip_suffix(".json").ok_or_else(missing)?;
    let (version, role) = match stem.split_once('.') {
        Some((v, role)) => (Some(v.parse::<i64>().map_err(|_| missing())?), role),
        None => (None, stem),
    };
    if !matches!(role, "root" | "targets" | "snapshot" | "timestamp")
        || (role == "timestamp" && version.is_some())
    {
        return Err(missing());
    }
    if role != "root" {
        // A group without deployments still has a repository (empty targets).
        let expiry =
            crate::updates::Expiry::with_timestamp_secs(state.config.tuf_timestamp_ttl_secs);
        if state
            .store
            .latest_tuf_metadata(&group, "timestamp")
            .await?
            .is_none()
        {
            super::repo::publish(
                &state.store,
                &state.wrap,
                &device.tenant_id,
                &group,
                &expiry,
            )
            .await?;
        }
    } else {
        let expiry =
            crate::updates::Expiry::with_timestamp_secs(state.config.tuf_timestamp_ttl_secs);
        super::repo::ensure_repository(
            &state.store,
            &state.wrap,
            &device.tenant_id,
            &group,
            &expiry,
        )
        .await?;
    }
    let record = match version {
        Some(v) => state.store.tuf_metadata(&group, role, v).await?,
        None => state.store.latest_tuf_metadata(&group, role).await?,
    }
    .ok_or_else(missing)?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        record.body,
    )
        .into_response())
}

/// `GET /device/v1/tuf/targets/{sha256}.{name}`.
pub(crate) async fn target(
    State(state): State<AppState>,
    caller: UpdateCaller,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let device = &caller.device;
    let group = group_of(device)?;
    let missing = || ApiError::NotFound(format!("no target {file} in this group"));
    let (hash, _name) = file.split_once('.').ok_or_else(missing)?;
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(missing());
    }
    let hash = hash.to_ascii_lowercase();
    let store = &state.store;
    let (blob_key, kind) = match store.live_target(&device.tenant_id, &group, &hash).await? {
        Some(image) => {
            caller.may_fetch(&image)?;
            (image.blob_key, "full")
        }
        None => {
            let (blob_key, target_sha256) = store
                .live_delta(&device.tenant_id, &group, &hash)
                .await?
                .ok_or_else(missing)?;
            if caller.restricted.is_some() {
                // A delta is what its target is, for what a session may fetch.
                let image = store
                    .live_target(&device.tenant_id, &group, &target_sha256)
                    .await?
                    .ok_or_else(missing)?;
                caller.may_fetch(&image)?;
            }
            (blob_key, "delta")
        }
    };
    let mut blob = state
        .blobs
        .open_blob(&blob_key)
        .await
        .map_err(|e| ApiError::Internal(format!("blob {blob_key}: {e}")))?;
    let length = blob
        .metadata()
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .len();
    let start = match headers.get(header::RANGE).map(|v| v.to_str()) {
        None => None,
        Some(Ok(v)) => Some(parse_range(v, length).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "unsupported Range {v:?}; use bytes=N- below {length}"
            ))
        })?),
        Some(Err(_)) => return Err(ApiError::BadRequest("unreadable Range header".into())),
    };
    let offset = start.unwrap_or(0);
    metrics::counter!("sevenfold_update_bytes_served_total", "kind" => kind)
        .increment(length - offset);
    blob.seek(std::io::SeekFrom::Start(offset))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let body = Body::from_stream(crate::blobs::BlobStore::stream(blob));
    let mut response = Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_LENGTH, length - offset);
    response = match start {
        Some(from) => response.status(StatusCode::PARTIAL_CONTENT).header(
            header::CONTENT_RANGE,
            format!("bytes {from}-{}/{length}", length.saturating_sub(1)),
        ),
        None => response.status(StatusCode::OK),
    };
    response
        .body(body)
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// `bytes=N-` with N below `length`; nothing else is supported.
fn parse_range(value: &str, length: u64) -> Option<u64> {
    let from = value.trim().strip_prefix("bytes=")?.strip_suffix('-')?;
    let from: u64 = from.parse().ok()?;
    (from < length).then_some(from)
}

/// `POST /device/v1/updates/progress`.
pub(crate) async fn progress(
    State(state): State<AppState>,
    caller: UpdateCaller,
    JsonBody(report): JsonBody<ProgressReport>,
) -> Result<StatusCode, ApiError> {
    let device = caller.device;
    let progress = ProgressState::parse(&report.state).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "state must be downloading, installed, failed or rolled-back, not {:?}",
            report.state
        ))
    })?;
    let deployment = match state
        .store
        .deployment(&device.tenant_id, &report.deployment_id)
        .await
    {
        Ok(d) => d,
        Err(StoreError::NotFound { .. }) => {
            return Err(ApiError::NotFound(format!(
                "no deployment {} for this device",
                report.deployment_id
            )))
        }
        Err(e) => return Err(e.into()),
    };
    let group = group_of(&device)?;
    if deployment.group_id != group {
        return Err(ApiError::Forbidden(
            "the deployment is not for this device's group".into(),
        ));
    }
    let reason = report.reason.as_deref().map(|r| {
        let mut r = r.to_owned();
        if r.len() > MAX_REASON_LEN {
            let mut cut = MAX_REASON_LEN;
            while !r.is_char_boundary(cut) {
                cut -= 1;
            }
            r.truncate(cut);
        }
        r
    });
    state
        .store
        .record_progress(
            &device.tenant_id,
            &deployment.id,
            &device.device_id,
            progress,
            reason.as_deref(),
        )
        .await?;
    tracing::info!(device = %device.device_id, deployment = %deployment.id, state = progress.as_str(), reason = ?reason, "update progress");
    if progress.is_failure() {
        let expiry =
            crate::updates::Expiry::with_timestamp_secs(state.config.tuf_timestamp_ttl_secs);
        super::rollout::check_halt(&state.store, &state.wrap, &deployment, &expiry).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn only_open_ended_ranges_inside_the_file() {
        assert_eq!(parse_range("bytes=0-", 10), Some(0));
        assert_eq!(parse_range("bytes=9-", 10), Some(9));
        assert_eq!(parse_range("bytes=10-", 10), None);
        assert_eq!(parse_range("bytes=1-5", 10), None);
        assert_eq!(parse_range("bytes=-5", 10), None);
        assert_eq!(parse_range("items=1-", 10), None);
    }
}
