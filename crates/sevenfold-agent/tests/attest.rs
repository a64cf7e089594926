//! The attestation client and whoami against a stand-in device API: a small
//! blocking HTTPS server (rustls) that checks evidence as the verifier would.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{package, Fixture, BLINK};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use serde_json::json;
use sevenfold_agent::{Agent, AttestError, StateDir};
use sevenfold_core::attestation::{Evidence, EvidenceBody, NonceRequest};
use sevenfold_pki::{ServiceCa, TenantCa};
use sevenfold_rot::PublicKey;

const TENANT: &str = "tenant-1";

struct Request {
    method: String,
    path: String,
    body: Vec<u8>,
    client_cert: Option<Vec<u8>>,
}

struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

fn reply(status: u16, body: serde_json::Value) -> Reply {
    Reply {
        status,
        headers: Vec::new(),
        body: body.to_string(),
    }
}

type Handler = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

/// Serves HTTPS on 127.0.0.1 with a certificate from `ca`; a client
/// certificate from `client_ca` is asked for but optional.
fn serve(ca: &ServiceCa, client_ca: &TenantCa, handler: Handler) -> SocketAddr {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let (chain_pem, key_pem) = ca.issue_server_cert(&["127.0.0.1".into()], 1).unwrap();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(client_ca.certificate().der().to_vec()))
        .unwrap();
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let conn = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, stream);
            // A client that gives up mid-handshake is not our problem.
            let _ = handle(&mut tls, &handler);
        }
    });
    addr
}

fn handle(
    tls: &mut rustls::StreamOwned<rustls::ServerConnection, std::net::TcpStream>,
    handler: &Handler,
) -> std::io::Result<()> {
    let mut data = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = tls.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        data.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&data[..header_end]).into_owned();
    let mut lines = head.lines();
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_owned();
    let path = first.next().unwrap_or_default().to_owned();
    let length: usize = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.trim().parse().unwrap())
        .unwrap_or(0);
    while data.len() < header_end + length {
        let n = tls.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        data.extend_from_slice(&chunk[..n]);
    }
    let request = Request {
        method,
        path,
        body: data[header_end..].to_vec(),
        client_cert: tls
            .conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.as_ref().to_vec()),
    };
    let reply = handler(&request);
    let mut out = format!(
        "HTTP/1.1 {} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reply.body.len()
    );
    for (name, value) in &reply.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(&reply.body);
    tls.write_all(out.as_bytes())?;
    tls.conn.send_close_notify();
    tls.flush()
}

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// A verifier like the service's: single nonce, quote and log checked with
/// the endorsed device key, endorsement checked against the manufacturer,
/// then a 24 h certificate from the tenant CA.
struct Verifier {
    device_key: PublicKey,
    manufacturer: sevenfold_pki::CaCertificate,
    tenant_ca: TenantCa,
    nonce: Mutex<Option<Vec<u8>>>,
    refuse_with: Mutex<Option<Vec<String>>>,
    certified: Mutex<Option<PublicKey>>,
}

impl Verifier {
    fn answer(&self, request: &Request) -> Reply {
        match (request.method.as_str(), request.path.as_str()) {
            ("POST", "/device/v1/attestation/nonce") => {
                let asked: NonceRequest = serde_json::from_slice(&request.body).unwrap();
                assert_eq!(
                    asked.device_id,
                    sevenfold_rot::DeviceId::of(&self.device_key).to_string()
                );
                let nonce = sevenfold_rot::random_nonce().unwrap().to_vec();
                *self.nonce.lock().unwrap() = Some(nonce.clone());
                reply(
                    200,
                    json!({"nonce": hex::encode(nonce), "expires_in_seconds": 60}),
                )
            }
            ("POST", "/device/v1/attestation/evidence") => {
                let nonce = self
                    .nonce
                    .lock()
                    .unwrap()
                    .take()
                    .expect("a nonce was issued");
                let body: EvidenceBody = serde_json::from_slice(&request.body).unwrap();
                let evidence = Evidence::parse(&body).unwrap();
                evidence.check(&self.device_key, &nonce).unwrap();
                let endorsed = sevenfold_pki::verify_endorsement(
                    body.endorsement_pem.as_bytes(),
                    std::slice::from_ref(&self.manufacturer),
                    now(),
                )
                .unwrap();
                assert_eq!(endorsed.device_id(), evidence.device_id);
                if let Some(reasons) = self.refuse_with.lock().unwrap().clone() {
                    return reply(422, json!({"verdict": "fail", "reasons": reasons}));
                }
                let cert = self
                    .tenant_ca
                    .issue_device_certificate(
                        &evidence.device_id,
                        TENANT,
                        &evidence.tls_key,
                        now(),
                        86_400,
                    )
                    .unwrap();
                *self.certified.lock().unwrap() = Some(evidence.tls_key.clone());
                reply(
                    200,
                    json!({
                        "verdict": "pass",
                        "reasons": [],
                        "certificate_chain_pem": format!("{}{}", cert.to_pem(), self.tenant_ca.certificate().to_pem()),
                        "not_after": rfc3339(cert.not_after()),
                        "tenant_id": TENANT,
                    }),
                )
            }
            ("GET", "/device/v1/whoami") => match &request.client_cert {
                None => reply(
                    401,
                    json!({"type": "about:blank", "title": "Unauthorized", "status": 401,
                    "detail": "a device certificate is required"}),
                ),
                Some(der) => {
                    let key = sevenfold_pki::certificate_public_key(der).unwrap();
                    assert_eq!(Some(key), self.certified.lock().unwrap().clone());
                    reply(
                        200,
                        json!({
                            "device_id": sevenfold_rot::DeviceId::of(&self.device_key).to_string(),
                            "tenant_id": TENANT,
                            "certificate_not_after": rfc3339(now() + 86_400),
                        }),
                    )
                }
            },
            _ => reply(
                404,
                json!({"type": "about:blank", "title": "Not Found", "status": 404, "detail": "no such route"}),
            ),
        }
    }
}

