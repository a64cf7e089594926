//! Credential activation, the verifier's half, in pure Rust: proves that an
//! attestation key lives in the same TPM as an endorsement key.
//!
//! A verifier that trusts a TPM's EK (its certificate chains to the TPM
//! maker's CA) but has never seen its AK runs `TPM2_MakeCredential` in
//! software (TPM 2.0 Part 1 §24): it encrypts a fresh secret to the EK,
//! bound to the AK's *name* (its name algorithm and the hash of its public
//! area). Only that TPM can decrypt it, and its `TPM2_ActivateCredential`
//! releases the secret only if an object with exactly that name is loaded
//! in it. So a device that returns the secret holds the EK and the AK in one
//! TPM. This is Keylime's registrar check.
//!
//! [`AttestationKey::parse`] reads the AK's `TPMT_PUBLIC` and refuses one
//! that is not a restricted, `fixedTPM` P-256 ECDSA/SHA-256 signing key: a
//! verifier must know the quoting key only signs what the TPM made.
//! [`make_credential`] supports RSA 2048 EKs (TCG EK template L-1: SHA-256
//! names, AES-128-CFB), composing aws-lc-rs primitives: RSA-OAEP (SHA-256,
//! label `"IDENTITY\0"`) for the seed, KDFa (SP 800-108 HMAC-SHA-256) for the
//! keys, AES-128-CFB and HMAC-SHA-256 for the credential blob.

use aws_lc_rs::cipher::{EncryptingKey, EncryptionContext, UnboundCipherKey, AES_128};
use aws_lc_rs::hmac;
use aws_lc_rs::iv::FixedLength;
use aws_lc_rs::rsa::{OaepPublicEncryptingKey, PublicEncryptingKey, OAEP_SHA256_MGF1SHA256};

use crate::tpm2_wire::{p256_spki, Reader, TPM_ALG_ECDSA, TPM_ALG_SHA256};
use crate::{Digest, PublicKey, RotError};

const TPM_ALG_ECC: u16 = 0x0023;
const TPM_ALG_NULL: u16 = 0x0010;
const TPM_ECC_NIST_P256: u16 = 0x0003;
const FIXED_TPM: u32 = 1 << 1;
const FIXED_PARENT: u32 = 1 << 4;
const SENSITIVE_DATA_ORIGIN: u32 = 1 << 5;
const RESTRICTED: u32 = 1 << 16;
const DECRYPT: u32 = 1 << 17;
const SIGN: u32 = 1 << 18;
/// Largest credential `TPM2_ActivateCredential` returns (a SHA-256 digest).
pub const MAX_CREDENTIAL_LEN: usize = 32;

/// A TPM attestation key's public area, checked to be a restricted signing key.
#[derive(Clone, Debug)]
pub struct AttestationKey {
    name: Vec<u8>,
    public: PublicKey,
}

impl AttestationKey {
    /// Parses a marshalled `TPMT_PUBLIC`; refuses anything but an ECC P-256,
    /// ECDSA/SHA-256, restricted, non-decrypting, `fixedTPM`, `fixedParent`,
    /// TPM-generated signing key with SHA-256 names.
    pub fn parse(public_area: &[u8]) -> Result<AttestationKey, RotError> {
        let bad = |why: &str| RotError::MalformedKey(format!("attestation key public area: {why}"));
        let mut r = Reader::new(public_area, |why| {
            RotError::MalformedKey(format!("attestation key public area: {why}"))
        });
        if r.u16("type")? != TPM_ALG_ECC {
            return Err(bad("not an ECC key"));
        }
        if r.u16("nameAlg")? != TPM_ALG_SHA256 {
            return Err(bad("name algorithm is not SHA-256"));
        }
        let attributes = r.u32("objectAttributes")?;
        let required = FIXED_TPM | FIXED_PARENT | SENSITIVE_DATA_ORIGIN | RESTRICTED | SIGN;
        if attributes & required != required || attributes & DECRYPT != 0 {
            return Err(bad(
                "not a restricted, fixedTPM, fixedParent, TPM-generated signing-only key",
            ));
        }
        r.tpm2b(64, "authPolicy")?;
        if r.u16("symmetric")? != TPM_ALG_NULL {
            return Err(bad("a signing key has no symmetric algorithm"));
        }
        if r.u16("scheme")? != TPM_ALG_ECDSA || r.u16("scheme hash")? != TPM_ALG_SHA256 {
            return Err(bad("scheme is not ECDSA with SHA-256"));
        }
        if r.u16("curveID")? != TPM_ECC_NIST_P256 {
            return Err(bad("curve is not NIST P-256"));
        }
        if r.u16("kdf")? != TPM_ALG_NULL {
            return Err(bad("unexpected KDF"));
        }
        let x = r.tpm2b(32, "unique.x")?;
        let y = r.tpm2b(32, "unique.y")?;
        if !r.rest.is_empty() {
            return Err(bad("trailing bytes"));
        }
        let public = PublicKey::from_spki_der(&p256_spki(x, y)?)?;
        let mut name = TPM_ALG_SHA256.to_be_bytes().to_vec();
        name.extend_from_slice(Digest::of(public_area).as_bytes());
        Ok(AttestationKey { name, public })
    }

