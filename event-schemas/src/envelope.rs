//! The record envelope: CloudEvents Kafka binary binding (`ce_*` headers) plus Plexica's own
//! headers. The value carries only the event body, so any CloudEvents-aware consumer can route
//! and filter without decoding Avro.

use chrono::{DateTime, Utc};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use uuid::Uuid;

pub const SPEC_VERSION: &str = "1.0";
pub const CONTENT_TYPE: &str = "application/avro";

pub mod header {
    pub const SPEC_VERSION: &str = "ce_specversion";
    pub const ID: &str = "ce_id";
    pub const TYPE: &str = "ce_type";
    pub const SOURCE: &str = "ce_source";
    pub const TIME: &str = "ce_time";
    pub const SUBJECT: &str = "ce_subject";
    pub const CONTENT_TYPE: &str = "content-type";
    pub const TENANT_ID: &str = "tenant-id";
    pub const USER_ID: &str = "user-id";
    pub const TRACEPARENT: &str = "traceparent";
    pub const CORRELATION_ID: &str = "correlation-id";
    pub const CAUSATION_ID: &str = "causation-id";
    pub const AGGREGATE_VERSION: &str = "aggregate-version";
    pub const WRITER_EPOCH: &str = "writer-epoch";
    /// `i/n`: the record is event `i` (from 1) of the `n` its command produced.
    pub const COMMAND_PART: &str = "command-part";
}

/// `ce_type` of the fence record a new partition owner writes before anything else.
pub const FENCE_TYPE: &str = "plexica.writer.fenced";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub id: Uuid,
    pub event_type: String,
    pub source: String,
    pub time: DateTime<Utc>,
    /// The aggregate the record is about, e.g. `plugin:crm`.
    pub subject: Option<String>,
    pub tenant_id: Option<String>,
    pub user_id: Option<String>,
    pub traceparent: Option<String>,
    pub correlation_id: Option<String>,
    /// The command that caused the record.
    pub causation_id: Option<Uuid>,
    pub aggregate_version: Option<u64>,
    /// Lease epoch of the processor that wrote the record; absent on records the command
    /// processor did not write.
    pub writer_epoch: Option<i64>,
    /// Which of its command's events the record is: a command's events count only once all
    /// of them are in the log (see `infra::whole_commands`). Absent on records written before
    /// the header existed, which count alone.
    pub command_part: Option<CommandPart>,
}

/// Event `index` (from 1) of the `count` events one command produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandPart {
    pub index: u32,
    pub count: u32,
}

impl CommandPart {
    /// The part of each of `count` events, in order; `None` for a count of zero.
    pub fn of(index: usize, count: usize) -> Option<Self> {
        let part = CommandPart {
            index: u32::try_from(index + 1).ok()?,
            count: u32::try_from(count).ok()?,
        };
        (part.index <= part.count).then_some(part)
    }

    pub fn is_last(&self) -> bool {
        self.index == self.count
    }
}

