//! The `tpm` root of trust: a [`RootOfTrust`] in a TPM 2.0 chip (discrete,
//! firmware, or the swtpm simulator), through tss-esapi and the system's
//! libtss2. Only with the `tpm` cargo feature.
//!
//! | `RootOfTrust` | TPM 2.0 |
//! |---|---|
//! | device key | a restricted ECC P-256 ECDSA/SHA-256 signing key (an attestation key, AK), `fixedTPM`, child of the storage root key (SRK) of the owner hierarchy |
//! | registers | the SHA-256 PCR bank; Sevenfold extends PCR 14 (runtime) and 15 (applications) |
//! | quotes | `TPM2_Quote` by the AK: a `TPMS_ATTEST` and its `TPMT_SIGNATURE` ([`QuoteFormat::Tpm2`](crate::QuoteFormat)) |
//! | counters | NV counters (`TPM_NT_COUNTER`) at NV index `0x01300000 + i` (see [`nv`](self)) |
//! | sealing | sealed data objects under the SRK, with a `TPM2_PolicyPCR` auth policy for [`SealPolicy::Registers`] |
//! | `sign` | `TPM2_Hash` (which issues a ticket only for data that does not start with `TPM_GENERATED_VALUE`) then `TPM2_Sign` by the AK |
//! | [`ResidentTlsKey`] | an unrestricted ECC P-256 ECDSA/SHA-256 signing key under the SRK, `fixedTPM`; `TPM2_Sign` with a null ticket (see `tls.rs`) |
//!
//! State directory (0700): `ak.pub` (the AK's `TPMT_PUBLIC`) and `ak.priv`
//! (its private area, encrypted by the TPM under the SRK: useless to anyone
//! without this very TPM); `tls.pub` and `tls.priv`, the same for the TLS
//! key. `ak.pub` is written last and its presence means initialised. The SRK is not stored: it is derived again from the owner
//! seed and the template at every start.
//!
//! Why the storage (owner) hierarchy and not the endorsement hierarchy: the
//! SRK needs no policy session to use (the EK, a child of the endorsement
//! hierarchy, needs `PolicySecret(endorsement)` for every load), and what
//! proves the AK lives in the same TPM as the EK is credential activation,
//! not parentage, which a verifier cannot see. The price: `TPM2_Clear`
//! changes the owner seed, so a cleared TPM no longer loads the AK and the
//! device needs a new identity, which is what clearing a TPM means.
//!
//! The key never leaves the chip; the registers reset only with the
//! platform; counters never go back. See docs/tpm.md for the PCR map, NV
//! range and the TLS key.

mod endorsement;
mod nv;
mod objects;
mod pcr;
mod seal;
pub mod simulator;
mod tls;
mod worker;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use tss_esapi::handles::KeyHandle;
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::resource_handles::Hierarchy;
use tss_esapi::structures::{MaxBuffer, Private, Public};
use tss_esapi::tcti_ldr::TctiNameConf;
use tss_esapi::traits::{Marshall, UnMarshall};
use tss_esapi::Context;
use zeroize::Zeroizing;

use crate::credential::{Credential, TpmEndorsement};
use crate::soft::fs;
use crate::{
    CounterIndex, DeviceId, Digest, PublicKey, Quote, RegisterIndex, RegisterValues,
    ResidentTlsKey, RootOfTrust, RotError, SealPolicy,
};

pub use nv::{COUNTER_NV_BASE, MAX_COUNTER_STEP};

const AK_PUBLIC_FILE: &str = "ak.pub";
const AK_PRIVATE_FILE: &str = "ak.priv";
/// Upper bound on a key blob file (a P-256 public area is ~90 bytes).
const MAX_KEY_FILE_LEN: usize = 4096;

/// What the TPM thread holds: the ESAPI context and the loaded keys.
pub(crate) struct TpmState {
    ctx: Context,
    srk: KeyHandle,
    ak: KeyHandle,
    /// The TLS key's blobs ([`ResidentTlsKey`]), loaded only to sign: a
    /// TPM without a resource manager has few object slots (swtpm: three),
    /// and SRK plus AK hold two of them.
    tls: tls::TlsBlobs,
}

