//! Manufacturer CAs, devices (claim, assign, mode) and transfers between tenants.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use sevenfold_core::api::{
    AssignDevice, ClaimDevice, DeviceInfo, DevicePage, ManufacturerCaInfo, ManufacturerKind,
    RequestTransfer, SetDeviceMode, TransferInfo, TrustManufacturer,
};
use sevenfold_pki::CaCertificate;

use super::error::ApiError;
use super::extract::JsonBody;
use super::{timestamp, AppState};
use crate::auth::{Access, Operator};
use crate::store::{AuditOutcome, CaKind, Device, DeviceMode, NewDevice, Page, Transfer};

pub(crate) fn device_info(d: &Device) -> DeviceInfo {
    DeviceInfo {
        id: d.id.clone(),
        group_id: d.group_id.clone(),
        mode: d.mode.as_str().to_owned(),
        claimed_at: timestamp(d.claimed_at),
        revoked_at: d.revoked_at.map(timestamp),
        manufacturer: d.manufacturer_fingerprint.clone(),
    }
}

fn transfer_info(t: &Transfer) -> TransferInfo {
    TransferInfo {
        id: t.id.clone(),
        device_id: t.device_id.clone(),
        from_tenant: t.from_tenant.clone(),
        to_tenant: t.to_tenant.clone(),
        status: t.status.as_str().to_owned(),
        requested_by: t.requested_by.clone(),
        requested_at: timestamp(t.requested_at),
        decided_by: t.decided_by.clone(),
        decided_at: t.decided_at.map(timestamp),
    }
}

/// Checks a device ID's form: 64 lower-case hex characters.
pub(crate) fn device_id(value: &str) -> Result<String, ApiError> {
    let id = value.to_ascii_lowercase();
    if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(id)
    } else {
        Err(ApiError::BadRequest(format!(
            "{value:?} is not a device ID (64 hex characters; `sevenfold agent init` prints it)"
        )))
    }
}

/// Trusted manufacturer CAs.
#[utoipa::path(get, path = "/api/v1/manufacturer-cas", tag = "manufacturers", responses((status = 200, body = [ManufacturerCaInfo])))]
pub(crate) async fn list_manufacturers(
    State(state): State<AppState>,
    _operator: Operator,
) -> Result<Json<Vec<ManufacturerCaInfo>>, ApiError> {
    let cas = state.store.list_manufacturer_cas().await?;
    Ok(Json(
        cas.iter()
            .map(|c| ManufacturerCaInfo {
                fingerprint: c.fingerprint.clone(),
                subject: c.subject.clone(),
                kind: wire_kind(c.kind),
                added_at: timestamp(c.added_at),
            })
            .collect(),
    ))
}

/// Trusts a manufacturer CA: of kind `endorsement`, devices it endorses can be
/// claimed; of kind `tpm`, EK certificates it signs pass credential activation.
/// Server administrators only.
#[utoipa::path(post, path = "/api/v1/manufacturer-cas", tag = "manufacturers", request_body = TrustManufacturer, responses((status = 201, body = ManufacturerCaInfo)))]
pub(crate) async fn trust_manufacturer(
    State(state): State<AppState>,
    operator: Operator,
    JsonBody(body): JsonBody<TrustManufacturer>,
) -> Result<(StatusCode, Json<ManufacturerCaInfo>), ApiError> {
    operator
        .require_server_admin(&state, "manufacturer.trust", "manufacturer-ca")
        .await?;
    let ca = CaCertificate::parse(body.certificate_pem.as_bytes())
        .map_err(|e| ApiError::Unprocessable(format!("not a usable manufacturer CA: {e}")))?;
    let kind = match body.kind {
        ManufacturerKind::Endorsement => CaKind::Endorsement,
        ManufacturerKind::Tpm => CaKind::Tpm,
    };
    let stored = state
        .store
        .add_manufacturer_ca(ca.fingerprint(), ca.subject(), ca.der(), kind)
        .await?;
    state.manufacturers.changed();
    state
        .audit(
            &operator,
            None,
            "manufacturer.trust",
            &stored.fingerprint,
            AuditOutcome::Ok,
            serde_json::json!({"subject": stored.subject, "kind": kind.as_str()}),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(ManufacturerCaInfo {
            fingerprint: stored.fingerprint,
            subject: stored.subject,
            kind: body.kind,
            added_at: timestamp(stored.added_at),
        }),
    ))
}

