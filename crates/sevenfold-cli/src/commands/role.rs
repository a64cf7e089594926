//! `sevenfold role add|remove|list`.

use std::process::ExitCode;

use reqwest::Method;
use serde::Serialize;
use sevenfold_core::api::{AddRole, RoleInfo};

use crate::cli::{OutputMode, RoleArgs, RoleCommand};
use crate::client::Client;
use crate::output::{success, table, Render};

impl Render for RoleInfo {
    fn human(&self) -> String {
        let mut text = format!("{} now has the role {}.\n", self.user, self.role);
        if let Some(token) = &self.token {
            text.push_str(&format!(
                "New user {}: their API token, shown only this once:\n  {token}\n\
                 Give it to them privately; they run `sevenfold login --server URL --token TOKEN --ca CA.pem`.\n",
                self.user
            ));
        }
        text
    }
}

impl Render for Vec<RoleInfo> {
    fn human(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .iter()
            .map(|r| vec![r.user.clone(), r.role.clone()])
            .collect();
        table(
            &["USER", "ROLE"],
            &rows,
            "No users have a role in this tenant.",
        )
    }
}

#[derive(Serialize)]
struct RemovedReport {
    tenant_id: String,
    user: String,
    removed: bool,
}

impl Render for RemovedReport {
    fn human(&self) -> String {
        format!("{} no longer has a role in this tenant.\n", self.user)
    }
}

pub(crate) async fn run(mode: OutputMode, args: RoleArgs) -> anyhow::Result<ExitCode> {
    let client = Client::connect(&args.conn, &args.tenant)?;
    let tenant = client.tenant_id().await?;
    match args.command {
        RoleCommand::Add { user, role } => {
            let body = AddRole {
                user,
                role: role.as_str().to_owned(),
            };
            let granted: RoleInfo = client
                .call(Method::POST, &["tenants", &tenant, "roles"], Some(&body))
                .await?;
            success(mode, &granted)
        }
        RoleCommand::Remove { user } => {
            client.delete(&["tenants", &tenant, "roles", &user]).await?;
            success(
                mode,
                &RemovedReport {
                    tenant_id: tenant,
                    user,
                    removed: true,
                },
            )
        }
        RoleCommand::List => {
            let roles: Vec<RoleInfo> = client.get(&["tenants", &tenant, "roles"], &[]).await?;
            success(mode, &roles)
        }
    }
}