struct Setup {
    f: Fixture,
    verifier: Arc<Verifier>,
    state: StateDir,
}

/// A device with one installed app, pointed at a stand-in service.
fn setup(handler: Option<Handler>) -> Setup {
    let f = Fixture::new();
    let source = f.dir.path().join("blink.imagepackage");
    std::fs::write(&source, package(&f.signer, "blink", BLINK, "1.0.0", 1)).unwrap();
    f.state.install(&source).unwrap();
    let (tenant_ca, _) = TenantCa::generate(TENANT, "Tenant One", 30).unwrap();
    let verifier = Arc::new(Verifier {
        device_key: f.state.open_rot().unwrap().device_public_key().clone(),
        manufacturer: f.manufacturer.certificate().clone(),
        tenant_ca,
        nonce: Mutex::new(None),
        refuse_with: Mutex::new(None),
        certified: Mutex::new(None),
    });
    let handler = handler.unwrap_or_else(|| {
        let v = verifier.clone();
        Arc::new(move |r: &Request| v.answer(r))
    });
    let addr = serve(&f.service_ca, &verifier.tenant_ca, handler);
    let state = point_at(&f, &format!("https://{addr}"));
    Setup { f, verifier, state }
}

/// Rewrites `service_url` in agent.toml (as an operator would) and reopens.
fn point_at(f: &Fixture, url: &str) -> StateDir {
    let path = f.state.path("agent.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replace("https://127.0.0.1:8444/", url);
    std::fs::write(&path, text).unwrap();
    StateDir::open(f.state.root()).unwrap()
}

#[tokio::test]
async fn a_pass_stores_the_certificate_and_it_works_for_mutual_tls() {
    let s = setup(None);
    let agent = Agent::start(s.state.clone(), &s.f.runtime()).unwrap();
    let pass = agent.attest().await.unwrap();
    assert_eq!(pass.tenant_id, TENANT);
    let remaining = pass.not_after - time::OffsetDateTime::now_utc();
    assert!(remaining > time::Duration::hours(23), "{remaining}");

    let cert_path = s.state.path("device-cert.pem");
    assert_eq!(
        std::fs::read_to_string(&cert_path).unwrap(),
        pass.certificate_chain_pem
    );
    assert_eq!(common::mode(&cert_path), 0o600);
    let status = s.state.read_status().unwrap().unwrap();
    assert_eq!(status.verdict.as_deref(), Some("pass"));
    assert!(status.reasons.is_empty());
    assert_eq!(status.tenant_id.as_deref(), Some(TENANT));
    assert!(status.certificate_not_after.is_some());
    assert!(status.last_attestation_at.is_some());
    assert_eq!(status.boot_measurements.len(), 2);

    let me = sevenfold_agent::whoami(&s.state).await.unwrap();
    assert_eq!(me.device_id, s.state.device_id().to_string());
    assert_eq!(me.tenant_id, TENANT);
    drop(s.verifier);
}

#[tokio::test]
async fn a_fail_records_the_reasons_and_drops_the_certificate() {
    let s = setup(None);
    let agent = Agent::start(s.state.clone(), &s.f.runtime()).unwrap();
    agent.attest().await.unwrap();
    assert!(s.state.path("device-cert.pem").exists());

    *s.verifier.refuse_with.lock().unwrap() = Some(vec![
        "component blink 1.0.0 is not deployed to this device's group".into(),
        "runtime digest is not a released runtime".into(),
    ]);
    let err = agent.attest().await.unwrap_err();
    let AttestError::Refused { reasons, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(reasons.len(), 2);
    assert!(err.to_string().contains("not a released runtime"), "{err}");
    assert!(!s.state.path("device-cert.pem").exists());
    let status = s.state.read_status().unwrap().unwrap();
    assert_eq!(status.verdict.as_deref(), Some("fail"));
    assert_eq!(&status.reasons, reasons);
    assert_eq!(status.certificate_not_after, None);

    let err = sevenfold_agent::whoami(&s.state).await.unwrap_err();
    assert!(err.to_string().contains("holds no certificate"), "{err}");
}

#[tokio::test]
async fn rate_limits_and_problems_are_typed() {
    let calls = Arc::new(Mutex::new(0u32));
    let counter = calls.clone();
    let s = setup(Some(Arc::new(move |r: &Request| {
        let call = {
            let mut calls = counter.lock().unwrap();
            *calls += 1;
            *calls
        };
        match (call, r.path.as_str()) {
            (1, _) => {
                let mut limited = reply(
                    429,
                    json!({"type": "about:blank",
                    "title": "Too Many Requests", "status": 429, "detail": "slow down"}),
                );
                limited.headers.push(("Retry-After", "7".into()));
                limited
            }
            (_, "/device/v1/attestation/nonce") => reply(
                200,
                json!({"nonce": hex::encode([9u8; 32]), "expires_in_seconds": 60}),
            ),
            _ => reply(
                403,
                json!({"type": "about:blank", "title": "Forbidden", "status": 403,
                "detail": "device is not claimed by any tenant"}),
            ),
        }
    })));
    let agent = Agent::start(s.state.clone(), &s.f.runtime()).unwrap();
    let err = agent.attest().await.unwrap_err();
    assert!(
        matches!(err, AttestError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(7)),
        "{err}"
    );
    let status = s.state.read_status().unwrap().unwrap();
    assert!(status.last_error.unwrap().contains("rate-limiting"));
    assert_eq!(status.verdict, None);

    let err = agent.attest().await.unwrap_err();
    assert!(
        matches!(&err, AttestError::Service { status: 403, detail } if detail.contains("not claimed")),
        "{err}"
    );
    assert_eq!(*calls.lock().unwrap(), 3);

    let err = sevenfold_agent::whoami(&s.state).await.unwrap_err();
    assert!(
        matches!(
            err,
            AttestError::Local(sevenfold_agent::AgentError::NoCertificate(_))
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_service_with_another_ca_is_not_trusted() {
    let f = Fixture::new();
    let (impostor, _, _) = ServiceCa::generate("impostor").unwrap();
    let (tenant_ca, _) = TenantCa::generate(TENANT, "T", 30).unwrap();
    let addr = serve(
        &impostor,
        &tenant_ca,
        Arc::new(|_: &Request| reply(200, json!({}))),
    );
    let state = point_at(&f, &format!("https://{addr}"));
    let agent = Agent::start(state, &f.runtime()).unwrap();
    let err = agent.attest().await.unwrap_err();
    assert!(matches!(err, AttestError::Network { .. }), "{err}");
    assert!(err.to_string().contains("certificate"), "{err}");
}

#[tokio::test]
async fn the_run_loop_attests_then_schedules_renewal_at_half_life() {
    let s = setup(None);
    let agent = Agent::start(s.state.clone(), &s.f.runtime()).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut stop = Some(stop);
    let mut events = Vec::new();
    agent
        .run(
            async {
                let _ = stopped.await;
            },
            |event| {
                events.push((event.outcome.is_ok(), event.next_attempt_in));
                if let Some(stop) = stop.take() {
                    let _ = stop.send(());
                }
            },
        )
        .await;
    assert_eq!(events.len(), 1);
    let (passed, next) = events[0];
    assert!(passed);
    // Half of a 24 h certificate, shortened by at most 10 %.
    assert!(next <= Duration::from_secs(12 * 3600), "{next:?}");
    assert!(
        next >= Duration::from_secs(12 * 3600).mul_f64(0.89),
        "{next:?}"
    );
    let status = s.state.read_status().unwrap().unwrap();
    assert!(status.next_renewal.is_some());
}
