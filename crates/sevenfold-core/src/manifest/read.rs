//! The reader: a JSON tree in, a valid [`AppManifest`] or every problem out.
//!
//! Fields are read in the schema's order, each checked where it is read; the
//! members nobody asked for are reported last, per object. A value with a
//! problem is left out, and the manifest is only assembled if no problem was
//! reported at all.

use std::collections::HashSet;
use std::ops::RangeInclusive;

use semver::Version;
use uuid::Uuid;

use super::error::{printable, Quoted};
use super::json::{Json, Object};
use super::{
    AppManifest, Capabilities, ConnectionTarget, ImageType, ManifestProblem, MutableStorage,
    ProblemKind, MAX_LIST_LEN, SCHEMA_VERSION,
};

const ROOT: &str = "$";

const TOP_FIELDS: &[&str] = &[
    "SchemaVersion",
    "Name",
    "ComponentId",
    "Version",
    "SecurityVersion",
    "EntryPoint",
    "ImageType",
    "Capabilities",
];
const CAPABILITY_FIELDS: &[&str] = &[
    "AllowedConnections",
    "AllowedTcpServerPorts",
    "MutableStorage",
    "MemoryKB",
    "CpuPercent",
    "Gpio",
    "Uart",
    "AllowedApplicationConnections",
    "DeviceAuthentication",
];
const STORAGE_FIELDS: &[&str] = &["SizeKB"];

const SECURITY_VERSION: RangeInclusive<u32> = 0..=u32::MAX;
const TCP_PORT: RangeInclusive<u16> = 1..=u16::MAX;
const MUTABLE_STORAGE_KB: RangeInclusive<u32> = 1..=1_048_576;
const MEMORY_KB: RangeInclusive<u32> = 64..=1_048_576;
const CPU_PERCENT: RangeInclusive<u8> = 1..=100;
const GPIO_PIN: RangeInclusive<u32> = 0..=1023;

const MAX_NAME_LEN: usize = 64;
const MAX_ENTRY_POINT_LEN: usize = 128;
const MAX_UART_LEN: usize = 16;

/// Reads a manifest from the members of the top-level object.
pub(super) fn manifest(top: &Object) -> Result<AppManifest, Vec<ManifestProblem>> {
    let mut reader = Reader {
        problems: Vec::new(),
    };
    match reader.manifest(top) {
        Some(manifest) if reader.problems.is_empty() => Ok(manifest),
        _ => Err(reader.problems),
    }
}

struct Reader {
    problems: Vec<ManifestProblem>,
}

impl Reader {
    fn report(&mut self, path: &str, kind: ProblemKind) {
        self.problems.push(ManifestProblem {
            path: path.to_owned(),
            kind,
        });
    }

    /// Reports the problem and yields nothing, for `return` in readers.
    fn reject<T>(&mut self, path: &str, kind: ProblemKind) -> Option<T> {
        self.report(path, kind);
        None
    }

    fn wrong_type<T>(&mut self, path: &str, expected: &'static str, found: &Json) -> Option<T> {
        let found = found.kind_name();
        self.reject(path, ProblemKind::WrongType { expected, found })
    }

    fn manifest(&mut self, top: &Object) -> Option<AppManifest> {
        let schema = self
            .required(top, ROOT, "SchemaVersion")
            .and_then(|(path, v)| self.schema_version(&path, v));
        let name = self.required(top, ROOT, "Name").and_then(|(path, v)| {
            self.checked_string(&path, v, check_name, |reason| ProblemKind::BadName {
                reason,
            })
        });
        let component_id = self
            .required(top, ROOT, "ComponentId")
            .and_then(|(path, v)| self.uuid(&path, v));
        let version = self
            .required(top, ROOT, "Version")
            .and_then(|(path, v)| self.version(&path, v));
        let security_version = self
            .required(top, ROOT, "SecurityVersion")
            .and_then(|(path, v)| self.int(&path, v, &SECURITY_VERSION));
        let entry_point = self
            .required(top, ROOT, "EntryPoint")
            .and_then(|(path, v)| {
                self.checked_string(&path, v, check_entry_point, |reason| {
                    ProblemKind::BadEntryPoint { reason }
                })
            });
        let image_type = match optional(top, ROOT, "ImageType") {
            None => Some(ImageType::default()),
            Some((path, v)) => self.image_type(&path, v),
        };
        // An application is a WebAssembly module; a runtime image carries
        // the runtime's native executable, named as it likes.
        let entry_point = match (entry_point, image_type) {
            (Some(e), Some(ImageType::Application)) if !e.ends_with(".wasm") => {
                let path = format!("{ROOT}.EntryPoint");
                let reason = "it must end in '.wasm'".to_owned();
                self.reject(&path, ProblemKind::BadEntryPoint { reason })
            }
            (e, _) => e,
        };
        let capabilities = match optional(top, ROOT, "Capabilities") {
            None => Some(Capabilities::default()),
            Some((path, v)) => self.capabilities(&path, v, component_id),
        };
        self.unknown_fields(top, ROOT, TOP_FIELDS, false);
        schema?;
        Some(AppManifest {
            name: name?,
            component_id: component_id?,
            version: version?,
            security_version: security_version?,
            entry_point: entry_point?,
            image_type: image_type?,
            capabilities: capabilities?,
        })
    }