impl std::fmt::Display for CommandPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl std::str::FromStr for CommandPart {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let (index, count) = value
            .split_once('/')
            .ok_or_else(|| format!("`{value}` is not `index/count`"))?;
        let number = |text: &str| text.parse::<u32>().map_err(|e| format!("`{text}`: {e}"));
        let part = CommandPart {
            index: number(index)?,
            count: number(count)?,
        };
        if part.index == 0 || part.index > part.count {
            return Err(format!("`{value}` is not a part of its command"));
        }
        Ok(part)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    #[error("header `{0}` is missing")]
    Missing(&'static str),
    #[error("header `{name}` is not valid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

impl Envelope {
    /// A new envelope with a fresh UUID v7 and the current time.
    pub fn new(event_type: impl Into<String>, source: impl Into<String>) -> Self {
        Self {
            id: Uuid::now_v7(),
            event_type: event_type.into(),
            source: source.into(),
            time: Utc::now(),
            subject: None,
            tenant_id: None,
            user_id: None,
            traceparent: None,
            correlation_id: None,
            causation_id: None,
            aggregate_version: None,
            writer_epoch: None,
            command_part: None,
        }
    }

    pub fn is_fence(&self) -> bool {
        self.event_type == FENCE_TYPE
    }

    pub fn to_headers(&self) -> OwnedHeaders {
        let mut headers = OwnedHeaders::new_with_capacity(14);
        let mut put = |key: &str, value: &str| {
            headers = std::mem::take(&mut headers).insert(Header {
                key,
                value: Some(value),
            });
        };
        put(header::SPEC_VERSION, SPEC_VERSION);
        put(header::ID, &self.id.to_string());
        put(header::TYPE, &self.event_type);
        put(header::SOURCE, &self.source);
        put(header::TIME, &self.time.to_rfc3339());
        put(header::CONTENT_TYPE, CONTENT_TYPE);
        let optional = [
            (header::SUBJECT, self.subject.clone()),
            (header::TENANT_ID, self.tenant_id.clone()),
            (header::USER_ID, self.user_id.clone()),
            (header::TRACEPARENT, self.traceparent.clone()),
            (header::CORRELATION_ID, self.correlation_id.clone()),
            (
                header::CAUSATION_ID,
                self.causation_id.map(|id| id.to_string()),
            ),
            (
                header::AGGREGATE_VERSION,
                self.aggregate_version.map(|v| v.to_string()),
            ),
            (
                header::WRITER_EPOCH,
                self.writer_epoch.map(|e| e.to_string()),
            ),
            (
                header::COMMAND_PART,
                self.command_part.map(|p| p.to_string()),
            ),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                put(key, &value);
            }
        }
        headers
    }

    pub fn from_headers(headers: &impl Headers) -> Result<Self, HeaderError> {
        let required =
            |name: &'static str| header_str(headers, name).ok_or(HeaderError::Missing(name));
        let id = parse_uuid(header::ID, required(header::ID)?)?;
        let time = DateTime::parse_from_rfc3339(required(header::TIME)?)
            .map_err(|e| HeaderError::Invalid {
                name: header::TIME,
                reason: e.to_string(),
            })?
            .with_timezone(&Utc);
        let owned = |name| header_str(headers, name).map(str::to_owned);
        Ok(Self {
            id,
            event_type: required(header::TYPE)?.to_owned(),
            source: required(header::SOURCE)?.to_owned(),
            time,
            subject: owned(header::SUBJECT),
            tenant_id: owned(header::TENANT_ID),
            user_id: owned(header::USER_ID),
            traceparent: owned(header::TRACEPARENT),
            correlation_id: owned(header::CORRELATION_ID),
            causation_id: header_str(headers, header::CAUSATION_ID)
                .map(|v| parse_uuid(header::CAUSATION_ID, v))
                .transpose()?,
            aggregate_version: parse_number(headers, header::AGGREGATE_VERSION)?,
            writer_epoch: parse_number(headers, header::WRITER_EPOCH)?,
            command_part: parse_number(headers, header::COMMAND_PART)?,
        })
    }
}

/// The value of a header as UTF-8, if present and textual.
pub fn header_str<'a>(headers: &'a impl Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

fn parse_uuid(name: &'static str, value: &str) -> Result<Uuid, HeaderError> {
    Uuid::parse_str(value).map_err(|e| HeaderError::Invalid {
        name,
        reason: e.to_string(),
    })
}

fn parse_number<T: std::str::FromStr>(
    headers: &impl Headers,
    name: &'static str,
) -> Result<Option<T>, HeaderError>
where
    T::Err: std::fmt::Display,
{
    header_str(headers, name)
        .map(|v| {
            v.parse().map_err(|e: T::Err| HeaderError::Invalid {
                name,
                reason: e.to_string(),
            })
        })
        .transpose()
}

/// Why a record on plugin `owner`'s topic is not that plugin's event: on tansu any client may
/// write any topic, so a plugin's topic carries only what its plugin wrote (`ce_source`
/// `plexica/plugin/{owner}`), of its own types (`plugin.{owner}.…`). `None` when it is.
pub fn forged_on_plugin_topic(owner: &str, envelope: &Envelope) -> Option<String> {
    let own_type = envelope
        .event_type
        .strip_prefix("plugin.")
        .and_then(|rest| rest.strip_prefix(owner))
        .is_some_and(|rest| rest.len() > 1 && rest.starts_with('.'));
    (!own_type || envelope.source != format!("plexica/plugin/{owner}")).then(|| {
        format!(
            "a record of type `{}` from `{}` on plugin {owner}'s topic: only plugin {owner} writes there, its own types",
            envelope.event_type, envelope.source
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_survives_the_round_trip_through_kafka_headers() {
        let mut envelope = Envelope::new("core.plugin.registered", "/plexica/command-processor");
        envelope.subject = Some("plugin:crm".into());
        envelope.causation_id = Some(Uuid::now_v7());
        envelope.aggregate_version = Some(3);
        envelope.writer_epoch = Some(7);
        envelope.command_part = CommandPart::of(1, 2);
        envelope.user_id = Some("alice".into());
        // RFC 3339 keeps nanoseconds, so the time compares equal.
        let back = Envelope::from_headers(&envelope.to_headers()).expect("decodes");
        assert_eq!(back, envelope);
    }

    #[test]
    fn a_missing_or_broken_required_header_is_named() {
        let headers = OwnedHeaders::new().insert(Header {
            key: header::ID,
            value: Some("not-a-uuid"),
        });
        match Envelope::from_headers(&headers) {
            Err(HeaderError::Invalid { name, .. }) => assert_eq!(name, header::ID),
            other => panic!("expected an invalid ce_id, got {other:?}"),
        }
        assert_eq!(
            Envelope::from_headers(&OwnedHeaders::new()),
            Err(HeaderError::Missing(header::ID))
        );
    }

    #[test]
    fn a_command_part_reads_index_of_count_and_refuses_what_cannot_be_a_part() {
        assert_eq!(
            "2/3".parse::<CommandPart>(),
            Ok(CommandPart { index: 2, count: 3 })
        );
        for broken in ["0/2", "3/2", "2", "a/b", "1/", "/1", "-1/2"] {
            assert!(broken.parse::<CommandPart>().is_err(), "{broken}");
        }
        assert_eq!(CommandPart::of(0, 0), None);
        assert_eq!(
            CommandPart::of(1, 2),
            Some(CommandPart { index: 2, count: 2 })
        );
    }
}
