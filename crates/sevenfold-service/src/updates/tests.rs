//! A group's repository, exported the way the device API serves it, walked
//! by `tough`'s own `RepositoryLoader` over plain files: a standard TUF
//! client accepts it, and refuses a substituted target and an expired
//! timestamp.

use std::path::Path;

use sevenfold_core::update::TargetCustom;
use sevenfold_pki::KeyWrap;
use tough::{RepositoryLoader, TargetName};

use super::repo::{publish, Expiry};
use crate::store::{DeploymentImage, NewDeployment, NewImage, Store};

pub(super) struct Fixture {
    pub(super) store: Store,
    pub(super) wrap: KeyWrap,
    pub(super) tenant: String,
    pub(super) group: String,
    pub(super) package: Vec<u8>,
    pub(super) sha256: String,
}

pub(super) async fn fixture() -> Fixture {
    fixture_on(Store::connect("sqlite::memory:", 1).await.unwrap()).await
}

async fn fixture_on(store: Store) -> Fixture {
    let wrap = KeyWrap::new(&[9u8; 32]);
    let name = format!("acme-{}", uuid::Uuid::new_v4().simple());
    let tenant = store.create_tenant(&name).await.unwrap().id;
    let (_, groups) = store.create_product(&tenant, "lamp", "").await.unwrap();
    let group = groups[0].id.clone();
    store
        .add_signing_key(&tenant, "k1", "release", b"spki")
        .await
        .unwrap();
    let package = b"not really a package, but bytes with a hash".repeat(100);
    let sha256 = sevenfold_rot::Digest::of(&package).to_hex();
    let image = store
        .add_image(
            &tenant,
            NewImage {
                id: "ab".repeat(32),
                component_id: "0c7e6b0e-5b38-4a34-a4c4-000000000001".into(),
                name: "blink".into(),
                version: "2.0.0".into(),
                security_version: 3,
                image_type: "Application".into(),
                size: package.len() as i64,
                signer_key_id: "k1".into(),
                blob_key: "images/x/y".into(),
                manifest_json: "{}".into(),
                uploaded_by: "test".into(),
            },
        )
        .await
        .unwrap();
    store
        .create_deployment(
            &tenant,
            NewDeployment {
                group_id: group.clone(),
                images: vec![DeploymentImage {
                    image,
                    file_sha256: sha256.clone(),
                    file_length: package.len() as i64,
                }],
                percent: 50,
                max_failure_percent: 20,
                created_by: "test".into(),
            },
        )
        .await
        .unwrap();
    Fixture {
        store,
        wrap,
        tenant,
        group,
        package,
        sha256,
    }
}

/// Writes the repository as the device API serves it.
pub(super) async fn export(f: &Fixture, dir: &Path) -> Vec<u8> {
    let metadata = dir.join("metadata");
    let targets = dir.join("targets");
    std::fs::create_dir_all(&metadata).unwrap();
    std::fs::create_dir_all(&targets).unwrap();
    for role in ["root", "targets", "snapshot", "timestamp"] {
        let latest = f
            .store
            .latest_tuf_metadata(&f.group, role)
            .await
            .unwrap()
            .unwrap();
        for v in 1..=latest.version {
            let r = f
                .store
                .tuf_metadata(&f.group, role, v)
                .await
                .unwrap()
                .unwrap();
            std::fs::write(metadata.join(format!("{v}.{role}.json")), &r.body).unwrap();
        }
        std::fs::write(metadata.join(format!("{role}.json")), &latest.body).unwrap();
    }
    std::fs::write(
        targets.join(format!(
            "{}.0c7e6b0e-5b38-4a34-a4c4-000000000001.imagepackage",
            f.sha256
        )),
        &f.package,
    )
    .unwrap();
    f.store
        .tuf_metadata(&f.group, "root", 1)
        .await
        .unwrap()
        .unwrap()
        .body
}

pub(super) fn url(dir: &Path, sub: &str) -> reqwest::Url {
    reqwest::Url::from_directory_path(dir.join(sub)).unwrap()
}

#[tokio::test]
async fn a_standard_tuf_client_walks_the_group_repository() {
    walk(fixture().await).await;
}

