//! Binary deltas published with a deployment: for a target package file, a
//! delta from a package file devices of the group may already have.

use sqlx::any::AnyRow;

use super::{col, now_millis, Store, StoreError};

/// A delta from `base_sha256` to `target_sha256`, stored as a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentDelta {
    /// Package file it rebuilds (lowercase hex SHA-256).
    pub target_sha256: String,
    /// Package file it starts from (lowercase hex SHA-256).
    pub base_sha256: String,
    /// `sevenfold_core::delta::FORMAT`.
    pub format: String,
    /// Name it is fetched under (`<sha256>.<name>` below the targets path).
    pub name: String,
    /// Lowercase hex SHA-256 of the delta file.
    pub delta_sha256: String,
    /// Length of the delta file.
    pub delta_length: i64,
    /// Where the delta is in the blob store.
    pub blob_key: String,
}

fn delta_from_row(row: &AnyRow) -> Result<DeploymentDelta, StoreError> {
    Ok(DeploymentDelta {
        target_sha256: col(row, "target_sha256")?,
        base_sha256: col(row, "base_sha256")?,
        format: col(row, "format")?,
        name: col(row, "name")?,
        delta_sha256: col(row, "delta_sha256")?,
        delta_length: col(row, "delta_length")?,
        blob_key: col(row, "blob_key")?,
    })
}

impl Store {
    /// The package file (SHA-256 and blob key) of `component_id` in the
    /// group's most recent deployment that carried the component, if any:
    /// the version the group's devices most likely run.
    pub async fn previous_group_file(
        &self,
        tenant_id: &str,
        group_id: &str,
        component_id: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        let row = sqlx::query(
            "SELECT di.file_sha256, i.blob_key FROM deployment_images di \
             JOIN deployments d ON d.tenant_id = di.tenant_id AND d.id = di.deployment_id \
             JOIN images i ON i.tenant_id = di.tenant_id AND i.id = di.image_id \
             WHERE di.tenant_id = $1 AND d.group_id = $2 AND i.component_id = $3 \
             ORDER BY d.created_at DESC, d.id DESC LIMIT 1",
        )
        .bind(tenant_id)
        .bind(group_id)
        .bind(component_id)
        .fetch_optional(self.pool())
        .await?;
        row.map(|row| Ok((col(&row, "file_sha256")?, col(&row, "blob_key")?)))
            .transpose()
    }

    /// Records the deltas published with a deployment.
    pub async fn add_deployment_deltas(
        &self,
        tenant_id: &str,
        deployment_id: &str,
        deltas: &[DeploymentDelta],
    ) -> Result<(), StoreError> {
        if deltas.is_empty() {
            return Ok(());
        }
        let now = now_millis();
        let mut tx = self.begin_write().await?;
        for d in deltas {
            sqlx::query(
                "INSERT INTO deployment_deltas (tenant_id, deployment_id, target_sha256, \
                 base_sha256, format, name, delta_sha256, delta_length, blob_key, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(tenant_id)
            .bind(deployment_id)
            .bind(&d.target_sha256)
            .bind(&d.base_sha256)
            .bind(&d.format)
            .bind(&d.name)
            .bind(&d.delta_sha256)
            .bind(d.delta_length)
            .bind(&d.blob_key)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The deltas published with a deployment.
    pub async fn deployment_deltas(
        &self,
        tenant_id: &str,
        deployment_id: &str,
    ) -> Result<Vec<DeploymentDelta>, StoreError> {
        let rows = sqlx::query(
            "SELECT target_sha256, base_sha256, format, name, delta_sha256, delta_length, \
             blob_key FROM deployment_deltas WHERE tenant_id = $1 AND deployment_id = $2 \
             ORDER BY target_sha256, base_sha256",
        )
        .bind(tenant_id)
        .bind(deployment_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(delta_from_row).collect()
    }

    /// The blob key of the delta file with this SHA-256 that a live
    /// deployment of the group publishes (what a device may download), if any.
    pub async fn live_delta(
        &self,
        tenant_id: &str,
        group_id: &str,
        delta_sha256: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT dd.blob_key FROM deployment_deltas dd JOIN deployments d \
             ON d.tenant_id = dd.tenant_id AND d.id = dd.deployment_id \
             WHERE dd.tenant_id = $1 AND d.group_id = $2 AND dd.delta_sha256 = $3 \
             AND d.status IN ('active', 'halted') LIMIT 1",
        )
        .bind(tenant_id)
        .bind(group_id)
        .bind(delta_sha256)
        .fetch_optional(self.pool())
        .await?;
        row.map(|row| col(&row, "blob_key")).transpose()
    }
}
