//! The storage layer, run against both back-ends.
//!
//! Every test in `both!` runs twice: on a fresh SQLite file in a temporary
//! directory, and on a fresh PostgreSQL database created for that one test
//! (`sevenfold_test_<random>`, dropped afterwards, so parallel test processes
//! never collide). PostgreSQL is reached at
//! `postgres://postgres@127.0.0.1:5432/test` unless
//! `SEVENFOLD_TEST_POSTGRES_URL` names another admin URL. If it is
//! unreachable the PostgreSQL half fails, unless `SEVENFOLD_SKIP_POSTGRES=1`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeSet;

mod common;

use common::*;
use sevenfold_service::store::{
    AuditFilter, AuditOutcome, Backend, CaKind, DeviceMode, GroupUpdate, NewAuditEntry, NewDevice,
    NewGroup, NewImage, Page, Role, RuntimeFeed, Store, StoreError, TransferStatus, UpdatePolicy,
};

fn device_id(n: u64) -> String {
    format!("{n:064x}")
}

fn new_device(n: u64) -> NewDevice {
    NewDevice {
        id: device_id(n),
        public_key_der: vec![0x30, 0x59, n as u8, 0x00, 0xff],
        endorsement_der: vec![0x30, 0x82, 0x01, (n >> 8) as u8, 0x00],
        manufacturer_fingerprint: "ab".repeat(32),
    }
}

fn new_image(id: &str, key_id: &str) -> NewImage {
    NewImage {
        id: id.to_owned(),
        component_id: "2f1e7c1a-1111-4222-8333-444455556666".to_owned(),
        name: "blink".to_owned(),
        version: "1.2.0".to_owned(),
        security_version: 3,
        image_type: "app".to_owned(),
        size: 4096,
        signer_key_id: key_id.to_owned(),
        blob_key: format!("images/{id}"),
        manifest_json: r#"{"Name":"blink"}"#.to_owned(),
        uploaded_by: "alice".to_owned(),
    }
}

fn audit(actor: &str, tenant: Option<&str>, action: &str, target: &str) -> NewAuditEntry {
    NewAuditEntry {
        actor: actor.to_owned(),
        tenant_id: tenant.map(str::to_owned),
        action: action.to_owned(),
        target: target.to_owned(),
        outcome: AuditOutcome::Ok,
        source: "127.0.0.1".to_owned(),
        details: r#"{"k":"v"}"#.to_owned(),
    }
}

