//! The operator API (`/api/v1`) and the probe endpoints.
//!
//! Handlers read as their signatures say: `Operator` is the authenticated
//! caller (or a 401), `Path` names the tenant and object, `JsonBody` is the
//! validated request. Each handler states the [`Access`](crate::auth::Access)
//! it needs in the tenant before touching anything, and records what it
//! changed in the audit log.
//!
//! Layers, outermost first: metrics (`metrics::track`), request body limit
//! (`DefaultBodyLimit`, raised only on the image upload route), then routing.

mod audit;
pub(crate) mod deployments;
mod devices;
pub(crate) mod error;
pub(crate) mod extract;
pub(crate) mod failures;
pub(crate) mod identity;
mod images;
mod products;
mod report_export;
mod tenants;
mod tuf;

pub use report_export::ReportEncoder;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{middleware, Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use utoipa::OpenApi;

use crate::auth::Operator;
use crate::blobs::BlobStore;
use crate::config::ServerConfig;
use crate::store::{AuditOutcome, NewAuditEntry, Store};
use error::ApiError;

/// The client's address, attached to each request by the accept loop.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClientAddr(pub(crate) SocketAddr);

/// What every handler can reach.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) store: Store,
    pub(crate) blobs: BlobStore,
    pub(crate) config: Arc<ServerConfig>,
    pub(crate) metrics: PrometheusHandle,
    /// Wraps private keys kept at rest (tenant CAs, online TUF keys).
    pub(crate) wrap: Arc<sevenfold_pki::KeyWrap>,
    /// Tenant CAs (their keys wrapped under `wrap`), with caches.
    pub(crate) tenant_cas: Arc<crate::tenant_ca::TenantCas>,
    /// Trusted manufacturer CAs, as the attestation path caches them.
    pub(crate) manufacturers: Arc<crate::attestation::ManufacturerTrust>,
    /// Device certificates verified recently (mutual-TLS requests).
    pub(crate) verified_certificates: Arc<crate::device_api::VerifiedCertificates>,
}

impl AppState {
    pub(crate) fn new(
        store: Store,
        blobs: BlobStore,
        config: Arc<ServerConfig>,
        metrics: PrometheusHandle,
        wrap: Arc<sevenfold_pki::KeyWrap>,
        tenant_cas: Arc<crate::tenant_ca::TenantCas>,
    ) -> AppState {
        AppState {
            store,
            blobs,
            config,
            metrics,
            wrap,
            tenant_cas,
            manufacturers: Arc::new(crate::attestation::ManufacturerTrust::new()),
            verified_certificates: Arc::new(crate::device_api::verified_certificates()),
        }
    }

    /// Appends to the audit log on behalf of `operator`.
    pub(crate) async fn audit(
        &self,
        operator: &Operator,
        tenant_id: Option<&str>,
        action: &str,
        target: &str,
        outcome: AuditOutcome,
        details: serde_json::Value,
    ) -> Result<(), ApiError> {
        self.append(
            operator.name(),
            &operator.source,
            tenant_id,
            action,
            target,
            outcome,
            details,
        )
        .await
    }

