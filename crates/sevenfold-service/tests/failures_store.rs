#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! Failure reports in the store, on SQLite and on PostgreSQL: idempotent
//! ingest, grouping, resolve and regression, paging, retention, webhooks.

mod common;

use sevenfold_service::store::{
    AttestationRecord, NewReport, ProblemEvent, ProblemKey, ReportRow, Store, VerdictWrite,
    WebhookRecord,
};

const DAY_MS: i64 = 86_400_000;

/// The export's rows (each encoded as a JSON line and read back) and the
/// number of buffers they came in.
async fn export(store: &Store, tenant: &str, group: Option<&str>) -> (Vec<ReportRow>, usize) {
    let mut buffers = store.report_export(tenant, 0, group, |row, out| {
        out.push_str(&serde_json::to_string(&row.to_row()).unwrap());
        out.push('\n');
    });
    let (mut rows, mut count) = (Vec::new(), 0);
    while let Some(buffer) = buffers.recv().await {
        count += 1;
        for line in buffer.unwrap().lines() {
            rows.push(serde_json::from_str(line).unwrap());
        }
    }
    (rows, count)
}

fn report(device: &str, record: &str, version: &str, at: i64) -> NewReport {
    NewReport {
        device_id: device.to_owned(),
        record_id: record.to_owned(),
        at,
        component_id: "app-1".into(),
        component_version: version.into(),
        kind: "trap".into(),
        reason: "wasm trap: unreachable".into(),
        frames: "[]".into(),
        details: "{}".into(),
        problem: Some(ProblemKey {
            signature: "a".repeat(64),
            title: "wasm trap: unreachable".into(),
        }),
    }
}

/// Runs `body` on a fresh SQLite database, then on a fresh PostgreSQL one
/// (unless SEVENFOLD_SKIP_POSTGRES=1 and PostgreSQL is unreachable).
async fn each_backend<F, Fut>(body: F)
where
    F: Fn(Store) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut databases = vec![common::TestDb::sqlite()];
    databases.extend(common::TestDb::postgres().await);
    for db in databases {
        let store = Store::connect(db.url(), 5).await.unwrap();
        body(store.clone()).await;
        store.close().await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn resent_records_are_stored_once_and_grouped_across_devices() {
    each_backend(|store| async move {
        let tenant = store.create_tenant("t").await.unwrap().id;
        let now = 1_000 * DAY_MS;
        let batch: Vec<NewReport> = (0..5)
            .map(|d| report(&format!("dev{d}"), "r1", "1.0.0", now - d))
            .collect();
        let first = store
            .ingest_reports(&tenant, &batch, false, now)
            .await
            .unwrap();
        assert_eq!((first.stored, first.duplicates), (5, 0));
        assert_eq!(first.events.len(), 1);
        assert_eq!(first.events[0].0, ProblemEvent::NewProblem);
        // The same batch again (a cut connection): nothing changes.
        let again = store
            .ingest_reports(&tenant, &batch, false, now)
            .await
            .unwrap();
        assert_eq!(
            (again.stored, again.duplicates, again.events.len()),
            (0, 5, 0)
        );
        let problems = store.list_problems(&tenant, None, None, 100).await.unwrap();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].occurrences, 5);
        assert_eq!(problems[0].devices, 5);
        assert_eq!(problems[0].status, "open");
        assert_eq!(problems[0].first_seen, now - 4);
        let (_, devices, versions) = store.problem(&tenant, &problems[0].id).await.unwrap();
        assert_eq!(devices.len(), 5);
        assert_eq!(versions, ["1.0.0"]);
        // The latest occurrence (dev0's, at `now`) is the problem's sample,
        // and a later batch with an earlier record does not replace it.
        let latest = store
            .problem_latest(&tenant, &problems[0].id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((latest.device_id.as_str(), latest.at), ("dev0", now));
        store
            .ingest_reports(
                &tenant,
                &[report("dev9", "r2", "1.0.0", now - 99)],
                false,
                now,
            )
            .await
            .unwrap();
        let still = store
            .problem_latest(&tenant, &problems[0].id)
            .await
            .unwrap();
        assert_eq!(still.map(|r| r.device_id), Some("dev0".to_owned()));
        store
            .ingest_reports(
                &tenant,
                &[report("dev8", "r3", "1.0.0", now + 5)],
                false,
                now,
            )
            .await
            .unwrap();
        let newer = store
            .problem_latest(&tenant, &problems[0].id)
            .await
            .unwrap();
        assert_eq!(newer.map(|r| r.device_id), Some("dev8".to_owned()));
        assert_eq!(
            store
                .problem_latest(&tenant, "no-such-problem")
                .await
                .unwrap(),
            None
        );
        // Heartbeats are stored but are not problems and not in the report.
        let mut heartbeat = report("dev0", "hb", "1.0.0", now);
        heartbeat.kind = "heartbeat".into();
        heartbeat.problem = None;
        store
            .ingest_reports(&tenant, &[heartbeat], false, now)
            .await
            .unwrap();
        let rows = store
            .report_page(&tenant, 0, None, None, 100)
            .await
            .unwrap();
        assert_eq!(rows.len(), 7, "the 5 failures and the 2 later ones");
        // The export streams the same rows, in the same order.
        let (exported, _) = export(&store, &tenant, None).await;
        assert_eq!(exported, rows);
        assert!(rows
            .iter()
            .all(|r| r.problem_id.as_deref() == Some(problems[0].id.as_str())));
        // Another tenant sees none of it.
        let other = store.create_tenant("u").await.unwrap().id;
        assert!(store
            .list_problems(&other, None, None, 100)
            .await
            .unwrap()
            .is_empty());
        assert!(store
            .report_page(&other, 0, None, None, 100)
            .await
            .unwrap()
            .is_empty());
        assert!(store.problem(&other, &problems[0].id).await.is_err());
    })
    .await;
}

