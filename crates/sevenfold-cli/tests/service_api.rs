//! End-to-end tests of the Security Service's operator API: a real
//! `sevenfold server` process over HTTPS, on SQLite and on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use serde_json::{json, Value};
use sevenfold_core::manifest::AppManifest;
use sevenfold_core::package::write_package;
use sevenfold_pki::ManufacturerCa;
use sevenfold_rot::{KeyAlgorithm, SoftwareKey};
use support::{Api, TestDatabase, TestServer};

/// A server with its administrator.
struct World {
    _dir: tempfile::TempDir,
    /// Kept alive for the test; dropping it stops the server.
    _server: TestServer,
    admin: Api,
}

impl World {
    fn sqlite(env: &[(&str, &str)]) -> World {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(&dir.path().join("data"), None, env);
        World::around(dir, server)
    }

    fn around(dir: tempfile::TempDir, server: TestServer) -> World {
        let token = server
            .bootstrap_token
            .clone()
            .expect("first start prints a bootstrap token");
        let admin = server.client(&token);
        World {
            _dir: dir,
            _server: server,
            admin,
        }
    }

    fn tenant(&self, name: &str) -> String {
        let r = self.admin.post("/api/v1/tenants", json!({"name": name}));
        assert_eq!(r.status, 201, "{r:?}");
        r.body["id"].as_str().unwrap().to_owned()
    }

    /// A user with `role` in `tenant`; returns their client.
    fn user(&self, tenant: &str, name: &str, role: &str) -> Api {
        let r = self.admin.post(
            &format!("/api/v1/tenants/{tenant}/roles"),
            json!({"user": name, "role": role}),
        );
        assert_eq!(r.status, 200, "{r:?}");
        self.admin
            .with_token(r.body["token"].as_str().expect("new user gets a token"))
    }

    fn manufacturer(&self) -> ManufacturerCa {
        let (ca, _files) = ManufacturerCa::generate("Test Silicon", 365).unwrap();
        let r = self.admin.post(
            "/api/v1/manufacturer-cas",
            json!({"certificate_pem": ca.certificate().to_pem()}),
        );
        assert_eq!(r.status, 201, "{r:?}");
        ca
    }
}

/// A device key and its endorsement by `ca`.
fn device(ca: &ManufacturerCa) -> (String, String) {
    let (key, _) = SoftwareKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let id = key.public_key().key_id().to_hex();
    let cert = ca.endorse(key.public_key(), 365).unwrap();
    (id, cert.to_pem())
}

fn claim(api: &Api, tenant: &str, id: &str, pem: &str) -> support::Reply {
    api.post(
        &format!("/api/v1/tenants/{tenant}/devices"),
        json!({"device_id": id, "endorsement_pem": pem}),
    )
}

const MANIFEST: &str = r#"{"SchemaVersion":1,"Name":"blink","ComponentId":"5b9a1c52-3f0b-4a39-9d7e-6f2d1c3e8a10","Version":"1.0.0","SecurityVersion":1,"EntryPoint":"blink.wasm"}"#;

fn package(key: &SoftwareKey) -> Vec<u8> {
    let manifest = AppManifest::from_json(MANIFEST.as_bytes()).unwrap();
    write_package(&manifest, b"\0asm\x01\0\0\0 sample", key).unwrap()
}

fn register_key(api: &Api, tenant: &str, key: &SoftwareKey) -> String {
    let r = api.post(
        &format!("/api/v1/tenants/{tenant}/signing-keys"),
        json!({"name": "release", "public_key_pem": key.public_key().to_pem()}),
    );
    assert_eq!(r.status, 201, "{r:?}");
    r.body["key_id"].as_str().unwrap().to_owned()
}

fn product(api: &Api, tenant: &str, name: &str) -> Value {
    let r = api.post(
        &format!("/api/v1/tenants/{tenant}/products"),
        json!({"name": name}),
    );
    assert_eq!(r.status, 201, "{r:?}");
    r.body
}