    /// Appends a refused unauthenticated attempt.
    pub(crate) async fn audit_anonymous(
        &self,
        source: &str,
        action: &str,
        target: &str,
        details: serde_json::Value,
    ) -> Result<(), ApiError> {
        self.append(
            "anonymous",
            source,
            None,
            action,
            target,
            AuditOutcome::Denied,
            details,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn append(
        &self,
        actor: &str,
        source: &str,
        tenant_id: Option<&str>,
        action: &str,
        target: &str,
        outcome: AuditOutcome,
        details: serde_json::Value,
    ) -> Result<(), ApiError> {
        self.store
            .append_audit(NewAuditEntry {
                actor: actor.to_owned(),
                tenant_id: tenant_id.map(str::to_owned),
                action: action.to_owned(),
                target: target.to_owned(),
                outcome,
                source: source.to_owned(),
                details: details.to_string(),
            })
            .await?;
        Ok(())
    }
}

/// RFC 3339 (UTC) from unix milliseconds.
pub(crate) fn timestamp(ms: i64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Sevenfold operator API",
        description = "Tenants, products, device groups, devices, images and the audit log of the Sevenfold Security Service. Authenticate with `Authorization: Bearer <token>`."
    ),
    paths(
        tenants::whoami,
        tenants::list_tenants,
        tenants::create_tenant,
        tenants::show_tenant,
        tenants::list_roles,
        tenants::add_role,
        tenants::remove_role,
        products::list_products,
        products::create_product,
        products::show_product,
        products::delete_product,
        products::list_groups,
        products::create_group,
        products::show_group,
        products::update_group,
        products::delete_group,
        devices::list_manufacturers,
        devices::trust_manufacturer,
        devices::list_devices,
        devices::claim_device,
        devices::show_device,
        devices::assign_device,
        devices::set_mode,
        devices::list_transfers,
        devices::request_transfer,
        devices::accept_transfer,
        devices::cancel_transfer,
        images::list_signing_keys,
        images::add_signing_key,
        images::revoke_signing_key,
        images::list_images,
        images::upload_image,
        images::show_image,
        images::download_image,
        audit::list_audit,
        audit::verify_audit,
        deployments::create_deployment,
        deployments::list_deployments,
        deployments::show_deployment,
        deployments::update_deployment,
        deployments::resume_deployment,
        deployments::cancel_deployment,
        failures::error_report,
        report_export::export_report,
        failures::list_problems,
        failures::show_problem,
        failures::resolve_problem,
        failures::show_settings,
        failures::update_settings,
        failures::list_webhooks,
        failures::add_webhook,
        failures::remove_webhook,
        tuf::show_tuf,
        tuf::rotate_keys,
        tuf::current_root,
        tuf::submit_root,
        tuf::draft_targets,
        tuf::submit_targets,
    ),
    components(schemas(sevenfold_core::api::Problem))
)]
struct ApiDoc;

