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
mod tests {
    use super::*;
    use crate::commands::{CommandOutcome, CommandRecord, WriterFenced};
    use apache_avro::Schema;

    /// Every checked-in schema parses and names the record its Rust type claims.
    #[test]
    fn every_schema_parses_and_carries_its_declared_name() {
        fn check<T: AvroRecord>() {
            let schema = T::parsed_schema().expect("schema parses");
            let name = match &schema {
                Schema::Record(record) => record.name.fullname(None),
                other => panic!("{} is not a record: {other:?}", T::FULL_NAME),
            };
            assert_eq!(name, T::FULL_NAME);
        }
        check::<PluginRegistered>();
        check::<PluginInstallRequested>();
        check::<PluginInstallStepCompleted>();
        check::<PluginInstalled>();
        check::<PluginInstallFailed>();
        check::<PluginEnabled>();
        check::<PluginDisabled>();
        check::<PluginUpdateRequested>();
        check::<PluginUpdated>();
        check::<PluginUpdateFailed>();
        check::<PluginUninstallRequested>();
        check::<PluginUninstalled>();
        check::<TenantCreated>();
        check::<TenantSuspended>();
        check::<TenantReactivated>();
        check::<TenantDeleted>();
        check::<NamesReserved>();
        check::<NamesReleased>();
        check::<VersionPublished>();
        check::<VersionYanked>();
        check::<VersionDeprecated>();
        check::<PluginClassified>();
        check::<PluginVerificationChanged>();
        check::<ReviewSubmitted>();
        check::<ReviewRevised>();
        check::<TenantPluginEnabled>();
        check::<TenantPluginDisabled>();
        check::<TenantPluginConfigured>();
        check::<CommandRecord>();
        check::<CommandOutcome>();
        check::<WriterFenced>();
    }

    /// Writes a record with its schema and reads the bytes back as an Avro value, as the
    /// decoder sees it.
    fn written<T: AvroRecord>(record: &T) -> apache_avro::types::Value {
        let schema = T::parsed_schema().expect("schema parses");
        let value = apache_avro::to_value(record).expect("serialises");
        let value = value.resolve(&schema).expect("value fits the schema");
        let bytes = apache_avro::to_avro_datum(&schema, value).expect("encodes");
        apache_avro::from_avro_datum(&schema, &mut bytes.as_slice(), None).expect("decodes")
    }

    /// The Rust types and the schemas agree: a value serialised through serde is valid for the
    /// schema and reads back equal.
    #[test]
    fn records_round_trip_through_their_schema() {
        fn round_trip<T: AvroRecord + PartialEq + std::fmt::Debug>(record: T) {
            let back: T = apache_avro::from_value(&written(&record)).expect("deserialises");
            assert_eq!(back, record);
        }
        round_trip(PluginRegistered {
            plugin_id: "crm".into(),
            name: "CRM".into(),
            version: "1.2.0".into(),
            description: Some("Deals".into()),
            manifest: "{}".into(),
        });
        round_trip(PluginRegistered {
            plugin_id: "crm".into(),
            name: "CRM".into(),
            version: "1.2.0".into(),
            description: None,
            manifest: "{}".into(),
        });
        for event in plugin_events() {
            match event {
                PluginEvent::Registered(e) => round_trip(e),
                PluginEvent::InstallRequested(e) => round_trip(e),
                PluginEvent::InstallStepCompleted(e) => round_trip(e),
                PluginEvent::Installed(e) => round_trip(e),
                PluginEvent::InstallFailed(e) => round_trip(e),
                PluginEvent::Enabled(e) => round_trip(e),
                PluginEvent::Disabled(e) => round_trip(e),
                PluginEvent::UpdateRequested(e) => round_trip(e),
                PluginEvent::Updated(e) => round_trip(e),
                PluginEvent::UpdateFailed(e) => round_trip(e),
                PluginEvent::UninstallRequested(e) => round_trip(e),
                PluginEvent::Uninstalled(e) => round_trip(e),
            }
        }
        for event in tenant_events() {
            match event {
                TenantEvent::Created(e) => round_trip(e),
                TenantEvent::Suspended(e) => round_trip(e),
                TenantEvent::Reactivated(e) => round_trip(e),
                TenantEvent::Deleted(e) => round_trip(e),
                TenantEvent::PluginEnabled(e) => round_trip(e),
                TenantEvent::PluginDisabled(e) => round_trip(e),
                TenantEvent::PluginConfigured(e) => round_trip(e),
            }
        }
        for event in registry_entry_events() {
            match event {
                RegistryEvent::NamesReserved(e) => round_trip(e),
                RegistryEvent::NamesReleased(e) => round_trip(e),
                RegistryEvent::VersionPublished(e) => round_trip(e),
                RegistryEvent::VersionYanked(e) => round_trip(e),
                RegistryEvent::VersionDeprecated(e) => round_trip(e),
                RegistryEvent::PluginClassified(e) => round_trip(e),
                RegistryEvent::PluginVerificationChanged(e) => round_trip(e),
                RegistryEvent::ReviewSubmitted(e) => round_trip(e),
                RegistryEvent::ReviewRevised(e) => round_trip(e),
            }
        }
        round_trip(CommandRecord {
            command_id: "c".into(),
            command_type: "plugin.register".into(),
            aggregate_key: "plugin:crm".into(),
            payload: "{}".into(),
            actor_id: "alice".into(),
            actor_roles: vec!["super_admin".into()],
            actor_tenant_id: None,
            issued_at: 1,
            traceparent: Some("00-abc-def-01".into()),
        });
        round_trip(CommandOutcome {
            command_id: "c".into(),
            aggregate_key: "plugin:crm".into(),
            accepted: true,
            events: vec![crate::commands::EventPosition {
                topic: "core.plugins".into(),
                partition: 1,
                offset: 42,
                event_type: "core.plugin.registered".into(),
                aggregate_version: 1,
            }],
            rejection: None,
            decided_at: 2,
        });
    }

