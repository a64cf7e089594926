//! The device's state directory: its identity, its configuration, what it
//! trusts and what it runs.
//!
//! See [`StateDir`] for the layout.
//!
//! Why the TLS key is a separate key, and where it lives: see [`TlsKey`].

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde::{Deserialize, Serialize};
use sevenfold_core::attestation::RemediationSession;
use sevenfold_core::manifest::ImageType;
use sevenfold_core::package::{
    read_package, Limits, TrustedKeys, UnverifiedPackage, FILE_EXTENSION,
};
use sevenfold_pki::ManufacturerCa;
use sevenfold_rot::{DeviceId, Digest, KeyAlgorithm, PublicKey, RootOfTrust, SoftwareKey};

use crate::counters::CounterMap;
use crate::status::{Status, STATUS_FILE};
use crate::{certs, fsutil, rot_backend, AgentError};

/// `agent.toml`.
pub const CONFIG_FILE: &str = "agent.toml";
/// The root of trust's directory (either backend).
pub const ROT_DIR: &str = "rot";
/// The pinned service CA.
pub const SERVICE_CA_FILE: &str = "service-ca.pem";
/// The endorsement request (root-of-trust public key).
pub const DEVICE_PUBLIC_KEY_FILE: &str = "device.pub.pem";
/// The manufacturer's endorsement certificate.
pub const ENDORSEMENT_FILE: &str = "endorsement.pem";
/// Directory of trusted image signing keys.
pub const TRUSTED_KEYS_DIR: &str = "trusted-keys";
/// Directory of installed image packages.
pub const IMAGES_DIR: &str = "images";
/// The TLS private key of a `soft` device (a TPM device's is in the TPM).
pub const TLS_KEY_FILE: &str = "tls-key.p8";
/// The device certificate chain.
pub const DEVICE_CERT_FILE: &str = "device-cert.pem";
/// The restricted update session of the last failing verdict (JSON).
pub(crate) const REMEDIATION_FILE: &str = "remediation.json";
/// Suffix of a trusted key file.
pub const TRUSTED_KEY_SUFFIX: &str = ".pub.pem";

/// Days an endorsement made by `init --endorse-with` is valid for (at most
/// the manufacturer CA's own lifetime).
pub const ENDORSEMENT_VALIDITY_DAYS: u32 = 3650;

const MAX_CONFIG_LEN: u64 = 64 * 1024;
const MAX_KEY_FILE_LEN: u64 = 64 * 1024;
const MAX_TLS_KEY_LEN: u64 = 4096;
const MAX_JSON_STATE_LEN: u64 = 4 << 20;

/// Which root of trust holds the device key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RotBackend {
    /// The file-backed `soft` root of trust in `rot/`.
    Soft,
    /// A TPM 2.0 (`rot/` holds its attestation key's blobs); needs the
    /// `tpm` feature.
    Tpm,
}

impl RotBackend {
    /// The name used in `agent.toml` and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            RotBackend::Soft => "soft",
            RotBackend::Tpm => "tpm",
        }
    }

    /// Parses [`RotBackend::name`] (whether `tpm` is built in is checked
    /// when the root of trust is opened).
    pub fn from_name(name: &str) -> Result<RotBackend, AgentError> {
        match name {
            "soft" => Ok(RotBackend::Soft),
            "tpm" => Ok(RotBackend::Tpm),
            other => Err(AgentError::UnsupportedRot(other.to_owned())),
        }
    }
}

/// `agent.toml` on disk.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    service_url: String,
    device_id: String,
    rot: String,
    /// The TPM's TCTI recorded by `init` (`rot = "tpm"` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tcti: Option<String>,
    /// Failure reporting (`[reporting]`); defaults when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reporting: Option<crate::reporter::ReportingFile>,
}

/// The device's configuration (`agent.toml`), checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentConfig {
    /// The service's device listener, `https://…`.
    pub service_url: reqwest::Url,
    /// This device.
    pub device_id: DeviceId,
    /// Its root-of-trust backend.
    pub rot: RotBackend,
    /// The TPM's TCTI as recorded by `init` (see [`crate::resolve_tcti`]).
    pub tcti: Option<String>,
    /// Failure journal and upload settings.
    pub reporting: crate::reporter::ReportingConfig,
}

