//! Manifest validation must never panic, and what it accepts must round-trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sevenfold_core::manifest::AppManifest;

fuzz_target!(|data: &[u8]| {
    if let Ok(manifest) = AppManifest::from_json(data) {
        let again = AppManifest::from_json(manifest.to_json().as_bytes());
        assert_eq!(again.ok().as_ref(), Some(&manifest));
    }
});
