//! `sevenfold tenant create|list|show` (and `tenant ca …`, in [`super::tenant_ca`]).

use std::process::ExitCode;

use reqwest::Method;
use sevenfold_core::api::{CreateTenant, TenantInfo};

use crate::cli::{OutputMode, TenantArgs, TenantCommand};
use crate::client::Client;
use crate::output::{fields, success, table, Render};

impl Render for TenantInfo {
    fn human(&self) -> String {
        format!(
            "Tenant {}\n{}",
            self.name,
            fields(&[
                ("id", self.id.clone()),
                ("created", self.created_at.clone()),
            ])
        )
    }
}

impl Render for Vec<TenantInfo> {
    fn human(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .iter()
            .map(|t| vec![t.name.clone(), t.id.clone(), t.created_at.clone()])
            .collect();
        table(
            &["NAME", "ID", "CREATED"],
            &rows,
            "No tenants you have a role in. A server administrator creates one with `sevenfold tenant create NAME`.",
        )
    }
}

pub(crate) async fn run(mode: OutputMode, args: TenantArgs) -> anyhow::Result<ExitCode> {
    let client = Client::connect(&args.conn, &args.tenant)?;
    match args.command {
        TenantCommand::Create { name } => {
            let created: TenantInfo = client
                .call(Method::POST, &["tenants"], Some(&CreateTenant { name }))
                .await?;
            success(mode, &created)
        }
        TenantCommand::List => {
            let tenants: Vec<TenantInfo> = client.get(&["tenants"], &[]).await?;
            success(mode, &tenants)
        }
        TenantCommand::Show { name } => {
            let value = match name.as_deref() {
                Some(value) => value,
                None => client.require_tenant()?,
            };
            let tenant = client.resolve_tenant(value).await?;
            success(mode, &tenant)
        }
        TenantCommand::Ca(command) => super::tenant_ca::run(mode, &client, command).await,
    }
}
