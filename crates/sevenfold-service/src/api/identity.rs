//! Device identity for operators: attestation history, revocation, the
//! tenant CA (download, proof of possession, rotation) and runtime releases.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use sevenfold_core::api::{
    AddRuntimeRelease, AttestationInfo, DeviceInfo, ProofOfPossession, ProofOfPossessionRequest,
    RuntimeReleaseInfo, TenantCaInfo,
};

use super::devices::{device_id, device_info};
use super::error::ApiError;
use super::extract::JsonBody;
use super::{timestamp, AppState};
use crate::auth::{Access, Operator};
use crate::store::{AuditOutcome, RuntimeRelease, TenantCaRecord};
use crate::tenant_ca;

fn ca_error(e: tenant_ca::TenantCaError) -> ApiError {
    match e {
        tenant_ca::TenantCaError::Store(s) => s.into(),
        other => ApiError::Internal(other.to_string()),
    }
}

fn ca_info(r: &TenantCaRecord) -> TenantCaInfo {
    let pem = sevenfold_pki::CaCertificate::from_der(&r.cert_der)
        .map(|c| c.to_pem())
        .unwrap_or_default();
    TenantCaInfo {
        generation: r.generation,
        fingerprint: r.fingerprint.clone(),
        not_after: timestamp(r.not_after),
        certificate_pem: pem,
    }
}

fn release_info(r: &RuntimeRelease) -> RuntimeReleaseInfo {
    RuntimeReleaseInfo {
        digest: r.digest.clone(),
        version: r.version.clone(),
        added_at: timestamp(r.added_at),
        added_by: r.added_by.clone(),
        revoked_at: r.revoked_at.map(timestamp),
    }
}

/// Paging of attestation history.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HistoryQuery {
    limit: Option<u32>,
}

/// A device's attestation verdicts, newest first.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/devices/{device}/attestations", tag = "devices",
    params(("limit" = Option<u32>, Query, description = "how many, 1 to 1000 (default 20)")),
    responses((status = 200, body = [AttestationInfo])))]
pub(crate) async fn attestations(
    State(state): State<AppState>,
    operator: Operator,
    Path((tenant, device)): Path<(String, String)>,
    Query(query): Query<HistoryQuery>,
) -> Result<Json<Vec<AttestationInfo>>, ApiError> {
    operator
        .authorize(&state, &tenant, Access::Read, "device.attestation", &device)
        .await?;
    let id = device_id(&device)?;
    state.store.device(&tenant, &id).await?;
    let records = state
        .store
        .list_attestations(&tenant, &id, query.limit.unwrap_or(20))
        .await?;
    Ok(Json(
        records
            .into_iter()
            .map(|r| AttestationInfo {
                at: timestamp(r.at),
                verdict: if r.passed { "pass" } else { "fail" }.to_owned(),
                reasons: serde_json::from_str(&r.reasons).unwrap_or_default(),
                measurements: serde_json::from_str(&r.measurements).unwrap_or_default(),
                certificate_serial: r.certificate_serial,
                certificate_not_after: r.certificate_not_after.map(timestamp),
                source: r.source,
            })
            .collect(),
    ))
}

/// Revokes a device: from now on it fails attestation and its certificate is refused.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/devices/{device}/revoke", tag = "devices", responses((status = 200, body = DeviceInfo)))]
pub(crate) async fn revoke_device(
    State(state): State<AppState>,
    operator: Operator,
    Path((tenant, device)): Path<(String, String)>,
) -> Result<Json<DeviceInfo>, ApiError> {
    operator
        .authorize(
            &state,
            &tenant,
            Access::Administer,
            "device.revoke",
            &device,
        )
        .await?;
    let id = device_id(&device)?;
    let revoked = state.store.revoke_device(&tenant, &id).await?;
    state
        .audit(
            &operator,
            Some(&tenant),
            "device.revoke",
            &id,
            AuditOutcome::Ok,
            serde_json::json!({}),
        )
        .await?;
    Ok(Json(device_info(&revoked)))
}

/// The tenant's device CA generations (newest first); third parties trust these.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/ca", tag = "tenants", responses((status = 200, body = [TenantCaInfo])))]
pub(crate) async fn tenant_ca_list(
    State(state): State<AppState>,
    operator: Operator,
    Path(tenant): Path<String>,
) -> Result<Json<Vec<TenantCaInfo>>, ApiError> {
    operator
        .authorize(&state, &tenant, Access::Read, "tenant.ca.download", &tenant)
        .await?;
    let cas = state
        .tenant_cas
        .published(&state.store, &tenant)
        .await
        .map_err(ca_error)?;
    let now = crate::store::now_millis();
    Ok(Json(
        cas.iter()
            .filter(|c| c.not_after > now)
            .map(ca_info)
            .collect(),
    ))
}

