//! Quote decoding (input from devices, on the service) must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sevenfold_rot::Quote;

fuzz_target!(|data: &[u8]| {
    if let Ok(quote) = Quote::from_bytes(data) {
        assert_eq!(Quote::from_bytes(&quote.to_bytes()).ok(), Some(quote));
    }
});
