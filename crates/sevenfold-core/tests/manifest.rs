//! App manifest parsing and validation, from the outside: tables of manifests
//! and the one problem each must produce, reports of several problems, the
//! DESIGN.md example, bounds, the builder, and property tests (round trip,
//! no panics on any input).

// clippy.toml allows these in `#[test]` functions but not in the helpers and
// strategies of a test crate; here a panic is a failed test all the same.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

use proptest::prelude::*;
use semver::Version;
use serde_json::{json, Value};
use sevenfold_core::manifest::{
    AppManifest, ConnectionTarget, Host, ImageType, ManifestError, ProblemKind, MAX_LIST_LEN,
    MAX_MANIFEST_LEN,
};
use uuid::Uuid;
use ProblemKind::*;

const COMPONENT_ID: &str = "5b9a1c52-3f0b-4a39-9d7e-6f2d1c3e8a10";
const OTHER_APP: &str = "0f6c2b8e-93a4-4d1b-8c55-2e7a9d4f1b36";

/// The example of DESIGN.md ("Image package"), with real UUIDs.
const DESIGN_EXAMPLE: &str = r#"{
  "SchemaVersion": 1,
  "Name": "blink",
  "ComponentId": "5b9a1c52-3f0b-4a39-9d7e-6f2d1c3e8a10",
  "Version": "1.2.0",
  "SecurityVersion": 3,
  "EntryPoint": "app.wasm",
  "Capabilities": {
    "AllowedConnections": ["telemetry.example.com", "127.0.0.1:8883"],
    "AllowedTcpServerPorts": [],
    "MutableStorage": { "SizeKB": 64 },
    "MemoryKB": 4096,
    "CpuPercent": 20,
    "Gpio": [8, 9],
    "Uart": ["ISU0"],
    "AllowedApplicationConnections": ["0f6c2b8e-93a4-4d1b-8c55-2e7a9d4f1b36"],
    "DeviceAuthentication": false
  }
}"#;

fn example() -> Value {
    serde_json::from_str(DESIGN_EXAMPLE).unwrap()
}

/// The example with one top-level field set (`Value::Null` removes it).
fn top(field: &str, value: Value) -> String {
    let mut manifest = example();
    let object = manifest.as_object_mut().unwrap();
    match value {
        Value::Null => object.remove(field),
        value => object.insert(field.to_owned(), value),
    };
    manifest.to_string()
}

/// The example with one capability set.
fn cap(field: &str, value: Value) -> String {
    let mut manifest = example();
    manifest["Capabilities"][field] = value;
    manifest.to_string()
}

/// A manifest with only the required fields, then `extra` members verbatim.
fn raw(extra: &str) -> String {
    format!(
        r#"{{"SchemaVersion": 1, "Name": "blink", "ComponentId": "{COMPONENT_ID}",
            "Version": "1.2.0", "SecurityVersion": 3, "EntryPoint": "app.wasm"{extra}}}"#
    )
}

fn problems(json: &str) -> Vec<(String, ProblemKind)> {
    match AppManifest::from_json(json.as_bytes()) {
        Ok(_) => Vec::new(),
        Err(ManifestError::Invalid(problems)) => {
            problems.into_iter().map(|p| (p.path, p.kind)).collect()
        }
        Err(other) => panic!("expected an invalid manifest, got {other:?}"),
    }
}

/// `json` must be refused with exactly one problem, at `path`, of a kind that
/// `expected` accepts.
fn check(label: &str, json: &str, path: &str, expected: fn(&ProblemKind) -> bool) {
    let found = problems(json);
    match found.as_slice() {
        [(found_path, kind)] => {
            assert_eq!(found_path, path, "{label}: wrong path ({kind:?})");
            assert!(expected(kind), "{label}: unexpected problem {kind:?}");
        }
        _ => panic!("{label}: expected one problem at {path}, got {found:#?}"),
    }
}

/// A table of [`check`]s, one per line:
/// `"label": manifest => "expected path", expected ProblemKind pattern,`
/// (braces keep rustfmt from spreading each row over ten lines).
macro_rules! check_all {
    ($($label:literal: $json:expr => $path:expr, $kind:pat $(if $guard:expr)?),* $(,)?) => {
        $( check($label, &$json, $path, |k| matches!(k, $kind $(if $guard)?)); )*
    };
}

/// An `AllowedConnections` list with one good entry and then `target`.
fn target(target: &str) -> String {
    cap("AllowedConnections", json!(["fine.example.com", target]))
}

const MIB: i128 = 1_048_576;

#[test]
fn the_design_example_is_valid() {
    let manifest = AppManifest::from_json(DESIGN_EXAMPLE.as_bytes()).unwrap();
    assert_eq!(manifest.schema_version(), 1);
    assert_eq!(manifest.name(), "blink");
    assert_eq!(
        manifest.component_id(),
        COMPONENT_ID.parse::<Uuid>().unwrap()
    );
    assert_eq!(manifest.version(), &Version::new(1, 2, 0));
    assert_eq!(manifest.security_version(), 3);
    assert_eq!(manifest.entry_point(), "app.wasm");
    assert_eq!(manifest.image_type(), ImageType::Application);
    let caps = manifest.capabilities();
    let targets: Vec<String> = caps
        .allowed_connections()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(targets, ["telemetry.example.com", "127.0.0.1:8883"]);
    assert_eq!(caps.allowed_connections()[1].port(), Some(8883));
    assert!(caps.allowed_tcp_server_ports().is_empty());
    assert_eq!(caps.mutable_storage().map(|s| s.size_kb()), Some(64));
    assert_eq!(caps.memory_kb(), Some(4096));
    assert_eq!(caps.cpu_percent(), Some(20));
    assert_eq!(caps.gpio(), &[8, 9]);
    assert_eq!(caps.uart(), &["ISU0".to_owned()]);
    assert_eq!(
        caps.allowed_application_connections(),
        &[OTHER_APP.parse::<Uuid>().unwrap()]
    );
    assert!(!caps.device_authentication());
}