fn wire_kind(kind: CaKind) -> ManufacturerKind {
    match kind {
        CaKind::Endorsement => ManufacturerKind::Endorsement,
        CaKind::Tpm => ManufacturerKind::Tpm,
    }
}

/// Paging and filtering of device lists.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeviceQuery {
    after: Option<String>,
    limit: Option<u32>,
    group: Option<String>,
}

/// The tenant's devices, by ID, a page at a time.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/devices", tag = "devices",
    params(("after" = Option<String>, Query, description = "last device ID of the previous page"),
           ("limit" = Option<u32>, Query, description = "page size, 1 to 1000 (default 100)"),
           ("group" = Option<String>, Query, description = "only this device group")),
    responses((status = 200, body = DevicePage)))]
pub(crate) async fn list_devices(
    State(state): State<AppState>,
    operator: Operator,
    Path(tenant): Path<String>,
    Query(query): Query<DeviceQuery>,
) -> Result<Json<DevicePage>, ApiError> {
    operator
        .authorize(&state, &tenant, Access::Read, "device.list", &tenant)
        .await?;
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let page = Page {
        after: query.after.clone(),
        limit,
    };
    let devices = state
        .store
        .list_devices(&tenant, query.group.as_deref(), &page)
        .await?;
    let total = state
        .store
        .count_devices(&tenant, query.group.as_deref())
        .await?;
    let next = if devices.len() == limit as usize {
        devices.last().map(|d| d.id.clone())
    } else {
        None
    };
    Ok(Json(DevicePage {
        devices: devices.iter().map(device_info).collect(),
        next,
        total,
    }))
}

/// Claims a device for the tenant. Its endorsement must chain to a trusted
/// manufacturer CA and name this device; a device can be claimed only once.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/devices", tag = "devices", request_body = ClaimDevice,
    responses((status = 201, body = DeviceInfo), (status = 409, body = sevenfold_core::api::Problem), (status = 422, body = sevenfold_core::api::Problem)))]
pub(crate) async fn claim_device(
    State(state): State<AppState>,
    operator: Operator,
    Path(tenant): Path<String>,
    JsonBody(body): JsonBody<ClaimDevice>,
) -> Result<(StatusCode, Json<DeviceInfo>), ApiError> {
    operator
        .authorize(
            &state,
            &tenant,
            Access::Write,
            "device.claim",
            &body.device_id,
        )
        .await?;
    let id = device_id(&body.device_id)?;
    let trusted = crate::attestation::trusted_manufacturers(&state.store).await?;
    let endorsement = match sevenfold_pki::verify_endorsement(
        body.endorsement_pem.as_bytes(),
        &trusted,
        crate::store::now_millis() / 1000,
    ) {
        Ok(e) => e,
        Err(e) => {
            let err = ApiError::Unprocessable(format!("the device's endorsement was refused: {e}"));
            state
                .audit(
                    &operator,
                    Some(&tenant),
                    "device.claim",
                    &id,
                    AuditOutcome::Denied,
                    serde_json::json!({"reason": err.to_string()}),
                )
                .await?;
            return Err(err);
        }
    };
    if endorsement.device_id().to_string() != id {
        let err = ApiError::Unprocessable(format!(
            "the endorsement is for device {}, not {id}",
            endorsement.device_id()
        ));
        state
            .audit(
                &operator,
                Some(&tenant),
                "device.claim",
                &id,
                AuditOutcome::Denied,
                serde_json::json!({"reason": err.to_string()}),
            )
            .await?;
        return Err(err);
    }
    let new = NewDevice {
        id: id.clone(),
        public_key_der: endorsement.public_key().spki_der().to_vec(),
        endorsement_der: endorsement.certificate_der().to_vec(),
        manufacturer_fingerprint: endorsement.manufacturer_fingerprint().to_owned(),
    };
    let device = match state.store.claim_device(&tenant, new).await {
        Ok(d) => d,
        Err(e) => {
            let err = ApiError::from(e);
            state
                .audit(
                    &operator,
                    Some(&tenant),
                    "device.claim",
                    &id,
                    AuditOutcome::Failed,
                    serde_json::json!({"reason": err.to_string()}),
                )
                .await?;
            return Err(err);
        }
    };
    state
        .audit(
            &operator,
            Some(&tenant),
            "device.claim",
            &id,
            AuditOutcome::Ok,
            serde_json::json!({"manufacturer": device.manufacturer_fingerprint}),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(device_info(&device))))
}

