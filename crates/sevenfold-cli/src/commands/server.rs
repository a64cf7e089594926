//! `sevenfold server`: run the Security Service until SIGINT or SIGTERM.
//!
//! Standard output carries exactly one announcement once the server listens
//! (scripts and tests wait for it); everything else is logged to standard
//! error through `tracing`.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;
use sevenfold_service::config::{ConfigLayer, ServerConfig, CONFIG_ENV};
use tracing_subscriber::EnvFilter;

use crate::cli::{OutputMode, ServerArgs};

/// The line printed when the server is ready (JSON form).
#[derive(Serialize)]
struct ReadyEvent<'a> {
    event: &'static str,
    operator_api: &'a str,
    device_api: &'a str,
    ca_file: &'a Path,
    bootstrap_token: Option<&'a str>,
}

pub(crate) async fn run(mode: OutputMode, args: &ServerArgs) -> anyhow::Result<ExitCode> {
    let config = resolve_config(args)?;
    init_logging(config.json_logs);
    // Listen for signals before announcing readiness: a supervisor may send
    // SIGTERM as soon as it reads the ready line.
    let signals = Signals::new()?;
    let data_dir = config.data_dir.clone();
    let server = sevenfold_service::server::start(config)
        .await
        .context("the Security Service could not start")?;

    let operator_api = format!("https://{}", server.operator_addr);
    let device_api = format!("https://{}", server.device_addr);
    let ca_file = absolute(&data_dir.join("tls").join("ca.pem"));
    let announcement = match mode {
        OutputMode::Text => {
            let mut text = format!(
                "sevenfold server ready: operator API {operator_api}, device API {device_api} (service CA {})\n",
                ca_file.display()
            );
            if let Some(token) = &server.bootstrap_token {
                text.push_str(&format!("bootstrap admin token (shown once): {token}\n"));
            }
            text
        }
        OutputMode::Json => {
            let event = ReadyEvent {
                event: "ready",
                operator_api: &operator_api,
                device_api: &device_api,
                ca_file: &ca_file,
                bootstrap_token: server.bootstrap_token.as_deref(),
            };
            format!("{}\n", serde_json::to_string(&event)?)
        }
    };
    {
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(announcement.as_bytes())
            .and_then(|()| stdout.flush())
            .context("cannot write to standard output")?;
    }

    let signal = signals.next().await;
    tracing::info!(signal, "shutting down");
    server.shutdown();
    server.wait().await;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Flags over `SEVENFOLD_*` over the TOML file over defaults.
fn resolve_config(args: &ServerArgs) -> anyhow::Result<ServerConfig> {
    let flags = ConfigLayer {
        data_dir: args.data_dir.clone(),
        database: args.database.clone(),
        listen: args.listen,
        device_listen: args.device_listen,
        hostnames: (!args.hostnames.is_empty()).then(|| args.hostnames.clone()),
        ..ConfigLayer::default()
    };
    let env = ConfigLayer::from_env(|name| std::env::var(name).ok())?;
    let file_path = args.config.clone().or_else(|| {
        std::env::var_os(CONFIG_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    let file = file_path
        .as_deref()
        .map(ConfigLayer::from_toml_file)
        .transpose()?;
    Ok(ServerConfig::resolve(flags, env, file)?)
}

/// Logs to standard error: text or JSON lines, filtered by `RUST_LOG`
/// (default `info`).
fn init_logging(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // Fails only if a subscriber is set already, which then keeps logging.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// SIGINT and SIGTERM, caught from creation on.
struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            terminate: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
            interrupt: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
        })
    }

    /// Waits for either; returns its name.
    async fn next(mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }
}

/// `path` made absolute against the working directory, so the printed CA
/// path works from anywhere.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}
