//! Connection settings: flags over environment over the saved login.
//!
//! [`resolve`] is pure (it reads neither the environment nor files), so the
//! precedence rules are tested here as data; [`Environment::from_process`]
//! and [`SavedLogin::load`] are the only readers.
//!
//! The saved login's token, CA and tenant belong to the server they were
//! saved for: when `--server` or `SEVENFOLD_SERVER` names another server,
//! none of them is used, so a token is never sent somewhere it was not meant
//! for.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use reqwest::Url;
use serde::{Deserialize, Serialize};

use crate::cli::{ConnectionArgs, TenantArg};

/// Environment variable overriding the directory the login config lives under.
pub(crate) const CONFIG_DIR_ENV: &str = "SEVENFOLD_CONFIG_DIR";

/// The connection settings found in the environment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Environment {
    /// `SEVENFOLD_SERVER`.
    pub(crate) server: Option<String>,
    /// `SEVENFOLD_TOKEN`.
    pub(crate) token: Option<String>,
    /// `SEVENFOLD_CA`: a path.
    pub(crate) ca: Option<PathBuf>,
    /// `SEVENFOLD_TENANT`.
    pub(crate) tenant: Option<String>,
}

impl Environment {
    /// Reads `SEVENFOLD_SERVER`, `SEVENFOLD_TOKEN`, `SEVENFOLD_CA` and
    /// `SEVENFOLD_TENANT` through `get`; empty values count as unset.
    pub(crate) fn read(get: impl Fn(&str) -> Option<String>) -> Environment {
        let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        Environment {
            server: get("SEVENFOLD_SERVER"),
            token: get("SEVENFOLD_TOKEN"),
            ca: get("SEVENFOLD_CA").map(PathBuf::from),
            tenant: get("SEVENFOLD_TENANT"),
        }
    }

    /// The process environment.
    pub(crate) fn from_process() -> Environment {
        Environment::read(|name| std::env::var(name).ok())
    }
}

/// What `sevenfold login` saves (`<config dir>/sevenfold/config.toml`, mode 0600).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SavedLogin {
    /// Server base URL, normalised.
    pub(crate) server: String,
    /// API token.
    pub(crate) token: String,
    /// The service CA certificate, PEM, inline.
    pub(crate) ca_pem: String,
    /// Default tenant ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) tenant: Option<String>,
    /// Its name, for messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) tenant_name: Option<String>,
}

impl SavedLogin {
    /// The config file: `$SEVENFOLD_CONFIG_DIR/sevenfold/config.toml`, else
    /// `<platform config dir>/sevenfold/config.toml`.
    pub(crate) fn path() -> anyhow::Result<PathBuf> {
        let base = match std::env::var_os(CONFIG_DIR_ENV).filter(|v| !v.is_empty()) {
            Some(dir) => PathBuf::from(dir),
            None => dirs::config_dir().context(
                "cannot find a configuration directory for this user; set SEVENFOLD_CONFIG_DIR",
            )?,
        };
        Ok(base.join("sevenfold").join("config.toml"))
    }

    /// Reads the saved login, if there is one.
    pub(crate) fn load(path: &Path) -> anyhow::Result<Option<SavedLogin>> {
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!("cannot read {}", path.display())))
            }
        };
        let saved: SavedLogin = toml::from_str(&text).with_context(|| {
            format!(
                "{} is not a valid sevenfold login configuration; run `sevenfold login` again",
                path.display()
            )
        })?;
        Ok(Some(saved))
    }

    /// Writes the login atomically with mode 0600 (the directory 0700): the
    /// file holds a bearer token.
    pub(crate) fn save(&self, path: &Path) -> anyhow::Result<()> {
        let text = toml::to_string(self).context("cannot encode the login configuration")?;
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !dir.exists() {
            fs::create_dir_all(dir)
                .with_context(|| format!("cannot create directory {}", dir.display()))?;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .with_context(|| format!("cannot set permissions of {}", dir.display()))?;
        }
        let tmp = dir.join(format!(".config.toml.{}.tmp", std::process::id()));
        let written = (|| -> std::io::Result<()> {
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            // An older file with a laxer mode must not keep it.
            file.set_permissions(fs::Permissions::from_mode(0o600))?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            fs::rename(&tmp, path)
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(anyhow::Error::new(e).context(format!("cannot write {}", path.display())));
        }
        Ok(())
    }
}

/// Where the service CA comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CaSource {
    /// A PEM file (`--ca`, `SEVENFOLD_CA`).
    File(PathBuf),
    /// PEM text saved by `sevenfold login`.
    Saved(String),
}

