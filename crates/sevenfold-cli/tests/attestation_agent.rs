//! Issue 4 end to end: a real server process and real agent processes.
//! The agent boots, measures, attests, receives a 24-hour certificate and
//! uses it for mutual TLS, to the service and to a real Mosquitto broker that
//! trusts the downloaded tenant CA chain.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};
use sevenfold_rot::SoftwareKey;
use support::{cli_ok, ok_json, s, sevenfold, Api, TestServer};

struct Fleet {
    dir: tempfile::TempDir,
    server: TestServer,
    admin: Api,
    token: String,
}

impl Fleet {
    fn start() -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(&dir.path().join("data"), None, &[]);
        let token = server.bootstrap_token.clone().unwrap();
        let admin = server.client(&token);
        let fleet = Fleet {
            dir,
            server,
            admin,
            token,
        };
        // The maker's CA, trusted by the server; this very runtime build is a release.
        ok_json(&[
            "manufacturer",
            "init",
            "--out-dir",
            s(&fleet.path("maker")),
            "--name",
            "Test Silicon",
        ]);
        let ca = std::fs::read_to_string(fleet.path("maker/ca.pem")).unwrap();
        assert_eq!(
            fleet
                .admin
                .post("/api/v1/manufacturer-cas", json!({"certificate_pem": ca}))
                .status,
            201
        );
        let runtime = sevenfold_rot::Digest::of(&std::fs::read(support::bin()).unwrap());
        let r = fleet.admin.post(
            "/api/v1/runtime-releases",
            json!({"digest": runtime.to_hex(), "version": "test"}),
        );
        assert_eq!(r.status, 201, "{r:?}");
        // A release signing key.
        ok_json(&["keygen", "--out", s(&fleet.path("release.pem"))]);
        fleet
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn op(&self, args: &[&str]) -> Value {
        cli_ok(&self.server, &self.token, &self.path("config"), args)
    }

    /// A tenant with the release key registered and the sample app uploaded.
    fn tenant(&self, name: &str) -> String {
        let t = self.op(&["tenant", "create", name])["id"]
            .as_str()
            .unwrap()
            .to_owned();
        self.op(&[
            "signing-key",
            "add",
            s(&self.path("release.pub.pem")),
            "--name",
            "release",
            "--tenant",
            name,
        ]);
        let package = self.path(&format!("blink-{name}.imagepackage"));
        if !self.path("blink.imagepackage").exists() {
            ok_json(&[
                "package",
                "--manifest",
                s(&Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../../apps/blink/app_manifest.json")),
                "--payload",
                s(&Path::new(env!("SEVENFOLD_SAMPLE_WASM_DIR")).join("blink.wasm")),
                "--key",
                s(&self.path("release.pem")),
                "--out",
                s(&self.path("blink.imagepackage")),
            ]);
        }
        std::fs::copy(self.path("blink.imagepackage"), &package).unwrap();
        self.op(&["image", "add", s(&package), "--tenant", name]);
        t
    }

    /// A device: factory-initialised, claimed by `tenant`, with the app installed.
    fn device(&self, name: &str, tenant: &str) -> (PathBuf, String) {
        self.device_on(name, tenant, &[])
    }

    /// [`Fleet::device`] with a root-of-trust choice (`--rot tpm --tcti …`).
    fn device_on(&self, name: &str, tenant: &str, rot: &[&str]) -> (PathBuf, String) {
        let state = self.path(name);
        let id = support::enrol(
            &self.server,
            &state,
            &self.path("maker"),
            &self.path("release.pub.pem"),
            rot,
            |args| {
                let mut args = args.to_vec();
                args.extend(["--tenant", tenant]);
                self.op(&args)
            },
        );
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&state).unwrap().permissions(),
        ) & 0o777;
        assert_eq!(mode, 0o700);
        ok_json(&[
            "agent",
            "install",
            "--state-dir",
            s(&state),
            s(&self.path("blink.imagepackage")),
        ]);
        (state, id)
    }

    /// Writes the tenant's published CA chain; returns its path.
    fn chain(&self, tenant: &str) -> PathBuf {
        let r = self.admin.get(&format!("/api/v1/tenants/{tenant}/ca"));
        assert_eq!(r.status, 200, "{r:?}");
        let pem: String = r
            .body
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["certificate_pem"].as_str().unwrap())
            .collect();
        let path = self.path(&format!("chain-{tenant}.pem"));
        std::fs::write(&path, pem).unwrap();
        path
    }
}

