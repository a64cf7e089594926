//! The measurement log of the current power cycle, kept on disk
//! write-ahead, so that the agent can start more than once per power cycle.
//!
//! A TPM's PCRs reset only with the platform. Every start of the agent is a
//! boot segment: it measures the runtime, then the images, extending onto
//! whatever earlier starts of this power cycle measured. The verifier
//! replays the whole cycle's log from zero against the quoted PCRs, so the
//! log must outlive the process: it is `measurements.log` in the state
//! directory, one JSON line per event (the wire form of an event,
//! [`EventBody`]).
//!
//! **Write-ahead.** [`MeasurementLog::measure`] appends the event and
//! fsyncs it *before* extending the register. A crash can therefore leave
//! at most one logged event that was never extended (the last one), never an
//! extend without its event.
//!
//! **Reconciling at start** ([`MeasurementLog::open`]): registers at zero
//! mean a new power cycle, and the log starts over. Otherwise the log is
//! accepted only if replaying it from zero gives exactly the current
//! register values, or, failing that, if replaying it without its last event
//! does (the crash case above; that event is dropped). Anything else — a
//! missing, damaged or edited log, or registers someone else extended — is
//! [`AgentError::MeasurementLogMismatch`]: the agent refuses to run with
//! registers it cannot account for (fail closed; a reboot starts a new
//! cycle).
//!
//! The `soft` backend goes through the same code: its registers live in the
//! process and are zero at every open, so each of its starts is a new cycle.
//!
//! One boot at a time: the file is locked (`flock`) from reconciling until
//! the boot's last measurement, so two agent processes never interleave
//! their events. A running agent quotes the log as it is on disk when
//! another start appended to it since ([`current`], under a shared lock).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use sevenfold_core::attestation::{
    EventBody, EventLog, MeasurementEvent, ATTESTED_REGISTERS, MAX_EVENTS,
};
use sevenfold_rot::{Digest, RootOfTrust};

use crate::{AgentError, StateDir};

/// The log's file name in the state directory.
pub const MEASUREMENT_LOG_FILE: &str = "measurements.log";

/// Longest line one event may take (names and versions come from verified
/// manifests; this is far above what they hold).
const MAX_LINE_LEN: u64 = 4096;
/// Longest log file read: a full log of the longest lines.
const MAX_LOG_LEN: u64 = MAX_LINE_LEN * MAX_EVENTS as u64;

/// How [`MeasurementLog::open`] found the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resumed {
    /// The registers were at zero: a new power cycle, a new log.
    NewCycle,
    /// The log replays to the registers: this boot adds a segment.
    Continued,
    /// The last logged event was never extended (a crash between the write
    /// and the extend); it was dropped, and the rest replays.
    DroppedUnextended,
}

/// The open, locked log of this power cycle; see the [module documentation](self).
pub(crate) struct MeasurementLog {
    file: File,
    path: PathBuf,
    log: EventLog,
}

impl MeasurementLog {
    /// Locks the log and reconciles it with `rot`'s registers.
    pub(crate) fn open(
        state: &StateDir,
        rot: &dyn RootOfTrust,
    ) -> Result<(MeasurementLog, Resumed), AgentError> {
        let path = state.path(MEASUREMENT_LOG_FILE);
        let created = !crate::fsutil::exists(&path)?;
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(crate::fsutil::FILE_MODE)
            .open(&path)
            .map_err(|e| AgentError::io("open", &path, e))?;
        if created {
            crate::fsutil::sync_dir(state.root())?;
        }
        crate::fsutil::check_private(&path)?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| AgentError::io("lock", &path, e.into()))?;

