//! Tests of the image package format: round trip, every-byte tamper
//! detection, signer checks, bounds on hostile input.

use proptest::prelude::*;
use sevenfold_rot::{KeyAlgorithm, SoftwareKey};

use super::*;

const MANIFEST: &[u8] = br#"{
  "SchemaVersion": 1,
  "Name": "blink",
  "ComponentId": "5b9a1c52-3f0b-4a39-9d7e-6f2d1c3e8a10",
  "Version": "1.2.0",
  "SecurityVersion": 3,
  "EntryPoint": "app.wasm",
  "Capabilities": { "Gpio": [8, 9], "MemoryKB": 4096 }
}"#;

fn manifest() -> AppManifest {
    AppManifest::from_json(MANIFEST).unwrap()
}

fn key(alg: KeyAlgorithm) -> SoftwareKey {
    SoftwareKey::generate(alg).unwrap().0
}

fn trusting(key: &SoftwareKey) -> TrustedKeys {
    std::iter::once(key.public_key().clone()).collect()
}

fn verify(bytes: &[u8], trusted: &TrustedKeys) -> Result<(), PackageError> {
    UnverifiedPackage::parse(bytes, &Limits::default())?
        .verify(trusted)
        .map(|_| ())
}

#[test]
fn round_trip_both_algorithms() {
    for alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Ed25519] {
        let key = key(alg);
        let payload = b"\0asm\x01\0\0\0 payload bytes".to_vec();
        let bytes = write_package(&manifest(), &payload, &key).unwrap();
        let verified = UnverifiedPackage::parse(&bytes, &Limits::default())
            .unwrap()
            .verify(&trusting(&key))
            .unwrap();
        assert_eq!(verified.manifest(), &manifest());
        assert_eq!(verified.payload(), &payload[..]);
        assert_eq!(verified.signer_key_id(), &key.public_key().key_id());
        assert_eq!(verified.package_digest().as_bytes().len(), 32);
        // The same content read back through a stream is byte-identical.
        let read = read_package(&bytes[..], &Limits::default()).unwrap();
        assert_eq!(read, bytes);
    }
}

#[test]
fn flipping_any_single_byte_fails_verification() {
    for alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Ed25519] {
        let key = key(alg);
        let trusted = trusting(&key);
        let bytes = write_package(&manifest(), b"tiny payload", &key).unwrap();
        verify(&bytes, &trusted).unwrap();
        for position in 0..bytes.len() {
            for mask in [0x01u8, 0x80, 0xff] {
                let mut tampered = bytes.clone();
                tampered[position] ^= mask;
                let err = verify(&tampered, &trusted).expect_err(&format!(
                    "{alg}: flipping byte {position} with {mask:#x} was accepted"
                ));
                // Every refusal explains itself.
                assert!(!err.to_string().is_empty());
            }
        }
    }
}

#[test]
fn tampering_is_named_by_region() {
    let key = key(KeyAlgorithm::EcdsaP256);
    let trusted = trusting(&key);
    let bytes = write_package(&manifest(), b"payload", &key).unwrap();
    let flip = |at: usize| {
        let mut b = bytes.clone();
        b[at] ^= 1;
        verify(&b, &trusted).unwrap_err()
    };
    assert!(matches!(flip(0), PackageError::BadMagic));
    assert!(matches!(flip(9), PackageError::UnsupportedFormatVersion(0)));
    assert!(matches!(flip(11), PackageError::ReservedByteSet));
    assert!(matches!(flip(12), PackageError::UntrustedSigner(_)));
    // A payload byte: the structure is fine, the signature is not.
    let payload_at = HEADER_LEN + manifest().to_json().len(); // first payload byte
    assert!(matches!(flip(payload_at), PackageError::BadSignature(_)));
}

#[test]
fn other_signer_is_refused() {
    let signer = key(KeyAlgorithm::EcdsaP256);
    let other = key(KeyAlgorithm::EcdsaP256);
    let bytes = write_package(&manifest(), b"payload", &signer).unwrap();
    let err = verify(&bytes, &trusting(&other)).unwrap_err();
    assert!(matches!(err, PackageError::UntrustedSigner(id) if id == signer.public_key().key_id()));
    assert!(
        err.to_string().contains("not a trusted signing key"),
        "{err}"
    );
    assert!(matches!(
        verify(&bytes, &TrustedKeys::new()),
        Err(PackageError::UntrustedSigner(_))
    ));
}

