//! Manufacturer CAs (trusted server-wide), devices and device transfers.
//!
//! A claim is exclusive because the device id is the `devices` primary key:
//! whichever replica inserts first wins, the other gets a unique violation.
//! A transfer moves a device between tenants only when both agree: the source
//! requests, the destination accepts, and the move is one conditional update
//! inside the acceptance transaction.

use sqlx::any::AnyRow;

use super::error::{conflict_on_unique, is_foreign_key_violation};
use super::{
    col, col_enum, new_id, now_millis, to_count, CaKind, Device, DeviceMode, ManufacturerCa,
    NewDevice, Page, Store, StoreError, Transfer, TransferStatus,
};

macro_rules! device_columns {
    () => {
        "id, tenant_id, group_id, public_key_der, endorsement_der, manufacturer_fingerprint, \
         mode, claimed_at, revoked_at, last_seen, attestation_verdict"
    };
}

macro_rules! transfer_columns {
    () => {
        "id, device_id, from_tenant, to_tenant, status, requested_by, requested_at, \
         decided_by, decided_at"
    };
}

fn ca_from_row(row: &AnyRow) -> Result<ManufacturerCa, StoreError> {
    Ok(ManufacturerCa {
        fingerprint: col(row, "fingerprint")?,
        subject: col(row, "subject")?,
        cert_der: col(row, "cert_der")?,
        kind: col_enum(row, "kind", CaKind::parse)?,
        added_at: col(row, "added_at")?,
    })
}

fn device_from_row(row: &AnyRow) -> Result<Device, StoreError> {
    Ok(Device {
        id: col(row, "id")?,
        tenant_id: col(row, "tenant_id")?,
        group_id: col(row, "group_id")?,
        public_key_der: col(row, "public_key_der")?,
        endorsement_der: col(row, "endorsement_der")?,
        manufacturer_fingerprint: col(row, "manufacturer_fingerprint")?,
        mode: col_enum(row, "mode", DeviceMode::parse)?,
        claimed_at: col(row, "claimed_at")?,
        revoked_at: col(row, "revoked_at")?,
        last_seen: col(row, "last_seen")?,
        failed_attestation: col::<Option<String>>(row, "attestation_verdict")?.as_deref()
            == Some("fail"),
    })
}

fn transfer_from_row(row: &AnyRow) -> Result<Transfer, StoreError> {
    Ok(Transfer {
        id: col(row, "id")?,
        device_id: col(row, "device_id")?,
        from_tenant: col(row, "from_tenant")?,
        to_tenant: col(row, "to_tenant")?,
        status: col_enum(row, "status", TransferStatus::parse)?,
        requested_by: col(row, "requested_by")?,
        requested_at: col(row, "requested_at")?,
        decided_by: col(row, "decided_by")?,
        decided_at: col(row, "decided_at")?,
    })
}

