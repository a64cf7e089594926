//! A and B slots per component, with an atomic switch and rollback.
//!
//! Layout under the state directory:
//!
//! ```text
//! updates/slots/<component>/a.imagepackage
//! updates/slots/<component>/b.imagepackage
//! updates/slots/<component>/slot.toml     active slot, previous slot, trial flag
//! images/<component>.imagepackage         hard link to the active slot's file
//! ```
//!
//! Boot reads `images/` only, so what boot measures is exactly the active
//! slot. An install writes the inactive slot (temp file, fsync, rename),
//! records the *trial* in `slot.toml` (the point of no return for intent),
//! then switches `images/<component>.imagepackage` to it with one rename.
//! A trial that is not committed is rolled back by [`Slots::recover`] at the
//! next start, wherever the power failed (MCUboot's test-then-confirm rule),
//! so the device always runs a verified, committed image or the one before.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::state::IMAGES_DIR;
use crate::{fsutil, AgentError, StateDir};

/// Where slots live, under the state directory.
pub(crate) const SLOTS_DIR: &str = "updates/slots";
const SLOT_FILE: &str = "slot.toml";
const EXTENSION: &str = "imagepackage";
const MAX_SLOT_FILE_LEN: u64 = 64 * 1024;
/// The reason reported for a trial rolled back at recovery.
pub(crate) const INTERRUPTED: &str =
    "the device restarted before the update was committed; rolled back";

/// One of the two slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    /// Slot A.
    A,
    /// Slot B.
    B,
}

impl Slot {
    /// The slot that is not this one.
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    /// `"a"` or `"b"`.
    pub fn name(self) -> &'static str {
        match self {
            Slot::A => "a",
            Slot::B => "b",
        }
    }

    fn file_name(self) -> String {
        match self {
            Slot::A => format!("a.{EXTENSION}"),
            Slot::B => format!("b.{EXTENSION}"),
        }
    }
}

/// `slot.toml`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SlotState {
    /// The slot `images/` points at, if any.
    pub(crate) active: Option<Slot>,
    /// The slot it replaced (rollback target), if any.
    pub(crate) previous: Option<Slot>,
    /// The active slot is on trial: installed, not yet committed.
    pub(crate) trial: bool,
    /// The deployment the trial came from (to report its outcome).
    #[serde(default)]
    pub(crate) deployment_id: Option<String>,
    /// Security version of the committed active image: its anti-rollback
    /// counter must be at least this (re-applied at recovery, in case the
    /// power failed between commit and counter).
    #[serde(default)]
    pub(crate) security_version: Option<u32>,
    /// A rollback done at recovery that the service has not been told of.
    #[serde(default)]
    pub(crate) unreported: Option<String>,
}

/// A rollback done by [`Slots::recover`]: a trial interrupted by a crash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Recovered {
    /// The component.
    pub(crate) component_id: String,
    /// Its deployment, if known.
    pub(crate) deployment_id: Option<String>,
}

/// The slots of every component of one device.
pub(crate) struct Slots<'a> {
    state: &'a StateDir,
}

