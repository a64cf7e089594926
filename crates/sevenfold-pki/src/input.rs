//! Certificate bytes at the edge: PEM or DER in, DER out, with size limits.
//!
//! Everything that accepts a certificate from a file or the network goes
//! through here first, so "is this PEM or DER, and how big may it be" is
//! decided once.

use x509_parser::prelude::{FromDer, X509Certificate};

use crate::PkiError;

/// The PEM label of an X.509 certificate (`-----BEGIN CERTIFICATE-----`).
pub const CERTIFICATE_PEM_LABEL: &str = "CERTIFICATE";

/// Largest DER certificate accepted (TPM EK certificates are about 1.5 KiB).
pub const MAX_CERTIFICATE_LEN: usize = 64 * 1024;

/// Largest PEM text accepted (a bundle of several certificates).
const MAX_PEM_LEN: usize = 1024 * 1024;

/// DER of every certificate in `input`: either one DER certificate, or PEM
/// text holding one or more `CERTIFICATE` blocks (and nothing else).
pub(crate) fn certificates(input: &[u8]) -> Result<Vec<Vec<u8>>, PkiError> {
    // A DER certificate is a SEQUENCE; PEM text starts with '-' or whitespace.
    if input.first() == Some(&0x30) {
        if input.len() > MAX_CERTIFICATE_LEN {
            return Err(too_big(input.len()));
        }
        return Ok(vec![input.to_vec()]);
    }
    if input.len() > MAX_PEM_LEN {
        return Err(PkiError::Malformed(format!(
            "{} bytes of PEM is more than the {MAX_PEM_LEN} accepted",
            input.len()
        )));
    }
    let blocks = pem::parse_many(input).map_err(|e| {
        PkiError::Malformed(format!(
            "not PEM ({e}) and not DER (which starts with 0x30)"
        ))
    })?;
    if blocks.is_empty() {
        return Err(PkiError::Malformed(
            "not PEM (no \"-----BEGIN CERTIFICATE-----\" block) and not DER (which starts with 0x30)"
                .into(),
        ));
    }
    blocks
        .into_iter()
        .map(|block| {
            if block.tag() != CERTIFICATE_PEM_LABEL {
                return Err(PkiError::Malformed(format!(
                    "expected a PEM \"{CERTIFICATE_PEM_LABEL}\" block, found \"{}\"",
                    block.tag()
                )));
            }
            let der = block.into_contents();
            if der.len() > MAX_CERTIFICATE_LEN {
                return Err(too_big(der.len()));
            }
            Ok(der)
        })
        .collect()
}

/// DER of the single certificate in `input` (PEM with exactly one block, or DER).
pub(crate) fn one_certificate(input: &[u8]) -> Result<Vec<u8>, PkiError> {
    let mut all = certificates(input)?;
    match all.pop() {
        Some(der) if all.is_empty() => Ok(der),
        _ => Err(PkiError::Malformed(format!(
            "expected one certificate, found {}; pass the others separately",
            all.len() + 1
        ))),
    }
}

/// Parses DER with x509-parser, refusing trailing bytes.
pub(crate) fn parse_x509(der: &[u8]) -> Result<X509Certificate<'_>, PkiError> {
    let (rest, cert) =
        X509Certificate::from_der(der).map_err(|e| PkiError::Malformed(format!("{e}")))?;
    if !rest.is_empty() {
        return Err(PkiError::Malformed(format!(
            "{} trailing bytes after the certificate",
            rest.len()
        )));
    }
    Ok(cert)
}

/// PEM text of a DER certificate, with `\n` line endings.
pub(crate) fn to_pem(der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(CERTIFICATE_PEM_LABEL, der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

fn too_big(len: usize) -> PkiError {
    PkiError::Malformed(format!(
        "a {len}-byte certificate is larger than the {MAX_CERTIFICATE_LEN} bytes accepted"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &[u8], expected: Result<usize, &str>) {
        match (certificates(input), expected) {
            (Ok(found), Ok(count)) => assert_eq!(found.len(), count),
            (Err(e), Err(needle)) => assert!(e.to_string().contains(needle), "{e}"),
            (found, expected) => panic!("{found:?} but expected {expected:?}"),
        }
    }

    #[test]
    fn pem_or_der_is_told_apart() {
        let block = to_pem(&[0x30, 0x00]);
        check(&[0x30, 0x03, 1, 2, 3], Ok(1));
        check(block.as_bytes(), Ok(1));
        check(format!("{block}{block}").as_bytes(), Ok(2));
        check(b"", Err("not PEM"));
        check(b"hello", Err("not PEM"));
        check(&[0xff, 0xfe, 0x00], Err("not PEM"));
        check(
            pem::encode(&pem::Pem::new("PRIVATE KEY", vec![1])).as_bytes(),
            Err("found \"PRIVATE KEY\""),
        );
        check(&vec![0x30; MAX_CERTIFICATE_LEN + 1], Err("larger than"));
    }

    #[test]
    fn pem_output_uses_unix_line_endings() {
        let text = to_pem(&[0x30, 0x00]);
        assert_eq!(
            text,
            "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n"
        );
    }

    #[test]
    fn exactly_one_is_enforced() {
        let block = to_pem(&[0x30, 0x00]);
        assert_eq!(one_certificate(block.as_bytes()).unwrap(), vec![0x30, 0x00]);
        let err = one_certificate(format!("{block}{block}").as_bytes()).unwrap_err();
        assert!(err.to_string().contains("found 2"), "{err}");
    }
}
