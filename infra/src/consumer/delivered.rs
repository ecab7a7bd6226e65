//! A record of a batch, as its consumer fetched it or as this process handed it over
//! ([`crate::local_log`]): the same record of the log either way.

use rdkafka::Timestamp;
use rdkafka::message::{BorrowedHeaders, BorrowedMessage, Message, OwnedHeaders, OwnedMessage};

use crate::local_log::Run;

pub enum Delivered<'a> {
    Fetched(BorrowedMessage<'a>),
    /// The record at this index of a run this process appended.
    Handed(Run, usize),
}

impl Delivered<'_> {
    /// The record as a message of its own, to be handed on.
    pub fn to_owned_record(&self) -> OwnedMessage {
        match self {
            Delivered::Fetched(record) => record.detach(),
            Delivered::Handed(run, index) => run[*index].clone(),
        }
    }
}

/// The same call on the record, whichever way it came.
macro_rules! on_record {
    ($delivered:expr, $record:ident => $call:expr) => {
        match $delivered {
            Delivered::Fetched($record) => $call,
            Delivered::Handed(run, index) => {
                let $record = &run[*index];
                $call
            }
        }
    };
}

impl Message for Delivered<'_> {
    type Headers = BorrowedHeaders;

    fn key(&self) -> Option<&[u8]> {
        on_record!(self, record => record.key())
    }

    fn payload(&self) -> Option<&[u8]> {
        on_record!(self, record => record.payload())
    }

    /// Records are read, never changed, and a handed one is shared with the process's other
    /// consumers.
    unsafe fn payload_mut(&mut self) -> Option<&mut [u8]> {
        None
    }

    fn topic(&self) -> &str {
        on_record!(self, record => record.topic())
    }

    fn partition(&self) -> i32 {
        on_record!(self, record => record.partition())
    }

    fn offset(&self) -> i64 {
        on_record!(self, record => record.offset())
    }

    fn timestamp(&self) -> Timestamp {
        on_record!(self, record => record.timestamp())
    }

    fn headers(&self) -> Option<&BorrowedHeaders> {
        match self {
            Delivered::Fetched(record) => record.headers(),
            Delivered::Handed(run, index) => run[*index].headers().map(OwnedHeaders::as_borrowed),
        }
    }
}
