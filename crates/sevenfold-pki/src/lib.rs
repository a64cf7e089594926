//! X.509 for Sevenfold: manufacturer CAs, device endorsement certificates,
//! the Security Service's TLS identity, and chain verification.
//!
//! A device's identity is its root-of-trust key (see `sevenfold-rot`); this
//! crate is how *others* come to believe in that key:
//!
//! - A **manufacturer CA** ([`ManufacturerCa`]) stands in for the silicon
//!   vendor or TPM maker. At the factory it signs an **endorsement
//!   certificate** ([`EndorsementCertificate`]) over the device's public key,
//!   which it never holds the private half of. The endorsement carries the
//!   device ID in its subject CN and as the SAN URI
//!   `urn:sevenfold:device:<device-id>`, and the extended key usage
//!   [`ENDORSEMENT_EKU`].
//! - The **Security Service** trusts the manufacturer CAs it is configured
//!   with ([`CaCertificate`]) and checks endorsements with
//!   [`verify_endorsement`], which returns a verified [`Endorsement`]: the
//!   device ID, the key and which CA vouched for it. A TPM's EK certificate
//!   names no device: [`verify_ek_certificate`] checks its chain to a TPM
//!   maker's CA (same code, [`EndorsementPolicy::tpm_ek`]) and returns the EK
//!   to which the service then issues a credential-activation challenge.
//! - The service's own TLS certificate comes from a small **service CA**
//!   ([`ServiceCa`]) that devices and the CLI pin.
//! - Each tenant has a **tenant CA** ([`TenantCa`]). When a device passes
//!   attestation the service issues it a 24-hour TLS client certificate
//!   ([`TenantCa::issue_device_certificate`]) naming the device and the tenant
//!   (`urn:sevenfold:device:<device-id>`, `urn:sevenfold:tenant:<tenant-id>`);
//!   the device API checks it with [`verify_device_certificate`], which returns
//!   a [`DeviceIdentity`]. Tenant CAs rotate by
//!   [`TenantCa::generate_successor`], both certificates published together
//!   ([`chain_pem`]) during the overlap.
//! - Tenant CA private keys are stored encrypted under the server's master key
//!   ([`KeyWrap`], AES-256-GCM bound to the tenant ID).
//!
//! Key design decision: the device ID is always *computed* from the
//! certificate's public key (SHA-256 of its SPKI, [`sevenfold_rot::DeviceId`])
//! and the names in the certificate are only cross-checked against it, so a
//! certificate cannot claim one device while carrying another's key. Chains
//! are checked by rustls-webpki, the same code that checks TLS certificates;
//! signatures are made by `sevenfold_rot::SoftwareKey`, the same code that
//! signs everything else.
//!
//! Every function that reads a certificate accepts PEM or DER and fails with a
//! typed [`PkiError`]; none panics on input.
//!
//! ```
//! use sevenfold_pki::{verify_endorsement, CaCertificate, ManufacturerCa, PkiError};
//! use sevenfold_rot::{DeviceId, KeyAlgorithm, SoftwareKey};
//!
//! // At the factory.
//! let (maker, files) = ManufacturerCa::generate("Example Silicon", 3650)?;
//! let (device_key, _pkcs8) = SoftwareKey::generate(KeyAlgorithm::EcdsaP256)?;
//! let endorsement = maker.endorse(device_key.public_key(), 3650)?;
//!
//! // At the Security Service, which is configured with the maker's CA.
//! let trusted = [CaCertificate::parse(files.cert_pem.as_bytes())?];
//! let now = std::time::SystemTime::now()
//!     .duration_since(std::time::UNIX_EPOCH)?
//!     .as_secs() as i64;
//! let verified = verify_endorsement(endorsement.to_pem().as_bytes(), &trusted, now)?;
//! assert_eq!(verified.device_id(), DeviceId::of(device_key.public_key()));
//!
//! // Another maker's endorsement is refused.
//! let (other, _) = ManufacturerCa::generate("Someone Else", 3650)?;
//! let forged = other.endorse(device_key.public_key(), 3650)?;
//! assert!(matches!(
//!     verify_endorsement(forged.der(), &trusted, now),
//!     Err(PkiError::UntrustedIssuer(_))
//! ));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod at_rest;
mod authority;
mod ca;
mod chain;
mod device_cert;
mod ek;
mod endorsement;
mod error;
mod input;
mod manufacturer;
mod service_tls;
mod tenant;
mod validity;

pub use at_rest::{
    KeyWrap, KEY_WRAP_VERSION, MASTER_KEY_LEN, MAX_CONTEXT_LEN, MAX_WRAPPED_SECRET_LEN,
};

pub use ca::CaCertificate;
pub use device_cert::{certificate_public_key, verify_device_certificate, DeviceIdentity};
pub use ek::{verify_ek_certificate, EkCertificate};
pub use endorsement::{
    verify_endorsement, verify_endorsement_chain, Endorsement, EndorsementPolicy,
    MAX_INTERMEDIATES, TPM_EK_CERTIFICATE_EKU,
};
pub use error::PkiError;
pub use input::{CERTIFICATE_PEM_LABEL, MAX_CERTIFICATE_LEN};
pub use manufacturer::{
    EndorsementCertificate, ManufacturerCa, ManufacturerCaFiles, DEVICE_URI_PREFIX,
    ENDORSEMENT_EKU, MANUFACTURER_ORGANIZATION,
};
pub use service_tls::{ServiceCa, SERVICE_CA_VALIDITY_DAYS, SERVICE_ORGANIZATION};
pub use tenant::{
    chain_pem, DeviceCertificate, TenantCa, TenantCaFiles, CLOCK_SKEW_SECONDS,
    DEVICE_CERTIFICATE_VALIDITY_SECONDS, MAX_TENANT_ID_LEN, MAX_VERIFICATION_CODE_LEN,
    TENANT_CA_VALIDITY_DAYS, TENANT_ORGANIZATION, TENANT_URI_PREFIX,
};
pub use validity::MAX_VALIDITY_DAYS;
