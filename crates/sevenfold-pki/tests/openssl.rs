//! Cross-checks against the `openssl` command-line tool: certificates made
//! here must verify with an independent X.509 implementation, and a CA made
//! by openssl must work as a manufacturer CA here.
//!
//! Needs `openssl` on the PATH. Set `SEVENFOLD_SKIP_OPENSSL=1` to skip these
//! tests on a machine without it (they fail otherwise, rather than pass
//! silently).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use sevenfold_pki::{
    chain_pem, verify_endorsement, CaCertificate, ManufacturerCa, ServiceCa, TenantCa,
};
use sevenfold_rot::{DeviceId, KeyAlgorithm, SoftwareKey};

/// Runs openssl in `dir`; returns whether it succeeded and its stdout + stderr.
/// `None` when skipping was asked for and openssl is missing.
fn openssl(dir: &Path, args: &[&str]) -> Option<(bool, String)> {
    match Command::new("openssl").args(args).current_dir(dir).output() {
        Ok(out) => Some((
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )),
        Err(e) if std::env::var_os("SEVENFOLD_SKIP_OPENSSL").is_some() => {
            eprintln!("skipping: openssl not runnable ({e})");
            None
        }
        Err(e) => panic!("openssl not runnable ({e}); install it or set SEVENFOLD_SKIP_OPENSSL=1"),
    }
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

fn now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

#[test]
fn openssl_verifies_endorsements_of_both_key_algorithms() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (maker, files) = ManufacturerCa::generate("Example Silicon", 3650).unwrap();
    let (stranger, _) = ManufacturerCa::generate("Example Silicon", 3650).unwrap();
    write(dir, "ca.pem", &files.cert_pem);
    write(dir, "stranger.pem", &stranger.certificate().to_pem());

    for alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Ed25519] {
        let (device, _) = SoftwareKey::generate(alg).unwrap();
        let id = DeviceId::of(device.public_key()).to_string();
        write(
            dir,
            "endorsement.pem",
            &maker.endorse(device.public_key(), 365).unwrap().to_pem(),
        );

        let Some((ok, out)) = openssl(
            dir,
            &[
                "verify",
                "-CAfile",
                "ca.pem",
                "-purpose",
                "any",
                "-x509_strict",
                "endorsement.pem",
            ],
        ) else {
            return;
        };
        assert!(ok && out.contains("endorsement.pem: OK"), "{alg}: {out}");

        // The same certificate does not verify under another CA with the same name.
        let (ok, out) = openssl(
            dir,
            &[
                "verify",
                "-CAfile",
                "stranger.pem",
                "-purpose",
                "any",
                "endorsement.pem",
            ],
        )
        .unwrap();
        assert!(!ok && !out.contains(": OK"), "{alg}: {out}");

        let (ok, subject) = openssl(
            dir,
            &["x509", "-in", "endorsement.pem", "-noout", "-subject"],
        )
        .unwrap();
        assert!(ok);
        assert_eq!(subject.trim(), format!("subject=CN = {id}"), "{alg}");

        let (ok, text) =
            openssl(dir, &["x509", "-in", "endorsement.pem", "-noout", "-text"]).unwrap();
        assert!(ok);
        for needle in [
            format!("URI:urn:sevenfold:device:{id}"),
            "1.3.6.1.4.1.59999.7.1".to_owned(),
            "CA:FALSE".to_owned(),
            "Digital Signature".to_owned(),
            "Issuer: CN = Example Silicon, O = Sevenfold manufacturer".to_owned(),
        ] {
            assert!(text.contains(&needle), "{alg}: no {needle:?} in\n{text}");
        }
    }
}

