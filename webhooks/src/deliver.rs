//! The deliverer: claims the due heads of line, POSTs each, signed, to its endpoint, and
//! records what came of it. A timeout, a refused connection, a 408, a 429 or a 5xx is tried
//! again after an exponential backoff (or the endpoint's `Retry-After`, if longer) until the
//! attempts run out; any other answer, and an address webhooks may not reach, fails it at
//! once. Several deliverers may run: a claim is a lease on the row.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

use crate::config::WebhookConfig;
use crate::dead_letters;
use crate::guard::{GuardedResolver, refusal_of_literal};
use crate::signing::SigningKey;
use crate::store::{self, Attempt, Due, Next};

/// Deliveries claimed at once, and sent at once.
const CLAIM: i64 = 32;
const CONCURRENCY: usize = 8;
/// The longest pause between two retries, and the longest `Retry-After` honoured.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// The longest the deliverer sleeps without looking (a notification may be lost while its
/// connection is re-established).
const IDLE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    #[error("Postgres: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// Disables endpoint `webhook`, failing since `since`, for `reason`: the platform's command,
/// which the deliverer cannot send itself (the command side depends on this crate). The same
/// endpoint and `since` must name the same command, so that asking twice disables once.
pub type Disable = std::sync::Arc<
    dyn Fn(
            uuid::Uuid,
            DateTime<Utc>,
            String,
        ) -> futures::future::BoxFuture<'static, Result<(), String>>
        + Send
        + Sync,
>;

pub struct Deliverer {
    pool: PgPool,
    disable: Disable,
    producer: rdkafka::producer::FutureProducer,
    dlq_topic: String,
    http: reqwest::Client,
    key: SigningKey,
    config: WebhookConfig,
    catalog: String,
}

