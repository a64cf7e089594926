//! Private keys at rest: AES-256-GCM under the server's master key.
//!
//! The Security Service keeps each tenant CA's private key in its database
//! only wrapped by [`KeyWrap`]. The master key comes from the server's
//! configuration, never from the database, so a copy of the database alone
//! does not yield a CA key. The caller's *context* (the tenant ID, say) is
//! authenticated with the ciphertext: a wrapped key copied into another
//! tenant's row does not open there.
//!
//! Format of a wrapped key: `version (1 byte, 1) ‖ nonce (12 random bytes) ‖
//! ciphertext ‖ GCM tag (16 bytes)`. The additional authenticated data is
//! `"sevenfold key wrap v1\0" ‖ context`, so the version byte selects how the
//! AAD is built and is covered by the tag that way.

use std::fmt;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use sevenfold_rot::Hasher;
use zeroize::Zeroizing;

use crate::PkiError;

/// Length of a master key in bytes (AES-256).
pub const MASTER_KEY_LEN: usize = 32;

/// The format version [`KeyWrap::wrap`] writes, the first byte of every wrapped key.
pub const KEY_WRAP_VERSION: u8 = 1;

/// Largest secret [`KeyWrap::wrap`] accepts (a PKCS#8 key is about 140 bytes).
pub const MAX_WRAPPED_SECRET_LEN: usize = 64 * 1024;

/// Longest context accepted, in bytes.
pub const MAX_CONTEXT_LEN: usize = 1024;

const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 1 + NONCE_LEN;
const AAD_LABEL: &[u8] = b"sevenfold key wrap v1\0";
const KEY_ID_LABEL: &[u8] = b"sevenfold key wrap key id\0";

/// Encrypts (wraps) and decrypts (unwraps) private keys under a 32-byte
/// master key, AES-256-GCM with a random 96-bit nonce per wrap.
///
/// ```
/// use sevenfold_pki::KeyWrap;
///
/// let master = KeyWrap::generate_master_key()?;
/// let wrap = KeyWrap::new(&master);
/// let stored = wrap.wrap(b"PKCS#8 bytes", "tenant-a")?;
/// assert_eq!(wrap.unwrap(&stored, "tenant-a")?.as_slice(), b"PKCS#8 bytes");
/// assert!(wrap.unwrap(&stored, "tenant-b").is_err());
/// # Ok::<(), sevenfold_pki::PkiError>(())
/// ```
pub struct KeyWrap {
    key: Zeroizing<[u8; MASTER_KEY_LEN]>,
    key_id: String,
}

impl KeyWrap {
    /// A key wrap under `master_key`.
    pub fn new(master_key: &[u8; MASTER_KEY_LEN]) -> KeyWrap {
        let mut hasher = Hasher::new();
        hasher.update(KEY_ID_LABEL);
        hasher.update(master_key);
        let mut key_id = hasher.finish().to_hex();
        key_id.truncate(16);
        KeyWrap {
            key: Zeroizing::new(*master_key),
            key_id,
        }
    }

    /// A key wrap under a master key written as 64 hex characters (as in the
    /// server's configuration; surrounding whitespace is ignored).
    pub fn from_hex(master_key_hex: &str) -> Result<KeyWrap, PkiError> {
        let text = master_key_hex.trim();
        let mut key = Zeroizing::new([0u8; MASTER_KEY_LEN]);
        // The error never quotes the text: it is a secret.
        hex::decode_to_slice(text, &mut key[..]).map_err(|_| {
            PkiError::InvalidArgument(format!(
                "the master key must be {} hex characters ({MASTER_KEY_LEN} bytes); the one \
                 given has {} characters or is not hex. Generate one with \
                 KeyWrap::generate_master_key (e.g. `openssl rand -hex 32`)",
                MASTER_KEY_LEN * 2,
                text.chars().count()
            ))
        })?;
        Ok(KeyWrap::new(&key))
    }

    /// A new random master key.
    pub fn generate_master_key() -> Result<Zeroizing<[u8; MASTER_KEY_LEN]>, PkiError> {
        let mut key = Zeroizing::new([0u8; MASTER_KEY_LEN]);
        aws_lc_rs::rand::fill(&mut key[..])
            .map_err(|_| PkiError::Internal("random number generator failed".into()))?;
        Ok(key)
    }

