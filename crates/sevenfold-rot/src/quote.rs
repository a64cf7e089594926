//! Quotes: the root of trust's signed statement of its register values.
//!
//! A verifier sends a fresh nonce; the root of trust answers with a quote, a
//! signature by the device key over the nonce and a digest of the selected
//! registers. The register values themselves travel beside the quote and are
//! checked against that digest, so a verifier learns the exact values and
//! knows they are current (the nonce) and came from this device (the key).
//!
//! The binary layout of the signed body (format [`QuoteFormat::Sevenfold`]):
//!
//! ```text
//! magic ff 54 43 47 "SVNF" (8) | version u8 = 2 | nonce_len u8 | nonce
//! | count u8 | count × register index u8 | composite digest (32)
//! ```
//!
//! The magic starts with a TPM's `TPM_GENERATED_VALUE` on purpose: a TPM
//! attestation key never signs such a body. `TPM2_Sign` with a restricted
//! key needs a ticket that `TPM2_Hash` refuses for data starting with that
//! value, and every structure the TPM signs itself continues with a
//! `TPM_ST_ATTEST_*` type, never with `"SV"`. So even root on a TPM device,
//! talking to the TPM directly, cannot make a Sevenfold-format quote with
//! the device's key: a TPM device's registers are provable only by real
//! `TPM2_Quote`s.
//!
//! A TPM 2.0 backend produces `TPMS_ATTEST` bodies instead; [`QuoteFormat`]
//! says which, and [`Quote::verify`] dispatches on it.

use crate::{tpm2_wire, Digest, PublicKey, RegisterIndex, RegisterValues, RotError, DIGEST_LEN};

/// Longest nonce a quote carries (a TPM's `TPM2B_DATA` for SHA-256 holds 64).
pub const MAX_NONCE_LEN: usize = 64;

const MAGIC: &[u8; 8] = &[0xff, 0x54, 0x43, 0x47, b'S', b'V', b'N', b'F'];
const BODY_VERSION: u8 = 2;
/// Upper bound for an encoded quote, so decoding never allocates more.
const MAX_ENCODED_LEN: usize = 4096;

/// A fresh random nonce of the recommended length (32 bytes), for verifiers.
pub fn random_nonce() -> Result<[u8; 32], RotError> {
    let mut nonce = [0u8; 32];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| RotError::Crypto("random number generator"))?;
    Ok(nonce)
}

/// How a quote's body is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum QuoteFormat {
    /// Sevenfold's own layout, produced by the `soft` root of trust.
    Sevenfold,
    /// A TPM 2.0 quote: the body is the `TPMS_ATTEST` the TPM signed, the
    /// signature its marshalled ECDSA `TPMT_SIGNATURE` (produced by the `tpm`
    /// root of trust, checked by the pure-Rust parser in `tpm2_wire`).
    Tpm2,
}

impl QuoteFormat {
    fn code(self) -> u8 {
        match self {
            QuoteFormat::Sevenfold => 1,
            QuoteFormat::Tpm2 => 2,
        }
    }

    fn from_code(code: u8) -> Option<QuoteFormat> {
        match code {
            1 => Some(QuoteFormat::Sevenfold),
            2 => Some(QuoteFormat::Tpm2),
            _ => None,
        }
    }
}

/// A signed quote as produced by a root of trust.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quote {
    format: QuoteFormat,
    body: Vec<u8>,
    signature: Vec<u8>,
}

impl Quote {
    /// Encodes the signed body for a Sevenfold-format quote.
    pub(crate) fn sevenfold_body(
        nonce: &[u8],
        registers: &RegisterValues,
    ) -> Result<Vec<u8>, RotError> {
        if nonce.len() > MAX_NONCE_LEN {
            return Err(RotError::NonceTooLong(nonce.len()));
        }
        let mut body = Vec::with_capacity(8 + 2 + nonce.len() + 1 + registers.len() + DIGEST_LEN);
        body.extend_from_slice(MAGIC);
        body.push(BODY_VERSION);
        body.push(nonce.len() as u8); // bounded by MAX_NONCE_LEN above
        body.extend_from_slice(nonce);
        body.push(registers.len() as u8); // at most REGISTER_COUNT
        for index in registers.indices() {
            body.push(index.get() as u8);
        }
        body.extend_from_slice(registers.composite_digest().as_bytes());
        Ok(body)
    }