fn attest_once(state: &Path) -> Output {
    sevenfold(&["agent", "run", "--state-dir", s(state), "--once"])
}

/// The device's TLS key as PEM, for tools such as mosquitto_pub.
fn key_pem(state: &Path, out: &Path) {
    let der = std::fs::read(state.join("tls-key.p8")).unwrap();
    std::fs::write(out, SoftwareKey::pkcs8_to_pem(&der).as_bytes()).unwrap();
}

fn openssl(args: &[&str]) -> Output {
    Command::new("openssl").args(args).output().unwrap()
}

#[test]
fn agent_attests_and_uses_its_certificate_for_mutual_tls() {
    attests_and_uses_its_certificate(&[], "soft", None);
}

/// The same end to end with the device key, measurements and quote in a
/// TPM (swtpm on free loopback ports; `agent run` finds it through the TCTI
/// `agent init` recorded).
#[cfg(feature = "tpm")]
#[test]
fn agent_on_a_tpm_attests_and_uses_its_certificate_for_mutual_tls() {
    let tpm = sevenfold_rot::tpm::simulator::Swtpm::start().expect("swtpm must be installed");
    let tcti = tpm.tcti();
    let (_fleet, state) = attests_and_uses_its_certificate(
        &["--rot", "tpm", "--tcti", &tcti],
        "tpm",
        Some(&tpm.ca_dir()),
    );
    // The device certificate certifies the TPM's TLS key (what the quote's
    // nonce bound and the whoami handshake was signed with).
    let certified = openssl(&[
        "x509",
        "-in",
        s(&state.join("device-cert.pem")),
        "-noout",
        "-pubkey",
    ]);
    let certified =
        sevenfold_rot::PublicKey::from_pem(&String::from_utf8_lossy(&certified.stdout)).unwrap();
    {
        use sevenfold_rot::RootOfTrust;
        let rot = sevenfold_rot::tpm::TpmRoot::open(&state.join("rot"), &tcti).unwrap();
        let tls = rot.resident_tls_key().unwrap().tls_public_key();
        assert_eq!(certified.spki_der(), tls.spki_der());
        assert_ne!(&certified, rot.device_public_key());
    }
    // A measurement log that does not replay to the PCRs: the agent refuses
    // to start, and says what to do.
    let log = state.join(sevenfold_agent::MEASUREMENT_LOG_FILE);
    let honest = std::fs::read_to_string(&log).unwrap();
    std::fs::write(&log, honest.lines().next().unwrap().to_owned() + "\n").unwrap();
    let refused = attest_once(&state);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("does not match the root of trust's registers") && err.contains("Reboot"),
        "{err}"
    );
}