/// Connection settings after precedence is applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Settings {
    /// Normalised server base URL (`https://host:port`, no trailing slash).
    pub(crate) server: String,
    /// API token.
    pub(crate) token: String,
    /// The service CA.
    pub(crate) ca: CaSource,
    /// Tenant name or ID, if one is chosen.
    pub(crate) tenant: Option<String>,
}

/// Applies flag > environment > saved login, field by field. The saved
/// login counts only when the chosen server is the one it was saved for.
pub(crate) fn resolve(
    flags: &ConnectionArgs,
    tenant_flag: &TenantArg,
    env: &Environment,
    saved: Option<&SavedLogin>,
) -> anyhow::Result<Settings> {
    let explicit = flags.server.as_deref().or(env.server.as_deref());
    let server = match (explicit, saved) {
        (Some(url), _) => normalize_server(url)?,
        (None, Some(saved)) => normalize_server(&saved.server)?,
        (None, None) => anyhow::bail!(
            "no server given: pass --server https://HOST:PORT, set SEVENFOLD_SERVER, or run `sevenfold login`"
        ),
    };
    let saved = saved.filter(|s| normalize_server(&s.server).is_ok_and(|u| u == server));
    let token = flags
        .token
        .clone()
        .or_else(|| env.token.clone())
        .or_else(|| saved.map(|s| s.token.clone()))
        .with_context(|| {
            format!(
                "no API token for {server}: pass --token, set SEVENFOLD_TOKEN, or run `sevenfold login`"
            )
        })?;
    let ca = match (&flags.ca, &env.ca, saved) {
        (Some(path), _, _) | (None, Some(path), _) => CaSource::File(path.clone()),
        (None, None, Some(s)) => CaSource::Saved(s.ca_pem.clone()),
        (None, None, None) => anyhow::bail!(
            "no service CA configured for {server}: pass --ca or run sevenfold login \
             (the CA is DATA_DIR/tls/ca.pem on the server, and `sevenfold server` prints its path)"
        ),
    };
    let tenant = tenant_flag
        .tenant
        .clone()
        .or_else(|| env.tenant.clone())
        .or_else(|| saved.and_then(|s| s.tenant.clone()));
    Ok(Settings {
        server,
        token: token.trim().to_owned(),
        ca,
        tenant,
    })
}

