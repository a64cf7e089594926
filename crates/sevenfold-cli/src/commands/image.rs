//! `sevenfold image …`: look inside image packages (`inspect`, local), and
//! upload, list, show and download a tenant's images on the Security Service.

use std::fs::File;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use futures_util::{StreamExt, TryStreamExt};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::Method;
use serde::Serialize;
use sevenfold_core::api::{ImageInfo, ImagePage};
use sevenfold_core::package::{
    read_package, Limits, TrustedKeys, UnverifiedPackage, FORMAT_VERSION,
};
use sevenfold_rot::{Digest, PublicKey};
use tokio::io::AsyncWriteExt;
use tokio_util::io::ReaderStream;

use crate::cli::{
    ImageAddArgs, ImageDownloadArgs, ImageListArgs, ImageShowArgs, InspectArgs, OutputMode,
};
use crate::client::Client;
use crate::files;
use crate::output::{emit, fields, success, table, Render};

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

// ------------------------------------------------------------ on the server

/// Read size for uploads.
const UPLOAD_CHUNK: usize = 64 * 1024;

impl Render for ImageInfo {
    fn human(&self) -> String {
        format!(
            "Image {} {}\n{}",
            self.name,
            self.version,
            fields(&[
                ("id", self.id.clone()),
                ("type", self.image_type.clone()),
                ("component", self.component_id.clone()),
                ("security version", self.security_version.to_string()),
                ("size", format!("{} bytes", self.size)),
                ("signer", self.signer_key_id.clone()),
                (
                    "uploaded",
                    format!("{} by {}", self.uploaded_at, self.uploaded_by)
                ),
            ])
        )
    }
}

impl Render for ImagePage {
    fn human(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .images
            .iter()
            .map(|i| {
                vec![
                    i.name.clone(),
                    i.version.clone(),
                    i.image_type.clone(),
                    i.size.to_string(),
                    i.id.clone(),
                    i.uploaded_at.clone(),
                ]
            })
            .collect();
        let mut text = table(
            &["NAME", "VERSION", "TYPE", "SIZE", "ID", "UPLOADED"],
            &rows,
            "No images; upload one with `sevenfold image add FILE.imagepackage`.",
        );
        if let Some(next) = &self.next {
            text.push_str(&format!(
                "More: pass --after {next} for the next page, or --all.\n"
            ));
        }
        text
    }
}

#[derive(Serialize)]
struct DownloadReport {
    id: String,
    file: PathBuf,
    size: u64,
}

impl Render for DownloadReport {
    fn human(&self) -> String {
        format!(
            "Downloaded image {} to {} ({} bytes; its digest matches the image ID).\n",
            self.id,
            self.file.display(),
            self.size
        )
    }
}

/// A byte progress bar on standard error; hidden when standard error is not
/// a terminal or the output is JSON.
fn progress_bar(mode: OutputMode, len: Option<u64>, verb: &'static str) -> ProgressBar {
    if mode == OutputMode::Json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(len, ProgressDrawTarget::stderr());
    let template = if len.is_some() {
        "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})"
    } else {
        "{msg} {bytes} ({bytes_per_sec})"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(verb);
    bar
}

/// `image add FILE`: streams the package as the request body.
pub(crate) async fn add(mode: OutputMode, args: &ImageAddArgs) -> anyhow::Result<ExitCode> {
    let client = Client::connect(&args.conn, &args.tenant)?;
    let tenant = client.tenant_id().await?;
    let path = &args.file;
    let file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("cannot open {}", path.display()))?;
    let size = file
        .metadata()
        .await
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    let bar = progress_bar(mode, Some(size), "uploading");
    let counter = bar.clone();
    let stream = ReaderStream::with_capacity(file, UPLOAD_CHUNK)
        .inspect_ok(move |chunk| counter.inc(chunk.len() as u64));
    let request = client
        .request(Method::POST, client.url(&["tenants", &tenant, "images"])?)
        .header(CONTENT_TYPE, "application/octet-stream")
        .header(CONTENT_LENGTH, size)
        .body(reqwest::Body::wrap_stream(stream));
    let uploaded = client.json::<ImageInfo>(request).await;
    bar.finish_and_clear();
    success(mode, &uploaded?)
}