#[tokio::test]
async fn a_resolved_problem_reopens_as_a_regression_only_in_a_newer_version() {
    each_backend(|store| async move {
        let tenant = store.create_tenant("t").await.unwrap().id;
        let now = 1_000 * DAY_MS;
        store
            .ingest_reports(&tenant, &[report("d", "r1", "1.2.0", now)], false, now)
            .await
            .unwrap();
        let id = store.list_problems(&tenant, None, None, 10).await.unwrap()[0]
            .id
            .clone();
        let resolved = store
            .resolve_problem(&tenant, &id, None, now)
            .await
            .unwrap();
        assert_eq!(resolved.status, "resolved");
        assert_eq!(resolved.resolved_version.as_deref(), Some("1.2.0"));
        // Old version still in the field: counted, stays resolved.
        let old = store
            .ingest_reports(&tenant, &[report("d", "r2", "1.1.9", now + 1)], false, now)
            .await
            .unwrap();
        assert!(old.events.is_empty());
        let (p, _, _) = store.problem(&tenant, &id).await.unwrap();
        assert_eq!((p.status.as_str(), p.occurrences), ("resolved", 2));
        // A newer version: regression, with an event.
        let new = store
            .ingest_reports(&tenant, &[report("d", "r3", "1.10.0", now + 2)], false, now)
            .await
            .unwrap();
        assert_eq!(new.events, [(ProblemEvent::Regression, id.clone())]);
        let (p, _, versions) = store.problem(&tenant, &id).await.unwrap();
        assert_eq!(p.status, "regression");
        assert_eq!(p.last_version, "1.10.0");
        assert_eq!(versions, ["1.1.9", "1.2.0", "1.10.0"]);
        let regressions = store
            .list_problems(&tenant, Some("regression"), None, 10)
            .await
            .unwrap();
        assert_eq!(regressions.len(), 1);
    })
    .await;
}

#[tokio::test]
async fn the_error_report_pages_without_gaps_or_repeats() {
    each_backend(|store| async move {
        let tenant = store.create_tenant("t").await.unwrap().id;
        let now = 1_000 * DAY_MS;
        for batch in 0..5 {
            let reports: Vec<NewReport> = (0..50)
                .map(|n| {
                    report(
                        &format!("dev{}", n % 7),
                        &format!("r{batch}-{n}"),
                        "1.0.0",
                        now,
                    )
                })
                .collect();
            store
                .ingest_reports(&tenant, &reports, false, now + batch)
                .await
                .unwrap();
        }
        let mut seen = std::collections::BTreeSet::new();
        let mut cursor = None;
        loop {
            let page = store
                .report_page(&tenant, 0, None, cursor.as_ref(), 33)
                .await
                .unwrap();
            for r in &page {
                assert!(seen.insert((r.device_id.clone(), r.record_id.clone())));
            }
            if page.len() < 33 {
                break;
            }
            let last = page.last().unwrap();
            cursor = Some((
                last.received_at,
                last.device_id.clone(),
                last.record_id.clone(),
            ));
        }
        assert_eq!(seen.len(), 250);
        // The time window applies to receipt.
        let recent = store
            .report_page(&tenant, now + 4, None, None, 1000)
            .await
            .unwrap();
        assert_eq!(recent.len(), 50);
    })
    .await;
}

