//! Installing a runtime image package to the inactive runtime slot.
//!
//! The package is checked as boot checks app images: its signature against
//! the device's trusted keys, its security version against the component's
//! anti-rollback counter; it must be a `Runtime` image of the component the
//! signed target names. Only then is its payload (the executable) written to
//! the inactive slot with the package file (the next delta's base), on
//! trial until the supervisor has health-checked it.

use sevenfold_core::manifest::ImageType;
use sevenfold_core::package::{Limits, UnverifiedPackage};
use sevenfold_rot::RootOfTrust;

use super::slots::{NewRuntime, RuntimeSlots};
use crate::state::security_version_reason;
use crate::update::Slot;
use crate::{AgentError, StateDir};

/// Verifies `package` and installs its executable on trial. `Ok(Err)` is a
/// refusal (reported against the deployment), `Err` a local failure.
pub(crate) fn install_runtime(
    state: &StateDir,
    rot: &dyn RootOfTrust,
    package: &[u8],
    target: (&str, &str, &str),
) -> Result<Result<(Slot, String), String>, AgentError> {
    let (component_id, package_sha256, deployment_id) = target;
    let limits = Limits::default();
    let verified = match UnverifiedPackage::parse(package, &limits) {
        Ok(parsed) => {
            let (trusted, _) = state.trusted_keys()?;
            match parsed.verify(&trusted) {
                Ok(v) => v,
                Err(e) => return Ok(Err(format!("the runtime package is refused: {e}"))),
            }
        }
        Err(e) => return Ok(Err(format!("the runtime package is refused: {e}"))),
    };
    let manifest = verified.manifest();
    if manifest.image_type() != ImageType::Runtime {
        return Ok(Err(format!(
            "the package is a {} image, but the signed target is a runtime",
            manifest.image_type().as_str()
        )));
    }
    if manifest.component_id().to_string() != component_id {
        return Ok(Err(format!(
            "the package is component {}, but the signed target names {component_id}",
            manifest.component_id()
        )));
    }
    let counter = state.counters()?.get_or_allocate(component_id)?;
    let current = rot.read_counter(counter)?;
    if u64::from(manifest.security_version()) < current {
        return Ok(Err(security_version_reason(
            manifest.security_version(),
            current,
            component_id,
        )));
    }
    let version = manifest.version().to_string();
    let slot = RuntimeSlots::new(state).install_trial(
        verified.payload(),
        package,
        &NewRuntime {
            component_id,
            version: &version,
            security_version: manifest.security_version(),
            package_sha256,
            deployment_id,
        },
    )?;
    Ok(Ok((slot, version)))
}