/// A TPM-backed root of trust; see the [module documentation](self).
///
/// Obtained from [`TpmRoot::create`] (once per device) or [`TpmRoot::open`]
/// (every later start). Safe to share between threads: every operation runs
/// on one thread that owns the TPM connection.
pub struct TpmRoot {
    state_dir: PathBuf,
    tcti: String,
    worker: worker::Worker<TpmState>,
    public: PublicKey,
    device_id: DeviceId,
    tls_public: PublicKey,
}

impl TpmRoot {
    /// Creates a new attestation key and a new TLS key in the TPM reached
    /// through `tcti` and stores their blobs in `state_dir` (created 0700):
    /// a new device identity.
    ///
    /// Refuses with [`RotError::AlreadyInitialised`] if the directory
    /// already holds one.
    pub fn create(state_dir: &Path, tcti: &str) -> Result<TpmRoot, RotError> {
        if fs::exists(&state_dir.join(AK_PUBLIC_FILE))? {
            return Err(RotError::AlreadyInitialised(state_dir.to_path_buf()));
        }
        fs::create_private_dir(state_dir)?;
        fs::remove_stale_temps(state_dir)?;
        let conf = parse_tcti(tcti)?;
        let (worker, (public, private, tls_blobs)) = worker::Worker::start(move || {
            let mut ctx = connect(conf)?;
            let srk = objects::create_srk(&mut ctx)?;
            let template = objects::ak_template()?;
            let created = ctx
                .execute_with_nullauth_session(|ctx| {
                    ctx.create(srk, template, None, None, None, None)
                })
                .map_err(tpm_err("creating the attestation key"))?;
            let (public, private) = (created.out_public, created.out_private);
            let ak = ctx
                .execute_with_nullauth_session(|ctx| ctx.load(srk, private.clone(), public.clone()))
                .map_err(tpm_err("loading the attestation key"))?;
            let tls = tls::create(&mut ctx, srk)?;
            let tls_blobs = tls.clone();
            Ok((TpmState { ctx, srk, ak, tls }, (public, private, tls_blobs)))
        })?;
        let key = objects::ak_public_key(&public)?;
        let tls_public = objects::tls_public_key(&tls_blobs.public)?;
        // No identity is committed yet, so nothing used an older TLS key here.
        tls::store(state_dir, &tls_blobs, true)?;
        let public_bytes = public
            .marshall()
            .map_err(tpm_err("encoding the attestation key"))?;
        let temp = fs::write_temp(state_dir, AK_PRIVATE_FILE, private.value())?;
        fs::commit_temp(&temp, &state_dir.join(AK_PRIVATE_FILE), state_dir)?;
        // The commit point: only now does the directory hold an identity.
        if !fs::write_new(state_dir, AK_PUBLIC_FILE, &public_bytes)? {
            return Err(RotError::AlreadyInitialised(state_dir.to_path_buf()));
        }
        Ok(TpmRoot::assemble(state_dir, tcti, worker, key, tls_public))
    }

