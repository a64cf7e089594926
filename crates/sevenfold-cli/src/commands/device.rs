//! `sevenfold device claim|list|show|assign|enable-development|enable-field-test|transfer|revoke|attestation`.

use std::collections::HashMap;
use std::process::ExitCode;

use reqwest::Method;
use serde::Serialize;
use sevenfold_core::api::{
    AssignDevice, AttestationInfo, ClaimDevice, DeviceInfo, DevicePage, ProductInfo,
    RequestTransfer, SetDeviceMode, TransferInfo,
};

use crate::cli::{DeviceArgs, DeviceCommand, OutputMode, PageArgs, TransferCommand};
use crate::client::{looks_like_uuid, Client};
use crate::files;
use crate::output::{fields, or_dash, success, table, Render};

impl Render for DeviceInfo {
    fn human(&self) -> String {
        format!(
            "Device {}\n{}",
            self.id,
            fields(&[
                ("group", or_dash(self.group_id.as_deref())),
                ("mode", self.mode.clone()),
                ("claimed", self.claimed_at.clone()),
                ("revoked", or_dash(self.revoked_at.as_deref())),
                ("manufacturer", self.manufacturer.clone()),
            ])
        )
    }
}

/// `device list`: a page (or all pages) of devices.
#[derive(Serialize)]
struct DeviceList {
    devices: Vec<DeviceInfo>,
    /// Pass as `--after` for the next page; `null` on the last.
    next: Option<String>,
    total: u64,
    /// Group ID → `PRODUCT/GROUP`, for people.
    #[serde(skip)]
    group_names: HashMap<String, String>,
}

impl Render for DeviceList {
    fn human(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .devices
            .iter()
            .map(|d| {
                let group = d.group_id.as_ref().map(|g| {
                    self.group_names
                        .get(g)
                        .cloned()
                        .unwrap_or_else(|| g.clone())
                });
                vec![
                    d.id.clone(),
                    or_dash(group.as_deref()),
                    d.mode.clone(),
                    d.claimed_at.clone(),
                    if d.revoked_at.is_some() {
                        "revoked"
                    } else {
                        ""
                    }
                    .to_owned(),
                ]
            })
            .collect();
        let mut text = table(
            &["DEVICE ID", "GROUP", "MODE", "CLAIMED", ""],
            &rows,
            "No devices. Claim one with `sevenfold device claim DEVICE_ID --endorsement CERT.pem`.",
        );
        text.push_str(&format!("{} of {}\n", self.devices.len(), self.total));
        if let Some(next) = &self.next {
            text.push_str(&format!(
                "More: pass --after {next} for the next page, or --all.\n"
            ));
        }
        text
    }
}

impl Render for TransferInfo {
    fn human(&self) -> String {
        format!(
            "Transfer {} ({})\n{}",
            self.id,
            self.status,
            fields(&[
                ("device", self.device_id.clone()),
                ("from tenant", self.from_tenant.clone()),
                ("to tenant", self.to_tenant.clone()),
                (
                    "requested",
                    format!("{} by {}", self.requested_at, self.requested_by)
                ),
                (
                    "decided",
                    match (&self.decided_at, &self.decided_by) {
                        (Some(at), Some(by)) => format!("{at} by {by}"),
                        (Some(at), None) => at.clone(),
                        _ => "-".to_owned(),
                    },
                ),
            ])
        )
    }
}

impl Render for Vec<TransferInfo> {
    fn human(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .iter()
            .map(|t| {
                vec![
                    t.id.clone(),
                    t.device_id.clone(),
                    t.from_tenant.clone(),
                    t.to_tenant.clone(),
                    t.status.clone(),
                    t.requested_at.clone(),
                ]
            })
            .collect();
        table(
            &[
                "TRANSFER ID",
                "DEVICE",
                "FROM TENANT",
                "TO TENANT",
                "STATUS",
                "REQUESTED",
            ],
            &rows,
            "No transfers.",
        )
    }
}

