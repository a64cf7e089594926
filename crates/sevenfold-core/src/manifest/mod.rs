//! The application manifest (`app_manifest.json`): what an image is, and the
//! only doors its sandbox will open.
//!
//! Every image package carries one. Its author is a tenant, so the manifest is
//! untrusted input: it is read once, at the edge, into an [`AppManifest`] whose
//! every value has been checked, and the rest of the platform works on that.
//! The JSON names follow Azure Sphere's (`ComponentId`, `AllowedConnections`,
//! …); see `DESIGN.md`, "Image package".
//!
//! Decisions, and why:
//! - **Deny by default.** A capability that is absent is not granted:
//!   [`Capabilities::default`] grants nothing.
//! - **Every problem at once, with its JSON path.** A refused manifest yields
//!   [`ManifestError::Invalid`] listing all problems
//!   (`$.Capabilities.MemoryKB: 16 is out of range (64..=1048576)`), so an
//!   author fixes them in one round. Misspelt names get a hint
//!   (`memoryKB` → `did you mean 'MemoryKB'?`).
//! - **Strict.** Unknown fields, duplicate keys, `null`, `1.5` or `"64"` where
//!   an integer goes are all refused: a manifest means one thing to every
//!   reader. Input is bounded ([`MAX_MANIFEST_LEN`], [`MAX_LIST_LEN`], and
//!   serde_json's nesting limit of 128).
//! - **One validation path.** [`AppManifestBuilder::build`] renders its values
//!   into the same JSON tree that [`AppManifest::from_json`] reads, and checks
//!   that; a manifest built in code is exactly one the parser would accept,
//!   with problems named by the same paths.
//! - **Valid by construction.** Fields are private and read through getters; an
//!   `AppManifest` only comes out of `from_json` or the builder.
//! - **No serde derive on the domain types.** [`AppManifest::to_json`] writes
//!   the wire form explicitly, in a fixed field order, and
//!   `from_json(to_json(m)) == m` holds (a property test checks it).
//!
//! ```
//! use sevenfold_core::manifest::{AppManifest, ProblemKind};
//!
//! let json = br#"{
//!   "SchemaVersion": 1, "Name": "blink", "Version": "1.2.0", "SecurityVersion": 3,
//!   "ComponentId": "5b9a1c52-3f0b-4a39-9d7e-6f2d1c3e8a10", "EntryPoint": "app.wasm",
//!   "Capabilities": { "MemoryKB": 4096, "Gpio": [8, 9] }
//! }"#;
//! let manifest = AppManifest::from_json(json)?;
//! assert_eq!(manifest.capabilities().memory_kb(), Some(4096));
//! assert!(manifest.capabilities().allowed_connections().is_empty()); // not granted
//!
//! let err = AppManifest::from_json(br#"{"SchemaVersion": 1, "Capabilities": {"memoryKB": 16}}"#)
//!     .unwrap_err();
//! assert!(matches!(err.problems()[0].kind, ProblemKind::Missing));
//! assert!(err.to_string().contains("did you mean 'MemoryKB'?"));
//! # Ok::<(), sevenfold_core::manifest::ManifestError>(())
//! ```

mod connection;
mod error;
mod json;
mod read;

use std::fmt;

use semver::Version;
use uuid::Uuid;

pub use connection::{ConnectionTarget, Host};
pub use error::{ManifestError, ManifestProblem, ProblemKind};

use json::Json;

/// Largest manifest accepted, in bytes (64 KiB); larger input is refused
/// before it is parsed.
pub const MAX_MANIFEST_LEN: usize = 64 * 1024;

/// Most entries in any list of a manifest (each capability list).
pub const MAX_LIST_LEN: usize = 256;

/// The `SchemaVersion` this build reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

/// A validated application (or runtime) manifest.
///
/// Made only by [`AppManifest::from_json`] or [`AppManifestBuilder::build`],
/// so every value obeys the rules documented on its getter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppManifest {
    name: String,
    component_id: Uuid,
    version: Version,
    security_version: u32,
    entry_point: String,
    image_type: ImageType,
    capabilities: Capabilities,
}

