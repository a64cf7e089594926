//! Products and their device groups.
//!
//! Creating a product creates its default groups in the same transaction, as
//! Azure Sphere does, so a product is never seen without them.

use sqlx::any::AnyRow;

use super::error::{conflict_on_unique, is_foreign_key_violation};
use super::{
    col, col_enum, new_id, now_millis, DeviceGroup, GroupUpdate, NewGroup, Product, RuntimeFeed,
    Store, StoreError, UpdatePolicy,
};

/// The groups every new product starts with: (name, description, update
/// policy, runtime feed). Development devices get their applications by
/// sideloading, so that group takes runtime updates only; the evaluation
/// groups follow the evaluation runtime feed, to try a runtime release on
/// real devices before it reaches stable.
pub const DEFAULT_GROUPS: [(&str, &str, UpdatePolicy, RuntimeFeed); 5] = [
    (
        "Development",
        "Development devices: applications are sideloaded, not deployed from the cloud",
        UpdatePolicy::NoAppUpdates,
        RuntimeFeed::Stable,
    ),
    (
        "Field Test",
        "Devices testing cloud-deployed applications before production",
        UpdatePolicy::AcceptAll,
        RuntimeFeed::Stable,
    ),
    (
        "Production",
        "Devices in production",
        UpdatePolicy::AcceptAll,
        RuntimeFeed::Stable,
    ),
    (
        "Field Test Evaluation",
        "Field test devices evaluating the next runtime release",
        UpdatePolicy::AcceptAll,
        RuntimeFeed::Evaluation,
    ),
    (
        "Production Evaluation",
        "Production devices evaluating the next runtime release",
        UpdatePolicy::AcceptAll,
        RuntimeFeed::Evaluation,
    ),
];

macro_rules! group_columns {
    () => {
        "id, tenant_id, product_id, name, description, update_policy, runtime_feed, \
         rollout_percent, crash_details, created_at, update_window"
    };
}

fn product_from_row(row: &AnyRow) -> Result<Product, StoreError> {
    Ok(Product {
        id: col(row, "id")?,
        tenant_id: col(row, "tenant_id")?,
        name: col(row, "name")?,
        description: col(row, "description")?,
        created_at: col(row, "created_at")?,
    })
}

fn group_from_row(row: &AnyRow) -> Result<DeviceGroup, StoreError> {
    let percent: i64 = col(row, "rollout_percent")?;
    let rollout_percent = u8::try_from(percent)
        .ok()
        .filter(|p| *p <= 100)
        .ok_or_else(|| StoreError::Corrupt(format!("rollout_percent {percent} out of range")))?;
    Ok(DeviceGroup {
        id: col(row, "id")?,
        tenant_id: col(row, "tenant_id")?,
        product_id: col(row, "product_id")?,
        name: col(row, "name")?,
        description: col(row, "description")?,
        update_policy: col_enum(row, "update_policy", UpdatePolicy::parse)?,
        runtime_feed: col_enum(row, "runtime_feed", RuntimeFeed::parse)?,
        rollout_percent,
        crash_details: col::<i64>(row, "crash_details")? != 0,
        created_at: col(row, "created_at")?,
        update_window: col(row, "update_window")?,
    })
}

fn check_percent(percent: u8) -> Result<(), StoreError> {
    if percent > 100 {
        return Err(StoreError::Invalid(format!(
            "rollout percent must be 0..=100, not {percent}"
        )));
    }
    Ok(())
}

/// Inserts `group` (already validated) on `conn`.
async fn insert_group(
    conn: &mut sqlx::AnyConnection,
    group: &DeviceGroup,
) -> Result<(), StoreError> {
    sqlx::query(concat!(
        "INSERT INTO device_groups (",
        group_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
    ))
    .bind(&group.id)
    .bind(&group.tenant_id)
    .bind(&group.product_id)
    .bind(&group.name)
    .bind(&group.description)
    .bind(group.update_policy.as_str())
    .bind(group.runtime_feed.as_str())
    .bind(i64::from(group.rollout_percent))
    .bind(i64::from(group.crash_details))
    .bind(group.created_at)
    .bind(group.update_window.as_deref())
    .execute(&mut *conn)
    .await
    .map_err(|e| {
        conflict_on_unique(e, || {
            format!(
                "a device group named {:?} already exists in this product",
                group.name
            )
        })
    })?;
    Ok(())
}

