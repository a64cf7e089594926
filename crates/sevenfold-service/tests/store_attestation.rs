//! Attestation state in the store, on both back-ends: nonces issued under
//! rate limits in one transaction, and verdicts that consume their nonce in
//! the same transaction, so a nonce yields at most one pass even when
//! replicas race.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::*;
use sevenfold_service::store::{
    AttestationRecord, NewDevice, NewNonce, RateLimit, Store, StoreError, VerdictWrite,
};

const NOW_PLUS_MINUTE: i64 = 60_000;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn limit(bucket: &str, max: i64) -> RateLimit {
    RateLimit {
        bucket: bucket.to_owned(),
        max,
        window_ms: 3_600_000,
    }
}

/// A tenant holding one claimed device; returns (tenant, device ID).
async fn claimed_device(store: &Store) -> (String, String) {
    let tenant = store.create_tenant("acme").await.unwrap();
    let device = store
        .claim_device(
            &tenant.id,
            NewDevice {
                id: "d1".repeat(32),
                public_key_der: vec![0x30, 0x59, 1],
                endorsement_der: vec![0x30, 0x82, 2],
                manufacturer_fingerprint: "ab".repeat(32),
            },
        )
        .await
        .unwrap();
    (tenant.id, device.id)
}

async fn issue(store: &Store, nonce: &str, device: &str, expires_at: i64) {
    store
        .issue_nonce(
            &NewNonce {
                nonce,
                device_id: device,
                source: "192.0.2.1",
                expires_at,
            },
            &[],
        )
        .await
        .unwrap();
}

