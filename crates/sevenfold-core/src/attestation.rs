//! Attestation evidence: what a device sends to prove it is genuine and
//! running known software, and the checks that need no database.
//!
//! A device measures each component it starts (the runtime first, then every
//! image package) into its root of trust's registers and records an
//! [`EventLog`]. To attest it asks the service for a nonce, then sends
//! [`EvidenceBody`]: the log, a quote over the registers, its endorsement and
//! the public key it wants certified for TLS. The quote's nonce is
//! [`quote_nonce`]`(server nonce, TLS key)`, so the certified key is bound to
//! this very attestation.
//!
//! [`Evidence::parse`] turns the wire body into checked types (every field
//! error names the field); [`Evidence::check`] verifies the quote with the
//! endorsed device key and replays the log against the quoted registers,
//! returning the [`MeasuredComponents`] a verifier then compares with its
//! reference values.

use std::fmt;

use serde::{Deserialize, Serialize};
use sevenfold_rot::{
    extend, Digest, Hasher, PublicKey, Quote, RegisterIndex, RegisterValues, RotError,
    APPLICATION_REGISTER, RUNTIME_REGISTER,
};

/// The registers an attestation quotes.
pub const ATTESTED_REGISTERS: [RegisterIndex; 2] = [RUNTIME_REGISTER, APPLICATION_REGISTER];
/// Most events one log may hold.
pub const MAX_EVENTS: usize = 512;
/// Most boot failures one attestation may report.
pub const MAX_BOOT_FAILURES: usize = 64;
/// Length of a service nonce in bytes.
pub const SERVICE_NONCE_LEN: usize = 32;
/// The component ID used for the runtime's own measurement.
pub const RUNTIME_COMPONENT_ID: &str = "runtime";

const QUOTE_CONTEXT: &[u8] = b"sevenfold attestation v1\0";

/// The nonce a device quotes: binds the service's nonce and the TLS key the
/// device asks to have certified.
pub fn quote_nonce(service_nonce: &[u8], tls_key: &PublicKey) -> [u8; 32] {
    let mut h = Hasher::new();
    h.update(QUOTE_CONTEXT);
    h.update(&(service_nonce.len() as u64).to_be_bytes());
    h.update(service_nonce);
    h.update(tls_key.key_id().as_bytes());
    h.finish().0
}

/// What kind of component a measurement is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComponentKind {
    /// The Sevenfold runtime itself (hash of its executable).
    Runtime,
    /// An installed image package (its package digest).
    Application,
}

impl ComponentKind {
    /// The register this kind is measured into.
    pub fn register(self) -> RegisterIndex {
        match self {
            ComponentKind::Runtime => RUNTIME_REGISTER,
            ComponentKind::Application => APPLICATION_REGISTER,
        }
    }
}

/// One measurement, as recorded at boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeasurementEvent {
    /// Runtime or application.
    pub kind: ComponentKind,
    /// Component ID (a UUID for apps, [`RUNTIME_COMPONENT_ID`] for the runtime).
    pub component_id: String,
    /// Human name.
    pub name: String,
    /// Version string.
    pub version: String,
    /// The value extended into the register.
    pub digest: Digest,
}

/// The ordered measurements of one boot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventLog(Vec<MeasurementEvent>);

impl EventLog {
    /// An empty log.
    pub fn new() -> EventLog {
        EventLog::default()
    }

    /// Appends an event (the caller extends the register in the same order).
    pub fn push(&mut self, event: MeasurementEvent) {
        self.0.push(event);
    }

    /// The events in order.
    pub fn events(&self) -> &[MeasurementEvent] {
        &self.0
    }

    /// The register values this log produces from reset.
    pub fn replay(&self) -> RegisterValues {
        let mut runtime = Digest::ZERO;
        let mut apps = Digest::ZERO;
        for e in &self.0 {
            match e.kind {
                ComponentKind::Runtime => runtime = extend(&runtime, &e.digest),
                ComponentKind::Application => apps = extend(&apps, &e.digest),
            }
        }
        RegisterValues::new(vec![
            (RUNTIME_REGISTER, runtime),
            (APPLICATION_REGISTER, apps),
        ])
        .unwrap_or_default()
    }
}

/// A component the device refused to start at boot, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootFailure {
    /// The file or component that failed.
    pub component: String,
    /// Why it failed its check.
    pub reason: String,
}

// ---- wire bodies of the device API ------------------------------------

