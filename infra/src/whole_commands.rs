//! A command's events count all or none (DESIGN.md §4.2). The command processor writes a
//! command's events as one record each and the log has no transactions, so a crash or a lost
//! lease between two of them leaves a prefix in the log. Each event says which part of its
//! command it is (`command-part: i/n`). A reader applies a command's events only once its last
//! one is read; a prefix that anything else follows (a fence, another command's event) was
//! given up by its writer and is void, and the partition's next owner decides the command
//! again because the prefix does not count as applied.
//!
//! Feed it, per partition and in log order, the records that passed the reader rule
//! (`kafka::admit`): a zombie's records, void by that rule, must not interrupt the new owner's
//! commands.

use event_schemas::Envelope;
use event_schemas::envelope::CommandPart;
use uuid::Uuid;

/// The command being read in one partition, until its last event.
#[derive(Debug)]
pub struct WholeCommands<T> {
    open: Option<Open<T>>,
}

#[derive(Debug)]
struct Open<T> {
    causation: Option<Uuid>,
    last: CommandPart,
    records: Vec<T>,
}

/// What one record releases.
#[derive(Debug, PartialEq, Eq)]
pub struct Released<T> {
    /// A command whose writer gave up before its last event: never to be applied.
    pub void: Vec<T>,
    /// Records to apply now, in log order: a whole command, or a record outside any.
    pub apply: Vec<T>,
}

impl<T> Default for Released<T> {
    fn default() -> Self {
        Released {
            void: Vec::new(),
            apply: Vec::new(),
        }
    }
}

impl<T> Default for WholeCommands<T> {
    fn default() -> Self {
        WholeCommands { open: None }
    }
}

impl<T> WholeCommands<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// An event record (or any record the reader rule admitted) with its envelope.
    pub fn admit(&mut self, envelope: &Envelope, record: T) -> Released<T> {
        let mut released = Released::default();
        let Some(part) = envelope.command_part else {
            // Written before parts existed, or not a command's event: it stands alone.
            released.void = self.interrupt();
            released.apply.push(record);
            return released;
        };
        let continues = self.open.as_ref().is_some_and(|open| {
            open.causation == envelope.causation_id
                && open.last.count == part.count
                && open.last.index + 1 == part.index
        });
        let mut records = if continues {
            self.open
                .take()
                .map(|open| open.records)
                .unwrap_or_default()
        } else {
            let had_open = self.open.is_some();
            released.void = self.interrupt();
            if part.index > 1 {
                if had_open {
                    // A part whose predecessor is missing: its command is broken.
                    released.void.push(record);
                } else {
                    // Reading began inside this command (a replay from an offset): what came
                    // before was applied then.
                    released.apply.push(record);
                }
                return released;
            }
            Vec::new()
        };
        records.push(record);
        if part.is_last() {
            released.apply = records;
        } else {
            self.open = Some(Open {
                causation: envelope.causation_id,
                last: part,
                records,
            });
        }
        released
    }

    /// A fence (or the end of what the reader may read): the open command, if any, is void.
    pub fn interrupt(&mut self) -> Vec<T> {
        self.open
            .take()
            .map(|open| open.records)
            .unwrap_or_default()
    }

    /// The open command's first record: where a reader that stops now resumes.
    pub fn open_head(&self) -> Option<&T> {
        self.open.as_ref().and_then(|open| open.records.first())
    }

    /// Hands back the open command's records, to be read again later (a batch's end).
    pub fn hold_back(&mut self) -> Vec<T> {
        self.interrupt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Part `index` of `count` of command `causation`.
    fn part(causation: Uuid, index: u32, count: u32) -> Envelope {
        let mut envelope = Envelope::new("core.plugin.install-step-completed", "/test");
        envelope.causation_id = Some(causation);
        envelope.command_part = Some(CommandPart { index, count });
        envelope
    }

    fn given(records: &[(Envelope, u32)]) -> (WholeCommands<u32>, Released<u32>) {
        let mut reader = WholeCommands::new();
        let mut all = Released::default();
        for (envelope, offset) in records {
            let released = reader.admit(envelope, *offset);
            all.void.extend(released.void);
            all.apply.extend(released.apply);
        }
        (reader, all)
    }

    #[test]
    fn a_command_is_applied_when_its_last_event_is_read() {
        let c = Uuid::now_v7();
        let mut reader = WholeCommands::new();
        assert_eq!(reader.admit(&part(c, 1, 3), 10), Released::default());
        assert_eq!(reader.admit(&part(c, 2, 3), 11), Released::default());
        assert_eq!(reader.open_head(), Some(&10));
        let released = reader.admit(&part(c, 3, 3), 12);
        assert_eq!(released.apply, vec![10, 11, 12]);
        assert!(released.void.is_empty());
        assert_eq!(reader.open_head(), None);
    }

    #[test]
    fn a_single_event_command_and_a_record_without_parts_apply_at_once() {
        let (_, released) = given(&[
            (part(Uuid::now_v7(), 1, 1), 1),
            (Envelope::new("core.plugin.registered", "/old-writer"), 2),
        ]);
        assert_eq!(released.apply, vec![1, 2]);
    }

    #[test]
    fn a_prefix_interrupted_by_another_command_is_void() {
        let (broken, retried) = (Uuid::now_v7(), Uuid::now_v7());
        let (_, released) = given(&[
            (part(broken, 1, 2), 1),
            (part(retried, 1, 2), 2),
            (part(retried, 2, 2), 3),
        ]);
        assert_eq!(released.void, vec![1]);
        assert_eq!(released.apply, vec![2, 3]);
    }

    #[test]
    fn the_same_command_written_again_after_its_prefix_counts_once() {
        let c = Uuid::now_v7();
        let (_, released) = given(&[(part(c, 1, 2), 1), (part(c, 1, 2), 2), (part(c, 2, 2), 3)]);
        assert_eq!(released.void, vec![1]);
        assert_eq!(released.apply, vec![2, 3]);
    }

    #[test]
    fn a_fence_voids_the_open_command() {
        let c = Uuid::now_v7();
        let (mut reader, released) = given(&[(part(c, 1, 2), 1)]);
        assert!(released.apply.is_empty());
        assert_eq!(reader.interrupt(), vec![1]);
        assert_eq!(reader.open_head(), None);
    }

    #[test]
    fn a_part_whose_predecessor_is_missing_breaks_its_command() {
        let c = Uuid::now_v7();
        let (_, released) = given(&[(part(c, 1, 3), 1), (part(c, 3, 3), 2)]);
        assert_eq!(released.void, vec![1, 2]);
        assert!(released.apply.is_empty());
    }

    #[test]
    fn reading_from_inside_a_command_applies_its_remaining_parts() {
        let c = Uuid::now_v7();
        let (_, released) = given(&[(part(c, 2, 3), 5), (part(c, 3, 3), 6)]);
        assert_eq!(released.apply, vec![5, 6]);
        assert!(released.void.is_empty());
    }

    #[test]
    fn held_back_records_are_read_again_from_the_head() {
        let c = Uuid::now_v7();
        let (mut reader, _) = given(&[(part(c, 1, 2), 7)]);
        assert_eq!(reader.hold_back(), vec![7]);
        let (_, released) = given(&[(part(c, 1, 2), 7), (part(c, 2, 2), 8)]);
        assert_eq!(released.apply, vec![7, 8]);
    }
}
