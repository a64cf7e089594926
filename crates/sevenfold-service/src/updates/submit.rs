//! The service's checks on a root or targets the tenant signed offline
//! (`updates::offline`), and their publication.
//!
//! Everything fails closed with a reason and leaves the repository as it
//! was. A new root must:
//! - be version current + 1, unexpired, TUF 1.x, with consistent snapshots;
//! - give each of the four roles 1 to 16 distinct keys that it lists, and a
//!   threshold no higher than their number;
//! - keep the snapshot and timestamp roles exactly as they are: those keys
//!   are the service's online keys and it must go on signing with them;
//! - carry a threshold of signatures by the *current* root's root keys and
//!   a threshold by its *own* root keys (TUF 1.0 §5.3.4), verified with
//!   `tough`'s verifier against the service's copy of the current root.
//!
//! While the service still holds the current root's keys (every group
//! starts that way) it adds their cross-signatures itself at submit: the
//! administrator's submission is the authorisation. The first offline
//! rotation therefore takes the root offline; from then on only the
//! tenant's key holders can make the next one. The service's keys that the
//! new root no longer names (root, and targets if they moved too) are
//! retired in the same transaction that stores it.
//!
//! New targets signed offline must be the next version, unexpired, signed
//! by a threshold of the root's targets keys, and list exactly what the
//! group's live deployments would (so a stale draft cannot roll devices
//! back). Snapshot and timestamp over them are then signed online.

use std::collections::HashSet;

use aws_lc_rs::rand::SystemRandom;
use serde::Serialize;
use sevenfold_pki::KeyWrap;
use tough::editor::signed::SignedRole;
use tough::schema::{KeyHolder, Role, RoleType, Root, Signed, Targets};

use super::keys::RoleKey;
use super::offline::{names, valid_signatures, TargetsDraft, MAX_KEYS};
use super::repo::{
    build_targets, current_signed_root, ensure_repository, expires_in, next_version, publish,
    service_signs_targets, sign_snapshot_and_timestamp, version, Expiry, Publication, SPEC_VERSION,
};
use super::UpdateError;
use crate::store::{Store, StoreError, TufKeyRecord, TufMetadataRecord};

/// The four top-level roles, as the root names them.
const ROLE_TYPES: [RoleType; 4] = [
    RoleType::Root,
    RoleType::Targets,
    RoleType::Snapshot,
    RoleType::Timestamp,
];

/// What a root submission changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub(crate) struct RootAccepted {
    /// The group.
    pub(crate) group_id: String,
    /// The new root's version.
    pub(crate) root_version: u64,
    /// Whether the service added cross-signatures with the current root
    /// keys it held (the rotation that takes the root offline).
    pub(crate) service_cross_signed: bool,
    /// Whether the service still signs targets; if not, each change waits
    /// for `tuf targets draft|sign|submit`.
    pub(crate) service_signs_targets: bool,
    /// The targets version now published, or awaiting the tenant's
    /// signatures.
    pub(crate) targets_version: Option<i64>,
}

/// What a targets submission published.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub(crate) struct TargetsAccepted {
    /// The group.
    pub(crate) group_id: String,
    /// The targets version published.
    pub(crate) targets_version: i64,
    /// The snapshot version over it.
    pub(crate) snapshot_version: i64,
    /// The timestamp version over that.
    pub(crate) timestamp_version: i64,
}

fn refused(reason: impl Into<String>) -> UpdateError {
    UpdateError::Refused(reason.into())
}

fn now_secs() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// The body as stored and served: what `tough`'s `SignedRole` writes.
fn stored_body<T: Serialize>(signed: &Signed<T>) -> Result<Vec<u8>, UpdateError> {
    let mut body = serde_json::to_vec_pretty(signed)
        .map_err(|e| UpdateError::Crypto(format!("signed metadata: {e}")))?;
    body.push(b'\n');
    Ok(body)
}

