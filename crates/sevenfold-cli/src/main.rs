//! `sevenfold`: one binary for the Security Service, the device runtime and
//! the operator tools.
//!
//! This crate is deliberately thin: it parses arguments ([`cli`]), calls the
//! library crates, and renders results as text or JSON ([`output`]). Errors
//! from the libraries are typed; here, at the edge, they become `anyhow`
//! errors with context that tells the user what to do.

#![forbid(unsafe_code)]

mod cli;
mod client;
mod commands;
mod files;
mod output;

use std::process::ExitCode;

use clap::Parser;

// `SAMPLE_APPS`, produced by build.rs.
include!(concat!(env!("OUT_DIR"), "/sample_apps.rs"));

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let mode = cli.output;
    // One TLS crypto provider for the process (aws-lc-rs, as everywhere in
    // Sevenfold). An error only means one is installed already.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::Error::new(e).context("cannot start the async runtime"))
        .and_then(|runtime| {
            let outcome = runtime.block_on(commands::run(cli));
            // Do not hang on a stuck blocking task once the command is done.
            runtime.shutdown_timeout(std::time::Duration::from_secs(5));
            outcome
        });
    match outcome {
        Ok(code) => code,
        Err(error) => {
            output::error(mode, &error);
            ExitCode::FAILURE
        }
    }
}
