//! The attestation verifier: decides whether a device is genuine and runs
//! known software, and only then lets a certificate be issued.
//!
//! Checks, failing closed, in order: the evidence parses; the nonce was
//! issued to this device, is unused and unexpired (a database read, before
//! any public-key work, so evidence without a live nonce costs almost
//! nothing); the endorsement chains to a trusted manufacturer CA and
//! certifies the device ID claimed; the device is claimed and not revoked;
//! the quote is signed by the endorsed key over that nonce (bound to the TLS
//! key to certify) and the event log replays to the quoted registers; a TPM
//! quote's key has completed credential activation with an EK that chains
//! to a trusted TPM maker (see [`crate::credential`]); the
//! device reported no boot check failure; the runtime is a known, unrevoked
//! release; every application measured is an image of the device's tenant.
//!
//! The nonce is consumed in the same transaction that stores the verdict
//! (one commit per attestation): a pass whose nonce another request used in
//! the meantime is turned into a refusal, so each nonce yields at most one
//! certificate even across replicas.
//!
//! Lifecycle as types: [`VerifiedAttestation`] can only be made by
//! [`verify`], and [`issue_certificate`] takes one, so no code path issues a
//! certificate from unchecked evidence.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sevenfold_core::attestation::{
    ComponentKind, Evidence, EvidenceBody, MeasuredComponents, RUNTIME_COMPONENT_ID,
};
use sevenfold_pki::CaCertificate;
use sevenfold_rot::{PublicKey, QuoteFormat};

use crate::credential;
use crate::recent::Recent;
use crate::store::{
    now_millis, AttestationRecord, CaKind, RateLimit, Store, StoreError, VerdictWrite,
};
use crate::tenant_ca;

/// The manufacturer CAs of `kind` the server trusts, parsed: what
/// endorsements (kind [`CaKind::Endorsement`]) or TPM EK certificates (kind
/// [`CaKind::Tpm`]) are checked against. A stored CA that does not parse is
/// logged and left out (fails closed: its devices are refused).
pub(crate) async fn trusted_cas(
    store: &Store,
    kind: CaKind,
) -> Result<Vec<CaCertificate>, StoreError> {
    let mut trusted = Vec::new();
    for ca in store.list_manufacturer_cas().await? {
        if ca.kind != kind {
            continue;
        }
        match CaCertificate::from_der(&ca.cert_der) {
            Ok(cert) => trusted.push(cert),
            Err(e) => tracing::error!(
                fingerprint = %ca.fingerprint,
                error = %e,
                "stored manufacturer CA does not parse; not trusted"
            ),
        }
    }
    Ok(trusted)
}

/// The CAs that endorse device keys (what claims check).
pub(crate) async fn trusted_manufacturers(store: &Store) -> Result<Vec<CaCertificate>, StoreError> {
    trusted_cas(store, CaKind::Endorsement).await
}

/// How long the attestation path reuses the trusted manufacturer CAs before
/// reading them again. Safe to cache: manufacturer CAs are only ever added,
/// and one added on another replica is, for these few seconds, refused here
/// (fails closed).
const MANUFACTURERS_TTL: Duration = Duration::from_secs(5);

/// [`trusted_cas`] as the attestation and credential-activation paths see
/// them: each kind read at most every [`MANUFACTURERS_TTL`].
pub(crate) struct ManufacturerTrust {
    recent: Recent<Arc<Vec<CaCertificate>>>,
}

impl ManufacturerTrust {
    pub(crate) fn new() -> ManufacturerTrust {
        ManufacturerTrust {
            recent: Recent::new(MANUFACTURERS_TTL),
        }
    }

    /// The trusted CAs of `kind`.
    pub(crate) async fn current(
        &self,
        store: &Store,
        kind: CaKind,
    ) -> Result<Arc<Vec<CaCertificate>>, StoreError> {
        if let Some(trusted) = self.recent.get(kind.as_str()) {
            return Ok(trusted);
        }
        let trusted = Arc::new(trusted_cas(store, kind).await?);
        self.recent.put(kind.as_str(), Arc::clone(&trusted));
        Ok(trusted)
    }

    /// Forgets the cached lists (this replica trusted a new manufacturer).
    pub(crate) fn changed(&self) {
        self.recent.forget(CaKind::Endorsement.as_str());
        self.recent.forget(CaKind::Tpm.as_str());
    }
}

