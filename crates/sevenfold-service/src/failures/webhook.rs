//! Webhook notifications: signed with HMAC-SHA256, delivered from the
//! database queue with exponential back-off.
//!
//! A receiver verifies `X-Sevenfold-Signature: t=<unix seconds>,v1=<hex>`,
//! where `<hex>` is HMAC-SHA256 under the webhook's secret of
//! `"<t>." ‖ body`, and rejects old timestamps (replay).

use std::time::Duration;

use reqwest::Url;

use crate::store::{now_millis, DueDelivery, Store, MAX_ATTEMPTS};

/// Signature header.
pub(crate) const SIGNATURE_HEADER: &str = "X-Sevenfold-Signature";
/// Event header.
pub(crate) const EVENT_HEADER: &str = "X-Sevenfold-Event";
/// Delivery ID header (receivers deduplicate on it).
pub(crate) const DELIVERY_HEADER: &str = "X-Sevenfold-Delivery";
/// First retry delay; doubles per attempt.
const FIRST_RETRY_MS: i64 = 5_000;
/// Longest retry delay.
const MAX_RETRY_MS: i64 = 3_600_000;
/// A whole delivery attempt.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// The `X-Sevenfold-Signature` value for `body` sent at `unix_secs`.
pub(crate) fn sign(secret: &[u8], unix_secs: i64, body: &[u8]) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let mut ctx = aws_lc_rs::hmac::Context::with_key(&key);
    ctx.update(format!("{unix_secs}.").as_bytes());
    ctx.update(body);
    format!("t={unix_secs},v1={}", hex::encode(ctx.sign().as_ref()))
}

/// The environment variable that lets webhooks target loopback addresses
/// (`1`): for tests and single-host labs only. Off, a tenant administrator
/// cannot make the server post to services on its own host.
pub(crate) const DANGER_LOOPBACK_ENV: &str = "SEVENFOLD_DANGER_LOOPBACK_WEBHOOKS";

/// Whether [`DANGER_LOOPBACK_ENV`] is set to `1` for this process.
pub(crate) fn loopback_allowed() -> bool {
    std::env::var(DANGER_LOOPBACK_ENV).as_deref() == Ok("1")
}

/// Checks a webhook URL: `https://` to a host that is not a loopback
/// address, no credentials, no fragment. With `allow_loopback` (see
/// [`DANGER_LOOPBACK_ENV`]), loopback targets are allowed, over `http://` too.
pub(crate) fn check_url(text: &str, allow_loopback: bool) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("a webhook URL must not carry credentials".into());
    }
    if url.fragment().is_some() {
        return Err("a webhook URL must not have a fragment".into());
    }
    let host = url
        .host_str()
        .ok_or_else(|| "a webhook URL needs a host".to_owned())?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = bare == "localhost"
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback && !allow_loopback {
        return Err(format!(
            "webhooks may not target the server's own host (set {DANGER_LOOPBACK_ENV}=1 on the \
             server for a lab or test)"
        ));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        "http" => Err("webhooks use https://".into()),
        other => Err(format!("unsupported scheme {other:?}; use https://")),
    }
}

/// Delay before attempt `attempts + 1`.
fn retry_after_ms(attempts: i64) -> i64 {
    let shift = u32::try_from(attempts.clamp(0, 20)).unwrap_or(20);
    FIRST_RETRY_MS
        .saturating_mul(1i64 << shift)
        .min(MAX_RETRY_MS)
}

/// The HTTP client for deliveries: rustls with the platform's roots, no
/// redirects, bounded time.
pub(crate) fn client() -> Option<reqwest::Client> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(DELIVERY_TIMEOUT)
        .user_agent(concat!("sevenfold-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| tracing::warn!(error = %e, "webhook client unavailable; deliveries wait"))
        .ok()
}

/// Sends every due delivery this replica can claim.
pub(crate) async fn deliver_due(
    store: &Store,
    wrap: &sevenfold_pki::KeyWrap,
    http: &reqwest::Client,
) -> Result<usize, crate::store::StoreError> {
    let due = store.claim_deliveries(now_millis(), 20).await?;
    let count = due.len();
    for delivery in due {
        let outcome = send(wrap, http, &delivery).await;
        let now = now_millis();
        match outcome {
            Ok(()) => {
                metrics::counter!("sevenfold_webhook_deliveries_total", "outcome" => "delivered")
                    .increment(1);
                store.finish_delivery(&delivery.id, now, None).await?;
            }
            Err(error) => {
                let next = delivery.attempts + 1;
                let retry = (next < MAX_ATTEMPTS).then(|| now + retry_after_ms(next - 1));
                metrics::counter!("sevenfold_webhook_deliveries_total", "outcome" => "failed")
                    .increment(1);
                tracing::warn!(webhook = %delivery.webhook.id, attempt = next, %error, "webhook delivery failed");
                store
                    .finish_delivery(&delivery.id, now, Some((&error, retry)))
                    .await?;
            }
        }
    }
    Ok(count)
}

async fn send(
    wrap: &sevenfold_pki::KeyWrap,
    http: &reqwest::Client,
    delivery: &DueDelivery,
) -> Result<(), String> {
    let url = check_url(&delivery.webhook.url, loopback_allowed())?;
    let secret = wrap
        .unwrap(
            &delivery.webhook.wrapped_secret,
            &secret_context(&delivery.webhook.id),
        )
        .map_err(|e| format!("the webhook secret does not unwrap: {e}"))?;
    let body = delivery.payload.as_bytes().to_vec();
    let signature = sign(&secret, now_millis() / 1000, &body);
    let response = http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, signature)
        .header(EVENT_HEADER, &delivery.event)
        .header(DELIVERY_HEADER, &delivery.id)
        .body(body)
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("the receiver answered HTTP {}", response.status()))
    }
}

/// The key-wrap context of a webhook's secret (binds it to the webhook).
pub(crate) fn secret_context(webhook_id: &str) -> String {
    format!("sevenfold webhook secret {webhook_id}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_and_body() {
        // RFC 4231-style check against an independent computation.
        let sig = sign(b"key", 1700000000, b"{\"a\":1}");
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, b"key");
        let expected = aws_lc_rs::hmac::sign(&key, b"1700000000.{\"a\":1}");
        assert_eq!(
            sig,
            format!("t=1700000000,v1={}", hex::encode(expected.as_ref()))
        );
        assert!(aws_lc_rs::hmac::verify(&key, b"1700000000.{\"a\":1}", expected.as_ref()).is_ok());
    }

    #[test]
    fn urls_fail_closed() {
        assert!(check_url("https://hooks.example.com/x", false).is_ok());
        for lab in [
            "http://127.0.0.1:9000/hook",
            "http://localhost/hook",
            "https://[::1]/h",
        ] {
            assert!(check_url(lab, true).is_ok(), "{lab}");
            assert!(check_url(lab, false).is_err(), "{lab}");
        }
        for bad in [
            "http://hooks.example.com/x",
            "ftp://x/",
            "https://user:pw@x/",
            "https://x/#frag",
            "not a url",
        ] {
            assert!(check_url(bad, true).is_err(), "{bad}");
        }
    }

    #[test]
    fn back_off_doubles_to_an_hour() {
        assert_eq!(retry_after_ms(0), 5_000);
        assert_eq!(retry_after_ms(1), 10_000);
        assert_eq!(retry_after_ms(30), MAX_RETRY_MS);
    }
}
