//! The failure record, the upload batch and their read/encode pair.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Path segments of the upload endpoint (mutual TLS).
pub const REPORTS_PATH: [&str; 3] = ["device", "v1", "reports"];

/// Longest encoded record (JSON bytes).
pub const MAX_RECORD_LEN: usize = 16 * 1024;
/// Most records in one batch.
pub const MAX_BATCH_RECORDS: usize = 100;
/// Longest batch body; a batch of full-size records would not fit, so the
/// agent also stops filling a batch at this many bytes.
pub const MAX_BATCH_LEN: usize = 240 * 1024;
/// Longest component ID or version.
pub const MAX_FIELD_LEN: usize = 128;
/// Longest reason.
pub const MAX_REASON_LEN: usize = 1024;
/// Most backtrace frames kept (top of the stack first).
pub const MAX_FRAMES: usize = 32;
/// Longest frame.
pub const MAX_FRAME_LEN: usize = 256;
/// Frames that identify a failure: the service groups problems by the top
/// this many (innermost first), and a device whose group has crash details
/// off sends no more than these.
pub const SIGNATURE_FRAMES: usize = 3;
/// Detail key of the tail of an app's output (stdout and stderr), sent only
/// when the device's group has crash details on.
pub const OUTPUT_TAIL_DETAIL: &str = "output_tail";
/// Most detail entries.
pub const MAX_DETAILS: usize = 32;
/// Longest detail key.
pub const MAX_DETAIL_KEY_LEN: usize = 64;
/// Longest detail value.
pub const MAX_DETAIL_VALUE_LEN: usize = 4096;

/// Why a record or batch was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// The input is longer than the format allows.
    #[error("{what} is {len} bytes, more than the {max} allowed")]
    TooLong {
        /// What was too long.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// More items than allowed.
    #[error("{what} has {count} entries, more than the {max} allowed")]
    TooMany {
        /// What had too many entries.
        what: &'static str,
        /// How many.
        count: usize,
        /// The bound.
        max: usize,
    },
    /// The input is not the JSON the format expects.
    #[error("malformed report: {0}")]
    Malformed(String),
    /// A field has a value outside its domain.
    #[error("invalid {field}: {detail}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        detail: String,
    },
}

/// A record's unique ID: 32 lowercase hex characters (128 random bits).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RecordId(String);

impl RecordId {
    /// A fresh ID from 16 random bytes.
    pub fn from_random(bytes: [u8; 16]) -> RecordId {
        RecordId(hex::encode(bytes))
    }

    /// Parses an ID; refuses anything but 32 lowercase hex characters.
    pub fn parse(text: &str) -> Result<RecordId, ReportError> {
        if text.len() == 32
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(RecordId(text.to_owned()))
        } else {
            Err(ReportError::Invalid {
                field: "id",
                detail: "a record ID is 32 lowercase hex characters".into(),
            })
        }
    }

    /// The hex text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RecordId {
    type Error = ReportError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        RecordId::parse(&value)
    }
}