impl Deliverer {
    pub fn new(
        pool: PgPool,
        disable: Disable,
        producer: rdkafka::producer::FutureProducer,
        dlq_topic: String,
        config: &WebhookConfig,
        catalog: impl Into<String>,
    ) -> Result<Self, DeliverError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.delivery_timeout_ms))
            .connect_timeout(Duration::from_millis(config.delivery_timeout_ms))
            // A proxy would resolve the name itself, past the guard; a redirect is an answer
            // the endpoint gave, not a place to follow.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(GuardedResolver::shared(config.allow_private_networks))
            .user_agent(concat!("Plexica-Webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            pool,
            disable,
            producer,
            dlq_topic,
            http,
            key: config.signing_key(),
            config: config.clone(),
            catalog: catalog.into(),
        })
    }

    /// Delivers until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), DeliverError> {
        // Its tables, whichever of it and the consumer starts first.
        infra::consumer::prepare_schema(&self.pool, store::SCHEMA, &store::ddl(store::SCHEMA))
            .await?;
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(store::ENQUEUED_CHANNEL).await?;
        // A claim outlives the longest attempt, so that no other deliverer sends it meanwhile.
        let lease =
            Duration::from_millis(self.config.delivery_timeout_ms) * 2 + Duration::from_secs(5);
        // What a deliverer stopped before sending.
        self.send_dead_letters().await;
        while !shutdown.is_cancelled() {
            let due = match store::claim_due(&self.pool, store::SCHEMA, &self.catalog, CLAIM, lease)
                .await
            {
                Ok(due) => due,
                Err(error) if is_undefined_table(&error) => {
                    // A new database: the catalog's endpoints table comes with its projection.
                    tracing::debug!(%error, "no endpoints table yet");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "claiming due webhook deliveries failed; trying again");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            };
            if due.is_empty() {
                let wait = self.until_next_due().await;
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = listener.recv() => {}
                    () = tokio::time::sleep(wait) => {}
                }
                continue;
            }
            futures::stream::iter(due)
                .for_each_concurrent(CONCURRENCY, |delivery| self.deliver(delivery))
                .await;
        }
        Ok(())
    }

    async fn until_next_due(&self) -> Duration {
        match store::next_due(&self.pool, store::SCHEMA, &self.catalog).await {
            Ok(Some(at)) => (at - Utc::now()).to_std().unwrap_or_default().min(IDLE),
            Ok(None) | Err(_) => IDLE,
        }
    }

    async fn deliver(&self, delivery: Due) {
        let at = Utc::now();
        let started = Instant::now();
        let outcome = self.send(&delivery, at).await;
        let attempt = Attempt {
            at,
            status_code: outcome.status.map(|s| s.as_u16()),
            error: outcome.error.clone(),
            duration_ms: i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX),
        };
        let number = u32::try_from(delivery.attempts).unwrap_or(0) + 1;
        let next = match outcome.verdict {
            Verdict::Delivered => Next::Delivered,
            Verdict::Retry { after } if number < self.config.delivery_max_attempts => {
                let backoff = self
                    .backoff(number)
                    .max(after.unwrap_or_default())
                    .min(MAX_BACKOFF);
                Next::RetryAt(at + chrono::Duration::from_std(backoff).unwrap_or_default())
            }
            Verdict::Retry { .. } => Next::Failed { retryable: true },
            Verdict::Fail => Next::Failed { retryable: false },
        };
        metrics::counter!(
            "plexica_webhook_attempts_total",
            "outcome" => match next {
                Next::Delivered => "delivered",
                Next::RetryAt(_) => "retry",
                Next::Failed { .. } => "failed",
            }
        )
        .increment(1);
        if matches!(next, Next::Failed { .. }) {
            tracing::warn!(
                webhook = %delivery.webhook_id, event = %delivery.event_id, attempts = number,
                error = ?attempt.error, status = ?attempt.status_code,
                "a webhook delivery failed for good"
            );
        }
        let recorded = store::record(
            &self.pool,
            store::SCHEMA,
            delivery.seq,
            delivery.webhook_id,
            &attempt,
            next,
        )
        .await;
        match recorded {
            // The claim lapses and the delivery is sent again: at least once.
            Err(error) => {
                tracing::warn!(%error, seq = delivery.seq, "recording a webhook attempt failed");
            }
            Ok(Some(since)) if at - since >= self.disable_after() => {
                let reason = format!(
                    "every delivery has failed since {} (last: {})",
                    since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    attempt.error.as_deref().unwrap_or("no answer")
                );
                tracing::warn!(webhook = %delivery.webhook_id, %reason, "disabling a webhook endpoint");
                if let Err(error) = (self.disable)(delivery.webhook_id, since, reason).await {
                    tracing::warn!(%error, webhook = %delivery.webhook_id, "disabling a failing webhook endpoint failed; the next failure asks again");
                }
            }
            Ok(_) => {}
        }
        if matches!(next, Next::Failed { .. }) {
            self.send_dead_letters().await;
        }
    }

    /// Sends the dead letters of the deliveries that failed for good, each once: it is
    /// recorded in the delivery's row before it is sent and marked sent after the broker's
    /// acknowledgement, so a crash in between sends it again under the same id.
    async fn send_dead_letters(&self) {
        let unsent = match store::unsent_dead_letters(&self.pool, store::SCHEMA, 100).await {
            Ok(unsent) => unsent,
            Err(error) => {
                tracing::warn!(%error, "reading the failed webhook deliveries failed");
                return;
            }
        };
        for failed in unsent {
            let sent = dead_letters::publish(&self.producer, &self.dlq_topic, &failed).await;
            let marked = match sent {
                Ok(()) => store::dead_letter_sent(
                    &self.pool,
                    store::SCHEMA,
                    failed.seq,
                    failed.dead_letter_id,
                )
                .await
                .map_err(|e| e.to_string()),
                Err(error) => Err(error.to_string()),
            };
            if let Err(error) = marked {
                tracing::warn!(%error, seq = failed.seq, "a webhook dead letter is not sent yet; the next failure or start sends it");
                return;
            }
        }
    }

    fn disable_after(&self) -> chrono::Duration {
        chrono::Duration::milliseconds(
            i64::try_from(self.config.disable_after_ms).unwrap_or(i64::MAX),
        )
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let base = Duration::from_millis(self.config.delivery_retry_base_ms);
        base.saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(20)))
    }

    async fn send(&self, delivery: &Due, at: DateTime<Utc>) -> Outcome {
        let url = match url::Url::parse(&delivery.url) {
            Ok(url) => url,
            Err(error) => return Outcome::failed(format!("the endpoint's URL: {error}")),
        };
        if let Some(refusal) = refusal_of_literal(&url, self.config.allow_private_networks) {
            return Outcome::failed(refusal);
        }
        let id = delivery.event_id.to_string();
        let timestamp = at.timestamp();
        let secret = self
            .key
            .endpoint_secret(delivery.webhook_id, delivery.secret_version);
        let signature = secret.sign(&id, timestamp, delivery.body.as_bytes());
        let sent = self
            .http
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(delivery.body.clone())
            .send()
            .await;
        match sent {
            Ok(response) => {
                let status = response.status();
                let verdict = if status.is_success() {
                    Verdict::Delivered
                } else if status == StatusCode::TOO_MANY_REQUESTS
                    || status == StatusCode::REQUEST_TIMEOUT
                    || status.is_server_error()
                {
                    Verdict::Retry {
                        after: retry_after(response.headers(), Utc::now()),
                    }
                } else {
                    Verdict::Fail
                };
                Outcome {
                    status: Some(status),
                    error: (!status.is_success())
                        .then(|| format!("the endpoint answered {status}")),
                    verdict,
                }
            }
            Err(error) => Outcome {
                status: None,
                error: Some(describe(&error)),
                verdict: Verdict::Retry { after: None },
            },
        }
    }
}

/// SQLSTATE 42P01: a table the statement names does not exist (yet).
fn is_undefined_table(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "42P01")
}

/// The whole chain of an HTTP error: reqwest's own message names only its kind.
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Delivered,
    Retry { after: Option<Duration> },
    Fail,
}

struct Outcome {
    status: Option<StatusCode>,
    error: Option<String>,
    verdict: Verdict,
}

impl Outcome {
    fn failed(error: String) -> Self {
        Self {
            status: None,
            error: Some(error),
            verdict: Verdict::Fail,
        }
    }
}

/// `Retry-After` as seconds or an HTTP date, from `now`.
fn retry_after(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    (at.with_timezone(&Utc) - now).to_std().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_as_seconds_or_a_date() {
        let now = DateTime::parse_from_rfc3339("2026-12-05T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let headers = |value: &str| {
            let mut map = HeaderMap::new();
            map.insert(RETRY_AFTER, value.parse().unwrap());
            map
        };
        assert_eq!(
            retry_after(&headers("120"), now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            retry_after(&headers("Sat, 05 Dec 2026 10:01:00 GMT"), now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(retry_after(&headers("soon"), now), None);
        assert_eq!(
            retry_after(&headers("Sat, 05 Dec 2026 09:00:00 GMT"), now),
            None
        );
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }
}
