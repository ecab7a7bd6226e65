//! Calling another plugin for the caller (FR-010, plugin-to-plugin REST): through the
//! platform's gateway, with the caller's `Authorization` and trace, so the other plugin sees
//! the same tenant and user the gateway verified, and within a timeout.

use std::time::Duration;

use reqwest::Method;
use secrecy::ExposeSecret;

use crate::config::PluginConfig;
use crate::context::{AUTHORIZATION_HEADER, RequestContext, TRACEPARENT_HEADER};

/// How long a call to another plugin may take, as the gateway's own limit.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("plugin {plugin} did not answer within {timeout:?}")]
    Timeout { plugin: String, timeout: Duration },
    #[error("plugin {plugin} could not be reached: {reason}")]
    Unreachable { plugin: String, reason: String },
}

/// Calls plugins through the gateway at `PLEXICA_GATEWAY_URL`.
#[derive(Clone)]
pub struct Services {
    http: reqwest::Client,
    gateway: String,
    timeout: Duration,
}

impl Services {
    pub fn new(config: &PluginConfig) -> Self {
        Self::with_timeout(config, DEFAULT_TIMEOUT)
    }

    pub fn with_timeout(config: &PluginConfig, timeout: Duration) -> Self {
        Self {
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .unwrap_or_default(),
            gateway: config.gateway_url.trim_end_matches('/').to_owned(),
            timeout,
        }
    }

    /// `method` `/{path}` of plugin `plugin`, for the caller of `context`. The answer is the
    /// other plugin's (or the gateway's problem: 404 when the tenant has not enabled it, 503
    /// when it is not healthy); only failing to get one is an error.
    pub async fn call(
        &self,
        context: &RequestContext,
        method: Method,
        plugin: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<reqwest::Response, ServiceError> {
        let url = format!(
            "{}/api/plugins/{plugin}/{}",
            self.gateway,
            path.trim_start_matches('/')
        );
        let mut request = self.http.request(method, url).timeout(self.timeout);
        if let Some(authorization) = &context.authorization {
            request = request.header(AUTHORIZATION_HEADER, authorization.expose_secret());
        }
        if let Some(traceparent) = &context.traceparent {
            request = request.header(TRACEPARENT_HEADER, traceparent);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.map_err(|error| {
            if error.is_timeout() {
                ServiceError::Timeout {
                    plugin: plugin.to_owned(),
                    timeout: self.timeout,
                }
            } else {
                ServiceError::Unreachable {
                    plugin: plugin.to_owned(),
                    reason: error.to_string(),
                }
            }
        })
    }
}
