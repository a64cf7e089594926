//! Signing keys (per tenant) and image metadata.
//!
//! An image row names the tenant key that signed it through a composite
//! foreign key, so an image can only be recorded under a key its own tenant
//! registered. The package bytes live in the blob store; only `blob_key` is
//! kept here.

use sqlx::any::AnyRow;

use super::error::{conflict_on_unique, is_foreign_key_violation};
use super::{col, now_millis, Image, NewImage, Page, SigningKey, Store, StoreError};

macro_rules! key_columns {
    () => {
        "key_id, tenant_id, name, spki_der, added_at, revoked_at"
    };
}

macro_rules! image_columns {
    () => {
        "id, tenant_id, component_id, name, version, security_version, image_type, size, \
         signer_key_id, blob_key, manifest_json, uploaded_at, uploaded_by"
    };
}

fn key_from_row(row: &AnyRow) -> Result<SigningKey, StoreError> {
    Ok(SigningKey {
        key_id: col(row, "key_id")?,
        tenant_id: col(row, "tenant_id")?,
        name: col(row, "name")?,
        spki_der: col(row, "spki_der")?,
        added_at: col(row, "added_at")?,
        revoked_at: col(row, "revoked_at")?,
    })
}

fn image_from_row(row: &AnyRow) -> Result<Image, StoreError> {
    Ok(Image {
        id: col(row, "id")?,
        tenant_id: col(row, "tenant_id")?,
        component_id: col(row, "component_id")?,
        name: col(row, "name")?,
        version: col(row, "version")?,
        security_version: col(row, "security_version")?,
        image_type: col(row, "image_type")?,
        size: col(row, "size")?,
        signer_key_id: col(row, "signer_key_id")?,
        blob_key: col(row, "blob_key")?,
        manifest_json: col(row, "manifest_json")?,
        uploaded_at: col(row, "uploaded_at")?,
        uploaded_by: col(row, "uploaded_by")?,
    })
}

impl Store {
    /// Registers a tenant's image-signing public key. [`StoreError::Conflict`]
    /// if the tenant already has a key with this id (revoked or not: a key id
    /// is never reused); [`StoreError::NotFound`] if the tenant does not exist.
    pub async fn add_signing_key(
        &self,
        tenant_id: &str,
        key_id: &str,
        name: &str,
        spki_der: &[u8],
    ) -> Result<SigningKey, StoreError> {
        let key = SigningKey {
            key_id: key_id.to_owned(),
            tenant_id: tenant_id.to_owned(),
            name: name.to_owned(),
            spki_der: spki_der.to_vec(),
            added_at: now_millis(),
            revoked_at: None,
        };
        sqlx::query(concat!(
            "INSERT INTO signing_keys (",
            key_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, NULL)"
        ))
        .bind(key_id)
        .bind(tenant_id)
        .bind(name)
        .bind(spki_der)
        .bind(key.added_at)
        .execute(self.pool())
        .await
        .map_err(|e| {
            if is_foreign_key_violation(&e) {
                StoreError::not_found("tenant", tenant_id)
            } else {
                conflict_on_unique(e, || format!("signing key {key_id} is already registered"))
            }
        })?;
        Ok(key)
    }

    /// The tenant's signing keys, revoked ones included, by key id.
    pub async fn list_signing_keys(&self, tenant_id: &str) -> Result<Vec<SigningKey>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            key_columns!(),
            " FROM signing_keys WHERE tenant_id = $1 ORDER BY key_id"
        ))
        .bind(tenant_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(key_from_row).collect()
    }

    /// The tenant's signing key `key_id` (possibly revoked), or
    /// [`StoreError::NotFound`].
    pub async fn signing_key(
        &self,
        tenant_id: &str,
        key_id: &str,
    ) -> Result<SigningKey, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            key_columns!(),
            " FROM signing_keys WHERE tenant_id = $1 AND key_id = $2"
        ))
        .bind(tenant_id)
        .bind(key_id)
        .fetch_optional(self.pool())
        .await?;
        match row {
            Some(row) => key_from_row(&row),
            None => Err(StoreError::not_found("signing key", key_id)),
        }
    }

    /// Revokes a signing key and returns it; revoking again keeps the first
    /// revocation time. The key stays listed, so images it signed still name it.
    pub async fn revoke_signing_key(
        &self,
        tenant_id: &str,
        key_id: &str,
    ) -> Result<SigningKey, StoreError> {
        let done = sqlx::query(
            "UPDATE signing_keys SET revoked_at = COALESCE(revoked_at, $3) \
             WHERE tenant_id = $1 AND key_id = $2",
        )
        .bind(tenant_id)
        .bind(key_id)
        .bind(now_millis())
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found("signing key", key_id));
        }
        self.signing_key(tenant_id, key_id).await
    }

    /// Records an uploaded image. [`StoreError::Conflict`] if the tenant
    /// already has an image with this digest; [`StoreError::NotFound`] if the
    /// signer is not one of the tenant's keys. The caller has verified the
    /// package and stored its bytes.
    pub async fn add_image(&self, tenant_id: &str, new: NewImage) -> Result<Image, StoreError> {
        let image = Image {
            id: new.id,
            tenant_id: tenant_id.to_owned(),
            component_id: new.component_id,
            name: new.name,
            version: new.version,
            security_version: new.security_version,
            image_type: new.image_type,
            size: new.size,
            signer_key_id: new.signer_key_id,
            blob_key: new.blob_key,
            manifest_json: new.manifest_json,
            uploaded_at: now_millis(),
            uploaded_by: new.uploaded_by,
        };
        sqlx::query(concat!(
            "INSERT INTO images (",
            image_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        ))
        .bind(&image.id)
        .bind(tenant_id)
        .bind(&image.component_id)
        .bind(&image.name)
        .bind(&image.version)
        .bind(image.security_version)
        .bind(&image.image_type)
        .bind(image.size)
        .bind(&image.signer_key_id)
        .bind(&image.blob_key)
        .bind(&image.manifest_json)
        .bind(image.uploaded_at)
        .bind(&image.uploaded_by)
        .execute(self.pool())
        .await
        .map_err(|e| {
            if is_foreign_key_violation(&e) {
                StoreError::not_found("signing key", &image.signer_key_id)
            } else {
                conflict_on_unique(e, || format!("image {} already exists", image.id))
            }
        })?;
        Ok(image)
    }

    /// The tenant's image `id`, or [`StoreError::NotFound`].
    pub async fn image(&self, tenant_id: &str, id: &str) -> Result<Image, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            image_columns!(),
            " FROM images WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        match row {
            Some(row) => image_from_row(&row),
            None => Err(StoreError::not_found("image", id)),
        }
    }

    /// One page of the tenant's images, in id order (keyset pagination).
    pub async fn list_images(
        &self,
        tenant_id: &str,
        page: &Page,
    ) -> Result<Vec<Image>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            image_columns!(),
            " FROM images WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3"
        ))
        .bind(tenant_id)
        .bind(page.after.as_deref().unwrap_or(""))
        .bind(i64::from(page.effective_limit()))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(image_from_row).collect()
    }
}
