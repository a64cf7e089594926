//! The JSON layer: a faithful tree of the document and a pretty writer.
//!
//! `serde_json::Value` would silently keep only the last of two equal keys and
//! reorder keys, so the manifest is read into [`Json`] instead: keys stay in
//! document order and duplicates stay visible, so the reader can refuse them
//! (two parsers that pick different duplicates are a classic way to smuggle
//! a capability past a check). Depth is bounded by serde_json's recursion
//! limit (128), which stays on.

use std::fmt::{self, Write as _};

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::error::ManifestError;

/// A JSON value, as written.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Json {
    Null,
    Bool(bool),
    /// Every integer serde_json can hold exactly (all of `i64` and `u64`).
    Int(i128),
    /// Numbers written with a fraction or exponent, and integers too large
    /// for `u64`/`i64`.
    Float(f64),
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

/// The members of a JSON object, in document order, duplicates included.
pub(super) type Object = [(String, Json)];

/// Beyond this magnitude serde_json hands integers over as `f64`, and every
/// `f64` this large is a whole number.
const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;

impl Json {
    /// A float so large it can only have been written as a (huge) integer,
    /// returned as the nearest `i128` (saturating).
    pub(super) fn huge_integer(&self) -> Option<i128> {
        match self {
            // `as` saturates; every f64 this large is whole.
            Self::Float(f) if f.abs() >= TWO_POW_63 => Some(*f as i128),
            _ => None,
        }
    }

    /// What this is, for "expected …, found …" messages.
    pub(super) fn kind_name(&self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Bool(_) => "a boolean",
            Self::Int(_) => "a number",
            Self::Float(_) if self.huge_integer().is_some() => "a number",
            Self::Float(_) => "a number with a fraction or exponent",
            Self::Str(_) => "a string",
            Self::Array(_) => "an array",
            Self::Object(_) => "an object",
        }
    }
}

/// Parses `bytes` as one JSON object (nothing before or after it).
pub(super) fn parse_object(bytes: &[u8]) -> Result<Vec<(String, Json)>, ManifestError> {
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        return Err(ManifestError::Json {
            line: 1,
            column: 1,
            message: "the file starts with a byte-order mark; save it as UTF-8 without BOM".into(),
        });
    }
    let value: Json = serde_json::from_slice(bytes).map_err(|e| {
        let full = e.to_string();
        let position = format!(" at line {} column {}", e.line(), e.column());
        ManifestError::Json {
            line: e.line(),
            column: e.column(),
            message: full.strip_suffix(&position).unwrap_or(&full).to_owned(),
        }
    })?;
    match value {
        Json::Object(members) => Ok(members),
        other => {
            let (line, column) = first_token(bytes);
            Err(ManifestError::Json {
                line,
                column,
                message: format!(
                    "the top level must be an object, found {}",
                    other.kind_name()
                ),
            })
        }
    }
}

