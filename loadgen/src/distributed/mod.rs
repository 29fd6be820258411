//! Distributed runs (SPEC §11): one scenario split across N `loadgen run
//! --shard I/N` processes, then merged exactly by `loadgen merge`.
//!
//! - [`start_at`]: the one instant every shard starts its first phase at;
//! - [`shard_run`]: what a shard does instead of verifying (start gate,
//!   `/metrics` snapshots, the `shard` section of its report);
//! - [`merge`]: validates a set of shard reports, merges their exact
//!   measurements and runs every check once over the union.
//!
//! How a run is sliced (arrivals, VUs, keys) lives in
//! [`crate::engine::shard`]; this layer only ties shards together in time
//! and in the report.

pub mod merge;
pub mod shard_run;
pub mod start_at;

use serde::{Deserialize, Serialize};

use crate::engine::aggregate::Measurements;

/// One read of the service's `/metrics`, kept whole so the merge
/// reconciles with the same parser as a single run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetricsSnapshot {
    /// When the read was sent.
    pub at_unix_ms: u64,
    pub text: String,
}

/// The `shard` object of a shard's JSON report: everything `loadgen merge`
/// needs, self-contained (the merge reads nothing else of the report).
/// The merge reads `measurements` as raw JSON first and decodes one
/// shard's at a time (`M = Box<RawValue>`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardSection<M = Measurements> {
    /// 1-based shard number and shard count (`--shard I/N`).
    pub shard: u64,
    pub shards: u64,
    pub loadgen_version: String,
    pub scenario: String,
    /// FNV-1a of the scenario file's bytes: shards of one run agree on it.
    pub scenario_hash: String,
    /// The scenario file itself, so the merge evaluates its expectations.
    pub scenario_toml: String,
    pub scenario_path: String,
    pub seed: u64,
    pub target: String,
    pub start_at_unix_ms: Option<u64>,
    /// When this shard's preload was done (it must be before `start_at`).
    pub ready_at_unix_ms: u64,
    /// Server-side checks are not run by a shard; `loadgen merge` runs them.
    pub checks_deferred: bool,
    pub metrics_before: Option<MetricsSnapshot>,
    pub metrics_after: Option<MetricsSnapshot>,
    pub interrupted: bool,
    pub error: Option<String>,
    pub measurements: M,
}

/// FNV-1a (64 bit), hex: a stable fingerprint, not a security measure.
pub fn scenario_hash(bytes: &[u8]) -> String {
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("fnv1a64:{hash:016x}")
}
