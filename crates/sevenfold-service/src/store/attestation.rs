//! Attestation state: tenant CAs, nonces, rate-limit counters, runtime
//! releases and attestation verdicts. All of it lives in the database so
//! that any replica can serve any step of an attestation.

use sqlx::any::AnyRow;

use super::error::{conflict_on_unique, StoreError};
use super::{col, new_id, now_millis, Store, WriteTx};

/// A fixed-window rate limit: at most `max` hits in `bucket` per window of
/// `window_ms` (windows start at multiples of `window_ms`). Counted in the
/// database, so the limit holds across replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// What is counted, e.g. `nonce-source:10.0.0.7`.
    pub bucket: String,
    /// Hits allowed per window.
    pub max: i64,
    /// Window length (ms).
    pub window_ms: i64,
}

/// A nonce being issued to a device.
#[derive(Clone, Copy, Debug)]
pub struct NewNonce<'a> {
    /// The nonce, hex.
    pub nonce: &'a str,
    /// The device it is for (as the device claimed).
    pub device_id: &'a str,
    /// The client address that asked.
    pub source: &'a str,
    /// Expiry (ms).
    pub expires_at: i64,
}

/// A verdict to store with [`Store::record_verdict`].
#[derive(Clone, Copy, Debug)]
pub struct VerdictWrite<'a> {
    /// The verdict.
    pub record: &'a AttestationRecord,
    /// The nonce the evidence used, consumed with the verdict.
    pub nonce: Option<&'a str>,
    /// A limit to count against first (for refusals).
    pub limit: Option<&'a RateLimit>,
}

/// Counts one hit against each of `limits` in the window containing `now`,
/// in one statement. Past any limit it rolls `tx` back (the hits included)
/// and returns [`StoreError::RateLimited`] naming the first one exceeded.
async fn count_hits(
    mut tx: WriteTx,
    limits: &[&RateLimit],
    now: i64,
) -> Result<WriteTx, StoreError> {
    if limits.is_empty() {
        return Ok(tx);
    }
    let mut buckets: Vec<&str> = limits.iter().map(|l| l.bucket.as_str()).collect();
    buckets.sort_unstable();
    if buckets.windows(2).any(|pair| pair.first() == pair.last()) {
        return Err(StoreError::Invalid(
            "rate limits counted together must have distinct buckets".to_owned(),
        ));
    }
    let values: Vec<String> = (0..limits.len())
        .map(|i| format!("(${}, ${}, 1)", 2 * i + 1, 2 * i + 2))
        .collect();
    let sql = format!(
        "INSERT INTO rate_limits (bucket, window_start, hits) VALUES {} \
         ON CONFLICT (bucket, window_start) DO UPDATE SET hits = rate_limits.hits + 1 \
         RETURNING bucket, hits",
        values.join(", ")
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for limit in limits {
        let window = limit.window_ms.max(1);
        query = query.bind(&limit.bucket).bind(now - now.rem_euclid(window));
    }
    let rows = query.fetch_all(&mut *tx).await?;
    let mut exceeded = None;
    for row in &rows {
        let bucket: String = col(row, "bucket")?;
        let hits: i64 = col(row, "hits")?;
        if let Some(limit) = limits.iter().find(|l| l.bucket == bucket) {
            if hits > limit.max && exceeded.is_none() {
                exceeded = Some(bucket);
            }
        }
    }
    if let Some(bucket) = exceeded {
        tx.rollback().await?;
        return Err(StoreError::RateLimited(bucket));
    }
    Ok(tx)
}

/// One generation of a tenant's device CA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantCaRecord {
    /// Owning tenant.
    pub tenant_id: String,
    /// 1 for the first CA, +1 for each successor.
    pub generation: i64,
    /// The CA certificate.
    pub cert_der: Vec<u8>,
    /// The private key, wrapped under the server's CA wrap key.
    pub wrapped_key: Vec<u8>,
    /// SHA-256 of the certificate, hex.
    pub fingerprint: String,
    /// Creation time (ms).
    pub created_at: i64,
    /// Certificate expiry (ms).
    pub not_after: i64,
}

