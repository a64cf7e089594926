//! TPM credential activation on the wire: how a TPM device proves to the
//! service that its attestation key (AK) lives in the same TPM as an
//! endorsement key (EK) whose certificate a trusted TPM maker signed.
//!
//! 1. `POST /device/v1/attestation/credential` with a [`CredentialRequest`]:
//!    the EK certificate and the AK's public area. The service checks the
//!    certificate chains to a trusted TPM CA and the AK is the device's key,
//!    runs `TPM2_MakeCredential` (EK, AK name, fresh secret), and answers a
//!    [`CredentialChallenge`] (single use, expiring, held in the database).
//! 2. The device's TPM runs `TPM2_ActivateCredential`, which releases the
//!    secret only if that EK and an object with that AK name are both in it.
//! 3. `POST /device/v1/attestation/credential/activate` with a
//!    [`CredentialAnswer`]; on the right secret the service records the
//!    binding and answers [`CredentialActivated`].
//!
//! Binary values are hex. The service checks every field; these are only
//! the shapes.

use serde::{Deserialize, Serialize};

/// Path segments of the challenge endpoint.
pub const CREDENTIAL_PATH: [&str; 4] = ["device", "v1", "attestation", "credential"];
/// Path segments of the answer endpoint.
pub const ACTIVATE_PATH: [&str; 5] = ["device", "v1", "attestation", "credential", "activate"];

/// Step 1: a TPM device asks for a credential-activation challenge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialRequest {
    /// The device (64 hex characters).
    pub device_id: String,
    /// The TPM's EK certificate (DER, hex), as the TPM maker stored it in NV.
    pub ek_certificate: String,
    /// The attestation key's marshalled `TPMT_PUBLIC`, hex.
    pub ak_public_area: String,
}

/// Step 1's answer: the `TPM2_MakeCredential` output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialChallenge {
    /// What the answer names.
    pub challenge_id: String,
    /// `TPM2B_ID_OBJECT` contents, hex.
    pub id_object: String,
    /// `TPM2B_ENCRYPTED_SECRET` contents, hex.
    pub encrypted_secret: String,
    /// Seconds until the challenge expires.
    pub expires_in_seconds: u32,
}

/// Step 3: the secret the TPM released.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialAnswer {
    /// The device (64 hex characters).
    pub device_id: String,
    /// [`CredentialChallenge::challenge_id`].
    pub challenge_id: String,
    /// The secret, hex.
    pub secret: String,
}

/// Step 3's answer: the attestation key is bound to the EK.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialActivated {
    /// SHA-256 of the EK certificate's DER, hex.
    pub ek_fingerprint: String,
}
