//! Sealing: secrets kept in TPM sealed data objects under the storage key.
//!
//! The secret goes into a keyed-hash object created under the storage root
//! key; the TPM returns its public area and its private area encrypted and
//! integrity-protected with a key only this TPM's storage hierarchy holds.
//! [`SealPolicy::Registers`] sets the object's auth policy to
//! `TPM2_PolicyPCR` over the selected PCRs' values at sealing time, so the
//! TPM itself refuses to unseal once any of them changed.
//!
//! Blob layout (everything is needed to load the object again):
//!
//! ```text
//! magic "SVNFTPMS" (8) | version u8 = 1 | count u8 | count × PCR index u8
//! | public_len u16 BE | TPMT_PUBLIC | private_len u16 BE | TPM2B_PRIVATE contents
//! ```

use tss_esapi::constants::SessionType;
use tss_esapi::handles::{KeyHandle, ObjectHandle, SessionHandle};
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::structures::{
    Digest as TpmDigest, Private, Public, SensitiveData, SymmetricDefinition,
};
use tss_esapi::traits::{Marshall, UnMarshall};
use tss_esapi::Context;
use zeroize::Zeroizing;

use super::objects::sealed_template;
use super::pcr::{read, selection};
use super::{tpm_err, TpmState};
use crate::{RegisterIndex, RotError, SealPolicy, MAX_SEALED_LEN};

const MAGIC: &[u8; 8] = b"SVNFTPMS";
const VERSION: u8 = 1;
/// Bound on each TPM2B in a blob (a TPM's buffers are far smaller).
const MAX_PART_LEN: usize = 1024;

/// Seals `secret` under the storage key, bound to `policy`.
pub(super) fn seal(
    state: &mut TpmState,
    secret: &[u8],
    policy: &SealPolicy,
) -> Result<Vec<u8>, RotError> {
    if secret.len() > MAX_SEALED_LEN {
        return Err(RotError::SealTooLarge(secret.len()));
    }
    let mut indices = match policy {
        SealPolicy::Device => Vec::new(),
        SealPolicy::Registers(indices) => indices.clone(),
    };
    indices.sort_unstable();
    indices.dedup();
    let auth_policy = if indices.is_empty() {
        None
    } else {
        let values = read(state, &indices)?;
        let digest = TpmDigest::try_from(values.composite_digest().as_bytes().to_vec())
            .map_err(tpm_err("sealing"))?;
        Some(pcr_policy(&mut state.ctx, SessionType::Trial, digest, &indices)?.1)
    };
    let template = sealed_template(auth_policy)?;
    let data = SensitiveData::try_from(secret.to_vec()).map_err(tpm_err("sealing"))?;
    let srk = state.srk;
    let created = state
        .ctx
        .execute_with_nullauth_session(|ctx| {
            ctx.create(srk, template, None, Some(data), None, None)
        })
        .map_err(tpm_err("sealing"))?;
    let public = created
        .out_public
        .marshall()
        .map_err(tpm_err("encoding the sealed object"))?;
    let private = created.out_private.value();
    let mut blob = Vec::with_capacity(8 + 2 + indices.len() + 4 + public.len() + private.len());
    blob.extend_from_slice(MAGIC);
    blob.push(VERSION);
    blob.push(indices.len() as u8); // at most REGISTER_COUNT
    blob.extend(indices.iter().map(|i| i.get() as u8));
    for part in [public.as_slice(), private] {
        blob.extend_from_slice(&(part.len() as u16).to_be_bytes()); // TPM buffers < 64 KiB
        blob.extend_from_slice(part);
    }
    Ok(blob)
}