/// `device revoke`: the device, now revoked (JSON: the device itself).
#[derive(Serialize)]
#[serde(transparent)]
struct Revoked(DeviceInfo);

impl Render for Revoked {
    fn human(&self) -> String {
        format!(
            "Revoked device {}: from now on it fails attestation and its certificate is refused.\n{}",
            self.0.id,
            fields(&[
                ("revoked", or_dash(self.0.revoked_at.as_deref())),
                ("group", or_dash(self.0.group_id.as_deref())),
                ("mode", self.0.mode.clone()),
            ])
        )
    }
}

/// `device attestation`: verdicts, newest first (JSON: the array of them).
#[derive(Serialize)]
#[serde(transparent)]
struct AttestationHistory {
    attestations: Vec<AttestationInfo>,
    #[serde(skip)]
    device_id: String,
}

impl Render for AttestationHistory {
    fn human(&self) -> String {
        let Some(latest) = self.attestations.first() else {
            return format!(
                "Device {} has not attested yet: its agent attests when it connects to the \
                 service, and again at least daily.\n",
                self.device_id
            );
        };
        let mut text = format!(
            "Device {}: latest attestation {} at {}\n",
            self.device_id,
            verdict(latest),
            latest.at
        );
        if !latest.reasons.is_empty() {
            text.push_str("  reasons:\n");
            for reason in &latest.reasons {
                text.push_str(&format!("    - {reason}\n"));
            }
        }
        let certificate = match (&latest.certificate_serial, &latest.certificate_not_after) {
            (Some(serial), Some(until)) => format!("serial {serial}, valid until {until}"),
            (Some(serial), None) => format!("serial {serial}"),
            _ => "none issued".to_owned(),
        };
        text.push_str(&fields(&[
            ("certificate", certificate),
            ("from", latest.source.clone()),
        ]));
        text.push_str("  measurements:\n");
        for line in measurement_table(&latest.measurements).lines() {
            text.push_str(&format!("    {line}\n"));
        }
        let rows: Vec<Vec<String>> = self
            .attestations
            .iter()
            .map(|a| {
                vec![
                    a.at.clone(),
                    verdict(a),
                    if a.reasons.is_empty() {
                        "-".to_owned()
                    } else {
                        a.reasons.join("; ")
                    },
                ]
            })
            .collect();
        text.push_str(&format!(
            "History, newest first ({} shown):\n",
            self.attestations.len()
        ));
        text.push_str(&table(&["TIME", "VERDICT", "REASONS"], &rows, ""));
        text
    }
}

/// `PASS`, `FAIL` (or whatever else the server said, in capitals).
fn verdict(a: &AttestationInfo) -> String {
    a.verdict.to_uppercase()
}

/// The measurements of one attestation (an array of objects with `kind`,
/// `component_id`, `name`, `version`, `digest`) as a table.
fn measurement_table(measurements: &serde_json::Value) -> String {
    let cell = |m: &serde_json::Value, key: &str| match m.get(key) {
        Some(serde_json::Value::String(s)) => s.clone(),
        None | Some(serde_json::Value::Null) => "-".to_owned(),
        Some(other) => other.to_string(),
    };
    let rows: Vec<Vec<String>> = measurements
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|m| {
            vec![
                cell(m, "kind"),
                cell(m, "name"),
                cell(m, "version"),
                cell(m, "component_id"),
                cell(m, "digest"),
            ]
        })
        .collect();
    table(
        &["KIND", "NAME", "VERSION", "COMPONENT", "DIGEST"],
        &rows,
        "none recorded",
    )
}