#[test]
fn product_creates_default_groups_and_roles_are_enforced() {
    let w = World::sqlite(&[]);
    let t = w.tenant("acme");
    let p = product(&w.admin, &t, "thermostat");
    let mut names: Vec<&str> = p["device_groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "Development",
            "Field Test",
            "Field Test Evaluation",
            "Production",
            "Production Evaluation"
        ]
    );
    let pid = p["id"].as_str().unwrap();

    let contributor = w.user(&t, "carol", "contributor");
    let reader = w.user(&t, "rita", "reader");

    // Reader: sees, cannot change.
    assert_eq!(
        reader.get(&format!("/api/v1/tenants/{t}/products")).status,
        200
    );
    let r = reader.post(
        &format!("/api/v1/tenants/{t}/products"),
        json!({"name": "x"}),
    );
    assert_eq!(r.status, 403);
    assert!(
        r.body["detail"].as_str().unwrap().contains("reader"),
        "{r:?}"
    );
    assert_eq!(
        reader
            .post(
                &format!("/api/v1/tenants/{t}/roles"),
                json!({"user": "eve", "role": "administrator"})
            )
            .status,
        403
    );

    // Contributor: creates and changes, cannot delete or manage roles.
    let q = product(&contributor, &t, "doorbell");
    let qid = q["id"].as_str().unwrap();
    let g = contributor.post(
        &format!("/api/v1/tenants/{t}/device-groups"),
        json!({"product_id": qid, "name": "Beta", "rollout_percent": 50}),
    );
    assert_eq!(g.status, 201, "{g:?}");
    let gid = g.body["id"].as_str().unwrap();
    let u = contributor.send(
        "PATCH",
        &format!("/api/v1/tenants/{t}/device-groups/{gid}"),
        Some(json!({"update_policy": "no-app-updates"})),
    );
    assert_eq!(u.status, 200, "{u:?}");
    assert_eq!(u.body["update_policy"], "no-app-updates");
    assert_eq!(u.body["rollout_percent"], 50);
    assert_eq!(
        contributor
            .send(
                "DELETE",
                &format!("/api/v1/tenants/{t}/device-groups/{gid}"),
                None
            )
            .status,
        403
    );
    assert_eq!(
        contributor
            .send(
                "DELETE",
                &format!("/api/v1/tenants/{t}/products/{qid}"),
                None
            )
            .status,
        403
    );
    assert_eq!(
        contributor
            .post(
                &format!("/api/v1/tenants/{t}/roles"),
                json!({"user": "eve", "role": "reader"})
            )
            .status,
        403
    );
    // Only server administrators create tenants.
    assert_eq!(
        contributor
            .post("/api/v1/tenants", json!({"name": "mine"}))
            .status,
        403
    );

    // Administrator: deletes.
    assert_eq!(
        w.admin
            .send(
                "DELETE",
                &format!("/api/v1/tenants/{t}/device-groups/{gid}"),
                None
            )
            .status,
        204
    );
    assert_eq!(
        w.admin
            .send(
                "DELETE",
                &format!("/api/v1/tenants/{t}/products/{qid}"),
                None
            )
            .status,
        204
    );
    assert_eq!(
        w.admin
            .get(&format!("/api/v1/tenants/{t}/products/{pid}"))
            .status,
        200
    );

    // Bad input is refused with a message that names the problem.
    let bad = w.admin.post(
        &format!("/api/v1/tenants/{t}/device-groups"),
        json!({"product_id": pid, "name": "X", "rollout_percent": 101}),
    );
    assert_eq!(bad.status, 400);
    assert!(
        bad.body["detail"].as_str().unwrap().contains("0 to 100"),
        "{bad:?}"
    );
    let typo = w.admin.post(
        &format!("/api/v1/tenants/{t}/products"),
        json!({"nmae": "x"}),
    );
    assert_eq!(typo.status, 400);
    assert!(
        typo.body["detail"].as_str().unwrap().contains("nmae"),
        "{typo:?}"
    );

    // Refusals are audited with their actor.
    let audit = w
        .admin
        .get(&format!("/api/v1/tenants/{t}/audit?limit=1000"));
    let entries = audit.body["entries"].as_array().unwrap();
    assert!(entries.iter().any(|e| e["actor"] == "rita"
        && e["outcome"] == "denied"
        && e["action"] == "product.create"));
    assert!(entries
        .iter()
        .any(|e| e["actor"] == "carol" && e["outcome"] == "ok" && e["action"] == "product.create"));
}

