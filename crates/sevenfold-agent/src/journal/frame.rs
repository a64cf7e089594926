//! The journal's on-disk framing: one record is
//! `length (u32 LE) ‖ sequence (u64 LE) ‖ check (8 bytes) ‖ payload`, where
//! `check` is the first 8 bytes of SHA-256 over length, sequence and payload.
//!
//! A scan stops at the first frame that is short, oversized, fails its
//! check, does not decode, or does not continue the sequence: everything
//! before it is good, everything from it on is a torn or damaged tail.

use sevenfold_core::report::{FailureRecord, MAX_RECORD_LEN};

/// Bytes before the payload.
pub(super) const HEADER_LEN: usize = 4 + 8 + 8;

/// Encodes one frame.
pub(super) fn encode(seq: u64, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut frame = Vec::with_capacity(HEADER_LEN + payload.len());
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(&seq.to_le_bytes());
    frame.extend_from_slice(&check(len, seq, payload));
    frame.extend_from_slice(payload);
    frame
}

fn check(len: u32, seq: u64, payload: &[u8]) -> [u8; 8] {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(b"sevenfold journal v1\0");
    ctx.update(&len.to_le_bytes());
    ctx.update(&seq.to_le_bytes());
    ctx.update(payload);
    let digest = ctx.finish();
    let mut out = [0u8; 8];
    for (o, d) in out.iter_mut().zip(digest.as_ref()) {
        *o = *d;
    }
    out
}

/// A good frame found by [`scan`].
#[derive(Debug)]
pub(super) struct Scanned {
    pub(super) seq: u64,
    /// The frame's bytes, header included.
    pub(super) frame: Vec<u8>,
    pub(super) record: FailureRecord,
}

/// What [`scan`] found: the good records, and where the good prefix ends.
#[derive(Debug)]
pub(super) struct ScanResult {
    pub(super) records: Vec<Scanned>,
    /// Length of the good prefix; bytes after it are a damaged tail.
    pub(super) good_len: u64,
}

/// Reads frames from the start of `bytes` until the end or the first bad one.
pub(super) fn scan(bytes: &[u8]) -> ScanResult {
    let mut records = Vec::new();
    let mut offset = 0usize;
    let mut last_seq: Option<u64> = None;
    while let Some(found) = next_frame(bytes.get(offset..).unwrap_or_default()) {
        if last_seq.is_some_and(|last| found.0 <= last) {
            break;
        }
        last_seq = Some(found.0);
        let frame = bytes
            .get(offset..offset + found.1)
            .unwrap_or_default()
            .to_vec();
        offset += found.1;
        records.push(Scanned {
            seq: found.0,
            frame,
            record: found.2,
        });
    }
    ScanResult {
        records,
        good_len: offset as u64,
    }
}

/// The frame at the start of `bytes`: (sequence, frame length, record).
fn next_frame(bytes: &[u8]) -> Option<(u64, usize, FailureRecord)> {
    let header = bytes.get(..HEADER_LEN)?;
    let len = u32::from_le_bytes(header.get(0..4)?.try_into().ok()?);
    let seq = u64::from_le_bytes(header.get(4..12)?.try_into().ok()?);
    let stored_check = header.get(12..20)?;
    let payload_len = usize::try_from(len).ok()?;
    if payload_len > MAX_RECORD_LEN {
        return None;
    }
    let payload = bytes.get(HEADER_LEN..HEADER_LEN + payload_len)?;
    if check(len, seq, payload) != stored_check {
        return None;
    }
    let record = FailureRecord::read(payload).ok()?;
    Some((seq, HEADER_LEN + payload_len, record))
}
