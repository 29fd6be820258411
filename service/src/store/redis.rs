//! The Redis store: one multiplexed `ConnectionManager` shared by all
//! requests (it pipelines concurrent commands over one socket and reconnects
//! by itself when the socket breaks), all Redis work of one request bounded
//! by one deadline, every command recorded in the `redis_app_command_*`
//! metrics.
//!
//! A socket that silently stops delivering (a network blackhole, a frozen
//! NAT entry) never breaks by itself, so a command timeout also throws the
//! connection away: the next command dials a fresh one. TCP keepalive and
//! `TCP_USER_TIMEOUT` reclaim the abandoned socket. Each command runs in
//! its own task bounded by the deadline, so it still times out (is counted,
//! and replaces the connection) when the client that asked for it gave up
//! first: recovery does not depend on how patient clients are. A read-only
//! command whose connection turns out to be broken (reset, closed) is
//! retried once, within the same deadline, on the reconnected connection.
//!
//! `GET /items/{key}` reads at most [`MAX_VALUE_BYTES`]: a bigger foreign
//! value is a data error (500), never read whole.
//!
//! Listing reads keys and values as bytes: whatever else lives under the
//! prefix (keys outside the key alphabet, non-UTF-8 keys, non-JSON values,
//! other Redis types, oversized values) is skipped and counted in
//! `redis_app_list_skipped_total{reason}`, never an error.

