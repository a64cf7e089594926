#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;

use sevenfold_core::report::FailureKind;

use super::*;

fn record(n: usize) -> FailureRecord {
    Journal::new_record(
        FailureKind::AppExit,
        "app-1",
        "1.0.0",
        &format!("exit code {n}"),
    )
    .unwrap()
    .with_detail("n", n)
}

fn reasons(journal: &Journal) -> Vec<String> {
    journal
        .records()
        .into_iter()
        .map(|(r, _)| r.reason)
        .collect()
}

#[test]
fn records_survive_reopen_with_unique_ids() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    let ids: Vec<RecordId> = (0..50)
        .map(|n| journal.record(&record(n)).unwrap())
        .collect();
    drop(journal);
    let journal = Journal::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    let back: Vec<RecordId> = journal.records().into_iter().map(|(r, _)| r.id).collect();
    assert_eq!(back, ids);
    let unique: std::collections::BTreeSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len());
    assert_eq!(journal.stats().pending, 50);
    assert_eq!(journal.stats().discarded_tail_bytes, 0);
}

#[test]
fn truncation_at_every_byte_keeps_every_whole_record() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    let mut ends = Vec::new();
    for n in 0..6 {
        journal.record(&record(n)).unwrap();
        ends.push(journal.stats().bytes);
    }
    drop(journal);
    let full = fs::read(dir.path().join(JOURNAL_FILE)).unwrap();
    for cut in 0..=full.len() {
        let copy = tempfile::tempdir().unwrap();
        fs::write(copy.path().join(JOURNAL_FILE), &full[..cut]).unwrap();
        let journal = Journal::open(copy.path(), DEFAULT_MAX_BYTES).unwrap();
        let whole = ends.iter().filter(|&&end| end <= cut as u64).count();
        let expected: Vec<String> = (0..whole).map(|n| format!("exit code {n}")).collect();
        assert_eq!(reasons(&journal), expected, "cut at {cut}");
        assert_eq!(
            journal.stats().discarded_tail_bytes,
            cut as u64
                - ends
                    .get(whole.wrapping_sub(1))
                    .copied()
                    .unwrap_or(0)
                    .min(cut as u64),
            "cut at {cut}"
        );
        // The journal goes on after the cut, and the new record reads back.
        journal.record(&record(99)).unwrap();
        drop(journal);
        let journal = Journal::open(copy.path(), DEFAULT_MAX_BYTES).unwrap();
        assert_eq!(reasons(&journal).len(), whole + 1, "cut at {cut}");
    }
}

#[test]
fn a_corrupted_byte_drops_that_record_and_what_follows_only() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    let mut ends = Vec::new();
    for n in 0..4 {
        journal.record(&record(n)).unwrap();
        ends.push(journal.stats().bytes as usize);
    }
    drop(journal);
    let full = fs::read(dir.path().join(JOURNAL_FILE)).unwrap();
    // Flip every byte of the third record in turn.
    for at in ends[1]..ends[2] {
        let mut bytes = full.clone();
        bytes[at] ^= 0x40;
        let copy = tempfile::tempdir().unwrap();
        fs::write(copy.path().join(JOURNAL_FILE), &bytes).unwrap();
        let journal = Journal::open(copy.path(), DEFAULT_MAX_BYTES).unwrap();
        assert_eq!(
            reasons(&journal),
            ["exit code 0", "exit code 1"],
            "flip at {at}"
        );
    }
}

#[test]
fn the_cursor_persists_and_pending_skips_acknowledged_records() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    for n in 0..10 {
        journal.record(&record(n)).unwrap();
    }
    let batch = journal.pending(4, usize::MAX);
    assert_eq!(batch.len(), 4);
    journal.acknowledge(batch[3].0).unwrap();
    drop(journal);
    let journal = Journal::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    let rest = journal.pending(100, usize::MAX);
    assert_eq!(rest.len(), 6);
    assert_eq!(rest[0].1.reason, "exit code 4");
    // A byte bound still lets one record through.
    assert_eq!(journal.pending(100, 1).len(), 1);
    // Acknowledging backwards is a no-op.
    journal.acknowledge(1).unwrap();
    assert_eq!(journal.stats().pending, 6);
    // Sequence numbers continue after the cursor even if the log is emptied.
    journal.acknowledge(rest[5].0).unwrap();
    assert_eq!(journal.stats().pending, 0);
}

