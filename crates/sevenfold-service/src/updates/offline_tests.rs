//! Root and targets keys held by the tenant: drafts signed offline by
//! several key holders, verified by the service at submit, and walked by
//! `tough`'s own client from the group's first root. Every refusal leaves
//! the repository as it was.

use tough::schema::RoleType;
use tough::{RepositoryLoader, TargetName};

use super::keys::RoleKey;
use super::offline::{set_role_keys, NewRoleKeys, RootDraft, Threshold};
use super::repo::{current_signed_root, publish, refresh, Expiry, Publication};
use super::submit::{submit_root, submit_targets, targets_draft, RootAccepted, TargetsAccepted};
use super::tests::{export, fixture, url, Fixture};
use super::UpdateError;
use crate::store::DeploymentStatus;

const TARGET: &str = "0c7e6b0e-5b38-4a34-a4c4-000000000001.imagepackage";

fn keys(n: usize) -> Vec<RoleKey> {
    (0..n).map(|_| RoleKey::generate().unwrap()).collect()
}

fn publics(keys: &[RoleKey], threshold: u64) -> NewRoleKeys {
    NewRoleKeys {
        keys: keys.iter().map(|k| k.public().clone()).collect(),
        threshold,
    }
}

/// A draft of the next root, passed through its file form as it would be
/// between machines.
async fn draft(f: &Fixture, root: &NewRoleKeys, targets: Option<&NewRoleKeys>) -> RootDraft {
    let current = current_signed_root(&f.store, &f.group).await.unwrap();
    let draft = RootDraft::new(&f.group, current, root, targets, 365 * 86_400).unwrap();
    RootDraft::parse(&draft.to_json().unwrap()).unwrap()
}

async fn sign(draft: &mut RootDraft, by: &[&RoleKey]) {
    for key in by {
        draft.sign(key).await.unwrap();
        *draft = RootDraft::parse(&draft.to_json().unwrap()).unwrap();
    }
}

async fn submit(f: &Fixture, draft: &RootDraft) -> Result<RootAccepted, UpdateError> {
    submit_root(
        &f.store,
        &f.wrap,
        &f.tenant,
        &f.group,
        serde_json::to_value(&draft.next).unwrap(),
        &Expiry::default(),
    )
    .await
}

/// The repository's newest root and timestamp, to show nothing changed.
async fn state(f: &Fixture) -> (Vec<u8>, i64, usize) {
    let root = f
        .store
        .latest_tuf_metadata(&f.group, "root")
        .await
        .unwrap()
        .unwrap();
    let timestamp = f
        .store
        .latest_tuf_metadata(&f.group, "timestamp")
        .await
        .unwrap()
        .map_or(0, |t| t.version);
    let held = f
        .store
        .tuf_keys(&f.tenant, &f.group, "root")
        .await
        .unwrap()
        .len();
    (root.body, timestamp, held)
}

