//! What can be wrong with an app manifest, said so that the author can fix it.

use std::fmt;

/// Why an app manifest was refused.
///
/// The split follows who has to act: [`TooLarge`](Self::TooLarge) and
/// [`Json`](Self::Json) mean the file is not a manifest at all;
/// [`Invalid`](Self::Invalid) means it is one, with every mistake listed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The input is larger than [`MAX_MANIFEST_LEN`](super::MAX_MANIFEST_LEN);
    /// it was refused before parsing.
    #[error("app manifest is {len} bytes; at most {max} bytes are allowed")]
    TooLarge {
        /// Size of the input, in bytes.
        len: usize,
        /// The limit, in bytes.
        max: usize,
    },
    /// The input is not JSON (or is nested deeper than the parser allows), or
    /// its top level is not an object.
    #[error("app manifest is not a JSON object: {message} (line {line}, column {column})")]
    Json {
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column (in bytes) of the problem.
        column: usize,
        /// What the parser found wrong.
        message: String,
    },
    /// The input is a JSON object but not a valid manifest. Holds every problem
    /// found, never none; displayed one per line.
    #[error("{}", Lines(.0))]
    Invalid(Vec<ManifestProblem>),
}

impl ManifestError {
    /// The problems of an [`Invalid`](Self::Invalid) manifest; empty for the
    /// other variants.
    pub fn problems(&self) -> &[ManifestProblem] {
        match self {
            Self::Invalid(problems) => problems,
            Self::TooLarge { .. } | Self::Json { .. } => &[],
        }
    }
}

struct Lines<'a>(&'a [ManifestProblem]);

impl fmt::Display for Lines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

/// One problem in a manifest: where it is and what it is.
///
/// Displays as `"$.Capabilities.MemoryKB: 16 is out of range (64..=1048576)"`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ManifestProblem {
    /// JSON path of the offending value, such as `$.ComponentId` or
    /// `$.Capabilities.AllowedConnections[2]`. Names that are not plain
    /// identifiers are written `$['odd name']`.
    pub path: String,
    /// What is wrong there.
    pub kind: ProblemKind,
}

impl fmt::Display for ManifestProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.kind)
    }
}

