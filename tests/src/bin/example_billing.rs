//! The example plugin `billing` (`examples/billing`), built where the tests find it.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    plexica_example_billing::run().await
}
