//! Operator authentication and authorisation.
//!
//! Operators authenticate with bearer tokens. A token is 32 random bytes
//! shown once (`sf_` + hex); the database keeps only its SHA-256, so a
//! leaked database does not leak usable tokens. Authorisation is per tenant:
//! every handler names the [`Access`] it needs, and [`Operator::authorize`]
//! checks the caller's role in that tenant and audits any refusal.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use crate::api::error::ApiError;
use crate::api::{AppState, ClientAddr};
use crate::store::{AuditOutcome, Principal, Role, Store};
use crate::ServerError;

/// Prefix that makes tokens recognisable (e.g. to secret scanners).
pub(crate) const TOKEN_PREFIX: &str = "sf_";

/// A new random token and the hash to store.
pub(crate) fn new_token() -> Result<(String, [u8; 32]), ApiError> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| ApiError::Internal("random number generator failed".into()))?;
    let token = format!("{TOKEN_PREFIX}{}", hex::encode(bytes));
    let hash = hash_token(&token);
    Ok((token, hash))
}

/// What the database stores for a token.
pub(crate) fn hash_token(token: &str) -> [u8; 32] {
    *sevenfold_rot::Digest::of(token.as_bytes()).as_bytes()
}

/// On the very first start (no users at all), creates the server
/// administrator `admin` and returns its token, to be shown once.
pub(crate) async fn bootstrap(store: &Store) -> Result<Option<String>, ServerError> {
    if store.user_count().await? > 0 {
        return Ok(None);
    }
    let user = match store.create_user("admin", true).await {
        Ok(user) => user,
        // Another replica bootstrapped at the same moment; it prints the token.
        Err(crate::store::StoreError::Conflict(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let (token, hash) = new_token().map_err(|e| ServerError::Tls(e.to_string()))?;
    store.add_token(&user.id, &hash, "bootstrap").await?;
    Ok(Some(token))
}

/// The client's IP address as the audit log records it.
pub(crate) fn client_source(parts: &Parts) -> String {
    parts
        .extensions
        .get::<ClientAddr>()
        .map(|a| a.0.ip().to_string())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The client's IP address, as an extractor (never refuses).
pub(crate) struct ClientSource(pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for ClientSource {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientSource(client_source(parts)))
    }
}

/// What a handler needs to do in a tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// See objects: every role.
    Read,
    /// Create and change objects: contributors and administrators.
    Write,
    /// Delete objects: administrators only.
    Delete,
    /// Manage roles, keys and transfers: administrators only.
    Administer,
}

impl Access {
    fn allowed(self, role: Role) -> bool {
        match self {
            Access::Read => true,
            Access::Write => matches!(role, Role::Administrator | Role::Contributor),
            Access::Delete | Access::Administer => role == Role::Administrator,
        }
    }
}

/// The authenticated caller of an operator API request.
#[derive(Clone)]
pub(crate) struct Operator {
    pub(crate) principal: Principal,
    pub(crate) source: String,
}

impl Operator {
    /// The operator a token belongs to; an unknown or revoked token is
    /// audited (against `target`, the path asked for) and refused (401).
    /// Both the API's bearer tokens and the dashboard's session use this.
    pub(crate) async fn from_token(
        state: &AppState,
        token: &str,
        source: String,
        target: &str,
    ) -> Result<Operator, ApiError> {
        match state
            .store
            .principal_by_token_hash(&hash_token(token))
            .await?
        {
            Some(principal) => Ok(Operator { principal, source }),
            None => {
                state
                    .audit_anonymous(
                        &source,
                        "auth.token",
                        target,
                        serde_json::json!({"reason": "unknown or revoked token"}),
                    )
                    .await?;
                Err(ApiError::Unauthenticated(
                    "the API token is not valid (unknown or revoked)".into(),
                ))
            }
        }
    }

    /// The user name, as the audit log records it.
    pub(crate) fn name(&self) -> &str {
        &self.principal.user.name
    }

    /// Checks the caller may do `access` in `tenant_id`; a refusal is audited
    /// (with `action` and `target`) and returned as 403.
    pub(crate) async fn authorize(
        &self,
        state: &AppState,
        tenant_id: &str,
        access: Access,
        action: &str,
        target: &str,
    ) -> Result<Role, ApiError> {
        match self.principal.role_in(tenant_id) {
            Some(role) if access.allowed(role) => Ok(role),
            Some(role) => {
                let err = ApiError::Forbidden(format!(
                    "your role in tenant {tenant_id} is {}; {action} needs {}",
                    role.as_str(),
                    match access {
                        Access::Read => "any role",
                        Access::Write => "contributor or administrator",
                        Access::Delete | Access::Administer => "administrator",
                    }
                ));
                state
                    .audit(
                        self,
                        Some(tenant_id),
                        action,
                        target,
                        AuditOutcome::Denied,
                        serde_json::json!({"reason": err.to_string()}),
                    )
                    .await?;
                Err(err)
            }
            None => {
                let err = ApiError::Forbidden(format!("you have no role in tenant {tenant_id}"));
                state
                    .audit(
                        self,
                        Some(tenant_id),
                        action,
                        target,
                        AuditOutcome::Denied,
                        serde_json::json!({"reason": err.to_string()}),
                    )
                    .await?;
                Err(err)
            }
        }
    }

    /// Checks the caller administers the server; audits a refusal.
    pub(crate) async fn require_server_admin(
        &self,
        state: &AppState,
        action: &str,
        target: &str,
    ) -> Result<(), ApiError> {
        if self.principal.user.server_admin {
            return Ok(());
        }
        let err = ApiError::Forbidden(format!("{action} needs a server administrator"));
        state
            .audit(
                self,
                None,
                action,
                target,
                AuditOutcome::Denied,
                serde_json::json!({"reason": err.to_string()}),
            )
            .await?;
        Err(err)
    }
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let source = client_source(parts);
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let Some(token) = token else {
            return Err(ApiError::Unauthenticated(
                "no API token: send Authorization: Bearer <token> (see `sevenfold login`)".into(),
            ));
        };
        Operator::from_token(state, token, source, parts.uri.path()).await
    }
}
