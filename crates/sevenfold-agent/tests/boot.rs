//! Measured boot over real image packages and a real `soft` root of trust.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::{package, tamper, Fixture, BLINK, SENSOR};
use sevenfold_agent::{measured_boot, Agent, BootReport, RuntimeImage, StateDir};
use sevenfold_core::attestation::{
    ComponentKind, Evidence, ATTESTED_REGISTERS, RUNTIME_COMPONENT_ID,
};
use sevenfold_rot::{Digest, KeyAlgorithm, SoftwareKey};

/// Boots once with a fresh root-of-trust instance (registers at zero) and
/// checks the registers equal the log's replay.
fn boot(f: &Fixture) -> BootReport {
    let rot = f.state.open_rot().unwrap();
    let report = measured_boot(&f.state, rot.as_ref(), &f.runtime()).unwrap();
    assert_eq!(
        rot.read_registers(&ATTESTED_REGISTERS).unwrap(),
        report.log.replay(),
        "registers and event log disagree"
    );
    report
}

fn only_failure(report: &BootReport) -> &sevenfold_core::attestation::BootFailure {
    assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
    &report.failures[0]
}

#[test]
fn two_valid_images_are_measured_after_the_runtime() {
    let f = Fixture::new();
    let blink = package(&f.signer, "blink", BLINK, "1.2.0", 3);
    let sensor = package(&f.signer, "sensor", SENSOR, "0.4.1", 1);
    f.put_image("a-blink.imagepackage", &blink);
    f.put_image("b-sensor.imagepackage", &sensor);
    // Not packages: ignored.
    f.put_image("README.txt", b"hello");
    f.put_image(
        ".b-sensor.imagepackage.tmp-0011223344556677",
        b"half written",
    );

    let report = boot(&f);
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    let events = report.log.events();
    assert_eq!(events.len(), 3);

    assert_eq!(events[0].kind, ComponentKind::Runtime);
    assert_eq!(events[0].component_id, RUNTIME_COMPONENT_ID);
    assert_eq!(events[0].version, "0.1.0-test");
    assert_eq!(events[0].digest, Digest::of(b"runtime build 1"));

    assert_eq!(events[1].kind, ComponentKind::Application);
    assert_eq!(events[1].component_id, BLINK);
    assert_eq!(events[1].name, "blink");
    assert_eq!(events[1].version, "1.2.0");
    assert_eq!(events[2].component_id, SENSOR);
    // The measurement is the package digest.
    let parsed = sevenfold_core::package::UnverifiedPackage::parse(
        &blink,
        &sevenfold_core::package::Limits::default(),
    )
    .unwrap();
    assert_eq!(events[1].digest, parsed.package_digest());

    assert_eq!(report.verified_images.len(), 2);
    assert_eq!(report.verified_images[0].component_id, BLINK);
    assert_eq!(report.verified_images[0].security_version, 3);
    assert_eq!(
        report.verified_images[1].path,
        f.state.path("images").join("b-sensor.imagepackage")
    );
}

#[test]
fn a_tampered_package_is_not_measured() {
    let f = Fixture::new();
    f.put_image(
        "a-blink.imagepackage",
        &package(&f.signer, "blink", BLINK, "1.0.0", 1),
    );
    f.put_image(
        "b-sensor.imagepackage",
        &tamper(package(&f.signer, "sensor", SENSOR, "1.0.0", 1)),
    );
    let report = boot(&f);
    let failure = only_failure(&report);
    assert_eq!(failure.component, "b-sensor.imagepackage");
    assert!(failure.reason.contains("signature"), "{}", failure.reason);
    assert_eq!(report.log.events().len(), 2);
    assert_eq!(report.log.events()[1].component_id, BLINK);
    assert_eq!(report.verified_images.len(), 1);
}

#[test]
fn an_image_signed_by_an_untrusted_key_is_not_measured() {
    let f = Fixture::new();
    let (stranger, _) = SoftwareKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    f.put_image(
        "blink.imagepackage",
        &package(&stranger, "blink", BLINK, "1.0.0", 1),
    );
    let report = boot(&f);
    let failure = only_failure(&report);
    assert_eq!(failure.component, "blink.imagepackage");
    assert!(
        failure.reason.contains("not a trusted signing key"),
        "{}",
        failure.reason
    );
    assert_eq!(report.log.events().len(), 1);
    assert!(report.verified_images.is_empty());
    // An untrusted package does not get a counter.
    assert!(f.state.counters().unwrap().get(BLINK).is_none());
}

#[test]
fn garbage_and_truncated_files_are_refused_not_fatal() {
    let f = Fixture::new();
    f.put_image("a.imagepackage", &[b'x'; 100]);
    let whole = package(&f.signer, "blink", BLINK, "1.0.0", 1);
    f.put_image("b.imagepackage", &whole[..whole.len() / 2]);
    std::fs::create_dir(f.state.path("images").join("c.imagepackage")).unwrap();
    let report = boot(&f);
    assert_eq!(report.failures.len(), 3, "{:?}", report.failures);
    assert!(
        report.failures[0].reason.contains("magic"),
        "{:?}",
        report.failures
    );
    assert!(
        report.failures[1].reason.contains("truncated"),
        "{:?}",
        report.failures
    );
    assert!(report.failures[2].reason.contains("not a regular file"));
    assert_eq!(report.log.events().len(), 1);
}