/// `POST /device/v1/attestation/nonce`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NonceRequest {
    /// The device asking (64 hex characters).
    pub device_id: String,
}

/// A fresh, single-use nonce.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NonceResponse {
    /// Hex of [`SERVICE_NONCE_LEN`] random bytes.
    pub nonce: String,
    /// Seconds until it expires.
    pub expires_in_seconds: u32,
}

/// One event on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventBody {
    /// `runtime` or `application`.
    pub kind: ComponentKind,
    /// Register index (must match the kind).
    pub register: u32,
    /// Component ID.
    pub component_id: String,
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Hex SHA-256.
    pub digest: String,
}

impl EventBody {
    /// The wire form of `event`.
    pub fn of(event: &MeasurementEvent) -> EventBody {
        EventBody {
            kind: event.kind,
            register: event.kind.register().get(),
            component_id: event.component_id.clone(),
            name: event.name.clone(),
            version: event.version.clone(),
            digest: event.digest.to_hex(),
        }
    }

    /// Parses the event; an error names the `event_log` field.
    pub fn to_event(&self) -> Result<MeasurementEvent, EvidenceError> {
        if self.register != self.kind.register().get() {
            return Err(field(
                "event_log",
                format!(
                    "a {:?} event must be in register {}",
                    self.kind,
                    self.kind.register()
                ),
            ));
        }
        Ok(MeasurementEvent {
            kind: self.kind,
            component_id: self.component_id.clone(),
            name: self.name.clone(),
            version: self.version.clone(),
            digest: hex_digest("event_log", &self.digest)?,
        })
    }
}

/// One quoted register on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterBody {
    /// Register index.
    pub index: u32,
    /// Hex SHA-256 value.
    pub value: String,
}

/// `POST /device/v1/attestation/evidence`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceBody {
    /// The device (64 hex characters).
    pub device_id: String,
    /// The service nonce, hex, as received.
    pub nonce: String,
    /// Hex of the quote's transport encoding.
    pub quote: String,
    /// The quoted register values.
    pub registers: Vec<RegisterBody>,
    /// The boot's measurements, in order.
    pub event_log: Vec<EventBody>,
    /// The manufacturer's endorsement certificate (PEM).
    pub endorsement_pem: String,
    /// The public key (PEM) the device wants its certificate for.
    pub tls_public_key_pem: String,
    /// Components refused at boot.
    #[serde(default)]
    pub boot_failures: Vec<BootFailure>,
}

/// The verdict, sent back to the device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestationResponse {
    /// `pass` or `fail`.
    pub verdict: String,
    /// Why it failed (empty on pass).
    pub reasons: Vec<String>,
    /// On pass: the device certificate followed by the tenant CA (PEM).
    #[serde(default)]
    pub certificate_chain_pem: Option<String>,
    /// On pass: when the certificate expires (RFC 3339).
    #[serde(default)]
    pub not_after: Option<String>,
    /// On pass: the tenant the device belongs to.
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// On a fail where the evidence proved the device genuine and only its
    /// software was refused (a revoked runtime, an unknown image): a
    /// restricted session in which it may fetch the update that remedies
    /// it, and nothing else.
    #[serde(default)]
    pub remediation: Option<RemediationSession>,
}

/// A restricted update session, granted with a failing verdict: no device
/// certificate, only the group's TUF metadata, the targets of the refused
/// components, and progress reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemediationSession {
    /// Bearer token for the device API's update routes (`Authorization:
    /// Bearer …`), sent over the service-authenticated TLS connection.
    pub token: String,
    /// When the session ends (RFC 3339).
    pub expires_at: String,
    /// The components whose targets it may fetch: [`RUNTIME_COMPONENT_ID`]
    /// for any runtime image, else application component IDs.
    pub components: Vec<String>,
}

/// Whether a restricted session for `components` covers an image: any
/// runtime image when the runtime was refused, else an application image
/// of a refused component. The service enforces it; the agent skips what
/// it would be refused.
pub fn remediation_covers(components: &[String], is_runtime: bool, component_id: &str) -> bool {
    let wanted = if is_runtime {
        RUNTIME_COMPONENT_ID
    } else {
        component_id
    };
    components.iter().any(|c| c == wanted)
}

// ---- checked evidence ---------------------------------------------------

