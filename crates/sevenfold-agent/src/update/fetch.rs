//! Getting a target's bytes: through a delta when the target's signed
//! custom metadata offers one for the package this device runs, else (or
//! when the delta fails in any way) the full file.
//!
//! The delta file is fetched like a target (resumable, bounded by its
//! signed length, checked against its signed SHA-256), applied to the
//! installed package with an output bound of the target's signed length,
//! and the rebuilt file must hash to the target's signed SHA-256 before it
//! is returned. So a delta can only save bytes, never change what is
//! installed.

use std::path::Path;

use sevenfold_core::update::{TargetCustom, TUF_TARGETS_PATH};

use super::download::{self, DownloadError};
use crate::client::ServiceClient;
use crate::{fsutil, AgentError};

/// Largest installed package used as a delta base.
const MAX_BASE_LEN: u64 = 1 << 31;

/// What was fetched, and how.
pub(crate) struct Fetched {
    /// The verified package file.
    pub bytes: Vec<u8>,
    /// Length of the file the image was taken from (delta or full image).
    pub downloaded_bytes: u64,
    /// Whether the bytes were rebuilt from a delta.
    pub delta_used: bool,
    /// Why an offered delta was not used (the full file was fetched).
    pub delta_fallback: Option<String>,
}

/// The signed facts of the full target.
pub(crate) struct FullTarget<'a> {
    /// Target name (`<component>.imagepackage`).
    pub name: &'a str,
    /// Signed SHA-256, lowercase hex.
    pub sha256: &'a str,
    /// Signed length.
    pub length: u64,
}

fn target_url(client: &ServiceClient, sha256: &str, name: &str) -> reqwest::Url {
    let mut segments: Vec<&str> = TUF_TARGETS_PATH
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let file = format!("{sha256}.{name}");
    segments.push(&file);
    client.url(&segments)
}

/// A verified image kept until it may be applied (see `schedule`):
/// `<staged>/<sha256>.imagepackage`.
fn staged_name(sha256: &str) -> String {
    format!("{sha256}.imagepackage")
}

/// Keeps verified bytes for a later round (written atomically).
pub(crate) fn stage(staged: &Path, sha256: &str, bytes: &[u8]) -> Result<(), AgentError> {
    fsutil::create_private_dir(staged)?;
    fsutil::write_atomic(staged, &staged_name(sha256), bytes)
}

/// Drops a staged image (after it was applied, or when it is stale).
pub(crate) fn unstage(staged: &Path, sha256: &str) {
    let _ = std::fs::remove_file(staged.join(staged_name(sha256)));
}

/// A staged image that still matches the signed target, if any.
fn take_staged(staged: &Path, target: &FullTarget<'_>) -> Option<Vec<u8>> {
    let path = staged.join(staged_name(target.sha256));
    let bytes = fsutil::read_bounded(&path, target.length, true).ok()??;
    if bytes.len() as u64 == target.length
        && sevenfold_rot::Digest::of(&bytes)
            .to_hex()
            .eq_ignore_ascii_case(target.sha256)
    {
        return Some(bytes);
    }
    tracing::warn!(path = %path.display(), "staged image does not match its target; dropped");
    unstage(staged, target.sha256);
    None
}

/// Fetches the target: a staged copy verified earlier (re-checked), else
/// through the delta from `installed` (the running package file and its
/// SHA-256) if the metadata offers one, else the full file.
pub(crate) async fn fetch(
    client: &ServiceClient,
    custom: &TargetCustom,
    target: &FullTarget<'_>,
    installed: Option<(&Path, &str)>,
    dirs: (&Path, &Path),
) -> Result<Fetched, DownloadError> {
    let (downloads, staged) = dirs;
    if let Some(bytes) = take_staged(staged, target) {
        return Ok(Fetched {
            bytes,
            downloaded_bytes: 0,
            delta_used: false,
            delta_fallback: None,
        });
    }
    let mut fallback = None;
    if let Some((path, base_sha256)) = installed {
        if let Some(offer) = custom.delta.get(base_sha256) {
            match through_delta(client, offer, target, path, base_sha256, downloads).await {
                Ok(bytes) => {
                    tracing::info!(component = %custom.component_id, delta = offer.length,
                        full = target.length, "update rebuilt from a delta");
                    return Ok(Fetched {
                        bytes,
                        downloaded_bytes: offer.length,
                        delta_used: true,
                        delta_fallback: None,
                    });
                }
                Err(reason) => {
                    tracing::warn!(component = %custom.component_id, %reason,
                        "delta not used; fetching the full image");
                    fallback = Some(reason);
                }
            }
        }
    }
    let bytes = download::fetch_verified(
        client.http(),
        target_url(client, target.sha256, target.name),
        target.sha256,
        target.length,
        downloads,
    )
    .await?;
    Ok(Fetched {
        bytes,
        downloaded_bytes: target.length,
        delta_used: false,
        delta_fallback: fallback,
    })
}

async fn through_delta(
    client: &ServiceClient,
    offer: &sevenfold_core::update::TargetDelta,
    target: &FullTarget<'_>,
    base_path: &Path,
    base_sha256: &str,
    downloads: &Path,
) -> Result<Vec<u8>, String> {
    if offer.format != sevenfold_core::delta::FORMAT {
        return Err(format!("unknown delta format {:?}", offer.format));
    }
    let delta = download::fetch_verified(
        client.http(),
        target_url(client, &offer.sha256, &offer.name),
        &offer.sha256,
        offer.length,
        downloads,
    )
    .await
    .map_err(|e| format!("delta download: {e}"))?;
    let base = fsutil::read_bounded(base_path, MAX_BASE_LEN, false)
        .map_err(|e| format!("installed image: {e}"))?
        .ok_or_else(|| "the installed image is gone".to_owned())?;
    // The file may have changed since it was hashed; the delta is only for
    // that exact base.
    let actual = sevenfold_rot::Digest::of(&base).to_hex();
    if actual != base_sha256 {
        return Err(format!(
            "the installed image changed (SHA-256 {actual}, delta base {base_sha256})"
        ));
    }
    let expected = target.length;
    let rebuilt =
        tokio::task::spawn_blocking(move || sevenfold_core::delta::apply(&base, &delta, expected))
            .await
            .map_err(|e| format!("delta apply: {e}"))?
            .map_err(|e| e.to_string())?;
    let actual = sevenfold_rot::Digest::of(&rebuilt).to_hex();
    if !actual.eq_ignore_ascii_case(target.sha256) {
        return Err(format!(
            "the image rebuilt from the delta has SHA-256 {actual}, not the signed {}",
            target.sha256
        ));
    }
    Ok(rebuilt)
}
