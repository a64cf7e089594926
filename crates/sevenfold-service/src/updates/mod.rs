//! Renewable security on the service side: a TUF 1.0 repository per device
//! group, deployments with phased rollouts, and what devices report.
//!
//! - `keys`: the repository's Ed25519 keys, wrapped at rest.
//! - `repo`: signing root, targets, snapshot and timestamp with `tough`.
//! - `delta`: binary deltas from the versions a group's devices may run,
//!   made in the background after `deployment create`.
//! - `rollout`: progress accounting and the automatic halt.
//! - `rotate`: root and targets key rotation with thresholds, while the
//!   service holds the keys.
//! - `offline`: draft files that the tenant's key holders sign offline.
//! - `submit`: the service's checks on a root or targets signed offline.
//! - `device_routes`: `/device/v1/tuf/…` and `/device/v1/updates/progress`.
//!
//! Key decision: the repository is the same for every device of a group
//! (plain TUF, walkable by any conforming client); a phased rollout is a
//! share written into each target's signed custom metadata, and each device
//! computes its membership with [`sevenfold_core::update::in_rollout`], the
//! same function the service uses to count who is targeted.

pub(crate) mod delta;
pub(crate) mod device_routes;
pub(crate) mod keys;
pub mod offline;
pub(crate) mod repo;
pub(crate) mod rollout;
pub(crate) mod rotate;
pub(crate) mod submit;

pub use keys::RoleKey;
pub use repo::Expiry;

use crate::store::StoreError;

/// Why a repository operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpdateError {
    /// The store failed or refused.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A key could not be made, unwrapped or used.
    #[error("TUF signing: {0}")]
    Crypto(String),
    /// A key could not be unwrapped.
    #[error("TUF key at rest: {0}")]
    Wrap(#[from] sevenfold_pki::PkiError),
    /// Metadata signed offline (or a request to change it) was refused:
    /// the reason says which rule it breaks. Nothing was changed.
    #[error("{0}")]
    Refused(String),
    /// `tough` refused to sign (boxed: its error is large).
    #[error("TUF signing: {0}")]
    Tough(#[from] Box<tough::error::Error>),
}

impl From<tough::error::Error> for UpdateError {
    fn from(e: tough::error::Error) -> Self {
        UpdateError::Tough(Box::new(e))
    }
}

impl From<UpdateError> for crate::api::error::ApiError {
    fn from(e: UpdateError) -> Self {
        match e {
            UpdateError::Store(e) => e.into(),
            UpdateError::Refused(reason) => crate::api::error::ApiError::Unprocessable(reason),
            other => crate::api::error::ApiError::Internal(other.to_string()),
        }
    }
}

/// Publishes the group's targets again if it has any (after a change to
/// what they sign, such as the group's update window).
pub(crate) async fn republish_if_published(
    state: &crate::api::AppState,
    tenant_id: &str,
    group_id: &str,
) -> Result<(), UpdateError> {
    if state
        .store
        .latest_tuf_metadata(group_id, "targets")
        .await?
        .is_none()
    {
        return Ok(());
    }
    let expiry = Expiry::with_timestamp_secs(state.config.tuf_timestamp_ttl_secs);
    repo::publish(&state.store, &state.wrap, tenant_id, group_id, &expiry).await?;
    Ok(())
}

/// Re-signs timestamps (and older roles near expiry) of every group whose
/// timestamp is past half its life. Run by the server's housekeeping loop.
pub(crate) async fn refresh_expiring(
    store: &crate::store::Store,
    wrap: &sevenfold_pki::KeyWrap,
    expiry: &Expiry,
) -> Result<usize, UpdateError> {
    let now = jiff::Timestamp::now().as_millisecond();
    let horizon = now.saturating_add(expiry.timestamp_secs.saturating_mul(500));
    let groups = store.tuf_expiring("timestamp", horizon).await?;
    for (tenant_id, group_id) in &groups {
        repo::refresh(store, wrap, tenant_id, group_id, expiry).await?;
    }
    Ok(groups.len())
}

#[cfg(test)]
mod offline_tests;
#[cfg(test)]
mod tests;
