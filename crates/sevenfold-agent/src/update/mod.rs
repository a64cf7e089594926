//! Over-the-air updates: TUF, A/B slots, health check, anti-rollback.
//!
//! [`update_once`] is one round, run at start, on an interval (with
//! jitter) and on demand (`sevenfold agent update --now`):
//!
//! 1. Recover: roll back any trial a crash left uncommitted, and re-apply
//!    the counters of committed images (`slots`).
//! 2. Load the group's TUF repository with `tough`'s `RepositoryLoader`
//!    over the mutual-TLS [`DeviceTransport`](transport): every TUF rule
//!    (signatures and thresholds, root rotation, version rollback, expiry,
//!    snapshot/targets consistency, size limits) is `tough`'s, not ours.
//!    The trusted root is pinned at `updates/tuf/root.json` (fetched once,
//!    over the channel pinned to the service CA and authenticated by the
//!    device certificate), and `tough`'s datastore keeps the newest
//!    metadata seen, so old metadata is refused.
//! 3. For each target this device should run (application image, rollout
//!    not halted, device inside the rollout share, not installed yet):
//!    refuse a security version below the component's counter; download
//!    (resumable, bounded by the signed length, checked against the signed
//!    hash) — through a delta from the installed image when the target
//!    offers one, rebuilt and checked against the full target's signed hash,
//!    with the full image as fallback (`fetch`); install to the inactive slot and switch; health-check; commit
//!    and raise the counter, or roll back. Each step is reported to the
//!    service against the target's deployment.
//!
//! Outside the group's update window, or while the app defers its update
//! (`schedule`), a verified image is staged instead of installed, and a
//! later round applies it; `UpdateOptions::now` overrides both.
//!
//! A round that changed what is installed returns `changed`; the caller
//! then re-runs measured boot and re-attests, so the service sees the new
//! measurement.

mod download;
mod fetch;
pub mod health;
mod lock;
mod run_check;
mod schedule;
pub(crate) mod slots;
mod transport;

use serde::Serialize;
use sevenfold_core::attestation::remediation_covers;
use sevenfold_core::update::{in_rollout, ProgressReport, TargetCustom, PROGRESS_PATH};
use sevenfold_rot::RootOfTrust;
use tough::{ExpirationEnforcement, RepositoryLoader};

use crate::client::{error_chain, ServiceClient};
use crate::state::security_version_reason;
use crate::{fsutil, AgentError, StateDir};
use health::HealthCheck;
pub use run_check::RunCheck;
pub use slots::Slot;
use slots::Slots;
use transport::DeviceTransport;

/// Where update state lives, under the state directory.
pub const UPDATES_DIR: &str = "updates";
const TUF_DIR: &str = "updates/tuf";
const DOWNLOADS_DIR: &str = "updates/downloads";
const STAGED_DIR: &str = "updates/staged";
/// The outcome's reason while a new runtime waits for its supervised start.
const RESTART_PENDING: &str =
    "installed to the inactive runtime slot; the supervisor starts and health-checks it";
const ROOT_FILE: &str = "root.json";

/// Why an update round could not run (per-target problems are outcomes).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpdateError {
    /// The device itself failed (its files, its root of trust).
    #[error(transparent)]
    Local(#[from] AgentError),
    /// No device certificate yet: attest first.
    #[error("no device certificate; the agent must attest before it can fetch updates")]
    NoCertificate,
    /// Another update round holds the lock.
    #[error("another update is in progress on this device")]
    Busy,
    /// The service could not be reached or answered badly.
    #[error("cannot reach the update repository: {0}")]
    Network(String),
    /// The TUF repository was refused by the TUF rules (expired, badly
    /// signed, rolled back, inconsistent, another group's or tenant's).
    #[error("the update repository was refused: {0}")]
    Repository(String),
}

