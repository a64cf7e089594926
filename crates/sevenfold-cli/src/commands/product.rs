//! `sevenfold product create|list|show|delete`.

use std::process::ExitCode;

use reqwest::Method;
use serde::Serialize;
use sevenfold_core::api::{CreateProduct, ProductInfo};

use crate::cli::{OutputMode, ProductArgs, ProductCommand};
use crate::client::Client;
use crate::commands::device_group::groups_table;
use crate::output::{fields, success, table, Render};

impl Render for ProductInfo {
    fn human(&self) -> String {
        let mut text = format!(
            "Product {}\n{}",
            self.name,
            fields(&[
                ("id", self.id.clone()),
                ("description", self.description.clone()),
                ("created", self.created_at.clone()),
            ])
        );
        text.push_str("Device groups:\n");
        text.push_str(&groups_table(&self.device_groups, None));
        text
    }
}

impl Render for Vec<ProductInfo> {
    fn human(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .iter()
            .map(|p| {
                let groups: Vec<&str> = p.device_groups.iter().map(|g| g.name.as_str()).collect();
                vec![p.name.clone(), p.id.clone(), groups.join(", ")]
            })
            .collect();
        table(
            &["NAME", "ID", "DEVICE GROUPS"],
            &rows,
            "No products yet; create one with `sevenfold product create NAME`.",
        )
    }
}

#[derive(Serialize)]
struct DeletedProduct {
    id: String,
    name: String,
    deleted: bool,
}

impl Render for DeletedProduct {
    fn human(&self) -> String {
        format!(
            "Deleted product {} ({}) and its device groups.\n",
            self.name, self.id
        )
    }
}

pub(crate) async fn run(mode: OutputMode, args: ProductArgs) -> anyhow::Result<ExitCode> {
    let client = Client::connect(&args.conn, &args.tenant)?;
    let tenant = client.tenant_id().await?;
    match args.command {
        ProductCommand::Create { name, description } => {
            let created: ProductInfo = client
                .call(
                    Method::POST,
                    &["tenants", &tenant, "products"],
                    Some(&CreateProduct { name, description }),
                )
                .await?;
            success(mode, &created)
        }
        ProductCommand::List => {
            let products: Vec<ProductInfo> =
                client.get(&["tenants", &tenant, "products"], &[]).await?;
            success(mode, &products)
        }
        ProductCommand::Show { product } => {
            success(mode, &client.resolve_product(&tenant, &product).await?)
        }
        ProductCommand::Delete { product } => {
            let found = client.resolve_product(&tenant, &product).await?;
            client
                .delete(&["tenants", &tenant, "products", &found.id])
                .await?;
            success(
                mode,
                &DeletedProduct {
                    id: found.id,
                    name: found.name,
                    deleted: true,
                },
            )
        }
    }
}
