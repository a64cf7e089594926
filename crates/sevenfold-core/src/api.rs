//! Bodies of the operator API (`/api/v1`), shared by the service and the CLI.
//!
//! These types are the wire contract: their field names are stable, requests
//! refuse unknown fields (so a typo is an error, not a silent default), and
//! each derives `ToSchema` so the service's OpenAPI document is generated
//! from the very types it serialises. Timestamps are RFC 3339 strings in UTC.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An error body in the style of RFC 9457 (`application/problem+json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// A URI reference naming the problem type (`about:blank` or a Sevenfold type).
    #[serde(rename = "type")]
    pub problem_type: String,
    /// Short summary of the problem type.
    pub title: String,
    /// HTTP status code.
    pub status: u16,
    /// What went wrong in this case and, where possible, what to do.
    pub detail: String,
}

/// Who the caller is, and where they have roles.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Whoami {
    /// User name.
    pub user: String,
    /// Whether the user administers the server itself (creates tenants, trusts manufacturers).
    pub server_admin: bool,
    /// The user's roles, one per tenant.
    pub roles: Vec<TenantRole>,
}

/// A role in one tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TenantRole {
    /// Tenant ID.
    pub tenant_id: String,
    /// Tenant name.
    pub tenant_name: String,
    /// `administrator`, `contributor` or `reader`.
    pub role: String,
}

/// `POST /tenants`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// Unique tenant name.
    pub name: String,
}

/// A tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TenantInfo {
    /// Tenant ID (UUID).
    pub id: String,
    /// Tenant name.
    pub name: String,
    /// When it was created.
    pub created_at: String,
}

/// `POST /tenants/{tenant}/roles`: grant a user a role (creating the user if new).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddRole {
    /// User name.
    pub user: String,
    /// `administrator`, `contributor` or `reader`.
    pub role: String,
}

/// A user's role in a tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RoleInfo {
    /// User name.
    pub user: String,
    /// `administrator`, `contributor` or `reader`.
    pub role: String,
    /// A new API token, present only when this call created the user. Shown once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// `POST /tenants/{tenant}/products`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProduct {
    /// Product name, unique in the tenant.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
}

/// A product and its device groups.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProductInfo {
    /// Product ID.
    pub id: String,
    /// Name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// When it was created.
    pub created_at: String,
    /// Its device groups.
    pub device_groups: Vec<GroupInfo>,
}

/// `POST /tenants/{tenant}/device-groups`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGroup {
    /// Product ID.
    pub product_id: String,
    /// Group name, unique in the product.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// `accept-all` (default) or `no-app-updates`.
    #[serde(default)]
    pub update_policy: Option<String>,
    /// `stable` (default) or `evaluation`.
    #[serde(default)]
    pub runtime_feed: Option<String>,
    /// Share of the group a rollout reaches, 0 to 100 (default 100).
    #[serde(default)]
    pub rollout_percent: Option<u8>,
}

/// `PATCH /tenants/{tenant}/device-groups/{group}`: only the given fields change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateGroup {
    /// New name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `accept-all` or `no-app-updates`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_policy: Option<String>,
    /// `stable` or `evaluation`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_feed: Option<String>,
    /// 0 to 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_percent: Option<u8>,
    /// Whether devices send crash details (app output tail, full backtrace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crash_details: Option<bool>,
    /// Maintenance window `HH:MM-HH:MM` (UTC) for updates that restart
    /// apps; the empty string clears it (any time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_window: Option<String>,
}

/// A device group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GroupInfo {
    /// Group ID.
    pub id: String,
    /// Product ID.
    pub product_id: String,
    /// Name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// `accept-all` or `no-app-updates`.
    pub update_policy: String,
    /// `stable` or `evaluation`.
    pub runtime_feed: String,
    /// 0 to 100.
    pub rollout_percent: u8,
    /// Whether devices send crash details (app output tail, full backtrace)
    /// with failure reports; off by default, for privacy.
    #[serde(default)]
    pub crash_details: bool,
    /// When it was created.
    pub created_at: String,
    /// Maintenance window (`HH:MM-HH:MM`, UTC) for updates that restart
    /// apps; absent: any time.
    #[serde(default)]
    pub update_window: Option<String>,
}

