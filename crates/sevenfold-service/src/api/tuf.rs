//! A device group's TUF repository: its root (roles, keys, thresholds),
//! the rotation of its root and targets keys by the service (while it holds
//! them), and what the tenant's key holders sign offline: a new root
//! (administrators) and new targets (contributors).

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use tough::schema::RoleType;

use super::error::ApiError;
use super::extract::JsonBody;
use super::AppState;
use crate::auth::{Access, Operator};
use crate::store::AuditOutcome;
use crate::updates::offline::{roles_of, RoleSummary, TargetsDraft};
use crate::updates::repo::ensure_repository;
use crate::updates::repo::{current_signed_root, service_holds};
use crate::updates::rotate::{rotate, Rotation};
use crate::updates::submit::{self, RootAccepted, TargetsAccepted};
use crate::updates::{Expiry, UpdateError};

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

/// The group repository's current root.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct TufInfo {
    group_id: String,
    root_version: u64,
    root_expires: String,
    consistent_snapshot: bool,
    /// Whether the service holds a threshold of the root keys (false once
    /// the tenant took them offline with `tuf root submit`).
    service_holds_root_keys: bool,
    /// Whether the service signs targets (false once the tenant holds the
    /// targets keys: changes then wait for `tuf targets submit`).
    service_signs_targets: bool,
    roles: Vec<RoleSummary>,
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
    let root = current_signed_root(&state.store, &group.id).await?;
    let holds = |role| service_holds(&state.store, &tenant, &group.id, &root.signed, role);
    let (service_holds_root_keys, service_signs_targets) = (
        holds(RoleType::Root).await?,
        holds(RoleType::Targets).await?,
    );
    Ok(Json(TufInfo {
        group_id: group.id,
        root_version: root.signed.version.get(),
        root_expires: root.signed.expires.to_string(),
        consistent_snapshot: root.signed.consistent_snapshot,
        service_holds_root_keys,
        service_signs_targets,
        roles: roles_of(&root.signed),
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

/// The group repository's current root, signed, as devices get it: what
/// `sevenfold tuf root draft` starts the next root from.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/device-groups/{group}/tuf/root", tag = "tuf",
    responses((status = 200, description = "the signed root.json", body = Object)))]
pub(crate) async fn current_root(
    State(state): State<AppState>,
    operator: Operator,
    Path((tenant, group)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    operator
        .authorize(&state, &tenant, Access::Read, "tuf.root.show", &group)
        .await?;
    let group = state.store.group(&tenant, &group).await?;
    let expiry = Expiry::with_timestamp_secs(state.config.tuf_timestamp_ttl_secs);
    ensure_repository(&state.store, &state.wrap, &tenant, &group.id, &expiry).await?;
    let root = current_signed_root(&state.store, &group.id).await?;
    Ok(Json(serde_json::to_value(root).map_err(|e| {
        ApiError::Internal(format!("stored root: {e}"))
    })?))
}

/// Records a submission's outcome in the audit log; a refusal with its reason.
async fn audit_submission<T: Serialize>(
    state: &AppState,
    operator: &Operator,
    tenant: &str,
    action: &str,
    group: &str,
    outcome: &Result<T, UpdateError>,
) -> Result<(), ApiError> {
    let (result, detail) = match outcome {
        Ok(accepted) => (
            AuditOutcome::Ok,
            serde_json::to_value(accepted).unwrap_or_default(),
        ),
        Err(UpdateError::Refused(reason)) => {
            (AuditOutcome::Denied, serde_json::json!({"reason": reason}))
        }
        Err(_) => return Ok(()),
    };
    state
        .audit(operator, Some(tenant), action, group, result, detail)
        .await
}

/// Makes a root the tenant's key holders signed offline the group's root
/// (administrators). Refused with the reason, and nothing changed, unless
/// it is the next version, well formed, keeps the service's snapshot and
/// timestamp keys, and carries a threshold of signatures by the current
/// root's root keys and by its own (TUF 1.0 §5.3.4).
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/device-groups/{group}/tuf/root", tag = "tuf",
    request_body(content = Object, description = "the signed root.json"),
    responses((status = 200, body = RootAccepted), (status = 422, description = "refused, with the reason")))]
pub(crate) async fn submit_root(
    State(state): State<AppState>,
    operator: Operator,
    Path((tenant, group)): Path<(String, String)>,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> Result<Json<RootAccepted>, ApiError> {
    operator
        .authorize(
            &state,
            &tenant,
            Access::Administer,
            "tuf.root.submit",
            &group,
        )
        .await?;
    let group = state.store.group(&tenant, &group).await?;
    let expiry = Expiry::with_timestamp_secs(state.config.tuf_timestamp_ttl_secs);
    let outcome =
        submit::submit_root(&state.store, &state.wrap, &tenant, &group.id, body, &expiry).await;
    audit_submission(
        &state,
        &operator,
        &tenant,
        "tuf.root.submit",
        &group.id,
        &outcome,
    )
    .await?;
    Ok(Json(outcome?))
}

/// The group's next targets, unsigned, for the tenant's targets key
/// holders (once the tenant holds the targets keys). Answers once the
/// deltas of the group's deployments are made, so the draft carries them.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/device-groups/{group}/tuf/targets/draft", tag = "tuf",
    responses((status = 200, description = "a targets draft file", body = Object)))]
pub(crate) async fn draft_targets(
    State(state): State<AppState>,
    operator: Operator,
    Path((tenant, group)): Path<(String, String)>,
) -> Result<Json<TargetsDraft>, ApiError> {
    operator
        .authorize(&state, &tenant, Access::Read, "tuf.targets.draft", &group)
        .await?;
    let group = state.store.group(&tenant, &group).await?;
    // What the holders sign cannot be added to later: the deltas of the
    // group's deployments are made first (waiting for, or making, them).
    crate::updates::delta::settle_group(&state, &tenant, &group.id).await?;
    let expiry = Expiry::with_timestamp_secs(state.config.tuf_timestamp_ttl_secs);
    Ok(Json(
        submit::targets_draft(&state.store, &state.wrap, &tenant, &group.id, &expiry).await?,
    ))
}

/// Publishes targets the tenant's key holders signed offline, with
/// snapshot and timestamp signed online (contributors). Refused with the
/// reason unless they are the next version, unexpired, signed by a
/// threshold of the root's targets keys, and list what the group's
/// deployments are now.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/device-groups/{group}/tuf/targets", tag = "tuf",
    request_body(content = Object, description = "the signed targets.json"),
    responses((status = 200, body = TargetsAccepted), (status = 422, description = "refused, with the reason")))]
pub(crate) async fn submit_targets(
    State(state): State<AppState>,
    operator: Operator,
    Path((tenant, group)): Path<(String, String)>,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> Result<Json<TargetsAccepted>, ApiError> {
    operator
        .authorize(&state, &tenant, Access::Write, "tuf.targets.submit", &group)
        .await?;
    let group = state.store.group(&tenant, &group).await?;
    let expiry = Expiry::with_timestamp_secs(state.config.tuf_timestamp_ttl_secs);
    let outcome =
        submit::submit_targets(&state.store, &state.wrap, &tenant, &group.id, body, &expiry).await;
    audit_submission(
        &state,
        &operator,
        &tenant,
        "tuf.targets.submit",
        &group.id,
        &outcome,
    )
    .await?;
    Ok(Json(outcome?))
}