/// Runs the scenario; returns the fleet (alive, so its files stay) and the
/// device's state directory. `tpm_maker`: the directory of the TPM maker's
/// CA (swtpm's), which the operator trusts with `--kind tpm`.
fn attests_and_uses_its_certificate(
    rot: &[&str],
    backend: &str,
    tpm_maker: Option<&Path>,
) -> (Fleet, PathBuf) {
    let f = Fleet::start();
    let tenant = f.tenant("acme");
    let (state, id) = f.device_on("dev1", "acme", rot);
    let config = std::fs::read_to_string(state.join("agent.toml")).unwrap();
    assert!(config.contains(&format!("rot = \"{backend}\"")), "{config}");
    // Only the soft backend keeps a device key file; a TPM keeps blobs only it can load.
    assert_eq!(state.join("rot/device-key.p8").exists(), backend == "soft");
    assert_eq!(state.join("rot/ak.pub").exists(), backend == "tpm");
    // A TPM also holds the TLS key: no software TLS key is made for it.
    assert_eq!(state.join("tls-key.p8").exists(), backend == "soft");
    assert_eq!(state.join("rot/tls.pub").exists(), backend == "tpm");

    if let Some(maker) = tpm_maker {
        // A TPM's quotes count only once credential activation binds its
        // key to an EK of a trusted TPM maker: not trusted yet, refused.
        let out = attest_once(&state);
        assert!(!out.status.success());
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("attested: fail") && stdout.contains("EK certificate refused"),
            "{stdout}"
        );
        for file in ["swtpm-localca-rootca-cert.pem", "issuercert.pem"] {
            let trusted = f.op(&[
                "manufacturer",
                "trust",
                s(&maker.join(file)),
                "--kind",
                "tpm",
            ]);
            assert_eq!(trusted["kind"], "tpm", "{trusted}");
        }
        let listed = f.op(&["manufacturer", "list"]);
        assert_eq!(
            listed
                .as_array()
                .unwrap()
                .iter()
                .filter(|ca| ca["kind"] == "tpm")
                .count(),
            2,
            "{listed}"
        );
    }

    let out = attest_once(&state);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("attested: pass"), "{stdout}");

    // A restart of the agent is another boot. On a TPM it extends the same
    // PCRs (one power cycle), so it appends to the cycle's measurement log
    // and the quote covers both starts; the verifier passes it again.
    let again = attest_once(&state);
    assert!(
        again.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&again.stdout),
        String::from_utf8_lossy(&again.stderr)
    );
    let logged = std::fs::read_to_string(state.join(sevenfold_agent::MEASUREMENT_LOG_FILE))
        .unwrap()
        .lines()
        .count();
    // On the TPM: three starts in this power cycle (the one refused before
    // the maker was trusted, the first pass, the restart), two events each.
    assert_eq!(logged, if backend == "tpm" { 6 } else { 2 });

    // Mutual TLS with the new certificate (on a TPM, signed by the TPM).
    let who = ok_json(&["agent", "whoami", "--state-dir", s(&state)]);
    assert_eq!(who["device_id"], id.as_str());
    assert_eq!(who["tenant_id"], tenant.as_str());
    assert_eq!(state.join("tls-key.p8").exists(), backend == "soft");

    // Third parties verify it with the downloaded chain; it is valid for 24 h.
    let chain = f.chain(&tenant);
    let cert = state.join("device-cert.pem");
    let v = openssl(&[
        "verify",
        "-CAfile",
        s(&chain),
        "-purpose",
        "sslclient",
        s(&cert),
    ]);
    assert!(String::from_utf8_lossy(&v.stdout).contains(": OK"), "{v:?}");
    assert!(
        openssl(&["x509", "-in", s(&cert), "-noout", "-checkend", "86000"])
            .status
            .success(),
        "valid for about a day"
    );
    assert!(
        !openssl(&["x509", "-in", s(&cert), "-noout", "-checkend", "86500"])
            .status
            .success(),
        "but not longer than 24 h"
    );
    let subject = String::from_utf8_lossy(
        &openssl(&[
            "x509",
            "-in",
            s(&cert),
            "-noout",
            "-subject",
            "-ext",
            "subjectAltName,extendedKeyUsage",
        ])
        .stdout,
    )
    .into_owned();
    assert!(
        subject.contains(&id) && subject.contains(&tenant),
        "{subject}"
    );
    assert!(
        subject.contains("TLS Web Client Authentication"),
        "{subject}"
    );

    // The operator sees the verdicts with the measurements of the boot
    // that runs now.
    let history = f.admin.get(&format!(
        "/api/v1/tenants/{tenant}/devices/{id}/attestations"
    ));
    assert_eq!(history.body[0]["verdict"], "pass", "{history:?}");
    assert_eq!(history.body[1]["verdict"], "pass", "{history:?}");
    assert_eq!(history.body[0]["measurements"].as_array().unwrap().len(), 2);

    // Revocation takes effect at once for new connections.
    assert_eq!(
        f.admin
            .post(
                &format!("/api/v1/tenants/{tenant}/devices/{id}/revoke"),
                json!({})
            )
            .status,
        200
    );
    let refused = sevenfold(&["agent", "whoami", "--state-dir", s(&state)]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("revoked"),
        "{refused:?}"
    );
    (f, state)
}

