//! `[reporting]` in `agent.toml`: journal bound, heartbeat and upload timing.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::journal::{DEFAULT_MAX_BYTES, MIN_MAX_BYTES};

/// Default time between heartbeats.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(3600);
/// Default time between upload rounds (an attestation pass also starts one).
pub const DEFAULT_UPLOAD_INTERVAL: Duration = Duration::from_secs(60);
/// Largest journal bound accepted (1 GiB).
pub const MAX_JOURNAL_BYTES: u64 = 1 << 30;
/// Longest heartbeat or upload interval accepted (one day).
const MAX_INTERVAL_SECS: u64 = 86_400;

/// The `[reporting]` table as written.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReportingFile {
    journal_max_bytes: Option<u64>,
    heartbeat_interval_secs: Option<u64>,
    upload_interval_secs: Option<u64>,
    metrics_listen: Option<String>,
}

/// Failure reporting settings, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReportingConfig {
    /// Bound on `journal/journal.log`; the oldest records go when it is full.
    pub journal_max_bytes: u64,
    /// Time between heartbeat records.
    pub heartbeat_interval: Duration,
    /// Time between upload rounds while records are pending; failed rounds
    /// back off from 1 s, doubling up to this interval.
    pub upload_interval: Duration,
    /// Where to serve local Prometheus metrics (`GET /metrics`); off when `None`.
    pub metrics_listen: Option<std::net::SocketAddr>,
}

impl Default for ReportingConfig {
    fn default() -> Self {
        ReportingConfig {
            journal_max_bytes: DEFAULT_MAX_BYTES,
            heartbeat_interval: DEFAULT_HEARTBEAT,
            upload_interval: DEFAULT_UPLOAD_INTERVAL,
            metrics_listen: None,
        }
    }
}

impl ReportingConfig {
    /// Checks the table (absent: defaults); the error says which key is wrong.
    pub(crate) fn from_file(file: Option<&ReportingFile>) -> Result<ReportingConfig, String> {
        let Some(file) = file else {
            return Ok(ReportingConfig::default());
        };
        let mut config = ReportingConfig::default();
        if let Some(bytes) = file.journal_max_bytes {
            if !(MIN_MAX_BYTES..=MAX_JOURNAL_BYTES).contains(&bytes) {
                return Err(format!(
                    "reporting.journal_max_bytes must be between {MIN_MAX_BYTES} and {MAX_JOURNAL_BYTES}"
                ));
            }
            config.journal_max_bytes = bytes;
        }
        let interval = |value: Option<u64>, key: &str, default: Duration| match value {
            None => Ok(default),
            Some(secs) if (1..=MAX_INTERVAL_SECS).contains(&secs) => Ok(Duration::from_secs(secs)),
            Some(_) => Err(format!(
                "reporting.{key} must be between 1 and {MAX_INTERVAL_SECS} seconds"
            )),
        };
        config.heartbeat_interval = interval(
            file.heartbeat_interval_secs,
            "heartbeat_interval_secs",
            DEFAULT_HEARTBEAT,
        )?;
        config.upload_interval = interval(
            file.upload_interval_secs,
            "upload_interval_secs",
            DEFAULT_UPLOAD_INTERVAL,
        )?;
        if let Some(addr) = &file.metrics_listen {
            config.metrics_listen = Some(addr.parse().map_err(|_| {
                format!(
                    "reporting.metrics_listen {addr:?} is not an address such as 127.0.0.1:9464"
                )
            })?);
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn defaults_and_bounds() {
        assert_eq!(
            ReportingConfig::from_file(None).unwrap(),
            ReportingConfig::default()
        );
        let parse = |text: &str| {
            let file: ReportingFile = toml::from_str(text).unwrap();
            ReportingConfig::from_file(Some(&file))
        };
        let c = parse("journal_max_bytes = 100000\nheartbeat_interval_secs = 5").unwrap();
        assert_eq!(c.journal_max_bytes, 100_000);
        assert_eq!(c.heartbeat_interval, Duration::from_secs(5));
        assert_eq!(c.upload_interval, DEFAULT_UPLOAD_INTERVAL);
        assert!(parse("journal_max_bytes = 10")
            .unwrap_err()
            .contains("journal_max_bytes"));
        assert!(parse("upload_interval_secs = 0")
            .unwrap_err()
            .contains("upload_interval_secs"));
        assert!(toml::from_str::<ReportingFile>("bogus = 1").is_err());
        let m = parse("metrics_listen = \"127.0.0.1:9464\"").unwrap();
        assert_eq!(m.metrics_listen, Some("127.0.0.1:9464".parse().unwrap()));
        assert!(parse("metrics_listen = \"nowhere\"")
            .unwrap_err()
            .contains("metrics_listen"));
    }
}
