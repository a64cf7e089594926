//! Failure reporting for operators: the error report, problems (list, show,
//! resolve), the retention setting and webhooks.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use sevenfold_core::report::{
    CreateWebhook, ErrorReportPage, ErrorReportRow, FailureSettings, Occurrence, ProblemDetail,
    ProblemInfo, ProblemPage, ResolveProblem, WebhookCreated, WebhookInfo, WEBHOOK_EVENTS,
};

use super::error::ApiError;
use super::extract::JsonBody;
use super::{timestamp, AppState};
use crate::auth::{Access, Operator};
use crate::failures::{sync_attestation_failures, webhook};
use crate::store::{now_millis, AuditOutcome, ProblemRecord, ReportRow, WebhookRecord, DAY_MS};

/// Query of the error report.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReportQuery {
    days: Option<u32>,
    group: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// Query of the problem list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProblemQuery {
    status: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

fn bad_cursor() -> ApiError {
    ApiError::BadRequest("cursor is not one this server returned".into())
}

/// Failures received in the last `days` days, newest first, paged.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/error-report", tag = "failures",
    params(
        ("days" = Option<u32>, Query, description = "how far back, 1 to 3650 (default 14)"),
        ("group" = Option<String>, Query, description = "only devices in this device group (ID)"),
        ("limit" = Option<u32>, Query, description = "rows per page, 1 to 10000 (default 1000)"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses((status = 200, body = ErrorReportPage)))]
pub(crate) async fn error_report(
    State(state): State<AppState>,
    operator: Operator,
    Path(tenant): Path<String>,
    Query(query): Query<ReportQuery>,
) -> Result<Json<ErrorReportPage>, ApiError> {
    operator
        .authorize(&state, &tenant, Access::Read, "error-report", &tenant)
        .await?;
    let days = report_days(query.days)?;
    let limit = query.limit.unwrap_or(1000).clamp(1, 10_000);
    let after = match &query.cursor {
        None => None,
        Some(c) => {
            let mut parts = c.splitn(3, '.');
            let at = parts
                .next()
                .and_then(|p| p.parse::<i64>().ok())
                .ok_or_else(bad_cursor)?;
            let device = parts.next().ok_or_else(bad_cursor)?.to_owned();
            let record = parts.next().ok_or_else(bad_cursor)?.to_owned();
            Some((at, device, record))
        }
    };
    let now = now_millis();
    sync_attestation_failures(&state.store, now).await?;
    let rows = state
        .store
        .report_page(
            &tenant,
            now - i64::from(days) * DAY_MS,
            query.group.as_deref(),
            after.as_ref(),
            limit,
        )
        .await?;
    let next_cursor = (rows.len() == limit as usize)
        .then(|| rows.last())
        .flatten()
        .map(|r| format!("{}.{}.{}", r.received_at, r.device_id, r.record_id));
    Ok(Json(ErrorReportPage {
        rows: rows.into_iter().map(report_row).collect(),
        next_cursor,
    }))
}

fn report_row(r: ReportRow) -> ErrorReportRow {
    ErrorReportRow {
        at: timestamp(r.at),
        received_at: timestamp(r.received_at),
        device_id: r.device_id,
        group_id: r.group_id,
        component_id: r.component_id,
        component_version: r.component_version,
        kind: r.kind,
        reason: r.reason,
        problem_id: r.problem_id,
        record_id: r.record_id,
    }
}

pub(super) fn report_days(days: Option<u32>) -> Result<u32, ApiError> {
    let days = days.unwrap_or(14);
    if !(1..=3650).contains(&days) {
        return Err(ApiError::BadRequest(
            "days must be between 1 and 3650".into(),
        ));
    }
    Ok(days)
}

fn problem_info(p: &ProblemRecord) -> ProblemInfo {
    ProblemInfo {
        id: p.id.clone(),
        signature: p.signature.clone(),
        component_id: p.component_id.clone(),
        kind: p.kind.clone(),
        title: p.title.clone(),
        status: p.status.clone(),
        first_seen: timestamp(p.first_seen),
        last_seen: timestamp(p.last_seen),
        count: p.occurrences,
        devices: p.devices,
        last_version: p.last_version.clone(),
    }
}

/// Problems, most recently seen first, paged.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/problems", tag = "failures",
    params(
        ("status" = Option<String>, Query, description = "open, resolved or regression"),
        ("limit" = Option<u32>, Query, description = "1 to 1000 (default 100)"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses((status = 200, body = ProblemPage)))]
