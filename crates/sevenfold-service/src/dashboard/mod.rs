//! The web dashboard (`/ui`): the fleet seen by an operator in a browser.
//!
//! Server-rendered HTML (maud, which escapes every interpolated value) on
//! the operator listener: same origin, same tokens, same roles as the
//! operator API. Nothing comes from the internet: the stylesheet and the one
//! small script are compiled into the binary, and charts are inline SVG
//! drawn here. Every page works without the script; it only fills in the
//! login form from a login link and confirms destructive actions.
//!
//! * **Sessions.** Logging in checks an API token (`sevenfold login`'s, or
//!   the one `quickstart` prints) and keeps it in an `HttpOnly`, `Secure`,
//!   `SameSite=Strict` cookie scoped to `/ui`; each request resolves it to
//!   the operator exactly as a bearer token is ([`Operator::from_token`]), so
//!   revoking the token ends the session.
//! * **Actions go through the API's own handlers** (resume, cancel,
//!   resolve): the same role checks, validation and audit entries, whichever
//!   door the operator used. A form carries a CSRF token derived from the
//!   session token, which another site cannot know.
//! * **Scale.** Pages read aggregates and keyset pages
//!   ([`crate::store::FleetSummary`], [`crate::store::FleetFilter`]), never a
//!   whole fleet, so they stay fast with 100 000 devices.
//! * **Headers.** A strict Content-Security-Policy (only this origin's
//!   script and style), no framing, no referrer to other sites, no caching
//!   of pages, and forms refused unless posted from this origin.

mod assets;
mod chart;
mod device;
mod fleet;
mod layout;
mod problems;
mod rollouts;
mod session;
mod tenant;

use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::api::error::ApiError;
use crate::api::AppState;

/// The dashboard's routes, to merge into the operator router.
pub(crate) fn router() -> Router<AppState> {
    let t = "/ui/t/{tenant}";
    Router::new()
        .route("/ui", get(tenant::tenants))
        .route("/ui/", get(tenant::tenants))
        .route("/ui/login", get(session::login_page).post(session::login))
        .route("/ui/logout", post(session::logout))
        .route("/ui/assets/{file}", get(assets::serve))
        .route(t, get(fleet::overview))
        .route(&format!("{t}/devices"), get(fleet::devices))
        .route(&format!("{t}/devices/{{device}}"), get(device::page))
        .route(&format!("{t}/groups"), get(rollouts::groups))
        .route(
            &format!("{t}/deployments/{{deployment}}"),
            get(rollouts::deployment),
        )
        .route(
            &format!("{t}/deployments/{{deployment}}/{{action}}"),
            post(rollouts::act),
        )
        .route(&format!("{t}/problems"), get(problems::list))
        .route(&format!("{t}/problems/{{problem}}"), get(problems::page))
        .route(
            &format!("{t}/problems/{{problem}}/resolve"),
            post(problems::resolve),
        )
        .route(&format!("{t}/ca"), get(tenant::ca))
        .route(&format!("{t}/ca/chain.pem"), get(tenant::ca_chain))
        .layer(middleware::from_fn(same_origin))
        .layer(middleware::from_fn(security_headers))
}

/// Refuses a form posted from another origin (the browser says where a
/// request comes from in `Origin`): defense in depth beside the CSRF token
/// and `SameSite=Strict`, and the only guard of the login form.
async fn same_origin(request: axum::extract::Request, next: Next) -> Response {
    if request.method() == axum::http::Method::POST {
        let header = |name| {
            request
                .headers()
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
        };
        if let Some(origin) = header(header::ORIGIN) {
            let origin_host = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"))
                .unwrap_or(origin);
            if Some(origin_host) != header(header::HOST) {
                return PageError(ApiError::Forbidden(format!(
                    "a form from {origin} cannot act on this dashboard"
                )))
                .into_response();
            }
        }
    }
    next.run(request).await
}

/// Headers every dashboard response carries.
async fn security_headers(request: axum::extract::Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        // Not `no-referrer`: under it a browser sends `Origin: null` with
        // this origin's own forms, which `same_origin` must refuse.
        (header::REFERRER_POLICY, "same-origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// A page that could not be shown: the API's error, as a page with the
/// same status and message.
#[derive(Debug)]
pub(crate) struct PageError(pub(crate) ApiError);

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        PageError(e)
    }
}

impl From<crate::store::StoreError> for PageError {
    fn from(e: crate::store::StoreError) -> Self {
        PageError(e.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        let message = match &self.0 {
            ApiError::Internal(message) => {
                tracing::error!(%message, "dashboard: internal error");
                "the server could not complete the request; the error is in its log".to_owned()
            }
            other => other.to_string(),
        };
        if status == StatusCode::UNAUTHORIZED {
            return session::to_login(None);
        }
        (status, layout::error_page(status, &message)).into_response()
    }
}

/// What a page handler returns.
pub(crate) type PageResult = Result<Response, PageError>;

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    use super::*;

    fn app() -> Router {
        Router::new()
            .route("/ui/x", post(|| async { "done" }))
            .layer(middleware::from_fn(same_origin))
    }

    async fn post_from(origin: Option<&str>) -> StatusCode {
        let mut request = Request::post("/ui/x").header("host", "127.0.0.1:8443");
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        app()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
            .status()
    }

    #[tokio::test]
    async fn forms_from_another_origin_are_refused() {
        assert_eq!(
            post_from(Some("https://127.0.0.1:8443")).await,
            StatusCode::OK
        );
        assert_eq!(post_from(None).await, StatusCode::OK);
        assert_eq!(
            post_from(Some("https://evil.example")).await,
            StatusCode::FORBIDDEN
        );
        assert_eq!(post_from(Some("null")).await, StatusCode::FORBIDDEN);
    }
}
