//! One module per command; [`run`] dispatches.

mod completions;
mod image;
mod keygen;
mod package;
mod quickstart;

use std::process::ExitCode;

use crate::cli::{Cli, Command, ImageCommand};

/// Runs the parsed command; returns the process exit code.
pub(crate) fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mode = cli.output;
    match cli.command {
        Command::Quickstart(args) => quickstart::run(mode, &args),
        Command::Keygen(args) => keygen::run(mode, &args),
        Command::Package(args) => package::run(mode, &args),
        Command::Image(ImageCommand::Inspect(args)) => image::inspect(mode, &args),
        Command::Completions(args) => completions::run(mode, &args),
    }
}
