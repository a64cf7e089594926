//! The server process: storage, TLS, the accept loop and graceful shutdown.
//!
//! axum routes requests, but the accept loop is ours: each TCP connection
//! goes through a TLS handshake (with a deadline) and is then served by
//! hyper with the client's address attached to every request, which the
//! audit log records. Shutdown stops accepting, lets in-flight requests
//! finish (up to a grace period), then closes the database pool.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::api::{self, AppState, ClientAddr};
use crate::blobs::BlobStore;
use crate::config::ServerConfig;
use crate::store::Store;
use crate::{auth, metrics, tls};

/// How long a client has to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight requests may run after shutdown begins.
const GRACE_PERIOD: Duration = Duration::from_secs(20);
/// Most connections served at once; further ones wait in the kernel backlog.
const MAX_CONNECTIONS: usize = 1024;

/// Why the server could not start or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// Files in the data directory could not be used.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why (often: already in use).
        #[source]
        source: std::io::Error,
    },
    /// TLS material could not be loaded or created.
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// The database could not be opened or migrated.
    #[error("database: {0}")]
    Store(#[from] crate::store::StoreError),
}

impl ServerError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> ServerError {
        ServerError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A started server.
pub struct RunningServer {
    /// Where the operator API listens.
    pub operator_addr: SocketAddr,
    /// Where the device API listens.
    pub device_addr: SocketAddr,
    /// The service CA (PEM) that clients pin.
    pub ca_pem: String,
    /// The first administrator's token, set only on the very first start.
    pub bootstrap_token: Option<String>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
    store: Store,
}

impl RunningServer {
    /// Starts graceful shutdown.
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    /// Waits until the server has stopped (after [`RunningServer::shutdown`]).
    pub async fn wait(self) {
        let _ = self.task.await;
        self.store.close().await;
    }
}

/// Opens storage, prepares TLS, binds the listener and starts serving.
pub async fn start(config: ServerConfig) -> Result<RunningServer, ServerError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| ServerError::io(&config.data_dir, e))?;
    let store = Store::connect(&config.database, config.database_max_connections)
        .await?
        .with_delta_lease(Duration::from_secs(config.delta_lease_secs));
    let blobs = BlobStore::open(&config.data_dir.join("blobs"))
        .await
        .map_err(|e| ServerError::io(&config.data_dir.join("blobs"), e))?;
    let tls = tls::load_or_create(&config.data_dir, &config.hostnames)?;
    let wrap = Arc::new(wrap_key(&config)?);
    let tenant_cas = Arc::new(crate::tenant_ca::TenantCas::new(Arc::clone(&wrap)));
    let bootstrap_token = auth::bootstrap(&store).await?;

    let (listener, operator_addr) = bind(config.listen).await?;
    let (device_listener, device_addr) = bind(config.device_listen).await?;
    let state = AppState::new(
        store.clone(),
        blobs,
        Arc::new(config),
        metrics::install(),
        wrap,
        tenant_cas,
    );
    let (shutdown, shutdown_rx) = watch::channel(false);
    let operator = tokio::spawn(accept_loop(
        listener,
        TlsAcceptor::from(tls.operator),
        api::router(state.clone()),
        shutdown_rx.clone(),
    ));
    let device = tokio::spawn(accept_loop(
        device_listener,
        TlsAcceptor::from(tls.device),
        crate::device_api::router(state.clone()),
        shutdown_rx.clone(),
    ));
    let failures = tokio::spawn(crate::failures::background(
        state.store.clone(),
        state.wrap.clone(),
        shutdown_rx.clone(),
    ));
    let housekeeping = tokio::spawn(housekeeping(state.clone(), shutdown_rx));
    let task = tokio::spawn(async move {
        let _ = tokio::join!(operator, device, housekeeping, failures);
    });
    tracing::info!(%operator_addr, %device_addr, "operator API and device API listening (HTTPS)");
    Ok(RunningServer {
        operator_addr,
        device_addr,
        ca_pem: tls.ca_pem,
        bootstrap_token,
        shutdown,
        task,
        store,
    })
}

async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), ServerError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| ServerError::Bind { addr, source })?;
    Ok((listener, local))
}

/// The key that wraps tenant CA private keys: from the configuration, else a
/// key file in the data directory (created 0600 on first start).
fn wrap_key(config: &ServerConfig) -> Result<sevenfold_pki::KeyWrap, ServerError> {
    if let Some(hex) = &config.ca_wrap_key {
        return sevenfold_pki::KeyWrap::from_hex(hex)
            .map_err(|e| ServerError::Tls(format!("ca-wrap-key: {e}")));
    }
    let dir = config.data_dir.join("secrets");
    let path = dir.join("ca-wrap.key");
    if !path.exists() {
        std::fs::create_dir_all(&dir).map_err(|e| ServerError::io(&dir, e))?;
        let key = sevenfold_pki::KeyWrap::generate_master_key()
            .map_err(|e| ServerError::Tls(e.to_string()))?;
        tls::write_private(&path, hex::encode(key.as_slice()).as_bytes())?;
    }
    let text = std::fs::read_to_string(&path).map_err(|e| ServerError::io(&path, e))?;
    sevenfold_pki::KeyWrap::from_hex(text.trim())
        .map_err(|e| ServerError::Tls(format!("{}: {e}", path.display())))
}

/// Periodically deletes expired nonces and old rate-limit windows,
/// re-signs TUF timestamps past half their life, and takes over delta jobs
/// a dead replica left (any replica may; the database serialises them).
async fn housekeeping(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let store = state.store.clone();
    let expiry = crate::updates::Expiry::with_timestamp_secs(state.config.tuf_timestamp_ttl_secs);
    let interval = housekeeping_interval(state.config.delta_lease_secs);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
        if let Err(e) = store
            .purge_attestation_state(crate::store::now_millis(), 120_000)
            .await
        {
            tracing::warn!(error = %e, "housekeeping failed");
        }
        if let Err(e) = crate::updates::refresh_expiring(&store, &state.wrap, &expiry).await {
            tracing::warn!(error = %e, "re-signing TUF timestamps failed");
        }
        match crate::updates::delta::resume_abandoned(&state).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(jobs = n, "took over abandoned delta jobs"),
            Err(e) => tracing::warn!(error = %e, "taking over delta jobs failed"),
        }
    }
}

/// Housekeeping runs every minute, or twice per delta lease when that is
/// shorter, so a dead replica's delta job waits at most one and a half
/// leases for a taker.
fn housekeeping_interval(delta_lease_secs: u64) -> Duration {
    Duration::from_secs((delta_lease_secs / 2).clamp(1, 60))
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: axum::Router,
    mut shutdown: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = shutdown.changed() => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let router = router.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            // The client's certificate chain (device listener), for the
            // `AuthenticatedDevice` extractor to verify per request.
            let peer_certs = tls
                .get_ref()
                .1
                .peer_certificates()
                .map(|certs| crate::device_api::PeerCertificates(certs.to_vec()));
            let service = hyper::service::service_fn(
                move |mut request: hyper::Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(ClientAddr(peer));
                    if let Some(certs) = &peer_certs {
                        request.extensions_mut().insert(certs.clone());
                    }
                    router.clone().oneshot(request.map(axum::body::Body::new))
                },
            );
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(TokioIo::new(tls), service);
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!("shutting down: waiting for in-flight requests");
    if tokio::time::timeout(GRACE_PERIOD, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("grace period over; closing remaining connections");
    }
}