/// What happened to one target in a round.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TargetOutcome {
    /// Component ID.
    pub component_id: String,
    /// App name.
    pub name: String,
    /// Version offered.
    pub version: String,
    /// Security version offered.
    pub security_version: u32,
    /// The deployment.
    pub deployment_id: String,
    /// "installed", "failed", "rolled-back", "up-to-date", "not-in-rollout",
    /// "halted", "skipped", "deferred" (network trouble, tried again later)
    /// "waiting" (downloaded and verified, held back by the update window
    /// or an app's deferral; applied by a later round) or "restart-pending"
    /// (a runtime on trial in its slot, for the supervisor to start) or
    /// "on-trial" (this process is that runtime, being health-checked).
    pub state: String,
    /// Why, for anything but installed and up-to-date.
    pub reason: Option<String>,
    /// How the image was fetched (zero when it was not).
    #[serde(flatten)]
    pub transfer: Transfer,
}

/// How a target's bytes arrived.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Transfer {
    /// Length of the file the image was taken from: the delta's when one
    /// was used, else the full image's (a failed delta attempt is not counted).
    pub downloaded_bytes: u64,
    /// Whether the image was rebuilt from a delta.
    pub delta_used: bool,
    /// Why an offered delta was not used (the full image was fetched).
    pub delta_fallback: Option<String>,
}

/// One round's result.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UpdateReport {
    /// Targets version seen.
    pub targets_version: u64,
    /// Per target, in name order.
    pub outcomes: Vec<TargetOutcome>,
    /// Components whose interrupted trial was rolled back at recovery.
    pub recovered: Vec<String>,
    /// Whether the installed images changed (re-boot and re-attest).
    pub changed: bool,
    /// A new runtime waits on trial in its slot: a supervised runtime exits
    /// with `runtime::RESTART_EXIT_CODE` so the supervisor starts it.
    pub runtime_restart: bool,
    /// When a held-back update may be applied (its window opens, its
    /// deferral runs out), in seconds: the next round should come then
    /// rather than at the regular interval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_round_in_secs: Option<u64>,
}

/// How a round was asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UpdateOptions {
    /// The operator's `agent update --now`: apply what is found even
    /// outside the group's update window and despite app deferrals.
    pub now: bool,
}

