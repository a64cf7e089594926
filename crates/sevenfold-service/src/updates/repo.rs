//! Building and signing a group's TUF repository.
//!
//! Every role is signed with `tough`'s `SignedRole` (canonical JSON, the
//! signature rules, length and hash of the exact bytes), the building block
//! of its `RepositoryEditor`. The roles are signed one by one rather than
//! through the editor because the editor needs the whole repository on disk,
//! while here each role's bytes live in the database and the timestamp is
//! re-signed alone, every few hours, by whichever replica gets there first.
//!
//! Layout (TUF 1.0, consistent snapshots): `N.root.json`, `N.targets.json`,
//! `N.snapshot.json`, `timestamp.json`; targets as `<sha256>.<name>`. The
//! targets are the images of the group's live deployments, newest deployment
//! first, one target per component (`<component-id>.imagepackage`), each
//! with the deltas to it in its custom metadata (`updates::delta`).

use std::collections::{BTreeSet, HashMap};
use std::num::NonZeroU64;

use aws_lc_rs::rand::SystemRandom;
use serde::Serialize;
use sevenfold_core::update::{TargetCustom, TargetDelta, TARGET_SUFFIX};
use sevenfold_pki::KeyWrap;
use tough::editor::signed::SignedRole;
use tough::key_source::KeySource;
use tough::schema::decoded::{Decoded, Hex};
use tough::schema::{
    Hashes, KeyHolder, Metafile, Role, RoleKeys, RoleType, Root, Signed, Snapshot, Target, Targets,
    Timestamp,
};
use tough::TargetName;

use super::keys::{RoleKey, ROLES};
use super::offline::names;
use super::UpdateError;
use crate::store::{DeploymentStatus, Store, StoreError, TufMetadataRecord};

/// TUF specification version written into every role.
pub(super) const SPEC_VERSION: &str = "1.0.0";
/// Attempts when another replica publishes at the same moment.
const PUBLISH_ATTEMPTS: usize = 5;

/// How long each role's signature is valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expiry {
    /// Root (tenant key; rotated rarely).
    pub root_secs: i64,
    /// Targets.
    pub targets_secs: i64,
    /// Snapshot.
    pub snapshot_secs: i64,
    /// Timestamp: short, so a frozen repository is noticed within it.
    pub timestamp_secs: i64,
}

impl Default for Expiry {
    fn default() -> Self {
        Expiry {
            root_secs: 365 * 86_400,
            targets_secs: 90 * 86_400,
            snapshot_secs: 30 * 86_400,
            timestamp_secs: 86_400,
        }
    }
}

impl Expiry {
    /// The default lifetimes with another timestamp lifetime.
    pub fn with_timestamp_secs(secs: u64) -> Expiry {
        Expiry {
            timestamp_secs: i64::try_from(secs.max(1)).unwrap_or(i64::MAX),
            ..Expiry::default()
        }
    }
}

/// `now + secs`, in whole seconds (what every TUF client parses).
pub(super) fn expires_in(secs: i64) -> Result<jiff::Timestamp, UpdateError> {
    let now = jiff::Timestamp::now().as_second();
    jiff::Timestamp::from_second(now.saturating_add(secs))
        .map_err(|e| UpdateError::Crypto(format!("expiry out of range: {e}")))
}

/// A stored version as TUF's non-zero version.
pub(super) fn version(v: i64) -> Result<NonZeroU64, UpdateError> {
    u64::try_from(v)
        .ok()
        .and_then(NonZeroU64::new)
        .ok_or_else(|| StoreError::Corrupt(format!("TUF version {v}")).into())
}

pub(super) fn record<T: Role + Serialize>(
    tenant_id: &str,
    group_id: &str,
    role: &str,
    signed: &SignedRole<T>,
    v: NonZeroU64,
    expires: jiff::Timestamp,
) -> Result<TufMetadataRecord, UpdateError> {
    Ok(TufMetadataRecord {
        tenant_id: tenant_id.to_owned(),
        group_id: group_id.to_owned(),
        role: role.to_owned(),
        version: i64::try_from(v.get()).map_err(|_| StoreError::Corrupt("version".into()))?,
        body: signed.buffer().clone(),
        expires_at: expires.as_millisecond(),
    })
}