    /// One of every plugin event, optional fields set and unset.
    fn plugin_events() -> Vec<PluginEvent> {
        let id = || "crm".to_owned();
        vec![
            PluginEvent::InstallRequested(PluginInstallRequested {
                plugin_id: id(),
                version: "1.2.0".into(),
            }),
            PluginEvent::InstallStepCompleted(PluginInstallStepCompleted {
                plugin_id: id(),
                version: "1.2.0".into(),
                step: "MIGRATIONS_APPLIED".into(),
            }),
            PluginEvent::Installed(PluginInstalled {
                plugin_id: id(),
                version: "1.2.0".into(),
            }),
            PluginEvent::InstallFailed(PluginInstallFailed {
                plugin_id: id(),
                version: "1.2.0".into(),
                step: "HEALTH_CHECKED".into(),
                error: "image pull failed".into(),
            }),
            PluginEvent::Enabled(PluginEnabled {
                plugin_id: id(),
                version: "1.2.0".into(),
            }),
            PluginEvent::Disabled(PluginDisabled {
                plugin_id: id(),
                version: "1.2.0".into(),
                reason: Some("dependency contacts was uninstalled".into()),
            }),
            PluginEvent::Disabled(PluginDisabled {
                plugin_id: id(),
                version: "1.2.0".into(),
                reason: None,
            }),
            PluginEvent::UpdateRequested(PluginUpdateRequested {
                plugin_id: id(),
                version: "1.2.0".into(),
                target_version: "1.3.0".into(),
                name: "CRM".into(),
                description: Some("Deals".into()),
                manifest: "{}".into(),
            }),
            PluginEvent::UpdateRequested(PluginUpdateRequested {
                plugin_id: id(),
                version: "1.2.0".into(),
                target_version: "1.3.0".into(),
                name: "CRM".into(),
                description: None,
                manifest: "{}".into(),
            }),
            PluginEvent::Updated(PluginUpdated {
                plugin_id: id(),
                previous_version: "1.2.0".into(),
                version: "1.3.0".into(),
                name: "CRM".into(),
                description: None,
                manifest: "{}".into(),
            }),
            PluginEvent::Updated(PluginUpdated {
                plugin_id: id(),
                previous_version: "1.2.0".into(),
                version: "1.3.0".into(),
                name: "CRM".into(),
                description: Some("Deals".into()),
                manifest: "{}".into(),
            }),
            PluginEvent::UpdateFailed(PluginUpdateFailed {
                plugin_id: id(),
                version: "1.2.0".into(),
                target_version: "1.3.0".into(),
                error: "hot swap failed".into(),
            }),
            PluginEvent::UninstallRequested(PluginUninstallRequested {
                plugin_id: id(),
                version: "1.2.0".into(),
                purge_data: true,
            }),
            PluginEvent::Uninstalled(PluginUninstalled {
                plugin_id: id(),
                version: "1.2.0".into(),
                purge_data: false,
            }),
        ]
    }

