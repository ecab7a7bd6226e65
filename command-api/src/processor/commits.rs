//! The command offsets the processor owes the group, sent together at most once every
//! [`COMMIT_EVERY`].
//!
//! Why: on tansu an offset commit is a write of its one SQLite connection (0.7 ms of its CPU,
//! measured with one client against a fresh broker), and the processor committed once a
//! batch, which at the bench's rates is once a command: a tenth of what a command cost the
//! broker. A commit that waits is safe by the design's own crash path: a command delivered
//! again is recognised from its aggregate's applied commands (or its refusal read back) and
//! answered with its first outcome, never decided twice. So a crash, a lost lease or a
//! rebalance that drops what is owed costs only that the next owner reads up to
//! [`COMMIT_EVERY`] of commands again.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

/// Longest a decided command's offset waits to be committed while the processor runs.
pub(super) const COMMIT_EVERY: Duration = Duration::from_millis(100);

/// Offsets owed, by partition: the next command to read there.
#[derive(Debug)]
pub(super) struct OwedCommits {
    owed: BTreeMap<i32, i64>,
    /// When the last commit was sent.
    sent_at: Option<Instant>,
}

impl OwedCommits {
    pub fn new() -> Self {
        Self {
            owed: BTreeMap::new(),
            sent_at: None,
        }
    }

    /// Every command of `partition` up to `offset` is decided and recorded: the group may
    /// read on after it. Returns what to commit now, if the last commit is old enough.
    pub fn decided(
        &mut self,
        partition: i32,
        offset: i64,
        now: Instant,
    ) -> Option<Vec<(i32, i64)>> {
        let next = self.owed.entry(partition).or_insert(offset + 1);
        *next = (*next).max(offset + 1);
        self.due(now)
    }

    /// When what is owed must be sent (`now` if nothing was sent yet); `None` while nothing
    /// is owed.
    pub fn deadline(&self, now: Instant) -> Option<Instant> {
        if self.owed.is_empty() {
            return None;
        }
        Some(self.sent_at.map_or(now, |at| at + COMMIT_EVERY))
    }

    /// What to commit now, if anything is owed and the last commit is old enough.
    pub fn due(&mut self, now: Instant) -> Option<Vec<(i32, i64)>> {
        if self.deadline(now).is_none_or(|deadline| deadline > now) {
            return None;
        }
        Some(self.take(now))
    }

    /// Everything owed, to be committed at once (at a stop).
    pub fn take(&mut self, now: Instant) -> Vec<(i32, i64)> {
        self.sent_at = Some(now);
        std::mem::take(&mut self.owed).into_iter().collect()
    }

    /// The partition is no longer this processor's to commit (its lease was lost): a
    /// commit sent later could move the group back behind its next owner.
    pub fn forget(&mut self, partition: i32) {
        self.owed.remove(&partition);
    }

    /// A new assignment: what is owed belongs to the old one.
    pub fn clear(&mut self) {
        self.owed.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_decision_is_committed_at_once_and_the_next_ones_together_after_the_interval() {
        let start = Instant::now();
        let mut commits = OwedCommits::new();
        assert_eq!(commits.decided(0, 4, start), Some(vec![(0, 5)]));
        assert_eq!(
            commits.decided(0, 5, start + Duration::from_millis(10)),
            None
        );
        assert_eq!(
            commits.decided(1, 7, start + Duration::from_millis(20)),
            None
        );
        assert_eq!(commits.deadline(start), Some(start + COMMIT_EVERY));
        assert_eq!(commits.due(start + Duration::from_millis(99)), None);
        assert_eq!(
            commits.due(start + COMMIT_EVERY),
            Some(vec![(0, 6), (1, 8)])
        );
        assert_eq!(commits.deadline(start), None);
    }

    #[test]
    fn an_offset_owed_never_goes_back() {
        let start = Instant::now();
        let mut commits = OwedCommits::new();
        assert_eq!(commits.decided(0, 1, start), Some(vec![(0, 2)]));
        commits.decided(0, 9, start);
        commits.decided(0, 3, start);
        assert_eq!(commits.take(start), vec![(0, 10)]);
    }

    #[test]
    fn a_lost_partition_and_an_old_assignment_are_not_committed() {
        let start = Instant::now();
        let mut commits = OwedCommits::new();
        assert_eq!(commits.decided(0, 1, start), Some(vec![(0, 2)]));
        commits.decided(1, 1, start);
        commits.decided(2, 1, start);
        commits.decided(0, 3, start);
        commits.forget(1);
        assert_eq!(commits.take(start), vec![(0, 4), (2, 2)]);
        commits.decided(0, 3, start);
        commits.clear();
        assert_eq!(commits.deadline(start), None);
    }
}