    /// Assembles a quote from its parts (used by root-of-trust backends).
    pub fn from_parts(format: QuoteFormat, body: Vec<u8>, signature: Vec<u8>) -> Quote {
        Quote {
            format,
            body,
            signature,
        }
    }

    /// The body layout.
    pub fn format(&self) -> QuoteFormat {
        self.format
    }

    /// The signed bytes.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The device key's signature over [`Quote::body`].
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }

    /// Checks that this quote was signed by `device_key` over `expected_nonce`
    /// and that `claimed` are exactly the quoted register values.
    ///
    /// Fails closed: any structural problem, a different nonce, a different
    /// register selection or digest, or a bad signature is an error.
    pub fn verify(
        &self,
        device_key: &PublicKey,
        expected_nonce: &[u8],
        claimed: &RegisterValues,
    ) -> Result<(), RotError> {
        match self.format {
            QuoteFormat::Sevenfold => {
                device_key.verify(&self.body, &self.signature)?;
                let parsed = SevenfoldBody::parse(&self.body)?;
                check_claims(
                    parsed.nonce,
                    &parsed.indices,
                    &parsed.digest,
                    expected_nonce,
                    claimed,
                )
            }
            QuoteFormat::Tpm2 => {
                // The signature is checked first: nothing of an unsigned body is trusted.
                let der = tpm2_wire::ecdsa_signature_to_der(&self.signature)?;
                device_key.verify(&self.body, &der)?;
                let parsed = tpm2_wire::QuoteAttest::parse(&self.body)?;
                check_claims(
                    parsed.extra_data,
                    &parsed.selection,
                    &parsed.pcr_digest,
                    expected_nonce,
                    claimed,
                )
            }
        }
    }

    /// Encodes the quote for transport:
    /// `format u8 | body_len u16 BE | body | sig_len u16 BE | signature`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(5 + self.body.len() + self.signature.len());
        out.push(self.format.code());
        out.extend_from_slice(&(self.body.len() as u16).to_be_bytes());
        out.extend_from_slice(&self.body);
        out.extend_from_slice(&(self.signature.len() as u16).to_be_bytes());
        out.extend_from_slice(&self.signature);
        out
    }

    /// Decodes [`Quote::to_bytes`]; rejects truncated, oversized or trailing data.
    pub fn from_bytes(bytes: &[u8]) -> Result<Quote, RotError> {
        if bytes.len() > MAX_ENCODED_LEN {
            return Err(RotError::MalformedQuote(format!(
                "{} bytes is larger than the {MAX_ENCODED_LEN}-byte limit",
                bytes.len()
            )));
        }
        let mut r = Reader(bytes);
        let format = r.u8("format")?;
        let format = QuoteFormat::from_code(format)
            .ok_or_else(|| RotError::MalformedQuote(format!("unknown quote format {format}")))?;
        let body_len = r.u16("body length")?;
        let body = r.take(usize::from(body_len), "body")?.to_vec();
        let sig_len = r.u16("signature length")?;
        let signature = r.take(usize::from(sig_len), "signature")?.to_vec();
        if !r.0.is_empty() {
            return Err(RotError::MalformedQuote(format!(
                "{} trailing bytes after the signature",
                r.0.len()
            )));
        }
        Ok(Quote {
            format,
            body,
            signature,
        })
    }
}

/// The checks every quote format shares once its signature verified: the
/// signed nonce is the expected one, the signed selection is exactly the
/// claimed registers, and the signed digest is theirs.
fn check_claims(
    signed_nonce: &[u8],
    signed_selection: &[RegisterIndex],
    signed_digest: &Digest,
    expected_nonce: &[u8],
    claimed: &RegisterValues,
) -> Result<(), RotError> {
    if signed_nonce != expected_nonce {
        return Err(RotError::NonceMismatch);
    }
    if !signed_selection.iter().copied().eq(claimed.indices()) {
        return Err(RotError::RegisterDigestMismatch);
    }
    if *signed_digest != claimed.composite_digest() {
        return Err(RotError::RegisterDigestMismatch);
    }
    Ok(())
}

struct SevenfoldBody<'a> {
    nonce: &'a [u8],
    indices: Vec<RegisterIndex>,
    digest: Digest,
}

