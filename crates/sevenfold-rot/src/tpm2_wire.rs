//! TPM 2.0 wire structures a verifier needs, parsed in pure Rust.
//!
//! A TPM quote is a `TPMS_ATTEST` structure (TPM 2.0 Part 2 §10.12.12)
//! signed by an attestation key, the signature a `TPMT_SIGNATURE` (§11.3.4).
//! This module reads both, and nothing else, so the Security Service checks
//! TPM quotes without the TPM software stack (a C library) being present:
//! it is compiled without the `tpm` feature and always.
//!
//! Parsing is bounded (every length is checked against what is left and
//! against the TPM's own maxima) and never panics; anything unexpected is
//! [`RotError::MalformedQuote`].
//!
//! ```text
//! TPMS_ATTEST (quote):
//!   magic u32 = 0xff544347 (TPM_GENERATED_VALUE) | type u16 = 0x8018 (TPM_ST_ATTEST_QUOTE)
//!   | qualifiedSigner TPM2B_NAME | extraData TPM2B_DATA (the nonce)
//!   | clockInfo (clock u64, resetCount u32, restartCount u32, safe u8) | firmwareVersion u64
//!   | TPMS_QUOTE_INFO: pcrSelect TPML_PCR_SELECTION | pcrDigest TPM2B_DIGEST
//! TPMT_SIGNATURE (ECDSA):
//!   sigAlg u16 = 0x0018 | hash u16 = 0x000b | signatureR TPM2B | signatureS TPM2B
//! ```

use crate::{Digest, RegisterIndex, RotError, DIGEST_LEN, REGISTER_COUNT};

/// `TPM_GENERATED_VALUE`: every structure the TPM signs starts with it, and
/// the TPM refuses to sign external data that does.
pub(crate) const TPM_GENERATED_VALUE: u32 = 0xff54_4347;
/// `TPM_ST_ATTEST_QUOTE`.
const TPM_ST_ATTEST_QUOTE: u16 = 0x8018;
/// `TPM_ALG_SHA256`.
pub(crate) const TPM_ALG_SHA256: u16 = 0x000b;
/// `TPM_ALG_ECDSA`.
pub(crate) const TPM_ALG_ECDSA: u16 = 0x0018;
/// Largest `TPM2B_NAME` (a hash algorithm ID plus a SHA-512 digest).
const MAX_NAME_LEN: usize = 2 + 64;
/// Largest `TPM2B_DATA` (`sizeof(TPMT_HA)` with SHA-512).
const MAX_DATA_LEN: usize = 2 + 64;
/// Largest `sizeofSelect` (`PCR_SELECT_MAX`): 8 bytes covers any real TPM.
const MAX_SELECT_LEN: usize = 8;
/// At most this many banks in one `TPML_PCR_SELECTION` (`HASH_COUNT`).
const MAX_BANKS: u32 = 16;
/// Largest ECDSA P-256 signature component.
const P256_SCALAR_LEN: usize = 32;

/// The parts of a quote's `TPMS_ATTEST` a verifier checks.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct QuoteAttest<'a> {
    /// `extraData`: the verifier's nonce as the TPM received it.
    pub(crate) extra_data: &'a [u8],
    /// The SHA-256 PCRs selected, ascending.
    pub(crate) selection: Vec<RegisterIndex>,
    /// `pcrDigest`: SHA-256 over the selected PCR values in order.
    pub(crate) pcr_digest: Digest,
}

