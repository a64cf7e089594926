//! The compartment health check of app updates, end to end: a new version
//! that is validly signed and passes boot verification but traps when it
//! runs is rolled back, with the crash as the reason; one that runs is
//! committed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use support::fleet::{active_sha256, device_row, file_sha256, update, Fleet};

#[test]
fn a_new_version_that_crashes_when_it_runs_is_rolled_back() {
    let f = Fleet::start(&[]);
    let (_, v1_file) = f.image("1.0.0", 1, "release");
    let (state, device) = f.device("dev1", &v1_file);

    // v2: signed, trusted, boots, but traps on its first reading.
    let (v2, _) = f.image_of("2.0.0", 2, "release", "hostile-trap.wasm");
    let d2 = f.deploy(&v2, &[]);
    let report = update(&state);
    let outcome = &report["outcomes"][0];
    assert_eq!(outcome["state"], "rolled-back", "{report}");
    let reason = outcome["reason"].as_str().unwrap();
    assert!(reason.contains("crashed"), "{reason}");
    assert!(reason.contains("health check"), "{reason}");
    assert_eq!(active_sha256(&state), file_sha256(&v1_file));
    let row = f.show(&d2);
    assert_eq!(device_row(&row, &device)["state"], "rolled-back", "{row}");
    // The counter was not raised: v1 (security version 1) still boots.
    let slot = std::fs::read_to_string(
        state.join(format!("updates/slots/{}/slot.toml", support::fleet::BLINK)),
    )
    .unwrap();
    assert!(!slot.contains("security_version = 2"), "{slot}");

    // v3 runs (blink): committed.
    let (v3, v3_file) = f.image("3.0.0", 3, "release");
    f.deploy(&v3, &[]);
    let report = update(&state);
    assert_eq!(report["outcomes"][0]["state"], "installed", "{report}");
    assert_eq!(active_sha256(&state), file_sha256(&v3_file));
}
