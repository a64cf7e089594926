//! From compartment events to failure records: every app crash, trap, limit
//! hit, denied capability and crash loop the compartment host reports is
//! journaled, with the app's component ID and the version boot measured, so
//! it reaches the operator through the failure reports.
//!
//! Crash details (the app's output tail and its whole backtrace) go with a
//! record only while the device's group has them on ([`CrashDetails`]); off,
//! the default, a record keeps the reason and the top frames that identify
//! the failure, and nothing the app wrote.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use sevenfold_compartment::{CompartmentEvent, EventSink};
use sevenfold_core::report::{FailureKind, FailureRecord, OUTPUT_TAIL_DETAIL};

use crate::boot::BootReport;
use crate::fsutil;
use crate::journal::{Journal, JournalError};
use crate::{AgentError, StateDir, APP_LOGS_DIR};

/// Restarts after which an app counts as crash-looping (one record when it
/// gets there; its crashes are journaled one by one anyway).
pub const CRASH_LOOP_RESTARTS: u32 = 5;

/// How much of the end of an app's output a crash record carries.
pub const OUTPUT_TAIL_BYTES: u64 = 2048;

/// The device group's crash-details choice as this device last heard it
/// (the service says it in every answer to a report upload). Kept in the
/// state directory, so a restarted agent remembers it; off until heard.
#[derive(Debug)]
pub struct CrashDetails {
    on: AtomicBool,
    dir: PathBuf,
}

impl CrashDetails {
    /// The file, in the state directory: `on`, or absent.
    pub const FILE: &'static str = "crash-details";

    /// The remembered choice (off if none is, or the file is unreadable).
    pub fn load(state: &StateDir) -> CrashDetails {
        let on = match fsutil::read_text(&state.path(Self::FILE), 16) {
            Ok(text) => text.is_some_and(|t| t.trim() == "on"),
            Err(e) => {
                tracing::warn!(error = %e, "crash-details setting unreadable; details stay off");
                false
            }
        };
        CrashDetails {
            on: AtomicBool::new(on),
            dir: state.root().to_owned(),
        }
    }

    /// Whether records carry crash details now.
    pub fn enabled(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// Takes the service's word; durable before it returns when it changes.
    pub fn set(&self, on: bool) -> Result<(), AgentError> {
        if self.on.swap(on, Ordering::Relaxed) == on {
            return Ok(());
        }
        tracing::info!(
            crash_details = on,
            "the device group changed its crash-details setting"
        );
        if on {
            fsutil::write_atomic(&self.dir, Self::FILE, b"on\n")
        } else {
            fsutil::remove(&self.dir, Self::FILE)
        }
    }
}

/// An [`EventSink`] that journals the failures among `boot`'s apps' events,
/// with crash details while `details` says so. A record the journal cannot
/// take is logged; the app is not held up.
pub fn journaling_sink(
    journal: Arc<Journal>,
    boot: &BootReport,
    state: &StateDir,
    details: Arc<CrashDetails>,
) -> EventSink {
    let versions: HashMap<String, String> = boot
        .verified_images
        .iter()
        .map(|image| (image.component_id.clone(), image.version.clone()))
        .collect();
    let logs = state.path(APP_LOGS_DIR);
    Arc::new(move |event: &CompartmentEvent| {
        let component = event.app().component_id.to_string();
        let version = versions.get(&component).map(String::as_str).unwrap_or("");
        let record = match failure_record(event, &component, version) {
            Ok(Some(record)) if details.enabled() => with_output_tail(record, &logs, &component),
            Ok(Some(record)) => record.without_crash_details(),
            Ok(None) => return,
            Err(e) => {
                tracing::error!(app = %event.app(), error = %e, "app failure not journaled");
                return;
            }
        };
        if let Err(e) = journal.record(&record) {
            tracing::error!(app = %event.app(), error = %e, "cannot journal an app failure");
        }
    })
}

/// `record` with the last [`OUTPUT_TAIL_BYTES`] of the app's output log
/// (unchanged if there is none to read).
fn with_output_tail(record: FailureRecord, logs: &Path, component: &str) -> FailureRecord {
    match output_tail(&logs.join(format!("{component}.log"))) {
        Some(tail) if !tail.is_empty() => record.with_detail(OUTPUT_TAIL_DETAIL, tail),
        _ => record,
    }
}

/// The end of a log file as text a record may carry: invalid UTF-8 replaced,
/// control characters other than newline and tab shown as `?`, starting at
/// a line boundary when there is one.
fn output_tail(path: &Path) -> Option<String> {
    let mut file = File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    let start = len.saturating_sub(OUTPUT_TAIL_BYTES);
    file.seek(SeekFrom::Start(start)).ok()?;
    let mut bytes = Vec::with_capacity((len - start) as usize);
    file.take(OUTPUT_TAIL_BYTES).read_to_end(&mut bytes).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let text = match text.find('\n') {
        Some(i) if start > 0 && i + 1 < text.len() => &text[i + 1..],
        _ => &text,
    };
    Some(
        text.chars()
            .map(|c| {
                if c.is_control() && c != '\n' && c != '\t' {
                    '?'
                } else {
                    c
                }
            })
            .collect(),
    )
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

    #[test]
    fn the_output_tail_is_the_end_of_the_log_as_record_text() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        assert_eq!(output_tail(&log), None, "no log, no tail");
        let mut text = String::new();
        for i in 0..200 {
            text.push_str(&format!("line {i}: reading sensor\n"));
        }
        text.push_str("panicked at 'bad value'\x1b[0m\r\n");
        std::fs::write(&log, &text).unwrap();
        let tail = output_tail(&log).unwrap();
        assert!(tail.len() <= OUTPUT_TAIL_BYTES as usize);
        assert!(tail.starts_with("line "), "starts at a line: {tail:.40}");
        assert!(tail.ends_with("panicked at 'bad value'?[0m?\n"), "{tail}");
        let record = with_output_tail(
            Journal::new_record(FailureKind::Trap, "c", "1.0.0", "trap").unwrap(),
            dir.path(),
            "app",
        );
        // Whatever the app wrote, the record stays one the service accepts.
        record.encode().unwrap();
        assert_eq!(record.details[OUTPUT_TAIL_DETAIL], tail);
        assert!(record.without_crash_details().details.is_empty());
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
