//! How webhooks are signed and delivered.

use clap::Args;
use secrecy::SecretString;

use crate::signing::SigningKey;

/// The development webhook key: public, like the development JWT secret.
pub const DEV_WEBHOOK_KEY: &str = "plexica-dev-webhook-key-do-not-use-in-production";

#[derive(Debug, Clone, Args)]
pub struct WebhookConfig {
    /// The key every endpoint's signing secret is derived from. Changing it changes every
    /// secret. The default is public: never run with it outside a developer machine.
    #[arg(long = "webhook-key", env = "PLEXICA_WEBHOOK_KEY", default_value = DEV_WEBHOOK_KEY, hide_default_value = true, value_parser = secret)]
    pub webhook_key: SecretString,
    /// Let webhooks reach loopback, link-local and private addresses (a developer's machine,
    /// the tests). Off, such an address is refused when it is resolved, at every delivery.
    #[arg(
        long = "webhook-allow-private-networks",
        env = "PLEXICA_WEBHOOK_ALLOW_PRIVATE_NETWORKS",
        default_value_t = false
    )]
    pub allow_private_networks: bool,
    /// How long an endpoint has to answer a delivery.
    #[arg(
        long = "webhook-timeout-ms",
        env = "PLEXICA_WEBHOOK_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub delivery_timeout_ms: u64,
    /// The pause before the first retry; each next one waits twice as long (at most an hour),
    /// or what the endpoint's `Retry-After` asks, if longer.
    #[arg(
        long = "webhook-retry-base-ms",
        env = "PLEXICA_WEBHOOK_RETRY_BASE_MS",
        default_value_t = 5_000
    )]
    pub delivery_retry_base_ms: u64,
    /// Attempts before a delivery is dead-lettered.
    #[arg(
        long = "webhook-max-attempts",
        env = "PLEXICA_WEBHOOK_MAX_ATTEMPTS",
        default_value_t = 10
    )]
    pub delivery_max_attempts: u32,
    /// An endpoint to which every delivery has failed for this long is disabled (an event),
    /// which its admins see in `GET /api/v1/webhooks/{id}`; they enable it again.
    #[arg(
        long = "webhook-disable-after-ms",
        env = "PLEXICA_WEBHOOK_DISABLE_AFTER_MS",
        default_value_t = 86_400_000
    )]
    pub disable_after_ms: u64,
}

fn secret(text: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(text))
}

impl WebhookConfig {
    pub fn signing_key(&self) -> SigningKey {
        SigningKey::new(self.webhook_key.clone())
    }
}