    /// The TPM name: `0x000b ‖ SHA-256(TPMT_PUBLIC)`.
    pub fn name(&self) -> &[u8] {
        &self.name
    }

    /// The key, as quotes are verified with it.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }
}

/// The device's half of credential activation: a root of trust whose
/// device key is a TPM attestation key, in the TPM of an endorsement key.
/// [`RootOfTrust::tpm_endorsement`](crate::RootOfTrust::tpm_endorsement)
/// gives it, for backends that have one.
pub trait TpmEndorsement: Send + Sync {
    /// The TPM maker's certificate (DER) over the endorsement key.
    fn endorsement_certificate(&self) -> Result<Vec<u8>, RotError>;

    /// The attestation key's marshalled `TPMT_PUBLIC` (its TPM name is
    /// SHA-256 over it; see [`AttestationKey::parse`]).
    fn attestation_key_public_area(&self) -> Result<Vec<u8>, RotError>;

    /// `TPM2_ActivateCredential`: the secret of a [`make_credential`]
    /// challenge, released only if the challenge was made for this TPM's EK
    /// and this attestation key's name.
    fn activate_credential(
        &self,
        credential: Credential,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, RotError>;
}

/// What [`make_credential`] produces: the device's challenge and its answer.
pub struct Credential {
    /// `TPM2B_ID_OBJECT` contents: `u16 size ‖ integrity HMAC ‖ encrypted credential`.
    pub id_object: Vec<u8>,
    /// `TPM2B_ENCRYPTED_SECRET` contents: the RSA-OAEP-encrypted seed.
    pub encrypted_secret: Vec<u8>,
}

/// `TPM2_MakeCredential` for an RSA endorsement key given as a DER
/// `SubjectPublicKeyInfo`: `credential` (at most 32 bytes) sealed to
/// `ak_name` in that EK's TPM.
pub fn make_credential(
    ek_spki_der: &[u8],
    ak_name: &[u8],
    credential: &[u8],
) -> Result<Credential, RotError> {
    if credential.len() > MAX_CREDENTIAL_LEN || credential.is_empty() {
        return Err(RotError::MalformedKey(format!(
            "a credential is 1 to {MAX_CREDENTIAL_LEN} bytes, not {}",
            credential.len()
        )));
    }
    let ek = PublicEncryptingKey::from_der(ek_spki_der)
        .map_err(|_| RotError::UnsupportedAlgorithm("the EK is not an RSA public key".into()))?;
    let ek = OaepPublicEncryptingKey::new(ek)
        .map_err(|_| RotError::UnsupportedAlgorithm("the EK cannot do RSA-OAEP".into()))?;

    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::fill(seed.as_mut()).map_err(|_| RotError::Crypto("random seed"))?;
    let mut encrypted_secret = vec![0u8; ek.ciphertext_size()];
    let len = ek
        .encrypt(
            &OAEP_SHA256_MGF1SHA256,
            seed.as_ref(),
            &mut encrypted_secret,
            Some(b"IDENTITY\0"),
        )
        .map_err(|_| RotError::Crypto("RSA-OAEP encryption"))?
        .len();
    encrypted_secret.truncate(len);

    let sym_key = kdfa(seed.as_ref(), b"STORAGE", ak_name, &[], 16);
    let hmac_key = kdfa(seed.as_ref(), b"INTEGRITY", &[], &[], 32);
    // encIdentity = AES-128-CFB(symKey, IV = 0, TPM2B_DIGEST(credential))
    let mut enc_identity = (credential.len() as u16).to_be_bytes().to_vec(); // ≤ 32
    enc_identity.extend_from_slice(credential);
    let key = UnboundCipherKey::new(&AES_128, &sym_key)
        .and_then(EncryptingKey::cfb128)
        .map_err(|_| RotError::Crypto("AES-128-CFB key"))?;
    key.less_safe_encrypt(
        &mut enc_identity,
        EncryptionContext::Iv128(FixedLength::from([0u8; 16])),
    )
    .map_err(|_| RotError::Crypto("AES-128-CFB encryption"))?;
    let hmac_key = hmac::Key::new(hmac::HMAC_SHA256, &hmac_key);
    let mut ctx = hmac::Context::with_key(&hmac_key);
    ctx.update(&enc_identity);
    ctx.update(ak_name);
    let outer = ctx.sign();
    let mut id_object = (outer.as_ref().len() as u16).to_be_bytes().to_vec(); // 32
    id_object.extend_from_slice(outer.as_ref());
    id_object.extend_from_slice(&enc_identity);
    Ok(Credential {
        id_object,
        encrypted_secret,
    })
}

/// KDFa with HMAC-SHA-256 (TPM 2.0 Part 1 §11.4.10.2, SP 800-108 counter
/// mode): `HMAC(key, i ‖ label ‖ 0 ‖ contextU ‖ contextV ‖ bits)` for i = 1, 2, ….
fn kdfa(key: &[u8], label: &[u8], context_u: &[u8], context_v: &[u8], len: usize) -> Vec<u8> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let bits = ((len * 8) as u32).to_be_bytes(); // len ≤ 32 here
    let mut out = Vec::with_capacity(len + 32);
    let mut counter = 1u32;
    while out.len() < len {
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(&counter.to_be_bytes());
        ctx.update(label);
        ctx.update(&[0]);
        ctx.update(context_u);
        ctx.update(context_v);
        ctx.update(&bits);
        out.extend_from_slice(ctx.sign().as_ref());
        counter += 1;
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kdfa_matches_its_definition() {
        // One block: HMAC(key, 00000001 ‖ "STORAGE" ‖ 00 ‖ u ‖ v ‖ 00000080).
        let mut message = vec![0, 0, 0, 1];
        message.extend_from_slice(b"STORAGE\0uv");
        message.extend_from_slice(&[0, 0, 0, 0x80]);
        let expected = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, b"k"), &message);
        assert_eq!(
            kdfa(b"k", b"STORAGE", b"u", b"v", 16),
            expected.as_ref()[..16]
        );
        assert_eq!(kdfa(b"k", b"X", b"", b"", 40).len(), 40);
    }

    #[test]
    fn malformed_public_areas_are_refused() {
        assert!(AttestationKey::parse(&[]).is_err());
        assert!(AttestationKey::parse(&[0x00, 0x01, 0x00, 0x0b]).is_err());
        proptest::proptest!(|(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200))| {
            let _ = AttestationKey::parse(&bytes);
        });
    }

    #[test]
    fn credentials_need_an_rsa_ek_and_a_short_secret() {
        let (ecc, _) = crate::SoftwareKey::generate(crate::KeyAlgorithm::EcdsaP256).unwrap();
        assert!(make_credential(ecc.public_key().spki_der(), b"name", b"secret").is_err());
        assert!(make_credential(b"junk", b"name", b"secret").is_err());
        assert!(make_credential(b"junk", b"name", &[0; 33]).is_err());
    }
}
