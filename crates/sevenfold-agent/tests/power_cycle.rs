//! Several starts of the agent in one power cycle: every start appends its
//! boot segment to the cycle's measurement log on disk (`measurements.log`),
//! which must replay to the registers, or the agent refuses to run.
//!
//! On the `soft` backend a power cycle is one root-of-trust instance (its
//! registers live in memory), so booting twice with the same instance is
//! two starts in one cycle, and opening a new instance is a reboot. On a TPM
//! (swtpm, with the `tpm` feature) the PCRs outlive the process, as on a
//! board.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::{package, Fixture, BLINK};
use sevenfold_agent::{
    build_evidence, measured_boot, AgentError, BootReport, MEASUREMENT_LOG_FILE,
};
use sevenfold_core::attestation::{ComponentKind, Evidence, ATTESTED_REGISTERS, MAX_EVENTS};
use sevenfold_rot::{Digest, KeyAlgorithm, RootOfTrust, SoftwareKey};

fn with_blink() -> Fixture {
    let f = Fixture::new();
    f.put_image(
        "blink.imagepackage",
        &package(&f.signer, "blink", BLINK, "1.2.0", 3),
    );
    f
}

fn boot_on(f: &Fixture, rot: &dyn RootOfTrust) -> Result<BootReport, AgentError> {
    let report = measured_boot(&f.state, rot, &f.runtime())?;
    assert_eq!(
        rot.read_registers(&ATTESTED_REGISTERS).unwrap(),
        report.log.replay(),
        "registers and event log disagree"
    );
    Ok(report)
}

/// The quote over the whole cycle's log verifies, and the log replays.
fn check_evidence(rot: &dyn RootOfTrust, report: &BootReport) -> usize {
    let tls = SoftwareKey::generate(KeyAlgorithm::EcdsaP256).unwrap().0;
    let nonce = [5u8; 32];
    let body = build_evidence(rot, report, "PEM", tls.public_key(), &nonce).unwrap();
    let measured = Evidence::parse(&body)
        .unwrap()
        .check(rot.device_public_key(), &nonce)
        .unwrap();
    assert_eq!(measured.current_boot(), report.this_boot());
    measured.boots().count()
}

#[test]
fn starts_in_one_power_cycle_append_their_boots_to_one_log() {
    let f = with_blink();
    let rot = f.state.open_rot().unwrap();
    let first = boot_on(&f, rot.as_ref()).unwrap();
    assert_eq!((first.boot_start, first.log.events().len()), (0, 2));
    assert_eq!(check_evidence(rot.as_ref(), &first), 1);

    let second = boot_on(&f, rot.as_ref()).unwrap();
    assert_eq!((second.boot_start, second.log.events().len()), (2, 4));
    assert_eq!(&second.log.events()[..2], first.log.events());
    assert_eq!(second.this_boot(), first.log.events());
    assert_eq!(second.this_boot()[0].kind, ComponentKind::Runtime);
    assert_eq!(check_evidence(rot.as_ref(), &second), 2);

    // A reboot (a new instance: registers at zero) starts a new log.
    let rebooted = f.state.open_rot().unwrap();
    let third = boot_on(&f, rebooted.as_ref()).unwrap();
    assert_eq!((third.boot_start, third.log.events().len()), (0, 2));
    assert_eq!(check_evidence(rebooted.as_ref(), &third), 1);
}