/// Runs one update round; see the module documentation.
pub async fn update_once(
    state: &StateDir,
    health: &dyn HealthCheck,
    options: UpdateOptions,
) -> Result<UpdateReport, UpdateError> {
    fsutil::create_private_dir(&state.path(UPDATES_DIR))?;
    let lock = lock::UpdateLock::acquire(&state.path(UPDATES_DIR).join("lock"))?;
    let rot = state.open_rot()?;
    let slots = Slots::new(state);
    let mut report = UpdateReport {
        recovered: recover_locked(state, &slots, rot.as_ref())?,
        ..UpdateReport::default()
    };
    report.changed = !report.recovered.is_empty();

    // With a certificate, everything; without one, after a failing
    // verdict that granted a restricted session, only the remedy.
    let (client, restricted) = match state.certificate_pem() {
        Ok(chain) => (
            ServiceClient::with_identity(state, &chain, &state.tls_key()?)?,
            None,
        ),
        Err(_) => match state.remediation()? {
            Some(session) => (
                ServiceClient::with_session(state, &session.token)?,
                Some(session.components),
            ),
            None => return Err(UpdateError::NoCertificate),
        },
    };
    for (_, deployment, reason) in slots.take_unreported()? {
        report_progress(&client, &deployment, "rolled-back", Some(&reason)).await;
    }
    let runtime = crate::runtime::RuntimeSlots::new(state);
    if let Some((deployment, outcome, reason)) = runtime.take_unreported()? {
        report_progress(&client, &deployment, &outcome, reason.as_deref()).await;
    }

    let repo = load_repository(state, &client).await?;
    report.targets_version = repo.targets().signed.version.get();
    let device_id = state.device_id().to_string();
    let mut targets: Vec<_> = repo.targets().signed.targets.iter().collect();
    targets.sort_by(|a, b| a.0.raw().cmp(b.0.raw()));
    for (name, target) in targets {
        let custom = match serde_json::to_value(&target.custom)
            .and_then(serde_json::from_value::<TargetCustom>)
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(target = name.raw(), error = %e, "target without usable Sevenfold metadata; ignored");
                continue;
            }
        };
        let outcome = |state: &str, reason: Option<String>| TargetOutcome {
            component_id: custom.component_id.clone(),
            name: custom.name.clone(),
            version: custom.version.clone(),
            security_version: custom.security_version,
            deployment_id: custom.deployment_id.clone(),
            state: state.to_owned(),
            reason,
            transfer: Transfer::default(),
        };
        let sha256 = hex::encode(target.hashes.sha256.as_ref());
        let is_runtime = custom.image_type.eq_ignore_ascii_case("runtime");
        if !is_runtime && !custom.image_type.to_ascii_lowercase().starts_with("app") {
            report.outcomes.push(outcome(
                "skipped",
                Some(format!("unknown image type {:?}", custom.image_type)),
            ));
            continue;
        }
        if let Some(components) = &restricted {
            if !remediation_covers(components, is_runtime, &custom.component_id) {
                report.outcomes.push(outcome(
                    "skipped",
                    Some(format!(
                        "the last attestation failed: its restricted session fetches only the \
                         update of {}",
                        components.join(", ")
                    )),
                ));
                continue;
            }
        }
        if custom.halted {
            report.outcomes.push(outcome("halted", None));
            continue;
        }
        if !in_rollout(&device_id, &custom.deployment_id, custom.rollout_percent) {
            report.outcomes.push(outcome("not-in-rollout", None));
            continue;
        }
        // The installed package file and its hash: the delta base.
        let mut base_path = state
            .path(crate::state::IMAGES_DIR)
            .join(format!("{}.imagepackage", custom.component_id));
        let installed = if is_runtime {
            let loaded = runtime.load()?;
            // The active slot keeps its package; the factory runtime has none.
            if let Some(slot) = loaded.active {
                base_path = runtime.package(slot);
            }
            let runtime = loaded;
            if runtime.failed_sha256.as_deref() == Some(sha256.as_str()) {
                // Its rollback was reported when it happened.
                report
                    .outcomes
                    .push(outcome("rolled-back", runtime.last_rollback));
                continue;
            }
            if runtime.trial && runtime.package_sha256.as_deref() == Some(sha256.as_str()) {
                let running = std::env::var(crate::runtime::RUNTIME_SLOT_ENV).ok();
                if running.as_deref() == runtime.active.map(Slot::name) {
                    // This process is the trial; the supervisor decides.
                    report.outcomes.push(outcome("on-trial", None));
                    continue;
                }
                report.runtime_restart = true;
                report
                    .outcomes
                    .push(outcome("restart-pending", Some(RESTART_PENDING.into())));
                continue;
            }
            runtime.package_sha256
        } else {
            active_sha256(state, &custom.component_id)?
        };
        if installed.as_deref() == Some(sha256.as_str()) {
            report.outcomes.push(outcome("up-to-date", None));
            continue;
        }
        if let Some(index) = state.counters()?.get(&custom.component_id) {
            let counter = rot.read_counter(index).map_err(AgentError::from)?;
            if u64::from(custom.security_version) < counter {
                let reason = format!(
                    "refused a validly signed older version: {}",
                    security_version_reason(custom.security_version, counter, &custom.component_id)
                );
                report_progress(&client, &custom.deployment_id, "failed", Some(&reason)).await;
                report.outcomes.push(outcome("failed", Some(reason)));
                continue;
            }
        }
        report_progress(&client, &custom.deployment_id, "downloading", None).await;
        let full = fetch::FullTarget {
            name: name.raw(),
            sha256: &sha256,
            length: target.length,
        };
        let fetched = match fetch::fetch(
            &client,
            &custom,
            &full,
            installed.as_deref().map(|h| (base_path.as_path(), h)),
            (&state.path(DOWNLOADS_DIR), &state.path(STAGED_DIR)),
        )
        .await
        {
            Ok(fetched) => fetched,
            Err(download::DownloadError::Network(e)) => {
                report.outcomes.push(outcome("deferred", Some(e)));
                continue;
            }
            Err(e) => {
                let reason = e.to_string();
                report_progress(&client, &custom.deployment_id, "failed", Some(&reason)).await;
                report.outcomes.push(outcome("failed", Some(reason)));
                continue;
            }
        };
        let transfer = Transfer {
            downloaded_bytes: fetched.downloaded_bytes,
            delta_used: fetched.delta_used,
            delta_fallback: fetched.delta_fallback.clone(),
        };
        let outcome = |state: &str, reason: Option<String>| TargetOutcome {
            transfer: transfer.clone(),
            ..outcome(state, reason)
        };
        if !options.now {
            let now = jiff::Timestamp::now().as_second();
            let window = custom.update_window.as_deref();
            if let Some(held) = schedule::hold(state, &custom.component_id, &sha256, window, now)? {
                fetch::stage(&state.path(STAGED_DIR), &sha256, &fetched.bytes)?;
                tracing::info!(component = %custom.component_id, reason = %held.reason, "update held back");
                report_progress(
                    &client,
                    &custom.deployment_id,
                    "downloading",
                    Some(&held.reason),
                )
                .await;
                if let Some(secs) = held.lifts_in_secs {
                    report.next_round_in_secs =
                        Some(report.next_round_in_secs.map_or(secs, |n| n.min(secs)));
                }
                report.outcomes.push(outcome("waiting", Some(held.reason)));
                continue;
            }
        }
        if is_runtime {
            let target = (
                custom.component_id.as_str(),
                sha256.as_str(),
                custom.deployment_id.as_str(),
            );
            match crate::runtime::install_runtime(state, rot.as_ref(), &fetched.bytes, target)? {
                Ok((slot, version)) => {
                    fetch::unstage(&state.path(STAGED_DIR), &sha256);
                    tracing::info!(%version, slot = slot.name(), "runtime installed on trial");
                    report_progress(
                        &client,
                        &custom.deployment_id,
                        "downloading",
                        Some(RESTART_PENDING),
                    )
                    .await;
                    report.runtime_restart = true;
                    report
                        .outcomes
                        .push(outcome("restart-pending", Some(RESTART_PENDING.into())));
                }
                Err(reason) => {
                    report_progress(&client, &custom.deployment_id, "failed", Some(&reason)).await;
                    report.outcomes.push(outcome("failed", Some(reason)));
                }
            }
            continue;
        }
        let image =
            slots.install_trial(&custom.component_id, &fetched.bytes, &custom.deployment_id)?;
        fetch::unstage(&state.path(STAGED_DIR), &sha256);
        report.changed = true;
        match health.check(state, rot.as_ref(), &image, &custom.component_id)? {
            Ok(verified) => {
                slots.commit(&custom.component_id, verified.security_version)?;
                raise_counter(
                    state,
                    rot.as_ref(),
                    &custom.component_id,
                    verified.security_version,
                )?;
                tracing::info!(component = %custom.component_id, version = %verified.version, "update installed and committed");
                report_progress(&client, &custom.deployment_id, "installed", None).await;
                report.outcomes.push(outcome("installed", None));
            }
            Err(reason) => {
                slots.rollback(&custom.component_id)?;
                tracing::warn!(component = %custom.component_id, %reason, "update failed its health check; rolled back");
                report_progress(&client, &custom.deployment_id, "rolled-back", Some(&reason)).await;
                report.outcomes.push(outcome("rolled-back", Some(reason)));
            }
        }
    }
    drop(lock);
    Ok(report)
}