        let registers = rot.read_registers(&ATTESTED_REGISTERS)?;
        if registers.iter().all(|(_, value)| *value == Digest::ZERO) {
            truncate(&file, &path, 0)?;
            let log = MeasurementLog {
                file,
                path,
                log: EventLog::new(),
            };
            return Ok((log, Resumed::NewCycle));
        }
        let mismatch = |detail: String| AgentError::MeasurementLogMismatch {
            path: path.clone(),
            detail,
        };
        let (events, ends) = read_events(&mut file, &path).map_err(mismatch)?;
        let mut log = EventLog::new();
        for event in &events {
            log.push(event.clone());
        }
        if log.replay() == registers {
            truncate(&file, &path, ends.last().copied().unwrap_or(0))?;
            return Ok((MeasurementLog { file, path, log }, Resumed::Continued));
        }
        let mut shorter = EventLog::new();
        for event in events.iter().take(events.len().saturating_sub(1)) {
            shorter.push(event.clone());
        }
        if !events.is_empty() && shorter.replay() == registers {
            let keep = ends.iter().rev().nth(1).copied().unwrap_or(0);
            truncate(&file, &path, keep)?;
            return Ok((
                MeasurementLog {
                    file,
                    path,
                    log: shorter,
                },
                Resumed::DroppedUnextended,
            ));
        }
        let show = |values: &sevenfold_rot::RegisterValues| {
            values
                .iter()
                .map(|(i, v)| format!("PCR {i} = {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        Err(mismatch(format!(
            "its {} events replay to {}, but the registers hold {}",
            events.len(),
            show(&log.replay()),
            show(&registers)
        )))
    }

    /// The events of this power cycle so far.
    pub(crate) fn events(&self) -> &EventLog {
        &self.log
    }

    /// Measures one event: appends it to the log and fsyncs, then extends
    /// its register. An error leaves at most this one event logged but not
    /// extended, which the next [`MeasurementLog::open`] drops.
    pub(crate) fn measure(
        &mut self,
        rot: &dyn RootOfTrust,
        event: MeasurementEvent,
    ) -> Result<(), AgentError> {
        let mut line = serde_json::to_vec(&EventBody::of(&event))
            .map_err(|e| AgentError::corrupt(&self.path, format!("cannot encode an event: {e}")))?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| AgentError::io("append to", &self.path, e))?;
        rot.extend(event.kind.register(), &event.digest)?;
        self.log.push(event);
        Ok(())
    }

    /// The whole cycle's log; releases the lock.
    pub(crate) fn into_log(self) -> EventLog {
        self.log
    }
}

/// The power cycle's log as it is now, for a quote, and a shared lock on it
/// that the caller holds until it has quoted (no boot can extend meanwhile).
///
/// Another start of the agent in this power cycle (say `agent update --now`
/// beside a running `agent run`, on a TPM) may have appended its boot since
/// `ours` was measured; the registers then hold those measurements too, so
/// the log on disk is what replays to them. It is used when it begins with
/// `ours`. Otherwise (the soft backend, whose registers belong to this
/// process, beside another process that started a log of its own) `ours` is.
/// [`AgentError::MeasurementLogBusy`] while a boot holds the log.
pub(crate) fn current(state: &StateDir, ours: &EventLog) -> Result<(EventLog, File), AgentError> {
    let path = state.path(MEASUREMENT_LOG_FILE);
    let mut file = File::open(&path).map_err(|e| AgentError::io("open", &path, e))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockShared) {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => return Err(AgentError::MeasurementLogBusy(path)),
        Err(e) => return Err(AgentError::io("lock", &path, e.into())),
    }
    let log = match read_events(&mut file, &path) {
        Ok((events, _)) if events.starts_with(ours.events()) => {
            let mut log = EventLog::new();
            for event in events {
                log.push(event);
            }
            log
        }
        _ => ours.clone(),
    };
    Ok((log, file))
}

/// Cuts the file to `len` bytes, durably.
fn truncate(file: &File, path: &Path, len: u64) -> Result<(), AgentError> {
    let current = file
        .metadata()
        .map_err(|e| AgentError::io("inspect", path, e))?
        .len();
    if current == len {
        return Ok(());
    }
    file.set_len(len)
        .and_then(|()| file.sync_all())
        .map_err(|e| AgentError::io("truncate", path, e))
}

/// The complete events of the file and the byte offset after each. A last
/// line without its newline is a write the crash cut short: it was never
/// extended (the extend follows the fsync of a whole line), so it is left
/// out. Any other line that does not parse is an error.
fn read_events(file: &mut File, path: &Path) -> Result<(Vec<MeasurementEvent>, Vec<u64>), String> {
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0))
        .and_then(|_| {
            Read::by_ref(file)
                .take(MAX_LOG_LEN.saturating_add(1))
                .read_to_end(&mut bytes)
        })
        .map_err(|e| format!("it cannot be read ({e}) from {}", path.display()))?;
    if bytes.len() as u64 > MAX_LOG_LEN {
        return Err(format!("it is longer than {MAX_LOG_LEN} bytes"));
    }
    let mut events = Vec::new();
    let mut ends = Vec::new();
    let mut offset = 0u64;
    for (number, line) in bytes.split_inclusive(|b| *b == b'\n').enumerate() {
        let Some(json) = line.strip_suffix(b"\n") else {
            break; // the torn tail
        };
        if events.len() >= MAX_EVENTS {
            return Err(format!("it holds more than {MAX_EVENTS} events"));
        }
        let event = serde_json::from_slice::<EventBody>(json)
            .map_err(|e| e.to_string())
            .and_then(|body| body.to_event().map_err(|e| e.to_string()))
            .map_err(|e| format!("line {} does not parse: {e}", number + 1))?;
        offset += line.len() as u64;
        events.push(event);
        ends.push(offset);
    }
    Ok((events, ends))
}
