//! Rotating a group repository's root or targets keys, with a threshold.
//!
//! TUF 1.0 §5.3.4: a new root (version N+1) must be signed by a threshold
//! of the keys of root N *and* a threshold of its own root keys, so a
//! client holding root N can walk to N+1. The new root is signed by every
//! new root key and cross-signed by the old root keys (`tough`'s
//! `add_old_signatures`); the old keys of the rotated role are retired in
//! the same transaction that stores the new root. New targets, snapshot
//! and timestamp versions follow, signed under the new root.
//!
//! This is for keys the service holds. Once the tenant holds the root keys
//! (`updates::offline`, `updates::submit`) the service cannot sign a new
//! root and refuses, pointing at the offline commands.

use aws_lc_rs::rand::SystemRandom;
use serde::Serialize;
use sevenfold_pki::KeyWrap;
use tough::editor::signed::SignedRole;
use tough::schema::{KeyHolder, RoleType};

use super::keys::RoleKey;
use super::offline::{check_role_size, set_role_keys};
use super::repo::{
    current_root, ensure_repository, expires_in, publish, record, service_holds, Expiry,
};
use super::UpdateError;
use crate::store::{Store, StoreError};

/// What a rotation produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub(crate) struct Rotation {
    /// The group.
    pub(crate) group_id: String,
    /// "root" or "targets".
    pub(crate) role: String,
    /// The new root's version.
    pub(crate) root_version: u64,
    /// The role's new key IDs.
    pub(crate) key_ids: Vec<String>,
    /// Signatures needed from them.
    pub(crate) threshold: u64,
}

/// Replaces `role`'s keys with `keys` new ones, `threshold` of which must sign.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn rotate(
    store: &Store,
    wrap: &KeyWrap,
    tenant_id: &str,
    group_id: &str,
    role: &str,
    keys: usize,
    threshold: usize,
    expiry: &Expiry,
) -> Result<Rotation, UpdateError> {
    let role_type = match role {
        "root" => RoleType::Root,
        "targets" => RoleType::Targets,
        other => {
            return Err(UpdateError::Refused(format!(
                "only root and targets keys are rotated, not {other} (snapshot and timestamp keys are the service's)"
            )))
        }
    };
    check_role_size(keys, threshold as u64)?;
    ensure_repository(store, wrap, tenant_id, group_id, expiry).await?;
    let old_root = current_root(store, group_id).await?;
    let old_root_keys: Vec<RoleKey> = store
        .tuf_keys(tenant_id, group_id, "root")
        .await?
        .iter()
        .map(|r| RoleKey::unwrap(r, wrap))
        .collect::<Result<_, _>>()?;
    if !service_holds(store, tenant_id, group_id, &old_root, RoleType::Root).await? {
        return Err(UpdateError::Refused(format!(
            "the root keys of group {group_id} are held by the tenant, not the service; \
             rotate offline with `sevenfold tuf root draft`, `tuf root sign` and `tuf root submit`"
        )));
    }

    let fresh: Vec<RoleKey> = (0..keys)
        .map(|_| RoleKey::generate())
        .collect::<Result<_, _>>()?;
    let mut new_root = old_root.clone();
    let version = old_root
        .version
        .checked_add(1)
        .ok_or_else(|| StoreError::Corrupt("root version overflow".into()))?;
    new_root.version = version;
    new_root.expires = expires_in(expiry.root_secs)?;
    let publics: Vec<_> = fresh.iter().map(|k| k.public().clone()).collect();
    set_role_keys(&mut new_root, role_type, &publics, threshold as u64)?;

    let rng = SystemRandom::new();
    let new_root_signers: Vec<_> = if role == "root" {
        fresh.iter().map(RoleKey::source).collect()
    } else {
        old_root_keys.iter().map(RoleKey::source).collect()
    };
    let signed = SignedRole::new(
        new_root.clone(),
        &KeyHolder::Root(new_root.clone()),
        &new_root_signers,
        &rng,
    )
    .await?;
    let signed = if role == "root" {
        let cross = SignedRole::new(
            new_root.clone(),
            &KeyHolder::Root(old_root.clone()),
            &old_root_keys
                .iter()
                .map(RoleKey::source)
                .collect::<Vec<_>>(),
            &rng,
        )
        .await?;
        signed.add_old_signatures(cross.signed().signatures.clone())?
    } else {
        signed
    };
    let root_record = record(
        tenant_id,
        group_id,
        "root",
        &signed,
        version,
        new_root.expires,
    )?;
    let wrapped = fresh
        .iter()
        .map(|k| k.wrapped(wrap, tenant_id, group_id, role))
        .collect::<Result<Vec<_>, _>>()?;
    store
        .rotate_tuf_keys(tenant_id, group_id, role, &wrapped, &root_record)
        .await?;
    publish(store, wrap, tenant_id, group_id, expiry).await?;
    Ok(Rotation {
        group_id: group_id.to_owned(),
        role: role.to_owned(),
        root_version: version.get(),
        key_ids: fresh.iter().map(|k| k.key_id().to_owned()).collect(),
        threshold: threshold as u64,
    })
}
