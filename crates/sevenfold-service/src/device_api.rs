//! The device API (`/device/v1`), on its own listener.
//!
//! Four calls are open to any device over server-authenticated TLS, because
//! a device without a certificate must be able to earn one: asking for a
//! nonce and sending evidence, and, for a TPM device, credential activation
//! (a challenge and its answer; challenges are issued only to claimed
//! devices and rate-limited like nonces). Their cost is bounded: nonces are
//! rate-limited per client address and per device ID (counters in the
//! database, so the limits hold across replicas); evidence is checked
//! against an outstanding nonce before any public-key work, so the nonce
//! limits bound the verifier's work too; stored refusals are limited per
//! client address; bodies are small, and the listener caps connections and
//! handshake time. Every other call needs the
//! device's certificate (mutual TLS), checked against its tenant's CAs on
//! every request, and a device that is not revoked; the update routes also
//! take a restricted session granted with a failing verdict
//! ([`crate::remediation`]).

use axum::extract::{DefaultBodyLimit, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rustls_pki_types::CertificateDer;
use sevenfold_core::attestation::{
    AttestationResponse, EvidenceBody, NonceRequest, NonceResponse, SERVICE_NONCE_LEN,
};
use sevenfold_core::credential::{
    CredentialActivated, CredentialAnswer, CredentialChallenge, CredentialRequest,
};

use crate::api::error::ApiError;
use crate::api::extract::JsonBody;
use crate::api::{timestamp, AppState, ClientAddr};
use std::time::Duration;

use sevenfold_pki::DeviceIdentity;

use crate::attestation::{self, IssueError, Refusal};
use crate::credential;
use crate::recent::Recent;
use crate::store::{now_millis, NewNonce, RateLimit, StoreError};

/// How long a nonce stays valid.
const NONCE_TTL_MS: i64 = 60_000;
/// Rate-limit window.
const WINDOW_MS: i64 = 60_000;
/// Nonces per device ID per window.
pub(crate) const NONCES_PER_DEVICE: i64 = 20;
/// Refused attestations stored per client address per window (past it the
/// device is told to slow down and nothing is stored).
pub(crate) const REFUSALS_PER_SOURCE: i64 = 300;
/// Longest a device API request may take, body included.
const REQUEST_TIMEOUT_SECS: u64 = 30;
/// Largest request body on the device API (evidence with a full event log).
const MAX_DEVICE_BODY: usize = 256 * 1024;

/// The client certificate chain of a mutual-TLS connection, attached to
/// each request by the accept loop.
#[derive(Clone, Debug)]
pub(crate) struct PeerCertificates(pub(crate) Vec<CertificateDer<'static>>);

/// Routes of the device listener.
pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/device/v1/attestation/nonce", post(nonce))
        .route("/device/v1/attestation/evidence", post(evidence))
        .route(
            "/device/v1/attestation/credential",
            post(credential_challenge),
        )
        .route(
            "/device/v1/attestation/credential/activate",
            post(credential_activate),
        )
        .route("/device/v1/whoami", get(whoami))
        .route(
            "/device/v1/tuf/metadata/{file}",
            get(crate::updates::device_routes::metadata),
        )
        .route(
            "/device/v1/tuf/targets/{file}",
            get(crate::updates::device_routes::target),
        )
        .route(
            "/device/v1/updates/progress",
            post(crate::updates::device_routes::progress),
        )
        .route("/device/v1/reports", post(crate::failures::upload))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(|| async { ApiError::NotFound("no such device API endpoint".into()) })
        .layer(DefaultBodyLimit::max(MAX_DEVICE_BODY))
        // A slow or stalled client cannot hold a request open.
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            std::time::Duration::from_secs(REQUEST_TIMEOUT_SECS),
        ))
        .layer(axum::middleware::from_fn(crate::metrics::track))
        .with_state(state)
}