#[test]
fn an_image_below_its_anti_rollback_counter_is_not_measured() {
    let f = Fixture::new();
    f.put_image(
        "blink.imagepackage",
        &package(&f.signer, "blink", BLINK, "1.0.0", 1),
    );
    // First boot assigns the component its counter; the counter starts at 0.
    assert!(boot(&f).failures.is_empty());
    let index = f.state.counters().unwrap().get(BLINK).unwrap();
    f.state
        .open_rot()
        .unwrap()
        .advance_counter(index, 2)
        .unwrap();

    let report = boot(&f);
    let failure = only_failure(&report);
    assert!(
        failure.reason.contains("security version 1 is below")
            && failure.reason.contains("counter 2"),
        "{}",
        failure.reason
    );
    assert_eq!(report.log.events().len(), 1);

    // Security version equal to the counter is fine.
    f.put_image(
        "blink.imagepackage",
        &package(&f.signer, "blink", BLINK, "1.1.0", 2),
    );
    assert!(boot(&f).failures.is_empty());
}

#[test]
fn counter_allocation_is_stable_across_boots() {
    let f = Fixture::new();
    f.put_image(
        "a.imagepackage",
        &package(&f.signer, "blink", BLINK, "1.0.0", 1),
    );
    boot(&f);
    let first = f.state.counters().unwrap();
    assert_eq!(first.get(BLINK).unwrap().get(), 0);
    let text = std::fs::read_to_string(f.state.path("counters.toml")).unwrap();

    boot(&f);
    let reopened = StateDir::open(f.state.root()).unwrap();
    assert_eq!(reopened.counters().unwrap(), first);
    assert_eq!(
        std::fs::read_to_string(f.state.path("counters.toml")).unwrap(),
        text
    );

    // A new component gets the next index; the old one keeps its own,
    // whatever the file order.
    f.put_image(
        "0-first.imagepackage",
        &package(&f.signer, "sensor", SENSOR, "1.0.0", 1),
    );
    boot(&f);
    let after = f.state.counters().unwrap();
    assert_eq!(after.get(BLINK).unwrap().get(), 0);
    assert_eq!(after.get(SENSOR).unwrap().get(), 1);
}

#[test]
fn a_second_package_of_the_same_component_is_refused() {
    let f = Fixture::new();
    f.put_image(
        "a.imagepackage",
        &package(&f.signer, "blink", BLINK, "1.0.0", 1),
    );
    f.put_image(
        "b.imagepackage",
        &package(&f.signer, "blink", BLINK, "2.0.0", 1),
    );
    let report = boot(&f);
    let failure = only_failure(&report);
    assert_eq!(failure.component, "b.imagepackage");
    assert!(failure
        .reason
        .contains("already measured from a.imagepackage"));
}

#[test]
fn the_runtime_is_measured_first_and_a_missing_runtime_stops_the_boot() {
    let f = Fixture::new();
    let rot = f.state.open_rot().unwrap();
    let missing = RuntimeImage::new(f.dir.path().join("nope"), "1");
    assert!(measured_boot(&f.state, rot.as_ref(), &missing).is_err());
    let current = RuntimeImage::current().unwrap();
    assert_eq!(current.version(), env!("CARGO_PKG_VERSION"));
}

#[test]
fn agent_start_records_the_boot_and_builds_evidence_that_verifies() {
    let f = Fixture::new();
    f.put_image(
        "a.imagepackage",
        &package(&f.signer, "blink", BLINK, "1.0.0", 1),
    );
    f.put_image(
        "b.imagepackage",
        &tamper(package(&f.signer, "sensor", SENSOR, "1.0.0", 1)),
    );
    let state = StateDir::open(f.state.root()).unwrap();
    let agent = Agent::start(state, &f.runtime()).unwrap();

    let status = f.state.read_status().unwrap().unwrap();
    assert_eq!(status.device_id, f.state.device_id().to_string());
    assert!(status.booted_at.is_some());
    assert_eq!(status.boot_measurements.len(), 2);
    assert_eq!(status.boot_measurements[1].component_id, BLINK);
    assert_eq!(status.boot_measurements[1].register, 15);
    assert_eq!(status.boot_failures.len(), 1);
    assert_eq!(status.boot_failures[0].component, "b.imagepackage");
    assert_eq!(status.verdict, None);

    // The evidence the agent would send passes the verifier's own checks.
    let nonce = [42u8; 32];
    let body = agent.evidence(&nonce).unwrap();
    let wire: sevenfold_core::attestation::EvidenceBody =
        serde_json::from_str(&serde_json::to_string(&body).unwrap()).unwrap();
    assert_eq!(wire.device_id, f.state.device_id().to_string());
    assert_eq!(
        wire.endorsement_pem,
        std::fs::read_to_string(f.state.path("endorsement.pem")).unwrap()
    );
    assert_eq!(wire.boot_failures, agent.boot_report().failures);
    let evidence = Evidence::parse(&wire).unwrap();
    assert_eq!(&evidence.tls_key, agent.tls_public_key());
    let measured = evidence
        .check(agent.rot().device_public_key(), &nonce)
        .unwrap();
    assert_eq!(measured.events(), agent.boot_report().log.events());
    // Bound to this nonce and this TLS key only.
    assert!(evidence
        .check(agent.rot().device_public_key(), &[43u8; 32])
        .is_err());
}

#[test]
fn evidence_needs_an_endorsement() {
    let f = Fixture::with_endorsement(false);
    let state = StateDir::open(f.state.root()).unwrap();
    let agent = Agent::start(state, &f.runtime()).unwrap();
    let err = agent.evidence(&[0u8; 32]).unwrap_err();
    assert!(err.to_string().contains("sevenfold agent endorse"), "{err}");
}
