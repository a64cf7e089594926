//! `tough`'s [`Transport`] over the agent's mutual-TLS client: the service
//! CA is the only trust anchor and the device certificate authenticates the
//! device (which is how the service knows its group). Answers are bounded:
//! `tough` bounds each metadata file again by its own limits.

use std::time::Duration;

use tough::{Transport, TransportError, TransportErrorKind, TransportStream};

use crate::client::error_chain;

/// Largest metadata file fetched (a targets file for many components).
pub(crate) const MAX_METADATA_LEN: usize = 8 * 1024 * 1024;
/// A whole metadata fetch.
const FETCH_TIMEOUT: Duration = Duration::from_secs(60);

/// Fetches TUF metadata through the device API.
#[derive(Clone)]
pub(crate) struct DeviceTransport {
    http: reqwest::Client,
}

impl std::fmt::Debug for DeviceTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceTransport")
    }
}

impl DeviceTransport {
    pub(crate) fn new(http: reqwest::Client) -> DeviceTransport {
        DeviceTransport { http }
    }
}

#[tough::async_trait]
impl Transport for DeviceTransport {
    async fn fetch(&self, url: reqwest::Url) -> Result<TransportStream, TransportError> {
        let text = url.to_string();
        let fail =
            |kind, e: &reqwest::Error| TransportError::new_with_cause(kind, &text, error_chain(e));
        let mut response = self
            .http
            .get(url.clone())
            .timeout(FETCH_TIMEOUT)
            .send()
            .await
            .map_err(|e| fail(TransportErrorKind::Other, &e))?;
        match response.status() {
            s if s.is_success() => {}
            reqwest::StatusCode::NOT_FOUND => {
                return Err(TransportError::new(TransportErrorKind::FileNotFound, &text))
            }
            s => {
                return Err(TransportError::new_with_cause(
                    TransportErrorKind::Other,
                    &text,
                    format!("HTTP {}", s.as_u16()),
                ))
            }
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| fail(TransportErrorKind::Other, &e))?
        {
            if body.len() + chunk.len() > MAX_METADATA_LEN {
                return Err(TransportError::new_with_cause(
                    TransportErrorKind::Other,
                    &text,
                    format!("longer than {MAX_METADATA_LEN} bytes"),
                ));
            }
            body.extend_from_slice(&chunk);
        }
        let once: Vec<Result<tough::Bytes, TransportError>> = vec![Ok(body.into())];
        Ok(Box::pin(futures_util::stream::iter(once)))
    }
}
