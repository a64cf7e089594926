//! `sevenfold server`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

/// Flags of `sevenfold server`; see the command's help for precedence.
#[derive(Debug, Args)]
pub(crate) struct ServerArgs {
    /// Directory for the SQLite database, image blobs and the service CA
    /// (`tls/ca.pem`, which clients pass as `--ca`) [env: SEVENFOLD_DATA_DIR]
    /// [default: sevenfold-data]
    #[arg(long, value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Database URL: `sqlite://FILE?mode=rwc` or `postgres://…` [env:
    /// SEVENFOLD_DATABASE_URL] [default: SQLite in the data directory]
    #[arg(long, value_name = "URL")]
    pub(crate) database: Option<String>,
    /// Operator API address (HTTPS); port 0 picks a free port [env:
    /// SEVENFOLD_LISTEN] [default: 127.0.0.1:8443]
    #[arg(long, value_name = "ADDR")]
    pub(crate) listen: Option<SocketAddr>,
    /// Device API address (mutual TLS) [env: SEVENFOLD_DEVICE_LISTEN]
    #[arg(long, value_name = "ADDR")]
    pub(crate) device_listen: Option<SocketAddr>,
    /// Extra host name or IP address for the server certificate (localhost,
    /// 127.0.0.1 and ::1 are always included); repeatable [env:
    /// SEVENFOLD_HOSTNAMES, comma-separated]
    #[arg(long = "hostname", value_name = "NAME")]
    pub(crate) hostnames: Vec<String>,
    /// TOML configuration file (keys: data-dir, database, listen,
    /// device-listen, hostnames, max-body-bytes, max-upload-bytes,
    /// database-max-connections, log-format) [env: SEVENFOLD_CONFIG]
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
}