#[test]
fn claims_need_a_trusted_endorsement_and_are_exclusive() {
    let w = World::sqlite(&[]);
    let a = w.tenant("a");
    let b = w.tenant("b");
    let trusted = w.manufacturer();
    let (untrusted, _) = ManufacturerCa::generate("Counterfeit Silicon", 365).unwrap();

    let (id, pem) = device(&trusted);
    let r = claim(&w.admin, &a, &id, &pem);
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.body["id"], id.as_str());

    // Double claim, by the same or another tenant.
    assert_eq!(claim(&w.admin, &a, &id, &pem).status, 409);
    let again = claim(&w.admin, &b, &id, &pem);
    assert_eq!(again.status, 409, "{again:?}");
    assert!(
        again.body["detail"]
            .as_str()
            .unwrap()
            .contains("already claimed"),
        "{again:?}"
    );

    // An endorsement from a manufacturer the server does not trust.
    let (fake_id, fake_pem) = device(&untrusted);
    let r = claim(&w.admin, &a, &fake_id, &fake_pem);
    assert_eq!(r.status, 422, "{r:?}");
    assert!(
        r.body["detail"].as_str().unwrap().contains("endorsement"),
        "{r:?}"
    );
    // A genuine endorsement presented for another device ID.
    let (other_id, _) = device(&trusted);
    assert_eq!(claim(&w.admin, &a, &other_id, &pem).status, 422);
    // Garbage.
    assert_eq!(
        claim(&w.admin, &a, &other_id, "not a certificate").status,
        422
    );
    assert_eq!(claim(&w.admin, &a, "xyz", &pem).status, 400);

    // Paged listing.
    let list = w
        .admin
        .get(&format!("/api/v1/tenants/{a}/devices?limit=10"));
    assert_eq!(list.body["total"], 1);
    assert_eq!(
        w.admin.get(&format!("/api/v1/tenants/{b}/devices")).body["total"],
        0
    );
}

#[test]
fn transfer_needs_both_tenants_administrators() {
    let w = World::sqlite(&[]);
    let a = w.tenant("a");
    let b = w.tenant("b");
    let ca = w.manufacturer();
    let (id, pem) = device(&ca);
    assert_eq!(claim(&w.admin, &a, &id, &pem).status, 201);
    // Administrators of A only, and of B only.
    let alice = w.user(&a, "alice", "administrator");
    let bob = w.user(&b, "bob", "administrator");

    let t = alice.post(
        &format!("/api/v1/tenants/{a}/transfers"),
        json!({"device_id": id, "to_tenant": b}),
    );
    assert_eq!(t.status, 201, "{t:?}");
    let tid = t.body["id"].as_str().unwrap().to_owned();
    // A cannot accept on B's behalf, in either tenant's name.
    assert_eq!(
        alice
            .post(
                &format!("/api/v1/tenants/{b}/transfers/{tid}/accept"),
                json!({})
            )
            .status,
        403
    );
    assert_ne!(
        alice
            .post(
                &format!("/api/v1/tenants/{a}/transfers/{tid}/accept"),
                json!({})
            )
            .status,
        200
    );
    // Still A's device.
    assert_eq!(
        alice
            .get(&format!("/api/v1/tenants/{a}/devices/{id}"))
            .status,
        200
    );
    // B accepts: the device moves.
    let done = bob.post(
        &format!("/api/v1/tenants/{b}/transfers/{tid}/accept"),
        json!({}),
    );
    assert_eq!(done.status, 200, "{done:?}");
    assert_eq!(done.body["status"], "completed");
    assert_eq!(
        alice
            .get(&format!("/api/v1/tenants/{a}/devices/{id}"))
            .status,
        404
    );
    assert_eq!(
        bob.get(&format!("/api/v1/tenants/{b}/devices/{id}")).status,
        200
    );
    // A completed transfer cannot be accepted again.
    assert_ne!(
        bob.post(
            &format!("/api/v1/tenants/{b}/transfers/{tid}/accept"),
            json!({})
        )
        .status,
        200
    );
}

