//! Helpers for Sevenfold's process-level benchmarks (`src/bin/*.rs`): CPU
//! time of other processes from `/proc`, latency percentiles, the
//! `openssl speed` baseline, Prometheus text, and the nginx baseline's
//! configuration.
//!
//! Everything here but [`server`] is plain parsing and arithmetic so it can
//! be unit-tested; the binaries do the I/O. [`server`] starts the service
//! and talks to it, for every binary alike.

#![forbid(unsafe_code)]

pub mod server;

use std::path::Path;
use std::time::Duration;

/// CPU time a process (or group of processes) has used, in clock ticks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTicks {
    /// User time.
    pub user: u64,
    /// System time.
    pub system: u64,
}

impl CpuTicks {
    /// User plus system time.
    pub fn total(self) -> u64 {
        self.user.saturating_add(self.system)
    }

    /// `self − earlier`, per field, never negative.
    pub fn since(self, earlier: CpuTicks) -> CpuTicks {
        CpuTicks {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }

    /// Adds `other`.
    pub fn plus(self, other: CpuTicks) -> CpuTicks {
        CpuTicks {
            user: self.user.saturating_add(other.user),
            system: self.system.saturating_add(other.system),
        }
    }

    /// Total time in seconds, given the clock-tick rate.
    pub fn seconds(self, ticks_per_second: u64) -> f64 {
        self.total() as f64 / ticks_per_second.max(1) as f64
    }
}

/// The fields of `/proc/<pid>/stat` the benchmarks use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcStat {
    /// Process ID.
    pub pid: u32,
    /// Command name (without the parentheses).
    pub comm: String,
    /// Parent process ID.
    pub ppid: u32,
    /// utime and stime: this process's own CPU time (all its threads).
    pub own: CpuTicks,
    /// cutime and cstime: CPU time of children it has waited for.
    pub children: CpuTicks,
}

/// Parses one `/proc/<pid>/stat` line (see proc(5)). The command name may
/// contain spaces and parentheses, so fields are counted from the last `)`.
pub fn parse_proc_stat(line: &str) -> Option<ProcStat> {
    let open = line.find('(')?;
    let close = line.rfind(')')?;
    let pid = line.get(..open)?.trim().parse().ok()?;
    let comm = line.get(open + 1..close)?.to_owned();
    // After ")": field 3 (state) is the first.
    let rest: Vec<&str> = line.get(close + 1..)?.split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { rest.get(n.checked_sub(3)?)?.parse().ok() };
    Some(ProcStat {
        pid,
        comm,
        ppid: u32::try_from(field(4)?).ok()?,
        own: CpuTicks {
            user: field(14)?,
            system: field(15)?,
        },
        children: CpuTicks {
            user: field(16)?,
            system: field(17)?,
        },
    })
}

/// Reads `/proc/<pid>/stat`.
pub fn proc_stat(pid: u32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_proc_stat(&text)
}

/// Every process visible in `/proc`.
pub fn all_processes() -> Vec<ProcStat> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(proc_stat)
        .collect()
}

/// CPU time of `pid` and of its live children (nginx: master + workers).
pub fn tree_cpu(pid: u32) -> CpuTicks {
    all_processes()
        .iter()
        .filter(|p| p.pid == pid || p.ppid == pid)
        .fold(CpuTicks::default(), |sum, p| sum.plus(p.own))
}

/// CPU time of every process named `comm` (PostgreSQL: the postmaster and
/// its backends), including children they have reaped, so backends that
/// ended between two readings still count.
pub fn cpu_of_processes_named(comm: &str) -> CpuTicks {
    all_processes()
        .iter()
        .filter(|p| p.comm == comm)
        .fold(CpuTicks::default(), |sum, p| {
            sum.plus(p.own).plus(p.children)
        })
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux if that fails).
pub fn ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// Busy and total jiffies of the whole machine (first line of `/proc/stat`).
pub fn machine_jiffies() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    parse_machine_jiffies(text.lines().next()?)
}

/// Parses the `cpu  user nice system idle iowait irq softirq steal …` line
/// into (busy, total); idle and iowait are not busy.
pub fn parse_machine_jiffies(line: &str) -> Option<(u64, u64)> {
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let values: Vec<u64> = fields.take(8).filter_map(|f| f.parse().ok()).collect();
    if values.len() < 4 {
        return None;
    }
    let total: u64 = values.iter().sum();
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

/// The `p`-th percentile (0–100) of `sorted` by nearest rank; zero if empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    let index = rank.clamp(1, sorted.len()) - 1;
    sorted.get(index).copied().unwrap_or(Duration::ZERO)
}

