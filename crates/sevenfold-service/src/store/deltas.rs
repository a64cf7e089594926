//! Binary deltas published with a deployment: for a target package file,
//! deltas from the package files devices of the group may already have;
//! which files those are (what the devices measured at their last boot,
//! and the group's earlier deployments); and the delta job of each
//! deployment, made after `deployment create` returns (migration 0010).

use std::collections::HashMap;

use sqlx::any::AnyRow;

use super::{col, now_millis, to_count, Store, StoreError};

/// How long a replica holds a deployment's delta job (ms) before another
/// replica's housekeeping may take it over, unless the server configures
/// its own ([`Store::with_delta_lease`]): long enough for the largest
/// runtime's deltas (about two minutes each, docs/benchmarks.md).
pub const DELTA_LEASE_MS: i64 = 30 * 60 * 1000;
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

/// A package file a delta may start from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaBase {
    /// The image it is the package of.
    pub image_id: String,
    /// Its version.
    pub version: String,
    /// Where its package file is in the blob store.
    pub blob_key: String,
    /// SHA-256 of the package file, when a deployment recorded it (else the
    /// caller hashes the blob).
    pub file_sha256: Option<String>,
}

fn base_from_row(row: &AnyRow) -> Result<DeltaBase, StoreError> {
    Ok(DeltaBase {
        image_id: col(row, "id")?,
        version: col(row, "version")?,
        blob_key: col(row, "blob_key")?,
        file_sha256: col(row, "file_sha256")?,
    })
}

/// A live deployment whose deltas are still being made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaJob {
    /// Its tenant.
    pub tenant_id: String,
    /// The deployment.
    pub deployment_id: String,
    /// Until when (ms) a replica holds it; `None`: nobody.
    pub claimed_until: Option<i64>,
}

/// The application images of the last boot in a verdict's measurements,
/// as `devices.measured_images` keeps them: `component_id=digest` joined by
/// " ", sorted; `None` when the measurements are not a readable log.
pub(super) fn measured_images(measurements: &str) -> Option<String> {
    let events: Vec<serde_json::Value> = serde_json::from_str(measurements).ok()?;
    if events.is_empty() {
        return None;
    }
    let mut images: Vec<String> = Vec::new();
    for event in &events {
        let field = |name: &str| event.get(name).and_then(|v| v.as_str()).unwrap_or("");
        match field("kind") {
            // Each boot of the log starts with the runtime: keep the last.
            "runtime" => images.clear(),
            "application" => {
                let (component, digest) = (field("component_id"), field("digest"));
                let plain = |s: &str| !s.is_empty() && !s.contains([' ', '=']);
                if plain(component) && plain(digest) {
                    images.push(format!("{component}={}", digest.to_ascii_lowercase()));
                }
            }
            _ => {}
        }
    }
    images.sort();
    Some(images.join(" "))
}

impl Store {
    /// The images of `component_id` that the group's devices ran at their
    /// last measured boot, with how many devices run each, most first.
    /// Revoked devices get no updates, so they do not count.
    pub async fn group_running_images(
        &self,
        tenant_id: &str,
        group_id: &str,
        component_id: &str,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        // One row per distinct combination of images, not per device.
        let rows = sqlx::query(
            "SELECT measured_images, COUNT(*) AS n FROM devices \
             WHERE tenant_id = $1 AND group_id = $2 AND measured_images IS NOT NULL \
             AND revoked_at IS NULL GROUP BY measured_images",
        )
        .bind(tenant_id)
        .bind(group_id)
        .fetch_all(self.pool())
        .await?;
        let mut running: HashMap<String, u64> = HashMap::new();
        for row in &rows {
            let images: String = col(row, "measured_images")?;
            let n = to_count(col(row, "n")?)?;
            for (component, digest) in images.split(' ').filter_map(|i| i.split_once('=')) {
                if component == component_id {
                    *running.entry(digest.to_owned()).or_default() += n;
                }
            }
        }
        let mut running: Vec<(String, u64)> = running.into_iter().collect();
        running.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Ok(running)
    }

