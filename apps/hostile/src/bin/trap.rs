//! Traps: an out-of-bounds index panics, and `panic = "abort"` makes that a
//! wasm `unreachable` trap the host reports with the wasm backtrace.
#[inline(never)]
fn read_sensor(values: &[u32], index: usize) -> u32 {
    values[std::hint::black_box(index)]
}

fn main() {
    println!("hostile-trap: about to fail");
    let values = [1, 2, 3];
    println!("{}", read_sensor(&values, 7));
}
