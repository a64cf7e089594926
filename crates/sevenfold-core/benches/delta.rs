//! Delta updates (issue 5): delta size and create/apply time for pairs of
//! real builds, for the two candidates and their command-line baselines, in
//! one run:
//!
//! - `qbsdiff`: `sevenfold_core::delta` (bsdiff 4 in Rust: suffix sort +
//!   bzip2) — what ships;
//! - `zstd-prefix/L`: zstd with the old file as reference prefix and
//!   long-distance matching, a window over both files, at level L — the
//!   other candidate (what `zstd --patch-from` does, through the library);
//! - `zstd --patch-from` (CLI, level 19) and `bsdiff`/`bspatch` (CLI), the
//!   baselines, timed as processes (so their times include exec and I/O).
//!
//! ```sh
//! scripts/delta-bench-inputs.sh /tmp/delta-inputs   # builds the pairs
//! cargo bench -p sevenfold-core --bench delta -- \
//!     --pair blink=/tmp/delta-inputs/blink-1.wasm,/tmp/delta-inputs/blink-2.wasm \
//!     --pair runtime=/tmp/delta-inputs/sevenfold-1,/tmp/delta-inputs/sevenfold-2
//! ```
//!
//! Options: `--levels 3,19` (zstd levels), `--no-cli` (skip the baselines),
//! `--no-bsdiff` (skip both bsdiffs, for very large pairs).
//! A bench of `sevenfold-core` rather than a `sevenfold-bench` binary so
//! that an optimised build needs only this small crate, not the server.
//!
//! Every delta is applied again and the result compared with the new
//! file, so a figure is only printed for a delta that really works.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

struct Args {
    /// `NAME=OLD,NEW`: a pair of builds of the same program.
    pair: Vec<String>,
    /// zstd levels to measure for `zstd-prefix`.
    levels: Vec<i32>,
    /// Skip the command-line baselines.
    no_cli: bool,
    /// Skip qbsdiff and the bsdiff CLI.
    no_bsdiff: bool,
}

impl Args {
    fn parse() -> Args {
        let mut args = Args {
            pair: Vec::new(),
            levels: vec![3, 19],
            no_cli: false,
            no_bsdiff: false,
        };
        let mut it = std::env::args().skip(1);
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "--pair" => args.pair.push(it.next().expect("--pair NAME=OLD,NEW")),
                "--levels" => {
                    let list = it.next().expect("--levels 3,19");
                    args.levels = list.split(',').map(|l| l.parse().expect("level")).collect();
                }
                "--no-cli" => args.no_cli = true,
                "--no-bsdiff" => args.no_bsdiff = true,
                // `cargo bench` adds `--bench`.
                "--bench" => {}
                other => panic!("unknown argument {other}"),
            }
        }
        assert!(
            !args.pair.is_empty(),
            "give at least one --pair NAME=OLD,NEW"
        );
        args
    }
}

struct Row {
    pair: String,
    method: String,
    old_len: usize,
    new_len: usize,
    delta_len: u64,
    create: Duration,
    apply: Duration,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}

fn run(cmd: &mut Command) -> Duration {
    let (status, took) = timed(|| cmd.status().expect("spawn"));
    assert!(status.success(), "{cmd:?}: {status}");
    took
}

fn zstd_create(old: &[u8], new: &[u8], level: i32) -> Vec<u8> {
    let bits = usize::BITS - (old.len() + new.len()).saturating_sub(1).leading_zeros();
    let mut encoder =
        zstd::stream::write::Encoder::with_ref_prefix(Vec::new(), level, old).unwrap();
    encoder.long_distance_matching(true).unwrap();
    encoder.window_log(bits.clamp(10, 31)).unwrap();
    encoder
        .set_pledged_src_size(Some(new.len() as u64))
        .unwrap();
    std::io::Write::write_all(&mut encoder, new).unwrap();
    encoder.finish().unwrap()
}

fn zstd_apply(old: &[u8], delta: &[u8]) -> Vec<u8> {
    let mut decoder = zstd::stream::read::Decoder::with_ref_prefix(delta, old).unwrap();
    decoder.window_log_max(31).unwrap();
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut decoder, &mut out).unwrap();
    out
}

