//! Avro in the Confluent wire format (magic byte, 4-byte schema id, body), with schemas
//! registered under the TopicRecordName strategy so that one topic carries many event types.

use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{
    SchemaType, SubjectNameStrategy, SuppliedSchema,
};
use serde::de::DeserializeOwned;

use crate::events::{
    CoreEvent, NamesReleased, NamesReserved, PluginClassified, PluginDisabled, PluginEnabled,
    PluginEvent, PluginInstallFailed, PluginInstallRequested, PluginInstallStepCompleted,
    PluginInstalled, PluginRegistered, PluginUninstallRequested, PluginUninstalled,
    PluginUpdateFailed, PluginUpdateRequested, PluginUpdated, PluginVerificationChanged,
    RegistryEvent, ReviewRevised, ReviewSubmitted, TenantCreated, TenantDeleted, TenantEvent,
    TenantPluginConfigured, TenantPluginDisabled, TenantPluginEnabled, TenantReactivated,
    TenantSuspended, VersionDeprecated, VersionPublished, VersionYanked,
};

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
        match event {
            CoreEvent::Plugin(event) => match event {
                PluginEvent::Registered(e) => self.encode(topic, e).await,
                PluginEvent::InstallRequested(e) => self.encode(topic, e).await,
                PluginEvent::InstallStepCompleted(e) => self.encode(topic, e).await,
                PluginEvent::Installed(e) => self.encode(topic, e).await,
                PluginEvent::InstallFailed(e) => self.encode(topic, e).await,
                PluginEvent::Enabled(e) => self.encode(topic, e).await,
                PluginEvent::Disabled(e) => self.encode(topic, e).await,
                PluginEvent::UpdateRequested(e) => self.encode(topic, e).await,
                PluginEvent::Updated(e) => self.encode(topic, e).await,
                PluginEvent::UpdateFailed(e) => self.encode(topic, e).await,
                PluginEvent::UninstallRequested(e) => self.encode(topic, e).await,
                PluginEvent::Uninstalled(e) => self.encode(topic, e).await,
            },
            CoreEvent::Tenant(event) => match event {
                TenantEvent::Created(e) => self.encode(topic, e).await,
                TenantEvent::Suspended(e) => self.encode(topic, e).await,
                TenantEvent::Reactivated(e) => self.encode(topic, e).await,
                TenantEvent::Deleted(e) => self.encode(topic, e).await,
                TenantEvent::PluginEnabled(e) => self.encode(topic, e).await,
                TenantEvent::PluginDisabled(e) => self.encode(topic, e).await,
                TenantEvent::PluginConfigured(e) => self.encode(topic, e).await,
            },
            CoreEvent::Registry(event) => match event {
                RegistryEvent::NamesReserved(e) => self.encode(topic, e).await,
                RegistryEvent::NamesReleased(e) => self.encode(topic, e).await,
                RegistryEvent::VersionPublished(e) => self.encode(topic, e).await,
                RegistryEvent::VersionYanked(e) => self.encode(topic, e).await,
                RegistryEvent::VersionDeprecated(e) => self.encode(topic, e).await,
                RegistryEvent::PluginClassified(e) => self.encode(topic, e).await,
                RegistryEvent::PluginVerificationChanged(e) => self.encode(topic, e).await,
                RegistryEvent::ReviewSubmitted(e) => self.encode(topic, e).await,
                RegistryEvent::ReviewRevised(e) => self.encode(topic, e).await,
            },
        }
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

    async fn decode_value(
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

/// Reads an event body by the full name of the schema it was written with.
fn event_from_value(
    name: &str,
    value: &apache_avro::types::Value,
) -> Result<CoreEvent, CodecError> {
    let plugin = |event: PluginEvent| Ok(CoreEvent::Plugin(event));
    let tenant = |event: TenantEvent| Ok(CoreEvent::Tenant(event));
    let registry = |event: RegistryEvent| Ok(CoreEvent::Registry(event));
    match name {
        PluginRegistered::FULL_NAME => plugin(PluginEvent::Registered(from_value(name, value)?)),
        PluginInstallRequested::FULL_NAME => {
            plugin(PluginEvent::InstallRequested(from_value(name, value)?))
        }
        PluginInstallStepCompleted::FULL_NAME => {
            plugin(PluginEvent::InstallStepCompleted(from_value(name, value)?))
        }
        PluginInstalled::FULL_NAME => plugin(PluginEvent::Installed(from_value(name, value)?)),
        PluginInstallFailed::FULL_NAME => {
            plugin(PluginEvent::InstallFailed(from_value(name, value)?))
        }
        PluginEnabled::FULL_NAME => plugin(PluginEvent::Enabled(from_value(name, value)?)),
        PluginDisabled::FULL_NAME => plugin(PluginEvent::Disabled(from_value(name, value)?)),
        PluginUpdateRequested::FULL_NAME => {
            plugin(PluginEvent::UpdateRequested(from_value(name, value)?))
        }
        PluginUpdated::FULL_NAME => plugin(PluginEvent::Updated(from_value(name, value)?)),
        PluginUpdateFailed::FULL_NAME => {
            plugin(PluginEvent::UpdateFailed(from_value(name, value)?))
        }
        PluginUninstallRequested::FULL_NAME => {
            plugin(PluginEvent::UninstallRequested(from_value(name, value)?))
        }
        PluginUninstalled::FULL_NAME => plugin(PluginEvent::Uninstalled(from_value(name, value)?)),
        TenantCreated::FULL_NAME => tenant(TenantEvent::Created(from_value(name, value)?)),
        TenantSuspended::FULL_NAME => tenant(TenantEvent::Suspended(from_value(name, value)?)),
        TenantReactivated::FULL_NAME => tenant(TenantEvent::Reactivated(from_value(name, value)?)),
        TenantDeleted::FULL_NAME => tenant(TenantEvent::Deleted(from_value(name, value)?)),
        TenantPluginEnabled::FULL_NAME => {
            tenant(TenantEvent::PluginEnabled(from_value(name, value)?))
        }
        TenantPluginDisabled::FULL_NAME => {
            tenant(TenantEvent::PluginDisabled(from_value(name, value)?))
        }
        TenantPluginConfigured::FULL_NAME => {
            tenant(TenantEvent::PluginConfigured(from_value(name, value)?))
        }
        NamesReserved::FULL_NAME => {
            registry(RegistryEvent::NamesReserved(from_value(name, value)?))
        }
        NamesReleased::FULL_NAME => {
            registry(RegistryEvent::NamesReleased(from_value(name, value)?))
        }
        VersionPublished::FULL_NAME => {
            registry(RegistryEvent::VersionPublished(from_value(name, value)?))
        }
        VersionYanked::FULL_NAME => {
            registry(RegistryEvent::VersionYanked(from_value(name, value)?))
        }
        VersionDeprecated::FULL_NAME => {
            registry(RegistryEvent::VersionDeprecated(from_value(name, value)?))
        }
        PluginClassified::FULL_NAME => {
            registry(RegistryEvent::PluginClassified(from_value(name, value)?))
        }
        PluginVerificationChanged::FULL_NAME => registry(RegistryEvent::PluginVerificationChanged(
            from_value(name, value)?,
        )),
        ReviewSubmitted::FULL_NAME => {
            registry(RegistryEvent::ReviewSubmitted(from_value(name, value)?))
        }
        ReviewRevised::FULL_NAME => {
            registry(RegistryEvent::ReviewRevised(from_value(name, value)?))
        }
        _ => Err(CodecError::UnknownSchema(name.to_owned())),
    }
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
