//! Spins forever without ever calling the host.
fn main() {
    println!("hostile-spin: spinning");
    let mut x: u64 = 1;
    loop {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}
