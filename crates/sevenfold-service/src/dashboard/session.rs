//! Logging in and out, the session cookie, and CSRF tokens.

use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::html;
use serde::Deserialize;

use super::layout;
use crate::api::error::ApiError;
use crate::api::AppState;
use crate::auth::{client_source, ClientSource, Operator};

/// The session cookie: the operator's API token.
const COOKIE: &str = "sf_session";

/// A logged-in operator, from the session cookie.
pub(crate) struct Session {
    /// Who, with their roles.
    pub(crate) operator: Operator,
    /// The CSRF token forms must carry.
    pub(crate) csrf: String,
}

impl Session {
    /// Refuses a form whose CSRF token is not this session's (403).
    pub(crate) fn check_csrf(&self, presented: &str) -> Result<(), ApiError> {
        aws_lc_rs::constant_time::verify_slices_are_equal(
            presented.as_bytes(),
            self.csrf.as_bytes(),
        )
        .map_err(|_| {
            ApiError::Forbidden(
                "the form's CSRF token does not match this session; reload the page and try again"
                    .into(),
            )
        })
    }

    /// The operator's role in a tenant, as shown in the header.
    pub(crate) fn role_in(&self, tenant_id: &str) -> Option<&'static str> {
        self.operator
            .principal
            .role_in(tenant_id)
            .map(|role| role.as_str())
    }
}

/// The CSRF token of a session: a hash of its secret, so it is useless to
/// anyone who does not already hold the session.
fn csrf_of(token: &str) -> String {
    let mut input = b"sevenfold dashboard csrf\0".to_vec();
    input.extend_from_slice(token.as_bytes());
    sevenfold_rot::Digest::of(&input).to_hex()
}

fn session_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|value| !value.is_empty())
}

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let next = parts.uri.path_and_query().map(|p| p.as_str().to_owned());
        let Some(token) = session_token(&parts.headers) else {
            return Err(to_login(next.as_deref()));
        };
        let source = client_source(parts);
        match Operator::from_token(state, token, source, parts.uri.path()).await {
            Ok(operator) => Ok(Session {
                operator,
                csrf: csrf_of(token),
            }),
            Err(ApiError::Unauthenticated(_)) => Err(to_login(next.as_deref())),
            Err(e) => Err(super::PageError(e).into_response()),
        }
    }
}

/// Where to go after logging in: only a dashboard path of this origin.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with("/ui/") && !n.starts_with("/ui//") && !n.contains('\\') => n,
        _ => "/ui/",
    }
}

/// A redirect to the login page that comes back to `next`.
pub(crate) fn to_login(next: Option<&str>) -> Response {
    let target = match next {
        Some(n) if safe_next(Some(n)) == n => {
            format!("/ui/login?next={}", percent_encode(n))
        }
        _ => "/ui/login".to_owned(),
    };
    Redirect::to(&target).into_response()
}

/// Percent-encodes everything but unreserved characters and `/`.
pub(crate) fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[derive(Deserialize)]
pub(crate) struct LoginQuery {
    next: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    token: String,
    next: Option<String>,
}

fn login_form(next: &str, problem: Option<&str>) -> axum::response::Html<String> {
    layout::bare(
        "Log in",
        html! {
            main.login {
                h1 { "Sevenfold" }
                p { "Log in with an API token: the one " code { "sevenfold login" } " saved, or the admin token "
                    code { "sevenfold quickstart" } " printed." }
                @if let Some(problem) = problem {
                    p.error role="alert" { (problem) }
                }
                form method="post" action="/ui/login" id="login" {
                    label for="token" { "API token" }
                    input type="password" name="token" id="token" autocomplete="current-password" required;
                    input type="hidden" name="next" value=(next);
                    button type="submit" { "Log in" }
                }
            }
        },
    )
}

/// `GET /ui/login`.
pub(crate) async fn login_page(Query(query): Query<LoginQuery>) -> Response {
    let next = safe_next(query.next.as_deref()).to_owned();
    (StatusCode::OK, login_form(&next, None)).into_response()
}

/// `POST /ui/login`: checks the token and sets the session cookie.
pub(crate) async fn login(
    State(state): State<AppState>,
    ClientSource(source): ClientSource,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = safe_next(form.next.as_deref()).to_owned();
    let token = form.token.trim();
    match Operator::from_token(&state, token, source, "/ui/login").await {
        Ok(_) => {
            let cookie = format!(
                "{COOKIE}={token}; Path=/ui; HttpOnly; Secure; SameSite=Strict; Max-Age=43200"
            );
            let mut response = Redirect::to(&next).into_response();
            match HeaderValue::from_str(&cookie) {
                Ok(value) => {
                    response.headers_mut().insert(header::SET_COOKIE, value);
                    response
                }
                Err(_) => (
                    StatusCode::BAD_REQUEST,
                    login_form(&next, Some("that is not an API token")),
                )
                    .into_response(),
            }
        }
        Err(ApiError::Unauthenticated(message)) => {
            (StatusCode::UNAUTHORIZED, login_form(&next, Some(&message))).into_response()
        }
        Err(e) => super::PageError(e).into_response(),
    }
}

/// `POST /ui/logout`: forgets the session cookie (the token stays valid
/// for the API; `sevenfold` revokes tokens).
pub(crate) async fn logout() -> Response {
    let mut response = Redirect::to("/ui/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "sf_session=; Path=/ui; HttpOnly; Secure; SameSite=Strict; Max-Age=0",
        ),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_dashboard_paths_are_followed_after_login() {
        assert_eq!(
            safe_next(Some("/ui/t/x/devices?state=failing")),
            "/ui/t/x/devices?state=failing"
        );
        assert_eq!(safe_next(Some("https://evil.example/")), "/ui/");
        assert_eq!(safe_next(Some("//evil.example/")), "/ui/");
        assert_eq!(safe_next(Some("/ui//evil.example/")), "/ui/");
        assert_eq!(safe_next(Some("/api/v1/tenants")), "/ui/");
        assert_eq!(safe_next(None), "/ui/");
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; sf_session=sf_abc ; b=2"),
        );
        assert_eq!(session_token(&headers), Some("sf_abc"));
        headers.insert(header::COOKIE, HeaderValue::from_static("sf_session="));
        assert_eq!(session_token(&headers), None);
    }

    #[test]
    fn csrf_tokens_differ_per_session_and_are_not_the_token() {
        assert_ne!(csrf_of("sf_a"), csrf_of("sf_b"));
        assert!(!csrf_of("sf_a").contains("sf_a"));
    }
}
