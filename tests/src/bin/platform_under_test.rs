//! The platform as `plexica` runs it, built with the end-to-end tests and benches so that they
//! can start it in a process of its own (`CARGO_BIN_EXE_platform-under-test`): to kill it, or
//! to measure its memory apart from the load generator's.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    infra::telemetry::init();
    let cli = plexica::Cli::parse();
    plexica::serve(cli.config, cli.part).await?;
    Ok(())
}
