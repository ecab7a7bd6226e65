//! A record of a batch, as its consumer fetched it or as this process handed it over
//! ([`crate::local_log`]): the same record of the log either way.

use rdkafka::Timestamp;
use rdkafka::message::{BorrowedHeaders, BorrowedMessage, Message, OwnedMessage};

use crate::local_log::Run;

pub enum Delivered<'a> {
    Fetched(BorrowedMessage<'a>),
    /// The record at this index of a run this process appended.
    Handed(Run, usize),
}

impl Delivered<'_> {
    fn handed(run: &Run, index: usize) -> &OwnedMessage {
        &run[index]
    }
}

impl Message for Delivered<'_> {
    type Headers = BorrowedHeaders;

    fn key(&self) -> Option<&[u8]> {
        match self {
            Delivered::Fetched(message) => message.key(),
            Delivered::Handed(run, index) => Self::handed(run, *index).key(),
        }
    }

    fn payload(&self) -> Option<&[u8]> {
        match self {
            Delivered::Fetched(message) => message.payload(),
            Delivered::Handed(run, index) => Self::handed(run, *index).payload(),
        }
    }

    /// Records are read, never changed, and a handed one is shared with the process's other
    /// consumers.
    unsafe fn payload_mut(&mut self) -> Option<&mut [u8]> {
        None
    }

    fn topic(&self) -> &str {
        match self {
            Delivered::Fetched(message) => message.topic(),
            Delivered::Handed(run, index) => Self::handed(run, *index).topic(),
        }
    }

    fn partition(&self) -> i32 {
        match self {
            Delivered::Fetched(message) => message.partition(),
            Delivered::Handed(run, index) => Self::handed(run, *index).partition(),
        }
    }

    fn offset(&self) -> i64 {
        match self {
            Delivered::Fetched(message) => message.offset(),
            Delivered::Handed(run, index) => Self::handed(run, *index).offset(),
        }
    }

    fn timestamp(&self) -> Timestamp {
        match self {
            Delivered::Fetched(message) => message.timestamp(),
            Delivered::Handed(run, index) => Self::handed(run, *index).timestamp(),
        }
    }

    fn headers(&self) -> Option<&BorrowedHeaders> {
        match self {
            Delivered::Fetched(message) => message.headers(),
            Delivered::Handed(run, index) => Self::handed(run, *index)
                .headers()
                .map(rdkafka::message::OwnedHeaders::as_borrowed),
        }
    }
}
