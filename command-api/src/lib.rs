//! The command side of Plexica: an HTTP API that turns requests into commands on the log, and
//! the processor that decides them.

pub mod bus;
pub mod directory;
pub mod health_recorder;
pub mod outcomes;
pub mod processor;
mod routes;
pub mod sagas;
pub mod webhook_disabler;

use std::time::Duration;

pub use bus::CommandBus;
pub use routes::{openapi, router};

/// Settings of the command API itself.
#[derive(Debug, Clone, clap::Args)]
pub struct CommandApiConfig {
    /// How long a request waits for its command's outcome before answering 202 with a
    /// status URL.
    #[arg(
        long = "command-reply-timeout-ms",
        env = "COMMAND_REPLY_TIMEOUT_MS",
        default_value_t = 5000
    )]
    pub reply_timeout_ms: u64,
}

impl CommandApiConfig {
    pub fn reply_timeout(&self) -> Duration {
        Duration::from_millis(self.reply_timeout_ms)
    }
}
