//! The device's half of EK endorsement: the EK certificate the TPM maker
//! stored in NV, and `TPM2_ActivateCredential`, which answers a verifier's
//! [`make_credential`](crate::credential::make_credential) challenge only if
//! the attestation key is loaded in the TPM that holds the EK.

use tss_esapi::abstraction::ek::{create_ek_object, retrieve_ek_pubcert};
use tss_esapi::abstraction::AsymmetricAlgorithmSelection;
use tss_esapi::constants::SessionType;
use tss_esapi::handles::{AuthHandle, SessionHandle};
use tss_esapi::interface_types::algorithm::{AsymmetricAlgorithm, HashingAlgorithm};
use tss_esapi::interface_types::key_bits::RsaKeyBits;
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::structures::{EncryptedSecret, IdObject, SymmetricDefinition};
use zeroize::Zeroizing;

use super::{tpm_err, TpmState};
use crate::credential::Credential;
use crate::RotError;

/// The RSA 2048 EK certificate (DER) from NV index `0x01c00002`.
pub(super) fn ek_certificate(state: &mut TpmState) -> Result<Vec<u8>, RotError> {
    retrieve_ek_pubcert(
        &mut state.ctx,
        AsymmetricAlgorithmSelection::Rsa(RsaKeyBits::Rsa2048),
    )
    .map_err(tpm_err("reading the EK certificate"))
}

/// `TPM2_ActivateCredential` with the attestation key and the RSA EK (derived
/// from the TCG template; its use needs `PolicySecret(endorsement)`).
pub(super) fn activate(
    state: &mut TpmState,
    credential: &Credential,
) -> Result<Zeroizing<Vec<u8>>, RotError> {
    const WHAT: &str = "activating a credential";
    let id_object = IdObject::try_from(credential.id_object.clone()).map_err(tpm_err(WHAT))?;
    let secret =
        EncryptedSecret::try_from(credential.encrypted_secret.clone()).map_err(tpm_err(WHAT))?;
    let ctx = &mut state.ctx;
    let ek = create_ek_object(ctx, AsymmetricAlgorithm::Rsa, None)
        .map_err(tpm_err("deriving the endorsement key"))?;
    let session = ctx
        .start_auth_session(
            None,
            None,
            None,
            SessionType::Policy,
            SymmetricDefinition::AES_128_CFB,
            HashingAlgorithm::Sha256,
        )
        .map_err(tpm_err(WHAT))
        .and_then(|s| {
            s.ok_or(RotError::Tpm {
                operation: WHAT,
                detail: "the TPM returned no session".into(),
            })
        });
    let session = match session {
        Ok(session) => session,
        Err(e) => {
            let _ = ctx.flush_context(ek.into());
            return Err(e);
        }
    };
    let ak = state.ak;
    let result = PolicySession::try_from(session)
        .and_then(|policy| {
            ctx.execute_with_nullauth_session(|ctx| {
                ctx.policy_secret(
                    policy,
                    AuthHandle::Endorsement,
                    Default::default(),
                    Default::default(),
                    Default::default(),
                    None,
                )
            })
        })
        .and_then(|_| {
            ctx.execute_with_sessions((Some(AuthSession::Password), Some(session), None), |ctx| {
                ctx.activate_credential(ak, ek, id_object, secret)
            })
        })
        .map(|digest| Zeroizing::new(digest.value().to_vec()))
        .map_err(tpm_err(WHAT));
    let _ = ctx.flush_context(SessionHandle::from(session).into());
    let _ = ctx.flush_context(ek.into());
    result
}
