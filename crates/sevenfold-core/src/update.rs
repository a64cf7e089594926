//! The update contract between service, device and operator: the custom
//! metadata of a TUF target, the progress a device reports, the rollout
//! membership rule both sides compute, and the deployment API bodies.
//!
//! TUF itself (roles, signatures, hashes, expiry) is the `tough` crate's
//! business on both sides; this module only fixes what Sevenfold adds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Suffix of every target name: `<component-id>.imagepackage`.
pub const TARGET_SUFFIX: &str = ".imagepackage";

/// Device API path prefix of a group's TUF metadata (`…/<version>.<role>.json`).
pub const TUF_METADATA_PATH: &str = "/device/v1/tuf/metadata/";
/// Device API path prefix of a group's targets (`…/<sha256>.<name>`).
pub const TUF_TARGETS_PATH: &str = "/device/v1/tuf/targets/";
/// Device API path a device posts [`ProgressReport`]s to.
pub const PROGRESS_PATH: &str = "/device/v1/updates/progress";

/// What Sevenfold puts in a TUF target's `custom` object. Signed by the
/// targets key together with the hash and length.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetCustom {
    /// The manifest's ComponentId.
    pub component_id: String,
    /// The manifest's Name.
    pub name: String,
    /// The manifest's Version.
    pub version: String,
    /// The manifest's SecurityVersion: the device refuses it below its counter.
    pub security_version: u32,
    /// "app" or "runtime".
    pub image_type: String,
    /// The deployment that published it (progress is reported against it).
    pub deployment_id: String,
    /// Share (0..=100) of the group that may install it; see [`in_rollout`].
    pub rollout_percent: u8,
    /// Halted or cancelled: devices that do not have it yet must not start.
    pub halted: bool,
    /// Binary deltas to this target, by the lowercase hex SHA-256 of the
    /// package file they start from (see [`crate::delta`]). A device whose
    /// installed package has that hash may fetch the delta instead; the
    /// rebuilt file is still checked against this target's signed hash.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub delta: BTreeMap<String, TargetDelta>,
    /// The group's update window (`HH:MM-HH:MM`, UTC; see
    /// [`crate::window::UpdateWindow`]): outside it a device may download
    /// this target but not apply it. Absent: any time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_window: Option<String>,
}

/// One delta of a target, signed with it in the target's custom metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetDelta {
    /// Delta format; only [`crate::delta::FORMAT`] exists.
    pub format: String,
    /// Name to fetch it under: `TUF_TARGETS_PATH` + `<sha256>.<name>`.
    pub name: String,
    /// Length of the delta file.
    pub length: u64,
    /// Lowercase hex SHA-256 of the delta file.
    pub sha256: String,
}

/// Suffix of every delta's name: `<component-id>.<base sha256 prefix>.delta`.
pub const DELTA_SUFFIX: &str = ".delta";

/// Whether `device_id` is among the `percent` share of a rollout of
/// `deployment_id`: the first eight bytes of
/// SHA-256(`"sevenfold rollout\0"` ‖ deployment ‖ `\0` ‖ device), taken
/// modulo 100, are below `percent`. Stable: raising the percentage only adds
/// devices; a device is in or out the same way on the service and on itself.
pub fn in_rollout(device_id: &str, deployment_id: &str, percent: u8) -> bool {
    if percent >= 100 {
        return true;
    }
    let mut hasher = sevenfold_rot::Hasher::new();
    hasher.update(b"sevenfold rollout\0");
    hasher.update(deployment_id.as_bytes());
    hasher.update(b"\0");
    hasher.update(device_id.as_bytes());
    let digest = hasher.finish();
    let mut word = [0u8; 8];
    for (w, b) in word.iter_mut().zip(digest.as_bytes().iter()) {
        *w = *b;
    }
    u64::from_be_bytes(word) % 100 < u64::from(percent)
}

/// A device's report on one deployment (`POST /device/v1/updates/progress`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProgressReport {
    /// The deployment, from the target's custom metadata.
    pub deployment_id: String,
    /// "downloading", "installed", "failed" or "rolled-back".
    pub state: String,
    /// Why it failed or rolled back (bounded by the service).
    #[serde(default)]
    pub reason: Option<String>,
}

/// `POST /api/v1/tenants/{tenant}/deployments`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDeployment {
    /// The device group (ID).
    pub group: String,
    /// Image IDs to publish (one per component).
    pub images: Vec<String>,
    /// Share of the group (1..=100); default: the group's rollout percentage.
    #[serde(default)]
    pub percent: Option<u8>,
    /// Halt when more than this share of the targeted devices failed; default 100 (never).
    #[serde(default)]
    pub max_failure_percent: Option<u8>,
}

/// `PATCH /api/v1/tenants/{tenant}/deployments/{id}`: raise the share.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateDeployment {
    /// New share of the group; it can only grow.
    pub percent: u8,
}

