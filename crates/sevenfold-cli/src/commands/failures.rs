//! `sevenfold error-report`, `sevenfold problem …`, `sevenfold webhook …`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;

use reqwest::Method;
use serde::Serialize;
use sevenfold_core::report::{
    CreateWebhook, ErrorReportPage, ErrorReportRow, FailureSettings, ProblemDetail, ProblemPage,
    ResolveProblem, WebhookCreated, WebhookInfo, ERROR_REPORT_EXPORT, OUTPUT_TAIL_DETAIL,
};

use crate::cli::{
    ErrorReportArgs, OutputMode, ProblemArgs, ProblemCommand, ReportFormat, WebhookArgs,
    WebhookCommand,
};
use crate::client::Client;
use crate::output::{emit, fields, or_dash, success, table, Render};

/// Rows asked for per request (the server serves up to 10 000).
const REPORT_PAGE: u64 = 1000;
/// Problems asked for per request.
const PROBLEM_PAGE: u32 = 1000;

/// The report as CSV with a header row.
fn to_csv(rows: &[ErrorReportRow]) -> String {
    let mut out = String::from(ErrorReportRow::CSV_HEADER);
    for row in rows {
        row.write_csv(&mut out);
    }
    out
}

impl Render for ErrorReportPage {
    fn human(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| {
                vec![
                    r.at.clone(),
                    short(&r.device_id),
                    r.component_id.clone(),
                    or_dash(
                        Some(&r.component_version)
                            .filter(|v| !v.is_empty())
                            .map(String::as_str),
                    ),
                    r.kind.clone(),
                    r.reason.clone(),
                    or_dash(r.problem_id.as_deref()),
                ]
            })
            .collect();
        table(
            &[
                "AT",
                "DEVICE",
                "COMPONENT",
                "VERSION",
                "KIND",
                "REASON",
                "PROBLEM",
            ],
            &rows,
            "No failures reported in this period.",
        )
    }
}

fn short(device_id: &str) -> String {
    device_id.chars().take(16).collect()
}

