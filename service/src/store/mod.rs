//! Storage behind the HTTP API. Handlers talk to the `Store` trait so they can
//! be unit-tested with the in-memory store; production uses Redis.

mod cursor;
pub mod memory;
pub mod redis;

use std::time::Duration;

use async_trait::async_trait;
use serde_json::value::RawValue;

pub use cursor::{CursorError, ListCursor, MAX_CURSOR_KEYS};

/// One stored item; `value` is the client's JSON, kept verbatim.
#[derive(Debug, Clone)]
pub struct Item {
    pub key: String,
    pub value: Box<RawValue>,
}

/// One page of a listing.
#[derive(Debug, Default)]
pub struct Page {
    pub items: Vec<Item>,
    /// Where the next page starts; `None` when the listing is complete.
    pub next: Option<ListCursor>,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis {command} timed out after {after:?}")]
    Timeout {
        command: &'static str,
        after: Duration,
    },
    #[error("redis {command} failed: {source}")]
    Redis {
        command: &'static str,
        #[source]
        source: ::redis::RedisError,
    },
    /// A stored value is not valid JSON (written by something other than us).
    #[error("stored value is corrupt: {0}")]
    Corrupt(String),
}

/// What went wrong, as the `kind` label of `redis_app_command_errors_total`
/// and the deciding fact between 503 (Redis unavailable: retry) and 500
/// (the data or the request is wrong: retrying will not help).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No answer before the deadline.
    Timeout,
    /// Redis cannot serve now: connection refused or broken, loading,
    /// read-only replica, authentication or permission failure.
    Io,
    /// Redis answered, but the data is not what the service stores
    /// (WRONGTYPE, a value of the wrong shape, an unexpected reply).
    Data,
}

impl ErrorKind {
    /// Every label value, for pre-initialising the series.
    pub const ALL: [Self; 3] = [Self::Timeout, Self::Io, Self::Data];

    pub fn label(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Io => "io",
            Self::Data => "data",
        }
    }
}

/// Server error codes that mean "not now" rather than "wrong data".
const UNAVAILABLE_CODES: &[&str] = &[
    "OOM",
    "BUSY",
    "MISCONF",
    "NOAUTH",
    "WRONGPASS",
    "NOREPLICAS",
    "LOADING",
];

impl StoreError {
    pub fn kind(&self) -> ErrorKind {
        use ::redis::{ErrorKind as Redis, ServerErrorKind as Server};
        match self {
            Self::Timeout { .. } => ErrorKind::Timeout,
            Self::Corrupt(_) => ErrorKind::Data,
            Self::Redis { source, .. } if source.is_timeout() => ErrorKind::Timeout,
            Self::Redis { source, .. }
                if source
                    .code()
                    .is_some_and(|code| UNAVAILABLE_CODES.contains(&code)) =>
            {
                ErrorKind::Io
            }
            Self::Redis { source, .. } => match source.kind() {
                Redis::Server(
                    Server::ResponseError
                    | Server::ExecAbort
                    | Server::NoScript
                    | Server::CrossSlot,
                )
                | Redis::Extension
                | Redis::UnexpectedReturnType
                | Redis::Client => ErrorKind::Data,
                _ => ErrorKind::Io,
            },
        }
    }
}

/// Item storage. Keys given here are client keys, without the prefix.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The item's JSON value, or `None` when absent.
    async fn get(&self, key: &str) -> Result<Option<Box<RawValue>>, StoreError>;
    /// Creates or replaces an item, expiring after `ttl_seconds` when given.
    async fn put(
        &self,
        key: &str,
        value: &RawValue,
        ttl_seconds: Option<u64>,
    ) -> Result<(), StoreError>;
    /// Deletes an item; `false` when it did not exist.
    async fn delete(&self, key: &str) -> Result<bool, StoreError>;
    /// Up to `limit` items starting at `cursor` (`None` = from the start).
    async fn list(&self, cursor: Option<ListCursor>, limit: usize) -> Result<Page, StoreError>;
    /// Succeeds when the backend answers.
    async fn ping(&self) -> Result<(), StoreError>;
}