impl AppManifest {
    /// Parses and validates an `app_manifest.json`.
    ///
    /// # Errors
    /// [`ManifestError::TooLarge`] beyond [`MAX_MANIFEST_LEN`] bytes,
    /// [`ManifestError::Json`] if the input is not a JSON object, and
    /// [`ManifestError::Invalid`] with every problem found otherwise.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ManifestError> {
        if bytes.len() > MAX_MANIFEST_LEN {
            return Err(ManifestError::TooLarge {
                len: bytes.len(),
                max: MAX_MANIFEST_LEN,
            });
        }
        let members = json::parse_object(bytes)?;
        read::manifest(&members).map_err(ManifestError::Invalid)
    }

    /// The manifest as pretty JSON with a final newline: fields in the order
    /// of `DESIGN.md`, every capability list and `DeviceAuthentication`
    /// written out (an empty list denies), absent limits left out.
    /// [`from_json`](Self::from_json) reads it back to an equal manifest.
    pub fn to_json(&self) -> String {
        json::to_pretty(&self.to_builder().to_tree())
    }

    /// Validates a manifest with no capabilities (everything denied) and image
    /// type [`ImageType::Application`]; see [`builder`](Self::builder) for more.
    ///
    /// # Errors
    /// [`ManifestError::Invalid`], as for [`from_json`](Self::from_json).
    pub fn new(
        name: impl Into<String>,
        component_id: Uuid,
        version: Version,
        security_version: u32,
        entry_point: impl Into<String>,
    ) -> Result<Self, ManifestError> {
        Self::builder(name, component_id, version, security_version, entry_point).build()
    }

    /// Starts a manifest in code from its required fields; capabilities are
    /// added with the builder's methods, and everything is checked by
    /// [`AppManifestBuilder::build`].
    pub fn builder(
        name: impl Into<String>,
        component_id: Uuid,
        version: Version,
        security_version: u32,
        entry_point: impl Into<String>,
    ) -> AppManifestBuilder {
        AppManifestBuilder {
            name: name.into(),
            component_id,
            version,
            security_version,
            entry_point: entry_point.into(),
            image_type: ImageType::default(),
            allowed_connections: Vec::new(),
            allowed_tcp_server_ports: Vec::new(),
            mutable_storage_kb: None,
            memory_kb: None,
            cpu_percent: None,
            gpio: Vec::new(),
            uart: Vec::new(),
            allowed_application_connections: Vec::new(),
            device_authentication: false,
        }
    }

    /// A builder holding this manifest's values, to derive a changed one
    /// (say, the next version).
    pub fn to_builder(&self) -> AppManifestBuilder {
        let caps = &self.capabilities;
        AppManifestBuilder {
            name: self.name.clone(),
            component_id: self.component_id,
            version: self.version.clone(),
            security_version: self.security_version,
            entry_point: self.entry_point.clone(),
            image_type: self.image_type,
            allowed_connections: caps
                .allowed_connections
                .iter()
                .map(ToString::to_string)
                .collect(),
            allowed_tcp_server_ports: caps.allowed_tcp_server_ports.clone(),
            mutable_storage_kb: caps.mutable_storage.map(|s| s.size_kb),
            memory_kb: caps.memory_kb,
            cpu_percent: caps.cpu_percent,
            gpio: caps.gpio.clone(),
            uart: caps.uart.clone(),
            allowed_application_connections: caps.allowed_application_connections.clone(),
            device_authentication: caps.device_authentication,
        }
    }

    /// `SchemaVersion`: always [`SCHEMA_VERSION`] (others are refused).
    pub fn schema_version(&self) -> u32 {
        SCHEMA_VERSION
    }

    /// `Name`: 1 to 64 ASCII letters, digits, `-`, `_` and `.`, starting with
    /// a letter or digit.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ComponentId`: identifies the component across versions; never nil.
    pub fn component_id(&self) -> Uuid {
        self.component_id
    }

    /// `Version`: a semantic version.
    pub fn version(&self) -> &Version {
        &self.version
    }

    /// `SecurityVersion`: the anti-rollback number; a device refuses an image
    /// whose security version is below its counter for the component.
    pub fn security_version(&self) -> u32 {
        self.security_version
    }

    /// `EntryPoint`: the payload's file name; 1 to 128 ASCII letters, digits,
    /// `-`, `_` and `.`, starting with a letter, digit or `_`, ending in
    /// `.wasm` for applications (a runtime names its executable), never
    /// containing `..` (so never a path).
    pub fn entry_point(&self) -> &str {
        &self.entry_point
    }

    /// `ImageType`: application (the default) or the runtime itself.
    pub fn image_type(&self) -> ImageType {
        self.image_type
    }

    /// `Capabilities`: what the sandbox grants; everything else is denied.
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }
}

/// What kind of component an image package holds (`ImageType`).
///
/// Exhaustive on purpose: a new kind changes how devices install and start
/// images, so code that matches on this should have to decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ImageType {
    /// A WebAssembly application, run in its own compartment (`"Application"`).
    #[default]
    Application,
    /// The device runtime itself (`"Runtime"`), packaged the same way.
    Runtime,
}