/// What `init` needs.
#[derive(Clone, Debug)]
pub struct InitOptions {
    /// The state directory to create.
    pub state_dir: PathBuf,
    /// The service's device listener, `https://host:port`.
    pub service_url: String,
    /// The service CA certificate file to pin.
    pub service_ca: PathBuf,
    /// Root-of-trust backend.
    pub rot: RotBackend,
    /// The TPM's TCTI for `RotBackend::Tpm` (else the environment or the
    /// default; see [`crate::resolve_tcti`]); recorded in `agent.toml`.
    pub tcti: Option<String>,
    /// A manufacturer CA directory (`ca.pem`, `ca.key`) to endorse the new
    /// device with right away (the factory step).
    pub endorse_with: Option<PathBuf>,
}

/// What `init` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitReport {
    /// The new device.
    pub device_id: DeviceId,
    /// `device.pub.pem`: what the manufacturer endorses.
    pub endorsement_request: PathBuf,
    /// `endorsement.pem`, if `endorse_with` was given.
    pub endorsement: Option<PathBuf>,
}

/// An image signing key the device now trusts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedKeyReport {
    /// The key's ID (SHA-256 of its SPKI).
    pub key_id: Digest,
    /// Its algorithm.
    pub algorithm: KeyAlgorithm,
    /// Where it was stored.
    pub path: PathBuf,
}

/// An image package installed into `images/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstalledImage {
    /// Component ID (UUID).
    pub component_id: String,
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Security version.
    pub security_version: u32,
    /// The package digest (what boot will measure).
    pub package_digest: Digest,
    /// Where it was stored.
    pub path: PathBuf,
    /// Whether it replaced an installed package of the same component.
    pub replaced: bool,
}

/// The device's TLS key: the key its certificate certifies, ECDSA P-256.
///
/// Why not the root-of-trust key: that is the device's *attestation* key. It
/// signs quotes and nothing a peer chooses, as a TPM attestation key is
/// restricted to signing TPM-made structures. TLS needs a key that signs
/// handshakes for any server, so a separate key is used, and it is tied to
/// the root of trust at every attestation: the quote signs
/// [`quote_nonce`](sevenfold_core::attestation::quote_nonce)`(service nonce,
/// TLS key)`, so the service certifies only a key that the attested device
/// presented in that very attestation.
///
/// Where it lives depends on the backend:
/// - `tpm`: inside the TPM, an unrestricted `fixedTPM` signing key under the
///   storage root key (`rot/tls.pub`, `rot/tls.priv`; see
///   [`ResidentTlsKey`](sevenfold_rot::ResidentTlsKey)). rustls signs through
///   it, so the private key is never in the agent's memory or on disk.
///   `tls-key.p8` is neither created nor read.
/// - `soft`: a software key in `tls-key.p8` (the device key is itself a file
///   there, so a software TLS key loses nothing).
pub struct TlsKey {
    kind: TlsKeyKind,
}

enum TlsKeyKind {
    /// `tls-key.p8`.
    Software { key: SoftwareKey, pkcs8: Vec<u8> },
    /// The root of trust's own TLS key; `public` is its public half.
    Resident {
        rot: Arc<dyn RootOfTrust>,
        public: PublicKey,
    },
}

impl TlsKey {
    /// The public half (what the device certificate certifies).
    pub fn public_key(&self) -> &PublicKey {
        match &self.kind {
            TlsKeyKind::Software { key, .. } => key.public_key(),
            TlsKeyKind::Resident { public, .. } => public,
        }
    }

    /// Whether the key lives inside the root of trust (a TPM) rather than
    /// in `tls-key.p8`.
    pub fn is_resident(&self) -> bool {
        matches!(self.kind, TlsKeyKind::Resident { .. })
    }