/// A runtime build the service knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeRelease {
    /// Hex SHA-256 of the runtime executable.
    pub digest: String,
    /// Version label.
    pub version: String,
    /// When it was added (ms).
    pub added_at: i64,
    /// Who added it.
    pub added_by: String,
    /// When it was revoked (ms), if it was.
    pub revoked_at: Option<i64>,
}

/// A stored attestation verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttestationRecord {
    /// Record ID.
    pub id: String,
    /// Device that attested (as claimed in its evidence).
    pub device_id: String,
    /// Its tenant, when the device is claimed.
    pub tenant_id: Option<String>,
    /// When (ms).
    pub at: i64,
    /// Whether it passed.
    pub passed: bool,
    /// Why it failed (JSON array of strings).
    pub reasons: String,
    /// What was measured (JSON).
    pub measurements: String,
    /// Serial of the certificate issued on a pass.
    pub certificate_serial: Option<String>,
    /// Its expiry (ms).
    pub certificate_not_after: Option<i64>,
    /// Client address.
    pub source: String,
}

fn tenant_ca(row: &AnyRow) -> Result<TenantCaRecord, StoreError> {
    Ok(TenantCaRecord {
        tenant_id: col(row, "tenant_id")?,
        generation: col(row, "generation")?,
        cert_der: col(row, "cert_der")?,
        wrapped_key: col(row, "wrapped_key")?,
        fingerprint: col(row, "fingerprint")?,
        created_at: col(row, "created_at")?,
        not_after: col(row, "not_after")?,
    })
}

fn release(row: &AnyRow) -> Result<RuntimeRelease, StoreError> {
    Ok(RuntimeRelease {
        digest: col(row, "digest")?,
        version: col(row, "version")?,
        added_at: col(row, "added_at")?,
        added_by: col(row, "added_by")?,
        revoked_at: col(row, "revoked_at")?,
    })
}

fn attestation(row: &AnyRow) -> Result<AttestationRecord, StoreError> {
    let verdict: String = col(row, "verdict")?;
    Ok(AttestationRecord {
        id: col(row, "id")?,
        device_id: col(row, "device_id")?,
        tenant_id: col(row, "tenant_id")?,
        at: col(row, "at")?,
        passed: verdict == "pass",
        reasons: col(row, "reasons")?,
        measurements: col(row, "measurements")?,
        certificate_serial: col(row, "certificate_serial")?,
        certificate_not_after: col(row, "certificate_not_after")?,
        source: col(row, "source")?,
    })
}

