//! Phased rollouts: who a deployment targets, how far it got, and the
//! automatic halt when too many targeted devices fail.

use sevenfold_core::update::{
    in_rollout, DeltaInfo, DeploymentInfo, DeviceProgressInfo, ProgressCounts,
};

use super::repo::{awaiting_signature, publish, Expiry};
use super::UpdateError;
use crate::api::timestamp;
use crate::store::{Deployment, DeploymentImage, DeploymentStatus, ProgressState, Store};

/// Counts and per-device rows of a deployment. Targeted devices are the
/// group's devices inside the rollout share, plus any device that reported
/// (a device moved out of the group keeps its report).
pub(crate) async fn summarize(
    store: &Store,
    deployment: &Deployment,
    with_devices: bool,
) -> Result<DeploymentInfo, UpdateError> {
    // The whole group targeted and no rows wanted: count in the database.
    if !with_devices && deployment.percent >= 100 {
        let (by_state, pending) = store
            .deployment_counts(&deployment.tenant_id, &deployment.id, &deployment.group_id)
            .await?;
        let mut counts = ProgressCounts {
            pending,
            targeted: pending,
            ..ProgressCounts::default()
        };
        for (state, n) in by_state {
            counts.targeted += n;
            *match state {
                ProgressState::Downloading => &mut counts.downloading,
                ProgressState::Installed => &mut counts.installed,
                ProgressState::Failed => &mut counts.failed,
                ProgressState::RolledBack => &mut counts.rolled_back,
            } += n;
        }
        return info(store, deployment, counts, None).await;
    }
    let reports = store
        .deployment_progress(&deployment.tenant_id, &deployment.id)
        .await?;
    let members = store
        .group_device_ids(&deployment.tenant_id, &deployment.group_id)
        .await?;
    let mut counts = ProgressCounts::default();
    let mut devices = Vec::new();
    // A set, not a scan per member: groups have tens of thousands of devices.
    let reported: std::collections::HashSet<&str> =
        reports.iter().map(|r| r.device_id.as_str()).collect();
    for id in members
        .iter()
        .filter(|d| in_rollout(d, &deployment.id, deployment.percent))
    {
        if !reported.contains(id.as_str()) {
            counts.pending += 1;
            counts.targeted += 1;
            devices.push(DeviceProgressInfo {
                device_id: id.clone(),
                state: "pending".into(),
                reason: None,
                updated_at: None,
            });
        }
    }
    for report in &reports {
        counts.targeted += 1;
        match report.state {
            ProgressState::Downloading => counts.downloading += 1,
            ProgressState::Installed => counts.installed += 1,
            ProgressState::Failed => counts.failed += 1,
            ProgressState::RolledBack => counts.rolled_back += 1,
        }
        devices.push(DeviceProgressInfo {
            device_id: report.device_id.clone(),
            state: report.state.as_str().to_owned(),
            reason: report.reason.clone(),
            updated_at: Some(timestamp(report.updated_at)),
        });
    }
    devices.sort_by(|a, b| a.device_id.cmp(&b.device_id));
    info(store, deployment, counts, with_devices.then_some(devices)).await
}

/// The deltas a deployment publishes, as `deployment show` lists them.
async fn delta_rows(
    store: &Store,
    deployment: &Deployment,
    images: &[DeploymentImage],
) -> Result<Vec<DeltaInfo>, UpdateError> {
    let tenant_id = &deployment.tenant_id;
    let mut out = Vec::new();
    for d in store.deployment_deltas(tenant_id, &deployment.id).await? {
        let component_id = images
            .iter()
            .find(|i| i.file_sha256 == d.target_sha256)
            .map(|i| i.image.component_id.clone())
            .unwrap_or_default();
        out.push(DeltaInfo {
            component_id,
            base_version: store.file_version(tenant_id, &d.base_sha256).await?,
            base_sha256: d.base_sha256,
            target_sha256: d.target_sha256,
            name: d.name,
            length: u64::try_from(d.delta_length).unwrap_or(0),
            sha256: d.delta_sha256,
        });
    }
    Ok(out)
}

