//! TPM credential activation, the registrar's half (as Keylime's
//! registrar does it): proves that a device's attestation key (AK) lives in
//! the same TPM as an endorsement key (EK) certified by a trusted TPM maker.
//!
//! Where it sits in the flow: a TPM device runs it at every agent start,
//! before its first attestation ([`challenge`] then [`activate`]); the
//! verifier ([`check_binding`], called by [`crate::attestation::verify`])
//! refuses a `QuoteFormat::Tpm2` quote unless the device's AK has a
//! completed activation with an EK certificate that still chains to a
//! trusted CA of kind `tpm`. The Sevenfold endorsement of the AK (checked at
//! claim and at every attestation) stays required as well: the EK binding
//! proves the key is in a genuine TPM, the endorsement that the device maker
//! vouched for this device.
//!
//! 1. [`challenge`]: the device sends its EK certificate and the AK's
//!    `TPMT_PUBLIC`. The AK must be the claimed (not revoked) device's key
//!    and a restricted, `fixedTPM` signing key; the EK certificate must chain
//!    to a trusted TPM CA. The service runs `TPM2_MakeCredential` in software
//!    (EK, AK name, 32 random bytes) and stores the challenge: in the
//!    database (any replica can check the answer), single use, expiring in
//!    [`CHALLENGE_TTL_MS`], one per device, only the secret's SHA-256 kept.
//!    Requests are rate-limited per client address and per device, counted
//!    before any other work.
//! 2. The device's TPM answers with `TPM2_ActivateCredential`, which
//!    releases the secret only if that EK and an object with that AK name
//!    are both loaded in it.
//! 3. [`activate`]: the challenge is taken (deleted) by the first answer,
//!    right or wrong; an expired or replayed one, or a wrong secret, is
//!    refused with the reason and recorded in the device's attestation
//!    history. The right secret records the binding (migration 0007).

use sevenfold_core::credential::{
    CredentialActivated, CredentialAnswer, CredentialChallenge, CredentialRequest,
};
use sevenfold_pki::{verify_ek_certificate, CaCertificate};
use sevenfold_rot::credential::{make_credential, AttestationKey, MAX_CREDENTIAL_LEN};
use sevenfold_rot::{DeviceId, Digest};

use crate::api::error::ApiError;
use crate::attestation::{record_refusal, ManufacturerTrust, Refusal};
use crate::store::{self, now_millis, CaKind, RateLimit, Store, StoreError, TpmBinding};

/// How long a challenge may be answered.
pub(crate) const CHALLENGE_TTL_MS: i64 = 60_000;
/// Challenges per device ID per rate-limit window.
pub(crate) const CHALLENGES_PER_DEVICE: i64 = 10;
/// Challenges per client address per rate-limit window.
pub(crate) const CHALLENGES_PER_SOURCE: i64 = 300;

/// Step 1: checks the request and issues a challenge.
pub(crate) async fn challenge(
    store: &Store,
    trust: &ManufacturerTrust,
    request: &CredentialRequest,
    limits: [RateLimit; 2],
) -> Result<CredentialChallenge, ApiError> {
    let device_id = DeviceId::from_hex(&request.device_id)
        .ok_or_else(|| ApiError::BadRequest("device_id must be 64 hex characters".into()))?;
    // Counted before any work, so refused requests cost a flood its budget too.
    store.hit_rate_limits(&limits).await?;
    let area = hex::decode(&request.ak_public_area)
        .map_err(|e| ApiError::BadRequest(format!("ak_public_area is not hex: {e}")))?;
    let ak = AttestationKey::parse(&area).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    if DeviceId::of(ak.public_key()) != device_id {
        return Err(ApiError::Unprocessable(format!(
            "the attestation key's public area is not the key of device {device_id}"
        )));
    }
    let device = store
        .device_by_id(&device_id.to_string())
        .await?
        .filter(|d| d.revoked_at.is_none())
        .ok_or_else(|| {
            ApiError::Unprocessable(format!(
                "device {device_id} is not claimed by any tenant, or is revoked"
            ))
        })?;
    if device.public_key_der != ak.public_key().spki_der() {
        return Err(ApiError::Unprocessable(
            "the attestation key is not the key the device was claimed with".into(),
        ));
    }
    let ek_der = hex::decode(&request.ek_certificate)
        .map_err(|e| ApiError::BadRequest(format!("ek_certificate is not hex: {e}")))?;
    let tpm_cas = trust.current(store, CaKind::Tpm).await?;
    let ek = verify_ek_certificate(&ek_der, &[], &tpm_cas, now_millis() / 1000)
        .map_err(|e| ApiError::Unprocessable(format!("EK certificate refused: {e}")))?;

    let mut secret = zeroize::Zeroizing::new([0u8; MAX_CREDENTIAL_LEN]);
    aws_lc_rs::rand::fill(secret.as_mut())
        .map_err(|_| ApiError::Internal("random number generator failed".into()))?;
    let credential = make_credential(ek.spki_der(), ak.name(), secret.as_ref()).map_err(|e| {
        ApiError::Unprocessable(format!(
            "no credential can be made for this EK ({e}); an RSA 2048 EK is supported"
        ))
    })?;
    let stored = store::CredentialChallenge {
        id: store::new_id(),
        device_id: device_id.to_string(),
        ak_name: hex::encode(ak.name()),
        ek_cert_der: ek.der().to_vec(),
        ek_ca_fingerprint: ek.ca_fingerprint().to_owned(),
        secret_sha256: Digest::of(secret.as_ref()).to_hex(),
        expires_at: now_millis() + CHALLENGE_TTL_MS,
    };
    store.put_credential_challenge(&stored).await?;
    Ok(CredentialChallenge {
        challenge_id: stored.id,
        id_object: hex::encode(&credential.id_object),
        encrypted_secret: hex::encode(&credential.encrypted_secret),
        expires_in_seconds: (CHALLENGE_TTL_MS / 1000) as u32,
    })
}

