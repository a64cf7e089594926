#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! The fleet view in the store, on SQLite and PostgreSQL: each device's
//! latest authentic verdict and software kept with the device, the
//! aggregates and pages the dashboard reads, and per-day problem counts.

#[macro_use]
mod common;

use common::*;
use sevenfold_service::store::{
    AttestationRecord, FleetFilter, FleetState, LastSeen, NewDevice, NewReport, ProblemKey, Store,
    VerdictWrite,
};

const DAY_MS: i64 = 86_400_000;
const NOW: i64 = 1_000 * DAY_MS;

fn device_id(n: usize) -> String {
    format!("{n:064x}")
}

async fn claim(store: &Store, tenant: &str, n: usize) -> String {
    store
        .claim_device(
            tenant,
            NewDevice {
                id: device_id(n),
                public_key_der: vec![0x30, 0x59, 1],
                endorsement_der: vec![0x30, 0x82, 2],
                manufacturer_fingerprint: "ab".repeat(32),
            },
        )
        .await
        .unwrap()
        .id
}

fn log(runtime: &str, apps: &[(&str, &str)]) -> String {
    let mut events = vec![serde_json::json!({
        "kind": "runtime", "component_id": "rt", "name": "sevenfold", "version": runtime, "digest": "00"
    })];
    for (name, version) in apps {
        events.push(serde_json::json!({
            "kind": "application", "component_id": name, "name": name, "version": version, "digest": "01"
        }));
    }
    serde_json::Value::Array(events).to_string()
}

async fn verdict(
    store: &Store,
    tenant: &str,
    device: &str,
    at: i64,
    passed: bool,
    measurements: String,
) {
    let record = AttestationRecord {
        id: String::new(),
        device_id: device.to_owned(),
        tenant_id: Some(tenant.to_owned()),
        at,
        passed,
        reasons: if passed {
            "[]".into()
        } else {
            r#"["unknown measurement"]"#.into()
        },
        measurements,
        certificate_serial: passed.then(|| "01".to_owned()),
        certificate_not_after: passed.then_some(at + DAY_MS),
        source: "192.0.2.1".into(),
    };
    store
        .record_verdict(&VerdictWrite {
            record: &record,
            nonce: None,
            limit: None,
        })
        .await
        .unwrap();
}

