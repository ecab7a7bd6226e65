//! Redis connections.

use redis::aio::ConnectionManager;

use crate::config::RedisConfig;

#[derive(Debug, thiserror::Error)]
#[error("cannot connect to Redis at {url}: {source}")]
pub struct RedisError {
    url: String,
    source: redis::RedisError,
}

/// A multiplexed connection that reconnects by itself.
pub async fn connect(config: &RedisConfig) -> Result<ConnectionManager, RedisError> {
    let wrap = |source| RedisError {
        url: config.url.clone(),
        source,
    };
    let client = redis::Client::open(config.url.as_str()).map_err(wrap)?;
    ConnectionManager::new(client).await.map_err(wrap)
}

pub fn client(config: &RedisConfig) -> Result<redis::Client, RedisError> {
    redis::Client::open(config.url.as_str()).map_err(|source| RedisError {
        url: config.url.clone(),
        source,
    })
}
