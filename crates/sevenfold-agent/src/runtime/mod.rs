//! Runtime self-update: the runtime (`sevenfold` itself) is a component
//! with its own A and B slots (`slots`), installed by the update round from
//! a verified runtime image package (`install`), and started, health-checked
//! and rolled back by a tiny supervisor (`supervise`, `sevenfold agent
//! supervise`; `dist/systemd/sevenfold-agent.service` runs it).

mod install;
mod slots;
mod supervise;

pub(crate) use install::install_runtime;
pub use slots::{NewRuntime, RuntimeSlotState, RuntimeSlots, RUNTIME_DIR};
pub use supervise::{
    supervise, SuperviseOptions, SupervisorEvent, RESTART_EXIT_CODE, RUNTIME_SLOT_ENV,
    SUPERVISED_ENV,
};