use std::{
    collections::HashSet,
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use prometheus::{HistogramVec, IntCounterVec};
use redis::{
    aio::{ConnectionManager, ConnectionManagerConfig},
    io::tcp::{socket2::TcpKeepalive, TcpSettings},
    FromRedisValue, RedisResult, Value,
};
use serde_json::value::RawValue;
use tokio::time::Instant;

use super::{ErrorKind, Item, ListCursor, Page, Store, StoreError};
use crate::{key::validate_key, metrics::Metrics, MAX_BODY_BYTES};

/// Most `SCAN` round trips one list request may make before it returns a
/// (possibly short) page with a cursor, so a sparse keyspace cannot turn one
/// request into an unbounded walk.
const MAX_SCANS_PER_PAGE: usize = 16;

/// Keys asked of one `SCAN`: a page leaves over at most about one batch
/// for its cursor to carry (≤ ~33 KB of keys, within the URL limits of
/// common clients).
const SCAN_BATCH: usize = 128;

/// Bytes of keys and values one page may carry: a page ends early (with a
/// cursor) rather than buffer 1000 large values.
pub const PAGE_BUDGET_BYTES: u64 = 4 * 1024 * 1024;

/// Largest value `GET /items/{key}` reads: the API itself can never write a
/// bigger one (the whole request body is at most 1 MiB).
pub const MAX_VALUE_BYTES: usize = MAX_BODY_BYTES;

/// `GET` bounded by size, atomically and in one round trip: the value, nil
/// when absent, or its length (an integer) when above `ARGV[1]` bytes.
/// WRONGTYPE surfaces as from a plain `GET`.
const BOUNDED_GET: &str = "local n = redis.call('STRLEN', KEYS[1]) \
if n > tonumber(ARGV[1]) then return n end \
return redis.call('GET', KEYS[1])";

/// Commands that only read: retried once when the connection broke under
/// them (nothing changes if Redis did run the first attempt).
const READ_ONLY: &[&str] = &["GET", "SCAN", "STRLEN", "MGET", "PING"];

/// Kernel-level bounds of a dead connection, beside the command timeout.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(5);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(10);

/// Why listing skipped an entry (the `reason` label).
pub const SKIP_INVALID_KEY: &str = "invalid_key";
pub const SKIP_INVALID_VALUE: &str = "invalid_value";
pub const SKIP_WRONG_TYPE: &str = "wrong_type";
pub const SKIP_TOO_LARGE: &str = "too_large";
pub const SKIP_REASONS: &[&str] = &[
    SKIP_INVALID_KEY,
    SKIP_INVALID_VALUE,
    SKIP_WRONG_TYPE,
    SKIP_TOO_LARGE,
];

/// The current connection and its generation, so that many commands timing
/// out on the same dead connection replace it once.
struct Current {
    generation: u64,
    connection: ConnectionManager,
}

/// The connection and the command metrics, shared with the command tasks.
struct Link {
    client: redis::Client,
    config: ConnectionManagerConfig,
    current: Mutex<Current>,
    timeout: Duration,
    command_duration: HistogramVec,
    command_errors: IntCounterVec,
}

/// Items stored as Redis strings under `prefix`.
pub struct RedisStore {
    link: Arc<Link>,
    prefix: String,
    timeout: Duration,
    command_errors: IntCounterVec,
    list_skipped: IntCounterVec,
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
        let tcp = TcpSettings::default()
            .set_nodelay(true)
            .set_keepalive(
                TcpKeepalive::new()
                    .with_time(KEEPALIVE_IDLE)
                    .with_interval(KEEPALIVE_INTERVAL)
                    .with_retries(3),
            )
            .set_user_timeout(TCP_USER_TIMEOUT);
        let info = redis::Client::open(url)?
            .get_connection_info()
            .clone()
            .set_tcp_settings(tcp);
        let client = redis::Client::open(info)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(100));
        let connection = ConnectionManager::new_lazy_with_config(client.clone(), config.clone())?;
        Ok(Self {
            link: Arc::new(Link {
                client,
                config,
                current: Mutex::new(Current {
                    generation: 0,
                    connection,
                }),
                timeout,
                command_duration: metrics.redis_command_duration.clone(),
                command_errors: metrics.redis_command_errors.clone(),
            }),
            prefix,
            timeout,
            command_errors: metrics.redis_command_errors.clone(),
            list_skipped: metrics.list_skipped.clone(),
        })
    }

    fn full_key(&self, key: &str) -> String {
        let mut full = String::with_capacity(self.prefix.len() + key.len());
        full.push_str(&self.prefix);
        full.push_str(key);
        full
    }

    /// The deadline of one request's Redis work.
    fn deadline(&self) -> Instant {
        Instant::now() + self.timeout
    }

    async fn run<T: FromRedisValue + Send + 'static>(
        &self,
        command: &'static str,
        cmd: &redis::Cmd,
        deadline: Instant,
    ) -> Result<T, StoreError> {
        let cmd = cmd.clone();
        Arc::clone(&self.link)
            .exchange(command, deadline, move |mut connection| {
                let cmd = cmd.clone();
                async move { cmd.query_async::<T>(&mut connection).await }
            })
            .await
    }

    fn skipped(&self, reason: &str) {
        self.list_skipped.with_label_values(&[reason]).inc();
    }

    /// The client key of a full Redis key, if it is one a client could have
    /// written (UTF-8, under the prefix, valid key).
    fn client_key(&self, full: Vec<u8>) -> Option<String> {
        let full = String::from_utf8(full).ok()?;
        let key = full.strip_prefix(&self.prefix)?;
        validate_key(key).ok()?;
        Some(key.to_owned())
    }

    /// Pairs each key with the size of its entry on a page (key plus value
    /// length, from one pipelined `STRLEN` per key), skipping entries that
    /// are not strings or are larger than [`MAX_VALUE_BYTES`] (four of them
    /// always fit a page).
    async fn measure(
        &self,
        keys: Vec<String>,
        deadline: Instant,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for key in &keys {
            pipe.cmd("STRLEN").arg(self.full_key(key));
        }
        let lengths: Vec<RedisResult<u64>> = Arc::clone(&self.link)
            .exchange("STRLEN", deadline, move |mut connection| {
                let pipe = pipe.clone();
                async move { pipe.query_async(&mut connection).await }
            })
            .await?;
        let mut measured = Vec::with_capacity(keys.len());
        for (key, length) in keys.into_iter().zip(lengths) {
            match length {
                Err(_) => self.skipped(SKIP_WRONG_TYPE),
                // Above what `GET /items/{key}` serves: never listed either.
                Ok(length) if length > MAX_VALUE_BYTES as u64 => self.skipped(SKIP_TOO_LARGE),
                Ok(length) => {
                    let size = length + key.len() as u64;
                    measured.push((key, size));
                }
            }
        }
        Ok(measured)
    }

    /// The values of `keys`, skipping (and counting) those that are not
    /// JSON; a key that expired or was deleted since the scan is skipped
    /// silently: it is no longer there to list.
    async fn fetch(&self, keys: Vec<String>, deadline: Instant) -> Result<Vec<Item>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let full_keys: Vec<String> = keys.iter().map(|key| self.full_key(key)).collect();
        let values: Vec<Option<Vec<u8>>> = self
            .run("MGET", redis::cmd("MGET").arg(&full_keys), deadline)
            .await?;
        let mut items = Vec::with_capacity(keys.len());
        for (key, raw) in keys.into_iter().zip(values) {
            let Some(raw) = raw else { continue };
            match parse_value(&key, raw) {
                Ok(value) => items.push(Item { key, value }),
                Err(_) => self.skipped(SKIP_INVALID_VALUE),
            }
        }
        Ok(items)
    }
}

