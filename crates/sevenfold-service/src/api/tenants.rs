//! Who am I, tenants, and roles.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use sevenfold_core::api::{AddRole, CreateTenant, RoleInfo, TenantInfo, TenantRole, Whoami};

use super::error::ApiError;
use super::extract::JsonBody;
use super::{timestamp, AppState};
use crate::auth::{new_token, Access, Operator};
use crate::store::{AuditOutcome, Role, StoreError, Tenant};

fn tenant_info(t: &Tenant) -> TenantInfo {
    TenantInfo {
        id: t.id.clone(),
        name: t.name.clone(),
        created_at: timestamp(t.created_at),
    }
}

/// Validates a human-chosen name (tenant, product, group, user).
pub(crate) fn check_name(what: &str, name: &str) -> Result<(), ApiError> {
    let ok = !name.trim().is_empty()
        && name.len() <= 128
        && name == name.trim()
        && !name.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "{what} name must be 1 to 128 characters, without leading or trailing spaces or control characters"
        )))
    }
}

/// The caller and their roles.
#[utoipa::path(get, path = "/api/v1/whoami", tag = "tenants", responses((status = 200, body = Whoami)))]
pub(crate) async fn whoami(
    State(state): State<AppState>,
    operator: Operator,
) -> Result<Json<Whoami>, ApiError> {
    let mut roles = Vec::new();
    for (tenant_id, role) in &operator.principal.roles {
        let tenant = state.store.tenant(tenant_id).await?;
        roles.push(TenantRole {
            tenant_id: tenant.id,
            tenant_name: tenant.name,
            role: role.as_str().to_owned(),
        });
    }
    Ok(Json(Whoami {
        user: operator.principal.user.name.clone(),
        server_admin: operator.principal.user.server_admin,
        roles,
    }))
}

/// Tenants the caller has a role in (all tenants for server administrators).
#[utoipa::path(get, path = "/api/v1/tenants", tag = "tenants", responses((status = 200, body = [TenantInfo])))]
pub(crate) async fn list_tenants(
    State(state): State<AppState>,
    operator: Operator,
) -> Result<Json<Vec<TenantInfo>>, ApiError> {
    let tenants = state.store.list_tenants().await?;
    Ok(Json(
        tenants
            .iter()
            .filter(|t| {
                operator.principal.user.server_admin || operator.principal.role_in(&t.id).is_some()
            })
            .map(tenant_info)
            .collect(),
    ))
}

/// Creates a tenant; the caller becomes its administrator. Server administrators only.
#[utoipa::path(post, path = "/api/v1/tenants", tag = "tenants", request_body = CreateTenant,
    responses((status = 201, body = TenantInfo), (status = 403, body = sevenfold_core::api::Problem), (status = 409, body = sevenfold_core::api::Problem)))]
pub(crate) async fn create_tenant(
    State(state): State<AppState>,
    operator: Operator,
    JsonBody(body): JsonBody<CreateTenant>,
) -> Result<(StatusCode, Json<TenantInfo>), ApiError> {
    operator
        .require_server_admin(&state, "tenant.create", &body.name)
        .await?;
    check_name("tenant", &body.name)?;
    let tenant = state.store.create_tenant(&body.name).await?;
    // Every tenant has its own device CA from the start.
    state
        .tenant_cas
        .published(&state.store, &tenant.id)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    state
        .store
        .set_role(&tenant.id, &operator.principal.user.id, Role::Administrator)
        .await?;
    state
        .audit(
            &operator,
            Some(&tenant.id),
            "tenant.create",
            &tenant.id,
            AuditOutcome::Ok,
            serde_json::json!({"name": tenant.name}),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(tenant_info(&tenant))))
}

/// One tenant.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}", tag = "tenants", responses((status = 200, body = TenantInfo)))]
pub(crate) async fn show_tenant(
    State(state): State<AppState>,
    operator: Operator,
    Path(tenant): Path<String>,
) -> Result<Json<TenantInfo>, ApiError> {
    operator
        .authorize(&state, &tenant, Access::Read, "tenant.show", &tenant)
        .await?;
    Ok(Json(tenant_info(&state.store.tenant(&tenant).await?)))
}

/// Users and their roles in the tenant.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/roles", tag = "roles", responses((status = 200, body = [RoleInfo])))]
pub(crate) async fn list_roles(
    State(state): State<AppState>,
    operator: Operator,
    Path(tenant): Path<String>,
) -> Result<Json<Vec<RoleInfo>>, ApiError> {
    operator
        .authorize(&state, &tenant, Access::Read, "role.list", &tenant)
        .await?;
    let roles = state.store.list_roles(&tenant).await?;
    Ok(Json(
        roles
            .into_iter()
            .map(|r| RoleInfo {
                user: r.user_name,
                role: r.role.as_str().to_owned(),
                token: None,
            })
            .collect(),
    ))
}

/// Grants a role; creates the user (and returns its first token, once) if new.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/roles", tag = "roles", request_body = AddRole, responses((status = 200, body = RoleInfo)))]
pub(crate) async fn add_role(
    State(state): State<AppState>,
    operator: Operator,
    Path(tenant): Path<String>,
    JsonBody(body): JsonBody<AddRole>,
) -> Result<Json<RoleInfo>, ApiError> {
    operator
        .authorize(&state, &tenant, Access::Administer, "role.add", &body.user)
        .await?;
    check_name("user", &body.user)?;
    let role = Role::parse(&body.role).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "unknown role {:?}: use administrator, contributor or reader",
            body.role
        ))
    })?;
    state.store.tenant(&tenant).await?;
    let (user, token) = match state.store.user_by_name(&body.user).await? {
        Some(user) => (user, None),
        None => {
            let user = match state.store.create_user(&body.user, false).await {
                Ok(user) => user,
                Err(StoreError::Conflict(m)) => return Err(ApiError::Conflict(m)),
                Err(e) => return Err(e.into()),
            };
            let (token, hash) = new_token()?;
            state.store.add_token(&user.id, &hash, "initial").await?;
            (user, Some(token))
        }
    };
    state.store.set_role(&tenant, &user.id, role).await?;
    state
        .audit(
            &operator,
            Some(&tenant),
            "role.add",
            &user.name,
            AuditOutcome::Ok,
            serde_json::json!({"role": role.as_str(), "new_user": token.is_some()}),
        )
        .await?;
    Ok(Json(RoleInfo {
        user: user.name,
        role: role.as_str().to_owned(),
        token,
    }))
}

/// Removes a user's role in the tenant.
#[utoipa::path(delete, path = "/api/v1/tenants/{tenant}/roles/{user}", tag = "roles", responses((status = 204)))]
pub(crate) async fn remove_role(
    State(state): State<AppState>,
    operator: Operator,
    Path((tenant, user)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    operator
        .authorize(&state, &tenant, Access::Administer, "role.remove", &user)
        .await?;
    let Some(found) = state.store.user_by_name(&user).await? else {
        return Err(ApiError::NotFound(format!("no user {user}")));
    };
    if !state.store.remove_role(&tenant, &found.id).await? {
        return Err(ApiError::NotFound(format!(
            "user {user} has no role in this tenant"
        )));
    }
    state
        .audit(
            &operator,
            Some(&tenant),
            "role.remove",
            &user,
            AuditOutcome::Ok,
            serde_json::json!({}),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
