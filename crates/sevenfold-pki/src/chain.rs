//! The part of certificate-chain verification that endorsements and device
//! certificates share: bounded parsing of the intermediates, and the path
//! from a leaf to one of the trusted CAs (webpki), ending at a CA that is
//! itself valid now. What the leaf must say (usage, identity) and how each
//! failure is explained stay with each kind of certificate.

use std::time::Duration;

use rustls_pki_types::{CertificateDer, UnixTime};
use webpki::{EndEntityCert, ExtendedKeyUsageValidator};

use crate::endorsement::SIGNATURE_ALGORITHMS;
use crate::input::one_certificate;
use crate::{CaCertificate, PkiError, MAX_INTERMEDIATES};

/// Parses up to [`MAX_INTERMEDIATES`] intermediate certificates (each one
/// certificate, PEM or DER).
pub(crate) fn intermediates(given: &[&[u8]]) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    if given.len() > MAX_INTERMEDIATES {
        return Err(PkiError::Malformed(format!(
            "{} intermediate certificates; at most {MAX_INTERMEDIATES} are accepted",
            given.len()
        )));
    }
    given
        .iter()
        .map(|c| one_certificate(c).map(CertificateDer::from))
        .collect()
}

/// Verifies that `leaf_der` chains through `intermediates` to one of
/// `trusted` at `now_unix`, with signatures webpki accepts and `usage`
/// allowed along the path, and returns the trusted CA the path ends at.
///
/// webpki's trust anchors carry no validity period, so the CA's own is
/// checked here; if several trusted certificates share the anchor's key (a
/// CA re-issued with the same key), a currently valid one is preferred.
/// webpki's errors are explained by `explain`, which knows the leaf.
pub(crate) fn path_to_trusted<'t>(
    leaf_der: &[u8],
    intermediates: &[CertificateDer<'_>],
    trusted: &'t [CaCertificate],
    now_unix: i64,
    usage: impl ExtendedKeyUsageValidator,
    explain: impl FnOnce(webpki::Error) -> PkiError,
) -> Result<&'t CaCertificate, PkiError> {
    let anchors: Vec<_> = trusted.iter().map(|ca| ca.anchor().clone()).collect();
    let leaf = CertificateDer::from(leaf_der);
    let end_entity =
        EndEntityCert::try_from(&leaf).map_err(|e| PkiError::Malformed(format!("{e}")))?;
    let time =
        UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(now_unix).unwrap_or(0)));
    let path = end_entity
        .verify_for_usage(
            SIGNATURE_ALGORITHMS,
            &anchors,
            intermediates,
            time,
            usage,
            None,
            None,
        )
        .map_err(explain)?;
    let anchor = path.anchor();
    let candidates: Vec<&CaCertificate> =
        trusted.iter().filter(|ca| ca.anchor() == anchor).collect();
    let ca = candidates
        .iter()
        .find(|ca| ca.check_valid_at(now_unix).is_ok())
        .or(candidates.first())
        .copied()
        .ok_or_else(|| PkiError::Internal("chain ended at an unknown trust anchor".into()))?;
    ca.check_valid_at(now_unix)?;
    Ok(ca)
}
