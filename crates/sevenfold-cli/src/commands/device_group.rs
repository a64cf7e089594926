//! `sevenfold device-group create|list|show|update|delete`.

use std::collections::HashMap;
use std::process::ExitCode;

use reqwest::Method;
use serde::Serialize;
use sevenfold_core::api::{CreateGroup, GroupInfo, ProductInfo, UpdateGroup};

use crate::cli::{DeviceGroupArgs, DeviceGroupCommand, OutputMode, Switch};
use crate::client::Client;
use crate::output::{fields, success, table, Render};

/// A table of groups; with `products` (ID → name), a PRODUCT column.
pub(crate) fn groups_table(
    groups: &[GroupInfo],
    products: Option<&HashMap<String, String>>,
) -> String {
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            let mut row = Vec::new();
            if let Some(products) = products {
                row.push(
                    products
                        .get(&g.product_id)
                        .cloned()
                        .unwrap_or_else(|| g.product_id.clone()),
                );
            }
            row.extend([
                g.name.clone(),
                g.id.clone(),
                g.update_policy.clone(),
                g.runtime_feed.clone(),
                format!("{}%", g.rollout_percent),
            ]);
            row
        })
        .collect();
    let mut headers = Vec::new();
    if products.is_some() {
        headers.push("PRODUCT");
    }
    headers.extend(["NAME", "ID", "UPDATE POLICY", "RUNTIME FEED", "ROLLOUT"]);
    table(&headers, &rows, "  (no device groups)")
}

impl Render for GroupInfo {
    fn human(&self) -> String {
        format!(
            "Device group {}\n{}",
            self.name,
            fields(&[
                ("id", self.id.clone()),
                ("product", self.product_id.clone()),
                ("description", self.description.clone()),
                ("update policy", self.update_policy.clone()),
                ("runtime feed", self.runtime_feed.clone()),
                ("rollout", format!("{}%", self.rollout_percent)),
                (
                    "crash details",
                    if self.crash_details { "on" } else { "off" }.to_owned(),
                ),
                (
                    "update window",
                    self.update_window
                        .as_ref()
                        .map_or_else(|| "any time".to_owned(), |w| format!("{w} UTC")),
                ),
                ("created", self.created_at.clone()),
            ])
        )
    }
}

/// `device-group list`: the groups (JSON: an array), with product names for people.
#[derive(Serialize)]
#[serde(transparent)]
struct GroupList {
    groups: Vec<GroupInfo>,
    #[serde(skip)]
    products: HashMap<String, String>,
}

impl Render for GroupList {
    fn human(&self) -> String {
        groups_table(&self.groups, Some(&self.products))
    }
}

#[derive(Serialize)]
struct DeletedGroup {
    id: String,
    name: String,
    deleted: bool,
}

impl Render for DeletedGroup {
    fn human(&self) -> String {
        format!("Deleted device group {} ({}).\n", self.name, self.id)
    }
}

pub(crate) async fn run(mode: OutputMode, args: DeviceGroupArgs) -> anyhow::Result<ExitCode> {
    let client = Client::connect(&args.conn, &args.tenant)?;
    let tenant = client.tenant_id().await?;
    match args.command {
        DeviceGroupCommand::Create {
            product,
            name,
            settings,
        } => {
            let product = client.resolve_product(&tenant, &product).await?;
            let body = CreateGroup {
                product_id: product.id,
                name,
                description: settings.description.unwrap_or_default(),
                update_policy: settings.update_policy.map(|p| p.as_str().to_owned()),
                runtime_feed: settings.runtime_feed.map(|f| f.as_str().to_owned()),
                rollout_percent: settings.rollout_percent,
            };
            let created: GroupInfo = client
                .call(
                    Method::POST,
                    &["tenants", &tenant, "device-groups"],
                    Some(&body),
                )
                .await?;
            success(mode, &created)
        }
        DeviceGroupCommand::List { product } => {
            let products: Vec<ProductInfo> =
                client.get(&["tenants", &tenant, "products"], &[]).await?;
            let mut query = Vec::new();
            if let Some(product) = product {
                let id = match products
                    .iter()
                    .find(|p| p.name == product || p.id == product)
                {
                    Some(p) => p.id.clone(),
                    None => client.resolve_product(&tenant, &product).await?.id,
                };
                query.push(("product", id));
            }
            let groups: Vec<GroupInfo> = client
                .get(&["tenants", &tenant, "device-groups"], &query)
                .await?;
            let products = products.into_iter().map(|p| (p.id, p.name)).collect();
            success(mode, &GroupList { groups, products })
        }
        DeviceGroupCommand::Show { group } => {
            success(mode, &client.resolve_group(&tenant, &group).await?)
        }
        DeviceGroupCommand::Update {
            group,
            name,
            crash_details,
            settings,
            update_window,
            clear_update_window,
        } => {
            let body = UpdateGroup {
                name,
                description: settings.description,
                update_policy: settings.update_policy.map(|p| p.as_str().to_owned()),
                runtime_feed: settings.runtime_feed.map(|f| f.as_str().to_owned()),
                rollout_percent: settings.rollout_percent,
                crash_details: crash_details.map(Switch::is_on),
                update_window: if clear_update_window {
                    Some(String::new())
                } else {
                    update_window
                },
            };
            anyhow::ensure!(
                body != UpdateGroup::default(),
                "nothing to change: pass --name, --description, --update-policy, --runtime-feed, \
                 --rollout-percent, --crash-details, --update-window or --clear-update-window"
            );
            let found = client.resolve_group(&tenant, &group).await?;
            let updated: GroupInfo = client
                .call(
                    Method::PATCH,
                    &["tenants", &tenant, "device-groups", &found.id],
                    Some(&body),
                )
                .await?;
            success(mode, &updated)
        }
        DeviceGroupCommand::Delete { group } => {
            let found = client.resolve_group(&tenant, &group).await?;
            client
                .delete(&["tenants", &tenant, "device-groups", &found.id])
                .await?;
            success(
                mode,
                &DeletedGroup {
                    id: found.id,
                    name: found.name,
                    deleted: true,
                },
            )
        }
    }
}
