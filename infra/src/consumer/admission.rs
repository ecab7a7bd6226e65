//! The pure core of the runner: what to do with a record at `offset`, given the partition's
//! checkpoint (tansu's gaps, a replay's rewind and time window). No I/O: the batch asks, then
//! acts on the answer.

/// A partition of a topic the consumer reads.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

/// A partition's progress, kept in the consumer's `checkpoints` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Checkpoint {
    pub next_offset: i64,
    pub fence_epoch: i64,
    /// A replay moved `next_offset` back: records past it are skipped until the consumer
    /// has sought back to it.
    pub rewound: bool,
    /// A replay from a time: records before `until` (where the consumer was when the replay
    /// came) and older than `from_ms` are not applied again. The broker's time index only
    /// gives a start at or before the time (tansu 0.6 answers the partition's start).
    pub replay: Option<Replay>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Replay {
    pub until: i64,
    /// 0 for a replay from an offset.
    pub from_ms: i64,
    /// The fence epoch when the replay came, in force again from `until` on.
    pub fence_epoch: i64,
}

/// A row of the `checkpoints` table.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(super) struct CheckpointRow {
    pub next_offset: i64,
    pub fence_epoch: i64,
    pub rewound: bool,
    pub replay_until: Option<i64>,
    pub replay_from_ms: Option<i64>,
    pub replay_fence_epoch: Option<i64>,
}

/// The columns of [`CheckpointRow`], for its `SELECT`s.
pub(super) const CHECKPOINT_COLUMNS: &str =
    "next_offset, fence_epoch, rewound, replay_until, replay_from_ms, replay_fence_epoch";

impl Checkpoint {
    /// The start of a partition never read.
    pub const START: Checkpoint = Checkpoint {
        next_offset: 0,
        fence_epoch: 0,
        rewound: false,
        replay: None,
    };
}

impl From<CheckpointRow> for Checkpoint {
    fn from(row: CheckpointRow) -> Self {
        Checkpoint {
            next_offset: row.next_offset,
            fence_epoch: row.fence_epoch,
            rewound: row.rewound,
            replay: row.replay_until.map(|until| Replay {
                until,
                from_ms: row.replay_from_ms.unwrap_or(0),
                fence_epoch: row.replay_fence_epoch.unwrap_or(row.fence_epoch),
            }),
        }
    }
}

/// Where to seek a partition whose records were skipped by the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SeekTarget {
    /// The checkpoint's offset.
    Checkpoint(i64),
    /// The partition's start: the checkpoint skips what was applied.
    Beginning,
}

/// What the runner does with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Action {
    /// Behind the checkpoint: applied before.
    AlreadyApplied,
    /// Past the checkpoint: the records in between were not delivered; seek back. `tried`
    /// counts the seeks back to this checkpoint so far, this one included.
    SeekBack { target: SeekTarget, tried: u8 },
    /// Read before a replay moved the checkpoint back: wait for the seek.
    AwaitRewind,
    /// Inside a replay from a time and older than it: not applied again, but a fence in it
    /// still counts. The checkpoint moved past it.
    BeforeReplayTime,
    /// Apply it. `gap` is the first offset missing before it when a gap survived both seeks
    /// back (records gone by retention).
    Apply { gap: Option<i64> },
}