/// Lifetime of a device certificate.
pub(crate) const DEVICE_CERT_SECONDS: u32 = 24 * 60 * 60;

/// Evidence that passed every check.
pub(crate) struct VerifiedAttestation {
    device_id: String,
    tenant_id: String,
    tls_key: PublicKey,
    measured: MeasuredComponents,
    nonce: String,
}

/// A refusal: what the device and the operator are told.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) tenant_id: Option<String>,
    pub(crate) reasons: Vec<String>,
    pub(crate) measured: Option<MeasuredComponents>,
    /// The evidence's nonce, once it has been found outstanding: the
    /// refusal uses it up.
    pub(crate) nonce: Option<String>,
    /// When the evidence proved the device genuine and only its software
    /// was refused: the refused components, whose update it may still
    /// fetch in a restricted session. Empty otherwise.
    pub(crate) remediable: Vec<String>,
}

impl Refusal {
    fn new(tenant_id: Option<&str>, reason: impl Into<String>) -> Refusal {
        Refusal {
            tenant_id: tenant_id.map(str::to_owned),
            reasons: vec![reason.into()],
            measured: None,
            nonce: None,
            remediable: Vec::new(),
        }
    }

    fn spending(mut self, nonce: &str) -> Refusal {
        self.nonce = Some(nonce.to_owned());
        self
    }
}

/// Runs every check on `body`. `Err(Ok(refusal))` is a verdict of fail;
/// `Err(Err(e))` is a failure of the service itself.
pub(crate) async fn verify(
    store: &Store,
    manufacturers: &ManufacturerTrust,
    body: &EvidenceBody,
) -> Result<VerifiedAttestation, Result<Refusal, StoreError>> {
    let evidence = Evidence::parse(body)
        .map_err(|e| Ok(Refusal::new(None, format!("malformed evidence: {e}"))))?;
    let device_id = evidence.device_id.to_string();
    let nonce = hex::encode(&evidence.nonce);

    // The nonce first: ours, for this device, unused and unexpired. Only
    // read here; the verdict consumes it.
    let outstanding = store.outstanding_nonce(&nonce).await.map_err(Err)?;
    let device = store.device_by_id(&device_id).await.map_err(Err)?;
    let tenant = device.as_ref().map(|d| d.tenant_id.clone());
    match outstanding {
        None => {
            return Err(Ok(Refusal::new(
                tenant.as_deref(),
                "the nonce is unknown or was already used (replay)",
            )))
        }
        Some((for_device, _)) if for_device != device_id => {
            return Err(Ok(Refusal::new(
                tenant.as_deref(),
                "the nonce was issued to another device",
            )))
        }
        Some((_, expires_at)) if expires_at < now_millis() => {
            return Err(Ok(Refusal::new(
                tenant.as_deref(),
                "the nonce has expired; ask for a new one",
            )
            .spending(&nonce)))
        }
        Some(_) => {}
    }
    let refuse = |tenant: Option<&str>, reason: String| {
        Err(Ok(Refusal::new(tenant, reason).spending(&nonce)))
    };

    // Endorsement: a genuine device of a trusted manufacturer.
    let endorsers = manufacturers
        .current(store, CaKind::Endorsement)
        .await
        .map_err(Err)?;
    let endorsement = match sevenfold_pki::verify_endorsement(
        evidence.endorsement_pem.as_bytes(),
        &endorsers,
        now_millis() / 1000,
    ) {
        Ok(endorsement) => endorsement,
        Err(e) => return refuse(None, format!("endorsement refused: {e}")),
    };
    if endorsement.device_id() != evidence.device_id {
        return refuse(
            None,
            format!(
                "the endorsement is for device {}, not {device_id}",
                endorsement.device_id()
            ),
        );
    }

    // Claimed and not revoked.
    let Some(device) = device else {
        return refuse(
            None,
            format!("device {device_id} is not claimed by any tenant"),
        );
    };
    let tenant = device.tenant_id.clone();
    if device.revoked_at.is_some() {
        return refuse(Some(&tenant), "the device is revoked".to_owned());
    }
    if device.public_key_der != endorsement.public_key().spki_der() {
        return refuse(
            Some(&tenant),
            "the endorsement's key is not the key the device was claimed with".to_owned(),
        );
    }

    // Quote and event log.
    let measured = match evidence.check(endorsement.public_key(), &evidence.nonce) {
        Ok(measured) => measured,
        Err(e) => return refuse(Some(&tenant), e.to_string()),
    };

    // A TPM quote is only as good as the proof that its key is a TPM's:
    // the attestation key must be bound, by credential activation, to an EK
    // that still chains to a trusted TPM maker.
    if evidence.quote.format() == QuoteFormat::Tpm2 {
        let tpm_cas = manufacturers
            .current(store, CaKind::Tpm)
            .await
            .map_err(Err)?;
        if let Err(reason) = credential::check_binding(store, &tpm_cas, &device_id)
            .await
            .map_err(Err)?
        {
            return refuse(Some(&tenant), reason);
        }
    }

    // Reference values.
    let mut reasons = Vec::new();
    let mut refused = BTreeSet::new();
    for failure in &evidence.boot_failures {
        reasons.push(format!(
            "boot check failed for {}: {}",
            failure.component, failure.reason
        ));
        refused.insert(failure.component.clone());
    }
    judge_measurements(store, &tenant, &measured, &mut reasons, &mut refused)
        .await
        .map_err(Err)?;
    if !reasons.is_empty() {
        return Err(Ok(Refusal {
            tenant_id: Some(tenant),
            reasons,
            measured: Some(measured),
            nonce: Some(nonce),
            remediable: refused.into_iter().collect(),
        }));
    }
    Ok(VerifiedAttestation {
        device_id,
        tenant_id: tenant,
        tls_key: evidence.tls_key,
        measured,
        nonce,
    })
}

