//! How many plugins the catalog holds in each status, kept beside the rows so that a list's
//! `totalCount` costs the same at 100,000 plugins as at 10: counting the rows costs as much as
//! the table is large, dead row versions included.

use std::collections::BTreeMap;

use sqlx::PgConnection;

/// The batch's changes to the totals, per status, written at its end in one statement.
#[derive(Default)]
pub(super) struct StatusTotals {
    /// A `BTreeMap`, so that every batch locks the totals' rows in the same order: two
    /// catalogs committing at once wait for each other instead of deadlocking.
    changes: BTreeMap<String, i64>,
}

impl StatusTotals {
    /// A plugin went from `was` (none: a new plugin) to `now`.
    pub(super) fn moved(&mut self, was: Option<&str>, now: &str) {
        if was == Some(now) {
            return;
        }
        if let Some(was) = was {
            *self.changes.entry(was.to_owned()).or_default() -= 1;
        }
        *self.changes.entry(now.to_owned()).or_default() += 1;
    }

    pub(super) async fn record(
        self,
        tx: &mut PgConnection,
        schema: &str,
    ) -> Result<(), sqlx::Error> {
        let (statuses, changes): (Vec<String>, Vec<i64>) = self
            .changes
            .into_iter()
            .filter(|(_, change)| *change != 0)
            .unzip();
        if statuses.is_empty() {
            return Ok(());
        }
        sqlx::query(&format!(
            "INSERT INTO {schema}.plugin_totals (status, plugins)
             SELECT * FROM unnest($1::text[], $2::bigint[])
             ON CONFLICT (status) DO UPDATE
             SET plugins = {schema}.plugin_totals.plugins + excluded.plugins"
        ))
        .bind(&statuses)
        .bind(changes)
        .execute(&mut *tx)
        .await?;
        // A status no plugin has is no row: the totals are the same table however the events
        // fell into batches (a rebuild equals the catalog it replaces). The rows are this
        // batch's, locked since the statement above.
        sqlx::query(&format!(
            "DELETE FROM {schema}.plugin_totals WHERE status = ANY($1) AND plugins = 0"
        ))
        .bind(&statuses)
        .execute(tx)
        .await?;
        Ok(())
    }
}

/// The totals' table. A catalog made before it gets it counted once, under the DDL's lock.
pub(super) fn table(schema: &str) -> String {
    format!(
        "DO $$ BEGIN
             IF to_regclass('{schema}.plugin_totals') IS NULL THEN
                 CREATE TABLE {schema}.plugin_totals (
                     status text PRIMARY KEY,
                     plugins bigint NOT NULL
                 );
                 INSERT INTO {schema}.plugin_totals (status, plugins)
                 SELECT status, count(*) FROM {schema}.plugins GROUP BY status;
             END IF;
         END $$;"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_move_takes_one_from_the_old_status_and_gives_one_to_the_new() {
        let mut totals = StatusTotals::default();
        totals.moved(None, "REGISTERED");
        totals.moved(Some("REGISTERED"), "INSTALLING");
        totals.moved(Some("INSTALLING"), "INSTALLING");
        totals.moved(Some("INSTALLING"), "INSTALLED");
        assert_eq!(
            totals.changes.into_iter().collect::<Vec<_>>(),
            [
                ("INSTALLED".to_owned(), 1),
                ("INSTALLING".to_owned(), 0),
                ("REGISTERED".to_owned(), 0)
            ]
        );
    }
}
