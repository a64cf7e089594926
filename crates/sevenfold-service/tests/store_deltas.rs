#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! Delta bases and delta jobs in the store, on SQLite and PostgreSQL: which
//! images a group's devices run (from their verdicts), the package files of
//! a group's earlier deployments, and a deployment's delta job from
//! creation (held by its creator) through takeover to its end.

#[macro_use]
mod common;

use common::*;
use sevenfold_service::store::{
    AttestationRecord, DeploymentDelta, DeploymentImage, Image, NewDeployment, NewDevice, NewImage,
    Store, VerdictWrite, DELTA_LEASE_MS,
};

fn now_millis() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

const COMPONENT: &str = "2f1e7c1a-1111-4222-8333-444455556666";

fn digest(version: u8) -> String {
    format!("{version:02x}").repeat(32)
}

fn file(version: u8) -> String {
    format!("f{version:x}").repeat(32)
}

async fn image(store: &Store, tenant: &str, version: u8) -> Image {
    store
        .add_image(
            tenant,
            NewImage {
                id: digest(version),
                component_id: COMPONENT.to_owned(),
                name: "blink".to_owned(),
                version: format!("{version}.0.0"),
                security_version: i64::from(version),
                image_type: "app".to_owned(),
                size: 4096,
                signer_key_id: "k1".to_owned(),
                blob_key: format!("images/{}", digest(version)),
                manifest_json: "{}".to_owned(),
                uploaded_by: "alice".to_owned(),
            },
        )
        .await
        .unwrap()
}

async fn deploy(store: &Store, tenant: &str, group: &str, image: &Image, version: u8) -> String {
    let id = store
        .create_deployment(
            tenant,
            NewDeployment {
                group_id: group.to_owned(),
                images: vec![DeploymentImage {
                    image: image.clone(),
                    file_sha256: file(version),
                    file_length: 4096,
                }],
                percent: 100,
                max_failure_percent: 100,
                created_by: "alice".to_owned(),
            },
        )
        .await
        .unwrap()
        .id;
    // Deployments made in one millisecond would tie on their time.
    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    id
}

