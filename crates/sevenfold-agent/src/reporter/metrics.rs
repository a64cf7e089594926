//! The agent's optional local Prometheus endpoint (`[reporting]
//! metrics_listen`): `GET /metrics` in the text exposition format, for a
//! node exporter or a local scraper. Off by default; it serves counts and
//! times only, nothing secret, one short connection at a time.

use std::fmt::Write as _;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::journal::JournalStats;

/// Longest a scrape connection may take.
const CONNECTION_DEADLINE: Duration = Duration::from_secs(5);
/// Largest request head read.
const MAX_REQUEST: usize = 8 * 1024;

/// What the endpoint reports.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Facts {
    pub(crate) uptime: Duration,
    pub(crate) journal: Option<JournalStats>,
    pub(crate) uploaded_records: u64,
    pub(crate) admitted_apps: usize,
    pub(crate) boot_failures: usize,
    pub(crate) last_attestation_unix: Option<i64>,
    pub(crate) last_attestation_passed: Option<bool>,
    pub(crate) certificate_not_after_unix: Option<i64>,
}

/// The exposition text.
pub(crate) fn render(f: &Facts) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    metric(
        "sevenfold_agent_uptime_seconds",
        "gauge",
        "Seconds since the runtime started.",
        f.uptime.as_secs().to_string(),
    );
    metric(
        "sevenfold_agent_apps_admitted",
        "gauge",
        "Application images this boot verified and measured (allowed to run).",
        f.admitted_apps.to_string(),
    );
    metric(
        "sevenfold_agent_boot_failures",
        "gauge",
        "Images or keys this boot refused.",
        f.boot_failures.to_string(),
    );
    if let Some(j) = &f.journal {
        metric(
            "sevenfold_agent_journal_bytes",
            "gauge",
            "Size of the failure journal.",
            j.bytes.to_string(),
        );
        metric(
            "sevenfold_agent_journal_pending_records",
            "gauge",
            "Journal records not yet delivered to the service.",
            j.pending.to_string(),
        );
        metric(
            "sevenfold_agent_journal_dropped_records_total",
            "counter",
            "Undelivered records dropped because the journal was full.",
            j.dropped.to_string(),
        );
    }
    metric(
        "sevenfold_agent_reports_uploaded_total",
        "counter",
        "Journal records the service acknowledged.",
        f.uploaded_records.to_string(),
    );
    if let Some(at) = f.last_attestation_unix {
        metric(
            "sevenfold_agent_last_attestation_timestamp_seconds",
            "gauge",
            "When the last attestation verdict arrived.",
            at.to_string(),
        );
    }
    if let Some(passed) = f.last_attestation_passed {
        metric(
            "sevenfold_agent_last_attestation_passed",
            "gauge",
            "1 if the last attestation verdict was pass, 0 if fail.",
            u8::from(passed).to_string(),
        );
    }
    if let Some(at) = f.certificate_not_after_unix {
        metric(
            "sevenfold_agent_certificate_expiry_timestamp_seconds",
            "gauge",
            "When the device certificate expires.",
            at.to_string(),
        );
    }
    out
}

/// Answers one connection: `GET /metrics` gets `body()`, anything else 404.
pub(crate) async fn answer(
    mut stream: tokio::net::TcpStream,
    body: impl FnOnce() -> String,
) -> std::io::Result<()> {
    let work = async {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await?;
            if n == 0 || head.len() + n > MAX_REQUEST {
                return Ok(());
            }
            head.extend_from_slice(buf.get(..n).unwrap_or_default());
        }
        let response = if head.starts_with(b"GET /metrics ") {
            let body = body();
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
        } else {
            "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_owned()
        };
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await
    };
    match tokio::time::timeout(CONNECTION_DEADLINE, work).await {
        Ok(result) => result,
        Err(_) => Ok(()),
    }
}

/// Unix seconds of an RFC 3339 time.
pub(crate) fn unix(text: Option<&str>) -> Option<i64> {
    let t =
        time::OffsetDateTime::parse(text?, &time::format_description::well_known::Rfc3339).ok()?;
    Some(t.unix_timestamp())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn exposition_has_help_type_and_value_lines() {
        let text = render(&Facts {
            uptime: Duration::from_secs(42),
            journal: Some(JournalStats {
                bytes: 100,
                pending: 3,
                dropped: 1,
                discarded_tail_bytes: 0,
            }),
            uploaded_records: 7,
            admitted_apps: 2,
            boot_failures: 0,
            last_attestation_unix: unix(Some("2026-01-01T00:00:00Z")),
            last_attestation_passed: Some(true),
            certificate_not_after_unix: None,
        });
        for line in [
            "sevenfold_agent_uptime_seconds 42",
            "sevenfold_agent_journal_pending_records 3",
            "sevenfold_agent_journal_dropped_records_total 1",
            "sevenfold_agent_reports_uploaded_total 7",
            "sevenfold_agent_apps_admitted 2",
            "sevenfold_agent_last_attestation_timestamp_seconds 1767225600",
            "sevenfold_agent_last_attestation_passed 1",
            "# TYPE sevenfold_agent_journal_dropped_records_total counter",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
        assert!(!text.contains("certificate_expiry"));
        assert_eq!(unix(Some("not a time")), None);
    }
}
