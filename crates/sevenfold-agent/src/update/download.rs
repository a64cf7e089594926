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
/// Bytes gathered before each write to the partial file.
const WRITE_BUFFER: usize = 1 << 20;

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
    let file = tokio::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(part)
        .await
        .map_err(|e| local(part, e))?;
    // Each write to a tokio `File` is a trip to the blocking pool: gather
    // the network's small chunks into large writes.
    let mut file = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, file);
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
    file.flush().await.map_err(|e| local(part, e))?;
    file.get_ref()
        .sync_all()
        .await
        .map_err(|e| local(part, e))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A tiny HTTP server: the first answer is cut after `cut` body bytes
    /// (when given), later ones honour `Range: bytes=N-`. Serves `body`
    /// while announcing `announce` as the full length.
    async fn serve(
        body: Vec<u8>,
        cut: Option<usize>,
    ) -> (reqwest::Url, tokio::task::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url =
            reqwest::Url::parse(&format!("http://{}/t", listener.local_addr().unwrap())).unwrap();
        let task = tokio::spawn(async move {
            let mut ranges = Vec::new();
            for request in 0..3 {
                let Ok((mut socket, _)) = listener.accept().await else {
                    break;
                };
                let mut head = vec![0u8; 4096];
                let n = socket.read(&mut head).await.unwrap();
                let head = String::from_utf8_lossy(&head[..n]).to_lowercase();
                let from = head
                    .lines()
                    .find_map(|l| l.strip_prefix("range: bytes="))
                    .and_then(|r| r.trim().trim_end_matches('-').parse::<usize>().ok());
                ranges.push(from.map_or("none".to_owned(), |f| f.to_string()));
                let start = from.unwrap_or(0);
                let rest = &body[start..];
                let status = if from.is_some() {
                    "206 Partial Content"
                } else {
                    "200 OK"
                };
                let header = format!(
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    rest.len()
                );
                socket.write_all(header.as_bytes()).await.unwrap();
                let send = match (request, cut) {
                    (0, Some(cut)) => &rest[..cut],
                    _ => rest,
                };
                let _ = socket.write_all(send).await;
                let _ = socket.shutdown().await;
                if request == 0 && cut.is_none() {
                    break;
                }
                if request == 1 {
                    break;
                }
            }
            ranges
        });
        (url, task)
    }

    fn client() -> reqwest::Client {
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn a_cut_download_resumes_where_it_stopped() {
        let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let sha = sevenfold_rot::Digest::of(&body).to_hex();
        let (url, server) = serve(body.clone(), Some(40_000)).await;
        let dir = tempfile::tempdir().unwrap();
        let got = fetch_verified(&client(), url, &sha, body.len() as u64, dir.path())
            .await
            .unwrap();
        assert_eq!(got, body);
        // The second request asked only for what was missing.
        assert_eq!(server.await.unwrap(), ["none", "40000"]);
        assert!(!dir.path().join(format!("{sha}.part")).exists());
    }

    #[tokio::test]
    async fn more_bytes_than_signed_are_refused() {
        let body = vec![7u8; 5000];
        let sha = sevenfold_rot::Digest::of(&body[..1000]).to_hex();
        let (url, _server) = serve(body, None).await;
        let dir = tempfile::tempdir().unwrap();
        let err = fetch_verified(&client(), url, &sha, 1000, dir.path())
            .await
            .unwrap_err();
        assert!(matches!(err, DownloadError::TooLong(1000)), "{err}");
    }

    #[tokio::test]
    async fn bytes_that_do_not_hash_to_the_signed_value_are_refused() {
        let body = vec![7u8; 5000];
        let (url, _server) = serve(body, None).await;
        let dir = tempfile::tempdir().unwrap();
        let err = fetch_verified(&client(), url, &"00".repeat(32), 5000, dir.path())
            .await
            .unwrap_err();
        assert!(matches!(err, DownloadError::HashMismatch { .. }), "{err}");
        // Nothing unverified is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
