//! A device's TPM attestation key public area (`TPMT_PUBLIC`, input from
//! devices to a verifier doing credential activation) must never panic the
//! parser, and what it accepts must be a key with a well-formed TPM name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sevenfold_rot::credential::AttestationKey;

fuzz_target!(|data: &[u8]| {
    if let Ok(key) = AttestationKey::parse(data) {
        assert_eq!(key.name().len(), 34);
        assert_eq!(key.name()[..2], [0x00, 0x0b]);
    }
});
