//! The tenants an operator can open, and a tenant's device CA (what third
//! parties such as MQTT brokers trust for device certificates).

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect};
use axum::Json;
use maud::html;

use super::fleet::open_tenant;
use super::layout::{self, Section};
use super::session::Session;
use super::PageResult;
use crate::api::AppState;

/// `GET /ui/`: the operator's tenants; straight to the only one.
pub(crate) async fn tenants(State(state): State<AppState>, session: Session) -> PageResult {
    let mut tenants = Vec::new();
    for (tenant_id, role) in &session.operator.principal.roles {
        let tenant = state.store.tenant(tenant_id).await?;
        tenants.push((tenant, role.as_str()));
    }
    tenants.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    if let [(only, _)] = tenants.as_slice() {
        return Ok(Redirect::to(&format!("/ui/t/{}", only.id)).into_response());
    }
    Ok(layout::bare(
        "Tenants",
        html! {
            main {
                h1 { "Tenants" }
                @if tenants.is_empty() {
                    p { "You (" (session.operator.name()) ") have no role in any tenant yet. "
                        "An administrator gives you one with " code { "sevenfold role add" } "." }
                }
                div.table-wrap { table #tenants {
                    thead { tr { th { "tenant" } th { "your role" } } }
                    tbody {
                        @for (tenant, role) in &tenants {
                            tr { td { a href=(format!("/ui/t/{}", tenant.id)) { (tenant.name) } } td { (role) } }
                        }
                    }
                } }
                form.logout method="post" action="/ui/logout" { button.secondary type="submit" { "Log out" } }
            }
        },
    )
    .into_response())
}

/// `GET /ui/t/{tenant}/ca`: the CA generations third parties should trust.
pub(crate) async fn ca(
    State(state): State<AppState>,
    session: Session,
    Path(tenant): Path<String>,
) -> PageResult {
    let name = open_tenant(&state, &session, &tenant, "dashboard.ca").await?;
    let Json(cas) = crate::api::identity::tenant_ca_list(
        State(state.clone()),
        session.operator.clone(),
        Path(tenant.clone()),
    )
    .await?;
    let body = html! {
        p { "Device certificates are issued by this tenant's CA. Give third parties (an MQTT broker, a cloud IoT hub) "
            "the chain below; during a rotation both generations are in it." }
        p { a #download-chain href=(format!("/ui/t/{tenant}/ca/chain.pem")) download="chain.pem" { "Download chain.pem" }
            " · the same as " code { "sevenfold tenant ca download --out chain.pem" } }
        div.table-wrap { table #cas {
            thead { tr { th { "generation" } th { "SHA-256 fingerprint" } th { "valid until" } } }
            tbody {
                @for ca in &cas {
                    tr { td { (ca.generation) } td { code { (ca.fingerprint) } } td { (ca.not_after) } }
                }
            }
        } }
    };
    Ok(layout::page(&session, &tenant, &name, Section::Ca, "Tenant CA", body).into_response())
}

/// `GET /ui/t/{tenant}/ca/chain.pem`: every published generation, PEM.
pub(crate) async fn ca_chain(
    State(state): State<AppState>,
    session: Session,
    Path(tenant): Path<String>,
) -> PageResult {
    let Json(cas) =
        crate::api::identity::tenant_ca_list(State(state), session.operator.clone(), Path(tenant))
            .await?;
    let pem: String = cas.iter().map(|c| c.certificate_pem.as_str()).collect();
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-pem-file"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"chain.pem\"",
            ),
        ],
        pem,
    )
        .into_response())
}
