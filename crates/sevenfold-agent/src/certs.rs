//! Reading certificates the device is handed: which key they certify.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use sevenfold_pki::PkiError;
use sevenfold_rot::PublicKey;

/// Largest certificate file the agent reads (a chain of a few certificates).
pub(crate) const MAX_CERTIFICATE_FILE_LEN: u64 = 256 * 1024;

/// The certificates of a PEM text, in order; DER input is one certificate.
pub(crate) fn certificates(input: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    if input.first() == Some(&0x30) {
        return Ok(vec![CertificateDer::from(input.to_vec())]);
    }
    let certs = CertificateDer::pem_slice_iter(input)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the PEM text is malformed: {e}"))?;
    if certs.is_empty() {
        return Err("it holds no PEM CERTIFICATE block".into());
    }
    Ok(certs)
}

/// The public key certified by the first certificate of `input` (PEM or
/// DER); nothing else about the certificate is checked.
pub(crate) fn certified_key(input: &[u8]) -> Result<PublicKey, PkiError> {
    let certs = certificates(input).map_err(PkiError::Malformed)?;
    let first = certs
        .first()
        .ok_or_else(|| PkiError::Malformed("it holds no certificate".into()))?;
    sevenfold_pki::certificate_public_key(first.as_ref())
}
