//! `sevenfold completions`: shell completion scripts.

use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;
use serde::Serialize;

use crate::cli::{Cli, CompletionsArgs, OutputMode, ShellArg};
use crate::output::{emit, Render};

#[derive(Serialize)]
struct CompletionsReport {
    shell: &'static str,
    script: String,
}

impl Render for CompletionsReport {
    fn human(&self) -> String {
        self.script.clone()
    }
}

pub(crate) fn run(mode: OutputMode, args: &CompletionsArgs) -> anyhow::Result<ExitCode> {
    let (shell, name) = match args.shell {
        ShellArg::Bash => (Shell::Bash, "bash"),
        ShellArg::Zsh => (Shell::Zsh, "zsh"),
        ShellArg::Fish => (Shell::Fish, "fish"),
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "sevenfold", &mut script);
    let report = CompletionsReport {
        shell: name,
        script: String::from_utf8(script)?,
    };
    emit(mode, &report)?;
    Ok(ExitCode::SUCCESS)
}
