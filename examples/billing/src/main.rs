//! The `billing` plugin's process: the platform's process driver starts it in its bundle.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    plexica_example_billing::run().await
}