impl<'a> QuoteAttest<'a> {
    /// Parses a `TPMS_ATTEST` that must be a quote over SHA-256 PCRs only.
    pub(crate) fn parse(body: &'a [u8]) -> Result<QuoteAttest<'a>, RotError> {
        let mut r = Reader::quote(body);
        if r.u32("magic")? != TPM_GENERATED_VALUE {
            return Err(malformed("magic is not TPM_GENERATED_VALUE"));
        }
        let tag = r.u16("type")?;
        if tag != TPM_ST_ATTEST_QUOTE {
            return Err(malformed(format!(
                "attestation type {tag:#06x} is not TPM_ST_ATTEST_QUOTE"
            )));
        }
        r.tpm2b(MAX_NAME_LEN, "qualifiedSigner")?;
        let extra_data = r.tpm2b(MAX_DATA_LEN, "extraData")?;
        // clockInfo (8 + 4 + 4 + 1) and firmwareVersion (8): signed, not checked.
        r.take(17 + 8, "clock info and firmware version")?;
        let selection = read_pcr_selection(&mut r)?;
        let digest = r.tpm2b(64, "pcrDigest")?;
        let pcr_digest = <[u8; DIGEST_LEN]>::try_from(digest)
            .map(Digest)
            .map_err(|_| malformed(format!("pcrDigest is {} bytes, not 32", digest.len())))?;
        if !r.rest.is_empty() {
            return Err(malformed("trailing bytes after TPMS_QUOTE_INFO"));
        }
        Ok(QuoteAttest {
            extra_data,
            selection,
            pcr_digest,
        })
    }
}

/// Reads a `TPML_PCR_SELECTION`; every bank must be SHA-256 and a PCR may be
/// selected once only.
fn read_pcr_selection(r: &mut Reader<'_>) -> Result<Vec<RegisterIndex>, RotError> {
    let count = r.u32("PCR selection count")?;
    if count > MAX_BANKS {
        return Err(malformed(format!("{count} PCR banks selected")));
    }
    let mut selected = Vec::new();
    for _ in 0..count {
        let hash = r.u16("PCR bank hash")?;
        if hash != TPM_ALG_SHA256 {
            return Err(malformed(format!(
                "PCR bank {hash:#06x} selected; only SHA-256 is quoted"
            )));
        }
        let size = usize::from(r.u8("sizeofSelect")?);
        if size > MAX_SELECT_LEN {
            return Err(malformed(format!("sizeofSelect {size} is too large")));
        }
        for (byte_index, byte) in r.take(size, "pcrSelect")?.iter().enumerate() {
            for bit in 0..8u32 {
                if byte & (1 << bit) == 0 {
                    continue;
                }
                let pcr = u32::try_from(byte_index)
                    .ok()
                    .and_then(|b| b.checked_mul(8))
                    .and_then(|b| b.checked_add(bit))
                    .unwrap_or(u32::MAX);
                if pcr >= REGISTER_COUNT {
                    return Err(malformed(format!("PCR {pcr} is outside the register bank")));
                }
                selected.push(RegisterIndex::new(pcr)?);
            }
        }
    }
    selected.sort_unstable();
    let before = selected.len();
    selected.dedup();
    if selected.len() != before {
        return Err(malformed("a PCR is selected twice"));
    }
    Ok(selected)
}

/// Converts a marshalled ECDSA `TPMT_SIGNATURE` (SHA-256) into the ASN.1 DER
/// `ECDSA-Sig-Value` that [`crate::PublicKey::verify`] checks.
pub(crate) fn ecdsa_signature_to_der(tpmt_signature: &[u8]) -> Result<Vec<u8>, RotError> {
    let mut r = Reader::quote(tpmt_signature);
    let alg = r.u16("sigAlg")?;
    if alg != TPM_ALG_ECDSA {
        return Err(malformed(format!(
            "signature algorithm {alg:#06x} is not ECDSA"
        )));
    }
    let hash = r.u16("signature hash")?;
    if hash != TPM_ALG_SHA256 {
        return Err(malformed(format!(
            "signature hash {hash:#06x} is not SHA-256"
        )));
    }
    let s_r = r.tpm2b(P256_SCALAR_LEN, "signatureR")?;
    let s_s = r.tpm2b(P256_SCALAR_LEN, "signatureS")?;
    if !r.rest.is_empty() {
        return Err(malformed("trailing bytes after TPMT_SIGNATURE"));
    }
    Ok(ecdsa_der(s_r, s_s))
}

/// DER `SEQUENCE { INTEGER r, INTEGER s }` from big-endian unsigned scalars
/// of at most 32 bytes each (so every length fits in one byte).
pub(crate) fn ecdsa_der(r: &[u8], s: &[u8]) -> Vec<u8> {
    let r = der_unsigned_integer(r);
    let s = der_unsigned_integer(s);
    let mut out = Vec::with_capacity(2 + r.len() + s.len());
    out.push(0x30);
    out.push((r.len() + s.len()) as u8); // ≤ 2 × 35: one length byte
    out.extend_from_slice(&r);
    out.extend_from_slice(&s);
    out
}

fn der_unsigned_integer(bytes: &[u8]) -> Vec<u8> {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    let trimmed = bytes.get(start..).unwrap_or_default();
    let mut value = Vec::with_capacity(trimmed.len() + 1);
    if trimmed.first().is_none_or(|b| b & 0x80 != 0) {
        value.push(0);
    }
    value.extend_from_slice(trimmed);
    let mut out = Vec::with_capacity(value.len() + 2);
    out.push(0x02);
    out.push(value.len() as u8); // ≤ 33
    out.extend_from_slice(&value);
    out
}

/// The DER `SubjectPublicKeyInfo` of the P-256 point (`x`, `y`), each a
/// big-endian coordinate of at most 32 bytes (a TPM may drop leading zeros).
pub(crate) fn p256_spki(x: &[u8], y: &[u8]) -> Result<Vec<u8>, RotError> {
    // SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING 04‖x‖y }
    const PREFIX: [u8; 27] = [
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08,
        0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04,
    ];
    let mut out = PREFIX.to_vec();
    for coordinate in [x, y] {
        let pad = P256_SCALAR_LEN
            .checked_sub(coordinate.len())
            .ok_or_else(|| {
                RotError::MalformedKey("P-256 coordinate longer than 32 bytes".into())
            })?;
        out.extend(std::iter::repeat_n(0u8, pad));
        out.extend_from_slice(coordinate);
    }
    Ok(out)
}

fn malformed(reason: impl Into<String>) -> RotError {
    RotError::MalformedQuote(reason.into())
}

/// A big-endian cursor over untrusted TPM structures that never panics;
/// `error` turns a description of what is wrong into the caller's error.
pub(crate) struct Reader<'a> {
    pub(crate) rest: &'a [u8],
    error: fn(String) -> RotError,
}

