//! Dashboard page times with a large simulated fleet running (issue 9).
//!
//! ```sh
//! cargo build --release -p sevenfold-cli -p sevenfold-bench --no-default-features
//! target/release/dashboard --sevenfold target/release/sevenfold \
//!     [--devices 10000] [--faulty-percent 5] [--samples 30] [--interval 120]
//! ```
//!
//! Starts `sevenfold server` (SQLite, a temporary data directory), sets up
//! a tenant, product, signing key and image through the CLI, then runs
//! `sevenfold fleet simulate --devices N` against it (real agents, real
//! TLS) and waits for its `ready` line (every device booted and attested
//! once). A deployment of the image goes to the whole group; the faulty
//! share rolls it back and crashes, so the deployment and problem pages
//! have data. While the simulator keeps running (renewals, update rounds,
//! reports), every dashboard page is requested `--samples` times in turn
//! with a logged-in session; reported per page: median, p95 and worst
//! time to the last byte, and the page size. Baseline in the same run: the
//! operator API's own JSON device page (`GET …/devices?limit=50`) and
//! `/healthz`.

// A benchmark binary: a failed set-up step should stop the run at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::Value;

/// Dashboard page times under a simulated fleet.
#[derive(Debug, Parser)]
struct Args {
    /// The `sevenfold` binary (build it with --release).
    #[arg(long)]
    sevenfold: PathBuf,
    /// Simulated devices.
    #[arg(long, default_value_t = 10_000)]
    devices: u32,
    /// Faulty share, percent.
    #[arg(long, default_value_t = 5)]
    faulty_percent: u8,
    /// Requests per page.
    #[arg(long, default_value_t = 30)]
    samples: usize,
    /// The simulated devices' update and report interval, seconds.
    #[arg(long, default_value_t = 120)]
    interval: u64,
    /// Seconds to let the rollout and the crashes run before measuring.
    #[arg(long, default_value_t = 60)]
    settle: u64,
    /// Keep the data here instead of a temporary directory.
    #[arg(long)]
    keep: Option<PathBuf>,
}

/// The running server's addresses and admin token.
struct Server {
    child: Child,
    operator: String,
    device: String,
    ca_file: PathBuf,
    token: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn first_json_line(child: &mut Child) -> mpsc::Receiver<Value> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(value) = serde_json::from_str::<Value>(&line) {
                if tx.send(value).is_err() {
                    break;
                }
            }
        }
    });
    rx
}

