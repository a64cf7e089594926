//! The device's TLS client key, inside the TPM.
//!
//! An unrestricted ECC P-256 ECDSA/SHA-256 signing key under the SRK
//! ([`objects::tls_template`]): `fixedTPM` and `fixedParent`, so its private
//! area, kept in `tls.priv` as the TPM wrapped it, loads into this TPM only.
//! `tls.pub` holds its `TPMT_PUBLIC` and is written last: its presence means
//! the key exists.
//!
//! Signing: the digest is computed outside the TPM and signed with
//! `TPM2_Sign` and a null hashcheck ticket, which the TPM accepts for an
//! unrestricted key only. A TPM state directory made before the TLS key
//! existed gets one at the next open ([`load_or_create`]).

use std::path::Path;

use tss_esapi::constants::tss::{TPM2_RH_NULL, TPM2_ST_HASHCHECK};
use tss_esapi::handles::KeyHandle;
use tss_esapi::structures::{Digest as TpmDigest, HashcheckTicket, Private, Public, Signature};
use tss_esapi::traits::{Marshall, UnMarshall};
use tss_esapi::tss2_esys::TPMT_TK_HASHCHECK;
use tss_esapi::Context;

use super::{objects, tpm_err, TpmState, MAX_KEY_FILE_LEN};
use crate::soft::fs;
use crate::{tpm2_wire, Digest, PublicKey, RotError};

/// The TLS key's `TPMT_PUBLIC` (the commit point).
pub(super) const TLS_PUBLIC_FILE: &str = "tls.pub";
/// The TLS key's private area, wrapped by the TPM under the SRK.
pub(super) const TLS_PRIVATE_FILE: &str = "tls.priv";

/// A TLS key as the TPM wrapped it: what loads it again.
#[derive(Clone)]
pub(super) struct TlsBlobs {
    pub(super) public: Public,
    pub(super) private: Private,
}

/// Creates a new TLS key under `srk` (not yet loaded or stored).
pub(super) fn create(ctx: &mut Context, srk: KeyHandle) -> Result<TlsBlobs, RotError> {
    let template = objects::tls_template()?;
    let created = ctx
        .execute_with_nullauth_session(|ctx| ctx.create(srk, template, None, None, None, None))
        .map_err(tpm_err("creating the TLS key"))?;
    Ok(TlsBlobs {
        public: created.out_public,
        private: created.out_private,
    })
}

/// Loads the TLS key into the TPM; fails on another TPM or a cleared one.
/// The caller flushes the handle.
fn load(ctx: &mut Context, srk: KeyHandle, blobs: &TlsBlobs) -> Result<KeyHandle, RotError> {
    ctx.execute_with_nullauth_session(|ctx| {
        ctx.load(srk, blobs.private.clone(), blobs.public.clone())
    })
    .map_err(|e| RotError::Tpm {
        operation: "loading the TLS key",
        detail: format!("{e} (was it created by another TPM, or was this TPM cleared?)"),
    })
}

/// Writes the blobs into `state_dir`: `tls.priv`, then `tls.pub`. With
/// `replace`, an existing pair is overwritten (an interrupted `create`,
/// which nothing used); without, `false` is returned, writing no `tls.pub`,
/// if one appeared meanwhile.
pub(super) fn store(state_dir: &Path, blobs: &TlsBlobs, replace: bool) -> Result<bool, RotError> {
    let public = blobs
        .public
        .marshall()
        .map_err(tpm_err("encoding the TLS key"))?;
    let temp = fs::write_temp(state_dir, TLS_PRIVATE_FILE, blobs.private.value())?;
    fs::commit_temp(&temp, &state_dir.join(TLS_PRIVATE_FILE), state_dir)?;
    if replace {
        let temp = fs::write_temp(state_dir, TLS_PUBLIC_FILE, &public)?;
        fs::commit_temp(&temp, &state_dir.join(TLS_PUBLIC_FILE), state_dir)?;
        return Ok(true);
    }
    fs::write_new(state_dir, TLS_PUBLIC_FILE, &public)
}

