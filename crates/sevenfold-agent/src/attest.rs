//! The attestation client: nonce → evidence → verdict.
//!
//! 1. `POST /device/v1/attestation/nonce` with the device ID; the service
//!    answers a fresh single-use nonce.
//! 2. The root of trust quotes [`ATTESTED_REGISTERS`] over
//!    [`quote_nonce`]`(nonce, TLS public key)`, binding the key to be
//!    certified to this attestation. With the boot's event log and failures,
//!    the endorsement and the TLS public key this makes the [`EvidenceBody`].
//! 3. `POST /device/v1/attestation/evidence`: `200` with `verdict: "pass"`
//!    carries the device certificate chain; `422` with `verdict: "fail"`
//!    carries the reasons and no certificate.
//!
//! Only the network part lives here; [`crate::Agent`] saves the outcome.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use sevenfold_core::attestation::{
    quote_nonce, AttestationResponse, EvidenceBody, NonceRequest, NonceResponse,
    ATTESTED_REGISTERS, MAX_BOOT_FAILURES, SERVICE_NONCE_LEN,
};
use sevenfold_rot::{DeviceId, PublicKey, RootOfTrust};
use time::OffsetDateTime;

use crate::boot::BootReport;
use crate::client::ServiceClient;
use crate::status::{VERDICT_FAIL, VERDICT_PASS};
use crate::{certs, AgentError};

/// Path segments of the nonce endpoint.
pub const NONCE_PATH: [&str; 4] = ["device", "v1", "attestation", "nonce"];
/// Path segments of the evidence endpoint.
pub const EVIDENCE_PATH: [&str; 4] = ["device", "v1", "attestation", "evidence"];

/// Why an attestation (or another device API call) did not pass.
///
/// Split by who is at fault: the network ([`Network`](AttestError::Network)),
/// the verifier's judgement of the device ([`Refused`](AttestError::Refused)),
/// the service's load or refusal ([`RateLimited`](AttestError::RateLimited),
/// [`Service`](AttestError::Service)), a service that does not speak this
/// protocol ([`Protocol`](AttestError::Protocol)), and the device itself
/// ([`Local`](AttestError::Local)).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttestError {
    /// The service could not be reached, or TLS failed.
    #[error(
        "cannot reach the Security Service at {url}: {detail}; check service_url in agent.toml, \
         the network, and that the service's certificate comes from the pinned service-ca.pem"
    )]
    Network {
        /// The URL tried.
        url: String,
        /// The transport error and its causes.
        detail: String,
    },
    /// The verifier refused the evidence: no certificate was issued.
    #[error("attestation failed: {}", reasons.join("; "))]
    Refused {
        /// The verifier's reasons.
        reasons: Vec<String>,
        /// A restricted session to fetch the update that remedies it, when
        /// the service grants one (the device is genuine; only its
        /// software was refused).
        remediation: Option<sevenfold_core::attestation::RemediationSession>,
    },
    /// The service asks the device to slow down.
    #[error("the Security Service is rate-limiting this device; retry {}", match retry_after {
        Some(d) => format!("in {} s", d.as_secs()),
        None => "later".to_owned(),
    })]
    RateLimited {
        /// The service's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },
    /// The service refused the request (a problem answer).
    #[error("the Security Service refused the request (HTTP {status}): {detail}")]
    Service {
        /// HTTP status.
        status: u16,
        /// The problem's detail.
        detail: String,
    },
    /// The answer does not follow the device API.
    #[error(
        "the Security Service's answer was not understood: {0}; is service_url a Sevenfold \
         device listener of this version?"
    )]
    Protocol(String),
    /// Something on the device failed (state, root of trust).
    #[error(transparent)]
    Local(#[from] AgentError),
}

/// A passed attestation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attestation {
    /// When the device certificate expires.
    pub not_after: OffsetDateTime,
    /// The tenant that owns the device.
    pub tenant_id: String,
    /// Device certificate followed by the tenant CA (PEM).
    pub certificate_chain_pem: String,
}