pub(crate) async fn list_problems(
    State(state): State<AppState>,
    operator: Operator,
    Path(tenant): Path<String>,
    Query(query): Query<ProblemQuery>,
) -> Result<Json<ProblemPage>, ApiError> {
    operator
        .authorize(&state, &tenant, Access::Read, "problem.list", &tenant)
        .await?;
    if let Some(status) = &query.status {
        if !["open", "resolved", "regression"].contains(&status.as_str()) {
            return Err(ApiError::BadRequest(
                "status must be open, resolved or regression".into(),
            ));
        }
    }
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let after = match &query.cursor {
        None => None,
        Some(c) => {
            let (seen, id) = c.split_once('.').ok_or_else(bad_cursor)?;
            Some((
                seen.parse::<i64>().map_err(|_| bad_cursor())?,
                id.to_owned(),
            ))
        }
    };
    sync_attestation_failures(&state.store, now_millis()).await?;
    let problems = state
        .store
        .list_problems(&tenant, query.status.as_deref(), after.as_ref(), limit)
        .await?;
    let next_cursor = (problems.len() == limit as usize)
        .then(|| problems.last())
        .flatten()
        .map(|p| format!("{}.{}", p.last_seen, p.id));
    Ok(Json(ProblemPage {
        problems: problems.iter().map(problem_info).collect(),
        next_cursor,
    }))
}

async fn detail(state: &AppState, tenant: &str, id: &str) -> Result<ProblemDetail, ApiError> {
    let (problem, device_ids, versions) = state.store.problem(tenant, id).await?;
    let latest = state
        .store
        .problem_latest(tenant, id)
        .await?
        .map(|r| Occurrence {
            // Both were checked on the way in; a stored value that no longer
            // parses shows as empty rather than hiding the occurrence.
            frames: serde_json::from_str(&r.frames).unwrap_or_default(),
            details: serde_json::from_str(&r.details).unwrap_or_default(),
            at: timestamp(r.at),
            device_id: r.device_id,
            record_id: r.record_id,
            component_version: r.component_version,
            reason: r.reason,
        });
    Ok(ProblemDetail {
        problem: problem_info(&problem),
        device_ids,
        versions,
        resolved_at: problem.resolved_at.map(timestamp),
        resolved_version: problem.resolved_version,
        latest,
    })
}

/// One problem with its devices and versions.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/problems/{problem}", tag = "failures",
    responses((status = 200, body = ProblemDetail)))]
pub(crate) async fn show_problem(
    State(state): State<AppState>,
    operator: Operator,
    Path((tenant, id)): Path<(String, String)>,
) -> Result<Json<ProblemDetail>, ApiError> {
    operator
        .authorize(&state, &tenant, Access::Read, "problem.show", &id)
        .await?;
    Ok(Json(detail(&state, &tenant, &id).await?))
}

/// Marks a problem resolved; it reopens as a regression when seen in a newer version.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/problems/{problem}/resolve", tag = "failures",
    request_body = ResolveProblem, responses((status = 200, body = ProblemDetail)))]
pub(crate) async fn resolve_problem(
    State(state): State<AppState>,
    operator: Operator,
    Path((tenant, id)): Path<(String, String)>,
    JsonBody(body): JsonBody<ResolveProblem>,
) -> Result<Json<ProblemDetail>, ApiError> {
    operator
        .authorize(&state, &tenant, Access::Write, "problem.resolve", &id)
        .await?;
    if let Some(v) = &body.fixed_in {
        if v.is_empty() || v.len() > 128 {
            return Err(ApiError::BadRequest(
                "fixed_in must be 1 to 128 characters".into(),
            ));
        }
    }
    let problem = state
        .store
        .resolve_problem(&tenant, &id, body.fixed_in.as_deref(), now_millis())
        .await?;
    state
        .audit(
            &operator,
            Some(&tenant),
            "problem.resolve",
            &id,
            AuditOutcome::Ok,
            serde_json::json!({"fixed_in": problem.resolved_version}),
        )
        .await?;
    Ok(Json(detail(&state, &tenant, &id).await?))
}

/// The tenant's retention of failure reports.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/failure-settings", tag = "failures",
    responses((status = 200, body = FailureSettings)))]
pub(crate) async fn show_settings(
    State(state): State<AppState>,
    operator: Operator,
    Path(tenant): Path<String>,
) -> Result<Json<FailureSettings>, ApiError> {
    operator
        .authorize(
            &state,
            &tenant,
            Access::Read,
            "failure-settings.show",
            &tenant,
        )
        .await?;
    Ok(Json(FailureSettings {
        retention_days: state.store.retention_days(&tenant).await?,
    }))
}

