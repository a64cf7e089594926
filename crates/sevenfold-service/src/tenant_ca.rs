//! Each tenant's device CA: created with the tenant (or on first use for
//! tenants older than this feature), stored with its private key wrapped
//! under the server's CA wrap key, rotated by adding a successor generation.
//!
//! The newest generation issues device certificates; every generation that
//! has not expired is published (the rotation overlap) and trusted when a
//! device presents its certificate.
//!
//! [`TenantCas`] caches what is costly to rebuild on every attestation and
//! every mutual-TLS request: the unwrapped issuing CA and the parsed CA
//! certificates, keyed by certificate fingerprint (a stored generation never
//! changes, so such an entry is never stale). *Which* generations are
//! trusted is read from the database on every request; *which* one issues
//! is reused for [`ISSUER_TTL`], so for a few seconds after a rotation on
//! another replica the previous generation, still published, may issue.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sevenfold_pki::{CaCertificate, KeyWrap, TenantCa};

use crate::recent::Recent;
use crate::store::{now_millis, Store, StoreError, TenantCaRecord};

/// Validity of a tenant CA.
pub(crate) const TENANT_CA_DAYS: u32 = 3 * 365;

/// How long the issuing generation of a tenant is reused before it is read
/// again (rotation on another replica shows within this time).
pub(crate) const ISSUER_TTL: Duration = Duration::from_secs(5);

/// Cached entries kept before a cache is emptied and refilled (one or two
/// per tenant; this bounds memory, not correctness).
const CACHE_LIMIT: usize = 4096;

/// Why the tenant CA could not be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TenantCaError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("tenant CA: {0}")]
    Pki(#[from] sevenfold_pki::PkiError),
}

/// The tenant CAs: the key that wraps their private keys at rest, and
/// caches keyed by certificate fingerprint.
pub(crate) struct TenantCas {
    wrap: Arc<KeyWrap>,
    /// Unwrapped CAs by fingerprint.
    issuers: Mutex<HashMap<String, Arc<TenantCa>>>,
    /// Parsed CA certificates by fingerprint.
    certificates: Mutex<HashMap<String, CaCertificate>>,
    /// Each tenant's issuing generation, by tenant ID, for [`ISSUER_TTL`].
    current: Recent<Arc<TenantCa>>,
    /// Each tenant's stored generations, by tenant ID, for [`ISSUER_TTL`].
    generations: Recent<Arc<Vec<TenantCaRecord>>>,
}

impl TenantCas {
    /// Tenant CAs whose keys are wrapped under `wrap`.
    pub(crate) fn new(wrap: Arc<KeyWrap>) -> TenantCas {
        TenantCas {
            wrap,
            issuers: Mutex::new(HashMap::new()),
            certificates: Mutex::new(HashMap::new()),
            current: Recent::new(ISSUER_TTL),
            generations: Recent::new(ISSUER_TTL),
        }
    }

    /// The tenant's CA generations (newest first), creating the first if none exists.
    pub(crate) async fn published(
        &self,
        store: &Store,
        tenant_id: &str,
    ) -> Result<Vec<TenantCaRecord>, TenantCaError> {
        let existing = store.tenant_cas(tenant_id).await?;
        if !existing.is_empty() {
            return Ok(existing);
        }
        let tenant = store.tenant(tenant_id).await?;
        let (ca, files) = TenantCa::generate(&tenant.id, &tenant.name, TENANT_CA_DAYS)?;
        let record = record(&tenant.id, 1, &ca, &files.key_pkcs8, &self.wrap)?;
        match store.add_tenant_ca(&record).await {
            // Another replica created it at the same moment: use theirs.
            Ok(()) | Err(StoreError::Conflict(_)) => Ok(store.tenant_cas(tenant_id).await?),
            Err(e) => Err(e.into()),
        }
    }

