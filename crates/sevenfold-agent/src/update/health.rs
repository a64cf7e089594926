//! The health check an installed update must pass before it is committed.
//!
//! [`BootCheck`] is what can be checked today: the new active image passes
//! exactly the checks measured boot will apply (signature against the
//! trusted keys, application type, security version not below the
//! counter), and it is the component the signed target said it was.
//!
//! [`RunCheck`](super::RunCheck) (`run_check.rs`) adds the compartment
//! check behind the same trait: after `BootCheck`, the new version must run
//! for a configured time without crashing. The update loop takes either.

use std::collections::BTreeMap;
use std::path::Path;

use sevenfold_core::package::Limits;
use sevenfold_rot::RootOfTrust;

use crate::boot::{check_image, VerifiedImage};
use crate::{AgentError, StateDir};

/// Decides whether a freshly switched image may be committed.
pub trait HealthCheck: Send + Sync {
    /// `Ok` with the verified image, or the reason to roll back. The outer
    /// error is a local failure (the device state could not be read).
    fn check(
        &self,
        state: &StateDir,
        rot: &dyn RootOfTrust,
        image: &Path,
        component_id: &str,
    ) -> Result<Result<VerifiedImage, String>, AgentError>;
}

/// Boot verification of the new image (see the module documentation).
#[derive(Clone, Copy, Debug, Default)]
pub struct BootCheck;

impl HealthCheck for BootCheck {
    fn check(
        &self,
        state: &StateDir,
        rot: &dyn RootOfTrust,
        image: &Path,
        component_id: &str,
    ) -> Result<Result<VerifiedImage, String>, AgentError> {
        let (trusted, _) = state.trusted_keys()?;
        let mut counters = state.counters()?;
        let verdict = check_image(
            image,
            &Limits::default(),
            &trusted,
            &mut counters,
            rot,
            &BTreeMap::new(),
        )?;
        Ok(verdict
            .map_err(|reason| format!("the new image fails boot verification: {reason}"))
            .and_then(|verified| {
                if verified.component_id == component_id {
                    Ok(verified)
                } else {
                    Err(format!(
                        "the package is component {}, but the signed target names {component_id}",
                        verified.component_id
                    ))
                }
            }))
    }
}
