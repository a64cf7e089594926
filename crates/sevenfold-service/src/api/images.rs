//! Signing keys and image packages.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use serde::Deserialize;
use sevenfold_core::api::{AddSigningKey, ImageInfo, ImagePage, SigningKeyInfo};
use sevenfold_core::package::{read_package, Limits, TrustedKeys, UnverifiedPackage};
use sevenfold_rot::PublicKey;

use super::error::ApiError;
use super::extract::JsonBody;
use super::tenants::check_name;
use super::{timestamp, AppState};
use crate::auth::{Access, Operator};
use crate::store::{AuditOutcome, Image, NewImage, Page, SigningKey};

fn key_info(k: &SigningKey) -> SigningKeyInfo {
    let algorithm = PublicKey::from_spki_der(&k.spki_der)
        .map(|p| p.algorithm().name().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned());
    SigningKeyInfo {
        key_id: k.key_id.clone(),
        name: k.name.clone(),
        algorithm,
        added_at: timestamp(k.added_at),
        revoked_at: k.revoked_at.map(timestamp),
    }
}

fn image_info(i: &Image) -> ImageInfo {
    ImageInfo {
        id: i.id.clone(),
        component_id: i.component_id.clone(),
        name: i.name.clone(),
        version: i.version.clone(),
        security_version: u32::try_from(i.security_version).unwrap_or(0),
        image_type: i.image_type.clone(),
        size: u64::try_from(i.size).unwrap_or(0),
        signer_key_id: i.signer_key_id.clone(),
        uploaded_at: timestamp(i.uploaded_at),
        uploaded_by: i.uploaded_by.clone(),
    }
}

/// The tenant's image signing keys.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/signing-keys", tag = "signing-keys", responses((status = 200, body = [SigningKeyInfo])))]
pub(crate) async fn list_signing_keys(
    State(state): State<AppState>,
    operator: Operator,
    Path(tenant): Path<String>,
) -> Result<Json<Vec<SigningKeyInfo>>, ApiError> {
    operator
        .authorize(&state, &tenant, Access::Read, "signing-key.list", &tenant)
        .await?;
    Ok(Json(
        state
            .store
            .list_signing_keys(&tenant)
            .await?
            .iter()
            .map(key_info)
            .collect(),
    ))
}

/// Registers a public key whose signatures the tenant's images may carry (administrators).
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/signing-keys", tag = "signing-keys", request_body = AddSigningKey, responses((status = 201, body = SigningKeyInfo)))]
pub(crate) async fn add_signing_key(
    State(state): State<AppState>,
    operator: Operator,
    Path(tenant): Path<String>,
    JsonBody(body): JsonBody<AddSigningKey>,
) -> Result<(StatusCode, Json<SigningKeyInfo>), ApiError> {
    operator
        .authorize(
            &state,
            &tenant,
            Access::Administer,
            "signing-key.add",
            &body.name,
        )
        .await?;
    check_name("signing key", &body.name)?;
    let key = PublicKey::from_pem(&body.public_key_pem).map_err(|e| {
        ApiError::BadRequest(format!("public_key_pem is not a usable public key: {e}"))
    })?;
    let stored = state
        .store
        .add_signing_key(&tenant, &key.key_id().to_hex(), &body.name, key.spki_der())
        .await?;
    state
        .audit(
            &operator,
            Some(&tenant),
            "signing-key.add",
            &stored.key_id,
            AuditOutcome::Ok,
            serde_json::json!({"name": stored.name}),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(key_info(&stored))))
}

/// Revokes a signing key: images it signed are no longer accepted for upload (administrators).
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/signing-keys/{key}/revoke", tag = "signing-keys", responses((status = 200, body = SigningKeyInfo)))]
pub(crate) async fn revoke_signing_key(
    State(state): State<AppState>,
    operator: Operator,
    Path((tenant, key)): Path<(String, String)>,
) -> Result<Json<SigningKeyInfo>, ApiError> {
    operator
        .authorize(
            &state,
            &tenant,
            Access::Administer,
            "signing-key.revoke",
            &key,
        )
        .await?;
    let revoked = state.store.revoke_signing_key(&tenant, &key).await?;
    state
        .audit(
            &operator,
            Some(&tenant),
            "signing-key.revoke",
            &key,
            AuditOutcome::Ok,
            serde_json::json!({}),
        )
        .await?;
    Ok(Json(key_info(&revoked)))
}

/// Paging of image lists.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ImageQuery {
    after: Option<String>,
    limit: Option<u32>,
}

/// The tenant's images, by ID.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/images", tag = "images",
    params(("after" = Option<String>, Query, description = "last image ID of the previous page"), ("limit" = Option<u32>, Query, description = "page size, 1 to 1000")),
    responses((status = 200, body = ImagePage)))]
pub(crate) async fn list_images(
    State(state): State<AppState>,
    operator: Operator,
    Path(tenant): Path<String>,
    Query(query): Query<ImageQuery>,
) -> Result<Json<ImagePage>, ApiError> {
    operator
        .authorize(&state, &tenant, Access::Read, "image.list", &tenant)
        .await?;
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let images = state
        .store
        .list_images(
            &tenant,
            &Page {
                after: query.after,
                limit,
            },
        )
        .await?;
    let next = (images.len() == limit as usize)
        .then(|| images.last().map(|i| i.id.clone()))
        .flatten();
    Ok(Json(ImagePage {
        images: images.iter().map(image_info).collect(),
        next,
    }))
}