/// The OpenAPI document, generated from the handlers and wire types.
pub(crate) fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// All routes with their layers.
pub(crate) fn router(state: AppState) -> Router {
    let body_limit = state.config.max_body_bytes;
    let upload_limit = usize::try_from(state.config.max_upload_bytes).unwrap_or(usize::MAX);
    let t = "/api/v1/tenants/{tenant}";
    let api = Router::new()
        .route("/api/v1/openapi.json", get(|| async { Json(openapi()) }))
        .route("/api/v1/whoami", get(tenants::whoami))
        .route(
            "/api/v1/tenants",
            get(tenants::list_tenants).post(tenants::create_tenant),
        )
        .route(t, get(tenants::show_tenant))
        .route(
            &format!("{t}/roles"),
            get(tenants::list_roles).post(tenants::add_role),
        )
        .route(
            &format!("{t}/roles/{{user}}"),
            axum::routing::delete(tenants::remove_role),
        )
        .route(
            &format!("{t}/products"),
            get(products::list_products).post(products::create_product),
        )
        .route(
            &format!("{t}/products/{{product}}"),
            get(products::show_product).delete(products::delete_product),
        )
        .route(
            &format!("{t}/device-groups"),
            get(products::list_groups).post(products::create_group),
        )
        .route(
            &format!("{t}/device-groups/{{group}}"),
            get(products::show_group)
                .patch(products::update_group)
                .delete(products::delete_group),
        )
        .route(
            "/api/v1/manufacturer-cas",
            get(devices::list_manufacturers).post(devices::trust_manufacturer),
        )
        .route(
            &format!("{t}/devices"),
            get(devices::list_devices).post(devices::claim_device),
        )
        .route(
            &format!("{t}/devices/{{device}}"),
            get(devices::show_device),
        )
        .route(
            &format!("{t}/devices/{{device}}/group"),
            put(devices::assign_device),
        )
        .route(
            &format!("{t}/devices/{{device}}/mode"),
            put(devices::set_mode),
        )
        .route(
            &format!("{t}/transfers"),
            get(devices::list_transfers).post(devices::request_transfer),
        )
        .route(
            &format!("{t}/transfers/{{transfer}}/accept"),
            post(devices::accept_transfer),
        )
        .route(
            &format!("{t}/transfers/{{transfer}}/cancel"),
            post(devices::cancel_transfer),
        )
        .route(
            &format!("{t}/signing-keys"),
            get(images::list_signing_keys).post(images::add_signing_key),
        )
        .route(
            &format!("{t}/signing-keys/{{key}}/revoke"),
            post(images::revoke_signing_key),
        )
        .route(
            &format!("{t}/images"),
            get(images::list_images)
                .post(images::upload_image)
                .layer(DefaultBodyLimit::max(upload_limit)),
        )
        .route(&format!("{t}/images/{{image}}"), get(images::show_image))
        .route(
            &format!("{t}/images/{{image}}/content"),
            get(images::download_image),
        )
        .route(&format!("{t}/audit"), get(audit::list_audit))
        .route(
            &format!("{t}/devices/{{device}}/attestations"),
            get(identity::attestations),
        )
        .route(
            &format!("{t}/devices/{{device}}/revoke"),
            post(identity::revoke_device),
        )
        .route(&format!("{t}/ca"), get(identity::tenant_ca_list))
        .route(
            &format!("{t}/ca/proof-of-possession"),
            post(identity::proof_of_possession),
        )
        .route(&format!("{t}/ca/rotate"), post(identity::rotate_ca))
        .route(
            "/api/v1/runtime-releases",
            get(identity::list_releases).post(identity::add_release),
        )
        .route(
            "/api/v1/runtime-releases/{digest}/revoke",
            post(identity::revoke_release),
        )
        .route("/api/v1/audit/verify", get(audit::verify_audit))
        .route(
            &format!("{t}/deployments"),
            get(deployments::list_deployments).post(deployments::create_deployment),
        )
        .route(
            &format!("{t}/deployments/{{deployment}}"),
            get(deployments::show_deployment).patch(deployments::update_deployment),
        )
        .route(
            &format!("{t}/deployments/{{deployment}}/resume"),
            post(deployments::resume_deployment),
        )
        .route(
            &format!("{t}/deployments/{{deployment}}/cancel"),
            post(deployments::cancel_deployment),
        )
        .route(&format!("{t}/error-report"), get(failures::error_report))
        .route(
            &format!("{t}/error-report/export"),
            get(report_export::export_report),
        )
        .route(&format!("{t}/problems"), get(failures::list_problems))
        .route(
            &format!("{t}/problems/{{problem}}"),
            get(failures::show_problem),
        )
        .route(
            &format!("{t}/problems/{{problem}}/resolve"),
            post(failures::resolve_problem),
        )
        .route(
            &format!("{t}/failure-settings"),
            get(failures::show_settings).put(failures::update_settings),
        )
        .route(
            &format!("{t}/webhooks"),
            get(failures::list_webhooks).post(failures::add_webhook),
        )
        .route(
            &format!("{t}/webhooks/{{webhook}}"),
            axum::routing::delete(failures::remove_webhook),
        )
        .route(
            &format!("{t}/device-groups/{{group}}/tuf"),
            get(tuf::show_tuf),
        )
        .route(
            &format!("{t}/device-groups/{{group}}/tuf/rotate"),
            post(tuf::rotate_keys),
        )
        .route(
            &format!("{t}/device-groups/{{group}}/tuf/root"),
            get(tuf::current_root).post(tuf::submit_root),
        )
        .route(
            &format!("{t}/device-groups/{{group}}/tuf/targets/draft"),
            get(tuf::draft_targets),
        )
        .route(
            &format!("{t}/device-groups/{{group}}/tuf/targets"),
            post(tuf::submit_targets),
        );
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(crate::metrics::render))
        .merge(api)
        .merge(crate::dashboard::router())
        .fallback(|| async {
            ApiError::NotFound(
                "no such endpoint; the API is described at /api/v1/openapi.json".into(),
            )
        })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn(crate::metrics::track))
        .with_state(state)
}

/// `GET /readyz`: ready when the database answers.
async fn ready(State(state): State<AppState>) -> (StatusCode, &'static str) {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(e) => {
            tracing::warn!(error = %e, "not ready: database unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable")
        }
    }
}
