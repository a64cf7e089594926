//! Rotating a group repository's root or targets keys, with a threshold.
//!
//! TUF 1.0 §5.3.4: a new root (version N+1) must be signed by a threshold
//! of the keys of root N *and* a threshold of its own root keys, so a
//! client holding root N can walk to N+1. The new root is signed by every
//! new root key and cross-signed by the old root keys (`tough`'s
//! `add_old_signatures`); the old keys of the rotated role are retired in
//! the same transaction that stores the new root. New targets, snapshot
//! and timestamp versions follow, signed under the new root.

use std::collections::HashSet;
use std::num::NonZeroU64;

use aws_lc_rs::rand::SystemRandom;
use serde::Serialize;
use sevenfold_pki::KeyWrap;
use tough::editor::signed::SignedRole;
use tough::schema::decoded::{Decoded, Hex};
use tough::schema::{KeyHolder, RoleKeys, RoleType};

use super::keys::RoleKey;
use super::repo::{current_root, ensure_repository, expires_in, publish, record, Expiry};
use super::UpdateError;
use crate::store::{Store, StoreError};

/// Most keys a role may have.
pub(crate) const MAX_KEYS: usize = 16;

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
            return Err(StoreError::Invalid(format!(
                "only root and targets keys are rotated, not {other} (snapshot and timestamp keys are the service's)"
            ))
            .into())
        }
    };
    if keys == 0 || keys > MAX_KEYS || threshold == 0 || threshold > keys {
        return Err(StoreError::Invalid(format!(
            "a role needs 1 to {MAX_KEYS} keys and a threshold between 1 and the number of keys \
             (asked: {keys} keys, threshold {threshold})"
        ))
        .into());
    }
    ensure_repository(store, wrap, tenant_id, group_id, expiry).await?;
    let old_root = current_root(store, group_id).await?;
    let old_root_keys: Vec<RoleKey> = store
        .tuf_keys(tenant_id, group_id, "root")
        .await?
        .iter()
        .map(|r| RoleKey::unwrap(r, wrap))
        .collect::<Result<_, _>>()?;

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
    let mut ids = Vec::new();
    for key in &fresh {
        let id: Decoded<Hex> = hex::decode(key.key_id())
            .map_err(|e| UpdateError::Crypto(e.to_string()))?
            .into();
        new_root.keys.insert(id.clone(), key.public().clone());
        ids.push(id);
    }
    new_root.roles.insert(
        role_type,
        RoleKeys {
            keyids: ids,
            threshold: NonZeroU64::new(threshold as u64)
                .ok_or_else(|| StoreError::Invalid("threshold 0".into()))?,
            _extra: Default::default(),
        },
    );
    // Keys no role names any more leave the key list.
    let used: HashSet<_> = new_root
        .roles
        .values()
        .flat_map(|r| r.keyids.iter().cloned())
        .collect();
    new_root.keys.retain(|id, _| used.contains(id));

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
