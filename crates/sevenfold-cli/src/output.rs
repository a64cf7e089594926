//! Rendering of command results: a human text form and a stable JSON form.
//!
//! Every command builds one report type that is `Serialize` (its field names
//! are the stable JSON contract) and [`Render`] (its text for people).

use std::process::ExitCode;

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

/// Prints `report` and reports success.
pub(crate) fn success(mode: OutputMode, report: &impl Render) -> anyhow::Result<ExitCode> {
    emit(mode, report)?;
    Ok(ExitCode::SUCCESS)
}

/// Prints an error to standard error: `error: …` with its causes, or a JSON
/// object `{"error": "...", "causes": [...]}` (plus `"status"`, the HTTP
/// status, when the Security Service refused the request).
pub(crate) fn error(mode: OutputMode, error: &anyhow::Error) {
    match mode {
        OutputMode::Text => eprintln!("error: {error:#}"),
        OutputMode::Json => {
            let causes: Vec<String> = error.chain().skip(1).map(|c| c.to_string()).collect();
            let mut body = serde_json::json!({ "error": error.to_string(), "causes": causes });
            let status = error
                .chain()
                .find_map(|e| e.downcast_ref::<crate::client::ApiFailure>())
                .map(|f| f.status);
            if let (Some(status), Some(object)) = (status, body.as_object_mut()) {
                object.insert("status".to_owned(), status.into());
            }
            eprintln!("{body}");
        }
    }
}

/// A plain-text table: a header row, then one row per item, columns padded
/// to their widest cell. An empty list prints `empty` instead.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>], empty: &str) -> String {
    if rows.is_empty() {
        return format!("{empty}\n");
    }
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        for (i, (cell, width)) in cells.zip(&widths).enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            out.push_str(cell);
            if i + 1 < widths.len() {
                out.extend(std::iter::repeat_n(
                    ' ',
                    width.saturating_sub(cell.chars().count()),
                ));
            }
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
        out
    };
    let mut text = line(&mut headers.iter().copied());
    for row in rows {
        text.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    text
}

/// Key-value lines, keys padded to line up.
pub(crate) fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    let mut text = String::new();
    for (key, value) in pairs {
        let line = format!(
            "  {key}:{:pad$} {value}",
            "",
            pad = width.saturating_sub(key.chars().count())
        );
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// `value`, or `-` when there is none.
pub(crate) fn or_dash(value: Option<&str>) -> String {
    value.unwrap_or("-").to_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn tables_line_up() {
        let rows = vec![
            vec!["a".to_owned(), "long value".to_owned(), "x".to_owned()],
            vec!["longer".to_owned(), "b".to_owned(), "".to_owned()],
        ];
        assert_eq!(
            super::table(&["K", "VALUE", "Z"], &rows, "none"),
            "K       VALUE       Z\na       long value  x\nlonger  b\n"
        );
        assert_eq!(super::table(&["K"], &[], "none"), "none\n");
    }
}
