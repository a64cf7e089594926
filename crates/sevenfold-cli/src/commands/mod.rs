//! One module per command group; [`run`] dispatches.
//!
//! Local commands (keygen, package, image inspect, completions,
//! manufacturer init/endorse) are synchronous; the server, the operator
//! commands and quickstart are `async` and run on the runtime `main` builds.

mod agent;
mod agent_supervise;
mod agent_update;
mod audit;
mod completions;
mod deployment;
mod device;
mod device_group;
mod enrolment;
mod failures;
mod fleet;
mod image;
mod keygen;
mod login;
mod manufacturer;
mod package;
mod product;
mod quickstart;
mod role;
mod runtime;
mod server;
mod signing_key;
mod tenant;
mod tenant_ca;
mod tuf;
mod tuf_offline;

use std::process::ExitCode;

use crate::cli::{Cli, Command, ImageCommand};

/// Runs the parsed command; returns the process exit code.
pub(crate) async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mode = cli.output;
    match cli.command {
        Command::Quickstart(args) => quickstart::run(mode, &args).await,
        Command::Keygen(args) => keygen::run(mode, &args),
        Command::Package(args) => package::run(mode, &args),
        Command::Image(ImageCommand::Inspect(args)) => image::inspect(mode, &args),
        Command::Image(ImageCommand::Add(args)) => image::add(mode, &args).await,
        Command::Image(ImageCommand::List(args)) => image::list(mode, &args).await,
        Command::Image(ImageCommand::Show(args)) => image::show(mode, &args).await,
        Command::Image(ImageCommand::Download(args)) => image::download(mode, &args).await,
        Command::Completions(args) => completions::run(mode, &args),
        Command::Server(args) => server::run(mode, &args).await,
        Command::Login(args) => login::run(mode, &args).await,
        Command::Tenant(args) => tenant::run(mode, args).await,
        Command::Role(args) => role::run(mode, args).await,
        Command::Product(args) => product::run(mode, args).await,
        Command::DeviceGroup(args) => device_group::run(mode, args).await,
        Command::Deployment(args) => deployment::run(mode, args).await,
        Command::Tuf(args) => tuf::run(mode, args).await,
        Command::Fleet(args) => fleet::run(mode, args).await,
        Command::Manufacturer(command) => manufacturer::run(mode, command).await,
        Command::Device(args) => device::run(mode, args).await,
        Command::SigningKey(args) => signing_key::run(mode, args).await,
        Command::Audit(args) => audit::run(mode, args).await,
        Command::ErrorReport(args) => failures::error_report(mode, args).await,
        Command::Problem(args) => failures::problem(mode, args).await,
        Command::Webhook(args) => failures::webhook(mode, args).await,
        Command::Runtime(args) => runtime::run(mode, args).await,
        Command::Agent(command) => agent::run(mode, command).await,
    }
}

/// Logs to standard error, only errors unless `RUST_LOG` says otherwise:
/// for commands whose own output tells the story (`quickstart`, `fleet
/// simulate`), including the refusals they provoke on purpose.
pub(crate) fn init_quiet_logging() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}