/// Mean of `values`; zero if empty.
pub fn mean(values: &[Duration]) -> Duration {
    if values.is_empty() {
        return Duration::ZERO;
    }
    values.iter().sum::<Duration>() / u32::try_from(values.len()).unwrap_or(u32::MAX)
}

/// Figures from `openssl speed ecdsap256 ecdhx25519`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct OpensslSpeed {
    /// ECDSA P-256 signatures per second (one core).
    pub ecdsa_p256_sign: f64,
    /// ECDSA P-256 verifications per second (one core).
    pub ecdsa_p256_verify: f64,
    /// X25519 operations per second (one core), if measured.
    pub x25519: Option<f64>,
}

impl OpensslSpeed {
    /// Parses `openssl speed` output: the `(nistp256)` row (last two numbers
    /// are sign/s and verify/s) and the `(X25519)` row (last number is op/s).
    pub fn parse(output: &str) -> Option<OpensslSpeed> {
        let last_numbers = |line: &str, n: usize| -> Option<Vec<f64>> {
            let all: Vec<f64> = line
                .split_whitespace()
                .filter_map(|w| w.parse::<f64>().ok())
                .collect();
            all.get(all.len().checked_sub(n)?..).map(<[f64]>::to_vec)
        };
        let ecdsa = output
            .lines()
            .find(|l| l.contains("ecdsa (nistp256)"))
            .and_then(|l| last_numbers(l, 2))?;
        let x25519 = output
            .lines()
            .find(|l| l.contains("ecdh (X25519)"))
            .and_then(|l| last_numbers(l, 1))
            .and_then(|v| v.first().copied());
        Some(OpensslSpeed {
            ecdsa_p256_sign: *ecdsa.first()?,
            ecdsa_p256_verify: *ecdsa.get(1)?,
            x25519,
        })
    }

    /// Attestations per second if `cores` did nothing but the minimum
    /// cryptography of one attestation: one ECDSA sign and one verify.
    pub fn attestation_ceiling(&self, cores: usize) -> f64 {
        let per_attestation = 1.0 / self.ecdsa_p256_sign + 1.0 / self.ecdsa_p256_verify;
        cores as f64 / per_attestation
    }

    /// Seconds of one core for the public-key cryptography a server does in
    /// one full TLS 1.3 handshake with client authentication, an ECDSA P-256
    /// server key and X25519 key exchange: one sign (CertificateVerify), two
    /// verifies (the client's chain and its CertificateVerify) and two X25519
    /// operations (key generation and the shared secret). `None` without an
    /// X25519 figure.
    pub fn mutual_tls_handshake_seconds(&self) -> Option<f64> {
        Some(
            1.0 / self.ecdsa_p256_sign
                + 2.0 / self.ecdsa_p256_verify
                + 2.0 / self.x25519.filter(|x| *x > 0.0)?,
        )
    }
}

/// Sum and count of one route's request-duration summary, from the
/// Prometheus text of `/metrics`, added over all methods and statuses.
pub fn route_duration(metrics: &str, route: &str) -> (f64, u64) {
    let needle = format!("route=\"{route}\"");
    let mut sum = 0.0;
    let mut count = 0;
    for line in metrics.lines() {
        if !line.contains(&needle) {
            continue;
        }
        let Some(value) = line.rsplit(' ').next() else {
            continue;
        };
        if line.starts_with("sevenfold_http_request_duration_seconds_sum{") {
            sum += value.parse::<f64>().unwrap_or(0.0);
        } else if line.starts_with("sevenfold_http_request_duration_seconds_count{") {
            count += value.parse::<f64>().map(|v| v as u64).unwrap_or(0);
        }
    }
    (sum, count)
}

