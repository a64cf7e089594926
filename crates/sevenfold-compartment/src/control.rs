//! The shared cell between an app's thread and the supervisor: stop and kill
//! requests, live metrics, the captured output and the recent events.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::events::{AppId, CompartmentEvent, EventSink};

/// Lines of output kept per app.
pub const LOG_LINES: usize = 500;
/// Longest line kept; longer output is cut into lines of this size.
pub const MAX_LINE: usize = 4096;
/// Events kept per app for status.
pub const RECENT_EVENTS: usize = 32;
/// Denials and limit hits reported per run; past this they are only
/// counted, so that an app looping on a closed door cannot flood the log
/// and the journal.
pub const MAX_REPORTS_PER_RUN: u32 = 64;

/// One app's control cell.
pub(crate) struct AppControl {
    id: AppId,
    sink: EventSink,
    stop: AtomicBool,
    kill: AtomicBool,
    memory: AtomicU64,
    memory_peak: AtomicU64,
    cpu_micros: AtomicU64,
    output: Mutex<Output>,
    events: Mutex<VecDeque<CompartmentEvent>>,
    reports_this_run: AtomicU32,
    suppressed: AtomicU64,
}

#[derive(Default)]
struct Output {
    lines: VecDeque<String>,
    partial: Vec<u8>,
    total_lines: u64,
}

impl AppControl {
    pub(crate) fn new(id: AppId, sink: EventSink) -> Self {
        AppControl {
            id,
            sink,
            stop: AtomicBool::new(false),
            kill: AtomicBool::new(false),
            memory: AtomicU64::new(0),
            memory_peak: AtomicU64::new(0),
            cpu_micros: AtomicU64::new(0),
            output: Mutex::new(Output::default()),
            events: Mutex::new(VecDeque::new()),
            reports_this_run: AtomicU32::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    pub(crate) fn id(&self) -> &AppId {
        &self.id
    }

    /// Logs the event, keeps it for status, and hands it to the sink.
    pub(crate) fn emit(&self, event: CompartmentEvent) {
        match &event {
            CompartmentEvent::Started { .. } => self.reports_this_run.store(0, Ordering::Relaxed),
            CompartmentEvent::Denied { .. } | CompartmentEvent::LimitHit { .. } => {
                let n = self.reports_this_run.fetch_add(1, Ordering::Relaxed);
                if n >= MAX_REPORTS_PER_RUN {
                    if self.suppressed.fetch_add(1, Ordering::Relaxed) == 0
                        || n == MAX_REPORTS_PER_RUN
                    {
                        tracing::warn!(component = %self.id.component_id, app = %self.id.name,
                            "more than {MAX_REPORTS_PER_RUN} denials and limit hits in this run; further ones are counted, not reported");
                    }
                    return;
                }
            }
            _ => {}
        }
        if event.is_failure() {
            tracing::warn!(component = %self.id.component_id, app = %self.id.name, "{event}");
        } else {
            tracing::info!(component = %self.id.component_id, app = %self.id.name, "{event}");
        }
        (self.sink)(&event);
        let mut events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        if events.len() == RECENT_EVENTS {
            events.pop_front();
        }
        events.push_back(event);
    }

    pub(crate) fn recent_events(&self) -> Vec<CompartmentEvent> {
        let events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        events.iter().cloned().collect()
    }

    /// Denials and limit hits counted but not reported (all runs).
    pub(crate) fn suppressed(&self) -> u64 {
        self.suppressed.load(Ordering::Relaxed)
    }

    pub(crate) fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    pub(crate) fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    pub(crate) fn kill(&self) {
        self.kill.store(true, Ordering::SeqCst);
    }

    pub(crate) fn killed(&self) -> bool {
        self.kill.load(Ordering::SeqCst)
    }

    pub(crate) fn set_memory(&self, bytes: usize) {
        let bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
        self.memory.store(bytes, Ordering::Relaxed);
        self.memory_peak.fetch_max(bytes, Ordering::Relaxed);
    }

    pub(crate) fn memory(&self) -> (u64, u64) {
        (
            self.memory.load(Ordering::Relaxed),
            self.memory_peak.load(Ordering::Relaxed),
        )
    }

    pub(crate) fn add_cpu(&self, time: Duration) {
        let micros = u64::try_from(time.as_micros()).unwrap_or(u64::MAX);
        self.cpu_micros.fetch_add(micros, Ordering::Relaxed);
    }

    pub(crate) fn cpu(&self) -> Duration {
        Duration::from_micros(self.cpu_micros.load(Ordering::Relaxed))
    }

    /// Appends the app's standard output or error; complete lines are kept
    /// (the last [`LOG_LINES`]) and logged.
    pub(crate) fn write_output(&self, bytes: &[u8]) {
        let mut out = self.output.lock().unwrap_or_else(PoisonError::into_inner);
        for &b in bytes {
            if b == b'\n' || out.partial.len() >= MAX_LINE {
                let line = String::from_utf8_lossy(&out.partial).into_owned();
                out.partial.clear();
                if b != b'\n' {
                    out.partial.push(b);
                }
                tracing::info!(target: "sevenfold::app", component = %self.id.component_id, app = %self.id.name, "{line}");
                if out.lines.len() == LOG_LINES {
                    out.lines.pop_front();
                }
                out.lines.push_back(line);
                out.total_lines += 1;
            } else {
                out.partial.push(b);
            }
        }
    }

    /// The kept lines, oldest first, and how many lines were written in all.
    pub(crate) fn output(&self) -> (Vec<String>, u64) {
        let out = self.output.lock().unwrap_or_else(PoisonError::into_inner);
        (out.lines.iter().cloned().collect(), out.total_lines)
    }
}
