//! HTTPS to the Security Service's device API: the pinned service CA is the
//! only trust anchor, answers are bounded in size and time.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde::Serialize;

use crate::attest::AttestError;
use crate::state::TlsKey;
use crate::{AgentError, StateDir};

/// TCP connect and TLS handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A whole request, answer included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an idle connection to the service is kept for the next
/// request. Long enough for one exchange's requests in a row (nonce,
/// evidence, whoami; a batch of reports); short because a device calls the
/// service minutes or hours apart, and every connection it leaves idle holds
/// one of the service's bounded connection slots (a fleet of 10 000 idling
/// for the default 90 s would hold them all).
const IDLE_CONNECTION: Duration = Duration::from_secs(5);
/// Largest answer read (a certificate chain is a few kilobytes).
pub(crate) const MAX_RESPONSE_LEN: usize = 256 * 1024;
/// Longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// A client for one service, optionally presenting a client certificate.
pub(crate) struct ServiceClient {
    http: reqwest::Client,
    base: Url,
}

/// An answer: status, `Retry-After`, and the bounded body.
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) retry_after: Option<Duration>,
    pub(crate) body: Vec<u8>,
}

impl ServiceClient {
    /// Server-authenticated TLS only (for attestation).
    pub(crate) fn new(state: &StateDir) -> Result<ServiceClient, AgentError> {
        ServiceClient::build(state, None, None)
    }

    /// Mutual TLS with the device certificate chain and the TLS key.
    pub(crate) fn with_identity(
        state: &StateDir,
        chain_pem: &str,
        key: &TlsKey,
    ) -> Result<ServiceClient, AgentError> {
        ServiceClient::build(state, Some((chain_pem, key)), None)
    }

    /// Server-authenticated TLS with a restricted session's bearer token
    /// (a device whose software failed attestation, fetching its remedy).
    pub(crate) fn with_session(state: &StateDir, token: &str) -> Result<ServiceClient, AgentError> {
        ServiceClient::build(state, None, Some(token))
    }

    fn build(
        state: &StateDir,
        identity: Option<(&str, &TlsKey)>,
        bearer: Option<&str>,
    ) -> Result<ServiceClient, AgentError> {
        let tls = tls_config(&state.service_ca_pem()?, identity)?;
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = bearer {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| AgentError::Tls("the session token is not a header value".into()))?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .tls_backend_preconfigured(tls)
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .pool_idle_timeout(IDLE_CONNECTION)
            .user_agent(concat!("sevenfold-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| AgentError::Tls(error_chain(&e)))?;
        Ok(ServiceClient {
            http,
            base: state.config().service_url.clone(),
        })
    }

    /// The underlying HTTP client (same TLS configuration), for streaming.
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// `<service>/<segments…>`.
    pub(crate) fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// Sends a request with an optional JSON body and reads the answer.
    pub(crate) async fn send<B: Serialize>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&B>,
    ) -> Result<Reply, AttestError> {
        let url = self.url(segments);
        let mut request = self.http.request(method, url.clone());
        if let Some(body) = body {
            request = request.json(body);
        }
        let network = |e: reqwest::Error| AttestError::Network {
            url: url.to_string(),
            detail: error_chain(&e),
        };
        let mut response = request.send().await.map_err(network)?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER));
        if response
            .content_length()
            .is_some_and(|len| len > MAX_RESPONSE_LEN as u64)
        {
            return Err(AttestError::Protocol(format!(
                "the answer to {} announces more than {MAX_RESPONSE_LEN} bytes",
                url.path()
            )));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(network)? {
            if body.len() + chunk.len() > MAX_RESPONSE_LEN {
                return Err(AttestError::Protocol(format!(
                    "the answer to {} is longer than {MAX_RESPONSE_LEN} bytes",
                    url.path()
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Reply {
            status,
            retry_after,
            body,
        })
    }
}

impl Reply {
    /// The error for an answer that is neither the expected success nor a
    /// verdict: 429 → rate limited, a problem body → its detail.
    pub(crate) fn into_error(self) -> AttestError {
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            return AttestError::RateLimited {
                retry_after: self.retry_after,
            };
        }
        let detail = match serde_json::from_slice::<sevenfold_core::api::Problem>(&self.body) {
            Ok(problem) if !problem.detail.is_empty() => problem.detail,
            Ok(problem) => problem.title,
            Err(_) => format!(
                "HTTP {} {}",
                self.status.as_u16(),
                self.status.canonical_reason().unwrap_or("")
            ),
        };
        AttestError::Service {
            status: self.status.as_u16(),
            detail,
        }
    }
}

/// rustls client configuration: TLS 1.2/1.3 on aws-lc-rs, trusting only the
/// pinned service CA, with a client certificate when `identity` is given
/// (signing through the TPM when the TLS key is there).
fn tls_config(
    ca_pem: &str,
    identity: Option<(&str, &TlsKey)>,
) -> Result<rustls::ClientConfig, AgentError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| AgentError::Tls(format!("the pinned service CA: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| AgentError::Tls(format!("the pinned service CA: {e}")))?;
    }
    if roots.is_empty() {
        return Err(AgentError::Tls(
            "the pinned service CA (service-ca.pem) holds no certificate".into(),
        ));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| AgentError::Tls(e.to_string()))?
        .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some((chain_pem, key)) => {
            let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| AgentError::Tls(format!("the device certificate: {e}")))?;
            if chain.is_empty() {
                return Err(AgentError::Tls(
                    "the device certificate file holds no certificate".into(),
                ));
            }
            let certified = key
                .certified(chain, &provider)
                .map_err(|e| AgentError::Tls(format!("the device certificate and TLS key: {e}")))?;
            builder.with_client_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(
                certified,
            )))
        }
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// An error and its causes on one line (reqwest's own message is terse).
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