    /// One of every tenant event, optional fields set and unset.
    fn tenant_events() -> Vec<TenantEvent> {
        let id = || "0190c2a0-0000-7000-8000-000000000000".to_owned();
        vec![
            TenantEvent::Created(TenantCreated {
                tenant_id: id(),
                slug: "acme".into(),
                name: "Acme".into(),
            }),
            TenantEvent::Suspended(TenantSuspended {
                tenant_id: id(),
                reason: Some("unpaid invoices".into()),
            }),
            TenantEvent::Suspended(TenantSuspended {
                tenant_id: id(),
                reason: None,
            }),
            TenantEvent::Reactivated(TenantReactivated { tenant_id: id() }),
            TenantEvent::Deleted(TenantDeleted { tenant_id: id() }),
            TenantEvent::PluginEnabled(TenantPluginEnabled {
                tenant_id: id(),
                plugin_id: "crm".into(),
                plugin_version: "1.2.0".into(),
                configuration: r#"{"stages":["lead","won"]}"#.into(),
            }),
            TenantEvent::PluginDisabled(TenantPluginDisabled {
                tenant_id: id(),
                plugin_id: "crm".into(),
            }),
            TenantEvent::PluginConfigured(TenantPluginConfigured {
                tenant_id: id(),
                plugin_id: "crm".into(),
                configuration: "{}".into(),
            }),
        ]
    }

    /// One of every event of a plugin's registry entry, optional fields set and unset.
    fn registry_entry_events() -> Vec<RegistryEvent> {
        let id = || "crm".to_owned();
        vec![
            RegistryEvent::VersionPublished(VersionPublished {
                plugin_id: id(),
                version: "1.3.0".into(),
                manifest: "{}".into(),
                release_notes: Some("Faster deals".into()),
            }),
            RegistryEvent::VersionPublished(VersionPublished {
                plugin_id: id(),
                version: "1.3.0".into(),
                manifest: "{}".into(),
                release_notes: None,
            }),
            RegistryEvent::VersionYanked(VersionYanked {
                plugin_id: id(),
                version: "1.3.0".into(),
                reason: "leaks deals".into(),
            }),
            RegistryEvent::VersionDeprecated(VersionDeprecated {
                plugin_id: id(),
                version: "1.3.0".into(),
                message: "use 2.x".into(),
            }),
            RegistryEvent::PluginClassified(PluginClassified {
                plugin_id: id(),
                categories: vec!["sales".into()],
                tags: vec![],
            }),
            RegistryEvent::PluginVerificationChanged(PluginVerificationChanged {
                plugin_id: id(),
                verified: true,
                note: Some("security review passed".into()),
            }),
            RegistryEvent::ReviewSubmitted(ReviewSubmitted {
                plugin_id: id(),
                reviewer: "alice".into(),
                rating: 5,
                comment: Some("great".into()),
            }),
            RegistryEvent::ReviewRevised(ReviewRevised {
                plugin_id: id(),
                reviewer: "alice".into(),
                rating: 2,
                comment: None,
            }),
        ]
    }