impl Link {
    fn connection(&self) -> (u64, ConnectionManager) {
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        (current.generation, current.connection.clone())
    }

    /// Replaces the connection of `generation` (unless another command did
    /// already) with a lazily connecting one.
    fn replace_connection(&self, generation: u64) {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.generation != generation {
            return;
        }
        match ConnectionManager::new_lazy_with_config(self.client.clone(), self.config.clone()) {
            Ok(connection) => {
                current.generation += 1;
                current.connection = connection;
                tracing::debug!("redis command timed out; dialling a fresh connection");
            }
            Err(err) => tracing::debug!("cannot replace the redis connection: {err}"),
        }
    }

    /// Runs one exchange with Redis before `deadline`, timing it and
    /// counting failures by kind. The exchange runs in its own task, so it
    /// reaches its outcome (and a timeout replaces the connection) even if
    /// this future is dropped because the client went away.
    async fn exchange<T, F, Fut>(
        self: Arc<Self>,
        command: &'static str,
        deadline: Instant,
        send: F,
    ) -> Result<T, StoreError>
    where
        F: Fn(ConnectionManager) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = RedisResult<T>> + Send + 'static,
        T: Send + 'static,
    {
        let after = self.timeout;
        let task = tokio::spawn(async move {
            let (generation, connection) = self.connection();
            let started = Instant::now();
            let attempts = async {
                match send(connection.clone()).await {
                    // The connection broke (reset, closed): the manager is
                    // reconnecting; a read may safely go once more.
                    Err(err) if READ_ONLY.contains(&command) && is_broken_connection(&err) => {
                        tracing::debug!(
                            "redis {command} on a broken connection ({err}); retrying once"
                        );
                        send(connection).await
                    }
                    outcome => outcome,
                }
            };
            let outcome = tokio::time::timeout_at(deadline, attempts).await;
            self.command_duration
                .with_label_values(&[command])
                .observe(started.elapsed().as_secs_f64());
            let err = match outcome {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(source)) => StoreError::Redis { command, source },
                Err(_elapsed) => StoreError::Timeout { command, after },
            };
            if err.kind() == ErrorKind::Timeout {
                self.replace_connection(generation);
            }
            self.command_errors
                .with_label_values(&[command, err.kind().label()])
                .inc();
            Err(err)
        });
        match task.await {
            Ok(outcome) => outcome,
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            // Only when the runtime shuts down.
            Err(_cancelled) => Err(StoreError::Timeout { command, after }),
        }
    }
}

/// Whether the command failed because its established connection broke
/// (reset, closed), rather than because Redis refused new connections,
/// answered with an error or never answered: only then may a retry on the
/// reconnected connection succeed at once.
fn is_broken_connection(err: &redis::RedisError) -> bool {
    err.is_connection_dropped() && !err.is_connection_refusal()
}

/// Splits measured keys into those of this page (at most `limit`, within
/// the byte budget; the first always fits) and those left for the next.
fn choose(measured: Vec<(String, u64)>, limit: usize) -> (Vec<String>, Vec<String>) {
    let mut budget = PAGE_BUDGET_BYTES;
    let mut chosen = Vec::new();
    let mut rest = Vec::new();
    for (key, size) in measured {
        if rest.is_empty() && chosen.len() < limit && size <= budget {
            budget -= size;
            chosen.push(key);
        } else {
            rest.push(key);
        }
    }
    (chosen, rest)
}

