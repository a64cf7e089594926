//! The fleet simulator and the web dashboard, end to end: a real server
//! process, `sevenfold fleet simulate` with a faulty share driving real
//! attestations, a rollout and crashes into it, and the dashboard driven in
//! a real headless Chromium (Debian's `chromium` and `chromedriver`), with
//! screenshots saved under `target/tmp/dashboard-screenshots/`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::Value;
use support::browser::{self, Browser};
use support::fleet::Fleet;
use support::{bin, s};

/// Polls `probe` every 250 ms until it returns `Some`, for at most `limit`.
fn wait_for<T>(limit: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `sevenfold fleet simulate` as a child, its JSON lines on a channel.
struct Simulator {
    child: Child,
    lines: mpsc::Receiver<Value>,
}

impl Simulator {
    fn start(fleet: &Fleet, devices: u32, faulty_percent: u8) -> Simulator {
        let mut child = Command::new(bin())
            .args(["--output", "json", "fleet", "simulate", "--tenant", "acme"])
            .args(["--devices", &devices.to_string(), "--group", &fleet.group])
            .args(["--device-api", &fleet.server.device_url])
            .args(["--service-ca", s(&fleet.server.ca_file)])
            .args(["--dir", s(&fleet.path("simulated"))])
            .args(["--maker", s(&fleet.path("maker"))])
            .args(["--trust-key", s(&fleet.path("release.pub.pem"))])
            .args(["--faulty-percent", &faulty_percent.to_string()])
            .args(["--interval", "1"])
            .env("SEVENFOLD_SERVER", &fleet.server.url)
            .env("SEVENFOLD_TOKEN", &fleet.token)
            .env("SEVENFOLD_CA", &fleet.server.ca_file)
            .env("SEVENFOLD_CONFIG_DIR", fleet.path("config"))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start sevenfold fleet simulate");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("simulator line {line:?} is not JSON: {e}"));
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        Simulator { child, lines }
    }

    fn next_event(&self, event: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("the simulator printed no {event:?} line"));
            if line["event"] == event {
                return line;
            }
        }
    }

    /// SIGINT, as Ctrl-C; the final summary and whether it exited cleanly.
    fn interrupt(mut self) -> (Value, bool) {
        Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
        let stopped = self.next_event("stopped", Duration::from_secs(60));
        let status = self.child.wait().unwrap();
        (stopped, status.success())
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// base64(SHA-256(SPKI)) of the certificate the server presents at `url`,
/// for Chromium's `--ignore-certificate-errors-spki-list`.
fn server_spki(url: &str, ca_file: &Path) -> String {
    let addr = url.trim_start_matches("https://").trim_end_matches('/');
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(ca_file).unwrap();
    for cert in rustls_pki_types::pem::PemObject::pem_slice_iter(&ca) {
        roots.add(cert.unwrap()).unwrap();
    }
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut connection = rustls::ClientConnection::new(config.into(), name).unwrap();
    let mut socket = TcpStream::connect(addr).unwrap();
    while connection.is_handshaking() {
        connection.complete_io(&mut socket).unwrap();
    }
    let leaf = connection.peer_certificates().unwrap()[0].clone();
    let (_, parsed) = x509_parser::parse_x509_certificate(&leaf).unwrap();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, parsed.public_key().raw);
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

#[test]
fn a_simulated_fleet_attests_updates_and_fails_and_the_dashboard_shows_and_acts_on_it() {
    if !browser::available() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI must run the browser test: install chromium and chromium-driver"
        );
        eprintln!("skipped: chromium or chromedriver is not installed");
        return;
    }
    let fleet = Fleet::start(&[]);
    let (image, _) = fleet.image("1.0.0", 1, "release");

    // Twelve devices, a quarter of them faulty.
    let simulator = Simulator::start(&fleet, 12, 25);
    let ready = simulator.next_event("ready", Duration::from_secs(180));
    assert_eq!(ready["devices"], 12, "{ready}");
    assert_eq!(ready["faulty"], 3, "{ready}");
    assert_eq!(ready["attested"], 12, "every device attests: {ready}");
    let devices = fleet.op(&["device", "list", "--tenant", "acme"]);
    let devices = devices["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 12);
    assert!(devices
        .iter()
        .all(|d| d["group_id"] == fleet.group.as_str()));

    // A rollout the faulty devices roll back halts by itself.
    let deployment = fleet.deploy(&image, &["--max-failure-percent", "10"]);
    let halted = wait_for(Duration::from_secs(120), "the rollout to halt", || {
        let shown = fleet.show(&deployment);
        (shown["status"] == "halted").then_some(shown)
    });
    assert!(
        halted["halt_reason"]
            .as_str()
            .unwrap()
            .contains("failed or rolled back"),
        "{halted}"
    );
    // Their crashes group into one problem across the faulty devices.
    let problem = wait_for(Duration::from_secs(60), "the crash problem", || {
        let page = fleet
            .admin
            .get(&format!("/api/v1/tenants/{}/problems", fleet.tenant))
            .body;
        page["problems"]
            .as_array()
            .and_then(|ps| {
                ps.iter().find(|p| {
                    p["title"]
                        .as_str()
                        .unwrap_or("")
                        .contains("simulated fault")
                })
            })
            .filter(|p| p["devices"].as_u64() >= Some(3))
            .cloned()
    });
    assert_eq!(
        problem["devices"], 3,
        "only the faulty devices crash: {problem}"
    );
    // Healthy devices installed the update.
    wait_for(
        Duration::from_secs(60),
        "healthy devices to install",
        || {
            let shown = fleet.show(&deployment);
            (shown["counts"]["installed"].as_u64() >= Some(1)).then_some(())
        },
    );
    let (stopped, clean) = simulator.interrupt();
    assert!(clean, "the simulator exits cleanly on SIGINT: {stopped}");
    assert!(
        stopped["updates_rolled_back"].as_u64() >= Some(2),
        "{stopped}"
    );
    assert!(stopped["crashes"].as_u64() >= Some(3), "{stopped}");

    // Operators: a reader and a contributor.
    let token = |name: &str, role: &str| {
        fleet.op(&["role", "add", name, "--role", role, "--tenant", "acme"])["token"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let rita = token("rita", "reader");
    let carl = token("carl", "contributor");

    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    let browser = Browser::start(
        &server_spki(&fleet.server.url, &fleet.server.ca_file),
        &shots,
    );
    let ui = format!("{}/ui", fleet.server.url.trim_end_matches('/'));
    let t = &fleet.tenant;

    // Log in as the reader and see the fleet.
    browser.open(&format!("{ui}/login"));
    browser.type_into("#token", &rita);
    browser.click("#login button");
    browser.find(".cards");
    assert!(
        browser.url().ends_with(&format!("/ui/t/{t}")),
        "{}",
        browser.url()
    );
    let cards = browser.text(".cards");
    assert!(cards.starts_with("12"), "{cards}");
    assert!(browser.source().contains("Halted rollouts"));
    browser.screenshot("fleet");

    // Open a device and see its attestation history.
    browser.click("nav a[href$='/devices']");
    browser.click("#devices tbody a");
    let history = browser.text("#attestations");
    assert!(history.contains("pass"), "{history}");
    assert!(browser.text("#device-id").len() == 64);
    browser.screenshot("device");

    // The reader cannot resume the halted rollout: refused, saying why.
    browser.open(&format!("{ui}/t/{t}/deployments/{deployment}"));
    assert!(browser
        .text("#halt-reason")
        .contains("failed or rolled back"));
    browser.click("#resume");
    browser.find("main.error-page");
    let refused = browser.source();
    assert!(refused.contains("403"), "{refused}");
    assert!(
        refused.contains("contributor or administrator"),
        "{refused}"
    );
    browser.screenshot("reader-refused");
    assert_eq!(fleet.show(&deployment)["status"], "halted");

    // Log out; a login link (token in the fragment) logs the contributor in
    // and lands on the deployment, which they resume.
    browser.open(&format!("{ui}/t/{t}"));
    browser.click("form.logout button");
    browser.find("#login");
    browser.open(&format!(
        "{ui}/login?next=/ui/t/{t}/deployments/{deployment}#token={carl}"
    ));
    assert_eq!(browser.text("#status"), "halted");
    browser.click("#resume");
    wait_for(Duration::from_secs(10), "the resumed status", || {
        (browser.text("#status") == "active").then_some(())
    });
    browser.screenshot("resumed");
    assert_eq!(fleet.show(&deployment)["status"], "active");

    // The problem: its chart, then resolve it.
    browser.open(&format!("{ui}/t/{t}/problems"));
    browser.click("#problems tbody a");
    assert!(browser.source().contains("occurrences per day"));
    browser.click("#resolve");
    wait_for(Duration::from_secs(10), "the resolved status", || {
        (browser.text("#problem-status") == "resolved").then_some(())
    });
    browser.screenshot("problem-resolved");

    // The tenant CA page offers the chain.
    browser.open(&format!("{ui}/t/{t}/ca"));
    assert!(browser.text("#cas").contains('1'));
    browser.find("#download-chain");

    // On a phone the pages fit the screen's width.
    browser.resize(390, 844);
    for page in [
        String::new(),
        "/devices".into(),
        format!("/deployments/{deployment}"),
    ] {
        browser.open(&format!("{ui}/t/{t}{page}"));
        browser.find("main h1");
        let overflow = browser.eval(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
        );
        assert!(
            overflow.as_i64() <= Some(0),
            "{page} is wider than a phone: {overflow}"
        );
    }
    browser.screenshot("fleet-phone");
    for shot in [
        "fleet",
        "device",
        "reader-refused",
        "resumed",
        "problem-resolved",
        "fleet-phone",
    ] {
        assert!(shots.join(format!("{shot}.png")).exists());
    }
}