#[test]
fn uploads_are_verified_against_the_tenants_keys() {
    let w = World::sqlite(&[
        ("SEVENFOLD_MAX_UPLOAD_BYTES", "65536"),
        ("SEVENFOLD_MAX_BODY_BYTES", "4096"),
    ]);
    let t = w.tenant("acme");
    let (key, _) = SoftwareKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let (stranger, _) = SoftwareKey::generate(KeyAlgorithm::Ed25519).unwrap();
    let images = format!("/api/v1/tenants/{t}/images");

    // Before the key is registered: refused.
    let r = w.admin.send_bytes("POST", &images, package(&key));
    assert_eq!(r.status, 422, "{r:?}");
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("not a trusted signing key"),
        "{r:?}"
    );

    let key_id = register_key(&w.admin, &t, &key);
    let bytes = package(&key);
    let r = w.admin.send_bytes("POST", &images, bytes.clone());
    assert_eq!(r.status, 201, "{r:?}");
    let image_id = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(r.body["signer_key_id"], key_id.as_str());
    assert_eq!(
        w.admin.send_bytes("POST", &images, bytes.clone()).status,
        409
    );
    let (status, downloaded) = w.admin.get_raw(&format!("{images}/{image_id}/content"));
    assert_eq!(status, 200);
    assert_eq!(downloaded, bytes);

    // Tampered: one payload byte changed.
    let mut tampered = bytes.clone();
    let at = tampered.len() - 80;
    tampered[at] ^= 1;
    let r = w.admin.send_bytes("POST", &images, tampered);
    assert_eq!(r.status, 422, "{r:?}");
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("signature does not verify"),
        "{r:?}"
    );
    // Signed by a key the tenant never registered.
    assert_eq!(
        w.admin
            .send_bytes("POST", &images, package(&stranger))
            .status,
        422
    );
    // Not a package at all.
    let r = w.admin.send_bytes("POST", &images, b"hello".to_vec());
    assert_eq!(r.status, 422);
    // Too large, for uploads and for JSON bodies.
    assert_eq!(
        w.admin.send_bytes("POST", &images, vec![0; 70_000]).status,
        413
    );
    let big = w.admin.post(
        &format!("/api/v1/tenants/{t}/products"),
        json!({"name": "x", "description": "y".repeat(10_000)}),
    );
    assert_eq!(big.status, 413, "{big:?}");

    // Revoked keys no longer verify uploads.
    assert_eq!(
        w.admin
            .post(
                &format!("/api/v1/tenants/{t}/signing-keys/{key_id}/revoke"),
                json!({})
            )
            .status,
        200
    );
    let manifest = AppManifest::from_json(MANIFEST.replace("1.0.0", "1.0.1").as_bytes()).unwrap();
    let newer = write_package(&manifest, b"\0asm\x01\0\0\0 v2", &key).unwrap();
    assert_eq!(w.admin.send_bytes("POST", &images, newer).status, 422);
}

