//! TUF repositories: the signing keys and signed metadata of each device
//! group's repository.
//!
//! Metadata bodies are stored exactly as signed, so any replica serves the
//! same bytes whose hashes the other roles record. A new version of a role
//! is an insert on `(group_id, role, version)`: two replicas publishing at
//! once cannot both win, the loser gets [`StoreError::Conflict`] and retries.

use sqlx::any::AnyRow;

use super::error::conflict_on_unique;
use super::{col, now_millis, Store, StoreError};

/// One signing key of a group's repository, wrapped at rest.
#[derive(Debug, Clone)]
pub struct TufKeyRecord {
    /// Owning tenant.
    pub tenant_id: String,
    /// The group whose repository it signs for.
    pub group_id: String,
    /// "root", "targets", "snapshot" or "timestamp".
    pub role: String,
    /// The TUF key ID (hex SHA-256 of the canonical public key).
    pub key_id: String,
    /// The PKCS#8 private key, wrapped under the server's wrap key.
    pub wrapped_key: Vec<u8>,
    /// When it was created (unix ms).
    pub created_at: i64,
}

/// One signed metadata file.
#[derive(Debug, Clone)]
pub struct TufMetadataRecord {
    /// Owning tenant.
    pub tenant_id: String,
    /// The group.
    pub group_id: String,
    /// "root", "targets", "snapshot" or "timestamp".
    pub role: String,
    /// The role's version.
    pub version: i64,
    /// The signed JSON, byte for byte.
    pub body: Vec<u8>,
    /// When it expires (unix ms).
    pub expires_at: i64,
}
fn metadata_from_row(row: &AnyRow) -> Result<TufMetadataRecord, StoreError> {
    Ok(TufMetadataRecord {
        tenant_id: col(row, "tenant_id")?,
        group_id: col(row, "group_id")?,
        role: col(row, "role")?,
        version: col(row, "version")?,
        body: col(row, "body")?,
        expires_at: col(row, "expires_at")?,
    })
}

