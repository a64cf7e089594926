//! Quote creation and verification: the `tpm` backend on swtpm next to the
//! `soft` backend, and the verifier's rate (what the Security Service does
//! per attestation) on one core; and what the TPM-resident TLS key costs a
//! device per TLS handshake (one signature).
//!
//! ```text
//! cargo run --release -p sevenfold-rot --features tpm --example quote_bench [QUOTES]
//! ```
//!
//! Needs swtpm and swtpm-tools. Prints one line per measurement. With
//! `QUOTE_BENCH_OUT=DIR` it also writes the TPM quotes in tpm2-tools formats
//! (`ak.pem`, `N.msg`, `N.sig`, `N.pcrs`, `N.nonce`) for
//! `examples/keylime_checkquote.py`, which times Keylime's own check on them.

use std::time::{Duration, Instant};

use sevenfold_rot::soft::SoftRoot;
use sevenfold_rot::tpm::simulator::Swtpm;
use sevenfold_rot::tpm::TpmRoot;
use sevenfold_rot::{
    Digest, Quote, RegisterValues, RootOfTrust, APPLICATION_REGISTER, RUNTIME_REGISTER,
};

const SELECTION: [sevenfold_rot::RegisterIndex; 2] = [RUNTIME_REGISTER, APPLICATION_REGISTER];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let count: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(200);
    let dir = std::env::temp_dir().join(format!("sevenfold-quote-bench-{}", std::process::id()));
    let soft = SoftRoot::create(&dir.join("soft"))?;
    let tpm = Swtpm::start()?;
    let hard = TpmRoot::create(&dir.join("tpm"), &tpm.tcti())?;
    for rot in [&soft as &dyn RootOfTrust, &hard] {
        rot.extend(RUNTIME_REGISTER, &Digest::of(b"runtime"))?;
        rot.extend(APPLICATION_REGISTER, &Digest::of(b"app"))?;
    }
    println!("quotes per backend: {count} (nonce 32 bytes, PCRs 14 and 15)");
    for rot in [&soft as &dyn RootOfTrust, &hard] {
        let quotes = create(rot, count)?;
        verify(rot, &quotes)?;
        if let (Some(out), "tpm") = (std::env::var_os("QUOTE_BENCH_OUT"), rot.backend()) {
            export(std::path::Path::new(&out), rot, &quotes)?;
        }
    }
    raw_ecdsa(&soft)?;
    tls_signatures(&hard, count)?;
    drop(hard);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

type Made = Vec<([u8; 32], Quote, RegisterValues)>;

fn create(rot: &dyn RootOfTrust, count: usize) -> Result<Made, Box<dyn std::error::Error>> {
    let mut made = Vec::with_capacity(count);
    let mut times = Vec::with_capacity(count);
    for i in 0..count {
        // ASCII, so Keylime (which takes the nonce as a string) checks the same quotes.
        let mut nonce = [0u8; 32];
        nonce.copy_from_slice(format!("{i:032}").as_bytes());
        let start = Instant::now();
        let (quote, values) = rot.quote(&nonce, &SELECTION)?;
        times.push(start.elapsed());
        made.push((nonce, quote, values));
    }
    print_latency(&format!("{:>4} create", rot.backend()), times, "per quote");
    Ok(made)
}

/// Nanoseconds this thread has run on a CPU (Linux `schedstat`), so the
/// rate is per CPU-second even on a busy machine.
fn thread_cpu() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .map(Duration::from_nanos)
        .unwrap_or_default()
}