/// Reads the stored TLS key, `None` if there is no `tls.pub` yet; a damaged
/// or swapped blob is [`RotError::CorruptState`].
pub(super) fn read(state_dir: &Path) -> Result<Option<(TlsBlobs, PublicKey)>, RotError> {
    let public_path = state_dir.join(TLS_PUBLIC_FILE);
    let Some(public_bytes) = fs::read_private_file(&public_path, MAX_KEY_FILE_LEN)? else {
        return Ok(None);
    };
    let public =
        Public::unmarshall(&public_bytes).map_err(|e| fs::corrupt(&public_path, &e.to_string()))?;
    let key =
        objects::tls_public_key(&public).map_err(|e| fs::corrupt(&public_path, &e.to_string()))?;
    let private_path = state_dir.join(TLS_PRIVATE_FILE);
    let private_bytes = fs::read_private_file(&private_path, MAX_KEY_FILE_LEN)?
        .ok_or_else(|| fs::corrupt(&private_path, "the TLS key's private blob is missing"))?;
    let private = Private::try_from(private_bytes.to_vec())
        .map_err(|e| fs::corrupt(&private_path, &e.to_string()))?;
    Ok(Some((TlsBlobs { public, private }, key)))
}

/// At open: reads the stored TLS key, or creates and stores one for a state
/// directory made before the TLS key lived in the TPM (if another process
/// stored one first, that one is used). Either way the key is loaded once
/// to prove this TPM can, so a foreign or damaged key fails the open.
pub(super) fn open_or_create(
    ctx: &mut Context,
    srk: KeyHandle,
    state_dir: &Path,
) -> Result<(TlsBlobs, PublicKey), RotError> {
    let (blobs, key) = match read(state_dir)? {
        Some(stored) => stored,
        None => {
            let blobs = create(ctx, srk)?;
            let key = objects::tls_public_key(&blobs.public)?;
            if store(state_dir, &blobs, false)? {
                (blobs, key)
            } else {
                read(state_dir)?.ok_or_else(|| {
                    fs::corrupt(&state_dir.join(TLS_PUBLIC_FILE), "vanished while opening")
                })?
            }
        }
    };
    let handle = load(ctx, srk, &blobs)?;
    flush(ctx, handle)?;
    Ok((blobs, key))
}

/// Unloads a TLS key handle.
fn flush(ctx: &mut Context, handle: KeyHandle) -> Result<(), RotError> {
    ctx.flush_context(handle.into())
        .map_err(tpm_err("unloading the TLS key"))
}

/// Signs a SHA-256 digest with the TLS key (`TPM2_Sign`, null ticket);
/// returns the DER ECDSA signature.
pub(super) fn sign_digest(s: &mut TpmState, digest: &Digest) -> Result<Vec<u8>, RotError> {
    const WHAT: &str = "signing with the TLS key";
    let digest = TpmDigest::try_from(digest.as_bytes().to_vec()).map_err(tpm_err(WHAT))?;
    let handle = load(&mut s.ctx, s.srk, &s.tls)?;
    let signed = s
        .ctx
        .execute_with_nullauth_session(|ctx| {
            ctx.sign(handle, digest, objects::ECDSA_SHA256, null_ticket()?)
        })
        .map_err(tpm_err(WHAT));
    // Unloaded whatever the outcome, so the object slot is free again.
    flush(&mut s.ctx, handle)?;
    signature_der(signed?, WHAT)
}

/// The hashcheck ticket that says "the TPM did not hash this": accepted
/// for unrestricted keys only.
fn null_ticket() -> tss_esapi::Result<HashcheckTicket> {
    HashcheckTicket::try_from(TPMT_TK_HASHCHECK {
        tag: TPM2_ST_HASHCHECK,
        hierarchy: TPM2_RH_NULL,
        digest: Default::default(),
    })
}

/// An ECDSA `TPMT_SIGNATURE` as DER (what X.509 and TLS carry).
pub(super) fn signature_der(
    signature: Signature,
    operation: &'static str,
) -> Result<Vec<u8>, RotError> {
    match signature {
        Signature::EcDsa(sig) => Ok(tpm2_wire::ecdsa_der(
            sig.signature_r().value(),
            sig.signature_s().value(),
        )),
        _ => Err(RotError::Tpm {
            operation,
            detail: "the TPM did not return an ECDSA signature".into(),
        }),
    }
}
