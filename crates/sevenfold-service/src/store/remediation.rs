//! Restricted update sessions ("remediation"): a device whose evidence was
//! genuine but whose software was refused (a revoked runtime release, an
//! unknown image) gets no certificate, only a short-lived token that lets
//! it fetch the update for the refused components. Only the SHA-256 of
//! the token is stored, so reading the database does not grant a session;
//! a device holds at most one (a later failing verdict replaces it). A
//! session outliving a pass is harmless: it grants less than the new
//! certificate, and ends within the hour.

use super::{col, now_millis, Store, StoreError};

/// What a remediation token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemediationGrant {
    /// The device's tenant.
    pub tenant_id: String,
    /// The device.
    pub device_id: String,
    /// Component IDs whose targets it may fetch (`runtime` for any runtime).
    pub components: Vec<String>,
    /// When it ends (unix ms).
    pub expires_at: i64,
}

impl Store {
    /// Opens the device's remediation session (replacing any earlier one),
    /// keyed by the SHA-256 of its token.
    pub async fn open_remediation(
        &self,
        token_sha256: &str,
        grant: &RemediationGrant,
    ) -> Result<(), StoreError> {
        let components = serde_json::to_string(&grant.components)
            .map_err(|e| StoreError::Invalid(format!("components: {e}")))?;
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM remediation_sessions WHERE device_id = $1")
            .bind(&grant.device_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO remediation_sessions \
             (token_sha256, tenant_id, device_id, components, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token_sha256)
        .bind(&grant.tenant_id)
        .bind(&grant.device_id)
        .bind(components)
        .bind(grant.expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The unexpired session whose token hashes to `token_sha256`.
    pub async fn remediation(
        &self,
        token_sha256: &str,
    ) -> Result<Option<RemediationGrant>, StoreError> {
        let row = sqlx::query(
            "SELECT tenant_id, device_id, components, expires_at FROM remediation_sessions \
             WHERE token_sha256 = $1 AND expires_at >= $2",
        )
        .bind(token_sha256)
        .bind(now_millis())
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let components: String = col(&row, "components")?;
        Ok(Some(RemediationGrant {
            tenant_id: col(&row, "tenant_id")?,
            device_id: col(&row, "device_id")?,
            components: serde_json::from_str(&components)
                .map_err(|e| StoreError::Invalid(format!("stored components: {e}")))?,
            expires_at: col(&row, "expires_at")?,
        }))
    }
}
