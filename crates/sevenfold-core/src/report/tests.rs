#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use proptest::prelude::*;

use super::*;

fn id(n: u8) -> RecordId {
    RecordId::from_random([n; 16])
}

fn sample() -> FailureRecord {
    FailureRecord::new(
        id(1),
        1_700_000_000_000,
        FailureKind::Trap,
        "2a9c0e0e-0000-4000-8000-000000000001",
        "1.2.0",
        "wasm trap: unreachable",
    )
    .with_frames(["blink::main+0x1f", "_start"])
    .with_detail("exit_code", 134)
}

#[test]
fn record_round_trips() {
    let record = sample();
    let bytes = record.encode().unwrap();
    assert_eq!(FailureRecord::read(&bytes).unwrap(), record);
    let batch = ReportBatch {
        records: vec![record.clone(), record],
    };
    assert_eq!(ReportBatch::read(&batch.encode().unwrap()).unwrap(), batch);
}

#[test]
fn kinds_have_stable_spellings() {
    for kind in FailureKind::ALL {
        assert_eq!(FailureKind::parse(kind.as_str()), Some(kind));
        let json = serde_json::to_string(&kind).unwrap();
        assert_eq!(json, format!("\"{}\"", kind.as_str()));
    }
    assert_eq!(FailureKind::parse("nonsense"), None);
    assert!(!FailureKind::Heartbeat.is_failure());
    assert!(FailureKind::RuntimePanic.is_failure());
}

#[test]
fn record_ids_are_strict() {
    assert!(RecordId::parse(&"ab".repeat(16)).is_ok());
    for bad in [
        "",
        "AB".repeat(16).as_str(),
        &"a".repeat(31),
        &"g".repeat(32),
    ] {
        assert!(RecordId::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn new_cuts_long_text_at_character_boundaries() {
    let long = "é".repeat(MAX_REASON_LEN);
    let record = FailureRecord::new(id(2), 0, FailureKind::AppExit, &long, "v\u{7}1", &long)
        .with_frames(std::iter::repeat_n("f".repeat(1000), 100));
    assert!(record.reason.len() <= MAX_REASON_LEN);
    assert!(record.component_id.len() <= MAX_FIELD_LEN);
    assert_eq!(record.component_version, "v 1");
    assert_eq!(record.frames.len(), MAX_FRAMES);
    record.encode().unwrap();
    let mut many = record;
    for n in 0..100 {
        many = many.with_detail(&format!("k{n}"), n);
    }
    assert_eq!(many.details.len(), MAX_DETAILS);
}

#[test]
fn bad_input_is_a_typed_error() {
    let check = |json: &str| FailureRecord::read(json.as_bytes()).unwrap_err();
    let good = String::from_utf8(sample().encode().unwrap()).unwrap();
    assert!(matches!(check("{"), ReportError::Malformed(_)));
    assert!(matches!(
        check(&good.replace("\"trap\"", "\"bogus\"")),
        ReportError::Malformed(_)
    ));
    assert!(matches!(
        check(&good.replace("\"reason\"", "\"extra\":1,\"reason\"")),
        ReportError::Malformed(_)
    ));
    assert!(matches!(
        check(&good.replace("1700000000000", "-5")),
        ReportError::Invalid { field: "at", .. }
    ));
    assert!(matches!(
        check(&good.replace("wasm trap", &"x".repeat(MAX_REASON_LEN))),
        ReportError::TooLong { what: "reason", .. }
    ));
    assert!(matches!(
        check(&good.replace("wasm trap", "a\\u0000b")),
        ReportError::Invalid {
            field: "reason",
            ..
        }
    ));
    assert!(matches!(
        FailureRecord::read(&vec![b' '; MAX_RECORD_LEN + 1]),
        Err(ReportError::TooLong { what: "record", .. })
    ));
    assert!(matches!(
        ReportBatch::read(b"{\"records\":[]}"),
        Err(ReportError::Invalid {
            field: "records",
            ..
        })
    ));
    let too_many = ReportBatch {
        records: vec![sample(); MAX_BATCH_RECORDS + 1],
    };
    assert!(matches!(
        too_many.encode(),
        Err(ReportError::TooMany {
            what: "records",
            ..
        })
    ));
}

proptest! {
    #[test]
    fn reading_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = FailureRecord::read(&bytes);
        let _ = ReportBatch::read(&bytes);
    }

    #[test]
    fn any_constructed_record_round_trips(
        reason in ".{0,2000}",
        component in "[a-z0-9-]{1,200}",
        frames in proptest::collection::vec(".{0,300}", 0..40),
        at in 0i64..i64::MAX,
    ) {
        let record = FailureRecord::new(id(3), at, FailureKind::LimitHit, &component, "1.0.0", &reason)
            .with_frames(frames);
        let bytes = record.encode().unwrap();
        prop_assert_eq!(FailureRecord::read(&bytes).unwrap(), record);
    }
}
