//! Avro in the Confluent wire format (magic byte, 4-byte schema id, body), with schemas
//! registered under the TopicRecordName strategy so that one topic carries many event types.

use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{
    SchemaType, SubjectNameStrategy, SuppliedSchema,
};
use serde::de::DeserializeOwned;

use crate::events::{CoreEvent, RecordVisitor};

pub use crate::record::AvroRecord;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("schema registry or Avro encoding failed: {0}")]
    Registry(#[from] SRCError),
    #[error("the record does not match schema {schema}: {source}")]
    Shape {
        schema: String,
        source: apache_avro::Error,
    },
    #[error("no event type is known for schema {0}")]
    UnknownSchema(String),
    #[error("the record has no value")]
    Empty,
}

impl CodecError {
    /// Registry and network trouble may pass; a record that does not decode never will.
    pub fn is_retryable(&self) -> bool {
        match self {
            CodecError::Registry(e) => e.retriable,
            _ => false,
        }
    }
}

/// Encodes and decodes records, caching schemas and their ids after the first use.
pub struct Codec {
    encoder: AvroEncoder<'static>,
    decoder: AvroDecoder<'static>,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Codec")
    }
}

impl Codec {
    /// A codec over the registry at `registry_url`, sending `token` as its bearer token: the
    /// platform's own registry refuses to register schemas without a `super_admin` token.
    pub fn new(registry_url: &str, token: Option<&str>) -> Result<Self, CodecError> {
        let settings = || {
            let mut builder = SrSettings::new_builder(registry_url.to_owned());
            if let Some(token) = token {
                builder.set_token_authorization(token);
            }
            builder.build()
        };
        Ok(Self {
            encoder: AvroEncoder::new(settings()?),
            decoder: AvroDecoder::new(settings()?),
        })
    }

    /// Encodes `record` for `topic`, registering its schema on first use.
    pub async fn encode<T: AvroRecord>(
        &self,
        topic: &str,
        record: &T,
    ) -> Result<Vec<u8>, CodecError> {
        let strategy = SubjectNameStrategy::TopicRecordNameStrategyWithSchema(
            topic.to_owned(),
            SuppliedSchema {
                name: Some(T::FULL_NAME.to_owned()),
                schema_type: SchemaType::Avro,
                schema: T::SCHEMA.to_owned(),
                references: vec![],
                properties: None,
                tags: None,
            },
        );
        let encoded = self.encoder.encode_struct(record, &strategy).await;
        if encoded.as_ref().is_err_and(|e| e.retriable) {
            // The converter caches failures too: forget this one so that a retry asks again.
            self.encoder.remove_errors_from_cache();
        }
        Ok(encoded?)
    }

    pub async fn encode_event(
        &self,
        topic: &str,
        event: &CoreEvent,
    ) -> Result<Vec<u8>, CodecError> {
        event.visit(Encode { codec: self, topic }).await
    }

    /// Decodes a record of a known type, whatever the topic.
    pub async fn decode<T: AvroRecord>(&self, bytes: Option<&[u8]>) -> Result<T, CodecError> {
        let (name, value) = self.decode_value(bytes).await?;
        if name != T::FULL_NAME {
            return Err(CodecError::UnknownSchema(name));
        }
        from_value(&name, &value)
    }

    /// Decodes an event of a `core.*` topic.
    pub async fn decode_event(&self, bytes: Option<&[u8]>) -> Result<CoreEvent, CodecError> {
        let (name, value) = self.decode_value(bytes).await?;
        event_from_value(&name, &value)
    }

    /// Decodes any record to JSON (Avro's JSON mapping), for people to read: the DLQ shows
    /// a dead letter's payload this way.
    pub async fn decode_json(&self, bytes: Option<&[u8]>) -> Result<serde_json::Value, CodecError> {
        let (_, value) = self.decode_value(bytes).await?;
        serde_json::Value::try_from(value)
            .map_err(|e| CodecError::UnknownSchema(format!("not representable as JSON: {e}")))
    }

    /// Decodes any record to its schema's full name and its Avro value: for readers of topics
    /// whose types they learn from the record (a plugin's subscriptions).
    pub async fn decode_value(
        &self,
        bytes: Option<&[u8]>,
    ) -> Result<(String, apache_avro::types::Value), CodecError> {
        let bytes = bytes.filter(|b| !b.is_empty()).ok_or(CodecError::Empty)?;
        let decoded = self.decoder.decode(Some(bytes)).await;
        if decoded.as_ref().is_err_and(|e| e.retriable) {
            // As for encoding: a registry outage must not make a schema id undecodable for good.
            self.decoder.remove_errors_from_cache();
        }
        let decoded = decoded?;
        let name = decoded.name.map(|n| n.fullname(None)).unwrap_or_default();
        Ok((name, decoded.value))
    }
}

/// Encodes an event's record as its own type.
struct Encode<'a> {
    codec: &'a Codec,
    topic: &'a str,
}

impl<'a> RecordVisitor<'a> for Encode<'a> {
    type Output = std::pin::Pin<Box<dyn Future<Output = Result<Vec<u8>, CodecError>> + Send + 'a>>;

    fn visit<T: AvroRecord + Sync>(self, record: &'a T) -> Self::Output {
        Box::pin(self.codec.encode(self.topic, record))
    }
}

/// Reads an event body by the full name of the schema it was written with.
fn event_from_value(
    name: &str,
    value: &apache_avro::types::Value,
) -> Result<CoreEvent, CodecError> {
    CoreEvent::from_avro(name, value)
        .ok_or_else(|| CodecError::UnknownSchema(name.to_owned()))?
        .map_err(|source| CodecError::Shape {
            schema: name.to_owned(),
            source,
        })
}

fn from_value<T: DeserializeOwned>(
    schema: &str,
    value: &apache_avro::types::Value,
) -> Result<T, CodecError> {
    apache_avro::from_value(value).map_err(|source| CodecError::Shape {
        schema: schema.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests;