/// Decides what to do with the record at `offset` (broker time `timestamp_ms`), updating the
/// checkpoint's rewind and replay state. `gap_tried` is how many times the runner already
/// sought back to this checkpoint's offset.
pub(super) fn admit(
    checkpoint: &mut Checkpoint,
    offset: i64,
    timestamp_ms: Option<i64>,
    gap_tried: u8,
) -> Action {
    if offset < checkpoint.next_offset {
        return Action::AlreadyApplied;
    }
    let mut gap = None;
    if offset > checkpoint.next_offset && !checkpoint.rewound {
        // tansu 0.6 answers a fetch from inside a record batch with the next batch, so a
        // consumer restarted mid-batch would skip the rest of that batch. Seek back to the
        // checkpoint; if the gap is still there, read the partition from its start; only a
        // gap that survives both is accepted.
        if gap_tried < 2 {
            let target = if gap_tried == 0 {
                SeekTarget::Checkpoint(checkpoint.next_offset)
            } else {
                SeekTarget::Beginning
            };
            return Action::SeekBack {
                target,
                tried: gap_tried + 1,
            };
        }
        gap = Some(checkpoint.next_offset);
    }
    if checkpoint.rewound {
        if offset > checkpoint.next_offset {
            return Action::AwaitRewind;
        }
        checkpoint.rewound = false;
    }
    if let Some(replay) = checkpoint.replay {
        if offset >= replay.until {
            checkpoint.fence_epoch = checkpoint.fence_epoch.max(replay.fence_epoch);
            checkpoint.replay = None;
        } else if timestamp_ms.is_some_and(|t| t < replay.from_ms) {
            checkpoint.next_offset = offset + 1;
            return Action::BeforeReplayTime;
        }
    }
    Action::Apply { gap }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(next_offset: i64) -> Checkpoint {
        Checkpoint {
            next_offset,
            ..Checkpoint::START
        }
    }

    #[test]
    fn the_record_at_the_checkpoint_is_applied() {
        let mut checkpoint = at(5);
        assert_eq!(
            admit(&mut checkpoint, 5, None, 0),
            Action::Apply { gap: None }
        );
        assert_eq!(checkpoint, at(5));
    }

    #[test]
    fn a_record_behind_the_checkpoint_was_applied_before() {
        assert_eq!(admit(&mut at(5), 4, None, 0), Action::AlreadyApplied);
    }

    #[test]
    fn a_gap_seeks_back_to_the_checkpoint_then_to_the_start_then_is_accepted() {
        assert_eq!(
            admit(&mut at(5), 9, None, 0),
            Action::SeekBack {
                target: SeekTarget::Checkpoint(5),
                tried: 1
            }
        );
        assert_eq!(
            admit(&mut at(5), 9, None, 1),
            Action::SeekBack {
                target: SeekTarget::Beginning,
                tried: 2
            }
        );
        assert_eq!(
            admit(&mut at(5), 9, None, 2),
            Action::Apply { gap: Some(5) }
        );
    }

    #[test]
    fn a_rewound_partition_waits_for_its_seek_then_applies_from_the_checkpoint() {
        let mut checkpoint = Checkpoint {
            rewound: true,
            ..at(2)
        };
        assert_eq!(admit(&mut checkpoint, 7, None, 0), Action::AwaitRewind);
        assert!(checkpoint.rewound);
        assert_eq!(
            admit(&mut checkpoint, 2, None, 0),
            Action::Apply { gap: None }
        );
        assert!(!checkpoint.rewound);
    }

    #[test]
    fn a_replay_from_a_time_passes_over_older_records_and_ends_at_its_until() {
        let mut checkpoint = Checkpoint {
            fence_epoch: 0,
            replay: Some(Replay {
                until: 10,
                from_ms: 1_000,
                fence_epoch: 4,
            }),
            ..at(0)
        };
        assert_eq!(
            admit(&mut checkpoint, 0, Some(999), 0),
            Action::BeforeReplayTime
        );
        assert_eq!(checkpoint.next_offset, 1);
        assert_eq!(
            admit(&mut checkpoint, 1, Some(1_000), 0),
            Action::Apply { gap: None }
        );
        assert!(checkpoint.replay.is_some());
        checkpoint.next_offset = 10;
        assert_eq!(
            admit(&mut checkpoint, 10, Some(5), 0),
            Action::Apply { gap: None }
        );
        assert_eq!(checkpoint.replay, None);
        assert_eq!(
            checkpoint.fence_epoch, 4,
            "the replay's fence epoch is back"
        );
    }

    #[test]
    fn a_row_without_a_replay_has_none() {
        let row = CheckpointRow {
            next_offset: 3,
            fence_epoch: 2,
            rewound: false,
            replay_until: None,
            replay_from_ms: Some(7),
            replay_fence_epoch: None,
        };
        assert_eq!(
            Checkpoint::from(row),
            Checkpoint {
                fence_epoch: 2,
                ..at(3)
            }
        );
    }
}
