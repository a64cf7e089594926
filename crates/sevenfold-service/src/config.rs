//! Server configuration: flags, then environment, then a TOML file, then defaults.
//!
//! Each source is read into a [`ConfigLayer`] (every field optional); layers
//! are merged with the higher-precedence one winning field by field, and
//! [`ServerConfig::resolve`] fills the gaps with defaults and checks the result.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Environment variable naming a TOML configuration file.
pub const CONFIG_ENV: &str = "SEVENFOLD_CONFIG";

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The TOML file could not be read.
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TOML file is not valid.
    #[error("configuration file {path} is invalid: {message}")]
    Toml {
        /// The file.
        path: PathBuf,
        /// What is wrong, with line and column.
        message: String,
    },
    /// An environment variable has a value that cannot be used.
    #[error("environment variable {name}={value:?} is invalid: {reason}")]
    Env {
        /// Variable name.
        name: &'static str,
        /// Its value.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// A value is out of its allowed range.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// One source of configuration; `None` means "not set here".
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConfigLayer {
    /// Directory for the SQLite database, blobs and TLS material.
    pub data_dir: Option<PathBuf>,
    /// Database URL (`sqlite://…` or `postgres://…`); SQLite under `data_dir` if unset.
    pub database: Option<String>,
    /// Operator API listen address.
    pub listen: Option<SocketAddr>,
    /// Device API listen address (mutual TLS; used from issue 4 on).
    pub device_listen: Option<SocketAddr>,
    /// Extra host names and IP addresses for the server certificate.
    pub hostnames: Option<Vec<String>>,
    /// Largest accepted JSON body, in bytes.
    pub max_body_bytes: Option<usize>,
    /// Largest accepted image upload, in bytes.
    pub max_upload_bytes: Option<u64>,
    /// Database connection pool size.
    pub database_max_connections: Option<u32>,
    /// `text` or `json` logs.
    pub log_format: Option<String>,
    /// Hex of the 32-byte key that wraps tenant CA private keys at rest.
    /// Replicas sharing a database must share it; without it, a key file
    /// in the data directory is used (created on first start).
    pub ca_wrap_key: Option<String>,
    /// Lifetime in seconds of each group's TUF timestamp (re-signed online
    /// at half of it). Short, so a device notices a frozen repository.
    pub tuf_timestamp_ttl_secs: Option<u64>,
    /// Attestation nonces one client address may ask for per minute. The
    /// default suits devices that each have their own address; raise it
    /// when many devices share one (carrier-grade NAT, a fleet simulator).
    pub nonces_per_source: Option<u32>,
    /// How long, in seconds, a replica's claim on a deployment's delta job
    /// lasts. If the replica dies mid-way, another replica's housekeeping
    /// takes the job over once the claim has run out.
    pub delta_lease_secs: Option<u64>,
}

impl ConfigLayer {
    /// Reads a TOML file.
    pub fn from_toml_file(path: &Path) -> Result<ConfigLayer, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Toml {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Reads `SEVENFOLD_*` variables through `get` (so tests need not touch
    /// the process environment).
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<ConfigLayer, ConfigError> {
        fn parse<T: std::str::FromStr>(
            name: &'static str,
            value: Option<String>,
        ) -> Result<Option<T>, ConfigError>
        where
            T::Err: std::fmt::Display,
        {
            value
                .map(|v| {
                    v.parse().map_err(|e: T::Err| ConfigError::Env {
                        name,
                        value: v.clone(),
                        reason: e.to_string(),
                    })
                })
                .transpose()
        }
        Ok(ConfigLayer {
            data_dir: get("SEVENFOLD_DATA_DIR").map(PathBuf::from),
            database: get("SEVENFOLD_DATABASE_URL"),
            listen: parse("SEVENFOLD_LISTEN", get("SEVENFOLD_LISTEN"))?,
            device_listen: parse("SEVENFOLD_DEVICE_LISTEN", get("SEVENFOLD_DEVICE_LISTEN"))?,
            hostnames: get("SEVENFOLD_HOSTNAMES").map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            }),
            max_body_bytes: parse("SEVENFOLD_MAX_BODY_BYTES", get("SEVENFOLD_MAX_BODY_BYTES"))?,
            max_upload_bytes: parse(
                "SEVENFOLD_MAX_UPLOAD_BYTES",
                get("SEVENFOLD_MAX_UPLOAD_BYTES"),
            )?,
            database_max_connections: parse(
                "SEVENFOLD_DATABASE_MAX_CONNECTIONS",
                get("SEVENFOLD_DATABASE_MAX_CONNECTIONS"),
            )?,
            log_format: get("SEVENFOLD_LOG_FORMAT"),
            ca_wrap_key: get("SEVENFOLD_CA_WRAP_KEY"),
            tuf_timestamp_ttl_secs: parse(
                "SEVENFOLD_TUF_TIMESTAMP_TTL_SECS",
                get("SEVENFOLD_TUF_TIMESTAMP_TTL_SECS"),
            )?,
            nonces_per_source: parse(
                "SEVENFOLD_NONCES_PER_SOURCE",
                get("SEVENFOLD_NONCES_PER_SOURCE"),
            )?,
            delta_lease_secs: parse(
                "SEVENFOLD_DELTA_LEASE_SECS",
                get("SEVENFOLD_DELTA_LEASE_SECS"),
            )?,
        })
    }

    /// `self` wins wherever it sets a field; `lower` fills the rest.
    pub fn over(self, lower: ConfigLayer) -> ConfigLayer {
        ConfigLayer {
            data_dir: self.data_dir.or(lower.data_dir),
            database: self.database.or(lower.database),
            listen: self.listen.or(lower.listen),
            device_listen: self.device_listen.or(lower.device_listen),
            hostnames: self.hostnames.or(lower.hostnames),
            max_body_bytes: self.max_body_bytes.or(lower.max_body_bytes),
            max_upload_bytes: self.max_upload_bytes.or(lower.max_upload_bytes),
            database_max_connections: self
                .database_max_connections
                .or(lower.database_max_connections),
            log_format: self.log_format.or(lower.log_format),
            ca_wrap_key: self.ca_wrap_key.or(lower.ca_wrap_key),
            tuf_timestamp_ttl_secs: self.tuf_timestamp_ttl_secs.or(lower.tuf_timestamp_ttl_secs),
            nonces_per_source: self.nonces_per_source.or(lower.nonces_per_source),
            delta_lease_secs: self.delta_lease_secs.or(lower.delta_lease_secs),
        }
    }
}

/// The resolved configuration of one server process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// Directory for SQLite, blobs and TLS material.
    pub data_dir: PathBuf,
    /// Database URL.
    pub database: String,
    /// Operator API listen address.
    pub listen: SocketAddr,
    /// Device API listen address.
    pub device_listen: SocketAddr,
    /// Names and addresses the server certificate covers.
    pub hostnames: Vec<String>,
    /// Largest accepted JSON body.
    pub max_body_bytes: usize,
    /// Largest accepted image upload.
    pub max_upload_bytes: u64,
    /// Database pool size.
    pub database_max_connections: u32,
    /// Whether logs are JSON.
    pub json_logs: bool,
    /// Hex CA wrap key, if configured.
    pub ca_wrap_key: Option<String>,
    /// Lifetime of TUF timestamps, seconds (default one day).
    pub tuf_timestamp_ttl_secs: u64,
    /// Attestation nonces per client address per minute (default 300).
    pub nonces_per_source: u32,
    /// How long a claim on a delta job lasts, seconds (default 30 minutes).
    pub delta_lease_secs: u64,
}

