//! Allocates memory without bound.
fn main() {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block = vec![0u8; 256 * 1024];
        block[0] = 1;
        hoard.push(block);
        println!("hostile-hog: holding {} KiB", hoard.len() * 256);
    }
}