fn meta_of(record: &TufMetadataRecord) -> Result<Metafile, UpdateError> {
    Ok(Metafile {
        length: Some(record.body.len() as u64),
        hashes: Some(Hashes {
            sha256: Decoded::<Hex>::from(
                aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &record.body)
                    .as_ref()
                    .to_vec(),
            ),
            _extra: HashMap::new(),
        }),
        version: version(record.version)?,
        _extra: HashMap::new(),
    })
}

/// Creates the group's repository (keys and version-1 root) if it has none.
/// Root, targets, snapshot and timestamp get one Ed25519 key each, threshold 1.
pub(crate) async fn ensure_repository(
    store: &Store,
    wrap: &KeyWrap,
    tenant_id: &str,
    group_id: &str,
    expiry: &Expiry,
) -> Result<(), UpdateError> {
    if store.latest_tuf_metadata(group_id, "root").await?.is_some() {
        return Ok(());
    }
    let mut keys = Vec::new();
    let mut root = Root {
        spec_version: SPEC_VERSION.to_owned(),
        consistent_snapshot: true,
        version: NonZeroU64::MIN,
        expires: expires_in(expiry.root_secs)?,
        keys: HashMap::new(),
        roles: HashMap::new(),
        _extra: HashMap::new(),
    };
    let mut root_key = None;
    for role in ROLES {
        let key = RoleKey::generate()?;
        let id: Decoded<Hex> = hex::decode(key.key_id())
            .map_err(|e| UpdateError::Crypto(e.to_string()))?
            .into();
        root.keys.insert(id.clone(), key.public().clone());
        root.roles.insert(
            role_type(role)?,
            RoleKeys {
                keyids: vec![id],
                threshold: NonZeroU64::MIN,
                _extra: HashMap::new(),
            },
        );
        keys.push(key.wrapped(wrap, tenant_id, group_id, role)?);
        if role == "root" {
            root_key = Some(key);
        }
    }
    let root_key = root_key.ok_or_else(|| UpdateError::Crypto("no root key".into()))?;
    let expires = root.expires;
    let signed = SignedRole::new(
        root.clone(),
        &KeyHolder::Root(root),
        &[root_key.source()],
        &SystemRandom::new(),
    )
    .await?;
    let record = record(
        tenant_id,
        group_id,
        "root",
        &signed,
        NonZeroU64::MIN,
        expires,
    )?;
    match store.create_tuf_repository(&keys, &record).await {
        // Another replica created it at the same moment: theirs stands.
        Ok(()) | Err(StoreError::Conflict(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn role_type(role: &str) -> Result<RoleType, UpdateError> {
    match role {
        "root" => Ok(RoleType::Root),
        "targets" => Ok(RoleType::Targets),
        "snapshot" => Ok(RoleType::Snapshot),
        "timestamp" => Ok(RoleType::Timestamp),
        other => Err(UpdateError::Crypto(format!("unknown TUF role {other}"))),
    }
}

/// The group's current root.
pub(super) async fn current_root(store: &Store, group_id: &str) -> Result<Root, UpdateError> {
    Ok(current_signed_root(store, group_id).await?.signed)
}

/// The group's current root with its signatures.
pub(crate) async fn current_signed_root(
    store: &Store,
    group_id: &str,
) -> Result<Signed<Root>, UpdateError> {
    let record = store
        .latest_tuf_metadata(group_id, "root")
        .await?
        .ok_or_else(|| StoreError::not_found("TUF root of group", group_id))?;
    serde_json::from_slice(&record.body)
        .map_err(|e| StoreError::Corrupt(format!("stored root.json: {e}")).into())
}

/// Whether the service holds a threshold of the keys `root` names for
/// `role` (for root and targets: false once the tenant took them offline,
/// `updates::submit`).
pub(crate) async fn service_holds(
    store: &Store,
    tenant_id: &str,
    group_id: &str,
    root: &Root,
    role: RoleType,
) -> Result<bool, UpdateError> {
    let Some(keys) = root.roles.get(&role) else {
        return Ok(false);
    };
    let held = store
        .tuf_keys(tenant_id, group_id, &role.to_string())
        .await?
        .iter()
        .filter(|k| names(root, role, &k.key_id))
        .count() as u64;
    Ok(held >= keys.threshold.get())
}

/// Whether the service signs targets itself; if not, each new targets
/// version waits for the tenant's signatures (`updates::submit`).
pub(crate) async fn service_signs_targets(
    store: &Store,
    tenant_id: &str,
    group_id: &str,
    root: &Root,
) -> Result<bool, UpdateError> {
    service_holds(store, tenant_id, group_id, root, RoleType::Targets).await
}

async fn sources(
    store: &Store,
    wrap: &KeyWrap,
    tenant_id: &str,
    group_id: &str,
    role: &str,
) -> Result<Vec<Box<dyn KeySource>>, UpdateError> {
    store
        .tuf_keys(tenant_id, group_id, role)
        .await?
        .iter()
        .map(|record| RoleKey::unwrap(record, wrap).map(|k| k.source()))
        .collect()
}

/// When the tenant holds the group's targets keys and the group's
/// deployments changed since the targets they last signed: the
/// deployments those targets carry (what devices still see). `None` when
/// nothing awaits their signatures.
pub(crate) async fn awaiting_signature(
    store: &Store,
    tenant_id: &str,
    group_id: &str,
) -> Result<Option<BTreeSet<String>>, UpdateError> {
    if store.latest_tuf_metadata(group_id, "root").await?.is_none() {
        return Ok(None);
    }
    let root = current_root(store, group_id).await?;
    if service_signs_targets(store, tenant_id, group_id, &root).await? {
        return Ok(None);
    }
    let signed = match store.latest_tuf_metadata(group_id, "targets").await? {
        Some(record) => {
            serde_json::from_slice::<Signed<Targets>>(&record.body)
                .map_err(|e| StoreError::Corrupt(format!("stored targets.json: {e}")))?
                .signed
        }
        None => Targets::new(SPEC_VERSION.to_owned(), NonZeroU64::MIN, expires_in(0)?),
    };
    let now = build_targets(store, tenant_id, group_id, signed.version, signed.expires).await?;
    if now.targets == signed.targets {
        return Ok(None);
    }
    Ok(Some(
        signed
            .targets
            .values()
            .filter_map(|t| t.custom.get("deployment_id"))
            .filter_map(|id| id.as_str().map(str::to_owned))
            .collect(),
    ))
}

/// The targets of the group: the images of its live deployments, the
/// newest deployment winning for each component.
pub(super) async fn build_targets(
    store: &Store,
    tenant_id: &str,
    group_id: &str,
    v: NonZeroU64,
    expires: jiff::Timestamp,
) -> Result<Targets, UpdateError> {
    let mut targets = Targets::new(SPEC_VERSION.to_owned(), v, expires);
    let mut seen = BTreeSet::new();
    let update_window = store.group(tenant_id, group_id).await?.update_window;
    for deployment in store.live_deployments(tenant_id, group_id).await? {
        let deltas = store.deployment_deltas(tenant_id, &deployment.id).await?;
        for published in store.deployment_images(tenant_id, &deployment.id).await? {
            let image = &published.image;
            if !seen.insert(image.component_id.clone()) {
                continue;
            }
            let custom = TargetCustom {
                component_id: image.component_id.clone(),
                name: image.name.clone(),
                version: image.version.clone(),
                security_version: u32::try_from(image.security_version).unwrap_or(0),
                image_type: image.image_type.clone(),
                deployment_id: deployment.id.clone(),
                rollout_percent: deployment.percent,
                halted: deployment.status == DeploymentStatus::Halted,
                delta: deltas
                    .iter()
                    .filter(|d| d.target_sha256 == published.file_sha256)
                    .map(|d| {
                        let delta = TargetDelta {
                            format: d.format.clone(),
                            name: d.name.clone(),
                            length: u64::try_from(d.delta_length).unwrap_or(0),
                            sha256: d.delta_sha256.clone(),
                        };
                        (d.base_sha256.clone(), delta)
                    })
                    .collect(),
                update_window: update_window.clone(),
            };
            let custom = match serde_json::to_value(&custom) {
                Ok(serde_json::Value::Object(map)) => map.into_iter().collect(),
                _ => return Err(UpdateError::Crypto("target custom metadata".into())),
            };
            let name = TargetName::new(format!("{}{TARGET_SUFFIX}", image.component_id))
                .map_err(|e| UpdateError::Crypto(format!("target name: {e}")))?;
            let sha256 = hex::decode(&published.file_sha256)
                .map_err(|_| StoreError::Corrupt(format!("file hash of image {}", image.id)))?;
            targets.targets.insert(
                name,
                Target {
                    length: u64::try_from(published.file_length).unwrap_or(0),
                    hashes: Hashes {
                        sha256: sha256.into(),
                        _extra: HashMap::new(),
                    },
                    custom,
                    _extra: HashMap::new(),
                },
            );
        }
    }
    Ok(targets)
}

/// What a publication did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Publication {
    /// New targets, snapshot and timestamp versions are out; the targets
    /// version.
    Signed(i64),
    /// The tenant holds the targets keys: the group's deployments changed,
    /// but devices see it only once the tenant signs targets this version
    /// (`sevenfold tuf targets draft|sign|submit`).
    AwaitingTargetsSignature(i64),
}

impl Publication {
    /// The targets version published, or awaiting signatures.
    pub(crate) fn targets_version(self) -> i64 {
        match self {
            Publication::Signed(v) | Publication::AwaitingTargetsSignature(v) => v,
        }
    }

    /// For the audit log.
    pub(crate) fn audit(self) -> serde_json::Value {
        match self {
            Publication::Signed(v) => serde_json::json!(v),
            Publication::AwaitingTargetsSignature(v) => {
                serde_json::json!({"awaiting_targets_signature": v})
            }
        }
    }
}

/// Publishes the group's current targets: new targets, snapshot and
/// timestamp versions, stored together. Retries when another replica
/// published the same versions first. When the tenant holds the targets
/// keys nothing is signed: the next targets version awaits them.
pub(crate) async fn publish(
    store: &Store,
    wrap: &KeyWrap,
    tenant_id: &str,
    group_id: &str,
    expiry: &Expiry,
) -> Result<Publication, UpdateError> {
    ensure_repository(store, wrap, tenant_id, group_id, expiry).await?;
    let root = current_root(store, group_id).await?;
    if !service_signs_targets(store, tenant_id, group_id, &root).await? {
        let next = next_version(store, group_id, "targets").await?;
        tracing::info!(
            group = group_id,
            targets_version = next,
            "targets await the tenant's signatures"
        );
        return Ok(Publication::AwaitingTargetsSignature(next));
    }
    let mut last = None;
    for _ in 0..PUBLISH_ATTEMPTS {
        match try_publish(store, wrap, tenant_id, group_id, expiry).await {
            Err(UpdateError::Store(StoreError::Conflict(e))) => last = Some(e),
            other => return other.map(Publication::Signed),
        }
    }
    Err(StoreError::Conflict(last.unwrap_or_default()).into())
}

pub(super) async fn next_version(
    store: &Store,
    group_id: &str,
    role: &str,
) -> Result<i64, UpdateError> {
    Ok(store
        .latest_tuf_metadata(group_id, role)
        .await?
        .map_or(1, |r| r.version.saturating_add(1)))
}

async fn try_publish(
    store: &Store,
    wrap: &KeyWrap,
    tenant_id: &str,
    group_id: &str,
    expiry: &Expiry,
) -> Result<i64, UpdateError> {
    let root = current_root(store, group_id).await?;
    let rng = SystemRandom::new();
    let tv = version(next_version(store, group_id, "targets").await?)?;
    let t_expires = expires_in(expiry.targets_secs)?;
    let targets = build_targets(store, tenant_id, group_id, tv, t_expires).await?;
    let keys = sources(store, wrap, tenant_id, group_id, "targets").await?;
    let signed = SignedRole::new(targets, &KeyHolder::Root(root.clone()), &keys, &rng).await?;
    let targets_record = record(tenant_id, group_id, "targets", &signed, tv, t_expires)?;
    let (snapshot_record, timestamp_record) =
        sign_snapshot_and_timestamp(store, wrap, &root, &targets_record, expiry).await?;
    store
        .add_tuf_metadata(&[targets_record, snapshot_record, timestamp_record])
        .await?;
    Ok(i64::try_from(tv.get()).unwrap_or(i64::MAX))
}

pub(super) async fn sign_snapshot_and_timestamp(
    store: &Store,
    wrap: &KeyWrap,
    root: &Root,
    targets: &TufMetadataRecord,
    expiry: &Expiry,
) -> Result<(TufMetadataRecord, TufMetadataRecord), UpdateError> {
    let (tenant_id, group_id) = (targets.tenant_id.as_str(), targets.group_id.as_str());
    let rng = SystemRandom::new();
    let sv = version(next_version(store, group_id, "snapshot").await?)?;
    let s_expires = expires_in(expiry.snapshot_secs)?;
    let mut snapshot = Snapshot::new(SPEC_VERSION.to_owned(), sv, s_expires);
    snapshot
        .meta
        .insert("targets.json".to_owned(), meta_of(targets)?);
    let keys = sources(store, wrap, tenant_id, group_id, "snapshot").await?;
    let signed = SignedRole::new(snapshot, &KeyHolder::Root(root.clone()), &keys, &rng).await?;
    let snapshot_record = record(tenant_id, group_id, "snapshot", &signed, sv, s_expires)?;
    let timestamp_record = sign_timestamp(store, wrap, root, &snapshot_record, expiry).await?;
    Ok((snapshot_record, timestamp_record))
}

async fn sign_timestamp(
    store: &Store,
    wrap: &KeyWrap,
    root: &Root,
    snapshot: &TufMetadataRecord,
    expiry: &Expiry,
) -> Result<TufMetadataRecord, UpdateError> {
    let (tenant_id, group_id) = (snapshot.tenant_id.as_str(), snapshot.group_id.as_str());
    let tsv = version(next_version(store, group_id, "timestamp").await?)?;
    let expires = expires_in(expiry.timestamp_secs)?;
    let mut timestamp = Timestamp::new(SPEC_VERSION.to_owned(), tsv, expires);
    timestamp
        .meta
        .insert("snapshot.json".to_owned(), meta_of(snapshot)?);
    let keys = sources(store, wrap, tenant_id, group_id, "timestamp").await?;
    let signed = SignedRole::new(
        timestamp,
        &KeyHolder::Root(root.clone()),
        &keys,
        &SystemRandom::new(),
    )
    .await?;
    record(tenant_id, group_id, "timestamp", &signed, tsv, expires)
}

/// Re-signs the group's timestamp over its current snapshot (the online
/// timestamp key's job, run by housekeeping). When the snapshot or the
/// targets are close to expiry too, republishes them as well.
pub(crate) async fn refresh(
    store: &Store,
    wrap: &KeyWrap,
    tenant_id: &str,
    group_id: &str,
    expiry: &Expiry,
) -> Result<(), UpdateError> {
    let now = jiff::Timestamp::now().as_millisecond();
    let (Some(snapshot), Some(targets)) = (
        store.latest_tuf_metadata(group_id, "snapshot").await?,
        store.latest_tuf_metadata(group_id, "targets").await?,
    ) else {
        return Ok(());
    };
    let half = |secs: i64| secs.saturating_mul(500);
    let root = current_root(store, group_id).await?;
    let targets_due = targets.expires_at - now < half(expiry.targets_secs);
    let snapshot_due = snapshot.expires_at - now < half(expiry.snapshot_secs);
    if service_signs_targets(store, tenant_id, group_id, &root).await? {
        if targets_due || snapshot_due {
            publish(store, wrap, tenant_id, group_id, expiry).await?;
            return Ok(());
        }
    } else {
        if targets_due {
            tracing::warn!(
                group = group_id,
                expires_at = targets.expires_at,
                "the targets signed by the tenant expire soon: sign a new version with \
                 `sevenfold tuf targets draft|sign|submit`"
            );
        }
        if snapshot_due {
            for _ in 0..PUBLISH_ATTEMPTS {
                let (snapshot, timestamp) =
                    sign_snapshot_and_timestamp(store, wrap, &root, &targets, expiry).await?;
                match store.add_tuf_metadata(&[snapshot, timestamp]).await {
                    Err(StoreError::Conflict(_)) => continue,
                    other => return Ok(other?),
                }
            }
            return Ok(());
        }
    }
    for _ in 0..PUBLISH_ATTEMPTS {
        let timestamp = sign_timestamp(store, wrap, &root, &snapshot, expiry).await?;
        match store.add_tuf_metadata(&[timestamp]).await {
            Err(StoreError::Conflict(_)) => continue,
            other => return Ok(other?),
        }
    }
    Ok(())
}