pub(crate) async fn run(mode: OutputMode, args: DeviceArgs) -> anyhow::Result<ExitCode> {
    let client = Client::connect(&args.conn, &args.tenant)?;
    let tenant = client.tenant_id().await?;
    let t = tenant.as_str();
    match args.command {
        DeviceCommand::Claim {
            device_id,
            endorsement,
        } => {
            let body = ClaimDevice {
                device_id,
                endorsement_pem: files::read_text(&endorsement)?,
            };
            let claimed: DeviceInfo = client
                .call(Method::POST, &["tenants", t, "devices"], Some(&body))
                .await?;
            success(mode, &claimed)
        }
        DeviceCommand::List { group, page } => {
            let group_id = match &group {
                Some(g) => Some(client.resolve_group(t, g).await?.id),
                None => None,
            };
            let mut list = list_devices(&client, t, group_id, &page).await?;
            if mode == OutputMode::Text {
                list.group_names = group_names(&client, t).await;
            }
            success(mode, &list)
        }
        DeviceCommand::Show { device_id } => {
            let device: DeviceInfo = client
                .get(&["tenants", t, "devices", &device_id], &[])
                .await?;
            success(mode, &device)
        }
        DeviceCommand::Assign { device_id, group } => {
            let group = client.resolve_group(t, &group).await?;
            let device: DeviceInfo = client
                .call(
                    Method::PUT,
                    &["tenants", t, "devices", &device_id, "group"],
                    Some(&AssignDevice { group_id: group.id }),
                )
                .await?;
            success(mode, &device)
        }
        DeviceCommand::EnableDevelopment { device_id } => success(
            mode,
            &set_mode(&client, t, &device_id, "development").await?,
        ),
        DeviceCommand::EnableFieldTest { device_id } => {
            success(mode, &set_mode(&client, t, &device_id, "field").await?)
        }
        DeviceCommand::Transfer(command) => transfer(mode, &client, t, command).await,
        DeviceCommand::Revoke { device_id } => {
            let device: DeviceInfo = client
                .call::<(), _>(
                    Method::POST,
                    &["tenants", t, "devices", &device_id, "revoke"],
                    None,
                )
                .await?;
            success(mode, &Revoked(device))
        }
        DeviceCommand::Attestation { device_id, limit } => {
            let query: Vec<(&str, String)> = limit
                .map(|n| ("limit", n.to_string()))
                .into_iter()
                .collect();
            let attestations: Vec<AttestationInfo> = client
                .get(
                    &["tenants", t, "devices", &device_id, "attestations"],
                    &query,
                )
                .await?;
            success(
                mode,
                &AttestationHistory {
                    attestations,
                    device_id,
                },
            )
        }
    }
}

async fn set_mode(
    client: &Client,
    tenant: &str,
    device_id: &str,
    mode: &str,
) -> anyhow::Result<DeviceInfo> {
    client
        .call(
            Method::PUT,
            &["tenants", tenant, "devices", device_id, "mode"],
            Some(&SetDeviceMode {
                mode: mode.to_owned(),
            }),
        )
        .await
}

/// One page, or every page with `--all`.
async fn list_devices(
    client: &Client,
    tenant: &str,
    group_id: Option<String>,
    page: &PageArgs,
) -> anyhow::Result<DeviceList> {
    let mut after = page.after.clone();
    let mut devices = Vec::new();
    loop {
        let mut query = Vec::new();
        if let Some(group) = &group_id {
            query.push(("group", group.clone()));
        }
        if let Some(limit) = page.limit.or(page.all.then_some(1000)) {
            query.push(("limit", limit.to_string()));
        }
        if let Some(after) = &after {
            query.push(("after", after.clone()));
        }
        let got: DevicePage = client.get(&["tenants", tenant, "devices"], &query).await?;
        let empty = got.devices.is_empty();
        devices.extend(got.devices);
        match got.next {
            Some(next) if page.all && !empty => after = Some(next),
            next => {
                return Ok(DeviceList {
                    devices,
                    next,
                    total: got.total,
                    group_names: HashMap::new(),
                })
            }
        }
    }
}

/// Group ID → `PRODUCT/GROUP`; empty if the products cannot be read.
async fn group_names(client: &Client, tenant: &str) -> HashMap<String, String> {
    let products: Vec<ProductInfo> = client
        .get(&["tenants", tenant, "products"], &[])
        .await
        .unwrap_or_default();
    products
        .iter()
        .flat_map(|p| {
            p.device_groups
                .iter()
                .map(move |g| (g.id.clone(), format!("{}/{}", p.name, g.name)))
        })
        .collect()
}

