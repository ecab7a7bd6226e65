//! The platform's configuration as xtask sees it: the same environment variables, with the same
//! single-machine defaults, as the `plexica` binary reads.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use reqwest::Url;

pub const DEFAULT_KAFKA_BROKERS: &str = "127.0.0.1:9092";
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/plexica";
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_SCHEMA_REGISTRY_LISTEN: &str = "127.0.0.1:8081";

#[derive(Debug, Clone)]
pub struct Settings {
    pub kafka_brokers: String,
    pub database_url: String,
    pub redis_url: String,
    pub http_listen: String,
    /// `None`: the platform runs its embedded registry on `schema_registry_listen`.
    pub schema_registry_url: Option<String>,
    pub schema_registry_listen: String,
}

impl Settings {
    pub fn from_env() -> Self {
        Self {
            kafka_brokers: env_or("KAFKA_BROKERS", DEFAULT_KAFKA_BROKERS),
            database_url: env_or("DATABASE_URL", DEFAULT_DATABASE_URL),
            redis_url: env_or("REDIS_URL", DEFAULT_REDIS_URL),
            http_listen: env_or("HTTP_LISTEN", DEFAULT_HTTP_LISTEN),
            schema_registry_url: std::env::var("SCHEMA_REGISTRY_URL")
                .ok()
                .filter(|url| !url.trim().is_empty()),
            schema_registry_listen: env_or(
                "SCHEMA_REGISTRY_LISTEN",
                DEFAULT_SCHEMA_REGISTRY_LISTEN,
            ),
        }
    }

    /// Where a client on this machine reaches the platform's HTTP server.
    pub fn http_base(&self) -> Result<String> {
        let endpoint = Endpoint::parse_host_port(&self.http_listen)
            .with_context(|| format!("HTTP_LISTEN=`{}`", self.http_listen))?;
        Ok(format!("http://{}", endpoint.client_address()))
    }

    pub fn schema_registry_display(&self) -> Result<String> {
        match &self.schema_registry_url {
            Some(url) => Ok(url.clone()),
            None => {
                let endpoint = Endpoint::parse_host_port(&self.schema_registry_listen)
                    .with_context(|| {
                        format!("SCHEMA_REGISTRY_LISTEN=`{}`", self.schema_registry_listen)
                    })?;
                Ok(format!("http://{}", endpoint.client_address()))
            }
        }
    }
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|value| !value.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// The secret tokens are signed with, and whether it is the public development default.
pub fn jwt_secret() -> (String, bool) {
    match std::env::var("PLEXICA_JWT_SECRET") {
        Ok(secret) if !secret.is_empty() => (secret, false),
        _ => (infra::auth::DEV_JWT_SECRET.to_owned(), true),
    }
}

/// A host and port taken from a URL or a `host:port` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Without IPv6 brackets.
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// `scheme://user@host:port/…`, with `default_port` when the URL names none.
    pub fn parse_url(url: &str, default_port: u16) -> Result<Self> {
        let parsed = Url::parse(url).with_context(|| format!("`{url}` is not a valid URL"))?;
        let Some(host) = parsed.host_str() else {
            bail!("`{url}` names no host");
        };
        Ok(Self {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port: parsed.port().unwrap_or(default_port),
        })
    }

    /// The first entry of a Kafka-style `host:port[,host:port…]` list.
    pub fn parse_host_port(list: &str) -> Result<Self> {
        let first = list.split(',').next().unwrap_or_default().trim();
        let Some((host, port)) = first.rsplit_once(':') else {
            bail!("`{first}` is not of the form host:port");
        };
        let port = port
            .parse()
            .with_context(|| format!("`{port}` in `{first}` is not a port number"))?;
        Ok(Self {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
        })
    }

    /// Whether xtask may start a server of its own for this address.
    pub fn is_local(&self) -> bool {
        matches!(
            self.host.as_str(),
            "127.0.0.1" | "localhost" | "::1" | "0.0.0.0" | "::"
        )
    }

    /// The IP address a private server binds to.
    pub fn bind_host(&self) -> &str {
        match self.host.as_str() {
            "::1" => "::1",
            _ => "127.0.0.1",
        }
    }

    /// `host:port` for connecting, with a wildcard bind address replaced by loopback.
    pub fn client_address(&self) -> String {
        match self.host.as_str() {
            "0.0.0.0" => format!("127.0.0.1:{}", self.port),
            "::" | "::1" => format!("[::1]:{}", self.port),
            host => format!("{host}:{}", self.port),
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.client_address())
    }
}

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest_dir.to_path_buf())
}

/// A relative `--data-dir` is taken from the workspace root, wherever cargo was run from.
pub fn resolve_data_dir(data_dir: &Path) -> Result<PathBuf> {
    let dir = if data_dir.is_absolute() {
        data_dir.to_path_buf()
    } else {
        workspace_root().join(data_dir)
    };
    std::fs::create_dir_all(dir.join("logs"))
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    Ok(dir)
}

/// A command for the cargo that runs us (so a toolchain chosen by rustup stays chosen).
///
/// `cargo run` gives xtask the variables of its own package (CARGO_PKG_NAME=xtask,
/// CARGO_MANIFEST_DIR, …). Build scripts such as ring's rerun when those change, so passing them
/// on to a nested cargo would rebuild those crates every time a plain `cargo build` and
/// `cargo xtask` alternate: they are removed.
pub fn cargo() -> tokio::process::Command {
    let program = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = tokio::process::Command::new(program);
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        let set_for_xtask = name.starts_with("CARGO_PKG_")
            || matches!(
                name,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_MANIFEST_LINKS"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_RUSTC_CURRENT_DIR"
                    | "OUT_DIR"
            );
        if set_for_xtask {
            command.env_remove(name);
        }
    }
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_come_from_urls_and_broker_lists() {
        let pg = Endpoint::parse_url("postgres://postgres@127.0.0.1:5433/plexica", 5432);
        assert_eq!(
            pg.ok(),
            Some(Endpoint {
                host: "127.0.0.1".into(),
                port: 5433
            })
        );
        let redis = Endpoint::parse_url("redis://localhost", 6379).ok();
        assert_eq!(redis.map(|e| e.port), Some(6379));
        let broker = Endpoint::parse_host_port("127.0.0.1:19092,other:9092").ok();
        assert_eq!(broker.map(|e| e.port), Some(19092));
        assert!(Endpoint::parse_host_port("no-port").is_err());
        let v6 = Endpoint::parse_url("redis://[::1]:6380", 6379).ok();
        assert_eq!(
            v6.map(|e| e.client_address()),
            Some("[::1]:6380".to_owned())
        );
    }
}
