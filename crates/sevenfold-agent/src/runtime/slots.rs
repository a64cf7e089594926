//! The runtime's own A and B slots.
//!
//! ```text
//! runtime/a/sevenfold, runtime/b/sevenfold   the two runtime executables
//! runtime/{a,b}/package                      the package file each came from
//! runtime/{a,b}/release.toml                 its version, security version, SHA-256
//! runtime/slot.toml                          active, previous, trial, …
//! ```
//!
//! An update writes the new executable (the payload of a verified runtime
//! image package), the package file itself (the base the next runtime's
//! delta starts from) and what it is to the inactive slot, then records it
//! as the active slot *on trial*. Each slot keeps its own facts, so a
//! rollback restores the previous slot's version, security version and
//! package hash with it. The supervisor (`supervise`) starts the active slot; a trial
//! that exits within the health-check period is rolled back to the previous
//! slot (no slot: the factory runtime the supervisor itself is), one that
//! stays up is committed and its security version becomes the counter's.
//! App slots (`update/slots.rs`) are separate: the agent's own recovery
//! never touches the runtime's trial, which only the supervisor can judge.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::update::Slot;
use crate::{fsutil, AgentError, StateDir};

/// Where the runtime slots live, under the state directory.
pub const RUNTIME_DIR: &str = "runtime";
const SLOT_FILE: &str = "slot.toml";
const EXECUTABLE: &str = "sevenfold";
const PACKAGE: &str = "package";
const RELEASE_FILE: &str = "release.toml";
const MAX_SLOT_FILE_LEN: u64 = 64 * 1024;

/// `runtime/<slot>/release.toml`: what the slot holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SlotRelease {
    version: String,
    security_version: u32,
    package_sha256: String,
}

/// `runtime/slot.toml`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSlotState {
    /// The slot the supervisor starts; `None`: the factory runtime.
    pub active: Option<Slot>,
    /// The slot to go back to when the trial fails; `None`: the factory runtime.
    pub previous: Option<Slot>,
    /// The active slot is on trial: installed, not yet health-checked.
    pub trial: bool,
    /// The runtime's component ID.
    #[serde(default)]
    pub component_id: Option<String>,
    /// Version of the active slot's runtime.
    #[serde(default)]
    pub version: Option<String>,
    /// Security version of the active slot's runtime.
    #[serde(default)]
    pub security_version: Option<u32>,
    /// SHA-256 of the package file the active slot came from.
    #[serde(default)]
    pub package_sha256: Option<String>,
    /// The deployment of the last install.
    #[serde(default)]
    pub deployment_id: Option<String>,
    /// Why the last trial was rolled back, if it was.
    #[serde(default)]
    pub last_rollback: Option<String>,
    /// The package (SHA-256) of that trial: not installed again.
    #[serde(default)]
    pub failed_sha256: Option<String>,
    /// An outcome ("installed" or "rolled-back") the service has not been
    /// told of yet; its reason is `last_rollback`.
    #[serde(default)]
    pub unreported: Option<String>,
}

/// What an install records about the new runtime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewRuntime<'a> {
    /// Component ID.
    pub component_id: &'a str,
    /// Version.
    pub version: &'a str,
    /// Security version.
    pub security_version: u32,
    /// SHA-256 of its package file.
    pub package_sha256: &'a str,
    /// The deployment it came from.
    pub deployment_id: &'a str,
}

/// The runtime slots of one device.
#[derive(Clone, Debug)]
pub struct RuntimeSlots {
    dir: PathBuf,
}

impl RuntimeSlots {
    /// The slots under `state`.
    pub fn new(state: &StateDir) -> RuntimeSlots {
        RuntimeSlots {
            dir: state.path(RUNTIME_DIR),
        }
    }

    /// The recorded state (all empty before the first runtime update).
    pub fn load(&self) -> Result<RuntimeSlotState, AgentError> {
        let path = self.dir.join(SLOT_FILE);
        match fsutil::read_text(&path, MAX_SLOT_FILE_LEN)? {
            Some(text) => {
                toml::from_str(&text).map_err(|e| AgentError::corrupt(&path, e.to_string()))
            }
            None => Ok(RuntimeSlotState::default()),
        }
    }

