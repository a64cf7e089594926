//! The `soft` root of trust: a [`RootOfTrust`] kept in files of a state
//! directory, for development, CI and boards without a TPM.
//!
//! It gives the rest of Sevenfold the same interface, and the same failure
//! behaviour, as a hardware root of trust, so the agent, attestation and
//! anti-rollback code run unchanged on a laptop. Layout of the state
//! directory (mode 0700, refused if group or others have any access):
//!
//! - `device-key.p8`: the device key, ECDSA P-256, PKCS#8 DER, mode 0600.
//!   Its presence is what makes the directory initialised; it is written
//!   last by [`SoftRoot::create`] and never overwritten.
//! - `sealing-key.bin`: 32 random bytes, the AES-256-GCM sealing key, 0600.
//! - `counters/counter-NNNNN`: one checksummed record per monotonic counter
//!   (see the `counters` module), written atomically and fsynced.
//!
//! Measurement registers live in memory only and are zero whenever a
//! [`SoftRoot`] is created or opened: a process start is this backend's boot,
//! as power-on is a TPM's.
//!
//! # What it does NOT guarantee
//!
//! It has the interface of a hardware root of trust, not its guarantees:
//!
//! - **The device key can be copied.** Whoever is root on the device (or can
//!   read the state directory, e.g. from a backup or a removed SD card) can
//!   read `device-key.p8` and impersonate the device anywhere; the same holds
//!   for the sealing key and so for every sealed secret.
//! - **Counters can be rolled back** by whoever can write the state
//!   directory: deleting a counter file resets it to 0. The checksum in each
//!   record catches damage, not an attacker.
//! - **Registers prove little.** They are reset by restarting the process, so
//!   their values say what *this* process measured, not what booted the
//!   device.
//! - **One process per state directory.** Updates are serialised within a
//!   process only; two processes opening the same directory must not advance
//!   counters concurrently.
//!
//! A TPM backend removes these: its key is non-exportable, its counters are
//! NV counters inside the chip, and its PCRs reset only with the platform.

mod counters;
pub(crate) mod fs;
mod seal;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use zeroize::Zeroizing;

use crate::{
    CounterIndex, DeviceId, Digest, KeyAlgorithm, PublicKey, Quote, QuoteFormat, RegisterIndex,
    RegisterValues, RootOfTrust, RotError, SealPolicy, SoftwareKey, REGISTER_COUNT,
};

use counters::CounterStore;
use seal::{SealedBlob, Sealer, SEALING_KEY_LEN};

const DEVICE_KEY_FILE: &str = "device-key.p8";
const SEALING_KEY_FILE: &str = "sealing-key.bin";
const COUNTERS_DIR: &str = "counters";
/// Upper bound on the device key file (a P-256 PKCS#8 document is ~140 bytes).
const MAX_DEVICE_KEY_LEN: usize = 4096;

/// The register bank: 24 SHA-256 values.
type Bank = [Digest; REGISTER_COUNT as usize];

/// A file-backed root of trust in a state directory; see the [module
/// documentation](self) for what it does and what it does not guarantee.
///
/// Obtained from [`SoftRoot::create`] (once per device) or [`SoftRoot::open`]
/// (every later start). Safe to share between threads.
pub struct SoftRoot {
    state_dir: PathBuf,
    device_key: SoftwareKey,
    device_id: DeviceId,
    sealer: Sealer,
    registers: Mutex<Bank>,
    counters: CounterStore,
}

