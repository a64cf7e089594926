//! Verification throughput of a 64 MiB image package, next to OpenSSL's
//! SHA-256 on the same machine in the same run.
//!
//! Run: `cargo bench -p sevenfold-core --bench package_verify`
//!
//! Verifying a package is one SHA-256 pass over it plus one signature check,
//! so the ceiling is the machine's SHA-256 rate; `openssl speed -evp sha256`
//! (16 KiB blocks) measures that ceiling.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use sevenfold_core::manifest::AppManifest;
use sevenfold_core::package::{write_package, Limits, TrustedKeys, UnverifiedPackage};
use sevenfold_rot::{KeyAlgorithm, SoftwareKey};

const SIZE: usize = 64 << 20;

const MANIFEST: &[u8] = br#"{"SchemaVersion":1,"Name":"bench","ComponentId":"0b0a7a2e-3c1d-4f8e-9a6b-5d4c3b2a1f0e","Version":"1.0.0","SecurityVersion":1,"EntryPoint":"bench.wasm"}"#;

fn fixture(alg: KeyAlgorithm) -> (Vec<u8>, TrustedKeys) {
    let (key, _) = SoftwareKey::generate(alg).unwrap();
    let manifest = AppManifest::from_json(MANIFEST).unwrap();
    // Incompressible-looking payload; content does not affect SHA-256 speed.
    let mut payload = vec![0u8; SIZE];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for chunk in payload.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        for (d, s) in chunk.iter_mut().zip(x.to_le_bytes()) {
            *d = s;
        }
    }
    let bytes = write_package(&manifest, &payload, &key).unwrap();
    let trusted = std::iter::once(key.public_key().clone()).collect();
    (bytes, trusted)
}

fn verify(bytes: &[u8], trusted: &TrustedKeys) {
    UnverifiedPackage::parse(bytes, &Limits::default())
        .unwrap()
        .verify(trusted)
        .unwrap();
}

/// Best-of-N wall-clock rate in MB/s (10^6 bytes), for the summary line.
fn rate(bytes: &[u8], trusted: &TrustedKeys) -> f64 {
    let mut best = Duration::MAX;
    for _ in 0..8 {
        let start = Instant::now();
        verify(bytes, trusted);
        best = best.min(start.elapsed());
    }
    bytes.len() as f64 / best.as_secs_f64() / 1e6
}

/// `openssl speed -evp sha256` at 16 KiB blocks, in MB/s; None without openssl.
fn openssl_sha256() -> Option<f64> {
    let out = Command::new("openssl")
        .args([
            "speed", "-evp", "sha256", "-bytes", "16384", "-seconds", "3",
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // Last line: "sha256   1322769.07k" (thousands of bytes per second).
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with("sha256"))?;
    let kbytes: f64 = line
        .split_whitespace()
        .last()?
        .trim_end_matches('k')
        .parse()
        .ok()?;
    Some(kbytes * 1000.0 / 1e6)
}

fn main() {
    let mut criterion = Criterion::default()
        .sample_size(10)
        .measurement_time(Duration::from_secs(8))
        .configure_from_args();
    let mut group = criterion.benchmark_group("package_verify_64MiB");
    group.throughput(Throughput::Bytes(SIZE as u64));
    let mut summary = Vec::new();
    for alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Ed25519] {
        let (bytes, trusted) = fixture(alg);
        group.bench_function(alg.name(), |b| b.iter(|| verify(&bytes, &trusted)));
        summary.push((alg, rate(&bytes, &trusted)));
    }
    group.finish();
    criterion.final_summary();

    let baseline = openssl_sha256();
    println!("\n== summary (MB = 10^6 bytes)");
    for (alg, mbps) in summary {
        match baseline {
            Some(base) => println!(
                "verify 64 MiB package ({alg}): {mbps:.0} MB/s = {:.0}% of openssl sha256 ({base:.0} MB/s)",
                100.0 * mbps / base
            ),
            None => println!("verify 64 MiB package ({alg}): {mbps:.0} MB/s (openssl not found for the baseline)"),
        }
    }
}
