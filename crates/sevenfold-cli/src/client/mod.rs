//! The operator API client: HTTPS pinned to the service CA, bearer token,
//! JSON bodies, RFC 9457 problems turned into errors that say what to do.
//!
//! The TLS root store holds *only* the service CA the operator gave (with
//! `--ca`, `SEVENFOLD_CA` or `sevenfold login`): the system's roots are never
//! consulted, so no public CA can vouch for a fake Security Service.

mod lookup;
pub(crate) mod settings;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sevenfold_core::api::{Problem, TenantInfo};

use crate::cli::{ConnectionArgs, TenantArg};
use crate::files;
use settings::{CaSource, Environment, SavedLogin, Settings};

/// How long to wait for a TCP connection and TLS handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long one read may stall (large uploads are verified before the answer).
const READ_TIMEOUT: Duration = Duration::from_secs(300);

/// An error answer from the Security Service.
#[derive(Debug)]
pub(crate) struct ApiFailure {
    /// HTTP status.
    pub(crate) status: u16,
    /// The problem's `detail` (or a description of a non-problem answer).
    pub(crate) detail: String,
    /// What to do about it, when the status alone tells.
    pub(crate) hint: Option<&'static str>,
}

impl fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)?;
        if let Some(hint) = self.hint {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiFailure {}

/// A connection to one Security Service as one operator.
pub(crate) struct Client {
    http: reqwest::Client,
    server: String,
    token: String,
    tenant: Option<String>,
}

impl Client {
    /// Resolves the settings (flags, environment, saved login) and builds a client.
    pub(crate) fn connect(conn: &ConnectionArgs, tenant: &TenantArg) -> anyhow::Result<Client> {
        Client::new(settings_for(conn, tenant)?)
    }

    /// Builds a client from resolved settings.
    pub(crate) fn new(settings: Settings) -> anyhow::Result<Client> {
        let ca_pem = ca_pem(&settings.ca)?;
        let tls = tls_config(&ca_pem).with_context(|| match &settings.ca {
            CaSource::File(path) => format!("{} is not a usable service CA", path.display()),
            CaSource::Saved(_) => {
                "the service CA saved by `sevenfold login` is not usable; run `sevenfold login --ca CA.pem` again"
                    .to_owned()
            }
        })?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .https_only(true)
            // The API never redirects; a redirect is not followed with the token.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .user_agent(concat!("sevenfold/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot set up the HTTPS client")?;
        Ok(Client {
            http,
            server: settings.server,
            token: settings.token,
            tenant: settings.tenant,
        })
    }

    /// The server base URL.
    pub(crate) fn server(&self) -> &str {
        &self.server
    }

    /// The API token.
    pub(crate) fn token(&self) -> &str {
        &self.token
    }

    /// The tenant chosen by flag, environment or login, unresolved.
    pub(crate) fn tenant_choice(&self) -> Option<&str> {
        self.tenant.as_deref()
    }

    /// `<server>/api/v1/<segments…>`, each segment percent-encoded.
    pub(crate) fn url(&self, segments: &[&str]) -> anyhow::Result<Url> {
        let mut url = Url::parse(&self.server)
            .with_context(|| format!("{} is not a server address", self.server))?;
        url.path_segments_mut()
            .map_err(|()| anyhow::anyhow!("{} cannot be a base address", self.server))?
            .pop_if_empty()
            .extend(["api", "v1"])
            .extend(segments);
        Ok(url)
    }

    /// A request with the bearer token.
    pub(crate) fn request(&self, method: Method, url: Url) -> RequestBuilder {
        self.http.request(method, url).bearer_auth(&self.token)
    }

    /// Sends a request; an error status becomes an [`ApiFailure`].
    pub(crate) async fn send(&self, request: RequestBuilder) -> anyhow::Result<Response> {
        let response = request
            .send()
            .await
            .map_err(|e| connection_error(&self.server, e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        Err(anyhow::Error::new(failure(status, response).await))
    }

    /// `GET`, decoding JSON.
    pub(crate) async fn get<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> anyhow::Result<T> {
        let mut url = self.url(segments)?;
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        self.json(self.request(Method::GET, url)).await
    }

    /// A method with a JSON body, decoding the JSON answer.
    pub(crate) async fn call<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&B>,
    ) -> anyhow::Result<T> {
        let mut request = self.request(method, self.url(segments)?);
        if let Some(body) = body {
            request = request.json(body);
        }
        self.json(request).await
    }

    /// `DELETE`, expecting no body.
    pub(crate) async fn delete(&self, segments: &[&str]) -> anyhow::Result<()> {
        self.send(self.request(Method::DELETE, self.url(segments)?))
            .await?;
        Ok(())
    }

    /// Sends and decodes a JSON answer.
    pub(crate) async fn json<T: DeserializeOwned>(
        &self,
        request: RequestBuilder,
    ) -> anyhow::Result<T> {
        let response = self.send(request).await?;
        let path = response.url().path().to_owned();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| connection_error(&self.server, e))?;
        serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "the server's answer to {path} was not understood; is {} a Sevenfold server of this version?",
                self.server
            )
        })
    }

    /// The chosen tenant (`--tenant`, `SEVENFOLD_TENANT` or the login), as given.
    pub(crate) fn require_tenant(&self) -> anyhow::Result<&str> {
        self.tenant.as_deref().context(
            "no tenant chosen: pass --tenant NAME_OR_ID, set SEVENFOLD_TENANT, \
             or run `sevenfold login --tenant NAME_OR_ID`; `sevenfold tenant list` shows your tenants",
        )
    }

    /// The ID of the chosen tenant; a name is looked up.
    pub(crate) async fn tenant_id(&self) -> anyhow::Result<String> {
        let choice = self.require_tenant()?;
        if looks_like_uuid(choice) {
            return Ok(choice.to_owned());
        }
        Ok(self.resolve_tenant(choice).await?.id)
    }

    /// A tenant by ID or by name (among the tenants the caller can see).
    pub(crate) async fn resolve_tenant(&self, value: &str) -> anyhow::Result<TenantInfo> {
        if looks_like_uuid(value) {
            return self.get(&["tenants", value], &[]).await;
        }
        let tenants: Vec<TenantInfo> = self.get(&["tenants"], &[]).await?;
        tenants
            .into_iter()
            .find(|t| t.name == value)
            .with_context(|| {
                format!(
                    "no tenant named {value:?} among the tenants you have a role in; \
                     `sevenfold tenant list` shows them (or pass the tenant's ID)"
                )
            })
    }
}

