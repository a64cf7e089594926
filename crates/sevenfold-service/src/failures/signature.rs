//! Problem signatures: what makes two failures "the same problem".
//!
//! The signature is SHA-256 over the component, the kind, the normalised
//! reason and the top [`SIGNATURE_FRAMES`] normalised frames. Normalising removes
//! what differs between occurrences of one bug: hex addresses and offsets,
//! UUIDs and long hex IDs, numbers (counts, times, line-independent PIDs)
//! and runs of white space. So a crash at `0x7f3a…` on one device and at
//! `0x7f12…` on another, minutes apart, is one problem.

use sevenfold_core::report::{FailureKind, SIGNATURE_FRAMES};

use crate::store::ProblemKey;

/// Longest title kept.
const MAX_TITLE: usize = 300;

/// Normalises one line of text for grouping.
pub(crate) fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        // 0x-prefixed hex: an address or offset.
        if c == '0'
            && matches!(chars.get(i + 1), Some('x' | 'X'))
            && chars.get(i + 2).is_some_and(char::is_ascii_hexdigit)
        {
            i += 2;
            while chars.get(i).is_some_and(char::is_ascii_hexdigit) {
                i += 1;
            }
            out.push_str("<addr>");
            continue;
        }
        if c.is_ascii_alphanumeric() {
            // A whole token of letters and digits (and '-' inside UUIDs).
            let start = i;
            while chars
                .get(i)
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '-')
            {
                i += 1;
            }
            let token: String = chars.get(start..i).unwrap_or_default().iter().collect();
            out.push_str(&normalise_token(&token));
            continue;
        }
        if c.is_whitespace() {
            while chars.get(i).is_some_and(|c| c.is_whitespace()) {
                i += 1;
            }
            out.push(' ');
            continue;
        }
        out.push(c);
        i += 1;
    }
    out.trim().to_owned()
}

fn normalise_token(token: &str) -> String {
    let hexish = |s: &str| s.chars().all(|c| c.is_ascii_hexdigit());
    let parts: Vec<&str> = token.split('-').collect();
    let is_uuid = parts.len() == 5
        && parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
        && parts.iter().all(|p| hexish(p));
    if is_uuid {
        return "<id>".to_owned();
    }
    // Split on '-' so "v1-23" keeps its shape; normalise each part.
    parts
        .iter()
        .map(|part| {
            if part.len() >= 8 && hexish(part) && part.chars().any(|c| c.is_ascii_digit()) {
                "<id>".to_owned()
            } else {
                strip_numbers(part)
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// Replaces every run of digits with `<n>`.
fn strip_numbers(part: &str) -> String {
    let mut out = String::with_capacity(part.len());
    let mut in_number = false;
    for c in part.chars() {
        if c.is_ascii_digit() {
            if !in_number {
                out.push_str("<n>");
                in_number = true;
            }
        } else {
            in_number = false;
            out.push(c);
        }
    }
    out
}

/// The problem key of a failure.
pub(crate) fn problem_key(
    component_id: &str,
    kind: FailureKind,
    reason: &str,
    frames: &[String],
) -> ProblemKey {
    let reason = normalise(reason);
    let top: Vec<String> = frames
        .iter()
        .take(SIGNATURE_FRAMES)
        .map(|f| normalise(f))
        .collect();
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for part in [component_id, kind.as_str(), reason.as_str()] {
        ctx.update(part.as_bytes());
        ctx.update(b"\0");
    }
    for frame in &top {
        ctx.update(frame.as_bytes());
        ctx.update(b"\n");
    }
    let mut title = match top.first() {
        Some(frame) => format!("{reason} @ {frame}"),
        None => reason,
    };
    if title.len() > MAX_TITLE {
        let mut end = MAX_TITLE;
        while !title.is_char_boundary(end) {
            end -= 1;
        }
        title.truncate(end);
    }
    ProblemKey {
        signature: hex::encode(ctx.finish().as_ref()),
        title,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: &str) {
        assert_eq!(normalise(input), expected, "{input}");
    }

    #[test]
    fn addresses_ids_numbers_and_times_are_stripped() {
        check(
            "wasm trap at 0x7f3a12ef: unreachable",
            "wasm trap at <addr>: unreachable",
        );
        check("blink::main+0x1f", "blink::main+<addr>");
        check("exit code 101", "exit code <n>");
        check(
            "image 2a9c0e0e-1234-4abc-8def-0123456789ab failed",
            "image <id> failed",
        );
        check("digest deadbeef00112233 mismatch", "digest <id> mismatch");
        check(
            "at 2026-11-29T19:08:58Z   retry",
            "at <n>-<n>-<n>T<n>:<n>:<n>Z retry",
        );
        check("  spaces\tand\nlines ", "spaces and lines");
        check("frame #12 in blink.wasm", "frame #<n> in blink.wasm");
        // Words are kept, including hex-looking short words.
        check("bad cafe face", "bad cafe face");
    }

    #[test]
    fn same_bug_same_signature_different_bug_different_signature() {
        let frames = |a: &str| vec![format!("blink::run+{a}"), "_start".to_owned()];
        let one = problem_key("app", FailureKind::Trap, "trap at 0x10", &frames("0x1f"));
        let two = problem_key("app", FailureKind::Trap, "trap at 0xff", &frames("0x2a"));
        assert_eq!(one, two);
        assert_eq!(one.title, "trap at <addr> @ blink::run+<addr>");
        let other_kind = problem_key("app", FailureKind::AppExit, "trap at 0x10", &frames("0x1"));
        let other_app = problem_key("app2", FailureKind::Trap, "trap at 0x10", &frames("0x1"));
        let other_frame = problem_key("app", FailureKind::Trap, "trap at 0x10", &["x::y".into()]);
        for other in [other_kind, other_app, other_frame] {
            assert_ne!(one.signature, other.signature);
        }
        // Only the top frames count.
        let mut deep = frames("0x1");
        deep.extend(["a".into(), "b".into()]);
        let mut deeper = frames("0x1");
        deeper.extend(["a".into(), "c".into()]);
        assert_eq!(
            problem_key("app", FailureKind::Trap, "t", &deep),
            problem_key("app", FailureKind::Trap, "t", &deeper)
        );
    }
}