#[test]
fn openssl_reads_the_ca_key_file_and_it_matches_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (_, files) = ManufacturerCa::generate("Example Silicon", 30).unwrap();
    write(dir, "ca.pem", &files.cert_pem);
    write(dir, "ca.key", &files.key_pem);
    let Some((ok, from_key)) = openssl(dir, &["pkey", "-in", "ca.key", "-pubout"]) else {
        return;
    };
    assert!(ok, "{from_key}");
    let (ok, from_cert) = openssl(dir, &["x509", "-in", "ca.pem", "-noout", "-pubkey"]).unwrap();
    assert!(ok, "{from_cert}");
    assert_eq!(from_key, from_cert);
    let (ok, text) = openssl(dir, &["x509", "-in", "ca.pem", "-noout", "-text"]).unwrap();
    assert!(ok);
    for needle in [
        "CA:TRUE, pathlen:0",
        "Certificate Sign, CRL Sign",
        "prime256v1",
    ] {
        assert!(text.contains(needle), "no {needle:?} in\n{text}");
    }
}

#[test]
fn a_ca_made_by_openssl_endorses_devices() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let Some((ok, out)) = openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "30",
            "-subj",
            "/CN=OpenSSL Maker",
            "-addext",
            "basicConstraints=critical,CA:TRUE,pathlen:0",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    ) else {
        return;
    };
    assert!(ok, "{out}");
    let cert_pem = std::fs::read_to_string(dir.join("ca.pem")).unwrap();
    let key_pem = std::fs::read_to_string(dir.join("ca.key")).unwrap();
    let maker = ManufacturerCa::load(&cert_pem, &key_pem).unwrap();
    let (device, _) = SoftwareKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let endorsement = maker.endorse(device.public_key(), 30).unwrap();
    let trusted = [CaCertificate::parse(cert_pem.as_bytes()).unwrap()];
    let verified = verify_endorsement(endorsement.der(), &trusted, now()).unwrap();
    assert_eq!(verified.device_id(), DeviceId::of(device.public_key()));

    write(dir, "endorsement.pem", &endorsement.to_pem());
    let (ok, out) = openssl(
        dir,
        &[
            "verify",
            "-CAfile",
            "ca.pem",
            "-purpose",
            "any",
            "endorsement.pem",
        ],
    )
    .unwrap();
    assert!(ok && out.contains("endorsement.pem: OK"), "{out}");

    // An openssl CA without keyCertSign is refused as a CA.
    let (ok, out) = openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.pem",
            "-days",
            "30",
            "-subj",
            "/CN=Not a CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,digitalSignature",
        ],
    )
    .unwrap();
    assert!(ok, "{out}");
    let leaf = std::fs::read(dir.join("leaf.pem")).unwrap();
    let err = CaCertificate::parse(&leaf).unwrap_err();
    assert!(err.to_string().contains("lacks keyCertSign"), "{err}");
}

#[test]
fn service_server_certificate_verifies_for_localhost_and_127_0_0_1() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (service, ca_pem, _) = ServiceCa::generate("Sevenfold test service").unwrap();
    let (chain_pem, key_pem) = service
        .issue_server_cert(&["localhost".to_owned(), "127.0.0.1".to_owned()], 30)
        .unwrap();
    let leaf_pem = chain_pem
        .split_inclusive("-----END CERTIFICATE-----\n")
        .next()
        .unwrap();
    assert!(chain_pem.ends_with(&ca_pem), "the chain ends with the CA");
    write(dir, "ca.pem", &ca_pem);
    write(dir, "server.pem", leaf_pem);
    write(dir, "server.key", &key_pem);

    let verify = |extra: &[&str]| {
        let mut args = vec![
            "verify",
            "-CAfile",
            "ca.pem",
            "-purpose",
            "sslserver",
            "-x509_strict",
        ];
        args.extend_from_slice(extra);
        args.push("server.pem");
        openssl(dir, &args)
    };
    let Some((ok, out)) = verify(&["-verify_hostname", "localhost"]) else {
        return;
    };
    assert!(ok && out.contains("server.pem: OK"), "{out}");
    let (ok, out) = verify(&["-verify_ip", "127.0.0.1"]).unwrap();
    assert!(ok && out.contains("server.pem: OK"), "{out}");
    // Names the certificate was not issued for are refused.
    let (ok, out) = verify(&["-verify_hostname", "example.com"]).unwrap();
    assert!(!ok && out.contains("hostname mismatch"), "{out}");
    let (ok, out) = verify(&["-verify_ip", "10.0.0.1"]).unwrap();
    assert!(!ok && out.contains("IP address mismatch"), "{out}");
    // Not a client certificate.
    let (ok, out) = openssl(
        dir,
        &[
            "verify",
            "-CAfile",
            "ca.pem",
            "-purpose",
            "sslclient",
            "server.pem",
        ],
    )
    .unwrap();
    assert!(!ok, "{out}");

    // The key file holds the certificate's key.
    let (ok, from_key) = openssl(dir, &["pkey", "-in", "server.key", "-pubout"]).unwrap();
    assert!(ok, "{from_key}");
    let (ok, from_cert) =
        openssl(dir, &["x509", "-in", "server.pem", "-noout", "-pubkey"]).unwrap();
    assert!(ok, "{from_cert}");
    assert_eq!(from_key, from_cert);
}