/// The effective connection settings for these flags.
pub(crate) fn settings_for(conn: &ConnectionArgs, tenant: &TenantArg) -> anyhow::Result<Settings> {
    let saved = SavedLogin::load(&SavedLogin::path()?)?;
    settings::resolve(conn, tenant, &Environment::from_process(), saved.as_ref())
}

/// The service CA's PEM text.
pub(crate) fn ca_pem(source: &CaSource) -> anyhow::Result<String> {
    match source {
        CaSource::File(path) => files::read_text(path).context(
            "the service CA file is needed to trust the server (it is DATA_DIR/tls/ca.pem on the server)",
        ),
        CaSource::Saved(pem) => Ok(pem.clone()),
    }
}

/// Whether `value` has the form of a UUID (IDs of tenants, products, groups).
pub(crate) fn looks_like_uuid(value: &str) -> bool {
    let bytes = value.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// The rustls client configuration: TLS 1.2/1.3 with aws-lc-rs, trusting
/// only the service CA(s) in `ca_pem`.
fn tls_config(ca_pem: &str) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.context("the PEM text is malformed")?;
        roots
            .add(cert)
            .context("the certificate cannot be a trust anchor")?;
        count += 1;
    }
    anyhow::ensure!(count > 0, "it holds no PEM CERTIFICATE block");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("cannot set up TLS")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Reads an error answer into an [`ApiFailure`].
async fn failure(status: StatusCode, response: Response) -> ApiFailure {
    let body = response.bytes().await.unwrap_or_default();
    let detail = match serde_json::from_slice::<Problem>(&body) {
        Ok(problem) if !problem.detail.is_empty() => problem.detail,
        Ok(problem) => problem.title,
        Err(_) => format!(
            "the server answered HTTP {} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        ),
    };
    let hint = match status {
        StatusCode::UNAUTHORIZED => {
            Some("check --token or SEVENFOLD_TOKEN, or run `sevenfold login` again")
        }
        _ => None,
    };
    ApiFailure {
        status: status.as_u16(),
        detail,
        hint,
    }
}

/// A transport error, with what to check.
fn connection_error(server: &str, error: reqwest::Error) -> anyhow::Error {
    let certificate_problem = {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
        let mut found = false;
        while let Some(e) = source {
            let io_inner = e
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>());
            // Wrappers between reqwest and rustls vary; the message does not.
            if e.downcast_ref::<rustls::Error>().is_some()
                || io_inner.is_some()
                || e.to_string().contains("invalid peer certificate")
            {
                found = true;
                break;
            }
            source = e.source();
        }
        found
    };
    let hint = if certificate_problem {
        format!(
            "the TLS connection to {server} failed: its certificate must come from the service CA \
             you gave (--ca, SEVENFOLD_CA or `sevenfold login`), which is DATA_DIR/tls/ca.pem on the server"
        )
    } else if error.is_timeout() {
        format!("{server} did not answer in time; check the address and that `sevenfold server` is running there")
    } else {
        format!(
            "cannot reach the Security Service at {server}; check --server and that `sevenfold server` is running there"
        )
    };
    anyhow::Error::new(error).context(hint)
}