    /// `master_key` as the 64 lower-case hex characters [`KeyWrap::from_hex`] reads.
    pub fn master_key_to_hex(master_key: &[u8; MASTER_KEY_LEN]) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(master_key))
    }

    /// A short, public name for the master key (16 hex characters of a hash
    /// of it): store it next to wrapped keys to tell which master key they
    /// need, e.g. while rotating the master key. It reveals nothing usable
    /// about the key.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Encrypts `secret`, binding it to `context` (1 to [`MAX_CONTEXT_LEN`]
    /// bytes, e.g. the tenant ID). Returns `version ‖ nonce ‖ ciphertext ‖ tag`.
    pub fn wrap(&self, secret: &[u8], context: &str) -> Result<Vec<u8>, PkiError> {
        check_context(context)?;
        if secret.len() > MAX_WRAPPED_SECRET_LEN {
            return Err(PkiError::InvalidArgument(format!(
                "a {}-byte secret is larger than the {MAX_WRAPPED_SECRET_LEN} bytes KeyWrap accepts",
                secret.len()
            )));
        }
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce)
            .map_err(|_| PkiError::Internal("random number generator failed".into()))?;
        // Holds the plaintext until it is encrypted in place; wiped if sealing fails.
        let mut body = Zeroizing::new(secret.to_vec());
        self.cipher()?
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(context)),
                &mut *body,
            )
            .map_err(|_| PkiError::Internal("AES-GCM encryption failed".into()))?;
        let mut out = Vec::with_capacity(HEADER_LEN + body.len());
        out.push(KEY_WRAP_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Decrypts what [`KeyWrap::wrap`] returned, given the same `context`.
    ///
    /// Fails with [`PkiError::KeyUnwrap`], never panics, if the data is too
    /// short, of an unknown version, altered, or wrapped under another master
    /// key or context.
    pub fn unwrap(&self, wrapped: &[u8], context: &str) -> Result<Zeroizing<Vec<u8>>, PkiError> {
        check_context(context)?;
        let (header, sealed) = wrapped
            .split_at_checked(HEADER_LEN)
            .filter(|(_, sealed)| sealed.len() >= TAG_LEN)
            .ok_or_else(|| {
                PkiError::KeyUnwrap(format!(
                    "{} bytes is too short for a wrapped key (at least {})",
                    wrapped.len(),
                    HEADER_LEN + TAG_LEN
                ))
            })?;
        let (version, nonce) = header
            .split_first()
            .ok_or_else(|| PkiError::KeyUnwrap("empty header".into()))?;
        if *version != KEY_WRAP_VERSION {
            return Err(PkiError::KeyUnwrap(format!(
                "format version {version} is unknown (this build reads version \
                 {KEY_WRAP_VERSION}); was it written by a newer Sevenfold?"
            )));
        }
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| PkiError::KeyUnwrap("bad nonce length".into()))?;
        let mut body = Zeroizing::new(sealed.to_vec());
        let plain_len = self
            .cipher()?
            .open_in_place(nonce, Aad::from(aad(context)), &mut body[..])
            .map_err(|_| {
                PkiError::KeyUnwrap(
                    "authentication failed (wrong master key, wrong context, or altered data)"
                        .into(),
                )
            })?
            .len();
        body.truncate(plain_len);
        Ok(body)
    }

    fn cipher(&self) -> Result<LessSafeKey, PkiError> {
        let key = UnboundKey::new(&AES_256_GCM, &self.key[..])
            .map_err(|_| PkiError::Internal("AES-256-GCM key setup failed".into()))?;
        Ok(LessSafeKey::new(key))
    }
}

impl fmt::Debug for KeyWrap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyWrap")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

fn check_context(context: &str) -> Result<(), PkiError> {
    if context.is_empty() || context.len() > MAX_CONTEXT_LEN {
        return Err(PkiError::InvalidArgument(format!(
            "the key wrap context must be 1 to {MAX_CONTEXT_LEN} bytes (e.g. the tenant ID), \
             not {}",
            context.len()
        )));
    }
    Ok(())
}

