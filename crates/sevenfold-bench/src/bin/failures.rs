//! Failure report ingest and the 14-day error report (issue 7), on the store.
//!
//! ```sh
//! cargo run --release -p sevenfold-bench --bin failures -- \
//!     [--records 1000000] [--batch 100] [--devices 1000] [--signatures 200] \
//!     [--backend sqlite|postgres|both] [--postgres-url URL] [--keep-sqlite DIR]
//! ```
//!
//! Per back-end (SQLite in a temporary file; PostgreSQL in a fresh database on
//! `--postgres-url`, dropped afterwards): `--records` failure records, in
//! batches of `--batch` as a device uploads them, each batch from one of
//! `--devices` devices and spread over `--signatures` problems (five in each
//! batch, as one device's upload holds a handful of distinct problems), go through
//! `Store::ingest_reports` exactly as `POST /device/v1/reports` calls it
//! (idempotent insert, grouping, one transaction per batch). Reported:
//! records/s over the whole ingest. Then `ANALYZE`, as a live database's
//! maintenance would have run. Then the 14-day error report over all of
//! them: the first page of 1000 rows (what `error-report --limit 1000` asks
//! for), the walk through every page of 10 000, and the export (one query
//! streamed in chunks: what `error-report --format csv|json` reads), all
//! newest first. The batches arrive spread over the 13 days before now, so
//! the time of receipt rises with the table as on a live server. Output:
//! one JSON object per back-end.
//!
//! Store level on purpose: TLS and HTTP cost per batch, not per record, and
//! are measured by the attestation benchmark.

// A benchmark binary: a failed set-up step should stop the run at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::Instant;

use clap::{Parser, ValueEnum};
use serde_json::json;
use sevenfold_service::store::{NewReport, ProblemKey, Store};
use sevenfold_service::ReportEncoder;
use sqlx::{AssertSqlSafe, Connection};

const DEFAULT_PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const DAY_MS: i64 = 86_400_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum BackendArg {
    Sqlite,
    Postgres,
    Both,
}

/// Failure report ingest rate and error-report time.
#[derive(Debug, Parser)]
struct Args {
    /// Records to ingest.
    #[arg(long, default_value_t = 1_000_000)]
    records: usize,
    /// Records per batch (a device upload; at most 100 on the wire).
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Distinct devices.
    #[arg(long, default_value_t = 1000)]
    devices: usize,
    /// Distinct problem signatures.
    #[arg(long, default_value_t = 200)]
    signatures: usize,
    /// Which database(s).
    #[arg(long, value_enum, default_value_t = BackendArg::Both)]
    backend: BackendArg,
    /// PostgreSQL server where this user may CREATE DATABASE.
    #[arg(long, default_value = DEFAULT_PG_ADMIN_URL)]
    postgres_url: String,
    /// Keep the SQLite database as DIR/sevenfold.db (a server data
    /// directory), to time `sevenfold error-report` against a real server.
    #[arg(long, value_name = "DIR")]
    keep_sqlite: Option<std::path::PathBuf>,
}

fn batch(args: &Args, n: usize, now: i64) -> Vec<NewReport> {
    let device = format!("{:064x}", n % args.devices);
    (0..args.batch)
        .map(|i| {
            // A device's upload holds a handful of distinct problems.
            let k = (n + i % 5) % args.signatures;
            NewReport {
                device_id: device.clone(),
                record_id: format!("{:032x}", n * args.batch + i),
                at: now - 1000 * (i as i64 + 1),
                component_id: format!("app-{}", k % 10),
                component_version: format!("1.{}.0", n % 5),
                kind: "trap".into(),
                reason: format!("wasm trap {k}"),
                frames: "[\"main+<addr>\"]".into(),
                details: "{}".into(),
                problem: Some(ProblemKey {
                    signature: format!("{k:064x}"),
                    title: format!("wasm trap {k}"),
                }),
            }
        })
        .collect()
}

async fn run(args: &Args, name: &str, url: &str) -> serde_json::Value {
    let store = Store::connect(url, 8).await.unwrap();
    let tenant = store.create_tenant("bench").await.unwrap().id;
    // The batches arrive over the 13 days before now, in order, as they
    // would on a live server (time of receipt rises with the table).
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    let first_arrival = now - 13 * DAY_MS;
    let batches = args.records.div_ceil(args.batch);
    let arrival = |n: usize| first_arrival + (13 * DAY_MS) * n as i64 / batches as i64;
    let start = Instant::now();
    for n in 0..batches {
        let now = arrival(n);
        store
            .ingest_reports(&tenant, &batch(args, n, now), false, now)
            .await
            .unwrap();
    }
    let ingest = start.elapsed().as_secs_f64();
    // Table statistics, as the database's own maintenance (autovacuum, or
    // SQLite's optimize) would have them on a live server.
    {
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
        sqlx::raw_sql("ANALYZE").execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
    }
    let since = now - 14 * DAY_MS;
    let start = Instant::now();
    let first = store
        .report_page(&tenant, since, None, None, 1000)
        .await
        .unwrap();
    let first_page = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let mut rows = 0usize;
    let mut cursor = None;
    loop {
        let page = store
            .report_page(&tenant, since, None, cursor.as_ref(), 10_000)
            .await
            .unwrap();
        rows += page.len();
        match page.last() {
            Some(last) if page.len() == 10_000 => {
                cursor = Some((
                    last.received_at,
                    last.device_id.clone(),
                    last.record_id.clone(),
                ))
            }
            _ => break,
        }
    }
    let walk = start.elapsed().as_secs_f64();
    // The export (`error-report --format csv`): one pass, encoded to CSV
    // exactly as `GET …/error-report/export` sends it.
    let start = Instant::now();
    let (mut exported, mut bytes) = (0usize, 0usize);
    let mut encoder = ReportEncoder::default();
    let mut buffers =
        store.report_export(&tenant, since, None, move |row, out| encoder.csv(row, out));
    while let Some(buffer) = buffers.recv().await {
        let buffer = buffer.unwrap();
        exported += buffer.matches("\r\n").count();
        bytes += buffer.len();
    }
    let export = start.elapsed().as_secs_f64();
    store.close().await;
    json!({
        "backend": name,
        "records": batches * args.batch,
        "batch": args.batch,
        "ingest_seconds": ingest,
        "records_per_second": (batches * args.batch) as f64 / ingest,
        "report_first_page_rows": first.len(),
        "report_first_page_seconds": first_page,
        "report_all_rows": rows,
        "report_all_seconds": walk,
        "report_export_rows": exported,
        "report_export_csv_bytes": bytes,
        "report_export_seconds": export,
    })
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if matches!(args.backend, BackendArg::Sqlite | BackendArg::Both) {
        let dir = tempfile::tempdir().unwrap();
        let data = args.keep_sqlite.as_deref().unwrap_or(dir.path());
        std::fs::create_dir_all(data).unwrap();
        let url = Store::sqlite_url(&data.join("sevenfold.db"));
        println!("{}", run(&args, "sqlite", &url).await);
    }
    if matches!(args.backend, BackendArg::Postgres | BackendArg::Both) {
        sqlx::any::install_default_drivers();
        let mut admin = sqlx::postgres::PgConnection::connect(&args.postgres_url)
            .await
            .unwrap();
        let name = format!("sevenfold_bench_{}", std::process::id());
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        let (base, _) = args.postgres_url.rsplit_once('/').unwrap();
        let result = run(&args, "postgres", &format!("{base}/{name}")).await;
        sqlx::raw_sql(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await
        .unwrap();
        println!("{result}");
    }
}
