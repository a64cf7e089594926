//! Offline signing by the tenant's key holders: draft files for the next
//! root and the next targets, and adding one signature to them.
//!
//! Root and targets keys may belong to the tenant and never reach the
//! service. Changing what they sign then runs in three steps, each on the
//! machine that has what it needs:
//!
//! 1. **draft** (online): the next version, unsigned. A root draft is made
//!    by the CLI from the group's current root ([`RootDraft::new`]); a
//!    targets draft by the service from the group's live deployments.
//! 2. **sign** (offline, once per key holder): [`RootDraft::sign`] /
//!    [`TargetsDraft::sign`] add one signature with one key file, and
//!    refuse a key that has no say in the draft.
//! 3. **submit** (online): the service verifies thresholds, versions and
//!    shape, failing closed, and publishes (`updates::submit`).
//!
//! A draft file is a small JSON envelope around standard TUF metadata: the
//! metadata being signed plus the root that says who may sign it (for a
//! root rotation, the *current* root, whose keys must cross-sign, TUF 1.0
//! §5.3.4). The envelope is only a convenience for the key holders; the
//! service trusts its own copy of the current root, never the envelope's.
//! All signing and verification is `tough`'s (`SignedRole`,
//! `Root::verify_role`): canonical JSON and the signature rules are not
//! written here.

use std::collections::HashSet;
use std::num::NonZeroU64;

use aws_lc_rs::rand::SystemRandom;
use serde::{Deserialize, Serialize};
use tough::editor::signed::SignedRole;
use tough::schema::decoded::{Decoded, Hex};
use tough::schema::key::Key;
use tough::schema::{KeyHolder, Role, RoleKeys, RoleType, Root, Signature, Signed, Targets};

use super::keys::RoleKey;
use super::repo::expires_in;
use super::UpdateError;

/// `format` of a root draft file.
pub const ROOT_DRAFT_FORMAT: &str = "sevenfold-tuf-root-draft/1";
/// `format` of a targets draft file.
pub const TARGETS_DRAFT_FORMAT: &str = "sevenfold-tuf-targets-draft/1";
/// Most keys a role may have.
pub const MAX_KEYS: usize = 16;

/// A role's new keys and how many of them must sign.
#[derive(Clone, Debug)]
pub struct NewRoleKeys {
    /// The public keys (TUF JSON form).
    pub keys: Vec<Key>,
    /// Signatures needed.
    pub threshold: u64,
}

/// How far a draft is from its threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Threshold {
    /// Valid signatures by keys of the role.
    pub valid: u64,
    /// Signatures needed.
    pub threshold: u64,
}

impl Threshold {
    /// Whether the draft has enough.
    pub fn met(&self) -> bool {
        self.valid >= self.threshold
    }
}

/// The next root version of a group, and the signatures it has so far.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootDraft {
    /// [`ROOT_DRAFT_FORMAT`].
    pub format: String,
    /// The device group whose repository it is for.
    pub group_id: String,
    /// The group's root when the draft was made: a threshold of its root
    /// keys must sign the next one.
    pub current: Signed<Root>,
    /// The next root, with the signatures added so far.
    pub next: Signed<Root>,
}

/// Signature counts of a root draft, against both roots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootProgress {
    /// The draft's version.
    pub version: u64,
    /// Root keys of the current root.
    pub current_root: Threshold,
    /// Root keys of the new root.
    pub new_root: Threshold,
}

/// The next targets version of a group, and the signatures it has so far.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetsDraft {
    /// [`TARGETS_DRAFT_FORMAT`].
    pub format: String,
    /// The device group whose repository it is for.
    pub group_id: String,
    /// The group's root when the draft was made: it names the targets keys.
    pub root: Signed<Root>,
    /// The next targets, with the signatures added so far.
    pub targets: Signed<Targets>,
}

/// Which roots a key signed a draft as.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signing {
    /// The key's TUF key ID.
    pub key_id: String,
    /// "current root", "new root", "targets".
    pub signed_as: Vec<String>,
}

/// One role of a root: who signs it. Shown to key holders before they
/// sign a draft, and by `tuf show`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RoleSummary {
    /// "root", "targets", "snapshot", "timestamp".
    pub role: String,
    /// Its key IDs.
    pub key_ids: Vec<String>,
    /// Signatures needed from them.
    pub threshold: u64,
}