#[tokio::test]
async fn retention_purges_old_reports_per_tenant() {
    each_backend(|store| async move {
        let short = store.create_tenant("short").await.unwrap().id;
        let default = store.create_tenant("default").await.unwrap().id;
        store.set_retention_days(&short, 2).await.unwrap();
        assert_eq!(store.retention_days(&short).await.unwrap(), 2);
        assert_eq!(store.retention_days(&default).await.unwrap(), 14);
        assert!(store.set_retention_days(&short, 0).await.is_err());
        let now = 1_000 * DAY_MS;
        for tenant in [&short, &default] {
            for (n, age) in [1i64, 3, 13, 15].iter().enumerate() {
                let at = now - age * DAY_MS;
                store
                    .ingest_reports(
                        tenant,
                        &[report(tenant, &format!("r{n}"), "1", at)],
                        false,
                        at,
                    )
                    .await
                    .unwrap();
            }
        }
        let deleted = store.purge_failure_reports(now).await.unwrap();
        // short keeps 1 day old only; default keeps 1, 3 and 13 days old.
        assert_eq!(deleted, 3 + 1);
        assert_eq!(
            store
                .report_page(&short, 0, None, None, 100)
                .await
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            store
                .report_page(&default, 0, None, None, 100)
                .await
                .unwrap()
                .len(),
            3
        );
    })
    .await;
}

