//! Parked keys (DESIGN.md section 6): a key whose record was dead-lettered, whose later
//! records follow it to the DLQ until it is released.

use std::collections::{BTreeMap, HashMap};

use sqlx::PgConnection;

/// A key parked for this consumer: its records go to the DLQ until it is released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ParkedKey {
    /// The dead letter that parked the key.
    pub head: uuid::Uuid,
    /// The latest dead letter of the key: a release naming an older one is stale.
    pub last: uuid::Uuid,
}

pub(super) type ParkedKeys = HashMap<Vec<u8>, ParkedKey>;

/// The dead letters of parked keys that a batch has yet to write to the consumer's
/// `parked_keys` and `dead_lettered` tables: written in one statement, not one per record,
/// so that a poisoned key's records cost no database round trip each.
#[derive(Debug, Default)]
pub(super) struct ParkingLedger {
    /// Each key's dead letters; keys in order, so that two batches lock the rows of the keys
    /// they share in the same order.
    by_key: BTreeMap<Vec<u8>, KeyLetters>,
}

/// One key's dead letters of the batch, in the order they were dead-lettered.
#[derive(Debug, Default)]
struct KeyLetters {
    ids: Vec<uuid::Uuid>,
    /// How many of them were parked behind a head rather than failing themselves.
    behind: usize,
}

impl ParkingLedger {
    /// A dead letter of `key`: the head that parks it, or one `behind` the head.
    pub fn push(&mut self, key: &[u8], dead_letter: uuid::Uuid, behind: bool) {
        let letters = self.by_key.entry(key.to_vec()).or_default();
        letters.ids.push(dead_letter);
        letters.behind += usize::from(behind);
    }

    /// What [`Self::write`] will report of what was pushed.
    fn summary(&self) -> Written {
        let behind = self.by_key.values().filter(|letters| letters.behind > 0);
        Written {
            behind: behind.clone().map(|letters| letters.behind).sum(),
            keys: behind.count(),
        }
    }

    /// Writes what was pushed, in the batch's transaction, and forgets it. The batch writes
    /// it before anything that reads or releases parked keys (a retry topic's record), so
    /// those see the same rows as if each dead letter had been written as it came.
    pub async fn write(
        &mut self,
        tx: &mut PgConnection,
        schema: &str,
    ) -> Result<Written, sqlx::Error> {
        if self.by_key.is_empty() {
            return Ok(Written::default());
        }
        let written = self.summary();
        let by_key = std::mem::take(&mut self.by_key);
        let (mut keys, mut heads, mut lasts, mut counts) = (vec![], vec![], vec![], vec![]);
        let (mut ledger_ids, mut ledger_keys) = (vec![], vec![]);
        for (key, KeyLetters { ids, .. }) in by_key {
            let (Some(first), Some(last)) = (ids.first(), ids.last()) else {
                continue;
            };
            heads.push(*first);
            lasts.push(*last);
            counts.push(i32::try_from(ids.len()).unwrap_or(i32::MAX));
            ledger_keys.extend(std::iter::repeat_n(key.clone(), ids.len()));
            ledger_ids.extend(ids);
            keys.push(key);
        }
        sqlx::query(&format!(
            "WITH ledger AS (
                 INSERT INTO {schema}.dead_lettered (dead_letter_id, record_key)
                 SELECT * FROM unnest($5::uuid[], $6::bytea[])
                 ON CONFLICT DO NOTHING
             )
             INSERT INTO {schema}.parked_keys (record_key, head_id, last_id, parked_records)
             SELECT * FROM unnest($1::bytea[], $2::uuid[], $3::uuid[], $4::int4[])
             ON CONFLICT (record_key) DO UPDATE
             SET last_id = excluded.last_id,
                 parked_records = {schema}.parked_keys.parked_records + excluded.parked_records"
        ))
        .bind(&keys)
        .bind(&heads)
        .bind(&lasts)
        .bind(&counts)
        .bind(&ledger_ids)
        .bind(&ledger_keys)
        .execute(&mut *tx)
        .await?;
        Ok(written)
    }
}

/// What [`ParkingLedger::write`] wrote, for its log line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Written {
    /// Dead letters parked behind their key's head.
    pub behind: usize,
    /// Keys with at least one of them.
    pub keys: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_keys_with_records_behind_their_head_are_counted_as_such() {
        let id = uuid::Uuid::now_v7;
        let mut ledger = ParkingLedger::default();
        // A head alone, a head with two records behind it, and a record behind a head that an
        // earlier batch parked.
        ledger.push(b"plugin:a", id(), false);
        ledger.push(b"plugin:b", id(), false);
        ledger.push(b"plugin:b", id(), true);
        ledger.push(b"plugin:b", id(), true);
        ledger.push(b"plugin:c", id(), true);
        assert_eq!(ledger.summary(), Written { behind: 3, keys: 2 });
    }
}
