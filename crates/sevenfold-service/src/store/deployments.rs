//! Deployments (images published to a device group, with a phased
//! rollout) and the progress devices report on them.

use sqlx::any::AnyRow;

use super::{col, col_enum, new_id, now_millis, Image, Store, StoreError};

/// Where a deployment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeploymentStatus {
    /// Offered to its share of the group.
    Active,
    /// Stopped (by its failure threshold or an operator); devices that
    /// have not installed it yet do not start to.
    Halted,
    /// Withdrawn by an operator.
    Cancelled,
    /// A newer deployment replaced every component it carried.
    Superseded,
}

impl DeploymentStatus {
    /// The stored and wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentStatus::Active => "active",
            DeploymentStatus::Halted => "halted",
            DeploymentStatus::Cancelled => "cancelled",
            DeploymentStatus::Superseded => "superseded",
        }
    }

    /// Parses [`DeploymentStatus::as_str`]'s spelling.
    pub fn parse(s: &str) -> Option<DeploymentStatus> {
        match s {
            "active" => Some(DeploymentStatus::Active),
            "halted" => Some(DeploymentStatus::Halted),
            "cancelled" => Some(DeploymentStatus::Cancelled),
            "superseded" => Some(DeploymentStatus::Superseded),
            _ => None,
        }
    }
}

/// What a device last reported for a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProgressState {
    /// Fetching the image.
    Downloading,
    /// Installed, health-checked and committed.
    Installed,
    /// Refused or failed before switching slots.
    Failed,
    /// Switched, failed its health check, and went back to the old slot.
    RolledBack,
}

impl ProgressState {
    /// The stored and wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ProgressState::Downloading => "downloading",
            ProgressState::Installed => "installed",
            ProgressState::Failed => "failed",
            ProgressState::RolledBack => "rolled-back",
        }
    }

    /// Parses [`ProgressState::as_str`]'s spelling.
    pub fn parse(s: &str) -> Option<ProgressState> {
        match s {
            "downloading" => Some(ProgressState::Downloading),
            "installed" => Some(ProgressState::Installed),
            "failed" => Some(ProgressState::Failed),
            "rolled-back" => Some(ProgressState::RolledBack),
            _ => None,
        }
    }

    /// Whether this counts against the rollout's failure threshold.
    pub fn is_failure(self) -> bool {
        matches!(self, ProgressState::Failed | ProgressState::RolledBack)
    }
}

/// A deployment.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// Server-assigned id (a UUID).
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// The group it targets.
    pub group_id: String,
    /// Where it stands.
    pub status: DeploymentStatus,
    /// Share of the group (0..=100) that may install it.
    pub percent: u8,
    /// Failure share (0..=100) past which it halts by itself.
    pub max_failure_percent: u8,
    /// Why it halted, when it did.
    pub halt_reason: Option<String>,
    /// Who created it (user id).
    pub created_by: String,
    /// When (unix ms).
    pub created_at: i64,
    /// Last change (unix ms).
    pub updated_at: i64,
}

/// What [`Store::create_deployment`] records.
#[derive(Debug, Clone)]
pub struct NewDeployment {
    /// The group.
    pub group_id: String,
    /// Images (the tenant's) with their package files' SHA-256 and length.
    pub images: Vec<DeploymentImage>,
    /// Share of the group.
    pub percent: u8,
    /// Halt threshold.
    pub max_failure_percent: u8,
    /// Creator (user id).
    pub created_by: String,
}

/// An image in a deployment, with the hash of its whole package file
/// (what the TUF target records and the device checks).
#[derive(Debug, Clone)]
pub struct DeploymentImage {
    /// The image.
    pub image: Image,
    /// Lowercase hex SHA-256 of the package file.
    pub file_sha256: String,
    /// Length of the package file.
    pub file_length: i64,
}

