//! Webhooks and their delivery queue. The queue lives in the database so
//! that every replica sees the same state: a replica claims a due delivery
//! with a conditional `UPDATE` (only one wins), sends it, and records the
//! outcome; a replica that dies mid-send loses only its lease.

use super::error::StoreError;
use super::failures::{ProblemEvent, ProblemRecord};
use super::{col, new_id, Store};

/// Attempts before a delivery is given up.
pub const MAX_ATTEMPTS: i64 = 12;
/// How long a claimed delivery is reserved for its sender.
const LEASE_MS: i64 = 60_000;

/// A webhook (its secret stays wrapped).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookRecord {
    /// ID.
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Target URL.
    pub url: String,
    /// Subscribed events.
    pub events: Vec<String>,
    /// HMAC key, wrapped under the server's wrap key.
    pub wrapped_secret: Vec<u8>,
    /// When added (ms).
    pub created_at: i64,
}

/// A claimed delivery, ready to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueDelivery {
    /// Delivery ID.
    pub id: String,
    /// Event name.
    pub event: String,
    /// JSON body.
    pub payload: String,
    /// Attempts so far.
    pub attempts: i64,
    /// The webhook.
    pub webhook: WebhookRecord,
}

impl Store {
    /// Adds a webhook.
    pub async fn add_webhook(&self, webhook: &WebhookRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO webhooks (id, tenant_id, url, events, wrapped_secret, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&webhook.id)
        .bind(&webhook.tenant_id)
        .bind(&webhook.url)
        .bind(webhook.events.join(","))
        .bind(&webhook.wrapped_secret)
        .bind(webhook.created_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// A tenant's webhooks.
    pub async fn list_webhooks(&self, tenant_id: &str) -> Result<Vec<WebhookRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, tenant_id, url, events, wrapped_secret, created_at FROM webhooks \
             WHERE tenant_id = $1 ORDER BY created_at, id",
        )
        .bind(tenant_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(webhook_from_row).collect()
    }

    /// Removes a webhook (and its pending deliveries).
    pub async fn remove_webhook(&self, tenant_id: &str, id: &str) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let found = sqlx::query("SELECT id FROM webhooks WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        if found.is_none() {
            return Err(StoreError::not_found("webhook", id));
        }
        sqlx::query("DELETE FROM webhook_deliveries WHERE webhook_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM webhooks WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Claims up to `limit` due deliveries for this replica.
    pub async fn claim_deliveries(
        &self,
        now: i64,
        limit: u32,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        let rows = sqlx::query(
            "SELECT d.id AS delivery_id, d.event, d.payload, d.attempts, d.next_attempt_at, \
             w.id, w.tenant_id, w.url, w.events, w.wrapped_secret, w.created_at \
             FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id \
             WHERE d.delivered_at IS NULL AND d.attempts < $1 AND d.next_attempt_at <= $2 \
             ORDER BY d.next_attempt_at LIMIT $3",
        )
        .bind(MAX_ATTEMPTS)
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        let mut claimed = Vec::new();
        for row in &rows {
            let id: String = col(row, "delivery_id")?;
            let due: i64 = col(row, "next_attempt_at")?;
            let won = sqlx::query(
                "UPDATE webhook_deliveries SET next_attempt_at = $1 \
                 WHERE id = $2 AND next_attempt_at = $3 AND delivered_at IS NULL",
            )
            .bind(now + LEASE_MS)
            .bind(&id)
            .bind(due)
            .execute(self.pool())
            .await?
            .rows_affected()
                == 1;
            if won {
                claimed.push(DueDelivery {
                    id,
                    event: col(row, "event")?,
                    payload: col(row, "payload")?,
                    attempts: col(row, "attempts")?,
                    webhook: webhook_from_row(row)?,
                });
            }
        }
        Ok(claimed)
    }

    /// Records a delivery's outcome: delivered, or the error and when to
    /// try again (`None`: give up).
    pub async fn finish_delivery(
        &self,
        id: &str,
        now: i64,
        failure: Option<(&str, Option<i64>)>,
    ) -> Result<(), StoreError> {
        match failure {
            None => {
                sqlx::query(
                    "UPDATE webhook_deliveries SET delivered_at = $1, attempts = attempts + 1, \
                     last_error = NULL WHERE id = $2",
                )
                .bind(now)
                .bind(id)
                .execute(self.pool())
                .await?;
            }
            Some((error, retry_at)) => {
                sqlx::query(
                    "UPDATE webhook_deliveries SET attempts = CASE WHEN $1 < 0 THEN $2 \
                     ELSE attempts + 1 END, next_attempt_at = $3, last_error = $4 WHERE id = $5",
                )
                .bind(if retry_at.is_some() { 0i64 } else { -1 })
                .bind(MAX_ATTEMPTS)
                .bind(retry_at.unwrap_or(now))
                .bind(error)
                .bind(id)
                .execute(self.pool())
                .await?;
            }
        }
        Ok(())
    }

    /// Deliveries of a webhook: (event, attempts, delivered_at, last_error), newest first.
    pub async fn webhook_deliveries(
        &self,
        tenant_id: &str,
        webhook_id: &str,
    ) -> Result<Vec<(String, i64, Option<i64>, Option<String>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT d.event, d.attempts, d.delivered_at, d.last_error FROM webhook_deliveries d \
             JOIN webhooks w ON w.id = d.webhook_id WHERE w.tenant_id = $1 AND w.id = $2 \
             ORDER BY d.created_at DESC LIMIT 100",
        )
        .bind(tenant_id)
        .bind(webhook_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    col(r, "event")?,
                    col(r, "attempts")?,
                    col(r, "delivered_at")?,
                    col(r, "last_error")?,
                ))
            })
            .collect()
    }
}