#[test]
fn a_full_journal_drops_the_oldest_and_reports_how_many() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), MIN_MAX_BYTES).unwrap();
    let big = "x".repeat(900);
    for n in 0..200 {
        let r = record(n).with_detail("payload", &big);
        journal.record(&r).unwrap();
        assert!(journal.stats().bytes <= MIN_MAX_BYTES);
    }
    let stats = journal.stats();
    assert!(stats.dropped > 0);
    let records = journal.records();
    let dropped_reported: u64 = records
        .iter()
        .filter(|(r, _)| r.kind == FailureKind::RecordsDropped)
        .map(|(r, _)| r.details["count"].parse::<u64>().unwrap())
        .sum();
    assert_eq!(dropped_reported, stats.dropped);
    let kept = records
        .iter()
        .filter(|(r, _)| r.kind == FailureKind::AppExit)
        .count() as u64;
    assert_eq!(kept + stats.dropped, 200);
    // The newest record is always kept.
    assert_eq!(records.last().unwrap().0.reason, "exit code 199");
    // It all reads back after reopening.
    drop(journal);
    let reopened = Journal::open(dir.path(), MIN_MAX_BYTES).unwrap();
    assert_eq!(reopened.records().len(), records.len());
}

#[test]
fn acknowledged_records_are_compacted_away_without_counting_as_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), MIN_MAX_BYTES).unwrap();
    let big = "y".repeat(900);
    for n in 0..200 {
        journal.record(&record(n).with_detail("p", &big)).unwrap();
        let pending = journal.pending(100, usize::MAX);
        journal.acknowledge(pending.last().unwrap().0).unwrap();
    }
    assert_eq!(journal.stats().dropped, 0);
    assert_eq!(journal.stats().pending, 0);
}

#[test]
fn bounds_and_bad_records_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        Journal::open(dir.path(), 10),
        Err(JournalError::BoundTooSmall(10))
    ));
    let journal = Journal::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    let mut bad = record(1);
    bad.component_id = String::new();
    assert!(matches!(journal.record(&bad), Err(JournalError::Record(_))));
    assert_eq!(journal.stats().bytes, 0);
}

#[test]
fn a_panic_is_journaled_by_the_hook() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Arc::new(Journal::open(dir.path(), DEFAULT_MAX_BYTES).unwrap());
    install_panic_hook(journal.clone());
    let outcome = std::thread::Builder::new()
        .name("worker".into())
        .spawn(|| panic!("disk on fire at 0xdeadbeef"))
        .unwrap()
        .join();
    assert!(outcome.is_err());
    let reopened = Journal::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    let records = reopened.records();
    let (panic, _) = records
        .iter()
        .find(|(r, _)| r.kind == FailureKind::RuntimePanic)
        .unwrap();
    assert_eq!(panic.reason, "disk on fire at 0xdeadbeef");
    assert_eq!(panic.component_id, RUNTIME_COMPONENT);
    assert_eq!(panic.details["thread"], "worker");
    assert!(panic.details["location"].contains("tests.rs"));
}

#[test]
fn inspect_reads_without_cutting_a_tail() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    for n in 0..3 {
        journal.record(&record(n)).unwrap();
    }
    let first = journal.pending(1, usize::MAX)[0].0;
    journal.acknowledge(first).unwrap();
    drop(journal);
    // A half-written record, as an agent mid-append leaves it.
    let path = dir.path().join(JOURNAL_FILE);
    let mut bytes = fs::read(&path).unwrap();
    let len = bytes.len();
    bytes.extend_from_slice(&[7u8; 10]);
    fs::write(&path, &bytes).unwrap();
    let seen = Journal::inspect(dir.path()).unwrap();
    assert_eq!(seen.len(), 3);
    assert_eq!(
        seen.iter().map(|(_, d)| *d).collect::<Vec<_>>(),
        [true, false, false]
    );
    assert_eq!(fs::read(&path).unwrap().len(), len + 10);
    assert!(Journal::inspect(&dir.path().join("missing"))
        .unwrap()
        .is_empty());
}