#[test]
fn signature_by_another_key_under_the_trusted_id_is_refused() {
    // An attacker copies the trusted key's ID into a package they signed.
    let trusted_key = key(KeyAlgorithm::EcdsaP256);
    let attacker = key(KeyAlgorithm::EcdsaP256);
    let mut bytes = write_package(&manifest(), b"evil", &attacker).unwrap();
    bytes[12..44].copy_from_slice(trusted_key.public_key().key_id().as_bytes());
    assert!(matches!(
        verify(&bytes, &trusting(&trusted_key)),
        Err(PackageError::BadSignature(_))
    ));
}

#[test]
fn truncation_at_every_length_is_refused() {
    let key = key(KeyAlgorithm::Ed25519);
    let bytes = write_package(&manifest(), b"payload", &key).unwrap();
    for len in 0..bytes.len() {
        let err = verify(&bytes[..len], &trusting(&key)).unwrap_err();
        assert!(
            matches!(err, PackageError::Truncated { .. } | PackageError::Unsigned),
            "length {len}: {err}"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(
        verify(&longer, &trusting(&key)),
        Err(PackageError::TrailingData(1))
    ));
}

#[test]
fn limits_are_enforced_before_reading() {
    let key = key(KeyAlgorithm::Ed25519);
    let bytes = write_package(&manifest(), &[7u8; 4096], &key).unwrap();
    let tight = Limits {
        max_manifest_len: MAX_MANIFEST_LEN,
        max_payload_len: 1024,
    };
    assert!(matches!(
        UnverifiedPackage::parse(&bytes, &tight),
        Err(PackageError::PayloadTooLarge {
            len: 4096,
            max: 1024
        })
    ));
    assert!(matches!(
        read_package(&bytes[..], &tight),
        Err(PackageError::PayloadTooLarge { .. })
    ));
}

#[test]
fn lying_header_does_not_allocate_what_it_announces() {
    // Announce a 1 GiB payload but send only the header: the reader reads
    // what is there and parsing then reports the truncation.
    let key = key(KeyAlgorithm::Ed25519);
    let mut bytes = write_package(&manifest(), b"x", &key).unwrap();
    bytes[48..56].copy_from_slice(&(1u64 << 30).to_be_bytes());
    let read = read_package(&bytes[..], &Limits::default()).unwrap();
    assert!(read.capacity() < 1 << 20, "allocated {}", read.capacity());
    assert!(matches!(
        UnverifiedPackage::parse(&read, &Limits::default()),
        Err(PackageError::Truncated {
            part: "payload",
            ..
        })
    ));
}

#[test]
fn oversized_signature_field_is_refused() {
    let key = key(KeyAlgorithm::Ed25519);
    let mut bytes = write_package(&manifest(), b"payload", &key).unwrap();
    let at = bytes.len() - 64 - 2;
    bytes[at..at + 2].copy_from_slice(&u16::MAX.to_be_bytes());
    assert!(matches!(
        verify(&bytes, &trusting(&key)),
        Err(PackageError::SignatureTooLong { len: 65535, .. })
    ));
}

#[test]
fn invalid_manifest_inside_is_named() {
    let key = key(KeyAlgorithm::Ed25519);
    let mut bytes = write_package(&manifest(), b"payload", &key).unwrap();
    let at = HEADER_LEN + 1; // inside the JSON text
    bytes[at] = b'#';
    let err = verify(&bytes, &trusting(&key)).unwrap_err();
    assert!(matches!(err, PackageError::Manifest(_)), "{err}");
    assert!(err
        .to_string()
        .starts_with("manifest inside the package is invalid"));
}

proptest! {
    #[test]
    fn parsing_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = UnverifiedPackage::parse(&bytes, &Limits::default());
        let _ = read_package(&bytes[..], &Limits::default());
    }

    #[test]
    fn arbitrary_header_prefix_never_panics(
        len_m in any::<u32>(), len_p in any::<u64>(), tail in proptest::collection::vec(any::<u8>(), 0..256)
    ) {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&MAGIC);
        bytes.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
        bytes.extend_from_slice(&[1, 0]);
        bytes.extend_from_slice(&[0; 32]);
        bytes.extend_from_slice(&len_m.to_be_bytes());
        bytes.extend_from_slice(&len_p.to_be_bytes());
        bytes.extend_from_slice(&tail);
        let _ = UnverifiedPackage::parse(&bytes, &Limits::default());
        let _ = read_package(&bytes[..], &Limits::default());
    }

    #[test]
    fn any_mutation_of_a_valid_package_is_refused(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4)
    ) {
        let key = SoftwareKey::generate(KeyAlgorithm::Ed25519).unwrap().0;
        let bytes = write_package(&manifest(), b"payload", &key).unwrap();
        let mut tampered = bytes.clone();
        for (index, mask) in edits {
            tampered[index.index(bytes.len())] ^= mask;
        }
        prop_assume!(tampered != bytes);
        prop_assert!(verify(&tampered, &trusting(&key)).is_err());
    }
}