#[test]
fn tampered_image_on_disk_is_caught_at_boot_and_reported() {
    let f = Fleet::start();
    let tenant = f.tenant("acme");
    let (state, id) = f.device("dev1", "acme");
    assert!(attest_once(&state).status.success());
    let image = std::fs::read_dir(state.join("images"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&image).unwrap();
    let at = bytes.len() - 100;
    bytes[at] ^= 0x01;
    std::fs::write(&image, bytes).unwrap();
    let out = attest_once(&state);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("attested: fail"), "{stdout}");
    let history = f.admin.get(&format!(
        "/api/v1/tenants/{tenant}/devices/{id}/attestations"
    ));
    let reasons = history.body[0]["reasons"].to_string();
    assert_eq!(history.body[0]["verdict"], "fail");
    assert!(reasons.contains("boot check failed"), "{reasons}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Broker(std::process::Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A Mosquitto broker with a TLS listener that requires client certificates
/// from `chain` and uses the certificate identity as the user name.
fn broker(dir: &Path, chain: &Path) -> (Broker, u16, PathBuf) {
    let (ca, ca_pem, ca_key) = sevenfold_pki::ServiceCa::generate("Broker CA").unwrap();
    let _ = ca_key;
    let (server_chain, server_key) = ca.issue_server_cert(&["127.0.0.1".to_owned()], 2).unwrap();
    std::fs::write(dir.join("broker-ca.pem"), ca_pem).unwrap();
    std::fs::write(dir.join("broker.pem"), server_chain).unwrap();
    std::fs::write(dir.join("broker.key"), server_key.as_bytes()).unwrap();
    let port = free_port();
    let conf = format!(
        "per_listener_settings true\nlistener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\nuse_identity_as_username true\nallow_anonymous true\npersistence false\nlog_dest stderr\n",
        s(chain),
        s(&dir.join("broker.pem")),
        s(&dir.join("broker.key"))
    );
    std::fs::write(dir.join("mosquitto.conf"), conf).unwrap();
    let child = Command::new("mosquitto")
        .args(["-c", s(&dir.join("mosquitto.conf"))])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("mosquitto is installed (.ci/run installs it)");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    (Broker(child), port, dir.join("broker-ca.pem"))
}

fn publish(port: u16, broker_ca: &Path, cert: &Path, key: &Path) -> Output {
    Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "--cafile",
            s(broker_ca),
            "--cert",
            s(cert),
            "--key",
            s(key),
            "-t",
            "devices/telemetry",
            "-m",
            "21.5",
            "-q",
            "1",
        ])
        .output()
        .unwrap()
}

#[test]
fn mosquitto_accepts_the_tenants_devices_only() {
    let f = Fleet::start();
    let acme = f.tenant("acme");
    let _other = f.tenant("other");
    let (mine, _) = f.device("mine", "acme");
    let (theirs, _) = f.device("theirs", "other");
    assert!(attest_once(&mine).status.success());
    assert!(attest_once(&theirs).status.success());
    let chain = f.chain(&acme);
    let (_broker, port, broker_ca) = broker(f.dir.path(), &chain);

    key_pem(&mine, &f.path("mine.key"));
    let ok = publish(
        port,
        &broker_ca,
        &mine.join("device-cert.pem"),
        &f.path("mine.key"),
    );
    assert!(ok.status.success(), "acme's device was refused: {ok:?}");

    key_pem(&theirs, &f.path("theirs.key"));
    let no = publish(
        port,
        &broker_ca,
        &theirs.join("device-cert.pem"),
        &f.path("theirs.key"),
    );
    assert!(!no.status.success(), "another tenant's device was accepted");

    // An expired certificate of the right tenant: minted with the tenant CA's
    // own key (unwrapped from the server's database), dated three days ago.
    let expired = expired_certificate(&f, &acme);
    std::fs::write(f.path("expired.pem"), expired.0).unwrap();
    std::fs::write(f.path("expired.key"), expired.1).unwrap();
    let old = publish(
        port,
        &broker_ca,
        &f.path("expired.pem"),
        &f.path("expired.key"),
    );
    assert!(!old.status.success(), "an expired certificate was accepted");
}