    fn save(&self, state: &RuntimeSlotState) -> Result<(), AgentError> {
        fsutil::create_private_dir(&self.dir)?;
        let text = toml::to_string(state)
            .map_err(|e| AgentError::corrupt(self.dir.join(SLOT_FILE), e.to_string()))?;
        fsutil::write_atomic(&self.dir, SLOT_FILE, text.as_bytes())
    }

    /// The executable of a slot.
    pub fn executable(&self, slot: Slot) -> PathBuf {
        self.dir.join(slot.name()).join(EXECUTABLE)
    }

    /// The package file a slot's executable came from: the base of a
    /// delta to the next runtime. Absent for the factory runtime and for
    /// slots installed before packages were kept.
    pub fn package(&self, slot: Slot) -> PathBuf {
        self.dir.join(slot.name()).join(PACKAGE)
    }

    /// What a slot holds, if recorded.
    fn release(&self, slot: Slot) -> Option<SlotRelease> {
        let path = self.dir.join(slot.name()).join(RELEASE_FILE);
        let text = fsutil::read_text(&path, MAX_SLOT_FILE_LEN).ok()??;
        match toml::from_str(&text) {
            Ok(release) => Some(release),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "unreadable slot release file");
                None
            }
        }
    }

    /// Writes `executable` (and the `package` file it came from) to the
    /// inactive slot (temporary files, fsync, rename; the executable mode
    /// 0700) and records it as the active slot on trial.
    pub fn install_trial(
        &self,
        executable: &[u8],
        package: &[u8],
        new: &NewRuntime<'_>,
    ) -> Result<Slot, AgentError> {
        let mut current = self.load()?;
        if current.trial {
            // Never stack trials: the untried one is dropped.
            current = self.rollback("replaced by a newer runtime before it was tried")?;
        }
        let target = current.active.map_or(Slot::A, Slot::other);
        let dir = self.dir.join(target.name());
        fsutil::create_private_dir(&self.dir)?;
        fsutil::create_private_dir(&dir)?;
        fsutil::write_atomic(&dir, EXECUTABLE, executable)?;
        let path = dir.join(EXECUTABLE);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| AgentError::io("make executable", &path, e))?;
        fsutil::write_atomic(&dir, PACKAGE, package)?;
        let release = toml::to_string(&SlotRelease {
            version: new.version.to_owned(),
            security_version: new.security_version,
            package_sha256: new.package_sha256.to_owned(),
        })
        .map_err(|e| AgentError::corrupt(dir.join(RELEASE_FILE), e.to_string()))?;
        fsutil::write_atomic(&dir, RELEASE_FILE, release.as_bytes())?;
        self.save(&RuntimeSlotState {
            active: Some(target),
            previous: current.active,
            trial: true,
            component_id: Some(new.component_id.to_owned()),
            version: Some(new.version.to_owned()),
            security_version: Some(new.security_version),
            package_sha256: Some(new.package_sha256.to_owned()),
            deployment_id: Some(new.deployment_id.to_owned()),
            last_rollback: None,
            failed_sha256: current.failed_sha256,
            unreported: None,
        })?;
        Ok(target)
    }

    /// Makes the trial permanent; returns the committed state.
    pub fn commit(&self) -> Result<RuntimeSlotState, AgentError> {
        let mut state = self.load()?;
        state.trial = false;
        state.unreported = Some("installed".to_owned());
        self.save(&state)?;
        Ok(state)
    }

    /// Goes back to the previous slot (or the factory runtime), recording
    /// why, with the previous slot's version, security version and package
    /// hash (none for the factory runtime, whose package is unknown).
    pub fn rollback(&self, reason: &str) -> Result<RuntimeSlotState, AgentError> {
        let state = self.load()?;
        let restored = state.previous.and_then(|slot| self.release(slot));
        let back = RuntimeSlotState {
            active: state.previous,
            previous: None,
            trial: false,
            component_id: state.component_id,
            version: restored.as_ref().map(|r| r.version.clone()),
            security_version: restored.as_ref().map(|r| r.security_version),
            package_sha256: restored.map(|r| r.package_sha256),
            deployment_id: state.deployment_id,
            last_rollback: Some(reason.to_owned()),
            failed_sha256: state.package_sha256,
            unreported: Some("rolled-back".to_owned()),
        };
        self.save(&back)?;
        Ok(back)
    }

    /// Takes the outcome not yet reported: (deployment, state, reason).
    pub(crate) fn take_unreported(
        &self,
    ) -> Result<Option<(String, String, Option<String>)>, AgentError> {
        let mut state = self.load()?;
        let Some(outcome) = state.unreported.take() else {
            return Ok(None);
        };
        self.save(&state)?;
        let reason = state.last_rollback.filter(|_| outcome == "rolled-back");
        Ok(state.deployment_id.map(|d| (d, outcome, reason)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::update::slots::tests::state;

    fn new<'a>(v: &'a str, sv: u32) -> NewRuntime<'a> {
        NewRuntime {
            component_id: "rt",
            version: v,
            security_version: sv,
            package_sha256: v,
            deployment_id: "d",
        }
    }

    #[test]
    fn install_commit_and_roll_back_to_the_previous_slot() {
        let (_d, s) = state();
        let slots = RuntimeSlots::new(&s);
        assert_eq!(slots.load().unwrap(), RuntimeSlotState::default());
        assert_eq!(
            slots
                .install_trial(b"#!/bin/sh\n", b"pkg2", &new("2", 2))
                .unwrap(),
            Slot::A
        );
        let exe = slots.executable(Slot::A);
        assert_eq!(std::fs::read(&exe).unwrap(), b"#!/bin/sh\n");
        assert_eq!(exe.metadata().unwrap().permissions().mode() & 0o777, 0o700);
        assert!(slots.load().unwrap().trial);
        let committed = slots.commit().unwrap();
        assert_eq!((committed.active, committed.trial), (Some(Slot::A), false));
        assert_eq!(
            slots.take_unreported().unwrap(),
            Some(("d".into(), "installed".into(), None))
        );
        assert_eq!(slots.take_unreported().unwrap(), None);
        assert_eq!(
            slots.install_trial(b"v3", b"pkg3", &new("3", 3)).unwrap(),
            Slot::B
        );
        let back = slots.rollback("exited at once").unwrap();
        assert_eq!((back.active, back.trial), (Some(Slot::A), false));
        assert_eq!(back.last_rollback.as_deref(), Some("exited at once"));
        // The next install goes to the slot that is not running.
        assert_eq!(
            slots.install_trial(b"v4", b"pkg4", &new("4", 4)).unwrap(),
            Slot::B
        );
    }

    #[test]
    fn a_rollback_restores_the_previous_slots_version_security_version_and_package() {
        let (_d, s) = state();
        let slots = RuntimeSlots::new(&s);
        slots.install_trial(b"v2", b"pkg2", &new("2", 2)).unwrap();
        slots.commit().unwrap();
        assert_eq!(std::fs::read(slots.package(Slot::A)).unwrap(), b"pkg2");
        slots.install_trial(b"v3", b"pkg3", &new("3", 3)).unwrap();
        assert_eq!(std::fs::read(slots.package(Slot::B)).unwrap(), b"pkg3");
        let back = slots.rollback("exited at once").unwrap();
        assert_eq!(back.active, Some(Slot::A));
        assert_eq!(back.version.as_deref(), Some("2"));
        assert_eq!(back.security_version, Some(2));
        assert_eq!(back.package_sha256.as_deref(), Some("2"));
        assert_eq!(back.failed_sha256.as_deref(), Some("3"));
        assert_eq!(slots.load().unwrap(), back);
        // The restored slot's package is still the delta base.
        assert_eq!(std::fs::read(slots.package(Slot::A)).unwrap(), b"pkg2");

        // A trial over the factory runtime rolls back to nothing known.
        let (_d, s) = state();
        let slots = RuntimeSlots::new(&s);
        slots.install_trial(b"v2", b"pkg2", &new("2", 2)).unwrap();
        let back = slots.rollback("exited at once").unwrap();
        assert_eq!(back.active, None);
        assert_eq!(
            (back.version, back.security_version, back.package_sha256),
            (None, None, None)
        );
    }
}
