//! Delta updates on the service side: each image of a deployment gets
//! binary deltas from up to [`MAX_BASES`] earlier package files of its
//! component, the ones the group's devices may run: first those the
//! devices measured at their last boot (most devices first), then the files
//! of the group's earlier deployments, newest first. So a device two
//! versions behind still gets a delta.
//!
//! Deltas are made off the request path. `deployment create` publishes
//! the deployment with full images and returns; [`spawn`] then makes the
//! deltas (one job per deployment, process-wide one at a time), commits
//! each delta's blob, records them all in one transaction, publishes the
//! group's targets again with the deltas signed in, and only then marks the
//! job done. Devices never see a delta whose blob is not durable. The job
//! is a lease in the database (`deployments.deltas_claimed_until`): if the
//! replica making it dies, another replica's housekeeping takes it over
//! ([`resume_abandoned`]). When the tenant holds the targets keys, the
//! draft they sign is built only after the group's deltas are made
//! ([`settle_group`]), so what they sign already carries them.
//!
//! A delta is an optimisation, never a requirement: when none can be made
//! (no earlier version, same file, a failure, or no saving) devices fetch
//! the full image.

use std::time::Duration;

use sevenfold_core::delta;
use sevenfold_core::update::DELTA_SUFFIX;
use tokio::io::AsyncReadExt;
use tokio::sync::Mutex;

use super::{repo, Expiry, UpdateError};
use crate::api::AppState;
use crate::blobs::BlobStore;
use crate::store::{now_millis, DeltaBase, DeploymentDelta, DeploymentImage, Store, StoreError};

/// Most deltas per image: one per distinct earlier package file.
pub(crate) const MAX_BASES: usize = 3;

/// A delta is published only when it is at most this share (percent) of
/// the full file; otherwise fetching the full file costs about the same.
const MAX_SHARE_PERCENT: u64 = 90;

/// How long a targets draft waits for deltas another task is making.
const SETTLE_WAIT: Duration = Duration::from_secs(240);

/// One delta job at a time per process: making a delta holds two package
/// files in memory and a core busy, and deployments come in bursts.
static MAKING: Mutex<()> = Mutex::const_new(());

async fn read_blob(blobs: &BlobStore, key: &str) -> std::io::Result<Vec<u8>> {
    let mut file = blobs.open_blob(key).await?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).await?;
    Ok(bytes)
}

/// SHA-256 (lowercase hex) and length of a stored package file, read in
/// 64 KiB pieces.
pub(crate) async fn file_hash(blobs: &BlobStore, key: &str) -> std::io::Result<(String, i64)> {
    let mut file = blobs.open_blob(key).await?;
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut buffer = vec![0u8; 64 * 1024];
    let mut length: i64 = 0;
    loop {
        let n = file.read(&mut buffer).await?;
        if n == 0 {
            break;
        }
        context.update(buffer.get(..n).unwrap_or_default());
        length = length.saturating_add(i64::try_from(n).unwrap_or(i64::MAX));
    }
    Ok((hex::encode(context.finish().as_ref()), length))
}

/// A base's file SHA-256: recorded by a deployment, else hashed from the blob.
async fn base_sha256(blobs: &BlobStore, base: &DeltaBase) -> Option<String> {
    if let Some(sha256) = &base.file_sha256 {
        return Some(sha256.clone());
    }
    match file_hash(blobs, &base.blob_key).await {
        Ok((sha256, _)) => Some(sha256),
        Err(e) => {
            tracing::warn!(image = %base.image_id, error = %e, "delta base unreadable");
            None
        }
    }
}

/// The package files (SHA-256, blob key) deltas to `image` in
/// `deployment_id` start from: at most [`MAX_BASES`], distinct, never the
/// image's own file; device-measured versions first, then earlier
/// deployments of the group.
pub(crate) async fn choose_bases(
    store: &Store,
    blobs: &BlobStore,
    group: (&str, &str),
    deployment_id: &str,
    image: &DeploymentImage,
) -> Result<Vec<(String, String)>, StoreError> {
    let (tenant_id, group_id) = group;
    let component = &image.image.component_id;
    let mut candidates = Vec::new();
    for (image_id, _devices) in store
        .group_running_images(tenant_id, group_id, component)
        .await?
    {
        if let Some(base) = store.delta_base(tenant_id, component, &image_id).await? {
            candidates.push(base);
        }
    }
    candidates.extend(
        store
            .earlier_group_files(tenant_id, group_id, component, deployment_id, MAX_BASES)
            .await?,
    );
    let mut bases: Vec<(String, String)> = Vec::new();
    for base in &candidates {
        if bases.len() == MAX_BASES {
            break;
        }
        let Some(sha256) = base_sha256(blobs, base).await else {
            continue;
        };
        if sha256 != image.file_sha256 && !bases.iter().any(|(s, _)| *s == sha256) {
            bases.push((sha256, base.blob_key.clone()));
        }
    }
    Ok(bases)
}

