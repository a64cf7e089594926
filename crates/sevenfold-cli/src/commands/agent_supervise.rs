//! `sevenfold agent supervise`: the runtime's tiny supervisor (see
//! `sevenfold_agent::runtime::supervise`), with SIGTERM/SIGINT forwarded to
//! the runtime it runs.

use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sevenfold_agent::runtime::{supervise, SuperviseOptions, SupervisorEvent};
use sevenfold_agent::ShutdownSignals;

use super::agent::{blocking, init_logging, open};
use crate::cli::{AgentSuperviseArgs, OutputMode};

fn print(mode: OutputMode, event: &SupervisorEvent) {
    let slot = |s: Option<sevenfold_agent::update::Slot>| s.map_or("factory", |s| s.name());
    let json = match event {
        SupervisorEvent::Started {
            slot: s,
            pid,
            trial,
        } => serde_json::json!({
            "event": "started", "slot": slot(*s), "pid": pid, "trial": trial}),
        SupervisorEvent::Committed { slot: s, version } => serde_json::json!({
            "event": "committed", "slot": slot(Some(*s)), "version": version}),
        SupervisorEvent::RolledBack { reason } => serde_json::json!({
            "event": "rolled-back", "reason": reason}),
        SupervisorEvent::Exited { status } => serde_json::json!({
            "event": "exited", "status": status}),
    };
    match mode {
        OutputMode::Json => println!("{json}"),
        OutputMode::Text => match event {
            SupervisorEvent::Started {
                slot: s,
                pid,
                trial,
            } => println!(
                "supervise: started the {} runtime (pid {pid}){}",
                slot(*s),
                if *trial { " on trial" } else { "" }
            ),
            SupervisorEvent::Committed { slot: s, version } => println!(
                "supervise: runtime {version} in slot {} passed its health check; committed",
                s.name()
            ),
            SupervisorEvent::RolledBack { reason } => println!("supervise: {reason}"),
            SupervisorEvent::Exited { status } => {
                println!("supervise: the runtime exited ({status}); starting it again")
            }
        },
    }
}

pub(super) async fn run(mode: OutputMode, args: &AgentSuperviseArgs) -> anyhow::Result<ExitCode> {
    init_logging(mode == OutputMode::Json);
    let state = open(&args.state)?;
    let factory = std::env::current_exe().context("cannot find this executable")?;
    let mut run_args: Vec<OsString> = Vec::new();
    if mode == OutputMode::Json {
        run_args.extend(["--output".into(), "json".into()]);
    }
    run_args.extend(["agent".into(), "run".into(), "--state-dir".into()]);
    run_args.push(args.state.state_dir.clone().into_os_string());
    run_args.extend(args.run_args.iter().map(OsString::from));
    let options = SuperviseOptions {
        factory,
        args: run_args,
        health_period: Duration::from_secs(args.health_period.max(1)),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let signals = ShutdownSignals::new();
    let flag = Arc::clone(&stop);
    tokio::spawn(async move {
        let signal = signals.wait().await;
        tracing::info!(signal, "supervisor stopping");
        flag.store(true, Ordering::SeqCst);
    });
    blocking(move || supervise(&state, &options, &stop, &mut |e| print(mode, e)))
        .await?
        .context("the supervisor failed")?;
    Ok(ExitCode::SUCCESS)
}
