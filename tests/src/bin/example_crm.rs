//! The example plugin `crm` (`examples/crm`), built where the tests find it.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    plexica_example_crm::run().await
}