/// Every tenant-scoped endpoint, called by an administrator of tenant A on
/// tenant B (403) and on B's objects through A's tenant (404).
#[test]
fn tenants_are_isolated_on_every_endpoint() {
    let w = World::sqlite(&[]);
    let a = w.tenant("a");
    let b = w.tenant("b");
    let c = w.tenant("c");
    let ca = w.manufacturer();
    // Tenant B's objects, made by the server admin.
    let pb = product(&w.admin, &b, "pb");
    let pb_id = pb["id"].as_str().unwrap().to_owned();
    let gb_id = pb["device_groups"][0]["id"].as_str().unwrap().to_owned();
    let (db_id, db_pem) = device(&ca);
    assert_eq!(claim(&w.admin, &b, &db_id, &db_pem).status, 201);
    let (key, _) = SoftwareKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let kb_id = register_key(&w.admin, &b, &key);
    let ib = w.admin.send_bytes(
        "POST",
        &format!("/api/v1/tenants/{b}/images"),
        package(&key),
    );
    assert_eq!(ib.status, 201);
    let ib_id = ib.body["id"].as_str().unwrap().to_owned();
    let tb = w.admin.post(
        &format!("/api/v1/tenants/{b}/transfers"),
        json!({"device_id": db_id, "to_tenant": c}),
    );
    assert_eq!(tb.status, 201, "{tb:?}");
    let tb_id = tb.body["id"].as_str().unwrap().to_owned();
    // Tenant A's own objects.
    let pa = product(&w.admin, &a, "pa");
    let ga_id = pa["device_groups"][0]["id"].as_str().unwrap().to_owned();
    let (da_id, da_pem) = device(&ca);
    assert_eq!(claim(&w.admin, &a, &da_id, &da_pem).status, 201);

    let alice = w.user(&a, "alice", "administrator");
    let (other_id, other_pem) = device(&ca);
    let calls: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", format!("/api/v1/tenants/{b}"), None),
        ("GET", format!("/api/v1/tenants/{b}/roles"), None),
        (
            "POST",
            format!("/api/v1/tenants/{b}/roles"),
            Some(json!({"user": "x", "role": "reader"})),
        ),
        ("DELETE", format!("/api/v1/tenants/{b}/roles/admin"), None),
        ("GET", format!("/api/v1/tenants/{b}/products"), None),
        (
            "POST",
            format!("/api/v1/tenants/{b}/products"),
            Some(json!({"name": "x"})),
        ),
        ("GET", format!("/api/v1/tenants/{b}/products/{pb_id}"), None),
        (
            "DELETE",
            format!("/api/v1/tenants/{b}/products/{pb_id}"),
            None,
        ),
        ("GET", format!("/api/v1/tenants/{b}/device-groups"), None),
        (
            "POST",
            format!("/api/v1/tenants/{b}/device-groups"),
            Some(json!({"product_id": pb_id, "name": "x"})),
        ),
        (
            "GET",
            format!("/api/v1/tenants/{b}/device-groups/{gb_id}"),
            None,
        ),
        (
            "PATCH",
            format!("/api/v1/tenants/{b}/device-groups/{gb_id}"),
            Some(json!({"name": "x"})),
        ),
        (
            "DELETE",
            format!("/api/v1/tenants/{b}/device-groups/{gb_id}"),
            None,
        ),
        ("GET", format!("/api/v1/tenants/{b}/devices"), None),
        (
            "POST",
            format!("/api/v1/tenants/{b}/devices"),
            Some(json!({"device_id": other_id, "endorsement_pem": other_pem})),
        ),
        ("GET", format!("/api/v1/tenants/{b}/devices/{db_id}"), None),
        (
            "PUT",
            format!("/api/v1/tenants/{b}/devices/{db_id}/group"),
            Some(json!({"group_id": gb_id})),
        ),
        (
            "PUT",
            format!("/api/v1/tenants/{b}/devices/{db_id}/mode"),
            Some(json!({"mode": "development"})),
        ),
        ("GET", format!("/api/v1/tenants/{b}/transfers"), None),
        (
            "POST",
            format!("/api/v1/tenants/{b}/transfers"),
            Some(json!({"device_id": db_id, "to_tenant": a})),
        ),
        (
            "POST",
            format!("/api/v1/tenants/{b}/transfers/{tb_id}/accept"),
            Some(json!({})),
        ),
        (
            "POST",
            format!("/api/v1/tenants/{b}/transfers/{tb_id}/cancel"),
            Some(json!({})),
        ),
        ("GET", format!("/api/v1/tenants/{b}/signing-keys"), None),
        (
            "POST",
            format!("/api/v1/tenants/{b}/signing-keys"),
            Some(json!({"name": "x", "public_key_pem": key.public_key().to_pem()})),
        ),
        (
            "POST",
            format!("/api/v1/tenants/{b}/signing-keys/{kb_id}/revoke"),
            Some(json!({})),
        ),
        ("GET", format!("/api/v1/tenants/{b}/images"), None),
        ("GET", format!("/api/v1/tenants/{b}/images/{ib_id}"), None),
        (
            "GET",
            format!("/api/v1/tenants/{b}/images/{ib_id}/content"),
            None,
        ),
        ("GET", format!("/api/v1/tenants/{b}/audit"), None),
        (
            "GET",
            format!("/api/v1/tenants/{b}/devices/{db_id}/attestations"),
            None,
        ),
        (
            "POST",
            format!("/api/v1/tenants/{b}/devices/{db_id}/revoke"),
            Some(json!({})),
        ),
        ("GET", format!("/api/v1/tenants/{b}/ca"), None),
        (
            "POST",
            format!("/api/v1/tenants/{b}/ca/proof-of-possession"),
            Some(json!({"verification_code": "abc"})),
        ),
        (
            "POST",
            format!("/api/v1/tenants/{b}/ca/rotate"),
            Some(json!({})),
        ),
    ];
    for (method, path, body) in &calls {
        let r = alice.send(method, path, body.clone());
        assert_eq!(r.status, 403, "{method} {path} as tenant A's admin: {r:?}");
    }
    let upload = alice.send_bytes(
        "POST",
        &format!("/api/v1/tenants/{b}/images"),
        package(&key),
    );
    assert_eq!(upload.status, 403);

    // B's objects reached through A's tenant: not found.
    let through_a: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", format!("/api/v1/tenants/{a}/products/{pb_id}"), None),
        (
            "DELETE",
            format!("/api/v1/tenants/{a}/products/{pb_id}"),
            None,
        ),
        (
            "POST",
            format!("/api/v1/tenants/{a}/device-groups"),
            Some(json!({"product_id": pb_id, "name": "x"})),
        ),
        (
            "GET",
            format!("/api/v1/tenants/{a}/device-groups/{gb_id}"),
            None,
        ),
        (
            "PATCH",
            format!("/api/v1/tenants/{a}/device-groups/{gb_id}"),
            Some(json!({"name": "x"})),
        ),
        (
            "DELETE",
            format!("/api/v1/tenants/{a}/device-groups/{gb_id}"),
            None,
        ),
        ("GET", format!("/api/v1/tenants/{a}/devices/{db_id}"), None),
        (
            "PUT",
            format!("/api/v1/tenants/{a}/devices/{db_id}/group"),
            Some(json!({"group_id": ga_id})),
        ),
        (
            "PUT",
            format!("/api/v1/tenants/{a}/devices/{da_id}/group"),
            Some(json!({"group_id": gb_id})),
        ),
        (
            "PUT",
            format!("/api/v1/tenants/{a}/devices/{db_id}/mode"),
            Some(json!({"mode": "development"})),
        ),
        (
            "POST",
            format!("/api/v1/tenants/{a}/transfers"),
            Some(json!({"device_id": db_id, "to_tenant": c})),
        ),
        (
            "POST",
            format!("/api/v1/tenants/{a}/transfers/{tb_id}/accept"),
            Some(json!({})),
        ),
        (
            "POST",
            format!("/api/v1/tenants/{a}/transfers/{tb_id}/cancel"),
            Some(json!({})),
        ),
        (
            "POST",
            format!("/api/v1/tenants/{a}/signing-keys/{kb_id}/revoke"),
            Some(json!({})),
        ),
        (
            "GET",
            format!("/api/v1/tenants/{a}/devices/{db_id}/attestations"),
            None,
        ),
        (
            "POST",
            format!("/api/v1/tenants/{a}/devices/{db_id}/revoke"),
            Some(json!({})),
        ),
        ("GET", format!("/api/v1/tenants/{a}/images/{ib_id}"), None),
        (
            "GET",
            format!("/api/v1/tenants/{a}/images/{ib_id}/content"),
            None,
        ),
    ];
    for (method, path, body) in &through_a {
        let r = alice.send(method, path, body.clone());
        assert_eq!(r.status, 404, "{method} {path}: {r:?}");
    }
    // Lists in A show only A's objects.
    let tenants = alice.get("/api/v1/tenants");
    assert_eq!(tenants.body.as_array().unwrap().len(), 1);
    assert_eq!(
        alice.get(&format!("/api/v1/tenants/{a}/devices")).body["total"],
        1
    );
    assert!(
        alice.get(&format!("/api/v1/tenants/{a}/images")).body["images"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(alice
        .get(&format!("/api/v1/tenants/{a}/signing-keys"))
        .body
        .as_array()
        .unwrap()
        .is_empty());
    assert!(alice
        .get(&format!("/api/v1/tenants/{a}/transfers"))
        .body
        .as_array()
        .unwrap()
        .is_empty());
    // Server-wide endpoints: manufacturer trust is for server admins.
    assert_eq!(
        alice
            .post(
                "/api/v1/manufacturer-cas",
                json!({"certificate_pem": ca.certificate().to_pem()})
            )
            .status,
        403
    );
    assert_eq!(
        alice
            .post(
                "/api/v1/runtime-releases",
                json!({"digest": "00".repeat(32), "version": "x"})
            )
            .status,
        403
    );
    assert_eq!(
        alice.post("/api/v1/tenants", json!({"name": "z"})).status,
        403
    );
    // Nothing of B changed.
    assert_eq!(
        w.admin
            .get(&format!("/api/v1/tenants/{b}/devices/{db_id}"))
            .body["mode"],
        "field"
    );
    assert_eq!(
        w.admin
            .get(&format!("/api/v1/tenants/{b}/device-groups/{gb_id}"))
            .status,
        200
    );
}

#[test]
fn unauthenticated_requests_are_refused_and_audited() {
    let w = World::sqlite(&[]);
    let nobody = w.admin.with_token("sf_0000");
    let r = nobody.get("/api/v1/tenants");
    assert_eq!(r.status, 401);
    assert_eq!(r.body["status"], 401);
    let t = w.tenant("acme");
    let audit = w.admin.get(&format!("/api/v1/tenants/{t}/audit"));
    assert_eq!(audit.status, 200);
    // The anonymous attempt is in the chain (server-wide); verify is intact.
    let v = w.admin.get("/api/v1/audit/verify");
    assert_eq!(v.body["intact"], true, "{v:?}");
    assert!(v.body["entries"].as_u64().unwrap() >= 2);
    // Probes and the OpenAPI document need no token.
    let (status, text) = nobody.get_raw("/healthz");
    assert_eq!((status, text.as_slice()), (200, &b"ok"[..]));
    assert_eq!(nobody.get_raw("/readyz").0, 200);
    let (status, doc) = nobody.get_raw("/api/v1/openapi.json");
    assert_eq!(status, 200);
    let doc: Value = serde_json::from_slice(&doc).unwrap();
    assert!(doc["paths"]["/api/v1/tenants/{tenant}/devices"]["post"].is_object());
    let (_, metrics) = nobody.get_raw("/metrics");
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(
        metrics.contains("sevenfold_http_requests_total"),
        "{metrics}"
    );
    assert!(metrics.contains("sevenfold_db_pool_connections"));
}

#[test]
fn restart_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let first = TestServer::start(&data, None, &[]);
    let token = first.bootstrap_token.clone().unwrap();
    let api = first.client(&token);
    let t = api.post("/api/v1/tenants", json!({"name": "acme"})).body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    product(&api, &t, "thermostat");
    assert!(first.stop(), "graceful shutdown exits 0");

    let second = TestServer::start(&data, None, &[]);
    assert_eq!(second.bootstrap_token, None, "bootstrap happens once");
    let api = second.client(&token);
    let products = api.get(&format!("/api/v1/tenants/{t}/products"));
    assert_eq!(products.status, 200);
    assert_eq!(products.body[0]["name"], "thermostat");
    assert_eq!(api.get("/api/v1/audit/verify").body["intact"], true);
}

