//! `GET /device/v1/whoami` over mutual TLS: proves the device certificate
//! works as a TLS client certificate, and shows what the service makes of it.

use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use crate::attest::AttestError;
use crate::client::ServiceClient;
use crate::StateDir;

/// Path segments of the endpoint.
pub const WHOAMI_PATH: [&str; 3] = ["device", "v1", "whoami"];

/// The service's answer: who the certificate says this device is.
///
/// A device API wire body; it belongs beside the others in
/// `sevenfold_core::attestation` and is here until it moves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhoAmI {
    /// The device the certificate names (64 hex characters).
    pub device_id: String,
    /// The tenant that owns it.
    pub tenant_id: String,
    /// When the presented certificate expires (RFC 3339).
    pub certificate_not_after: String,
}

/// Calls whoami with `device-cert.pem` and `tls-key.p8`; checks the service
/// saw this device.
pub async fn whoami(state: &StateDir) -> Result<WhoAmI, AttestError> {
    let chain = state.certificate_pem()?;
    let key = state.tls_key()?;
    let client = ServiceClient::with_identity(state, &chain, &key)?;
    let reply = client.send::<()>(Method::GET, &WHOAMI_PATH, None).await?;
    if reply.status != StatusCode::OK {
        return Err(reply.into_error());
    }
    let answer: WhoAmI = serde_json::from_slice(&reply.body)
        .map_err(|e| AttestError::Protocol(format!("whoami answer: {e}")))?;
    if answer.device_id != state.device_id().to_string() {
        return Err(AttestError::Protocol(format!(
            "the service identified the certificate as device {}, not this device {}",
            answer.device_id,
            state.device_id()
        )));
    }
    Ok(answer)
}