impl From<RecordId> for String {
    fn from(id: RecordId) -> String {
        id.0
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What kind of failure a record describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum FailureKind {
    /// An app exited (details: the exit code).
    AppExit,
    /// An app trapped (frames: the wasm backtrace).
    Trap,
    /// An app kept crashing and is no longer restarted for a while.
    CrashLoop,
    /// An app hit its memory, CPU or storage limit (details: which).
    LimitHit,
    /// An app attempted something its manifest does not grant.
    CapabilityDenied,
    /// An installed image or trusted key failed its boot check.
    BootCheckFailed,
    /// An update failed or was rolled back.
    UpdateFailed,
    /// An attestation was refused, as the device saw it.
    AttestationFailed,
    /// The runtime itself panicked.
    RuntimePanic,
    /// Hourly liveness: uptime, memory, restart counts, versions. Not a failure.
    Heartbeat,
    /// The journal was full and dropped its oldest records (details: count).
    RecordsDropped,
}

impl FailureKind {
    /// Every kind, in declaration order.
    pub const ALL: [FailureKind; 11] = [
        FailureKind::AppExit,
        FailureKind::Trap,
        FailureKind::CrashLoop,
        FailureKind::LimitHit,
        FailureKind::CapabilityDenied,
        FailureKind::BootCheckFailed,
        FailureKind::UpdateFailed,
        FailureKind::AttestationFailed,
        FailureKind::RuntimePanic,
        FailureKind::Heartbeat,
        FailureKind::RecordsDropped,
    ];

    /// The wire spelling (`app-exit`, `boot-check-failed`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::AppExit => "app-exit",
            FailureKind::Trap => "trap",
            FailureKind::CrashLoop => "crash-loop",
            FailureKind::LimitHit => "limit-hit",
            FailureKind::CapabilityDenied => "capability-denied",
            FailureKind::BootCheckFailed => "boot-check-failed",
            FailureKind::UpdateFailed => "update-failed",
            FailureKind::AttestationFailed => "attestation-failed",
            FailureKind::RuntimePanic => "runtime-panic",
            FailureKind::Heartbeat => "heartbeat",
            FailureKind::RecordsDropped => "records-dropped",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(text: &str) -> Option<FailureKind> {
        FailureKind::ALL.into_iter().find(|k| k.as_str() == text)
    }

    /// Whether records of this kind are failures (grouped into problems);
    /// heartbeats are not.
    pub fn is_failure(self) -> bool {
        self != FailureKind::Heartbeat
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One journaled event: a failure, or a heartbeat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailureRecord {
    /// Unique ID; the service stores a record once per device and ID.
    pub id: RecordId,
    /// When it happened, device clock (unix milliseconds).
    pub at: i64,
    /// The component: an app's component ID, or `runtime`.
    pub component_id: String,
    /// The component's version (empty if unknown).
    pub component_version: String,
    /// What kind of event.
    pub kind: FailureKind,
    /// The reason in one line (`exit code 101`, `signature does not verify`).
    pub reason: String,
    /// Backtrace frames, innermost first (empty if none).
    #[serde(default)]
    pub frames: Vec<String>,
    /// Further facts, by name.
    #[serde(default)]
    pub details: BTreeMap<String, String>,
}

impl FailureRecord {
    /// A record with every text cut to its bound (at a character boundary),
    /// so that recording a failure never fails because its text is long.
    pub fn new(
        id: RecordId,
        at: i64,
        kind: FailureKind,
        component_id: &str,
        component_version: &str,
        reason: &str,
    ) -> FailureRecord {
        FailureRecord {
            id,
            at,
            component_id: cut(component_id, MAX_FIELD_LEN),
            component_version: cut(component_version, MAX_FIELD_LEN),
            kind,
            reason: cut(reason, MAX_REASON_LEN),
            frames: Vec::new(),
            details: BTreeMap::new(),
        }
    }

    /// Adds frames (innermost first), keeping at most [`MAX_FRAMES`], each cut
    /// to [`MAX_FRAME_LEN`].
    pub fn with_frames<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, frames: I) -> Self {
        self.frames.extend(
            frames
                .into_iter()
                .take(MAX_FRAMES.saturating_sub(self.frames.len()))
                .map(|f| cut(f.as_ref(), MAX_FRAME_LEN)),
        );
        self
    }

    /// This record without its crash details, for a device group that has
    /// them off (the default, for privacy): the backtrace cut to the
    /// [`SIGNATURE_FRAMES`] that identify the failure (code locations, no
    /// data), and no app output tail.
    pub fn without_crash_details(mut self) -> Self {
        self.frames.truncate(SIGNATURE_FRAMES);
        self.details.remove(OUTPUT_TAIL_DETAIL);
        self
    }

    /// Adds a detail (ignored past [`MAX_DETAILS`]); key and value are cut to
    /// their bounds.
    pub fn with_detail(mut self, key: &str, value: impl fmt::Display) -> Self {
        let key = cut(key, MAX_DETAIL_KEY_LEN);
        if self.details.len() < MAX_DETAILS || self.details.contains_key(&key) {
            self.details
                .insert(key, cut(&value.to_string(), MAX_DETAIL_VALUE_LEN));
        }
        self
    }

    /// The JSON encoding, after checking every bound (so what is encoded
    /// can always be read back).
    pub fn encode(&self) -> Result<Vec<u8>, ReportError> {
        self.validate()?;
        let bytes = serde_json::to_vec(self).map_err(|e| ReportError::Malformed(e.to_string()))?;
        if bytes.len() > MAX_RECORD_LEN {
            return Err(ReportError::TooLong {
                what: "record",
                len: bytes.len(),
                max: MAX_RECORD_LEN,
            });
        }
        Ok(bytes)
    }

    /// Reads one encoded record, checking every bound and field.
    pub fn read(bytes: &[u8]) -> Result<FailureRecord, ReportError> {
        if bytes.len() > MAX_RECORD_LEN {
            return Err(ReportError::TooLong {
                what: "record",
                len: bytes.len(),
                max: MAX_RECORD_LEN,
            });
        }
        let record: FailureRecord =
            serde_json::from_slice(bytes).map_err(|e| ReportError::Malformed(e.to_string()))?;
        record.validate()?;
        Ok(record)
    }

    /// Checks every field against its bound.
    pub fn validate(&self) -> Result<(), ReportError> {
        if self.at < 0 {
            return Err(ReportError::Invalid {
                field: "at",
                detail: "time before 1970".into(),
            });
        }
        check_text("component_id", &self.component_id, MAX_FIELD_LEN)?;
        if self.component_id.is_empty() {
            return Err(ReportError::Invalid {
                field: "component_id",
                detail: "empty".into(),
            });
        }
        check_text("component_version", &self.component_version, MAX_FIELD_LEN)?;
        check_text("reason", &self.reason, MAX_REASON_LEN)?;
        if self.frames.len() > MAX_FRAMES {
            return Err(ReportError::TooMany {
                what: "frames",
                count: self.frames.len(),
                max: MAX_FRAMES,
            });
        }
        for frame in &self.frames {
            check_text("frame", frame, MAX_FRAME_LEN)?;
        }
        if self.details.len() > MAX_DETAILS {
            return Err(ReportError::TooMany {
                what: "details",
                count: self.details.len(),
                max: MAX_DETAILS,
            });
        }
        for (key, value) in &self.details {
            check_text("detail key", key, MAX_DETAIL_KEY_LEN)?;
            check_text("detail value", value, MAX_DETAIL_VALUE_LEN)?;
        }
        Ok(())
    }
}

/// `POST /device/v1/reports`: records in journal order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportBatch {
    /// The records (1 to [`MAX_BATCH_RECORDS`]).
    pub records: Vec<FailureRecord>,
}

impl ReportBatch {
    /// The JSON body, after checking the bounds.
    pub fn encode(&self) -> Result<Vec<u8>, ReportError> {
        self.validate()?;
        let bytes = serde_json::to_vec(self).map_err(|e| ReportError::Malformed(e.to_string()))?;
        if bytes.len() > MAX_BATCH_LEN {
            return Err(ReportError::TooLong {
                what: "batch",
                len: bytes.len(),
                max: MAX_BATCH_LEN,
            });
        }
        Ok(bytes)
    }

    /// Reads a request body, checking the bounds and every record.
    pub fn read(bytes: &[u8]) -> Result<ReportBatch, ReportError> {
        if bytes.len() > MAX_BATCH_LEN {
            return Err(ReportError::TooLong {
                what: "batch",
                len: bytes.len(),
                max: MAX_BATCH_LEN,
            });
        }
        let batch: ReportBatch =
            serde_json::from_slice(bytes).map_err(|e| ReportError::Malformed(e.to_string()))?;
        batch.validate()?;
        Ok(batch)
    }

    /// Checks the record count and every record (for a batch that was
    /// deserialised some other way than [`ReportBatch::read`]).
    pub fn validate(&self) -> Result<(), ReportError> {
        if self.records.is_empty() {
            return Err(ReportError::Invalid {
                field: "records",
                detail: "a batch holds at least one record".into(),
            });
        }
        if self.records.len() > MAX_BATCH_RECORDS {
            return Err(ReportError::TooMany {
                what: "records",
                count: self.records.len(),
                max: MAX_BATCH_RECORDS,
            });
        }
        self.records.iter().try_for_each(FailureRecord::validate)
    }
}

/// The service's answer to a batch: every record in it is now stored
/// (`stored` new ones, `duplicates` already there from an earlier attempt).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportAck {
    /// Records stored by this request.
    pub stored: u32,
    /// Records the service already had.
    pub duplicates: u32,
    /// Whether the device's group wants crash details (the app's output
    /// tail and full backtrace) in later records; off by default.
    #[serde(default)]
    pub crash_details: bool,
}

fn check_text(field: &'static str, text: &str, max: usize) -> Result<(), ReportError> {
    if text.len() > max {
        return Err(ReportError::TooLong {
            what: field,
            len: text.len(),
            max,
        });
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(ReportError::Invalid {
            field,
            detail: "control characters are not allowed".into(),
        });
    }
    Ok(())
}

/// `text` cut to at most `max` bytes at a character boundary, control
/// characters (other than newline and tab) replaced by spaces.
fn cut(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max));
    for c in text.chars() {
        let c = if c.is_control() && c != '\n' && c != '\t' {
            ' '
        } else {
            c
        };
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    out
}