/// Per-device state of a deployment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeviceProgressInfo {
    /// The device.
    pub device_id: String,
    /// "pending", "downloading", "installed", "failed" or "rolled-back".
    pub state: String,
    /// Why it failed or rolled back.
    pub reason: Option<String>,
    /// Last report (RFC 3339), if any.
    pub updated_at: Option<String>,
}

/// Counts of devices per state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProgressCounts {
    /// Devices in the rollout's share of the group.
    pub targeted: u64,
    /// Targeted devices that have not reported.
    pub pending: u64,
    /// Downloading.
    pub downloading: u64,
    /// Installed and committed.
    pub installed: u64,
    /// Failed before switching.
    pub failed: u64,
    /// Rolled back after a failed health check.
    pub rolled_back: u64,
}

/// A deployment, as `deployment list|show` print it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeploymentInfo {
    /// Deployment ID.
    pub id: String,
    /// Device group ID.
    pub group_id: String,
    /// "active", "halted", "cancelled" or "superseded".
    pub status: String,
    /// Share of the group.
    pub percent: u8,
    /// Halt threshold.
    pub max_failure_percent: u8,
    /// Why it halted.
    pub halt_reason: Option<String>,
    /// Image IDs.
    pub images: Vec<String>,
    /// Creator.
    pub created_by: String,
    /// RFC 3339.
    pub created_at: String,
    /// Per-state counts.
    pub counts: ProgressCounts,
    /// The tenant holds the group's targets keys and devices do not see
    /// this deployment as it is now until they sign the group's next
    /// targets (`sevenfold tuf targets draft|sign|submit`).
    #[serde(default)]
    pub awaiting_targets_signature: bool,
    /// Whether the service is still making this deployment's deltas
    /// ("making": devices fetch full images meanwhile, the deltas are
    /// signed into the group's targets when done) or has made them
    /// ("ready").
    #[serde(default = "deltas_ready")]
    pub deltas_state: String,
    /// The deltas published with it (`show` only; empty in lists).
    #[serde(default)]
    pub deltas: Vec<DeltaInfo>,
    /// Per-device progress (`show` only; empty in lists).
    #[serde(default)]
    pub devices: Vec<DeviceProgressInfo>,
}

fn deltas_ready() -> String {
    "ready".to_owned()
}

/// A delta a deployment publishes: from a package file devices of the
/// group may run (the base) to one of the deployment's images.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeltaInfo {
    /// Component of the image.
    pub component_id: String,
    /// SHA-256 of the package file it starts from.
    pub base_sha256: String,
    /// Version of that package, when the service knows its image.
    pub base_version: Option<String>,
    /// SHA-256 of the package file it rebuilds.
    pub target_sha256: String,
    /// Name it is fetched under.
    pub name: String,
    /// Its length in bytes.
    pub length: u64,
    /// Its SHA-256.
    pub sha256: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollout_is_stable_monotonic_and_about_the_share() {
        let devices: Vec<String> = (0..2000).map(|i| format!("{i:064x}")).collect();
        let inside = |p: u8| devices.iter().filter(|d| in_rollout(d, "dep-1", p)).count();
        assert_eq!(inside(0), 0);
        assert_eq!(inside(100), devices.len());
        let half = inside(50);
        assert!((850..=1150).contains(&half), "{half}");
        // Raising the share only adds devices.
        for d in &devices {
            if in_rollout(d, "dep-1", 20) {
                assert!(in_rollout(d, "dep-1", 50));
            }
        }
        // Another deployment picks another subset.
        let same = devices
            .iter()
            .filter(|d| in_rollout(d, "dep-1", 50) == in_rollout(d, "dep-2", 50))
            .count();
        assert!(same < 1200, "{same}");
    }

    #[test]
    fn target_custom_round_trips_and_refuses_unknown_fields() {
        let custom = TargetCustom {
            component_id: "c".into(),
            name: "blink".into(),
            version: "1.0.0".into(),
            security_version: 2,
            image_type: "app".into(),
            deployment_id: "d".into(),
            rollout_percent: 50,
            halted: false,
            delta: BTreeMap::from([(
                "ab".repeat(32),
                TargetDelta {
                    format: crate::delta::FORMAT.into(),
                    name: "c.abababab.delta".into(),
                    length: 10,
                    sha256: "cd".repeat(32),
                },
            )]),
            update_window: Some("02:00-04:00".into()),
        };
        let json = serde_json::to_value(&custom).unwrap();
        assert_eq!(
            serde_json::from_value::<TargetCustom>(json.clone()).unwrap(),
            custom
        );
        let mut extra = json;
        extra["surprise"] = serde_json::json!(1);
        assert!(serde_json::from_value::<TargetCustom>(extra).is_err());
    }
}
