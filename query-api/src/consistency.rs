//! Read-your-writes: a query that presents the consistency token of a command's reply (the
//! offsets of its events) waits, bounded, until the projections it reads have passed them.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;
use infra::http::Problem;
use sqlx::PgPool;
use tokio::sync::watch;
use tokio::time::Instant;

/// The request header that carries a token; the command API's replies carry it too.
pub const HEADER: &str = "x-consistency-token";

/// How long a query waits for the projections to reach its token.
const MAX_WAIT: Duration = Duration::from_secs(5);

/// How often a waiting query looks again when no progress notification arrives: notifications
/// are the fast path, this bounds the wait when the listener is reconnecting.
const POLL: Duration = Duration::from_millis(100);

/// Where one event of a command lies in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventPosition {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// `topic:partition:offset` of each event, comma-separated, as the command API writes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsistencyToken(Vec<EventPosition>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{0}` is not `topic:partition:offset`")]
pub struct MalformedToken(String);

impl FromStr for ConsistencyToken {
    type Err = MalformedToken;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.split(',')
            .map(str::trim)
            .filter(|position| !position.is_empty())
            .map(|position| {
                let malformed = || MalformedToken(position.to_owned());
                // Kafka topic names have no `:`; splitting from the right keeps that rule out
                // of the parser.
                let mut parts = position.rsplitn(3, ':');
                let offset = parts.next().and_then(|o| o.parse().ok());
                let partition = parts.next().and_then(|p| p.parse().ok());
                let topic = parts.next().filter(|t| !t.is_empty());
                match (topic, partition, offset) {
                    (Some(topic), Some(partition), Some(offset))
                        if partition >= 0 && offset >= 0 =>
                    {
                        Ok(EventPosition {
                            topic: topic.to_owned(),
                            partition,
                            offset,
                        })
                    }
                    _ => Err(malformed()),
                }
            })
            .collect::<Result<_, _>>()
            .map(ConsistencyToken)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConsistencyError {
    #[error("the consistency token is malformed: {0}")]
    Malformed(#[from] MalformedToken),
    #[error(
        "the read models have not reached the consistency token within {} ms; try again",
        MAX_WAIT.as_millis()
    )]
    Stale,
    #[error("the read models' progress could not be read")]
    Postgres(#[source] sqlx::Error),
}

impl ConsistencyError {
    /// The `extensions.code` of the GraphQL error.
    pub fn code(&self) -> &'static str {
        match self {
            ConsistencyError::Malformed(_) => "BAD_CONSISTENCY_TOKEN",
            ConsistencyError::Stale => "STALE",
            ConsistencyError::Postgres(_) => "INTERNAL",
        }
    }
}

impl From<ConsistencyError> for Problem {
    fn from(error: ConsistencyError) -> Self {
        let detail = error.to_string();
        match error {
            ConsistencyError::Malformed(_) => Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-consistency-token",
                "Invalid consistency token",
            ),
            ConsistencyError::Stale => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "stale",
                "The read models are behind the consistency token",
            ),
            ConsistencyError::Postgres(error) => {
                tracing::error!(%error, "reading the projections' progress failed");
                Problem::internal("the read models' progress could not be read")
            }
        }
        .detail(detail)
    }
}

/// The catalog projection's progress, as its checkpoints say, woken by its notifications.
pub struct Progress {
    pool: PgPool,
    /// Postgres schema whose checkpoints are compared with tokens.
    schema: &'static str,
    /// The topics that projection reads: a token's positions elsewhere concern other readers.
    topics: Vec<String>,
    notified: watch::Receiver<u64>,
}

impl Progress {
    /// `notified` changes whenever a projection commits (see [`crate::notifications`]).
    pub fn new(
        pool: PgPool,
        schema: &'static str,
        topics: Vec<String>,
        notified: watch::Receiver<u64>,
    ) -> Arc<Self> {
        Arc::new(Self {
            pool,
            schema,
            topics,
            notified,
        })
    }