/// Parses a stored value, which must be the JSON the service wrote.
fn parse_value(key: &str, raw: Vec<u8>) -> Result<Box<RawValue>, StoreError> {
    let text = String::from_utf8(raw)
        .map_err(|err| StoreError::Corrupt(format!("{key}: value is not UTF-8: {err}")))?;
    RawValue::from_string(text).map_err(|err| StoreError::Corrupt(format!("{key}: {err}")))
}

#[async_trait]
impl Store for RedisStore {
    async fn get(&self, key: &str) -> Result<Option<Box<RawValue>>, StoreError> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(BOUNDED_GET)
            .arg(1)
            .arg(self.full_key(key))
            .arg(MAX_VALUE_BYTES);
        let reply: Value = self.run("GET", &cmd, self.deadline()).await?;
        let parsed = match reply {
            Value::Nil => return Ok(None),
            Value::BulkString(raw) => parse_value(key, raw),
            Value::Int(length) => Err(StoreError::Corrupt(format!(
                "{key}: value of {length} bytes is above the limit of {MAX_VALUE_BYTES}"
            ))),
            other => Err(StoreError::Corrupt(format!(
                "{key}: unexpected reply {other:?}"
            ))),
        };
        // Redis answered, with data the service cannot serve: counted
        // beside WRONGTYPE so the dashboard tells data errors apart.
        if let Err(err) = &parsed {
            self.command_errors
                .with_label_values(&["GET", err.kind().label()])
                .inc();
        }
        parsed.map(Some)
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
        self.run::<()>("SET", &cmd, self.deadline()).await
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let removed: u64 = self
            .run(
                "DEL",
                redis::cmd("DEL").arg(self.full_key(key)),
                self.deadline(),
            )
            .await?;
        Ok(removed > 0)
    }

    async fn list(&self, cursor: Option<ListCursor>, limit: usize) -> Result<Page, StoreError> {
        // One deadline for every SCAN, STRLEN and MGET of this page.
        let deadline = self.deadline();
        let ListCursor { mut scan, pending } = cursor.unwrap_or(ListCursor {
            scan: Some(0),
            pending: Vec::new(),
        });
        // Keys carried by the cursor come first, then fresh SCAN batches
        // until the page is full by count or by bytes. Batches are small so
        // that what a page leaves over (and the cursor carries) stays small.
        // SCAN returns a key more than once when Redis resizes its table
        // mid-walk: a page never repeats a key (across pages that would take
        // unbounded state, so a walk is at-least-once there).
        let mut on_page: HashSet<String> = pending.iter().cloned().collect();
        let mut measured = self.measure(pending, deadline).await?;
        let pattern = format!("{}*", self.prefix);
        for _ in 0..MAX_SCANS_PER_PAGE {
            let spent: u64 = measured.iter().map(|(_, size)| size).sum();
            let Some(position) = scan else { break };
            if measured.len() >= limit || spent >= PAGE_BUDGET_BYTES {
                break;
            }
            let count = (limit - measured.len()).clamp(10, SCAN_BATCH);
            let (next, batch): (u64, Vec<Vec<u8>>) = self
                .run(
                    "SCAN",
                    redis::cmd("SCAN")
                        .arg(position)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(count),
                    deadline,
                )
                .await?;
            let mut keys = Vec::with_capacity(batch.len());
            for full in batch {
                match self.client_key(full) {
                    Some(key) if on_page.insert(key.clone()) => keys.push(key),
                    Some(_repeated) => {}
                    None => self.skipped(SKIP_INVALID_KEY),
                }
            }
            measured.extend(self.measure(keys, deadline).await?);
            scan = (next != 0).then_some(next);
        }
        let (chosen, rest) = choose(measured, limit);
        let items = self.fetch(chosen, deadline).await?;
        let next = ListCursor {
            scan,
            pending: rest,
        };
        Ok(Page {
            items,
            next: (!next.is_exhausted()).then_some(next),
        })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let _pong: String = self
            .run("PING", &redis::cmd("PING"), self.deadline())
            .await?;
        Ok(())
    }
}