/// Verifies every quote repeatedly for about a CPU-second on this thread.
fn verify(rot: &dyn RootOfTrust, quotes: &Made) -> Result<(), Box<dyn std::error::Error>> {
    let key = rot.device_public_key();
    let start = thread_cpu();
    let mut done = 0u64;
    while thread_cpu() - start < Duration::from_secs(1) {
        for (nonce, quote, values) in quotes {
            // As the service gets it: decoded from transport, then verified.
            Quote::from_bytes(&quote.to_bytes())?.verify(key, nonce, values)?;
            done += 1;
        }
    }
    let elapsed = thread_cpu() - start;
    println!(
        "{:>4} verify: {:.1} µs per quote, {:.0} quotes per CPU-second",
        rot.backend(),
        elapsed.as_secs_f64() * 1e6 / done as f64,
        done as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}

/// A device's cost per mutual-TLS handshake with its TLS key in the TPM:
/// one `CertificateVerify` signature (load the key, `TPM2_Sign`, flush).
fn tls_signatures(rot: &dyn RootOfTrust, count: usize) -> Result<(), Box<dyn std::error::Error>> {
    let key = rot
        .resident_tls_key()
        .ok_or("this root of trust holds no TLS key")?;
    let transcript = [7u8; 130];
    let mut times = Vec::with_capacity(count);
    for _ in 0..count {
        let start = Instant::now();
        let signature = key.sign_tls(&transcript)?;
        times.push(start.elapsed());
        key.tls_public_key().verify(&transcript, &signature)?;
    }
    let what = format!("{:>4} TLS key signature", rot.backend());
    print_latency(&what, times, "per handshake");
    Ok(())
}

/// Prints the median and p99 of `times`.
fn print_latency(what: &str, mut times: Vec<Duration>, unit: &str) {
    times.sort();
    let count = times.len();
    println!(
        "{what}: median {:?}, p99 {:?} {unit}",
        times.get(count / 2).copied().unwrap_or_default(),
        times.get(count * 99 / 100).copied().unwrap_or_default(),
    );
}

/// The floor: one bare ECDSA P-256 verify of a signature over ~130 bytes.
fn raw_ecdsa(rot: &dyn RootOfTrust) -> Result<(), Box<dyn std::error::Error>> {
    let message = [7u8; 130];
    let signature = rot.sign(&message)?;
    let key = rot.device_public_key();
    let start = thread_cpu();
    let mut done = 0u64;
    while thread_cpu() - start < Duration::from_secs(1) {
        key.verify(&message, &signature)?;
        done += 1;
    }
    let elapsed = thread_cpu() - start;
    println!(
        "bare ECDSA P-256 verify: {:.1} µs, {:.0} per CPU-second",
        elapsed.as_secs_f64() * 1e6 / done as f64,
        done as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}

/// Writes the quotes as tpm2-tools does: the `TPMS_ATTEST` (`-m`), the
/// `TPMT_SIGNATURE` (`-s`), and the PCR values in tpm2-tools' in-memory
/// layout (`-o`: `TPML_PCR_SELECTION` then `TPML_DIGEST`s, little-endian).
fn export(dir: &std::path::Path, rot: &dyn RootOfTrust, quotes: &Made) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("ak.pem"), rot.device_public_key().to_pem())?;
    for (i, (nonce, quote, values)) in quotes.iter().enumerate() {
        std::fs::write(dir.join(format!("{i}.msg")), quote.body())?;
        std::fs::write(dir.join(format!("{i}.sig")), quote.signature())?;
        std::fs::write(dir.join(format!("{i}.nonce")), nonce)?;
        let mut pcrs = 1u32.to_le_bytes().to_vec();
        let mut select = [0u8; 3];
        for (index, _) in values.iter() {
            let bit = index.get() as usize;
            if let Some(byte) = select.get_mut(bit / 8) {
                *byte |= 1 << (bit % 8);
            }
        }
        for bank in 0..16 {
            if bank == 0 {
                pcrs.extend_from_slice(&0x000bu16.to_le_bytes());
                pcrs.push(3);
                pcrs.extend_from_slice(&select);
            } else {
                pcrs.extend_from_slice(&[0; 6]);
            }
            pcrs.extend_from_slice(&[0; 2]);
        }
        pcrs.extend_from_slice(&1u32.to_le_bytes());
        pcrs.extend_from_slice(&(values.len() as u32).to_le_bytes());
        let mut slots = values.iter();
        for _ in 0..8 {
            match slots.next() {
                Some((_, value)) => {
                    pcrs.extend_from_slice(&32u16.to_le_bytes());
                    pcrs.extend_from_slice(value.as_bytes());
                    pcrs.extend_from_slice(&[0; 32]);
                }
                None => pcrs.extend_from_slice(&[0; 66]),
            }
        }
        std::fs::write(dir.join(format!("{i}.pcrs")), pcrs)?;
    }
    Ok(())
}