impl SoftRoot {
    /// Initialises a new root of trust in `state_dir`: a new device identity.
    ///
    /// Creates the directory if needed and sets it to mode 0700, then writes a
    /// random sealing key and a new ECDSA P-256 device key (both 0600, written
    /// atomically and fsynced). Refuses with [`RotError::AlreadyInitialised`]
    /// if the directory already holds a device key: an identity is never
    /// replaced. If a previous `create` was interrupted before the device key
    /// was written, its sealing key is reused (nothing can have been sealed
    /// with it) and creation completes.
    pub fn create(state_dir: &Path) -> Result<SoftRoot, RotError> {
        if fs::exists(&state_dir.join(DEVICE_KEY_FILE))? {
            return Err(RotError::AlreadyInitialised(state_dir.to_path_buf()));
        }
        fs::create_private_dir(state_dir)?;
        fs::remove_stale_temps(state_dir)?;

        let sealing_key = Sealer::generate_key()?;
        let sealer = if fs::write_new(state_dir, SEALING_KEY_FILE, sealing_key.as_slice())? {
            load_sealer(
                &state_dir.join(SEALING_KEY_FILE),
                Some(sealing_key.as_slice()),
            )?
        } else {
            load_sealer(&state_dir.join(SEALING_KEY_FILE), None)?
        };
        let counters = CounterStore::open(state_dir.join(COUNTERS_DIR))?;

        let (device_key, pkcs8) = SoftwareKey::generate(KeyAlgorithm::EcdsaP256)?;
        // The commit point: only now does the directory hold an identity.
        if !fs::write_new(state_dir, DEVICE_KEY_FILE, &pkcs8)? {
            return Err(RotError::AlreadyInitialised(state_dir.to_path_buf()));
        }
        Ok(SoftRoot::assemble(state_dir, device_key, sealer, counters))
    }

    /// Opens the root of trust a previous [`SoftRoot::create`] left in
    /// `state_dir`. Registers start at zero (this is a boot).
    ///
    /// Fails closed: [`RotError::NotInitialised`] if there is no device key,
    /// [`RotError::InsecurePermissions`] if the directory, the `counters`
    /// directory or a key file is accessible to group or others, and
    /// [`RotError::CorruptState`] if a key file is damaged or missing. Temp
    /// files left by a crash mid-write are removed; they never change state.
    pub fn open(state_dir: &Path) -> Result<SoftRoot, RotError> {
        let key_path = state_dir.join(DEVICE_KEY_FILE);
        if !fs::exists(&key_path)? {
            return Err(RotError::NotInitialised(state_dir.to_path_buf()));
        }
        fs::check_private_dir(state_dir)?;

        let pkcs8 = fs::read_private_file(&key_path, MAX_DEVICE_KEY_LEN)?
            .ok_or_else(|| fs::corrupt(&key_path, "device key vanished while opening"))?;
        let device_key = SoftwareKey::from_pkcs8_der(&pkcs8)
            .map_err(|e| fs::corrupt(&key_path, &e.to_string()))?;
        let sealer = load_sealer(&state_dir.join(SEALING_KEY_FILE), None)?;
        fs::remove_stale_temps(state_dir)?;
        let counters = CounterStore::open(state_dir.join(COUNTERS_DIR))?;
        Ok(SoftRoot::assemble(state_dir, device_key, sealer, counters))
    }

    /// The state directory this root of trust lives in.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    fn assemble(
        state_dir: &Path,
        device_key: SoftwareKey,
        sealer: Sealer,
        counters: CounterStore,
    ) -> SoftRoot {
        let device_id = DeviceId::of(device_key.public_key());
        SoftRoot {
            state_dir: state_dir.to_path_buf(),
            device_key,
            device_id,
            sealer,
            registers: Mutex::new([Digest::ZERO; REGISTER_COUNT as usize]),
            counters,
        }
    }

    /// Locks the register bank. Every update is a single assignment of a
    /// complete value, so a panic elsewhere cannot leave the bank half-written
    /// and a poisoned lock is safe to take over.
    fn bank(&self) -> MutexGuard<'_, Bank> {
        self.registers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Reads and checks the sealing key file; `expected` is the key just written
/// (a read-back check) or `None` to accept what is there.
fn load_sealer(path: &Path, expected: Option<&[u8]>) -> Result<Sealer, RotError> {
    let bytes = fs::read_private_file(path, SEALING_KEY_LEN)?
        .ok_or_else(|| fs::corrupt(path, "sealing key is missing"))?;
    if expected.is_some_and(|e| e != bytes.as_slice()) {
        return Err(fs::corrupt(
            path,
            "sealing key does not read back as written",
        ));
    }
    Sealer::new(&bytes).ok_or_else(|| {
        fs::corrupt(
            path,
            &format!(
                "sealing key must be {SEALING_KEY_LEN} bytes, found {}",
                bytes.len()
            ),
        )
    })
}

