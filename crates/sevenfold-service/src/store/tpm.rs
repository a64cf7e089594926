//! TPM credential activation: pending challenges and completed bindings.
//!
//! A challenge is the service's `TPM2_MakeCredential` output for one device:
//! only the SHA-256 of its secret is stored, so reading the database does
//! not answer it. It is single use (taken, that is read and deleted, by the
//! first answer, right or wrong), expires, and a new one replaces the
//! device's earlier one. A binding records that the device's attestation
//! key was proven to live in the TPM of an EK certificate.

use sqlx::any::AnyRow;

use super::{col, now_millis, Store, StoreError};

/// A credential-activation challenge as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialChallenge {
    /// Random ID the device answers with.
    pub id: String,
    /// The device it was issued to.
    pub device_id: String,
    /// The attestation key's TPM name, hex.
    pub ak_name: String,
    /// The EK certificate the challenge was encrypted to (DER).
    pub ek_cert_der: Vec<u8>,
    /// The trusted TPM CA the EK certificate chained to.
    pub ek_ca_fingerprint: String,
    /// SHA-256 of the secret, hex.
    pub secret_sha256: String,
    /// When it expires (unix ms).
    pub expires_at: i64,
}

/// A completed activation: the device's attestation key lives in the TPM
/// of this EK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmBinding {
    /// The device.
    pub device_id: String,
    /// The attestation key's TPM name, hex.
    pub ak_name: String,
    /// The EK certificate (DER).
    pub ek_cert_der: Vec<u8>,
    /// SHA-256 of the EK certificate's DER, hex.
    pub ek_fingerprint: String,
    /// The trusted TPM CA it chained to at activation.
    pub ek_ca_fingerprint: String,
    /// When (unix ms).
    pub activated_at: i64,
}

fn challenge_from_row(row: &AnyRow) -> Result<CredentialChallenge, StoreError> {
    Ok(CredentialChallenge {
        id: col(row, "id")?,
        device_id: col(row, "device_id")?,
        ak_name: col(row, "ak_name")?,
        ek_cert_der: col(row, "ek_cert_der")?,
        ek_ca_fingerprint: col(row, "ek_ca_fingerprint")?,
        secret_sha256: col(row, "secret_sha256")?,
        expires_at: col(row, "expires_at")?,
    })
}

impl Store {
    /// Stores `challenge`, replacing the device's earlier one. (The caller
    /// counts the request against its rate limits first, before any work:
    /// [`Store::hit_rate_limits`].)
    pub async fn put_credential_challenge(
        &self,
        challenge: &CredentialChallenge,
    ) -> Result<(), StoreError> {
        let now = now_millis();
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM tpm_credential_challenges WHERE device_id = $1")
            .bind(&challenge.device_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO tpm_credential_challenges (id, device_id, ak_name, ek_cert_der, \
             ek_ca_fingerprint, secret_sha256, expires_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&challenge.id)
        .bind(&challenge.device_id)
        .bind(&challenge.ak_name)
        .bind(&challenge.ek_cert_der)
        .bind(&challenge.ek_ca_fingerprint)
        .bind(&challenge.secret_sha256)
        .bind(challenge.expires_at)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Takes the challenge `id`: returns it and deletes it, so that it
    /// answers once. `None` if it is unknown or was already taken (by
    /// this or another replica). Expiry is the caller's to check.
    pub async fn take_credential_challenge(
        &self,
        id: &str,
    ) -> Result<Option<CredentialChallenge>, StoreError> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "SELECT id, device_id, ak_name, ek_cert_der, ek_ca_fingerprint, secret_sha256, \
             expires_at FROM tpm_credential_challenges WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let challenge = challenge_from_row(&row)?;
        let deleted = sqlx::query("DELETE FROM tpm_credential_challenges WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok((deleted.rows_affected() == 1).then_some(challenge))
    }

    /// Records a completed activation, replacing the device's earlier one.
    pub async fn bind_tpm(&self, binding: &TpmBinding) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM tpm_bindings WHERE device_id = $1")
            .bind(&binding.device_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO tpm_bindings (device_id, ak_name, ek_cert_der, ek_fingerprint, \
             ek_ca_fingerprint, activated_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&binding.device_id)
        .bind(&binding.ak_name)
        .bind(&binding.ek_cert_der)
        .bind(&binding.ek_fingerprint)
        .bind(&binding.ek_ca_fingerprint)
        .bind(binding.activated_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The device's completed activation, if any.
    pub async fn tpm_binding(&self, device_id: &str) -> Result<Option<TpmBinding>, StoreError> {
        let row = sqlx::query(
            "SELECT device_id, ak_name, ek_cert_der, ek_fingerprint, ek_ca_fingerprint, \
             activated_at FROM tpm_bindings WHERE device_id = $1",
        )
        .bind(device_id)
        .fetch_optional(self.pool())
        .await?;
        row.map(|row| {
            Ok(TpmBinding {
                device_id: col(&row, "device_id")?,
                ak_name: col(&row, "ak_name")?,
                ek_cert_der: col(&row, "ek_cert_der")?,
                ek_fingerprint: col(&row, "ek_fingerprint")?,
                ek_ca_fingerprint: col(&row, "ek_ca_fingerprint")?,
                activated_at: col(&row, "activated_at")?,
            })
        })
        .transpose()
    }
}