#[test]
fn absent_capabilities_are_denied() {
    let manifest = AppManifest::from_json(raw("").as_bytes()).unwrap();
    let caps = manifest.capabilities();
    assert!(caps.allowed_connections().is_empty());
    assert!(caps.allowed_tcp_server_ports().is_empty());
    assert_eq!(caps.mutable_storage(), None);
    assert_eq!(caps.memory_kb(), None);
    assert_eq!(caps.cpu_percent(), None);
    assert!(caps.gpio().is_empty() && caps.uart().is_empty());
    assert!(caps.allowed_application_connections().is_empty());
    assert!(!caps.device_authentication());
    assert_eq!(caps, &Default::default());
    assert_eq!(manifest.image_type(), ImageType::Application);
}

#[test]
fn a_runtime_image_names_its_native_executable() {
    let runtime = raw(r#", "ImageType": "Runtime""#).replace("app.wasm", "sevenfold");
    let manifest = AppManifest::from_json(runtime.as_bytes()).unwrap();
    assert_eq!(manifest.image_type(), ImageType::Runtime);
    assert_eq!(manifest.entry_point(), "sevenfold");
    // An application must still be a .wasm module, and a runtime's name is
    // still a plain file name.
    let app = raw("").replace("app.wasm", "sevenfold");
    assert!(AppManifest::from_json(app.as_bytes()).is_err());
    let path = runtime.replace("\"sevenfold\"", "\"../sevenfold\"");
    assert!(AppManifest::from_json(path.as_bytes()).is_err());
}

#[test]
fn valid_edge_values_are_accepted() {
    let ok = [
        top("ImageType", json!("Runtime")),
        top("ImageType", json!("Application")),
        top("Name", json!("a")),
        top("Name", json!("9-lives_v2.0")),
        top("Name", json!("n".repeat(64))),
        top("EntryPoint", json!(format!("{}.wasm", "e".repeat(123)))),
        top("EntryPoint", json!("_start.v2.wasm")),
        top("Version", json!("2.0.0-rc.1+build.5")),
        top("ComponentId", json!(COMPONENT_ID.to_uppercase())),
        top("SecurityVersion", json!(0)),
        top("SecurityVersion", json!(u32::MAX)),
        top("Capabilities", json!({})),
        cap("MemoryKB", json!(64)),
        cap("MemoryKB", json!(1_048_576)),
        cap("MutableStorage", json!({ "SizeKB": 1 })),
        cap("MutableStorage", json!({ "SizeKB": 1_048_576 })),
        cap("CpuPercent", json!(1)),
        cap("CpuPercent", json!(100)),
        cap("Gpio", json!([0, 1023])),
        cap("Gpio", json!((0..MAX_LIST_LEN).collect::<Vec<_>>())),
        cap("AllowedTcpServerPorts", json!([1, 65535])),
        cap("Uart", json!(["ISU0", "UART_1", "u".repeat(16)])),
        cap(
            "AllowedConnections",
            json!(["*.example.com", "[::1]:8883", "::1", "10.0.0.1", "Host:1"]),
        ),
        cap("DeviceAuthentication", json!(true)),
    ];
    for json in ok {
        assert_eq!(problems(&json), [], "{json}");
    }
}

#[test]
fn missing_required_fields() {
    check_all! {
        "no SchemaVersion": top("SchemaVersion", Value::Null) => "$.SchemaVersion", Missing,
        "no Name": top("Name", Value::Null) => "$.Name", Missing,
        "no ComponentId": top("ComponentId", Value::Null) => "$.ComponentId", Missing,
        "no Version": top("Version", Value::Null) => "$.Version", Missing,
        "no SecurityVersion": top("SecurityVersion", Value::Null) => "$.SecurityVersion", Missing,
        "no EntryPoint": top("EntryPoint", Value::Null) => "$.EntryPoint", Missing,
        "no SizeKB": cap("MutableStorage", json!({})) => "$.Capabilities.MutableStorage.SizeKB", Missing,
    }
}

#[test]
fn unknown_fields_are_refused_with_hints() {
    check_all! {
        "unknown field": top("Foo", json!(1)) => "$.Foo",
            UnknownField { name, hint: None, capability: false } if name == "Foo",
        "unknown capability": cap("Foo", json!(true)) => "$.Capabilities.Foo",
            UnknownField { name, hint: None, capability: true } if name == "Foo",
        "Azure Sphere casing": cap("memoryKB", json!(4096)) => "$.Capabilities.memoryKB",
            UnknownField { name, hint: Some("MemoryKB"), capability: true } if name == "memoryKB",
        "camelCase": cap("allowedConnections", json!([])) => "$.Capabilities.allowedConnections",
            UnknownField { hint: Some("AllowedConnections"), .. },
        "all caps": cap("GPIO", json!([])) => "$.Capabilities.GPIO", UnknownField { hint: Some("Gpio"), .. },
        "typo": cap("AllowedConnection", json!([])) => "$.Capabilities.AllowedConnection",
            UnknownField { hint: Some("AllowedConnections"), .. },
        "top-level casing": top("version", json!("1.0.0")) => "$.version",
            UnknownField { hint: Some("Version"), capability: false, .. },
        "in MutableStorage": cap("MutableStorage", json!({ "SizeKB": 64, "Extra": 1 }))
            => "$.Capabilities.MutableStorage.Extra", UnknownField { hint: None, capability: false, .. },
        "casing in MutableStorage": cap("MutableStorage", json!({ "SizeKB": 64, "SizeKb": 1 }))
            => "$.Capabilities.MutableStorage.SizeKb", UnknownField { hint: Some("SizeKB"), .. },
        "odd name": top("two words", json!(1)) => "$['two words']", UnknownField { .. },
        "capability at the top": top("MemoryKB", json!(4096)) => "$.MemoryKB", UnknownField { capability: false, .. },
    }
}

#[test]
fn duplicate_keys_are_refused() {
    check_all! {
        "top-level key": raw(r#", "Name": "other""#) => "$.Name", DuplicateField,
        "capability": raw(r#", "Capabilities": {"MemoryKB": 64, "MemoryKB": 999999}"#)
            => "$.Capabilities.MemoryKB", DuplicateField,
    }
}

#[test]
fn wrong_types() {
    const FRACTION: &str = "a number with a fraction or exponent";
    check_all! {
        "string for integer": cap("MemoryKB", json!("4096")) => "$.Capabilities.MemoryKB",
            WrongType { expected: "an integer", found: "a string" },
        "fraction": cap("MemoryKB", json!(1.5)) => "$.Capabilities.MemoryKB",
            WrongType { expected: "an integer", found: FRACTION },
        "whole float": cap("CpuPercent", json!(20.0)) => "$.Capabilities.CpuPercent",
            WrongType { expected: "an integer", found: FRACTION },
        "null": cap("CpuPercent", Value::Null) => "$.Capabilities.CpuPercent", WrongType { found: "null", .. },
        "schema version string": top("SchemaVersion", json!("1")) => "$.SchemaVersion",
            WrongType { expected: "an integer", found: "a string" },
        "security version float": top("SecurityVersion", json!(3.5)) => "$.SecurityVersion", WrongType { .. },
        "name as number": top("Name", json!(5)) => "$.Name", WrongType { expected: "a string", found: "a number" },
        "id as array": top("ComponentId", json!([])) => "$.ComponentId", WrongType { found: "an array", .. },
        "capabilities as array": top("Capabilities", json!([])) => "$.Capabilities",
            WrongType { expected: "an object", found: "an array" },
        "list as string": cap("Gpio", json!("8")) => "$.Capabilities.Gpio",
            WrongType { expected: "an array", found: "a string" },
        "list entry": cap("AllowedConnections", json!(["ok.example.com", 443]))
            => "$.Capabilities.AllowedConnections[1]", WrongType { expected: "a string", found: "a number" },
        "storage as number": cap("MutableStorage", json!(64)) => "$.Capabilities.MutableStorage",
            WrongType { expected: "an object", .. },
        "boolean as string": cap("DeviceAuthentication", json!("yes")) => "$.Capabilities.DeviceAuthentication",
            WrongType { expected: "true or false", found: "a string" },
        "image type as bool": top("ImageType", json!(true)) => "$.ImageType", WrongType { found: "a boolean", .. },
    }
}

#[test]
fn numbers_out_of_range() {
    check_all! {
        "memory 16": cap("MemoryKB", json!(16)) => "$.Capabilities.MemoryKB", OutOfRange { min: 64, max: MIB, found: 16 },
        "memory 2 000 000": cap("MemoryKB", json!(2_000_000)) => "$.Capabilities.MemoryKB",
            OutOfRange { min: 64, max: MIB, found: 2_000_000 },
        "memory -1": cap("MemoryKB", json!(-1)) => "$.Capabilities.MemoryKB", OutOfRange { found: -1, .. },
        "memory 2^32 (would wrap a u32)": cap("MemoryKB", json!(4_294_967_296_u64)) => "$.Capabilities.MemoryKB",
            OutOfRange { found: 4_294_967_296, .. },
        "memory beyond u64": raw(r#", "Capabilities": {"MemoryKB": 100000000000000000000}"#)
            => "$.Capabilities.MemoryKB", OutOfRange { found: 100_000_000_000_000_000_000, .. },
        "memory hugely negative": raw(r#", "Capabilities": {"MemoryKB": -1e20}"#)
            => "$.Capabilities.MemoryKB", OutOfRange { found: -100_000_000_000_000_000_000, .. },
        "storage 0": cap("MutableStorage", json!({ "SizeKB": 0 })) => "$.Capabilities.MutableStorage.SizeKB",
            OutOfRange { min: 1, max: MIB, found: 0 },
        "storage 1 GiB + 1 KiB": cap("MutableStorage", json!({ "SizeKB": MIB + 1 }))
            => "$.Capabilities.MutableStorage.SizeKB", OutOfRange { found: 1_048_577, .. },
        "cpu 0": cap("CpuPercent", json!(0)) => "$.Capabilities.CpuPercent", OutOfRange { min: 1, max: 100, found: 0 },
        "cpu 101": cap("CpuPercent", json!(101)) => "$.Capabilities.CpuPercent", OutOfRange { found: 101, .. },
        "cpu 256 (would wrap a u8)": cap("CpuPercent", json!(256)) => "$.Capabilities.CpuPercent",
            OutOfRange { found: 256, .. },
        "gpio 1024": cap("Gpio", json!([8, 1024])) => "$.Capabilities.Gpio[1]", OutOfRange { min: 0, max: 1023, found: 1024 },
        "gpio -1": cap("Gpio", json!([-1])) => "$.Capabilities.Gpio[0]", OutOfRange { found: -1, .. },
        "server port 0": cap("AllowedTcpServerPorts", json!([0])) => "$.Capabilities.AllowedTcpServerPorts[0]",
            OutOfRange { min: 1, max: 65535, found: 0 },
        "server port 65536": cap("AllowedTcpServerPorts", json!([65536])) => "$.Capabilities.AllowedTcpServerPorts[0]",
            OutOfRange { found: 65536, .. },
        "security version -1": top("SecurityVersion", json!(-1)) => "$.SecurityVersion",
            OutOfRange { min: 0, max: 4_294_967_295, found: -1 },
        "security version 2^32": top("SecurityVersion", json!(4_294_967_296_u64)) => "$.SecurityVersion",
            OutOfRange { found: 4_294_967_296, .. },
    }
}

#[test]
fn lists_are_bounded() {
    let pins: Vec<usize> = (0..=MAX_LIST_LEN).collect();
    let hosts: Vec<String> = (0..1000).map(|i| format!("h{i}.example.com")).collect();
    check_all! {
        "257 pins": cap("Gpio", json!(pins)) => "$.Capabilities.Gpio", TooMany { max: 256, found: 257 },
        "1000 hosts": cap("AllowedConnections", json!(hosts)) => "$.Capabilities.AllowedConnections",
            TooMany { max: 256, found: 1000 },
    }
}

#[test]
fn uuids() {
    let nil = Uuid::nil().to_string();
    check_all! {
        "not a uuid": top("ComponentId", json!("not-a-uuid")) => "$.ComponentId", BadUuid { .. },
        "bad hex digit": top("ComponentId", json!("5b9a1c52-3f0b-4a39-9d7e-6f2d1c3e8a1g")) => "$.ComponentId", BadUuid { .. },
        "braced": top("ComponentId", json!(format!("{{{COMPONENT_ID}}}"))) => "$.ComponentId", BadUuid { .. },
        "bare hex": top("ComponentId", json!(COMPONENT_ID.replace('-', ""))) => "$.ComponentId", BadUuid { .. },
        "urn": top("ComponentId", json!(format!("urn:uuid:{COMPONENT_ID}"))) => "$.ComponentId", BadUuid { .. },
        "empty": top("ComponentId", json!("")) => "$.ComponentId", BadUuid { .. },
        "nil": top("ComponentId", json!(nil)) => "$.ComponentId", NilUuid,
        "bad app connection": cap("AllowedApplicationConnections", json!(["not-a-uuid"]))
            => "$.Capabilities.AllowedApplicationConnections[0]", BadUuid { .. },
        "nil app connection": cap("AllowedApplicationConnections", json!([OTHER_APP, nil]))
            => "$.Capabilities.AllowedApplicationConnections[1]", NilUuid,
        "own id": cap("AllowedApplicationConnections", json!([OTHER_APP, COMPONENT_ID.to_uppercase()]))
            => "$.Capabilities.AllowedApplicationConnections[1]", SelfConnection,
        "same app twice": cap("AllowedApplicationConnections", json!([OTHER_APP, OTHER_APP.to_uppercase()]))
            => "$.Capabilities.AllowedApplicationConnections[1]", Duplicate { first: 0 },
    }
}

#[test]
fn versions_schema_and_image_type() {
    check_all! {
        "two-part version": top("Version", json!("1.2")) => "$.Version", BadVersion { .. },
        "v prefix": top("Version", json!("v1.2.0")) => "$.Version", BadVersion { .. },
        "leading zero": top("Version", json!("01.2.0")) => "$.Version", BadVersion { .. },
        "schema 2": top("SchemaVersion", json!(2)) => "$.SchemaVersion", UnsupportedSchemaVersion { found: 2 },
        "schema 0": top("SchemaVersion", json!(0)) => "$.SchemaVersion", UnsupportedSchemaVersion { found: 0 },
        "schema -1": top("SchemaVersion", json!(-1)) => "$.SchemaVersion", UnsupportedSchemaVersion { found: -1 },
        "image type casing": top("ImageType", json!("application")) => "$.ImageType",
            NotOneOf { found, allowed: ["Application", "Runtime"] } if found == "application",
    }
}

#[test]
fn malformed_hosts_and_ports() {
    let label64 = "a".repeat(64);
    let name255 = ["a".repeat(63).as_str(); 4].join(".");
    const SECOND: &str = "$.Capabilities.AllowedConnections[1]";
    check_all! {
        "space": target("exa mple.com") => SECOND, BadHost { .. },
        "leading hyphen": target("-bad.com") => SECOND, BadHost { .. },
        "trailing hyphen": target("bad-.com") => SECOND, BadHost { .. },
        "empty label": target("a..b") => SECOND, BadHost { .. },
        "64-character label": target(&format!("{label64}.com")) => SECOND, BadHost { reason } if reason.contains("64"),
        "255-character name": target(&name255) => SECOND, BadHost { reason } if reason.contains("255"),
        "unclosed bracket": target("[::1") => SECOND, BadHost { .. },
        "two wildcards": target("*.*.com") => SECOND, BadHost { .. },
        "wildcard in a label": target("a*.example.com") => SECOND, BadHost { .. },
        "wildcard over a TLD": target("*.com") => SECOND, BadHost { .. },
        "numeric shorthand": target("127.1") => SECOND, BadHost { .. },
        "empty": target("") => SECOND, BadHost { .. },
        "port 0": target("host:0") => SECOND, BadPort { .. },
        "port 70000": target("host:70000") => SECOND, BadPort { .. },
        "port +80": target("host:+80") => SECOND, BadPort { .. },
        "port name": target("host:mqtt") => SECOND, BadPort { .. },
        "IPv6 port 0": target("[::1]:0") => SECOND, BadPort { .. },
    }
}

#[test]
fn duplicates_in_lists() {
    check_all! {
        "gpio": cap("Gpio", json!([8, 9, 8])) => "$.Capabilities.Gpio[2]", Duplicate { first: 0 },
        "server ports": cap("AllowedTcpServerPorts", json!([80, 443, 443]))
            => "$.Capabilities.AllowedTcpServerPorts[2]", Duplicate { first: 1 },
        "uart": cap("Uart", json!(["ISU0", "ISU0"])) => "$.Capabilities.Uart[1]", Duplicate { first: 0 },
        "host in other case": cap("AllowedConnections", json!(["Example.com:443", "example.COM:443"]))
            => "$.Capabilities.AllowedConnections[1]", Duplicate { first: 0 },
        "IPv6 spelt two ways": cap("AllowedConnections", json!(["::1", "[0:0::1]"]))
            => "$.Capabilities.AllowedConnections[1]", Duplicate { first: 0 },
    }
    // The same host on another port is another target.
    assert_eq!(
        problems(&cap(
            "AllowedConnections",
            json!(["example.com", "example.com:443"])
        )),
        []
    );
}

#[test]
fn names_entry_points_and_uarts() {
    check_all! {
        "empty name": top("Name", json!("")) => "$.Name", BadName { .. },
        "name starting with '-'": top("Name", json!("-blink")) => "$.Name", BadName { .. },
        "name starting with '.'": top("Name", json!(".blink")) => "$.Name", BadName { .. },
        "name with a space": top("Name", json!("my app")) => "$.Name", BadName { .. },
        "name with a slash": top("Name", json!("a/b")) => "$.Name", BadName { .. },
        "non-ASCII name": top("Name", json!("blinkö")) => "$.Name", BadName { .. },
        "65-character name": top("Name", json!("n".repeat(65))) => "$.Name", BadName { reason } if reason.contains("65"),
        "path traversal": top("EntryPoint", json!("../app.wasm")) => "$.EntryPoint", BadEntryPoint { .. },
        "directory": top("EntryPoint", json!("bin/app.wasm")) => "$.EntryPoint", BadEntryPoint { .. },
        "backslash": top("EntryPoint", json!("bin\\app.wasm")) => "$.EntryPoint", BadEntryPoint { .. },
        "'..' inside": top("EntryPoint", json!("app..wasm")) => "$.EntryPoint", BadEntryPoint { .. },
        "wrong extension": top("EntryPoint", json!("app.wat")) => "$.EntryPoint",
            BadEntryPoint { reason } if reason.contains(".wasm"),
        "upper-case extension": top("EntryPoint", json!("app.WASM")) => "$.EntryPoint", BadEntryPoint { .. },
        "only the extension": top("EntryPoint", json!(".wasm")) => "$.EntryPoint", BadEntryPoint { .. },
        "empty entry point": top("EntryPoint", json!("")) => "$.EntryPoint", BadEntryPoint { .. },
        "drive letter": top("EntryPoint", json!("C:app.wasm")) => "$.EntryPoint", BadEntryPoint { .. },
        "NUL": top("EntryPoint", json!("app\u{0}.wasm")) => "$.EntryPoint", BadEntryPoint { .. },
        "129 characters": top("EntryPoint", json!(format!("{}.wasm", "e".repeat(124)))) => "$.EntryPoint",
            BadEntryPoint { reason } if reason.contains("129"),
        "uart with '-'": cap("Uart", json!(["ISU-0"])) => "$.Capabilities.Uart[0]", BadUartName { .. },
        "empty uart": cap("Uart", json!([""])) => "$.Capabilities.Uart[0]", BadUartName { .. },
        "17-character uart": cap("Uart", json!(["u".repeat(17)])) => "$.Capabilities.Uart[0]", BadUartName { .. },
    }
}

#[test]
fn every_problem_is_reported_with_its_path() {
    let json = r#"{
        "SchemaVersion": 2,
        "Name": "my app",
        "ComponentId": "not-a-uuid",
        "SecurityVersion": -3,
        "EntryPoint": "../app.wasm",
        "Capabilities": {
            "AllowedConnections": ["ok.example.com", "-bad.com", 7, "host:0"],
            "MemoryKB": 16,
            "memoryKB": 4096,
            "CpuPercent": 1.5,
            "Gpio": [8, 8],
            "MutableStorage": { "SizeKB": 0, "Encrypted": true }
        },
        "Extra": null
    }"#;
    let found: Vec<(String, &str)> = problems(json)
        .into_iter()
        .map(|(path, kind)| {
            let kind = match kind {
                UnsupportedSchemaVersion { found: 2 } => "unsupported schema",
                BadName { .. } => "bad name",
                BadUuid { .. } => "bad uuid",
                Missing => "missing",
                OutOfRange { .. } => "out of range",
                BadEntryPoint { .. } => "bad entry point",
                BadHost { .. } => "bad host",
                WrongType { .. } => "wrong type",
                BadPort { .. } => "bad port",
                Duplicate { .. } => "duplicate",
                UnknownField {
                    hint: Some("MemoryKB"),
                    ..
                } => "unknown, hinted",
                UnknownField { hint: None, .. } => "unknown",
                other => panic!("unexpected {other:?}"),
            };
            (path, kind)
        })
        .collect();
    let expected = [
        ("$.SchemaVersion", "unsupported schema"),
        ("$.Name", "bad name"),
        ("$.ComponentId", "bad uuid"),
        ("$.Version", "missing"),
        ("$.SecurityVersion", "out of range"),
        ("$.EntryPoint", "bad entry point"),
        ("$.Capabilities.AllowedConnections[1]", "bad host"),
        ("$.Capabilities.AllowedConnections[2]", "wrong type"),
        ("$.Capabilities.AllowedConnections[3]", "bad port"),
        ("$.Capabilities.MutableStorage.SizeKB", "out of range"),
        ("$.Capabilities.MutableStorage.Encrypted", "unknown"),
        ("$.Capabilities.MemoryKB", "out of range"),
        ("$.Capabilities.CpuPercent", "wrong type"),
        ("$.Capabilities.Gpio[1]", "duplicate"),
        ("$.Capabilities.memoryKB", "unknown, hinted"),
        ("$.Extra", "unknown"),
    ];
    let found: Vec<(&str, &str)> = found.iter().map(|(p, k)| (p.as_str(), *k)).collect();
    assert_eq!(found, expected);
}

#[test]
fn problems_read_well() {
    let err = AppManifest::from_json(cap("MemoryKB", json!(16)).as_bytes()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "$.Capabilities.MemoryKB: 16 is out of range (64..=1048576)"
    );

    let json = raw(
        r#", "Capabilities": {"memoryKB": 4096, "Gpio": [8, 8], "Foo": 1}, "ComponentId": "x""#,
    );
    let err = AppManifest::from_json(json.as_bytes()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "$.Capabilities.Gpio[1]: same as entry [0]; list it once\n\
         $.Capabilities.memoryKB: unknown capability 'memoryKB'; did you mean 'MemoryKB'? (names are case-sensitive)\n\
         $.Capabilities.Foo: unknown capability 'Foo'\n\
         $.ComponentId: field appears more than once"
    );

    let shown = |json: String| {
        AppManifest::from_json(json.as_bytes())
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        shown(top("Name", Value::Null)),
        "$.Name: required field is missing"
    );
    assert_eq!(
        shown(cap("CpuPercent", json!(1.5))),
        "$.Capabilities.CpuPercent: expected an integer, found a number with a fraction or exponent"
    );
    assert_eq!(
        shown(top("ImageType", json!("App"))),
        "$.ImageType: 'App' is not one of 'Application', 'Runtime'"
    );
    assert_eq!(
        shown(cap("AllowedConnections", json!(["host:70000"]))),
        "$.Capabilities.AllowedConnections[0]: not a valid port: 70000 is out of range (1..=65535)"
    );
    assert_eq!(
        shown(top("SchemaVersion", json!(2))),
        "$.SchemaVersion: schema version 2 is not supported; this build reads version 1"
    );
    assert_eq!(
        shown(cap("Gpio", json!((0..300).collect::<Vec<_>>()))),
        "$.Capabilities.Gpio: lists 300 entries; at most 256 are allowed"
    );
}

/// A hostile field name cannot forge extra lines in the report.
#[test]
fn control_characters_are_escaped_in_reports() {
    let json = top("Evil\n$.Name: fine", json!(1));
    let err = AppManifest::from_json(json.as_bytes()).unwrap_err();
    assert_eq!(err.problems().len(), 1);
    assert!(!err.to_string().contains('\n'), "{err}");
    let json = top(
        "ComponentId",
        json!("5b9a1c52-3f0b-4a39-9d7e-6f2d1c3e8a1\n"),
    );
    let err = AppManifest::from_json(json.as_bytes()).unwrap_err();
    assert!(!err.to_string().contains('\n'), "{err}");
}

#[test]
fn not_json_or_not_an_object() {
    let cases: [(&[u8], usize, usize, &str); 6] = [
        (b"", 1, 0, "EOF"),
        (b"{\"Name\": }", 1, 10, "expected value"),
        (
            b"[1, 2]",
            1,
            1,
            "top level must be an object, found an array",
        ),
        (b"\n\n  \"manifest\"", 3, 3, "found a string"),
        (b"{} {}", 1, 4, "trailing"),
        (b"\xEF\xBB\xBF{}", 1, 1, "byte-order mark"),
    ];
    for (input, line, column, words) in cases {
        match AppManifest::from_json(input) {
            Err(ManifestError::Json {
                line: l,
                column: c,
                message,
            }) => {
                assert_eq!((l, c), (line, column), "{input:?}: {message}");
                assert!(
                    message.contains(words),
                    "{input:?}: {message:?} does not say {words:?}"
                );
            }
            other => panic!("{input:?}: expected a JSON error, got {other:?}"),
        }
    }
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let err = AppManifest::from_json(raw(&format!(r#", "Deep": {deep}"#)).as_bytes()).unwrap_err();
    assert!(
        matches!(&err, ManifestError::Json { message, .. } if message.contains("recursion")),
        "{err}"
    );
}

#[test]
fn oversize_input_is_refused_before_parsing() {
    let valid = raw("");
    let padded = format!("{valid}{}", " ".repeat(MAX_MANIFEST_LEN - valid.len()));
    assert_eq!(padded.len(), MAX_MANIFEST_LEN);
    assert!(AppManifest::from_json(padded.as_bytes()).is_ok());

    let over = format!("{padded} ");
    let err = AppManifest::from_json(over.as_bytes()).unwrap_err();
    assert_eq!(
        err,
        ManifestError::TooLarge {
            len: MAX_MANIFEST_LEN + 1,
            max: MAX_MANIFEST_LEN
        }
    );
    assert_eq!(
        err.to_string(),
        "app manifest is 65537 bytes; at most 65536 bytes are allowed"
    );
    // Refused before parsing: garbage of that size gets the same answer.
    let garbage = vec![b'{'; 10 * MAX_MANIFEST_LEN];
    assert!(matches!(
        AppManifest::from_json(&garbage),
        Err(ManifestError::TooLarge { .. })
    ));
}

#[test]
fn to_json_writes_the_canonical_form() {
    let manifest = AppManifest::from_json(DESIGN_EXAMPLE.as_bytes()).unwrap();
    let expected = r#"{
  "SchemaVersion": 1,
  "Name": "blink",
  "ComponentId": "5b9a1c52-3f0b-4a39-9d7e-6f2d1c3e8a10",
  "Version": "1.2.0",
  "SecurityVersion": 3,
  "EntryPoint": "app.wasm",
  "ImageType": "Application",
  "Capabilities": {
    "AllowedConnections": ["telemetry.example.com", "127.0.0.1:8883"],
    "AllowedTcpServerPorts": [],
    "MutableStorage": { "SizeKB": 64 },
    "MemoryKB": 4096,
    "CpuPercent": 20,
    "Gpio": [8, 9],
    "Uart": ["ISU0"],
    "AllowedApplicationConnections": ["0f6c2b8e-93a4-4d1b-8c55-2e7a9d4f1b36"],
    "DeviceAuthentication": false
  }
}
"#;
    assert_eq!(manifest.to_json(), expected);
    assert_eq!(
        AppManifest::from_json(expected.as_bytes()).unwrap(),
        manifest
    );
}

#[test]
fn host_names_are_stored_in_canonical_form() {
    let json = cap(
        "AllowedConnections",
        json!([
            "Telemetry.EXAMPLE.com:443",
            "*.Example.Com",
            "[::0001]:8883"
        ]),
    );
    let manifest = AppManifest::from_json(json.as_bytes()).unwrap();
    let targets = manifest.capabilities().allowed_connections();
    assert_eq!(
        targets[0].host(),
        &Host::Name("telemetry.example.com".into())
    );
    assert_eq!(targets[1].host(), &Host::Wildcard("example.com".into()));
    assert_eq!(targets[2].to_string(), "[::1]:8883");
    assert_eq!(targets[2], ConnectionTarget::parse("[::1]:8883").unwrap());
}

#[test]
fn the_builder_checks_by_the_same_rules() {
    let id: Uuid = COMPONENT_ID.parse().unwrap();
    let other: Uuid = OTHER_APP.parse().unwrap();
    let built = AppManifest::builder("blink", id, Version::new(1, 2, 0), 3, "app.wasm")
        .allowed_connections(["telemetry.example.com", "127.0.0.1:8883"])
        .allowed_tcp_server_ports([])
        .mutable_storage_kb(64)
        .memory_kb(4096)
        .cpu_percent(20)
        .gpio([8, 9])
        .uart(["ISU0"])
        .allowed_application_connections([other])
        .device_authentication(false)
        .build()
        .unwrap();
    assert_eq!(
        built,
        AppManifest::from_json(DESIGN_EXAMPLE.as_bytes()).unwrap()
    );

    let minimal = AppManifest::new("blink", id, Version::new(1, 0, 0), 0, "app.wasm").unwrap();
    assert_eq!(minimal.capabilities(), &Default::default());
    let runtime = minimal
        .to_builder()
        .image_type(ImageType::Runtime)
        .build()
        .unwrap();
    assert_eq!(runtime.image_type(), ImageType::Runtime);
    let granted = minimal
        .to_builder()
        .device_authentication(true)
        .build()
        .unwrap();
    assert!(granted.capabilities().device_authentication());
    assert!(granted
        .to_json()
        .contains(r#""DeviceAuthentication": true"#));

    let err = AppManifest::builder(
        "bad name",
        Uuid::nil(),
        Version::new(1, 0, 0),
        0,
        "../x.wasm",
    )
    .memory_kb(16)
    .cpu_percent(0)
    .gpio([8, 2000, 8])
    .allowed_connections(["exa mple.com"])
    .uart(["ISU-0"])
    .allowed_application_connections([Uuid::nil()])
    .build()
    .unwrap_err();
    let paths: Vec<&str> = err.problems().iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "$.Name",
            "$.ComponentId",
            "$.EntryPoint",
            "$.Capabilities.AllowedConnections[0]",
            "$.Capabilities.MemoryKB",
            "$.Capabilities.CpuPercent",
            "$.Capabilities.Gpio[1]",
            "$.Capabilities.Gpio[2]",
            "$.Capabilities.Uart[0]",
            "$.Capabilities.AllowedApplicationConnections[0]",
        ]
    );

    let err = AppManifest::builder("blink", id, Version::new(1, 0, 0), 0, "app.wasm")
        .allowed_application_connections([other, id])
        .build()
        .unwrap_err();
    assert_eq!(err.problems()[0].kind, SelfConnection);
    let err = AppManifest::builder("blink", id, Version::new(1, 0, 0), 0, "app.wasm")
        .gpio(0..300)
        .build()
        .unwrap_err();
    assert_eq!(
        err.problems()[0].kind,
        TooMany {
            max: 256,
            found: 300
        }
    );
}

// ---------------------------------------------------------------- properties

fn host_name() -> impl Strategy<Value = String> {
    let label = "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?";
    (prop::collection::vec(label, 0..3), "[a-z][a-z0-9]{0,6}").prop_map(|(mut labels, tld)| {
        labels.push(tld);
        labels.join(".")
    })
}

/// Valid `AllowedConnections` entries, already in canonical form.
fn connection_target() -> impl Strategy<Value = String> {
    let host = prop_oneof![
        host_name(),
        ("[a-z0-9]{1,8}", "[a-z][a-z0-9]{0,6}")
            .prop_map(|(domain, tld)| format!("*.{domain}.{tld}")),
        any::<u32>().prop_map(|ip| std::net::Ipv4Addr::from(ip).to_string()),
        any::<u128>().prop_map(|ip| std::net::Ipv6Addr::from(ip).to_string()),
    ];
    (host, prop::option::of(1..=u16::MAX)).prop_map(|(host, port)| match port {
        Some(port) if host.contains(':') => format!("[{host}]:{port}"),
        Some(port) => format!("{host}:{port}"),
        None => host,
    })
}

fn version() -> impl Strategy<Value = String> {
    let pre = prop::option::of("[a-z][a-z0-9-]{0,5}(\\.[a-z][a-z0-9]{0,3})?");
    let build = prop::option::of("[a-z0-9]{1,6}");
    (any::<u64>(), any::<u64>(), any::<u64>(), pre, build).prop_map(
        |(major, minor, patch, pre, build)| {
            let mut text = format!("{major}.{minor}.{patch}");
            if let Some(pre) = pre {
                text = format!("{text}-{pre}");
            }
            if let Some(build) = build {
                text = format!("{text}+{build}");
            }
            text
        },
    )
}

/// Valid manifests, made through the builder (which must accept them), each
/// with the JSON that `to_json` must write for it, made independently from
/// the same inputs.
fn valid_manifest() -> impl Strategy<Value = (AppManifest, Value)> {
    let identity = (
        "[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}",
        1..=u128::MAX,
        version(),
        any::<u32>(),
        "[a-zA-Z0-9_][a-zA-Z0-9_-]{0,20}(\\.[a-zA-Z0-9_-]{1,10}){0,2}\\.wasm",
        prop::sample::select(vec![ImageType::Application, ImageType::Runtime]),
    );
    let capabilities = (
        prop::collection::btree_set(connection_target(), 0..6),
        prop::collection::btree_set(1..=u16::MAX, 0..4),
        prop::option::of(1..=1_048_576_u32),
        prop::option::of(64..=1_048_576_u32),
        prop::option::of(1..=100_u8),
        prop::collection::btree_set(0..=1023_u32, 0..6),
        prop::collection::btree_set("[A-Za-z0-9_]{1,16}", 0..4),
        prop::collection::btree_set(1..=u128::MAX, 0..4),
        any::<bool>(),
    );
    (identity, capabilities).prop_map(|((name, id, version, security, entry, image_type), caps)| {
        let (hosts, ports, storage, memory, cpu, gpio, uart, apps, device_auth) = caps;
        let id = Uuid::from_u128(id);
        let apps: Vec<Uuid> = apps
            .into_iter()
            .map(Uuid::from_u128)
            .filter(|app| *app != id)
            .collect();
        let mut builder = AppManifest::builder(
            &name,
            id,
            Version::parse(&version).unwrap(),
            security,
            &entry,
        )
        .image_type(image_type)
        .allowed_connections(&hosts)
        .allowed_tcp_server_ports(ports.iter().copied())
        .gpio(gpio.iter().copied())
        .uart(&uart)
        .allowed_application_connections(apps.iter().copied())
        .device_authentication(device_auth);
        let mut expected_caps = json!({
            "AllowedConnections": hosts,
            "AllowedTcpServerPorts": ports,
            "Gpio": gpio,
            "Uart": uart,
            "AllowedApplicationConnections": apps.iter().map(Uuid::to_string).collect::<Vec<_>>(),
            "DeviceAuthentication": device_auth,
        });
        if let Some(storage) = storage {
            builder = builder.mutable_storage_kb(storage);
            expected_caps["MutableStorage"] = json!({ "SizeKB": storage });
        }
        if let Some(memory) = memory {
            builder = builder.memory_kb(memory);
            expected_caps["MemoryKB"] = json!(memory);
        }
        if let Some(cpu) = cpu {
            builder = builder.cpu_percent(cpu);
            expected_caps["CpuPercent"] = json!(cpu);
        }
        let manifest = builder
            .build()
            .unwrap_or_else(|e| panic!("the builder refused a valid manifest:\n{e}"));
        let expected = json!({
            "SchemaVersion": 1,
            "Name": name,
            "ComponentId": id.to_string(),
            "Version": version,
            "SecurityVersion": security,
            "EntryPoint": entry,
            "ImageType": format!("{image_type:?}"),
            "Capabilities": expected_caps,
        });
        (manifest, expected)
    })
}

fn json_value() -> impl Strategy<Value = Value> {
    let names = prop::sample::select(vec![
        "SchemaVersion",
        "Name",
        "ComponentId",
        "Version",
        "SecurityVersion",
        "EntryPoint",
        "ImageType",
        "Capabilities",
        "AllowedConnections",
        "AllowedTcpServerPorts",
        "MutableStorage",
        "SizeKB",
        "MemoryKB",
        "CpuPercent",
        "Gpio",
        "Uart",
        "AllowedApplicationConnections",
        "DeviceAuthentication",
    ]);
    let key = prop_oneof![names.prop_map(str::to_owned), ".{0,12}"];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        (-2000_i64..2000_i64).prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
        prop::sample::select(vec![
            COMPONENT_ID,
            "1.2.0",
            "app.wasm",
            "host:80",
            "[::1]:1",
            "Runtime"
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..8)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

/// What must hold for any input: no panic (the test would fail), a refused
/// manifest names at least one problem, every report stays one line, and what
/// is accepted survives a round trip.
fn assert_well_behaved(input: &[u8]) {
    match AppManifest::from_json(input) {
        Ok(manifest) => {
            assert_eq!(
                AppManifest::from_json(manifest.to_json().as_bytes()).unwrap(),
                manifest
            );
        }
        Err(ManifestError::Invalid(problems)) => {
            assert!(!problems.is_empty());
            for problem in problems {
                assert!(!problem.to_string().contains('\n'), "{problem:?}");
            }
        }
        Err(err) => assert!(!err.to_string().contains('\n'), "{err:?}"),
    }
}

const POINTERS: &[&str] = &[
    "/SchemaVersion",
    "/Name",
    "/ComponentId",
    "/Version",
    "/SecurityVersion",
    "/EntryPoint",
    "/ImageType",
    "/Capabilities",
    "/Capabilities/AllowedConnections",
    "/Capabilities/AllowedConnections/0",
    "/Capabilities/AllowedConnections/1",
    "/Capabilities/AllowedTcpServerPorts",
    "/Capabilities/MutableStorage",
    "/Capabilities/MutableStorage/SizeKB",
    "/Capabilities/MemoryKB",
    "/Capabilities/CpuPercent",
    "/Capabilities/Gpio",
    "/Capabilities/Gpio/1",
    "/Capabilities/Uart",
    "/Capabilities/Uart/0",
    "/Capabilities/AllowedApplicationConnections",
    "/Capabilities/AllowedApplicationConnections/0",
    "/Capabilities/DeviceAuthentication",
];

proptest! {
    #[test]
    fn to_json_round_trips((manifest, expected) in valid_manifest()) {
        let text = manifest.to_json();
        prop_assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), expected);
        let again = AppManifest::from_json(text.as_bytes());
        prop_assert_eq!(again.as_ref(), Ok(&manifest), "{}", text);
        prop_assert_eq!(again.unwrap().to_json(), text);
        prop_assert_eq!(manifest.to_builder().build(), Ok(manifest.clone()));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        assert_well_behaved(&bytes);
    }

    #[test]
    fn arbitrary_json_never_panics(value in json_value()) {
        assert_well_behaved(value.to_string().as_bytes());
        assert_well_behaved(json!({ "SchemaVersion": 1, "Capabilities": value }).to_string().as_bytes());
    }

    /// The DESIGN.md example with a few values replaced by arbitrary JSON, so
    /// that the deeper checks meet hostile values too.
    #[test]
    fn mutated_manifests_never_panic(
        edits in prop::collection::vec((prop::sample::select(POINTERS), json_value()), 1..4),
        host in ".{0,30}",
    ) {
        let mut manifest = example();
        manifest["Capabilities"]["AllowedConnections"][1] = Value::from(host);
        for (pointer, value) in edits {
            if let Some(slot) = manifest.pointer_mut(pointer) {
                *slot = value;
            }
        }
        assert_well_behaved(manifest.to_string().as_bytes());
    }
}
