//! `sevenfold tuf key|root|targets …`: keys the tenant holds offline, and
//! the draft → sign → submit steps that rotate the root (and targets) keys
//! and sign targets with them.
//!
//! `key generate` and the `sign` steps never contact the server: they run
//! on the key holder's (possibly air-gapped) machine. The drafts and the
//! signing rules live in `sevenfold_service::updates::offline`; this module
//! only reads and writes the files and talks to the service.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sevenfold_service::updates::offline::{
    self, NewRoleKeys, RootDraft, RootDraftSummary, Signing, TargetsDraft, TargetsDraftSummary,
    Threshold,
};
use sevenfold_service::updates::{RoleKey, UpdateError};

use crate::cli::{
    ConnectionArgs, DraftSignArgs, DraftSubmitArgs, OutputMode, TenantArg, TufKeyCommand,
    TufRootCommand, TufTargetsCommand,
};
use crate::client::Client;
use crate::files;
use crate::output::{fields, success, Render};

#[derive(Debug, Serialize)]
struct KeyReport {
    key_id: String,
    private_key: PathBuf,
    public_key: PathBuf,
}

impl Render for KeyReport {
    fn human(&self) -> String {
        format!(
            "Generated TUF key {}\n  private key: {} (mode 0600; keep it offline)\n  public key:  {}\n",
            self.key_id,
            self.private_key.display(),
            self.public_key.display()
        )
    }
}

#[derive(Debug, Serialize)]
struct RootDraftReport {
    file: PathBuf,
    #[serde(flatten)]
    summary: RootDraftSummary,
}

fn progress_text(name: &str, t: &Threshold) -> String {
    format!(
        "{name}: {} of {} signature(s){}",
        t.valid,
        t.threshold,
        if t.met() { " (met)" } else { "" }
    )
}

impl Render for RootDraftReport {
    fn human(&self) -> String {
        let s = &self.summary;
        let roles: String = s
            .roles
            .iter()
            .map(|r| {
                format!(
                    "  {:<9} {} of {}: {}\n",
                    r.role,
                    r.threshold,
                    r.key_ids.len(),
                    r.key_ids.join(", ")
                )
            })
            .collect();
        let service_note = if s.progress.current_root.met() {
            ""
        } else {
            " (while the service holds the current root keys, it adds theirs at submit)"
        };
        format!(
            "Root draft {} for group {}: version {} → {}, expires {}\n{roles}{}{service_note}\n{}\n",
            self.file.display(),
            s.group_id,
            s.current_version,
            s.version,
            s.expires,
            progress_text("current root keys", &s.progress.current_root),
            progress_text("new root keys", &s.progress.new_root),
        )
    }
}

#[derive(Debug, Serialize)]
struct TargetsDraftReport {
    file: PathBuf,
    #[serde(flatten)]
    summary: TargetsDraftSummary,
}

impl Render for TargetsDraftReport {
    fn human(&self) -> String {
        let s = &self.summary;
        let targets: String = s
            .targets
            .iter()
            .map(|(name, sha256)| format!("  {name}  sha256 {sha256}\n"))
            .collect();
        format!(
            "Targets draft {} for group {}: version {}, expires {}\n{targets}{}\n",
            self.file.display(),
            s.group_id,
            s.version,
            s.expires,
            progress_text("targets keys", &s.progress),
        )
    }
}

#[derive(Debug, Serialize)]
struct SignReport<S: Render> {
    signing: Signing,
    draft: S,
}

