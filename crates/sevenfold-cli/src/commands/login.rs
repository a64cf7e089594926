//! `sevenfold login`: check a server and token, then save them.

use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;
use sevenfold_core::api::{TenantRole, Whoami};

use crate::cli::{LoginArgs, OutputMode};
use crate::client::settings::SavedLogin;
use crate::client::{self, Client};
use crate::output::{emit, fields, table, Render};

/// A tenant by ID and name.
#[derive(Serialize)]
struct TenantRef {
    id: String,
    name: String,
}

#[derive(Serialize)]
struct LoginReport {
    server: String,
    user: String,
    server_admin: bool,
    roles: Vec<TenantRole>,
    tenant: Option<TenantRef>,
    config_file: PathBuf,
}

impl Render for LoginReport {
    fn human(&self) -> String {
        let admin = if self.server_admin {
            " (server administrator)"
        } else {
            ""
        };
        let mut text = format!("Logged in to {} as {}{admin}.\n", self.server, self.user);
        let rows: Vec<Vec<String>> = self
            .roles
            .iter()
            .map(|r| vec![r.tenant_name.clone(), r.role.clone(), r.tenant_id.clone()])
            .collect();
        text.push_str("\nRoles:\n");
        text.push_str(&table(
            &["TENANT", "ROLE", "TENANT ID"],
            &rows,
            "  none yet (a tenant administrator grants one with `sevenfold role add`)",
        ));
        text.push('\n');
        let tenant = match &self.tenant {
            Some(t) => format!("{} ({})", t.name, t.id),
            None => "none (pass --tenant to commands, or log in again with --tenant)".to_owned(),
        };
        text.push_str(&fields(&[
            ("default tenant", tenant),
            ("saved to", self.config_file.display().to_string()),
        ]));
        text
    }
}

pub(crate) async fn run(mode: OutputMode, args: &LoginArgs) -> anyhow::Result<ExitCode> {
    let settings = client::settings_for(&args.conn, &args.tenant)?;
    let ca_pem = client::ca_pem(&settings.ca)?;
    let client = Client::new(settings)?;
    let whoami: Whoami = client.get(&["whoami"], &[]).await?;

    // The default tenant: the one asked for, else the only one the user has.
    let tenant = match client.tenant_choice() {
        Some(choice) => {
            let t = client.resolve_tenant(choice).await?;
            Some(TenantRef {
                id: t.id,
                name: t.name,
            })
        }
        None => match whoami.roles.as_slice() {
            [only] => Some(TenantRef {
                id: only.tenant_id.clone(),
                name: only.tenant_name.clone(),
            }),
            _ => None,
        },
    };

    let path = SavedLogin::path()?;
    let saved = SavedLogin {
        server: client.server().to_owned(),
        token: client.token().to_owned(),
        ca_pem,
        tenant: tenant.as_ref().map(|t| t.id.clone()),
        tenant_name: tenant.as_ref().map(|t| t.name.clone()),
    };
    saved.save(&path)?;

    let report = LoginReport {
        server: client.server().to_owned(),
        user: whoami.user,
        server_admin: whoami.server_admin,
        roles: whoami.roles,
        tenant,
        config_file: path,
    };
    emit(mode, &report)?;
    Ok(ExitCode::SUCCESS)
}