impl<'a> Reader<'a> {
    /// A reader whose errors are [`RotError::MalformedQuote`].
    fn quote(bytes: &'a [u8]) -> Reader<'a> {
        Reader::new(bytes, RotError::MalformedQuote)
    }

    pub(crate) fn new(bytes: &'a [u8], error: fn(String) -> RotError) -> Reader<'a> {
        Reader { rest: bytes, error }
    }

    pub(crate) fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], RotError> {
        if self.rest.len() < n {
            return Err((self.error)(format!("truncated {what}")));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], RotError> {
        let bytes = self.take(N, what)?;
        <[u8; N]>::try_from(bytes).map_err(|_| (self.error)(format!("truncated {what}")))
    }

    pub(crate) fn u8(&mut self, what: &str) -> Result<u8, RotError> {
        Ok(u8::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn u16(&mut self, what: &str) -> Result<u16, RotError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn u32(&mut self, what: &str) -> Result<u32, RotError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    /// A `TPM2B_*`: a u16 size, then that many bytes (at most `max`).
    pub(crate) fn tpm2b(&mut self, max: usize, what: &str) -> Result<&'a [u8], RotError> {
        let len = usize::from(self.u16(what)?);
        if len > max {
            return Err((self.error)(format!("{what} of {len} bytes exceeds {max}")));
        }
        self.take(len, what)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A hand-made quote `TPMS_ATTEST` (also used by the quote tests).
    pub(crate) fn attest(nonce: &[u8], banks: &[(u16, &[u8])], digest: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&TPM_GENERATED_VALUE.to_be_bytes());
        b.extend_from_slice(&TPM_ST_ATTEST_QUOTE.to_be_bytes());
        let name = [0x00, 0x0b, 7, 7, 7, 7];
        b.extend_from_slice(&(name.len() as u16).to_be_bytes());
        b.extend_from_slice(&name);
        b.extend_from_slice(&(nonce.len() as u16).to_be_bytes());
        b.extend_from_slice(nonce);
        b.extend_from_slice(&[0x11; 25]);
        b.extend_from_slice(&(banks.len() as u32).to_be_bytes());
        for (hash, select) in banks {
            b.extend_from_slice(&hash.to_be_bytes());
            b.push(select.len() as u8);
            b.extend_from_slice(select);
        }
        b.extend_from_slice(&(digest.len() as u16).to_be_bytes());
        b.extend_from_slice(digest);
        b
    }

    fn reg(i: u32) -> RegisterIndex {
        RegisterIndex::new(i).unwrap()
    }

    #[test]
    fn parses_a_quote_over_pcrs_14_and_15() {
        let body = attest(b"nonce", &[(TPM_ALG_SHA256, &[0, 0xc0, 0])], &[9; 32]);
        let parsed = QuoteAttest::parse(&body).unwrap();
        assert_eq!(parsed.extra_data, b"nonce");
        assert_eq!(parsed.selection, vec![reg(14), reg(15)]);
        assert_eq!(parsed.pcr_digest, Digest([9; 32]));
        // No bank, or an empty bank, is an empty selection.
        assert!(QuoteAttest::parse(&attest(b"", &[], &[0; 32]))
            .unwrap()
            .selection
            .is_empty());
    }

    #[test]
    fn malformed_attests_are_refused() {
        let good = attest(b"n", &[(TPM_ALG_SHA256, &[1, 0, 0])], &[0; 32]);
        let mut bad_magic = good.clone();
        bad_magic[0] = 0;
        let mut bad_type = good.clone();
        bad_type[5] = 0x17; // TPM_ST_ATTEST_CERTIFY
        let mut trailing = good.clone();
        trailing.push(0);
        let sha1 = attest(b"n", &[(0x0004, &[1, 0, 0])], &[0; 32]);
        let twice = attest(
            b"n",
            &[(TPM_ALG_SHA256, &[1, 0, 0]), (TPM_ALG_SHA256, &[1, 0, 0])],
            &[0; 32],
        );
        let beyond_bank = attest(b"n", &[(TPM_ALG_SHA256, &[0, 0, 0, 1])], &[0; 32]);
        let short_digest = attest(b"n", &[(TPM_ALG_SHA256, &[1, 0, 0])], &[0; 20]);
        let huge_select = attest(b"n", &[(TPM_ALG_SHA256, &[0; 9])], &[0; 32]);
        let long_nonce = attest(&[0; 67], &[], &[0; 32]);
        let mut many_banks = attest(b"n", &[], &[0; 32]);
        let count_at = many_banks.len() - 34 - 4;
        many_banks[count_at..count_at + 4].copy_from_slice(&1000u32.to_be_bytes());
        for (what, body) in [
            ("magic", bad_magic),
            ("type", bad_type),
            ("trailing", trailing),
            ("sha1 bank", sha1),
            ("PCR twice", twice),
            ("PCR 24", beyond_bank),
            ("20-byte digest", short_digest),
            ("sizeofSelect 9", huge_select),
            ("67-byte nonce", long_nonce),
            ("1000 banks", many_banks),
        ] {
            assert!(
                matches!(QuoteAttest::parse(&body), Err(RotError::MalformedQuote(_))),
                "{what} was accepted"
            );
        }
        for cut in 0..good.len() {
            assert!(QuoteAttest::parse(&good[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn ecdsa_signatures_convert_to_der() {
        let mut sig = Vec::new();
        sig.extend_from_slice(&TPM_ALG_ECDSA.to_be_bytes());
        sig.extend_from_slice(&TPM_ALG_SHA256.to_be_bytes());
        // r has its top bit set (needs a 0 pad); s has leading zeros to strip.
        sig.extend_from_slice(&32u16.to_be_bytes());
        sig.extend_from_slice(&[0x80; 32]);
        sig.extend_from_slice(&32u16.to_be_bytes());
        let mut s = [0u8; 32];
        s[31] = 5;
        sig.extend_from_slice(&s);
        let der = ecdsa_signature_to_der(&sig).unwrap();
        let mut expected = vec![0x30, 38, 0x02, 33, 0x00];
        expected.extend_from_slice(&[0x80; 32]);
        expected.extend_from_slice(&[0x02, 1, 5]);
        assert_eq!(der, expected);

        let mut rsa = sig.clone();
        rsa[1] = 0x14; // TPM_ALG_RSASSA
        let mut sha1 = sig.clone();
        sha1[3] = 0x04;
        let mut long_r = sig.clone();
        long_r[5] = 33;
        for bad in [rsa, sha1, long_r, sig[..sig.len() - 1].to_vec()] {
            assert!(ecdsa_signature_to_der(&bad).is_err());
        }
        // A zero scalar still encodes as a valid INTEGER.
        assert_eq!(ecdsa_der(&[], &[0]), vec![0x30, 6, 2, 1, 0, 2, 1, 0]);
    }

    #[test]
    fn p256_points_become_spki() {
        let (key, _) = crate::SoftwareKey::generate(crate::KeyAlgorithm::EcdsaP256).unwrap();
        let spki = key.public_key().spki_der();
        let point = &spki[spki.len() - 64..];
        assert_eq!(p256_spki(&point[..32], &point[32..]).unwrap(), spki);
        assert!(p256_spki(&[1; 33], &[1; 32]).is_err());
    }

    proptest::proptest! {
        #[test]
        fn parsing_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = QuoteAttest::parse(&bytes);
            let _ = ecdsa_signature_to_der(&bytes);
        }
    }
}
