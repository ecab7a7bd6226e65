//! A record's in-line attempts: read (no savepoint: nothing is written), then applied in a
//! savepoint, each retried with a growing pause while its failure may pass.

use std::time::Duration;

use sqlx::{Connection, PgConnection};

use super::{HandlerError, Record, RecordHandler, RunnerError};
use crate::dead_letter::{ErrorClass, Failure, Stage};

/// Decodes `record`, retrying a retryable failure (a registry out of reach) up to `attempts`
/// times in all; nothing is written, so no savepoint is needed.
pub(super) async fn decode_with_retries<H: RecordHandler>(
    handler: &mut H,
    record: &Record<'_>,
    attempts: u32,
) -> Result<Result<H::Decoded, Failure>, RunnerError> {
    let first_failure_at = chrono::Utc::now();
    let mut attempt = 0;
    loop {
        attempt += 1;
        match handler.decode(record).await {
            Ok(decoded) => return Ok(Ok(decoded)),
            Err(HandlerError::Unavailable(error)) => {
                return Err(RunnerError::Unavailable(error.to_string()));
            }
            Err(error) => match after_failure(&error, attempt, attempts, first_failure_at).await {
                Next::TryAgain => continue,
                Next::GiveUp(mut failure) => {
                    failure.stage = Stage::Decode;
                    return Ok(Err(failure));
                }
            },
        }
    }
}

/// Applies `record` in a savepoint, retrying a retryable failure up to `attempts` times in
/// all, counting a `first` attempt already made.
pub(super) async fn apply_with_retries<H: RecordHandler>(
    handler: &mut H,
    tx: &mut PgConnection,
    record: &Record<'_>,
    attempts: u32,
    first: Option<&Failure>,
) -> Result<Result<(), Failure>, RunnerError> {
    let mut attempt = first.map_or(0, |f| f.attempts);
    let first_failure_at = first.map_or_else(chrono::Utc::now, |f| f.first_failure_at);
    if attempt > 0 {
        pause(attempt).await;
    }
    loop {
        attempt += 1;
        let decoded = match decode_with_retries(handler, record, 1).await? {
            Ok(decoded) => decoded,
            Err(failure) if failure.class == ErrorClass::Retryable && attempt < attempts => {
                pause(attempt).await;
                continue;
            }
            Err(mut failure) => {
                failure.attempts = attempt;
                failure.first_failure_at = first_failure_at;
                return Ok(Err(failure));
            }
        };
        let mut savepoint = tx.begin().await?;
        match handler.apply(&mut savepoint, record, decoded).await {
            Ok(()) => {
                savepoint.commit().await?;
                return Ok(Ok(()));
            }
            Err(HandlerError::Unavailable(error)) => {
                savepoint.rollback().await?;
                return Err(RunnerError::Unavailable(error.to_string()));
            }
            Err(error) => {
                savepoint.rollback().await?;
                match after_failure(&error, attempt, attempts, first_failure_at).await {
                    Next::TryAgain => continue,
                    Next::GiveUp(failure) => return Ok(Err(failure)),
                }
            }
        }
    }
}

/// What follows a failed attempt.
enum Next {
    TryAgain,
    GiveUp(Failure),
}

/// After attempt `attempt` of `attempts` failed with `error`: one that may pass is tried again
/// after a pause; one that will not, or the last, is the record's failure.
async fn after_failure(
    error: &HandlerError,
    attempt: u32,
    attempts: u32,
    first_failure_at: chrono::DateTime<chrono::Utc>,
) -> Next {
    let class = error.class();
    if class == ErrorClass::Retryable && attempt < attempts {
        pause(attempt).await;
        return Next::TryAgain;
    }
    let mut failure = Failure::from_error(class, error, attempt);
    failure.first_failure_at = first_failure_at;
    Next::GiveUp(failure)
}

/// The pause before the next attempt: 50 ms more for each one made.
async fn pause(attempt: u32) {
    tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
}
