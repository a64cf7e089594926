//! The quickstart's second act: the sample app reaches the devices by a
//! deployment (TUF, A/B install, a run check in its compartment, commit),
//! an update follows the same way and raises the anti-rollback counter,
//! and one device's app fails so the failure view has a problem to show.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use reqwest::Method;
use sevenfold_agent::update::{update_once, UpdateOptions};
use sevenfold_agent::{Agent, RunCheck, RuntimeImage, StateDir, TargetOutcome};
use sevenfold_core::api::GroupInfo;
use sevenfold_core::report::{ProblemInfo, ProblemPage};
use sevenfold_core::update::{CreateDeployment, DeploymentInfo};

use crate::client::Client;
use crate::commands::enrolment::{blocking, Found};

/// How long a new version must run in its compartment before it is
/// committed.
pub(super) const RUN_CHECK: Duration = Duration::from_secs(2);

/// The update's manifest: the same app at its next minor version and next
/// security version.
pub(super) fn update_manifest(manifest_json: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut manifest: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(manifest_json)
            .context("the sample app's manifest is not a JSON object")?;
    let version = manifest
        .get("Version")
        .and_then(|v| v.as_str())
        .and_then(|v| semver::Version::parse(v).ok())
        .context("the sample app's manifest has no semantic Version")?;
    let next = semver::Version::new(version.major, version.minor + 1, 0);
    let security = manifest
        .get("SecurityVersion")
        .and_then(serde_json::Value::as_u64)
        .context("the sample app's manifest has no SecurityVersion")?;
    manifest.insert("Version".into(), next.to_string().into());
    manifest.insert("SecurityVersion".into(), (security + 1).into());
    Ok(serde_json::to_vec_pretty(&manifest)?)
}

/// The group's deployment of exactly `images` that is not cancelled, or a
/// new one (100% of the group).
pub(super) async fn deploy(
    client: &Client,
    tenant: &str,
    group: &GroupInfo,
    images: &[String],
) -> anyhow::Result<Found<DeploymentInfo>> {
    if let Some(found) = find_deployment(client, tenant, &group.id, images).await? {
        return Ok(Found::existing(found));
    }
    let body = CreateDeployment {
        group: group.id.clone(),
        images: images.to_vec(),
        percent: Some(100),
        max_failure_percent: None,
    };
    let created = client
        .call(
            Method::POST,
            &["tenants", tenant, "deployments"],
            Some(&body),
        )
        .await
        .context("cannot create the deployment")?;
    Ok(Found::created(created))
}

/// The group's deployment of exactly `images`, unless cancelled.
pub(super) async fn find_deployment(
    client: &Client,
    tenant: &str,
    group_id: &str,
    images: &[String],
) -> anyhow::Result<Option<DeploymentInfo>> {
    let deployments: Vec<DeploymentInfo> = client
        .get(
            &["tenants", tenant, "deployments"],
            &[("group", group_id.to_owned())],
        )
        .await?;
    Ok(deployments
        .into_iter()
        .find(|d| d.images == images && d.status != "cancelled"))
}

/// One update round on the device in `state_dir`, applied now; after a
/// change, measured boot again and a new attestation (as `agent run` does).
/// The round's outcomes.
pub(super) async fn update_device(
    state_dir: &Path,
    runtime: &RuntimeImage,
) -> anyhow::Result<Vec<TargetOutcome>> {
    let state = StateDir::open(state_dir)?;
    let report = update_once(
        &state,
        &RunCheck { period: RUN_CHECK },
        UpdateOptions { now: true },
    )
    .await
    .with_context(|| format!("the update round of {} failed", state_dir.display()))?;
    if report.changed {
        let runtime = runtime.clone();
        let agent = blocking(move || Agent::start(state, &runtime)).await??;
        agent
            .attest()
            .await
            .context("the device did not pass attestation after its update")?;
    }
    Ok(report.outcomes)
}

/// The first app of the device in `state_dir` "crashes" (an injected
/// fault: the trap record a real crash journals), and the device uploads
/// its failure report.
pub(super) async fn fail_app(state_dir: &Path, runtime: &RuntimeImage) -> anyhow::Result<()> {
    let state = StateDir::open(state_dir)?;
    let runtime = runtime.clone();
    let agent = blocking(move || Agent::start(state, &runtime)).await??;
    agent
        .attest()
        .await
        .context("the device did not pass attestation")?;
    crate::commands::fleet::journal_simulated_crash(&agent)?;
    agent
        .upload_reports()
        .await
        .context("the device could not upload its failure report")?;
    Ok(())
}

/// The problem the injected crash became.
pub(super) async fn find_problem(client: &Client, tenant: &str) -> anyhow::Result<ProblemInfo> {
    let page: ProblemPage = client.get(&["tenants", tenant, "problems"], &[]).await?;
    page.problems
        .into_iter()
        .find(|p| p.title.contains("simulated fault"))
        .context("the crash report reached the service but no problem shows it")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_update_is_the_next_minor_version_at_the_next_security_version() {
        let update = update_manifest(
            br#"{"Name":"blink","Version":"1.0.3","SecurityVersion":1,"EntryPoint":"blink.wasm"}"#,
        )
        .unwrap();
        let update: serde_json::Value = serde_json::from_slice(&update).unwrap();
        assert_eq!(update["Version"], "1.1.0");
        assert_eq!(update["SecurityVersion"], 2);
        assert_eq!(update["Name"], "blink");
        assert!(update_manifest(b"{}").is_err());
    }
}
