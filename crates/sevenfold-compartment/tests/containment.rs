#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! The main promise: every hostile sample app is contained and
//! reported with its component ID, while `blink` and `telemetry` run
//! alongside and keep producing output.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use sevenfold_compartment::{AppRunState, Capability, CompartmentEvent, Limit};
use uuid::Uuid;

const BLINK: u128 = 1;
const TELEMETRY: u128 = 2;
const HOST: u128 = 11;
const FILL: u128 = 12;
const HOG: u128 = 13;
const SPIN: u128 = 14;
const TRAP: u128 = 15;
const ESCAPE: u128 = 16;
const PIN: u128 = 17;

/// A collector that counts the lines telemetry sends.
fn collector() -> (u16, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let lines = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&lines);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let counter = Arc::clone(&counter);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    if line.is_err() {
                        break;
                    }
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    (port, lines)
}

#[test]
fn hostile_apps_are_contained_and_reported_while_blink_and_telemetry_keep_running() {
    let rig = rig(test_config(), None);
    let (port, received) = collector();
    let s = &rig.supervisor;

    s.start(image(
        "blink",
        manifest("blink", BLINK)
            .gpio([8])
            .memory_kb(2048)
            .cpu_percent(20),
    ))
    .unwrap();
    s.start(
        image(
            "telemetry",
            manifest("telemetry", TELEMETRY)
                .allowed_connections([format!("localhost:{port}")])
                .memory_kb(2048),
        )
        .with_env("TELEMETRY_TARGET", format!("localhost:{port}")),
    )
    .unwrap();
    s.start(image(
        "hostile-host",
        manifest("hostile-host", HOST).allowed_connections(["collector.example.com:443"]),
    ))
    .unwrap();
    s.start(image(
        "hostile-fill",
        manifest("hostile-fill", FILL).mutable_storage_kb(8),
    ))
    .unwrap();
    s.start(image(
        "hostile-hog",
        manifest("hostile-hog", HOG).memory_kb(4096),
    ))
    .unwrap();
    s.start(image("hostile-spin", manifest("hostile-spin", SPIN)))
        .unwrap();
    s.start(image("hostile-trap", manifest("hostile-trap", TRAP)))
        .unwrap();
    s.start(image(
        "hostile-escape",
        manifest("hostile-escape", ESCAPE).mutable_storage_kb(8),
    ))
    .unwrap();
    s.start(image(
        "hostile-pin",
        manifest("hostile-pin", PIN).gpio([8]).uart(["ISU0"]),
    ))
    .unwrap();

    let within = Duration::from_secs(60);
    let ev = &rig.events;

    // Disallowed hosts: a name and IP literals, each denied and reported.
    for target in ["example.com:80", "127.0.0.1:9", "localhost:1"] {
        ev.wait_for(HOST, "connection denial", within, |e| {
            matches!(e, CompartmentEvent::Denied { capability: Capability::AllowedConnections, detail, .. } if detail == target)
        });
    }
    // Storage past the quota: NOSPC in the app, a limit hit on the host.
    ev.wait_for(FILL, "storage limit", within, |e| {
        matches!(
            e,
            CompartmentEvent::LimitHit {
                limit: Limit::Storage,
                ..
            }
        )
    });
    // Unbounded memory: a trap in that app, reported as a limit and a crash.
    ev.wait_for(HOG, "memory limit", within, |e| {
        matches!(
            e,
            CompartmentEvent::LimitHit {
                limit: Limit::Memory,
                ..
            }
        )
    });
    let crash = ev.wait_for(HOG, "crash", within, |e| {
        matches!(e, CompartmentEvent::Crashed { .. })
    });
    assert!(
        matches!(&crash, CompartmentEvent::Crashed { reason, .. } if reason.contains("memory limit")),
        "{crash}"
    );
    // Spinning forever: stopped past the CPU budget.
    ev.wait_for(SPIN, "CPU limit", within, |e| {
        matches!(
            e,
            CompartmentEvent::LimitHit {
                limit: Limit::Cpu,
                ..
            }
        )
    });
    let crash = ev.wait_for(SPIN, "crash", within, |e| {
        matches!(e, CompartmentEvent::Crashed { .. })
    });
    assert!(
        matches!(&crash, CompartmentEvent::Crashed { reason, .. } if reason.contains("CPU budget")),
        "{crash}"
    );
    // A trap, with the wasm backtrace naming the function that failed.
    let crash = ev.wait_for(TRAP, "crash", within, |e| {
        matches!(e, CompartmentEvent::Crashed { .. })
    });
    let CompartmentEvent::Crashed {
        reason, backtrace, ..
    } = &crash
    else {
        unreachable!()
    };
    assert!(reason.contains("wasm trap"), "{crash}");
    assert!(!backtrace.is_empty(), "{crash}");
    assert!(
        backtrace
            .iter()
            .any(|f| f.starts_with("hostile_trap::read_sensor")),
        "{crash}"
    );
    assert!(
        backtrace
            .iter()
            .any(|f| f.starts_with("hostile_trap::main")),
        "{crash}"
    );
    // Escaping the storage directory.
    ev.wait_for(ESCAPE, "storage denial", within, |e| {
        matches!(e, CompartmentEvent::Denied { capability: Capability::MutableStorage, detail, .. } if detail.contains("etc/passwd"))
    });
    // A pin and a UART it was not granted.
    ev.wait_for(PIN, "GPIO denial", within, |e| {
        matches!(e, CompartmentEvent::Denied { capability: Capability::Gpio, detail, .. } if detail == "GPIO pin 13")
    });
    ev.wait_for(PIN, "UART denial", within, |e| {
        matches!(e, CompartmentEvent::Denied { capability: Capability::Uart, detail, .. } if detail.contains("ISU3"))
    });

    // Nothing got through.
    eventually("hostile apps to finish their attempts", within, || {
        output(&rig, HOST).lines().count() >= 3
            && output(&rig, ESCAPE).lines().count() >= 4
            && output(&rig, PIN).lines().count() >= 2
    });
    for (n, forbidden) in [
        (HOST, "CONNECTED"),
        (ESCAPE, "READ"),
        (PIN, "DROVE"),
        (PIN, "OPENED"),
    ] {
        let out = output(&rig, n);
        assert!(!out.contains(forbidden), "component {n} got through: {out}");
    }
    assert_eq!(
        rig.peripherals.driven_pins(),
        vec![8],
        "only blink's pin was ever driven"
    );
    let fill = output(&rig, FILL);
    assert!(fill.contains("os error Some(51)"), "NOSPC expected: {fill}");
    let fill_dir = rig
        .dir
        .path()
        .join("storage")
        .join(Uuid::from_u128(FILL).to_string());
    assert!(sevenfold_compartment::storage_usage(&fill_dir).unwrap() <= 8 * 1024);

    // Meanwhile blink and telemetry keep running and producing.
    let toggles = rig.peripherals.toggles(8);
    let sent = received.load(Ordering::Relaxed);
    eventually(
        "blink and telemetry to keep going",
        Duration::from_secs(20),
        || rig.peripherals.toggles(8) > toggles + 5 && received.load(Ordering::Relaxed) > sent + 5,
    );
    let status = s.status();
    for n in [BLINK, TELEMETRY] {
        let app = status
            .iter()
            .find(|a| a.app.component_id == Uuid::from_u128(n))
            .unwrap();
        assert_eq!(app.state, AppRunState::Running, "{app:?}");
        assert_eq!(app.restarts, 0, "{app:?}");
        assert!(
            app.memory_bytes > 0 && app.memory_bytes <= 2048 * 1024,
            "{app:?}"
        );
        assert!(
            !rig.events.of(n).iter().any(CompartmentEvent::is_failure),
            "{:?}",
            rig.events.of(n)
        );
    }
    // The crashing ones are restarted, with their failure in status.
    let hog = status
        .iter()
        .find(|a| a.app.component_id == Uuid::from_u128(HOG))
        .unwrap();
    assert!(
        hog.last_failure
            .as_deref()
            .is_some_and(|f| f.contains("memory limit")),
        "{hog:?}"
    );
    assert!(hog.memory_peak_bytes <= 4096 * 1024, "{hog:?}");

    // A graceful stop: blink sees should_stop and returns from main.
    assert!(
        !s.stop(Uuid::from_u128(BLINK)).unwrap(),
        "blink stops within its grace period"
    );
    assert!(output(&rig, BLINK).contains("blink: done after"));
}
