//! `sevenfold manufacturer init|endorse|trust|list`.
//!
//! `trust --kind tpm` trusts a TPM maker's CA for EK certificates (TPM
//! credential activation) instead of a CA that endorses device keys.
//!
//! `init` and `endorse` are the device maker's side and work on local files
//! only; `trust` and `list` configure the Security Service.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use reqwest::Method;
use serde::Serialize;
use sevenfold_core::api::{ManufacturerCaInfo, ManufacturerKind, TrustManufacturer};
use sevenfold_pki::ManufacturerCa;
use sevenfold_rot::{DeviceId, PublicKey};

use crate::cli::{
    ManufacturerCommand, ManufacturerEndorseArgs, ManufacturerInitArgs, ManufacturerKindArg,
    OutputMode, TenantArg,
};
use crate::client::Client;
use crate::files;
use crate::output::{fields, success, table, Render};

/// File names inside a manufacturer CA directory.
const CERT_FILE: &str = "ca.pem";
const KEY_FILE: &str = "ca.key";

#[derive(Serialize)]
struct InitReport {
    name: String,
    subject: String,
    fingerprint: String,
    not_after: String,
    certificate: PathBuf,
    private_key: PathBuf,
}

impl Render for InitReport {
    fn human(&self) -> String {
        format!(
            "Made manufacturer CA {}\n{}Next: have the server trust it with `sevenfold manufacturer trust {}` \
             (server administrators), and endorse devices with `sevenfold manufacturer endorse`.\n",
            self.name,
            fields(&[
                ("subject", self.subject.clone()),
                ("fingerprint", self.fingerprint.clone()),
                ("valid until", self.not_after.clone()),
                ("certificate", self.certificate.display().to_string()),
                ("private key", format!("{} (mode 0600; keep it secret)", self.private_key.display())),
            ]),
            self.certificate.display()
        )
    }
}

#[derive(Serialize)]
struct EndorseReport {
    device_id: String,
    certificate: PathBuf,
    manufacturer_fingerprint: String,
    valid_days: u32,
}

impl Render for EndorseReport {
    fn human(&self) -> String {
        format!(
            "Endorsed device {}\n{}Claim it with `sevenfold device claim {} --endorsement {}`.\n",
            self.device_id,
            fields(&[
                ("certificate", self.certificate.display().to_string()),
                ("manufacturer", self.manufacturer_fingerprint.clone()),
                ("valid for", format!("{} days", self.valid_days)),
            ]),
            self.device_id,
            self.certificate.display()
        )
    }
}

fn kind_name(kind: ManufacturerKind) -> &'static str {
    match kind {
        ManufacturerKind::Endorsement => "endorsement",
        ManufacturerKind::Tpm => "tpm",
    }
}

impl Render for ManufacturerCaInfo {
    fn human(&self) -> String {
        format!(
            "The server now trusts manufacturer CA {}\n{}",
            self.subject,
            fields(&[
                ("fingerprint", self.fingerprint.clone()),
                ("kind", kind_name(self.kind).to_owned()),
                ("added", self.added_at.clone()),
            ])
        )
    }
}

impl Render for Vec<ManufacturerCaInfo> {
    fn human(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .iter()
            .map(|c| {
                vec![
                    c.subject.clone(),
                    kind_name(c.kind).to_owned(),
                    c.fingerprint.clone(),
                    c.added_at.clone(),
                ]
            })
            .collect();
        table(
            &["SUBJECT", "KIND", "FINGERPRINT", "ADDED"],
            &rows,
            "The server trusts no manufacturer CA yet; add one with `sevenfold manufacturer trust CA.pem`.",
        )
    }
}

pub(crate) async fn run(
    mode: OutputMode,
    command: ManufacturerCommand,
) -> anyhow::Result<ExitCode> {
    match command {
        ManufacturerCommand::Init(args) => success(mode, &init(&args)?),
        ManufacturerCommand::Endorse(args) => success(mode, &endorse(&args)?),
        ManufacturerCommand::Trust(args) => {
            let certificate_pem = files::read_text(&args.certificate)?;
            let client = Client::connect(&args.conn, &TenantArg::default())?;
            let trusted: ManufacturerCaInfo = client
                .call(
                    Method::POST,
                    &["manufacturer-cas"],
                    Some(&TrustManufacturer {
                        certificate_pem,
                        kind: match args.kind {
                            ManufacturerKindArg::Endorsement => ManufacturerKind::Endorsement,
                            ManufacturerKindArg::Tpm => ManufacturerKind::Tpm,
                        },
                    }),
                )
                .await?;
            success(mode, &trusted)
        }
        ManufacturerCommand::List(args) => {
            let client = Client::connect(&args.conn, &TenantArg::default())?;
            let cas: Vec<ManufacturerCaInfo> = client.get(&["manufacturer-cas"], &[]).await?;
            success(mode, &cas)
        }
    }
}

fn init(args: &ManufacturerInitArgs) -> anyhow::Result<InitReport> {
    let certificate = args.out_dir.join(CERT_FILE);
    let private_key = args.out_dir.join(KEY_FILE);
    if !args.force {
        for path in [&certificate, &private_key] {
            anyhow::ensure!(
                !path.exists(),
                "{} already exists; pass --force to replace the manufacturer CA \
                 (devices it endorsed will no longer be claimable once the server trusts only the new one)",
                path.display()
            );
        }
    }
    let (ca, files_out) = ManufacturerCa::generate(&args.name, args.days)
        .context("cannot make the manufacturer CA")?;
    // The key first: a certificate without its key would be useless.
    files::write_new(
        &private_key,
        files_out.key_pem.as_bytes(),
        0o600,
        args.force,
    )?;
    files::write_new(
        &certificate,
        files_out.cert_pem.as_bytes(),
        0o644,
        args.force,
    )?;
    let cert = ca.certificate();
    Ok(InitReport {
        name: args.name.clone(),
        subject: cert.subject().to_owned(),
        fingerprint: cert.fingerprint().to_owned(),
        not_after: rfc3339(cert.not_after()),
        certificate,
        private_key,
    })
}

fn endorse(args: &ManufacturerEndorseArgs) -> anyhow::Result<EndorseReport> {
    let ca = load_ca(&args.ca_dir)?;
    let device_key =
        PublicKey::from_pem(&files::read_text(&args.device_key)?).with_context(|| {
            format!(
                "{} is not a public key; pass the device's root-of-trust public key (PEM)",
                args.device_key.display()
            )
        })?;
    let endorsement = ca
        .endorse(&device_key, args.days)
        .context("cannot issue the endorsement")?;
    files::write_new(
        &args.out,
        endorsement.to_pem().as_bytes(),
        0o644,
        args.force,
    )?;
    Ok(EndorseReport {
        device_id: DeviceId::of(&device_key).to_string(),
        certificate: args.out.clone(),
        manufacturer_fingerprint: ca.certificate().fingerprint().to_owned(),
        valid_days: args.days,
    })
}

fn load_ca(dir: &Path) -> anyhow::Result<ManufacturerCa> {
    let cert = files::read_text(&dir.join(CERT_FILE)).with_context(|| {
        format!(
            "{} holds no manufacturer CA; make one with `sevenfold manufacturer init --out-dir {}`",
            dir.display(),
            dir.display()
        )
    })?;
    let key = files::read_text(&dir.join(KEY_FILE))?;
    ManufacturerCa::load(&cert, &key)
        .with_context(|| format!("the manufacturer CA in {} cannot be used", dir.display()))
}

/// Unix seconds as RFC 3339 (UTC).
fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}