async fn device_running(store: &Store, tenant: &str, group: Option<&str>, n: u8, apps: &[u8]) {
    let id = format!("{n:064x}");
    store
        .claim_device(
            tenant,
            NewDevice {
                id: id.clone(),
                public_key_der: vec![0x30, 0x59, n],
                endorsement_der: vec![0x30, 0x82, n],
                manufacturer_fingerprint: "ab".repeat(32),
            },
        )
        .await
        .unwrap();
    if let Some(group) = group {
        store.assign_device(tenant, &id, group).await.unwrap();
    }
    // An earlier boot in the same log ran version 9: only the last counts.
    let mut events = vec![
        serde_json::json!({"kind": "runtime", "component_id": "rt", "name": "sevenfold", "version": "0.1.0", "digest": "00"}),
        serde_json::json!({"kind": "application", "component_id": COMPONENT, "name": "blink", "version": "9", "digest": digest(9)}),
        serde_json::json!({"kind": "runtime", "component_id": "rt", "name": "sevenfold", "version": "0.1.0", "digest": "00"}),
    ];
    for v in apps {
        events.push(
            serde_json::json!({"kind": "application", "component_id": COMPONENT,
            "name": "blink", "version": format!("{v}.0.0"), "digest": digest(*v)}),
        );
    }
    events.push(
        serde_json::json!({"kind": "application", "component_id": "other",
        "name": "logger", "version": "1", "digest": digest(7)}),
    );
    let record = AttestationRecord {
        id: String::new(),
        device_id: id,
        tenant_id: Some(tenant.to_owned()),
        at: 1_000,
        passed: true,
        reasons: "[]".into(),
        measurements: serde_json::Value::Array(events).to_string(),
        certificate_serial: Some("01".into()),
        certificate_not_after: Some(2_000),
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

both_backends!(bases_are_what_devices_run_then_earlier_deployments, |db| {
    let store = db.connect().await;
    let tenant = store.create_tenant("acme").await.unwrap().id;
    let (_, groups) = store.create_product(&tenant, "p", "").await.unwrap();
    let (group, other_group) = (groups[0].id.clone(), groups[1].id.clone());
    store
        .add_signing_key(&tenant, "k1", "release", &[1, 2, 3])
        .await
        .unwrap();
    let mut images = Vec::new();
    for v in 1..=4 {
        images.push(image(&store, &tenant, v).await);
    }
    // Two devices of the group on v1, one on v2, one elsewhere on v3.
    device_running(&store, &tenant, Some(&group), 1, &[1]).await;
    device_running(&store, &tenant, Some(&group), 2, &[1]).await;
    device_running(&store, &tenant, Some(&group), 3, &[2]).await;
    device_running(&store, &tenant, Some(&other_group), 4, &[3]).await;
    device_running(&store, &tenant, None, 5, &[3]).await;
    // A revoked device of the group gets no updates: it does not count.
    device_running(&store, &tenant, Some(&group), 6, &[4]).await;
    store
        .revoke_device(&tenant, &format!("{:064x}", 6))
        .await
        .unwrap();
    assert_eq!(
        store
            .group_running_images(&tenant, &group, COMPONENT)
            .await
            .unwrap(),
        vec![(digest(1), 2), (digest(2), 1)]
    );
    assert_eq!(
        store
            .group_running_images(&tenant, &group, "other")
            .await
            .unwrap(),
        vec![(digest(7), 3)]
    );
    // Not deployed yet: the file's hash is unknown.
    let base = store
        .delta_base(&tenant, COMPONENT, &digest(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((base.version.as_str(), base.file_sha256), ("1.0.0", None));
    assert!(store
        .delta_base(&tenant, "other", &digest(1))
        .await
        .unwrap()
        .is_none());

    let d1 = deploy(&store, &tenant, &group, &images[0], 1).await;
    let d2 = deploy(&store, &tenant, &group, &images[1], 2).await;
    let d2_again = deploy(&store, &tenant, &group, &images[1], 2).await;
    let d3 = deploy(&store, &tenant, &group, &images[2], 3).await;
    deploy(&store, &tenant, &other_group, &images[3], 4).await;
    let d4 = deploy(&store, &tenant, &group, &images[3], 4).await;
    assert_eq!(
        store
            .delta_base(&tenant, COMPONENT, &digest(1))
            .await
            .unwrap()
            .unwrap()
            .file_sha256,
        Some(file(1))
    );
    let files = |bases: Vec<sevenfold_service::store::DeltaBase>| {
        bases
            .into_iter()
            .map(|b| b.file_sha256.unwrap())
            .collect::<Vec<_>>()
    };
    // Newest first, each file once, only this group's, only earlier ones.
    assert_eq!(
        files(
            store
                .earlier_group_files(&tenant, &group, COMPONENT, &d4, 3)
                .await
                .unwrap()
        ),
        vec![file(3), file(2), file(1)]
    );
    assert_eq!(
        files(
            store
                .earlier_group_files(&tenant, &group, COMPONENT, &d4, 2)
                .await
                .unwrap()
        ),
        vec![file(3), file(2)]
    );
    assert_eq!(
        files(
            store
                .earlier_group_files(&tenant, &group, COMPONENT, &d2_again, 3)
                .await
                .unwrap()
        ),
        vec![file(2), file(1)]
    );
    assert!(store
        .earlier_group_files(&tenant, &group, COMPONENT, &d1, 3)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.file_version(&tenant, &file(2)).await.unwrap(),
        Some("2.0.0".to_owned())
    );
    assert_eq!(store.file_version(&tenant, "00").await.unwrap(), None);
    let _ = (d2, d3);
});

both_backends!(a_delta_job_is_held_taken_over_and_finished_once, |db| {
    let store = db.connect().await;
    let tenant = store.create_tenant("acme").await.unwrap().id;
    let (_, groups) = store.create_product(&tenant, "p", "").await.unwrap();
    let group = groups[0].id.clone();
    store
        .add_signing_key(&tenant, "k1", "release", &[1, 2, 3])
        .await
        .unwrap();
    let v1 = image(&store, &tenant, 1).await;
    let before = now_millis();
    let d1 = deploy(&store, &tenant, &group, &v1, 1).await;

    // Its creator holds the job: no other replica may take it yet.
    assert!(store.deltas_making(&tenant, &d1).await.unwrap());
    let now = now_millis();
    assert!(!store.claim_delta_job(&tenant, &d1, now).await.unwrap());
    assert!(store.delta_jobs(None, now).await.unwrap().is_empty());
    let mine = store
        .delta_jobs(Some((&tenant, &group)), now)
        .await
        .unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].deployment_id, d1);
    assert!(mine[0].claimed_until.unwrap() >= before + DELTA_LEASE_MS);

    // Its lease ran out: housekeeping sees it, and one claim wins.
    let later = now + DELTA_LEASE_MS + 1_000;
    let abandoned = store.delta_jobs(None, later).await.unwrap();
    assert_eq!(abandoned.len(), 1);
    assert_eq!(abandoned[0].tenant_id, tenant);
    assert!(store.claim_delta_job(&tenant, &d1, later).await.unwrap());
    assert!(!store.claim_delta_job(&tenant, &d1, later).await.unwrap());
    assert!(store.delta_jobs(None, later).await.unwrap().is_empty());

    let delta = DeploymentDelta {
        target_sha256: file(1),
        base_sha256: file(0),
        format: "bsdiff4".into(),
        name: format!("{COMPONENT}.f0f0f0f0f0f0f0f0.delta"),
        delta_sha256: "dd".repeat(32),
        delta_length: 123,
        blob_key: format!("deltas/{tenant}/x"),
    };
    store
        .record_deltas(&tenant, &d1, std::slice::from_ref(&delta))
        .await
        .unwrap();
    // Recorded but not yet published: still being made.
    assert!(store.deltas_making(&tenant, &d1).await.unwrap());
    // A second runner (the replica whose lease ran out) changes nothing.
    store
        .record_deltas(&tenant, &d1, std::slice::from_ref(&delta))
        .await
        .unwrap();
    store.end_delta_job(&tenant, &d1).await.unwrap();
    store.end_delta_job(&tenant, &d1).await.unwrap();
    assert!(!store.deltas_making(&tenant, &d1).await.unwrap());
    assert!(!store.claim_delta_job(&tenant, &d1, later).await.unwrap());
    assert!(store
        .delta_jobs(Some((&tenant, &group)), later)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.deployment_deltas(&tenant, &d1).await.unwrap(),
        vec![delta.clone()]
    );
    assert_eq!(
        store
            .existing_delta(&tenant, &file(0), &file(1))
            .await
            .unwrap(),
        Some(delta.clone())
    );
    assert_eq!(
        store
            .existing_delta(&tenant, &file(1), &file(0))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .live_delta(&tenant, &group, &delta.delta_sha256)
            .await
            .unwrap(),
        Some((delta.blob_key.clone(), delta.target_sha256.clone()))
    );
});