/// Uploads an image package (the raw `*.imagepackage` bytes as the body).
/// It is verified against the tenant's registered, unrevoked signing keys
/// before it is stored.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/images", tag = "images",
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = ImageInfo), (status = 409, body = sevenfold_core::api::Problem), (status = 413, body = sevenfold_core::api::Problem), (status = 422, body = sevenfold_core::api::Problem)))]
pub(crate) async fn upload_image(
    State(state): State<AppState>,
    operator: Operator,
    Path(tenant): Path<String>,
    body: Body,
) -> Result<(StatusCode, Json<ImageInfo>), ApiError> {
    operator
        .authorize(&state, &tenant, Access::Write, "image.add", "upload")
        .await?;
    let max = state.config.max_upload_bytes;
    let mut pending = state
        .blobs
        .begin()
        .await
        .map_err(|e| ApiError::Internal(format!("cannot start blob: {e}")))?;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                state.blobs.abort(pending).await;
                return Err(ApiError::BadRequest(format!("upload interrupted: {e}")));
            }
        };
        if pending.len() + chunk.len() as u64 > max {
            state.blobs.abort(pending).await;
            return Err(ApiError::PayloadTooLarge(format!(
                "image packages may be at most {max} bytes"
            )));
        }
        if let Err(e) = pending.write(&chunk).await {
            state.blobs.abort(pending).await;
            return Err(ApiError::Internal(format!("cannot write blob: {e}")));
        }
    }
    let trusted: TrustedKeys = state
        .store
        .list_signing_keys(&tenant)
        .await?
        .iter()
        .filter(|k| k.revoked_at.is_none())
        .filter_map(|k| PublicKey::from_spki_der(&k.spki_der).ok())
        .collect();
    if let Err(e) = pending.flush().await {
        state.blobs.abort(pending).await;
        return Err(ApiError::Internal(format!("cannot write blob: {e}")));
    }
    let path = pending.path().to_path_buf();
    let limits = Limits {
        max_payload_len: max,
        ..Limits::default()
    };
    let verified = tokio::task::spawn_blocking(move || -> Result<NewImageFacts, String> {
        let file = std::fs::File::open(&path).map_err(|e| e.to_string())?;
        let bytes = read_package(file, &limits).map_err(|e| e.to_string())?;
        let package = UnverifiedPackage::parse(&bytes, &limits).map_err(|e| e.to_string())?;
        let verified = package.verify(&trusted).map_err(|e| e.to_string())?;
        let m = verified.manifest();
        Ok(NewImageFacts {
            id: verified.package_digest().to_hex(),
            component_id: m.component_id().to_string(),
            name: m.name().to_owned(),
            version: m.version().to_string(),
            security_version: i64::from(m.security_version()),
            image_type: format!("{:?}", m.image_type()),
            size: bytes.len() as i64,
            signer_key_id: verified.signer_key_id().to_hex(),
            manifest_json: m.to_json(),
        })
    })
    .await
    .map_err(|e| ApiError::Internal(format!("verification task failed: {e}")))?;
    let facts = match verified {
        Ok(f) => f,
        Err(reason) => {
            state.blobs.abort(pending).await;
            let err = ApiError::Unprocessable(format!("image package refused: {reason}"));
            state
                .audit(
                    &operator,
                    Some(&tenant),
                    "image.add",
                    "upload",
                    AuditOutcome::Denied,
                    serde_json::json!({"reason": err.to_string()}),
                )
                .await?;
            return Err(err);
        }
    };
    let blob_key = format!("images/{tenant}/{}", facts.id);
    let new = NewImage {
        id: facts.id.clone(),
        component_id: facts.component_id,
        name: facts.name,
        version: facts.version,
        security_version: facts.security_version,
        image_type: facts.image_type,
        size: facts.size,
        signer_key_id: facts.signer_key_id,
        blob_key: blob_key.clone(),
        manifest_json: facts.manifest_json,
        uploaded_by: operator.name().to_owned(),
    };
    // Commit the blob first: a row must never point at a missing blob.
    state
        .blobs
        .commit(pending, &blob_key)
        .await
        .map_err(|e| ApiError::Internal(format!("cannot store blob: {e}")))?;
    let image = state.store.add_image(&tenant, new).await?;
    state
        .audit(&operator, Some(&tenant), "image.add", &image.id, AuditOutcome::Ok, serde_json::json!({"name": image.name, "version": image.version, "signer": image.signer_key_id}))
        .await?;
    Ok((StatusCode::CREATED, Json(image_info(&image))))
}

struct NewImageFacts {
    id: String,
    component_id: String,
    name: String,
    version: String,
    security_version: i64,
    image_type: String,
    size: i64,
    signer_key_id: String,
    manifest_json: String,
}

/// One image's metadata.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/images/{image}", tag = "images", responses((status = 200, body = ImageInfo)))]
pub(crate) async fn show_image(
    State(state): State<AppState>,
    operator: Operator,
    Path((tenant, image)): Path<(String, String)>,
) -> Result<Json<ImageInfo>, ApiError> {
    operator
        .authorize(&state, &tenant, Access::Read, "image.show", &image)
        .await?;
    Ok(Json(image_info(&state.store.image(&tenant, &image).await?)))
}

/// The image package bytes.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/images/{image}/content", tag = "images",
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>)))]
pub(crate) async fn download_image(
    State(state): State<AppState>,
    operator: Operator,
    Path((tenant, image)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    operator
        .authorize(&state, &tenant, Access::Read, "image.download", &image)
        .await?;
    let found = state.store.image(&tenant, &image).await?;
    let file = state
        .blobs
        .open_blob(&found.blob_key)
        .await
        .map_err(|e| ApiError::Internal(format!("blob {} unreadable: {e}", found.blob_key)))?;
    let body = Body::from_stream(crate::blobs::BlobStore::stream(file));
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, found.size.to_string()),
        ],
        body,
    )
        .into_response())
}
