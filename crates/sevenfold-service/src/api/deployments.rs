//! Deployments: publishing images to a device group's TUF repository, with
//! phased rollouts (share, raise, automatic halt, resume, cancel).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use sevenfold_core::update::{CreateDeployment, DeploymentInfo, UpdateDeployment};

use super::error::ApiError;
use super::extract::JsonBody;
use super::AppState;
use crate::auth::{Access, Operator};
use crate::store::{AuditOutcome, DeploymentImage, DeploymentStatus, NewDeployment, UpdatePolicy};
use crate::updates::{delta, repo, rollout, Expiry};

/// Most images in one deployment.
const MAX_IMAGES: usize = 64;

fn expiry(state: &AppState) -> Expiry {
    Expiry::with_timestamp_secs(state.config.tuf_timestamp_ttl_secs)
}

fn share(name: &str, value: Option<u8>, min: u8) -> Result<u8, ApiError> {
    let value = value.unwrap_or(100);
    if value < min || value > 100 {
        return Err(ApiError::BadRequest(format!(
            "{name} must be between {min} and 100, not {value}"
        )));
    }
    Ok(value)
}

/// Publishes images to a device group (contributors and administrators).
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/deployments", tag = "deployments", request_body = CreateDeployment,
    responses((status = 201, body = DeploymentInfo), (status = 409, body = sevenfold_core::api::Problem)))]
pub(crate) async fn create_deployment(
    State(state): State<AppState>,
    operator: Operator,
    Path(tenant): Path<String>,
    JsonBody(body): JsonBody<CreateDeployment>,
) -> Result<(StatusCode, Json<DeploymentInfo>), ApiError> {
    operator
        .authorize(
            &state,
            &tenant,
            Access::Write,
            "deployment.create",
            &body.group,
        )
        .await?;
    let max_failure_percent = share("max_failure_percent", body.max_failure_percent, 0)?;
    if body.images.is_empty() || body.images.len() > MAX_IMAGES {
        return Err(ApiError::BadRequest(format!(
            "a deployment carries 1 to {MAX_IMAGES} images"
        )));
    }
    let group = state.store.group(&tenant, &body.group).await?;
    // Without a share, the group's own rollout percentage applies.
    let percent = share(
        "percent",
        body.percent.or(Some(group.rollout_percent.max(1))),
        1,
    )?;
    let mut images: Vec<DeploymentImage> = Vec::new();
    for id in &body.images {
        let image = state.store.image(&tenant, id).await?;
        let is_app = image.image_type.to_ascii_lowercase().starts_with("app");
        if is_app && group.update_policy == UpdatePolicy::NoAppUpdates {
            let err = ApiError::Conflict(format!(
                "device group {} takes no application updates (update policy no-app-updates); \
                 change it with `sevenfold device-group update --update-policy accept-all` first",
                group.name
            ));
            state
                .audit(
                    &operator,
                    Some(&tenant),
                    "deployment.create",
                    &group.id,
                    AuditOutcome::Denied,
                    serde_json::json!({"reason": err.to_string()}),
                )
                .await?;
            return Err(err);
        }
        if images
            .iter()
            .any(|i| i.image.component_id == image.component_id)
        {
            return Err(ApiError::BadRequest(format!(
                "two images of component {}; a deployment carries one version per component",
                image.component_id
            )));
        }
        let (file_sha256, file_length) = delta::file_hash(&state.blobs, &image.blob_key)
            .await
            .map_err(|e| ApiError::Internal(format!("image blob {}: {e}", image.blob_key)))?;
        images.push(DeploymentImage {
            image,
            file_sha256,
            file_length,
        });
    }
    let deployment = state
        .store
        .create_deployment(
            &tenant,
            NewDeployment {
                group_id: group.id.clone(),
                images,
                percent,
                max_failure_percent,
                created_by: operator.name().to_owned(),
            },
        )
        .await?;
    let targets_version = repo::publish(
        &state.store,
        &state.wrap,
        &tenant,
        &group.id,
        &expiry(&state),
    )
    .await?;
    state
        .audit(
            &operator,
            Some(&tenant),
            "deployment.create",
            &deployment.id,
            AuditOutcome::Ok,
            serde_json::json!({"group": group.id, "images": body.images, "percent": percent,
                "max_failure_percent": max_failure_percent, "targets_version": targets_version.audit()}),
        )
        .await?;
    // Devices get full images now; the deltas follow in the background,
    // signed into a later targets version (`updates::delta`).
    let created = rollout::summarize(&state.store, &deployment, true).await?;
    delta::spawn(&state, &tenant, &deployment.id);
    Ok((StatusCode::CREATED, Json(created)))
}

#[derive(Debug, Deserialize)]
pub(crate) struct DeploymentQuery {
    group: Option<String>,
}

/// The tenant's deployments, newest first.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/deployments", tag = "deployments",
    params(("group" = Option<String>, Query, description = "only this device group")),
    responses((status = 200, body = [DeploymentInfo])))]