    fn capabilities(&mut self, path: &str, v: &Json, own_id: Option<Uuid>) -> Option<Capabilities> {
        let caps = self.object(path, v)?;
        let allowed_connections = self.list(caps, path, "AllowedConnections", |r, path, v| {
            let s = r.string(path, v)?;
            match ConnectionTarget::parse(s) {
                Ok(target) => Some(target),
                Err(kind) => r.reject(path, kind),
            }
        });
        let allowed_tcp_server_ports =
            self.list(caps, path, "AllowedTcpServerPorts", |r, path, v| {
                r.int(path, v, &TCP_PORT)
            });
        let mutable_storage = optional(caps, path, "MutableStorage")
            .and_then(|(path, v)| self.mutable_storage(&path, v));
        let memory_kb =
            optional(caps, path, "MemoryKB").and_then(|(path, v)| self.int(&path, v, &MEMORY_KB));
        let cpu_percent = optional(caps, path, "CpuPercent")
            .and_then(|(path, v)| self.int(&path, v, &CPU_PERCENT));
        let gpio = self.list(caps, path, "Gpio", |r, path, v| r.int(path, v, &GPIO_PIN));
        let uart = self.list(caps, path, "Uart", |r, path, v| {
            r.checked_string(path, v, check_uart, |reason| ProblemKind::BadUartName {
                reason,
            })
        });
        let allowed_application_connections =
            self.list(caps, path, "AllowedApplicationConnections", |r, path, v| {
                let id = r.uuid(path, v)?;
                if Some(id) == own_id {
                    return r.reject(path, ProblemKind::SelfConnection);
                }
                Some(id)
            });
        let device_authentication = optional(caps, path, "DeviceAuthentication")
            .and_then(|(path, v)| self.boolean(&path, v))
            .unwrap_or(false);
        self.unknown_fields(caps, path, CAPABILITY_FIELDS, true);
        Some(Capabilities {
            allowed_connections,
            allowed_tcp_server_ports,
            mutable_storage,
            memory_kb,
            cpu_percent,
            gpio,
            uart,
            allowed_application_connections,
            device_authentication,
        })
    }

    fn mutable_storage(&mut self, path: &str, v: &Json) -> Option<MutableStorage> {
        let storage = self.object(path, v)?;
        let size_kb = self
            .required(storage, path, "SizeKB")
            .and_then(|(path, v)| self.int(&path, v, &MUTABLE_STORAGE_KB));
        self.unknown_fields(storage, path, STORAGE_FIELDS, false);
        Some(MutableStorage { size_kb: size_kb? })
    }