#[test]
fn two_servers_on_one_postgres_database_agree() {
    if support::skip_postgres() {
        eprintln!("skipped: SEVENFOLD_SKIP_POSTGRES=1");
        return;
    }
    let db = TestDatabase::create();
    let dir = tempfile::tempdir().unwrap();
    let one = TestServer::start(&dir.path().join("one"), Some(&db.url), &[]);
    let token = one.bootstrap_token.clone().unwrap();
    let two = TestServer::start(&dir.path().join("two"), Some(&db.url), &[]);
    assert_eq!(two.bootstrap_token, None);
    let api1 = one.client(&token);
    let api2 = two.client(&token);
    let t = api1.post("/api/v1/tenants", json!({"name": "acme"})).body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_ca, _) = ManufacturerCa::generate("x", 1).unwrap();
    product(&api1, &t, "thermostat");
    // Written through one, read through the other.
    let seen = api2.get(&format!("/api/v1/tenants/{t}/products"));
    assert_eq!(seen.body[0]["name"], "thermostat", "{seen:?}");
    // Names stay unique across replicas.
    assert_eq!(
        api2.post(
            &format!("/api/v1/tenants/{t}/products"),
            json!({"name": "thermostat"})
        )
        .status,
        409
    );
    // Interleaved writes keep one intact audit chain.
    for i in 0..10 {
        let api = if i % 2 == 0 { &api1 } else { &api2 };
        product(api, &t, &format!("p{i}"));
    }
    let v = api2.get("/api/v1/audit/verify");
    assert_eq!(v.body["intact"], true, "{v:?}");
}