    /// Opens the identity a previous [`TpmRoot::create`] left in `state_dir`,
    /// loading the attestation key and the TLS key into the TPM reached
    /// through `tcti`. A directory made before the TLS key lived in the TPM
    /// gets one now (`tls.pub`, `tls.priv`).
    ///
    /// Fails closed: [`RotError::NotInitialised`] without `ak.pub`,
    /// [`RotError::InsecurePermissions`] for an exposed directory or file,
    /// [`RotError::CorruptState`] for damaged blobs, and [`RotError::Tpm`]
    /// if this TPM cannot load the key (another TPM, or a cleared one).
    pub fn open(state_dir: &Path, tcti: &str) -> Result<TpmRoot, RotError> {
        let public_path = state_dir.join(AK_PUBLIC_FILE);
        if !fs::exists(&public_path)? {
            return Err(RotError::NotInitialised(state_dir.to_path_buf()));
        }
        fs::check_private_dir(state_dir)?;
        fs::remove_stale_temps(state_dir)?;
        let public_bytes = fs::read_private_file(&public_path, MAX_KEY_FILE_LEN)?
            .ok_or_else(|| fs::corrupt(&public_path, "vanished while opening"))?;
        let public = Public::unmarshall(&public_bytes)
            .map_err(|e| fs::corrupt(&public_path, &e.to_string()))?;
        let key = objects::ak_public_key(&public)
            .map_err(|e| fs::corrupt(&public_path, &e.to_string()))?;
        let private_path = state_dir.join(AK_PRIVATE_FILE);
        let private_bytes =
            fs::read_private_file(&private_path, MAX_KEY_FILE_LEN)?.ok_or_else(|| {
                fs::corrupt(
                    &private_path,
                    "the attestation key's private blob is missing",
                )
            })?;
        let private = Private::try_from(private_bytes.to_vec())
            .map_err(|e| fs::corrupt(&private_path, &e.to_string()))?;
        let conf = parse_tcti(tcti)?;
        let dir = state_dir.to_path_buf();
        let (worker, tls_public) = worker::Worker::start(move || {
            let mut ctx = connect(conf)?;
            let srk = objects::create_srk(&mut ctx)?;
            let ak = ctx
                .execute_with_nullauth_session(|ctx| ctx.load(srk, private, public))
                .map_err(|e| RotError::Tpm {
                    operation: "loading the attestation key",
                    detail: format!(
                        "{e} (was it created by another TPM, or was this TPM cleared?)"
                    ),
                })?;
            let (tls, tls_public) = tls::open_or_create(&mut ctx, srk, &dir)?;
            Ok((TpmState { ctx, srk, ak, tls }, tls_public))
        })?;
        Ok(TpmRoot::assemble(state_dir, tcti, worker, key, tls_public))
    }

    fn assemble(
        state_dir: &Path,
        tcti: &str,
        worker: worker::Worker<TpmState>,
        public: PublicKey,
        tls_public: PublicKey,
    ) -> TpmRoot {
        TpmRoot {
            state_dir: state_dir.to_path_buf(),
            tcti: tcti.to_owned(),
            worker,
            device_id: DeviceId::of(&public),
            public,
            tls_public,
        }
    }

    /// The state directory holding the attestation key's blobs.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The TCTI this root of trust talks to the TPM through.
    pub fn tcti(&self) -> &str {
        &self.tcti
    }

    /// The TPM maker's certificate (DER) over the RSA 2048 endorsement key,
    /// from NV index `0x01c00002`.
    pub fn endorsement_certificate(&self) -> Result<Vec<u8>, RotError> {
        self.worker.call(endorsement::ek_certificate)
    }

    /// Answers a verifier's credential challenge
    /// ([`make_credential`](crate::credential::make_credential)) with
    /// `TPM2_ActivateCredential`: the secret comes out only if the challenge
    /// was made for this TPM's EK and this attestation key's name.
    pub fn activate_credential(
        &self,
        credential: Credential,
    ) -> Result<Zeroizing<Vec<u8>>, RotError> {
        self.worker
            .call(move |s| endorsement::activate(s, &credential))
    }

    /// The attestation key's `TPMT_PUBLIC`, marshalled (what `tpm2_checkquote`
    /// and a credential-activation verifier need besides the SPKI).
    pub fn attestation_key_public_area(&self) -> Result<Vec<u8>, RotError> {
        let path = self.state_dir.join(AK_PUBLIC_FILE);
        fs::read_private_file(&path, MAX_KEY_FILE_LEN)?
            .map(|bytes| bytes.to_vec())
            .ok_or_else(|| fs::corrupt(&path, "vanished"))
    }
}

fn parse_tcti(tcti: &str) -> Result<TctiNameConf, RotError> {
    TctiNameConf::from_str(tcti).map_err(|e| RotError::Tpm {
        operation: "parsing the TCTI",
        detail: format!(
            "{tcti:?}: {e} (expected e.g. device:/dev/tpmrm0 or swtpm:host=127.0.0.1,port=2321)"
        ),
    })
}

fn connect(conf: TctiNameConf) -> Result<Context, RotError> {
    Context::new(conf).map_err(tpm_err("connecting to the TPM"))
}

