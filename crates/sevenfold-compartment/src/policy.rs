//! The manifest's capabilities as the host checks them: one [`AppPolicy`]
//! per app, built once from the validated [`AppManifest`].

use std::net::IpAddr;

use sevenfold_core::manifest::{AppManifest, ConnectionTarget, Host};
use uuid::Uuid;

use crate::events::AppId;

/// Memory for an app whose manifest has no `MemoryKB` (the host's default,
/// not unlimited).
pub const DEFAULT_MEMORY_KB: u32 = 16 * 1024;

/// Most table elements an app may have (function pointers; Rust apps use a
/// few hundred).
pub const MAX_TABLE_ELEMENTS: usize = 100_000;

/// What one app may do. Everything not listed is denied.
#[derive(Debug, Clone)]
pub struct AppPolicy {
    id: AppId,
    memory_bytes: usize,
    cpu_percent: u8,
    storage_bytes: Option<u64>,
    connections: Vec<ConnectionTarget>,
    server_ports: Vec<u16>,
    gpio: Vec<u32>,
    uart: Vec<String>,
    peers: Vec<Uuid>,
    device_authentication: bool,
}

impl AppPolicy {
    /// The policy of `manifest`'s capabilities.
    pub fn from_manifest(manifest: &AppManifest) -> AppPolicy {
        let caps = manifest.capabilities();
        let memory_kb = caps.memory_kb().unwrap_or(DEFAULT_MEMORY_KB);
        AppPolicy {
            id: AppId {
                component_id: manifest.component_id(),
                name: manifest.name().to_owned(),
            },
            memory_bytes: usize::try_from(u64::from(memory_kb) * 1024).unwrap_or(usize::MAX),
            cpu_percent: caps.cpu_percent().unwrap_or(100).clamp(1, 100),
            storage_bytes: caps
                .mutable_storage()
                .map(|s| u64::from(s.size_kb()) * 1024),
            connections: caps.allowed_connections().to_vec(),
            server_ports: caps.allowed_tcp_server_ports().to_vec(),
            gpio: caps.gpio().to_vec(),
            uart: caps.uart().to_vec(),
            peers: caps.allowed_application_connections().to_vec(),
            device_authentication: caps.device_authentication(),
        }
    }

    /// The app.
    pub fn id(&self) -> &AppId {
        &self.id
    }

    /// Most bytes of linear memory.
    pub fn memory_bytes(&self) -> usize {
        self.memory_bytes
    }

    /// Share of one core the app may use (1..=100).
    pub fn cpu_percent(&self) -> u8 {
        self.cpu_percent
    }

    /// The storage quota in bytes, or `None` when the app has no storage
    /// (and so no file system at all).
    pub fn storage_bytes(&self) -> Option<u64> {
        self.storage_bytes
    }

    /// Whether the app may connect to `host` (a name, or an IP literal) on
    /// `port`. Names match names and wildcards (case-insensitive); IP
    /// literals match only IP entries, as written: a name in the manifest
    /// never admits an address the app typed, or the reverse.
    pub fn may_connect(&self, host: &str, port: u16) -> bool {
        let port_ok = |t: &ConnectionTarget| t.port().is_none_or(|p| p == port);
        let literal = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if let Ok(ip) = literal.parse::<IpAddr>() {
            return self.connections.iter().any(|t| {
                port_ok(t)
                    && match (t.host(), ip) {
                        (Host::Ipv4(a), IpAddr::V4(b)) => *a == b,
                        (Host::Ipv6(a), IpAddr::V6(b)) => *a == b,
                        _ => false,
                    }
            });
        }
        let name = host.to_ascii_lowercase();
        self.connections.iter().any(|t| {
            port_ok(t)
                && match t.host() {
                    Host::Name(n) => *n == name,
                    Host::Wildcard(suffix) => name
                        .strip_suffix(suffix.as_str())
                        .and_then(|front| front.strip_suffix('.'))
                        .is_some_and(|front| !front.is_empty()),
                    _ => false,
                }
        })
    }

    /// Whether the app may listen on `port`.
    pub fn may_listen(&self, port: u16) -> bool {
        self.server_ports.contains(&port)
    }

    /// Whether the app may use GPIO `pin`.
    pub fn may_use_gpio(&self, pin: u32) -> bool {
        self.gpio.contains(&pin)
    }

    /// Whether the app may open the UART named `name`.
    pub fn may_use_uart(&self, name: &str) -> bool {
        self.uart.iter().any(|u| u == name)
    }

    /// The apps this one lists in `AllowedApplicationConnections`.
    pub fn peers(&self) -> &[Uuid] {
        &self.peers
    }

    /// Whether the app may use the device certificate.
    pub fn device_authentication(&self) -> bool {
        self.device_authentication
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(connections: &[&str]) -> AppPolicy {
        let manifest = AppManifest::builder(
            "t",
            Uuid::from_u128(7),
            semver::Version::new(1, 0, 0),
            1,
            "t.wasm",
        )
        .allowed_connections(connections.iter().copied())
        .build()
        .unwrap();
        AppPolicy::from_manifest(&manifest)
    }

    #[test]
    fn connections_match_as_written() {
        let p = policy(&[
            "Telemetry.example.com:8883",
            "*.example.org",
            "127.0.0.1:7878",
            "[::1]:9",
        ]);
        let cases = [
            ("telemetry.example.com", 8883, true),
            ("TELEMETRY.example.com", 8883, true),
            ("telemetry.example.com", 80, false),
            ("a.example.org", 1, true),
            ("a.b.example.org", 443, true),
            ("example.org", 443, false),
            ("badexample.org", 443, false),
            ("127.0.0.1", 7878, true),
            ("127.0.0.1", 7879, false),
            ("localhost", 7878, false),
            ("::1", 9, true),
            ("[::1]", 9, true),
            ("::2", 9, false),
            ("example.com", 8883, false),
        ];
        for (host, port, allowed) in cases {
            assert_eq!(p.may_connect(host, port), allowed, "{host}:{port}");
        }
    }

    #[test]
    fn nothing_is_granted_by_default() {
        let p = policy(&[]);
        assert!(!p.may_connect("localhost", 80));
        assert!(!p.may_listen(80));
        assert!(!p.may_use_gpio(0));
        assert!(!p.may_use_uart("ISU0"));
        assert!(p.peers().is_empty());
        assert!(!p.device_authentication());
        assert_eq!(p.storage_bytes(), None);
        assert_eq!(p.memory_bytes(), DEFAULT_MEMORY_KB as usize * 1024);
        assert_eq!(p.cpu_percent(), 100);
    }
}
