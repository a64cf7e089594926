//! Writes to its storage until the host says no space, and then some more.
use std::io::Write;

fn main() {
    let mut file = std::fs::File::create("/data/fill.bin").expect("create");
    let chunk = [0xAAu8; 1024];
    let mut written = 0usize;
    for _ in 0..4096 {
        match file.write(&chunk) {
            Ok(n) => written += n,
            Err(e) => {
                println!("hostile-fill: stopped after {written} bytes: {e} (os error {:?})", e.raw_os_error());
                // A second file is no way round the quota either.
                let other = std::fs::write("/data/more.bin", [1u8; 4096]);
                println!("hostile-fill: second file: {other:?}");
                return;
            }
        }
    }
    println!("hostile-fill: wrote {written} bytes without a limit");
}