/// The rules of a well-formed root, beyond what parsing checked (key IDs
/// match their keys, no key listed twice).
fn check_shape(root: &Root) -> Result<(), UpdateError> {
    if !root.spec_version.starts_with("1.") {
        return Err(refused(format!(
            "the new root is for TUF {}; the service publishes TUF {SPEC_VERSION}",
            root.spec_version
        )));
    }
    if !root.consistent_snapshot {
        return Err(refused(
            "the new root turns consistent snapshots off; the service publishes consistent snapshots",
        ));
    }
    if root.expires.as_second() <= now_secs() {
        return Err(refused(format!("the new root expired at {}", root.expires)));
    }
    if let Some(extra) = root.roles.keys().find(|r| !ROLE_TYPES.contains(r)) {
        return Err(refused(format!(
            "the new root names an unknown role {extra}"
        )));
    }
    for role in ROLE_TYPES {
        let name = role;
        let keys = root
            .roles
            .get(&role)
            .ok_or_else(|| refused(format!("the new root has no {name} role")))?;
        let distinct: HashSet<_> = keys.keyids.iter().collect();
        if distinct.len() != keys.keyids.len() {
            return Err(refused(format!("the new root lists a {name} key twice")));
        }
        if keys.keyids.is_empty() || keys.keyids.len() > MAX_KEYS {
            return Err(refused(format!(
                "the new root gives the {name} role {} keys; 1 to {MAX_KEYS} are allowed",
                keys.keyids.len()
            )));
        }
        if keys.threshold.get() > keys.keyids.len() as u64 {
            return Err(refused(format!(
                "the new root's {name} threshold is {} but the role has only {} keys",
                keys.threshold,
                keys.keyids.len()
            )));
        }
        if let Some(missing) = keys.keyids.iter().find(|id| !root.keys.contains_key(*id)) {
            return Err(refused(format!(
                "the new root names {name} key {} but does not list it",
                hex::encode(missing)
            )));
        }
    }
    Ok(())
}

/// Snapshot and timestamp stay the service's online keys, unchanged.
fn check_online_roles(current: &Root, next: &Root) -> Result<(), UpdateError> {
    for role in [RoleType::Snapshot, RoleType::Timestamp] {
        let name = role;
        let (old, new) = (current.roles.get(&role), next.roles.get(&role));
        let same_keys = old.zip(new).is_some_and(|(old, new)| {
            old == new
                && new
                    .keyids
                    .iter()
                    .all(|id| current.keys.get(id) == next.keys.get(id))
        });
        if !same_keys {
            return Err(refused(format!(
                "the new root changes the {name} keys or threshold; {name} is signed online by \
                 the service, so its keys must stay the service's (as in the current root)"
            )));
        }
    }
    Ok(())
}

/// The service's current keys for `role` that `root` names for it.
async fn held_keys(
    store: &Store,
    wrap: &KeyWrap,
    tenant_id: &str,
    group_id: &str,
    role: &str,
    root: &Root,
    role_type: RoleType,
) -> Result<(Vec<RoleKey>, Vec<TufKeyRecord>), UpdateError> {
    let mut named = Vec::new();
    let mut others = Vec::new();
    for record in store.tuf_keys(tenant_id, group_id, role).await? {
        if names(root, role_type, &record.key_id) {
            named.push(RoleKey::unwrap(&record, wrap)?);
        } else {
            others.push(record);
        }
    }
    Ok((named, others))
}

fn threshold_refusal<T: Role + Serialize>(
    root: &Root,
    metadata: &Signed<T>,
    which: &str,
    why: &str,
) -> Result<(), UpdateError> {
    if root.verify_role(metadata).is_ok() {
        return Ok(());
    }
    let count = valid_signatures(root, metadata);
    Err(refused(format!(
        "the new {} has {} valid signature(s) by the {which}'s {} keys; {} needed ({why})",
        T::TYPE,
        count.valid,
        T::TYPE,
        count.threshold
    )))
}

/// Verifies a root signed offline and makes it the group's root.
pub(crate) async fn submit_root(
    store: &Store,
    wrap: &KeyWrap,
    tenant_id: &str,
    group_id: &str,
    body: serde_json::Value,
    expiry: &Expiry,
) -> Result<RootAccepted, UpdateError> {
    let mut next: Signed<Root> =
        serde_json::from_value(body).map_err(|e| refused(format!("not a signed TUF root: {e}")))?;
    ensure_repository(store, wrap, tenant_id, group_id, expiry).await?;
    let current = current_signed_root(store, group_id).await?.signed;
    let expected = current.version.get().saturating_add(1);
    if next.signed.version.get() != expected {
        return Err(refused(format!(
            "the new root is version {}; the group's root is version {}, so the next must be {expected} \
             (draft again from the current root)",
            next.signed.version, current.version
        )));
    }
    check_shape(&next.signed)?;
    check_online_roles(&current, &next.signed)?;

    // While the service holds the current root keys, it cross-signs.
    let (service_root, _) = held_keys(
        store,
        wrap,
        tenant_id,
        group_id,
        "root",
        &current,
        RoleType::Root,
    )
    .await?;
    let service_cross_signed = !service_root.is_empty();
    if service_cross_signed {
        let sources: Vec<_> = service_root.iter().map(RoleKey::source).collect();
        let cross = SignedRole::new(
            next.signed.clone(),
            &KeyHolder::Root(current.clone()),
            &sources,
            &SystemRandom::new(),
        )
        .await?;
        for signature in cross.signed().signatures.clone() {
            if !next.signatures.iter().any(|s| s.keyid == signature.keyid) {
                next.signatures.push(signature);
            }
        }
    }
    threshold_refusal(
        &current,
        &next,
        "current root",
        "TUF 1.0 §5.3.4: the current root must vouch for the next",
    )?;
    threshold_refusal(
        &next.signed,
        &next,
        "new root",
        "TUF 1.0 §5.3.4: the new root must be signed by its own keys",
    )?;

    // The service's root and targets keys the new root no longer names retire.
    let mut retire = Vec::new();
    for (role, role_type) in [("root", RoleType::Root), ("targets", RoleType::Targets)] {
        let (_, unnamed) = held_keys(
            store,
            wrap,
            tenant_id,
            group_id,
            role,
            &next.signed,
            role_type,
        )
        .await?;
        retire.extend(unnamed);
    }
    let record = TufMetadataRecord {
        tenant_id: tenant_id.to_owned(),
        group_id: group_id.to_owned(),
        role: "root".to_owned(),
        version: i64::try_from(next.signed.version.get())
            .map_err(|_| refused("root version out of range"))?,
        body: stored_body(&next)?,
        expires_at: next.signed.expires.as_millisecond(),
    };
    store
        .accept_tuf_root(&retire, &record)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => refused(format!(
                "root version {} of group {group_id} was stored meanwhile; draft again",
                record.version
            )),
            other => other.into(),
        })?;
    let signs_targets = service_signs_targets(store, tenant_id, group_id, &next.signed).await?;
    let targets_version = if store
        .latest_tuf_metadata(group_id, "targets")
        .await?
        .is_some()
        || signs_targets
    {
        Some(publish(store, wrap, tenant_id, group_id, expiry).await?)
    } else {
        None
    };
    Ok(RootAccepted {
        group_id: group_id.to_owned(),
        root_version: next.signed.version.get(),
        service_cross_signed,
        service_signs_targets: signs_targets,
        targets_version: targets_version.map(Publication::targets_version),
    })
}

