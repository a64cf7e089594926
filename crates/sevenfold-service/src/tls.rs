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
}

/// The one crypto provider of the process (aws-lc-rs).
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
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
    let operator = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    let mut operator = operator;
    operator.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(ServiceTls {
        ca_pem: ca.certificate().to_pem(),
        operator: Arc::new(operator),
    })
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), ServerError> {
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