/// One device.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/devices/{device}", tag = "devices", responses((status = 200, body = DeviceInfo)))]
pub(crate) async fn show_device(
    State(state): State<AppState>,
    operator: Operator,
    Path((tenant, device)): Path<(String, String)>,
) -> Result<Json<DeviceInfo>, ApiError> {
    operator
        .authorize(&state, &tenant, Access::Read, "device.show", &device)
        .await?;
    Ok(Json(device_info(
        &state.store.device(&tenant, &device_id(&device)?).await?,
    )))
}

/// Moves a device into a device group.
#[utoipa::path(put, path = "/api/v1/tenants/{tenant}/devices/{device}/group", tag = "devices", request_body = AssignDevice, responses((status = 200, body = DeviceInfo)))]
pub(crate) async fn assign_device(
    State(state): State<AppState>,
    operator: Operator,
    Path((tenant, device)): Path<(String, String)>,
    JsonBody(body): JsonBody<AssignDevice>,
) -> Result<Json<DeviceInfo>, ApiError> {
    operator
        .authorize(&state, &tenant, Access::Write, "device.assign", &device)
        .await?;
    let id = device_id(&device)?;
    state
        .store
        .assign_device(&tenant, &id, &body.group_id)
        .await?;
    state
        .audit(
            &operator,
            Some(&tenant),
            "device.assign",
            &id,
            AuditOutcome::Ok,
            serde_json::json!({"group": body.group_id}),
        )
        .await?;
    Ok(Json(device_info(&state.store.device(&tenant, &id).await?)))
}

/// Enables development mode (sideloading) or returns a device to field mode.
#[utoipa::path(put, path = "/api/v1/tenants/{tenant}/devices/{device}/mode", tag = "devices", request_body = SetDeviceMode, responses((status = 200, body = DeviceInfo)))]
pub(crate) async fn set_mode(
    State(state): State<AppState>,
    operator: Operator,
    Path((tenant, device)): Path<(String, String)>,
    JsonBody(body): JsonBody<SetDeviceMode>,
) -> Result<Json<DeviceInfo>, ApiError> {
    let mode = DeviceMode::parse(&body.mode).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "unknown mode {:?}: use development or field",
            body.mode
        ))
    })?;
    let action = match mode {
        DeviceMode::Development => "device.enable-development",
        DeviceMode::Field => "device.enable-field-test",
    };
    operator
        .authorize(&state, &tenant, Access::Write, action, &device)
        .await?;
    let id = device_id(&device)?;
    state.store.set_device_mode(&tenant, &id, mode).await?;
    state
        .audit(
            &operator,
            Some(&tenant),
            action,
            &id,
            AuditOutcome::Ok,
            serde_json::json!({}),
        )
        .await?;
    Ok(Json(device_info(&state.store.device(&tenant, &id).await?)))
}

