//! `status.json`: what the agent last did, for `sevenfold agent status` and
//! for people and monitoring on the device.
//!
//! A file format (its field names are a stable contract, like the CLI's
//! JSON), written atomically after every boot and every attestation attempt.
//! Times are RFC 3339 in UTC. Unknown fields are ignored and missing ones
//! default, so an older or newer agent can read it.

use serde::{Deserialize, Serialize};
use sevenfold_core::attestation::{BootFailure, ComponentKind};
use time::OffsetDateTime;

use crate::apps::AppStatusEntry;
use crate::boot::BootReport;

/// File name inside the state directory.
pub(crate) const STATUS_FILE: &str = "status.json";

/// The verdict string of a passed attestation.
pub const VERDICT_PASS: &str = "pass";
/// The verdict string of a failed attestation.
pub const VERDICT_FAIL: &str = "fail";

/// The contents of `status.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Status {
    /// The device (64 hex characters).
    pub device_id: String,
    /// When this file was last written.
    pub updated_at: Option<String>,
    /// When the last measured boot ran.
    pub booted_at: Option<String>,
    /// The last boot's measurements, in order (its segment of the power
    /// cycle's event log).
    pub boot_measurements: Vec<MeasurementStatus>,
    /// Components the last boot refused to measure and start.
    pub boot_failures: Vec<BootFailure>,
    /// When the last verdict arrived.
    pub last_attestation_at: Option<String>,
    /// The last verdict: `pass` or `fail` (none before the first).
    pub verdict: Option<String>,
    /// Why the last attestation failed (empty on pass).
    pub reasons: Vec<String>,
    /// The tenant that owns the device (from the last pass).
    pub tenant_id: Option<String>,
    /// When the certificate in `device-cert.pem` expires (none when there is none).
    pub certificate_not_after: Option<String>,
    /// The last attempt that got no verdict (network, rate limit, server
    /// error), cleared by the next verdict.
    pub last_error: Option<String>,
    /// When the runtime loop attests next.
    pub next_renewal: Option<String>,
    /// The apps in their compartments (empty when the agent runs none).
    pub apps: Vec<AppStatusEntry>,
}

/// One measurement in [`Status::boot_measurements`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeasurementStatus {
    /// `runtime` or `application`.
    pub kind: ComponentKind,
    /// The register it was extended into.
    pub register: u32,
    /// Component ID.
    pub component_id: String,
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// The digest extended (hex SHA-256).
    pub digest: String,
}

impl Status {
    /// A status with nothing recorded yet.
    pub fn new(device_id: String) -> Status {
        Status {
            device_id,
            ..Status::default()
        }
    }

    /// Records a boot; attestation fields are kept (they describe files
    /// that survive restarts).
    pub(crate) fn record_boot(&mut self, report: &BootReport, at: OffsetDateTime) {
        self.booted_at = Some(rfc3339(at));
        self.boot_measurements = report
            .this_boot()
            .iter()
            .map(|e| MeasurementStatus {
                kind: e.kind,
                register: e.kind.register().get(),
                component_id: e.component_id.clone(),
                name: e.name.clone(),
                version: e.version.clone(),
                digest: e.digest.to_hex(),
            })
            .collect();
        self.boot_failures = report.failures.clone();
        self.next_renewal = None;
        self.apps.clear();
    }
}

/// RFC 3339 in UTC, seconds precision.
pub(crate) fn rfc3339(at: OffsetDateTime) -> String {
    let at = at
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(at);
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| at.unix_timestamp().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips_and_tolerates_unknown_fields() {
        let mut status = Status::new("ab".repeat(32));
        status.verdict = Some(VERDICT_PASS.into());
        status.boot_failures.push(BootFailure {
            component: "x.imagepackage".into(),
            reason: "bad".into(),
        });
        let json = serde_json::to_string(&status).unwrap();
        assert_eq!(serde_json::from_str::<Status>(&json).unwrap(), status);
        let extended = json.replacen('{', "{\"later_field\":1,", 1);
        assert_eq!(serde_json::from_str::<Status>(&extended).unwrap(), status);
        assert_eq!(
            rfc3339(OffsetDateTime::from_unix_timestamp(0).unwrap()),
            "1970-01-01T00:00:00Z"
        );
    }
}