impl Store {
    /// The group's current (unretired) keys for `role`, oldest first.
    pub async fn tuf_keys(
        &self,
        tenant_id: &str,
        group_id: &str,
        role: &str,
    ) -> Result<Vec<TufKeyRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT tenant_id, group_id, role, key_id, wrapped_key, created_at FROM tuf_keys \
             WHERE tenant_id = $1 AND group_id = $2 AND role = $3 AND retired_at IS NULL \
             ORDER BY created_at, key_id",
        )
        .bind(tenant_id)
        .bind(group_id)
        .bind(role)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(TufKeyRecord {
                    tenant_id: col(row, "tenant_id")?,
                    group_id: col(row, "group_id")?,
                    role: col(row, "role")?,
                    key_id: col(row, "key_id")?,
                    wrapped_key: col(row, "wrapped_key")?,
                    created_at: col(row, "created_at")?,
                })
            })
            .collect()
    }

    /// Records a repository's first keys and its version-1 root together:
    /// either all of them are stored or none. [`StoreError::Conflict`] if
    /// another replica created the repository first.
    pub async fn create_tuf_repository(
        &self,
        keys: &[TufKeyRecord],
        root: &TufMetadataRecord,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        for key in keys {
            sqlx::query(
                "INSERT INTO tuf_keys (tenant_id, group_id, role, key_id, wrapped_key, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&key.tenant_id)
            .bind(&key.group_id)
            .bind(&key.role)
            .bind(&key.key_id)
            .bind(&key.wrapped_key)
            .bind(key.created_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| conflict_on_unique(e, || "the repository already exists".into()))?;
        }
        insert_metadata(&mut tx, root).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Replaces a role's keys: retires the current ones, stores `keys`, and
    /// stores the new root that names them, in one transaction.
    pub async fn rotate_tuf_keys(
        &self,
        tenant_id: &str,
        group_id: &str,
        role: &str,
        keys: &[TufKeyRecord],
        root: &TufMetadataRecord,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE tuf_keys SET retired_at = $1 WHERE tenant_id = $2 AND group_id = $3 \
             AND role = $4 AND retired_at IS NULL",
        )
        .bind(now_millis())
        .bind(tenant_id)
        .bind(group_id)
        .bind(role)
        .execute(&mut *tx)
        .await?;
        for key in keys {
            sqlx::query(
                "INSERT INTO tuf_keys (tenant_id, group_id, role, key_id, wrapped_key, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&key.tenant_id)
            .bind(&key.group_id)
            .bind(&key.role)
            .bind(&key.key_id)
            .bind(&key.wrapped_key)
            .bind(key.created_at)
            .execute(&mut *tx)
            .await?;
        }
        insert_metadata(&mut tx, root).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Stores a new root the tenant signed offline and retires the
    /// service's keys it no longer names, in one transaction.
    /// [`StoreError::Conflict`] if that root version exists already.
    pub async fn accept_tuf_root(
        &self,
        retire: &[TufKeyRecord],
        root: &TufMetadataRecord,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        for key in retire {
            sqlx::query(
                "UPDATE tuf_keys SET retired_at = $1 WHERE tenant_id = $2 AND group_id = $3 \
                 AND role = $4 AND key_id = $5 AND retired_at IS NULL",
            )
            .bind(now_millis())
            .bind(&key.tenant_id)
            .bind(&key.group_id)
            .bind(&key.role)
            .bind(&key.key_id)
            .execute(&mut *tx)
            .await?;
        }
        insert_metadata(&mut tx, root).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Stores new versions of several roles at once (targets, snapshot and
    /// timestamp of one publication). [`StoreError::Conflict`] if any
    /// version exists already (another replica published concurrently).
    pub async fn add_tuf_metadata(&self, records: &[TufMetadataRecord]) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        for record in records {
            insert_metadata(&mut tx, record).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The newest version of `role` in the group's repository.
    pub async fn latest_tuf_metadata(
        &self,
        group_id: &str,
        role: &str,
    ) -> Result<Option<TufMetadataRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT tenant_id, group_id, role, version, body, expires_at FROM tuf_metadata \
             WHERE group_id = $1 AND role = $2 ORDER BY version DESC LIMIT 1",
        )
        .bind(group_id)
        .bind(role)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(metadata_from_row).transpose()
    }

    /// One version of `role` in the group's repository.
    pub async fn tuf_metadata(
        &self,
        group_id: &str,
        role: &str,
        version: i64,
    ) -> Result<Option<TufMetadataRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT tenant_id, group_id, role, version, body, expires_at FROM tuf_metadata \
             WHERE group_id = $1 AND role = $2 AND version = $3",
        )
        .bind(group_id)
        .bind(role)
        .bind(version)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(metadata_from_row).transpose()
    }

    /// Groups (tenant, group) whose newest `role` metadata expires before `at`.
    pub async fn tuf_expiring(
        &self,
        role: &str,
        at: i64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT m.tenant_id, m.group_id FROM tuf_metadata m WHERE m.role = $1 \
             AND m.version = (SELECT MAX(version) FROM tuf_metadata n \
                              WHERE n.group_id = m.group_id AND n.role = m.role) \
             AND m.expires_at < $2",
        )
        .bind(role)
        .bind(at)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| Ok((col(row, "tenant_id")?, col(row, "group_id")?)))
            .collect()
    }
}

async fn insert_metadata(
    tx: &mut super::WriteTx,
    record: &TufMetadataRecord,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO tuf_metadata (tenant_id, group_id, role, version, body, expires_at, \
         created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&record.tenant_id)
    .bind(&record.group_id)
    .bind(&record.role)
    .bind(record.version)
    .bind(&record.body)
    .bind(record.expires_at)
    .bind(now_millis())
    .execute(&mut **tx)
    .await
    .map_err(|e| {
        conflict_on_unique(e, || {
            format!(
                "{} version {} of group {} was published concurrently",
                record.role, record.version, record.group_id
            )
        })
    })?;
    Ok(())
}
