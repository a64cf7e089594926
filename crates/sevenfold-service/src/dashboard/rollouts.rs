//! Device groups and their deployments: rollout progress over time, halted
//! rollouts with their reason, and resume or cancel (contributors).

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect};
use axum::{Form, Json};
use maud::{html, Markup};
use serde::Deserialize;
use sevenfold_core::update::ProgressCounts;

use super::chart::{self, Part, Series};
use super::fleet::{group_names, open_tenant};
use super::layout::{self, Section};
use super::session::Session;
use super::PageResult;
use crate::api::error::ApiError;
use crate::api::AppState;
use crate::store::{now_millis, DeploymentStatus, ProgressState};
use crate::updates::rollout;

/// Failed devices listed on a deployment's page.
const FAILED_SHOWN: usize = 50;

fn progress(counts: &ProgressCounts) -> Markup {
    chart::stacked(
        &[
            Part {
                label: "installed",
                value: counts.installed,
                class: "ok",
            },
            Part {
                label: "downloading",
                value: counts.downloading,
                class: "bar",
            },
            Part {
                label: "pending",
                value: counts.pending,
                class: "muted",
            },
            Part {
                label: "failed",
                value: counts.failed,
                class: "bad",
            },
            Part {
                label: "rolled back",
                value: counts.rolled_back,
                class: "warn",
            },
        ],
        "rollout progress",
    )
}

/// `GET /ui/t/{tenant}/groups`: each product's groups with their policy
/// and deployments.
pub(crate) async fn groups(
    State(state): State<AppState>,
    session: Session,
    Path(tenant): Path<String>,
) -> PageResult {
    let name = open_tenant(&state, &session, &tenant, "dashboard.groups").await?;
    let now = now_millis();
    let products = state.store.list_products(&tenant).await?;
    let groups = state.store.list_groups(&tenant, None).await?;
    let deployments = state.store.list_deployments(&tenant, None).await?;
    let base = format!("/ui/t/{tenant}");
    let mut summaries = Vec::new();
    for d in deployments.iter().filter(|d| {
        matches!(
            d.status,
            DeploymentStatus::Active | DeploymentStatus::Halted
        )
    }) {
        summaries.push((
            d,
            rollout::summarize(&state.store, d, false)
                .await
                .map_err(ApiError::from)?,
        ));
    }
    let body = html! {
        @for product in &products {
            h2 { (product.name) }
            div.table-wrap { table {
                thead { tr { th { "device group" } th { "update policy" } th.hide-narrow { "update window" } th.hide-narrow { "crash details" } th { "deployments" } } }
                tbody {
                    @for g in groups.iter().filter(|g| g.product_id == product.id) {
                        tr id=(format!("group-{}", g.id)) {
                            td { a href=(format!("{base}/devices?group={}", g.id)) { (g.name) } }
                            td { (g.update_policy.as_str()) }
                            td.hide-narrow { (g.update_window.as_deref().unwrap_or("any time")) }
                            td.hide-narrow { @if g.crash_details { "on" } @else { "off" } }
                            td {
                                @for d in deployments.iter().filter(|d| d.group_id == g.id).take(5) {
                                    a href=(format!("{base}/deployments/{}", d.id)) { (layout::short(&d.id)) }
                                    " " (layout::status_badge(d.status.as_str())) " "
                                }
                            }
                        }
                    }
                }
            } }
        }
        h2 { "Live rollouts" }
        @if summaries.is_empty() { p.muted { "No active or halted deployments." } }
        @for (d, info) in &summaries {
            section.card {
                p {
                    a href=(format!("{base}/deployments/{}", d.id)) { (layout::short(&d.id)) }
                    " " (layout::status_badge(d.status.as_str()))
                    " · " (d.percent) "% of the group · created " (layout::when(Some(d.created_at), now))
                }
                @if let Some(reason) = &d.halt_reason { p.error { (reason) } }
                (progress(&info.counts))
            }
        }
    };
    Ok(layout::page(
        &session,
        &tenant,
        &name,
        Section::Rollouts,
        "Device groups and deployments",
        body,
    )
    .into_response())
}