/// Why evidence was refused by the checks in this module.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvidenceError {
    /// A field does not parse.
    #[error("evidence field {field} is invalid: {reason}")]
    Field {
        /// Field name.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The quote's signature, nonce or register digest do not verify.
    #[error("quote does not verify: {0}")]
    Quote(RotError),
    /// The event log does not produce the quoted register values.
    #[error("event log does not replay to the quoted registers (register {register}: log gives {from_log}, quote says {quoted})")]
    LogMismatch {
        /// The register that differs.
        register: u32,
        /// Value from replaying the log.
        from_log: Digest,
        /// Value in the quote.
        quoted: Digest,
    },
}

fn field(field: &'static str, reason: impl fmt::Display) -> EvidenceError {
    EvidenceError::Field {
        field,
        reason: reason.to_string(),
    }
}

fn hex_digest(name: &'static str, text: &str) -> Result<Digest, EvidenceError> {
    Digest::from_hex(text).ok_or_else(|| field(name, "expected 64 hex characters"))
}

/// Evidence whose fields parse, not yet checked.
#[derive(Clone, Debug)]
pub struct Evidence {
    /// Device ID claimed.
    pub device_id: sevenfold_rot::DeviceId,
    /// The service nonce.
    pub nonce: Vec<u8>,
    /// The quote.
    pub quote: Quote,
    /// Quoted register values.
    pub registers: RegisterValues,
    /// The measurements.
    pub event_log: EventLog,
    /// Endorsement (PEM), checked by the verifier against manufacturer CAs.
    pub endorsement_pem: String,
    /// The key to certify.
    pub tls_key: PublicKey,
    /// Components the device refused at boot.
    pub boot_failures: Vec<BootFailure>,
}

/// The measurements of an attestation whose quote and log verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeasuredComponents(Vec<MeasurementEvent>);

impl MeasuredComponents {
    /// The verified events, in boot order.
    pub fn events(&self) -> &[MeasurementEvent] {
        &self.0
    }

    /// The boots of this power cycle, oldest first. A TPM's registers
    /// reset only with the platform, so every start of the agent adds a
    /// segment to one log: each begins with a runtime measurement and holds
    /// the applications that start measured. Events before the first runtime
    /// measurement (a log a genuine agent never writes) form a segment of
    /// their own.
    pub fn boots(&self) -> impl Iterator<Item = &[MeasurementEvent]> {
        self.0
            .chunk_by(|_, next| next.kind != ComponentKind::Runtime)
    }

    /// The last boot segment: what runs now.
    pub fn current_boot(&self) -> &[MeasurementEvent] {
        self.boots().last().unwrap_or_default()
    }
}

impl Evidence {
    /// Parses the wire body; each error names its field.
    pub fn parse(body: &EvidenceBody) -> Result<Evidence, EvidenceError> {
        let device_id = sevenfold_rot::DeviceId::from_hex(&body.device_id)
            .ok_or_else(|| field("device_id", "expected 64 hex characters"))?;
        let nonce = hex::decode(&body.nonce).map_err(|e| field("nonce", e))?;
        if nonce.len() != SERVICE_NONCE_LEN {
            return Err(field(
                "nonce",
                format!("expected {SERVICE_NONCE_LEN} bytes"),
            ));
        }
        let quote_bytes = hex::decode(&body.quote).map_err(|e| field("quote", e))?;
        let quote = Quote::from_bytes(&quote_bytes).map_err(|e| field("quote", e))?;
        let mut values = Vec::with_capacity(body.registers.len().min(ATTESTED_REGISTERS.len()));
        for r in body
            .registers
            .iter()
            .take(sevenfold_rot::REGISTER_COUNT as usize + 1)
        {
            let index = RegisterIndex::new(r.index).map_err(|e| field("registers", e))?;
            values.push((index, hex_digest("registers", &r.value)?));
        }
        let registers = RegisterValues::new(values).map_err(|e| field("registers", e))?;
        if !registers.indices().eq(ATTESTED_REGISTERS.iter().copied()) {
            return Err(field(
                "registers",
                format!(
                    "must be exactly registers {} and {}",
                    RUNTIME_REGISTER, APPLICATION_REGISTER
                ),
            ));
        }
        if body.event_log.len() > MAX_EVENTS {
            return Err(field("event_log", format!("more than {MAX_EVENTS} events")));
        }
        let mut log = EventLog::new();
        for e in &body.event_log {
            log.push(e.to_event()?);
        }
        if body.boot_failures.len() > MAX_BOOT_FAILURES {
            return Err(field(
                "boot_failures",
                format!("more than {MAX_BOOT_FAILURES}"),
            ));
        }
        let tls_key = PublicKey::from_pem(&body.tls_public_key_pem)
            .map_err(|e| field("tls_public_key_pem", e))?;
        Ok(Evidence {
            device_id,
            nonce,
            quote,
            registers,
            event_log: log,
            endorsement_pem: body.endorsement_pem.clone(),
            tls_key,
            boot_failures: body.boot_failures.clone(),
        })
    }

