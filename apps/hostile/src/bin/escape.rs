//! Tries to open files outside its storage.
fn main() {
    for path in ["/etc/passwd", "/data/../../../../etc/passwd", "/data/../secret.txt", "../etc/passwd"] {
        match std::fs::read(path) {
            Ok(bytes) => println!("hostile-escape: READ {path} ({} bytes)", bytes.len()),
            Err(e) => println!("hostile-escape: {path}: {e}"),
        }
    }
}
