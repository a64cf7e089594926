//! Products and device groups.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use sevenfold_core::api::{CreateGroup, CreateProduct, GroupInfo, ProductInfo, UpdateGroup};

use super::error::ApiError;
use super::extract::JsonBody;
use super::tenants::check_name;
use super::{timestamp, AppState};
use crate::auth::{Access, Operator};
use crate::store::{
    AuditOutcome, DeviceGroup, GroupUpdate, NewGroup, Product, RuntimeFeed, UpdatePolicy,
};

pub(crate) fn group_info(g: &DeviceGroup) -> GroupInfo {
    GroupInfo {
        id: g.id.clone(),
        product_id: g.product_id.clone(),
        name: g.name.clone(),
        description: g.description.clone(),
        update_policy: g.update_policy.as_str().to_owned(),
        runtime_feed: g.runtime_feed.as_str().to_owned(),
        rollout_percent: g.rollout_percent,
        crash_details: g.crash_details,
        created_at: timestamp(g.created_at),
        update_window: g.update_window.clone(),
    }
}

fn product_info(p: &Product, groups: &[DeviceGroup]) -> ProductInfo {
    ProductInfo {
        id: p.id.clone(),
        name: p.name.clone(),
        description: p.description.clone(),
        created_at: timestamp(p.created_at),
        device_groups: groups.iter().map(group_info).collect(),
    }
}

fn policy(value: &str) -> Result<UpdatePolicy, ApiError> {
    UpdatePolicy::parse(value).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "unknown update policy {value:?}: use accept-all or no-app-updates"
        ))
    })
}

fn feed(value: &str) -> Result<RuntimeFeed, ApiError> {
    RuntimeFeed::parse(value).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "unknown runtime feed {value:?}: use stable or evaluation"
        ))
    })
}

fn percent(value: u8) -> Result<u8, ApiError> {
    if value <= 100 {
        Ok(value)
    } else {
        Err(ApiError::BadRequest(format!(
            "rollout percent must be 0 to 100, got {value}"
        )))
    }
}

/// The tenant's products.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/products", tag = "products", responses((status = 200, body = [ProductInfo])))]
pub(crate) async fn list_products(
    State(state): State<AppState>,
    operator: Operator,
    Path(tenant): Path<String>,
) -> Result<Json<Vec<ProductInfo>>, ApiError> {
    operator
        .authorize(&state, &tenant, Access::Read, "product.list", &tenant)
        .await?;
    let products = state.store.list_products(&tenant).await?;
    let groups = state.store.list_groups(&tenant, None).await?;
    Ok(Json(
        products
            .iter()
            .map(|p| {
                let own: Vec<DeviceGroup> = groups
                    .iter()
                    .filter(|g| g.product_id == p.id)
                    .cloned()
                    .collect();
                product_info(p, &own)
            })
            .collect(),
    ))
}

/// Creates a product and its default device groups.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/products", tag = "products", request_body = CreateProduct, responses((status = 201, body = ProductInfo)))]
pub(crate) async fn create_product(
    State(state): State<AppState>,
    operator: Operator,
    Path(tenant): Path<String>,
    JsonBody(body): JsonBody<CreateProduct>,
) -> Result<(StatusCode, Json<ProductInfo>), ApiError> {
    operator
        .authorize(&state, &tenant, Access::Write, "product.create", &body.name)
        .await?;
    check_name("product", &body.name)?;
    let (product, groups) = state
        .store
        .create_product(&tenant, &body.name, &body.description)
        .await?;
    state
        .audit(
            &operator,
            Some(&tenant),
            "product.create",
            &product.id,
            AuditOutcome::Ok,
            serde_json::json!({"name": product.name}),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(product_info(&product, &groups))))
}

/// One product.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/products/{product}", tag = "products", responses((status = 200, body = ProductInfo)))]
pub(crate) async fn show_product(
    State(state): State<AppState>,
    operator: Operator,
    Path((tenant, product)): Path<(String, String)>,
) -> Result<Json<ProductInfo>, ApiError> {
    operator
        .authorize(&state, &tenant, Access::Read, "product.show", &product)
        .await?;
    let p = state.store.product(&tenant, &product).await?;
    let groups = state.store.list_groups(&tenant, Some(&product)).await?;
    Ok(Json(product_info(&p, &groups)))
}

