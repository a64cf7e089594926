#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! The doors between apps and to the device identity, with a real probing
//! app: channels only when both manifests list each other; the device
//! certificate only with `DeviceAuthentication`.

mod common;

use std::time::Duration;

use common::*;
use sevenfold_compartment::{Capability, CompartmentEvent};
use uuid::Uuid;

const A: u128 = 31;
const B: u128 = 32;
const C: u128 = 33;

#[test]
fn channels_open_only_when_both_list_each_other() {
    let rig = rig(test_config(), None);
    let (a, b) = (Uuid::from_u128(A), Uuid::from_u128(B));
    let s = &rig.supervisor;
    // A and B list each other; C lists A, but A does not list C.
    s.start(
        image(
            "hostile-peer",
            manifest("peer-b", B).allowed_application_connections([a]),
        )
        .with_env("NAME", "b")
        .with_env("PEER", a.to_string()),
    )
    .unwrap();
    s.start(
        image(
            "hostile-peer",
            manifest("peer-a", A).allowed_application_connections([b]),
        )
        .with_env("NAME", "a")
        .with_env("PEER", b.to_string()),
    )
    .unwrap();
    s.start(
        image(
            "hostile-peer",
            manifest("peer-c", C).allowed_application_connections([a]),
        )
        .with_env("NAME", "c")
        .with_env("PEER", a.to_string()),
    )
    .unwrap();
    for n in [A, B, C] {
        rig.events
            .wait_for(n, "exit", Duration::from_secs(30), |e| {
                matches!(e, CompartmentEvent::Exited { .. })
            });
    }
    assert!(
        output(&rig, A).contains("a: received 'hello from b'"),
        "{}",
        output(&rig, A)
    );
    assert!(
        output(&rig, B).contains("b: received 'hello from a'"),
        "{}",
        output(&rig, B)
    );
    assert!(
        output(&rig, C).contains("c: send refused: denied"),
        "{}",
        output(&rig, C)
    );
    assert!(!output(&rig, A).contains("hello from c"));
    rig.events
        .wait_for(C, "channel denial", Duration::from_secs(1), |e| {
            matches!(
                e,
                CompartmentEvent::Denied {
                    capability: Capability::AllowedApplicationConnections,
                    ..
                }
            )
        });
}

#[test]
fn the_device_certificate_needs_device_authentication() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("device-cert.pem");
    std::fs::write(
        &cert,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let rig = rig(test_config(), Some(cert));
    rig.supervisor
        .start(
            image(
                "hostile-peer",
                manifest("with-auth", 41).device_authentication(true),
            )
            .with_env("NAME", "with"),
        )
        .unwrap();
    rig.supervisor
        .start(image("hostile-peer", manifest("without-auth", 42)).with_env("NAME", "without"))
        .unwrap();
    for n in [41, 42] {
        rig.events
            .wait_for(n, "exit", Duration::from_secs(30), |e| {
                matches!(e, CompartmentEvent::Exited { .. })
            });
    }
    assert!(
        output(&rig, 41).contains("with: certificate of 59 bytes"),
        "{}",
        output(&rig, 41)
    );
    assert!(
        output(&rig, 42).contains("without: certificate refused: denied"),
        "{}",
        output(&rig, 42)
    );
    // The host signs for the app; the signature verifies under the key the
    // certificate would certify. Without the capability: denied.
    let with = output(&rig, 41);
    let signature_hex = with
        .lines()
        .find_map(|l| l.strip_prefix("with: signature "))
        .unwrap_or_else(|| panic!("no signature in {with}"));
    common::test_signing_key()
        .public_key()
        .verify(
            b"sevenfold device authentication",
            &hex::decode(signature_hex.trim()).unwrap(),
        )
        .unwrap();
    assert!(
        output(&rig, 42).contains("without: signing refused: denied"),
        "{}",
        output(&rig, 42)
    );
    rig.events
        .wait_for(42, "denial", Duration::from_secs(1), |e| {
            matches!(
                e,
                CompartmentEvent::Denied {
                    capability: Capability::DeviceAuthentication,
                    ..
                }
            )
        });
}