fn source_of(parts_addr: Option<&ClientAddr>) -> String {
    parts_addr
        .map(|a| a.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn rate_limit(bucket: String, max: i64) -> RateLimit {
    RateLimit {
        bucket,
        max,
        window_ms: WINDOW_MS,
    }
}

/// Maps a store error, counting rate-limit refusals.
fn limited(error: StoreError) -> ApiError {
    if matches!(error, StoreError::RateLimited(_)) {
        metrics::counter!("sevenfold_device_rate_limited_total").increment(1);
    }
    error.into()
}

/// `POST /device/v1/attestation/nonce`.
async fn nonce(
    State(state): State<AppState>,
    addr: Option<axum::Extension<ClientAddr>>,
    JsonBody(body): JsonBody<NonceRequest>,
) -> Result<Json<NonceResponse>, ApiError> {
    let source = source_of(addr.as_deref());
    let device = sevenfold_rot::DeviceId::from_hex(&body.device_id)
        .ok_or_else(|| ApiError::BadRequest("device_id must be 64 hex characters".into()))?
        .to_string();
    let mut bytes = [0u8; SERVICE_NONCE_LEN];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| ApiError::Internal("random number generator failed".into()))?;
    let nonce = hex::encode(bytes);
    let limits = [
        rate_limit(
            format!("nonce-source:{source}"),
            i64::from(state.config.nonces_per_source),
        ),
        rate_limit(format!("nonce-device:{device}"), NONCES_PER_DEVICE),
    ];
    state
        .store
        .issue_nonce(
            &NewNonce {
                nonce: &nonce,
                device_id: &device,
                source: &source,
                expires_at: now_millis() + NONCE_TTL_MS,
            },
            &limits,
        )
        .await
        .map_err(limited)?;
    Ok(Json(NonceResponse {
        nonce,
        expires_in_seconds: (NONCE_TTL_MS / 1000) as u32,
    }))
}

/// `POST /device/v1/attestation/credential`: a TPM device asks for a
/// credential-activation challenge (see [`crate::credential`]).
async fn credential_challenge(
    State(state): State<AppState>,
    addr: Option<axum::Extension<ClientAddr>>,
    JsonBody(body): JsonBody<CredentialRequest>,
) -> Result<Json<CredentialChallenge>, ApiError> {
    let source = source_of(addr.as_deref());
    let limits = [
        rate_limit(
            format!("credential-source:{source}"),
            credential::CHALLENGES_PER_SOURCE,
        ),
        rate_limit(
            format!("credential-device:{}", body.device_id.to_ascii_lowercase()),
            credential::CHALLENGES_PER_DEVICE,
        ),
    ];
    credential::challenge(&state.store, &state.manufacturers, &body, limits)
        .await
        .map(Json)
}

/// `POST /device/v1/attestation/credential/activate`: the TPM's answer.
async fn credential_activate(
    State(state): State<AppState>,
    addr: Option<axum::Extension<ClientAddr>>,
    JsonBody(body): JsonBody<CredentialAnswer>,
) -> Result<Json<CredentialActivated>, ApiError> {
    let source = source_of(addr.as_deref());
    let limit = rate_limit(format!("refusal-source:{source}"), REFUSALS_PER_SOURCE);
    credential::activate(&state.store, &body, &source, &limit)
        .await
        .map(Json)
}

/// A verdict as an HTTP response: 200 with the certificate, or 422 with reasons.
struct Verdict(StatusCode, AttestationResponse);

impl IntoResponse for Verdict {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

/// `POST /device/v1/attestation/evidence`.
async fn evidence(
    State(state): State<AppState>,
    addr: Option<axum::Extension<ClientAddr>>,
    JsonBody(body): JsonBody<EvidenceBody>,
) -> Result<Response, ApiError> {
    let source = source_of(addr.as_deref());
    let verified = match attestation::verify(&state.store, &state.manufacturers, &body).await {
        Ok(v) => v,
        Err(Err(store_error)) => return Err(store_error.into()),
        Err(Ok(refusal)) => return refuse(&state, &body.device_id, refusal, &source).await,
    };
    let issued =
        match attestation::issue_certificate(&state.store, &state.tenant_cas, verified, &source)
            .await
        {
            Ok(issued) => issued,
            Err(IssueError::NonceRaced(refusal)) => {
                return refuse(&state, &body.device_id, refusal, &source).await
            }
            Err(e) => return Err(ApiError::Internal(e.to_string())),
        };
    metrics::counter!("sevenfold_attestations_total", "verdict" => "pass").increment(1);
    Ok(Verdict(
        StatusCode::OK,
        AttestationResponse {
            verdict: "pass".into(),
            reasons: vec![],
            certificate_chain_pem: Some(issued.chain_pem),
            not_after: Some(timestamp(issued.not_after_ms)),
            tenant_id: Some(issued.tenant_id),
            remediation: None,
        },
    )
    .into_response())
}

async fn refuse(
    state: &AppState,
    device_id: &str,
    refusal: Refusal,
    source: &str,
) -> Result<Response, ApiError> {
    tracing::info!(device = %device_id, reasons = ?refusal.reasons, "attestation failed");
    metrics::counter!("sevenfold_attestations_total", "verdict" => "fail").increment(1);
    // Verdicts are stored for well-formed device IDs only, so garbage cannot
    // fill the table (it is still counted and logged).
    if sevenfold_rot::DeviceId::from_hex(device_id).is_some() {
        let limit = rate_limit(format!("refusal-source:{source}"), REFUSALS_PER_SOURCE);
        attestation::record_refusal(&state.store, device_id, &refusal, source, &limit)
            .await
            .map_err(limited)?;
    }
    let remediation = crate::remediation::open(state, device_id, &refusal).await?;
    Ok(Verdict(
        StatusCode::UNPROCESSABLE_ENTITY,
        AttestationResponse {
            verdict: "fail".into(),
            reasons: refusal.reasons,
            certificate_chain_pem: None,
            not_after: None,
            tenant_id: None,
            remediation,
        },
    )
    .into_response())
}

/// A device authenticated by its certificate (mutual TLS), claimed and not revoked.
pub(crate) struct AuthenticatedDevice {
    pub(crate) device_id: String,
    pub(crate) tenant_id: String,
    pub(crate) not_after: i64,
    /// Its device group, from the row this request read.
    pub(crate) group_id: Option<String>,
}

impl FromRequestParts<AppState> for AuthenticatedDevice {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let chain = parts
            .extensions
            .get::<PeerCertificates>()
            .filter(|c| !c.0.is_empty())
            .ok_or_else(|| {
                ApiError::Unauthenticated(
                    "this call needs the device certificate (mutual TLS); attest first".into(),
                )
            })?;
        let leaf = chain.0.first().map(|c| c.as_ref()).unwrap_or_default();
        let tenant = tenant_hint(leaf).ok_or_else(|| {
            ApiError::Unauthenticated(
                "the client certificate is not a Sevenfold device certificate".into(),
            )
        })?;
        let trusted = state
            .tenant_cas
            .trusted(&state.store, &tenant)
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let identity = verify_certificate(state, &chain.0, &trusted)?;
        let device_id = identity.device_id().to_string();
        let device = ensure_claimed_and_unrevoked(state, identity.tenant_id(), &device_id).await?;
        if device.failed_attestation {
            return Err(ApiError::Forbidden(
                "the device failed its latest attestation, so the certificates it holds no \
                 longer serve; attest again with accepted software"
                    .into(),
            ));
        }
        Ok(AuthenticatedDevice {
            device_id,
            tenant_id: identity.tenant_id().to_owned(),
            not_after: identity.not_after(),
            group_id: device.group_id,
        })
    }
}

/// Refuses a device that left the tenant or was revoked: checked on every
/// request, never cached, so `device revoke` takes effect at once.
pub(crate) async fn ensure_claimed_and_unrevoked(
    state: &AppState,
    tenant_id: &str,
    device_id: &str,
) -> Result<crate::store::Device, ApiError> {
    let device = match state.store.device(tenant_id, device_id).await {
        Ok(d) => d,
        Err(crate::store::StoreError::NotFound { .. }) => {
            return Err(ApiError::Forbidden(
                "the device no longer belongs to this tenant".into(),
            ))
        }
        Err(e) => return Err(e.into()),
    };
    if device.revoked_at.is_some() {
        return Err(ApiError::Forbidden("the device is revoked".into()));
    }
    Ok(device)
}

/// How long a device certificate, once verified, is remembered as such.
const VERIFIED_CERTIFICATE_TTL: Duration = Duration::from_secs(600);

/// Cache of verified device certificates, keyed by the SHA-256 of the leaf.
pub(crate) type VerifiedCertificates = Recent<DeviceIdentity>;

/// A cache for [`verify_certificate`].
pub(crate) fn verified_certificates() -> VerifiedCertificates {
    Recent::new(VERIFIED_CERTIFICATE_TTL)
}

/// Verifies the client's certificate chain against the tenant's `trusted`
/// CAs, remembering the outcome for a device that reconnects.
///
/// A certificate is immutable and its signature was checked against a CA
/// certificate that is immutable too, so a remembered identity is re-used
/// after checking only what can change: the certificate has not expired,
/// and the CA that signed it is still among the tenant's unexpired CAs. The
/// TLS handshake has already proved the client holds the certificate's key;
/// revocation is checked by the caller on every request.
fn verify_certificate(
    state: &AppState,
    chain: &[CertificateDer<'static>],
    trusted: &[sevenfold_pki::CaCertificate],
) -> Result<DeviceIdentity, ApiError> {
    let now = now_millis() / 1000;
    let leaf = chain.first().map(|c| c.as_ref()).unwrap_or_default();
    let key = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, leaf));
    if let Some(known) = state.verified_certificates.get(&key) {
        let signer_trusted = trusted
            .iter()
            .any(|ca| ca.fingerprint() == known.ca_fingerprint());
        if known.not_after() >= now && signer_trusted {
            return Ok(known);
        }
    }
    let ders: Vec<&[u8]> = chain.iter().map(|c| c.as_ref()).collect();
    let identity = sevenfold_pki::verify_device_certificate(&ders, trusted, now)
        .map_err(|e| ApiError::Unauthenticated(format!("device certificate refused: {e}")))?;
    state.verified_certificates.put(&key, identity.clone());
    Ok(identity)
}

/// `GET /device/v1/whoami` (mutual TLS).
async fn whoami(device: AuthenticatedDevice) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "device_id": device.device_id,
        "tenant_id": device.tenant_id,
        "certificate_not_after": timestamp(device.not_after.saturating_mul(1000)),
    }))
}

/// The tenant a device certificate claims (its `urn:sevenfold:tenant:` SAN
/// URI), read without verification only to choose which CAs to verify it
/// against; the verification that follows checks the same field again.
fn tenant_hint(der: &[u8]) -> Option<String> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|name| match name {
        GeneralName::URI(uri) => uri.strip_prefix("urn:sevenfold:tenant:").map(str::to_owned),
        _ => None,
    })
}
