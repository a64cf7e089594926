//! Restricted update sessions for devices that failed attestation on their
//! software only (DESIGN: "Fail: no certificate … it is offered only the
//! remediating update").
//!
//! When the evidence proved the device genuine (endorsement, claim, nonce,
//! quote and event log all check out) but a component it runs was refused
//! (a revoked or unknown runtime, an image the tenant never deployed), the
//! failing verdict carries a token ([`open`]). With it, and no certificate,
//! the device may read its group's TUF metadata, download the targets of
//! the refused components only, and report progress ([`UpdateCaller`]).
//! Everything else on the device API still needs a certificate, which the
//! device earns back by attesting with the remedied software.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use sevenfold_core::attestation::{remediation_covers, RemediationSession};

use crate::api::error::ApiError;
use crate::api::{timestamp, AppState};
use crate::attestation::Refusal;
use crate::device_api::{ensure_claimed_and_unrevoked, AuthenticatedDevice, PeerCertificates};
use crate::store::{now_millis, Image, RemediationGrant};

/// How long a remediation session lasts: long enough to fetch and install
/// an update over a slow link, short enough that a stolen token soon ends.
const SESSION_MS: i64 = 60 * 60 * 1000;

/// Opens a restricted session for a refusal that allows one (see the
/// module documentation); `None` for any other refusal.
pub(crate) async fn open(
    state: &AppState,
    device_id: &str,
    refusal: &Refusal,
) -> Result<Option<RemediationSession>, ApiError> {
    let Some(tenant_id) = &refusal.tenant_id else {
        return Ok(None);
    };
    if refusal.remediable.is_empty() {
        return Ok(None);
    }
    let mut secret = [0u8; 32];
    aws_lc_rs::rand::fill(&mut secret)
        .map_err(|_| ApiError::Internal("random number generator failed".into()))?;
    let token = hex::encode(secret);
    let grant = RemediationGrant {
        tenant_id: tenant_id.clone(),
        device_id: device_id.to_owned(),
        components: refusal.remediable.clone(),
        expires_at: now_millis().saturating_add(SESSION_MS),
    };
    state
        .store
        .open_remediation(&token_sha256(&token), &grant)
        .await?;
    Ok(Some(RemediationSession {
        token,
        expires_at: timestamp(grant.expires_at),
        components: grant.components,
    }))
}

fn token_sha256(token: &str) -> String {
    hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        token.as_bytes(),
    ))
}

/// A caller of the update routes: a device with its certificate (mutual
/// TLS), or one in a restricted session (`Authorization: Bearer`), which
/// may fetch only the targets of `restricted` components.
pub(crate) struct UpdateCaller {
    /// The device, claimed and not revoked.
    pub(crate) device: AuthenticatedDevice,
    /// `Some` in a restricted session: the components it may update.
    pub(crate) restricted: Option<Vec<String>>,
}

impl UpdateCaller {
    /// Refuses an image that a restricted session may not fetch.
    pub(crate) fn may_fetch(&self, image: &Image) -> Result<(), ApiError> {
        let Some(components) = &self.restricted else {
            return Ok(());
        };
        let runtime = image.image_type.eq_ignore_ascii_case("runtime");
        if remediation_covers(components, runtime, &image.component_id) {
            return Ok(());
        }
        Err(ApiError::Forbidden(format!(
            "this device failed attestation: its restricted session may fetch only the update of \
             {}, not {} {}; attest with remedied software to get the rest",
            components.join(", "),
            image.name,
            image.version
        )))
    }
}

impl FromRequestParts<AppState> for UpdateCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let has_certificate = parts
            .extensions
            .get::<PeerCertificates>()
            .is_some_and(|c| !c.0.is_empty());
        let bearer = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let (false, Some(token)) = (has_certificate, bearer) else {
            return Ok(UpdateCaller {
                device: AuthenticatedDevice::from_request_parts(parts, state).await?,
                restricted: None,
            });
        };
        let grant = state
            .store
            .remediation(&token_sha256(token.trim()))
            .await?
            .ok_or_else(|| {
                ApiError::Unauthenticated(
                    "the remediation session is unknown or has ended; attest again".into(),
                )
            })?;
        let device =
            ensure_claimed_and_unrevoked(state, &grant.tenant_id, &grant.device_id).await?;
        Ok(UpdateCaller {
            device: AuthenticatedDevice {
                device_id: grant.device_id,
                tenant_id: grant.tenant_id,
                not_after: grant.expires_at / 1000,
                group_id: device.group_id,
            },
            restricted: Some(grant.components),
        })
    }
}