/// Transfers this tenant is part of, either side.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/transfers", tag = "transfers", responses((status = 200, body = [TransferInfo])))]
pub(crate) async fn list_transfers(
    State(state): State<AppState>,
    operator: Operator,
    Path(tenant): Path<String>,
) -> Result<Json<Vec<TransferInfo>>, ApiError> {
    operator
        .authorize(&state, &tenant, Access::Read, "transfer.list", &tenant)
        .await?;
    Ok(Json(
        state
            .store
            .list_transfers(&tenant)
            .await?
            .iter()
            .map(transfer_info)
            .collect(),
    ))
}

/// Offers one of this tenant's devices to another tenant (administrators).
/// The device moves only when the destination's administrator accepts.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/transfers", tag = "transfers", request_body = RequestTransfer, responses((status = 201, body = TransferInfo)))]
pub(crate) async fn request_transfer(
    State(state): State<AppState>,
    operator: Operator,
    Path(tenant): Path<String>,
    JsonBody(body): JsonBody<RequestTransfer>,
) -> Result<(StatusCode, Json<TransferInfo>), ApiError> {
    operator
        .authorize(
            &state,
            &tenant,
            Access::Administer,
            "transfer.request",
            &body.device_id,
        )
        .await?;
    let id = device_id(&body.device_id)?;
    if body.to_tenant == tenant {
        return Err(ApiError::BadRequest(
            "the device already belongs to this tenant".into(),
        ));
    }
    // The destination must exist; its name is not revealed.
    state
        .store
        .tenant(&body.to_tenant)
        .await
        .map_err(|_| ApiError::NotFound(format!("no tenant {}", body.to_tenant)))?;
    let transfer = state
        .store
        .request_transfer(&tenant, &id, &body.to_tenant, operator.name())
        .await?;
    state
        .audit(
            &operator,
            Some(&tenant),
            "transfer.request",
            &transfer.id,
            AuditOutcome::Ok,
            serde_json::json!({"device": id, "to": body.to_tenant}),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(transfer_info(&transfer))))
}

/// Accepts a transfer offered to this tenant (administrators of the destination).
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/transfers/{transfer}/accept", tag = "transfers", responses((status = 200, body = TransferInfo)))]
pub(crate) async fn accept_transfer(
    State(state): State<AppState>,
    operator: Operator,
    Path((tenant, transfer)): Path<(String, String)>,
) -> Result<Json<TransferInfo>, ApiError> {
    operator
        .authorize(
            &state,
            &tenant,
            Access::Administer,
            "transfer.accept",
            &transfer,
        )
        .await?;
    let done = state
        .store
        .accept_transfer(&tenant, &transfer, operator.name())
        .await?;
    state
        .audit(
            &operator,
            Some(&tenant),
            "transfer.accept",
            &transfer,
            AuditOutcome::Ok,
            serde_json::json!({"device": done.device_id, "from": done.from_tenant}),
        )
        .await?;
    Ok(Json(transfer_info(&done)))
}

/// Cancels a pending transfer (administrators of either side).
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/transfers/{transfer}/cancel", tag = "transfers", responses((status = 200, body = TransferInfo)))]
pub(crate) async fn cancel_transfer(
    State(state): State<AppState>,
    operator: Operator,
    Path((tenant, transfer)): Path<(String, String)>,
) -> Result<Json<TransferInfo>, ApiError> {
    operator
        .authorize(
            &state,
            &tenant,
            Access::Administer,
            "transfer.cancel",
            &transfer,
        )
        .await?;
    let done = state
        .store
        .cancel_transfer(&tenant, &transfer, operator.name())
        .await?;
    state
        .audit(
            &operator,
            Some(&tenant),
            "transfer.cancel",
            &transfer,
            AuditOutcome::Ok,
            serde_json::json!({"device": done.device_id}),
        )
        .await?;
    Ok(Json(transfer_info(&done)))
}
