//! The stored objects, as plain Rust types.
//!
//! These are domain types, not wire types: they derive no `Serialize`, and the
//! API layer maps them to its own request and response bodies, so a column
//! added here never silently becomes part of the HTTP contract. Timestamps are
//! unix milliseconds (`i64`); ids are strings (UUIDs, or lowercase hex for
//! device ids, signing-key ids and image digests).

/// A customer organisation: owns devices, products, groups, images and keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// Server-assigned id (a UUID).
    pub id: String,
    /// Unique, human-chosen name.
    pub name: String,
    /// When it was created (unix ms).
    pub created_at: i64,
}

/// An operator account. Authenticates with API tokens; acts in a tenant
/// through a [`Role`] there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Server-assigned id (a UUID).
    pub id: String,
    /// Unique login name.
    pub name: String,
    /// May manage server-wide settings (tenants, manufacturer CAs, users).
    pub server_admin: bool,
    /// When it was created (unix ms).
    pub created_at: i64,
}

/// What a user may do in one tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Read only.
    Reader,
    /// Read and change, but not delete.
    Contributor,
    /// Everything, including roles and deletions.
    Administrator,
}

impl Role {
    /// The stored and wire spelling: "administrator", "contributor", "reader".
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Administrator => "administrator",
            Role::Contributor => "contributor",
            Role::Reader => "reader",
        }
    }

    /// Parses [`Role::as_str`]'s spelling; `None` for anything else.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "administrator" => Some(Role::Administrator),
            "contributor" => Some(Role::Contributor),
            "reader" => Some(Role::Reader),
            _ => None,
        }
    }

    /// Whether this role grants at least what `needed` grants
    /// (Administrator ⊇ Contributor ⊇ Reader).
    pub fn at_least(self, needed: Role) -> bool {
        self >= needed
    }
}

/// One user's role in one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleAssignment {
    /// The tenant.
    pub tenant_id: String,
    /// The user.
    pub user_id: String,
    /// The user's name, for listings.
    pub user_name: String,
    /// The role.
    pub role: Role,
}

/// An authenticated operator: the user behind a token, with all their roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user.
    pub user: User,
    /// `(tenant_id, role)` for every tenant the user has a role in.
    pub roles: Vec<(String, Role)>,
}

impl Principal {
    /// The user's role in `tenant_id`, if any.
    pub fn role_in(&self, tenant_id: &str) -> Option<Role> {
        self.roles
            .iter()
            .find(|(tenant, _)| tenant == tenant_id)
            .map(|(_, role)| *role)
    }
}

/// A kind of device a tenant builds; owns device groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    /// Server-assigned id (a UUID).
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Name, unique within the tenant.
    pub name: String,
    /// Free text.
    pub description: String,
    /// When it was created (unix ms).
    pub created_at: i64,
}

/// Which updates a device group accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpdatePolicy {
    /// Runtime and application updates.
    AcceptAll,
    /// Runtime updates only; applications are sideloaded (development).
    NoAppUpdates,
}

impl UpdatePolicy {
    /// The stored and wire spelling: "accept-all", "no-app-updates".
    pub fn as_str(self) -> &'static str {
        match self {
            UpdatePolicy::AcceptAll => "accept-all",
            UpdatePolicy::NoAppUpdates => "no-app-updates",
        }
    }

    /// Parses [`UpdatePolicy::as_str`]'s spelling.
    pub fn parse(s: &str) -> Option<UpdatePolicy> {
        match s {
            "accept-all" => Some(UpdatePolicy::AcceptAll),
            "no-app-updates" => Some(UpdatePolicy::NoAppUpdates),
            _ => None,
        }
    }
}

/// Which runtime releases a device group follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuntimeFeed {
    /// Released runtimes.
    Stable,
    /// Pre-release runtimes, for evaluation before they reach stable.
    Evaluation,
}

impl RuntimeFeed {
    /// The stored and wire spelling: "stable", "evaluation".
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeFeed::Stable => "stable",
            RuntimeFeed::Evaluation => "evaluation",
        }
    }

    /// Parses [`RuntimeFeed::as_str`]'s spelling.
    pub fn parse(s: &str) -> Option<RuntimeFeed> {
        match s {
            "stable" => Some(RuntimeFeed::Stable),
            "evaluation" => Some(RuntimeFeed::Evaluation),
            _ => None,
        }
    }
}

