//! The event of the Rust events plugin (`src/bin/events_plugin.rs`), which its bench publishes
//! too.

use event_schemas::record::AvroRecord;
use plexica_plugin_sdk::PluginEvent;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DealWon {
    pub deal_id: String,
    pub amount: i64,
}

impl AvroRecord for DealWon {
    const FULL_NAME: &'static str = "com.plexica.example.DealWon";
    const SCHEMA: &'static str = r#"{"type": "record", "name": "DealWon", "namespace": "com.plexica.example",
        "fields": [{"name": "deal_id", "type": "string"}, {"name": "amount", "type": "long"}]}"#;
}

impl PluginEvent for DealWon {
    const NAME: &'static str = "deal.won";
}