    /// What the decoder does with a record once the registry named its schema: every schema
    /// maps back to the event it was written from, and each event type has its own name.
    #[test]
    fn every_event_decodes_to_the_event_it_was_written_from() {
        fn as_written(event: &CoreEvent) -> (&'static str, apache_avro::types::Value) {
            fn with_name<T: AvroRecord>(record: &T) -> (&'static str, apache_avro::types::Value) {
                (T::FULL_NAME, written(record))
            }
            match event {
                CoreEvent::Plugin(event) => match event {
                    PluginEvent::Registered(e) => with_name(e),
                    PluginEvent::InstallRequested(e) => with_name(e),
                    PluginEvent::InstallStepCompleted(e) => with_name(e),
                    PluginEvent::Installed(e) => with_name(e),
                    PluginEvent::InstallFailed(e) => with_name(e),
                    PluginEvent::Enabled(e) => with_name(e),
                    PluginEvent::Disabled(e) => with_name(e),
                    PluginEvent::UpdateRequested(e) => with_name(e),
                    PluginEvent::Updated(e) => with_name(e),
                    PluginEvent::UpdateFailed(e) => with_name(e),
                    PluginEvent::UninstallRequested(e) => with_name(e),
                    PluginEvent::Uninstalled(e) => with_name(e),
                },
                CoreEvent::Tenant(event) => match event {
                    TenantEvent::Created(e) => with_name(e),
                    TenantEvent::Suspended(e) => with_name(e),
                    TenantEvent::Reactivated(e) => with_name(e),
                    TenantEvent::Deleted(e) => with_name(e),
                    TenantEvent::PluginEnabled(e) => with_name(e),
                    TenantEvent::PluginDisabled(e) => with_name(e),
                    TenantEvent::PluginConfigured(e) => with_name(e),
                },
                CoreEvent::Registry(event) => match event {
                    RegistryEvent::NamesReserved(e) => with_name(e),
                    RegistryEvent::NamesReleased(e) => with_name(e),
                    RegistryEvent::VersionPublished(e) => with_name(e),
                    RegistryEvent::VersionYanked(e) => with_name(e),
                    RegistryEvent::VersionDeprecated(e) => with_name(e),
                    RegistryEvent::PluginClassified(e) => with_name(e),
                    RegistryEvent::PluginVerificationChanged(e) => with_name(e),
                    RegistryEvent::ReviewSubmitted(e) => with_name(e),
                    RegistryEvent::ReviewRevised(e) => with_name(e),
                },
            }
        }
        let mut events: Vec<CoreEvent> = plugin_events().into_iter().map(CoreEvent::from).collect();
        events.push(CoreEvent::Plugin(PluginEvent::Registered(
            PluginRegistered {
                plugin_id: "crm".into(),
                name: "CRM".into(),
                version: "1.2.0".into(),
                description: None,
                manifest: "{}".into(),
            },
        )));
        events.extend(tenant_events().into_iter().map(CoreEvent::from));
        for scope in ["permission-keys", "tenant-slugs"] {
            events.push(CoreEvent::Registry(RegistryEvent::NamesReserved(
                NamesReserved {
                    scope: scope.into(),
                    owner: "crm".into(),
                    names: vec!["crm.deals.read".into(), "crm.deals.write".into()],
                },
            )));
            events.push(CoreEvent::Registry(RegistryEvent::NamesReleased(
                NamesReleased {
                    scope: scope.into(),
                    owner: "crm".into(),
                    names: vec![],
                },
            )));
        }
        events.extend(registry_entry_events().into_iter().map(CoreEvent::from));
        let mut types_by_schema = std::collections::HashMap::new();
        for event in &events {
            let (name, value) = as_written(event);
            let decoded = event_from_value(name, &value).expect("a known schema");
            assert_eq!(&decoded, event);
            let previous = types_by_schema.insert(name, event.event_type());
            assert!(
                previous.is_none_or(|t| t == event.event_type()),
                "{name} has two event types"
            );
        }
        let mut types: Vec<&str> = types_by_schema.values().copied().collect();
        types.sort_unstable();
        types.dedup();
        assert_eq!(
            types.len(),
            types_by_schema.len(),
            "two schemas share an event type"
        );
        assert_eq!(types.len(), 28, "one event type per core event: {types:?}");
        for t in &types {
            let what = t
                .strip_prefix("core.plugin.")
                .or_else(|| t.strip_prefix("core.tenant."))
                .or_else(|| t.strip_prefix("core.registry."))
                .unwrap_or_else(|| panic!("{t} is not core.<plugin|tenant|registry>.*"));
            assert!(
                what.split('-')
                    .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase())),
                "{t} is not core.<plugin|tenant>.<kebab-case>"
            );
        }
        assert!(matches!(
            event_from_value(
                "com.plexica.events.plugin.PluginExploded",
                &apache_avro::types::Value::Null
            ),
            Err(CodecError::UnknownSchema(_))
        ));
    }
}