impl Store {
    /// Stores a CA generation; [`StoreError::Conflict`] if that generation
    /// exists (another replica created it first).
    pub async fn add_tenant_ca(&self, ca: &TenantCaRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO tenant_cas (tenant_id, generation, cert_der, wrapped_key, fingerprint, created_at, not_after) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&ca.tenant_id)
        .bind(ca.generation)
        .bind(&ca.cert_der)
        .bind(&ca.wrapped_key)
        .bind(&ca.fingerprint)
        .bind(ca.created_at)
        .bind(ca.not_after)
        .execute(self.pool())
        .await
        .map_err(|e| conflict_on_unique(e, || format!("tenant CA generation {} exists", ca.generation)))?;
        Ok(())
    }

    /// The tenant's CA generations, newest first.
    pub async fn tenant_cas(&self, tenant_id: &str) -> Result<Vec<TenantCaRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT tenant_id, generation, cert_der, wrapped_key, fingerprint, created_at, not_after \
             FROM tenant_cas WHERE tenant_id = $1 ORDER BY generation DESC",
        )
        .bind(tenant_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(tenant_ca).collect()
    }

    /// Issues `nonce` in one transaction (one commit): counts a hit against
    /// each of `limits`, then stores the nonce. If a limit is exceeded,
    /// nothing is written and [`StoreError::RateLimited`] names it, so a
    /// flood past its limit costs reads, not commits.
    ///
    /// Written with relaxed durability ([`Store::begin_write_relaxed`]): a
    /// nonce or counter lost to a power cut only makes a device ask again.
    pub async fn issue_nonce(
        &self,
        nonce: &NewNonce<'_>,
        limits: &[RateLimit],
    ) -> Result<(), StoreError> {
        let now = now_millis();
        let mut tx = self.begin_write_relaxed().await?;
        let limits: Vec<&RateLimit> = limits.iter().collect();
        tx = count_hits(tx, &limits, now).await?;
        sqlx::query(
            "INSERT INTO attestation_nonces (nonce, device_id, source, expires_at, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(nonce.nonce)
        .bind(nonce.device_id)
        .bind(nonce.source)
        .bind(nonce.expires_at)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Counts one hit against `limit` on its own (one relaxed commit);
    /// [`StoreError::RateLimited`] past it, with nothing written.
    pub async fn hit_rate_limit(&self, limit: &RateLimit) -> Result<(), StoreError> {
        self.hit_rate_limits(std::slice::from_ref(limit)).await
    }

    /// Counts one hit against each of `limits` (distinct buckets) in one
    /// relaxed commit; [`StoreError::RateLimited`] past any, with nothing
    /// written.
    pub async fn hit_rate_limits(&self, limits: &[RateLimit]) -> Result<(), StoreError> {
        let tx = self.begin_write_relaxed().await?;
        let limits: Vec<&RateLimit> = limits.iter().collect();
        let tx = count_hits(tx, &limits, now_millis()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The device a nonce was issued to and when it expires (ms), if it is
    /// outstanding (issued and not yet used). Reads only: the nonce is
    /// consumed by the verdict that uses it ([`Store::record_verdict`]).
    pub async fn outstanding_nonce(
        &self,
        nonce: &str,
    ) -> Result<Option<(String, i64)>, StoreError> {
        let row =
            sqlx::query("SELECT device_id, expires_at FROM attestation_nonces WHERE nonce = $1")
                .bind(nonce)
                .fetch_optional(self.pool())
                .await?;
        row.map(|r| Ok((col(&r, "device_id")?, col(&r, "expires_at")?)))
            .transpose()
    }

    /// Deletes nonces, credential challenges, rate-limit windows and
    /// remediation sessions that ended before `now` (ms).
    pub async fn purge_attestation_state(
        &self,
        now: i64,
        window_ms: i64,
    ) -> Result<u64, StoreError> {
        let nonces = sqlx::query("DELETE FROM attestation_nonces WHERE expires_at < $1")
            .bind(now)
            .execute(self.pool())
            .await?;
        let challenges = sqlx::query("DELETE FROM tpm_credential_challenges WHERE expires_at < $1")
            .bind(now)
            .execute(self.pool())
            .await?;
        let windows = sqlx::query("DELETE FROM rate_limits WHERE window_start < $1")
            .bind(now - window_ms)
            .execute(self.pool())
            .await?;
        let sessions = sqlx::query("DELETE FROM remediation_sessions WHERE expires_at < $1")
            .bind(now)
            .execute(self.pool())
            .await?;
        Ok(nonces.rows_affected()
            + challenges.rows_affected()
            + windows.rows_affected()
            + sessions.rows_affected())
    }

    /// Adds a known runtime build; [`StoreError::Conflict`] if present.
    pub async fn add_runtime_release(
        &self,
        digest: &str,
        version: &str,
        added_by: &str,
    ) -> Result<RuntimeRelease, StoreError> {
        sqlx::query("INSERT INTO runtime_releases (digest, version, added_at, added_by) VALUES ($1, $2, $3, $4)")
            .bind(digest)
            .bind(version)
            .bind(now_millis())
            .bind(added_by)
            .execute(self.pool())
            .await
            .map_err(|e| conflict_on_unique(e, || format!("runtime release {digest} is already known")))?;
        self.runtime_release(digest)
            .await?
            .ok_or_else(|| StoreError::not_found("runtime release", digest))
    }

    /// One runtime release.
    pub async fn runtime_release(
        &self,
        digest: &str,
    ) -> Result<Option<RuntimeRelease>, StoreError> {
        let row = sqlx::query("SELECT digest, version, added_at, added_by, revoked_at FROM runtime_releases WHERE digest = $1")
            .bind(digest)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(release).transpose()
    }

    /// All runtime releases, newest first.
    pub async fn list_runtime_releases(&self) -> Result<Vec<RuntimeRelease>, StoreError> {
        let rows = sqlx::query("SELECT digest, version, added_at, added_by, revoked_at FROM runtime_releases ORDER BY added_at DESC, digest")
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(release).collect()
    }

    /// Revokes a runtime release: devices running it fail attestation.
    pub async fn revoke_runtime_release(&self, digest: &str) -> Result<RuntimeRelease, StoreError> {
        let done = sqlx::query(
            "UPDATE runtime_releases SET revoked_at = COALESCE(revoked_at, $2) WHERE digest = $1",
        )
        .bind(digest)
        .bind(now_millis())
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found("runtime release", digest));
        }
        self.runtime_release(digest)
            .await?
            .ok_or_else(|| StoreError::not_found("runtime release", digest))
    }

    /// Stores a verdict in one transaction (one commit); returns its ID.
    ///
    /// * `write.nonce`: the nonce the evidence used, consumed here. A pass
    ///   needs it still outstanding, unexpired and issued to this device, or
    ///   nothing is written ([`StoreError::NonceSpent`]): this is what makes
    ///   a nonce single-use when two replicas race on it. A refusal consumes
    ///   it if it is there.
    /// * `write.limit`: counted first; past it nothing is written
    ///   ([`StoreError::RateLimited`]). For refusals, whose source is not
    ///   authenticated, so garbage cannot fill the table.
    /// * A pass also records the device as seen.
    ///
    /// Written with relaxed durability ([`Store::begin_write_relaxed`]).
    pub async fn record_verdict(&self, write: &VerdictWrite<'_>) -> Result<String, StoreError> {
        let record = write.record;
        let id = if record.id.is_empty() {
            new_id()
        } else {
            record.id.clone()
        };
        let mut tx = self.begin_write_relaxed().await?;
        if let Some(limit) = write.limit {
            tx = count_hits(tx, &[limit], record.at).await?;
        }
        if let Some(nonce) = write.nonce {
            let used = sqlx::query(
                "DELETE FROM attestation_nonces WHERE nonce = $1 AND device_id = $2 AND expires_at >= $3",
            )
            .bind(nonce)
            .bind(&record.device_id)
            .bind(record.at)
            .execute(&mut *tx)
            .await?;
            if record.passed && used.rows_affected() != 1 {
                tx.rollback().await?;
                return Err(StoreError::NonceSpent);
            }
        }
        sqlx::query(
            "INSERT INTO attestations (id, device_id, tenant_id, at, verdict, reasons, measurements, certificate_serial, certificate_not_after, source) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&id)
        .bind(&record.device_id)
        .bind(record.tenant_id.as_deref())
        .bind(record.at)
        .bind(if record.passed { "pass" } else { "fail" })
        .bind(&record.reasons)
        .bind(&record.measurements)
        .bind(record.certificate_serial.as_deref())
        .bind(record.certificate_not_after)
        .bind(&record.source)
        .execute(&mut *tx)
        .await?;
        if let (true, Some(tenant)) = (record.passed, record.tenant_id.as_deref()) {
            sqlx::query("UPDATE devices SET last_seen = $3 WHERE tenant_id = $1 AND id = $2")
                .bind(tenant)
                .bind(&record.device_id)
                .bind(record.at)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(tenant) = record.tenant_id.as_deref() {
            super::fleet::record_latest_verdict(&mut tx, tenant, record).await?;
        }
        tx.commit().await?;
        Ok(id)
    }

    /// A tenant's device's verdicts, newest first.
    pub async fn list_attestations(
        &self,
        tenant_id: &str,
        device_id: &str,
        limit: u32,
    ) -> Result<Vec<AttestationRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, device_id, tenant_id, at, verdict, reasons, measurements, certificate_serial, certificate_not_after, source \
             FROM attestations WHERE tenant_id = $1 AND device_id = $2 ORDER BY at DESC, id LIMIT $3",
        )
        .bind(tenant_id)
        .bind(device_id)
        .bind(i64::from(limit.clamp(1, 1000)))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(attestation).collect()
    }
}