/// An nginx configuration for the baseline: one worker, TLS 1.3 only,
/// client certificates required and checked against `client_ca`, no
/// session cache and no tickets (so every connection is a full handshake),
/// no access log, `200 ok` for every request, everything under `dir`.
pub fn nginx_config(dir: &Path, port: u16, cert: &Path, key: &Path, client_ca: &Path) -> String {
    let d = dir.display();
    format!(
        "worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_client_certificate {client_ca};
        ssl_verify_client on;
        ssl_verify_depth 2;
        ssl_protocols TLSv1.3;
        ssl_prefer_server_ciphers on;
        ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256;
        ssl_session_cache off;
        ssl_session_tickets off;
        keepalive_timeout 0;
        location / {{ return 200 \"ok\\n\"; }}
    }}
}}
",
        cert = cert.display(),
        key = key.display(),
        client_ca = client_ca.display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_with_spaces_in_the_name() {
        let line = "1234 (tokio (runtime) w) S 1 1234 1234 0 -1 4194560 100 0 0 0 \
                    250 75 3 4 20 0 9 0 100 1000 10 18446744073709551615";
        let stat = parse_proc_stat(line).unwrap();
        assert_eq!(stat.pid, 1234);
        assert_eq!(stat.comm, "tokio (runtime) w");
        assert_eq!(stat.ppid, 1);
        assert_eq!(
            stat.own,
            CpuTicks {
                user: 250,
                system: 75
            }
        );
        assert_eq!(stat.children, CpuTicks { user: 3, system: 4 });
        assert_eq!(stat.own.seconds(100), 3.25);
        assert!(parse_proc_stat("garbage").is_none());
    }

    #[test]
    fn own_process_is_readable() {
        let me = proc_stat(std::process::id()).unwrap();
        assert_eq!(me.pid, std::process::id());
    }

    #[test]
    fn machine_line() {
        assert_eq!(
            parse_machine_jiffies("cpu  10 1 5 100 4 0 2 0 0 0"),
            Some((18, 122))
        );
        assert_eq!(parse_machine_jiffies("cpu0 1 2 3 4"), None);
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&v, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&v, 100.0), Duration::from_millis(100));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
        assert_eq!(mean(&v), Duration::from_micros(50_500));
    }

    #[test]
    fn openssl_speed_output() {
        let out = "Doing 256 bits sign ecdsa ops for 3s: 81173 256 bits ECDSA sign ops in 3.00s\n\
                   version: 3.0.19\n\
                   \x20                             sign    verify    sign/s verify/s\n\
                   \x20256 bits ecdsa (nistp256)   0.0000s   0.0001s  27057.9   9779.1\n\
                   \x20                             op      op/s\n\
                   \x20253 bits ecdh (X25519)   0.0000s  20374.4\n";
        let speed = OpensslSpeed::parse(out).unwrap();
        assert_eq!(speed.ecdsa_p256_sign, 27057.9);
        assert_eq!(speed.ecdsa_p256_verify, 9779.1);
        assert_eq!(speed.x25519, Some(20374.4));
        let ceiling = speed.attestation_ceiling(2);
        assert!((ceiling - 14_366.0).abs() < 5.0, "{ceiling}");
        let hs = speed.mutual_tls_handshake_seconds().unwrap();
        assert!((hs * 1e6 - 339.5).abs() < 1.0, "{hs}");
        assert!(OpensslSpeed::parse("nothing").is_none());
    }

    #[test]
    fn prometheus_route_sums() {
        let text = "\
sevenfold_http_request_duration_seconds{route=\"/device/v1/attestation/nonce\",method=\"POST\",status=\"200\",quantile=\"0.5\"} 0.001
sevenfold_http_request_duration_seconds_sum{route=\"/device/v1/attestation/nonce\",method=\"POST\",status=\"200\"} 1.5
sevenfold_http_request_duration_seconds_count{route=\"/device/v1/attestation/nonce\",method=\"POST\",status=\"200\"} 1000
sevenfold_http_request_duration_seconds_sum{route=\"/device/v1/attestation/nonce\",method=\"POST\",status=\"429\"} 0.5
sevenfold_http_request_duration_seconds_count{route=\"/device/v1/attestation/nonce\",method=\"POST\",status=\"429\"} 10
sevenfold_http_request_duration_seconds_sum{route=\"/device/v1/whoami\",method=\"GET\",status=\"200\"} 9
";
        assert_eq!(
            route_duration(text, "/device/v1/attestation/nonce"),
            (2.0, 1010)
        );
        assert_eq!(route_duration(text, "/device/v1/whoami"), (9.0, 0));
    }

    #[test]
    fn nginx_config_names_the_files() {
        let c = nginx_config(
            Path::new("/tmp/x"),
            4433,
            Path::new("/tmp/x/s.pem"),
            Path::new("/tmp/x/s.key"),
            Path::new("/tmp/x/ca.pem"),
        );
        assert!(c.contains("listen 127.0.0.1:4433 ssl;"));
        assert!(c.contains("ssl_verify_client on;"));
        assert!(c.contains("ssl_session_tickets off;"));
        assert!(c.contains("return 200 \"ok\\n\";"));
    }
}