/// `2026-03-01 12:00:00Z`, as `openssl x509 -dateopt iso_8601` prints dates.
fn iso(unix: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(unix).unwrap();
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[test]
fn openssl_verifies_device_certificates_as_tls_clients() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let tenant = "0b7e6f1a-2c3d-4e5f-8a9b-0c1d2e3f4a5b";
    let (ca, files) = TenantCa::generate(tenant, "Contoso", 365).unwrap();
    let (rot, _) = SoftwareKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let device_id = DeviceId::of(rot.public_key());
    let now = now();
    write(dir, "tenant-ca.pem", &files.cert_pem);

    for alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Ed25519] {
        let (tls, _) = SoftwareKey::generate(alg).unwrap();
        let cert = ca
            .issue_device_certificate(&device_id, tenant, tls.public_key(), now, 86_400)
            .unwrap();
        write(dir, "device.pem", &cert.to_pem());
        let verify = |purpose: &str| {
            openssl(
                dir,
                &[
                    "verify",
                    "-CAfile",
                    "tenant-ca.pem",
                    "-purpose",
                    purpose,
                    "-x509_strict",
                    "device.pem",
                ],
            )
        };
        let Some((ok, out)) = verify("sslclient") else {
            return;
        };
        assert!(ok && out.contains("device.pem: OK"), "{alg}: {out}");
        let (ok, out) = verify("sslserver").unwrap();
        assert!(
            !ok,
            "{alg}: a device certificate is no server certificate: {out}"
        );

        let (ok, dates) = openssl(
            dir,
            &[
                "x509",
                "-in",
                "device.pem",
                "-noout",
                "-startdate",
                "-enddate",
                "-dateopt",
                "iso_8601",
            ],
        )
        .unwrap();
        assert!(ok, "{dates}");
        assert_eq!(
            dates,
            format!(
                "notBefore={}\nnotAfter={}\n",
                iso(now - 300),
                iso(now + 86_400)
            ),
            "{alg}"
        );
        // openssl's own clock: valid for nearly 24 h, but not 24 h and a minute.
        let (ok, out) = openssl(
            dir,
            &["x509", "-in", "device.pem", "-noout", "-checkend", "86000"],
        )
        .unwrap();
        assert!(ok, "{alg}: {out}");
        let (ok, out) = openssl(
            dir,
            &["x509", "-in", "device.pem", "-noout", "-checkend", "86460"],
        )
        .unwrap();
        assert!(!ok, "{alg}: {out}");

        let (ok, text) = openssl(dir, &["x509", "-in", "device.pem", "-noout", "-text"]).unwrap();
        assert!(ok);
        for needle in [
            format!("Subject: CN = {device_id}, O = {tenant}"),
            format!("URI:urn:sevenfold:device:{device_id}"),
            format!("URI:urn:sevenfold:tenant:{tenant}"),
            "TLS Web Client Authentication".to_owned(),
            "CA:FALSE".to_owned(),
            "Digital Signature".to_owned(),
        ] {
            assert!(text.contains(&needle), "{alg}: no {needle:?} in\n{text}");
        }
        assert!(!text.contains("TLS Web Server Authentication"), "{text}");
    }

    let (ok, text) = openssl(dir, &["x509", "-in", "tenant-ca.pem", "-noout", "-text"]).unwrap();
    assert!(ok);
    for needle in [
        "CA:TRUE, pathlen:0".to_owned(),
        "Certificate Sign, CRL Sign".to_owned(),
        format!("Subject: CN = Contoso device CA, O = Sevenfold tenant, OU = {tenant}"),
        format!("URI:urn:sevenfold:tenant:{tenant}"),
    ] {
        assert!(text.contains(&needle), "no {needle:?} in\n{text}");
    }
}

