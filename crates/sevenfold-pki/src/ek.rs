//! A TPM's endorsement key (EK) certificate, checked against the TPM
//! makers' CAs the service trusts: the first half of credential activation.
//!
//! The EK certificate says "this RSA or ECC key is the endorsement key of a
//! genuine TPM of ours". It names no device (an EK is a decryption key and
//! never signs), so unlike an [`Endorsement`](crate::Endorsement) it yields
//! no device ID: what ties it to a device is credential activation
//! (`sevenfold_rot::credential`), which proves that the device's attestation
//! key lives in the TPM holding this EK.

use crate::endorsement::{trusted_leaf, TrustedLeaf};
use crate::{CaCertificate, EndorsementPolicy, PkiError};

/// An EK certificate whose chain to a trusted TPM maker's CA checked out.
///
/// Only [`verify_ek_certificate`] makes one.
#[derive(Clone, Debug)]
pub struct EkCertificate {
    der: Vec<u8>,
    spki_der: Vec<u8>,
    ca_fingerprint: String,
    not_after: i64,
}

impl EkCertificate {
    /// The certificate, DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The endorsement key, as a DER `SubjectPublicKeyInfo` (what
    /// `make_credential` encrypts to).
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// [`CaCertificate::fingerprint`] of the trusted CA the chain ended at.
    pub fn ca_fingerprint(&self) -> &str {
        &self.ca_fingerprint
    }

    /// End of the certificate's validity, unix seconds.
    pub fn not_after(&self) -> i64 {
        self.not_after
    }
}

/// Verifies a TPM EK certificate (PEM or DER) that chains through
/// `intermediates` to one of the `trusted` TPM makers' CAs at `now_unix`:
/// validity periods, signatures, and the EK certificate usage
/// ([`TPM_EK_CERTIFICATE_EKU`](crate::TPM_EK_CERTIFICATE_EKU)), failing
/// closed with a typed [`PkiError`]. The key may be of any type; the caller
/// refuses what it cannot encrypt to.
pub fn verify_ek_certificate(
    cert: &[u8],
    intermediates: &[&[u8]],
    trusted: &[CaCertificate],
    now_unix: i64,
) -> Result<EkCertificate, PkiError> {
    let TrustedLeaf { der, facts, ca } = trusted_leaf(
        cert,
        intermediates,
        trusted,
        now_unix,
        &EndorsementPolicy::tpm_ek(),
    )?;
    Ok(EkCertificate {
        spki_der: facts.spki_der,
        not_after: facts.not_after,
        ca_fingerprint: ca.fingerprint().to_owned(),
        der,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ManufacturerCa;
    use sevenfold_rot::{KeyAlgorithm, SoftwareKey};

    #[test]
    fn a_sevenfold_endorsement_is_no_ek_certificate() {
        let (maker, _) = ManufacturerCa::generate("Maker", 30).unwrap();
        let key = SoftwareKey::generate(KeyAlgorithm::EcdsaP256).unwrap().0;
        let cert = maker.endorse(key.public_key(), 30).unwrap();
        let now = maker.certificate().not_before() + 60;
        let trusted = [maker.certificate().clone()];
        assert!(matches!(
            verify_ek_certificate(cert.der(), &[], &trusted, now),
            Err(PkiError::WrongUsage(_))
        ));
        assert!(matches!(
            verify_ek_certificate(cert.der(), &[], &[], now),
            Err(PkiError::UntrustedIssuer(_))
        ));
        assert!(verify_ek_certificate(b"junk", &[], &trusted, now).is_err());
    }
}
