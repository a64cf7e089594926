//! Rendering of command results: a human text form and a stable JSON form.
//!
//! Every command builds one report type that is `Serialize` (its field names
//! are the stable JSON contract) and [`Render`] (its text for people).

use serde::Serialize;

use crate::cli::OutputMode;

/// A command's result, printable for people and for programs.
pub(crate) trait Render: Serialize {
    /// The human-readable form.
    fn human(&self) -> String;
}

/// Prints `report` to standard output in the chosen form.
pub(crate) fn emit(mode: OutputMode, report: &impl Render) -> anyhow::Result<()> {
    match mode {
        OutputMode::Text => {
            let text = report.human();
            print!("{text}");
            if !text.ends_with('\n') {
                println!();
            }
        }
        OutputMode::Json => println!("{}", serde_json::to_string_pretty(report)?),
    }
    Ok(())
}

/// Prints an error to standard error: `error: …` with its causes, or a JSON
/// object `{"error": "...", "causes": [...]}`.
pub(crate) fn error(mode: OutputMode, error: &anyhow::Error) {
    match mode {
        OutputMode::Text => eprintln!("error: {error:#}"),
        OutputMode::Json => {
            let causes: Vec<String> = error.chain().skip(1).map(|c| c.to_string()).collect();
            let body = serde_json::json!({ "error": error.to_string(), "causes": causes });
            eprintln!("{body}");
        }
    }
}
