//! Each tenant's device CA: created with the tenant (or on first use for
//! tenants older than this feature), stored with its private key wrapped
//! under the server's CA wrap key, rotated by adding a successor generation.
//!
//! The newest generation issues device certificates; every generation that
//! has not expired is published (the rotation overlap) and trusted when a
//! device presents its certificate.

use sevenfold_pki::{CaCertificate, KeyWrap, TenantCa};

use crate::store::{now_millis, Store, StoreError, TenantCaRecord};

/// Validity of a tenant CA.
pub(crate) const TENANT_CA_DAYS: u32 = 3 * 365;

/// Why the tenant CA could not be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TenantCaError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("tenant CA: {0}")]
    Pki(#[from] sevenfold_pki::PkiError),
}

/// The tenant's CA generations (newest first), creating the first if none exists.
pub(crate) async fn published(
    store: &Store,
    wrap: &KeyWrap,
    tenant_id: &str,
) -> Result<Vec<TenantCaRecord>, TenantCaError> {
    let existing = store.tenant_cas(tenant_id).await?;
    if !existing.is_empty() {
        return Ok(existing);
    }
    let tenant = store.tenant(tenant_id).await?;
    let (ca, files) = TenantCa::generate(&tenant.id, &tenant.name, TENANT_CA_DAYS)?;
    let record = record(&tenant.id, 1, &ca, &files.key_pkcs8, wrap)?;
    match store.add_tenant_ca(&record).await {
        // Another replica created it at the same moment: use theirs.
        Ok(()) | Err(StoreError::Conflict(_)) => Ok(store.tenant_cas(tenant_id).await?),
        Err(e) => Err(e.into()),
    }
}

/// The generation that issues certificates now, with its key unwrapped.
pub(crate) async fn issuing(
    store: &Store,
    wrap: &KeyWrap,
    tenant_id: &str,
) -> Result<TenantCa, TenantCaError> {
    let cas = published(store, wrap, tenant_id).await?;
    let newest = cas
        .first()
        .ok_or_else(|| StoreError::not_found("tenant CA", tenant_id))?;
    let key = wrap.unwrap(&newest.wrapped_key, &context(tenant_id, newest.generation))?;
    Ok(TenantCa::load(&newest.cert_der, &key)?)
}

/// Certificates of every unexpired generation, for verifying device certificates.
pub(crate) async fn trusted(
    store: &Store,
    tenant_id: &str,
) -> Result<Vec<CaCertificate>, TenantCaError> {
    let now = now_millis();
    Ok(store
        .tenant_cas(tenant_id)
        .await?
        .iter()
        .filter(|r| r.not_after > now)
        .filter_map(|r| CaCertificate::from_der(&r.cert_der).ok())
        .collect())
}

/// Adds a successor generation (rotation); the old one stays published until it expires.
pub(crate) async fn rotate(
    store: &Store,
    wrap: &KeyWrap,
    tenant_id: &str,
) -> Result<TenantCaRecord, TenantCaError> {
    let current = issuing(store, wrap, tenant_id).await?;
    let generation = store
        .tenant_cas(tenant_id)
        .await?
        .first()
        .map(|r| r.generation + 1)
        .unwrap_or(1);
    let tenant = store.tenant(tenant_id).await?;
    let (next, files) = current.generate_successor(&tenant.id, &tenant.name, TENANT_CA_DAYS)?;
    let record = record(&tenant.id, generation, &next, &files.key_pkcs8, wrap)?;
    store.add_tenant_ca(&record).await?;
    Ok(record)
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
