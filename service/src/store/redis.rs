//! The Redis store: one multiplexed `ConnectionManager` shared by all
//! requests (it pipelines concurrent commands over one socket and reconnects
//! by itself), every command bounded by the configured timeout and recorded
//! in the `redis_app_command_*` metrics.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use prometheus::{HistogramVec, IntCounterVec};
use redis::{aio::ConnectionManager, aio::ConnectionManagerConfig, FromRedisValue};
use serde_json::value::RawValue;

use super::{Item, ListCursor, Page, Store, StoreError};
use crate::metrics::Metrics;

/// Most `SCAN` round trips one list request may make before it returns a
/// (possibly short) page with a cursor, so a sparse keyspace cannot turn one
/// request into an unbounded walk.
const MAX_SCANS_PER_PAGE: usize = 16;

/// Items stored as Redis strings under `prefix`.
#[derive(Clone)]
pub struct RedisStore {
    connection: ConnectionManager,
    prefix: String,
    timeout: Duration,
    command_duration: HistogramVec,
    command_errors: IntCounterVec,
}

impl RedisStore {
    /// Creates the store without connecting: the service must start (and
    /// report not-ready) while Redis is down, and connect once it is up.
    pub fn new(
        url: &str,
        prefix: String,
        timeout: Duration,
        metrics: &Metrics,
    ) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(100));
        let connection = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Self {
            connection,
            prefix,
            timeout,
            command_duration: metrics.redis_command_duration.clone(),
            command_errors: metrics.redis_command_errors.clone(),
        })
    }

    fn full_key(&self, key: &str) -> String {
        let mut full = String::with_capacity(self.prefix.len() + key.len());
        full.push_str(&self.prefix);
        full.push_str(key);
        full
    }

    /// Runs one command with the timeout, timing it and counting failures.
    async fn run<T: FromRedisValue>(
        &self,
        command: &'static str,
        cmd: &redis::Cmd,
    ) -> Result<T, StoreError> {
        let mut connection = self.connection.clone();
        let started = Instant::now();
        let outcome =
            tokio::time::timeout(self.timeout, cmd.query_async::<T>(&mut connection)).await;
        self.command_duration
            .with_label_values(&[command])
            .observe(started.elapsed().as_secs_f64());
        let result = match outcome {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(source)) => StoreError::Redis { command, source },
            Err(_elapsed) => StoreError::Timeout {
                command,
                after: self.timeout,
            },
        };
        self.command_errors.with_label_values(&[command]).inc();
        Err(result)
    }

    /// Scans for keys until `want` are collected or the scan ends; keys
    /// beyond `want` are returned as overflow for the next page.
    async fn scan_keys(
        &self,
        mut scan: u64,
        want: usize,
    ) -> Result<(Vec<String>, Vec<String>, Option<u64>), StoreError> {
        let pattern = format!("{}*", self.prefix);
        let mut keys = Vec::with_capacity(want);
        for _ in 0..MAX_SCANS_PER_PAGE {
            let count = (want - keys.len()).max(10);
            let (next, batch): (u64, Vec<String>) = self
                .run(
                    "SCAN",
                    redis::cmd("SCAN")
                        .arg(scan)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(count),
                )
                .await?;
            keys.extend(
                batch
                    .into_iter()
                    .filter_map(|full| full.strip_prefix(&self.prefix).map(str::to_owned)),
            );
            scan = next;
            if scan == 0 || keys.len() >= want {
                break;
            }
        }
        let overflow = if keys.len() > want {
            keys.split_off(want)
        } else {
            Vec::new()
        };
        Ok((keys, overflow, (scan != 0).then_some(scan)))
    }
}

/// Parses a stored value, which must be the JSON the service wrote.
fn parse_value(key: &str, raw: String) -> Result<Box<RawValue>, StoreError> {
    RawValue::from_string(raw).map_err(|err| StoreError::Corrupt(format!("{key}: {err}")))
}

#[async_trait]
impl Store for RedisStore {
    async fn get(&self, key: &str) -> Result<Option<Box<RawValue>>, StoreError> {
        let raw: Option<String> = self
            .run("GET", redis::cmd("GET").arg(self.full_key(key)))
            .await?;
        raw.map(|raw| parse_value(key, raw)).transpose()
    }

    async fn put(
        &self,
        key: &str,
        value: &RawValue,
        ttl_seconds: Option<u64>,
    ) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.full_key(key)).arg(value.get());
        if let Some(ttl) = ttl_seconds {
            cmd.arg("EX").arg(ttl);
        }
        self.run::<()>("SET", &cmd).await
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let removed: u64 = self
            .run("DEL", redis::cmd("DEL").arg(self.full_key(key)))
            .await?;
        Ok(removed > 0)
    }

    async fn list(&self, cursor: Option<ListCursor>, limit: usize) -> Result<Page, StoreError> {
        let ListCursor { scan, mut pending } = cursor.unwrap_or(ListCursor {
            scan: Some(0),
            pending: Vec::new(),
        });
        let (keys, next) = if pending.len() >= limit {
            let rest = pending.split_off(limit);
            (
                pending,
                ListCursor {
                    scan,
                    pending: rest,
                },
            )
        } else if let Some(scan) = scan {
            let (scanned, overflow, next_scan) =
                self.scan_keys(scan, limit - pending.len()).await?;
            pending.extend(scanned);
            (
                pending,
                ListCursor {
                    scan: next_scan,
                    pending: overflow,
                },
            )
        } else {
            (pending, ListCursor::default())
        };
        let items = if keys.is_empty() {
            Vec::new()
        } else {
            let full_keys: Vec<String> = keys.iter().map(|key| self.full_key(key)).collect();
            let values: Vec<Option<String>> =
                self.run("MGET", redis::cmd("MGET").arg(&full_keys)).await?;
            keys.into_iter()
                .zip(values)
                // A key that expired or was deleted since the scan is skipped.
                .filter_map(|(key, raw)| raw.map(|raw| (key, raw)))
                .map(|(key, raw)| {
                    let value = parse_value(&key, raw)?;
                    Ok(Item { key, value })
                })
                .collect::<Result<Vec<_>, StoreError>>()?
        };
        Ok(Page {
            items,
            next: (!next.is_exhausted()).then_some(next),
        })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let _pong: String = self.run("PING", &redis::cmd("PING")).await?;
        Ok(())
    }
}