    /// The value of a required member, with its path; reports it if absent.
    fn required<'a>(
        &mut self,
        object: &'a Object,
        parent: &str,
        key: &'static str,
    ) -> Option<(String, &'a Json)> {
        let found = optional(object, parent, key);
        if found.is_none() {
            self.report(&member_path(parent, key), ProblemKind::Missing);
        }
        found
    }

    /// Reports members that are not in `known` (with a hint when one is
    /// close) and known members that appear more than once.
    fn unknown_fields(
        &mut self,
        object: &Object,
        parent: &str,
        known: &[&'static str],
        capability: bool,
    ) {
        let mut seen = HashSet::new();
        for (key, _) in object {
            let path = member_path(parent, key);
            if !known.iter().any(|k| k == key) {
                let kind = ProblemKind::UnknownField {
                    name: key.clone(),
                    hint: hint(key, known),
                    capability,
                };
                self.report(&path, kind);
            } else if !seen.insert(key.as_str()) {
                self.report(&path, ProblemKind::DuplicateField);
            }
        }
    }

    /// An optional list: each entry read by `item` and checked against the
    /// entries before it.
    fn list<T: PartialEq>(
        &mut self,
        object: &Object,
        parent: &str,
        key: &'static str,
        mut item: impl FnMut(&mut Self, &str, &Json) -> Option<T>,
    ) -> Vec<T> {
        let Some((path, v)) = optional(object, parent, key) else {
            return Vec::new();
        };
        let items = match v {
            Json::Array(items) => items,
            other => {
                return self
                    .wrong_type(&path, "an array", other)
                    .unwrap_or_default()
            }
        };
        if items.len() > MAX_LIST_LEN {
            let kind = ProblemKind::TooMany {
                max: MAX_LIST_LEN,
                found: items.len(),
            };
            self.report(&path, kind);
            return Vec::new();
        }
        let mut kept: Vec<(usize, T)> = Vec::with_capacity(items.len());
        for (index, v) in items.iter().enumerate() {
            let path = format!("{path}[{index}]");
            let Some(value) = item(self, &path, v) else {
                continue;
            };
            match kept.iter().find(|(_, earlier)| *earlier == value) {
                Some(&(first, _)) => self.report(&path, ProblemKind::Duplicate { first }),
                None => kept.push((index, value)),
            }
        }
        kept.into_iter().map(|(_, value)| value).collect()
    }

    fn object<'a>(&mut self, path: &str, v: &'a Json) -> Option<&'a Object> {
        match v {
            Json::Object(members) => Some(members),
            other => self.wrong_type(path, "an object", other),
        }
    }

    fn string<'a>(&mut self, path: &str, v: &'a Json) -> Option<&'a str> {
        match v {
            Json::Str(s) => Some(s),
            other => self.wrong_type(path, "a string", other),
        }
    }

    fn boolean(&mut self, path: &str, v: &Json) -> Option<bool> {
        match v {
            Json::Bool(b) => Some(*b),
            other => self.wrong_type(path, "true or false", other),
        }
    }

    /// An integer within `range`, converted to its type.
    fn int<T>(&mut self, path: &str, v: &Json, range: &RangeInclusive<T>) -> Option<T>
    where
        T: Copy + Into<i128> + TryFrom<i128>,
    {
        let found = match (v, v.huge_integer()) {
            (Json::Int(n), _) => *n,
            (_, Some(n)) => n,
            (other, None) => return self.wrong_type(path, "an integer", other),
        };
        let (min, max) = ((*range.start()).into(), (*range.end()).into());
        if !(min..=max).contains(&found) {
            return self.reject(path, ProblemKind::OutOfRange { min, max, found });
        }
        T::try_from(found).ok()
    }

    /// A string that passes `check`; else the problem `kind` makes of the reason.
    fn checked_string(
        &mut self,
        path: &str,
        v: &Json,
        check: fn(&str) -> Result<(), String>,
        kind: fn(String) -> ProblemKind,
    ) -> Option<String> {
        let s = self.string(path, v)?;
        match check(s) {
            Ok(()) => Some(s.to_owned()),
            Err(reason) => self.reject(path, kind(reason)),
        }
    }

    fn schema_version(&mut self, path: &str, v: &Json) -> Option<()> {
        let found = match (v, v.huge_integer()) {
            (Json::Int(n), _) => *n,
            (_, Some(n)) => n,
            (other, None) => return self.wrong_type(path, "an integer", other),
        };
        if found == i128::from(SCHEMA_VERSION) {
            Some(())
        } else {
            self.reject(path, ProblemKind::UnsupportedSchemaVersion { found })
        }
    }

    /// A component ID: a hyphenated, non-nil UUID.
    fn uuid(&mut self, path: &str, v: &Json) -> Option<Uuid> {
        let s = self.string(path, v)?;
        // The hyphenated form is the only one 36 characters long; the uuid
        // crate would also take braced, URN and bare-hex forms.
        let parsed = match s.len() {
            36 => Uuid::try_parse(s).map_err(|e| printable(&e.to_string())),
            _ => Err(format!(
                "'{}' is not of the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx",
                Quoted(s)
            )),
        };
        match parsed {
            Ok(id) if id.is_nil() => self.reject(path, ProblemKind::NilUuid),
            Ok(id) => Some(id),
            Err(reason) => self.reject(path, ProblemKind::BadUuid { reason }),
        }
    }

    fn version(&mut self, path: &str, v: &Json) -> Option<Version> {
        let s = self.string(path, v)?;
        match Version::parse(s) {
            Ok(version) => Some(version),
            Err(e) => self.reject(
                path,
                ProblemKind::BadVersion {
                    reason: printable(&e.to_string()),
                },
            ),
        }
    }

    fn image_type(&mut self, path: &str, v: &Json) -> Option<ImageType> {
        let s = self.string(path, v)?;
        match ImageType::from_name(s) {
            Some(image_type) => Some(image_type),
            None => {
                let kind = ProblemKind::NotOneOf {
                    found: s.to_owned(),
                    allowed: ImageType::NAMES,
                };
                self.reject(path, kind)
            }
        }
    }
}