/// The delta from `base` to `image`: one made earlier for the tenant (its
/// blob reused), else made now and stored; `None` (with the reason logged)
/// when there is none to offer.
async fn delta_for(
    store: &Store,
    blobs: &BlobStore,
    tenant_id: &str,
    image: &DeploymentImage,
    base: &(String, String),
) -> Option<DeploymentDelta> {
    let component = &image.image.component_id;
    let (base_sha256, base_key) = base;
    match store
        .existing_delta(tenant_id, base_sha256, &image.file_sha256)
        .await
    {
        Ok(Some(made)) if blobs.open_blob(&made.blob_key).await.is_ok() => return Some(made),
        Ok(_) => {}
        Err(e) => tracing::warn!(%component, error = %e, "earlier deltas unknown"),
    }
    match make(blobs, tenant_id, image, base_sha256, base_key).await {
        Ok(Some(made)) => {
            tracing::info!(%component, base = %base_sha256, length = made.delta_length,
                full = image.file_length, "delta update prepared");
            Some(made)
        }
        Ok(None) => {
            tracing::info!(%component, base = %base_sha256,
                "no delta: it would not be smaller than the image");
            None
        }
        Err(e) => {
            tracing::warn!(%component, base = %base_sha256, error = %e, "no delta: making it failed");
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
    // Durable (fsync, rename, fsync of the directory) before any row names it.
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

/// Runs a deployment's delta job to its end (the caller holds its lease):
/// makes the deltas, records them, publishes the group's targets again when
/// the deployment is live and got any, and only then ends the job. A crash
/// before the end leaves the job to be run again (recording is idempotent).
pub(crate) async fn run_job(
    state: &AppState,
    tenant_id: &str,
    deployment_id: &str,
) -> Result<Vec<DeploymentDelta>, UpdateError> {
    let _turn = MAKING.lock().await;
    let (store, blobs) = (&state.store, &state.blobs);
    let deployment = store.deployment(tenant_id, deployment_id).await?;
    let group = (tenant_id, deployment.group_id.as_str());
    let mut deltas = Vec::new();
    for image in store.deployment_images(tenant_id, deployment_id).await? {
        for base in choose_bases(store, blobs, group, deployment_id, &image).await? {
            if let Some(made) = delta_for(store, blobs, tenant_id, &image, &base).await {
                deltas.push(made);
            }
        }
    }
    store
        .record_deltas(tenant_id, deployment_id, &deltas)
        .await?;
    let live = store
        .live_deployments(tenant_id, &deployment.group_id)
        .await?
        .iter()
        .any(|d| d.id == deployment_id);
    if live && !deltas.is_empty() {
        let expiry = Expiry::with_timestamp_secs(state.config.tuf_timestamp_ttl_secs);
        let published =
            repo::publish(store, &state.wrap, tenant_id, &deployment.group_id, &expiry).await?;
        tracing::info!(
            deployment = deployment_id,
            deltas = deltas.len(),
            targets_version = published.targets_version(),
            "deltas signed into the group's targets"
        );
    }
    // Ready means published: `deployment show` says so only once devices
    // (or, with offline targets keys, the next draft) can see them.
    store.end_delta_job(tenant_id, deployment_id).await?;
    Ok(deltas)
}

/// Makes a new deployment's deltas in the background (its creator holds
/// the job's lease). A failure leaves the job to housekeeping.
pub(crate) fn spawn(state: &AppState, tenant_id: &str, deployment_id: &str) {
    let (state, tenant_id, deployment_id) = (
        state.clone(),
        tenant_id.to_owned(),
        deployment_id.to_owned(),
    );
    tokio::spawn(async move {
        if let Err(e) = run_job(&state, &tenant_id, &deployment_id).await {
            tracing::warn!(deployment = %deployment_id, error = %e,
                "making deltas failed; housekeeping retries when the job's lease ends");
        }
    });
}

/// Takes over delta jobs whose holder's lease ran out (a replica died or
/// restarted mid-way) and runs them in the background. Run by
/// housekeeping; returns how many it took.
pub(crate) async fn resume_abandoned(state: &AppState) -> Result<usize, UpdateError> {
    let now = now_millis();
    let mut taken = 0;
    for job in state.store.delta_jobs(None, now).await? {
        if state
            .store
            .claim_delta_job(&job.tenant_id, &job.deployment_id, now)
            .await?
        {
            spawn(state, &job.tenant_id, &job.deployment_id);
            taken += 1;
        }
    }
    Ok(taken)
}

/// Waits until the group's live deployments have their deltas, making
/// any whose job nobody holds right here: a targets draft for offline
/// signing must carry the deltas, since nothing can add them once signed.
/// A conflict when another replica is still making them after
/// [`SETTLE_WAIT`].
pub(crate) async fn settle_group(
    state: &AppState,
    tenant_id: &str,
    group_id: &str,
) -> Result<(), UpdateError> {
    let deadline = tokio::time::Instant::now() + SETTLE_WAIT;
    loop {
        let jobs = state
            .store
            .delta_jobs(Some((tenant_id, group_id)), now_millis())
            .await?;
        let Some(job) = jobs.first() else {
            return Ok(());
        };
        if state
            .store
            .claim_delta_job(tenant_id, &job.deployment_id, now_millis())
            .await?
        {
            run_job(state, tenant_id, &job.deployment_id).await?;
            continue;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(StoreError::Conflict(format!(
                "the deltas of deployment {} are still being made; draft again in a minute",
                job.deployment_id
            ))
            .into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