#[test]
fn audit_verify_detects_an_entry_altered_in_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = TestServer::start(&data, None, &[]);
    let token = server.bootstrap_token.clone().unwrap();
    let api = server.client(&token);
    let t = api.post("/api/v1/tenants", json!({"name": "acme"})).body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for name in ["a", "b", "c"] {
        product(&api, &t, name);
    }
    assert_eq!(api.get("/api/v1/audit/verify").body["intact"], true);
    let url = format!("sqlite://{}", data.join("sevenfold.db").display());
    support::run_sql(&url, "UPDATE audit_log SET target = 'forged' WHERE seq = 2");
    let v = api.get("/api/v1/audit/verify");
    assert_eq!(v.body["intact"], false, "{v:?}");
    assert_eq!(v.body["first_broken_seq"], 2);
    assert!(
        v.body["reason"].as_str().unwrap().contains("altered"),
        "{v:?}"
    );
}

#[test]
fn graceful_shutdown_finishes_in_flight_requests() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"), None, &[]);
    let token = server.bootstrap_token.clone().unwrap();
    let api = server.client(&token);
    let t = api.post("/api/v1/tenants", json!({"name": "acme"})).body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (key, _) = SoftwareKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    register_key(&api, &t, &key);
    let bytes = package(&key);
    let path = format!("/api/v1/tenants/{t}/images");
    // A slow upload: 20 pieces, 100 ms apart.
    let uploader = {
        let api = api.with_token(&token);
        std::thread::spawn(move || {
            api.send_slowly(&path, bytes, 20, std::time::Duration::from_millis(100))
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(600));
    let pid = server.child.id();
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
    std::thread::sleep(std::time::Duration::from_millis(200));
    // No new connections once shutdown began...
    let late = std::net::TcpStream::connect(server.url.trim_start_matches("https://"));
    assert!(late.is_err(), "server still accepts after SIGTERM");
    // ...but the upload in flight completes.
    let reply = uploader.join().unwrap();
    assert_eq!(reply.status, 201, "{reply:?}");
    assert!(server.stop(), "exit status 0 after graceful shutdown");
}