impl Store {
    /// Creates a product and its [`DEFAULT_GROUPS`], in one transaction.
    /// [`StoreError::Conflict`] if the tenant already has a product of that
    /// name; [`StoreError::NotFound`] if the tenant does not exist.
    pub async fn create_product(
        &self,
        tenant_id: &str,
        name: &str,
        description: &str,
    ) -> Result<(Product, Vec<DeviceGroup>), StoreError> {
        let now = now_millis();
        let product = Product {
            id: new_id(),
            tenant_id: tenant_id.to_owned(),
            name: name.to_owned(),
            description: description.to_owned(),
            created_at: now,
        };
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO products (id, tenant_id, name, description, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&product.id)
        .bind(tenant_id)
        .bind(name)
        .bind(description)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if is_foreign_key_violation(&e) {
                StoreError::not_found("tenant", tenant_id)
            } else {
                conflict_on_unique(e, || format!("a product named {name:?} already exists"))
            }
        })?;
        let mut groups = Vec::with_capacity(DEFAULT_GROUPS.len());
        for (group_name, group_description, update_policy, runtime_feed) in DEFAULT_GROUPS {
            let group = DeviceGroup {
                id: new_id(),
                tenant_id: tenant_id.to_owned(),
                product_id: product.id.clone(),
                name: group_name.to_owned(),
                description: group_description.to_owned(),
                update_policy,
                runtime_feed,
                rollout_percent: 100,
                crash_details: false,
                created_at: now,
                update_window: None,
            };
            insert_group(&mut tx, &group).await?;
            groups.push(group);
        }
        tx.commit().await?;
        Ok((product, groups))
    }

    /// The product `id` of `tenant_id`, or [`StoreError::NotFound`].
    pub async fn product(&self, tenant_id: &str, id: &str) -> Result<Product, StoreError> {
        let row = sqlx::query(
            "SELECT id, tenant_id, name, description, created_at FROM products \
             WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        match row {
            Some(row) => product_from_row(&row),
            None => Err(StoreError::not_found("product", id)),
        }
    }

    /// The tenant's products, by name.
    pub async fn list_products(&self, tenant_id: &str) -> Result<Vec<Product>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, tenant_id, name, description, created_at FROM products \
             WHERE tenant_id = $1 ORDER BY name",
        )
        .bind(tenant_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(product_from_row).collect()
    }

    /// Deletes a product and its groups. [`StoreError::Conflict`] while any
    /// device is assigned to one of its groups; [`StoreError::NotFound`] if
    /// the tenant has no such product.
    pub async fn delete_product(&self, tenant_id: &str, id: &str) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let exists = sqlx::query("SELECT id FROM products WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(StoreError::not_found("product", id));
        }
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM devices d JOIN device_groups g ON g.id = d.group_id \
             WHERE d.tenant_id = $1 AND g.tenant_id = $1 AND g.product_id = $2",
        )
        .bind(tenant_id)
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        let assigned: i64 = col(&row, "n")?;
        let in_use = || {
            StoreError::Conflict(format!(
                "product {id} still has devices in its groups; move them to another group first"
            ))
        };
        if assigned > 0 {
            return Err(in_use());
        }
        // A device assigned concurrently makes the foreign key refuse this.
        sqlx::query("DELETE FROM device_groups WHERE tenant_id = $1 AND product_id = $2")
            .bind(tenant_id)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                if is_foreign_key_violation(&e) {
                    in_use()
                } else {
                    e.into()
                }
            })?;
        sqlx::query("DELETE FROM products WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Adds a group to a product. [`StoreError::NotFound`] if the tenant has
    /// no such product; [`StoreError::Conflict`] if the product already has a
    /// group of that name; [`StoreError::Invalid`] for a percent over 100.
    pub async fn create_group(
        &self,
        tenant_id: &str,
        product_id: &str,
        new: NewGroup,
    ) -> Result<DeviceGroup, StoreError> {
        check_percent(new.rollout_percent)?;
        let group = DeviceGroup {
            id: new_id(),
            tenant_id: tenant_id.to_owned(),
            product_id: product_id.to_owned(),
            name: new.name,
            description: new.description,
            update_policy: new.update_policy,
            runtime_feed: new.runtime_feed,
            rollout_percent: new.rollout_percent,
            crash_details: false,
            created_at: now_millis(),
            update_window: None,
        };
        let mut conn = self.pool().acquire().await?;
        match insert_group(&mut conn, &group).await {
            Ok(()) => Ok(group),
            // The composite foreign key (tenant_id, product_id) refuses a
            // product of another tenant exactly as a missing one.
            Err(StoreError::Database(e)) if is_foreign_key_violation(&e) => {
                Err(StoreError::not_found("product", product_id))
            }
            Err(e) => Err(e),
        }
    }

    /// The group `id` of `tenant_id`, or [`StoreError::NotFound`].
    pub async fn group(&self, tenant_id: &str, id: &str) -> Result<DeviceGroup, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            group_columns!(),
            " FROM device_groups WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        match row {
            Some(row) => group_from_row(&row),
            None => Err(StoreError::not_found("device group", id)),
        }
    }

    /// The tenant's groups (of one product, if given), by product then name.
    pub async fn list_groups(
        &self,
        tenant_id: &str,
        product_id: Option<&str>,
    ) -> Result<Vec<DeviceGroup>, StoreError> {
        let rows = match product_id {
            Some(product_id) => {
                sqlx::query(concat!(
                    "SELECT ",
                    group_columns!(),
                    " FROM device_groups WHERE tenant_id = $1 AND product_id = $2 \
                     ORDER BY product_id, name"
                ))
                .bind(tenant_id)
                .bind(product_id)
                .fetch_all(self.pool())
                .await?
            }
            None => {
                sqlx::query(concat!(
                    "SELECT ",
                    group_columns!(),
                    " FROM device_groups WHERE tenant_id = $1 ORDER BY product_id, name"
                ))
                .bind(tenant_id)
                .fetch_all(self.pool())
                .await?
            }
        };
        rows.iter().map(group_from_row).collect()
    }

    /// Changes the given fields of a group and returns it as stored.
    /// [`StoreError::NotFound`], [`StoreError::Conflict`] (name taken in the
    /// product) or [`StoreError::Invalid`] (percent over 100).
    pub async fn update_group(
        &self,
        tenant_id: &str,
        id: &str,
        update: GroupUpdate,
    ) -> Result<DeviceGroup, StoreError> {
        if let Some(percent) = update.rollout_percent {
            check_percent(percent)?;
        }
        // One statement: COALESCE keeps the stored value where the update
        // has none, so concurrent partial updates of different fields both
        // land.
        let done = sqlx::query(
            "UPDATE device_groups SET \
               name = COALESCE($3, name), \
               description = COALESCE($4, description), \
               update_policy = COALESCE($5, update_policy), \
               runtime_feed = COALESCE($6, runtime_feed), \
               rollout_percent = COALESCE($7, rollout_percent), \
               update_window = CASE WHEN $8 = 1 THEN $9 ELSE update_window END, \
               crash_details = COALESCE($10, crash_details) \
             WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant_id)
        .bind(id)
        .bind(update.name.as_deref())
        .bind(update.description.as_deref())
        .bind(update.update_policy.map(UpdatePolicy::as_str))
        .bind(update.runtime_feed.map(RuntimeFeed::as_str))
        .bind(update.rollout_percent.map(i64::from))
        .bind(i64::from(update.update_window.is_some()))
        .bind(update.update_window.clone().flatten())
        .bind(update.crash_details.map(i64::from))
        .execute(self.pool())
        .await
        .map_err(|e| {
            conflict_on_unique(e, || {
                format!(
                    "a device group named {:?} already exists in this product",
                    update.name.as_deref().unwrap_or_default()
                )
            })
        })?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found("device group", id));
        }
        self.group(tenant_id, id).await
    }

    /// Deletes a group. [`StoreError::Conflict`] while devices are assigned
    /// to it; [`StoreError::NotFound`] if the tenant has no such group.
    pub async fn delete_group(&self, tenant_id: &str, id: &str) -> Result<(), StoreError> {
        let in_use = || {
            StoreError::Conflict(format!(
                "device group {id} still has devices; move them to another group first"
            ))
        };
        let mut tx = self.begin_write().await?;
        let row =
            sqlx::query("SELECT COUNT(*) AS n FROM devices WHERE tenant_id = $1 AND group_id = $2")
                .bind(tenant_id)
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
        let assigned: i64 = col(&row, "n")?;
        if assigned > 0 {
            return Err(in_use());
        }
        let done = sqlx::query("DELETE FROM device_groups WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                if is_foreign_key_violation(&e) {
                    in_use()
                } else {
                    e.into()
                }
            })?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found("device group", id));
        }
        tx.commit().await?;
        Ok(())
    }
}