/// Default operator API address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8443";

impl ServerConfig {
    /// Merges `flags` over `env` over the TOML file (if one is named by the
    /// flags, the environment or [`CONFIG_ENV`]) and applies defaults.
    pub fn resolve(
        flags: ConfigLayer,
        env: ConfigLayer,
        file: Option<ConfigLayer>,
    ) -> Result<ServerConfig, ConfigError> {
        let merged = flags.over(env).over(file.unwrap_or_default());
        let data_dir = merged
            .data_dir
            .unwrap_or_else(|| PathBuf::from("sevenfold-data"));
        let database = merged.database.unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                data_dir.join("sevenfold.db").display()
            )
        });
        if !(database.starts_with("sqlite:")
            || database.starts_with("postgres://")
            || database.starts_with("postgresql://"))
        {
            return Err(ConfigError::Invalid(format!(
                "database URL must start with sqlite:, postgres:// or postgresql://, got {database:?}"
            )));
        }
        let listen = merged.listen.unwrap_or_else(|| {
            DEFAULT_LISTEN
                .parse()
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8443)))
        });
        // The device API listens beside the operator API: next port up, or
        // any free port when the operator port is chosen by the system.
        let device_listen = merged.device_listen.unwrap_or_else(|| {
            let port = match listen.port() {
                0 => 0,
                p => p.saturating_add(1),
            };
            SocketAddr::new(listen.ip(), port)
        });
        let mut hostnames = vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ];
        for name in merged.hostnames.unwrap_or_default() {
            if !hostnames.contains(&name) {
                hostnames.push(name);
            }
        }
        let max_body_bytes = merged.max_body_bytes.unwrap_or(1 << 20);
        if !(1024..=64 << 20).contains(&max_body_bytes) {
            return Err(ConfigError::Invalid(format!(
                "max-body-bytes must be between 1024 and {} (got {max_body_bytes})",
                64 << 20
            )));
        }
        let nonces_per_source = merged.nonces_per_source.unwrap_or(300);
        if !(1..=1_000_000).contains(&nonces_per_source) {
            return Err(ConfigError::Invalid(format!(
                "nonces-per-source must be between 1 and 1000000 (got {nonces_per_source})"
            )));
        }
        let delta_lease_secs = merged.delta_lease_secs.unwrap_or(30 * 60);
        if !(1..=7 * 86_400).contains(&delta_lease_secs) {
            return Err(ConfigError::Invalid(format!(
                "delta-lease-secs must be between 1 and 604800 (got {delta_lease_secs})"
            )));
        }
        let json_logs = match merged.log_format.as_deref() {
            None | Some("text") => false,
            Some("json") => true,
            Some(other) => {
                return Err(ConfigError::Invalid(format!(
                    "log-format must be text or json, got {other:?}"
                )))
            }
        };
        Ok(ServerConfig {
            data_dir,
            database,
            listen,
            device_listen,
            hostnames,
            max_body_bytes,
            max_upload_bytes: merged.max_upload_bytes.unwrap_or(1 << 30),
            database_max_connections: merged.database_max_connections.unwrap_or(10).max(1),
            json_logs,
            ca_wrap_key: merged.ca_wrap_key,
            tuf_timestamp_ttl_secs: merged.tuf_timestamp_ttl_secs.unwrap_or(86_400).max(1),
            nonces_per_source,
            delta_lease_secs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> ConfigLayer {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        ConfigLayer::from_env(|k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
            .unwrap()
    }

    #[test]
    fn flags_beat_env_beat_file_beat_defaults() {
        let file: ConfigLayer = toml::from_str(
            "listen = \"127.0.0.1:1000\"\ndata-dir = \"/file\"\nmax-upload-bytes = 5\nlog-format = \"json\"",
        )
        .unwrap();
        let env = env(&[
            ("SEVENFOLD_LISTEN", "127.0.0.1:2000"),
            ("SEVENFOLD_DATA_DIR", "/env"),
        ]);
        let flags = ConfigLayer {
            listen: Some("127.0.0.1:3000".parse().unwrap()),
            ..ConfigLayer::default()
        };
        let c = ServerConfig::resolve(flags, env, Some(file)).unwrap();
        assert_eq!(c.listen.port(), 3000);
        assert_eq!(c.data_dir, PathBuf::from("/env"));
        assert_eq!(c.max_upload_bytes, 5);
        assert!(c.json_logs);
        assert_eq!(c.database, "sqlite:///env/sevenfold.db?mode=rwc");
        assert_eq!(c.max_body_bytes, 1 << 20);
        assert_eq!(c.nonces_per_source, 300);
        assert_eq!(c.delta_lease_secs, 1800);
    }

    #[test]
    fn the_nonce_limit_per_source_can_be_raised_within_bounds() {
        let file: ConfigLayer = toml::from_str("nonces-per-source = 5000").unwrap();
        let c = ServerConfig::resolve(ConfigLayer::default(), env(&[]), Some(file)).unwrap();
        assert_eq!(c.nonces_per_source, 5000);
        let high = env(&[("SEVENFOLD_NONCES_PER_SOURCE", "100000")]);
        let c = ServerConfig::resolve(ConfigLayer::default(), high, None).unwrap();
        assert_eq!(c.nonces_per_source, 100_000);
        let zero = env(&[("SEVENFOLD_NONCES_PER_SOURCE", "0")]);
        assert!(ServerConfig::resolve(ConfigLayer::default(), zero, None).is_err());
    }

    #[test]
    fn the_delta_lease_can_be_shortened_but_not_to_nothing() {
        let short = env(&[("SEVENFOLD_DELTA_LEASE_SECS", "2")]);
        let c = ServerConfig::resolve(ConfigLayer::default(), short, None).unwrap();
        assert_eq!(c.delta_lease_secs, 2);
        let zero = env(&[("SEVENFOLD_DELTA_LEASE_SECS", "0")]);
        let err = ServerConfig::resolve(ConfigLayer::default(), zero, None).unwrap_err();
        assert!(err.to_string().contains("delta-lease-secs"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        let err = ConfigLayer::from_env(|k| (k == "SEVENFOLD_LISTEN").then(|| "nope".to_owned()))
            .unwrap_err();
        assert!(err.to_string().contains("SEVENFOLD_LISTEN"), "{err}");
        let err = toml::from_str::<ConfigLayer>("lisen = \"x\"").unwrap_err();
        assert!(err.to_string().contains("lisen"), "{err}");
        let flags = ConfigLayer {
            database: Some("mysql://x".into()),
            ..ConfigLayer::default()
        };
        assert!(ServerConfig::resolve(flags, ConfigLayer::default(), None).is_err());
    }
}
