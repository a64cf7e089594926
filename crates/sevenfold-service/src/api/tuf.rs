//! A device group's TUF repository: its root (roles, keys, thresholds) and
//! the rotation of its root and targets keys (administrators).

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use tough::schema::{RoleType, Root, Signed};

use super::error::ApiError;
use super::extract::JsonBody;
use super::AppState;
use crate::auth::{Access, Operator};
use crate::store::AuditOutcome;
use crate::updates::repo::ensure_repository;
use crate::updates::rotate::{rotate, Rotation};
use crate::updates::Expiry;

/// `POST …/device-groups/{group}/tuf/rotate`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RotateKeys {
    /// "root" or "targets".
    role: String,
    /// How many new keys (default 1).
    #[serde(default)]
    keys: Option<usize>,
    /// How many of them must sign (default 1).
    #[serde(default)]
    threshold: Option<usize>,
}

/// One role of the root.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct RoleInfo {
    role: String,
    key_ids: Vec<String>,
    threshold: u64,
}

/// The group repository's current root.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct TufInfo {
    group_id: String,
    root_version: u64,
    root_expires: String,
    consistent_snapshot: bool,
    roles: Vec<RoleInfo>,
}

/// The group repository's root: roles, key IDs, thresholds.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/device-groups/{group}/tuf", tag = "tuf",
    responses((status = 200, body = TufInfo)))]
pub(crate) async fn show_tuf(
    State(state): State<AppState>,
    operator: Operator,
    Path((tenant, group)): Path<(String, String)>,
) -> Result<Json<TufInfo>, ApiError> {
    operator
        .authorize(&state, &tenant, Access::Read, "tuf.show", &group)
        .await?;
    let group = state.store.group(&tenant, &group).await?;
    let expiry = Expiry::with_timestamp_secs(state.config.tuf_timestamp_ttl_secs);
    ensure_repository(&state.store, &state.wrap, &tenant, &group.id, &expiry).await?;
    let record = state
        .store
        .latest_tuf_metadata(&group.id, "root")
        .await?
        .ok_or_else(|| ApiError::NotFound("the group has no TUF root".into()))?;
    let root: Signed<Root> = serde_json::from_slice(&record.body)
        .map_err(|e| ApiError::Internal(format!("stored root: {e}")))?;
    let mut roles: Vec<RoleInfo> = [
        (RoleType::Root, "root"),
        (RoleType::Targets, "targets"),
        (RoleType::Snapshot, "snapshot"),
        (RoleType::Timestamp, "timestamp"),
    ]
    .into_iter()
    .filter_map(|(t, name)| {
        root.signed.roles.get(&t).map(|r| RoleInfo {
            role: name.to_owned(),
            key_ids: r.keyids.iter().map(|k| hex::encode(k.as_ref())).collect(),
            threshold: r.threshold.get(),
        })
    })
    .collect();
    roles.sort_by_key(|r| {
        ["root", "targets", "snapshot", "timestamp"]
            .iter()
            .position(|n| *n == r.role)
    });
    Ok(Json(TufInfo {
        group_id: group.id,
        root_version: root.signed.version.get(),
        root_expires: root.signed.expires.to_string(),
        consistent_snapshot: root.signed.consistent_snapshot,
        roles,
    }))
}

/// Rotates the group repository's root or targets keys (administrators).
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/device-groups/{group}/tuf/rotate", tag = "tuf",
    request_body = RotateKeys, responses((status = 200, body = Rotation)))]
pub(crate) async fn rotate_keys(
    State(state): State<AppState>,
    operator: Operator,
    Path((tenant, group)): Path<(String, String)>,
    JsonBody(body): JsonBody<RotateKeys>,
) -> Result<Json<Rotation>, ApiError> {
    operator
        .authorize(&state, &tenant, Access::Administer, "tuf.rotate", &group)
        .await?;
    let group = state.store.group(&tenant, &group).await?;
    let expiry = Expiry::with_timestamp_secs(state.config.tuf_timestamp_ttl_secs);
    let keys = body.keys.unwrap_or(1);
    let threshold = body.threshold.unwrap_or(1);
    let rotation = rotate(
        &state.store,
        &state.wrap,
        &tenant,
        &group.id,
        &body.role,
        keys,
        threshold,
        &expiry,
    )
    .await?;
    state
        .audit(
            &operator,
            Some(&tenant),
            "tuf.rotate",
            &group.id,
            AuditOutcome::Ok,
            serde_json::json!({"role": rotation.role, "root_version": rotation.root_version,
                "key_ids": rotation.key_ids, "threshold": rotation.threshold}),
        )
        .await?;
    Ok(Json(rotation))
}