fn webhook_from_row(row: &sqlx::any::AnyRow) -> Result<WebhookRecord, StoreError> {
    let events: String = col(row, "events")?;
    Ok(WebhookRecord {
        id: col(row, "id")?,
        tenant_id: col(row, "tenant_id")?,
        url: col(row, "url")?,
        events: events
            .split(',')
            .filter(|e| !e.is_empty())
            .map(str::to_owned)
            .collect(),
        wrapped_secret: col(row, "wrapped_secret")?,
        created_at: col(row, "created_at")?,
    })
}

/// Queues a notification of `event` about `problem` for every webhook of
/// the tenant subscribed to it (inside the caller's transaction).
pub(super) async fn enqueue(
    conn: &mut sqlx::AnyConnection,
    tenant_id: &str,
    event: ProblemEvent,
    problem: &ProblemRecord,
    now: i64,
) -> Result<(), StoreError> {
    let hooks = sqlx::query("SELECT id, events FROM webhooks WHERE tenant_id = $1")
        .bind(tenant_id)
        .fetch_all(&mut *conn)
        .await?;
    let payload = serde_json::json!({
        "event": event.as_str(),
        "tenant_id": tenant_id,
        "at": now,
        "problem": {
            "id": problem.id,
            "signature": problem.signature,
            "component_id": problem.component_id,
            "kind": problem.kind,
            "title": problem.title,
            "status": problem.status,
            "count": problem.occurrences,
            "devices": problem.devices,
            "last_version": problem.last_version,
        },
    })
    .to_string();
    for hook in &hooks {
        let events: String = col(hook, "events")?;
        if !events.split(',').any(|e| e == event.as_str()) {
            continue;
        }
        let webhook_id: String = col(hook, "id")?;
        sqlx::query(
            "INSERT INTO webhook_deliveries (id, webhook_id, event, payload, attempts, \
             next_attempt_at, created_at) VALUES ($1, $2, $3, $4, 0, $5, $5)",
        )
        .bind(new_id())
        .bind(&webhook_id)
        .bind(event.as_str())
        .bind(&payload)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