/// Deletes a product and its groups (refused while devices are assigned).
#[utoipa::path(delete, path = "/api/v1/tenants/{tenant}/products/{product}", tag = "products", responses((status = 204)))]
pub(crate) async fn delete_product(
    State(state): State<AppState>,
    operator: Operator,
    Path((tenant, product)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    operator
        .authorize(&state, &tenant, Access::Delete, "product.delete", &product)
        .await?;
    state.store.delete_product(&tenant, &product).await?;
    state
        .audit(
            &operator,
            Some(&tenant),
            "product.delete",
            &product,
            AuditOutcome::Ok,
            serde_json::json!({}),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Filter for listing groups.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GroupFilter {
    product: Option<String>,
}

/// Device groups, optionally of one product.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/device-groups", tag = "device-groups",
    params(("product" = Option<String>, Query, description = "only this product's groups")), responses((status = 200, body = [GroupInfo])))]
pub(crate) async fn list_groups(
    State(state): State<AppState>,
    operator: Operator,
    Path(tenant): Path<String>,
    Query(filter): Query<GroupFilter>,
) -> Result<Json<Vec<GroupInfo>>, ApiError> {
    operator
        .authorize(&state, &tenant, Access::Read, "device-group.list", &tenant)
        .await?;
    let groups = state
        .store
        .list_groups(&tenant, filter.product.as_deref())
        .await?;
    Ok(Json(groups.iter().map(group_info).collect()))
}

/// Creates a device group in a product.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/device-groups", tag = "device-groups", request_body = CreateGroup, responses((status = 201, body = GroupInfo)))]
pub(crate) async fn create_group(
    State(state): State<AppState>,
    operator: Operator,
    Path(tenant): Path<String>,
    JsonBody(body): JsonBody<CreateGroup>,
) -> Result<(StatusCode, Json<GroupInfo>), ApiError> {
    operator
        .authorize(
            &state,
            &tenant,
            Access::Write,
            "device-group.create",
            &body.name,
        )
        .await?;
    check_name("device group", &body.name)?;
    let new = NewGroup {
        name: body.name.clone(),
        description: body.description.clone(),
        update_policy: body
            .update_policy
            .as_deref()
            .map(policy)
            .transpose()?
            .unwrap_or(UpdatePolicy::AcceptAll),
        runtime_feed: body
            .runtime_feed
            .as_deref()
            .map(feed)
            .transpose()?
            .unwrap_or(RuntimeFeed::Stable),
        rollout_percent: percent(body.rollout_percent.unwrap_or(100))?,
    };
    let group = state
        .store
        .create_group(&tenant, &body.product_id, new)
        .await?;
    state
        .audit(
            &operator,
            Some(&tenant),
            "device-group.create",
            &group.id,
            AuditOutcome::Ok,
            serde_json::json!({"name": group.name, "product": group.product_id}),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(group_info(&group))))
}

/// One device group.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/device-groups/{group}", tag = "device-groups", responses((status = 200, body = GroupInfo)))]
pub(crate) async fn show_group(
    State(state): State<AppState>,
    operator: Operator,
    Path((tenant, group)): Path<(String, String)>,
) -> Result<Json<GroupInfo>, ApiError> {
    operator
        .authorize(&state, &tenant, Access::Read, "device-group.show", &group)
        .await?;
    Ok(Json(group_info(&state.store.group(&tenant, &group).await?)))
}

/// A group's update window from the API's spelling: `""` clears it.
fn window(text: &str) -> Result<Option<String>, ApiError> {
    if text.is_empty() {
        return Ok(None);
    }
    sevenfold_core::window::UpdateWindow::parse(text)
        .map(|w| Some(w.to_string()))
        .map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// Changes a device group's name, description, update policy, runtime feed, rollout percentage or update window.
#[utoipa::path(patch, path = "/api/v1/tenants/{tenant}/device-groups/{group}", tag = "device-groups", request_body = UpdateGroup, responses((status = 200, body = GroupInfo)))]
pub(crate) async fn update_group(
    State(state): State<AppState>,
    operator: Operator,
    Path((tenant, group)): Path<(String, String)>,
    JsonBody(body): JsonBody<UpdateGroup>,
) -> Result<Json<GroupInfo>, ApiError> {
    operator
        .authorize(
            &state,
            &tenant,
            Access::Write,
            "device-group.update",
            &group,
        )
        .await?;
    if let Some(name) = &body.name {
        check_name("device group", name)?;
    }
    let update = GroupUpdate {
        name: body.name.clone(),
        description: body.description.clone(),
        update_policy: body.update_policy.as_deref().map(policy).transpose()?,
        runtime_feed: body.runtime_feed.as_deref().map(feed).transpose()?,
        rollout_percent: body.rollout_percent.map(percent).transpose()?,
        crash_details: body.crash_details,
        update_window: body.update_window.as_deref().map(window).transpose()?,
    };
    let window_changed = update.update_window.is_some();
    let updated = state.store.update_group(&tenant, &group, update).await?;
    if window_changed {
        // The window is signed into the group's targets: re-sign them.
        crate::updates::republish_if_published(&state, &tenant, &group).await?;
    }
    state
        .audit(
            &operator,
            Some(&tenant),
            "device-group.update",
            &group,
            AuditOutcome::Ok,
            serde_json::to_value(&body).unwrap_or_default(),
        )
        .await?;
    Ok(Json(group_info(&updated)))
}

/// Deletes a device group (refused while devices are assigned).
#[utoipa::path(delete, path = "/api/v1/tenants/{tenant}/device-groups/{group}", tag = "device-groups", responses((status = 204)))]
pub(crate) async fn delete_group(
    State(state): State<AppState>,
    operator: Operator,
    Path((tenant, group)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    operator
        .authorize(
            &state,
            &tenant,
            Access::Delete,
            "device-group.delete",
            &group,
        )
        .await?;
    state.store.delete_group(&tenant, &group).await?;
    state
        .audit(
            &operator,
            Some(&tenant),
            "device-group.delete",
            &group,
            AuditOutcome::Ok,
            serde_json::json!({}),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