#[test]
fn openssl_verifies_against_the_rotation_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let tenant = "tenant-a";
    let (old, old_files) = TenantCa::generate(tenant, "Contoso", 365).unwrap();
    let (new, new_files) = old.generate_successor(tenant, "Contoso", 365).unwrap();
    let (tls, _) = SoftwareKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let device_id = DeviceId::of(tls.public_key());
    write(
        dir,
        "bundle.pem",
        &chain_pem(&[old.certificate(), new.certificate()]),
    );
    write(dir, "new-only.pem", &new_files.cert_pem);
    write(dir, "old-only.pem", &old_files.cert_pem);
    for (name, ca) in [("from-old.pem", &old), ("from-new.pem", &new)] {
        let cert = ca
            .issue_device_certificate(&device_id, tenant, tls.public_key(), now(), 86_400)
            .unwrap();
        write(dir, name, &cert.to_pem());
        let Some((ok, out)) = openssl(
            dir,
            &[
                "verify",
                "-CAfile",
                "bundle.pem",
                "-purpose",
                "sslclient",
                name,
            ],
        ) else {
            return;
        };
        assert!(ok && out.contains(&format!("{name}: OK")), "{out}");
    }
    let (ok, out) = openssl(
        dir,
        &[
            "verify",
            "-CAfile",
            "new-only.pem",
            "-purpose",
            "sslclient",
            "from-old.pem",
        ],
    )
    .unwrap();
    assert!(!ok, "{out}");
    let (ok, subject) =
        openssl(dir, &["x509", "-in", "new-only.pem", "-noout", "-subject"]).unwrap();
    assert!(ok);
    assert_eq!(
        subject.trim(),
        "subject=CN = Contoso device CA (gen 2), O = Sevenfold tenant, OU = tenant-a"
    );
}

#[test]
fn openssl_accepts_the_proof_of_possession_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (ca, files) = TenantCa::generate("tenant-a", "Contoso", 365).unwrap();
    let (stranger, _) = TenantCa::generate("tenant-a", "Contoso", 365).unwrap();
    let code = "8F2A9C41-0B7E-4D3A-9E6F-1C2B3D4E5F60";
    write(dir, "tenant-ca.pem", &files.cert_pem);
    write(dir, "stranger.pem", &stranger.certificate().to_pem());
    write(
        dir,
        "verification.pem",
        &ca.proof_of_possession(code).unwrap(),
    );
    let Some((ok, out)) = openssl(
        dir,
        &[
            "verify",
            "-CAfile",
            "tenant-ca.pem",
            "-x509_strict",
            "verification.pem",
        ],
    ) else {
        return;
    };
    assert!(ok && out.contains("verification.pem: OK"), "{out}");
    let (ok, out) = openssl(
        dir,
        &["verify", "-CAfile", "stranger.pem", "verification.pem"],
    )
    .unwrap();
    assert!(!ok, "signed by this CA only: {out}");
    let (ok, subject) = openssl(
        dir,
        &[
            "x509",
            "-in",
            "verification.pem",
            "-noout",
            "-subject",
            "-nameopt",
            "multiline",
        ],
    )
    .unwrap();
    assert!(ok);
    let cn = subject
        .lines()
        .find_map(|l| l.trim().strip_prefix("commonName"))
        .map(|rest| rest.trim_start().trim_start_matches('=').trim())
        .unwrap();
    assert_eq!(cn, code);
    let (ok, text) = openssl(dir, &["x509", "-in", "verification.pem", "-noout", "-text"]).unwrap();
    assert!(ok);
    assert!(!text.contains("TLS Web Client Authentication"), "{text}");
}