impl<'a> SevenfoldBody<'a> {
    fn parse(body: &'a [u8]) -> Result<SevenfoldBody<'a>, RotError> {
        let mut r = Reader(body);
        if r.take(MAGIC.len(), "magic")? != MAGIC {
            return Err(RotError::MalformedQuote("bad magic".into()));
        }
        let version = r.u8("version")?;
        if version != BODY_VERSION {
            return Err(RotError::MalformedQuote(format!(
                "unsupported body version {version}"
            )));
        }
        let nonce_len = usize::from(r.u8("nonce length")?);
        if nonce_len > MAX_NONCE_LEN {
            return Err(RotError::NonceTooLong(nonce_len));
        }
        let nonce = r.take(nonce_len, "nonce")?;
        let count = usize::from(r.u8("register count")?);
        let mut indices = Vec::with_capacity(count.min(crate::REGISTER_COUNT as usize));
        for _ in 0..count {
            let index = RegisterIndex::new(u32::from(r.u8("register index")?))?;
            if indices.last().is_some_and(|last| *last >= index) {
                return Err(RotError::MalformedQuote(
                    "register indices not strictly ascending".into(),
                ));
            }
            indices.push(index);
        }
        let mut digest = [0u8; DIGEST_LEN];
        digest.copy_from_slice(r.take(DIGEST_LEN, "register digest")?);
        if !r.0.is_empty() {
            return Err(RotError::MalformedQuote("trailing bytes in body".into()));
        }
        Ok(SevenfoldBody {
            nonce,
            indices,
            digest: Digest(digest),
        })
    }
}

/// A cursor over untrusted bytes that never panics.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], RotError> {
        if self.0.len() < n {
            return Err(RotError::MalformedQuote(format!("truncated {what}")));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u8(&mut self, what: &str) -> Result<u8, RotError> {
        Ok(self.take(1, what)?.first().copied().unwrap_or_default())
    }

    fn u16(&mut self, what: &str) -> Result<u16, RotError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([
            b.first().copied().unwrap_or_default(),
            b.get(1).copied().unwrap_or_default(),
        ]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{KeyAlgorithm, SoftwareKey};

    fn regs(values: &[(u32, &[u8])]) -> RegisterValues {
        RegisterValues::new(
            values
                .iter()
                .map(|(i, m)| (RegisterIndex::new(*i).unwrap(), Digest::of(m)))
                .collect(),
        )
        .unwrap()
    }

    fn signed(key: &SoftwareKey, nonce: &[u8], r: &RegisterValues) -> Quote {
        let body = Quote::sevenfold_body(nonce, r).unwrap();
        let sig = key.sign(&body).unwrap();
        Quote::from_parts(QuoteFormat::Sevenfold, body, sig)
    }

    #[test]
    fn quote_verifies_and_round_trips() {
        let (key, _) = SoftwareKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let r = regs(&[(14, b"runtime"), (15, b"apps")]);
        let q = signed(&key, b"nonce-1", &r);
        q.verify(key.public_key(), b"nonce-1", &r).unwrap();
        let decoded = Quote::from_bytes(&q.to_bytes()).unwrap();
        assert_eq!(decoded, q);
        decoded.verify(key.public_key(), b"nonce-1", &r).unwrap();
    }

    #[test]
    fn quote_fails_for_other_nonce_registers_or_key() {
        let (key, _) = SoftwareKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let (other, _) = SoftwareKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let r = regs(&[(14, b"runtime"), (15, b"apps")]);
        let q = signed(&key, b"nonce-1", &r);
        assert!(matches!(
            q.verify(key.public_key(), b"nonce-2", &r),
            Err(RotError::NonceMismatch)
        ));
        let changed = regs(&[(14, b"runtime"), (15, b"evil")]);
        assert!(matches!(
            q.verify(key.public_key(), b"nonce-1", &changed),
            Err(RotError::RegisterDigestMismatch)
        ));
        let fewer = regs(&[(14, b"runtime")]);
        assert!(q.verify(key.public_key(), b"nonce-1", &fewer).is_err());
        assert!(matches!(
            q.verify(other.public_key(), b"nonce-1", &r),
            Err(RotError::BadSignature)
        ));
    }

    #[test]
    fn sevenfold_bodies_are_what_no_tpm_key_signs() {
        let body = Quote::sevenfold_body(b"n", &RegisterValues::default()).unwrap();
        // TPM_GENERATED_VALUE: a TPM hands out no signing ticket for this data…
        assert_eq!(
            body[..4],
            crate::tpm2_wire::TPM_GENERATED_VALUE.to_be_bytes()
        );
        // …and its own attestation types (TPM_ST_ATTEST_*) are 0x8014..=0x801a.
        let tag = u16::from_be_bytes([body[4], body[5]]);
        assert!(!(0x8014..=0x801a).contains(&tag));
        // So a Sevenfold body is never a TPM quote and the reverse.
        assert!(crate::tpm2_wire::QuoteAttest::parse(&body).is_err());
    }

    #[test]
    fn oversized_nonce_is_refused() {
        assert!(matches!(
            Quote::sevenfold_body(&[0; MAX_NONCE_LEN + 1], &RegisterValues::default()),
            Err(RotError::NonceTooLong(65))
        ));
    }

    /// A TPM-style quote signed by a software P-256 key: the attest body
    /// and a marshalled `TPMT_SIGNATURE`, as a TPM returns them.
    fn tpm2_signed(pkcs8: &[u8], body: Vec<u8>) -> Quote {
        use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8).unwrap();
        let rs = key
            .sign(&aws_lc_rs::rand::SystemRandom::new(), &body)
            .unwrap();
        let (r, s) = rs.as_ref().split_at(32);
        let mut sig = vec![0x00, 0x18, 0x00, 0x0b, 0x00, 0x20];
        sig.extend_from_slice(r);
        sig.extend_from_slice(&[0x00, 0x20]);
        sig.extend_from_slice(s);
        Quote::from_parts(QuoteFormat::Tpm2, body, sig)
    }

    #[test]
    fn tpm2_quote_verifies_through_the_same_path() {
        use crate::tpm2_wire::tests::attest;
        let (key, pkcs8) = SoftwareKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let (other, _) = SoftwareKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let r = regs(&[(14, b"runtime"), (15, b"apps")]);
        let digest = r.composite_digest();
        let body = attest(b"nonce-1", &[(0x000b, &[0, 0xc0, 0])], digest.as_bytes());
        let q = tpm2_signed(&pkcs8, body.clone());
        q.verify(key.public_key(), b"nonce-1", &r).unwrap();
        let decoded = Quote::from_bytes(&q.to_bytes()).unwrap();
        assert_eq!(decoded.format(), QuoteFormat::Tpm2);
        decoded.verify(key.public_key(), b"nonce-1", &r).unwrap();

        assert!(matches!(
            q.verify(key.public_key(), b"nonce-2", &r),
            Err(RotError::NonceMismatch)
        ));
        assert!(matches!(
            q.verify(
                key.public_key(),
                b"nonce-1",
                &regs(&[(14, b"runtime"), (15, b"evil")])
            ),
            Err(RotError::RegisterDigestMismatch)
        ));
        assert!(matches!(
            q.verify(key.public_key(), b"nonce-1", &regs(&[(14, b"runtime")])),
            Err(RotError::RegisterDigestMismatch)
        ));
        assert!(matches!(
            q.verify(other.public_key(), b"nonce-1", &r),
            Err(RotError::BadSignature)
        ));
        // A body changed after signing fails the signature, whatever it says.
        let mut tampered = body.clone();
        tampered[12] ^= 1;
        let forged = Quote::from_parts(QuoteFormat::Tpm2, tampered, q.signature().to_vec());
        assert!(matches!(
            forged.verify(key.public_key(), b"nonce-1", &r),
            Err(RotError::BadSignature)
        ));
        // A validly signed body that is not a quote is malformed.
        let mut certify = body;
        certify[5] = 0x17;
        assert!(matches!(
            tpm2_signed(&pkcs8, certify).verify(key.public_key(), b"nonce-1", &r),
            Err(RotError::MalformedQuote(_))
        ));
        // A Sevenfold-format signature is not a TPMT_SIGNATURE.
        let soft = signed(&key, b"nonce-1", &r);
        let mixed = Quote::from_parts(
            QuoteFormat::Tpm2,
            q.body().to_vec(),
            soft.signature().to_vec(),
        );
        assert!(mixed.verify(key.public_key(), b"nonce-1", &r).is_err());
    }

    proptest::proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = Quote::from_bytes(&bytes);
            let _ = SevenfoldBody::parse(&bytes);
        }
    }
}