impl<'a> Slots<'a> {
    pub(crate) fn new(state: &'a StateDir) -> Slots<'a> {
        Slots { state }
    }

    fn dir(&self, component: &str) -> PathBuf {
        self.state.path(SLOTS_DIR).join(component)
    }

    fn image_name(component: &str) -> String {
        format!("{component}.{EXTENSION}")
    }

    /// The component's slot state; a component installed before slots
    /// existed (by `agent install`) is adopted into slot A.
    pub(crate) fn load(&self, component: &str) -> Result<SlotState, AgentError> {
        let dir = self.dir(component);
        let path = dir.join(SLOT_FILE);
        if let Some(text) = fsutil::read_text(&path, MAX_SLOT_FILE_LEN)? {
            return toml::from_str(&text).map_err(|e| AgentError::corrupt(&path, e.to_string()));
        }
        let image = self
            .state
            .path(IMAGES_DIR)
            .join(Self::image_name(component));
        if !fsutil::exists(&image)? {
            return Ok(SlotState {
                active: None,
                previous: None,
                trial: false,
                deployment_id: None,
                security_version: None,
                unreported: None,
            });
        }
        fsutil::create_private_dir(&dir)?;
        fsutil::link_atomic(&image, &dir, &Slot::A.file_name())?;
        let adopted = SlotState {
            active: Some(Slot::A),
            previous: None,
            trial: false,
            deployment_id: None,
            security_version: None,
            unreported: None,
        };
        self.save(component, &adopted)?;
        Ok(adopted)
    }

    fn save(&self, component: &str, state: &SlotState) -> Result<(), AgentError> {
        let dir = self.dir(component);
        fsutil::create_private_dir(&dir)?;
        let text = toml::to_string(state)
            .map_err(|e| AgentError::corrupt(dir.join(SLOT_FILE), e.to_string()))?;
        fsutil::write_atomic(&dir, SLOT_FILE, text.as_bytes())
    }

    /// Points `images/<component>` at `slot` (or removes it for `None`).
    fn point(&self, component: &str, slot: Option<Slot>) -> Result<(), AgentError> {
        let images = self.state.path(IMAGES_DIR);
        fsutil::create_private_dir(&images)?;
        match slot {
            Some(slot) => fsutil::link_atomic(
                &self.dir(component).join(slot.file_name()),
                &images,
                &Self::image_name(component),
            ),
            None => fsutil::remove(&images, &Self::image_name(component)),
        }
    }

    /// Writes `package` to the inactive slot, marks it on trial and switches
    /// to it. Returns the path boot will measure.
    pub(crate) fn install_trial(
        &self,
        component: &str,
        package: &[u8],
        deployment_id: &str,
    ) -> Result<PathBuf, AgentError> {
        let current = self.load(component)?;
        if current.trial {
            // Never stack trials: settle the old one first.
            self.rollback(component)?;
        }
        let current = self.load(component)?;
        let target = current.active.map_or(Slot::A, Slot::other);
        let dir = self.dir(component);
        fsutil::create_private_dir(&dir)?;
        fsutil::write_atomic(&dir, &target.file_name(), package)?;
        self.save(
            component,
            &SlotState {
                active: Some(target),
                previous: current.active,
                trial: true,
                deployment_id: Some(deployment_id.to_owned()),
                security_version: None,
                unreported: None,
            },
        )?;
        self.point(component, Some(target))?;
        Ok(self
            .state
            .path(IMAGES_DIR)
            .join(Self::image_name(component)))
    }

    /// Makes the trial permanent, recording the image's security version.
    pub(crate) fn commit(&self, component: &str, security_version: u32) -> Result<(), AgentError> {
        let mut state = self.load(component)?;
        state.trial = false;
        state.security_version = Some(security_version);
        self.save(component, &state)
    }

    /// Takes the recovery rollbacks not yet reported: (component, deployment, reason).
    pub(crate) fn take_unreported(&self) -> Result<Vec<(String, String, String)>, AgentError> {
        let mut out = Vec::new();
        for component in self.components()? {
            let mut state = self.load(&component)?;
            if let Some(reason) = state.unreported.take() {
                if let Some(deployment) = state.deployment_id.clone() {
                    out.push((component.clone(), deployment, reason));
                }
                self.save(&component, &state)?;
            }
        }
        Ok(out)
    }

    /// Components with a slot directory.
    pub(crate) fn components(&self) -> Result<Vec<String>, AgentError> {
        let root = self.state.path(SLOTS_DIR);
        let entries = match std::fs::read_dir(&root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(AgentError::io("list", &root, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| AgentError::io("list", &root, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !fsutil::is_temp_name(&name) {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Goes back to the previous slot (or to no image, if there was none).
    pub(crate) fn rollback(&self, component: &str) -> Result<(), AgentError> {
        let state = self.load(component)?;
        // Point boot at the old image first, then record it: a crash in
        // between leaves a trial that the next recovery rolls back again.
        self.point(component, state.previous)?;
        self.save(
            component,
            &SlotState {
                active: state.previous,
                previous: None,
                trial: false,
                deployment_id: state.deployment_id,
                security_version: None,
                unreported: None,
            },
        )
    }

    /// Rolls back every trial left by a crash or power loss.
    pub(crate) fn recover(&self) -> Result<Vec<Recovered>, AgentError> {
        let mut recovered = Vec::new();
        for component in self.components()? {
            let state = self.load(&component)?;
            if state.trial {
                tracing::warn!(component = %component, "an update was interrupted before it was committed; rolling back");
                self.rollback(&component)?;
                let mut after = self.load(&component)?;
                after.unreported = Some(INTERRUPTED.to_owned());
                self.save(&component, &after)?;
                recovered.push(Recovered {
                    component_id: component,
                    deployment_id: state.deployment_id,
                });
            }
        }
        Ok(recovered)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A freshly initialised device state directory (shared by the
    /// update module's tests).
    pub(crate) fn state() -> (tempfile::TempDir, StateDir) {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let (_, ca_pem, _) = sevenfold_pki::ServiceCa::generate("test service").unwrap();
        std::fs::write(&ca, ca_pem).unwrap();
        let (state, _) = StateDir::init(&crate::InitOptions {
            state_dir: dir.path().join("device"),
            service_url: "https://127.0.0.1:1".into(),
            service_ca: ca,
            rot: crate::RotBackend::Soft,
            tcti: None,
            endorse_with: None,
        })
        .unwrap();
        (dir, state)
    }

    fn active_bytes(state: &StateDir) -> Option<Vec<u8>> {
        std::fs::read(state.path(IMAGES_DIR).join("c1.imagepackage")).ok()
    }

    #[test]
    fn install_commit_then_a_failed_trial_rolls_back() {
        let (_dir, state) = state();
        let slots = Slots::new(&state);
        slots.install_trial("c1", b"v1", "d1").unwrap();
        slots.commit("c1", 1).unwrap();
        assert_eq!(active_bytes(&state).unwrap(), b"v1");
        slots.install_trial("c1", b"v2", "d2").unwrap();
        assert_eq!(active_bytes(&state).unwrap(), b"v2");
        assert_eq!(slots.load("c1").unwrap().active, Some(Slot::B));
        slots.rollback("c1").unwrap();
        assert_eq!(active_bytes(&state).unwrap(), b"v1");
        let now = slots.load("c1").unwrap();
        assert_eq!((now.active, now.trial), (Some(Slot::A), false));
        // The next install goes to the free slot again.
        slots.install_trial("c1", b"v3", "d3").unwrap();
        slots.commit("c1", 1).unwrap();
        assert_eq!(active_bytes(&state).unwrap(), b"v3");
    }

    #[test]
    fn an_interrupted_trial_is_rolled_back_at_recovery() {
        let (_dir, state) = state();
        let slots = Slots::new(&state);
        slots.install_trial("c1", b"v1", "d1").unwrap();
        slots.commit("c1", 1).unwrap();
        slots.install_trial("c1", b"v2", "d2").unwrap();
        let recovered = Slots::new(&state).recover().unwrap();
        assert_eq!(recovered.len(), 1);
        assert_eq!(recovered[0].deployment_id.as_deref(), Some("d2"));
        assert_eq!(active_bytes(&state).unwrap(), b"v1");
        assert!(Slots::new(&state).recover().unwrap().is_empty());
    }

    #[test]
    fn a_first_install_that_fails_leaves_no_image() {
        let (_dir, state) = state();
        let slots = Slots::new(&state);
        slots.install_trial("c1", b"v1", "d1").unwrap();
        slots.rollback("c1").unwrap();
        assert_eq!(active_bytes(&state), None);
    }

    #[test]
    fn an_image_installed_by_hand_is_adopted_into_slot_a() {
        let (_dir, state) = state();
        std::fs::write(state.path(IMAGES_DIR).join("c1.imagepackage"), b"v0").unwrap();
        let slots = Slots::new(&state);
        slots.install_trial("c1", b"v1", "d1").unwrap();
        slots.rollback("c1").unwrap();
        assert_eq!(active_bytes(&state).unwrap(), b"v0");
    }
}