impl Store {
    /// Trusts a manufacturer CA of `kind` server-wide.
    /// [`StoreError::Conflict`] if one with this fingerprint is already
    /// trusted (of either kind).
    pub async fn add_manufacturer_ca(
        &self,
        fingerprint: &str,
        subject: &str,
        cert_der: &[u8],
        kind: CaKind,
    ) -> Result<ManufacturerCa, StoreError> {
        let ca = ManufacturerCa {
            fingerprint: fingerprint.to_owned(),
            subject: subject.to_owned(),
            cert_der: cert_der.to_vec(),
            kind,
            added_at: now_millis(),
        };
        sqlx::query(
            "INSERT INTO manufacturer_cas (fingerprint, subject, cert_der, kind, added_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&ca.fingerprint)
        .bind(&ca.subject)
        .bind(cert_der)
        .bind(kind.as_str())
        .bind(ca.added_at)
        .execute(self.pool())
        .await
        .map_err(|e| {
            conflict_on_unique(e, || {
                format!("manufacturer CA {fingerprint} is already trusted")
            })
        })?;
        Ok(ca)
    }

    /// All trusted manufacturer CAs of both kinds, by fingerprint.
    pub async fn list_manufacturer_cas(&self) -> Result<Vec<ManufacturerCa>, StoreError> {
        let rows = sqlx::query(
            "SELECT fingerprint, subject, cert_der, kind, added_at FROM manufacturer_cas \
             ORDER BY fingerprint",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(ca_from_row).collect()
    }

    /// Stops trusting a manufacturer CA; `false` if it was not trusted.
    /// Devices it already endorsed stay claimed.
    pub async fn remove_manufacturer_ca(&self, fingerprint: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM manufacturer_cas WHERE fingerprint = $1")
            .bind(fingerprint)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Claims a device for `tenant_id` (field mode, no group).
    /// [`StoreError::Conflict`] if the device is already claimed, by this
    /// tenant or any other; [`StoreError::NotFound`] if the tenant does not
    /// exist. The caller has verified the endorsement.
    pub async fn claim_device(
        &self,
        tenant_id: &str,
        new: NewDevice,
    ) -> Result<Device, StoreError> {
        let device = Device {
            id: new.id,
            tenant_id: tenant_id.to_owned(),
            group_id: None,
            public_key_der: new.public_key_der,
            endorsement_der: new.endorsement_der,
            manufacturer_fingerprint: new.manufacturer_fingerprint,
            mode: DeviceMode::Field,
            claimed_at: now_millis(),
            revoked_at: None,
            last_seen: None,
            failed_attestation: false,
        };
        sqlx::query(
            "INSERT INTO devices (id, tenant_id, public_key_der, endorsement_der, \
             manufacturer_fingerprint, mode, claimed_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&device.id)
        .bind(tenant_id)
        .bind(device.public_key_der.as_slice())
        .bind(device.endorsement_der.as_slice())
        .bind(&device.manufacturer_fingerprint)
        .bind(device.mode.as_str())
        .bind(device.claimed_at)
        .execute(self.pool())
        .await
        .map_err(|e| {
            if is_foreign_key_violation(&e) {
                StoreError::not_found("tenant", tenant_id)
            } else {
                conflict_on_unique(e, || format!("device {} is already claimed", device.id))
            }
        })?;
        Ok(device)
    }

    /// The device `id` of `tenant_id`, or [`StoreError::NotFound`].
    pub async fn device(&self, tenant_id: &str, id: &str) -> Result<Device, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            device_columns!(),
            " FROM devices WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        match row {
            Some(row) => device_from_row(&row),
            None => Err(StoreError::not_found("device", id)),
        }
    }

    /// The device `id` in whichever tenant holds it. Only for the device-facing
    /// API, where the device authenticates by its key and the tenant follows
    /// from the claim; operator requests use [`Store::device`].
    pub async fn device_by_id(&self, id: &str) -> Result<Option<Device>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            device_columns!(),
            " FROM devices WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(device_from_row).transpose()
    }

    /// One page of the tenant's devices (of one group, if given), in id
    /// order: keyset pagination, so page N costs the same as page 1.
    pub async fn list_devices(
        &self,
        tenant_id: &str,
        group_id: Option<&str>,
        page: &Page,
    ) -> Result<Vec<Device>, StoreError> {
        let after = page.after.as_deref().unwrap_or("");
        let limit = i64::from(page.effective_limit());
        let rows = match group_id {
            Some(group_id) => {
                sqlx::query(concat!(
                    "SELECT ",
                    device_columns!(),
                    " FROM devices WHERE tenant_id = $1 AND group_id = $2 AND id > $3 \
                     ORDER BY id LIMIT $4"
                ))
                .bind(tenant_id)
                .bind(group_id)
                .bind(after)
                .bind(limit)
                .fetch_all(self.pool())
                .await?
            }
            None => {
                sqlx::query(concat!(
                    "SELECT ",
                    device_columns!(),
                    " FROM devices WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3"
                ))
                .bind(tenant_id)
                .bind(after)
                .bind(limit)
                .fetch_all(self.pool())
                .await?
            }
        };
        rows.iter().map(device_from_row).collect()
    }

    /// How many devices the tenant has (in one group, if given).
    pub async fn count_devices(
        &self,
        tenant_id: &str,
        group_id: Option<&str>,
    ) -> Result<u64, StoreError> {
        let row = match group_id {
            Some(group_id) => {
                sqlx::query(
                    "SELECT COUNT(*) AS n FROM devices WHERE tenant_id = $1 AND group_id = $2",
                )
                .bind(tenant_id)
                .bind(group_id)
                .fetch_one(self.pool())
                .await?
            }
            None => {
                sqlx::query("SELECT COUNT(*) AS n FROM devices WHERE tenant_id = $1")
                    .bind(tenant_id)
                    .fetch_one(self.pool())
                    .await?
            }
        };
        to_count(col(&row, "n")?)
    }

    /// Puts a device in a group of the same tenant and returns it.
    /// [`StoreError::NotFound`] if the tenant has no such device or no such
    /// group (a group of another tenant counts as missing).
    pub async fn assign_device(
        &self,
        tenant_id: &str,
        id: &str,
        group_id: &str,
    ) -> Result<Device, StoreError> {
        let done = sqlx::query(
            "UPDATE devices SET group_id = $3 WHERE tenant_id = $1 AND id = $2 \
             AND EXISTS (SELECT 1 FROM device_groups g WHERE g.tenant_id = $1 AND g.id = $3)",
        )
        .bind(tenant_id)
        .bind(id)
        .bind(group_id)
        .execute(self.pool())
        .await
        .map_err(|e| {
            // The group was deleted between the check and the write.
            if is_foreign_key_violation(&e) {
                StoreError::not_found("device group", group_id)
            } else {
                e.into()
            }
        })?;
        if done.rows_affected() == 0 {
            // Say which one is missing.
            self.device(tenant_id, id).await?;
            return Err(StoreError::not_found("device group", group_id));
        }
        self.device(tenant_id, id).await
    }

    /// Takes a device out of its group and returns it.
    pub async fn unassign_device(&self, tenant_id: &str, id: &str) -> Result<Device, StoreError> {
        let done =
            sqlx::query("UPDATE devices SET group_id = NULL WHERE tenant_id = $1 AND id = $2")
                .bind(tenant_id)
                .bind(id)
                .execute(self.pool())
                .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found("device", id));
        }
        self.device(tenant_id, id).await
    }

    /// Switches a device between field and development mode and returns it.
    pub async fn set_device_mode(
        &self,
        tenant_id: &str,
        id: &str,
        mode: DeviceMode,
    ) -> Result<Device, StoreError> {
        let done = sqlx::query("UPDATE devices SET mode = $3 WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id)
            .bind(id)
            .bind(mode.as_str())
            .execute(self.pool())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found("device", id));
        }
        self.device(tenant_id, id).await
    }

    /// Revokes a device (it will get no more certificates) and returns it.
    /// Revoking a revoked device keeps the first revocation time.
    pub async fn revoke_device(&self, tenant_id: &str, id: &str) -> Result<Device, StoreError> {
        let done = sqlx::query(
            "UPDATE devices SET revoked_at = COALESCE(revoked_at, $3) \
             WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant_id)
        .bind(id)
        .bind(now_millis())
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found("device", id));
        }
        self.device(tenant_id, id).await
    }

    /// Records that a device talked to the service at `at` (unix ms).
    pub async fn mark_device_seen(
        &self,
        tenant_id: &str,
        id: &str,
        at: i64,
    ) -> Result<(), StoreError> {
        let done =
            sqlx::query("UPDATE devices SET last_seen = $3 WHERE tenant_id = $1 AND id = $2")
                .bind(tenant_id)
                .bind(id)
                .bind(at)
                .execute(self.pool())
                .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found("device", id));
        }
        Ok(())
    }

    /// Starts moving a device of `from_tenant` to `to_tenant`; the
    /// destination must accept. [`StoreError::NotFound`] if `from_tenant`
    /// does not hold the device or `to_tenant` does not exist;
    /// [`StoreError::Conflict`] if a transfer of the device is already
    /// pending; [`StoreError::Invalid`] if both tenants are the same.
    pub async fn request_transfer(
        &self,
        from_tenant: &str,
        device_id: &str,
        to_tenant: &str,
        requested_by: &str,
    ) -> Result<Transfer, StoreError> {
        if from_tenant == to_tenant {
            return Err(StoreError::Invalid(
                "a device cannot be transferred to the tenant that holds it".to_owned(),
            ));
        }
        self.tenant(to_tenant).await?;
        let transfer = Transfer {
            id: new_id(),
            device_id: device_id.to_owned(),
            from_tenant: from_tenant.to_owned(),
            to_tenant: to_tenant.to_owned(),
            status: TransferStatus::Pending,
            requested_by: requested_by.to_owned(),
            requested_at: now_millis(),
            decided_by: None,
            decided_at: None,
        };
        // INSERT … SELECT: written only if from_tenant holds the device at
        // this instant.
        let done = sqlx::query(
            "INSERT INTO transfers (id, device_id, from_tenant, to_tenant, status, \
             requested_by, requested_at) \
             SELECT $1, d.id, d.tenant_id, $4, $5, $6, $7 FROM devices d \
             WHERE d.id = $2 AND d.tenant_id = $3",
        )
        .bind(&transfer.id)
        .bind(device_id)
        .bind(from_tenant)
        .bind(to_tenant)
        .bind(TransferStatus::Pending.as_str())
        .bind(requested_by)
        .bind(transfer.requested_at)
        .execute(self.pool())
        .await
        .map_err(|e| {
            if is_foreign_key_violation(&e) {
                StoreError::not_found("tenant", to_tenant)
            } else {
                conflict_on_unique(e, || {
                    format!("a transfer of device {device_id} is already pending")
                })
            }
        })?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found("device", device_id));
        }
        Ok(transfer)
    }

    /// The transfer `id`, if `tenant_id` is its source or destination.
    pub async fn transfer(&self, tenant_id: &str, id: &str) -> Result<Transfer, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            transfer_columns!(),
            " FROM transfers WHERE id = $2 AND (from_tenant = $1 OR to_tenant = $1)"
        ))
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        match row {
            Some(row) => transfer_from_row(&row),
            None => Err(StoreError::not_found("transfer", id)),
        }
    }

    /// Transfers into or out of `tenant_id`, newest first.
    pub async fn list_transfers(&self, tenant_id: &str) -> Result<Vec<Transfer>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            transfer_columns!(),
            " FROM transfers WHERE from_tenant = $1 OR to_tenant = $1 \
              ORDER BY requested_at DESC, id"
        ))
        .bind(tenant_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(transfer_from_row).collect()
    }

    /// Accepts a pending transfer into `to_tenant` and moves the device: it
    /// leaves its group and returns to field mode (the new owner decides
    /// both). Atomic: [`StoreError::Conflict`] if the transfer is no longer
    /// pending or the source no longer holds the device;
    /// [`StoreError::NotFound`] if `to_tenant` is not the destination.
    pub async fn accept_transfer(
        &self,
        to_tenant: &str,
        id: &str,
        decided_by: &str,
    ) -> Result<Transfer, StoreError> {
        let mut tx = self.begin_write().await?;
        let now = now_millis();
        let done = sqlx::query(
            "UPDATE transfers SET status = $3, decided_by = $4, decided_at = $5 \
             WHERE id = $1 AND to_tenant = $2 AND status = $6",
        )
        .bind(id)
        .bind(to_tenant)
        .bind(TransferStatus::Completed.as_str())
        .bind(decided_by)
        .bind(now)
        .bind(TransferStatus::Pending.as_str())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            drop(tx);
            let transfer = self.transfer(to_tenant, id).await?;
            if transfer.to_tenant != to_tenant {
                return Err(StoreError::Invalid(format!(
                    "only the destination tenant can accept transfer {id}"
                )));
            }
            return Err(StoreError::Conflict(format!(
                "transfer {id} is {}, not pending",
                transfer.status.as_str()
            )));
        }
        let row = sqlx::query(concat!(
            "SELECT ",
            transfer_columns!(),
            " FROM transfers WHERE id = $1 AND to_tenant = $2"
        ))
        .bind(id)
        .bind(to_tenant)
        .fetch_one(&mut *tx)
        .await?;
        let transfer = transfer_from_row(&row)?;
        let moved = sqlx::query(
            "UPDATE devices SET tenant_id = $3, group_id = NULL, mode = $4 \
             WHERE id = $1 AND tenant_id = $2",
        )
        .bind(&transfer.device_id)
        .bind(&transfer.from_tenant)
        .bind(to_tenant)
        .bind(DeviceMode::Field.as_str())
        .execute(&mut *tx)
        .await?;
        if moved.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "device {} is no longer held by the tenant that requested transfer {id}",
                transfer.device_id
            )));
        }
        tx.commit().await?;
        Ok(transfer)
    }

    /// Cancels a pending transfer; either side may. [`StoreError::Conflict`]
    /// if it is no longer pending.
    pub async fn cancel_transfer(
        &self,
        tenant_id: &str,
        id: &str,
        decided_by: &str,
    ) -> Result<Transfer, StoreError> {
        let done = sqlx::query(
            "UPDATE transfers SET status = $3, decided_by = $4, decided_at = $5 \
             WHERE id = $2 AND (from_tenant = $1 OR to_tenant = $1) AND status = $6",
        )
        .bind(tenant_id)
        .bind(id)
        .bind(TransferStatus::Cancelled.as_str())
        .bind(decided_by)
        .bind(now_millis())
        .bind(TransferStatus::Pending.as_str())
        .execute(self.pool())
        .await?;
        let transfer = self.transfer(tenant_id, id).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "transfer {id} is {}, not pending",
                transfer.status.as_str()
            )));
        }
        Ok(transfer)
    }
}
