//! Problems: the top ones, each with its occurrences over time, the
//! versions it was seen in, its latest occurrence, and resolve.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect};
use axum::{Form, Json};
use maud::html;
use serde::Deserialize;
use sevenfold_core::report::ResolveProblem;

use super::chart;
use super::fleet::open_tenant;
use super::layout::{self, Section};
use super::session::Session;
use super::PageResult;
use crate::api::error::ApiError;
use crate::api::extract::JsonBody;
use crate::api::AppState;
use crate::store::{now_millis, DAY_MS};

/// Problems on the list page.
const LISTED: u32 = 100;
/// Days in a problem's chart.
const CHART_DAYS: i64 = 30;
/// Affected devices listed on a problem's page.
const DEVICES_SHOWN: usize = 20;

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    status: Option<String>,
}

/// `GET /ui/t/{tenant}/problems`: the most recently seen problems, the
/// most frequent first.
pub(crate) async fn list(
    State(state): State<AppState>,
    session: Session,
    Path(tenant): Path<String>,
    Query(query): Query<ListQuery>,
) -> PageResult {
    let name = open_tenant(&state, &session, &tenant, "dashboard.problems").await?;
    let now = now_millis();
    let status = query.status.as_deref().filter(|s| !s.is_empty());
    if let Some(s) = status {
        if !["open", "resolved", "regression"].contains(&s) {
            return Err(
                ApiError::BadRequest("status must be open, resolved or regression".into()).into(),
            );
        }
    }
    crate::failures::sync_attestation_failures(&state.store, now).await?;
    let mut problems = state
        .store
        .list_problems(&tenant, status, None, LISTED)
        .await?;
    problems.sort_by(|a, b| {
        b.occurrences
            .cmp(&a.occurrences)
            .then(b.last_seen.cmp(&a.last_seen))
    });
    let base = format!("/ui/t/{tenant}");
    let body = html! {
        form.filters method="get" action=(format!("{base}/problems")) {
            label { "Status"
                select name="status" {
                    option value="" { "any" }
                    @for s in ["open", "regression", "resolved"] {
                        option value=(s) selected[status == Some(s)] { (s) }
                    }
                }
            }
            button type="submit" { "Show" }
        }
        div.table-wrap { table #problems {
            thead { tr {
                th { "problem" } th { "status" } th.num { "occurrences" } th.num { "devices" }
                th.hide-narrow { "component" } th.hide-narrow { "latest version" } th { "last seen" }
            } }
            tbody {
                @for p in &problems {
                    tr {
                        td { a href=(format!("{base}/problems/{}", p.id)) { (p.title) } }
                        td { (layout::status_badge(&p.status)) }
                        td.num { (p.occurrences) }
                        td.num { (p.devices) }
                        td.hide-narrow { (p.component_id) }
                        td.hide-narrow { code { (p.last_version) } }
                        td { (layout::when(Some(p.last_seen), now)) }
                    }
                }
                @if problems.is_empty() { tr { td.muted colspan="7" { "no problems" } } }
            }
        } }
        p.muted { "The " (LISTED) " most recently seen problems, the most frequent first." }
    };
    Ok(layout::page(
        &session,
        &tenant,
        &name,
        Section::Problems,
        "Problems",
        body,
    )
    .into_response())
}

/// `GET /ui/t/{tenant}/problems/{problem}`.
pub(crate) async fn page(
    State(state): State<AppState>,
    session: Session,
    Path((tenant, id)): Path<(String, String)>,
) -> PageResult {
    let name = open_tenant(&state, &session, &tenant, "dashboard.problem").await?;
    let now = now_millis();
    let Json(detail) = crate::api::failures::show_problem(
        State(state.clone()),
        session.operator.clone(),
        Path((tenant.clone(), id.clone())),
    )
    .await?;
    let today = now.div_euclid(DAY_MS);
    let first_day = today - CHART_DAYS + 1;
    let days = state.store.problem_days(&tenant, &id, first_day).await?;
    let points: Vec<(String, u64)> = (first_day..=today)
        .map(|day| {
            let n = days.iter().find(|(d, _)| *d == day).map_or(0, |(_, n)| *n);
            let date = layout::time(day * DAY_MS);
            (date.get(5..10).unwrap_or(&date).to_owned(), n)
        })
        .collect();
    let p = &detail.problem;
    let base = format!("/ui/t/{tenant}");
    let body = html! {
        div.grid2 {
            section.card {
                dl.facts {
                    dt { "Status" } dd #problem-status { (layout::status_badge(&p.status)) }
                    dt { "Component" } dd { (p.component_id) }
                    dt { "Kind" } dd { (p.kind) }
                    dt { "Occurrences" } dd { (p.count) }
                    dt { "Devices" } dd { (detail.device_ids.len()) }
                    dt { "First seen" } dd { (p.first_seen) }
                    dt { "Last seen" } dd { (p.last_seen) }
                    dt { "Versions" } dd { @for v in &detail.versions { code { (v) } " " } }
                    @if let Some(fixed) = &detail.resolved_version { dt { "Fixed in" } dd { code { (fixed) } } }
                }
                @if p.status != "resolved" {
                    form.inline method="post" action=(format!("{base}/problems/{id}/resolve")) {
                        (layout::csrf_field(&session))
                        label { "Fixed in version (optional) "
                            input type="text" name="fixed_in" maxlength="128" placeholder="e.g. 1.2.1";
                        }
                        button type="submit" #resolve { "Resolve" }
                    }
                }
            }
            section.card {
                h2 { "Occurrences, last " (CHART_DAYS) " days" }
                (chart::bars(&points, "occurrences per day"))
            }
        }
        @if let Some(latest) = &detail.latest {
            h2 { "Latest occurrence" }
            section.card {
                p { (latest.at) " on "
                    a href=(format!("{base}/devices/{}", latest.device_id)) { (layout::short(&latest.device_id)) }
                    ", version " code { (latest.component_version) } }
                p { (latest.reason) }
                @if !latest.frames.is_empty() {
                    pre.frames { @for f in &latest.frames { (f) "\n" } }
                }
            }
        }
        h2 { "Affected devices" }
        p {
            @for d in detail.device_ids.iter().take(DEVICES_SHOWN) {
                a href=(format!("{base}/devices/{d}")) { (layout::short(d)) } " "
            }
            @if detail.device_ids.len() > DEVICES_SHOWN {
                span.muted { "and " (detail.device_ids.len() - DEVICES_SHOWN) " more" }
            }
        }
    };
    Ok(layout::page(&session, &tenant, &name, Section::Problems, &p.title, body).into_response())
}

#[derive(Deserialize)]
pub(crate) struct ResolveForm {
    csrf: String,
    fixed_in: Option<String>,
}

/// `POST /ui/t/{tenant}/problems/{problem}/resolve`: through the API's
/// handler (role check, validation, audit).
pub(crate) async fn resolve(
    State(state): State<AppState>,
    session: Session,
    Path((tenant, id)): Path<(String, String)>,
    Form(form): Form<ResolveForm>,
) -> PageResult {
    session.check_csrf(&form.csrf)?;
    let body = ResolveProblem {
        fixed_in: form
            .fixed_in
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty()),
    };
    let Json(_) = crate::api::failures::resolve_problem(
        State(state),
        session.operator.clone(),
        Path((tenant.clone(), id.clone())),
        JsonBody(body),
    )
    .await?;
    Ok(Redirect::to(&format!("/ui/t/{tenant}/problems/{id}")).into_response())
}
