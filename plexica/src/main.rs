use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    infra::telemetry::init();
    let cli = plexica::Cli::parse();
    plexica::serve(cli.config, cli.part).await?;
    Ok(())
}
