//! The attestation protocol against a real server, driven by a device made
//! in the test from the same libraries the agent uses, so that each attack
//! can be crafted precisely: replayed and expired nonces, quotes over other
//! nonces, forged event logs, unknown images, revoked runtimes, untrusted
//! endorsements, unclaimed and revoked devices; and, with the `tpm` feature,
//! TPM credential activation with real TPMs (swtpm).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use serde_json::{json, Value};
use sevenfold_core::attestation::{
    quote_nonce, ComponentKind, EventLog, EvidenceBody, MeasurementEvent, ATTESTED_REGISTERS,
    RUNTIME_COMPONENT_ID,
};
use sevenfold_core::manifest::AppManifest;
use sevenfold_core::package::{write_package, Limits, UnverifiedPackage};
use sevenfold_pki::ManufacturerCa;
use sevenfold_rot::soft::SoftRoot;
use sevenfold_rot::{Digest, KeyAlgorithm, RootOfTrust, SoftwareKey};
use support::{Api, TestServer};

const RUNTIME: &[u8] = b"the runtime build under test";

/// A device built from the agent's own libraries, on the soft root of
/// trust or (with the `tpm` feature) a TPM.
struct Device {
    _dir: tempfile::TempDir,
    rot: Box<dyn RootOfTrust>,
    tls: SoftwareKey,
    endorsement: String,
    log: EventLog,
}

impl Device {
    fn new(maker: &ManufacturerCa) -> Device {
        Device::booted(maker, Some(Digest::of(RUNTIME)))
    }

    /// A device whose first boot measured the runtime build `runtime`
    /// (`None`: nothing measured yet).
    fn booted(maker: &ManufacturerCa, runtime: Option<Digest>) -> Device {
        let dir = tempfile::tempdir().unwrap();
        let rot = Box::new(SoftRoot::create(&dir.path().join("rot")).unwrap());
        Device::with_root(dir, rot, maker, runtime)
    }

    /// [`Device::booted`] on the root of trust `rot`, whose files are in `dir`.
    fn with_root(
        dir: tempfile::TempDir,
        rot: Box<dyn RootOfTrust>,
        maker: &ManufacturerCa,
        runtime: Option<Digest>,
    ) -> Device {
        let endorsement = maker
            .endorse(rot.device_public_key(), 365)
            .unwrap()
            .to_pem();
        let tls = SoftwareKey::generate(KeyAlgorithm::EcdsaP256).unwrap().0;
        let mut d = Device {
            _dir: dir,
            rot,
            tls,
            endorsement,
            log: EventLog::new(),
        };
        if let Some(runtime) = runtime {
            d.measure(ComponentKind::Runtime, RUNTIME_COMPONENT_ID, runtime);
        }
        d
    }

    fn id(&self) -> String {
        self.rot.device_id().to_string()
    }

    fn measure(&mut self, kind: ComponentKind, component: &str, digest: Digest) {
        self.rot.extend(kind.register(), &digest).unwrap();
        self.log.push(MeasurementEvent {
            kind,
            component_id: component.into(),
            name: "x".into(),
            version: "1.0.0".into(),
            digest,
        });
    }

    fn nonce(&self, api: &Api) -> Vec<u8> {
        let r = api.post(
            "/device/v1/attestation/nonce",
            json!({"device_id": self.id()}),
        );
        assert_eq!(r.status, 200, "{r:?}");
        hex::decode(r.body["nonce"].as_str().unwrap()).unwrap()
    }

    /// Honest evidence over `nonce`.
    fn evidence(&self, nonce: &[u8]) -> EvidenceBody {
        self.evidence_quoting(nonce, nonce)
    }

    /// Evidence that claims `claimed` but quotes `quoted`.
    fn evidence_quoting(&self, claimed: &[u8], quoted: &[u8]) -> EvidenceBody {
        let (quote, regs) = self
            .rot
            .quote(
                &quote_nonce(quoted, self.tls.public_key()),
                &ATTESTED_REGISTERS,
            )
            .unwrap();
        EvidenceBody::new(
            &self.rot.device_id(),
            claimed,
            &quote,
            &regs,
            &self.log,
            &self.endorsement,
            self.tls.public_key(),
            vec![],
        )
    }

