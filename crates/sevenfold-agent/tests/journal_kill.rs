#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! SIGKILL at random points while a real process records into the journal
//! and moves its upload cursor: no acknowledged record is lost, no record
//! appears twice, and the journal reopens and goes on (50 trials).
//!
//! The writer is this test binary itself, re-run as a child with
//! `SEVENFOLD_JOURNAL_CHILD` set; it prints `rec <id>` after each record is
//! acknowledged and `ack <seq>` after each cursor move.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use sevenfold_agent::journal::{Journal, DEFAULT_MAX_BYTES};
use sevenfold_core::report::FailureKind;

const CHILD_ENV: &str = "SEVENFOLD_JOURNAL_CHILD";

#[test]
#[ignore = "runs only as the child of sigkill_never_loses_an_acknowledged_record"]
fn journal_writer_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let journal = Journal::open(std::path::Path::new(&dir), DEFAULT_MAX_BYTES).unwrap();
    let mut out = std::io::stdout().lock();
    for n in 0u64.. {
        let record = Journal::new_record(FailureKind::Trap, "app", "1.0.0", "trap at 0x10")
            .unwrap()
            .with_detail("n", n)
            .with_frames(["a::b+0x1", "c::d+0x2"]);
        let id = journal.record(&record).unwrap();
        writeln!(out, "rec {id}").unwrap();
        out.flush().unwrap();
        if n % 5 == 4 {
            let pending = journal.pending(3, usize::MAX);
            if let Some((seq, _)) = pending.last() {
                journal.acknowledge(*seq).unwrap();
                writeln!(out, "ack {seq}").unwrap();
                out.flush().unwrap();
            }
        }
    }
}

/// A pseudo-random delay in 2..40 ms (xorshift, seeded per trial).
fn delay(seed: &mut u64) -> Duration {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    Duration::from_millis(2 + *seed % 38)
}

#[test]
fn sigkill_never_loses_an_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut acknowledged: BTreeSet<String> = BTreeSet::new();
    let mut last_ack = 0u64;
    for trial in 0..50 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "journal_writer_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        // Kill at a random point once the writer is under way.
        let mut lines = Vec::new();
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("the writer started");
            let started = line.starts_with("rec ");
            lines.push(line);
            if started {
                break;
            }
        }
        std::thread::sleep(delay(&mut seed));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        lines.extend(rx.try_iter());
        for line in lines {
            if let Some(id) = line.strip_prefix("rec ") {
                acknowledged.insert(id.to_owned());
            } else if let Some(seq) = line.strip_prefix("ack ") {
                last_ack = last_ack.max(seq.parse().unwrap());
            }
        }
        let journal = Journal::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
        let records = journal.records();
        let ids: Vec<String> = records.iter().map(|(r, _)| r.id.to_string()).collect();
        let unique: BTreeSet<String> = ids.iter().cloned().collect();
        assert_eq!(
            unique.len(),
            ids.len(),
            "trial {trial}: a record appears twice"
        );
        let missing: Vec<&String> = acknowledged.difference(&unique).collect();
        assert!(
            missing.is_empty(),
            "trial {trial}: acknowledged records lost: {missing:?}"
        );
        // The cursor is at least where the last acknowledged move put it:
        // nothing below it is offered again.
        let pending = journal.pending(usize::MAX, usize::MAX);
        assert!(
            pending.iter().all(|(seq, _)| *seq > last_ack),
            "trial {trial}: a delivered record is pending again"
        );
    }
    assert!(
        acknowledged.len() > 50,
        "the writer made progress: {}",
        acknowledged.len()
    );
}
