//! Bringing devices onto a Security Service through the operator API, for
//! the commands that make devices themselves (`quickstart`, `fleet
//! simulate`): the manufacturer CA that endorses them, the runtime build
//! they measure, and claiming each into its device group. Every step finds
//! what an earlier run made instead of failing on it, so both commands can
//! be run again over the same directory.

use std::path::{Path, PathBuf};

use anyhow::Context;
use reqwest::Method;
use sevenfold_agent::{AgentError, InitOptions, RotBackend, StateDir};
use sevenfold_core::api::{
    AddRuntimeRelease, AssignDevice, ClaimDevice, DeviceInfo, ManufacturerCaInfo,
    RuntimeReleaseInfo, TrustManufacturer,
};
use sevenfold_pki::ManufacturerCa;

use crate::client::{ApiFailure, Client};
use crate::files;

/// A value found on the service, or created now.
pub(crate) struct Found<T> {
    pub(crate) value: T,
    pub(crate) new: bool,
}

impl<T> Found<T> {
    pub(crate) fn existing(value: T) -> Found<T> {
        Found { value, new: false }
    }

    pub(crate) fn created(value: T) -> Found<T> {
        Found { value, new: true }
    }
}

/// The HTTP status of a refusal by the service, if `error` is one.
pub(crate) fn api_status(error: &anyhow::Error) -> Option<u16> {
    error
        .chain()
        .find_map(|e| e.downcast_ref::<ApiFailure>())
        .map(|f| f.status)
}