impl<S: Render> Render for SignReport<S> {
    fn human(&self) -> String {
        format!(
            "Signed with key {} as {}\n{}",
            self.signing.key_id,
            self.signing.signed_as.join(" and "),
            self.draft.human()
        )
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct RootAccepted {
    group_id: String,
    root_version: u64,
    service_cross_signed: bool,
    service_signs_targets: bool,
    targets_version: Option<i64>,
}

impl Render for RootAccepted {
    fn human(&self) -> String {
        let mut text = format!(
            "Group {} has root version {}",
            self.group_id, self.root_version
        );
        if self.service_cross_signed {
            text.push_str(
                "\n  the service cross-signed with the root keys it held and no longer holds any",
            );
        }
        if !self.service_signs_targets {
            text.push_str(
                "\n  the tenant holds the targets keys: sign the group's targets with \
                 `sevenfold tuf targets draft|sign|submit` (now, and after every deployment change)",
            );
        }
        text.push('\n');
        text
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct TargetsAccepted {
    group_id: String,
    targets_version: i64,
    snapshot_version: i64,
    timestamp_version: i64,
}

impl Render for TargetsAccepted {
    fn human(&self) -> String {
        format!(
            "Published targets version {} of group {}\n{}\n",
            self.targets_version,
            self.group_id,
            fields(&[
                ("snapshot version", self.snapshot_version.to_string()),
                ("timestamp version", self.timestamp_version.to_string()),
            ])
        )
    }
}

/// `key.pem` → `key.pub.json`.
fn public_key_path(private: &Path) -> PathBuf {
    let stem = private
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "key".into());
    private.with_file_name(format!("{stem}.pub.json"))
}

/// Replaces a draft file atomically (a crash never loses signatures).
fn write_draft(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut name = path.as_os_str().to_owned();
    name.push(".partial");
    let partial = PathBuf::from(name);
    files::write_new(&partial, bytes, 0o644, true)?;
    std::fs::rename(&partial, path).with_context(|| format!("cannot replace {}", path.display()))
}

fn read_key(path: &Path) -> anyhow::Result<RoleKey> {
    RoleKey::from_key_file(&files::read(path)?)
        .with_context(|| format!("{} is not a usable TUF private key", path.display()))
}

fn read_public_keys(paths: &[PathBuf], threshold: u64) -> anyhow::Result<NewRoleKeys> {
    let keys = paths
        .iter()
        .map(|path| {
            offline::parse_public_key(&files::read(path)?)
                .with_context(|| format!("{} is not a TUF public key file", path.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(NewRoleKeys { keys, threshold })
}

pub(crate) fn key(mode: OutputMode, command: TufKeyCommand) -> anyhow::Result<ExitCode> {
    let TufKeyCommand::Generate { out, force } = command;
    let key = RoleKey::generate().context("cannot generate a key")?;
    let public_path = public_key_path(&out);
    if !force {
        anyhow::ensure!(
            !public_path.exists(),
            "{} already exists; pass --force to replace it",
            public_path.display()
        );
    }
    files::write_new(&out, key.to_pem().as_bytes(), 0o600, force)?;
    let mut public = key.public_json()?;
    public.push('\n');
    files::write_new(&public_path, public.as_bytes(), 0o644, force)?;
    success(
        mode,
        &KeyReport {
            key_id: key.key_id().to_owned(),
            private_key: out,
            public_key: public_path,
        },
    )
}

fn read_draft<D>(path: &Path, parse: fn(&[u8]) -> Result<D, UpdateError>) -> anyhow::Result<D> {
    parse(&files::read(path)?).with_context(|| format!("cannot read the draft {}", path.display()))
}

/// Uploads the signed metadata of a draft to `…/tuf/{role}`, once the
/// draft is known to be for the group asked for.
async fn submit<B: Serialize, T: DeserializeOwned>(
    conn: &ConnectionArgs,
    tenant: &TenantArg,
    args: &DraftSubmitArgs,
    draft_group: &str,
    role: &str,
    signed: &B,
) -> anyhow::Result<T> {
    let client = Client::connect(conn, tenant)?;
    let tenant = client.tenant_id().await?;
    let group = client.resolve_group(&tenant, &args.group).await?;
    anyhow::ensure!(
        draft_group == group.id,
        "{} is a draft for group {draft_group}, not {}",
        args.draft.display(),
        group.id
    );
    client
        .call(
            Method::POST,
            &group_path(&tenant, &group.id, &[role]),
            Some(signed),
        )
        .await
}

fn group_path<'a>(tenant: &'a str, group: &'a str, tail: &[&'a str]) -> Vec<&'a str> {
    let mut path = vec!["tenants", tenant, "device-groups", group, "tuf"];
    path.extend_from_slice(tail);
    path
}

pub(crate) async fn root(
    mode: OutputMode,
    conn: &ConnectionArgs,
    tenant: &TenantArg,
    command: TufRootCommand,
) -> anyhow::Result<ExitCode> {
    match command {
        TufRootCommand::Sign(DraftSignArgs { draft, key }) => {
            let mut parsed = read_draft(&draft, RootDraft::parse)?;
            let signing = parsed.sign(&read_key(&key)?).await?;
            write_draft(&draft, &parsed.to_json()?)?;
            let summary = parsed.summary();
            let draft = RootDraftReport {
                file: draft,
                summary,
            };
            success(mode, &SignReport { signing, draft })
        }
        TufRootCommand::Draft {
            group,
            root_keys,
            threshold,
            targets_keys,
            targets_threshold,
            expires_days,
            out,
        } => {
            let root_keys = read_public_keys(&root_keys, threshold)?;
            let targets_keys = if targets_keys.is_empty() {
                None
            } else {
                let m =
                    targets_threshold.context("--targets-key-pub needs --targets-threshold M")?;
                Some(read_public_keys(&targets_keys, m)?)
            };
            let client = Client::connect(conn, tenant)?;
            let tenant = client.tenant_id().await?;
            let group = client.resolve_group(&tenant, &group).await?;
            let current: serde_json::Value = client
                .get(&group_path(&tenant, &group.id, &["root"]), &[])
                .await?;
            let draft = RootDraft::new(
                &group.id,
                offline::parse_signed_root(current)?,
                &root_keys,
                targets_keys.as_ref(),
                i64::from(expires_days) * 86_400,
            )?;
            files::write_new(&out, &draft.to_json()?, 0o644, false)?;
            success(
                mode,
                &RootDraftReport {
                    file: out,
                    summary: draft.summary(),
                },
            )
        }
        TufRootCommand::Submit(args) => {
            let parsed = read_draft(&args.draft, RootDraft::parse)?;
            let accepted: RootAccepted =
                submit(conn, tenant, &args, &parsed.group_id, "root", &parsed.next).await?;
            success(mode, &accepted)
        }
    }
}

pub(crate) async fn targets(
    mode: OutputMode,
    conn: &ConnectionArgs,
    tenant: &TenantArg,
    command: TufTargetsCommand,
) -> anyhow::Result<ExitCode> {
    match command {
        TufTargetsCommand::Sign(DraftSignArgs { draft, key }) => {
            let mut parsed = read_draft(&draft, TargetsDraft::parse)?;
            let signing = parsed.sign(&read_key(&key)?).await?;
            write_draft(&draft, &parsed.to_json()?)?;
            let summary = parsed.summary();
            let draft = TargetsDraftReport {
                file: draft,
                summary,
            };
            success(mode, &SignReport { signing, draft })
        }
        TufTargetsCommand::Draft { group, out } => {
            let client = Client::connect(conn, tenant)?;
            let tenant = client.tenant_id().await?;
            let group = client.resolve_group(&tenant, &group).await?;
            let draft: serde_json::Value = client
                .get(&group_path(&tenant, &group.id, &["targets", "draft"]), &[])
                .await?;
            let draft = TargetsDraft::parse(&serde_json::to_vec(&draft)?)?;
            files::write_new(&out, &draft.to_json()?, 0o644, false)?;
            success(
                mode,
                &TargetsDraftReport {
                    file: out,
                    summary: draft.summary(),
                },
            )
        }
        TufTargetsCommand::Submit(args) => {
            let parsed = read_draft(&args.draft, TargetsDraft::parse)?;
            let accepted: TargetsAccepted = submit(
                conn,
                tenant,
                &args,
                &parsed.group_id,
                "targets",
                &parsed.targets,
            )
            .await?;
            success(mode, &accepted)
        }
    }
}
