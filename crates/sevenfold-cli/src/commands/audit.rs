//! `sevenfold audit list|verify`.

use std::process::ExitCode;

use sevenfold_core::api::{AuditPage, AuditVerifyReport};

use crate::cli::{AuditArgs, AuditCommand, OutputMode};
use crate::client::Client;
use crate::output::{emit, success, table, Render};

/// Largest page the server serves.
const MAX_PAGE: u32 = 1000;

impl Render for AuditPage {
    fn human(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .entries
            .iter()
            .map(|e| {
                vec![
                    e.seq.to_string(),
                    e.at.clone(),
                    e.actor.clone(),
                    e.action.clone(),
                    e.target.clone(),
                    e.outcome.clone(),
                    e.source.clone(),
                ]
            })
            .collect();
        let mut text = table(
            &[
                "SEQ", "AT", "ACTOR", "ACTION", "TARGET", "OUTCOME", "SOURCE",
            ],
            &rows,
            "No audit entries match.",
        );
        if let Some(next) = self.next {
            text.push_str(&format!("More: pass --after {next}.\n"));
        }
        text
    }
}

impl Render for AuditVerifyReport {
    fn human(&self) -> String {
        match (self.intact, self.first_broken_seq) {
            (true, _) => format!(
                "Audit chain intact: {} entries checked.\n",
                self.entries
            ),
            (false, seq) => format!(
                "Audit chain BROKEN at entry {}: {}\n({} entries checked; entries from there on cannot be trusted.)\n",
                seq.map_or_else(|| "?".to_owned(), |s| s.to_string()),
                self.reason.as_deref().unwrap_or("no reason given"),
                self.entries
            ),
        }
    }
}

pub(crate) async fn run(mode: OutputMode, args: AuditArgs) -> anyhow::Result<ExitCode> {
    let client = Client::connect(&args.conn, &args.tenant)?;
    match args.command {
        AuditCommand::List {
            since,
            actor,
            limit,
            after,
        } => {
            if let Some(since) = &since {
                if time::OffsetDateTime::parse(
                    since,
                    &time::format_description::well_known::Rfc3339,
                )
                .is_err()
                {
                    anyhow::bail!(
                        "--since {since:?} is not an RFC 3339 time; use e.g. 2025-01-31T00:00:00Z"
                    );
                }
            }
            let tenant = client.tenant_id().await?;
            let mut page = AuditPage {
                entries: Vec::new(),
                next: after,
            };
            // Page until `limit` entries or the end.
            loop {
                let wanted =
                    limit.saturating_sub(u32::try_from(page.entries.len()).unwrap_or(u32::MAX));
                if wanted == 0 {
                    break;
                }
                let mut query = vec![("limit", wanted.min(MAX_PAGE).to_string())];
                if let Some(since) = &since {
                    query.push(("since", since.clone()));
                }
                if let Some(actor) = &actor {
                    query.push(("actor", actor.clone()));
                }
                if let Some(after) = page.next {
                    query.push(("after", after.to_string()));
                }
                let got: AuditPage = client.get(&["tenants", &tenant, "audit"], &query).await?;
                let empty = got.entries.is_empty();
                page.entries.extend(got.entries);
                page.next = got.next;
                if page.next.is_none() || empty {
                    break;
                }
            }
            success(mode, &page)
        }
        AuditCommand::Verify => {
            let report: AuditVerifyReport = client.get(&["audit", "verify"], &[]).await?;
            emit(mode, &report)?;
            Ok(if report.intact {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