pub(crate) async fn list_deployments(
    State(state): State<AppState>,
    operator: Operator,
    Path(tenant): Path<String>,
    Query(query): Query<DeploymentQuery>,
) -> Result<Json<Vec<DeploymentInfo>>, ApiError> {
    operator
        .authorize(&state, &tenant, Access::Read, "deployment.list", &tenant)
        .await?;
    let mut out = Vec::new();
    for d in state
        .store
        .list_deployments(&tenant, query.group.as_deref())
        .await?
    {
        out.push(rollout::summarize(&state.store, &d, false).await?);
    }
    Ok(Json(out))
}

/// One deployment with per-device progress.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/deployments/{deployment}", tag = "deployments",
    responses((status = 200, body = DeploymentInfo)))]
pub(crate) async fn show_deployment(
    State(state): State<AppState>,
    operator: Operator,
    Path((tenant, id)): Path<(String, String)>,
) -> Result<Json<DeploymentInfo>, ApiError> {
    operator
        .authorize(&state, &tenant, Access::Read, "deployment.show", &id)
        .await?;
    let deployment = state.store.deployment(&tenant, &id).await?;
    Ok(Json(
        rollout::summarize(&state.store, &deployment, true).await?,
    ))
}

/// Raises a rollout's share of the group.
#[utoipa::path(patch, path = "/api/v1/tenants/{tenant}/deployments/{deployment}", tag = "deployments",
    request_body = UpdateDeployment, responses((status = 200, body = DeploymentInfo)))]
pub(crate) async fn update_deployment(
    State(state): State<AppState>,
    operator: Operator,
    Path((tenant, id)): Path<(String, String)>,
    JsonBody(body): JsonBody<UpdateDeployment>,
) -> Result<Json<DeploymentInfo>, ApiError> {
    operator
        .authorize(&state, &tenant, Access::Write, "deployment.update", &id)
        .await?;
    let current = state.store.deployment(&tenant, &id).await?;
    let percent = share("percent", Some(body.percent), current.percent)?;
    change(
        &state,
        &operator,
        &tenant,
        &id,
        "deployment.update",
        current.status,
        percent,
        current.halt_reason.as_deref(),
    )
    .await
}

/// Resumes a halted rollout.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/deployments/{deployment}/resume", tag = "deployments",
    responses((status = 200, body = DeploymentInfo)))]
pub(crate) async fn resume_deployment(
    State(state): State<AppState>,
    operator: Operator,
    Path((tenant, id)): Path<(String, String)>,
) -> Result<Json<DeploymentInfo>, ApiError> {
    operator
        .authorize(&state, &tenant, Access::Write, "deployment.resume", &id)
        .await?;
    let current = state.store.deployment(&tenant, &id).await?;
    if current.status != DeploymentStatus::Halted {
        return Err(ApiError::Conflict(format!(
            "deployment {id} is {}; only a halted deployment can be resumed",
            current.status.as_str()
        )));
    }
    change(
        &state,
        &operator,
        &tenant,
        &id,
        "deployment.resume",
        DeploymentStatus::Active,
        current.percent,
        None,
    )
    .await
}

/// Cancels a deployment: its images are withdrawn from the group's targets.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/deployments/{deployment}/cancel", tag = "deployments",
    responses((status = 200, body = DeploymentInfo)))]
pub(crate) async fn cancel_deployment(
    State(state): State<AppState>,
    operator: Operator,
    Path((tenant, id)): Path<(String, String)>,
) -> Result<Json<DeploymentInfo>, ApiError> {
    operator
        .authorize(&state, &tenant, Access::Write, "deployment.cancel", &id)
        .await?;
    let current = state.store.deployment(&tenant, &id).await?;
    if matches!(
        current.status,
        DeploymentStatus::Cancelled | DeploymentStatus::Superseded
    ) {
        return Err(ApiError::Conflict(format!(
            "deployment {id} is already {}",
            current.status.as_str()
        )));
    }
    change(
        &state,
        &operator,
        &tenant,
        &id,
        "deployment.cancel",
        DeploymentStatus::Cancelled,
        current.percent,
        current.halt_reason.as_deref(),
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn change(
    state: &AppState,
    operator: &Operator,
    tenant: &str,
    id: &str,
    action: &str,
    status: DeploymentStatus,
    percent: u8,
    halt_reason: Option<&str>,
) -> Result<Json<DeploymentInfo>, ApiError> {
    let deployment = state
        .store
        .update_deployment(tenant, id, status, percent, halt_reason)
        .await?;
    let targets_version = repo::publish(
        &state.store,
        &state.wrap,
        tenant,
        &deployment.group_id,
        &expiry(state),
    )
    .await?;
    state
        .audit(operator, Some(tenant), action, id, AuditOutcome::Ok,
            serde_json::json!({"status": status.as_str(), "percent": percent, "targets_version": targets_version.audit()}))
        .await?;
    Ok(Json(
        rollout::summarize(&state.store, &deployment, true).await?,
    ))
}