/// 1-based line and column of the first non-whitespace byte.
fn first_token(bytes: &[u8]) -> (usize, usize) {
    let (mut line, mut column) = (1, 1);
    for &b in bytes {
        match b {
            b'\n' => (line, column) = (line + 1, 1),
            b' ' | b'\t' | b'\r' => column += 1,
            _ => break,
        }
    }
    (line, column)
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
        Ok(Json::Int(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
        Ok(Json::Int(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Json, E> {
        Ok(Json::Float(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Ok(Json::Str(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Json, E> {
        Ok(Json::Str(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut members = Vec::new();
        while let Some(member) = map.next_entry()? {
            members.push(member);
        }
        Ok(Json::Object(members))
    }
}

/// Containers whose one-line form is longer than this are written one entry
/// per line.
const INLINE_WIDTH: usize = 80;

/// Writes an object as pretty JSON: two-space indent, members in the given
/// order, short lists of plain values on one line, a final newline.
pub(super) fn to_pretty(members: &Object) -> String {
    let mut out = String::new();
    write_object(&mut out, members, 0);
    out.push('\n');
    out
}

fn write_value(out: &mut String, value: &Json, depth: usize) {
    if let Some(line) = one_line(value).filter(|line| line.len() <= INLINE_WIDTH) {
        out.push_str(&line);
        return;
    }
    match value {
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                out.push_str(if i == 0 { "\n" } else { ",\n" });
                indent(out, depth + 1);
                write_value(out, item, depth + 1);
            }
            out.push('\n');
            indent(out, depth);
            out.push(']');
        }
        Json::Object(members) => write_object(out, members, depth),
        scalar => out.push_str(&one_line(scalar).unwrap_or_default()),
    }
}

fn write_object(out: &mut String, members: &Object, depth: usize) {
    if members.is_empty() {
        out.push_str("{}");
        return;
    }
    out.push('{');
    for (i, (key, value)) in members.iter().enumerate() {
        out.push_str(if i == 0 { "\n" } else { ",\n" });
        indent(out, depth + 1);
        write_string(out, key);
        out.push_str(": ");
        write_value(out, value, depth + 1);
    }
    out.push('\n');
    indent(out, depth);
    out.push('}');
}

/// The one-line form of a scalar, or of a container holding only scalars.
fn one_line(value: &Json) -> Option<String> {
    let mut out = String::new();
    match value {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Int(n) => out.push_str(&n.to_string()),
        // Never produced by the writer's callers; finite because serde_json
        // refuses numbers that overflow f64.
        Json::Float(x) => out.push_str(&x.to_string()),
        Json::Str(s) => write_string(&mut out, s),
        Json::Array(items) => {
            let items: Option<Vec<String>> = items.iter().map(scalar).collect();
            out = format!("[{}]", items?.join(", "));
        }
        Json::Object(members) if members.is_empty() => out.push_str("{}"),
        Json::Object(members) => {
            let mut parts = Vec::new();
            for (key, value) in members {
                let mut part = String::new();
                write_string(&mut part, key);
                part.push_str(": ");
                part.push_str(&scalar(value)?);
                parts.push(part);
            }
            out = format!("{{ {} }}", parts.join(", "));
        }
    }
    Some(out)
}

fn scalar(value: &Json) -> Option<String> {
    match value {
        Json::Array(_) | Json::Object(_) => None,
        _ => one_line(value),
    }
}

fn indent(out: &mut String, depth: usize) {
    for _ in 0..depth {
        out.push_str("  ");
    }
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_and_order_are_kept() {
        let members = parse_object(br#"{"b": 1, "a": 2, "b": 3}"#).unwrap();
        let keys: Vec<&str> = members.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["b", "a", "b"]);
    }

    #[test]
    fn numbers_keep_their_kind() {
        let members =
            parse_object(br#"{"a": -1, "b": 18446744073709551615, "c": 1.5, "d": -1e20}"#).unwrap();
        assert_eq!(members[0].1, Json::Int(-1));
        assert_eq!(members[1].1, Json::Int(u64::MAX.into()));
        assert_eq!(members[2].1, Json::Float(1.5));
        assert_eq!(members[3].1.huge_integer(), Some(-(10_i128.pow(20))));
        assert_eq!(members[2].1.huge_integer(), None);
    }

    #[test]
    fn top_level_must_be_an_object() {
        let err = parse_object(b"\n  [1]").unwrap_err();
        assert_eq!(
            err,
            ManifestError::Json {
                line: 2,
                column: 3,
                message: "the top level must be an object, found an array".into()
            }
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep = format!("{{\"a\": {}{}}}", "[".repeat(50_000), "]".repeat(50_000));
        let err = parse_object(deep.as_bytes()).unwrap_err();
        assert!(
            matches!(&err, ManifestError::Json { message, .. } if message.contains("recursion")),
            "{err}"
        );
    }

    #[test]
    fn writer_output_parses_back_to_the_same_tree() {
        let tree = vec![
            (
                "S".to_owned(),
                Json::Str("quote \" backslash \\ newline \n nul \u{0} del \u{7f} é".into()),
            ),
            (
                "L".to_owned(),
                Json::Array((0..40).map(Json::Int).collect()),
            ),
            ("E".to_owned(), Json::Array(vec![])),
            (
                "O".to_owned(),
                Json::Object(vec![("K".into(), Json::Bool(true))]),
            ),
            (
                "N".to_owned(),
                Json::Object(vec![("Deep".into(), Json::Array(vec![Json::Null]))]),
            ),
        ];
        let text = to_pretty(&tree);
        assert_eq!(parse_object(text.as_bytes()).unwrap(), tree);
        assert!(text.contains("\"O\": { \"K\": true }"), "{text}");
        assert!(text.ends_with("}\n"));
    }
}