/// Opens a blob from [`seal`]: loads the object and unseals it, through a
/// `TPM2_PolicyPCR` session when it is bound to registers.
pub(super) fn unseal(state: &mut TpmState, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, RotError> {
    let blob = Blob::parse(sealed)?;
    let srk = state.srk;
    let object = state
        .ctx
        .execute_with_nullauth_session(|ctx| ctx.load(srk, blob.private, blob.public))
        .map_err(|_| RotError::Unseal("the blob was not sealed by this device's TPM"))?;
    let result = unseal_loaded(&mut state.ctx, object, &blob.indices);
    let _ = state.ctx.flush_context(object.into());
    result
}

fn unseal_loaded(
    ctx: &mut Context,
    object: KeyHandle,
    indices: &[RegisterIndex],
) -> Result<Zeroizing<Vec<u8>>, RotError> {
    let data = if indices.is_empty() {
        ctx.execute_with_nullauth_session(|ctx| ctx.unseal(ObjectHandle::from(object)))
            .map_err(|_| RotError::Unseal("the TPM refused to unseal"))?
    } else {
        // The empty digest makes the TPM compare against the current values.
        let (session, _) = pcr_policy(ctx, SessionType::Policy, TpmDigest::default(), indices)?;
        let data = ctx
            .execute_with_session(Some(session), |ctx| ctx.unseal(ObjectHandle::from(object)))
            .map_err(|_| {
                RotError::Unseal("the registers no longer hold the values it was sealed to")
            });
        let _ = ctx.flush_context(SessionHandle::from(session).into());
        data?
    };
    Ok(Zeroizing::new(data.value().to_vec()))
}

/// Starts a session of `kind` and runs `TPM2_PolicyPCR` in it. A trial
/// session is flushed and its policy digest returned; a policy session is
/// returned for the caller to use and flush.
fn pcr_policy(
    ctx: &mut Context,
    kind: SessionType,
    pcr_digest: TpmDigest,
    indices: &[RegisterIndex],
) -> Result<(AuthSession, TpmDigest), RotError> {
    let pcrs = selection(indices)?;
    let session = ctx
        .start_auth_session(
            None,
            None,
            None,
            kind,
            SymmetricDefinition::AES_128_CFB,
            HashingAlgorithm::Sha256,
        )
        .map_err(tpm_err("starting a policy session"))?
        .ok_or_else(|| RotError::Tpm {
            operation: "starting a policy session",
            detail: "the TPM returned no session".into(),
        })?;
    let result = PolicySession::try_from(session)
        .and_then(|policy| {
            ctx.policy_pcr(policy, pcr_digest, pcrs)?;
            ctx.policy_get_digest(policy)
        })
        .map_err(tpm_err("computing the PCR policy"));
    if kind == SessionType::Trial || result.is_err() {
        let _ = ctx.flush_context(SessionHandle::from(session).into());
    }
    Ok((session, result?))
}

/// A parsed sealed blob.
struct Blob {
    indices: Vec<RegisterIndex>,
    public: Public,
    private: Private,
}

impl Blob {
    fn parse(bytes: &[u8]) -> Result<Blob, RotError> {
        let bad = |_| RotError::Unseal("malformed sealed blob");
        let rest = bytes
            .strip_prefix(MAGIC.as_slice())
            .ok_or(RotError::Unseal("not a TPM sealed blob"))?;
        let (&version, rest) = rest
            .split_first()
            .ok_or(RotError::Unseal("truncated sealed blob"))?;
        if version != VERSION {
            return Err(RotError::Unseal("unsupported sealed blob version"));
        }
        let (&count, rest) = rest
            .split_first()
            .ok_or(RotError::Unseal("truncated sealed blob"))?;
        let (raw_indices, rest) = split(rest, usize::from(count))?;
        let mut indices = Vec::with_capacity(raw_indices.len());
        for &raw in raw_indices {
            let index = RegisterIndex::new(u32::from(raw)).map_err(bad)?;
            if indices.last().is_some_and(|last| *last >= index) {
                return Err(RotError::Unseal(
                    "sealed blob's registers are not ascending",
                ));
            }
            indices.push(index);
        }
        let (public, rest) = part(rest)?;
        let (private, rest) = part(rest)?;
        if !rest.is_empty() {
            return Err(RotError::Unseal("trailing bytes in sealed blob"));
        }
        Ok(Blob {
            indices,
            public: Public::unmarshall(public)
                .map_err(|_| RotError::Unseal("malformed sealed blob"))?,
            private: Private::try_from(private.to_vec())
                .map_err(|_| RotError::Unseal("malformed sealed blob"))?,
        })
    }
}

fn split(bytes: &[u8], n: usize) -> Result<(&[u8], &[u8]), RotError> {
    if bytes.len() < n {
        return Err(RotError::Unseal("truncated sealed blob"));
    }
    Ok(bytes.split_at(n))
}

fn part(bytes: &[u8]) -> Result<(&[u8], &[u8]), RotError> {
    let (len, rest) = split(bytes, 2)?;
    let len = usize::from(u16::from_be_bytes([
        len.first().copied().unwrap_or_default(),
        len.get(1).copied().unwrap_or_default(),
    ]));
    if len > MAX_PART_LEN {
        return Err(RotError::Unseal("malformed sealed blob"));
    }
    split(rest, len)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn parsing_arbitrary_blobs_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = Blob::parse(&bytes);
            let mut prefixed = MAGIC.to_vec();
            prefixed.push(VERSION);
            prefixed.extend_from_slice(&bytes);
            let _ = Blob::parse(&prefixed);
        }
    }
}