impl ImageType {
    const NAMES: &'static [&'static str] = &["Application", "Runtime"];

    /// The JSON name: `"Application"` or `"Runtime"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Application => "Application",
            Self::Runtime => "Runtime",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        match name {
            "Application" => Some(Self::Application),
            "Runtime" => Some(Self::Runtime),
            _ => None,
        }
    }
}

impl fmt::Display for ImageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The doors of an application's sandbox (`Capabilities`). Whatever is not
/// listed is denied, and each denial is a journaled failure on the device.
///
/// [`Capabilities::default`] grants nothing. Lists hold no duplicates and at
/// most [`MAX_LIST_LEN`] entries, in manifest order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Capabilities {
    allowed_connections: Vec<ConnectionTarget>,
    allowed_tcp_server_ports: Vec<u16>,
    mutable_storage: Option<MutableStorage>,
    memory_kb: Option<u32>,
    cpu_percent: Option<u8>,
    gpio: Vec<u32>,
    uart: Vec<String>,
    allowed_application_connections: Vec<Uuid>,
    device_authentication: bool,
}

impl Capabilities {
    /// `AllowedConnections`: hosts (and ports) the app may connect out to.
    pub fn allowed_connections(&self) -> &[ConnectionTarget] {
        &self.allowed_connections
    }

    /// `AllowedTcpServerPorts`: TCP ports (1 to 65535) the app may listen on.
    pub fn allowed_tcp_server_ports(&self) -> &[u16] {
        &self.allowed_tcp_server_ports
    }

    /// `MutableStorage`: persistent storage quota, if any.
    pub fn mutable_storage(&self) -> Option<MutableStorage> {
        self.mutable_storage
    }

    /// `MemoryKB`: memory limit in KiB (64 to 1 048 576); `None` leaves the
    /// device's default limit.
    pub fn memory_kb(&self) -> Option<u32> {
        self.memory_kb
    }

    /// `CpuPercent`: CPU share (1 to 100); `None` leaves the device's default.
    pub fn cpu_percent(&self) -> Option<u8> {
        self.cpu_percent
    }

    /// `Gpio`: GPIO pin numbers (0 to 1023) the app may use.
    pub fn gpio(&self) -> &[u32] {
        &self.gpio
    }

    /// `Uart`: UART names (1 to 16 ASCII letters, digits and `_`, like `ISU0`).
    pub fn uart(&self) -> &[String] {
        &self.uart
    }

    /// `AllowedApplicationConnections`: component IDs of other apps this one
    /// may talk to (never nil, never its own).
    pub fn allowed_application_connections(&self) -> &[Uuid] {
        &self.allowed_application_connections
    }

    /// `DeviceAuthentication`: whether the app may use the device certificate
    /// to authenticate to third-party services.
    pub fn device_authentication(&self) -> bool {
        self.device_authentication
    }
}

/// `MutableStorage`: a persistent storage quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MutableStorage {
    size_kb: u32,
}

impl MutableStorage {
    /// `SizeKB`: the quota in KiB (1 to 1 048 576).
    pub fn size_kb(self) -> u32 {
        self.size_kb
    }
}

/// Builds an [`AppManifest`] in code. Setters only record values (a later
/// call replaces an earlier one); [`build`](Self::build) checks them all, by
/// the same rules and with the same JSON paths as
/// [`AppManifest::from_json`].
///
/// ```
/// use sevenfold_core::manifest::AppManifest;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let id = "5b9a1c52-3f0b-4a39-9d7e-6f2d1c3e8a10".parse()?;
/// let manifest = AppManifest::builder("blink", id, "1.2.0".parse()?, 3, "app.wasm")
///     .allowed_connections(["telemetry.example.com", "127.0.0.1:8883"])
///     .memory_kb(4096)
///     .gpio([8, 9])
///     .build()?;
/// assert_eq!(manifest.capabilities().gpio(), &[8, 9]);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct AppManifestBuilder {
    name: String,
    component_id: Uuid,
    version: Version,
    security_version: u32,
    entry_point: String,
    image_type: ImageType,
    allowed_connections: Vec<String>,
    allowed_tcp_server_ports: Vec<u16>,
    mutable_storage_kb: Option<u32>,
    memory_kb: Option<u32>,
    cpu_percent: Option<u8>,
    gpio: Vec<u32>,
    uart: Vec<String>,
    allowed_application_connections: Vec<Uuid>,
    device_authentication: bool,
}

