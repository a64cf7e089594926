//! Target downloads: resumable after a cut connection, bounded by the
//! signed length, and checked against the signed SHA-256 before any byte is
//! used. The length and hash come from targets metadata that `tough` has
//! verified; this module only holds the bytes to them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::client::error_chain;

/// Attempts (a resume each) before a download is given up for this round.
const ATTEMPTS: u32 = 5;
/// Pause between attempts.
const RETRY_PAUSE: Duration = Duration::from_millis(500);
/// A single request, body included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

/// Why a download was refused. `Network` is worth retrying later; the
/// others are attacks or damage and are reported.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DownloadError {
    /// The connection failed repeatedly; the partial file is kept to resume.
    #[error("download interrupted: {0}")]
    Network(String),
    /// More bytes than the signed length (endless-data attack).
    #[error("the server sent more than the {0} bytes the signed targets metadata allows")]
    TooLong(u64),
    /// The bytes do not hash to the signed value (substitution).
    #[error("the downloaded file's SHA-256 {actual} does not match the signed {expected}")]
    HashMismatch {
        /// Signed.
        expected: String,
        /// Received.
        actual: String,
    },
    /// The partial file could not be written or read.
    #[error("cannot store the download in {path}: {detail}")]
    Local {
        /// The file.
        path: PathBuf,
        /// Why.
        detail: String,
    },
}

fn local(path: &Path, e: impl std::fmt::Display) -> DownloadError {
    DownloadError::Local {
        path: path.to_path_buf(),
        detail: e.to_string(),
    }
}

/// Downloads `url` into `dir/<sha256>.part`, resuming what is there, and
/// returns the verified bytes (the partial file is removed).
pub(crate) async fn fetch_verified(
    http: &reqwest::Client,
    url: reqwest::Url,
    sha256_hex: &str,
    length: u64,
    dir: &Path,
) -> Result<Vec<u8>, DownloadError> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| local(dir, e))?;
    let part = dir.join(format!("{sha256_hex}.part"));
    let mut last_error = String::new();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(RETRY_PAUSE).await;
        }
        match fetch_once(http, &url, length, &part).await {
            Ok(()) => return verify(&part, sha256_hex, length).await,
            Err(DownloadError::Network(e)) => {
                tracing::info!(error = %e, attempt, "download interrupted; resuming");
                last_error = e;
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&part).await;
                return Err(e);
            }
        }
    }
    Err(DownloadError::Network(last_error))
}

async fn have(part: &Path) -> u64 {
    tokio::fs::metadata(part).await.map_or(0, |m| m.len())
}

async fn fetch_once(
    http: &reqwest::Client,
    url: &reqwest::Url,
    length: u64,
    part: &Path,
) -> Result<(), DownloadError> {
    let mut offset = have(part).await;
    if offset > length {
        tokio::fs::remove_file(part)
            .await
            .map_err(|e| local(part, e))?;
        offset = 0;
    }
    if offset == length && length > 0 {
        return Ok(());
    }
    let mut request = http.get(url.clone()).timeout(REQUEST_TIMEOUT);
    if offset > 0 {
        request = request.header(reqwest::header::RANGE, format!("bytes={offset}-"));
    }
    let network = |e: reqwest::Error| DownloadError::Network(error_chain(&e));
    let mut response = request.send().await.map_err(network)?;
    let append = match response.status() {
        reqwest::StatusCode::PARTIAL_CONTENT if offset > 0 => true,
        reqwest::StatusCode::OK => false,
        s => {
            return Err(DownloadError::Network(format!(
                "{} answered HTTP {}",
                url.path(),
                s.as_u16()
            )))
        }
    };
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(part)
        .await
        .map_err(|e| local(part, e))?;
    let mut written = if append { offset } else { 0 };
    loop {
        let chunk = match response.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(e) => {
                // Keep what arrived: the next attempt resumes after it.
                file.flush().await.map_err(|e| local(part, e))?;
                return Err(network(e));
            }
        };
        if written + chunk.len() as u64 > length {
            return Err(DownloadError::TooLong(length));
        }
        file.write_all(&chunk).await.map_err(|e| local(part, e))?;
        written += chunk.len() as u64;
    }
    file.sync_all().await.map_err(|e| local(part, e))?;
    if written < length {
        return Err(DownloadError::Network(format!(
            "the connection closed after {written} of {length} bytes"
        )));
    }
    Ok(())
}

async fn verify(part: &Path, sha256_hex: &str, length: u64) -> Result<Vec<u8>, DownloadError> {
    let bytes = tokio::fs::read(part).await.map_err(|e| local(part, e))?;
    let _ = tokio::fs::remove_file(part).await;
    if bytes.len() as u64 != length {
        return Err(DownloadError::TooLong(length));
    }
    let actual = sevenfold_rot::Digest::of(&bytes).to_hex();
    if !actual.eq_ignore_ascii_case(sha256_hex) {
        return Err(DownloadError::HashMismatch {
            expected: sha256_hex.to_owned(),
            actual,
        });
    }
    Ok(bytes)
}
