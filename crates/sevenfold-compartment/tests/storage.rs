#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! `MutableStorage` with the real `notes` app: it survives a restart and an
//! update, and no other app can see it.

mod common;

use std::time::Duration;

use common::*;
use sevenfold_compartment::{AppRunState, CompartmentEvent};
use uuid::Uuid;

const NOTES: u128 = 21;
const OTHER: u128 = 22;

fn run_to_exit(rig: &Rig, image: sevenfold_compartment::AppImage, n: u128, exits: usize) {
    rig.supervisor.update(image).unwrap();
    eventually("notes to exit", Duration::from_secs(30), || {
        rig.events
            .of(n)
            .iter()
            .filter(|e| matches!(e, CompartmentEvent::Exited { code: 0, .. }))
            .count()
            >= exits
    });
}

#[test]
fn storage_survives_restart_and_update_and_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let rig = rig_in(dir, test_config(), None);
    let v1 = || image("notes", manifest("notes", NOTES).mutable_storage_kb(16));
    run_to_exit(&rig, v1(), NOTES, 1);
    assert!(output(&rig, NOTES).contains("notes: 1 notes stored"));
    // Restart of the same version.
    run_to_exit(&rig, v1(), NOTES, 2);
    assert!(
        output(&rig, NOTES).contains("notes: 2 notes stored"),
        "{}",
        output(&rig, NOTES)
    );
    // An update: new version, new digest, same component.
    let v2 = sevenfold_core::manifest::AppManifest::builder(
        "notes",
        Uuid::from_u128(NOTES),
        semver::Version::new(2, 0, 0),
        2,
        "notes.wasm",
    )
    .mutable_storage_kb(32);
    let v2 = image("notes", v2);
    run_to_exit(&rig, v2, NOTES, 3);
    assert!(
        output(&rig, NOTES).contains("notes: 3 notes stored"),
        "{}",
        output(&rig, NOTES)
    );
    assert_eq!(rig.supervisor.status()[0].state, AppRunState::Exited(0));

    // Another component starts with empty storage of its own.
    run_to_exit(
        &rig,
        image(
            "notes",
            manifest("other-notes", OTHER).mutable_storage_kb(16),
        ),
        OTHER,
        1,
    );
    assert!(
        output(&rig, OTHER).contains("notes: 1 notes stored"),
        "{}",
        output(&rig, OTHER)
    );
    let storage = rig.dir.path().join("storage");
    let mine = std::fs::read_to_string(
        storage
            .join(Uuid::from_u128(NOTES).to_string())
            .join("notes.txt"),
    )
    .unwrap();
    let theirs = std::fs::read_to_string(
        storage
            .join(Uuid::from_u128(OTHER).to_string())
            .join("notes.txt"),
    )
    .unwrap();
    assert_eq!(mine.lines().count(), 3);
    assert_eq!(theirs.lines().count(), 1);

    // An agent restart (new engine and supervisor over the same directories) keeps it.
    let Rig {
        dir, supervisor, ..
    } = rig;
    drop(supervisor);
    let rig = rig_in(dir, test_config(), None);
    run_to_exit(&rig, v1(), NOTES, 1);
    assert!(
        output(&rig, NOTES).contains("notes: 4 notes stored"),
        "{}",
        output(&rig, NOTES)
    );
}

#[test]
fn an_app_without_storage_has_no_file_system() {
    let rig = rig(test_config(), None);
    rig.supervisor
        .start(image("notes", manifest("notes", 23)))
        .unwrap();
    rig.events
        .wait_for(23, "exit", Duration::from_secs(30), |e| {
            matches!(e, CompartmentEvent::Exited { .. })
        });
    let out = output(&rig, 23);
    assert!(out.contains("notes: cannot write /data/notes.txt"), "{out}");
    assert!(!rig
        .dir
        .path()
        .join("storage")
        .join(Uuid::from_u128(23).to_string())
        .exists());
}
