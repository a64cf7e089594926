//! The TPM objects the backend creates: the storage root key it derives at
//! every start, the attestation key (the device key) and the TLS key it
//! creates once and reloads, and sealed data objects.
//!
//! Templates follow the TCG's provisioning guidance so that another tool
//! derives the same storage key: ECC P-256, SHA-256 names, `fixedTPM`,
//! `fixedParent`, `sensitiveDataOrigin`, `userWithAuth`, `noDA`, empty auth.

use tss_esapi::attributes::{ObjectAttributes, ObjectAttributesBuilder};
use tss_esapi::handles::KeyHandle;
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::resource_handles::Hierarchy;
use tss_esapi::structures::{
    Digest as TpmDigest, EccPoint, EccScheme, HashScheme, KeyDerivationFunctionScheme,
    KeyedHashScheme, Public, PublicBuilder, PublicEccParameters, PublicEccParametersBuilder,
    PublicKeyedHashParameters, SignatureScheme, SymmetricDefinitionObject,
};
use tss_esapi::Context;

use super::tpm_err;
use crate::{tpm2_wire, PublicKey, RotError};

/// ECDSA with SHA-256: how the attestation key signs quotes and messages.
pub(super) const ECDSA_SHA256: SignatureScheme = SignatureScheme::EcDsa {
    hash_scheme: HashScheme::new(HashingAlgorithm::Sha256),
};

/// Derives the storage root key in the owner (storage) hierarchy.
///
/// A primary key is a deterministic function of the hierarchy's seed and the
/// template, so nothing is stored: every start derives the same key, and it
/// is flushed when the context closes.
pub(super) fn create_srk(ctx: &mut Context) -> Result<KeyHandle, RotError> {
    const WHAT: &str = "building the storage key template";
    let attributes = key_attributes()
        .with_restricted(true)
        .with_decrypt(true)
        .build()
        .map_err(tpm_err(WHAT))?;
    let parameters = PublicEccParametersBuilder::new_restricted_decryption_key(
        SymmetricDefinitionObject::AES_128_CFB,
        EccCurve::NistP256,
    )
    .build()
    .map_err(tpm_err(WHAT))?;
    let public = ecc_public(attributes, parameters, WHAT)?;
    ctx.execute_with_nullauth_session(|ctx| {
        ctx.create_primary(Hierarchy::Owner, public, None, None, None, None)
    })
    .map(|created| created.key_handle)
    .map_err(tpm_err("deriving the storage root key"))
}

/// The attestation key's template: a *restricted* ECC P-256 ECDSA/SHA-256
/// signing key that never leaves this TPM (`fixedTPM`). Restricted means the
/// TPM signs with it only structures it made itself (quotes) and digests it
/// computed itself over data that does not start with `TPM_GENERATED_VALUE`,
/// so no caller can make it sign a forged quote.
pub(super) fn ak_template() -> Result<Public, RotError> {
    const WHAT: &str = "building the attestation key template";
    signing_template(true, WHAT)
}

/// The TLS key's template: an *unrestricted* ECC P-256 ECDSA/SHA-256 signing
/// key under the SRK that never leaves this TPM (`fixedTPM`, `fixedParent`).
/// Unrestricted, because it signs TLS handshakes (digests the TPM did not
/// compute); it is never the device key, so it cannot vouch for a quote.
pub(super) fn tls_template() -> Result<Public, RotError> {
    signing_template(false, "building the TLS key template")
}

/// An ECC P-256 ECDSA/SHA-256 signing key template, `restricted` or not.
fn signing_template(restricted: bool, what: &'static str) -> Result<Public, RotError> {
    let attributes = key_attributes()
        .with_restricted(restricted)
        .with_sign_encrypt(true)
        .build()
        .map_err(tpm_err(what))?;
    let parameters = PublicEccParametersBuilder::new()
        .with_symmetric(SymmetricDefinitionObject::Null)
        .with_ecc_scheme(EccScheme::EcDsa(HashScheme::new(HashingAlgorithm::Sha256)))
        .with_curve(EccCurve::NistP256)
        .with_key_derivation_function_scheme(KeyDerivationFunctionScheme::Null)
        .with_is_signing_key(true)
        .with_is_decryption_key(false)
        .with_restricted(restricted)
        .build()
        .map_err(tpm_err(what))?;
    ecc_public(attributes, parameters, what)
}

/// Attributes shared by the storage, attestation and TLS keys: generated in
/// and bound to this TPM and this parent, used with the empty password, and
/// exempt from dictionary-attack lockout.
fn key_attributes() -> ObjectAttributesBuilder {
    ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_no_da(true)
}

/// An ECC key template with SHA-256 names and the given attributes and parameters.
fn ecc_public(
    attributes: ObjectAttributes,
    parameters: PublicEccParameters,
    what: &'static str,
) -> Result<Public, RotError> {
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_ecc_parameters(parameters)
        .with_ecc_unique_identifier(EccPoint::default())
        .build()
        .map_err(tpm_err(what))
}

/// The template of a sealed data object: a keyed-hash object with no scheme
/// holding the secret. With a `policy`, only a policy session that satisfies
/// it opens the object (`userWithAuth` clear); without, the empty password does.
pub(super) fn sealed_template(policy: Option<TpmDigest>) -> Result<Public, RotError> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_no_da(true)
        .with_user_with_auth(policy.is_none())
        .with_admin_with_policy(true)
        .build()
        .map_err(tpm_err("building the sealed object template"))?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::KeyedHash)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_auth_policy(policy.unwrap_or_default())
        .with_keyed_hash_parameters(PublicKeyedHashParameters::new(KeyedHashScheme::Null))
        .with_keyed_hash_unique_identifier(TpmDigest::default())
        .build()
        .map_err(tpm_err("building the sealed object template"))
}

/// The attestation key's public half as a Sevenfold [`PublicKey`]; refuses
/// a key that is not the restricted P-256 signing key of [`ak_template`]
/// (a swapped `ak.pub` file must not pass as the device key).
pub(super) fn ak_public_key(public: &Public) -> Result<PublicKey, RotError> {
    signing_public_key(public, true, "the attestation key")
}

/// The TLS key's public half; refuses a key that is not the unrestricted
/// `fixedTPM` P-256 signing key of [`tls_template`].
pub(super) fn tls_public_key(public: &Public) -> Result<PublicKey, RotError> {
    signing_public_key(public, false, "the TLS key")
}

/// The public half of a P-256 `fixedTPM` signing key whose `restricted`
/// attribute is as expected; `what` names the key in the error.
fn signing_public_key(
    public: &Public,
    restricted: bool,
    what: &str,
) -> Result<PublicKey, RotError> {
    let Public::Ecc {
        object_attributes,
        parameters,
        unique,
        ..
    } = public
    else {
        return Err(RotError::MalformedKey(format!("{what} is not an ECC key")));
    };
    if parameters.ecc_curve() != EccCurve::NistP256
        || object_attributes.restricted() != restricted
        || !object_attributes.sign_encrypt()
        || object_attributes.decrypt()
        || !object_attributes.fixed_tpm()
        || !object_attributes.fixed_parent()
    {
        let kind = if restricted {
            "restricted"
        } else {
            "unrestricted"
        };
        return Err(RotError::MalformedKey(format!(
            "{what} is not an {kind}, fixedTPM P-256 signing key"
        )));
    }
    let spki = tpm2_wire::p256_spki(unique.x().value(), unique.y().value())?;
    PublicKey::from_spki_der(&spki)
}