/// The next targets of the group, unsigned, for the tenant's targets key
/// holders.
pub(crate) async fn targets_draft(
    store: &Store,
    wrap: &KeyWrap,
    tenant_id: &str,
    group_id: &str,
    expiry: &Expiry,
) -> Result<TargetsDraft, UpdateError> {
    ensure_repository(store, wrap, tenant_id, group_id, expiry).await?;
    let root = current_signed_root(store, group_id).await?;
    let next = version(next_version(store, group_id, "targets").await?)?;
    let targets = build_targets(
        store,
        tenant_id,
        group_id,
        next,
        expires_in(expiry.targets_secs)?,
    )
    .await?;
    Ok(TargetsDraft::new(group_id, root, targets))
}

/// Verifies targets signed offline and publishes them with snapshot and
/// timestamp signed online.
pub(crate) async fn submit_targets(
    store: &Store,
    wrap: &KeyWrap,
    tenant_id: &str,
    group_id: &str,
    body: serde_json::Value,
    expiry: &Expiry,
) -> Result<TargetsAccepted, UpdateError> {
    let targets: Signed<Targets> = serde_json::from_value(body)
        .map_err(|e| refused(format!("not signed TUF targets: {e}")))?;
    ensure_repository(store, wrap, tenant_id, group_id, expiry).await?;
    let root = current_signed_root(store, group_id).await?.signed;
    let expected = next_version(store, group_id, "targets").await?;
    let version = targets.signed.version;
    if i64::try_from(version.get()).ok() != Some(expected) {
        return Err(refused(format!(
            "the targets are version {version}; the next targets version of the group is {expected} \
             (draft again)"
        )));
    }
    if targets.signed.expires.as_second() <= now_secs() {
        return Err(refused(format!(
            "the targets expired at {}",
            targets.signed.expires
        )));
    }
    threshold_refusal(&root, &targets, "root", "the root names who signs targets")?;
    let current =
        build_targets(store, tenant_id, group_id, version, targets.signed.expires).await?;
    // Everything but version and expiry (which the draft chose) must be
    // what the service would publish now: targets, no delegations.
    if current != targets.signed {
        return Err(refused(
            "the signed targets are not what the group's deployments are now (a deployment \
             changed since the draft); draft and sign again",
        ));
    }
    let record = TufMetadataRecord {
        tenant_id: tenant_id.to_owned(),
        group_id: group_id.to_owned(),
        role: "targets".to_owned(),
        version: expected,
        body: stored_body(&targets)?,
        expires_at: targets.signed.expires.as_millisecond(),
    };
    let (snapshot, timestamp) =
        sign_snapshot_and_timestamp(store, wrap, &root, &record, expiry).await?;
    let accepted = TargetsAccepted {
        group_id: group_id.to_owned(),
        targets_version: expected,
        snapshot_version: snapshot.version,
        timestamp_version: timestamp.version,
    };
    store
        .add_tuf_metadata(&[record, snapshot, timestamp])
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => refused(format!(
                "targets version {expected} of group {group_id} was published meanwhile; draft again"
            )),
            other => other.into(),
        })?;
    Ok(accepted)
}