/// A set of devices of one product that receive the same updates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceGroup {
    /// Server-assigned id (a UUID).
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// The product it belongs to.
    pub product_id: String,
    /// Name, unique within the product.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Which updates its devices accept.
    pub update_policy: UpdatePolicy,
    /// Which runtime releases its devices follow.
    pub runtime_feed: RuntimeFeed,
    /// Share of the group (0..=100) new deployments reach.
    pub rollout_percent: u8,
    /// Whether its devices send crash details (app output tail, full
    /// backtrace) with failure reports; off by default, for privacy.
    pub crash_details: bool,
    /// When it was created (unix ms).
    pub created_at: i64,
    /// Maintenance window (`HH:MM-HH:MM`, UTC) for updates that restart
    /// apps; `None`: any time.
    pub update_window: Option<String>,
}

/// The fields of a group to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewGroup {
    /// Name, unique within the product.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Which updates its devices accept.
    pub update_policy: UpdatePolicy,
    /// Which runtime releases its devices follow.
    pub runtime_feed: RuntimeFeed,
    /// 0..=100.
    pub rollout_percent: u8,
}

impl NewGroup {
    /// A group named `name` with the defaults: accept-all, stable feed, 100 %.
    pub fn named(name: impl Into<String>) -> NewGroup {
        NewGroup {
            name: name.into(),
            description: String::new(),
            update_policy: UpdatePolicy::AcceptAll,
            runtime_feed: RuntimeFeed::Stable,
            rollout_percent: 100,
        }
    }
}

/// A partial update of a group: `None` keeps the stored value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupUpdate {
    /// New name (unique within the product).
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New update policy.
    pub update_policy: Option<UpdatePolicy>,
    /// New runtime feed.
    pub runtime_feed: Option<RuntimeFeed>,
    /// New rollout share, 0..=100.
    pub rollout_percent: Option<u8>,
    /// Crash details on or off.
    pub crash_details: Option<bool>,
    /// New update window: `Some(None)` clears it (validated by the caller).
    pub update_window: Option<Option<String>>,
}

/// What a trusted manufacturer CA vouches for. Neither kind is accepted
/// for the other's purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CaKind {
    /// Signs Sevenfold endorsement certificates over device keys (claims
    /// and attestations check them).
    Endorsement,
    /// A TPM maker's CA: signs TPM endorsement key (EK) certificates
    /// (credential activation checks them).
    Tpm,
}

impl CaKind {
    /// The stored and wire spelling: "endorsement", "tpm".
    pub fn as_str(self) -> &'static str {
        match self {
            CaKind::Endorsement => "endorsement",
            CaKind::Tpm => "tpm",
        }
    }

    /// Parses [`CaKind::as_str`]'s spelling.
    pub fn parse(s: &str) -> Option<CaKind> {
        match s {
            "endorsement" => Some(CaKind::Endorsement),
            "tpm" => Some(CaKind::Tpm),
            _ => None,
        }
    }
}

/// A manufacturer CA the server trusts, to endorse device keys or (a TPM
/// maker's) to certify TPM endorsement keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManufacturerCa {
    /// Lowercase hex SHA-256 of the certificate's DER.
    pub fingerprint: String,
    /// The certificate's subject, for display.
    pub subject: String,
    /// The certificate (DER).
    pub cert_der: Vec<u8>,
    /// What it vouches for.
    pub kind: CaKind,
    /// When it was trusted (unix ms).
    pub added_at: i64,
}

/// Whether a device accepts sideloaded software.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceMode {
    /// Only cloud-deployed, signed software (the safe default).
    Field,
    /// Development: sideloading and debugging allowed.
    Development,
}

impl DeviceMode {
    /// The stored and wire spelling: "field", "development".
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceMode::Field => "field",
            DeviceMode::Development => "development",
        }
    }

    /// Parses [`DeviceMode::as_str`]'s spelling.
    pub fn parse(s: &str) -> Option<DeviceMode> {
        match s {
            "field" => Some(DeviceMode::Field),
            "development" => Some(DeviceMode::Development),
            _ => None,
        }
    }
}

/// A device claimed by a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Device id: lowercase hex SHA-256 of its root-of-trust public key (64 chars).
    pub id: String,
    /// The tenant that holds the claim.
    pub tenant_id: String,
    /// Its device group, if assigned.
    pub group_id: Option<String>,
    /// Root-of-trust public key (SubjectPublicKeyInfo DER).
    pub public_key_der: Vec<u8>,
    /// Endorsement certificate (DER) from the manufacturer CA.
    pub endorsement_der: Vec<u8>,
    /// Fingerprint of the manufacturer CA that endorsed it.
    pub manufacturer_fingerprint: String,
    /// Field or development.
    pub mode: DeviceMode,
    /// When it was claimed by its current tenant (unix ms).
    pub claimed_at: i64,
    /// When it was revoked (unix ms); a revoked device gets no certificates.
    pub revoked_at: Option<i64>,
    /// When it last talked to the service (unix ms).
    pub last_seen: Option<i64>,
    /// Whether its latest authentic verdict (a pass, or a refusal of
    /// evidence its key signed) is a fail: no pass since, so every
    /// certificate it holds predates the failure.
    pub failed_attestation: bool,
}

