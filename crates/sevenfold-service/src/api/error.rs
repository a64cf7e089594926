//! API errors, mapped in one place to HTTP statuses and RFC 9457 problem bodies.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use sevenfold_core::api::Problem;

use crate::store::StoreError;

/// Why a request failed, by who is at fault.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// The request is malformed or names invalid values (400).
    #[error("{0}")]
    BadRequest(String),
    /// No valid token (401).
    #[error("{0}")]
    Unauthenticated(String),
    /// A valid token without the needed role (403).
    #[error("{0}")]
    Forbidden(String),
    /// No such object in this tenant (404).
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state (409).
    #[error("{0}")]
    Conflict(String),
    /// The body is larger than allowed (413).
    #[error("{0}")]
    PayloadTooLarge(String),
    /// Too many requests from this client or for this device (429).
    #[error("{0}")]
    TooManyRequests(String),
    /// A package or certificate failed verification (422).
    #[error("{0}")]
    Unprocessable(String),
    /// Something failed on our side (500); details are logged, not returned.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status this error answers with.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { what, id } => {
                ApiError::NotFound(format!("no {what} {id} in this tenant"))
            }
            StoreError::Conflict(m) => ApiError::Conflict(m),
            StoreError::Invalid(m) => ApiError::BadRequest(m),
            StoreError::RateLimited(bucket) => ApiError::TooManyRequests(format!(
                "too many requests ({bucket}); retry after the current minute"
            )),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let detail = match &self {
            ApiError::Internal(message) => {
                tracing::error!(%message, "internal error");
                "the server could not complete the request; the error is in its log".to_owned()
            }
            other => other.to_string(),
        };
        let problem = Problem {
            problem_type: "about:blank".to_owned(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail,
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/problem+json"),
        );
        response
    }
}