    fn send(&self, api: &Api, body: &EvidenceBody) -> support::Reply {
        api.post(
            "/device/v1/attestation/evidence",
            serde_json::to_value(body).unwrap(),
        )
    }

    fn attest(&self, api: &Api) -> support::Reply {
        let nonce = self.nonce(api);
        self.send(api, &self.evidence(&nonce))
    }
}

struct World {
    _dir: tempfile::TempDir,
    server: TestServer,
    admin: Api,
    device_api: Api,
    tenant: String,
    maker: ManufacturerCa,
    signer: SoftwareKey,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(&dir.path().join("data"), None, &[]);
        let admin = server.client(server.bootstrap_token.as_deref().unwrap());
        let tenant = admin.post("/api/v1/tenants", json!({"name": "acme"})).body["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let (maker, _) = ManufacturerCa::generate("Test Silicon", 365).unwrap();
        assert_eq!(
            admin
                .post(
                    "/api/v1/manufacturer-cas",
                    json!({"certificate_pem": maker.certificate().to_pem()})
                )
                .status,
            201
        );
        let r = admin.post(
            "/api/v1/runtime-releases",
            json!({"digest": Digest::of(RUNTIME).to_hex(), "version": "1.0.0"}),
        );
        assert_eq!(r.status, 201, "{r:?}");
        let signer = SoftwareKey::generate(KeyAlgorithm::EcdsaP256).unwrap().0;
        let r = admin.post(
            &format!("/api/v1/tenants/{tenant}/signing-keys"),
            json!({"name": "release", "public_key_pem": signer.public_key().to_pem()}),
        );
        assert_eq!(r.status, 201);
        let device_api = server.device_client();
        World {
            _dir: dir,
            server,
            admin,
            device_api,
            tenant,
            maker,
            signer,
        }
    }

    fn claimed_device(&self) -> Device {
        self.claimed_device_running(Some(Digest::of(RUNTIME)))
    }

    /// A claimed device whose first boot measured `runtime` (see [`Device::booted`]).
    fn claimed_device_running(&self, runtime: Option<Digest>) -> Device {
        self.claim(Device::booted(&self.maker, runtime))
    }

    /// Runs `sql` on the server's database (as any replica would see it).
    fn run_sql(&self, sql: &str) {
        let db = format!(
            "sqlite://{}",
            self.server.data_dir.join("sevenfold.db").display()
        );
        support::run_sql(&db, sql);
    }

    /// Claims `d` with its endorsement.
    fn claim(&self, d: Device) -> Device {
        let r = self.admin.post(
            &format!("/api/v1/tenants/{}/devices", self.tenant),
            json!({"device_id": d.id(), "endorsement_pem": d.endorsement}),
        );
        assert_eq!(r.status, 201, "{r:?}");
        d
    }