    /// The tenant's image `image_id` of `component_id` as a delta base, if
    /// it exists.
    pub async fn delta_base(
        &self,
        tenant_id: &str,
        component_id: &str,
        image_id: &str,
    ) -> Result<Option<DeltaBase>, StoreError> {
        let row = sqlx::query(
            "SELECT i.id, i.version, i.blob_key, (SELECT MIN(di.file_sha256) FROM deployment_images di \
             WHERE di.tenant_id = i.tenant_id AND di.image_id = i.id) AS file_sha256 \
             FROM images i WHERE i.tenant_id = $1 AND i.component_id = $2 AND i.id = $3",
        )
        .bind(tenant_id)
        .bind(component_id)
        .bind(image_id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(base_from_row).transpose()
    }

    /// The package files of `component_id` in the group's deployments made
    /// before `deployment_id`, newest first, each file once, at most `limit`.
    pub async fn earlier_group_files(
        &self,
        tenant_id: &str,
        group_id: &str,
        component_id: &str,
        deployment_id: &str,
        limit: usize,
    ) -> Result<Vec<DeltaBase>, StoreError> {
        let rows = sqlx::query(
            "SELECT i.id, i.version, i.blob_key, di.file_sha256 FROM deployment_images di \
             JOIN deployments d ON d.tenant_id = di.tenant_id AND d.id = di.deployment_id \
             JOIN images i ON i.tenant_id = di.tenant_id AND i.id = di.image_id \
             JOIN deployments cur ON cur.tenant_id = d.tenant_id AND cur.id = $4 \
             WHERE di.tenant_id = $1 AND d.group_id = $2 AND i.component_id = $3 AND d.id <> $4 \
             AND (d.created_at < cur.created_at OR (d.created_at = cur.created_at AND d.id < cur.id)) \
             ORDER BY d.created_at DESC, d.id DESC LIMIT $5",
        )
        .bind(tenant_id)
        .bind(group_id)
        .bind(component_id)
        .bind(deployment_id)
        // Rows, not files: a file may come back once per deployment.
        .bind(i64::try_from(limit.saturating_mul(8)).unwrap_or(i64::MAX))
        .fetch_all(self.pool())
        .await?;
        let mut files: Vec<DeltaBase> = Vec::new();
        for row in &rows {
            let base = base_from_row(row)?;
            if files.len() < limit && !files.iter().any(|f| f.file_sha256 == base.file_sha256) {
                files.push(base);
            }
        }
        Ok(files)
    }

    /// A delta from `base_sha256` to `target_sha256` made earlier (for
    /// another deployment or group of the tenant), whose blob may be reused.
    pub async fn existing_delta(
        &self,
        tenant_id: &str,
        base_sha256: &str,
        target_sha256: &str,
    ) -> Result<Option<DeploymentDelta>, StoreError> {
        let row = sqlx::query(
            "SELECT target_sha256, base_sha256, format, name, delta_sha256, delta_length, \
             blob_key FROM deployment_deltas WHERE tenant_id = $1 AND base_sha256 = $2 \
             AND target_sha256 = $3 ORDER BY created_at LIMIT 1",
        )
        .bind(tenant_id)
        .bind(base_sha256)
        .bind(target_sha256)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(delta_from_row).transpose()
    }

    /// Takes the delta job of a deployment whose deltas are still being
    /// made and whose holder's lease ran out (or that nobody holds), until
    /// `now` plus the store's delta lease. False when another replica holds it or it is
    /// done: a conditional update, so one replica wins.
    pub async fn claim_delta_job(
        &self,
        tenant_id: &str,
        deployment_id: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE deployments SET deltas_claimed_until = $3 \
             WHERE tenant_id = $1 AND id = $2 AND deltas_state = 'making' \
             AND (deltas_claimed_until IS NULL OR deltas_claimed_until < $4)",
        )
        .bind(tenant_id)
        .bind(deployment_id)
        .bind(now.saturating_add(self.delta_lease_ms()))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Deployments whose deltas are still being made: of one group (`Some`,
    /// live ones only) or of every tenant whose holder's lease ran out by
    /// `now` (`None`: what housekeeping takes over), oldest first.
    pub async fn delta_jobs(
        &self,
        group: Option<(&str, &str)>,
        now: i64,
    ) -> Result<Vec<DeltaJob>, StoreError> {
        let query = match group {
            Some((tenant_id, group_id)) => sqlx::query(
                "SELECT tenant_id, id, deltas_claimed_until FROM deployments \
                 WHERE deltas_state = 'making' AND tenant_id = $1 AND group_id = $2 \
                 AND status IN ('active', 'halted') ORDER BY created_at, id",
            )
            .bind(tenant_id)
            .bind(group_id),
            None => sqlx::query(
                "SELECT tenant_id, id, deltas_claimed_until FROM deployments \
                 WHERE deltas_state = 'making' \
                 AND (deltas_claimed_until IS NULL OR deltas_claimed_until < $1) \
                 ORDER BY created_at, id LIMIT 100",
            )
            .bind(now),
        };
        let rows = query.fetch_all(self.pool()).await?;
        rows.iter()
            .map(|row| {
                Ok(DeltaJob {
                    tenant_id: col(row, "tenant_id")?,
                    deployment_id: col(row, "id")?,
                    claimed_until: col(row, "deltas_claimed_until")?,
                })
            })
            .collect()
    }

    /// The version of the tenant's image whose package file has this
    /// SHA-256, if a deployment published it.
    pub async fn file_version(
        &self,
        tenant_id: &str,
        file_sha256: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT MIN(i.version) AS version FROM deployment_images di \
             JOIN images i ON i.tenant_id = di.tenant_id AND i.id = di.image_id \
             WHERE di.tenant_id = $1 AND di.file_sha256 = $2",
        )
        .bind(tenant_id)
        .bind(file_sha256)
        .fetch_optional(self.pool())
        .await?;
        Ok(match row {
            Some(row) => col(&row, "version")?,
            None => None,
        })
    }

    /// Whether the deployment's deltas are still being made.
    pub async fn deltas_making(
        &self,
        tenant_id: &str,
        deployment_id: &str,
    ) -> Result<bool, StoreError> {
        let row =
            sqlx::query("SELECT deltas_state FROM deployments WHERE tenant_id = $1 AND id = $2")
                .bind(tenant_id)
                .bind(deployment_id)
                .fetch_optional(self.pool())
                .await?
                .ok_or_else(|| StoreError::not_found("deployment", deployment_id))?;
        Ok(col::<String>(&row, "deltas_state")? == "making")
    }

    /// Records the deltas made for a deployment (their blobs are already
    /// committed), in one transaction. A delta already recorded (another
    /// replica ran the same job) is kept as it is.
    pub async fn record_deltas(
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
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (deployment_id, target_sha256, base_sha256) DO NOTHING",
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

    /// Ends a deployment's delta job (after its deltas were recorded and
    /// published): its deltas are ready.
    pub async fn end_delta_job(
        &self,
        tenant_id: &str,
        deployment_id: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE deployments SET deltas_state = 'ready', deltas_claimed_until = NULL \
             WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant_id)
        .bind(deployment_id)
        .execute(&mut *tx)
        .await?;
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

    /// The blob key and target SHA-256 of the delta file with this SHA-256 that a live
    /// deployment of the group publishes (what a device may download), if any.
    pub async fn live_delta(
        &self,
        tenant_id: &str,
        group_id: &str,
        delta_sha256: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        let row = sqlx::query(
            "SELECT dd.blob_key, dd.target_sha256 FROM deployment_deltas dd JOIN deployments d \
             ON d.tenant_id = dd.tenant_id AND d.id = dd.deployment_id \
             WHERE dd.tenant_id = $1 AND d.group_id = $2 AND dd.delta_sha256 = $3 \
             AND d.status IN ('active', 'halted') LIMIT 1",
        )
        .bind(tenant_id)
        .bind(group_id)
        .bind(delta_sha256)
        .fetch_optional(self.pool())
        .await?;
        row.map(|row| Ok((col(&row, "blob_key")?, col(&row, "target_sha256")?)))
            .transpose()
    }
}