/// Sets the tenant's retention of failure reports.
#[utoipa::path(put, path = "/api/v1/tenants/{tenant}/failure-settings", tag = "failures",
    request_body = FailureSettings, responses((status = 200, body = FailureSettings)))]
pub(crate) async fn update_settings(
    State(state): State<AppState>,
    operator: Operator,
    Path(tenant): Path<String>,
    JsonBody(body): JsonBody<FailureSettings>,
) -> Result<Json<FailureSettings>, ApiError> {
    operator
        .authorize(
            &state,
            &tenant,
            Access::Administer,
            "failure-settings.update",
            &tenant,
        )
        .await?;
    state
        .store
        .set_retention_days(&tenant, body.retention_days)
        .await?;
    state
        .audit(
            &operator,
            Some(&tenant),
            "failure-settings.update",
            &tenant,
            AuditOutcome::Ok,
            serde_json::json!({"retention_days": body.retention_days}),
        )
        .await?;
    Ok(Json(body))
}

fn webhook_info(w: &WebhookRecord) -> WebhookInfo {
    WebhookInfo {
        id: w.id.clone(),
        url: w.url.clone(),
        events: w.events.clone(),
        created_at: timestamp(w.created_at),
    }
}

/// The tenant's webhooks.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/webhooks", tag = "failures",
    responses((status = 200, body = [WebhookInfo])))]
pub(crate) async fn list_webhooks(
    State(state): State<AppState>,
    operator: Operator,
    Path(tenant): Path<String>,
) -> Result<Json<Vec<WebhookInfo>>, ApiError> {
    operator
        .authorize(&state, &tenant, Access::Read, "webhook.list", &tenant)
        .await?;
    let hooks = state.store.list_webhooks(&tenant).await?;
    Ok(Json(hooks.iter().map(webhook_info).collect()))
}

/// Adds a webhook; the answer carries its HMAC secret, shown once.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/webhooks", tag = "failures",
    request_body = CreateWebhook, responses((status = 201, body = WebhookCreated)))]
pub(crate) async fn add_webhook(
    State(state): State<AppState>,
    operator: Operator,
    Path(tenant): Path<String>,
    JsonBody(body): JsonBody<CreateWebhook>,
) -> Result<(StatusCode, Json<WebhookCreated>), ApiError> {
    operator
        .authorize(
            &state,
            &tenant,
            Access::Administer,
            "webhook.add",
            &body.url,
        )
        .await?;
    let url =
        webhook::check_url(&body.url, webhook::loopback_allowed()).map_err(ApiError::BadRequest)?;
    let mut events: Vec<String> = Vec::new();
    for event in &body.events {
        if !WEBHOOK_EVENTS.contains(&event.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "unknown event {event:?}; events are {}",
                WEBHOOK_EVENTS.join(", ")
            )));
        }
        if !events.contains(event) {
            events.push(event.clone());
        }
    }
    if events.is_empty() {
        return Err(ApiError::BadRequest("name at least one event".into()));
    }
    let mut secret = [0u8; 32];
    aws_lc_rs::rand::fill(&mut secret)
        .map_err(|_| ApiError::Internal("random number generator failed".into()))?;
    let id = uuid::Uuid::new_v4().to_string();
    let wrapped = state
        .wrap
        .wrap(&secret, &webhook::secret_context(&id))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let record = WebhookRecord {
        id: id.clone(),
        tenant_id: tenant.clone(),
        url: url.to_string(),
        events,
        wrapped_secret: wrapped,
        created_at: now_millis(),
    };
    state.store.add_webhook(&record).await?;
    state
        .audit(
            &operator,
            Some(&tenant),
            "webhook.add",
            &id,
            AuditOutcome::Ok,
            serde_json::json!({"url": record.url, "events": record.events}),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(WebhookCreated {
            webhook: webhook_info(&record),
            secret: hex::encode(secret),
        }),
    ))
}

/// Removes a webhook and its pending deliveries.
#[utoipa::path(delete, path = "/api/v1/tenants/{tenant}/webhooks/{webhook}", tag = "failures",
    responses((status = 204)))]
pub(crate) async fn remove_webhook(
    State(state): State<AppState>,
    operator: Operator,
    Path((tenant, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    operator
        .authorize(&state, &tenant, Access::Administer, "webhook.remove", &id)
        .await?;
    state.store.remove_webhook(&tenant, &id).await?;
    state
        .audit(
            &operator,
            Some(&tenant),
            "webhook.remove",
            &id,
            AuditOutcome::Ok,
            serde_json::json!({}),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