both!(migrations_are_idempotent_and_data_survives_restart, |db| {
    let store = db.connect().await;
    assert_eq!(store.backend(), db.backend);
    store.ping().await.unwrap();
    let tenant = store.create_tenant("acme").await.unwrap();
    let (size, _idle) = store.pool_size();
    assert!(size >= 1);
    store.close().await;
    drop(store);

    // Reconnect twice, at once: migrations are recorded, not re-run.
    let (a, b) = tokio::join!(db.connect(), db.connect());
    assert_eq!(a.tenant(&tenant.id).await.unwrap(), tenant);
    assert_eq!(b.list_tenants().await.unwrap(), vec![tenant]);

    if db.backend == Backend::Sqlite {
        let raw = db.raw().await;
        let row = sqlx::query("PRAGMA journal_mode")
            .fetch_one(&raw)
            .await
            .unwrap();
        let mode: String = sqlx::Row::try_get(&row, 0).unwrap();
        assert_eq!(mode, "wal");
        raw.close().await;
    }
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replicas_migrating_a_fresh_database_at_once() {
    let Some(test_db) = TestDb::postgres().await else {
        return;
    };
    run(test_db, |db| async move {
        let (a, b, c) = tokio::join!(
            Store::connect(&db.url, 2),
            Store::connect(&db.url, 2),
            Store::connect(&db.url, 2)
        );
        let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
        let t = a.create_tenant("acme").await.unwrap();
        assert_eq!(b.tenant(&t.id).await.unwrap(), t);
        assert_eq!(c.list_tenants().await.unwrap().len(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_sqlite() {
    let store = Store::connect("sqlite::memory:", 4).await.unwrap();
    let tenant = store.create_tenant("acme").await.unwrap();
    let (_, groups) = store.create_product(&tenant.id, "p", "").await.unwrap();
    let device = store.claim_device(&tenant.id, new_device(1)).await.unwrap();
    store
        .assign_device(&tenant.id, &device.id, &groups[0].id)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for task in 0..4 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                store
                    .append_audit(audit("a", None, "x", &format!("{task}-{i}")))
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(store.verify_audit().await.unwrap().entries, 40);
    assert_eq!(store.list_tenants().await.unwrap(), vec![tenant]);
}

both!(tenants, |db| {
    let store = db.connect().await;
    let zeta = store.create_tenant("zeta").await.unwrap();
    let acme = store.create_tenant("acme").await.unwrap();
    assert_ne!(zeta.id, acme.id);
    assert_conflict("duplicate name", store.create_tenant("acme").await);
    let names: Vec<_> = store
        .list_tenants()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["acme", "zeta"]);
    assert_eq!(store.tenant(&acme.id).await.unwrap(), acme);
    assert_eq!(store.tenant_by_name("zeta").await.unwrap(), Some(zeta));
    assert_eq!(store.tenant_by_name("nope").await.unwrap(), None);
    assert_not_found("unknown tenant", store.tenant("no-such-id").await);
});

both!(users_tokens_and_roles, |db| {
    let store = db.connect().await;
    assert_eq!(store.user_count().await.unwrap(), 0);
    let alice = store.create_user("alice", true).await.unwrap();
    let bob = store.create_user("bob", false).await.unwrap();
    assert_conflict("duplicate user", store.create_user("alice", false).await);
    assert_eq!(store.user_count().await.unwrap(), 2);
    assert_eq!(
        store.user_by_name("alice").await.unwrap(),
        Some(alice.clone())
    );
    assert_eq!(store.user_by_name("carol").await.unwrap(), None);
    assert!(alice.server_admin && !bob.server_admin);

    let acme = store.create_tenant("acme").await.unwrap();
    let other = store.create_tenant("other").await.unwrap();
    let token = [7u8; 32];
    store.add_token(&bob.id, &token, "laptop").await.unwrap();
    assert_conflict(
        "same token twice",
        store.add_token(&bob.id, &token, "again").await,
    );
    assert_not_found(
        "token for unknown user",
        store.add_token("no-such-user", &[8u8; 32], "x").await,
    );
    let principal = store
        .principal_by_token_hash(&token)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(principal.user, bob);
    assert!(principal.roles.is_empty());
    assert_eq!(
        store.principal_by_token_hash(&[9u8; 32]).await.unwrap(),
        None
    );

    // Roles: set, upsert, list, remove.
    store
        .set_role(&acme.id, &bob.id, Role::Reader)
        .await
        .unwrap();
    store
        .set_role(&acme.id, &bob.id, Role::Administrator)
        .await
        .unwrap();
    store
        .set_role(&acme.id, &alice.id, Role::Contributor)
        .await
        .unwrap();
    store
        .set_role(&other.id, &bob.id, Role::Reader)
        .await
        .unwrap();
    let roles = store.list_roles(&acme.id).await.unwrap();
    let summary: Vec<_> = roles
        .iter()
        .map(|r| (r.user_name.as_str(), r.role, r.tenant_id == acme.id))
        .collect();
    assert_eq!(
        summary,
        [
            ("alice", Role::Contributor, true),
            ("bob", Role::Administrator, true)
        ]
    );
    let principal = store
        .principal_by_token_hash(&token)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(principal.role_in(&acme.id), Some(Role::Administrator));
    assert_eq!(principal.role_in(&other.id), Some(Role::Reader));
    assert_eq!(principal.role_in("elsewhere"), None);
    assert!(Role::Administrator.at_least(Role::Contributor));
    assert!(!Role::Reader.at_least(Role::Contributor));
    for role in [Role::Administrator, Role::Contributor, Role::Reader] {
        assert_eq!(Role::parse(role.as_str()), Some(role));
    }

    assert!(store.remove_role(&acme.id, &bob.id).await.unwrap());
    assert!(!store.remove_role(&acme.id, &bob.id).await.unwrap());
    assert_eq!(store.list_roles(&acme.id).await.unwrap().len(), 1);
    assert_not_found(
        "role in unknown tenant",
        store
            .set_role("no-such-tenant", &bob.id, Role::Reader)
            .await,
    );
    assert_not_found(
        "role for unknown user",
        store.set_role(&acme.id, "no-such-user", Role::Reader).await,
    );

    // A revoked token no longer authenticates.
    assert_eq!(store.revoke_tokens(&bob.id, "laptop").await.unwrap(), 1);
    assert_eq!(store.principal_by_token_hash(&token).await.unwrap(), None);
});

both!(product_creates_default_groups, |db| {
    let store = db.connect().await;
    let acme = store.create_tenant("acme").await.unwrap();
    let (product, groups) = store
        .create_product(&acme.id, "thermostat", "a smart thermostat")
        .await
        .unwrap();
    assert_eq!(product.name, "thermostat");
    assert_eq!(product.description, "a smart thermostat");
    let shape: Vec<_> = groups
        .iter()
        .map(|g| {
            (
                g.name.as_str(),
                g.update_policy,
                g.runtime_feed,
                g.rollout_percent,
            )
        })
        .collect();
    assert_eq!(
        shape,
        [
            (
                "Development",
                UpdatePolicy::NoAppUpdates,
                RuntimeFeed::Stable,
                100
            ),
            (
                "Field Test",
                UpdatePolicy::AcceptAll,
                RuntimeFeed::Stable,
                100
            ),
            (
                "Production",
                UpdatePolicy::AcceptAll,
                RuntimeFeed::Stable,
                100
            ),
            (
                "Field Test Evaluation",
                UpdatePolicy::AcceptAll,
                RuntimeFeed::Evaluation,
                100
            ),
            (
                "Production Evaluation",
                UpdatePolicy::AcceptAll,
                RuntimeFeed::Evaluation,
                100
            ),
        ]
    );
    assert!(groups
        .iter()
        .all(|g| g.product_id == product.id && g.tenant_id == acme.id));
    // As stored, too.
    let stored = store
        .list_groups(&acme.id, Some(&product.id))
        .await
        .unwrap();
    let mut expected = groups.clone();
    expected.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(stored, expected);
    assert_eq!(store.product(&acme.id, &product.id).await.unwrap(), product);
    assert_eq!(store.list_products(&acme.id).await.unwrap(), vec![product]);

    assert_conflict(
        "duplicate product name",
        store.create_product(&acme.id, "thermostat", "").await,
    );
    assert_not_found(
        "product in unknown tenant",
        store.create_product("no-such-tenant", "x", "").await,
    );
    // The refused creations left nothing behind.
    assert_eq!(store.list_groups(&acme.id, None).await.unwrap().len(), 5);
});

both!(
    delete_product_refused_while_a_device_is_in_its_groups,
    |db| {
        let store = db.connect().await;
        let acme = store.create_tenant("acme").await.unwrap();
        let (product, groups) = store.create_product(&acme.id, "p", "").await.unwrap();
        let device = store.claim_device(&acme.id, new_device(1)).await.unwrap();
        store
            .assign_device(&acme.id, &device.id, &groups[2].id)
            .await
            .unwrap();
        assert_conflict(
            "delete with assigned device",
            store.delete_product(&acme.id, &product.id).await,
        );
        assert_eq!(store.list_groups(&acme.id, None).await.unwrap().len(), 5);

        store.unassign_device(&acme.id, &device.id).await.unwrap();
        store.delete_product(&acme.id, &product.id).await.unwrap();
        assert_not_found(
            "deleted product",
            store.product(&acme.id, &product.id).await,
        );
        assert_not_found("its group", store.group(&acme.id, &groups[0].id).await);
        assert!(store.list_groups(&acme.id, None).await.unwrap().is_empty());
        assert_not_found(
            "delete twice",
            store.delete_product(&acme.id, &product.id).await,
        );
    }
);

both!(group_crud, |db| {
    let store = db.connect().await;
    let acme = store.create_tenant("acme").await.unwrap();
    let (product, _) = store.create_product(&acme.id, "p", "").await.unwrap();
    let mut new = NewGroup::named("Canary");
    new.rollout_percent = 10;
    new.description = "first wave".to_owned();
    let canary = store
        .create_group(&acme.id, &product.id, new.clone())
        .await
        .unwrap();
    assert_eq!(canary.rollout_percent, 10);
    assert_eq!(store.group(&acme.id, &canary.id).await.unwrap(), canary);
    assert_conflict(
        "duplicate group name",
        store.create_group(&acme.id, &product.id, new.clone()).await,
    );
    assert_not_found(
        "group of unknown product",
        store
            .create_group(&acme.id, "no-such-product", NewGroup::named("x"))
            .await,
    );
    let mut bad = NewGroup::named("Bad");
    bad.rollout_percent = 101;
    assert!(matches!(
        store.create_group(&acme.id, &product.id, bad).await,
        Err(StoreError::Invalid(_))
    ));

    // Partial update: only the given fields change.
    let updated = store
        .update_group(
            &acme.id,
            &canary.id,
            GroupUpdate {
                runtime_feed: Some(RuntimeFeed::Evaluation),
                rollout_percent: Some(0),
                ..GroupUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.runtime_feed, RuntimeFeed::Evaluation);
    assert_eq!(updated.rollout_percent, 0);
    assert_eq!(updated.name, "Canary");
    assert_eq!(updated.description, "first wave");
    assert_eq!(updated.update_policy, UpdatePolicy::AcceptAll);
    let renamed = store
        .update_group(
            &acme.id,
            &canary.id,
            GroupUpdate {
                name: Some("Wave 1".to_owned()),
                update_policy: Some(UpdatePolicy::NoAppUpdates),
                ..GroupUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(renamed.name, "Wave 1");
    assert_eq!(renamed.update_policy, UpdatePolicy::NoAppUpdates);
    assert_eq!(renamed.runtime_feed, RuntimeFeed::Evaluation);
    assert!(!renamed.crash_details, "crash details are off by default");
    let detailed = store
        .update_group(
            &acme.id,
            &canary.id,
            GroupUpdate {
                crash_details: Some(true),
                ..GroupUpdate::default()
            },
        )
        .await
        .unwrap();
    assert!(detailed.crash_details);
    assert_eq!(detailed.name, "Wave 1", "other fields are kept");
    assert!(
        store
            .group(&acme.id, &canary.id)
            .await
            .unwrap()
            .crash_details
    );
    assert_conflict(
        "rename onto an existing name",
        store
            .update_group(
                &acme.id,
                &canary.id,
                GroupUpdate {
                    name: Some("Production".to_owned()),
                    ..GroupUpdate::default()
                },
            )
            .await,
    );
    assert!(matches!(
        store
            .update_group(
                &acme.id,
                &canary.id,
                GroupUpdate {
                    rollout_percent: Some(200),
                    ..GroupUpdate::default()
                },
            )
            .await,
        Err(StoreError::Invalid(_))
    ));
    assert_not_found(
        "update unknown group",
        store
            .update_group(&acme.id, "no-such-group", GroupUpdate::default())
            .await,
    );

    // Delete is refused while a device is assigned.
    let device = store.claim_device(&acme.id, new_device(1)).await.unwrap();
    store
        .assign_device(&acme.id, &device.id, &canary.id)
        .await
        .unwrap();
    assert_eq!(
        store
            .count_devices(&acme.id, Some(&canary.id))
            .await
            .unwrap(),
        1
    );
    assert_conflict(
        "delete group with device",
        store.delete_group(&acme.id, &canary.id).await,
    );
    store.unassign_device(&acme.id, &device.id).await.unwrap();
    store.delete_group(&acme.id, &canary.id).await.unwrap();
    assert_not_found("deleted group", store.group(&acme.id, &canary.id).await);
    assert_not_found(
        "delete twice",
        store.delete_group(&acme.id, &canary.id).await,
    );
    assert_eq!(
        store
            .list_groups(&acme.id, Some(&product.id))
            .await
            .unwrap()
            .len(),
        5
    );
});

both!(manufacturer_cas, |db| {
    let store = db.connect().await;
    let fp = "cd".repeat(32);
    let ca = store
        .add_manufacturer_ca(
            &fp,
            "CN=Acme Silicon",
            &[0x30, 0x82, 0x00, 0x01],
            CaKind::Endorsement,
        )
        .await
        .unwrap();
    assert_conflict(
        "same CA twice, even as another kind",
        store
            .add_manufacturer_ca(&fp, "CN=x", &[1], CaKind::Tpm)
            .await,
    );
    let tpm_fp = "ef".repeat(32);
    let tpm = store
        .add_manufacturer_ca(&tpm_fp, "CN=TPM maker", &[2], CaKind::Tpm)
        .await
        .unwrap();
    assert_eq!(tpm.kind, CaKind::Tpm);
    assert_eq!(store.list_manufacturer_cas().await.unwrap(), vec![ca, tpm]);
    assert!(store.remove_manufacturer_ca(&fp).await.unwrap());
    assert!(!store.remove_manufacturer_ca(&fp).await.unwrap());
    assert!(store.remove_manufacturer_ca(&tpm_fp).await.unwrap());
    assert!(store.list_manufacturer_cas().await.unwrap().is_empty());
});

both!(claims_are_exclusive, |db| {
    let store = db.connect().await;
    let acme = store.create_tenant("acme").await.unwrap();
    let rival = store.create_tenant("rival").await.unwrap();
    let device = store.claim_device(&acme.id, new_device(42)).await.unwrap();
    assert_eq!(device.mode, DeviceMode::Field);
    assert_eq!(device.group_id, None);
    assert_eq!(device.revoked_at, None);
    assert_eq!(store.device(&acme.id, &device.id).await.unwrap(), device);
    assert_conflict(
        "claim again by the same tenant",
        store.claim_device(&acme.id, new_device(42)).await,
    );
    assert_conflict(
        "claim by another tenant",
        store.claim_device(&rival.id, new_device(42)).await,
    );
    assert_not_found(
        "claim for unknown tenant",
        store.claim_device("no-such-tenant", new_device(43)).await,
    );
    assert_not_found(
        "rival sees nothing",
        store.device(&rival.id, &device.id).await,
    );
    let held = store.device_by_id(&device.id).await.unwrap().unwrap();
    assert_eq!(held.tenant_id, acme.id);

    // Two replicas racing for one device: exactly one wins.
    let other = db.connect().await;
    let (a, b) = tokio::join!(
        store.claim_device(&acme.id, new_device(7)),
        other.claim_device(&rival.id, new_device(7)),
    );
    assert_eq!(u8::from(a.is_ok()) + u8::from(b.is_ok()), 1, "{a:?} {b:?}");

    // Mode, revocation, last seen.
    let dev = store
        .set_device_mode(&acme.id, &device.id, DeviceMode::Development)
        .await
        .unwrap();
    assert_eq!(dev.mode, DeviceMode::Development);
    let revoked = store.revoke_device(&acme.id, &device.id).await.unwrap();
    let at = revoked.revoked_at.unwrap();
    let again = store.revoke_device(&acme.id, &device.id).await.unwrap();
    assert_eq!(again.revoked_at, Some(at));
    store
        .mark_device_seen(&acme.id, &device.id, 1_700_000_000_000)
        .await
        .unwrap();
    let seen = store.device(&acme.id, &device.id).await.unwrap();
    assert_eq!(seen.last_seen, Some(1_700_000_000_000));
    assert_eq!(seen.public_key_der, new_device(42).public_key_der);
    assert_eq!(seen.endorsement_der, new_device(42).endorsement_der);
});

both!(tenant_isolation_at_the_storage_layer, |db| {
    let store = db.connect().await;
    let a = store.create_tenant("a").await.unwrap();
    let b = store.create_tenant("b").await.unwrap();
    let c = store.create_tenant("c").await.unwrap();
    let (product, groups) = store.create_product(&a.id, "p", "").await.unwrap();
    let group = &groups[0];
    let device = store.claim_device(&a.id, new_device(1)).await.unwrap();
    store
        .assign_device(&a.id, &device.id, &group.id)
        .await
        .unwrap();
    let key = store
        .add_signing_key(&a.id, "k1", "release", &[1, 2, 3])
        .await
        .unwrap();
    let image = store
        .add_image(&a.id, new_image("aa11", "k1"))
        .await
        .unwrap();
    let transfer = store
        .request_transfer(&a.id, &device.id, &c.id, "alice")
        .await
        .unwrap();
    // B's own objects, to test cross-linking.
    let b_device = store.claim_device(&b.id, new_device(2)).await.unwrap();
    let (_, b_groups) = store.create_product(&b.id, "q", "").await.unwrap();

    // Tenant B asks for each of A's objects by id.
    let b_id = b.id.as_str();
    let checks: Vec<(&str, Result<(), StoreError>)> = vec![
        ("device", store.device(b_id, &device.id).await.map(drop)),
        ("product", store.product(b_id, &product.id).await.map(drop)),
        ("group", store.group(b_id, &group.id).await.map(drop)),
        ("image", store.image(b_id, &image.id).await.map(drop)),
        (
            "signing key",
            store.signing_key(b_id, &key.key_id).await.map(drop),
        ),
        (
            "transfer",
            store.transfer(b_id, &transfer.id).await.map(drop),
        ),
        (
            "assign A's device",
            store
                .assign_device(b_id, &device.id, &b_groups[0].id)
                .await
                .map(drop),
        ),
        (
            "assign B's device to A's group",
            store
                .assign_device(b_id, &b_device.id, &group.id)
                .await
                .map(drop),
        ),
        (
            "set mode",
            store
                .set_device_mode(b_id, &device.id, DeviceMode::Development)
                .await
                .map(drop),
        ),
        (
            "revoke device",
            store.revoke_device(b_id, &device.id).await.map(drop),
        ),
        (
            "mark seen",
            store.mark_device_seen(b_id, &device.id, 1).await,
        ),
        (
            "update group",
            store
                .update_group(b_id, &group.id, GroupUpdate::default())
                .await
                .map(drop),
        ),
        ("delete group", store.delete_group(b_id, &group.id).await),
        (
            "delete product",
            store.delete_product(b_id, &product.id).await,
        ),
        (
            "group in A's product",
            store
                .create_group(b_id, &product.id, NewGroup::named("sneaky"))
                .await
                .map(drop),
        ),
        (
            "revoke signing key",
            store.revoke_signing_key(b_id, &key.key_id).await.map(drop),
        ),
        (
            "image signed by A's key",
            store
                .add_image(b_id, new_image("bb22", "k1"))
                .await
                .map(drop),
        ),
        (
            "transfer A's device",
            store
                .request_transfer(b_id, &device.id, &c.id, "mallory")
                .await
                .map(drop),
        ),
        (
            "cancel A's transfer",
            store
                .cancel_transfer(b_id, &transfer.id, "mallory")
                .await
                .map(drop),
        ),
        (
            "accept A's transfer",
            store
                .accept_transfer(b_id, &transfer.id, "mallory")
                .await
                .map(drop),
        ),
    ];
    for (what, result) in checks {
        assert_not_found(what, result);
    }
    // Listings show B only its own.
    let everything = Page::first(1000);
    let b_devices = store.list_devices(b_id, None, &everything).await.unwrap();
    assert_eq!(b_devices.len(), 1);
    assert_eq!(b_devices[0].id, b_device.id);
    assert!(store
        .list_devices(b_id, Some(&group.id), &everything)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.count_devices(b_id, Some(&group.id)).await.unwrap(), 0);
    assert_eq!(store.list_products(b_id).await.unwrap().len(), 1);
    assert!(store
        .list_groups(b_id, Some(&product.id))
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .list_images(b_id, &everything)
        .await
        .unwrap()
        .is_empty());
    assert!(store.list_signing_keys(b_id).await.unwrap().is_empty());
    assert!(store.list_transfers(b_id).await.unwrap().is_empty());
    assert!(store.list_roles(b_id).await.unwrap().is_empty());

    // And A's objects are untouched.
    let dev = store.device(&a.id, &device.id).await.unwrap();
    assert_eq!(dev.mode, DeviceMode::Field);
    assert_eq!(dev.revoked_at, None);
    assert_eq!(dev.group_id.as_deref(), Some(group.id.as_str()));
    assert_eq!(
        store.transfer(&a.id, &transfer.id).await.unwrap().status,
        TransferStatus::Pending
    );
});

both!(keyset_pagination_over_many_devices, |db| {
    const N: u64 = 2500;
    let store = db.connect().await;
    let acme = store.create_tenant("acme").await.unwrap();
    let other = store.create_tenant("other").await.unwrap();
    let (_, groups) = store.create_product(&acme.id, "p", "").await.unwrap();
    let group_id = groups[1].id.clone();

    // Claim in a scrambled order from 4 tasks; every 10th device joins a group.
    let mut tasks = Vec::new();
    for worker in 0..4u64 {
        let store = store.clone();
        let tenant = acme.id.clone();
        let group_id = group_id.clone();
        tasks.push(tokio::spawn(async move {
            for i in (worker..N).step_by(4) {
                let n = (i * 7919) % N; // a permutation of 0..N
                let d = store.claim_device(&tenant, new_device(n)).await.unwrap();
                if n % 10 == 0 {
                    store
                        .assign_device(&tenant, &d.id, &group_id)
                        .await
                        .unwrap();
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    for n in N..N + 30 {
        store.claim_device(&other.id, new_device(n)).await.unwrap();
    }
    assert_eq!(store.count_devices(&acme.id, None).await.unwrap(), N);
    assert_eq!(
        store
            .count_devices(&acme.id, Some(&group_id))
            .await
            .unwrap(),
        N / 10
    );
    assert_eq!(store.count_devices(&other.id, None).await.unwrap(), 30);

    for (group, limit, expected) in [
        (None, 1000, N),
        (None, 333, N),
        (Some(group_id.as_str()), 7, N / 10),
    ] {
        let mut seen = Vec::new();
        let mut page = Page::first(limit);
        loop {
            let batch = store.list_devices(&acme.id, group, &page).await.unwrap();
            assert!(batch.len() <= limit as usize);
            let Some(last) = batch.last() else { break };
            page = Page::after(last.id.clone(), limit);
            seen.extend(batch.into_iter().map(|d| d.id));
        }
        assert_eq!(seen.len() as u64, expected);
        let mut sorted = seen.clone();
        sorted.sort();
        assert_eq!(seen, sorted, "pages come in id order");
        let unique: BTreeSet<_> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len(), "each device exactly once");
    }
    // Out-of-range limits are clamped, not refused.
    assert_eq!(
        store
            .list_devices(&acme.id, None, &Page::first(0))
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        store
            .list_devices(&acme.id, None, &Page::first(u32::MAX))
            .await
            .unwrap()
            .len(),
        1000
    );
});

both!(transfers, |db| {
    let store = db.connect().await;
    let a = store.create_tenant("a").await.unwrap();
    let b = store.create_tenant("b").await.unwrap();
    let c = store.create_tenant("c").await.unwrap();
    let (_, groups) = store.create_product(&a.id, "p", "").await.unwrap();
    let device = store.claim_device(&a.id, new_device(5)).await.unwrap();
    store
        .assign_device(&a.id, &device.id, &groups[0].id)
        .await
        .unwrap();
    store
        .set_device_mode(&a.id, &device.id, DeviceMode::Development)
        .await
        .unwrap();

    assert!(matches!(
        store
            .request_transfer(&a.id, &device.id, &a.id, "alice")
            .await,
        Err(StoreError::Invalid(_))
    ));
    assert_not_found(
        "to an unknown tenant",
        store
            .request_transfer(&a.id, &device.id, "no-such-tenant", "alice")
            .await,
    );
    let t = store
        .request_transfer(&a.id, &device.id, &b.id, "alice")
        .await
        .unwrap();
    assert_eq!(t.status, TransferStatus::Pending);
    assert_eq!(
        (t.from_tenant.as_str(), t.to_tenant.as_str()),
        (a.id.as_str(), b.id.as_str())
    );
    assert_conflict(
        "second pending transfer",
        store
            .request_transfer(&a.id, &device.id, &c.id, "alice")
            .await,
    );
    assert_eq!(store.transfer(&b.id, &t.id).await.unwrap(), t);
    assert_eq!(store.list_transfers(&a.id).await.unwrap(), vec![t.clone()]);
    assert_eq!(store.list_transfers(&b.id).await.unwrap(), vec![t.clone()]);

    // Only the destination accepts.
    assert!(matches!(
        store.accept_transfer(&a.id, &t.id, "alice").await,
        Err(StoreError::Invalid(_))
    ));
    assert_not_found(
        "third tenant accepts",
        store.accept_transfer(&c.id, &t.id, "carol").await,
    );
    let done = store.accept_transfer(&b.id, &t.id, "bob").await.unwrap();
    assert_eq!(done.status, TransferStatus::Completed);
    assert_eq!(done.decided_by.as_deref(), Some("bob"));
    assert!(done.decided_at.is_some());
    let moved = store.device(&b.id, &device.id).await.unwrap();
    assert_eq!(moved.tenant_id, b.id);
    assert_eq!(moved.group_id, None);
    assert_eq!(moved.mode, DeviceMode::Field);
    assert_not_found("source lost it", store.device(&a.id, &device.id).await);
    assert_conflict(
        "accept twice",
        store.accept_transfer(&b.id, &t.id, "bob").await,
    );
    assert_conflict(
        "cancel after accept",
        store.cancel_transfer(&b.id, &t.id, "bob").await,
    );

    // Back again, cancelled by the destination this time; then accept fails.
    let back = store
        .request_transfer(&b.id, &device.id, &a.id, "bob")
        .await
        .unwrap();
    let cancelled = store
        .cancel_transfer(&a.id, &back.id, "alice")
        .await
        .unwrap();
    assert_eq!(cancelled.status, TransferStatus::Cancelled);
    assert_conflict(
        "accept after cancel",
        store.accept_transfer(&a.id, &back.id, "alice").await,
    );
    assert_eq!(
        store.device(&b.id, &device.id).await.unwrap().tenant_id,
        b.id
    );
    // A new request is allowed once nothing is pending.
    let again = store
        .request_transfer(&b.id, &device.id, &c.id, "bob")
        .await
        .unwrap();
    store
        .cancel_transfer(&b.id, &again.id, "bob")
        .await
        .unwrap();
    assert_eq!(store.list_transfers(&b.id).await.unwrap().len(), 3);
    assert_eq!(store.list_transfers(&a.id).await.unwrap().len(), 2);

    // Two accepts racing: exactly one moves the device.
    let t2 = store
        .request_transfer(&b.id, &device.id, &c.id, "bob")
        .await
        .unwrap();
    let other = db.connect().await;
    let (x, y) = tokio::join!(
        store.accept_transfer(&c.id, &t2.id, "carol"),
        other.accept_transfer(&c.id, &t2.id, "carol"),
    );
    assert_eq!(u8::from(x.is_ok()) + u8::from(y.is_ok()), 1, "{x:?} {y:?}");
    assert_eq!(
        store.device(&c.id, &device.id).await.unwrap().tenant_id,
        c.id
    );
});

both!(signing_keys_and_images, |db| {
    let store = db.connect().await;
    let a = store.create_tenant("a").await.unwrap();
    let b = store.create_tenant("b").await.unwrap();
    let key = store
        .add_signing_key(&a.id, "0a1b", "release", &[0x30, 0x2a, 0x00])
        .await
        .unwrap();
    assert_eq!(key.revoked_at, None);
    assert_conflict(
        "same key id twice",
        store.add_signing_key(&a.id, "0a1b", "again", &[1]).await,
    );
    // Another tenant may register the same key id.
    store
        .add_signing_key(&b.id, "0a1b", "theirs", &[2])
        .await
        .unwrap();
    assert_eq!(
        store.list_signing_keys(&a.id).await.unwrap(),
        vec![key.clone()]
    );
    assert_eq!(store.signing_key(&a.id, "0a1b").await.unwrap(), key);

    let image = store
        .add_image(&a.id, new_image("0001", "0a1b"))
        .await
        .unwrap();
    assert_eq!(image.tenant_id, a.id);
    assert_eq!(store.image(&a.id, "0001").await.unwrap(), image);
    assert_conflict(
        "same image twice",
        store.add_image(&a.id, new_image("0001", "0a1b")).await,
    );
    // The same package may be uploaded by another tenant.
    store
        .add_image(&b.id, new_image("0001", "0a1b"))
        .await
        .unwrap();
    assert_not_found(
        "image signed by an unknown key",
        store.add_image(&a.id, new_image("0002", "ffff")).await,
    );
    for n in 2..=9 {
        store
            .add_image(&a.id, new_image(&format!("{n:04}"), "0a1b"))
            .await
            .unwrap();
    }
    let first = store.list_images(&a.id, &Page::first(5)).await.unwrap();
    let ids: Vec<_> = first.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, ["0001", "0002", "0003", "0004", "0005"]);
    let rest = store
        .list_images(&a.id, &Page::after("0005", 5))
        .await
        .unwrap();
    let ids: Vec<_> = rest.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, ["0006", "0007", "0008", "0009"]);

    let revoked = store.revoke_signing_key(&a.id, "0a1b").await.unwrap();
    let at = revoked.revoked_at.unwrap();
    assert_eq!(
        store
            .revoke_signing_key(&a.id, "0a1b")
            .await
            .unwrap()
            .revoked_at,
        Some(at)
    );
    assert_eq!(
        store.signing_key(&b.id, "0a1b").await.unwrap().revoked_at,
        None
    );
    assert_not_found("unknown key", store.revoke_signing_key(&a.id, "dead").await);
});

both!(audit_chain_detects_tampering, |db| {
    let store = db.connect().await;
    let empty = store.verify_audit().await.unwrap();
    assert_eq!(empty.entries, 0);
    assert!(empty.is_ok());
    assert_eq!(store.audit_head().await.unwrap(), None);

    for i in 1..=12 {
        let tenant = if i % 2 == 0 { Some("t-even") } else { None };
        let actor = if i % 3 == 0 { "bob" } else { "alice" };
        let mut entry = audit(actor, tenant, "device.claim", &format!("device-{i}"));
        if i == 4 {
            entry.outcome = AuditOutcome::Denied;
        }
        let stored = store.append_audit(entry).await.unwrap();
        assert_eq!(stored.seq, i);
        assert_eq!(stored.computed_hash(), stored.hash);
    }
    let all = store.list_audit(&AuditFilter::default()).await.unwrap();
    assert_eq!(all.len(), 12);
    assert_eq!(all[0].prev_hash, sevenfold_service::store::GENESIS_HASH);
    for pair in all.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash);
        assert_eq!(pair[1].seq, pair[0].seq + 1);
    }
    assert_eq!(all[3].outcome, AuditOutcome::Denied);
    assert_eq!(
        store.audit_head().await.unwrap(),
        Some((12, all[11].hash.clone()))
    );
    let ok = store.verify_audit().await.unwrap();
    assert_eq!((ok.entries, ok.first_broken), (12, None));

    // Filters and paging.
    let even = store
        .list_audit(&AuditFilter {
            tenant_id: Some("t-even".to_owned()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        even.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [2, 4, 6, 8, 10, 12]
    );
    let bob = store
        .list_audit(&AuditFilter {
            actor: Some("bob".to_owned()),
            after_seq: Some(3),
            limit: 2,
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(bob.iter().map(|e| e.seq).collect::<Vec<_>>(), [6, 9]);
    let since = store
        .list_audit(&AuditFilter {
            since: Some(all[11].at + 1),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert!(since.is_empty());

    let raw = db.raw().await;
    // 1. Alter a field without fixing the hash.
    sqlx::query("UPDATE audit_log SET target = 'device-x' WHERE seq = 5")
        .execute(&raw)
        .await
        .unwrap();
    let v = store.verify_audit().await.unwrap();
    assert_eq!(v.entries, 4);
    let (seq, reason) = v.first_broken.unwrap();
    assert_eq!(seq, 5);
    assert!(reason.contains("entry 5 was altered"), "{reason}");
    sqlx::query("UPDATE audit_log SET target = 'device-5' WHERE seq = 5")
        .execute(&raw)
        .await
        .unwrap();
    assert!(store.verify_audit().await.unwrap().is_ok());

    // 2. Alter a field and recompute that entry's hash: the next one no
    //    longer links.
    let mut forged = all[4].clone();
    forged.target = "device-forged".to_owned();
    let forged_hash = forged.computed_hash();
    sqlx::query("UPDATE audit_log SET target = $1, hash = $2 WHERE seq = 5")
        .bind(&forged.target)
        .bind(&forged_hash)
        .execute(&raw)
        .await
        .unwrap();
    let (seq, reason) = store.verify_audit().await.unwrap().first_broken.unwrap();
    assert_eq!(seq, 6);
    assert!(
        reason.contains("entry 6 does not link to entry 5"),
        "{reason}"
    );
    sqlx::query("UPDATE audit_log SET target = $1, hash = $2 WHERE seq = 5")
        .bind(&all[4].target)
        .bind(&all[4].hash)
        .execute(&raw)
        .await
        .unwrap();
    assert!(store.verify_audit().await.unwrap().is_ok());

    // 3. Tamper with the outcome (an undecodable value is still reported,
    //    not an error).
    sqlx::query("UPDATE audit_log SET outcome = 'ok' WHERE seq = 4")
        .execute(&raw)
        .await
        .unwrap();
    let (seq, _) = store.verify_audit().await.unwrap().first_broken.unwrap();
    assert_eq!(seq, 4);
    sqlx::query("UPDATE audit_log SET outcome = 'denied' WHERE seq = 4")
        .execute(&raw)
        .await
        .unwrap();

    // 4. Remove a middle entry.
    sqlx::query("DELETE FROM audit_log WHERE seq = 7")
        .execute(&raw)
        .await
        .unwrap();
    let v = store.verify_audit().await.unwrap();
    assert_eq!(v.entries, 6);
    let (seq, reason) = v.first_broken.unwrap();
    assert_eq!(seq, 7);
    assert!(reason.contains("entry 7 is missing"), "{reason}");

    // 5. Remove the first entry.
    sqlx::query("DELETE FROM audit_log WHERE seq = 1")
        .execute(&raw)
        .await
        .unwrap();
    let (seq, reason) = store.verify_audit().await.unwrap().first_broken.unwrap();
    assert_eq!(seq, 1);
    assert!(reason.contains("entry 1 is missing"), "{reason}");
    raw.close().await;
});

both!(audit_tail_truncation_is_detected, |db| {
    let store = db.connect().await;
    for i in 0..5 {
        store
            .append_audit(audit("alice", None, "tenant.create", &format!("t{i}")))
            .await
            .unwrap();
    }
    let raw = db.raw().await;
    sqlx::query("DELETE FROM audit_log WHERE seq >= 4")
        .execute(&raw)
        .await
        .unwrap();
    let v = store.verify_audit().await.unwrap();
    assert_eq!(v.entries, 3);
    let (seq, reason) = v.first_broken.unwrap();
    assert_eq!(seq, 4);
    assert!(reason.contains("entry 4 is missing"), "{reason}");
    raw.close().await;
});

both!(
    audit_concurrent_appends_from_two_stores_keep_one_chain,
    |db| {
        const TASKS: usize = 8;
        const PER_TASK: usize = 25;
        let stores = [db.connect().await, db.connect().await];
        let mut handles = Vec::new();
        for task in 0..TASKS {
            let store = stores[task % 2].clone();
            handles.push(tokio::spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..PER_TASK {
                    let entry = store
                        .append_audit(audit(
                            &format!("task-{task}"),
                            Some("t"),
                            "device.assign",
                            &format!("{task}-{i}"),
                        ))
                        .await
                        .unwrap();
                    seqs.push(entry.seq);
                }
                seqs
            }));
        }
        let mut seqs = Vec::new();
        for handle in handles {
            seqs.extend(handle.await.unwrap());
        }
        seqs.sort_unstable();
        let expected: Vec<i64> = (1..=(TASKS * PER_TASK) as i64).collect();
        assert_eq!(seqs, expected, "every append got its own position, no gaps");
        let v = stores[1].verify_audit().await.unwrap();
        assert_eq!(v.first_broken, None);
        assert_eq!(v.entries, (TASKS * PER_TASK) as u64);
        // Listing pages through all of them.
        let mut after = None;
        let mut listed = 0;
        loop {
            let page = stores[0]
                .list_audit(&AuditFilter {
                    after_seq: after,
                    limit: 64,
                    ..AuditFilter::default()
                })
                .await
                .unwrap();
            let Some(last) = page.last() else { break };
            after = Some(last.seq);
            listed += page.len();
        }
        assert_eq!(listed, TASKS * PER_TASK);
    }
);

both!(
    audit_primary_key_prevents_forks_without_the_head_lock,
    |db| {
        // The head row serialises appenders; without it (deleted by hand), the
        // seq primary key and the retry still keep one unforked chain.
        let stores = [db.connect().await, db.connect().await];
        let raw = db.raw().await;
        sqlx::query("DELETE FROM audit_head")
            .execute(&raw)
            .await
            .unwrap();
        let mut handles = Vec::new();
        for task in 0..6 {
            let store = stores[task % 2].clone();
            handles.push(tokio::spawn(async move {
                for i in 0..10 {
                    store
                        .append_audit(audit("a", None, "x", &format!("{task}-{i}")))
                        .await
                        .unwrap();
                }
            }));
        }
        for handle in handles {
            handle.await.unwrap();
        }
        let v = stores[0].verify_audit().await.unwrap();
        assert_eq!(v.entries, 60);
        let (seq, reason) = v.first_broken.unwrap();
        assert_eq!(seq, 61);
        assert!(reason.contains("head record is missing"), "{reason}");
        raw.close().await;
    }
);

#[test]
fn database_url_rewriting() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/test", "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(
        with_database("postgres://u:p@h/db?sslmode=disable", "x"),
        "postgres://u:p@h/x?sslmode=disable"
    );
    assert_eq!(with_database("postgres://h:1", "x"), "postgres://h:1/x");
}

#[test]
fn backend_from_url() {
    assert_eq!(Backend::from_url("sqlite://a.db").unwrap(), Backend::Sqlite);
    assert_eq!(
        Backend::from_url("postgresql://h/db").unwrap(),
        Backend::Postgres
    );
    assert!(matches!(
        Backend::from_url("mysql://h/db"),
        Err(StoreError::Invalid(_))
    ));
}