    /// Signs `message` with the TLS key (ECDSA P-256, SHA-256, DER): what
    /// apps with `DeviceAuthentication` get instead of the key.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, AgentError> {
        match &self.kind {
            TlsKeyKind::Software { key, .. } => Ok(key.sign(message)?),
            TlsKeyKind::Resident { rot, .. } => Ok(resident(rot.as_ref())?.sign_tls(message)?),
        }
    }

    /// The device certificate `chain` with this key, for rustls (client
    /// authentication); refused unless the certificate certifies this key.
    pub(crate) fn certified(
        &self,
        chain: Vec<rustls_pki_types::CertificateDer<'static>>,
        provider: &rustls::crypto::CryptoProvider,
    ) -> Result<rustls::sign::CertifiedKey, rustls::Error> {
        match &self.kind {
            TlsKeyKind::Software { pkcs8, .. } => rustls::sign::CertifiedKey::from_der(
                chain,
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8.clone())),
                provider,
            ),
            TlsKeyKind::Resident { rot, public } => {
                let key = crate::tls_signer::ResidentSigningKey::new(rot.clone(), public.clone());
                let certified = rustls::sign::CertifiedKey::new(chain, Arc::new(key));
                certified.keys_match()?;
                Ok(certified)
            }
        }
    }
}

/// The root of trust's TLS key, or why there is none.
fn resident(rot: &dyn RootOfTrust) -> Result<&dyn sevenfold_rot::ResidentTlsKey, AgentError> {
    rot.resident_tls_key().ok_or_else(|| {
        AgentError::UnsupportedRot(format!("{} (it holds no TLS key)", rot.backend()))
    })
}

impl std::fmt::Debug for TlsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsKey")
            .field("public", self.public_key())
            .field("resident", &self.is_resident())
            .finish_non_exhaustive()
    }
}

/// An initialised, private state directory.
///
/// Layout (directory mode 0700, every file 0600, sub-directories 0700; the
/// agent refuses a directory or TLS key that group or others can reach):
///
/// | path | what |
/// |---|---|
/// | `rot/` | the root of trust's own state: `soft`: device key, sealing key, counters; `tpm`: the TPM-wrapped blobs of the attestation key (`ak.pub`, `ak.priv`) and of the TLS key (`tls.pub`, `tls.priv`) |
/// | `agent.toml` | `service_url`, `device_id`, `rot = "soft"` or `"tpm"` (with the `tcti` used at `init`); written last by `init` (its presence means initialised) |
/// | `service-ca.pem` | the Security Service's CA, pinned: the only TLS trust anchor |
/// | `device.pub.pem` | the endorsement request: the root-of-trust public key the manufacturer signs |
/// | `endorsement.pem` | the manufacturer's endorsement certificate over that key |
/// | `trusted-keys/*.pub.pem` | image signing keys accepted at boot (named by key ID) |
/// | `images/*.imagepackage` | installed image packages (named by component ID) |
/// | `counters.toml` | component ID → root-of-trust counter index |
/// | `tls-key.p8` | `soft` only: the TLS key (ECDSA P-256, PKCS#8 DER); a `tpm` device's TLS key is in the TPM (`rot/tls.pub`, `rot/tls.priv`) |
/// | `device-cert.pem` | device certificate + tenant CA from the last passed attestation |
/// | `status.json` | what happened last (see [`Status`]) |
#[derive(Clone, Debug)]
pub struct StateDir {
    root: PathBuf,
    config: AgentConfig,
    /// A TCTI given for this run (`--tcti`), over `agent.toml`'s.
    tcti_override: Option<String>,
}

