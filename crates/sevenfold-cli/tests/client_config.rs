//! How operator commands find their server, token, CA and tenant: flags over
//! environment over the configuration `sevenfold login` saves; and the local
//! manufacturer tools. All but the last test run without a server (they use
//! closed ports and read the error, which names the server tried); the last
//! starts a real `sevenfold server` to check `login` end to end.

// Test helpers outside `#[test]` functions may panic: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

const CONNECTION_ENV: &[&str] = &[
    "SEVENFOLD_SERVER",
    "SEVENFOLD_TOKEN",
    "SEVENFOLD_CA",
    "SEVENFOLD_TENANT",
    "SEVENFOLD_CONFIG",
    "SEVENFOLD_DATA_DIR",
    "SEVENFOLD_LISTEN",
    "SEVENFOLD_DATABASE_URL",
];

/// A scratch directory that is also the config directory of the commands run.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Home {
        Home {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn config_dir(&self) -> PathBuf {
        self.path("config")
    }

    fn config_file(&self) -> PathBuf {
        self.config_dir().join("sevenfold").join("config.toml")
    }

    /// The binary with a clean environment: no connection settings except
    /// `env`, and the config directory inside this home.
    fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sevenfold"));
        cmd.args(args)
            .env("SEVENFOLD_CONFIG_DIR", self.config_dir())
            .env("HOME", self.dir.path());
        for name in CONNECTION_ENV {
            cmd.env_remove(name);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.command(args, env).output().unwrap()
    }

    /// Runs, expects failure, returns standard error.
    fn fails(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let out = self.run(args, env);
        assert!(
            !out.status.success(),
            "sevenfold {args:?} should fail; stdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Runs with `--output json`, expects success, parses standard output.
    fn json(&self, args: &[&str], env: &[(&str, &str)]) -> Value {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        let out = self.run(&all, env);
        assert!(
            out.status.success(),
            "sevenfold {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// A CA certificate (PEM file) to use as a service CA: any CA will do
    /// where no TLS handshake happens.
    fn some_ca(&self) -> PathBuf {
        let dir = self.path("someca");
        if !dir.join("ca.pem").exists() {
            self.json(&["manufacturer", "init", "--out-dir", s(&dir)], &[]);
        }
        dir.join("ca.pem")
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A local port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn connection_flags_and_variables_are_in_the_help() {
    let home = Home::new();
    for args in [
        &["device", "list", "--help"][..],
        &["image", "add", "--help"][..],
        &["login", "--help"][..],
    ] {
        let out = home.run(args, &[]);
        assert!(out.status.success());
        let help = String::from_utf8_lossy(&out.stdout);
        for needle in [
            "--server",
            "--token",
            "--ca",
            "--tenant",
            "SEVENFOLD_SERVER",
            "SEVENFOLD_TOKEN",
            "SEVENFOLD_CA",
            "SEVENFOLD_TENANT",
        ] {
            assert!(
                help.contains(needle),
                "{args:?} help lacks {needle}:\n{help}"
            );
        }
    }
    // Connection flags work before or after the subcommand.
    let port = closed_port();
    let server = format!("https://127.0.0.1:{port}");
    let ca = home.some_ca();
    for args in [
        &[
            "tenant",
            "--server",
            &server,
            "--token",
            "sf_x",
            "--ca",
            s(&ca),
            "list",
        ][..],
        &[
            "tenant",
            "list",
            "--server",
            &server,
            "--token",
            "sf_x",
            "--ca",
            s(&ca),
        ][..],
    ] {
        let err = home.fails(args, &[]);
        assert!(err.contains(&server), "{err}");
    }
}

#[test]
fn without_any_settings_commands_say_how_to_connect() {
    let home = Home::new();
    let err = home.fails(&["tenant", "list"], &[]);
    assert!(
        err.contains("--server") && err.contains("sevenfold login"),
        "{err}"
    );

    let err = home.fails(&["tenant", "list", "--server", "https://127.0.0.1:1"], &[]);
    assert!(err.contains("--token"), "{err}");

    let err = home.fails(
        &["tenant", "list"],
        &[
            ("SEVENFOLD_SERVER", "https://127.0.0.1:1"),
            ("SEVENFOLD_TOKEN", "sf_x"),
        ],
    );
    assert!(err.contains("pass --ca or run sevenfold login"), "{err}");

    // Tenant commands need a tenant, and say where to give it.
    let ca = home.some_ca();
    let err = home.fails(
        &[
            "product",
            "list",
            "--server",
            "https://127.0.0.1:1",
            "--token",
            "sf_x",
            "--ca",
            s(&ca),
        ],
        &[],
    );
    assert!(
        err.contains("no tenant chosen") && err.contains("--tenant"),
        "{err}"
    );

    // Plain HTTP would expose the token: refused before connecting.
    let err = home.fails(
        &[
            "tenant",
            "list",
            "--server",
            "http://127.0.0.1:1",
            "--token",
            "sf_x",
            "--ca",
            s(&ca),
        ],
        &[],
    );
    assert!(err.contains("HTTPS only"), "{err}");

    // A file that is not a CA certificate is named.
    std::fs::write(home.path("junk.pem"), "not a certificate").unwrap();
    let err = home.fails(
        &[
            "tenant",
            "list",
            "--server",
            "https://127.0.0.1:1",
            "--token",
            "sf_x",
            "--ca",
            s(&home.path("junk.pem")),
        ],
        &[],
    );
    assert!(err.contains("junk.pem is not a usable service CA"), "{err}");

    // In JSON mode the error is one JSON object on standard error.
    let out = home.run(&["--output", "json", "tenant", "list"], &[]);
    assert!(!out.status.success());
    let err: Value = serde_json::from_slice(&out.stderr).unwrap();
    assert!(err["error"].as_str().unwrap().contains("--server"), "{err}");
}

/// Writes a login configuration as `sevenfold login` would.
fn write_login(home: &Home, server: &str, token: &str, ca: &Path, tenant: Option<&str>) {
    let mut text = format!(
        "server = {server:?}\ntoken = {token:?}\nca_pem = '''\n{}'''\n",
        std::fs::read_to_string(ca).unwrap()
    );
    if let Some(t) = tenant {
        text.push_str(&format!("tenant = {t:?}\n"));
    }
    let path = home.config_file();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
}

#[test]
fn flags_beat_environment_beat_the_saved_login() {
    let home = Home::new();
    let ca = home.some_ca();
    let (saved, env, flag) = (closed_port(), closed_port(), closed_port());
    let url = |port: u16| format!("https://127.0.0.1:{port}");
    write_login(&home, &url(saved), "sf_saved", &ca, None);

    // The saved login alone: its server is tried.
    let err = home.fails(&["tenant", "list"], &[]);
    assert!(
        err.contains(&url(saved)) && err.contains("cannot reach"),
        "{err}"
    );

    // The environment beats it.
    let env_vars = [
        ("SEVENFOLD_SERVER", url(env)),
        ("SEVENFOLD_TOKEN", "sf_env".to_owned()),
        ("SEVENFOLD_CA", s(&ca).to_owned()),
    ];
    let env_refs: Vec<(&str, &str)> = env_vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let err = home.fails(&["tenant", "list"], &env_refs);
    assert!(
        err.contains(&url(env)) && !err.contains(&url(saved)),
        "{err}"
    );

    // A flag beats both.
    let err = home.fails(&["tenant", "list", "--server", &url(flag)], &env_refs);
    assert!(
        err.contains(&url(flag)) && !err.contains(&url(env)),
        "{err}"
    );

    // The saved token belongs to the saved server: naming another server
    // without a token does not send it there.
    let err = home.fails(&["tenant", "list", "--server", &url(flag)], &[]);
    assert!(
        err.contains(&format!("no API token for {}", url(flag))),
        "{err}"
    );

    // The same server, written differently, still uses the saved login.
    let err = home.fails(
        &["tenant", "list", "--server", &format!("127.0.0.1:{saved}/")],
        &[],
    );
    assert!(
        err.contains("cannot reach") && err.contains(&url(saved)),
        "{err}"
    );

    // The saved default tenant is used: a tenant name needs a lookup, so the
    // command gets as far as connecting (without one it stops before).
    write_login(&home, &url(saved), "sf_saved", &ca, Some("saved-tenant"));
    let err = home.fails(&["product", "list"], &[]);
    assert!(err.contains("cannot reach"), "{err}");

    // A damaged configuration is named, with what to do.
    std::fs::write(home.config_file(), "server = [").unwrap();
    let err = home.fails(&["tenant", "list"], &[]);
    assert!(
        err.contains("config.toml") && err.contains("sevenfold login"),
        "{err}"
    );
}

#[test]
fn manufacturer_init_and_endorse_work_on_local_files() {
    let home = Home::new();
    let ca_dir = home.path("maker");
    let init = home.json(
        &[
            "manufacturer",
            "init",
            "--out-dir",
            s(&ca_dir),
            "--name",
            "Acme Silicon",
        ],
        &[],
    );
    assert_eq!(init["name"], "Acme Silicon");
    assert!(
        init["subject"].as_str().unwrap().contains("Acme Silicon"),
        "{init}"
    );
    assert_eq!(init["fingerprint"].as_str().unwrap().len(), 64);
    assert_eq!(mode(&ca_dir.join("ca.key")), 0o600, "the CA key is private");
    assert!(std::fs::read_to_string(ca_dir.join("ca.pem"))
        .unwrap()
        .starts_with("-----BEGIN CERTIFICATE-----"));
    // Never replaced by accident.
    let err = home.fails(&["manufacturer", "init", "--out-dir", s(&ca_dir)], &[]);
    assert!(err.contains("--force"), "{err}");

    // A device key (any P-256 or Ed25519 public key) gets an endorsement;
    // the device ID is the key's ID.
    let key = home.json(&["keygen", "--out", s(&home.path("device.pem"))], &[]);
    let endorsed = home.json(
        &[
            "manufacturer",
            "endorse",
            "--ca-dir",
            s(&ca_dir),
            "--device-key",
            s(&home.path("device.pub.pem")),
            "--out",
            s(&home.path("device.cert.pem")),
            "--days",
            "30",
        ],
        &[],
    );
    assert_eq!(endorsed["device_id"], key["key_id"]);
    assert_eq!(endorsed["manufacturer_fingerprint"], init["fingerprint"]);
    assert_eq!(endorsed["valid_days"], 30);
    assert!(std::fs::read_to_string(home.path("device.cert.pem"))
        .unwrap()
        .starts_with("-----BEGIN CERTIFICATE-----"));

    // The private key is not a device public key.
    let err = home.fails(
        &[
            "manufacturer",
            "endorse",
            "--ca-dir",
            s(&ca_dir),
            "--device-key",
            s(&home.path("device.pem")),
            "--out",
            s(&home.path("x.pem")),
        ],
        &[],
    );
    assert!(err.contains("is not a public key"), "{err}");
    // No CA in the directory: say how to make one.
    let err = home.fails(
        &[
            "manufacturer",
            "endorse",
            "--ca-dir",
            s(&home.path("nothing")),
            "--device-key",
            s(&home.path("device.pub.pem")),
            "--out",
            s(&home.path("x.pem")),
        ],
        &[],
    );
    assert!(err.contains("manufacturer init"), "{err}");
}

/// The one test here with a server: `login` checks the token, saves the
/// settings privately, and later commands use them.
#[test]
fn login_saves_a_private_config_that_later_commands_use() {
    let home = Home::new();
    let data = home.path("data");
    let mut server = home
        .command(
            &[
                "--output",
                "json",
                "server",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                s(&data),
            ],
            &[("RUST_LOG", "warn")],
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = server.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        for _ in lines {}
    });
    let line = rx.recv_timeout(Duration::from_secs(60)).unwrap();
    let ready: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(ready["event"], "ready");
    let url = ready["operator_api"].as_str().unwrap().to_owned();
    let ca = PathBuf::from(ready["ca_file"].as_str().unwrap());
    assert_eq!(ca, data.join("tls").join("ca.pem"));
    let token = ready["bootstrap_token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("sf_"));

    // A wrong token is refused, and nothing is saved.
    let err = home.fails(
        &[
            "login",
            "--server",
            &url,
            "--token",
            "sf_wrong",
            "--ca",
            s(&ca),
        ],
        &[],
    );
    assert!(err.contains("sevenfold login"), "{err}");
    assert!(!home.config_file().exists());

    let login = home.json(
        &["login", "--server", &url, "--token", &token, "--ca", s(&ca)],
        &[],
    );
    assert_eq!(login["server"], url.as_str());
    assert_eq!(login["server_admin"], true);
    assert_eq!(login["tenant"], Value::Null);
    assert_eq!(login["config_file"], s(&home.config_file()));
    assert_eq!(
        mode(&home.config_file()),
        0o600,
        "the saved token is private"
    );
    let saved: toml::Table =
        toml::from_str(&std::fs::read_to_string(home.config_file()).unwrap()).unwrap();
    assert_eq!(saved["token"].as_str(), Some(token.as_str()));
    assert_eq!(
        saved["ca_pem"].as_str().unwrap(),
        std::fs::read_to_string(&ca).unwrap()
    );

    // Later commands need no flags; the CA file is not needed any more either.
    let tenant = home.json(&["tenant", "create", "acme"], &[]);
    std::fs::rename(&ca, home.path("moved-ca.pem")).unwrap();
    let tenants = home.json(&["tenant", "list"], &[]);
    assert_eq!(tenants[0]["name"], "acme");

    // Logging in again with --tenant keeps the rest and sets the default tenant.
    let again = home.json(&["login", "--tenant", "acme"], &[]);
    assert_eq!(again["tenant"]["id"], tenant["id"]);
    assert_eq!(again["roles"][0]["tenant_name"], "acme");
    assert_eq!(again["roles"][0]["role"], "administrator");
    let product = home.json(&["product", "create", "thermostat"], &[]);
    assert_eq!(product["name"], "thermostat");
    let shown = home.json(&["tenant", "show"], &[]);
    assert_eq!(shown["id"], tenant["id"]);

    // SIGTERM: graceful shutdown, exit 0.
    let killed = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = server.wait().unwrap();
    assert!(status.success(), "server exit status {status:?}");
}