/// `GET` that answers `None` for 404.
pub(crate) async fn get_optional<T: serde::de::DeserializeOwned>(
    client: &Client,
    segments: &[&str],
) -> anyhow::Result<Option<T>> {
    match client.get(segments, &[]).await {
        Ok(value) => Ok(Some(value)),
        Err(e) if api_status(&e) == Some(404) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Runs `create`; on 409 (created meanwhile, or invisible to the lookup),
/// looks again with `find`.
pub(crate) async fn create_or_find<T, C, F>(
    create: C,
    find: F,
    what: &str,
) -> anyhow::Result<Found<T>>
where
    C: std::future::Future<Output = anyhow::Result<T>>,
    F: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    match create.await {
        Ok(value) => Ok(Found::created(value)),
        Err(e) if api_status(&e) == Some(409) => find
            .await?
            .map(Found::existing)
            .with_context(|| format!("{what} exists on the service but cannot be found: {e:#}")),
        Err(e) => Err(e.context(format!("cannot create {what}"))),
    }
}

/// `DIR/ca.pem` and `DIR/ca.key` (as `sevenfold manufacturer init` makes
/// them), made with `name` if missing; whether they were made now.
pub(crate) fn load_or_make_maker(
    dir: &Path,
    name: &str,
    days: u32,
) -> anyhow::Result<(ManufacturerCa, bool)> {
    let cert = dir.join("ca.pem");
    let key = dir.join("ca.key");
    if cert.exists() && key.exists() {
        let ca = ManufacturerCa::load(&files::read_text(&cert)?, &files::read_text(&key)?)
            .with_context(|| format!("the manufacturer CA in {} cannot be used", dir.display()))?;
        return Ok((ca, false));
    }
    let (ca, pem) =
        ManufacturerCa::generate(name, days).context("cannot make the manufacturer CA")?;
    // The key first: a certificate without its key would be useless.
    files::write_new(&key, pem.key_pem.as_bytes(), 0o600, true)?;
    files::write_new(&cert, pem.cert_pem.as_bytes(), 0o644, true)?;
    Ok((ca, true))
}

/// The manufacturer CA, trusted by the service (a server administrator's
/// step; found if already trusted).
pub(crate) async fn trust_manufacturer(
    client: &Client,
    maker: &ManufacturerCa,
) -> anyhow::Result<Found<ManufacturerCaInfo>> {
    let fingerprint = maker.certificate().fingerprint();
    let find = || async {
        let cas: Vec<ManufacturerCaInfo> = client.get(&["manufacturer-cas"], &[]).await?;
        Ok(cas.into_iter().find(|c| c.fingerprint == fingerprint))
    };
    if let Some(ca) = find().await? {
        return Ok(Found::existing(ca));
    }
    let body = TrustManufacturer {
        kind: Default::default(),
        certificate_pem: maker.certificate().to_pem(),
    };
    create_or_find(
        client.call(Method::POST, &["manufacturer-cas"], Some(&body)),
        find(),
        "the manufacturer CA",
    )
    .await
}

/// The runtime build with `digest` as a known, unrevoked release (added
/// if missing: a server administrator's step).
pub(crate) async fn ensure_runtime_release(
    client: &Client,
    digest: &str,
) -> anyhow::Result<Found<RuntimeReleaseInfo>> {
    let find = || async {
        let releases: Vec<RuntimeReleaseInfo> = client.get(&["runtime-releases"], &[]).await?;
        Ok(releases.into_iter().find(|r| r.digest == digest))
    };
    let release = match find().await? {
        Some(release) => Found::existing(release),
        None => {
            let body = AddRuntimeRelease {
                digest: digest.to_owned(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
            };
            create_or_find(
                client.call(Method::POST, &["runtime-releases"], Some(&body)),
                find(),
                "the runtime release",
            )
            .await?
        }
    };
    anyhow::ensure!(
        release.value.revoked_at.is_none(),
        "this runtime build ({digest}) is revoked on the service; rebuild sevenfold or use another server"
    );
    Ok(release)
}

/// The soft-root-of-trust device in `dir`, made now (for `device_url`,
/// pinning `ca_file`, endorsed by the manufacturer CA in `maker_dir`) if
/// the directory holds none yet. Blocking.
pub(crate) fn open_or_make_device(
    dir: &Path,
    device_url: &str,
    ca_file: &Path,
    maker_dir: &Path,
) -> anyhow::Result<StateDir> {
    match StateDir::open(dir) {
        Ok(state) => Ok(state),
        Err(AgentError::NotInitialised(_)) => {
            let options = InitOptions {
                state_dir: dir.to_path_buf(),
                service_url: device_url.to_owned(),
                service_ca: ca_file.to_path_buf(),
                rot: RotBackend::Soft,
                tcti: None,
                endorse_with: Some(maker_dir.to_path_buf()),
            };
            Ok(StateDir::init(&options)
                .with_context(|| format!("cannot make a device in {}", dir.display()))?
                .0)
        }
        Err(e) => Err(e.into()),
    }
}

/// Claims the device of `state` for `tenant` (once) and puts it in
/// `group_id`; whether it was claimed now.
pub(crate) async fn claim_into_group(
    client: &Client,
    tenant: &str,
    group_id: &str,
    state: &StateDir,
) -> anyhow::Result<bool> {
    let device_id = state.device_id().to_string();
    match get_optional::<DeviceInfo>(client, &["tenants", tenant, "devices", &device_id]).await? {
        Some(device) => {
            anyhow::ensure!(
                device.revoked_at.is_none(),
                "device {device_id} ({}) was revoked on the service; delete its state directory to make a new one",
                state.root().display()
            );
            if device.group_id.as_deref() != Some(group_id) {
                assign(client, tenant, &device_id, group_id).await?;
            }
            Ok(false)
        }
        None => {
            let body = ClaimDevice {
                device_id: device_id.clone(),
                endorsement_pem: state.endorsement_pem()?,
            };
            let claim = client
                .call::<_, DeviceInfo>(Method::POST, &["tenants", tenant, "devices"], Some(&body))
                .await;
            match claim {
                Ok(_) => {}
                Err(e) if api_status(&e) == Some(409) => {
                    return Err(
                        e.context(format!("device {device_id} is claimed by another tenant"))
                    )
                }
                Err(e) => return Err(e.context(format!("cannot claim device {device_id}"))),
            }
            assign(client, tenant, &device_id, group_id).await?;
            Ok(true)
        }
    }
}

async fn assign(client: &Client, tenant: &str, device: &str, group: &str) -> anyhow::Result<()> {
    let body = AssignDevice {
        group_id: group.to_owned(),
    };
    client
        .call::<_, DeviceInfo>(
            Method::PUT,
            &["tenants", tenant, "devices", device, "group"],
            Some(&body),
        )
        .await
        .with_context(|| format!("cannot put device {device} in its device group"))?;
    Ok(())
}

/// Runs blocking file and root-of-trust work off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .context("a background task failed")
}

/// `path` made absolute against the working directory, so printed paths
/// work from anywhere.
pub(crate) fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}