/// Maps a TSS error to [`RotError::Tpm`] naming the operation.
pub(crate) fn tpm_err(operation: &'static str) -> impl Fn(tss_esapi::Error) -> RotError {
    move |e| RotError::Tpm {
        operation,
        detail: e.to_string(),
    }
}

impl RootOfTrust for TpmRoot {
    fn backend(&self) -> &'static str {
        "tpm"
    }

    fn device_public_key(&self) -> &PublicKey {
        &self.public
    }

    fn device_id(&self) -> DeviceId {
        self.device_id
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, RotError> {
        crate::root::check_signable(message)?;
        let message = MaxBuffer::try_from(message.to_vec()).map_err(tpm_err("signing"))?;
        let signature = self.worker.call(move |s| {
            let ak = s.ak;
            s.ctx
                .execute_with_nullauth_session(|ctx| {
                    // The TPM hashes the message itself and issues the ticket a
                    // restricted key needs, refusing TPM_GENERATED_VALUE data.
                    let (digest, ticket) =
                        ctx.hash(message, HashingAlgorithm::Sha256, Hierarchy::Owner)?;
                    ctx.sign(ak, digest, objects::ECDSA_SHA256, ticket)
                })
                .map_err(tpm_err("signing"))
        })?;
        tls::signature_der(signature, "signing")
    }

    fn extend(&self, register: RegisterIndex, measurement: &Digest) -> Result<Digest, RotError> {
        let measurement = *measurement;
        self.worker
            .call(move |s| pcr::extend(s, register, &measurement))
    }

    fn read_registers(&self, selection: &[RegisterIndex]) -> Result<RegisterValues, RotError> {
        let selection = selection.to_vec();
        self.worker.call(move |s| pcr::read(s, &selection))
    }

    fn quote(
        &self,
        nonce: &[u8],
        selection: &[RegisterIndex],
    ) -> Result<(Quote, RegisterValues), RotError> {
        let (nonce, selection) = (nonce.to_vec(), selection.to_vec());
        self.worker.call(move |s| pcr::quote(s, &nonce, &selection))
    }

    fn read_counter(&self, index: CounterIndex) -> Result<u64, RotError> {
        self.worker.call(move |s| nv::read(s, index))
    }

    fn advance_counter(&self, index: CounterIndex, value: u64) -> Result<u64, RotError> {
        self.worker.call(move |s| nv::advance(s, index, value))
    }

    fn seal(&self, secret: &[u8], policy: &SealPolicy) -> Result<Vec<u8>, RotError> {
        let (secret, policy) = (Zeroizing::new(secret.to_vec()), policy.clone());
        self.worker.call(move |s| seal::seal(s, &secret, &policy))
    }

    fn unseal(&self, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, RotError> {
        let sealed = sealed.to_vec();
        self.worker.call(move |s| seal::unseal(s, &sealed))
    }

    fn tpm_endorsement(&self) -> Option<&dyn TpmEndorsement> {
        Some(self)
    }

    fn resident_tls_key(&self) -> Option<&dyn ResidentTlsKey> {
        Some(self)
    }
}

impl ResidentTlsKey for TpmRoot {
    fn tls_public_key(&self) -> &PublicKey {
        &self.tls_public
    }

    fn sign_tls_digest(&self, digest: &Digest) -> Result<Vec<u8>, RotError> {
        let digest = *digest;
        self.worker.call(move |s| tls::sign_digest(s, &digest))
    }
}

impl TpmEndorsement for TpmRoot {
    fn endorsement_certificate(&self) -> Result<Vec<u8>, RotError> {
        TpmRoot::endorsement_certificate(self)
    }

    fn attestation_key_public_area(&self) -> Result<Vec<u8>, RotError> {
        TpmRoot::attestation_key_public_area(self)
    }

    fn activate_credential(&self, credential: Credential) -> Result<Zeroizing<Vec<u8>>, RotError> {
        TpmRoot::activate_credential(self, credential)
    }
}

impl fmt::Debug for TpmRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TpmRoot")
            .field("state_dir", &self.state_dir)
            .field("tcti", &self.tcti)
            .field("device_id", &self.device_id)
            .finish_non_exhaustive()
    }
}
