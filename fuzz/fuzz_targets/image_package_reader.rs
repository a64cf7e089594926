//! The image package reader must never panic or over-allocate on any input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sevenfold_core::package::{read_package, Limits, TrustedKeys, UnverifiedPackage};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    if let Ok(bytes) = read_package(data, &limits) {
        assert!(bytes.len() <= data.len());
    }
    if let Ok(package) = UnverifiedPackage::parse(data, &limits) {
        let _ = package.package_digest();
        // Nothing is trusted, so nothing may verify.
        assert!(package.verify(&TrustedKeys::new()).is_err());
    }
});
