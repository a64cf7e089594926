//! TPM credential activation, the device's half: proves to the service
//! that the device key (a TPM attestation key) lives in the TPM whose
//! endorsement key a trusted TPM maker certified.
//!
//! Run once per agent start, before the first attestation, by a device
//! whose root of trust has a TPM ([`RootOfTrust::tpm_endorsement`]):
//! the EK certificate (from the TPM's NV) and the AK's public area go to
//! the service, which answers a `TPM2_MakeCredential` challenge; the TPM's
//! `TPM2_ActivateCredential` releases its secret only if the EK and the AK
//! are both in it; the secret goes back. The service refuses TPM quotes from
//! a device that has not done this (see the service's `credential.rs`).
//!
//! [`RootOfTrust::tpm_endorsement`]: sevenfold_rot::RootOfTrust::tpm_endorsement

use reqwest::{Method, StatusCode};
use sevenfold_core::credential::{
    CredentialActivated, CredentialAnswer, CredentialChallenge, CredentialRequest, ACTIVATE_PATH,
    CREDENTIAL_PATH,
};
use sevenfold_rot::credential::{Credential, TpmEndorsement};
use sevenfold_rot::DeviceId;

use crate::attest::AttestError;
use crate::client::{Reply, ServiceClient};
use crate::AgentError;

/// Runs credential activation with the service; returns the fingerprint of
/// the EK certificate the service bound the device key to. A refusal by the
/// service is [`AttestError::Refused`] with its reason.
pub(crate) async fn activate(
    client: &ServiceClient,
    device_id: &DeviceId,
    tpm: &dyn TpmEndorsement,
) -> Result<String, AttestError> {
    let request = CredentialRequest {
        device_id: device_id.to_string(),
        ek_certificate: hex::encode(tpm.endorsement_certificate().map_err(AgentError::from)?),
        ak_public_area: hex::encode(
            tpm.attestation_key_public_area()
                .map_err(AgentError::from)?,
        ),
    };
    let reply = client
        .send(Method::POST, &CREDENTIAL_PATH, Some(&request))
        .await?;
    let challenge: CredentialChallenge = answer(reply, "credential challenge")?;
    let credential = Credential {
        id_object: hex::decode(&challenge.id_object)
            .map_err(|e| AttestError::Protocol(format!("id_object is not hex: {e}")))?,
        encrypted_secret: hex::decode(&challenge.encrypted_secret)
            .map_err(|e| AttestError::Protocol(format!("encrypted_secret is not hex: {e}")))?,
    };
    let secret = tpm
        .activate_credential(credential)
        .map_err(|e| AgentError::CredentialActivation(e.to_string()))?;
    let answer_body = CredentialAnswer {
        device_id: device_id.to_string(),
        challenge_id: challenge.challenge_id,
        secret: hex::encode(secret.as_slice()),
    };
    let reply = client
        .send(Method::POST, &ACTIVATE_PATH, Some(&answer_body))
        .await?;
    let activated: CredentialActivated = answer(reply, "credential activation")?;
    tracing::info!(ek = %activated.ek_fingerprint, "TPM credential activated: the service binds this device key to the TPM's EK");
    Ok(activated.ek_fingerprint)
}

/// A 200 parsed as `T`; a 422 is the service's refusal, with its reason.
fn answer<T: serde::de::DeserializeOwned>(reply: Reply, what: &str) -> Result<T, AttestError> {
    match reply.status {
        StatusCode::OK => serde_json::from_slice(&reply.body)
            .map_err(|e| AttestError::Protocol(format!("{what}: {e}"))),
        StatusCode::UNPROCESSABLE_ENTITY => match reply.into_error() {
            AttestError::Service { detail, .. } => Err(AttestError::Refused {
                reasons: vec![format!("TPM credential activation refused: {detail}")],
                remediation: None,
            }),
            other => Err(other),
        },
        _ => Err(reply.into_error()),
    }
}