/// `host:port` → `https://host:port`; drops a trailing `/` and `/api/v1`;
/// refuses plain HTTP (tokens never travel unencrypted).
pub(crate) fn normalize_server(value: &str) -> anyhow::Result<String> {
    let value = value.trim();
    let with_scheme = if value.contains("://") {
        value.to_owned()
    } else {
        format!("https://{value}")
    };
    let url = Url::parse(&with_scheme)
        .with_context(|| format!("{value:?} is not a server address; use https://HOST:PORT"))?;
    anyhow::ensure!(
        url.scheme() == "https",
        "{value:?} is not an HTTPS address; the operator API is served over HTTPS only (https://HOST:PORT)"
    );
    anyhow::ensure!(
        url.host_str().is_some_and(|h| !h.is_empty()),
        "{value:?} names no host; use https://HOST:PORT"
    );
    anyhow::ensure!(
        url.query().is_none() && url.fragment().is_none() && url.username().is_empty(),
        "{value:?} must be a plain https://HOST:PORT address"
    );
    let mut text = url.as_str().trim_end_matches('/').to_owned();
    if let Some(stripped) = text.strip_suffix("/api/v1") {
        text = stripped.to_owned();
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(server: Option<&str>, token: Option<&str>, ca: Option<&str>) -> ConnectionArgs {
        ConnectionArgs {
            server: server.map(str::to_owned),
            token: token.map(str::to_owned),
            ca: ca.map(PathBuf::from),
        }
    }

    fn tenant(t: Option<&str>) -> TenantArg {
        TenantArg {
            tenant: t.map(str::to_owned),
        }
    }

    fn saved() -> SavedLogin {
        SavedLogin {
            server: "https://saved:8443".into(),
            token: "sf_saved".into(),
            ca_pem: "SAVED PEM".into(),
            tenant: Some("saved-tenant".into()),
            tenant_name: Some("acme".into()),
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Environment {
        Environment::read(|k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn flags_beat_environment_beat_saved_login() {
        let saved = saved();
        let e = env(&[
            ("SEVENFOLD_TOKEN", "sf_env"),
            ("SEVENFOLD_CA", "/env/ca.pem"),
            ("SEVENFOLD_TENANT", "env-tenant"),
        ]);
        // Saved only.
        let s = resolve(
            &flags(None, None, None),
            &tenant(None),
            &Environment::default(),
            Some(&saved),
        )
        .unwrap();
        assert_eq!(s.server, "https://saved:8443");
        assert_eq!(s.token, "sf_saved");
        assert_eq!(s.ca, CaSource::Saved("SAVED PEM".into()));
        assert_eq!(s.tenant.as_deref(), Some("saved-tenant"));
        // Environment over saved.
        let s = resolve(&flags(None, None, None), &tenant(None), &e, Some(&saved)).unwrap();
        assert_eq!(s.token, "sf_env");
        assert_eq!(s.ca, CaSource::File("/env/ca.pem".into()));
        assert_eq!(s.tenant.as_deref(), Some("env-tenant"));
        // Flags over environment.
        let s = resolve(
            &flags(None, Some("sf_flag"), Some("/flag/ca.pem")),
            &tenant(Some("flag-tenant")),
            &e,
            Some(&saved),
        )
        .unwrap();
        assert_eq!(s.token, "sf_flag");
        assert_eq!(s.ca, CaSource::File("/flag/ca.pem".into()));
        assert_eq!(s.tenant.as_deref(), Some("flag-tenant"));
    }

    #[test]
    fn saved_login_is_only_used_for_its_own_server() {
        let saved = saved();
        // Same server written differently: still used.
        let s = resolve(
            &flags(Some("saved:8443/"), None, None),
            &tenant(None),
            &Environment::default(),
            Some(&saved),
        )
        .unwrap();
        assert_eq!(s.token, "sf_saved");
        // Another server: the saved token must not be sent there.
        let err = resolve(
            &flags(Some("https://other:8443"), None, None),
            &tenant(None),
            &Environment::default(),
            Some(&saved),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("no API token for https://other:8443"),
            "{err}"
        );
        let e = env(&[
            ("SEVENFOLD_SERVER", "https://other:8443"),
            ("SEVENFOLD_TOKEN", "sf_env"),
        ]);
        let err = resolve(&flags(None, None, None), &tenant(None), &e, Some(&saved)).unwrap_err();
        assert!(
            err.to_string().contains("pass --ca or run sevenfold login"),
            "{err}"
        );
    }

    #[test]
    fn missing_settings_say_what_to_do() {
        let none = Environment::default();
        let err = resolve(&flags(None, None, None), &tenant(None), &none, None).unwrap_err();
        assert!(err.to_string().contains("--server"), "{err}");
        let err = resolve(
            &flags(Some("https://h:1"), None, None),
            &tenant(None),
            &none,
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("--token"), "{err}");
        let err = resolve(
            &flags(Some("https://h:1"), Some("sf_x"), None),
            &tenant(None),
            &none,
            None,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("pass --ca or run sevenfold login"),
            "{err}"
        );
    }

    #[test]
    fn server_addresses_are_normalised() {
        for (input, expected) in [
            ("https://h:8443", "https://h:8443"),
            ("https://h:8443/", "https://h:8443"),
            ("h:8443", "https://h:8443"),
            ("https://h:8443/api/v1", "https://h:8443"),
            ("https://h:8443/api/v1/", "https://h:8443"),
            ("https://[::1]:8443", "https://[::1]:8443"),
            ("https://h/prefix", "https://h/prefix"),
        ] {
            assert_eq!(normalize_server(input).unwrap(), expected, "{input}");
        }
        for bad in [
            "http://h:8443",
            "https://",
            "https://h:8443?x=1",
            "not a url at all",
        ] {
            assert!(normalize_server(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn saved_login_is_private_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sevenfold").join("config.toml");
        assert_eq!(SavedLogin::load(&path).unwrap(), None);
        let login = saved();
        login.save(&path).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(SavedLogin::load(&path).unwrap(), Some(login.clone()));
        // Saving again over a file someone loosened tightens it.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let without_tenant = SavedLogin {
            tenant: None,
            tenant_name: None,
            ..login
        };
        without_tenant.save(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(SavedLogin::load(&path).unwrap(), Some(without_tenant));
        // No temporary files are left behind.
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
        // A damaged file is named, with what to do.
        fs::write(&path, "server = 3").unwrap();
        let err = SavedLogin::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("config.toml") && err.contains("sevenfold login"),
            "{err}"
        );
    }

    #[test]
    fn empty_environment_values_are_unset() {
        let e = env(&[("SEVENFOLD_SERVER", ""), ("SEVENFOLD_TOKEN", "  ")]);
        assert_eq!(e, Environment::default());
    }
}