/// Signs a verification code with the tenant CA (proof of possession).
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/ca/proof-of-possession", tag = "tenants",
    request_body = ProofOfPossessionRequest, responses((status = 200, body = ProofOfPossession)))]
pub(crate) async fn proof_of_possession(
    State(state): State<AppState>,
    operator: Operator,
    Path(tenant): Path<String>,
    JsonBody(body): JsonBody<ProofOfPossessionRequest>,
) -> Result<Json<ProofOfPossession>, ApiError> {
    operator
        .authorize(
            &state,
            &tenant,
            Access::Administer,
            "tenant.ca.prove",
            &tenant,
        )
        .await?;
    let ca = state
        .tenant_cas
        .issuing(&state.store, &tenant)
        .await
        .map_err(ca_error)?;
    let pem = ca
        .proof_of_possession(&body.verification_code)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    state
        .audit(
            &operator,
            Some(&tenant),
            "tenant.ca.prove",
            &tenant,
            AuditOutcome::Ok,
            serde_json::json!({"code": body.verification_code}),
        )
        .await?;
    Ok(Json(ProofOfPossession {
        certificate_pem: pem,
    }))
}

/// Creates a successor CA; both are published until the old one expires.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/ca/rotate", tag = "tenants", responses((status = 201, body = TenantCaInfo)))]
pub(crate) async fn rotate_ca(
    State(state): State<AppState>,
    operator: Operator,
    Path(tenant): Path<String>,
) -> Result<(StatusCode, Json<TenantCaInfo>), ApiError> {
    operator
        .authorize(
            &state,
            &tenant,
            Access::Administer,
            "tenant.ca.rotate",
            &tenant,
        )
        .await?;
    let record = state
        .tenant_cas
        .rotate(&state.store, &tenant)
        .await
        .map_err(ca_error)?;
    state
        .audit(
            &operator,
            Some(&tenant),
            "tenant.ca.rotate",
            &tenant,
            AuditOutcome::Ok,
            serde_json::json!({"generation": record.generation, "fingerprint": record.fingerprint}),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(ca_info(&record))))
}

/// Runtime builds the service accepts.
#[utoipa::path(get, path = "/api/v1/runtime-releases", tag = "runtime", responses((status = 200, body = [RuntimeReleaseInfo])))]
pub(crate) async fn list_releases(
    State(state): State<AppState>,
    _operator: Operator,
) -> Result<Json<Vec<RuntimeReleaseInfo>>, ApiError> {
    Ok(Json(
        state
            .store
            .list_runtime_releases()
            .await?
            .iter()
            .map(release_info)
            .collect(),
    ))
}

/// Adds a runtime build (server administrators).
#[utoipa::path(post, path = "/api/v1/runtime-releases", tag = "runtime", request_body = AddRuntimeRelease, responses((status = 201, body = RuntimeReleaseInfo)))]
pub(crate) async fn add_release(
    State(state): State<AppState>,
    operator: Operator,
    JsonBody(body): JsonBody<AddRuntimeRelease>,
) -> Result<(StatusCode, Json<RuntimeReleaseInfo>), ApiError> {
    operator
        .require_server_admin(&state, "runtime.release.add", &body.digest)
        .await?;
    let digest = sevenfold_rot::Digest::from_hex(&body.digest)
        .ok_or_else(|| {
            ApiError::BadRequest(
                "digest must be 64 hex characters (sha256sum of the runtime executable)".into(),
            )
        })?
        .to_hex();
    let release = state
        .store
        .add_runtime_release(&digest, &body.version, operator.name())
        .await?;
    state
        .audit(
            &operator,
            None,
            "runtime.release.add",
            &digest,
            AuditOutcome::Ok,
            serde_json::json!({"version": body.version}),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(release_info(&release))))
}

/// Revokes a runtime build: devices running it fail attestation (server administrators).
#[utoipa::path(post, path = "/api/v1/runtime-releases/{digest}/revoke", tag = "runtime", responses((status = 200, body = RuntimeReleaseInfo)))]
pub(crate) async fn revoke_release(
    State(state): State<AppState>,
    operator: Operator,
    Path(digest): Path<String>,
) -> Result<Json<RuntimeReleaseInfo>, ApiError> {
    operator
        .require_server_admin(&state, "runtime.release.revoke", &digest)
        .await?;
    let release = state
        .store
        .revoke_runtime_release(&digest.to_ascii_lowercase())
        .await?;
    state
        .audit(
            &operator,
            None,
            "runtime.release.revoke",
            &release.digest,
            AuditOutcome::Ok,
            serde_json::json!({}),
        )
        .await?;
    Ok(Json(release_info(&release)))
}