/// Compares the verified measurements with the reference values; adds a
/// reason for each that does not pass, and its component to `refused`
/// ([`RUNTIME_COMPONENT_ID`] for a runtime).
///
/// A TPM's PCRs reset only with the platform, so the log may hold several
/// boot segments (one per start of the agent in this power cycle), each
/// beginning with a runtime measurement. Every segment counts, because its
/// code ran on the device and its extends are in the quoted registers:
/// every runtime measured must be a known, unrevoked release, and every
/// application measured an image of this tenant. The last segment is what
/// runs now; the reasons say when a problem lies in an earlier one.
async fn judge_measurements(
    store: &Store,
    tenant: &str,
    measured: &MeasuredComponents,
    reasons: &mut Vec<String>,
    refused: &mut BTreeSet<String>,
) -> Result<(), StoreError> {
    if measured
        .events()
        .first()
        .is_none_or(|first| first.kind != ComponentKind::Runtime)
    {
        reasons.push("the event log does not begin with the runtime's measurement".to_owned());
        refused.insert(RUNTIME_COMPONENT_ID.to_owned());
    }
    let boots = measured.boots().count();
    for (number, boot) in measured.boots().enumerate() {
        let when = if number + 1 == boots {
            String::new()
        } else {
            format!(
                " (in boot {} of {boots} of this power cycle, before the one that runs now)",
                number + 1
            )
        };
        for event in boot {
            match event.kind {
                ComponentKind::Runtime => {
                    let reason = match store.runtime_release(&event.digest.to_hex()).await? {
                        None => format!(
                            "runtime build {} (version {}) is not a known release{when}",
                            event.digest, event.version
                        ),
                        Some(release) if release.revoked_at.is_some() => format!(
                            "runtime release {} ({}) is revoked; the device must update{when}",
                            release.version, release.digest
                        ),
                        Some(_) => continue,
                    };
                    reasons.push(reason);
                    refused.insert(RUNTIME_COMPONENT_ID.to_owned());
                }
                ComponentKind::Application => {
                    let reason = match store.image(tenant, &event.digest.to_hex()).await {
                        Ok(image) if image.component_id == event.component_id => continue,
                        Ok(image) => format!(
                            "image {} belongs to component {}, but the device ran it as {}{when}",
                            event.digest, image.component_id, event.component_id
                        ),
                        Err(StoreError::NotFound { .. }) => format!(
                            "unknown image hash {} for component {} ({} {}): not an image of this tenant{when}",
                            event.digest, event.component_id, event.name, event.version
                        ),
                        Err(e) => return Err(e),
                    };
                    reasons.push(reason);
                    refused.insert(event.component_id.clone());
                }
            }
        }
    }
    Ok(())
}

/// A certificate issued for a verified attestation.
pub(crate) struct Issued {
    pub(crate) tenant_id: String,
    pub(crate) chain_pem: String,
    pub(crate) not_after_ms: i64,
}

