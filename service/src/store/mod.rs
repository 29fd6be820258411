//! Storage behind the HTTP API. Handlers talk to the `Store` trait so they can
//! be unit-tested with the in-memory store; production uses Redis.

mod cursor;
pub mod memory;
pub mod redis;

use std::time::Duration;

use async_trait::async_trait;
use serde_json::value::RawValue;

pub use cursor::{CursorError, ListCursor};

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