/// What a root draft changes and how far its signing got.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootDraftSummary {
    /// The group.
    pub group_id: String,
    /// The current root's version.
    pub current_version: u64,
    /// The new root's version.
    pub version: u64,
    /// When the new root expires (RFC 3339).
    pub expires: String,
    /// The new root's roles.
    pub roles: Vec<RoleSummary>,
    /// Signatures so far.
    pub progress: RootProgress,
}

/// What a targets draft lists and how far its signing got.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetsDraftSummary {
    /// The group.
    pub group_id: String,
    /// The targets version.
    pub version: u64,
    /// When they expire (RFC 3339).
    pub expires: String,
    /// Target names and their SHA-256.
    pub targets: Vec<(String, String)>,
    /// Signatures so far by the targets keys.
    pub progress: Threshold,
}

/// A public key file: TUF JSON (`{"keytype":…,"keyval":…,"scheme":…}`),
/// as `sevenfold tuf key generate` writes next to the private key.
pub fn parse_public_key(bytes: &[u8]) -> Result<Key, UpdateError> {
    serde_json::from_slice(bytes).map_err(|e| {
        refused(format!(
            "not a TUF public key file (JSON with keytype, keyval and scheme): {e}"
        ))
    })
}

/// The TUF key ID of a public key, hex.
pub fn key_id(key: &Key) -> Result<String, UpdateError> {
    key_id_of(key).map(hex::encode)
}

/// A signed root as the service serves it (`GET …/tuf/root`).
pub fn parse_signed_root(value: serde_json::Value) -> Result<Signed<Root>, UpdateError> {
    serde_json::from_value(value).map_err(|e| refused(format!("not a signed TUF root: {e}")))
}

/// The four roles of `root`, in TUF's order.
pub(crate) fn roles_of(root: &Root) -> Vec<RoleSummary> {
    [
        (RoleType::Root, "root"),
        (RoleType::Targets, "targets"),
        (RoleType::Snapshot, "snapshot"),
        (RoleType::Timestamp, "timestamp"),
    ]
    .into_iter()
    .filter_map(|(role, name)| {
        root.roles.get(&role).map(|keys| RoleSummary {
            role: name.to_owned(),
            key_ids: keys.keyids.iter().map(hex::encode).collect(),
            threshold: keys.threshold.get(),
        })
    })
    .collect()
}

fn refused(reason: impl Into<String>) -> UpdateError {
    UpdateError::Refused(reason.into())
}

fn key_id_of(key: &Key) -> Result<Decoded<Hex>, UpdateError> {
    key.key_id()
        .map_err(|e| UpdateError::Crypto(format!("TUF key ID: {e}")))
}

/// Checks a role's size: 1 to [`MAX_KEYS`] distinct keys, a threshold
/// between 1 and their number.
pub(crate) fn check_role_size(keys: usize, threshold: u64) -> Result<(), UpdateError> {
    if keys == 0 || keys > MAX_KEYS || threshold == 0 || threshold > keys as u64 {
        return Err(refused(format!(
            "a role needs 1 to {MAX_KEYS} keys and a threshold between 1 and the number of keys \
             (asked: {keys} keys, threshold {threshold})"
        )));
    }
    Ok(())
}

/// Gives `role` the keys `keys`, `threshold` of which must sign, and drops
/// the keys no role names any more.
pub(crate) fn set_role_keys(
    root: &mut Root,
    role: RoleType,
    keys: &[Key],
    threshold: u64,
) -> Result<(), UpdateError> {
    let mut ids = Vec::new();
    for key in keys {
        let id = key_id_of(key)?;
        if ids.contains(&id) {
            return Err(refused(format!(
                "key {} is given twice for the {role} role",
                hex::encode(&id)
            )));
        }
        root.keys.insert(id.clone(), key.clone());
        ids.push(id);
    }
    check_role_size(ids.len(), threshold)?;
    root.roles.insert(
        role,
        RoleKeys {
            keyids: ids,
            threshold: NonZeroU64::new(threshold).ok_or_else(|| refused("threshold 0"))?,
            _extra: Default::default(),
        },
    );
    let used: HashSet<_> = root
        .roles
        .values()
        .flat_map(|r| r.keyids.iter().cloned())
        .collect();
    root.keys.retain(|id, _| used.contains(id));
    Ok(())
}

/// Whether `key_id` is one of `role`'s keys in `root`.
pub(crate) fn names(root: &Root, role: RoleType, key_id: &str) -> bool {
    root.roles
        .get(&role)
        .is_some_and(|r| r.keyids.iter().any(|id| hex::encode(id.as_ref()) == key_id))
}

