//! The failure record and upload batch readers must never panic, and what
//! they accept must encode and read back to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sevenfold_core::report::{FailureRecord, ReportBatch};

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = FailureRecord::read(data) {
        let bytes = record.encode().expect("an accepted record encodes");
        assert_eq!(FailureRecord::read(&bytes).ok().as_ref(), Some(&record));
    }
    if let Ok(batch) = ReportBatch::read(data) {
        let bytes = batch.encode().expect("an accepted batch encodes");
        assert_eq!(ReportBatch::read(&bytes).ok().as_ref(), Some(&batch));
    }
});
