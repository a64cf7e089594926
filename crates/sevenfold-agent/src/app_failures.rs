//! From compartment events to failure records: every app crash, trap, limit
//! hit, denied capability and crash loop the compartment host reports is
//! journaled, with the app's component ID and the version boot measured, so
//! it reaches the operator through the failure reports.

use std::collections::HashMap;
use std::sync::Arc;

use sevenfold_compartment::{CompartmentEvent, EventSink};
use sevenfold_core::report::{FailureKind, FailureRecord};

use crate::boot::BootReport;
use crate::journal::{Journal, JournalError};

/// Restarts after which an app counts as crash-looping (one record when it
/// gets there; its crashes are journaled one by one anyway).
pub const CRASH_LOOP_RESTARTS: u32 = 5;

/// An [`EventSink`] that journals the failures among `boot`'s apps' events.
/// A record the journal cannot take is logged; the app is not held up.
pub fn journaling_sink(journal: Arc<Journal>, boot: &BootReport) -> EventSink {
    let versions: HashMap<String, String> = boot
        .verified_images
        .iter()
        .map(|image| (image.component_id.clone(), image.version.clone()))
        .collect();
    Arc::new(move |event: &CompartmentEvent| {
        let component = event.app().component_id.to_string();
        let version = versions.get(&component).map(String::as_str).unwrap_or("");
        match failure_record(event, &component, version) {
            Ok(Some(record)) => {
                if let Err(e) = journal.record(&record) {
                    tracing::error!(app = %event.app(), error = %e, "cannot journal an app failure");
                }
            }
            Ok(None) => {}
            Err(e) => tracing::error!(app = %event.app(), error = %e, "app failure not journaled"),
        }
    })
}

/// The failure record for `event`, if it is a failure.
fn failure_record(
    event: &CompartmentEvent,
    component: &str,
    version: &str,
) -> Result<Option<FailureRecord>, JournalError> {
    let record = match event {
        CompartmentEvent::Crashed {
            reason, backtrace, ..
        } => Journal::new_record(FailureKind::Trap, component, version, reason)?
            .with_frames(backtrace),
        CompartmentEvent::LimitHit { limit, detail, .. } => Journal::new_record(
            FailureKind::LimitHit,
            component,
            version,
            &format!("{} limit reached: {detail}", limit.as_str()),
        )?
        .with_detail("limit", limit.as_str()),
        CompartmentEvent::Denied {
            capability, detail, ..
        } => Journal::new_record(
            FailureKind::CapabilityDenied,
            component,
            version,
            &format!("{} not granted: {detail}", capability.as_str()),
        )?
        .with_detail("capability", capability.as_str()),
        CompartmentEvent::Exited { code, .. } if *code != 0 => Journal::new_record(
            FailureKind::AppExit,
            component,
            version,
            &format!("exited with code {code}"),
        )?
        .with_detail("exit_code", code),
        CompartmentEvent::Restarting { restarts, .. } if *restarts == CRASH_LOOP_RESTARTS => {
            Journal::new_record(
                FailureKind::CrashLoop,
                component,
                version,
                &format!("restarted {restarts} times; backing off"),
            )?
            .with_detail("restarts", restarts)
        }
        _ => return Ok(None),
    };
    Ok(Some(record))
}

#[cfg(test)]
mod tests {
    use sevenfold_compartment::{AppId, Capability, Limit};

    use super::*;

    fn app() -> AppId {
        AppId {
            component_id: uuid::Uuid::nil(),
            name: "blink".into(),
        }
    }

    fn kind_of(event: CompartmentEvent) -> Option<FailureKind> {
        failure_record(&event, "c", "1.0.0")
            .unwrap()
            .map(|r| r.kind)
    }

    #[test]
    fn failures_become_records_and_the_rest_does_not() {
        let cases = [
            (
                CompartmentEvent::Crashed {
                    app: app(),
                    reason: "wasm trap: unreachable".into(),
                    backtrace: vec!["0: main".into()],
                },
                Some(FailureKind::Trap),
            ),
            (
                CompartmentEvent::LimitHit {
                    app: app(),
                    limit: Limit::Memory,
                    detail: "grow to 8 MiB".into(),
                },
                Some(FailureKind::LimitHit),
            ),
            (
                CompartmentEvent::Denied {
                    app: app(),
                    capability: Capability::Gpio,
                    detail: "pin 3".into(),
                },
                Some(FailureKind::CapabilityDenied),
            ),
            (
                CompartmentEvent::Exited {
                    app: app(),
                    code: 2,
                },
                Some(FailureKind::AppExit),
            ),
            (
                CompartmentEvent::Exited {
                    app: app(),
                    code: 0,
                },
                None,
            ),
            (
                CompartmentEvent::Restarting {
                    app: app(),
                    restarts: CRASH_LOOP_RESTARTS,
                    delay: std::time::Duration::from_secs(1),
                },
                Some(FailureKind::CrashLoop),
            ),
            (
                CompartmentEvent::Restarting {
                    app: app(),
                    restarts: 1,
                    delay: std::time::Duration::from_secs(1),
                },
                None,
            ),
            (
                CompartmentEvent::Started {
                    app: app(),
                    attempt: 1,
                },
                None,
            ),
        ];
        for (event, want) in cases {
            assert_eq!(kind_of(event.clone()), want, "{event:?}");
        }
    }
}