/// Valid signatures on `metadata` by `root`'s keys for its role, counted
/// by `tough`'s verifier: with the threshold raised out of reach, its
/// refusal reports how many signatures were valid.
pub(crate) fn valid_signatures<T: Role + Serialize>(
    root: &Root,
    metadata: &Signed<T>,
) -> Threshold {
    let Some(role) = root.roles.get(&T::TYPE) else {
        return Threshold {
            valid: 0,
            threshold: u64::MAX,
        };
    };
    let threshold = role.threshold.get();
    let mut probe = root.clone();
    if let Some(role) = probe.roles.get_mut(&T::TYPE) {
        role.threshold = NonZeroU64::MAX;
    }
    let valid = match probe.verify_role(metadata) {
        Err(tough::schema::Error::SignatureThreshold { valid, .. }) => valid,
        Ok(()) => u64::MAX,
        Err(_) => 0,
    };
    Threshold { valid, threshold }
}

/// Adds `key`'s signature over `metadata` as one of `holder`'s keys for
/// the metadata's role (replacing an earlier signature by the same key).
/// `SignedRole` refuses to sign a non-root role below its threshold, as
/// one holder's key alone is; it signs here under a copy of the root whose
/// threshold is 1 (the signature covers only the metadata, so it is the
/// same), and the threshold is checked when the draft is submitted.
async fn add_signature<T: Role + Serialize + Clone>(
    metadata: &mut Signed<T>,
    holder: &Root,
    key: &RoleKey,
) -> Result<(), UpdateError> {
    let mut one_holder = holder.clone();
    if let Some(role) = one_holder.roles.get_mut(&T::TYPE) {
        role.threshold = NonZeroU64::MIN;
    }
    let signed = SignedRole::new(
        metadata.signed.clone(),
        &KeyHolder::Root(one_holder),
        &[key.source()],
        &SystemRandom::new(),
    )
    .await?;
    let fresh: Vec<Signature> = signed.signed().signatures.clone();
    if fresh.is_empty() {
        return Err(UpdateError::Crypto(format!(
            "key {} made no signature",
            key.key_id()
        )));
    }
    for signature in fresh {
        metadata.signatures.retain(|s| s.keyid != signature.keyid);
        metadata.signatures.push(signature);
    }
    Ok(())
}

fn parse_envelope<T: for<'de> Deserialize<'de>>(
    bytes: &[u8],
    what: &str,
    format: &str,
    found: impl Fn(&T) -> &str,
) -> Result<T, UpdateError> {
    let draft: T = serde_json::from_slice(bytes)
        .map_err(|e| refused(format!("not a {what} draft file: {e}")))?;
    if found(&draft) != format {
        return Err(refused(format!(
            "not a {what} draft file: format {:?}, expected {format:?}",
            found(&draft)
        )));
    }
    Ok(draft)
}

fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>, UpdateError> {
    let mut bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| UpdateError::Crypto(format!("draft file: {e}")))?;
    bytes.push(b'\n');
    Ok(bytes)
}

impl RootDraft {
    /// The next root after `current`: the same roles and keys, except the
    /// root keys (and the targets keys if given) replaced, the version one
    /// up, expiring `expires_in_secs` from now. Unsigned.
    pub fn new(
        group_id: &str,
        current: Signed<Root>,
        root_keys: &NewRoleKeys,
        targets_keys: Option<&NewRoleKeys>,
        expires_in_secs: i64,
    ) -> Result<RootDraft, UpdateError> {
        if expires_in_secs <= 0 {
            return Err(refused("a root must expire in the future"));
        }
        let mut next = current.signed.clone();
        next.version = next
            .version
            .checked_add(1)
            .ok_or_else(|| refused("the root version cannot go higher"))?;
        next.expires = expires_in(expires_in_secs)?;
        set_role_keys(
            &mut next,
            RoleType::Root,
            &root_keys.keys,
            root_keys.threshold,
        )?;
        if let Some(targets) = targets_keys {
            set_role_keys(
                &mut next,
                RoleType::Targets,
                &targets.keys,
                targets.threshold,
            )?;
        }
        Ok(RootDraft {
            format: ROOT_DRAFT_FORMAT.to_owned(),
            group_id: group_id.to_owned(),
            current,
            next: Signed {
                signed: next,
                signatures: Vec::new(),
            },
        })
    }

