//! `sevenfold deployment create|list|show|raise|resume|cancel`.

use std::process::ExitCode;

use reqwest::Method;
use serde::Serialize;
use sevenfold_core::update::{CreateDeployment, DeploymentInfo, UpdateDeployment};

use crate::cli::{DeploymentArgs, DeploymentCommand, OutputMode};
use crate::client::Client;
use crate::output::{fields, or_dash, success, table, Render};

impl Render for DeploymentInfo {
    fn human(&self) -> String {
        let c = &self.counts;
        let mut text = format!(
            "Deployment {}\n{}",
            self.id,
            fields(&[
                ("group", self.group_id.clone()),
                ("status", self.status.clone()),
                ("rollout", format!("{}%", self.percent)),
                ("halt above", format!("{}% failures", self.max_failure_percent)),
                ("halt reason", or_dash(self.halt_reason.as_deref())),
                ("images", self.images.join(", ")),
                ("created", format!("{} by {}", self.created_at, self.created_by)),
                (
                    "progress",
                    format!(
                        "{} targeted: {} pending, {} downloading, {} installed, {} failed, {} rolled back",
                        c.targeted, c.pending, c.downloading, c.installed, c.failed, c.rolled_back
                    )
                ),
            ])
        );
        if self.awaiting_targets_signature {
            text.push_str(
                "\nawaiting targets signature: devices see this change once the holders of the \
                 group's targets keys sign it (`sevenfold tuf targets draft|sign|submit`)\n",
            );
        }
        if self.deltas_state == "making" {
            text.push_str(
                "\ndeltas: being made; devices fetch full images until they are signed into \
                 the group's targets\n",
            );
        }
        if !self.deltas.is_empty() {
            let rows: Vec<Vec<String>> = self
                .deltas
                .iter()
                .map(|d| {
                    vec![
                        d.component_id.clone(),
                        or_dash(d.base_version.as_deref()),
                        d.base_sha256.get(..16).unwrap_or(&d.base_sha256).to_owned(),
                        d.length.to_string(),
                    ]
                })
                .collect();
            text.push('\n');
            text.push_str(&table(
                &["DELTA FOR", "FROM VERSION", "FROM FILE", "BYTES"],
                &rows,
                "",
            ));
        }
        if !self.devices.is_empty() {
            let rows: Vec<Vec<String>> = self
                .devices
                .iter()
                .map(|d| {
                    vec![
                        d.device_id.clone(),
                        d.state.clone(),
                        or_dash(d.reason.as_deref()),
                    ]
                })
                .collect();
            text.push('\n');
            text.push_str(&table(&["DEVICE", "STATE", "REASON"], &rows, ""));
        }
        text
    }
}

#[derive(Serialize)]
#[serde(transparent)]
struct DeploymentList(Vec<DeploymentInfo>);

impl Render for DeploymentList {
    fn human(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .0
            .iter()
            .map(|d| {
                vec![
                    d.id.clone(),
                    d.group_id.clone(),
                    d.status.clone(),
                    format!("{}%", d.percent),
                    format!("{}/{}", d.counts.installed, d.counts.targeted),
                    (d.counts.failed + d.counts.rolled_back).to_string(),
                    d.created_at.clone(),
                ]
            })
            .collect();
        table(
            &[
                "ID",
                "GROUP",
                "STATUS",
                "ROLLOUT",
                "INSTALLED",
                "FAILED",
                "CREATED",
            ],
            &rows,
            "  (no deployments)",
        )
    }
}

pub(crate) async fn run(mode: OutputMode, args: DeploymentArgs) -> anyhow::Result<ExitCode> {
    let client = Client::connect(&args.conn, &args.tenant)?;
    let tenant = client.tenant_id().await?;
    let path = |id: &str| {
        [
            "tenants".to_owned(),
            tenant.clone(),
            "deployments".to_owned(),
            id.to_owned(),
        ]
    };
    match args.command {
        DeploymentCommand::Create {
            group,
            images,
            percent,
            max_failure_percent,
        } => {
            let group = client.resolve_group(&tenant, &group).await?;
            let body = CreateDeployment {
                group: group.id,
                images,
                percent,
                max_failure_percent: Some(max_failure_percent),
            };
            let created: DeploymentInfo = client
                .call(
                    Method::POST,
                    &["tenants", &tenant, "deployments"],
                    Some(&body),
                )
                .await?;
            success(mode, &created)
        }
        DeploymentCommand::List { group } => {
            let mut query = Vec::new();
            if let Some(group) = group {
                query.push(("group", client.resolve_group(&tenant, &group).await?.id));
            }
            let list: Vec<DeploymentInfo> = client
                .get(&["tenants", &tenant, "deployments"], &query)
                .await?;
            success(mode, &DeploymentList(list))
        }
        DeploymentCommand::Show { id } => {
            let p = path(&id);
            let refs: Vec<&str> = p.iter().map(String::as_str).collect();
            let shown: DeploymentInfo = client.get(&refs, &[]).await?;
            success(mode, &shown)
        }
        DeploymentCommand::Raise { id, percent } => {
            let p = path(&id);
            let refs: Vec<&str> = p.iter().map(String::as_str).collect();
            let changed: DeploymentInfo = client
                .call(Method::PATCH, &refs, Some(&UpdateDeployment { percent }))
                .await?;
            success(mode, &changed)
        }
        DeploymentCommand::Resume { id } => action(mode, &client, &tenant, &id, "resume").await,
        DeploymentCommand::Cancel { id } => action(mode, &client, &tenant, &id, "cancel").await,
    }
}

async fn action(
    mode: OutputMode,
    client: &Client,
    tenant: &str,
    id: &str,
    verb: &str,
) -> anyhow::Result<ExitCode> {
    let changed: DeploymentInfo = client
        .call::<(), _>(
            Method::POST,
            &["tenants", tenant, "deployments", id, verb],
            None,
        )
        .await?;
    success(mode, &changed)
}