both_backends!(fleet_states_and_software_follow_authentic_verdicts, |db| {
    let store = db.connect().await;
    let tenant = store.create_tenant("acme").await.unwrap().id;
    let mut ids = Vec::new();
    for n in 0..6 {
        ids.push(claim(&store, &tenant, n).await);
    }
    // 0: attested, v1 apps. 1: attested long ago, certificate expired.
    verdict(
        &store,
        &tenant,
        &ids[0],
        NOW - 1000,
        true,
        log("0.2.0", &[("thermo", "1.0.0"), ("logger", "2.0.0")]),
    )
    .await;
    verdict(
        &store,
        &tenant,
        &ids[1],
        NOW - 3 * DAY_MS,
        true,
        log("0.1.0", &[("thermo", "1.0.0")]),
    )
    .await;
    // 2: passed, then a signed refusal: failing, with what it measured.
    verdict(
        &store,
        &tenant,
        &ids[2],
        NOW - 2000,
        true,
        log("0.2.0", &[("thermo", "1.0.0")]),
    )
    .await;
    verdict(
        &store,
        &tenant,
        &ids[2],
        NOW - 1000,
        false,
        log("0.2.0", &[("thermo", "9.9.9")]),
    )
    .await;
    // 3: an unauthenticated refusal naming it (no measurements): still
    // never attested, not failing.
    verdict(&store, &tenant, &ids[3], NOW - 1000, false, "[]".into()).await;
    // 4: revoked. 5: never attested.
    store.revoke_device(&tenant, &ids[4]).await.unwrap();

    let summary = store.fleet_summary(&tenant, NOW).await.unwrap();
    assert_eq!(summary.total, 6);
    let by = |s: FleetState| summary.by_state[&s];
    assert_eq!(by(FleetState::Attested), 1);
    assert_eq!(by(FleetState::Expired), 1);
    assert_eq!(by(FleetState::Failing), 1);
    assert_eq!(by(FleetState::NeverAttested), 2);
    assert_eq!(by(FleetState::Revoked), 1);
    // Passes mark a device seen: 0 and 2 within the hour, 1 three days ago.
    assert_eq!(summary.by_last_seen[&LastSeen::Hour], 2);
    assert_eq!(summary.by_last_seen[&LastSeen::Week], 1);
    assert_eq!(summary.by_last_seen[&LastSeen::Never], 3);
    // Most devices first: three have measured no runtime yet.
    assert_eq!(summary.runtimes[0], (None, 3));
    assert_eq!(summary.runtimes[1], (Some("0.2.0".to_owned()), 2));
    let thermo = |v: &str| {
        summary
            .apps
            .iter()
            .find(|(a, version, _)| a == "thermo" && version == v)
            .map(|(_, _, n)| *n)
    };
    assert_eq!(thermo("1.0.0"), Some(2));
    assert_eq!(thermo("9.9.9"), Some(1));

    // Pages: by state, and keyset across pages.
    let failing = store
        .fleet_devices(
            &tenant,
            &FleetFilter {
                state: Some(FleetState::Failing),
                ..FleetFilter::default()
            },
            NOW,
            50,
        )
        .await
        .unwrap();
    assert_eq!(failing.len(), 1);
    assert_eq!(failing[0].id, ids[2]);
    assert_eq!(failing[0].app_versions.as_deref(), Some("thermo 9.9.9"));
    let first = store
        .fleet_devices(&tenant, &FleetFilter::default(), NOW, 4)
        .await
        .unwrap();
    let rest = store
        .fleet_devices(
            &tenant,
            &FleetFilter {
                after: Some(first[3].id.clone()),
                ..FleetFilter::default()
            },
            NOW,
            4,
        )
        .await
        .unwrap();
    let all: Vec<_> = first.iter().chain(&rest).map(|d| d.id.clone()).collect();
    assert_eq!(all, ids);
    let one = store.fleet_device(&tenant, &ids[0], NOW).await.unwrap();
    assert_eq!(one.state, FleetState::Attested);
    assert_eq!(one.certificate_not_after, Some(NOW - 1000 + DAY_MS));
    assert_eq!(
        one.app_versions.as_deref(),
        Some("logger 2.0.0, thermo 1.0.0")
    );
    // Another tenant sees none of it.
    let other = store.create_tenant("other").await.unwrap().id;
    assert_eq!(store.fleet_summary(&other, NOW).await.unwrap().total, 0);
    assert!(store.fleet_device(&other, &ids[0], NOW).await.is_err());
});

both_backends!(
    problem_days_count_occurrences_per_day_across_batches,
    |db| {
        let store = db.connect().await;
        let tenant = store.create_tenant("acme").await.unwrap().id;
        let device = claim(&store, &tenant, 1).await;
        let report = |record: &str, at: i64| NewReport {
            device_id: device.clone(),
            record_id: record.to_owned(),
            at,
            component_id: "app".into(),
            component_version: "1.0.0".into(),
            kind: "trap".into(),
            reason: "wasm trap: unreachable".into(),
            frames: "[]".into(),
            details: "{}".into(),
            problem: Some(ProblemKey {
                signature: "c".repeat(64),
                title: "trap".into(),
            }),
        };
        let batch = vec![
            report("a", NOW - DAY_MS - 5),
            report("b", NOW - 10),
            report("c", NOW - 5),
        ];
        store
            .ingest_reports(&tenant, &batch, false, NOW)
            .await
            .unwrap();
        // A resent record is not counted again; a new one adds to its day.
        let batch = vec![report("c", NOW - 5), report("d", NOW - 1)];
        store
            .ingest_reports(&tenant, &batch, false, NOW)
            .await
            .unwrap();
        let problems = store.list_problems(&tenant, None, None, 10).await.unwrap();
        let problem = &problems[0].id;
        let today = NOW / DAY_MS - 1; // NOW - small offsets fall on the previous day
        let days = store
            .problem_days(&tenant, problem, today - 10)
            .await
            .unwrap();
        assert_eq!(days, vec![(today - 1, 1), (today, 3)]);
        assert_eq!(
            days.iter().map(|d| d.1).sum::<u64>(),
            problems[0].occurrences
        );
        // Another tenant cannot read it.
        let other = store.create_tenant("other").await.unwrap().id;
        assert!(store
            .problem_days(&other, problem, 0)
            .await
            .unwrap()
            .is_empty());
        // The device's recent failures, newest first.
        let recent = store.device_failures(&tenant, &device, 2).await.unwrap();
        let records: Vec<_> = recent.iter().map(|r| r.record_id.as_str()).collect();
        assert_eq!(records, ["d", "c"]);
    }
);
