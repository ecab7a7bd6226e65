//! A record type of the log with its Avro schema: plain data, with no I/O, so that the pure
//! domain can name the events it decides without the codec that writes them.

use apache_avro::Schema;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A record type with its Avro schema.
pub trait AvroRecord: Serialize + DeserializeOwned {
    /// Namespace and name of the schema's record.
    const FULL_NAME: &'static str;
    /// The schema as written in its `.avsc` file.
    const SCHEMA: &'static str;

    fn parsed_schema() -> Result<Schema, apache_avro::Error> {
        Schema::parse_str(Self::SCHEMA)
    }
}
