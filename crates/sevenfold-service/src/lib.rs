//! The Sevenfold Security Service: what `sevenfold server` runs.
//!
//! It keeps the fleet's state (tenants, products, device groups, devices,
//! signing keys, images, the audit log) in a [`store::Store`] on SQLite (the
//! embedded default) or PostgreSQL (many stateless replicas), image bytes in
//! a [`blobs::BlobStore`], and serves the operator API over HTTPS.
//!
//! - [`config`]: flags over environment over TOML file over defaults.
//! - [`store`]: the database, one set of queries for both back-ends.
//! - [`blobs`]: immutable blobs (image packages), written atomically.
//! - `api`: axum handlers; `auth`: tokens, roles and the `Operator` extractor.
//! - `dashboard`: the web dashboard (`/ui`), server-rendered over the same
//!   store, tokens and roles as `api`.
//! - [`updates`]: TUF repositories per device group, deployments, rollouts.
//! - [`server`]: TLS, the accept loop, graceful shutdown.
//!
//! Design rule: nothing that replicas must share lives in process memory;
//! every request reads the database, so any replica can serve any request.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use sevenfold_service::config::{ConfigLayer, ServerConfig};
//! let config = ServerConfig::resolve(ConfigLayer::default(), ConfigLayer::default(), None)?;
//! let server = sevenfold_service::server::start(config).await?;
//! println!("listening on {}", server.operator_addr);
//! server.shutdown();
//! server.wait().await;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod api;
mod attestation;
mod auth;
pub mod blobs;
pub mod config;
mod credential;
mod dashboard;
mod device_api;
mod failures;
mod metrics;
mod recent;
mod remediation;
pub mod server;
pub mod store;
mod tenant_ca;
mod tls;
pub mod updates;

pub use api::ReportEncoder;
pub use server::ServerError;

/// The OpenAPI document of the operator API, as JSON.
pub fn openapi_json() -> String {
    api::openapi().to_pretty_json().unwrap_or_default()
}
