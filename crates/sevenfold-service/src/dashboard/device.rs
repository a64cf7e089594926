//! One device: identity, certificate, attestation history with reasons,
//! what it runs, and its recent failures.

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use maud::{html, Markup};
use serde::Deserialize;

use super::fleet::open_tenant;
use super::layout::{self, Section};
use super::session::Session;
use super::PageResult;
use crate::api::AppState;
use crate::store::{now_millis, AttestationRecord};

/// Verdicts shown.
const HISTORY: u32 = 25;
/// Failure records shown.
const FAILURES: u32 = 25;

/// One measured component, as the verifier stored it.
#[derive(Deserialize)]
struct Measured {
    kind: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    component_id: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    digest: String,
}

fn reasons(record: &AttestationRecord) -> Vec<String> {
    serde_json::from_str(&record.reasons).unwrap_or_else(|_| vec![record.reasons.clone()])
}

fn measured(record: &AttestationRecord) -> Vec<Measured> {
    serde_json::from_str(&record.measurements).unwrap_or_default()
}

/// `GET /ui/t/{tenant}/devices/{device}`.
pub(crate) async fn page(
    State(state): State<AppState>,
    session: Session,
    Path((tenant, id)): Path<(String, String)>,
) -> PageResult {
    let name = open_tenant(&state, &session, &tenant, "dashboard.device").await?;
    let now = now_millis();
    let device = state.store.device(&tenant, &id).await?;
    let fleet = state.store.fleet_device(&tenant, &id, now).await?;
    let history = state.store.list_attestations(&tenant, &id, HISTORY).await?;
    let failures = state.store.device_failures(&tenant, &id, FAILURES).await?;
    let group = match &device.group_id {
        Some(g) => Some(state.store.group(&tenant, g).await?),
        None => None,
    };
    let running = history.iter().find(|r| r.passed).map(measured);
    let base = format!("/ui/t/{tenant}");
    let body = html! {
        div.grid2 {
            section.card {
                h2 { "Identity" }
                dl.facts {
                    dt { "Device ID" } dd { code #device-id { (device.id) } }
                    dt { "State" } dd { (layout::state_badge(fleet.state)) }
                    dt { "Device group" } dd {
                        @match &group {
                            Some(g) => a href=(format!("{base}/groups#group-{}", g.id)) { (g.name) },
                            None => span.muted { "none" },
                        }
                    }
                    dt { "Mode" } dd { (device.mode.as_str()) }
                    dt { "Claimed" } dd { (layout::when(Some(device.claimed_at), now)) }
                    dt { "Manufacturer CA" } dd { (layout::short(&device.manufacturer_fingerprint)) }
                    @if let Some(revoked) = device.revoked_at {
                        dt { "Revoked" } dd { (layout::when(Some(revoked), now)) }
                    }
                    dt { "Last seen" } dd { (layout::when(device.last_seen, now)) }
                }
            }
            section.card {
                h2 { "Certificate" }
                dl.facts {
                    dt { "Expires" } dd { (layout::when(fleet.certificate_not_after, now)) }
                    @if let Some(serial) = history.iter().find_map(|r| r.certificate_serial.as_deref()) {
                        dt { "Serial" } dd { code { (serial) } }
                    }
                    dt { "Runtime" } dd { (fleet.runtime_version.as_deref().unwrap_or("—")) }
                }
            }
        }
        h2 { "Installed images" }
        (installed(running.as_deref()))
        h2 { "Attestation history" }
        div.table-wrap { table #attestations {
            thead { tr { th { "when" } th { "verdict" } th { "reasons" } th.hide-narrow { "certificate" } th.hide-narrow { "from" } } }
            tbody {
                @for record in &history {
                    tr {
                        td { (layout::when(Some(record.at), now)) }
                        td { (layout::status_badge(if record.passed { "pass" } else { "fail" })) }
                        td {
                            @let why = reasons(record);
                            @if why.is_empty() { span.muted { "—" } }
                            @else { ul.reasons { @for r in &why { li { (r) } } } }
                        }
                        td.hide-narrow { @if let Some(until) = record.certificate_not_after { "until " (layout::time(until)) } }
                        td.hide-narrow { (record.source) }
                    }
                }
                @if history.is_empty() {
                    tr { td.muted colspan="5" { "this device has not attested yet" } }
                }
            }
        } }
        h2 { "Recent failures" }
        div.table-wrap { table #failures {
            thead { tr { th { "when" } th { "component" } th { "kind" } th { "reason" } th { "problem" } } }
            tbody {
                @for f in &failures {
                    tr {
                        td { (layout::when(Some(f.at), now)) }
                        td { (f.component_id) " " code { (f.component_version) } }
                        td { (f.kind) }
                        td { (f.reason) }
                        td { @if let Some(p) = &f.problem_id { a href=(format!("{base}/problems/{p}")) { (layout::short(p)) } } }
                    }
                }
                @if failures.is_empty() {
                    tr { td.muted colspan="5" { "no failures reported" } }
                }
            }
        } }
    };
    let title = format!("Device {}", &id.chars().take(16).collect::<String>());
    Ok(layout::page(&session, &tenant, &name, Section::Devices, &title, body).into_response())
}

fn installed(running: Option<&[Measured]>) -> Markup {
    let Some(components) = running else {
        return html! { p.muted { "No passing attestation yet: nothing is known to run." } };
    };
    html! {
        div.table-wrap { table #installed {
            thead { tr { th { "component" } th { "kind" } th { "version" } th.hide-narrow { "measurement" } } }
            tbody {
                @for c in components {
                    tr {
                        td { @if c.name.is_empty() { (c.component_id) } @else { (c.name) } }
                        td { (c.kind) }
                        td { code { (c.version) } }
                        td.hide-narrow { (layout::short(&c.digest)) }
                    }
                }
            }
        } }
    }
}
