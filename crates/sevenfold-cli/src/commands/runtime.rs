//! `sevenfold runtime release add|revoke|list`: the runtime builds the
//! attestation verifier accepts. A device measures the SHA-256 of its
//! runtime executable at boot; a build that is not a release, or a revoked
//! one, fails attestation.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use reqwest::Method;
use serde::Serialize;
use sevenfold_core::api::{AddRuntimeRelease, RuntimeReleaseInfo};
use sevenfold_rot::{Digest, Hasher};

use crate::cli::{
    OutputMode, RuntimeArgs, RuntimeCommand, RuntimeReleaseAddArgs, RuntimeReleaseCommand,
    TenantArg,
};
use crate::client::Client;
use crate::output::{fields, or_dash, success, table, Render};

/// A release just added or revoked (JSON: the release itself).
#[derive(Serialize)]
#[serde(transparent)]
struct Changed {
    release: RuntimeReleaseInfo,
    #[serde(skip)]
    what: &'static str,
}

impl Render for Changed {
    fn human(&self) -> String {
        let r = &self.release;
        let next = if r.revoked_at.is_some() {
            "Devices running it fail attestation from now on.\n"
        } else {
            "Devices running this build can now pass attestation.\n"
        };
        format!(
            "{} runtime release {}\n{}{next}",
            self.what,
            r.version,
            fields(&[
                ("digest", r.digest.clone()),
                ("added", format!("{} by {}", r.added_at, r.added_by)),
                ("revoked", or_dash(r.revoked_at.as_deref())),
            ])
        )
    }
}

impl Render for Vec<RuntimeReleaseInfo> {
    fn human(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .iter()
            .map(|r| {
                vec![
                    r.version.clone(),
                    r.digest.clone(),
                    r.added_at.clone(),
                    r.added_by.clone(),
                    or_dash(r.revoked_at.as_deref()),
                ]
            })
            .collect();
        table(
            &["VERSION", "DIGEST", "ADDED", "BY", "REVOKED"],
            &rows,
            "No runtime releases: every device fails attestation until one is added with \
             `sevenfold runtime release add --file RUNTIME --version V` (server administrators).",
        )
    }
}

pub(crate) async fn run(mode: OutputMode, args: RuntimeArgs) -> anyhow::Result<ExitCode> {
    let RuntimeCommand::Release(command) = args.command;
    // Runtime releases are server-wide: no tenant.
    let client = Client::connect(&args.conn, &TenantArg::default())?;
    match command {
        RuntimeReleaseCommand::Add(add) => {
            let body = AddRuntimeRelease {
                digest: release_digest(&add).await?.to_hex(),
                version: add.version,
            };
            let release: RuntimeReleaseInfo = client
                .call(Method::POST, &["runtime-releases"], Some(&body))
                .await?;
            success(
                mode,
                &Changed {
                    release,
                    what: "Added",
                },
            )
        }
        RuntimeReleaseCommand::Revoke { digest } => {
            let digest = parse_digest(&digest)
                .context("`sevenfold runtime release list` shows the releases and their digests")?;
            let release: RuntimeReleaseInfo = client
                .call::<(), _>(
                    Method::POST,
                    &["runtime-releases", &digest.to_hex(), "revoke"],
                    None,
                )
                .await?;
            success(
                mode,
                &Changed {
                    release,
                    what: "Revoked",
                },
            )
        }
        RuntimeReleaseCommand::List => {
            let releases: Vec<RuntimeReleaseInfo> = client.get(&["runtime-releases"], &[]).await?;
            success(mode, &releases)
        }
    }
}

/// The digest given with `--digest`, or the SHA-256 of `--file`.
async fn release_digest(args: &RuntimeReleaseAddArgs) -> anyhow::Result<Digest> {
    match (&args.digest, &args.file) {
        (Some(hex), _) => parse_digest(hex).context(
            "pass the SHA-256 of the runtime executable (`sha256sum RUNTIME`), or --file RUNTIME to compute it here",
        ),
        (None, Some(path)) => {
            let path = path.clone();
            tokio::task::spawn_blocking(move || hash_file(&path))
                .await
                .context("hashing the runtime executable stopped unexpectedly")?
        }
        // clap requires one of them.
        (None, None) => anyhow::bail!("pass --digest HEX or --file RUNTIME"),
    }
}

/// 64 hex characters, either case.
fn parse_digest(hex: &str) -> anyhow::Result<Digest> {
    Digest::from_hex(hex.trim())
        .with_context(|| format!("{hex:?} is not a SHA-256 digest: a digest is 64 hex characters"))
}

/// SHA-256 of a file, read in pieces (runtime executables are large).
fn hash_file(path: &Path) -> anyhow::Result<Digest> {
    let mut file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    anyhow::ensure!(
        file.metadata().map(|m| m.is_file()).unwrap_or(false),
        "{} is not a file; pass the runtime executable",
        path.display()
    );
    let mut hasher = Hasher::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = file
            .read(&mut buffer)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let Some(chunk) = buffer.get(..n).filter(|c| !c.is_empty()) else {
            break;
        };
        hasher.update(chunk);
    }
    Ok(hasher.finish())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use sevenfold_rot::Digest;

    #[test]
    fn a_file_hashes_as_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runtime");
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        assert_eq!(super::hash_file(&path).unwrap(), Digest::of(&data));
        assert!(
            super::hash_file(dir.path()).is_err(),
            "a directory is refused"
        );
    }

    #[test]
    fn digests_are_64_hex_characters_either_case() {
        let d = Digest::of(b"x");
        assert_eq!(super::parse_digest(&d.to_hex()).unwrap(), d);
        assert_eq!(super::parse_digest(&d.to_hex().to_uppercase()).unwrap(), d);
        let err = super::parse_digest("abc").unwrap_err().to_string();
        assert!(err.contains("64 hex characters"), "{err}");
    }
}
