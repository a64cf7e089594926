//! Runs the benchmark kernel once and reports how long it took inside the
//! compartment (WASI monotonic clock).
include!("../kernel.rs");

fn main() {
    let limit: usize = std::env::var("SIEVE_LIMIT").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let rounds: u32 = std::env::var("ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000);
    let start = std::time::Instant::now();
    let result = kernel(std::hint::black_box(limit), std::hint::black_box(rounds));
    let micros = start.elapsed().as_micros();
    println!("bench-cpu: result {result} in {micros} us");
}