/// What a manufacturer CA is trusted for. Neither kind is accepted for the
/// other's purpose.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ManufacturerKind {
    /// Signs Sevenfold endorsement certificates over device keys
    /// (`sevenfold manufacturer endorse`); claims and attestations check them.
    #[default]
    Endorsement,
    /// A TPM maker's CA (root or intermediate): signs the EK certificates
    /// that TPM credential activation checks.
    Tpm,
}

/// `POST /manufacturer-cas`: trust a manufacturer CA (server administrators only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrustManufacturer {
    /// The CA certificate, PEM.
    pub certificate_pem: String,
    /// What it is trusted for (default: `endorsement`).
    #[serde(default)]
    pub kind: ManufacturerKind,
}

/// A trusted manufacturer CA.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ManufacturerCaInfo {
    /// SHA-256 of the certificate DER, hex.
    pub fingerprint: String,
    /// Certificate subject.
    pub subject: String,
    /// What it is trusted for.
    #[serde(default)]
    pub kind: ManufacturerKind,
    /// When it was trusted.
    pub added_at: String,
}

/// `POST /tenants/{tenant}/devices`: claim a device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimDevice {
    /// Device ID (64 hex characters).
    pub device_id: String,
    /// The device's endorsement certificate from its manufacturer, PEM.
    pub endorsement_pem: String,
}

/// `PUT /tenants/{tenant}/devices/{device}/group`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignDevice {
    /// Device group ID.
    pub group_id: String,
}

/// A device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeviceInfo {
    /// Device ID.
    pub id: String,
    /// Device group ID, if assigned.
    pub group_id: Option<String>,
    /// `field` or `development`.
    pub mode: String,
    /// When it was claimed by this tenant.
    pub claimed_at: String,
    /// When it was revoked, if it was.
    pub revoked_at: Option<String>,
    /// Fingerprint of the manufacturer CA its endorsement chains to.
    pub manufacturer: String,
}

/// One page of devices.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DevicePage {
    /// Devices on this page, by ID.
    pub devices: Vec<DeviceInfo>,
    /// Pass as `after` to get the next page; absent on the last page.
    pub next: Option<String>,
    /// Devices matching the filter, in all pages.
    pub total: u64,
}

/// `POST /tenants/{tenant}/transfers`: offer a device to another tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestTransfer {
    /// Device ID.
    pub device_id: String,
    /// Destination tenant ID.
    pub to_tenant: String,
}

/// A device transfer between tenants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TransferInfo {
    /// Transfer ID.
    pub id: String,
    /// Device ID.
    pub device_id: String,
    /// Source tenant ID.
    pub from_tenant: String,
    /// Destination tenant ID.
    pub to_tenant: String,
    /// `pending`, `completed` or `cancelled`.
    pub status: String,
    /// Who offered it.
    pub requested_by: String,
    /// When.
    pub requested_at: String,
    /// Who accepted or cancelled it.
    pub decided_by: Option<String>,
    /// When.
    pub decided_at: Option<String>,
}

/// `POST /tenants/{tenant}/signing-keys`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddSigningKey {
    /// A label.
    pub name: String,
    /// The public key, PEM (`sevenfold keygen` writes `KEY.pub.pem`).
    pub public_key_pem: String,
}

/// A tenant's image signing key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SigningKeyInfo {
    /// Key ID: SHA-256 of the SubjectPublicKeyInfo, hex.
    pub key_id: String,
    /// Label.
    pub name: String,
    /// `ecdsa-p256` or `ed25519`.
    pub algorithm: String,
    /// When it was added.
    pub added_at: String,
    /// When it was revoked, if it was.
    pub revoked_at: Option<String>,
}