/// Step 3: checks the answer and records the binding. A refusal is also
/// recorded in the device's attestation history (counted against `limit`).
pub(crate) async fn activate(
    store: &Store,
    answer: &CredentialAnswer,
    source: &str,
    limit: &RateLimit,
) -> Result<CredentialActivated, ApiError> {
    let device_id = DeviceId::from_hex(&answer.device_id)
        .ok_or_else(|| ApiError::BadRequest("device_id must be 64 hex characters".into()))?
        .to_string();
    let secret = hex::decode(&answer.secret)
        .map_err(|e| ApiError::BadRequest(format!("secret is not hex: {e}")))?;
    let challenge = store
        .take_credential_challenge(&answer.challenge_id)
        .await?;
    let outcome = match &challenge {
        None => Err("the credential challenge is unknown or was already answered (replay)".into()),
        Some(c) if c.device_id != device_id => {
            Err("the credential challenge was issued to another device".into())
        }
        Some(c) if c.expires_at < now_millis() => {
            Err("the credential challenge has expired; ask for a new one".into())
        }
        Some(c) if Digest::of(&secret).to_hex() != c.secret_sha256 => Err(
            "credential activation failed: the secret is wrong, so the attestation key is not \
             in the TPM of the presented EK certificate"
                .to_owned(),
        ),
        Some(c) => Ok(c),
    };
    let challenge = match outcome {
        Ok(challenge) => challenge,
        Err(reason) => return Err(refused(store, &device_id, reason, source, limit).await),
    };
    let binding = TpmBinding {
        device_id: device_id.clone(),
        ak_name: challenge.ak_name.clone(),
        ek_fingerprint: Digest::of(&challenge.ek_cert_der).to_hex(),
        ek_cert_der: challenge.ek_cert_der.clone(),
        ek_ca_fingerprint: challenge.ek_ca_fingerprint.clone(),
        activated_at: now_millis(),
    };
    store.bind_tpm(&binding).await?;
    tracing::info!(device = %device_id, ek = %binding.ek_fingerprint, "TPM credential activated");
    Ok(CredentialActivated {
        ek_fingerprint: binding.ek_fingerprint,
    })
}

/// Records a refused activation as a failed attestation of the device
/// (when it is claimed) and turns it into the answer.
async fn refused(
    store: &Store,
    device_id: &str,
    reason: String,
    source: &str,
    limit: &RateLimit,
) -> ApiError {
    let tenant_id = match store.device_by_id(device_id).await {
        Ok(device) => device.map(|d| d.tenant_id),
        Err(e) => return e.into(),
    };
    if tenant_id.is_some() {
        let refusal = Refusal {
            tenant_id,
            reasons: vec![reason.clone()],
            measured: None,
            nonce: None,
            remediable: Vec::new(),
        };
        if let Err(e) = record_refusal(store, device_id, &refusal, source, limit).await {
            return e.into();
        }
    }
    tracing::info!(device = %device_id, %reason, "TPM credential activation refused");
    ApiError::Unprocessable(reason)
}

/// The verifier's check for a device that quotes with a TPM: `Ok(Err(reason))`
/// unless its attestation key completed credential activation with an EK
/// certificate that still chains to one of `tpm_cas`.
pub(crate) async fn check_binding(
    store: &Store,
    tpm_cas: &[CaCertificate],
    device_id: &str,
) -> Result<Result<(), String>, StoreError> {
    let Some(binding) = store.tpm_binding(device_id).await? else {
        return Ok(Err(
            "the device quotes with a TPM, but its attestation key has not completed credential \
             activation (nothing proves it lives in a TPM with a trusted endorsement key); the \
             agent activates a credential before it attests"
                .to_owned(),
        ));
    };
    Ok(
        verify_ek_certificate(&binding.ek_cert_der, &[], tpm_cas, now_millis() / 1000)
            .map(|_| ())
            .map_err(|e| {
                format!(
                    "the EK certificate {} this device's attestation key is bound to is no \
                     longer trusted: {e}",
                    binding.ek_fingerprint
                )
            }),
    )
}
