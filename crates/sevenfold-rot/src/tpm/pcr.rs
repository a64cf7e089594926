//! Measurement registers as SHA-256 PCRs: extend, read, and quote.

use tss_esapi::abstraction::pcr::PcrData;
use tss_esapi::handles::PcrHandle;
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::structures::{
    Data, Digest as TpmDigest, DigestValues, PcrSelectionList, PcrSelectionListBuilder, PcrSlot,
};
use tss_esapi::traits::Marshall;

use super::objects::ECDSA_SHA256;
use super::{tpm_err, TpmState};
use crate::{
    tpm2_wire, Digest, Quote, QuoteFormat, RegisterIndex, RegisterValues, RotError, DIGEST_LEN,
    MAX_NONCE_LEN,
};

/// How often a quote is retried when another TPM user extended a quoted PCR
/// between our quote and our read of the values.
const QUOTE_ATTEMPTS: usize = 3;
/// A TPM returns at most 8 PCRs per `TPM2_PCR_Read`; 24 need 3 rounds.
const MAX_READ_ROUNDS: usize = 4;

/// The SHA-256 PCR selection of `indices`; refuses an index named twice.
pub(super) fn selection(indices: &[RegisterIndex]) -> Result<PcrSelectionList, RotError> {
    let mut sorted = indices.to_vec();
    sorted.sort_unstable();
    if sorted.windows(2).any(|w| matches!(w, [a, b] if a == b)) {
        return Err(RotError::MalformedQuote(
            "a register is listed twice".into(),
        ));
    }
    let slots = sorted
        .iter()
        .map(|index| PcrSlot::try_from(1u32 << index.get()).map_err(tpm_err("selecting PCRs")))
        .collect::<Result<Vec<_>, _>>()?;
    let builder = PcrSelectionListBuilder::new();
    let builder = if slots.is_empty() {
        builder
    } else {
        builder.with_selection(HashingAlgorithm::Sha256, &slots)
    };
    builder.build().map_err(tpm_err("selecting PCRs"))
}

/// `TPM2_PCR_Extend` of the SHA-256 bank only; returns the PCR's new value.
pub(super) fn extend(
    state: &mut TpmState,
    register: RegisterIndex,
    measurement: &Digest,
) -> Result<Digest, RotError> {
    let handle = PcrHandle::try_from(register.get()).map_err(tpm_err("naming the PCR"))?;
    let mut digests = DigestValues::new();
    digests.set(
        HashingAlgorithm::Sha256,
        TpmDigest::try_from(measurement.as_bytes().to_vec()).map_err(tpm_err("extending a PCR"))?,
    );
    state
        .ctx
        .execute_with_nullauth_session(|ctx| ctx.pcr_extend(handle, digests))
        .map_err(tpm_err("extending a PCR"))?;
    let values = read(state, &[register])?;
    values
        .get(register)
        .copied()
        .ok_or(RotError::NoSuchRegister(register.get()))
}

/// Reads the SHA-256 values of `indices`.
pub(super) fn read(
    state: &mut TpmState,
    indices: &[RegisterIndex],
) -> Result<RegisterValues, RotError> {
    let mut remaining = selection(indices)?;
    let mut data = PcrData::new();
    for _ in 0..MAX_READ_ROUNDS {
        if remaining.is_empty() {
            break;
        }
        let (_, read, digests) = state
            .ctx
            .execute_without_session(|ctx| ctx.pcr_read(remaining.clone()))
            .map_err(tpm_err("reading PCRs"))?;
        if read.is_empty() {
            return Err(RotError::Tpm {
                operation: "reading PCRs",
                detail: "the TPM has no SHA-256 PCR bank allocated".into(),
            });
        }
        data.add(&read, &digests).map_err(tpm_err("reading PCRs"))?;
        remaining.subtract(&read).map_err(tpm_err("reading PCRs"))?;
    }
    if !remaining.is_empty() {
        return Err(RotError::Tpm {
            operation: "reading PCRs",
            detail: "the TPM did not return every selected PCR".into(),
        });
    }
    let bank = data.pcr_bank(HashingAlgorithm::Sha256);
    let mut values = Vec::with_capacity(indices.len());
    for &index in indices {
        let slot = PcrSlot::try_from(1u32 << index.get()).map_err(tpm_err("reading PCRs"))?;
        let value = bank
            .and_then(|bank| bank.get_digest(slot))
            .ok_or_else(|| RotError::Tpm {
                operation: "reading PCRs",
                detail: format!("PCR {index} missing from the TPM's answer"),
            })?;
        let value = <[u8; DIGEST_LEN]>::try_from(value.value()).map_err(|_| RotError::Tpm {
            operation: "reading PCRs",
            detail: format!("PCR {index} is not a SHA-256 value"),
        })?;
        values.push((index, Digest(value)));
    }
    RegisterValues::new(values)
}

/// `TPM2_Quote` with the attestation key over `nonce` and the selected
/// PCRs, and the values it covers.
///
/// The TPM signs a digest of the PCRs, not the values; they are read right
/// after, and the pair is returned only if the values hash to the signed
/// digest (otherwise another TPM user extended in between, and we retry).
pub(super) fn quote(
    state: &mut TpmState,
    nonce: &[u8],
    indices: &[RegisterIndex],
) -> Result<(Quote, RegisterValues), RotError> {
    if nonce.len() > MAX_NONCE_LEN {
        return Err(RotError::NonceTooLong(nonce.len()));
    }
    let pcrs = selection(indices)?;
    let qualifying = Data::try_from(nonce.to_vec()).map_err(tpm_err("quoting"))?;
    for _ in 0..QUOTE_ATTEMPTS {
        let ak = state.ak;
        let (attest, signature) = state
            .ctx
            .execute_with_nullauth_session(|ctx| {
                ctx.quote(ak, qualifying.clone(), ECDSA_SHA256, pcrs.clone())
            })
            .map_err(tpm_err("quoting"))?;
        let body = attest.marshall().map_err(tpm_err("encoding the quote"))?;
        let signature = signature
            .marshall()
            .map_err(tpm_err("encoding the quote signature"))?;
        let values = read(state, indices)?;
        let signed = tpm2_wire::QuoteAttest::parse(&body)?;
        if signed.pcr_digest == values.composite_digest() {
            return Ok((
                Quote::from_parts(QuoteFormat::Tpm2, body, signature),
                values,
            ));
        }
    }
    Err(RotError::Tpm {
        operation: "quoting",
        detail: "the quoted PCRs kept changing while being quoted".into(),
    })
}