    /// Reads a draft file.
    pub fn parse(bytes: &[u8]) -> Result<RootDraft, UpdateError> {
        parse_envelope(bytes, "root", ROOT_DRAFT_FORMAT, |d: &RootDraft| &d.format)
    }

    /// The draft file's bytes.
    pub fn to_json(&self) -> Result<Vec<u8>, UpdateError> {
        to_json(self)
    }

    /// Adds `key`'s signature: as a root key of the current root, of the
    /// new root, or both. Refuses a key that is neither.
    pub async fn sign(&mut self, key: &RoleKey) -> Result<Signing, UpdateError> {
        let id = key.key_id();
        let mut signed_as = Vec::new();
        let holders = [
            (&self.current.signed, "current root"),
            (&self.next.signed, "new root"),
        ];
        let mut roots = Vec::new();
        for (root, name) in holders {
            if names(root, RoleType::Root, id) {
                roots.push(root.clone());
                signed_as.push(name.to_owned());
            }
        }
        if roots.is_empty() {
            return Err(refused(format!(
                "key {id} is not a root key of the current root (version {}) nor of the new root \
                 (version {}), so its signature would not count; use a key the draft names",
                self.current.signed.version, self.next.signed.version
            )));
        }
        for root in &roots {
            add_signature(&mut self.next, root, key).await?;
        }
        Ok(Signing {
            key_id: id.to_owned(),
            signed_as,
        })
    }

    /// What the draft changes, and its signatures so far.
    pub fn summary(&self) -> RootDraftSummary {
        RootDraftSummary {
            group_id: self.group_id.clone(),
            current_version: self.current.signed.version.get(),
            version: self.next.signed.version.get(),
            expires: self.next.signed.expires.to_string(),
            roles: roles_of(&self.next.signed),
            progress: self.progress(),
        }
    }

    /// Valid signatures so far, against the current and the new root.
    pub fn progress(&self) -> RootProgress {
        RootProgress {
            version: self.next.signed.version.get(),
            current_root: valid_signatures(&self.current.signed, &self.next),
            new_root: valid_signatures(&self.next.signed, &self.next),
        }
    }
}

impl TargetsDraft {
    /// A draft of `targets` under `root`. Unsigned.
    pub fn new(group_id: &str, root: Signed<Root>, targets: Targets) -> TargetsDraft {
        TargetsDraft {
            format: TARGETS_DRAFT_FORMAT.to_owned(),
            group_id: group_id.to_owned(),
            root,
            targets: Signed {
                signed: targets,
                signatures: Vec::new(),
            },
        }
    }

    /// Reads a draft file.
    pub fn parse(bytes: &[u8]) -> Result<TargetsDraft, UpdateError> {
        parse_envelope(
            bytes,
            "targets",
            TARGETS_DRAFT_FORMAT,
            |d: &TargetsDraft| &d.format,
        )
    }

    /// The draft file's bytes.
    pub fn to_json(&self) -> Result<Vec<u8>, UpdateError> {
        to_json(self)
    }

    /// Adds `key`'s signature as a targets key. Refuses a key the root
    /// does not name for targets.
    pub async fn sign(&mut self, key: &RoleKey) -> Result<Signing, UpdateError> {
        let id = key.key_id();
        if !names(&self.root.signed, RoleType::Targets, id) {
            return Err(refused(format!(
                "key {id} is not a targets key of root version {}, so its signature would not count",
                self.root.signed.version
            )));
        }
        add_signature(&mut self.targets, &self.root.signed, key).await?;
        Ok(Signing {
            key_id: id.to_owned(),
            signed_as: vec!["targets".to_owned()],
        })
    }

    /// What the draft lists, and its signatures so far.
    pub fn summary(&self) -> TargetsDraftSummary {
        let mut targets: Vec<(String, String)> = self
            .targets
            .signed
            .targets
            .iter()
            .map(|(name, t)| (name.raw().to_owned(), hex::encode(&t.hashes.sha256)))
            .collect();
        targets.sort();
        TargetsDraftSummary {
            group_id: self.group_id.clone(),
            version: self.targets.signed.version.get(),
            expires: self.targets.signed.expires.to_string(),
            targets,
            progress: self.progress(),
        }
    }

    /// Valid signatures so far.
    pub fn progress(&self) -> Threshold {
        valid_signatures(&self.root.signed, &self.targets)
    }
}
