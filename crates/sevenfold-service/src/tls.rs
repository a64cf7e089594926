//! The operator listener's TLS identity: a service CA kept in the data
//! directory (clients pin it) and a server certificate issued from it at
//! every start for the configured host names.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sevenfold_pki::ServiceCa;

use crate::ServerError;

/// Validity of the per-start server certificate.
const SERVER_CERT_DAYS: u32 = 90;

/// TLS material for the listeners.
pub(crate) struct ServiceTls {
    /// The service CA certificate (PEM), which clients trust.
    pub(crate) ca_pem: String,
    /// rustls configuration of the operator listener.
    pub(crate) operator: Arc<rustls::ServerConfig>,
    /// rustls configuration of the device listener (client certificates
    /// requested, optional; see [`DeferredClientCertVerifier`]).
    pub(crate) device: Arc<rustls::ServerConfig>,
}

/// Asks devices for a certificate but leaves the chain check to the request
/// handlers, because which CA to trust depends on the device's tenant, which
/// lives in the database. The handshake still proves possession of the
/// certified key (the CertificateVerify signature is checked here). The only
/// way to reach an authenticated device route is the `AuthenticatedDevice`
/// extractor, which verifies the chain against the tenant's CAs on every
/// request; the two attestation calls need no certificate at all.
#[derive(Debug)]
struct DeferredClientCertVerifier {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::server::danger::ClientCertVerifier for DeferredClientCertVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The one crypto provider of the process (aws-lc-rs).
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    use rustls::crypto::aws_lc_rs::cipher_suite;
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    // Preference order for the device listener (see `load_or_create`);
    // the set of suites is aws-lc-rs's default.
    provider.cipher_suites.sort_by_key(|suite| {
        let preferred = [
            cipher_suite::TLS13_AES_128_GCM_SHA256,
            cipher_suite::TLS13_AES_256_GCM_SHA384,
            cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        ];
        preferred
            .iter()
            .position(|p| p.suite() == suite.suite())
            .unwrap_or(preferred.len())
    });
    Arc::new(provider)
}

/// Loads the service CA from `<data_dir>/tls`, creating it on first start,
/// and issues a fresh server certificate for `hostnames`.
pub(crate) fn load_or_create(
    data_dir: &Path,
    hostnames: &[String],
) -> Result<ServiceTls, ServerError> {
    let dir = data_dir.join("tls");
    std::fs::create_dir_all(&dir).map_err(|e| ServerError::io(&dir, e))?;
    let cert_path = dir.join("ca.pem");
    let key_path = dir.join("ca.key");
    let ca = if cert_path.exists() {
        let cert =
            std::fs::read_to_string(&cert_path).map_err(|e| ServerError::io(&cert_path, e))?;
        let key = std::fs::read_to_string(&key_path).map_err(|e| ServerError::io(&key_path, e))?;
        ServiceCa::load(&cert, &key)
            .map_err(|e| ServerError::Tls(format!("{}: {e}", cert_path.display())))?
    } else {
        let (ca, cert_pem, key_pem) = ServiceCa::generate("Sevenfold Security Service CA")
            .map_err(|e| ServerError::Tls(e.to_string()))?;
        write_private(&key_path, key_pem.as_bytes())?;
        std::fs::write(&cert_path, cert_pem.as_bytes())
            .map_err(|e| ServerError::io(&cert_path, e))?;
        ca
    };
    let (chain_pem, key_pem) = ca
        .issue_server_cert(hostnames, SERVER_CERT_DAYS)
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| ServerError::Tls(format!("server certificate: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| ServerError::Tls(format!("server key: {e}")))?;
    let mut operator = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    operator.alpn_protocols = vec![b"http/1.1".to_vec()];
    let verifier = Arc::new(DeferredClientCertVerifier {
        provider: provider(),
    });
    let mut device = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    device.alpn_protocols = vec![b"http/1.1".to_vec()];
    // No session resumption on the device API: a device connects a few
    // times a day, so tickets would rarely be used, yet each full handshake
    // would pay to make and send them, and a resumed session would carry a
    // client certificate checked at some earlier time. Every connection
    // presents and proves its certificate afresh.
    device.send_tls13_tickets = 0;
    // The server picks the cipher suite from its own order, which puts
    // AES-128-GCM/SHA-256 first: as strong as a device needs, the suite
    // every TLS 1.3 stack must implement, and SHA-256 has hardware support
    // on far more CPUs (servers and devices) than SHA-384.
    device.ignore_client_order = true;
    device.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok(ServiceTls {
        ca_pem: ca.certificate().to_pem(),
        operator: Arc::new(operator),
        device: Arc::new(device),
    })
}

pub(crate) fn write_private(path: &Path, data: &[u8]) -> Result<(), ServerError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| ServerError::io(path, e))?;
    file.write_all(data)
        .and_then(|()| file.sync_all())
        .map_err(|e| ServerError::io(path, e))
}