#[test]
fn a_log_that_does_not_replay_to_the_registers_is_refused() {
    let f = with_blink();
    let rot = f.state.open_rot().unwrap();
    let first = boot_on(&f, rot.as_ref()).unwrap();
    let path = f.state.path(MEASUREMENT_LOG_FILE);
    let honest = std::fs::read_to_string(&path).unwrap();
    let refused = |f: &Fixture| {
        let err = measured_boot(&f.state, rot.as_ref(), &f.runtime()).unwrap_err();
        assert!(
            matches!(err, AgentError::MeasurementLogMismatch { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("Reboot the device"), "{err}");
    };

    // Another app's digest in place of the one measured.
    let measured = first.log.events()[1].digest.to_hex();
    std::fs::write(
        &path,
        honest.replacen(&measured, &Digest::of(b"innocent app").to_hex(), 1),
    )
    .unwrap();
    refused(&f);
    // A line that does not parse.
    std::fs::write(&path, format!("{honest}not json\n")).unwrap();
    refused(&f);
    // Events left out.
    std::fs::write(&path, honest.lines().next().unwrap().to_owned() + "\n").unwrap();
    refused(&f);
    // No log at all.
    std::fs::remove_file(&path).unwrap();
    refused(&f);
    // Registers extended behind the agent's back.
    std::fs::write(&path, &honest).unwrap();
    boot_on(&f, rot.as_ref()).unwrap();
    rot.extend(ComponentKind::Application.register(), &Digest::of(b"x"))
        .unwrap();
    refused(&f);
    // Nothing was measured by the refused starts: a reboot starts over.
    let rebooted = f.state.open_rot().unwrap();
    assert_eq!(
        boot_on(&f, rebooted.as_ref()).unwrap().log.events().len(),
        2
    );
}

/// The write-ahead case: the agent stopped after logging an event but
/// before extending it (and another write was cut short): the next start
/// drops both and goes on.
#[test]
fn an_event_logged_but_never_extended_is_dropped_at_the_next_start() {
    let f = with_blink();
    let rot = f.state.open_rot().unwrap();
    let first = boot_on(&f, rot.as_ref()).unwrap();
    let path = f.state.path(MEASUREMENT_LOG_FILE);
    let honest = std::fs::read_to_string(&path).unwrap();
    let unextended = honest.lines().last().unwrap();
    std::fs::write(&path, format!("{honest}{unextended}\n{{\"kind\":\"appli")).unwrap();

    let second = boot_on(&f, rot.as_ref()).unwrap();
    assert_eq!(second.boot_start, 2);
    assert_eq!(&second.log.events()[..2], first.log.events());
    assert_eq!(check_evidence(rot.as_ref(), &second), 2);
    let on_disk = std::fs::read_to_string(&path).unwrap();
    assert_eq!(on_disk.lines().count(), 4);
    assert!(on_disk.starts_with(&honest));
}

#[test]
fn a_full_log_refuses_the_next_start_and_asks_for_a_reboot() {
    let f = with_blink();
    let rot = f.state.open_rot().unwrap();
    // Two events per start (the runtime and blink): 256 starts fill 512.
    for _ in 0..MAX_EVENTS / 2 {
        measured_boot(&f.state, rot.as_ref(), &f.runtime()).unwrap();
    }
    let err = measured_boot(&f.state, rot.as_ref(), &f.runtime()).unwrap_err();
    assert!(
        matches!(
            err,
            AgentError::MeasurementLogFull {
                events: MAX_EVENTS,
                needed: 2,
                max: MAX_EVENTS
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("reboot the device"), "{err}");
    // The refused start measured nothing; a reboot starts a new log.
    assert_eq!(
        std::fs::read_to_string(f.state.path(MEASUREMENT_LOG_FILE))
            .unwrap()
            .lines()
            .count(),
        MAX_EVENTS
    );
    let rebooted = f.state.open_rot().unwrap();
    assert_eq!(
        boot_on(&f, rebooted.as_ref()).unwrap().log.events().len(),
        2
    );
}

/// On a real TPM (swtpm): `Agent::start` twice in one power cycle, each
/// start's evidence verifying over the whole log; a tampered log refused;
/// a power cycle of the TPM starts a new log.
#[cfg(feature = "tpm")]
#[test]
fn on_a_tpm_the_agent_starts_twice_in_one_power_cycle_and_attests_both_times() {
    use sevenfold_agent::Agent;
    let mut tpm = sevenfold_rot::tpm::simulator::Swtpm::start().expect("swtpm must be installed");
    let f = Fixture::on_tpm(&tpm.tcti());
    f.put_image(
        "blink.imagepackage",
        &package(&f.signer, "blink", BLINK, "1.2.0", 3),
    );
    for start in 1..=2usize {
        let agent = Agent::start(f.state.clone(), &f.runtime()).unwrap();
        assert_eq!(agent.rot().backend(), "tpm");
        let nonce = [start as u8; 32];
        let body = agent.evidence(&nonce).unwrap();
        let measured = Evidence::parse(&body)
            .unwrap()
            .check(agent.rot().device_public_key(), &nonce)
            .unwrap();
        assert_eq!(measured.events().len(), 2 * start);
        assert_eq!(measured.boots().count(), start);
        assert_eq!(measured.current_boot(), agent.boot_report().this_boot());
        assert_eq!(agent.boot_report().this_boot().len(), 2);
    }

    // Two agents at once (say `agent update --now` beside `agent run`):
    // the second start appends to the log and extends the PCRs; the first
    // agent's next evidence quotes the log as it is now, and verifies.
    let running = Agent::start(f.state.clone(), &f.runtime()).unwrap();
    let beside = Agent::start(f.state.clone(), &f.runtime()).unwrap();
    assert_eq!(beside.boot_report().log.events().len(), 8);
    let nonce = [9u8; 32];
    let body = running.evidence(&nonce).unwrap();
    let measured = Evidence::parse(&body)
        .unwrap()
        .check(running.rot().device_public_key(), &nonce)
        .unwrap();
    assert_eq!(measured.events().len(), 8);
    drop((running, beside));

    let path = f.state.path(MEASUREMENT_LOG_FILE);
    let honest = std::fs::read_to_string(&path).unwrap();
    let runtime = honest.lines().next().unwrap();
    std::fs::write(&path, format!("{runtime}\n{honest}")).unwrap();
    let err = Agent::start(f.state.clone(), &f.runtime())
        .err()
        .expect("a log with an extra runtime event is refused");
    assert!(
        matches!(err, AgentError::MeasurementLogMismatch { .. }),
        "{err}"
    );

    // Power-cycle the TPM: PCRs at zero, a new log.
    tpm.restart().unwrap();
    let state = f.state.clone().with_tcti(Some(tpm.tcti()));
    let agent = Agent::start(state, &f.runtime()).unwrap();
    assert_eq!(agent.boot_report().log.events().len(), 2);
    assert_eq!(agent.boot_report().boot_start, 0);
}
