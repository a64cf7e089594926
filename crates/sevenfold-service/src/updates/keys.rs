//! The signing keys of a group's TUF repository.
//!
//! Each key is an Ed25519 PKCS#8 document, generated with aws-lc-rs and
//! stored wrapped (AES-256-GCM, `sevenfold_pki::KeyWrap`) under the server's
//! wrap key, bound to a context naming tenant, group, role and key ID, so a
//! wrapped key moved to another row does not unwrap. Unwrapped keys live
//! only as long as one signing operation and are zeroised on drop.
//!
//! The same type is a tenant's offline key (`sevenfold tuf key generate`):
//! then the PKCS#8 document lives in a PEM file (mode 0600) on the key
//! holder's machine and never reaches the service; only its public half
//! does, inside a root the tenant drafted.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::Ed25519KeyPair;
use sevenfold_pki::KeyWrap;
use tough::key_source::KeySource;
use tough::schema::key::Key;
use tough::sign::{parse_keypair, Sign};
use zeroize::Zeroizing;

use super::UpdateError;
use crate::store::{now_millis, TufKeyRecord};

/// The four top-level TUF roles.
pub(crate) const ROLES: [&str; 4] = ["root", "targets", "snapshot", "timestamp"];

/// PEM label of a key file.
const KEY_FILE_PEM_TAG: &str = "PRIVATE KEY";

/// A TUF private key in memory, for one signing operation: one of the
/// service's wrapped keys, or a tenant's key read from its file.
pub struct RoleKey {
    pkcs8: Zeroizing<Vec<u8>>,
    public: Key,
    key_id: String,
}

impl std::fmt::Debug for RoleKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoleKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl RoleKey {
    /// A new Ed25519 key.
    pub fn generate() -> Result<RoleKey, UpdateError> {
        let document = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| UpdateError::Crypto("cannot generate an Ed25519 key".into()))?;
        RoleKey::from_pkcs8(Zeroizing::new(document.as_ref().to_vec()))
    }

    /// A key from its PKCS#8 document.
    pub(crate) fn from_pkcs8(pkcs8: Zeroizing<Vec<u8>>) -> Result<RoleKey, UpdateError> {
        let signer = parse_keypair(&pkcs8)
            .map_err(|e| UpdateError::Crypto(format!("unusable TUF key: {e}")))?;
        let public = signer.tuf_key();
        let key_id = hex::encode(
            public
                .key_id()
                .map_err(|e| UpdateError::Crypto(format!("TUF key ID: {e}")))?
                .as_ref(),
        );
        Ok(RoleKey {
            pkcs8,
            public,
            key_id,
        })
    }

    /// A key from a key file: PKCS#8 as PEM (`PRIVATE KEY`, what
    /// [`RoleKey::to_pem`] writes) or as DER (what `tough`'s
    /// `LocalKeySource` and `tuftool` read). Ed25519 or ECDSA P-256.
    pub fn from_key_file(bytes: &[u8]) -> Result<RoleKey, UpdateError> {
        if bytes.starts_with(b"-----BEGIN") {
            let block = pem::parse(bytes)
                .map_err(|e| UpdateError::Crypto(format!("key file is not PEM: {e}")))?;
            if block.tag() != KEY_FILE_PEM_TAG {
                return Err(UpdateError::Crypto(format!(
                    "key file holds a PEM \"{}\" block, not a \"{KEY_FILE_PEM_TAG}\" (PKCS#8) key",
                    block.tag()
                )));
            }
            RoleKey::from_pkcs8(Zeroizing::new(block.into_contents()))
        } else {
            RoleKey::from_pkcs8(Zeroizing::new(bytes.to_vec()))
        }
    }

    /// The key file: PKCS#8 as PEM. Secret: write it with mode 0600.
    pub fn to_pem(&self) -> Zeroizing<String> {
        sevenfold_rot::SoftwareKey::pkcs8_to_pem(&self.pkcs8)
    }

    /// The public key as TUF JSON (`{"keytype":…,"keyval":…,"scheme":…}`),
    /// the form a root lists it in and `tuf root draft` reads.
    pub fn public_json(&self) -> Result<String, UpdateError> {
        serde_json::to_string_pretty(&self.public)
            .map_err(|e| UpdateError::Crypto(format!("TUF public key: {e}")))
    }

    /// Unwraps a stored key.
    pub(crate) fn unwrap(record: &TufKeyRecord, wrap: &KeyWrap) -> Result<RoleKey, UpdateError> {
        let context = context(
            &record.tenant_id,
            &record.group_id,
            &record.role,
            &record.key_id,
        );
        let key = RoleKey::from_pkcs8(wrap.unwrap(&record.wrapped_key, &context)?)?;
        if key.key_id != record.key_id {
            return Err(UpdateError::Crypto(format!(
                "stored TUF key {} unwraps to key {}",
                record.key_id, key.key_id
            )));
        }
        Ok(key)
    }

    /// The row that stores this key, wrapped.
    pub(crate) fn wrapped(
        &self,
        wrap: &KeyWrap,
        tenant_id: &str,
        group_id: &str,
        role: &str,
    ) -> Result<TufKeyRecord, UpdateError> {
        Ok(TufKeyRecord {
            tenant_id: tenant_id.to_owned(),
            group_id: group_id.to_owned(),
            role: role.to_owned(),
            key_id: self.key_id.clone(),
            wrapped_key: wrap.wrap(
                &self.pkcs8,
                &context(tenant_id, group_id, role, &self.key_id),
            )?,
            created_at: now_millis(),
        })
    }

    /// The TUF public key.
    pub fn public(&self) -> &Key {
        &self.public
    }

    /// The TUF key ID, hex.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// A `tough` key source over this key.
    pub(crate) fn source(&self) -> Box<dyn KeySource> {
        Box::new(MemoryKeySource {
            pkcs8: self.pkcs8.clone(),
        })
    }
}

