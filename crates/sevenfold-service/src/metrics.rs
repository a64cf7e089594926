//! Prometheus metrics: request counts and latencies per route, and the
//! database pool's state, rendered at `/metrics`.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::api::AppState;

/// Installs the process-wide recorder once; later calls return the same handle
/// (tests start several servers in one process).
pub(crate) fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed; then ours just renders nothing.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Middleware: counts each request and records its latency under its route
/// template (`/api/v1/tenants/{tenant}/devices`), never the raw path, so
/// IDs do not explode the number of series.
pub(crate) async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().as_str().to_owned();
    let start = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    let labels = [("route", route), ("method", method), ("status", status)];
    metrics::counter!("sevenfold_http_requests_total", &labels).increment(1);
    metrics::histogram!("sevenfold_http_request_duration_seconds", &labels)
        .record(start.elapsed().as_secs_f64());
    response
}

/// `GET /metrics`.
pub(crate) async fn render(State(state): State<AppState>) -> String {
    let (size, idle) = state.store.pool_size();
    metrics::gauge!("sevenfold_db_pool_connections").set(f64::from(size));
    metrics::gauge!("sevenfold_db_pool_idle_connections").set(idle as f64);
    state.metrics.render()
}