impl AppManifestBuilder {
    /// Checks every value and returns the manifest.
    ///
    /// # Errors
    /// [`ManifestError::Invalid`] with every problem, each named by its JSON
    /// path (`$.Capabilities.Gpio[1]`).
    pub fn build(self) -> Result<AppManifest, ManifestError> {
        read::manifest(&self.to_tree()).map_err(ManifestError::Invalid)
    }

    /// Sets `ImageType`.
    pub fn image_type(mut self, image_type: ImageType) -> Self {
        self.image_type = image_type;
        self
    }

    /// Sets `AllowedConnections` (`"host"`, `"host:port"`, `"*.example.com"`,
    /// `"[::1]:8883"`, …; see [`ConnectionTarget::parse`]).
    pub fn allowed_connections<I, S>(mut self, targets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allowed_connections = targets.into_iter().map(Into::into).collect();
        self
    }

    /// Sets `AllowedTcpServerPorts`.
    pub fn allowed_tcp_server_ports(mut self, ports: impl IntoIterator<Item = u16>) -> Self {
        self.allowed_tcp_server_ports = ports.into_iter().collect();
        self
    }

    /// Sets `MutableStorage.SizeKB`.
    pub fn mutable_storage_kb(mut self, size_kb: u32) -> Self {
        self.mutable_storage_kb = Some(size_kb);
        self
    }

    /// Sets `MemoryKB`.
    pub fn memory_kb(mut self, memory_kb: u32) -> Self {
        self.memory_kb = Some(memory_kb);
        self
    }

    /// Sets `CpuPercent`.
    pub fn cpu_percent(mut self, cpu_percent: u8) -> Self {
        self.cpu_percent = Some(cpu_percent);
        self
    }

    /// Sets `Gpio`.
    pub fn gpio(mut self, pins: impl IntoIterator<Item = u32>) -> Self {
        self.gpio = pins.into_iter().collect();
        self
    }

    /// Sets `Uart`.
    pub fn uart<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.uart = names.into_iter().map(Into::into).collect();
        self
    }

    /// Sets `AllowedApplicationConnections`.
    pub fn allowed_application_connections(mut self, ids: impl IntoIterator<Item = Uuid>) -> Self {
        self.allowed_application_connections = ids.into_iter().collect();
        self
    }

    /// Sets `DeviceAuthentication`.
    pub fn device_authentication(mut self, allowed: bool) -> Self {
        self.device_authentication = allowed;
        self
    }

    /// The manifest as a JSON tree, in the canonical field order.
    fn to_tree(&self) -> Vec<(String, Json)> {
        fn member(name: &str, value: Json) -> (String, Json) {
            (name.to_owned(), value)
        }
        fn list<T>(items: &[T], item: impl Fn(&T) -> Json) -> Json {
            Json::Array(items.iter().map(item).collect())
        }
        let text = |s: &dyn fmt::Display| Json::Str(s.to_string());

        let mut caps = vec![
            member(
                "AllowedConnections",
                list(&self.allowed_connections, |s| Json::Str(s.clone())),
            ),
            member(
                "AllowedTcpServerPorts",
                list(&self.allowed_tcp_server_ports, |p| Json::Int((*p).into())),
            ),
        ];
        if let Some(size_kb) = self.mutable_storage_kb {
            let storage = vec![member("SizeKB", Json::Int(size_kb.into()))];
            caps.push(member("MutableStorage", Json::Object(storage)));
        }
        if let Some(memory_kb) = self.memory_kb {
            caps.push(member("MemoryKB", Json::Int(memory_kb.into())));
        }
        if let Some(cpu_percent) = self.cpu_percent {
            caps.push(member("CpuPercent", Json::Int(cpu_percent.into())));
        }
        caps.extend([
            member("Gpio", list(&self.gpio, |pin| Json::Int((*pin).into()))),
            member("Uart", list(&self.uart, |name| Json::Str(name.clone()))),
            member(
                "AllowedApplicationConnections",
                list(&self.allowed_application_connections, |id| {
                    text(&id.hyphenated())
                }),
            ),
            member(
                "DeviceAuthentication",
                Json::Bool(self.device_authentication),
            ),
        ]);
        vec![
            member("SchemaVersion", Json::Int(SCHEMA_VERSION.into())),
            member("Name", Json::Str(self.name.clone())),
            member("ComponentId", text(&self.component_id.hyphenated())),
            member("Version", text(&self.version)),
            member("SecurityVersion", Json::Int(self.security_version.into())),
            member("EntryPoint", Json::Str(self.entry_point.clone())),
            member("ImageType", Json::Str(self.image_type.as_str().to_owned())),
            member("Capabilities", Json::Object(caps)),
        ]
    }
}
