//! TPM credential activation state in the store, on both back-ends:
//! challenges are single use (taken once, even by racing replicas), one per
//! device, expire with the nonces; bindings replace the device's earlier one.
//! (Rate limits are counted before any work, by `Store::hit_rate_limits`.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::*;
use sevenfold_service::store::{CredentialChallenge, TpmBinding};

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn challenge(id: &str, device: &str, expires_at: i64) -> CredentialChallenge {
    CredentialChallenge {
        id: id.to_owned(),
        device_id: device.to_owned(),
        ak_name: format!("000b{}", "11".repeat(32)),
        ek_cert_der: vec![0x30, 0x82, 0x01, 0x00],
        ek_ca_fingerprint: "ca".repeat(32),
        secret_sha256: "5e".repeat(32),
        expires_at,
    }
}

both!(challenges_are_single_use_and_one_per_device, |db| {
    let store = db.connect().await;
    let device = "d1".repeat(32);
    let first = challenge("c-1", &device, now() + 60_000);
    store.put_credential_challenge(&first).await.unwrap();
    // A second challenge replaces the first.
    let second = challenge("c-2", &device, now() + 60_000);
    store.put_credential_challenge(&second).await.unwrap();
    assert_eq!(store.take_credential_challenge("c-1").await.unwrap(), None);
    assert_eq!(
        store.take_credential_challenge("c-2").await.unwrap(),
        Some(second)
    );
    // Taken: a replayed answer finds nothing.
    assert_eq!(store.take_credential_challenge("c-2").await.unwrap(), None);

    // Racing answers on one challenge: exactly one takes it.
    store
        .put_credential_challenge(&challenge("c-3", &device, now() + 60_000))
        .await
        .unwrap();
    let (a, b) = tokio::join!(
        store.take_credential_challenge("c-3"),
        store.take_credential_challenge("c-3")
    );
    assert_eq!(
        [a.unwrap(), b.unwrap()].iter().flatten().count(),
        1,
        "a challenge answers once"
    );

    // Expired challenges are purged with the nonces.
    store
        .put_credential_challenge(&challenge("c-4", &device, now() - 1))
        .await
        .unwrap();
    assert!(store.purge_attestation_state(now(), 1).await.unwrap() >= 1);
    assert_eq!(store.take_credential_challenge("c-4").await.unwrap(), None);
});

both!(bindings_replace_the_devices_earlier_one, |db| {
    let store = db.connect().await;
    let device = "b1".repeat(32);
    assert_eq!(store.tpm_binding(&device).await.unwrap(), None);
    let at = now();
    let binding = |ek: u8| TpmBinding {
        device_id: device.clone(),
        ak_name: format!("000b{}", "22".repeat(32)),
        ek_cert_der: vec![0x30, ek],
        ek_fingerprint: format!("{ek:02x}").repeat(32),
        ek_ca_fingerprint: "ca".repeat(32),
        activated_at: at,
    };
    store.bind_tpm(&binding(1)).await.unwrap();
    store.bind_tpm(&binding(2)).await.unwrap();
    assert_eq!(store.tpm_binding(&device).await.unwrap(), Some(binding(2)));
    assert_eq!(store.tpm_binding(&"b2".repeat(32)).await.unwrap(), None);
});