#[tokio::test]
async fn failed_attestations_and_webhook_queue() {
    each_backend(|store| async move {
        let tenant = store.create_tenant("t").await.unwrap().id;
        let now = 1_000 * DAY_MS;
        let refusal = AttestationRecord {
            id: String::new(),
            device_id: "d".repeat(64),
            tenant_id: Some(tenant.clone()),
            at: now,
            passed: false,
            reasons: "[\"boot check failed\"]".into(),
            measurements: "{}".into(),
            certificate_serial: None,
            certificate_not_after: None,
            source: "127.0.0.1".into(),
        };
        let id = store
            .record_verdict(&VerdictWrite {
                record: &refusal,
                nonce: None,
                limit: None,
            })
            .await
            .unwrap();
        let pending = store
            .unreported_attestation_failures(now - DAY_MS, 10)
            .await
            .unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].0, id);
        store
            .add_webhook(&WebhookRecord {
                id: "w1".into(),
                tenant_id: tenant.clone(),
                url: "http://127.0.0.1:9/hook".into(),
                events: vec!["new-problem".into(), "attestation-failed".into()],
                wrapped_secret: vec![1, 2, 3],
                created_at: now,
            })
            .await
            .unwrap();
        let mut r = report(&"d".repeat(64), &id, "", now);
        r.kind = "attestation-failed".into();
        let outcome = store
            .ingest_reports(&tenant, &[r.clone()], true, now)
            .await
            .unwrap();
        assert_eq!(outcome.events.len(), 2);
        assert!(store
            .unreported_attestation_failures(now - DAY_MS, 10)
            .await
            .unwrap()
            .is_empty());
        // Two deliveries queued; one replica claims them, a second gets none.
        let claimed = store.claim_deliveries(now, 10).await.unwrap();
        assert_eq!(claimed.len(), 2);
        assert!(store.claim_deliveries(now, 10).await.unwrap().is_empty());
        let body: serde_json::Value = serde_json::from_str(&claimed[0].payload).unwrap();
        assert_eq!(body["problem"]["kind"], "attestation-failed");
        // One fails and is retried later, one is delivered.
        store
            .finish_delivery(&claimed[0].id, now, None)
            .await
            .unwrap();
        store
            .finish_delivery(&claimed[1].id, now, Some(("HTTP 500", Some(now + 5_000))))
            .await
            .unwrap();
        assert!(store
            .claim_deliveries(now + 1_000, 10)
            .await
            .unwrap()
            .is_empty());
        let retry = store.claim_deliveries(now + 5_000, 10).await.unwrap();
        assert_eq!(retry.len(), 1);
        assert_eq!(retry[0].attempts, 1);
        let log = store.webhook_deliveries(&tenant, "w1").await.unwrap();
        assert_eq!(log.len(), 2);
        store.remove_webhook(&tenant, "w1").await.unwrap();
        assert!(store.list_webhooks(&tenant).await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test]
async fn a_large_mixed_batch_counts_each_new_record_once() {
    each_backend(|store| async move {
        let tenant = store.create_tenant("t").await.unwrap().id;
        let now = 1_000 * DAY_MS;
        let make = |n: usize| {
            let mut r = report(
                &format!("dev{}", n % 9),
                &format!("r{n}"),
                "2.0.0",
                now + n as i64,
            );
            if n % 3 == 0 {
                r.problem = Some(ProblemKey {
                    signature: "b".repeat(64),
                    title: "other".into(),
                });
            }
            r
        };
        let first: Vec<NewReport> = (0..120).map(make).collect();
        store
            .ingest_reports(&tenant, &first, false, now)
            .await
            .unwrap();
        // 250 records crossing the insert chunk, 120 of them already stored.
        let second: Vec<NewReport> = (0..250).map(make).collect();
        let outcome = store
            .ingest_reports(&tenant, &second, false, now)
            .await
            .unwrap();
        assert_eq!((outcome.stored, outcome.duplicates), (130, 120));
        assert!(outcome.events.is_empty());
        let problems = store.list_problems(&tenant, None, None, 10).await.unwrap();
        let total: u64 = problems.iter().map(|p| p.occurrences).sum();
        assert_eq!(total, 250);
        let other = problems.iter().find(|p| p.title == "other").unwrap();
        assert_eq!(other.occurrences, 84);
        assert_eq!(other.devices, 3);
        assert_eq!(other.first_seen, now);
        assert_eq!(other.last_seen, now + 249);
    })
    .await;
}

#[tokio::test]
async fn the_export_is_the_whole_report_in_buffers_in_report_order() {
    each_backend(|store| async move {
        let tenant = store.create_tenant("t").await.unwrap().id;
        // More than one buffer's worth, in batches that arrive one after
        // another (and several sharing a time of receipt, so the order's
        // other columns matter), with reasons that need escaping.
        let total = 10_250;
        let now = 1_000 * DAY_MS;
        for (n, start) in (0..total).step_by(100).enumerate() {
            let batch: Vec<NewReport> = (start..(start + 100).min(total))
                .map(|i| {
                    let mut r = report(&format!("dev{}", i % 7), &format!("r{i:06}"), "1.0.0", now);
                    r.reason = format!("trap \"{i}\",\n\tat 0x{i:x}");
                    r
                })
                .collect();
            store
                .ingest_reports(&tenant, &batch, false, now + (n / 3) as i64)
                .await
                .unwrap();
        }
        let mut paged = Vec::new();
        let mut cursor = None;
        loop {
            let page = store
                .report_page(&tenant, 0, None, cursor.as_ref(), 1000)
                .await
                .unwrap();
            cursor = page
                .last()
                .map(|r| (r.received_at, r.device_id.clone(), r.record_id.clone()));
            let done = page.len() < 1000;
            paged.extend(page);
            if done {
                break;
            }
        }
        let (exported, buffers) = export(&store, &tenant, None).await;
        assert_eq!(paged.len(), total);
        assert!(buffers > 1, "sent as it is read, in {buffers} buffer(s)");
        assert!(
            exported == paged,
            "the export differs from the paged report"
        );
        // Nothing for another tenant, or for a group none of the devices is in.
        let other = store.create_tenant("u").await.unwrap().id;
        assert_eq!(export(&store, &other, None).await, (Vec::new(), 0));
        assert_eq!(
            export(&store, &tenant, Some("no-such-group")).await,
            (Vec::new(), 0)
        );
    })
    .await;
}