/// A device to claim, after the API has verified its endorsement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDevice {
    /// Device id (64 lowercase hex characters).
    pub id: String,
    /// Root-of-trust public key (SubjectPublicKeyInfo DER).
    pub public_key_der: Vec<u8>,
    /// Endorsement certificate (DER).
    pub endorsement_der: Vec<u8>,
    /// Fingerprint of the endorsing manufacturer CA.
    pub manufacturer_fingerprint: String,
}

/// Where a device transfer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransferStatus {
    /// Requested by the source tenant, awaiting the destination.
    Pending,
    /// Accepted: the device moved.
    Completed,
    /// Cancelled by either side before acceptance.
    Cancelled,
}

impl TransferStatus {
    /// The stored and wire spelling: "pending", "completed", "cancelled".
    pub fn as_str(self) -> &'static str {
        match self {
            TransferStatus::Pending => "pending",
            TransferStatus::Completed => "completed",
            TransferStatus::Cancelled => "cancelled",
        }
    }

    /// Parses [`TransferStatus::as_str`]'s spelling.
    pub fn parse(s: &str) -> Option<TransferStatus> {
        match s {
            "pending" => Some(TransferStatus::Pending),
            "completed" => Some(TransferStatus::Completed),
            "cancelled" => Some(TransferStatus::Cancelled),
            _ => None,
        }
    }
}

/// A request to move a device from one tenant to another; both tenants'
/// administrators take part (the source requests, the destination accepts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// Server-assigned id (a UUID).
    pub id: String,
    /// The device.
    pub device_id: String,
    /// The tenant giving the device up.
    pub from_tenant: String,
    /// The tenant receiving it.
    pub to_tenant: String,
    /// Where it stands.
    pub status: TransferStatus,
    /// Who requested it (user id).
    pub requested_by: String,
    /// When (unix ms).
    pub requested_at: i64,
    /// Who accepted or cancelled it (user id).
    pub decided_by: Option<String>,
    /// When (unix ms).
    pub decided_at: Option<i64>,
}

/// A public key a tenant signs image packages with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKey {
    /// Key id (hex), as carried in the package signature.
    pub key_id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Human name.
    pub name: String,
    /// The public key (SubjectPublicKeyInfo DER).
    pub spki_der: Vec<u8>,
    /// When it was added (unix ms).
    pub added_at: i64,
    /// When it was revoked (unix ms); packages it signed are refused after.
    pub revoked_at: Option<i64>,
}

/// An uploaded image package (metadata; the bytes are in the blob store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Lowercase hex SHA-256 of the package file.
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// The manifest's ComponentId.
    pub component_id: String,
    /// The manifest's Name.
    pub name: String,
    /// The manifest's Version.
    pub version: String,
    /// The manifest's SecurityVersion (anti-rollback).
    pub security_version: i64,
    /// "app" or "runtime" (kept as text; the API layer owns the vocabulary).
    pub image_type: String,
    /// Package size in bytes.
    pub size: i64,
    /// Key id of the signing key that signed it.
    pub signer_key_id: String,
    /// Where the bytes are in the blob store.
    pub blob_key: String,
    /// The manifest, as JSON text.
    pub manifest_json: String,
    /// When it was uploaded (unix ms).
    pub uploaded_at: i64,
    /// Who uploaded it (user id).
    pub uploaded_by: String,
}

/// An image to record, after the API has verified the package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewImage {
    /// Lowercase hex SHA-256 of the package file.
    pub id: String,
    /// The manifest's ComponentId.
    pub component_id: String,
    /// The manifest's Name.
    pub name: String,
    /// The manifest's Version.
    pub version: String,
    /// The manifest's SecurityVersion.
    pub security_version: i64,
    /// "app" or "runtime".
    pub image_type: String,
    /// Package size in bytes.
    pub size: i64,
    /// Key id of the signing key (must be one of the tenant's keys).
    pub signer_key_id: String,
    /// Where the bytes are in the blob store.
    pub blob_key: String,
    /// The manifest, as JSON text.
    pub manifest_json: String,
    /// Who uploaded it (user id).
    pub uploaded_by: String,
}

