#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! The agent's side of failure reporting, in process: a refused image is
//! journaled at boot under its component ID; heartbeats are journaled on
//! time; the local metrics endpoint reports the journal.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::{package, tamper, Fixture, SENSOR};
use sevenfold_agent::journal::Journal;
use sevenfold_agent::{Agent, StateDir};
use sevenfold_core::report::FailureKind;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn scrape(port: u16) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    Some(text)
}

#[test]
fn boot_failures_heartbeats_and_local_metrics() {
    let f = Fixture::new();
    let bad = tamper(package(&f.signer, "sensor", SENSOR, "2.1.0", 1));
    f.put_image(&format!("{SENSOR}.imagepackage"), &bad);
    let port = free_port();
    let config = f.state.path("agent.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{text}\n[reporting]\nheartbeat_interval_secs = 1\nmetrics_listen = \"127.0.0.1:{port}\"\n"),
    )
    .unwrap();
    let state = StateDir::open(f.state.root()).unwrap();
    let agent = Agent::start(state, &f.runtime()).unwrap();

    // The refused image is journaled under its component ID.
    let records = agent.journal().records();
    let boot: Vec<_> = records
        .iter()
        .filter(|(r, _)| r.kind == FailureKind::BootCheckFailed)
        .collect();
    assert_eq!(boot.len(), 1, "{records:?}");
    assert_eq!(boot[0].0.component_id, SENSOR);
    assert_eq!(boot[0].0.details["file"], format!("{SENSOR}.imagepackage"));
    assert!(!boot[0].1, "not delivered yet");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let scraped = std::thread::spawn(move || {
        // The service at 127.0.0.1:8444 is not there: attestation and upload
        // retry; heartbeats go on regardless.
        let mut text = None;
        for _ in 0..100 {
            std::thread::sleep(Duration::from_millis(100));
            if let Some(t) = scrape(port) {
                if t.contains("sevenfold_agent_journal_pending_records 3") {
                    text = Some(t);
                    break;
                }
            }
        }
        let _ = stop.send(());
        text
    });
    runtime.block_on(agent.run(
        async {
            let _ = stopped.await;
        },
        |_| {},
    ));
    let text = scraped
        .join()
        .unwrap()
        .expect("metrics with two heartbeats");
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(text.contains("sevenfold_agent_boot_failures 1"), "{text}");
    assert!(
        text.contains("sevenfold_agent_reports_uploaded_total 0"),
        "{text}"
    );
    let heartbeats: Vec<_> = Journal::inspect(&f.state.path("journal"))
        .unwrap()
        .into_iter()
        .filter(|(r, _)| r.kind == FailureKind::Heartbeat)
        .collect();
    assert!(heartbeats.len() >= 2);
    assert!(heartbeats[0].0.details.contains_key("uptime_secs"));
    // The listener is gone after shutdown.
    assert!(scrape(port).is_none());
}
