//! The runtime's panic hook: a panic anywhere in the agent is journaled (with
//! its message, location and backtrace) before the process goes on to
//! unwind or abort, so a crash of the runtime itself reaches the operator.

use std::sync::Arc;

use sevenfold_core::report::FailureKind;

use super::{Journal, RUNTIME_COMPONENT};

/// Installs a panic hook that records a `runtime-panic` in `journal`, then
/// calls the hook that was installed before (which prints the message).
/// If the panicking thread holds the journal's lock, the record is skipped
/// rather than deadlocking.
pub fn install_panic_hook(journal: Arc<Journal>) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = if let Some(s) = info.payload().downcast_ref::<&str>() {
            (*s).to_owned()
        } else if let Some(s) = info.payload().downcast_ref::<String>() {
            s.clone()
        } else {
            "panic with a non-text payload".to_owned()
        };
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let backtrace = std::backtrace::Backtrace::force_capture().to_string();
        let frames: Vec<&str> = backtrace
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with("at ") && !l.is_empty())
            // The frames of the panic machinery and of this hook say nothing.
            .filter(|l| {
                !["std::", "core::", "rust_begin_unwind", "journal::panic"]
                    .iter()
                    .any(|noise| l.contains(noise))
            })
            .collect();
        let thread = std::thread::current()
            .name()
            .unwrap_or("unnamed")
            .to_owned();
        if let Ok(record) = Journal::new_record(
            FailureKind::RuntimePanic,
            RUNTIME_COMPONENT,
            env!("CARGO_PKG_VERSION"),
            &message,
        ) {
            let record = record
                .with_detail("location", &location)
                .with_detail("thread", &thread)
                .with_frames(frames);
            match journal.try_record(&record) {
                Some(Ok(_)) => {}
                Some(Err(e)) => eprintln!("sevenfold: could not journal the panic: {e}"),
                None => eprintln!("sevenfold: the journal was busy; the panic was not journaled"),
            }
        }
        previous(info);
    }));
}
