//! The fleet overview and the device list.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use maud::html;
use serde::Deserialize;

use super::chart::{self, Part};
use super::layout::{self, Section};
use super::session::{percent_encode, Session};
use super::PageResult;
use crate::api::AppState;
use crate::auth::Access;
use crate::store::{now_millis, FleetFilter, FleetState, LastSeen};

/// Devices per page of the device list.
const PAGE: u32 = 50;

/// The tenant's name, after checking the operator may read it.
pub(crate) async fn open_tenant(
    state: &AppState,
    session: &Session,
    tenant_id: &str,
    action: &str,
) -> Result<String, super::PageError> {
    session
        .operator
        .authorize(state, tenant_id, Access::Read, action, tenant_id)
        .await?;
    Ok(state.store.tenant(tenant_id).await?.name)
}

/// Group ID → name, for labels.
pub(crate) async fn group_names(
    state: &AppState,
    tenant_id: &str,
) -> Result<HashMap<String, String>, super::PageError> {
    Ok(state
        .store
        .list_groups(tenant_id, None)
        .await?
        .into_iter()
        .map(|g| (g.id, g.name))
        .collect())
}

fn state_class(state: FleetState) -> &'static str {
    match state {
        FleetState::Attested => "ok",
        FleetState::Expired => "warn",
        FleetState::Failing | FleetState::Revoked => "bad",
        FleetState::NeverAttested => "muted",
    }
}

/// `GET /ui/t/{tenant}`: the fleet in numbers.
pub(crate) async fn overview(
    State(state): State<AppState>,
    session: Session,
    Path(tenant): Path<String>,
) -> PageResult {
    let name = open_tenant(&state, &session, &tenant, "dashboard.fleet").await?;
    let now = now_millis();
    let summary = state.store.fleet_summary(&tenant, now).await?;
    let problems = state
        .store
        .list_problems(&tenant, Some("open"), None, 5)
        .await?;
    let regressions = state
        .store
        .list_problems(&tenant, Some("regression"), None, 5)
        .await?;
    let deployments = state.store.list_deployments(&tenant, None).await?;
    let halted: Vec<_> = deployments
        .iter()
        .filter(|d| d.status == crate::store::DeploymentStatus::Halted)
        .collect();
    let active = deployments
        .iter()
        .filter(|d| d.status == crate::store::DeploymentStatus::Active)
        .count();
    let base = format!("/ui/t/{tenant}");
    let parts: Vec<Part<'_>> = FleetState::ALL
        .iter()
        .map(|s| Part {
            label: s.as_str(),
            value: summary.by_state.get(s).copied().unwrap_or(0),
            class: state_class(*s),
        })
        .collect();
    let seen: Vec<Part<'_>> = LastSeen::ALL
        .iter()
        .map(|s| Part {
            label: s.as_str(),
            value: summary.by_last_seen.get(s).copied().unwrap_or(0),
            class: match s {
                LastSeen::Hour => "ok",
                LastSeen::Day => "bar",
                LastSeen::Week => "warn",
                LastSeen::Older => "bad",
                LastSeen::Never => "muted",
            },
        })
        .collect();
    let body = html! {
        div.cards {
            a href=(format!("{base}/devices")) { span.n { (summary.total) } span.label { "devices" } }
            @for s in FleetState::ALL {
                a href=(format!("{base}/devices?state={}", s.as_str())) {
                    span.n { (summary.by_state.get(&s).copied().unwrap_or(0)) }
                    span.label { (s.as_str()) }
                }
            }
            a href=(format!("{base}/problems")) { span.n { (problems.len() + regressions.len()) @if problems.len() == 5 { "+" } } span.label { "open problems" } }
            a href=(format!("{base}/groups")) { span.n { (active) } span.label { "active deployments" } }
        }
        @if !halted.is_empty() {
            h2 { "Halted rollouts" }
            div.notice {
                @for d in &halted {
                    p { a href=(format!("{base}/deployments/{}", d.id)) { (layout::short(&d.id)) } ": "
                        (d.halt_reason.as_deref().unwrap_or("halted")) }
                }
            }
        }
        div.grid2 {
            section.card {
                h2 { "Attestation" }
                (chart::stacked(&parts, "devices by attestation state"))
            }
            section.card {
                h2 { "Last seen" }
                (chart::stacked(&seen, "devices by last seen"))
            }
        }
        div.grid2 {
            section {
                h2 { "Runtime versions" }
                div.table-wrap { table {
                    thead { tr { th { "runtime" } th.num { "devices" } } }
                    tbody {
                        @for (version, n) in &summary.runtimes {
                            tr { td { @match version { Some(v) => code { (v) }, None => span.muted { "not yet attested" } } }
                                 td.num { (n) } }
                        }
                    }
                } }
            }
            section {
                h2 { "Application versions" }
                div.table-wrap { table {
                    thead { tr { th { "application" } th { "version" } th.num { "devices" } } }
                    tbody {
                        @for (app, version, n) in summary.apps.iter().take(30) {
                            tr { td { (app) } td { code { (version) } } td.num { (n) } }
                        }
                        @if summary.apps.is_empty() {
                            tr { td.muted colspan="3" { "no applications measured yet" } }
                        }
                    }
                } }
            }
        }
        h2 { "Recent problems" }
        div.table-wrap { table {
            thead { tr { th { "problem" } th { "status" } th.num { "occurrences" } th { "last seen" } } }
            tbody {
                @for p in regressions.iter().chain(problems.iter()) {
                    tr {
                        td { a href=(format!("{base}/problems/{}", p.id)) { (p.title) } }
                        td { (layout::status_badge(p.status.as_str())) }
                        td.num { (p.occurrences) }
                        td { (layout::when(Some(p.last_seen), now)) }
                    }
                }
                @if problems.is_empty() && regressions.is_empty() {
                    tr { td.muted colspan="4" { "no open problems" } }
                }
            }
        } }
    };
    Ok(layout::page(&session, &tenant, &name, Section::Fleet, "Fleet", body).into_response())
}