async fn transfer(
    mode: OutputMode,
    client: &Client,
    tenant: &str,
    command: TransferCommand,
) -> anyhow::Result<ExitCode> {
    let transfer = match command {
        TransferCommand::Start {
            device_id,
            to_tenant,
        } => {
            // The destination is usually a tenant the caller has no role in,
            // so only a name needs a lookup (among the caller's tenants).
            let to_tenant = if looks_like_uuid(&to_tenant) {
                to_tenant
            } else {
                client.resolve_tenant(&to_tenant).await?.id
            };
            let body = RequestTransfer {
                device_id,
                to_tenant,
            };
            client
                .call::<_, TransferInfo>(
                    Method::POST,
                    &["tenants", tenant, "transfers"],
                    Some(&body),
                )
                .await?
        }
        TransferCommand::Accept { transfer_id } => {
            client
                .call::<(), TransferInfo>(
                    Method::POST,
                    &["tenants", tenant, "transfers", &transfer_id, "accept"],
                    None,
                )
                .await?
        }
        TransferCommand::Cancel { transfer_id } => {
            client
                .call::<(), TransferInfo>(
                    Method::POST,
                    &["tenants", tenant, "transfers", &transfer_id, "cancel"],
                    None,
                )
                .await?
        }
        TransferCommand::List => {
            let transfers: Vec<TransferInfo> =
                client.get(&["tenants", tenant, "transfers"], &[]).await?;
            return success(mode, &transfers);
        }
    };
    success(mode, &transfer)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use sevenfold_core::api::AttestationInfo;

    use super::AttestationHistory;
    use crate::output::Render;

    fn attestation(at: &str, reasons: &[&str]) -> AttestationInfo {
        let passed = reasons.is_empty();
        AttestationInfo {
            at: at.into(),
            verdict: if passed { "pass" } else { "fail" }.into(),
            reasons: reasons.iter().map(|r| (*r).to_owned()).collect(),
            measurements: serde_json::json!([{
                "kind": "runtime",
                "component_id": "runtime",
                "name": "sevenfold",
                "version": "1.2.0",
                "digest": "ab".repeat(32),
            }]),
            certificate_serial: passed.then(|| "0102".to_owned()),
            certificate_not_after: passed.then(|| "2025-02-01T00:00:00Z".to_owned()),
            source: "10.0.0.5".into(),
        }
    }

    #[test]
    fn the_latest_verdict_comes_first_with_its_reasons_then_the_history() {
        let history = AttestationHistory {
            device_id: "d1".into(),
            attestations: vec![
                attestation(
                    "2025-01-31T00:00:00Z",
                    &["runtime is revoked", "app too old"],
                ),
                attestation("2025-01-30T00:00:00Z", &[]),
            ],
        };
        let text = history.human();
        assert!(
            text.starts_with("Device d1: latest attestation FAIL at 2025-01-31T00:00:00Z\n"),
            "{text}"
        );
        assert!(
            text.contains("    - runtime is revoked\n    - app too old\n"),
            "{text}"
        );
        assert!(text.contains("certificate: none issued"), "{text}");
        assert!(text.contains(&"ab".repeat(32)), "{text}");
        let history_at = text.find("History").unwrap();
        assert!(
            text[history_at..].contains("FAIL     runtime is revoked; app too old"),
            "{text}"
        );
        assert!(text[history_at..].contains("PASS     -"), "{text}");

        // JSON: the wire array, newest first.
        let json = serde_json::to_value(&history).unwrap();
        assert_eq!(json[0]["verdict"], "fail");
        assert_eq!(json[1]["certificate_serial"], "0102");

        let none = AttestationHistory {
            device_id: "d2".into(),
            attestations: Vec::new(),
        };
        assert!(none.human().contains("has not attested yet"));
        assert_eq!(serde_json::to_string(&none).unwrap(), "[]");
    }
}