    /// The generation that issues certificates now, with its key unwrapped.
    pub(crate) async fn issuing(
        &self,
        store: &Store,
        tenant_id: &str,
    ) -> Result<Arc<TenantCa>, TenantCaError> {
        if let Some(ca) = self.current.get(tenant_id) {
            return Ok(ca);
        }
        let cas = self.published(store, tenant_id).await?;
        let newest = cas
            .first()
            .ok_or_else(|| StoreError::not_found("tenant CA", tenant_id))?;
        let cached = lock(&self.issuers).get(&newest.fingerprint).cloned();
        let ca = match cached {
            Some(ca) => ca,
            None => {
                let key = self
                    .wrap
                    .unwrap(&newest.wrapped_key, &context(tenant_id, newest.generation))?;
                let ca = Arc::new(TenantCa::load(&newest.cert_der, &key)?);
                insert(&self.issuers, &newest.fingerprint, Arc::clone(&ca));
                ca
            }
        };
        self.current.put(tenant_id, Arc::clone(&ca));
        Ok(ca)
    }

    /// Certificates of every unexpired generation, for verifying device
    /// certificates. A stored certificate that does not parse is logged and
    /// left out (fails closed: devices it issued are refused).
    ///
    /// The list of generations is reused for [`ISSUER_TTL`]: generations are
    /// only ever added (and expire, which is checked on every call), so a
    /// stale list can only miss a successor made on another replica a moment
    /// ago, whose certificates are then refused for that moment.
    pub(crate) async fn trusted(
        &self,
        store: &Store,
        tenant_id: &str,
    ) -> Result<Vec<CaCertificate>, TenantCaError> {
        let now = now_millis();
        let records = match self.generations.get(tenant_id) {
            Some(records) => records,
            None => {
                let records = Arc::new(store.tenant_cas(tenant_id).await?);
                // A tenant whose first CA is still to be made is not cached.
                if !records.is_empty() {
                    self.generations.put(tenant_id, Arc::clone(&records));
                }
                records
            }
        };
        let mut trusted = Vec::with_capacity(records.len());
        for record in records.iter().filter(|r| r.not_after > now) {
            if let Some(cert) = lock(&self.certificates).get(&record.fingerprint) {
                trusted.push(cert.clone());
                continue;
            }
            match CaCertificate::from_der(&record.cert_der) {
                Ok(cert) => {
                    insert(&self.certificates, &record.fingerprint, cert.clone());
                    trusted.push(cert);
                }
                Err(e) => tracing::error!(
                    tenant = tenant_id,
                    generation = record.generation,
                    error = %e,
                    "stored tenant CA certificate does not parse; not trusted"
                ),
            }
        }
        Ok(trusted)
    }

    /// Adds a successor generation (rotation); the old one stays published until it expires.
    pub(crate) async fn rotate(
        &self,
        store: &Store,
        tenant_id: &str,
    ) -> Result<TenantCaRecord, TenantCaError> {
        let current = self.issuing(store, tenant_id).await?;
        let generation = store
            .tenant_cas(tenant_id)
            .await?
            .first()
            .map(|r| r.generation + 1)
            .unwrap_or(1);
        let tenant = store.tenant(tenant_id).await?;
        let (next, files) = current.generate_successor(&tenant.id, &tenant.name, TENANT_CA_DAYS)?;
        let record = record(&tenant.id, generation, &next, &files.key_pkcs8, &self.wrap)?;
        store.add_tenant_ca(&record).await?;
        self.current.forget(tenant_id);
        self.generations.forget(tenant_id);
        Ok(record)
    }
}

/// Locks a cache; a poisoned lock (a panic while holding it, which the
/// code inside cannot do) is taken over, as the map is still consistent.
fn lock<T>(cache: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn insert<V>(cache: &Mutex<HashMap<String, V>>, fingerprint: &str, value: V) {
    let mut map = lock(cache);
    if map.len() >= CACHE_LIMIT {
        map.clear();
    }
    map.insert(fingerprint.to_owned(), value);
}

fn context(tenant_id: &str, generation: i64) -> String {
    format!("tenant-ca:{tenant_id}:{generation}")
}

fn record(
    tenant_id: &str,
    generation: i64,
    ca: &TenantCa,
    key_pkcs8: &[u8],
    wrap: &KeyWrap,
) -> Result<TenantCaRecord, TenantCaError> {
    let cert = ca.certificate();
    Ok(TenantCaRecord {
        tenant_id: tenant_id.to_owned(),
        generation,
        cert_der: cert.der().to_vec(),
        wrapped_key: wrap.wrap(key_pkcs8, &context(tenant_id, generation))?,
        fingerprint: cert.fingerprint().to_owned(),
        created_at: now_millis(),
        not_after: cert.not_after().saturating_mul(1000),
    })
}