#[derive(Deserialize)]
pub(crate) struct DeviceListQuery {
    state: Option<String>,
    group: Option<String>,
    after: Option<String>,
}

/// `GET /ui/t/{tenant}/devices`: devices in ID order, filtered, 50 a page.
pub(crate) async fn devices(
    State(state): State<AppState>,
    session: Session,
    Path(tenant): Path<String>,
    Query(query): Query<DeviceListQuery>,
) -> PageResult {
    let name = open_tenant(&state, &session, &tenant, "dashboard.devices").await?;
    let now = now_millis();
    let fleet_state = match query.state.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(FleetState::parse(s).ok_or_else(|| {
            crate::api::error::ApiError::BadRequest(format!(
                "state must be one of attested, expired, failing, never-attested, revoked; not {s}"
            ))
        })?),
    };
    let filter = FleetFilter {
        group_id: query.group.clone().filter(|g| !g.is_empty()),
        state: fleet_state,
        after: query.after.clone().filter(|a| !a.is_empty()),
    };
    let groups = group_names(&state, &tenant).await?;
    let devices = state
        .store
        .fleet_devices(&tenant, &filter, now, PAGE)
        .await?;
    let base = format!("/ui/t/{tenant}");
    let mut next = None;
    if devices.len() == PAGE as usize {
        if let Some(last) = devices.last() {
            let mut href = format!("{base}/devices?after={}", percent_encode(&last.id));
            if let Some(s) = fleet_state {
                href.push_str(&format!("&state={}", s.as_str()));
            }
            if let Some(g) = &filter.group_id {
                href.push_str(&format!("&group={}", percent_encode(g)));
            }
            next = Some(href);
        }
    }
    let mut sorted_groups: Vec<_> = groups.iter().collect();
    sorted_groups.sort_by(|a, b| a.1.cmp(b.1));
    let body = html! {
        form.filters method="get" action=(format!("{base}/devices")) {
            label { "State"
                select name="state" {
                    option value="" { "any" }
                    @for s in FleetState::ALL {
                        option value=(s.as_str()) selected[fleet_state == Some(s)] { (s.as_str()) }
                    }
                }
            }
            label { "Device group"
                select name="group" {
                    option value="" { "any" }
                    @for (id, group) in &sorted_groups {
                        option value=(id) selected[filter.group_id.as_deref() == Some(id.as_str())] { (group) }
                    }
                }
            }
            button type="submit" { "Show" }
        }
        div.table-wrap { table #devices {
            thead { tr {
                th { "device" } th { "group" } th { "state" } th { "last seen" }
                th.hide-narrow { "runtime" } th.hide-narrow { "applications" } th.hide-narrow { "certificate expires" }
            } }
            tbody {
                @for d in &devices {
                    tr {
                        td { a href=(format!("{base}/devices/{}", d.id)) { (layout::short(&d.id)) } }
                        td { (d.group_id.as_ref().and_then(|g| groups.get(g)).map_or("—", String::as_str)) }
                        td { (layout::state_badge(d.state)) }
                        td { (layout::when(d.last_seen, now)) }
                        td.hide-narrow { (d.runtime_version.as_deref().unwrap_or("—")) }
                        td.hide-narrow { (d.app_versions.as_deref().filter(|a| !a.is_empty()).unwrap_or("—")) }
                        td.hide-narrow { (layout::when(d.certificate_not_after, now)) }
                    }
                }
                @if devices.is_empty() {
                    tr { td.muted colspan="7" { "no devices match" } }
                }
            }
        } }
        div.pager {
            @if filter.after.is_some() { a href=(format!("{base}/devices")) { "First page" } }
            @if let Some(next) = &next { a href=(next) rel="next" { "Next page" } }
        }
    };
    Ok(layout::page(&session, &tenant, &name, Section::Devices, "Devices", body).into_response())
}
