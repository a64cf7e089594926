//! `sevenfold image …`: look inside image packages.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;
use sevenfold_core::package::{
    read_package, Limits, TrustedKeys, UnverifiedPackage, FORMAT_VERSION,
};
use sevenfold_rot::{Digest, PublicKey};

use crate::cli::{InspectArgs, OutputMode};
use crate::files;
use crate::output::{emit, Render};

/// Outcome of the signature check.
#[derive(Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub(crate) enum SignatureCheck {
    /// No public key was given.
    NotChecked,
    /// A given key verified the package.
    Verified { key_id: String },
    /// No given key verified it.
    Failed { reason: String },
}

#[derive(Serialize)]
pub(crate) struct InspectReport {
    pub(crate) file: PathBuf,
    pub(crate) size: u64,
    pub(crate) format_version: u16,
    pub(crate) name: String,
    pub(crate) component_id: String,
    pub(crate) version: String,
    pub(crate) security_version: u32,
    pub(crate) image_type: String,
    pub(crate) manifest: serde_json::Value,
    pub(crate) payload_size: u64,
    pub(crate) payload_sha256: String,
    pub(crate) package_digest: String,
    pub(crate) algorithm: &'static str,
    pub(crate) signer_key_id: String,
    pub(crate) signature: SignatureCheck,
}

impl Render for InspectReport {
    fn human(&self) -> String {
        let signature = match &self.signature {
            SignatureCheck::NotChecked => "not checked (pass --public-key KEY.pub.pem)".to_owned(),
            SignatureCheck::Verified { key_id } => format!("VERIFIED by {key_id}"),
            SignatureCheck::Failed { reason } => format!("FAILED: {reason}"),
        };
        let manifest = serde_json::to_string_pretty(&self.manifest).unwrap_or_default();
        format!(
            "Image package {}\n  size:            {} bytes (format version {})\n  app:             {} {} ({}, security version {})\n  component:       {}\n  payload:         {} bytes, sha256 {}\n  package digest:  {}\n  signer:          {} ({})\n  signature:       {}\nManifest:\n{}\n",
            self.file.display(),
            self.size,
            self.format_version,
            self.name,
            self.version,
            self.image_type,
            self.security_version,
            self.component_id,
            self.payload_size,
            self.payload_sha256,
            self.package_digest,
            self.signer_key_id,
            self.algorithm,
            signature,
            manifest
        )
    }
}

pub(crate) fn inspect(mode: OutputMode, args: &InspectArgs) -> anyhow::Result<ExitCode> {
    let keys = args
        .public_keys
        .iter()
        .map(|p| load_public(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let report = inspect_file(&args.file, &keys)?;
    let failed = matches!(report.signature, SignatureCheck::Failed { .. });
    emit(mode, &report)?;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Loads a PEM public key, naming the file in the error.
pub(crate) fn load_public(path: &Path) -> anyhow::Result<PublicKey> {
    PublicKey::from_pem(&files::read_text(path)?)
        .with_context(|| format!("{} is not a public key", path.display()))
}

/// Reads, parses and (if keys are given) verifies a package file.
pub(crate) fn inspect_file(path: &Path, keys: &[PublicKey]) -> anyhow::Result<InspectReport> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let bytes = read_package(file, &Limits::default())
        .with_context(|| format!("{} is not a readable image package", path.display()))?;
    let package = UnverifiedPackage::parse(&bytes, &Limits::default())
        .with_context(|| format!("{} is not a valid image package", path.display()))?;
    let manifest = package.manifest();
    let manifest_json: serde_json::Value = serde_json::from_str(&manifest.to_json())?;
    let mut report = InspectReport {
        file: path.to_path_buf(),
        size: bytes.len() as u64,
        format_version: FORMAT_VERSION,
        name: manifest.name().to_owned(),
        component_id: manifest.component_id().to_string(),
        version: manifest.version().to_string(),
        security_version: manifest.security_version(),
        image_type: format!("{:?}", manifest.image_type()),
        manifest: manifest_json,
        payload_size: package.payload().len() as u64,
        payload_sha256: Digest::of(package.payload()).to_hex(),
        package_digest: package.package_digest().to_hex(),
        algorithm: package.algorithm().name(),
        signer_key_id: package.signer_key_id().to_hex(),
        signature: SignatureCheck::NotChecked,
    };
    if !keys.is_empty() {
        let trusted: TrustedKeys = keys.iter().cloned().collect();
        report.signature = match package.verify(&trusted) {
            Ok(verified) => SignatureCheck::Verified {
                key_id: verified.signer_key_id().to_hex(),
            },
            Err(e) => SignatureCheck::Failed {
                reason: e.to_string(),
            },
        };
    }
    Ok(report)
}
