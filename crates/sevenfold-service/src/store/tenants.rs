//! Operators and tenants: users, their API tokens (stored only as hashes),
//! their roles per tenant, and the tenants themselves.

use sqlx::any::AnyRow;

use super::error::conflict_on_unique;
use super::{
    col, col_enum, col_flag, new_id, now_millis, to_count, Principal, Role, RoleAssignment, Store,
    StoreError, Tenant, User,
};

fn user_from_row(row: &AnyRow) -> Result<User, StoreError> {
    Ok(User {
        id: col(row, "id")?,
        name: col(row, "name")?,
        server_admin: col_flag(row, "server_admin")?,
        created_at: col(row, "created_at")?,
    })
}

fn tenant_from_row(row: &AnyRow) -> Result<Tenant, StoreError> {
    Ok(Tenant {
        id: col(row, "id")?,
        name: col(row, "name")?,
        created_at: col(row, "created_at")?,
    })
}

impl Store {
    /// Creates an operator account. [`StoreError::Conflict`] if the name is taken.
    pub async fn create_user(&self, name: &str, server_admin: bool) -> Result<User, StoreError> {
        let user = User {
            id: new_id(),
            name: name.to_owned(),
            server_admin,
            created_at: now_millis(),
        };
        sqlx::query(
            "INSERT INTO users (id, name, server_admin, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&user.id)
        .bind(&user.name)
        .bind(i64::from(server_admin))
        .bind(user.created_at)
        .execute(self.pool())
        .await
        .map_err(|e| conflict_on_unique(e, || format!("user name {name:?} is taken")))?;
        Ok(user)
    }

    /// The user called `name`, if any.
    pub async fn user_by_name(&self, name: &str) -> Result<Option<User>, StoreError> {
        let row =
            sqlx::query("SELECT id, name, server_admin, created_at FROM users WHERE name = $1")
                .bind(name)
                .fetch_optional(self.pool())
                .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// How many users exist (0 means the server still needs its first admin).
    pub async fn user_count(&self) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM users")
            .fetch_one(self.pool())
            .await?;
        to_count(col(&row, "n")?)
    }

    /// Stores an API token for `user_id`, by its SHA-256 only: the token
    /// itself is shown once to its owner and never kept.
    pub async fn add_token(
        &self,
        user_id: &str,
        token_hash: &[u8; 32],
        label: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO api_tokens (token_hash, user_id, label, created_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(hex::encode(token_hash))
        .bind(user_id)
        .bind(label)
        .bind(now_millis())
        .execute(self.pool())
        .await
        .map_err(|e| {
            if super::error::is_foreign_key_violation(&e) {
                StoreError::not_found("user", user_id)
            } else {
                conflict_on_unique(e, || "this token is already registered".to_owned())
            }
        })?;
        Ok(())
    }

    /// Revokes every token of `user_id` with this `label`; returns how many.
    pub async fn revoke_tokens(&self, user_id: &str, label: &str) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $3 \
             WHERE user_id = $1 AND label = $2 AND revoked_at IS NULL",
        )
        .bind(user_id)
        .bind(label)
        .bind(now_millis())
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }

    /// The user holding the token with this hash, with all their roles;
    /// `None` if no such token exists or it was revoked.
    pub async fn principal_by_token_hash(
        &self,
        token_hash: &[u8; 32],
    ) -> Result<Option<Principal>, StoreError> {
        let row = sqlx::query(
            "SELECT u.id, u.name, u.server_admin, u.created_at \
             FROM api_tokens t JOIN users u ON u.id = t.user_id \
             WHERE t.token_hash = $1 AND t.revoked_at IS NULL",
        )
        .bind(hex::encode(token_hash))
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let user = user_from_row(&row)?;
        let rows =
            sqlx::query("SELECT tenant_id, role FROM roles WHERE user_id = $1 ORDER BY tenant_id")
                .bind(&user.id)
                .fetch_all(self.pool())
                .await?;
        let roles = rows
            .iter()
            .map(|row| Ok((col(row, "tenant_id")?, col_enum(row, "role", Role::parse)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Some(Principal { user, roles }))
    }

    /// Gives `user_id` the `role` in `tenant_id`, replacing any role they had
    /// there. [`StoreError::NotFound`] if the tenant or user does not exist.
    pub async fn set_role(
        &self,
        tenant_id: &str,
        user_id: &str,
        role: Role,
    ) -> Result<(), StoreError> {
        let result = sqlx::query(
            "INSERT INTO roles (tenant_id, user_id, role) VALUES ($1, $2, $3) \
             ON CONFLICT (tenant_id, user_id) DO UPDATE SET role = excluded.role",
        )
        .bind(tenant_id)
        .bind(user_id)
        .bind(role.as_str())
        .execute(self.pool())
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if super::error::is_foreign_key_violation(&e) => {
                // Say which of the two is missing.
                self.tenant(tenant_id).await?;
                Err(StoreError::not_found("user", user_id))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Removes `user_id`'s role in `tenant_id`; `false` if they had none.
    pub async fn remove_role(&self, tenant_id: &str, user_id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM roles WHERE tenant_id = $1 AND user_id = $2")
            .bind(tenant_id)
            .bind(user_id)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Everyone with a role in `tenant_id`, by user name.
    pub async fn list_roles(&self, tenant_id: &str) -> Result<Vec<RoleAssignment>, StoreError> {
        let rows = sqlx::query(
            "SELECT r.tenant_id, r.user_id, u.name AS user_name, r.role \
             FROM roles r JOIN users u ON u.id = r.user_id \
             WHERE r.tenant_id = $1 ORDER BY u.name",
        )
        .bind(tenant_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(RoleAssignment {
                    tenant_id: col(row, "tenant_id")?,
                    user_id: col(row, "user_id")?,
                    user_name: col(row, "user_name")?,
                    role: col_enum(row, "role", Role::parse)?,
                })
            })
            .collect()
    }

    /// Creates a tenant. [`StoreError::Conflict`] if the name is taken.
    pub async fn create_tenant(&self, name: &str) -> Result<Tenant, StoreError> {
        let tenant = Tenant {
            id: new_id(),
            name: name.to_owned(),
            created_at: now_millis(),
        };
        sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(&tenant.id)
            .bind(&tenant.name)
            .bind(tenant.created_at)
            .execute(self.pool())
            .await
            .map_err(|e| conflict_on_unique(e, || format!("tenant name {name:?} is taken")))?;
        Ok(tenant)
    }

    /// The tenant with this id, or [`StoreError::NotFound`].
    pub async fn tenant(&self, id: &str) -> Result<Tenant, StoreError> {
        let row = sqlx::query("SELECT id, name, created_at FROM tenants WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        match row {
            Some(row) => tenant_from_row(&row),
            None => Err(StoreError::not_found("tenant", id)),
        }
    }

    /// The tenant called `name`, if any.
    pub async fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>, StoreError> {
        let row = sqlx::query("SELECT id, name, created_at FROM tenants WHERE name = $1")
            .bind(name)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(tenant_from_row).transpose()
    }

    /// All tenants, by name.
    pub async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        let rows = sqlx::query("SELECT id, name, created_at FROM tenants ORDER BY name")
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(tenant_from_row).collect()
    }
}