fn verdict(tenant: &str, device: &str, passed: bool) -> AttestationRecord {
    AttestationRecord {
        id: String::new(),
        device_id: device.to_owned(),
        tenant_id: Some(tenant.to_owned()),
        at: now(),
        passed,
        reasons: if passed { "[]" } else { r#"["bad quote"]"# }.to_owned(),
        measurements: "[]".to_owned(),
        certificate_serial: passed.then(|| "01".repeat(16)),
        certificate_not_after: passed.then(|| now() + 86_400_000),
        source: "192.0.2.1".to_owned(),
    }
}

async fn pass_with(
    store: &Store,
    record: &AttestationRecord,
    nonce: &str,
) -> Result<String, StoreError> {
    store
        .record_verdict(&VerdictWrite {
            record,
            nonce: Some(nonce),
            limit: None,
        })
        .await
}

both!(nonce_rate_limits_write_nothing_past_the_limit, |db| {
    let store = db.connect().await;
    let limits = [
        limit("nonce-source:192.0.2.1", 10),
        limit("nonce-device:d1", 2),
    ];
    for n in 0..3 {
        let nonce = format!("{n:064x}");
        let issued = store
            .issue_nonce(
                &NewNonce {
                    nonce: &nonce,
                    device_id: "d1",
                    source: "192.0.2.1",
                    expires_at: now() + NOW_PLUS_MINUTE,
                },
                &limits,
            )
            .await;
        let outstanding = store.outstanding_nonce(&nonce).await.unwrap();
        if n < 2 {
            issued.unwrap();
            assert_eq!(outstanding.unwrap().0, "d1");
        } else {
            match issued {
                Err(StoreError::RateLimited(bucket)) => assert_eq!(bucket, "nonce-device:d1"),
                other => panic!("third nonce for d1: expected RateLimited, got {other:?}"),
            }
            assert_eq!(outstanding, None, "a refused nonce must not be stored");
        }
    }
});

both!(a_pass_consumes_its_nonce_once, |db| {
    let store = db.connect().await;
    let (tenant, device) = claimed_device(&store).await;
    let nonce = "aa".repeat(32);
    issue(&store, &nonce, &device, now() + NOW_PLUS_MINUTE).await;

    let record = verdict(&tenant, &device, true);
    pass_with(&store, &record, &nonce).await.unwrap();
    assert_eq!(store.outstanding_nonce(&nonce).await.unwrap(), None);
    let seen = store.device(&tenant, &device).await.unwrap().last_seen;
    assert_eq!(seen, Some(record.at), "a pass records the device as seen");

    // The same nonce again: refused, nothing stored.
    match pass_with(&store, &verdict(&tenant, &device, true), &nonce).await {
        Err(StoreError::NonceSpent) => {}
        other => panic!("replayed nonce: expected NonceSpent, got {other:?}"),
    }
    assert_eq!(
        store
            .list_attestations(&tenant, &device, 10)
            .await
            .unwrap()
            .len(),
        1
    );
});

both!(a_pass_needs_an_unexpired_nonce_issued_to_its_device, |db| {
    let store = db.connect().await;
    let (tenant, device) = claimed_device(&store).await;
    let expired = "bb".repeat(32);
    issue(&store, &expired, &device, now() - 1).await;
    let elsewhere = "cc".repeat(32);
    issue(
        &store,
        &elsewhere,
        &"ee".repeat(32),
        now() + NOW_PLUS_MINUTE,
    )
    .await;
    for nonce in [&expired, &elsewhere, &"dd".repeat(32)] {
        match pass_with(&store, &verdict(&tenant, &device, true), nonce).await {
            Err(StoreError::NonceSpent) => {}
            other => panic!("nonce {nonce}: expected NonceSpent, got {other:?}"),
        }
    }
    assert!(store
        .list_attestations(&tenant, &device, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.device(&tenant, &device).await.unwrap().last_seen,
        None
    );
});

both!(refusals_use_up_the_nonce_and_are_limited, |db| {
    let store = db.connect().await;
    let (tenant, device) = claimed_device(&store).await;
    let refusals = limit("refusal-source:192.0.2.1", 1);
    let nonce = "ab".repeat(32);
    issue(&store, &nonce, &device, now() + NOW_PLUS_MINUTE).await;
    let record = verdict(&tenant, &device, false);
    store
        .record_verdict(&VerdictWrite {
            record: &record,
            nonce: Some(&nonce),
            limit: Some(&refusals),
        })
        .await
        .unwrap();
    assert_eq!(store.outstanding_nonce(&nonce).await.unwrap(), None);
    // A second refusal from the same source is past the limit: nothing is
    // stored, though it needs no nonce.
    match store
        .record_verdict(&VerdictWrite {
            record: &verdict(&tenant, &device, false),
            nonce: None,
            limit: Some(&refusals),
        })
        .await
    {
        Err(StoreError::RateLimited(bucket)) => assert_eq!(bucket, refusals.bucket),
        other => panic!("second refusal: expected RateLimited, got {other:?}"),
    }
    let stored = store.list_attestations(&tenant, &device, 10).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert!(!stored[0].passed);
    assert_eq!(stored[0].reasons, r#"["bad quote"]"#);
});

both!(replicas_racing_on_one_nonce_pass_once, |db| {
    let store = db.connect().await;
    let (tenant, device) = claimed_device(&store).await;
    let nonce = "fe".repeat(32);
    issue(&store, &nonce, &device, now() + NOW_PLUS_MINUTE).await;
    // Separate pools stand in for separate replicas.
    let mut racers = Vec::new();
    for _ in 0..6 {
        let replica = db.connect().await;
        let record = verdict(&tenant, &device, true);
        let nonce = nonce.clone();
        racers.push(tokio::spawn(async move {
            pass_with(&replica, &record, &nonce).await
        }));
    }
    let mut passed = 0;
    for racer in racers {
        match racer.await.unwrap() {
            Ok(_) => passed += 1,
            Err(StoreError::NonceSpent) => {}
            Err(e) => panic!("racing verdict failed: {e}"),
        }
    }
    assert_eq!(passed, 1);
    assert_eq!(
        store
            .list_attestations(&tenant, &device, 10)
            .await
            .unwrap()
            .len(),
        1
    );
});