/// The value of a member, with its path, if present (the first, if repeated).
fn optional<'a>(object: &'a Object, parent: &str, key: &'static str) -> Option<(String, &'a Json)> {
    object
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| (member_path(parent, key), v))
}

/// `parent.key`, or `parent['key']` when the key is not a plain identifier.
fn member_path(parent: &str, key: &str) -> String {
    let plain = key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        format!("{parent}.{key}")
    } else {
        format!("{parent}['{}']", key.escape_debug())
    }
}

/// A known name that `name` probably meant: the same ignoring case (distance
/// 0), or a small typo away (1 edit for short names, 2 for longer ones).
fn hint(name: &str, known: &[&'static str]) -> Option<&'static str> {
    if name.len() > 64 {
        return None; // far longer than any known name
    }
    let name = name.to_ascii_lowercase();
    known
        .iter()
        .map(|k| (edit_distance(&k.to_ascii_lowercase(), &name), *k))
        .filter(|(distance, k)| *distance <= if k.len() >= 6 { 2 } else { 1 })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, k)| k)
}

/// Levenshtein distance, by bytes.
fn edit_distance(a: &str, b: &str) -> usize {
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut current = Vec::with_capacity(b.len() + 1);
        current.push(i + 1);
        for (cb, pair) in b.bytes().zip(previous.windows(2)) {
            let &[diagonal, up] = pair else { continue };
            let left = current.last().copied().unwrap_or(usize::MAX - 1);
            let substitute = diagonal + usize::from(ca != cb);
            current.push(substitute.min(up + 1).min(left + 1));
        }
        previous = current;
    }
    previous.last().copied().unwrap_or(0)
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("it is empty".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-_.".contains(*c)))
    {
        return Err(format!(
            "'{}' is not allowed; use ASCII letters, digits, '-', '_' and '.'",
            c.escape_debug()
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err("it must start with a letter or digit".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "it is {} characters long; at most {MAX_NAME_LEN} are allowed",
            name.len()
        ));
    }
    Ok(())
}

fn check_entry_point(entry_point: &str) -> Result<(), String> {
    if entry_point.is_empty() {
        return Err("it is empty".into());
    }
    if entry_point.contains(['/', '\\']) {
        return Err("it must be a file name, not a path ('/' and '\\' are not allowed)".into());
    }
    if entry_point.contains("..") {
        return Err("'..' is not allowed".into());
    }
    if let Some(c) = entry_point
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-_.".contains(*c)))
    {
        return Err(format!(
            "'{}' is not allowed; use ASCII letters, digits, '-', '_' and '.'",
            c.escape_debug()
        ));
    }
    if !entry_point.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
        return Err("it must start with a letter, digit or '_'".into());
    }
    if entry_point.len() > MAX_ENTRY_POINT_LEN {
        return Err(format!(
            "it is {} characters long; at most {MAX_ENTRY_POINT_LEN} are allowed",
            entry_point.len()
        ));
    }
    Ok(())
}

fn check_uart(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("it is empty".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_'))
    {
        return Err(format!(
            "'{}' is not allowed; use ASCII letters, digits and '_'",
            c.escape_debug()
        ));
    }
    if name.len() > MAX_UART_LEN {
        return Err(format!(
            "it is {} characters long; at most {MAX_UART_LEN} are allowed",
            name.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distances() {
        for (a, b, d) in [
            ("", "", 0),
            ("abc", "", 3),
            ("", "abc", 3),
            ("memorykb", "memorykb", 0),
            ("memorykb", "memorkb", 1),
            ("gpio", "gpoi", 2),
            ("kitten", "sitting", 3),
        ] {
            assert_eq!(edit_distance(a, b), d, "{a} / {b}");
        }
    }

    #[test]
    fn hints() {
        assert_eq!(hint("memoryKB", CAPABILITY_FIELDS), Some("MemoryKB"));
        assert_eq!(
            hint("AllowedConnection", CAPABILITY_FIELDS),
            Some("AllowedConnections")
        );
        assert_eq!(hint("Gpoi", CAPABILITY_FIELDS), None);
        assert_eq!(hint("Foo", CAPABILITY_FIELDS), None);
        assert_eq!(hint("Nmae", TOP_FIELDS), None);
        assert_eq!(hint("Nam", TOP_FIELDS), Some("Name"));
    }

    #[test]
    fn paths() {
        assert_eq!(member_path("$", "Name"), "$.Name");
        assert_eq!(member_path("$", "odd name"), "$['odd name']");
        assert_eq!(member_path("$", "it's\n"), "$['it\\'s\\n']");
        assert_eq!(member_path("$", ""), "$['']");
    }
}