impl StateDir {
    /// Creates a new device in `options.state_dir` with the files listed
    /// on [`StateDir`].
    ///
    /// Checks the service address and CA before touching the disk. Refuses a
    /// directory that already holds an initialised device
    /// ([`AgentError::AlreadyInitialised`]). `agent.toml` is written last, so
    /// an interrupted `init` can be run again: it finishes with the root of
    /// trust the first run created (nothing can have used it yet).
    pub fn init(options: &InitOptions) -> Result<(StateDir, InitReport), AgentError> {
        let service_url = parse_service_url(&options.service_url)?;
        let ca_pem = read_service_ca(&options.service_ca)?;
        let manufacturer = options
            .endorse_with
            .as_deref()
            .map(load_manufacturer)
            .transpose()?;
        let root = options.state_dir.clone();
        if fsutil::exists(&root.join(CONFIG_FILE))? {
            return Err(AgentError::AlreadyInitialised(root));
        }
        refuse_foreign_content(&root)?;
        fsutil::create_private_dir(&root)?;

        // An interrupted init's identity (never configured or used) is reused.
        let tcti = match options.rot {
            RotBackend::Tpm => Some(crate::resolve_tcti(options.tcti.as_deref(), None)),
            RotBackend::Soft => None,
        };
        let rot = rot_backend::create(
            options.rot,
            &root.join(ROT_DIR),
            tcti.as_deref().unwrap_or_default(),
        )?;
        let device_key = rot.device_public_key().clone();
        let device_id = rot.device_id();

        fsutil::write_atomic(&root, SERVICE_CA_FILE, ca_pem.as_bytes())?;
        fsutil::write_atomic(
            &root,
            DEVICE_PUBLIC_KEY_FILE,
            device_key.to_pem().as_bytes(),
        )?;
        // A TPM made its TLS key with the attestation key (`rot/tls.*`).
        if rot.resident_tls_key().is_none() {
            let (_tls, pkcs8) = SoftwareKey::generate(KeyAlgorithm::EcdsaP256)?;
            fsutil::write_atomic(&root, TLS_KEY_FILE, &pkcs8)?;
        }
        fsutil::create_private_dir(&root.join(TRUSTED_KEYS_DIR))?;
        fsutil::create_private_dir(&root.join(IMAGES_DIR))?;
        CounterMap::create_empty(&root)?;

        let endorsement = match manufacturer {
            None => None,
            Some((dir, ca)) => {
                let cert = ca
                    .endorse(&device_key, ENDORSEMENT_VALIDITY_DAYS)
                    .map_err(|error| AgentError::Certificate {
                        context: format!(
                            "the manufacturer CA in {} cannot endorse the device",
                            dir.display()
                        ),
                        error,
                    })?;
                fsutil::write_atomic(&root, ENDORSEMENT_FILE, cert.to_pem().as_bytes())?;
                Some(root.join(ENDORSEMENT_FILE))
            }
        };

        let config = AgentConfig {
            service_url,
            device_id,
            rot: options.rot,
            tcti: tcti.clone(),
            reporting: crate::reporter::ReportingConfig::default(),
        };
        let file = ConfigFile {
            service_url: config.service_url.to_string(),
            device_id: device_id.to_string(),
            rot: config.rot.name().to_owned(),
            tcti,
            reporting: None,
        };
        let text = toml::to_string(&file)
            .map_err(|e| AgentError::corrupt(root.join(CONFIG_FILE), e.to_string()))?;
        let text = format!(
            "# Sevenfold device agent configuration (written by `sevenfold agent init`).\n{text}"
        );
        // The commit point: only now is the directory an initialised device.
        if !fsutil::write_new(&root, CONFIG_FILE, text.as_bytes())? {
            return Err(AgentError::AlreadyInitialised(root));
        }
        let report = InitReport {
            device_id,
            endorsement_request: root.join(DEVICE_PUBLIC_KEY_FILE),
            endorsement,
        };
        Ok((
            StateDir {
                root,
                config,
                tcti_override: None,
            },
            report,
        ))
    }