/// Builds the evidence for `service_nonce` (device side, no network):
/// quotes the attested registers over [`quote_nonce`] of the nonce and the
/// TLS key, and packs the boot's log and failures.
pub fn build_evidence(
    rot: &dyn RootOfTrust,
    boot: &BootReport,
    endorsement_pem: &str,
    tls_key: &PublicKey,
    service_nonce: &[u8],
) -> Result<EvidenceBody, AgentError> {
    let bound = quote_nonce(service_nonce, tls_key);
    let (quote, registers) = rot.quote(&bound, &ATTESTED_REGISTERS)?;
    let failures = boot
        .failures
        .iter()
        .take(MAX_BOOT_FAILURES)
        .cloned()
        .collect();
    Ok(EvidenceBody::new(
        &rot.device_id(),
        service_nonce,
        &quote,
        &registers,
        &boot.log,
        endorsement_pem,
        tls_key,
        failures,
    ))
}

/// Step 1: a fresh nonce.
pub(crate) async fn request_nonce(
    client: &ServiceClient,
    device_id: &DeviceId,
) -> Result<Vec<u8>, AttestError> {
    let request = NonceRequest {
        device_id: device_id.to_string(),
    };
    let reply = client
        .send(Method::POST, &NONCE_PATH, Some(&request))
        .await?;
    if reply.status != StatusCode::OK {
        return Err(reply.into_error());
    }
    let answer: NonceResponse = serde_json::from_slice(&reply.body)
        .map_err(|e| AttestError::Protocol(format!("nonce answer: {e}")))?;
    let nonce = hex::decode(&answer.nonce)
        .map_err(|e| AttestError::Protocol(format!("nonce is not hex: {e}")))?;
    if nonce.len() != SERVICE_NONCE_LEN {
        return Err(AttestError::Protocol(format!(
            "nonce has {} bytes, expected {SERVICE_NONCE_LEN}",
            nonce.len()
        )));
    }
    Ok(nonce)
}

/// Step 3: submits evidence; a pass is checked before it is believed (the
/// certificate must certify `tls_key`, `not_after` must parse).
pub(crate) async fn submit(
    client: &ServiceClient,
    evidence: &EvidenceBody,
    tls_key: &PublicKey,
) -> Result<Attestation, AttestError> {
    let reply = client
        .send(Method::POST, &EVIDENCE_PATH, Some(evidence))
        .await?;
    let verdict = match reply.status {
        StatusCode::OK | StatusCode::UNPROCESSABLE_ENTITY => {
            match serde_json::from_slice::<AttestationResponse>(&reply.body) {
                Ok(verdict) => verdict,
                // A 422 that is a problem, not a verdict (malformed evidence).
                Err(_) if reply.status != StatusCode::OK => return Err(reply.into_error()),
                Err(e) => return Err(AttestError::Protocol(format!("verdict: {e}"))),
            }
        }
        _ => return Err(reply.into_error()),
    };
    match (reply.status, verdict.verdict.as_str()) {
        (StatusCode::OK, VERDICT_PASS) => accept(verdict, tls_key),
        (StatusCode::UNPROCESSABLE_ENTITY, VERDICT_FAIL) => Err(AttestError::Refused {
            reasons: if verdict.reasons.is_empty() {
                vec!["the verifier gave no reason".to_owned()]
            } else {
                verdict.reasons
            },
            remediation: verdict.remediation,
        }),
        (status, other) => Err(AttestError::Protocol(format!(
            "verdict {other:?} with HTTP {}",
            status.as_u16()
        ))),
    }
}

fn accept(verdict: AttestationResponse, tls_key: &PublicKey) -> Result<Attestation, AttestError> {
    let missing = |field: &str| AttestError::Protocol(format!("a pass without {field}"));
    let chain = verdict
        .certificate_chain_pem
        .ok_or_else(|| missing("certificate_chain_pem"))?;
    let not_after = verdict.not_after.ok_or_else(|| missing("not_after"))?;
    let tenant_id = verdict.tenant_id.ok_or_else(|| missing("tenant_id"))?;
    let certified = certs::certified_key(chain.as_bytes())
        .map_err(|e| AttestError::Protocol(format!("the device certificate: {e}")))?;
    if &certified != tls_key {
        return Err(AttestError::Protocol(
            "the device certificate certifies another key than the one this device sent".into(),
        ));
    }
    let not_after =
        OffsetDateTime::parse(&not_after, &time::format_description::well_known::Rfc3339)
            .map_err(|e| AttestError::Protocol(format!("not_after {not_after:?}: {e}")))?;
    Ok(Attestation {
        not_after,
        tenant_id,
        certificate_chain_pem: chain,
    })
}
