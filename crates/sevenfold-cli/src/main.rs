//! `sevenfold`: one binary for the Security Service, the device runtime and
//! the operator tools.
//!
//! This crate is deliberately thin: it parses arguments ([`cli`]), calls the
//! library crates, and renders results as text or JSON ([`output`]). Errors
//! from the libraries are typed; here, at the edge, they become `anyhow`
//! errors with context that tells the user what to do.

#![forbid(unsafe_code)]

mod cli;
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
    match commands::run(cli) {
        Ok(code) => code,
        Err(error) => {
            output::error(mode, &error);
            ExitCode::FAILURE
        }
    }
}