/// How an audited attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditOutcome {
    /// It was done.
    Ok,
    /// It was refused (authentication or authorisation).
    Denied,
    /// It was allowed but failed.
    Failed,
}

impl AuditOutcome {
    /// The stored and wire spelling: "ok", "denied", "failed".
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Ok => "ok",
            AuditOutcome::Denied => "denied",
            AuditOutcome::Failed => "failed",
        }
    }

    /// Parses [`AuditOutcome::as_str`]'s spelling.
    pub fn parse(s: &str) -> Option<AuditOutcome> {
        match s {
            "ok" => Some(AuditOutcome::Ok),
            "denied" => Some(AuditOutcome::Denied),
            "failed" => Some(AuditOutcome::Failed),
            _ => None,
        }
    }
}

/// One entry of the hash-chained audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Position in the log: 1, 2, 3, ... without gaps.
    pub seq: i64,
    /// When it was appended (unix ms).
    pub at: i64,
    /// Who acted (user name or id; "anonymous" for unauthenticated attempts).
    pub actor: String,
    /// The tenant acted in, if any.
    pub tenant_id: Option<String>,
    /// What was attempted, e.g. "device.claim".
    pub action: String,
    /// What it was attempted on, e.g. a device id.
    pub target: String,
    /// How it ended.
    pub outcome: AuditOutcome,
    /// Where the request came from (client address).
    pub source: String,
    /// Further details, as JSON text.
    pub details: String,
    /// Hash of the previous entry (64 zeros for the first).
    pub prev_hash: String,
    /// Hex SHA-256 over this entry's fields and `prev_hash`.
    pub hash: String,
}

/// An audit entry to append; the store assigns `seq`, `at` and the hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditEntry {
    /// Who acted.
    pub actor: String,
    /// The tenant acted in, if any.
    pub tenant_id: Option<String>,
    /// What was attempted.
    pub action: String,
    /// What it was attempted on.
    pub target: String,
    /// How it ended.
    pub outcome: AuditOutcome,
    /// Where the request came from.
    pub source: String,
    /// Further details, as JSON text (use "{}" for none).
    pub details: String,
}

/// Which audit entries to list. All conditions must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only entries in this tenant.
    pub tenant_id: Option<String>,
    /// Only entries by this actor.
    pub actor: Option<String>,
    /// Only entries at or after this time (unix ms).
    pub since: Option<i64>,
    /// Only entries after this seq (keyset pagination).
    pub after_seq: Option<i64>,
    /// At most this many, clamped to 1..=1000.
    pub limit: u32,
}

impl Default for AuditFilter {
    fn default() -> AuditFilter {
        AuditFilter {
            tenant_id: None,
            actor: None,
            since: None,
            after_seq: None,
            limit: Page::DEFAULT_LIMIT,
        }
    }
}

/// The result of walking the whole audit chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditVerification {
    /// How many entries verified: all of them when the chain holds, otherwise
    /// those before the first broken one.
    pub entries: u64,
    /// The first broken entry's seq and why, or `None` if the chain holds.
    pub first_broken: Option<(i64, String)>,
}

impl AuditVerification {
    /// Whether the chain verified.
    pub fn is_ok(&self) -> bool {
        self.first_broken.is_none()
    }
}

/// One page of a keyset-paginated listing: the items with id greater than
/// `after`, in id order. The next page starts after the last id returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Return only items whose id sorts after this one.
    pub after: Option<String>,
    /// At most this many items, clamped to 1..=[`Page::MAX_LIMIT`].
    pub limit: u32,
}

impl Page {
    /// The largest page.
    pub const MAX_LIMIT: u32 = 1000;
    /// The page size when none is asked for.
    pub const DEFAULT_LIMIT: u32 = 100;

    /// The first page of `limit` items.
    pub fn first(limit: u32) -> Page {
        Page { after: None, limit }
    }

    /// The page of `limit` items after `id`.
    pub fn after(id: impl Into<String>, limit: u32) -> Page {
        Page {
            after: Some(id.into()),
            limit,
        }
    }

    /// `limit` clamped to 1..=[`Page::MAX_LIMIT`].
    pub fn effective_limit(&self) -> u32 {
        clamp_limit(self.limit)
    }
}

impl Default for Page {
    fn default() -> Page {
        Page::first(Page::DEFAULT_LIMIT)
    }
}

/// Clamps a requested page size to 1..=[`Page::MAX_LIMIT`].
pub(crate) fn clamp_limit(limit: u32) -> u32 {
    limit.clamp(1, Page::MAX_LIMIT)
}