/// What is wrong with one value of a manifest.
///
/// `reason` strings are for people; match on the variant, not on them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProblemKind {
    /// A required field is absent.
    Missing,
    /// A field name the schema does not have. Names are case-sensitive.
    UnknownField {
        /// The name as written.
        name: String,
        /// A known name it probably meant (same name in other casing, or a
        /// small typo away).
        hint: Option<&'static str>,
        /// Whether it sits in `Capabilities` (then it is an unknown capability).
        capability: bool,
    },
    /// The same field appears twice in one object (JSON parsers disagree on
    /// which one wins, so neither is taken).
    DuplicateField,
    /// A value of the wrong JSON type.
    WrongType {
        /// What the schema wants, such as `"an integer"`.
        expected: &'static str,
        /// What was there, such as `"a string"`.
        found: &'static str,
    },
    /// An integer outside its allowed range. Wide types, so that negative and
    /// huge numbers are reported as written rather than wrapped (numbers beyond
    /// ±2^127 saturate).
    OutOfRange {
        /// Smallest allowed value.
        min: i128,
        /// Largest allowed value.
        max: i128,
        /// The value found.
        found: i128,
    },
    /// A list longer than [`MAX_LIST_LEN`](super::MAX_LIST_LEN) (its entries
    /// are not examined).
    TooMany {
        /// The limit.
        max: usize,
        /// Entries found.
        found: usize,
    },
    /// Not a UUID in the hyphenated form `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
    BadUuid {
        /// Why not.
        reason: String,
    },
    /// The nil UUID (all zeros), which identifies nothing.
    NilUuid,
    /// Not a semantic version (`1.2.0`, `2.0.0-rc.1`).
    BadVersion {
        /// Why not.
        reason: String,
    },
    /// An allowed connection whose host is not a valid host name, wildcard or
    /// IP address.
    BadHost {
        /// Why not.
        reason: String,
    },
    /// An allowed connection whose `:port` is not a number from 1 to 65535.
    BadPort {
        /// Why not.
        reason: String,
    },
    /// A list entry equal to an earlier one.
    Duplicate {
        /// Index of the earlier entry.
        first: usize,
    },
    /// The application name breaks the naming rules.
    BadName {
        /// Why.
        reason: String,
    },
    /// The entry point is not a plain file name (`*.wasm` for applications).
    BadEntryPoint {
        /// Why.
        reason: String,
    },
    /// A UART name breaks the naming rules.
    BadUartName {
        /// Why.
        reason: String,
    },
    /// A string that must be one of a fixed set of words.
    NotOneOf {
        /// The string found.
        found: String,
        /// The words allowed.
        allowed: &'static [&'static str],
    },
    /// `SchemaVersion` names a schema this build does not read.
    UnsupportedSchemaVersion {
        /// The version found.
        found: i128,
    },
    /// `AllowedApplicationConnections` lists the application's own `ComponentId`.
    SelfConnection,
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => f.write_str("required field is missing"),
            Self::UnknownField {
                name,
                hint,
                capability,
            } => {
                let what = if *capability { "capability" } else { "field" };
                write!(f, "unknown {what} '{}'", Quoted(name))?;
                if let Some(hint) = hint {
                    write!(f, "; did you mean '{hint}'?")?;
                    if hint.eq_ignore_ascii_case(name) {
                        f.write_str(" (names are case-sensitive)")?;
                    }
                }
                Ok(())
            }
            Self::DuplicateField => f.write_str("field appears more than once"),
            Self::WrongType { expected, found } => write!(f, "expected {expected}, found {found}"),
            Self::OutOfRange { min, max, found } => {
                write!(f, "{found} is out of range ({min}..={max})")
            }
            Self::TooMany { max, found } => {
                write!(f, "lists {found} entries; at most {max} are allowed")
            }
            Self::BadUuid { reason } => write!(f, "not a UUID: {reason}"),
            Self::NilUuid => f.write_str("the nil UUID (all zeros) identifies no component"),
            Self::BadVersion { reason } => {
                write!(f, "not a semantic version like '1.2.0': {reason}")
            }
            Self::BadHost { reason } => write!(f, "not a valid host: {reason}"),
            Self::BadPort { reason } => write!(f, "not a valid port: {reason}"),
            Self::Duplicate { first } => write!(f, "same as entry [{first}]; list it once"),
            Self::BadName { reason } => write!(f, "not a valid application name: {reason}"),
            Self::BadEntryPoint { reason } => write!(f, "not a valid entry point: {reason}"),
            Self::BadUartName { reason } => write!(f, "not a valid UART name: {reason}"),
            Self::NotOneOf { found, allowed } => {
                write!(f, "'{}' is not one of ", Quoted(found))?;
                for (i, word) in allowed.iter().enumerate() {
                    let sep = if i == 0 { "" } else { ", " };
                    write!(f, "{sep}'{word}'")?;
                }
                Ok(())
            }
            Self::UnsupportedSchemaVersion { found } => write!(
                f,
                "schema version {found} is not supported; this build reads version {}",
                super::SCHEMA_VERSION
            ),
            Self::SelfConnection => f.write_str(
                "an application's own ComponentId cannot be one of its allowed application connections",
            ),
        }
    }
}

/// Input text shown inside a message: control characters and quotes escaped
/// (so a hostile name cannot forge extra lines), long text shortened.
pub(super) struct Quoted<'a>(pub(super) &'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 64;
        for c in self.0.chars().take(SHOWN) {
            write!(f, "{}", c.escape_debug())?;
        }
        if self.0.chars().nth(SHOWN).is_some() {
            f.write_str("…")?;
        }
        Ok(())
    }
}

/// A message from another crate that may quote input, with control
/// characters escaped so that it stays on one line.
pub(super) fn printable(message: &str) -> String {
    message
        .chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}
