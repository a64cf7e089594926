// The CPU-bound kernel of the compartment benchmark, compiled both into the
// `bench-cpu` app (wasm32-wasip1) and natively into the benchmark binary
// (`include!`d), so the two timings are of the same Rust code.

/// Counts primes below `limit` with a sieve, then mixes the result into a
/// hash over `rounds` rounds of generated data. Returns a checksum so the
/// optimiser cannot drop the work.
pub fn kernel(limit: usize, rounds: u32) -> u64 {
    let mut sieve = vec![true; limit.max(2)];
    sieve[0] = false;
    sieve[1] = false;
    let mut i = 2;
    while i * i < limit {
        if sieve[i] {
            let mut j = i * i;
            while j < limit {
                sieve[j] = false;
                j += i;
            }
        }
        i += 1;
    }
    let primes = sieve.iter().filter(|p| **p).count() as u64;
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325 ^ primes;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..rounds {
        for _ in 0..1024 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            hash = (hash ^ (x & 0xff)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}