    /// Verifies the quote (signed by `device_key` over [`quote_nonce`] of
    /// `expected_nonce` and the TLS key, covering the sent registers) and
    /// that the event log replays to those registers.
    pub fn check(
        &self,
        device_key: &PublicKey,
        expected_nonce: &[u8],
    ) -> Result<MeasuredComponents, EvidenceError> {
        let bound = quote_nonce(expected_nonce, &self.tls_key);
        self.quote
            .verify(device_key, &bound, &self.registers)
            .map_err(EvidenceError::Quote)?;
        let replayed = self.event_log.replay();
        for (index, quoted) in self.registers.iter() {
            let from_log = replayed.get(*index).copied().unwrap_or(Digest::ZERO);
            if from_log != *quoted {
                return Err(EvidenceError::LogMismatch {
                    register: index.get(),
                    from_log,
                    quoted: *quoted,
                });
            }
        }
        Ok(MeasuredComponents(self.event_log.events().to_vec()))
    }
}

impl EvidenceBody {
    /// Builds the wire body (device side).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        device_id: &sevenfold_rot::DeviceId,
        nonce: &[u8],
        quote: &Quote,
        registers: &RegisterValues,
        log: &EventLog,
        endorsement_pem: &str,
        tls_key: &PublicKey,
        boot_failures: Vec<BootFailure>,
    ) -> EvidenceBody {
        EvidenceBody {
            device_id: device_id.to_string(),
            nonce: hex::encode(nonce),
            quote: hex::encode(quote.to_bytes()),
            registers: registers
                .iter()
                .map(|(i, v)| RegisterBody {
                    index: i.get(),
                    value: v.to_hex(),
                })
                .collect(),
            event_log: log.events().iter().map(EventBody::of).collect(),
            endorsement_pem: endorsement_pem.to_owned(),
            tls_public_key_pem: tls_key.to_pem(),
            boot_failures,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sevenfold_rot::soft::SoftRoot;
    use sevenfold_rot::{KeyAlgorithm, RootOfTrust, SoftwareKey};

    struct Device {
        _dir: tempfile::TempDir,
        rot: SoftRoot,
        log: EventLog,
        tls: SoftwareKey,
    }

    fn device() -> Device {
        let dir = tempfile::tempdir().unwrap();
        let rot = SoftRoot::create(&dir.path().join("rot")).unwrap();
        let mut log = EventLog::new();
        for (kind, id, data) in [
            (
                ComponentKind::Runtime,
                RUNTIME_COMPONENT_ID,
                &b"runtime build"[..],
            ),
            (
                ComponentKind::Application,
                "5b9a1c52-3f0b-4a39-9d7e-6f2d1c3e8a10",
                b"blink package",
            ),
        ] {
            let digest = Digest::of(data);
            rot.extend(kind.register(), &digest).unwrap();
            log.push(MeasurementEvent {
                kind,
                component_id: id.into(),
                name: "x".into(),
                version: "1.0.0".into(),
                digest,
            });
        }
        let tls = SoftwareKey::generate(KeyAlgorithm::EcdsaP256).unwrap().0;
        Device {
            _dir: dir,
            rot,
            log,
            tls,
        }
    }

    fn evidence(d: &Device, nonce: &[u8]) -> EvidenceBody {
        let (quote, regs) = d
            .rot
            .quote(&quote_nonce(nonce, d.tls.public_key()), &ATTESTED_REGISTERS)
            .unwrap();
        EvidenceBody::new(
            &d.rot.device_id(),
            nonce,
            &quote,
            &regs,
            &d.log,
            "PEM",
            d.tls.public_key(),
            vec![],
        )
    }

    #[test]
    fn genuine_evidence_checks_out() {
        let d = device();
        let nonce = [7u8; 32];
        let body = evidence(&d, &nonce);
        let json = serde_json::to_string(&body).unwrap();
        let back: EvidenceBody = serde_json::from_str(&json).unwrap();
        let parsed = Evidence::parse(&back).unwrap();
        let measured = parsed.check(d.rot.device_public_key(), &nonce).unwrap();
        assert_eq!(measured.events().len(), 2);
    }

    #[test]
    fn other_nonce_other_key_and_forged_log_fail() {
        let d = device();
        let nonce = [7u8; 32];
        let body = evidence(&d, &nonce);
        let parsed = Evidence::parse(&body).unwrap();
        assert!(matches!(
            parsed.check(d.rot.device_public_key(), &[8u8; 32]),
            Err(EvidenceError::Quote(_))
        ));
        let other = device();
        assert!(parsed.check(other.rot.device_public_key(), &nonce).is_err());

        // A log that claims a different app than was measured.
        let mut forged = body.clone();
        forged.event_log[1].digest = Digest::of(b"innocent app").to_hex();
        let err = Evidence::parse(&forged)
            .unwrap()
            .check(d.rot.device_public_key(), &nonce)
            .unwrap_err();
        assert!(
            matches!(err, EvidenceError::LogMismatch { register: 15, .. }),
            "{err}"
        );

        // Another TLS key swapped in after quoting: the binding breaks.
        let mut swapped = body.clone();
        swapped.tls_public_key_pem = SoftwareKey::generate(KeyAlgorithm::EcdsaP256)
            .unwrap()
            .0
            .public_key()
            .to_pem();
        assert!(Evidence::parse(&swapped)
            .unwrap()
            .check(d.rot.device_public_key(), &nonce)
            .is_err());

        // Registers changed to match a forged log: the quote no longer matches.
        let mut regs = forged.clone();
        let replayed = Evidence::parse(&forged).unwrap().event_log.replay();
        regs.registers[1].value = replayed.get(APPLICATION_REGISTER).unwrap().to_hex();
        assert!(matches!(
            Evidence::parse(&regs)
                .unwrap()
                .check(d.rot.device_public_key(), &nonce),
            Err(EvidenceError::Quote(_))
        ));
    }

    #[test]
    fn boots_split_at_each_runtime_measurement() {
        let event = |kind, name: &str| MeasurementEvent {
            kind,
            component_id: name.into(),
            name: name.into(),
            version: "1".into(),
            digest: Digest::of(name.as_bytes()),
        };
        let (rt, app) = (ComponentKind::Runtime, ComponentKind::Application);
        let measured = MeasuredComponents(vec![
            event(rt, "r1"),
            event(app, "a"),
            event(app, "b"),
            event(rt, "r2"),
            event(rt, "r3"),
            event(app, "c"),
        ]);
        let names: Vec<Vec<&str>> = measured
            .boots()
            .map(|b| b.iter().map(|e| e.name.as_str()).collect())
            .collect();
        assert_eq!(names, [vec!["r1", "a", "b"], vec!["r2"], vec!["r3", "c"]]);
        assert_eq!(measured.current_boot().len(), 2);
        // Apps before any runtime: a segment of their own, never merged.
        let headless = MeasuredComponents(vec![event(app, "x"), event(rt, "r")]);
        assert_eq!(headless.boots().count(), 2);
        assert!(MeasuredComponents(vec![]).current_boot().is_empty());
        // The wire form of an event round-trips.
        let e = event(app, "a");
        assert_eq!(EventBody::of(&e).to_event().unwrap(), e);
    }

    #[test]
    fn malformed_fields_are_named() {
        let d = device();
        let body = evidence(&d, &[1u8; 32]);
        type Mutation = Box<dyn Fn(&mut EvidenceBody)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("device_id", Box::new(|b| b.device_id = "xyz".into())),
            ("nonce", Box::new(|b| b.nonce = "00".into())),
            ("quote", Box::new(|b| b.quote = "zz".into())),
            (
                "registers",
                Box::new(|b| {
                    b.registers.pop();
                }),
            ),
            ("event_log", Box::new(|b| b.event_log[0].register = 3)),
            (
                "tls_public_key_pem",
                Box::new(|b| b.tls_public_key_pem = "nope".into()),
            ),
        ];
        for (name, mutate) in cases {
            let mut b = body.clone();
            mutate(&mut b);
            let err = Evidence::parse(&b).unwrap_err();
            assert!(err.to_string().contains(name), "{name}: {err}");
        }
    }
}
