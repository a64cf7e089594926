//! `sevenfold signing-key add|list|revoke`.

use std::process::ExitCode;

use anyhow::Context;
use reqwest::Method;
use sevenfold_core::api::{AddSigningKey, SigningKeyInfo};
use sevenfold_rot::PublicKey;

use crate::cli::{OutputMode, SigningKeyArgs, SigningKeyCommand};
use crate::client::Client;
use crate::files;
use crate::output::{fields, or_dash, success, table, Render};

impl Render for SigningKeyInfo {
    fn human(&self) -> String {
        let state = if self.revoked_at.is_some() {
            "revoked"
        } else {
            "active"
        };
        format!(
            "Signing key {} ({state})\n{}",
            self.name,
            fields(&[
                ("key id", self.key_id.clone()),
                ("algorithm", self.algorithm.clone()),
                ("added", self.added_at.clone()),
                ("revoked", or_dash(self.revoked_at.as_deref())),
            ])
        )
    }
}

impl Render for Vec<SigningKeyInfo> {
    fn human(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .iter()
            .map(|k| {
                vec![
                    k.name.clone(),
                    k.key_id.clone(),
                    k.algorithm.clone(),
                    k.added_at.clone(),
                    or_dash(k.revoked_at.as_deref()),
                ]
            })
            .collect();
        table(
            &["NAME", "KEY ID", "ALGORITHM", "ADDED", "REVOKED"],
            &rows,
            "No signing keys; add one with `sevenfold signing-key add KEY.pub.pem --name NAME`.",
        )
    }
}

pub(crate) async fn run(mode: OutputMode, args: SigningKeyArgs) -> anyhow::Result<ExitCode> {
    let client = Client::connect(&args.conn, &args.tenant)?;
    let tenant = client.tenant_id().await?;
    match args.command {
        SigningKeyCommand::Add { public_key, name } => {
            // Checked here: a private key given by mistake must not leave this machine.
            let public_key_pem = files::read_text(&public_key)?;
            PublicKey::from_pem(&public_key_pem).with_context(|| {
                format!(
                    "{} is not a public key; pass the `.pub.pem` file `sevenfold keygen` wrote",
                    public_key.display()
                )
            })?;
            let body = AddSigningKey {
                name,
                public_key_pem,
            };
            let added: SigningKeyInfo = client
                .call(
                    Method::POST,
                    &["tenants", &tenant, "signing-keys"],
                    Some(&body),
                )
                .await?;
            success(mode, &added)
        }
        SigningKeyCommand::List => {
            let keys: Vec<SigningKeyInfo> = client
                .get(&["tenants", &tenant, "signing-keys"], &[])
                .await?;
            success(mode, &keys)
        }
        SigningKeyCommand::Revoke { key_id } => {
            let revoked: SigningKeyInfo = client
                .call::<(), _>(
                    Method::POST,
                    &["tenants", &tenant, "signing-keys", &key_id, "revoke"],
                    None,
                )
                .await?;
            success(mode, &revoked)
        }
    }
}