/// `GET /ui/t/{tenant}/deployments/{deployment}`.
pub(crate) async fn deployment(
    State(state): State<AppState>,
    session: Session,
    Path((tenant, id)): Path<(String, String)>,
) -> PageResult {
    let name = open_tenant(&state, &session, &tenant, "dashboard.deployment").await?;
    let now = now_millis();
    let d = state.store.deployment(&tenant, &id).await?;
    let info = rollout::summarize(&state.store, &d, false)
        .await
        .map_err(ApiError::from)?;
    let mut reports = state.store.deployment_progress(&tenant, &id).await?;
    reports.sort_by_key(|r| r.updated_at);
    let groups = group_names(&state, &tenant).await?;
    let images = state.store.deployment_images(&tenant, &id).await?;
    // Cumulative devices by their latest report over time.
    let mut installed = Vec::new();
    let mut failed = Vec::new();
    let (mut n_ok, mut n_bad) = (0u64, 0u64);
    for r in &reports {
        match r.state {
            ProgressState::Installed => {
                n_ok += 1;
                installed.push((r.updated_at, n_ok));
            }
            ProgressState::Failed | ProgressState::RolledBack => {
                n_bad += 1;
                failed.push((r.updated_at, n_bad));
            }
            ProgressState::Downloading => {}
        }
    }
    let (installed, failed) = (thin(installed), thin(failed));
    let end = reports
        .last()
        .map_or(now, |r| r.updated_at)
        .max(d.created_at + 1);
    let failures: Vec<_> = reports
        .iter()
        .rev()
        .filter(|r| matches!(r.state, ProgressState::Failed | ProgressState::RolledBack))
        .take(FAILED_SHOWN)
        .collect();
    let base = format!("/ui/t/{tenant}");
    let can_change = !matches!(
        d.status,
        DeploymentStatus::Cancelled | DeploymentStatus::Superseded
    );
    let body = html! {
        @if let Some(reason) = &d.halt_reason {
            div.notice #halt-reason { strong { "Halted: " } (reason) }
        }
        div.grid2 {
            section.card {
                dl.facts {
                    dt { "Status" } dd #status { (layout::status_badge(d.status.as_str())) }
                    dt { "Device group" } dd { (groups.get(&d.group_id).map_or(d.group_id.as_str(), String::as_str)) }
                    dt { "Share" } dd { (d.percent) "% of the group" }
                    dt { "Halts above" } dd { (d.max_failure_percent) "% failed" }
                    dt { "Created" } dd { (layout::when(Some(d.created_at), now)) " by " (d.created_by) }
                    dt { "Images" } dd {
                        @for i in &images { (i.image.name) " " code { (i.image.version) } br; }
                    }
                }
                @if can_change {
                    div {
                        @if d.status == DeploymentStatus::Halted {
                            form.inline method="post" action=(format!("{base}/deployments/{id}/resume")) {
                                (layout::csrf_field(&session))
                                button type="submit" #resume { "Resume rollout" }
                            }
                        }
                        form.inline method="post" action=(format!("{base}/deployments/{id}/cancel"))
                            data-confirm="Cancel this deployment? Its images are withdrawn from the group." {
                            (layout::csrf_field(&session))
                            button.danger type="submit" #cancel { "Cancel deployment" }
                        }
                        @if session.role_in(&tenant) == Some("reader") {
                            p.muted { "Resuming and cancelling need the contributor or administrator role." }
                        }
                    }
                }
            }
            section.card {
                h2 { "Progress" }
                (progress(&info.counts))
                p { (info.counts.targeted) " devices targeted" }
            }
        }
        h2 { "Over time" }
        section.card {
            (chart::timeline(&[
                Series { label: "installed", class: "ok", points: installed },
                Series { label: "failed or rolled back", class: "bad", points: failed },
            ], d.created_at, end, "devices installed and failed over time"))
        }
        h2 { "Failed devices" }
        div.table-wrap { table #failed-devices {
            thead { tr { th { "device" } th { "state" } th { "reason" } th { "when" } } }
            tbody {
                @for r in &failures {
                    tr {
                        td { a href=(format!("{base}/devices/{}", r.device_id)) { (layout::short(&r.device_id)) } }
                        td { (layout::status_badge(r.state.as_str())) }
                        td { (r.reason.as_deref().unwrap_or("")) }
                        td { (layout::when(Some(r.updated_at), now)) }
                    }
                }
                @if failures.is_empty() { tr { td.muted colspan="4" { "none" } } }
            }
        } }
    };
    let title = format!("Deployment {}", &id.chars().take(12).collect::<String>());
    Ok(layout::page(&session, &tenant, &name, Section::Rollouts, &title, body).into_response())
}

/// Most steps drawn per line: a chart is 1000 units wide, so more would
/// only make the page heavier (a 10 000-device rollout would draw 10 000).
const MAX_STEPS: usize = 250;

/// At most [`MAX_STEPS`] points of a cumulative series, evenly taken, the
/// last one always kept.
fn thin(points: Vec<(i64, u64)>) -> Vec<(i64, u64)> {
    if points.len() <= MAX_STEPS {
        return points;
    }
    let every = points.len().div_ceil(MAX_STEPS);
    let last = points.len() - 1;
    points
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % every == every - 1 || *i == last)
        .map(|(_, p)| p)
        .collect()
}

#[derive(Deserialize)]
pub(crate) struct ActionForm {
    csrf: String,
}

/// `POST /ui/t/{tenant}/deployments/{deployment}/{resume|cancel}`: through
/// the API's own handler (role check, state check, audit).
pub(crate) async fn act(
    State(state): State<AppState>,
    session: Session,
    Path((tenant, id, action)): Path<(String, String, String)>,
    Form(form): Form<ActionForm>,
) -> PageResult {
    session.check_csrf(&form.csrf)?;
    let path = Path((tenant.clone(), id.clone()));
    let operator = session.operator.clone();
    match action.as_str() {
        "resume" => {
            let Json(_) =
                crate::api::deployments::resume_deployment(State(state), operator, path).await?;
        }
        "cancel" => {
            let Json(_) =
                crate::api::deployments::cancel_deployment(State(state), operator, path).await?;
        }
        other => {
            return Err(ApiError::NotFound(format!("no deployment action {other}")).into());
        }
    }
    Ok(Redirect::to(&format!("/ui/t/{tenant}/deployments/{id}")).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_series_is_thinned_and_keeps_its_end() {
        let long: Vec<(i64, u64)> = (1..=10_000).map(|i| (i, i as u64)).collect();
        let thinned = thin(long);
        assert!(thinned.len() <= MAX_STEPS, "{}", thinned.len());
        assert_eq!(thinned.last(), Some(&(10_000, 10_000)));
        assert!(thinned.windows(2).all(|w| w[0].0 < w[1].0));
        let short = vec![(1, 1), (2, 2)];
        assert_eq!(thin(short.clone()), short);
    }
}