fn start_server(bin: &Path, data: &Path) -> Server {
    let mut child = Command::new(bin)
        .args(["--output", "json", "server", "--listen", "127.0.0.1:0"])
        .args(["--device-listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        // The simulated devices all come from 127.0.0.1, as a fleet behind
        // one NAT would: let them attest at fleet speed.
        .env("SEVENFOLD_NONCES_PER_SOURCE", "1000000")
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start sevenfold server");
    let lines = first_json_line(&mut child);
    let ready = lines.recv_timeout(Duration::from_secs(60)).unwrap();
    Server {
        child,
        operator: ready["operator_api"].as_str().unwrap().to_owned(),
        device: ready["device_api"].as_str().unwrap().to_owned(),
        ca_file: PathBuf::from(ready["ca_file"].as_str().unwrap()),
        token: ready["bootstrap_token"].as_str().unwrap().to_owned(),
    }
}

/// Runs the CLI as the admin; its JSON output.
fn cli(bin: &Path, server: &Server, dir: &Path, args: &[&str]) -> Value {
    let out: Output = Command::new(bin)
        .arg("--output")
        .arg("json")
        .args(args)
        .env("SEVENFOLD_SERVER", &server.operator)
        .env("SEVENFOLD_TOKEN", &server.token)
        .env("SEVENFOLD_CA", &server.ca_file)
        .env("SEVENFOLD_CONFIG_DIR", dir.join("config"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sevenfold {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// Time to the last byte of `path`, `samples` times; (sorted times, bytes, status).
async fn measure(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    cookie: &str,
    token: &str,
    samples: usize,
) -> (Vec<Duration>, usize, u16) {
    let mut times = Vec::with_capacity(samples);
    let (mut bytes, mut status) = (0, 0);
    for _ in 0..samples {
        let start = Instant::now();
        let reply = http
            .get(format!("{base}{path}"))
            .header("cookie", cookie)
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        status = reply.status().as_u16();
        bytes = reply.bytes().await.unwrap().len();
        times.push(start.elapsed());
    }
    times.sort();
    (times, bytes, status)
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let temp = tempfile::tempdir().unwrap();
    let dir = args
        .keep
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&dir).unwrap();
    let bin = &args.sevenfold;
    let server = start_server(bin, &dir.join("server"));
    eprintln!("server on {}", server.operator);

    // Tenant, product, signing key, an image to deploy.
    let tenant = cli(bin, &server, &dir, &["tenant", "create", "bench"])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let product = cli(
        bin,
        &server,
        &dir,
        &["product", "create", "lamp", "--tenant", "bench"],
    );
    let group = product["device_groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "Field Test")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = dir.join("release.pem");
    cli(
        bin,
        &server,
        &dir,
        &["keygen", "--out", key.to_str().unwrap()],
    );
    let public = dir.join("release.pub.pem");
    cli(
        bin,
        &server,
        &dir,
        &[
            "signing-key",
            "add",
            public.to_str().unwrap(),
            "--name",
            "release",
            "--tenant",
            "bench",
        ],
    );
    let manifest = dir.join("app_manifest.json");
    std::fs::write(
        &manifest,
        r#"{"SchemaVersion":1,"Name":"lamp","ComponentId":"3f1c2b9a-7d4e-4c1a-9b8e-2a6f5d4c3b21",
            "Version":"1.0.0","SecurityVersion":1,"EntryPoint":"lamp.wasm","Capabilities":{}}"#,
    )
    .unwrap();
    let payload = dir.join("lamp.wasm");
    std::fs::write(&payload, b"\0asm\x01\0\0\0").unwrap();
    let package = dir.join("lamp.imagepackage");
    cli(
        bin,
        &server,
        &dir,
        &[
            "package",
            "--manifest",
            manifest.to_str().unwrap(),
            "--payload",
            payload.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--out",
            package.to_str().unwrap(),
        ],
    );
    let image = cli(
        bin,
        &server,
        &dir,
        &[
            "image",
            "add",
            package.to_str().unwrap(),
            "--tenant",
            "bench",
        ],
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // The fleet.
    let started = Instant::now();
    let mut simulator = Command::new(bin)
        .args(["--output", "json", "fleet", "simulate", "--tenant", "bench"])
        .args(["--devices", &args.devices.to_string(), "--group", &group])
        .args(["--device-api", &server.device, "--service-ca"])
        .arg(&server.ca_file)
        .arg("--dir")
        .arg(dir.join("fleet"))
        .arg("--trust-key")
        .arg(&public)
        .args(["--faulty-percent", &args.faulty_percent.to_string()])
        .args([
            "--interval",
            &args.interval.to_string(),
            "--concurrency",
            "64",
        ])
        .env("SEVENFOLD_SERVER", &server.operator)
        .env("SEVENFOLD_TOKEN", &server.token)
        .env("SEVENFOLD_CA", &server.ca_file)
        .env("SEVENFOLD_CONFIG_DIR", dir.join("config"))
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start sevenfold fleet simulate");
    let lines = first_json_line(&mut simulator);
    let ready = loop {
        let line = lines
            .recv()
            .expect("the simulator stopped before it was ready");
        if line["event"] == "ready" {
            break line;
        }
    };
    eprintln!(
        "fleet ready after {:.0} s: {ready}",
        started.elapsed().as_secs_f64()
    );
    let deployment = cli(
        bin,
        &server,
        &dir,
        &[
            "deployment",
            "create",
            "--group",
            &group,
            "--image",
            &image,
            "--tenant",
            "bench",
        ],
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    eprintln!(
        "deployment {deployment}; letting the fleet run {} s",
        args.settle
    );
    tokio::time::sleep(Duration::from_secs(args.settle)).await;

    // A session, a device in the middle, a problem.
    let ca = std::fs::read(&server.ca_file).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::pem::PemObject::pem_slice_iter(&ca) {
        roots.add(cert.unwrap()).unwrap();
    }
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .unwrap();
    let base = server.operator.trim_end_matches('/').to_owned();
    let api = |path: String| {
        let http = http.clone();
        let (base, token) = (base.clone(), server.token.clone());
        async move {
            http.get(format!("{base}{path}"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let page = api(format!("/api/v1/tenants/{tenant}/devices?limit=1000")).await;
    let devices = page["devices"].as_array().unwrap();
    let middle = devices[devices.len() / 2]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let problems = api(format!("/api/v1/tenants/{tenant}/problems")).await;
    let problem = problems["problems"][0]["id"]
        .as_str()
        .unwrap_or("none")
        .to_owned();
    let cookie = format!("sf_session={}", server.token);
    let t = format!("/ui/t/{tenant}");
    let pages = [
        ("fleet overview", t.clone()),
        ("device list", format!("{t}/devices")),
        (
            "device list, page after the middle",
            format!("{t}/devices?after={middle}"),
        ),
        (
            "device list, failing only",
            format!("{t}/devices?state=failing"),
        ),
        ("device page", format!("{t}/devices/{middle}")),
        ("groups and deployments", format!("{t}/groups")),
        ("deployment page", format!("{t}/deployments/{deployment}")),
        ("problems", format!("{t}/problems")),
        ("problem page", format!("{t}/problems/{problem}")),
        ("tenant CA", format!("{t}/ca")),
        (
            "baseline: API device page (JSON, 50)",
            format!("/api/v1/tenants/{tenant}/devices?limit=50"),
        ),
        ("baseline: /healthz", "/healthz".to_owned()),
    ];
    println!(
        "\n{} simulated devices ({}% faulty), {} samples per page, fleet running\n",
        args.devices, args.faulty_percent, args.samples
    );
    println!("| page | median ms | p95 ms | worst ms | bytes | status |");
    println!("|---|---|---|---|---|---|");
    let mut worst_page = Duration::ZERO;
    for (name, path) in &pages {
        let (times, bytes, status) =
            measure(&http, &base, path, &cookie, &server.token, args.samples).await;
        let p95 = times[(times.len() * 95 / 100).min(times.len() - 1)];
        let worst = *times.last().unwrap();
        if !name.starts_with("baseline") {
            worst_page = worst_page.max(p95);
        }
        println!(
            "| {name} | {} | {} | {} | {bytes} | {status} |",
            ms(times[times.len() / 2]),
            ms(p95),
            ms(worst)
        );
    }
    println!(
        "\nslowest dashboard page at p95: {} ms (target: under 300 ms)",
        ms(worst_page)
    );
    let summary = api(format!("/api/v1/tenants/{tenant}/deployments/{deployment}")).await;
    eprintln!("deployment counts: {}", summary["counts"]);

    let _ = Command::new("kill")
        .args(["-INT", &simulator.id().to_string()])
        .status();
    let stopped = lines.recv_timeout(Duration::from_secs(60));
    eprintln!("simulator: {stopped:?}");
    let _ = simulator.wait();
}