    /// Opens an initialised state directory, refusing one whose directory,
    /// sub-directories or TLS key are accessible to group or others.
    pub fn open(root: &Path) -> Result<StateDir, AgentError> {
        let config_path = root.join(CONFIG_FILE);
        if !fsutil::exists(&config_path)? {
            return Err(AgentError::NotInitialised(root.to_path_buf()));
        }
        fsutil::check_private(root)?;
        for dir in [
            ROT_DIR,
            TRUSTED_KEYS_DIR,
            IMAGES_DIR,
            crate::journal::JOURNAL_DIR,
        ] {
            let path = root.join(dir);
            if fsutil::exists(&path)? {
                fsutil::check_private(&path)?;
            }
        }
        let tls_key_file = root.join(TLS_KEY_FILE);
        if fsutil::exists(&tls_key_file)? {
            fsutil::check_private(&tls_key_file)?;
        }
        let text = fsutil::read_text(&config_path, MAX_CONFIG_LEN)?
            .ok_or_else(|| AgentError::NotInitialised(root.to_path_buf()))?;
        let file: ConfigFile =
            toml::from_str(&text).map_err(|e| AgentError::corrupt(&config_path, e.to_string()))?;
        let service_url = parse_service_url(&file.service_url)
            .map_err(|e| AgentError::corrupt(&config_path, e.to_string()))?;
        let device_id = DeviceId::from_hex(&file.device_id).ok_or_else(|| {
            AgentError::corrupt(&config_path, "device_id is not 64 hex characters")
        })?;
        let rot = RotBackend::from_name(&file.rot)?;
        let reporting = crate::reporter::ReportingConfig::from_file(file.reporting.as_ref())
            .map_err(|reason| AgentError::corrupt(&config_path, reason))?;
        Ok(StateDir {
            root: root.to_path_buf(),
            config: AgentConfig {
                service_url,
                device_id,
                rot,
                tcti: file.tcti,
                reporting,
            },
            tcti_override: None,
        })
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The configuration.
    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    /// This device.
    pub fn device_id(&self) -> DeviceId {
        self.config.device_id
    }

    /// A file or directory of the state directory by name.
    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Uses `tcti` (e.g. from `--tcti`) for this run's TPM instead of the
    /// environment's or `agent.toml`'s; `None` changes nothing.
    pub fn with_tcti(mut self, tcti: Option<String>) -> StateDir {
        if tcti.is_some() {
            self.tcti_override = tcti;
        }
        self
    }

    /// The TCTI a `tpm` root of trust is reached through (see
    /// [`crate::resolve_tcti`]).
    pub fn tcti(&self) -> String {
        crate::resolve_tcti(self.tcti_override.as_deref(), self.config.tcti.as_deref())
    }

    /// Opens the root of trust and checks it is the device `agent.toml` names.
    pub fn open_rot(&self) -> Result<Arc<dyn RootOfTrust>, AgentError> {
        let rot = rot_backend::open(self.config.rot, &self.root.join(ROT_DIR), &self.tcti())?;
        if rot.device_id() != self.config.device_id {
            return Err(AgentError::corrupt(
                self.root.join(CONFIG_FILE),
                format!(
                    "it names device {} but the root of trust holds device {}",
                    self.config.device_id,
                    rot.device_id()
                ),
            ));
        }
        Ok(rot)
    }

    /// The TLS key: for a `tpm` device the TPM's (opening the root of
    /// trust, shared with whoever else holds it open in this process), else
    /// `tls-key.p8` (which must be private).
    pub fn tls_key(&self) -> Result<TlsKey, AgentError> {
        if self.config.rot != RotBackend::Soft {
            let rot = self.open_rot()?;
            let public = resident(rot.as_ref())?.tls_public_key().clone();
            return Ok(TlsKey {
                kind: TlsKeyKind::Resident { rot, public },
            });
        }
        let path = self.root.join(TLS_KEY_FILE);
        let pkcs8 = fsutil::read_bounded(&path, MAX_TLS_KEY_LEN, true)?
            .ok_or_else(|| AgentError::corrupt(&path, "the TLS key is missing"))?;
        let key = SoftwareKey::from_pkcs8_der(&pkcs8)
            .map_err(|e| AgentError::corrupt(&path, e.to_string()))?;
        if key.algorithm() != KeyAlgorithm::EcdsaP256 {
            return Err(AgentError::corrupt(
                &path,
                "the TLS key must be ECDSA P-256",
            ));
        }
        Ok(TlsKey {
            kind: TlsKeyKind::Software { key, pkcs8 },
        })
    }

    /// The pinned service CA (PEM).
    pub fn service_ca_pem(&self) -> Result<String, AgentError> {
        let path = self.root.join(SERVICE_CA_FILE);
        fsutil::read_text(&path, certs::MAX_CERTIFICATE_FILE_LEN)?
            .ok_or_else(|| AgentError::corrupt(&path, "the pinned service CA is missing"))
    }

    /// The endorsement certificate (PEM); [`AgentError::NotEndorsed`] if there is none.
    pub fn endorsement_pem(&self) -> Result<String, AgentError> {
        let path = self.root.join(ENDORSEMENT_FILE);
        fsutil::read_text(&path, certs::MAX_CERTIFICATE_FILE_LEN)?
            .ok_or(AgentError::NotEndorsed(path))
    }

    /// The device certificate chain from the last pass;
    /// [`AgentError::NoCertificate`] if there is none.
    pub fn certificate_pem(&self) -> Result<String, AgentError> {
        let path = self.root.join(DEVICE_CERT_FILE);
        fsutil::read_text(&path, certs::MAX_CERTIFICATE_FILE_LEN)?
            .ok_or(AgentError::NoCertificate(path))
    }

    /// Saves a new device certificate chain atomically.
    pub(crate) fn save_certificate(&self, chain_pem: &str) -> Result<(), AgentError> {
        fsutil::write_atomic(&self.root, DEVICE_CERT_FILE, chain_pem.as_bytes())
    }

    /// Removes the device certificate (after a failed attestation).
    pub(crate) fn remove_certificate(&self) -> Result<(), AgentError> {
        fsutil::remove(&self.root, DEVICE_CERT_FILE)
    }

    /// Keeps the restricted update session of a failing verdict, or
    /// removes the one kept (`None`: a pass, or a fail without one).
    pub(crate) fn save_remediation(
        &self,
        session: Option<&RemediationSession>,
    ) -> Result<(), AgentError> {
        match session {
            None => fsutil::remove(&self.root, REMEDIATION_FILE),
            Some(session) => {
                let json = serde_json::to_vec(session).map_err(|e| {
                    AgentError::corrupt(self.root.join(REMEDIATION_FILE), e.to_string())
                })?;
                fsutil::write_atomic(&self.root, REMEDIATION_FILE, &json)
            }
        }
    }

    /// The restricted update session granted with the last failing
    /// verdict, if any: what the update round uses without a certificate.
    pub fn remediation(&self) -> Result<Option<RemediationSession>, AgentError> {
        self.read_json(REMEDIATION_FILE)
    }

    /// A small JSON state file, if present; damaged is an error naming it.
    fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<Option<T>, AgentError> {
        let path = self.root.join(name);
        match fsutil::read_bounded(&path, MAX_JSON_STATE_LEN, false)? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| AgentError::corrupt(&path, e.to_string())),
        }
    }

    /// The counter map (`counters.toml`).
    pub fn counters(&self) -> Result<CounterMap, AgentError> {
        CounterMap::load(&self.root)
    }

    /// `status.json`, if written yet.
    pub fn read_status(&self) -> Result<Option<Status>, AgentError> {
        self.read_json(STATUS_FILE)
    }

    /// Writes `status.json` atomically.
    pub(crate) fn write_status(&self, status: &Status) -> Result<(), AgentError> {
        let mut text = serde_json::to_string_pretty(status)
            .map_err(|e| AgentError::corrupt(self.root.join(STATUS_FILE), e.to_string()))?;
        text.push('\n');
        fsutil::write_atomic(&self.root, STATUS_FILE, text.as_bytes())
    }

    /// The image signing keys in `trusted-keys/`, and a description of each
    /// file that could not be used (it is not trusted).
    pub fn trusted_keys(&self) -> Result<(TrustedKeys, Vec<(String, String)>), AgentError> {
        let mut keys = TrustedKeys::new();
        let mut problems = Vec::new();
        for (name, path) in self.list(TRUSTED_KEYS_DIR, TRUSTED_KEY_SUFFIX)? {
            let text = match fsutil::read_text(&path, MAX_KEY_FILE_LEN) {
                Ok(Some(text)) => text,
                Ok(None) => continue,
                Err(e) => {
                    problems.push((name, e.to_string()));
                    continue;
                }
            };
            match PublicKey::from_pem(&text) {
                Ok(key) => keys.add(key),
                Err(e) => problems.push((name, format!("not a usable public key: {e}"))),
            }
        }
        Ok((keys, problems))
    }

    /// The installed image packages, `(file name, path)` in file-name order.
    pub fn installed_images(&self) -> Result<Vec<(String, PathBuf)>, AgentError> {
        self.list(IMAGES_DIR, &format!(".{FILE_EXTENSION}"))
    }

    /// Entries of a sub-directory whose names end in `suffix`, sorted by
    /// name; temp files are skipped.
    fn list(&self, dir: &str, suffix: &str) -> Result<Vec<(String, PathBuf)>, AgentError> {
        let dir = self.root.join(dir);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(AgentError::io("list", &dir, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| AgentError::io("list", &dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(suffix) && !fsutil::is_temp_name(&name) {
                out.push((name, entry.path()));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Records a manufacturer's endorsement certificate, after checking it
    /// certifies this device's root-of-trust key
    /// ([`AgentError::EndorsementKeyMismatch`] otherwise).
    ///
    /// The chain to the manufacturer CA is checked by the Security Service,
    /// which knows which manufacturers it trusts; the device only makes sure
    /// it will not present a certificate for someone else's key.
    pub fn endorse(&self, certificate_pem: &str) -> Result<PathBuf, AgentError> {
        let rot = self.open_rot()?;
        if !certificate_pem.contains("-----BEGIN CERTIFICATE-----") {
            return Err(AgentError::Certificate {
                context: "the endorsement cannot be read".into(),
                error: sevenfold_pki::PkiError::Malformed(
                    "expected a PEM CERTIFICATE (as `sevenfold manufacturer endorse` writes)"
                        .into(),
                ),
            });
        }
        let certified = certs::certified_key(certificate_pem.as_bytes()).map_err(|error| {
            AgentError::Certificate {
                context: "the endorsement cannot be read".into(),
                error,
            }
        })?;
        if &certified != rot.device_public_key() {
            return Err(AgentError::EndorsementKeyMismatch {
                expected: rot.device_id(),
                found: certified.key_id(),
                found_device: DeviceId::of(&certified),
            });
        }
        fsutil::write_atomic(&self.root, ENDORSEMENT_FILE, certificate_pem.as_bytes())?;
        Ok(self.root.join(ENDORSEMENT_FILE))
    }

    /// Trusts an image signing key (PEM `PUBLIC KEY`); stored as
    /// `trusted-keys/<key-id>.pub.pem`.
    pub fn trust_key(&self, key_pem: &str, source: &Path) -> Result<TrustedKeyReport, AgentError> {
        let key = PublicKey::from_pem(key_pem).map_err(|error| AgentError::InvalidPublicKey {
            path: source.to_path_buf(),
            error,
        })?;
        let dir = self.root.join(TRUSTED_KEYS_DIR);
        fsutil::create_private_dir(&dir)?;
        let name = format!("{}{TRUSTED_KEY_SUFFIX}", key.key_id());
        fsutil::write_atomic(&dir, &name, key.to_pem().as_bytes())?;
        Ok(TrustedKeyReport {
            key_id: key.key_id(),
            algorithm: key.algorithm(),
            path: dir.join(name),
        })
    }

    /// Installs an image package into `images/<component-id>.imagepackage`
    /// after verifying it against the trusted keys and the component's
    /// anti-rollback counter. The bytes verified are the bytes written.
    ///
    /// A development helper until over-the-air updates (with A/B slots)
    /// exist; boot verifies every package again anyway.
    pub fn install(&self, package: &Path) -> Result<InstalledImage, AgentError> {
        let file = fs::File::open(package).map_err(|e| AgentError::io("read", package, e))?;
        let refused = |error| AgentError::Package {
            path: package.to_path_buf(),
            error,
        };
        let bytes = read_package(file, &Limits::default()).map_err(refused)?;
        let parsed = UnverifiedPackage::parse(&bytes, &Limits::default()).map_err(refused)?;
        let (trusted, _) = self.trusted_keys()?;
        let verified = parsed.verify(&trusted).map_err(refused)?;
        let manifest = verified.manifest();
        if manifest.image_type() != ImageType::Application {
            return Err(AgentError::PackageRefused {
                path: package.to_path_buf(),
                reason: format!(
                    "it holds a {} image; only applications can be installed this way",
                    manifest.image_type().as_str()
                ),
            });
        }
        let component_id = manifest.component_id().to_string();
        if let Some(index) = self.counters()?.get(&component_id) {
            let counter = self.open_rot()?.read_counter(index)?;
            if u64::from(manifest.security_version()) < counter {
                return Err(AgentError::PackageRefused {
                    path: package.to_path_buf(),
                    reason: security_version_reason(
                        manifest.security_version(),
                        counter,
                        &component_id,
                    ),
                });
            }
        }
        let dir = self.root.join(IMAGES_DIR);
        fsutil::create_private_dir(&dir)?;
        let name = format!("{component_id}.{FILE_EXTENSION}");
        let replaced = fsutil::exists(&dir.join(&name))?;
        fsutil::write_atomic(&dir, &name, &bytes)?;
        Ok(InstalledImage {
            component_id,
            name: manifest.name().to_owned(),
            version: manifest.version().to_string(),
            security_version: manifest.security_version(),
            package_digest: *verified.package_digest(),
            path: dir.join(name),
            replaced,
        })
    }
}

/// The reason given when an image's security version is below its counter.
pub(crate) fn security_version_reason(version: u32, counter: u64, component: &str) -> String {
    format!(
        "security version {version} is below the device's anti-rollback counter {counter} \
         for component {component}; install a version with security version {counter} or later"
    )
}

/// Refuses to make a device in a directory that holds anything but the
/// files of an interrupted `init` (so a mistyped `--state-dir $HOME` is not
/// taken over and made private).
fn refuse_foreign_content(root: &Path) -> Result<(), AgentError> {
    const OURS: [&str; 11] = [
        ROT_DIR,
        SERVICE_CA_FILE,
        DEVICE_PUBLIC_KEY_FILE,
        ENDORSEMENT_FILE,
        TRUSTED_KEYS_DIR,
        IMAGES_DIR,
        TLS_KEY_FILE,
        crate::counters::COUNTERS_FILE,
        DEVICE_CERT_FILE,
        crate::status::STATUS_FILE,
        CONFIG_FILE,
    ];
    let entries = match fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(AgentError::io("list", root, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| AgentError::io("list", root, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !OURS.contains(&name.as_str()) && !fsutil::is_temp_name(&name) {
            return Err(AgentError::StateDirNotEmpty(root.to_path_buf()));
        }
    }
    Ok(())
}

/// Checks a service address: absolute `https://` URL with a host.
pub(crate) fn parse_service_url(text: &str) -> Result<reqwest::Url, AgentError> {
    let refuse = |reason: &str| AgentError::InvalidServiceUrl {
        url: text.to_owned(),
        reason: reason.to_owned(),
    };
    let url = reqwest::Url::parse(text).map_err(|e| refuse(&e.to_string()))?;
    if url.scheme() != "https" {
        return Err(refuse(
            "it must start with https:// (the device API is TLS only)",
        ));
    }
    if url.host().is_none() || url.cannot_be_a_base() {
        return Err(refuse("it has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(refuse("it must not have a query or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(refuse("it must not carry credentials"));
    }
    Ok(url)
}

/// Reads a service CA file: PEM certificates usable as trust anchors.
fn read_service_ca(path: &Path) -> Result<String, AgentError> {
    let refuse = |reason: String| AgentError::InvalidServiceCa {
        path: path.to_path_buf(),
        reason,
    };
    let text = fsutil::read_text(path, certs::MAX_CERTIFICATE_FILE_LEN)
        .map_err(|e| refuse(e.to_string()))?
        .ok_or_else(|| refuse("the file does not exist".into()))?;
    let mut roots = rustls::RootCertStore::empty();
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(text.as_bytes()) {
        let cert = cert.map_err(|e| refuse(format!("the PEM text is malformed: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| refuse(format!("a certificate cannot be a trust anchor: {e}")))?;
        count += 1;
    }
    if count == 0 {
        return Err(refuse("it holds no PEM CERTIFICATE block".into()));
    }
    Ok(text)
}

/// Loads `DIR/ca.pem` + `DIR/ca.key` (what `sevenfold manufacturer init` writes).
fn load_manufacturer(dir: &Path) -> Result<(PathBuf, ManufacturerCa), AgentError> {
    let read = |name: &str| {
        let path = dir.join(name);
        fsutil::read_text(&path, certs::MAX_CERTIFICATE_FILE_LEN)?.ok_or_else(|| {
            AgentError::io(
                "read",
                &path,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no manufacturer CA here; make one with `sevenfold manufacturer init --out-dir DIR`",
                ),
            )
        })
    };
    let cert = read("ca.pem")?;
    let key = read("ca.key")?;
    let ca = ManufacturerCa::load(&cert, &key).map_err(|error| AgentError::Certificate {
        context: format!("the manufacturer CA in {} cannot be used", dir.display()),
        error,
    })?;
    Ok((dir.to_path_buf(), ca))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_urls_are_checked() {
        assert!(parse_service_url("https://127.0.0.1:8444").is_ok());
        assert!(parse_service_url("https://svc.example/prefix").is_ok());
        for bad in [
            "http://127.0.0.1:8444",
            "127.0.0.1:8444",
            "https://",
            "https://a:b@host",
            "https://host/?q=1",
        ] {
            assert!(
                matches!(
                    parse_service_url(bad),
                    Err(AgentError::InvalidServiceUrl { .. })
                ),
                "{bad}"
            );
        }
    }
}
