//! `sevenfold tuf show|rotate`, and dispatch of the offline-key commands
//! (`tuf key|root|targets`, in `tuf_offline`).

use std::process::ExitCode;

use reqwest::Method;
use serde::{Deserialize, Serialize};

use crate::cli::{OutputMode, TufArgs, TufCommand};
use crate::client::Client;
use crate::output::{fields, success, table, Render};

#[derive(Debug, Serialize, Deserialize)]
struct RoleInfo {
    role: String,
    key_ids: Vec<String>,
    threshold: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct TufInfo {
    group_id: String,
    root_version: u64,
    root_expires: String,
    consistent_snapshot: bool,
    service_holds_root_keys: bool,
    service_signs_targets: bool,
    roles: Vec<RoleInfo>,
}

impl Render for TufInfo {
    fn human(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .roles
            .iter()
            .map(|r| {
                vec![
                    r.role.clone(),
                    format!("{} of {}", r.threshold, r.key_ids.len()),
                    r.key_ids.join(", "),
                ]
            })
            .collect();
        format!(
            "TUF repository of group {}\n{}\n{}",
            self.group_id,
            fields(&[
                ("root version", self.root_version.to_string()),
                ("root expires", self.root_expires.clone()),
                ("consistent snapshots", self.consistent_snapshot.to_string()),
                ("root keys held by", holder(self.service_holds_root_keys)),
                ("targets keys held by", holder(self.service_signs_targets)),
            ]),
            table(&["ROLE", "THRESHOLD", "KEY IDS"], &rows, "")
        )
    }
}

fn holder(service: bool) -> String {
    if service {
        "the service".into()
    } else {
        "the tenant (offline)".into()
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Rotation {
    group_id: String,
    role: String,
    root_version: u64,
    key_ids: Vec<String>,
    threshold: u64,
}

impl Render for Rotation {
    fn human(&self) -> String {
        format!(
            "Rotated the {} keys of group {}: root version {}, {} of {} keys must sign\n{}",
            self.role,
            self.group_id,
            self.root_version,
            self.threshold,
            self.key_ids.len(),
            self.key_ids
                .iter()
                .map(|k| format!("  {k}\n"))
                .collect::<String>()
        )
    }
}

pub(crate) async fn run(mode: OutputMode, args: TufArgs) -> anyhow::Result<ExitCode> {
    let (conn, tenant) = (&args.conn, &args.tenant);
    match args.command {
        TufCommand::Show { group } => {
            let client = Client::connect(conn, tenant)?;
            let tenant = client.tenant_id().await?;
            let group = client.resolve_group(&tenant, &group).await?;
            let info: TufInfo = client
                .get(
                    &["tenants", &tenant, "device-groups", &group.id, "tuf"],
                    &[],
                )
                .await?;
            success(mode, &info)
        }
        TufCommand::Rotate {
            group,
            role,
            keys,
            threshold,
        } => {
            let client = Client::connect(conn, tenant)?;
            let tenant = client.tenant_id().await?;
            let group = client.resolve_group(&tenant, &group).await?;
            let body =
                serde_json::json!({"role": role.as_str(), "keys": keys, "threshold": threshold});
            let rotation: Rotation = client
                .call(
                    Method::POST,
                    &[
                        "tenants",
                        &tenant,
                        "device-groups",
                        &group.id,
                        "tuf",
                        "rotate",
                    ],
                    Some(&body),
                )
                .await?;
            success(mode, &rotation)
        }
        TufCommand::Key(command) => super::tuf_offline::key(mode, command),
        TufCommand::Root(command) => super::tuf_offline::root(mode, conn, tenant, command).await,
        TufCommand::Targets(command) => {
            super::tuf_offline::targets(mode, conn, tenant, command).await
        }
    }
}
