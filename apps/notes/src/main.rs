//! `notes`: appends one note per start to `/data/notes.txt`, its private
//! mutable storage (`MutableStorage` in the manifest; the host preopens the
//! component's own directory at `/data` and nothing else), then prints how
//! many notes it holds. The count grows across restarts and updates.

use std::io::Write;

const NOTES: &str = "/data/notes.txt";

fn main() {
    let before = std::fs::read_to_string(NOTES).map(|s| s.lines().count()).unwrap_or(0);
    let result = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(NOTES)
        .and_then(|mut f| writeln!(f, "note {}", before + 1));
    if let Err(e) = result {
        eprintln!("notes: cannot write {NOTES}: {e}");
        std::process::exit(1);
    }
    println!("notes: {} notes stored", before + 1);
}