async fn info(
    store: &Store,
    deployment: &Deployment,
    counts: ProgressCounts,
    devices: Option<Vec<DeviceProgressInfo>>,
) -> Result<DeploymentInfo, UpdateError> {
    let published = store
        .deployment_images(&deployment.tenant_id, &deployment.id)
        .await?;
    let images = published.iter().map(|i| i.image.id.clone()).collect();
    let deltas_making = store
        .deltas_making(&deployment.tenant_id, &deployment.id)
        .await?;
    // Rows in `show` only, like the devices.
    let deltas = match devices {
        Some(_) => delta_rows(store, deployment, &published).await?,
        None => Vec::new(),
    };
    let awaiting_targets_signature =
        match awaiting_signature(store, &deployment.tenant_id, &deployment.group_id).await? {
            None => false,
            Some(signed) => {
                matches!(
                    deployment.status,
                    DeploymentStatus::Active | DeploymentStatus::Halted
                ) || signed.contains(&deployment.id)
            }
        };
    Ok(DeploymentInfo {
        id: deployment.id.clone(),
        group_id: deployment.group_id.clone(),
        status: deployment.status.as_str().to_owned(),
        percent: deployment.percent,
        max_failure_percent: deployment.max_failure_percent,
        halt_reason: deployment.halt_reason.clone(),
        images,
        created_by: deployment.created_by.clone(),
        created_at: timestamp(deployment.created_at),
        counts,
        awaiting_targets_signature,
        deltas_state: if deltas_making { "making" } else { "ready" }.to_owned(),
        deltas,
        devices: devices.unwrap_or_default(),
    })
}

/// The reason to halt, if the failure share crossed the threshold.
pub(crate) fn halt_reason(counts: &ProgressCounts, max_failure_percent: u8) -> Option<String> {
    let failures = counts.failed + counts.rolled_back;
    if max_failure_percent >= 100 || counts.targeted == 0 || failures == 0 {
        return None;
    }
    (failures * 100 > u64::from(max_failure_percent) * counts.targeted).then(|| {
        format!(
            "{failures} of {} targeted devices failed or rolled back, more than the {}% allowed",
            counts.targeted, max_failure_percent
        )
    })
}

/// After a device report: halts an active deployment whose failure share
/// crossed its threshold, and republishes the group's targets so devices
/// that have not started see it halted. Returns whether it halted.
pub(crate) async fn check_halt(
    store: &Store,
    wrap: &sevenfold_pki::KeyWrap,
    deployment: &Deployment,
    expiry: &Expiry,
) -> Result<bool, UpdateError> {
    if deployment.status != DeploymentStatus::Active {
        return Ok(false);
    }
    let info = summarize(store, deployment, false).await?;
    let Some(reason) = halt_reason(&info.counts, deployment.max_failure_percent) else {
        return Ok(false);
    };
    tracing::warn!(deployment = %deployment.id, %reason, "rollout halted");
    store
        .update_deployment(
            &deployment.tenant_id,
            &deployment.id,
            DeploymentStatus::Halted,
            deployment.percent,
            Some(&reason),
        )
        .await?;
    publish(
        store,
        wrap,
        &deployment.tenant_id,
        &deployment.group_id,
        expiry,
    )
    .await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(targeted: u64, failed: u64, rolled_back: u64) -> ProgressCounts {
        ProgressCounts {
            targeted,
            failed,
            rolled_back,
            ..ProgressCounts::default()
        }
    }

    #[test]
    fn halts_only_past_the_threshold() {
        assert_eq!(halt_reason(&counts(10, 1, 0), 10), None);
        assert!(halt_reason(&counts(10, 1, 1), 10).is_some());
        assert!(halt_reason(&counts(10, 0, 2), 10).is_some());
        assert_eq!(halt_reason(&counts(10, 10, 0), 100), None);
        assert_eq!(halt_reason(&counts(0, 0, 0), 0), None);
        assert!(halt_reason(&counts(4, 1, 0), 0).is_some());
    }
}