    /// Returns once the projection has applied every position of `token` it reads.
    pub async fn wait_for(&self, token: &ConsistencyToken) -> Result<(), ConsistencyError> {
        let positions: Vec<&EventPosition> = token
            .0
            .iter()
            .filter(|p| self.topics.contains(&p.topic))
            .collect();
        if positions.is_empty() {
            return Ok(());
        }
        let deadline = Instant::now() + MAX_WAIT;
        let mut notified = self.notified.clone();
        loop {
            // Marked seen before the check, so a commit between the two wakes the next wait.
            notified.borrow_and_update();
            if self.has_passed(&positions).await? {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(ConsistencyError::Stale);
            }
            let nap = POLL.min(deadline - now);
            let _ = tokio::time::timeout(nap, notified.changed()).await;
        }
    }

    async fn has_passed(&self, positions: &[&EventPosition]) -> Result<bool, ConsistencyError> {
        let topics: Vec<&str> = positions.iter().map(|p| p.topic.as_str()).collect();
        let partitions: Vec<i32> = positions.iter().map(|p| p.partition).collect();
        let offsets: Vec<i64> = positions.iter().map(|p| p.offset).collect();
        let behind: Result<i64, sqlx::Error> = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM unnest($1::text[], $2::int[], $3::bigint[])
                 AS wanted(topic, partition, event_offset)
             WHERE NOT EXISTS (
                 SELECT 1 FROM {}.checkpoints c
                 WHERE c.topic = wanted.topic AND c.partition = wanted.partition
                   AND c.next_offset > wanted.event_offset)",
            self.schema
        ))
        .bind(topics)
        .bind(partitions)
        .bind(offsets)
        .fetch_one(&self.pool)
        .await;
        match behind {
            Ok(behind) => Ok(behind == 0),
            // Before the projection's first start its schema does not exist: not there yet.
            Err(error) if infra::postgres::is_undefined_table(&error) => Ok(false),
            Err(error) => Err(ConsistencyError::Postgres(error)),
        }
    }
}

/// The token a request presents in [`HEADER`], if any.
pub fn token_of(headers: &axum::http::HeaderMap) -> Result<ConsistencyToken, ConsistencyError> {
    match headers.get(HEADER) {
        None => Ok(ConsistencyToken::default()),
        Some(value) => {
            let text = value
                .to_str()
                .map_err(|_| MalformedToken("(not visible ASCII)".to_owned()))?;
            Ok(text.parse()?)
        }
    }
}

/// An extractor for REST reads: resolves once the read models have reached the request's
/// token, and answers 400 or 503 with a problem document when they cannot.
pub struct Consistent;

impl<S> FromRequestParts<S> for Consistent
where
    Arc<Progress>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = token_of(&parts.headers)?;
        Arc::<Progress>::from_ref(state).wait_for(&token).await?;
        Ok(Consistent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position(topic: &str, partition: i32, offset: i64) -> EventPosition {
        EventPosition {
            topic: topic.to_owned(),
            partition,
            offset,
        }
    }

    #[test]
    fn a_token_lists_every_position_of_the_reply() {
        let token: ConsistencyToken = "core.plugins:2:17, p.core.tenants:0:3,".parse().unwrap();
        assert_eq!(
            token,
            ConsistencyToken(vec![
                position("core.plugins", 2, 17),
                position("p.core.tenants", 0, 3)
            ])
        );
        assert_eq!("".parse(), Ok(ConsistencyToken::default()));
    }

    #[test]
    fn a_position_without_topic_partition_or_offset_is_malformed() {
        for bad in [
            "core.plugins:2",
            ":1:2",
            "core.plugins:x:2",
            "core.plugins:1:-4",
            "core.plugins:-1:5",
            "17",
        ] {
            assert!(
                bad.parse::<ConsistencyToken>().is_err(),
                "`{bad}` should not parse"
            );
        }
    }
}