fn aad(context: &str) -> Vec<u8> {
    [AAD_LABEL, context.as_bytes()].concat()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn wrap() -> KeyWrap {
        KeyWrap::new(&KeyWrap::generate_master_key().unwrap())
    }

    fn is_unwrap_error(got: Result<Zeroizing<Vec<u8>>, PkiError>) -> bool {
        matches!(got, Err(PkiError::KeyUnwrap(_)))
    }

    #[test]
    fn round_trip_and_format() {
        let w = wrap();
        for secret in [&b""[..], b"x", &[7u8; 1000]] {
            let blob = w.wrap(secret, "tenant-a").unwrap();
            assert_eq!(blob.len(), 1 + 12 + secret.len() + 16);
            assert_eq!(blob[0], KEY_WRAP_VERSION);
            assert_eq!(w.unwrap(&blob, "tenant-a").unwrap().as_slice(), secret);
        }
        // A fresh nonce each time.
        let a = w.wrap(b"same", "t").unwrap();
        let b = w.wrap(b"same", "t").unwrap();
        assert_ne!(a, b);
        assert_ne!(a[1..13], b[1..13]);
    }

    #[test]
    fn wrong_context_key_or_data_is_refused() {
        let w = wrap();
        let blob = w.wrap(b"secret key", "tenant-a").unwrap();
        assert!(is_unwrap_error(w.unwrap(&blob, "tenant-b")));
        assert!(is_unwrap_error(w.unwrap(&blob, "tenant-a ")));
        assert!(is_unwrap_error(wrap().unwrap(&blob, "tenant-a")));
        for at in 0..blob.len() {
            let mut changed = blob.clone();
            changed[at] ^= 0x01;
            assert!(is_unwrap_error(w.unwrap(&changed, "tenant-a")), "byte {at}");
        }
        for len in 0..blob.len() {
            assert!(is_unwrap_error(w.unwrap(&blob[..len], "tenant-a")), "{len}");
        }
        let longer = [blob.as_slice(), &[0]].concat();
        assert!(is_unwrap_error(w.unwrap(&longer, "tenant-a")));
        let mut version = blob.clone();
        version[0] = 2;
        let err = w.unwrap(&version, "tenant-a").unwrap_err().to_string();
        assert!(err.contains("version 2 is unknown"), "{err}");
        let err = w.unwrap(&blob, "tenant-b").unwrap_err().to_string();
        assert!(err.contains("master key"), "{err}");
    }

    #[test]
    fn arguments_are_checked() {
        let w = wrap();
        for context in ["", &"c".repeat(MAX_CONTEXT_LEN + 1)] {
            assert!(matches!(
                w.wrap(b"k", context),
                Err(PkiError::InvalidArgument(_))
            ));
            assert!(matches!(
                w.unwrap(&[1; 40], context),
                Err(PkiError::InvalidArgument(_))
            ));
        }
        assert!(matches!(
            w.wrap(&vec![0; MAX_WRAPPED_SECRET_LEN + 1], "t"),
            Err(PkiError::InvalidArgument(_))
        ));
        assert!(w.wrap(&vec![0; MAX_WRAPPED_SECRET_LEN], "t").is_ok());
    }

    #[test]
    fn hex_master_keys() {
        let master = KeyWrap::generate_master_key().unwrap();
        let text = KeyWrap::master_key_to_hex(&master);
        assert_eq!(text.len(), 64);
        let a = KeyWrap::new(&master);
        let b = KeyWrap::from_hex(&format!("  {}\n", *text)).unwrap();
        let c = KeyWrap::from_hex(&text.to_uppercase()).unwrap();
        let blob = a.wrap(b"k", "t").unwrap();
        assert_eq!(b.unwrap(&blob, "t").unwrap().as_slice(), b"k");
        assert_eq!(c.unwrap(&blob, "t").unwrap().as_slice(), b"k");
        assert_eq!(a.key_id(), b.key_id());
        assert_eq!(a.key_id().len(), 16);
        assert_ne!(a.key_id(), wrap().key_id());
        let secret_like = "zz".repeat(32);
        for bad in ["", "abcd", &"0".repeat(63), &"0".repeat(66), &secret_like] {
            let err = KeyWrap::from_hex(bad).unwrap_err();
            assert!(matches!(err, PkiError::InvalidArgument(_)), "{bad:?}");
            if bad.len() > 4 {
                assert!(!err.to_string().contains(bad), "the key is not echoed");
            }
        }
        let debug = format!("{a:?}");
        assert!(debug.contains(a.key_id()) && !debug.contains(text.as_str()));
    }

    #[test]
    fn known_answer() {
        // Pins the format: a blob made by this build must keep opening.
        let w = KeyWrap::new(&[0x42; 32]);
        let blob = hex::decode(KNOWN_BLOB).unwrap();
        assert_eq!(
            w.unwrap(&blob, "tenant-a").unwrap().as_slice(),
            b"known secret"
        );
    }

    /// `b"known secret"` wrapped under `[0x42; 32]` with context `tenant-a` and
    /// nonce `00 01 … 0b`, made independently with Python's `cryptography`:
    /// `AESGCM(key).encrypt(nonce, secret, b"sevenfold key wrap v1\0" + b"tenant-a")`.
    const KNOWN_BLOB: &str =
        "01000102030405060708090a0b6eb0feaadf0c816efe7421671b2e459fbe30c3ce8beb45dc72513a07";

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..256),
            context in "[a-z]{1,10}",
        ) {
            let w = KeyWrap::new(&[9; 32]);
            prop_assert!(w.unwrap(&bytes, &context).is_err());
            let mut versioned = bytes.clone();
            if let Some(first) = versioned.first_mut() {
                *first = KEY_WRAP_VERSION;
            }
            prop_assert!(w.unwrap(&versioned, &context).is_err());
        }
    }
}