fn refusal<T: std::fmt::Debug>(outcome: Result<T, UpdateError>) -> String {
    match outcome {
        Err(UpdateError::Refused(reason)) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Publishes, then takes the root offline to three tenant keys, two of
/// which must sign (the service cross-signs with the root key it held).
/// Returns the tenant's root keys and the group's first root.
async fn take_root_offline(
    f: &Fixture,
    targets: Option<&NewRoleKeys>,
) -> (Vec<RoleKey>, RootAccepted) {
    publish(&f.store, &f.wrap, &f.tenant, &f.group, &Expiry::default())
        .await
        .unwrap();
    let tenant_keys = keys(3);
    let mut d = draft(f, &publics(&tenant_keys, 2), targets).await;
    let signing = d.sign(&tenant_keys[0]).await.unwrap();
    assert_eq!(signing.signed_as, ["new root"]);
    assert_eq!(
        d.progress().new_root,
        Threshold {
            valid: 1,
            threshold: 2
        }
    );
    // The current root key is the service's: no holder can sign with it.
    assert_eq!(d.progress().current_root.valid, 0);
    sign(&mut d, &[&tenant_keys[2]]).await;
    assert!(d.progress().new_root.met());
    let accepted = submit(f, &d).await.unwrap();
    assert_eq!(accepted.root_version, 2);
    assert!(accepted.service_cross_signed);
    (tenant_keys, accepted)
}

async fn load(f: &Fixture, dir: &std::path::Path, trusted: &[u8]) -> tough::Repository {
    export(f, dir).await;
    RepositoryLoader::new(&trusted, url(dir, "metadata"), url(dir, "targets"))
        .load()
        .await
        .unwrap()
}

async fn read_target(repo: &tough::Repository) -> Vec<u8> {
    use futures_util::TryStreamExt;
    let name = TargetName::new(TARGET).unwrap();
    let mut stream = repo.read_target(&name).await.unwrap().unwrap();
    let mut all = Vec::new();
    while let Some(chunk) = stream.try_next().await.unwrap() {
        all.extend_from_slice(&chunk);
    }
    all
}

#[tokio::test]
async fn the_root_goes_offline_with_two_of_three_keys_and_rotates_again_offline() {
    rotate_offline_twice(fixture().await).await;
}

/// Takes the root offline (the service cross-signs), rotates it again with
/// the holders' keys only, and walks the result from root 1. Run on SQLite
/// here and on PostgreSQL by `tests`.
pub(super) async fn rotate_offline_twice(f: Fixture) {
    let dir = tempfile::tempdir().unwrap();
    publish(&f.store, &f.wrap, &f.tenant, &f.group, &Expiry::default())
        .await
        .unwrap();
    let first_root = export(&f, dir.path()).await;
    let (old, accepted) = take_root_offline(&f, None).await;
    assert!(accepted.service_signs_targets);
    assert_eq!(accepted.targets_version, Some(3));
    // The service holds no root key any more and cannot rotate by itself.
    assert_eq!(state(&f).await.2, 0);
    let err = super::rotate::rotate(
        &f.store,
        &f.wrap,
        &f.tenant,
        &f.group,
        "root",
        1,
        1,
        &Expiry::default(),
    )
    .await;
    assert!(refusal(err).contains("held by the tenant"));

    // The next rotation is the tenant's alone: two old and two new keys.
    let new = keys(3);
    let mut d = draft(&f, &publics(&new, 2), None).await;
    sign(&mut d, &[&old[1], &old[2], &new[0], &new[2]]).await;
    let progress = d.progress();
    assert_eq!(
        (progress.current_root.valid, progress.new_root.valid),
        (2, 2)
    );
    let accepted = submit(&f, &d).await.unwrap();
    assert_eq!(accepted.root_version, 3);
    assert!(!accepted.service_cross_signed);

    // A standard client holding root 1 walks 1 → 2 → 3 and installs.
    let repo = load(&f, dir.path(), &first_root).await;
    assert_eq!(repo.root().signed.version.get(), 3);
    assert_eq!(read_target(&repo).await, f.package);
}

/// A change made to a draft before it is signed.
type Edit = Box<dyn FnOnce(&mut RootDraft)>;

/// Drafts the next root, lets `edit` change it, signs it with `by` and
/// submits it: returns the refusal, after checking nothing changed.
async fn refused(
    f: &Fixture,
    next: &NewRoleKeys,
    edit: impl FnOnce(&mut RootDraft),
    by: &[&RoleKey],
) -> String {
    let before = state(f).await;
    let mut d = draft(f, next, None).await;
    edit(&mut d);
    sign(&mut d, by).await;
    let reason = refusal(submit(f, &d).await);
    assert_eq!(state(f).await, before, "{reason}");
    reason
}

#[tokio::test]
async fn offline_roots_are_refused_with_their_reason_and_change_nothing() {
    let f = fixture().await;
    let (old, _) = take_root_offline(&f, None).await;
    let new = keys(3);
    let rogue = RoleKey::generate().unwrap();
    let next = publics(&new, 2);
    let all = [&old[0], &old[1], &new[0], &new[1]];
    let checks: Vec<(Edit, Vec<&RoleKey>, String)> = vec![
        // Below the current root's threshold (one of two old keys).
        (
            Box::new(|_| {}),
            vec![&old[0], &new[0], &new[1]],
            "1 valid signature(s) by the current root's root keys; 2 needed".into(),
        ),
        // Below the new root's own threshold.
        (
            Box::new(|_| {}),
            vec![&old[0], &old[1], &new[0]],
            "1 valid signature(s) by the new root's root keys; 2 needed".into(),
        ),
        // The wrong version, fully signed.
        (
            Box::new(|d| d.next.signed.version = d.next.signed.version.checked_add(1).unwrap()),
            all.to_vec(),
            "version 4; the group's root is version 2, so the next must be 3".into(),
        ),
        // Expired.
        (
            Box::new(|d| d.next.signed.expires = jiff::Timestamp::from_second(1_000_000).unwrap()),
            all.to_vec(),
            "expired".into(),
        ),
        // A threshold above the number of keys.
        (
            Box::new(|d| {
                d.next
                    .signed
                    .roles
                    .get_mut(&RoleType::Root)
                    .unwrap()
                    .threshold = std::num::NonZeroU64::new(4).unwrap();
            }),
            all.to_vec(),
            "root threshold is 4 but the role has only 3 keys".into(),
        ),
    ];
    for (edit, by, expected) in checks {
        let reason = refused(&f, &next, edit, &by).await;
        assert!(reason.contains(&expected), "{reason}");
    }
    // Snapshot or timestamp keys moved away from the service's, fully signed.
    for role in [RoleType::Snapshot, RoleType::Timestamp] {
        let rogue = rogue.public().clone();
        let edit =
            |d: &mut RootDraft| set_role_keys(&mut d.next.signed, role, &[rogue], 1).unwrap();
        let reason = refused(&f, &next, edit, &all).await;
        assert!(
            reason.contains(&format!("changes the {role} keys")),
            "{reason}"
        );
    }
    // A key in neither root cannot sign at all.
    let mut d = draft(&f, &next, None).await;
    let reason = refusal(d.sign(&rogue).await);
    assert!(reason.contains("is not a root key"), "{reason}");
    assert!(d.next.signatures.is_empty());
    // Not a root at all.
    let reason = refusal(
        submit_root(
            &f.store,
            &f.wrap,
            &f.tenant,
            &f.group,
            serde_json::json!({"signed": {"_type": "targets"}, "signatures": []}),
            &Expiry::default(),
        )
        .await,
    );
    assert!(reason.contains("not a signed TUF root"), "{reason}");

    // A draft that was good still is.
    let mut d = draft(&f, &next, None).await;
    sign(&mut d, &all).await;
    assert_eq!(submit(&f, &d).await.unwrap().root_version, 3);
}

async fn submit_t(
    f: &Fixture,
    draft: &super::offline::TargetsDraft,
) -> Result<TargetsAccepted, UpdateError> {
    submit_targets(
        &f.store,
        &f.wrap,
        &f.tenant,
        &f.group,
        serde_json::to_value(&draft.targets).unwrap(),
        &Expiry::default(),
    )
    .await
}

#[tokio::test]
async fn targets_held_by_the_tenant_are_signed_offline_and_published() {
    let f = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    publish(&f.store, &f.wrap, &f.tenant, &f.group, &Expiry::default())
        .await
        .unwrap();
    let first_root = export(&f, dir.path()).await;
    let targets_keys = keys(2);
    let (root_keys, accepted) = take_root_offline(&f, Some(&publics(&targets_keys, 2))).await;
    assert!(!accepted.service_signs_targets);
    assert!(f
        .store
        .tuf_keys(&f.tenant, &f.group, "targets")
        .await
        .unwrap()
        .is_empty());
    // Deployment changes now wait for the tenant's signatures.
    let expiry = Expiry::default();
    assert_eq!(
        publish(&f.store, &f.wrap, &f.tenant, &f.group, &expiry)
            .await
            .unwrap(),
        Publication::AwaitingTargetsSignature(3)
    );

    let mut d = targets_draft(&f.store, &f.wrap, &f.tenant, &f.group, &expiry)
        .await
        .unwrap();
    assert_eq!(d.summary().targets[0].1, f.sha256);
    let reason = refusal(d.sign(&root_keys[0]).await);
    assert!(reason.contains("not a targets key"), "{reason}");
    d.sign(&targets_keys[0]).await.unwrap();
    let reason = refusal(submit_t(&f, &d).await);
    assert!(
        reason.contains("1 valid signature(s) by the root's targets keys; 2 needed"),
        "{reason}"
    );
    // A wrong version, fully signed.
    let mut wrong = d.clone();
    wrong.targets.signed.version = std::num::NonZeroU64::new(7).unwrap();
    wrong.targets.signatures.clear();
    for key in &targets_keys {
        wrong.sign(key).await.unwrap();
    }
    let reason = refusal(submit_t(&f, &wrong).await);
    assert!(
        reason.contains("next targets version of the group is 3"),
        "{reason}"
    );

    d.sign(&targets_keys[1]).await.unwrap();
    assert!(d.progress().met());
    let published = submit_t(&f, &d).await.unwrap();
    assert_eq!(published.targets_version, 3);
    let repo = load(&f, dir.path(), &first_root).await;
    assert_eq!(repo.root().signed.version.get(), 2);
    assert_eq!(repo.targets().signed.version.get(), 3);
    assert_eq!(read_target(&repo).await, f.package);

    // Housekeeping keeps the timestamp fresh without the targets keys.
    let short = Expiry {
        snapshot_secs: 1,
        ..expiry
    };
    refresh(&f.store, &f.wrap, &f.tenant, &f.group, &short)
        .await
        .unwrap();
    let timestamp = f
        .store
        .latest_tuf_metadata(&f.group, "timestamp")
        .await
        .unwrap()
        .unwrap();
    assert!(timestamp.version > published.timestamp_version);
    load(&f, dir.path(), &first_root).await;

    // A draft made before a deployment changed no longer matches.
    let mut stale = targets_draft(&f.store, &f.wrap, &f.tenant, &f.group, &expiry)
        .await
        .unwrap();
    for key in &targets_keys {
        stale.sign(key).await.unwrap();
    }
    let deployment = f
        .store
        .live_deployments(&f.tenant, &f.group)
        .await
        .unwrap()
        .remove(0);
    f.store
        .update_deployment(
            &f.tenant,
            &deployment.id,
            DeploymentStatus::Cancelled,
            50,
            None,
        )
        .await
        .unwrap();
    let reason = refusal(submit_t(&f, &stale).await);
    assert!(reason.contains("deployments are now"), "{reason}");
}
