//! Reading and checking the audit log.

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use sevenfold_core::api::{AuditEntryInfo, AuditPage, AuditVerifyReport};

use super::error::ApiError;
use super::{timestamp, AppState};
use crate::auth::{Access, Operator};
use crate::store::AuditFilter;

/// Filters for the audit log.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditQuery {
    /// RFC 3339 time; only entries at or after it.
    since: Option<String>,
    actor: Option<String>,
    after: Option<i64>,
    limit: Option<u32>,
}

/// The tenant's audit entries, oldest first.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/audit", tag = "audit",
    params(("since" = Option<String>, Query, description = "RFC 3339 time"), ("actor" = Option<String>, Query, description = "user name"),
           ("after" = Option<i64>, Query, description = "last seq of the previous page"), ("limit" = Option<u32>, Query, description = "page size, 1 to 1000")),
    responses((status = 200, body = AuditPage)))]
pub(crate) async fn list_audit(
    State(state): State<AppState>,
    operator: Operator,
    Path(tenant): Path<String>,
    Query(query): Query<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    operator
        .authorize(&state, &tenant, Access::Administer, "audit.list", &tenant)
        .await?;
    let since = match &query.since {
        None => None,
        Some(text) => {
            let t =
                time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                    .map_err(|e| {
                    ApiError::BadRequest(format!("since={text:?} is not an RFC 3339 time: {e}"))
                })?;
            Some(i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX))
        }
    };
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let entries = state
        .store
        .list_audit(&AuditFilter {
            tenant_id: Some(tenant),
            actor: query.actor,
            since,
            after_seq: query.after,
            limit,
        })
        .await?;
    let next = (entries.len() == limit as usize)
        .then(|| entries.last().map(|e| e.seq))
        .flatten();
    Ok(Json(AuditPage {
        entries: entries
            .into_iter()
            .map(|e| AuditEntryInfo {
                seq: e.seq,
                at: timestamp(e.at),
                actor: e.actor,
                tenant_id: e.tenant_id,
                action: e.action,
                target: e.target,
                outcome: e.outcome.as_str().to_owned(),
                source: e.source,
                details: serde_json::from_str(&e.details).unwrap_or(serde_json::Value::Null),
                hash: e.hash,
            })
            .collect(),
        next,
    }))
}

/// Checks the whole hash chain (server administrators and tenant administrators).
#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "audit", responses((status = 200, body = AuditVerifyReport)))]
pub(crate) async fn verify_audit(
    State(state): State<AppState>,
    operator: Operator,
) -> Result<Json<AuditVerifyReport>, ApiError> {
    let is_admin = operator.principal.user.server_admin
        || operator
            .principal
            .roles
            .iter()
            .any(|(_, r)| *r == crate::store::Role::Administrator);
    if !is_admin {
        operator
            .require_server_admin(&state, "audit.verify", "audit")
            .await?;
    }
    let v = state.store.verify_audit().await?;
    Ok(Json(AuditVerifyReport {
        entries: v.entries,
        intact: v.first_broken.is_none(),
        first_broken_seq: v.first_broken.as_ref().map(|(seq, _)| *seq),
        reason: v.first_broken.map(|(_, reason)| reason),
    }))
}
