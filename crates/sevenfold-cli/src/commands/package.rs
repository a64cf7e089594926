//! `sevenfold package`: build and sign an image package.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;
use sevenfold_core::manifest::{AppManifest, ImageType};
use sevenfold_core::package::{write_package, Limits, UnverifiedPackage};
use sevenfold_rot::{Digest, SoftwareKey};

use crate::cli::{OutputMode, PackageArgs};
use crate::commands::keygen;
use crate::files;
use crate::output::{emit, Render};

/// The first bytes of every WebAssembly binary module.
const WASM_MAGIC: &[u8; 4] = b"\0asm";

#[derive(Serialize)]
pub(crate) struct PackageReport {
    pub(crate) file: PathBuf,
    pub(crate) name: String,
    pub(crate) component_id: String,
    pub(crate) version: String,
    pub(crate) security_version: u32,
    pub(crate) size: u64,
    pub(crate) payload_sha256: String,
    pub(crate) package_digest: String,
    pub(crate) signer_key_id: String,
}

impl Render for PackageReport {
    fn human(&self) -> String {
        format!(
            "Wrote {} ({} bytes)\n  app:            {} {} (security version {})\n  component:      {}\n  package digest: {}\n  signed by:      {}\n",
            self.file.display(),
            self.size,
            self.name,
            self.version,
            self.security_version,
            self.component_id,
            self.package_digest,
            self.signer_key_id
        )
    }
}

pub(crate) fn run(mode: OutputMode, args: &PackageArgs) -> anyhow::Result<ExitCode> {
    let manifest = load_manifest(&args.manifest)?;
    let payload = files::read(&args.payload)?;
    let key = keygen::load_private(&args.key)?;
    let report = build(&manifest, &payload, &key, &args.out, args.force)?;
    emit(mode, &report)?;
    Ok(ExitCode::SUCCESS)
}

/// Reads and validates an app manifest file.
pub(crate) fn load_manifest(path: &Path) -> anyhow::Result<AppManifest> {
    let bytes = files::read(path)?;
    AppManifest::from_json(&bytes)
        .with_context(|| format!("{} is not a valid app manifest", path.display()))
}

/// Packages `payload` under `manifest`, signs it with `key` and writes `out`.
pub(crate) fn build(
    manifest: &AppManifest,
    payload: &[u8],
    key: &SoftwareKey,
    out: &Path,
    force: bool,
) -> anyhow::Result<PackageReport> {
    if manifest.image_type() == ImageType::Application {
        anyhow::ensure!(
            payload.starts_with(WASM_MAGIC),
            "the payload is not a WebAssembly module (it does not start with \\0asm); \
             applications are .wasm files built for wasm32-wasip1"
        );
    }
    let bytes = write_package(manifest, payload, key).context("cannot build the package")?;
    files::write_new(out, &bytes, 0o644, force)?;
    let package = UnverifiedPackage::parse(&bytes, &Limits::default())
        .context("the package just written does not parse back; this is a bug")?;
    Ok(PackageReport {
        file: out.to_path_buf(),
        name: manifest.name().to_owned(),
        component_id: manifest.component_id().to_string(),
        version: manifest.version().to_string(),
        security_version: manifest.security_version(),
        size: bytes.len() as u64,
        payload_sha256: Digest::of(payload).to_hex(),
        package_digest: package.package_digest().to_hex(),
        signer_key_id: key.public_key().key_id().to_hex(),
    })
}
