//! Turns the mix into concrete requests. One `RequestGen` draws operations
//! by weight and fills in keys, bodies and the exact status each request
//! must get; with the same RNG seed it yields the same sequence. Drawing
//! (the random part) is separate from building (keys, bodies), so a shard
//! can draw the arrivals of other shards to stay in step with the
//! single-process sequence without building or sending them.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use rand::{Rng, RngExt};

use crate::{
    engine::keyspace::KeyPicker,
    engine::shard::Shard,
    scenario::plan::{OpKind, Plan},
};

/// Header names of the service's fault injection.
pub const FAULT_STATUS_HEADER: &str = "x-fault-status";
pub const FAULT_DELAY_HEADER: &str = "x-fault-delay-ms";

/// One request, fully decided before it is sent.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedRequest {
    pub op: OpKind,
    pub method: &'static str,
    pub path: String,
    pub body: Option<Bytes>,
    /// `(status, delay)` asked of the service's fault injection.
    pub fault: Option<(u16, Duration)>,
    /// The status this request must get; anything else is an error.
    pub expected_status: u16,
}

/// Generates requests for a plan; cheap to clone (shared delete counter).
#[derive(Debug, Clone)]
pub struct RequestGen {
    cumulative: Vec<(u32, OpKind)>,
    total_weight: u32,
    keys: KeyPicker,
    /// The JSON string literal every put stores (value_bytes characters).
    value_literal: Arc<str>,
    fault: (u16, Duration),
    delete_pool: u64,
    deletes: Arc<AtomicU64>,
    shard: Shard,
}

/// The random part of one request: an operation and the number it drew
/// (a key index, or the tag of a missing key).
#[derive(Debug, Clone, Copy)]
struct Draw {
    op: OpKind,
    value: u64,
}

impl RequestGen {
    pub fn new(plan: &Plan, delete_pool: u64) -> Self {
        let mut cumulative = Vec::new();
        let mut total_weight = 0;
        for op in OpKind::ALL {
            let weight = plan.mix[op.index()];
            if weight > 0 {
                total_weight += weight;
                cumulative.push((total_weight, op));
            }
        }
        let filler: String = (0..plan.keyspace.value_bytes)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        Self {
            cumulative,
            total_weight,
            keys: KeyPicker::new(&plan.keyspace, plan.seed),
            value_literal: format!("\"{filler}\"").into(),
            fault: (plan.fault.status, plan.fault.delay),
            delete_pool,
            deletes: Arc::new(AtomicU64::new(0)),
            shard: Shard::WHOLE,
        }
    }

    /// The same generator restricted to `shard`'s written and deleted keys
    /// (`delete_pool` stays the whole run's pool; the shard owns its share).
    pub fn for_shard(mut self, shard: Shard) -> Self {
        self.shard = shard;
        self
    }

    pub fn shard(&self) -> Shard {
        self.shard
    }

    /// Global indices of the delete-pool keys this shard preloads and deletes.
    pub fn own_delete_pool(&self) -> u64 {
        self.shard.share(self.delete_pool)
    }

    pub fn keys(&self) -> &KeyPicker {
        &self.keys
    }

    /// The body that stores `key` with the scenario's value.
    pub fn put_body(&self, key: &str) -> Bytes {
        Bytes::from(format!(
            r#"{{"key":"{key}","value":{}}}"#,
            self.value_literal
        ))
    }

    fn draw_op(&self, rng: &mut impl Rng) -> OpKind {
        let ticket = rng.random_range(0..self.total_weight);
        self.cumulative
            .iter()
            .find(|(upper, _)| ticket < *upper)
            .map(|(_, op)| *op)
            .expect("ticket below total weight")
    }

    fn draw(&self, rng: &mut impl Rng) -> Draw {
        let op = self.draw_op(rng);
        let value = match op {
            OpKind::GetHit | OpKind::Put | OpKind::Fault => self.keys.pick(rng),
            OpKind::GetMiss => rng.random::<u64>(),
            OpKind::Delete | OpKind::List | OpKind::Root => 0,
        };
        Draw { op, value }
    }

    /// Consumes the randomness of one request without building it: the
    /// arrivals other shards send.
    pub fn skip(&self, rng: &mut impl Rng) {
        self.draw(rng);
    }

    /// The next request of the sequence.
    pub fn next(&self, rng: &mut impl Rng) -> PlannedRequest {
        let Draw { op, value } = self.draw(rng);
        let item = |key: String| format!("/items/{key}");
        let (method, path, body, fault, expected_status) = match op {
            OpKind::GetHit => ("GET", item(self.keys.stable_key(value)), None, None, 200),
            OpKind::GetMiss => ("GET", item(self.keys.missing_key(value)), None, None, 404),
            OpKind::Put => {
                let key = self.keys.written_key(self.shard.global(value));
                (
                    "POST",
                    "/items".to_owned(),
                    Some(self.put_body(&key)),
                    None,
                    201,
                )
            }
            OpKind::Delete => {
                let local = self.deletes.fetch_add(1, Ordering::Relaxed);
                let expected = if local < self.own_delete_pool() {
                    204
                } else {
                    404
                };
                (
                    "DELETE",
                    item(self.keys.delete_key(self.shard.global(local))),
                    None,
                    None,
                    expected,
                )
            }
            OpKind::List => ("GET", "/items?limit=100".to_owned(), None, None, 200),
            OpKind::Root => ("GET", "/".to_owned(), None, None, 200),
            OpKind::Fault => {
                let key = self.keys.stable_key(value);
                ("GET", item(key), None, Some(self.fault), self.fault.0)
            }
        };
        PlannedRequest {
            op,
            method,
            path,
            body,
            fault,
            expected_status,
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::{rngs::StdRng, SeedableRng};

    use super::*;

    fn plan(seed: u64) -> Plan {
        crate::scenario::parse(
            "t",
            &format!(
                "seed = {seed}\n[keyspace]\npreload = 100\n[mix]\nget_hit = 5\nget_miss = 2\nput = 1\ndelete = 1\nlist = 1\nroot = 1\nfault = 1\n[[phases]]\nexecutor = \"constant-vus\"\nvus = 1\nduration = \"1s\"\n"
            ),
            "t",
        )
        .unwrap()
    }

    fn sequence(seed: u64) -> Vec<PlannedRequest> {
        let plan = plan(seed);
        let generator = RequestGen::new(&plan, 10);
        let mut rng = StdRng::seed_from_u64(plan.seed);
        (0..500).map(|_| generator.next(&mut rng)).collect()
    }

    #[test]
    fn same_seed_same_sequence() {
        assert_eq!(sequence(7), sequence(7));
        assert_ne!(sequence(7), sequence(8));
    }

    #[test]
    fn expected_statuses_follow_the_key_families() {
        let requests = sequence(3);
        for request in &requests {
            let expected = match request.op {
                OpKind::GetHit | OpKind::List | OpKind::Root => 200,
                OpKind::GetMiss => 404,
                OpKind::Put => 201,
                OpKind::Fault => 500,
                OpKind::Delete => request.expected_status,
            };
            assert_eq!(request.expected_status, expected, "{request:?}");
        }
        let deletes: Vec<u16> = requests
            .iter()
            .filter(|r| r.op == OpKind::Delete)
            .map(|r| r.expected_status)
            .collect();
        assert!(deletes.len() > 10);
        assert!(deletes[..10].iter().all(|s| *s == 204) && deletes[10..].iter().all(|s| *s == 404));
    }
}