/// Why a verified attestation got no certificate.
#[derive(Debug, thiserror::Error)]
pub(crate) enum IssueError {
    /// The nonce was used by another request between verification and the
    /// verdict (a racing replay): a refusal, to be recorded as such.
    #[error("the nonce was used by another request")]
    NonceRaced(Refusal),
    /// The service failed.
    #[error(transparent)]
    Service(#[from] tenant_ca::TenantCaError),
}

/// Issues the 24-hour device certificate and records the pass, consuming
/// the nonce, in one transaction.
pub(crate) async fn issue_certificate(
    store: &Store,
    tenant_cas: &tenant_ca::TenantCas,
    verified: VerifiedAttestation,
    source: &str,
) -> Result<Issued, IssueError> {
    let ca = tenant_cas.issuing(store, &verified.tenant_id).await?;
    let device_id = sevenfold_rot::DeviceId::from_hex(&verified.device_id)
        .ok_or_else(|| StoreError::Invalid(format!("bad device id {}", verified.device_id)))
        .map_err(tenant_ca::TenantCaError::from)?;
    let now = now_millis();
    let cert = ca
        .issue_device_certificate(
            &device_id,
            &verified.tenant_id,
            &verified.tls_key,
            now / 1000,
            DEVICE_CERT_SECONDS,
        )
        .map_err(tenant_ca::TenantCaError::from)?;
    let chain_pem = format!("{}{}", cert.to_pem(), ca.certificate().to_pem());
    let not_after_ms = cert.not_after().saturating_mul(1000);
    let record = AttestationRecord {
        id: String::new(),
        device_id: verified.device_id.clone(),
        tenant_id: Some(verified.tenant_id.clone()),
        at: now,
        passed: true,
        reasons: "[]".to_owned(),
        measurements: measurements_json(&verified.measured),
        certificate_serial: Some(cert.serial_hex().to_owned()),
        certificate_not_after: Some(not_after_ms),
        source: source.to_owned(),
    };
    let write = VerdictWrite {
        record: &record,
        nonce: Some(&verified.nonce),
        limit: None,
    };
    match store.record_verdict(&write).await {
        Ok(_) => {}
        Err(StoreError::NonceSpent) => {
            return Err(IssueError::NonceRaced(Refusal {
                tenant_id: Some(verified.tenant_id),
                reasons: vec!["the nonce is unknown or was already used (replay)".to_owned()],
                measured: Some(verified.measured),
                nonce: None,
                remediable: Vec::new(),
            }))
        }
        Err(e) => return Err(tenant_ca::TenantCaError::from(e).into()),
    }
    Ok(Issued {
        tenant_id: verified.tenant_id,
        chain_pem,
        not_after_ms,
    })
}

/// Records a fail verdict, counted against `limit` (refusals per client
/// address): past it nothing is stored ([`StoreError::RateLimited`]).
pub(crate) async fn record_refusal(
    store: &Store,
    device_id: &str,
    refusal: &Refusal,
    source: &str,
    limit: &RateLimit,
) -> Result<(), StoreError> {
    let record = AttestationRecord {
        id: String::new(),
        device_id: device_id.to_owned(),
        tenant_id: refusal.tenant_id.clone(),
        at: now_millis(),
        passed: false,
        reasons: serde_json::to_string(&refusal.reasons).unwrap_or_else(|_| "[]".to_owned()),
        measurements: refusal
            .measured
            .as_ref()
            .map(measurements_json)
            .unwrap_or_else(|| "[]".to_owned()),
        certificate_serial: None,
        certificate_not_after: None,
        source: source.to_owned(),
    };
    store
        .record_verdict(&VerdictWrite {
            record: &record,
            nonce: refusal.nonce.as_deref(),
            limit: Some(limit),
        })
        .await?;
    Ok(())
}

/// What the record shows: the last boot segment, what runs now (earlier
/// segments of the power cycle were judged too, and a refusal names them).
fn measurements_json(measured: &MeasuredComponents) -> String {
    let events: Vec<_> = measured
        .current_boot()
        .iter()
        .map(|e| {
            json!({
                "kind": e.kind,
                "component_id": e.component_id,
                "name": e.name,
                "version": e.version,
                "digest": e.digest.to_hex(),
            })
        })
        .collect();
    serde_json::Value::Array(events).to_string()
}
