//! Delta updates on the service side: when a deployment is created, each of
//! its images gets a binary delta from the package file of the same
//! component that the group's previous deployment published (the version
//! its devices most likely run). The delta is a blob; its name, length and
//! SHA-256 go into the target's signed custom metadata (`repo.rs`), and the
//! device route serves it like a target (`device_routes.rs`).
//!
//! A delta is an optimisation, never a requirement: when none can be made
//! (no previous version, same file, a failure, or no saving) the deployment
//! goes out without it and devices fetch the full image.

use sevenfold_core::delta;
use sevenfold_core::update::DELTA_SUFFIX;
use tokio::io::AsyncReadExt;

use crate::blobs::BlobStore;
use crate::store::{DeploymentDelta, DeploymentImage, Store};

/// A delta is published only when it is at most this share (percent) of
/// the full file; otherwise fetching the full file costs about the same.
const MAX_SHARE_PERCENT: u64 = 90;

async fn read_blob(blobs: &BlobStore, key: &str) -> std::io::Result<Vec<u8>> {
    let mut file = blobs.open_blob(key).await?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).await?;
    Ok(bytes)
}

/// The delta for `image` in a new deployment of `group_id`, made and
/// stored, or `None` (with the reason logged) when there is none to offer.
pub(crate) async fn prepare(
    store: &Store,
    blobs: &BlobStore,
    tenant_id: &str,
    group_id: &str,
    image: &DeploymentImage,
) -> Option<DeploymentDelta> {
    let component = &image.image.component_id;
    let (base_sha256, base_key) = match store
        .previous_group_file(tenant_id, group_id, component)
        .await
    {
        Ok(Some(previous)) => previous,
        Ok(None) => return None,
        Err(e) => {
            tracing::warn!(%component, error = %e, "no delta: previous version unknown");
            return None;
        }
    };
    if base_sha256 == image.file_sha256 {
        return None;
    }
    match make(blobs, tenant_id, image, &base_sha256, &base_key).await {
        Ok(Some(made)) => {
            tracing::info!(%component, base = %base_sha256, length = made.delta_length,
                full = image.file_length, "delta update prepared");
            Some(made)
        }
        Ok(None) => {
            tracing::info!(%component, "no delta: it would not be smaller than the image");
            None
        }
        Err(e) => {
            tracing::warn!(%component, error = %e, "no delta: making it failed");
            None
        }
    }
}

async fn make(
    blobs: &BlobStore,
    tenant_id: &str,
    image: &DeploymentImage,
    base_sha256: &str,
    base_key: &str,
) -> Result<Option<DeploymentDelta>, String> {
    let base = read_blob(blobs, base_key)
        .await
        .map_err(|e| format!("base {base_key}: {e}"))?;
    let target = read_blob(blobs, &image.image.blob_key)
        .await
        .map_err(|e| format!("target {}: {e}", image.image.blob_key))?;
    let target_len = target.len() as u64;
    let bytes = tokio::task::spawn_blocking(move || delta::create(&base, &target))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    if (bytes.len() as u64).saturating_mul(100) > target_len.saturating_mul(MAX_SHARE_PERCENT) {
        return Ok(None);
    }
    let delta_sha256 = sevenfold_rot::Digest::of(&bytes).to_hex();
    let blob_key = format!("deltas/{tenant_id}/{base_sha256}-{}", image.file_sha256);
    let mut pending = blobs.begin().await.map_err(|e| e.to_string())?;
    if let Err(e) = pending.write(&bytes).await {
        blobs.abort(pending).await;
        return Err(e.to_string());
    }
    blobs
        .commit(pending, &blob_key)
        .await
        .map_err(|e| e.to_string())?;
    let short = base_sha256.get(..16).unwrap_or(base_sha256);
    Ok(Some(DeploymentDelta {
        target_sha256: image.file_sha256.clone(),
        base_sha256: base_sha256.to_owned(),
        format: delta::FORMAT.to_owned(),
        name: format!("{}.{short}{DELTA_SUFFIX}", image.image.component_id),
        delta_sha256,
        delta_length: i64::try_from(bytes.len()).unwrap_or(i64::MAX),
        blob_key,
    }))
}