fn zstd_prefix(old: &[u8], new: &[u8], level: i32) -> (u64, Duration, Duration) {
    let (delta, create) = timed(|| zstd_create(old, new, level));
    let (rebuilt, apply) = timed(|| zstd_apply(old, &delta));
    assert!(
        rebuilt == new,
        "zstd-prefix/{level} did not rebuild the file"
    );
    (delta.len() as u64, create, apply)
}

fn qbsdiff(old: &[u8], new: &[u8]) -> (u64, Duration, Duration) {
    let (delta, create) = timed(|| sevenfold_core::delta::create(old, new).unwrap());
    let (rebuilt, apply) =
        timed(|| sevenfold_core::delta::apply(old, &delta, new.len() as u64).unwrap());
    assert!(rebuilt == new, "qbsdiff did not rebuild the file");
    (delta.len() as u64, create, apply)
}

fn cli_zstd(old: &Path, new: &Path, dir: &Path, new_bytes: &[u8]) -> (u64, Duration, Duration) {
    let patch = dir.join("patch.zst");
    let out = dir.join("out.zstd");
    let create = run(Command::new("zstd")
        .args(["-q", "-f", "-19", "--long=31", "--patch-from"])
        .arg(old)
        .arg(new)
        .arg("-o")
        .arg(&patch));
    let apply = run(Command::new("zstd")
        .args(["-q", "-f", "-d", "--long=31", "--patch-from"])
        .arg(old)
        .arg(&patch)
        .arg("-o")
        .arg(&out));
    assert!(std::fs::read(&out).unwrap() == new_bytes, "zstd CLI");
    (std::fs::metadata(&patch).unwrap().len(), create, apply)
}

fn cli_bsdiff(old: &Path, new: &Path, dir: &Path, new_bytes: &[u8]) -> (u64, Duration, Duration) {
    let patch = dir.join("patch.bsdiff");
    let out = dir.join("out.bsdiff");
    let create = run(Command::new("bsdiff").arg(old).arg(new).arg(&patch));
    let apply = run(Command::new("bspatch").arg(old).arg(&out).arg(&patch));
    assert!(std::fs::read(&out).unwrap() == new_bytes, "bsdiff CLI");
    (std::fs::metadata(&patch).unwrap().len(), create, apply)
}

fn main() {
    let args = Args::parse();
    let dir = tempfile::tempdir().unwrap();
    let mut rows = Vec::new();
    for spec in &args.pair {
        let (name, files) = spec.split_once('=').expect("NAME=OLD,NEW");
        let (old_path, new_path) = files.split_once(',').expect("NAME=OLD,NEW");
        let (old_path, new_path) = (PathBuf::from(old_path), PathBuf::from(new_path));
        let old = std::fs::read(&old_path).unwrap();
        let new = std::fs::read(&new_path).unwrap();
        let mut push = |method: String, (delta_len, create, apply): (u64, Duration, Duration)| {
            let row = Row {
                pair: name.to_owned(),
                method,
                old_len: old.len(),
                new_len: new.len(),
                delta_len,
                create,
                apply,
            };
            eprintln!(
                "{:<12} {:<22} delta {:>10} B  create {:>9.1} ms  apply {:>8.1} ms",
                row.pair,
                row.method,
                row.delta_len,
                ms(row.create),
                ms(row.apply)
            );
            rows.push(row);
        };
        for level in &args.levels {
            push(
                format!("zstd-prefix/{level}"),
                zstd_prefix(&old, &new, *level),
            );
        }
        if !args.no_bsdiff {
            push("qbsdiff".into(), qbsdiff(&old, &new));
        }
        if !args.no_cli {
            push(
                "zstd --patch-from -19".into(),
                cli_zstd(&old_path, &new_path, dir.path(), &new),
            );
            if !args.no_bsdiff {
                push(
                    "bsdiff (CLI)".into(),
                    cli_bsdiff(&old_path, &new_path, dir.path(), &new),
                );
            }
        }
    }
    println!("| pair | old → new (bytes) | method | delta (bytes) | delta / new | create (ms) | apply (ms) |");
    println!("|---|---|---|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} → {} | {} | {} | {:.2} % | {:.1} | {:.1} |",
            r.pair,
            r.old_len,
            r.new_len,
            r.method,
            r.delta_len,
            r.delta_len as f64 * 100.0 / r.new_len.max(1) as f64,
            ms(r.create),
            ms(r.apply)
        );
    }
}