/// The same on PostgreSQL (a fresh database, dropped afterwards), at
/// `SEVENFOLD_TEST_POSTGRES_URL` or the local default; skipped only with
/// `SEVENFOLD_SKIP_POSTGRES=1`.
#[tokio::test]
async fn a_standard_tuf_client_walks_the_group_repository_on_postgres() {
    use sqlx::Connection;
    let admin = std::env::var("SEVENFOLD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let mut conn = match sqlx::postgres::PgConnection::connect(&admin).await {
        Ok(conn) => conn,
        Err(_) if std::env::var("SEVENFOLD_SKIP_POSTGRES").as_deref() == Ok("1") => return,
        Err(e) => panic!("PostgreSQL at {admin} is unreachable: {e}"),
    };
    let name = format!("sevenfold_test_{}", uuid::Uuid::new_v4().simple());
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let url = match admin.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => panic!("{admin}"),
    };
    let store = Store::connect(&url, 2).await.unwrap();
    walk(fixture_on(store.clone()).await).await;
    // Concurrent publishers: versions stay unique and consecutive.
    let f = fixture_on(store.clone()).await;
    let expiry = Expiry::default();
    let (a, b) = tokio::join!(
        publish(&f.store, &f.wrap, &f.tenant, &f.group, &expiry),
        publish(&f.store, &f.wrap, &f.tenant, &f.group, &expiry)
    );
    let mut versions = [a.unwrap().targets_version(), b.unwrap().targets_version()];
    versions.sort_unstable();
    assert_eq!(versions, [1, 2]);
    // Roots signed offline are stored and their keys retired there too.
    super::offline_tests::rotate_offline_twice(fixture_on(store.clone()).await).await;
    store.close().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
}

async fn walk(f: Fixture) {
    let expiry = Expiry::default();
    publish(&f.store, &f.wrap, &f.tenant, &f.group, &expiry)
        .await
        .unwrap();
    // A second publication: versions advance, old ones stay servable.
    let v = publish(&f.store, &f.wrap, &f.tenant, &f.group, &expiry)
        .await
        .unwrap();
    assert_eq!(v, super::repo::Publication::Signed(2));
    let dir = tempfile::tempdir().unwrap();
    let root = export(&f, dir.path()).await;
    let repo = RepositoryLoader::new(
        &root,
        url(dir.path(), "metadata"),
        url(dir.path(), "targets"),
    )
    .load()
    .await
    .unwrap();
    let name = TargetName::new("0c7e6b0e-5b38-4a34-a4c4-000000000001.imagepackage").unwrap();
    let target = repo.targets().signed.targets.get(&name).unwrap();
    let custom: TargetCustom =
        serde_json::from_value(serde_json::to_value(&target.custom).unwrap()).unwrap();
    assert_eq!(custom.version, "2.0.0");
    assert_eq!(custom.security_version, 3);
    assert_eq!(custom.rollout_percent, 50);
    assert!(!custom.halted);
    let bytes = repo.read_target(&name).await.unwrap().unwrap();
    let mut all = Vec::new();
    use futures_util::TryStreamExt;
    let mut bytes = bytes;
    while let Some(chunk) = bytes.try_next().await.unwrap() {
        all.extend_from_slice(&chunk);
    }
    assert_eq!(all, f.package);
}

#[tokio::test]
async fn a_substituted_target_is_refused() {
    let f = fixture().await;
    publish(&f.store, &f.wrap, &f.tenant, &f.group, &Expiry::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = export(&f, dir.path()).await;
    let path = dir.path().join("targets").join(format!(
        "{}.0c7e6b0e-5b38-4a34-a4c4-000000000001.imagepackage",
        f.sha256
    ));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let repo = RepositoryLoader::new(
        &root,
        url(dir.path(), "metadata"),
        url(dir.path(), "targets"),
    )
    .load()
    .await
    .unwrap();
    let name = TargetName::new("0c7e6b0e-5b38-4a34-a4c4-000000000001.imagepackage").unwrap();
    let mut stream = repo.read_target(&name).await.unwrap().unwrap();
    use futures_util::TryStreamExt;
    let mut failed = None;
    loop {
        match stream.try_next().await {
            Ok(Some(_)) => continue,
            Ok(None) => break,
            Err(e) => {
                failed = Some(e.to_string());
                break;
            }
        }
    }
    let failed = failed.expect("the tampered target was accepted");
    assert!(
        failed.contains("hash") || failed.contains("Hash"),
        "{failed}"
    );
}

#[tokio::test]
async fn an_expired_timestamp_is_refused() {
    let f = fixture().await;
    let expired = Expiry {
        timestamp_secs: -60,
        ..Expiry::default()
    };
    publish(&f.store, &f.wrap, &f.tenant, &f.group, &expired)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = export(&f, dir.path()).await;
    let err = RepositoryLoader::new(
        &root,
        url(dir.path(), "metadata"),
        url(dir.path(), "targets"),
    )
    .load()
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("expired"), "{err}");
    // Housekeeping re-signs it, and the repository is usable again.
    assert_eq!(
        super::refresh_expiring(&f.store, &f.wrap, &Expiry::default())
            .await
            .unwrap(),
        1
    );
    let root = export(&f, dir.path()).await;
    RepositoryLoader::new(
        &root,
        url(dir.path(), "metadata"),
        url(dir.path(), "targets"),
    )
    .load()
    .await
    .unwrap();
}