/// An uploaded image package.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImageInfo {
    /// Image ID: the package digest, hex.
    pub id: String,
    /// Component ID from the manifest.
    pub component_id: String,
    /// App name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Security version.
    pub security_version: u32,
    /// `Application` or `Runtime`.
    pub image_type: String,
    /// Package size in bytes.
    pub size: u64,
    /// Key ID of the signer.
    pub signer_key_id: String,
    /// When it was uploaded.
    pub uploaded_at: String,
    /// Who uploaded it.
    pub uploaded_by: String,
}

/// One page of images.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImagePage {
    /// Images on this page, by ID.
    pub images: Vec<ImageInfo>,
    /// Pass as `after` for the next page.
    pub next: Option<String>,
}

/// An audit log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntryInfo {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// When.
    pub at: String,
    /// Who (user name, or `anonymous`).
    pub actor: String,
    /// Tenant it concerns, if any.
    pub tenant_id: Option<String>,
    /// What, e.g. `device.claim`.
    pub action: String,
    /// The object acted on.
    pub target: String,
    /// `ok`, `denied` or `failed`.
    pub outcome: String,
    /// Client address.
    pub source: String,
    /// Details (JSON).
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    /// This entry's chain hash.
    pub hash: String,
}

/// One page of audit entries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    /// Entries by sequence number.
    pub entries: Vec<AuditEntryInfo>,
    /// Pass as `after` for the next page.
    pub next: Option<i64>,
}

/// Result of checking the audit chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditVerifyReport {
    /// Entries checked.
    pub entries: u64,
    /// Whether the whole chain is intact.
    pub intact: bool,
    /// First entry where the chain breaks.
    pub first_broken_seq: Option<i64>,
    /// Why it breaks there.
    pub reason: Option<String>,
}

/// `PUT /tenants/{tenant}/devices/{device}/mode`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetDeviceMode {
    /// `development` (accepts developer-signed sideloads) or `field`.
    pub mode: String,
}

/// One attestation verdict of a device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AttestationInfo {
    /// When.
    pub at: String,
    /// `pass` or `fail`.
    pub verdict: String,
    /// Why it failed (empty on pass).
    pub reasons: Vec<String>,
    /// What the device measured: kind, component_id, name, version, digest.
    #[schema(value_type = Object)]
    pub measurements: serde_json::Value,
    /// Serial of the certificate issued on a pass.
    pub certificate_serial: Option<String>,
    /// Its expiry.
    pub certificate_not_after: Option<String>,
    /// Client address of the device.
    pub source: String,
}

/// `POST /runtime-releases` (server administrators).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddRuntimeRelease {
    /// Hex SHA-256 of the runtime executable.
    pub digest: String,
    /// Version label.
    pub version: String,
}

/// A runtime build the service accepts (unless revoked).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RuntimeReleaseInfo {
    /// Hex SHA-256 of the runtime executable.
    pub digest: String,
    /// Version label.
    pub version: String,
    /// When it was added.
    pub added_at: String,
    /// Who added it.
    pub added_by: String,
    /// When it was revoked, if it was.
    pub revoked_at: Option<String>,
}

/// A generation of the tenant's device CA.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TenantCaInfo {
    /// 1, 2, … (the highest issues new certificates).
    pub generation: i64,
    /// SHA-256 of the certificate, hex.
    pub fingerprint: String,
    /// Expiry.
    pub not_after: String,
    /// The certificate, PEM.
    pub certificate_pem: String,
}

/// `POST /tenants/{tenant}/ca/proof-of-possession`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProofOfPossessionRequest {
    /// The verification code a third-party service asked to see signed.
    pub verification_code: String,
}

/// A certificate proving possession of the tenant CA's key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProofOfPossession {
    /// Certificate (PEM) with the verification code as its subject, signed by the tenant CA.
    pub certificate_pem: String,
}