#[test]
fn an_app_looping_on_a_closed_door_cannot_flood_the_reports() {
    let rig = rig(test_config(), None);
    rig.supervisor
        .start(image("hostile-pin", manifest("hostile-pin", 51)).with_env("PIN_ATTEMPTS", "1000"))
        .unwrap();
    rig.events
        .wait_for(51, "exit", Duration::from_secs(30), |e| {
            matches!(e, CompartmentEvent::Exited { .. })
        });
    let denials = rig
        .events
        .of(51)
        .iter()
        .filter(|e| matches!(e, CompartmentEvent::Denied { .. }))
        .count();
    assert_eq!(denials, sevenfold_compartment::MAX_REPORTS_PER_RUN as usize);
    // 1000 pin attempts and one UART attempt; the rest were counted.
    assert_eq!(rig.supervisor.status()[0].suppressed_reports, 1001 - 64);
    // Every attempt failed in the app (the log keeps the last LOG_LINES lines).
    assert_eq!(rig.supervisor.status()[0].output_lines, 1001);
    assert!(!output(&rig, 51).contains("DROVE"));
}

/// Connects to the app's listener (retrying until it listens) and echoes a line.
fn echo_through(port: u16) -> String {
    use std::io::{BufRead, BufReader, Write};
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut stream = loop {
        match std::net::TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(e) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "app never listened: {e}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    stream.write_all(b"ping\n").unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    line
}

#[test]
fn listening_only_on_granted_ports_and_uarts_only_when_granted() {
    let rig = rig(test_config(), None);
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    rig.supervisor
        .start(
            image(
                "hostile-echo",
                manifest("echo", 61)
                    .allowed_tcp_server_ports([port])
                    .uart(["ISU0"]),
            )
            .with_env("ECHO_PORT", port.to_string())
            .with_env("UART", "ISU0"),
        )
        .unwrap();
    assert_eq!(echo_through(port), "ping\n");
    rig.events
        .wait_for(61, "exit", Duration::from_secs(30), |e| {
            matches!(e, CompartmentEvent::Exited { .. })
        });
    assert!(
        output(&rig, 61).contains("echo: ISU0 answered 'hello uart'"),
        "{}",
        output(&rig, 61)
    );
    assert!(!rig.events.of(61).iter().any(CompartmentEvent::is_failure));

    // Without the port (and the UART) in the manifest: refused and reported.
    rig.supervisor
        .start(
            image("hostile-echo", manifest("echo", 62))
                .with_env("ECHO_PORT", port.to_string())
                .with_env("UART", "ISU0"),
        )
        .unwrap();
    rig.events
        .wait_for(62, "exit", Duration::from_secs(30), |e| {
            matches!(e, CompartmentEvent::Exited { .. })
        });
    let out = output(&rig, 62);
    assert!(
        out.contains(&format!("echo: listen on {port} refused: denied")),
        "{out}"
    );
    assert!(out.contains("echo: ISU0 refused: denied"), "{out}");
    rig.events
        .wait_for(62, "port denial", Duration::from_secs(1), |e| {
            matches!(
                e,
                CompartmentEvent::Denied {
                    capability: Capability::AllowedTcpServerPorts,
                    ..
                }
            )
        });
    rig.events
        .wait_for(62, "UART denial", Duration::from_secs(1), |e| {
            matches!(
                e,
                CompartmentEvent::Denied {
                    capability: Capability::Uart,
                    ..
                }
            )
        });
}

#[test]
fn udp_goes_only_to_allowed_hosts() {
    let collector = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    collector
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let port = collector.local_addr().unwrap().port();
    let other = if port == u16::MAX { port - 1 } else { port + 1 };
    let rig = rig(test_config(), None);
    rig.supervisor
        .start(
            image(
                "telemetry",
                manifest("telemetry-udp", 61).allowed_connections([format!("127.0.0.1:{port}")]),
            )
            .with_env("TELEMETRY_TARGET", format!("127.0.0.1:{port}"))
            .with_env("TELEMETRY_PROTOCOL", "udp"),
        )
        .unwrap();
    // Another port of the same host is not in the manifest.
    rig.supervisor
        .start(
            image(
                "telemetry",
                manifest("telemetry-udp-denied", 62)
                    .allowed_connections([format!("127.0.0.1:{port}")]),
            )
            .with_env("TELEMETRY_TARGET", format!("127.0.0.1:{other}"))
            .with_env("TELEMETRY_PROTOCOL", "udp"),
        )
        .unwrap();
    let mut buf = [0u8; 128];
    for _ in 0..3 {
        let (n, _) = collector.recv_from(&mut buf).unwrap();
        let datagram = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(datagram.starts_with("reading "), "{datagram}");
    }
    rig.events
        .wait_for(62, "denial", Duration::from_secs(30), |e| {
            matches!(
                e,
                CompartmentEvent::Denied {
                    capability: Capability::AllowedConnections,
                    detail,
                    ..
                } if detail.starts_with("udp ")
            )
        });
}