/// Settles what a crash or power loss left, before measured boot: rolls
/// back uncommitted trials and re-applies the counters of committed images.
/// Returns the components rolled back. Skipped (empty) while another
/// process runs an update round, whose trial is not abandoned.
pub fn recover(state: &StateDir) -> Result<Vec<String>, UpdateError> {
    if !fsutil::exists(&state.path(slots::SLOTS_DIR))? {
        return Ok(Vec::new());
    }
    let _lock = match lock::UpdateLock::acquire(&state.path(UPDATES_DIR).join("lock")) {
        Ok(lock) => lock,
        Err(UpdateError::Busy) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let rot = state.open_rot()?;
    recover_locked(state, &Slots::new(state), rot.as_ref())
}

fn recover_locked(
    state: &StateDir,
    slots: &Slots<'_>,
    rot: &dyn RootOfTrust,
) -> Result<Vec<String>, UpdateError> {
    let recovered = slots.recover()?;
    reconcile_counters(state, slots, rot)?;
    Ok(recovered.into_iter().map(|r| r.component_id).collect())
}

/// Loads and verifies the group's repository with `tough`.
async fn load_repository(
    state: &StateDir,
    client: &ServiceClient,
) -> Result<tough::Repository, UpdateError> {
    let tuf = state.path(TUF_DIR);
    fsutil::create_private_dir(&tuf)?;
    let datastore = tuf.join("datastore");
    fsutil::create_private_dir(&datastore)?;
    let transport = DeviceTransport::new(client.http().clone());
    let root = match fsutil::read_bounded(
        &tuf.join(ROOT_FILE),
        transport::MAX_METADATA_LEN as u64,
        true,
    )? {
        Some(root) => root,
        None => {
            // First contact: the version-1 root, over TLS pinned to the
            // service CA and authenticated by the device certificate.
            let url = client.url(&["device", "v1", "tuf", "metadata", "1.root.json"]);
            let mut stream = tough::Transport::fetch(&transport, url)
                .await
                .map_err(|e| UpdateError::Network(error_chain(&e)))?;
            let mut root = Vec::new();
            use futures_util::StreamExt;
            while let Some(chunk) = stream.next().await {
                root.extend_from_slice(&chunk.map_err(|e| UpdateError::Network(error_chain(&e)))?);
            }
            fsutil::write_atomic(&tuf, ROOT_FILE, &root)?;
            root
        }
    };
    let metadata = client.url(&["device", "v1", "tuf", "metadata", ""]);
    let targets = client.url(&["device", "v1", "tuf", "targets", ""]);
    RepositoryLoader::new(&root, metadata, targets)
        .transport(transport)
        .datastore(datastore)
        .expiration_enforcement(ExpirationEnforcement::Safe)
        .load()
        .await
        .map_err(|e| UpdateError::Repository(error_chain(&e)))
}

/// SHA-256 of the component's active package file, if installed.
fn active_sha256(state: &StateDir, component: &str) -> Result<Option<String>, AgentError> {
    let path = state
        .path(crate::state::IMAGES_DIR)
        .join(format!("{component}.imagepackage"));
    let mut file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(AgentError::io("read", &path, e)),
    };
    let mut hasher = sevenfold_rot::Hasher::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = std::io::Read::read(&mut file, &mut buffer)
            .map_err(|e| AgentError::io("read", &path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(buffer.get(..n).unwrap_or_default());
    }
    Ok(Some(hasher.finish().to_hex()))
}

pub(crate) fn raise_counter(
    state: &StateDir,
    rot: &dyn RootOfTrust,
    component: &str,
    security_version: u32,
) -> Result<(), AgentError> {
    let index = state.counters()?.get_or_allocate(component)?;
    if rot.read_counter(index)? < u64::from(security_version) {
        rot.advance_counter(index, u64::from(security_version))?;
        tracing::info!(component, security_version, "anti-rollback counter raised");
    }
    Ok(())
}

/// Committed images whose counter was not raised yet (power lost between
/// commit and counter) get it now.
fn reconcile_counters(
    state: &StateDir,
    slots: &Slots<'_>,
    rot: &dyn RootOfTrust,
) -> Result<(), AgentError> {
    for component in slots.components()? {
        let slot = slots.load(&component)?;
        if let (false, Some(version)) = (slot.trial, slot.security_version) {
            raise_counter(state, rot, &component, version)?;
        }
    }
    Ok(())
}

/// Best effort: a report that does not arrive is logged, not fatal (the
/// outcome is also in the round's report and the next round reports again
/// for anything still pending).
async fn report_progress(
    client: &ServiceClient,
    deployment_id: &str,
    state: &str,
    reason: Option<&str>,
) {
    let body = ProgressReport {
        deployment_id: deployment_id.to_owned(),
        state: state.to_owned(),
        reason: reason.map(str::to_owned),
    };
    let segments: Vec<&str> = PROGRESS_PATH.trim_start_matches('/').split('/').collect();
    match client
        .send(reqwest::Method::POST, &segments, Some(&body))
        .await
    {
        Ok(reply) if reply.status.is_success() => {}
        Ok(reply) => tracing::warn!(status = reply.status.as_u16(), "progress report refused"),
        Err(e) => tracing::warn!(error = %e, "progress report not delivered"),
    }
}