/// `image list`: one page, or all with `--all`.
pub(crate) async fn list(mode: OutputMode, args: &ImageListArgs) -> anyhow::Result<ExitCode> {
    let client = Client::connect(&args.conn, &args.tenant)?;
    let tenant = client.tenant_id().await?;
    let page = &args.page;
    let mut all = ImagePage {
        images: Vec::new(),
        next: page.after.clone(),
    };
    loop {
        let mut query = Vec::new();
        if let Some(limit) = page.limit.or(page.all.then_some(1000)) {
            query.push(("limit", limit.to_string()));
        }
        if let Some(after) = &all.next {
            query.push(("after", after.clone()));
        }
        let got: ImagePage = client.get(&["tenants", &tenant, "images"], &query).await?;
        let empty = got.images.is_empty();
        all.images.extend(got.images);
        all.next = got.next;
        if !page.all || all.next.is_none() || empty {
            break;
        }
    }
    success(mode, &all)
}

/// `image show ID`.
pub(crate) async fn show(mode: OutputMode, args: &ImageShowArgs) -> anyhow::Result<ExitCode> {
    let client = Client::connect(&args.conn, &args.tenant)?;
    let tenant = client.tenant_id().await?;
    let image: ImageInfo = client
        .get(&["tenants", &tenant, "images", &args.id], &[])
        .await?;
    success(mode, &image)
}

/// A partly written file, removed unless kept.
struct Partial {
    path: Option<PathBuf>,
}

impl Drop for Partial {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// `image download ID --out FILE`: streams to a temporary file beside FILE,
/// checks the package's digest is the image ID, then renames it into place.
pub(crate) async fn download(
    mode: OutputMode,
    args: &ImageDownloadArgs,
) -> anyhow::Result<ExitCode> {
    let out = &args.out;
    anyhow::ensure!(
        args.force || !out.exists(),
        "{} already exists; pass --force to replace it",
        out.display()
    );
    let file_name = out
        .file_name()
        .with_context(|| format!("{} is not a file name", out.display()))?
        .to_string_lossy()
        .into_owned();
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let client = Client::connect(&args.conn, &args.tenant)?;
    let tenant = client.tenant_id().await?;
    let url = client.url(&["tenants", &tenant, "images", &args.id, "content"])?;
    let response = client.send(client.request(Method::GET, url)).await?;
    let expected = response.content_length();

    tokio::fs::create_dir_all(&dir)
        .await
        .with_context(|| format!("cannot create directory {}", dir.display()))?;
    let tmp = dir.join(format!(".{file_name}.{}.partial", std::process::id()));
    let partial = Partial {
        path: Some(tmp.clone()),
    };
    let mut file = tokio::fs::File::create(&tmp)
        .await
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    let bar = progress_bar(mode, expected, "downloading");
    let mut received: u64 = 0;
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.context("the download was interrupted; run the command again")?;
        file.write_all(&chunk)
            .await
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        received += chunk.len() as u64;
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    file.sync_all()
        .await
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    drop(file);
    if let Some(expected) = expected {
        anyhow::ensure!(
            received == expected,
            "the download ended after {received} of {expected} bytes; run the command again"
        );
    }

    // The image ID is the package digest: check the bytes are that image.
    let check_path = tmp.clone();
    let digest = tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
        let limits = Limits {
            max_payload_len: u64::MAX,
            ..Limits::default()
        };
        let bytes = read_package(File::open(&check_path)?, &limits)?;
        Ok(UnverifiedPackage::parse(&bytes, &limits)?
            .package_digest()
            .to_hex())
    })
    .await
    .context("the package check did not finish")?
    .context("the downloaded file is not a valid image package; it was not saved")?;
    anyhow::ensure!(
        digest.eq_ignore_ascii_case(&args.id),
        "the downloaded package has digest {digest}, not the image ID {}; it was not saved",
        args.id
    );
    tokio::fs::rename(&tmp, out)
        .await
        .with_context(|| format!("cannot move the download to {}", out.display()))?;
    let mut partial = partial;
    partial.path = None;
    success(
        mode,
        &DownloadReport {
            id: digest,
            file: out.clone(),
            size: received,
        },
    )
}