/// One device's report on a deployment.
#[derive(Debug, Clone)]
pub struct DeviceProgress {
    /// The device.
    pub device_id: String,
    /// Its state.
    pub state: ProgressState,
    /// Why it failed or rolled back.
    pub reason: Option<String>,
    /// When it reported (unix ms).
    pub updated_at: i64,
}
macro_rules! deployment_columns {
    () => {
        "id, tenant_id, group_id, status, percent, max_failure_percent, halt_reason, \
         created_by, created_at, updated_at"
    };
}

fn deployment_from_row(row: &AnyRow) -> Result<Deployment, StoreError> {
    let percent: i64 = col(row, "percent")?;
    let max_failure: i64 = col(row, "max_failure_percent")?;
    let share = |v: i64, name: &str| {
        u8::try_from(v)
            .ok()
            .filter(|v| *v <= 100)
            .ok_or_else(|| StoreError::Corrupt(format!("deployments.{name} = {v}")))
    };
    Ok(Deployment {
        id: col(row, "id")?,
        tenant_id: col(row, "tenant_id")?,
        group_id: col(row, "group_id")?,
        status: col_enum(row, "status", DeploymentStatus::parse)?,
        percent: share(percent, "percent")?,
        max_failure_percent: share(max_failure, "max_failure_percent")?,
        halt_reason: col(row, "halt_reason")?,
        created_by: col(row, "created_by")?,
        created_at: col(row, "created_at")?,
        updated_at: col(row, "updated_at")?,
    })
}
impl Store {
    /// Records a deployment and its images, and marks older active or halted
    /// deployments of the group that carried the same components superseded.
    pub async fn create_deployment(
        &self,
        tenant_id: &str,
        new: NewDeployment,
    ) -> Result<Deployment, StoreError> {
        let now = now_millis();
        let deployment = Deployment {
            id: new_id(),
            tenant_id: tenant_id.to_owned(),
            group_id: new.group_id,
            status: DeploymentStatus::Active,
            percent: new.percent.min(100),
            max_failure_percent: new.max_failure_percent.min(100),
            halt_reason: None,
            created_by: new.created_by,
            created_at: now,
            updated_at: now,
        };
        let image_ids: Vec<String> = new.images.iter().map(|i| i.image.id.clone()).collect();
        let supersede = format!(
            "UPDATE deployments SET status = 'superseded', updated_at = $1 \
             WHERE tenant_id = $2 AND group_id = $3 AND status IN ('active', 'halted') \
             AND id IN (SELECT di.deployment_id FROM deployment_images di \
                        JOIN images i ON i.tenant_id = di.tenant_id AND i.id = di.image_id \
                        WHERE di.tenant_id = $2 AND i.component_id IN \
                          (SELECT component_id FROM images WHERE tenant_id = $2 AND id IN {}))",
            placeholders(4, new.images.len())
        );
        let mut tx = self.begin_write().await?;
        // The query text holds only numbered placeholders, never input.
        sqlx::query(sqlx::AssertSqlSafe(supersede))
            .bind(now)
            .bind(tenant_id)
            .bind(&deployment.group_id)
            .bind_all(&image_ids)
            .execute(&mut *tx)
            .await?;
        // Its deltas are made after this returns, by the replica that
        // created it (which holds the job) or, if that one dies, by any
        // replica's housekeeping once the lease runs out (`updates::delta`).
        sqlx::query(concat!(
            "INSERT INTO deployments (",
            deployment_columns!(),
            ", deltas_state, deltas_claimed_until",
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'making', $11)"
        ))
        .bind(&deployment.id)
        .bind(tenant_id)
        .bind(&deployment.group_id)
        .bind(deployment.status.as_str())
        .bind(i64::from(deployment.percent))
        .bind(i64::from(deployment.max_failure_percent))
        .bind(deployment.halt_reason.as_deref())
        .bind(&deployment.created_by)
        .bind(now)
        .bind(now)
        .bind(now.saturating_add(self.delta_lease_ms()))
        .execute(&mut *tx)
        .await?;
        for image in &new.images {
            sqlx::query(
                "INSERT INTO deployment_images \
                 (tenant_id, deployment_id, image_id, file_sha256, file_length) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(tenant_id)
            .bind(&deployment.id)
            .bind(&image.image.id)
            .bind(&image.file_sha256)
            .bind(image.file_length)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(deployment)
    }

    /// The tenant's deployment `id`, or [`StoreError::NotFound`].
    pub async fn deployment(&self, tenant_id: &str, id: &str) -> Result<Deployment, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            deployment_columns!(),
            " FROM deployments WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        match row {
            Some(row) => deployment_from_row(&row),
            None => Err(StoreError::not_found("deployment", id)),
        }
    }

    /// The tenant's deployments (of one group, if given), newest first.
    pub async fn list_deployments(
        &self,
        tenant_id: &str,
        group_id: Option<&str>,
    ) -> Result<Vec<Deployment>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            deployment_columns!(),
            " FROM deployments WHERE tenant_id = $1 AND ($2 = '' OR group_id = $2) \
             ORDER BY created_at DESC, id LIMIT 1000"
        ))
        .bind(tenant_id)
        .bind(group_id.unwrap_or(""))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(deployment_from_row).collect()
    }

    /// Changes a deployment's status, share and halt reason.
    pub async fn update_deployment(
        &self,
        tenant_id: &str,
        id: &str,
        status: DeploymentStatus,
        percent: u8,
        halt_reason: Option<&str>,
    ) -> Result<Deployment, StoreError> {
        let done = sqlx::query(
            "UPDATE deployments SET status = $1, percent = $2, halt_reason = $3, updated_at = $4 \
             WHERE tenant_id = $5 AND id = $6",
        )
        .bind(status.as_str())
        .bind(i64::from(percent.min(100)))
        .bind(halt_reason)
        .bind(now_millis())
        .bind(tenant_id)
        .bind(id)
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found("deployment", id));
        }
        self.deployment(tenant_id, id).await
    }

    /// The images of a deployment.
    pub async fn deployment_images(
        &self,
        tenant_id: &str,
        deployment_id: &str,
    ) -> Result<Vec<DeploymentImage>, StoreError> {
        let rows = sqlx::query(
            "SELECT image_id, file_sha256, file_length FROM deployment_images \
             WHERE tenant_id = $1 AND deployment_id = $2 ORDER BY image_id",
        )
        .bind(tenant_id)
        .bind(deployment_id)
        .fetch_all(self.pool())
        .await?;
        let mut images = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: String = col(row, "image_id")?;
            images.push(DeploymentImage {
                image: self.image(tenant_id, &id).await?,
                file_sha256: col(row, "file_sha256")?,
                file_length: col(row, "file_length")?,
            });
        }
        Ok(images)
    }

    /// The image a group's live deployment publishes as the package file
    /// with this SHA-256 (what a device may download), if any.
    pub async fn live_target(
        &self,
        tenant_id: &str,
        group_id: &str,
        file_sha256: &str,
    ) -> Result<Option<Image>, StoreError> {
        let row = sqlx::query(
            "SELECT di.image_id FROM deployment_images di JOIN deployments d \
             ON d.tenant_id = di.tenant_id AND d.id = di.deployment_id \
             WHERE di.tenant_id = $1 AND d.group_id = $2 AND di.file_sha256 = $3 \
             AND d.status IN ('active', 'halted') LIMIT 1",
        )
        .bind(tenant_id)
        .bind(group_id)
        .bind(file_sha256)
        .fetch_optional(self.pool())
        .await?;
        match row {
            Some(row) => {
                let id: String = col(&row, "image_id")?;
                Ok(Some(self.image(tenant_id, &id).await?))
            }
            None => Ok(None),
        }
    }

    /// The group's live deployments (active or halted), newest first.
    pub async fn live_deployments(
        &self,
        tenant_id: &str,
        group_id: &str,
    ) -> Result<Vec<Deployment>, StoreError> {
        Ok(self
            .list_deployments(tenant_id, Some(group_id))
            .await?
            .into_iter()
            .filter(|d| {
                matches!(
                    d.status,
                    DeploymentStatus::Active | DeploymentStatus::Halted
                )
            })
            .collect())
    }

    /// Records (or replaces) what a device reported for a deployment.
    pub async fn record_progress(
        &self,
        tenant_id: &str,
        deployment_id: &str,
        device_id: &str,
        state: ProgressState,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO deployment_devices \
             (tenant_id, deployment_id, device_id, state, reason, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (deployment_id, device_id) \
             DO UPDATE SET state = excluded.state, reason = excluded.reason, \
             updated_at = excluded.updated_at",
        )
        .bind(tenant_id)
        .bind(deployment_id)
        .bind(device_id)
        .bind(state.as_str())
        .bind(reason)
        .bind(now_millis())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Every device report of a deployment, by device id.
    pub async fn deployment_progress(
        &self,
        tenant_id: &str,
        deployment_id: &str,
    ) -> Result<Vec<DeviceProgress>, StoreError> {
        let rows = sqlx::query(
            "SELECT device_id, state, reason, updated_at FROM deployment_devices \
             WHERE tenant_id = $1 AND deployment_id = $2 ORDER BY device_id",
        )
        .bind(tenant_id)
        .bind(deployment_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(DeviceProgress {
                    device_id: col(row, "device_id")?,
                    state: col_enum(row, "state", ProgressState::parse)?,
                    reason: col(row, "reason")?,
                    updated_at: col(row, "updated_at")?,
                })
            })
            .collect()
    }

    /// Every device id in a group (for rollout membership), in id order.
    /// A deployment's reports counted by state, and how many of the
    /// group's devices have not reported: the whole-group rollout's summary
    /// in two aggregate queries, without reading a row per device.
    pub async fn deployment_counts(
        &self,
        tenant_id: &str,
        deployment_id: &str,
        group_id: &str,
    ) -> Result<(Vec<(ProgressState, u64)>, u64), StoreError> {
        let rows = sqlx::query(
            "SELECT state, COUNT(*) AS n FROM deployment_devices \
             WHERE tenant_id = $1 AND deployment_id = $2 GROUP BY state",
        )
        .bind(tenant_id)
        .bind(deployment_id)
        .fetch_all(self.pool())
        .await?;
        let by_state = rows
            .iter()
            .map(|row| {
                Ok((
                    col_enum(row, "state", ProgressState::parse)?,
                    super::to_count(col(row, "n")?)?,
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let pending: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM devices d WHERE d.tenant_id = $1 AND d.group_id = $3 \
             AND NOT EXISTS (SELECT 1 FROM deployment_devices p \
                             WHERE p.deployment_id = $2 AND p.device_id = d.id)",
        )
        .bind(tenant_id)
        .bind(deployment_id)
        .bind(group_id)
        .fetch_one(self.pool())
        .await?;
        Ok((by_state, super::to_count(pending)?))
    }

    /// The IDs of a group's devices, in order.
    pub async fn group_device_ids(
        &self,
        tenant_id: &str,
        group_id: &str,
    ) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT id FROM devices WHERE tenant_id = $1 AND group_id = $2 ORDER BY id",
        )
        .bind(tenant_id)
        .bind(group_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|row| col(row, "id")).collect()
    }
}

/// `($first, $first+1, …)` for `n` values (at least one, so the SQL stays valid).
fn placeholders(first: usize, n: usize) -> String {
    let list: Vec<String> = (first..first + n.max(1)).map(|i| format!("${i}")).collect();
    format!("({})", list.join(", "))
}

/// Binds every string of a list in order.
trait BindAll<'q> {
    fn bind_all(self, values: &'q [String]) -> Self;
}

impl<'q> BindAll<'q> for sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    fn bind_all(self, values: &'q [String]) -> Self {
        if values.is_empty() {
            return self.bind("");
        }
        values.iter().fold(self, |q, v| q.bind(v.as_str()))
    }
}