pub(crate) async fn error_report(
    mode: OutputMode,
    args: ErrorReportArgs,
) -> anyhow::Result<ExitCode> {
    let client = Client::connect(&args.conn, &args.tenant)?;
    let tenant = client.tenant_id().await?;
    let group = match &args.group {
        Some(g) => Some(client.resolve_group(&tenant, g).await?.id),
        None => None,
    };
    if args.limit.is_none() && args.format != ReportFormat::Table {
        return export_report(&client, &tenant, group.as_deref(), &args).await;
    }
    let mut report = ErrorReportPage {
        rows: Vec::new(),
        next_cursor: None,
    };
    let mut cursor: Option<String> = None;
    loop {
        let have = report.rows.len() as u64;
        let wanted = args
            .limit
            .map_or(REPORT_PAGE, |l| l.saturating_sub(have).min(REPORT_PAGE));
        if wanted == 0 {
            break;
        }
        let mut query = vec![
            ("days", args.days.to_string()),
            ("limit", wanted.to_string()),
        ];
        if let Some(g) = &group {
            query.push(("group", g.clone()));
        }
        if let Some(c) = &cursor {
            query.push(("cursor", c.clone()));
        }
        let page: ErrorReportPage = client
            .get(&["tenants", &tenant, "error-report"], &query)
            .await?;
        let empty = page.rows.is_empty();
        report.rows.extend(page.rows);
        cursor = page.next_cursor;
        if cursor.is_none() || empty {
            break;
        }
    }
    match (args.format, mode) {
        (ReportFormat::Csv, _) => print!("{}", to_csv(&report.rows)),
        (ReportFormat::Json, _) | (ReportFormat::Table, OutputMode::Json) => {
            println!("{}", serde_json::to_string_pretty(&report)?)
        }
        (ReportFormat::Table, OutputMode::Text) => emit(mode, &report)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The whole report, streamed from the server's export to standard output
/// as it arrives: CSV as sent, JSON as the `{"rows": […]}` the paged form
/// prints, built line by line from the server's NDJSON. A download cut
/// short is an error, never a report that looks complete.
async fn export_report(
    client: &Client,
    tenant: &str,
    group: Option<&str>,
    args: &ErrorReportArgs,
) -> anyhow::Result<ExitCode> {
    let csv = args.format == ReportFormat::Csv;
    let mut segments = vec!["tenants", tenant];
    segments.extend(ERROR_REPORT_EXPORT.split('/'));
    let mut url = client.url(&segments)?;
    url.query_pairs_mut()
        .append_pair("days", &args.days.to_string())
        .append_pair("format", if csv { "csv" } else { "ndjson" });
    if let Some(group) = group {
        url.query_pairs_mut().append_pair("group", group);
    }
    let mut response = client
        .send(client.request(Method::GET, url))
        .await
        .context("the error report export")?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut pending: Vec<u8> = Vec::new();
    let mut rows = 0u64;
    if !csv {
        out.write_all(b"{\"rows\": [")?;
    }
    while let Some(chunk) = response
        .chunk()
        .await
        .context("the error report download was cut short")?
    {
        if csv {
            out.write_all(&chunk)?;
            continue;
        }
        pending.extend_from_slice(&chunk);
        let complete = pending
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        let lines: Vec<u8> = pending.drain(..complete).collect();
        for line in lines.split(|b| *b == b'\n') {
            if line.is_empty() {
                continue;
            }
            // Each line must be a row: the output is checked, not relayed.
            let row: ErrorReportRow = serde_json::from_slice(line)
                .context("the server sent an error report line that is not a row")?;
            out.write_all(if rows == 0 { b"\n  " } else { b",\n  " })?;
            serde_json::to_writer(&mut out, &row)?;
            rows += 1;
        }
    }
    anyhow::ensure!(
        pending.is_empty(),
        "the error report download ended inside a row"
    );
    if !csv {
        out.write_all(b"\n], \"next_cursor\": null}\n")?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

impl Render for ProblemPage {
    fn human(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .problems
            .iter()
            .map(|p| {
                vec![
                    p.id.clone(),
                    p.status.clone(),
                    p.count.to_string(),
                    p.devices.to_string(),
                    p.component_id.clone(),
                    p.kind.clone(),
                    p.title.clone(),
                    p.last_seen.clone(),
                ]
            })
            .collect();
        table(
            &[
                "ID",
                "STATUS",
                "COUNT",
                "DEVICES",
                "COMPONENT",
                "KIND",
                "TITLE",
                "LAST SEEN",
            ],
            &rows,
            "No problems.",
        )
    }
}

impl Render for ProblemDetail {
    fn human(&self) -> String {
        let p = &self.problem;
        let mut text = fields(&[
            ("ID", p.id.clone()),
            ("Status", p.status.clone()),
            ("Component", p.component_id.clone()),
            ("Kind", p.kind.clone()),
            ("Title", p.title.clone()),
            ("Count", p.count.to_string()),
            ("Devices", p.devices.to_string()),
            ("First seen", p.first_seen.clone()),
            ("Last seen", p.last_seen.clone()),
            ("Versions", self.versions.join(", ")),
            ("Resolved in", or_dash(self.resolved_version.as_deref())),
            ("Signature", p.signature.clone()),
        ]);
        text.push_str("Affected devices:\n");
        for d in &self.device_ids {
            text.push_str(&format!("  {d}\n"));
        }
        if let Some(latest) = &self.latest {
            text.push_str(&format!(
                "Latest occurrence: {} on {} (version {})\n  {}\n",
                latest.at, latest.device_id, latest.component_version, latest.reason
            ));
            for frame in &latest.frames {
                text.push_str(&format!("    at {frame}\n"));
            }
            for (key, value) in &latest.details {
                if key == OUTPUT_TAIL_DETAIL {
                    text.push_str("  Output (tail):\n");
                    for line in value.lines() {
                        text.push_str(&format!("    | {line}\n"));
                    }
                } else {
                    text.push_str(&format!("  {key}: {value}\n"));
                }
            }
        }
        text
    }
}

impl Render for FailureSettings {
    fn human(&self) -> String {
        format!(
            "Failure reports are kept for {} days.\n",
            self.retention_days
        )
    }
}

pub(crate) async fn problem(mode: OutputMode, args: ProblemArgs) -> anyhow::Result<ExitCode> {
    let client = Client::connect(&args.conn, &args.tenant)?;
    let tenant = client.tenant_id().await?;
    match args.command {
        ProblemCommand::List { status, limit } => {
            let mut all = ProblemPage {
                problems: Vec::new(),
                next_cursor: None,
            };
            let mut cursor: Option<String> = None;
            loop {
                let have = u32::try_from(all.problems.len()).unwrap_or(u32::MAX);
                let wanted = limit.saturating_sub(have).min(PROBLEM_PAGE);
                if wanted == 0 {
                    break;
                }
                let mut query = vec![("limit", wanted.to_string())];
                if let Some(s) = &status {
                    query.push(("status", s.clone()));
                }
                if let Some(c) = &cursor {
                    query.push(("cursor", c.clone()));
                }
                let page: ProblemPage = client
                    .get(&["tenants", &tenant, "problems"], &query)
                    .await?;
                let empty = page.problems.is_empty();
                all.problems.extend(page.problems);
                cursor = page.next_cursor;
                if cursor.is_none() || empty {
                    break;
                }
            }
            all.next_cursor = cursor;
            success(mode, &all)
        }
        ProblemCommand::Show { id } => {
            let detail: ProblemDetail = client
                .get(&["tenants", &tenant, "problems", &id], &[])
                .await?;
            success(mode, &detail)
        }
        ProblemCommand::Resolve { id, fixed_in } => {
            let detail: ProblemDetail = client
                .call(
                    Method::POST,
                    &["tenants", &tenant, "problems", &id, "resolve"],
                    Some(&ResolveProblem { fixed_in }),
                )
                .await?;
            success(mode, &detail)
        }
        ProblemCommand::Retention { set } => {
            let settings: FailureSettings = match set {
                Some(days) => {
                    client
                        .call(
                            Method::PUT,
                            &["tenants", &tenant, "failure-settings"],
                            Some(&FailureSettings {
                                retention_days: days,
                            }),
                        )
                        .await?
                }
                None => {
                    client
                        .get(&["tenants", &tenant, "failure-settings"], &[])
                        .await?
                }
            };
            success(mode, &settings)
        }
    }
}

/// `webhook list`.
#[derive(Serialize)]
#[serde(transparent)]
struct WebhookList(Vec<WebhookInfo>);

impl Render for WebhookList {
    fn human(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .0
            .iter()
            .map(|w| {
                vec![
                    w.id.clone(),
                    w.url.clone(),
                    w.events.join(","),
                    w.created_at.clone(),
                ]
            })
            .collect();
        table(&["ID", "URL", "EVENTS", "CREATED"], &rows, "No webhooks.")
    }
}

impl Render for WebhookCreated {
    fn human(&self) -> String {
        let mut text = fields(&[
            ("ID", self.webhook.id.clone()),
            ("URL", self.webhook.url.clone()),
            ("Events", self.webhook.events.join(",")),
            ("Secret", self.secret.clone()),
        ]);
        text.push_str(
            "Store the secret now; it is not shown again. Each notification carries \
             X-Sevenfold-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.\" + body>.\n",
        );
        text
    }
}

/// `webhook remove`.
#[derive(Serialize)]
struct WebhookRemoved {
    id: String,
    removed: bool,
}

impl Render for WebhookRemoved {
    fn human(&self) -> String {
        format!("Removed webhook {}.\n", self.id)
    }
}

pub(crate) async fn webhook(mode: OutputMode, args: WebhookArgs) -> anyhow::Result<ExitCode> {
    let client = Client::connect(&args.conn, &args.tenant)?;
    let tenant = client.tenant_id().await?;
    match args.command {
        WebhookCommand::Add { url, events } => {
            let created: WebhookCreated = client
                .call(
                    Method::POST,
                    &["tenants", &tenant, "webhooks"],
                    Some(&CreateWebhook { url, events }),
                )
                .await?;
            success(mode, &created)
        }
        WebhookCommand::List => {
            let hooks: Vec<WebhookInfo> =
                client.get(&["tenants", &tenant, "webhooks"], &[]).await?;
            success(mode, &WebhookList(hooks))
        }
        WebhookCommand::Remove { id } => {
            client
                .delete(&["tenants", &tenant, "webhooks", &id])
                .await?;
            success(mode, &WebhookRemoved { id, removed: true })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_has_a_header_and_quotes_what_needs_quoting() {
        let row = |reason: &str| ErrorReportRow {
            at: "t".into(),
            received_at: "r".into(),
            device_id: "d".into(),
            group_id: None,
            component_id: "c".into(),
            component_version: "1".into(),
            kind: "trap".into(),
            reason: reason.into(),
            problem_id: Some("p".into()),
            record_id: "id".into(),
        };
        let csv = to_csv(&[
            row("plain"),
            row("a,b"),
            row("say \"hi\""),
            row("two\nlines"),
        ]);
        let lines: Vec<&str> = csv.split("\r\n").collect();
        assert_eq!(lines[0], ErrorReportRow::CSV_HEADER.trim_end());
        assert_eq!(lines[1], "t,r,d,,c,1,trap,plain,p,id");
        assert_eq!(lines[2], "t,r,d,,c,1,trap,\"a,b\",p,id");
        assert_eq!(lines[3], "t,r,d,,c,1,trap,\"say \"\"hi\"\"\",p,id");
        assert_eq!(lines[4], "t,r,d,,c,1,trap,\"two\nlines\",p,id");
    }
}