#[tokio::test]
async fn mixed_snapshot_and_targets_versions_are_refused() {
    let f = fixture().await;
    let expiry = Expiry::default();
    publish(&f.store, &f.wrap, &f.tenant, &f.group, &expiry)
        .await
        .unwrap();
    publish(&f.store, &f.wrap, &f.tenant, &f.group, &expiry)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = export(&f, dir.path()).await;
    // Snapshot 2 names targets 2; the mirror serves targets 1 under its name.
    let metadata = dir.path().join("metadata");
    std::fs::copy(
        metadata.join("1.targets.json"),
        metadata.join("2.targets.json"),
    )
    .unwrap();
    let err = RepositoryLoader::new(
        &root,
        url(dir.path(), "metadata"),
        url(dir.path(), "targets"),
    )
    .load()
    .await
    .unwrap_err();
    let text = format!("{err:?}");
    assert!(text.contains("HashMismatch"), "{text}");
}

#[tokio::test]
async fn targets_signed_by_a_key_the_root_does_not_name_are_refused() {
    use std::num::NonZeroU64;
    use tough::editor::signed::SignedRole;
    use tough::schema::{KeyHolder, RoleKeys, RoleType, Targets};

    let f = fixture().await;
    let expiry = Expiry::default();
    publish(&f.store, &f.wrap, &f.tenant, &f.group, &expiry)
        .await
        .unwrap();
    let root = super::repo::current_root(&f.store, &f.group).await.unwrap();
    // An attacker's key, as if the root trusted it.
    let rogue = super::keys::RoleKey::generate().unwrap();
    let rogue_id: tough::schema::decoded::Decoded<tough::schema::decoded::Hex> =
        hex::decode(rogue.key_id()).unwrap().into();
    let mut forged_root = root.clone();
    forged_root
        .keys
        .insert(rogue_id.clone(), rogue.public().clone());
    forged_root.roles.insert(
        RoleType::Targets,
        RoleKeys {
            keyids: vec![rogue_id],
            threshold: NonZeroU64::MIN,
            _extra: Default::default(),
        },
    );
    let v = NonZeroU64::new(2).unwrap();
    let expires = super::repo::expires_in(3600).unwrap();
    let targets = Targets::new(super::repo::SPEC_VERSION.to_owned(), v, expires);
    let signed = SignedRole::new(
        targets,
        &KeyHolder::Root(forged_root),
        &[rogue.source()],
        &aws_lc_rs::rand::SystemRandom::new(),
    )
    .await
    .unwrap();
    let forged = super::repo::record(&f.tenant, &f.group, "targets", &signed, v, expires).unwrap();
    // Snapshot and timestamp are validly signed by the online keys over it.
    let (snapshot, timestamp) =
        super::repo::sign_snapshot_and_timestamp(&f.store, &f.wrap, &root, &forged, &expiry)
            .await
            .unwrap();
    f.store
        .add_tuf_metadata(&[forged, snapshot, timestamp])
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let trusted_root = export(&f, dir.path()).await;
    let err = RepositoryLoader::new(
        &trusted_root,
        url(dir.path(), "metadata"),
        url(dir.path(), "targets"),
    )
    .load()
    .await
    .unwrap_err();
    let text = format!("{err:?}");
    assert!(text.contains("SignatureThreshold"), "{text}");
}

#[tokio::test]
async fn a_client_holding_the_first_root_walks_through_threshold_rotations() {
    let f = fixture().await;
    let expiry = Expiry::default();
    publish(&f.store, &f.wrap, &f.tenant, &f.group, &expiry)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let first_root = export(&f, dir.path()).await;
    let rotated = super::rotate::rotate(
        &f.store, &f.wrap, &f.tenant, &f.group, "root", 3, 2, &expiry,
    )
    .await
    .unwrap();
    assert_eq!((rotated.root_version, rotated.key_ids.len()), (2, 3));
    let rotated = super::rotate::rotate(
        &f.store, &f.wrap, &f.tenant, &f.group, "targets", 2, 2, &expiry,
    )
    .await
    .unwrap();
    assert_eq!(rotated.root_version, 3);
    // Nonsense is refused before anything changes.
    for (role, keys, threshold) in [("snapshot", 1, 1), ("root", 2, 3), ("root", 0, 0)] {
        assert!(super::rotate::rotate(
            &f.store, &f.wrap, &f.tenant, &f.group, role, keys, threshold, &expiry
        )
        .await
        .is_err());
    }
    export(&f, dir.path()).await;
    let repo = RepositoryLoader::new(
        &first_root,
        url(dir.path(), "metadata"),
        url(dir.path(), "targets"),
    )
    .load()
    .await
    .unwrap();
    assert_eq!(repo.root().signed.version.get(), 3);
    assert_eq!(repo.root().signatures.len(), 3);
    assert_eq!(repo.targets().signatures.len(), 2);
    let name = TargetName::new("0c7e6b0e-5b38-4a34-a4c4-000000000001.imagepackage").unwrap();
    assert!(repo.targets().signed.targets.contains_key(&name));
}
