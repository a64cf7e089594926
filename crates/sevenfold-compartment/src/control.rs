//! The shared cell between an app's thread and the supervisor: stop and kill
//! requests, live metrics, the captured output and the recent events.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::events::{AppId, CompartmentEvent, EventSink};

/// Lines of output kept per app.
pub const LOG_LINES: usize = 500;
/// Longest line kept; longer output is cut into lines of this size.
pub const MAX_LINE: usize = 4096;
/// Size at which an app's log file is rotated (to `<component>.log.1`).
pub const MAX_LOG_FILE: u64 = 1024 * 1024;
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
    file: Option<LogFile>,
}

/// `<dir>/<component ID>.log`, rotated once at [`MAX_LOG_FILE`] bytes, so
/// that an app's output survives the agent (for `sevenfold agent logs`)
/// without filling the disk.
struct LogFile {
    path: PathBuf,
    file: Option<File>,
    written: u64,
}

impl LogFile {
    fn open(path: PathBuf) -> LogFile {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path);
        let (file, written) = match file {
            Ok(f) => {
                let len = f.metadata().map(|m| m.len()).unwrap_or(0);
                (Some(f), len)
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot open the app's log file; output is kept in memory only");
                (None, 0)
            }
        };
        LogFile {
            path,
            file,
            written,
        }
    }

    fn append(&mut self, line: &str) {
        if self.written >= MAX_LOG_FILE {
            let mut rotated = self.path.clone().into_os_string();
            rotated.push(".1");
            let _ = std::fs::rename(&self.path, rotated);
            *self = LogFile::open(self.path.clone());
        }
        if let Some(file) = self.file.as_mut() {
            if file
                .write_all(line.as_bytes())
                .and_then(|()| file.write_all(b"\n"))
                .is_ok()
            {
                self.written = self.written.saturating_add(line.len() as u64 + 1);
            }
        }
    }
}

impl AppControl {
    /// A control cell; with `log_dir`, output lines are also appended to
    /// `<log_dir>/<component ID>.log`.
    pub(crate) fn new(id: AppId, sink: EventSink, log_dir: Option<&Path>) -> Self {
        let file = log_dir.map(|dir| LogFile::open(dir.join(format!("{}.log", id.component_id))));
        AppControl {
            id,
            sink,
            stop: AtomicBool::new(false),
            kill: AtomicBool::new(false),
            memory: AtomicU64::new(0),
            memory_peak: AtomicU64::new(0),
            cpu_micros: AtomicU64::new(0),
            output: Mutex::new(Output {
                file,
                ..Output::default()
            }),
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
                if let Some(file) = out.file.as_mut() {
                    file.append(&line);
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_file_is_rotated_once_at_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let id = AppId {
            component_id: uuid::Uuid::from_u128(1),
            name: "chatty".into(),
        };
        let control = AppControl::new(id, std::sync::Arc::new(|_| {}), Some(dir.path()));
        let line = [b'x'; 1023];
        for _ in 0..1500 {
            control.write_output(&line);
            control.write_output(b"\n");
        }
        let current = dir.path().join(format!("{}.log", uuid::Uuid::from_u128(1)));
        let rotated = dir
            .path()
            .join(format!("{}.log.1", uuid::Uuid::from_u128(1)));
        assert_eq!(std::fs::metadata(&rotated).unwrap().len(), MAX_LOG_FILE);
        assert_eq!(std::fs::metadata(&current).unwrap().len(), 476 * 1024);
        assert_eq!(control.output().1, 1500);
        assert_eq!(control.output().0.len(), LOG_LINES);
    }
}