fn expired_certificate(f: &Fleet, tenant: &str) -> (String, String) {
    let data = &f.server.data_dir;
    let wrap_hex = std::fs::read_to_string(data.join("secrets/ca-wrap.key")).unwrap();
    let wrap = sevenfold_pki::KeyWrap::from_hex(wrap_hex.trim()).unwrap();
    let url = format!("sqlite://{}", data.join("sevenfold.db").display());
    let (cert_der, wrapped, generation) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            use sqlx::{Connection, Row};
            sqlx::any::install_default_drivers();
            let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
            let row = sqlx::query("SELECT cert_der, wrapped_key, generation FROM tenant_cas WHERE tenant_id = $1 ORDER BY generation DESC")
                .bind(tenant)
                .fetch_one(&mut conn)
                .await
                .unwrap();
            (row.get::<Vec<u8>, _>("cert_der"), row.get::<Vec<u8>, _>("wrapped_key"), row.get::<i64, _>("generation"))
        });
    let key = wrap
        .unwrap(&wrapped, &format!("tenant-ca:{tenant}:{generation}"))
        .unwrap();
    let ca = sevenfold_pki::TenantCa::load(&cert_der, &key).unwrap();
    let (device_key, pkcs8) =
        SoftwareKey::generate(sevenfold_rot::KeyAlgorithm::EcdsaP256).unwrap();
    let id = sevenfold_rot::DeviceId::of(device_key.public_key());
    // Issued at the CA's first valid moment for one minute: long expired.
    let issued_at = ca.certificate().not_before() + 300;
    let cert = ca
        .issue_device_certificate(&id, tenant, device_key.public_key(), issued_at, 60)
        .unwrap();
    (cert.to_pem(), SoftwareKey::pkcs8_to_pem(&pkcs8).to_string())
}

/// Issue 6 end to end: `agent run` starts the measured app in its
/// compartment, `agent status` shows it, and SIGTERM stops it gracefully.
#[test]
fn agent_run_starts_the_measured_app_and_agent_status_shows_it() {
    let fleet = Fleet::start();
    let tenant = fleet.tenant("apps");
    let (state, _) = fleet.device("device-apps", &tenant);
    let mut agent = Command::new(support::bin())
        .args(["agent", "run", "--state-dir", s(&state)])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let status = |state: &Path| ok_json(&["agent", "status", "--state-dir", s(state)]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let blink = loop {
        // status.json appears once boot is done.
        let out = sevenfold(&[
            "--output",
            "json",
            "agent",
            "status",
            "--state-dir",
            s(&state),
        ]);
        let now: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let apps = now["apps"].as_array().cloned().unwrap_or_default();
        if let Some(app) = apps
            .into_iter()
            // Running, and past instantiation (its memory is known).
            .find(|a| {
                a["name"] == "blink"
                    && a["state"] == "running"
                    && a["memory_bytes"].as_u64().is_some_and(|m| m > 0)
            })
        {
            break app;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "blink never ran: {now}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(
        blink["component_id"],
        "5b9a1c52-3f0b-4a39-9d7e-6f2d1c3e8a10"
    );
    assert_eq!(blink["restarts"], 0);
    assert!(blink["memory_bytes"].as_u64().unwrap() <= 2048 * 1024);
    let human = sevenfold(&["agent", "status", "--state-dir", s(&state)]);
    assert!(String::from_utf8_lossy(&human.stdout)
        .contains("blink 1.0.0 (5b9a1c52-3f0b-4a39-9d7e-6f2d1c3e8a10)  running"));

    let killed = Command::new("kill")
        .args(["-TERM", &agent.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(agent.wait().unwrap().success());
    let apps = status(&state)["apps"].clone();
    assert_eq!(apps[0]["state"], "stopped", "{apps}");
    assert!(
        apps[0]["recent_failures"].as_array().unwrap().is_empty(),
        "{apps}"
    );
    // Its output, by name and by component ID.
    for app in ["blink", "5b9a1c52-3f0b-4a39-9d7e-6f2d1c3e8a10"] {
        let logs = sevenfold(&["agent", "logs", "--state-dir", s(&state), app]);
        assert!(logs.status.success(), "{logs:?}");
        let text = String::from_utf8_lossy(&logs.stdout);
        assert!(text.starts_with("blink: GPIO 8 high (1)\n"), "{text}");
        assert!(text.contains("blink: done after"), "{text}");
    }
    let unknown = sevenfold(&["agent", "logs", "--state-dir", s(&state), "nosuchapp"]);
    assert!(!unknown.status.success());
}