    /// An image package of the tenant (uploaded when `upload`); returns (component, digest).
    fn image(&self, version: &str, upload: bool) -> (String, Digest) {
        let manifest = AppManifest::from_json(
            format!(r#"{{"SchemaVersion":1,"Name":"blink","ComponentId":"5b9a1c52-3f0b-4a39-9d7e-6f2d1c3e8a10","Version":"{version}","SecurityVersion":1,"EntryPoint":"blink.wasm"}}"#).as_bytes(),
        )
        .unwrap();
        let bytes = write_package(&manifest, b"\0asm\x01\0\0\0 app", &self.signer).unwrap();
        if upload {
            let r = self.admin.send_bytes(
                "POST",
                &format!("/api/v1/tenants/{}/images", self.tenant),
                bytes.clone(),
            );
            assert_eq!(r.status, 201, "{r:?}");
        }
        let digest = UnverifiedPackage::parse(&bytes, &Limits::default())
            .unwrap()
            .package_digest();
        (manifest.component_id().to_string(), digest)
    }

    fn history(&self, device: &Device) -> Vec<Value> {
        let r = self.admin.get(&format!(
            "/api/v1/tenants/{}/devices/{}/attestations",
            self.tenant,
            device.id()
        ));
        assert_eq!(r.status, 200, "{r:?}");
        r.body.as_array().unwrap().clone()
    }

    /// Asserts the latest verdict failed with a reason containing `needle`.
    fn refused(&self, reply: &support::Reply, needle: &str) {
        assert_eq!(reply.status, 422, "{reply:?}");
        assert_eq!(reply.body["verdict"], "fail");
        assert!(reply.body["certificate_chain_pem"].is_null());
        let reasons = reply.body["reasons"].to_string();
        assert!(
            reasons.contains(needle),
            "reasons {reasons} lack {needle:?}"
        );
    }
}

#[test]
fn genuine_device_passes_and_gets_a_24_hour_certificate() {
    let w = World::new();
    let mut d = w.claimed_device();
    let (component, digest) = w.image("1.0.0", true);
    d.measure(ComponentKind::Application, &component, digest);
    let r = d.attest(&w.device_api);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["verdict"], "pass");
    assert_eq!(r.body["tenant_id"], w.tenant.as_str());
    let chain = r.body["certificate_chain_pem"].as_str().unwrap();
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);
    let history = w.history(&d);
    assert_eq!(history[0]["verdict"], "pass");
    assert_eq!(history[0]["measurements"].as_array().unwrap().len(), 2);
}

#[test]
fn replayed_expired_and_foreign_nonces_are_refused() {
    let w = World::new();
    let d = w.claimed_device();
    let nonce = d.nonce(&w.device_api);
    let body = d.evidence(&nonce);
    assert_eq!(d.send(&w.device_api, &body).status, 200);
    // The same evidence again: the nonce is used up.
    w.refused(&d.send(&w.device_api, &body), "already used");

    // Expired: age the nonce in the database (any replica would see the same).
    let nonce = d.nonce(&w.device_api);
    w.run_sql(&format!(
        "UPDATE attestation_nonces SET expires_at = 0 WHERE nonce = '{}'",
        hex::encode(&nonce)
    ));
    w.refused(&d.send(&w.device_api, &d.evidence(&nonce)), "expired");

    // A quote over another nonce than the one presented.
    let presented = d.nonce(&w.device_api);
    w.refused(
        &d.send(&w.device_api, &d.evidence_quoting(&presented, &[9u8; 32])),
        "quote does not verify",
    );

    // A nonce issued to another device.
    let other = w.claimed_device();
    let theirs = other.nonce(&w.device_api);
    w.refused(
        &d.send(&w.device_api, &d.evidence(&theirs)),
        "another device",
    );
    let reasons: Vec<String> = w
        .history(&d)
        .iter()
        .map(|h| h["reasons"].to_string())
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("already used")),
        "{reasons:?}"
    );
}