fn context(tenant_id: &str, group_id: &str, role: &str, key_id: &str) -> String {
    format!("tuf:{tenant_id}:{group_id}:{role}:{key_id}")
}

/// A key already in memory, as `tough` wants keys: read-only.
struct MemoryKeySource {
    pkcs8: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for MemoryKeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemoryKeySource")
    }
}

#[tough::async_trait]
impl KeySource for MemoryKeySource {
    async fn as_sign(
        &self,
    ) -> Result<Box<dyn Sign>, Box<dyn std::error::Error + Send + Sync + 'static>> {
        Ok(Box::new(parse_keypair(&self.pkcs8)?))
    }

    async fn write(
        &self,
        _value: &str,
        _key_id_hex: &str,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        Err("TUF keys of the service are stored wrapped in the database, not written back".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_wrap_and_unwrap_only_in_their_own_context() {
        let wrap = KeyWrap::new(&[7u8; 32]);
        let key = RoleKey::generate().unwrap();
        let record = key.wrapped(&wrap, "t1", "g1", "targets").unwrap();
        assert_eq!(
            RoleKey::unwrap(&record, &wrap).unwrap().key_id(),
            key.key_id()
        );
        let mut moved = record.clone();
        moved.group_id = "g2".into();
        assert!(RoleKey::unwrap(&moved, &wrap).is_err());
        assert!(!format!("{key:?}").contains("pkcs8"));
    }

    #[test]
    fn key_files_round_trip_as_pem_and_as_der() {
        let key = RoleKey::generate().unwrap();
        let pem = key.to_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{}", *pem);
        assert_eq!(
            RoleKey::from_key_file(pem.as_bytes()).unwrap().key_id(),
            key.key_id()
        );
        assert_eq!(
            RoleKey::from_key_file(&key.pkcs8).unwrap().key_id(),
            key.key_id()
        );
        let public: Key = serde_json::from_str(&key.public_json().unwrap()).unwrap();
        assert_eq!(&public, key.public());
        for bad in [
            &b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"[..],
            b"not a key",
            b"",
        ] {
            assert!(RoleKey::from_key_file(bad).is_err());
        }
    }
}