/// Values of the selected registers; refuses a register named twice.
fn snapshot(bank: &Bank, selection: &[RegisterIndex]) -> Result<RegisterValues, RotError> {
    let values = selection
        .iter()
        .map(|&index| register(bank, index).map(|value| (index, value)))
        .collect::<Result<Vec<_>, _>>()?;
    RegisterValues::new(values)
}

fn register(bank: &Bank, index: RegisterIndex) -> Result<Digest, RotError> {
    usize::try_from(index.get())
        .ok()
        .and_then(|i| bank.get(i))
        .copied()
        .ok_or(RotError::NoSuchRegister(index.get()))
}

impl RootOfTrust for SoftRoot {
    fn backend(&self) -> &'static str {
        "soft"
    }

    fn device_public_key(&self) -> &PublicKey {
        self.device_key.public_key()
    }

    fn device_id(&self) -> DeviceId {
        self.device_id
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, RotError> {
        crate::root::check_signable(message)?;
        self.device_key.sign(message)
    }

    fn extend(&self, register: RegisterIndex, measurement: &Digest) -> Result<Digest, RotError> {
        let mut bank = self.bank();
        let slot = usize::try_from(register.get())
            .ok()
            .and_then(|i| bank.get_mut(i))
            .ok_or(RotError::NoSuchRegister(register.get()))?;
        *slot = crate::extend(slot, measurement);
        Ok(*slot)
    }

    fn read_registers(&self, selection: &[RegisterIndex]) -> Result<RegisterValues, RotError> {
        snapshot(&self.bank(), selection)
    }

    fn quote(
        &self,
        nonce: &[u8],
        selection: &[RegisterIndex],
    ) -> Result<(Quote, RegisterValues), RotError> {
        // Read and sign under one lock, so the quote covers exactly the values
        // returned beside it.
        let bank = self.bank();
        let values = snapshot(&bank, selection)?;
        let body = Quote::sevenfold_body(nonce, &values)?;
        let signature = self.device_key.sign(&body)?;
        drop(bank);
        Ok((
            Quote::from_parts(QuoteFormat::Sevenfold, body, signature),
            values,
        ))
    }

    fn read_counter(&self, index: CounterIndex) -> Result<u64, RotError> {
        self.counters.read(index)
    }

    fn advance_counter(&self, index: CounterIndex, value: u64) -> Result<u64, RotError> {
        self.counters.advance(index, value)
    }

    fn seal(&self, secret: &[u8], policy: &SealPolicy) -> Result<Vec<u8>, RotError> {
        let mut indices = match policy {
            SealPolicy::Device => Vec::new(),
            SealPolicy::Registers(indices) => indices.clone(),
        };
        // A register named twice is the same condition as named once.
        indices.sort_unstable();
        indices.dedup();
        let values = self.read_registers(&indices)?;
        self.sealer.seal(&self.device_id, &values, secret)
    }

    fn unseal(&self, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, RotError> {
        let blob = SealedBlob::parse(sealed)?;
        let current = self.read_registers(blob.indices())?;
        self.sealer.unseal(&self.device_id, &blob, &current)
    }
}

impl fmt::Debug for SoftRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SoftRoot")
            .field("state_dir", &self.state_dir)
            .field("device_id", &self.device_id)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::{APPLICATION_REGISTER, RUNTIME_REGISTER};

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn reg(i: u32) -> RegisterIndex {
        RegisterIndex::new(i).unwrap()
    }

    #[test]
    fn create_then_open_is_the_same_device() {
        let dir = tempfile::tempdir().unwrap();
        let created = SoftRoot::create(dir.path()).unwrap();
        assert_eq!(created.backend(), "soft");
        assert_eq!(created.state_dir(), dir.path());
        assert_eq!(
            created.device_public_key().algorithm(),
            KeyAlgorithm::EcdsaP256
        );
        let opened = SoftRoot::open(dir.path()).unwrap();
        assert_eq!(opened.device_id(), created.device_id());
        assert_eq!(opened.device_public_key(), created.device_public_key());
        assert_eq!(
            created.device_id(),
            DeviceId::of(created.device_public_key())
        );
        let other = tempfile::tempdir().unwrap();
        let other = SoftRoot::create(other.path()).unwrap();
        assert_ne!(other.device_id(), created.device_id());
    }

    #[test]
    fn create_never_replaces_an_identity() {
        let dir = tempfile::tempdir().unwrap();
        let first = SoftRoot::create(dir.path()).unwrap();
        let key_before = std::fs::read(dir.path().join(DEVICE_KEY_FILE)).unwrap();
        let seal_before = std::fs::read(dir.path().join(SEALING_KEY_FILE)).unwrap();
        assert!(matches!(
            SoftRoot::create(dir.path()),
            Err(RotError::AlreadyInitialised(p)) if p == dir.path()
        ));
        assert_eq!(
            std::fs::read(dir.path().join(DEVICE_KEY_FILE)).unwrap(),
            key_before
        );
        assert_eq!(
            std::fs::read(dir.path().join(SEALING_KEY_FILE)).unwrap(),
            seal_before
        );
        assert_eq!(
            SoftRoot::open(dir.path()).unwrap().device_id(),
            first.device_id()
        );
    }

    #[test]
    fn open_without_create_is_not_initialised() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            SoftRoot::open(dir.path()),
            Err(RotError::NotInitialised(p)) if p == dir.path()
        ));
        let missing = dir.path().join("nope");
        assert!(matches!(
            SoftRoot::open(&missing),
            Err(RotError::NotInitialised(_))
        ));
        assert!(!missing.exists(), "open creates nothing");
    }

    #[test]
    fn interrupted_create_is_completed_with_the_same_sealing_key() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("rot");
        // As if `create` stopped after the sealing key was written.
        fs::create_private_dir(&state).unwrap();
        let key = Sealer::generate_key().unwrap();
        fs::write_atomic(&state, SEALING_KEY_FILE, key.as_slice()).unwrap();
        let rot = SoftRoot::create(&state).unwrap();
        assert_eq!(
            std::fs::read(state.join(SEALING_KEY_FILE)).unwrap(),
            key.as_slice()
        );
        SoftRoot::open(&state).unwrap();
        drop(rot);
    }

    #[test]
    fn state_is_private_after_create() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("new/rot");
        SoftRoot::create(&state).unwrap();
        assert_eq!(mode(&state), 0o700);
        assert_eq!(mode(&state.join(COUNTERS_DIR)), 0o700);
        assert_eq!(mode(&state.join(DEVICE_KEY_FILE)), 0o600);
        assert_eq!(mode(&state.join(SEALING_KEY_FILE)), 0o600);
        let names: Vec<_> = std::fs::read_dir(&state)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 3, "no temp files left: {names:?}");
        assert_eq!(
            std::fs::read(state.join(SEALING_KEY_FILE)).unwrap().len(),
            SEALING_KEY_LEN
        );

        // An existing but exposed, empty directory is tightened by create.
        let exposed = dir.path().join("exposed");
        std::fs::create_dir(&exposed).unwrap();
        chmod(&exposed, 0o777);
        SoftRoot::create(&exposed).unwrap();
        assert_eq!(mode(&exposed), 0o700);
    }

    #[test]
    fn open_refuses_exposed_state() {
        let dir = tempfile::tempdir().unwrap();
        SoftRoot::create(dir.path()).unwrap();
        let cases = [
            (dir.path().to_path_buf(), 0o755, 0o700),
            (dir.path().join(COUNTERS_DIR), 0o750, 0o700),
            (dir.path().join(DEVICE_KEY_FILE), 0o644, 0o600),
            (dir.path().join(SEALING_KEY_FILE), 0o604, 0o600),
        ];
        for (path, bad, good) in cases {
            chmod(&path, bad);
            let err = SoftRoot::open(dir.path()).unwrap_err();
            assert!(
                matches!(&err, RotError::InsecurePermissions { path: p, mode } if *p == path && *mode == bad),
                "{}: {err}",
                path.display()
            );
            chmod(&path, good);
            SoftRoot::open(dir.path()).unwrap();
        }
    }

    #[test]
    fn damaged_key_files_are_corrupt_state() {
        let dir = tempfile::tempdir().unwrap();
        SoftRoot::create(dir.path()).unwrap();
        let key = dir.path().join(DEVICE_KEY_FILE);
        let good = std::fs::read(&key).unwrap();
        for bad in [&b""[..], b"not a key", &good[..good.len() - 1]] {
            std::fs::write(&key, bad).unwrap();
            let err = SoftRoot::open(dir.path()).unwrap_err();
            assert!(
                matches!(&err, RotError::CorruptState { path, .. } if *path == key),
                "{err}"
            );
        }
        std::fs::write(&key, &good).unwrap();
        SoftRoot::open(dir.path()).unwrap();

        let sealing = dir.path().join(SEALING_KEY_FILE);
        std::fs::write(&sealing, [0u8; 31]).unwrap();
        assert!(matches!(
            SoftRoot::open(dir.path()),
            Err(RotError::CorruptState { path, .. }) if path == sealing
        ));
        std::fs::remove_file(&sealing).unwrap();
        assert!(matches!(
            SoftRoot::open(dir.path()),
            Err(RotError::CorruptState { path, .. }) if path == sealing
        ));
    }

    #[test]
    fn registers_start_at_zero_and_extend() {
        let dir = tempfile::tempdir().unwrap();
        let rot = SoftRoot::create(dir.path()).unwrap();
        let all: Vec<_> = (0..REGISTER_COUNT).map(reg).collect();
        let values = rot.read_registers(&all).unwrap();
        assert_eq!(values.len(), REGISTER_COUNT as usize);
        assert!(values.iter().all(|(_, v)| *v == Digest::ZERO));

        let m = Digest::of(b"runtime build");
        let once = crate::extend(&Digest::ZERO, &m);
        assert_eq!(rot.extend(RUNTIME_REGISTER, &m).unwrap(), once);
        let read = rot.read_registers(&[RUNTIME_REGISTER, reg(0)]).unwrap();
        assert_eq!(read.get(RUNTIME_REGISTER), Some(&once));
        assert_eq!(read.get(reg(0)), Some(&Digest::ZERO));
        let twice = crate::extend(&once, &m);
        assert_eq!(rot.extend(RUNTIME_REGISTER, &m).unwrap(), twice);
        assert_eq!(
            rot.read_registers(&[RUNTIME_REGISTER])
                .unwrap()
                .get(RUNTIME_REGISTER),
            Some(&twice)
        );
        // Duplicates in a selection are refused, not silently merged.
        assert!(rot.read_registers(&[reg(1), reg(1)]).is_err());
    }

    #[test]
    fn reopening_is_a_boot() {
        let dir = tempfile::tempdir().unwrap();
        let rot = SoftRoot::create(dir.path()).unwrap();
        rot.extend(APPLICATION_REGISTER, &Digest::of(b"app"))
            .unwrap();
        drop(rot);
        let rot = SoftRoot::open(dir.path()).unwrap();
        let v = rot.read_registers(&[APPLICATION_REGISTER]).unwrap();
        assert_eq!(v.get(APPLICATION_REGISTER), Some(&Digest::ZERO));
    }

    #[test]
    fn quote_verifies_only_for_its_nonce_values_and_device() {
        let dir = tempfile::tempdir().unwrap();
        let rot = SoftRoot::create(dir.path()).unwrap();
        rot.extend(RUNTIME_REGISTER, &Digest::of(b"runtime"))
            .unwrap();
        rot.extend(APPLICATION_REGISTER, &Digest::of(b"app"))
            .unwrap();
        let selection = [APPLICATION_REGISTER, RUNTIME_REGISTER];
        let (quote, values) = rot.quote(b"nonce-1", &selection).unwrap();
        assert_eq!(
            values,
            rot.read_registers(&[RUNTIME_REGISTER, APPLICATION_REGISTER])
                .unwrap()
        );
        let key = rot.device_public_key();
        quote.verify(key, b"nonce-1", &values).unwrap();
        // Survives transport.
        Quote::from_bytes(&quote.to_bytes())
            .unwrap()
            .verify(key, b"nonce-1", &values)
            .unwrap();

        assert!(matches!(
            quote.verify(key, b"nonce-2", &values),
            Err(RotError::NonceMismatch)
        ));
        let changed = RegisterValues::new(vec![
            (RUNTIME_REGISTER, *values.get(RUNTIME_REGISTER).unwrap()),
            (APPLICATION_REGISTER, Digest::of(b"evil")),
        ])
        .unwrap();
        assert!(matches!(
            quote.verify(key, b"nonce-1", &changed),
            Err(RotError::RegisterDigestMismatch)
        ));
        // After a further extend, the current values no longer match the quote.
        rot.extend(RUNTIME_REGISTER, &Digest::of(b"more")).unwrap();
        let now = rot.read_registers(&selection).unwrap();
        assert!(quote.verify(key, b"nonce-1", &now).is_err());

        let other_dir = tempfile::tempdir().unwrap();
        let other = SoftRoot::create(other_dir.path()).unwrap();
        assert!(matches!(
            quote.verify(other.device_public_key(), b"nonce-1", &values),
            Err(RotError::BadSignature)
        ));
    }

    #[test]
    fn quote_refuses_duplicates_and_long_nonces() {
        let dir = tempfile::tempdir().unwrap();
        let rot = SoftRoot::create(dir.path()).unwrap();
        assert!(rot.quote(b"n", &[reg(3), reg(3)]).is_err());
        assert!(matches!(
            rot.quote(&[0; crate::MAX_NONCE_LEN + 1], &[reg(3)]),
            Err(RotError::NonceTooLong(_))
        ));
        let (q, v) = rot.quote(b"", &[]).unwrap();
        q.verify(rot.device_public_key(), b"", &v).unwrap();
    }

    #[test]
    fn sign_uses_the_device_key() {
        let dir = tempfile::tempdir().unwrap();
        let rot = SoftRoot::create(dir.path()).unwrap();
        let sig = rot.sign(b"csr").unwrap();
        rot.device_public_key().verify(b"csr", &sig).unwrap();
        let reopened = SoftRoot::open(dir.path()).unwrap();
        reopened.device_public_key().verify(b"csr", &sig).unwrap();
        assert!(rot.device_public_key().verify(b"csR", &sig).is_err());
        // Nothing quote-shaped or over-long is signed.
        assert!(matches!(
            rot.sign(b"\xff\x54\x43\x47SVNF\x02 forged body"),
            Err(RotError::QuoteLikeMessage)
        ));
        assert!(matches!(
            rot.sign(&[0xff, 0x54, 0x43, 0x47, 0x80, 0x18]),
            Err(RotError::QuoteLikeMessage)
        ));
        assert!(matches!(
            rot.sign(&[0; crate::MAX_SIGNED_LEN + 1]),
            Err(RotError::MessageTooLong(1025))
        ));
        rot.sign(&[0; crate::MAX_SIGNED_LEN]).unwrap();
    }

    #[test]
    fn shared_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<SoftRoot>();
        let dir = tempfile::tempdir().unwrap();
        let rot = std::sync::Arc::new(SoftRoot::create(dir.path()).unwrap());
        let m = Digest::of(b"m");
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let rot = rot.clone();
                std::thread::spawn(move || {
                    for _ in 0..10 {
                        rot.extend(reg(5), &m).unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let mut expected = Digest::ZERO;
        for _ in 0..40 {
            expected = crate::extend(&expected, &m);
        }
        assert_eq!(
            rot.read_registers(&[reg(5)]).unwrap().get(reg(5)),
            Some(&expected)
        );
    }

    #[test]
    fn debug_does_not_print_keys() {
        let dir = tempfile::tempdir().unwrap();
        let rot = SoftRoot::create(dir.path()).unwrap();
        let text = format!("{rot:?}");
        assert!(text.contains(&rot.device_id().to_string()), "{text}");
        assert!(!text.contains("device_key"), "{text}");
        assert!(!text.contains("sealer"), "{text}");
    }
}