#[test]
fn forged_logs_unknown_images_and_revoked_runtimes_are_refused() {
    let w = World::new();
    let mut d = w.claimed_device();
    // An image the tenant never uploaded (validly signed, though).
    let (component, unknown) = w.image("9.9.9", false);
    d.measure(ComponentKind::Application, &component, unknown);
    let r = d.attest(&w.device_api);
    w.refused(&r, "unknown image hash");
    // Genuine, running software the tenant does not know: a restricted
    // session for that component's update only.
    assert_eq!(
        r.body["remediation"]["components"],
        json!([component]),
        "{r:?}"
    );
    assert_eq!(r.body["remediation"]["token"].as_str().unwrap().len(), 64);

    // An event log that hides what was measured: it names an uploaded image instead.
    let (_, known) = w.image("1.0.0", true);
    let mut forged = d.evidence(&d.nonce(&w.device_api));
    forged.event_log[1].digest = known.to_hex();
    let r = d.send(&w.device_api, &forged);
    w.refused(&r, "does not replay");
    // Evidence that does not check out proves nothing: no session.
    assert!(r.body["remediation"].is_null(), "{r:?}");

    // A revoked runtime release.
    let fresh = w.claimed_device();
    assert_eq!(fresh.attest(&w.device_api).status, 200);
    let r = w.admin.post(
        &format!(
            "/api/v1/runtime-releases/{}/revoke",
            Digest::of(RUNTIME).to_hex()
        ),
        json!({}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let r = fresh.attest(&w.device_api);
    w.refused(&r, "revoked");
    assert_eq!(
        r.body["remediation"]["components"],
        json!([RUNTIME_COMPONENT_ID]),
        "{r:?}"
    );
}

/// A TPM's PCRs reset only with the platform: every start of the agent in
/// one power cycle adds a boot segment (runtime, then apps) to one log. The
/// verifier judges every segment (each ran, and is in the quoted PCRs) and
/// records the last one, which is what runs now.
#[test]
fn several_boots_in_one_power_cycle_are_judged_segment_by_segment() {
    let w = World::new();
    let (component, known) = w.image("1.0.0", true);
    let runtime = Digest::of(RUNTIME);

    // Two honest boots: pass, and the history shows the boot that runs now.
    let mut d = w.claimed_device();
    d.measure(ComponentKind::Application, &component, known);
    d.measure(ComponentKind::Runtime, RUNTIME_COMPONENT_ID, runtime);
    d.measure(ComponentKind::Application, &component, known);
    let r = d.attest(&w.device_api);
    assert_eq!(r.status, 200, "{r:?}");
    let measured = w.history(&d)[0]["measurements"].as_array().unwrap().clone();
    assert_eq!(measured.len(), 2, "{measured:?}");
    assert_eq!(measured[0]["kind"], "runtime");

    // An earlier boot ran a runtime that is since revoked: refused, even
    // though the runtime running now is a good release.
    let old = b"an older runtime build";
    let r = w.admin.post(
        "/api/v1/runtime-releases",
        json!({"digest": Digest::of(old).to_hex(), "version": "0.9.0"}),
    );
    assert_eq!(r.status, 201, "{r:?}");
    let mut d = w.claimed_device_running(Some(Digest::of(old)));
    d.measure(ComponentKind::Runtime, RUNTIME_COMPONENT_ID, runtime);
    assert_eq!(d.attest(&w.device_api).status, 200);
    let r = w.admin.post(
        &format!(
            "/api/v1/runtime-releases/{}/revoke",
            Digest::of(old).to_hex()
        ),
        json!({}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let r = d.attest(&w.device_api);
    w.refused(&r, "revoked");
    w.refused(&r, "in boot 1 of 2");

    // An earlier boot measured an image nobody knows: refused, with the reason.
    let (_, unknown) = w.image("6.6.6", false);
    let mut d = w.claimed_device();
    d.measure(ComponentKind::Application, &component, unknown);
    d.measure(ComponentKind::Runtime, RUNTIME_COMPONENT_ID, runtime);
    d.measure(ComponentKind::Application, &component, known);
    let r = d.attest(&w.device_api);
    w.refused(&r, "unknown image hash");
    w.refused(&r, "in boot 1 of 2");

    // A runtime nobody released in an earlier boot.
    let mut d = w.claimed_device_running(Some(Digest::of(b"a build nobody released")));
    d.measure(ComponentKind::Runtime, RUNTIME_COMPONENT_ID, runtime);
    w.refused(&d.attest(&w.device_api), "is not a known release");

    // A log whose first event is not the runtime's.
    let mut d = w.claimed_device_running(None);
    d.measure(ComponentKind::Application, &component, known);
    d.measure(ComponentKind::Runtime, RUNTIME_COMPONENT_ID, runtime);
    w.refused(
        &d.attest(&w.device_api),
        "does not begin with the runtime's measurement",
    );
}

#[test]
fn untrusted_unclaimed_and_revoked_devices_are_refused() {
    let w = World::new();
    // Endorsed by a manufacturer the server does not trust.
    let (counterfeit, _) = ManufacturerCa::generate("Counterfeit", 365).unwrap();
    let fake = Device::new(&counterfeit);
    w.refused(&fake.attest(&w.device_api), "endorsement refused");
    // A device key no manufacturer endorsed, presenting another device's endorsement.
    let mut unendorsed = Device::new(&w.maker);
    let genuine = w.claimed_device();
    unendorsed.endorsement = genuine.endorsement.clone();
    w.refused(
        &unendorsed.attest(&w.device_api),
        "the endorsement is for device",
    );
    // Genuine but unclaimed.
    let stray = Device::new(&w.maker);
    w.refused(&stray.attest(&w.device_api), "not claimed");
    // Claimed, then revoked.
    let d = w.claimed_device();
    assert_eq!(d.attest(&w.device_api).status, 200);
    let r = w.admin.post(
        &format!("/api/v1/tenants/{}/devices/{}/revoke", w.tenant, d.id()),
        json!({}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let r = d.attest(&w.device_api);
    w.refused(&r, "revoked");
    assert!(
        r.body["remediation"].is_null(),
        "a revoked device gets no session"
    );
    // A device reporting a failed boot check.
    let tampered = w.claimed_device();
    let nonce = tampered.nonce(&w.device_api);
    let mut body = tampered.evidence(&nonce);
    body.boot_failures
        .push(sevenfold_core::attestation::BootFailure {
            component: "blink.imagepackage".into(),
            reason: "signature does not verify".into(),
        });
    w.refused(&tampered.send(&w.device_api, &body), "boot check failed");
}

#[test]
fn nonce_requests_are_rate_limited_per_device() {
    let w = World::new();
    let d = w.claimed_device();
    let mut limited = 0;
    for _ in 0..40 {
        let r = w
            .device_api
            .post("/device/v1/attestation/nonce", json!({"device_id": d.id()}));
        if r.status == 429 {
            limited += 1;
        } else {
            assert_eq!(r.status, 200);
        }
    }
    assert!(limited >= 15, "only {limited} of 40 requests were limited");
    // Malformed requests are refused cheaply with a reason.
    let r = w
        .device_api
        .post("/device/v1/attestation/nonce", json!({"device_id": "nope"}));
    assert_eq!(r.status, 400);
    let r = w
        .device_api
        .post("/device/v1/attestation/evidence", json!({"device_id": 1}));
    assert_eq!(r.status, 400);
}

/// A flood of bogus attestation traffic from one host (127.0.0.2) does not
/// starve a genuine device on another (127.0.0.1): the flood is refused
/// cheaply by per-source limits while the device keeps attesting.
#[test]
fn genuine_devices_attest_during_a_flood() {
    let w = World::new();
    let d = w.claimed_device();
    let ca = std::fs::read_to_string(&w.server.ca_file).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let total = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let flooders: Vec<_> = (0..4)
        .map(|_| {
            let url = w.server.device_url.clone();
            let ca = ca.clone();
            let stop = stop.clone();
            let total = total.clone();
            std::thread::spawn(move || {
                let api = Api::new_from(&url, &ca, "", Some("127.0.0.2".parse().unwrap()));
                let (mut sent, mut limited) = (0u32, 0u32);
                // Bounded: at most 600 requests per flooder or until told to stop.
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && sent < 600 {
                    let bogus = support::random_hex(32);
                    let r = if sent % 2 == 0 {
                        api.post("/device/v1/attestation/nonce", json!({"device_id": bogus}))
                    } else {
                        api.post(
                            "/device/v1/attestation/evidence",
                            json!({"device_id": bogus, "nonce": bogus, "quote": "00", "registers": [],
                                   "event_log": [], "endorsement_pem": "x", "tls_public_key_pem": "x"}),
                        )
                    };
                    sent += 1;
                    total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if r.status == 429 {
                        limited += 1;
                    }
                }
                (sent, limited)
            })
        })
        .collect();
    // Let the flood pass the per-source limits (300 a minute per kind) first.
    let warmup = std::time::Instant::now();
    while total.load(std::sync::atomic::Ordering::Relaxed) < 1300
        && warmup.elapsed() < std::time::Duration::from_secs(60)
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Meanwhile the genuine device attests repeatedly, and every time passes.
    let started = std::time::Instant::now();
    for i in 0..10 {
        let r = d.attest(&w.device_api);
        assert_eq!(
            r.status, 200,
            "genuine attestation {i} during the flood: {r:?}"
        );
    }
    let genuine_time = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut sent, mut limited) = (0, 0);
    for f in flooders {
        let (s, l) = f.join().unwrap();
        sent += s;
        limited += l;
    }
    eprintln!("flood: {sent} requests, {limited} rate-limited; 10 genuine attestations took {genuine_time:?}");
    assert!(limited > 0, "the flood was never rate-limited");
    assert!(
        genuine_time < std::time::Duration::from_secs(30),
        "genuine attestations slowed to {genuine_time:?}"
    );
}

/// Tenant CA rotation: the successor issues, both are published, and
/// certificates from either verify against the published bundle.
#[test]
fn tenant_ca_rotation_publishes_both_generations() {
    let w = World::new();
    let d = w.claimed_device();
    let before = d.attest(&w.device_api);
    assert_eq!(before.status, 200);
    let r = w.admin.post(
        &format!("/api/v1/tenants/{}/ca/rotate", w.tenant),
        json!({}),
    );
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.body["generation"], 2);
    let published = w.admin.get(&format!("/api/v1/tenants/{}/ca", w.tenant));
    let generations = published.body.as_array().unwrap();
    assert_eq!(generations.len(), 2);
    let after = d.attest(&w.device_api);
    let chain = after.body["certificate_chain_pem"].as_str().unwrap();
    assert!(
        chain.contains(generations[0]["certificate_pem"].as_str().unwrap().trim()),
        "the newest generation issues"
    );

    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle.pem");
    let all: String = generations
        .iter()
        .map(|g| g["certificate_pem"].as_str().unwrap())
        .collect();
    std::fs::write(&bundle, all).unwrap();
    for (name, reply) in [("old", &before), ("new", &after)] {
        let leaf = dir.path().join(format!("{name}.pem"));
        let pem = reply.body["certificate_chain_pem"].as_str().unwrap();
        let first = &pem[..pem.find("-----END CERTIFICATE-----").unwrap() + 26];
        std::fs::write(&leaf, first).unwrap();
        let out = std::process::Command::new("openssl")
            .args([
                "verify",
                "-CAfile",
                bundle.to_str().unwrap(),
                "-purpose",
                "sslclient",
                leaf.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(": OK"),
            "{name}: {out:?}"
        );
    }
    // Proof of possession for a third party's verification code.
    let pop = w.admin.post(
        &format!("/api/v1/tenants/{}/ca/proof-of-possession", w.tenant),
        json!({"verification_code": "ABC123"}),
    );
    assert_eq!(pop.status, 200, "{pop:?}");
    assert!(pop.body["certificate_pem"]
        .as_str()
        .unwrap()
        .contains("BEGIN CERTIFICATE"));
}

/// TPM credential activation with real TPMs (swtpm, each manufactured with
/// EK certificates from its own CA, the "TPM maker"): TPM quotes count only
/// once the device's attestation key is bound to a trusted EK; an AK not in
/// the TPM of the presented EK, an EK certificate of an untrusted maker, and
/// replayed or expired challenges are refused with their reasons.
#[cfg(feature = "tpm")]
mod tpm {
    use super::*;
    use sevenfold_rot::credential::Credential;
    use sevenfold_rot::tpm::simulator::Swtpm;
    use sevenfold_rot::tpm::TpmRoot;

    impl Device {
        fn tpm(&self) -> &dyn sevenfold_rot::credential::TpmEndorsement {
            self.rot.tpm_endorsement().expect("a TPM device")
        }

        fn ek(&self) -> Vec<u8> {
            self.tpm().endorsement_certificate().unwrap()
        }

        /// Asks for a challenge, presenting `ek` (DER) as its EK certificate.
        fn challenge(&self, api: &Api, ek: &[u8]) -> support::Reply {
            let area = self.tpm().attestation_key_public_area().unwrap();
            api.post(
                "/device/v1/attestation/credential",
                json!({
                    "device_id": self.id(),
                    "ek_certificate": hex::encode(ek),
                    "ak_public_area": hex::encode(area),
                }),
            )
        }

        fn answer(&self, api: &Api, challenge: &Value, secret: &[u8]) -> support::Reply {
            api.post(
                "/device/v1/attestation/credential/activate",
                json!({
                    "device_id": self.id(),
                    "challenge_id": challenge["challenge_id"],
                    "secret": hex::encode(secret),
                }),
            )
        }

        /// The TPM's answer to a challenge (an error if it cannot decrypt it).
        fn activate(&self, challenge: &Value) -> Result<Vec<u8>, sevenfold_rot::RotError> {
            let field = |name: &str| hex::decode(challenge[name].as_str().unwrap()).unwrap();
            let credential = Credential {
                id_object: field("id_object"),
                encrypted_secret: field("encrypted_secret"),
            };
            self.tpm()
                .activate_credential(credential)
                .map(|s| s.to_vec())
        }
    }

    impl World {
        /// Trusts the simulator's maker (its root, and the intermediate
        /// that signs EK certificates) as TPM CAs.
        fn trust_tpm_maker(&self, tpm: &Swtpm) {
            for file in ["swtpm-localca-rootca-cert.pem", "issuercert.pem"] {
                let pem = std::fs::read_to_string(tpm.ca_dir().join(file)).unwrap();
                let r = self.admin.post(
                    "/api/v1/manufacturer-cas",
                    json!({"certificate_pem": pem, "kind": "tpm"}),
                );
                assert_eq!(r.status, 201, "{file}: {r:?}");
                assert_eq!(r.body["kind"], "tpm");
            }
        }

        /// A claimed device on `tpm`, its runtime measured into PCR 14.
        fn claimed_tpm_device(&self, tpm: &Swtpm) -> Device {
            let dir = tempfile::tempdir().unwrap();
            let rot = Box::new(TpmRoot::create(&dir.path().join("rot"), &tpm.tcti()).unwrap());
            self.claim(Device::with_root(
                dir,
                rot,
                &self.maker,
                Some(Digest::of(RUNTIME)),
            ))
        }
    }

    /// A refusal of the credential endpoints: a 422 problem naming `needle`.
    fn problem(reply: &support::Reply, needle: &str) {
        assert_eq!(reply.status, 422, "{reply:?}");
        let text = reply.body.to_string();
        assert!(text.contains(needle), "{text} lacks {needle:?}");
    }

    #[test]
    fn a_tpm_quote_passes_only_after_credential_activation() {
        let w = World::new();
        let tpm = Swtpm::start().expect("swtpm must be installed");
        w.trust_tpm_maker(&tpm);
        let d = w.claimed_tpm_device(&tpm);

        w.refused(
            &d.attest(&w.device_api),
            "has not completed credential activation",
        );
        let challenge = d.challenge(&w.device_api, &d.ek());
        assert_eq!(challenge.status, 200, "{challenge:?}");
        let secret = d.activate(&challenge.body).unwrap();
        let done = d.answer(&w.device_api, &challenge.body, &secret);
        assert_eq!(done.status, 200, "{done:?}");
        assert_eq!(done.body["ek_fingerprint"], Digest::of(&d.ek()).to_hex());
        let pass = d.attest(&w.device_api);
        assert_eq!(pass.status, 200, "{pass:?}");
        assert_eq!(pass.body["verdict"], "pass");

        // Challenges are rate-limited per device (10 a minute), counted
        // before any work: refused requests count too.
        let (mut limited, mut refused) = (0, 0);
        for n in 0..30 {
            let ek = if n % 2 == 0 { d.ek() } else { b"junk".to_vec() };
            match d.challenge(&w.device_api, &ek).status {
                429 => limited += 1,
                422 => refused += 1,
                status => assert_eq!(status, 200),
            }
        }
        assert!(limited >= 10, "only {limited} of 30 requests were limited");
        assert!(refused >= 1);

        // The binding counts only while its EK still chains to a trusted
        // TPM maker: once the maker's CAs are gone (and the service's few
        // seconds of caching them have passed), TPM quotes fail again.
        w.run_sql("DELETE FROM manufacturer_cas WHERE kind = 'tpm'");
        std::thread::sleep(std::time::Duration::from_millis(5500));
        w.refused(&d.attest(&w.device_api), "is no longer trusted");
    }

    #[test]
    fn unbound_keys_untrusted_eks_and_replayed_or_expired_challenges_are_refused() {
        let w = World::new();
        let trusted_tpm = Swtpm::start().expect("swtpm must be installed");
        let other_tpm = Swtpm::start().unwrap();
        // Each simulator has its own maker CA; only the first is trusted.
        w.trust_tpm_maker(&trusted_tpm);
        let genuine = w.claimed_tpm_device(&trusted_tpm);
        let impostor = w.claimed_tpm_device(&other_tpm);

        // An EK certificate from an untrusted maker.
        problem(
            &impostor.challenge(&w.device_api, &impostor.ek()),
            "EK certificate refused",
        );

        // The impostor presents the genuine TPM's (trusted) EK certificate
        // with its own attestation key: the challenge is encrypted to the
        // other TPM, so its TPM cannot activate it, nor can the genuine TPM
        // (the impostor's key is not in it); a guessed secret is refused,
        // the operator sees why, and its TPM quotes stay refused.
        let challenge = impostor.challenge(&w.device_api, &genuine.ek());
        assert_eq!(challenge.status, 200, "{challenge:?}");
        assert!(impostor.activate(&challenge.body).is_err());
        assert!(genuine.activate(&challenge.body).is_err());
        problem(
            &impostor.answer(&w.device_api, &challenge.body, &[0u8; 32]),
            "credential activation failed",
        );
        assert!(
            w.history(&impostor)[0]["reasons"]
                .to_string()
                .contains("credential activation failed"),
            "{:?}",
            w.history(&impostor)
        );
        w.refused(
            &impostor.attest(&w.device_api),
            "has not completed credential activation",
        );

        // A replayed answer: a challenge answers once.
        let challenge = genuine.challenge(&w.device_api, &genuine.ek());
        let secret = genuine.activate(&challenge.body).unwrap();
        let first = genuine.answer(&w.device_api, &challenge.body, &secret);
        assert_eq!(first.status, 200, "{first:?}");
        problem(
            &genuine.answer(&w.device_api, &challenge.body, &secret),
            "already answered (replay)",
        );

        // An expired challenge (aged in the database any replica reads).
        let challenge = genuine.challenge(&w.device_api, &genuine.ek());
        let secret = genuine.activate(&challenge.body).unwrap();
        w.run_sql(&format!(
            "UPDATE tpm_credential_challenges SET expires_at = 0 WHERE id = '{}'",
            challenge.body["challenge_id"].as_str().unwrap()
        ));
        problem(
            &genuine.answer(&w.device_api, &challenge.body, &secret),
            "expired",
        );

        // An attestation key that is not the claimed device's key.
        let area = impostor.tpm().attestation_key_public_area().unwrap();
        let r = w.device_api.post(
            "/device/v1/attestation/credential",
            json!({
                "device_id": genuine.id(),
                "ek_certificate": hex::encode(genuine.ek()),
                "ak_public_area": hex::encode(area),
            }),
        );
        problem(&r, "is not the key of device");
    }
}
