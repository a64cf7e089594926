//! Delta updates end to end, with a real server and real agent processes:
//! a deployment carries a delta from the group's previous version of the
//! component; a device running that version fetches the delta instead of
//! the image, rebuilds the image and checks it against the signed target;
//! a damaged delta falls back to the full image; a device running another
//! version is not offered the delta at all.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::path::Path;

use support::fleet::{active_sha256, device_row, file_sha256, update, Fleet, BLINK};

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

/// The one delta blob the server stored for the tenant.
fn delta_blob(f: &Fleet) -> std::path::PathBuf {
    let dir = f
        .server
        .data_dir
        .join(format!("blobs/blobs/deltas/{}", f.tenant));
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files.into_iter().next().unwrap()
}

/// The bytes the server sent for targets, by kind, from its metrics.
fn served(f: &Fleet, kind: &str) -> u64 {
    let metrics = f.admin.get_raw("/metrics").1;
    let text = String::from_utf8_lossy(&metrics);
    let prefix = format!("sevenfold_update_bytes_served_total{{kind=\"{kind}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[test]
fn an_update_uses_the_delta_from_the_installed_version_and_falls_back_when_it_fails() {
    let f = Fleet::start(&[]);
    let (v1, v1_file) = f.image("1.0.0", 1, "release");
    let (v0, v0_file) = f.image("0.9.0", 1, "release");
    let (state, device) = f.device("dev1", &v1_file);
    // A device that runs another version than the group's previous one.
    let (other_state, _) = f.device("dev0", &v0_file);
    // v1 is the group's current version (dev1 already runs it).
    f.deploy(&v1, &[]);
    assert_eq!(update(&state)["outcomes"][0]["state"], "up-to-date");

    // v2 carries a delta from v1, signed into its target's metadata.
    let (v2, v2_file) = f.image("2.0.0", 2, "release");
    let d2 = f.deploy(&v2, &[]);
    let delta = delta_blob(&f);
    let delta_len = file_len(&delta);
    let full_len = file_len(&v2_file);
    assert!(delta_len * 10 < full_len, "{delta_len} vs {full_len}");
    let full_before = served(&f, "full");

    let report = update(&state);
    let outcome = &report["outcomes"][0];
    assert_eq!(outcome["state"], "installed", "{report}");
    assert_eq!(outcome["delta_used"], true, "{report}");
    assert_eq!(outcome["downloaded_bytes"], delta_len, "{report}");
    assert_eq!(report["attestation"], "pass", "{report}");
    assert_eq!(active_sha256(&state), file_sha256(&v2_file));
    assert_eq!(device_row(&f.show(&d2), &device)["state"], "installed");
    // The server sent the delta, not the image.
    assert_eq!(served(&f, "delta"), delta_len);
    assert_eq!(served(&f, "full"), full_before);

    // A device on v0: the delta's base is not its image, so it fetches
    // the full v2 and still installs it.
    let report = update(&other_state);
    let outcome = &report["outcomes"][0];
    assert_eq!(outcome["state"], "installed", "{report}");
    assert_eq!(outcome["delta_used"], false, "{report}");
    assert_eq!(outcome["delta_fallback"], serde_json::Value::Null);
    assert_eq!(outcome["downloaded_bytes"], full_len, "{report}");
    assert_eq!(active_sha256(&other_state), file_sha256(&v2_file));
    assert_ne!(v0, v1);

    // v3: its delta from v2 is damaged on the server after publication.
    // The device refuses it (hash against the signed delta), fetches the
    // full v3, installs it, and says why.
    let (v3, v3_file) = f.image("3.0.0", 3, "release");
    std::fs::remove_file(&delta).unwrap();
    f.deploy(&v3, &[]);
    let delta = delta_blob(&f);
    let mut bytes = std::fs::read(&delta).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&delta, bytes).unwrap();
    let report = update(&state);
    let outcome = &report["outcomes"][0];
    assert_eq!(outcome["state"], "installed", "{report}");
    assert_eq!(outcome["delta_used"], false, "{report}");
    let why = outcome["delta_fallback"].as_str().unwrap();
    assert!(why.contains("does not match the signed"), "{why}");
    assert_eq!(outcome["downloaded_bytes"], file_len(&v3_file), "{report}");
    assert_eq!(active_sha256(&state), file_sha256(&v3_file));
    let slot =
        std::fs::read_to_string(state.join(format!("updates/slots/{BLINK}/slot.toml"))).unwrap();
    assert!(slot.contains("security_version = 3"), "{slot}");
}
