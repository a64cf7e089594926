//! `sevenfold keygen`: a signing key pair for image packages.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;
use sevenfold_rot::{KeyAlgorithm, SoftwareKey};

use crate::cli::{KeygenArgs, OutputMode};
use crate::files;
use crate::output::{emit, Render};

#[derive(Serialize)]
pub(crate) struct KeygenReport {
    pub(crate) algorithm: &'static str,
    pub(crate) key_id: String,
    pub(crate) private_key: PathBuf,
    pub(crate) public_key: PathBuf,
}

impl Render for KeygenReport {
    fn human(&self) -> String {
        format!(
            "Generated {} signing key {}\n  private key: {} (mode 0600; keep it secret)\n  public key:  {}\n",
            self.algorithm,
            self.key_id,
            self.private_key.display(),
            self.public_key.display()
        )
    }
}

pub(crate) fn run(mode: OutputMode, args: &KeygenArgs) -> anyhow::Result<ExitCode> {
    let report = generate(&args.out, args.algorithm.into(), args.force)?;
    emit(mode, &report)?;
    Ok(ExitCode::SUCCESS)
}

/// `key.pem` → `key.pub.pem`.
pub(crate) fn public_key_path(private: &Path) -> PathBuf {
    let stem = private
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "key".into());
    private.with_file_name(format!("{stem}.pub.pem"))
}

/// Generates a key pair and writes both halves.
pub(crate) fn generate(
    private_path: &Path,
    algorithm: KeyAlgorithm,
    force: bool,
) -> anyhow::Result<KeygenReport> {
    let public_path = public_key_path(private_path);
    if !force {
        for path in [private_path, public_path.as_path()] {
            anyhow::ensure!(
                !path.exists(),
                "{} already exists; pass --force to replace it",
                path.display()
            );
        }
    }
    let (key, pkcs8) = SoftwareKey::generate(algorithm).context("cannot generate a key")?;
    let pem = SoftwareKey::pkcs8_to_pem(&pkcs8);
    files::write_new(private_path, pem.as_bytes(), 0o600, force)?;
    files::write_new(
        &public_path,
        key.public_key().to_pem().as_bytes(),
        0o644,
        force,
    )?;
    Ok(KeygenReport {
        algorithm: algorithm.name(),
        key_id: key.public_key().key_id().to_hex(),
        private_key: private_path.to_path_buf(),
        public_key: public_path,
    })
}

/// Loads a private signing key written by `keygen`.
pub(crate) fn load_private(path: &Path) -> anyhow::Result<SoftwareKey> {
    let text = files::read_text(path)?;
    SoftwareKey::from_pem(&text).with_context(|| {
        format!(
            "{} is not a signing key; make one with `sevenfold keygen --out {}`",
            path.display(),
            path.display()
        )
    })
}
