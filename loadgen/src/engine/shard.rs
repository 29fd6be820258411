//! Sharding (SPEC §11): `--shard I/N` runs the I-th of N disjoint slices of
//! one scenario, so N processes together send exactly what one process
//! would. Every slicing rule lives here so the union property can be tested
//! in one place:
//! - open-loop arrivals are striped (k6's execution segments): shard I owns
//!   arrivals I−1, I−1+N, … (0-based) of the single-process timeline, and
//!   draws — but does not send — the others, so its own requests are the
//!   very requests a single process would send at those instants;
//! - closed-loop VUs are split as evenly as possible: global VU g belongs to
//!   shard g mod N (a shard may own none and just keeps time);
//! - written and deleted keys are striped the same way (index g belongs to
//!   shard g mod N), so nothing one shard writes or deletes is ever read,
//!   written or deleted by another; preloaded keys are split likewise, and
//!   the union of the shards' preloads is the single-process preload.
//!
//! The whole run is the shard 1/1, for which every mapping is the identity.

use std::{fmt, str::FromStr};

/// One slice of a run: `index` is 0-based here, 1-based on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    index: u64,
    count: u64,
}

/// Most shards a run may be split into (a Kubernetes Job's parallelism is
/// far below this; the bound keeps every index computation in range).
pub const MAX_SHARDS: u64 = 10_000;

impl Shard {
    /// The unsharded run.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// Shard `number` (1-based) of `count`.
    pub fn new(number: u64, count: u64) -> Result<Self, String> {
        if count == 0 || count > MAX_SHARDS {
            return Err(format!(
                "the shard count must be 1..={MAX_SHARDS}, not {count}"
            ));
        }
        if number == 0 || number > count {
            return Err(format!(
                "shard {number}/{count}: the shard number must be 1..={count} (shards are numbered from 1)"
            ));
        }
        Ok(Self {
            index: number - 1,
            count,
        })
    }

    /// 1-based number, as written on the command line and in reports.
    pub fn number(self) -> u64 {
        self.index + 1
    }

    pub fn count(self) -> u64 {
        self.count
    }

    pub fn is_whole(self) -> bool {
        self.count == 1
    }

    /// Whether item `global` (an arrival, a VU, a key index) is this shard's.
    pub fn owns(self, global: u64) -> bool {
        global % self.count == self.index
    }

    /// The global index of this shard's `local`-th item.
    pub fn global(self, local: u64) -> u64 {
        local * self.count + self.index
    }

    /// This shard's part of a concurrency limit `whole` of the single
    /// process (preload workers, `max_in_flight`): ⌈whole / N⌉, at least 1,
    /// so the union's concurrency stays within whole + N − 1 instead of
    /// growing N-fold.
    pub fn concurrency(self, whole: u64) -> u64 {
        whole.div_ceil(self.count).max(1)
    }

    /// How many of the items `0..total` this shard owns.
    pub fn share(self, total: u64) -> u64 {
        total / self.count + u64::from(self.index < total % self.count)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.number(), self.count)
    }
}

impl FromStr for Shard {
    type Err = String;

    /// Parses `I/N`, e.g. `3/8`.
    fn from_str(text: &str) -> Result<Self, String> {
        let parse = |part: &str| {
            let part = part.trim();
            // `u64::from_str` would take "+1".
            part.bytes()
                .all(|byte| byte.is_ascii_digit())
                .then(|| part.parse::<u64>().ok())
                .flatten()
                .ok_or_else(|| format!("{text:?} is not I/N (e.g. 2/4: the second of four shards)"))
        };
        let (number, count) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not I/N (e.g. 2/4: the second of four shards)"))?;
        Shard::new(parse(number)?, parse(count)?)
    }
}

impl Default for Shard {
    /// The whole run (no `--shard`).
    fn default() -> Self {
        Shard::WHOLE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        assert_eq!("3/8".parse::<Shard>().unwrap().to_string(), "3/8");
        assert_eq!("1/1".parse::<Shard>().unwrap(), Shard::WHOLE);
        for bad in [
            "0/4", "5/4", "1/0", "2", "a/b", "1/10001", "-1/4", "+1/2", "1/+2", "/",
        ] {
            assert!(bad.parse::<Shard>().is_err(), "{bad} must be rejected");
        }
    }

    #[test]
    fn concurrency_is_split_not_multiplied() {
        for count in [1, 2, 3, 7, 32, 33, 100, MAX_SHARDS] {
            for whole in [1, 2, 5, 32, 1000] {
                let part = Shard::new(1, count).unwrap().concurrency(whole);
                assert!(part >= 1);
                assert!(part * count < whole + count, "{whole} over {count}: {part}");
                assert!(part * count >= whole, "{whole} over {count}: {part}");
            }
        }
        assert_eq!(Shard::WHOLE.concurrency(32), 32);
    }

    #[test]
    fn shards_partition_every_range() {
        for count in 1..=9 {
            let shards: Vec<Shard> = (1..=count).map(|i| Shard::new(i, count).unwrap()).collect();
            for total in 0..40 {
                // Every item has exactly one owner, and shares add up.
                for item in 0..total {
                    assert_eq!(shards.iter().filter(|s| s.owns(item)).count(), 1);
                }
                assert_eq!(shards.iter().map(|s| s.share(total)).sum::<u64>(), total);
                // Shares differ by at most one (VUs split as evenly as possible).
                let (min, max) = shards
                    .iter()
                    .map(|s| s.share(total))
                    .fold((u64::MAX, 0), |(lo, hi), share| {
                        (lo.min(share), hi.max(share))
                    });
                assert!(max - min <= 1, "{count} shards of {total}");
                for shard in &shards {
                    let mine: Vec<u64> = (0..shard.share(total)).map(|l| shard.global(l)).collect();
                    let owned: Vec<u64> = (0..total).filter(|g| shard.owns(*g)).collect();
                    assert_eq!(mine, owned);
                }
            }
        }
    }

    use std::collections::BTreeSet;

    use crate::{
        engine::executor::{
            arrivals, stream_rng, Arrival, ConstantArrivalRate, RampingArrivalRate,
        },
        engine::preload,
        engine::request::{PlannedRequest, RequestGen},
        scenario::plan::{OpKind, Plan, Stage},
    };

    const SCENARIO: &str = "seed = 11\n[keyspace]\npreload = 50\ndistribution = \"zipf\"\nzipf_exponent = 1.1\n[mix]\nget_hit = 5\nget_miss = 2\nput = 2\ndelete = 2\nlist = 1\nroot = 1\nfault = 1\n[[phases]]\nexecutor = \"constant-vus\"\nvus = 1\nduration = \"1s\"\n";

    fn plan() -> Plan {
        crate::scenario::parse("t", SCENARIO, "t").unwrap()
    }

    fn shard_arrivals(plan: &Plan, shard: Shard, ramp: bool) -> Vec<Arrival> {
        let requests = RequestGen::new(plan, 40).for_shard(shard);
        let rng = stream_rng(plan.seed, 0, 0);
        if ramp {
            let stages = [
                Stage {
                    target: 300.0,
                    duration: std::time::Duration::from_secs(2),
                },
                Stage {
                    target: 20.0,
                    duration: std::time::Duration::from_secs(1),
                },
            ];
            arrivals(RampingArrivalRate::new(10.0, &stages), &requests, rng).collect()
        } else {
            let timeline = ConstantArrivalRate {
                rate: 333.0,
                duration: std::time::Duration::from_secs(2),
            };
            arrivals(timeline, &requests, rng).collect()
        }
    }

    /// What a request is, apart from the keys a shard writes or deletes
    /// (those are the shard's own stripe by design).
    fn essence(request: &PlannedRequest) -> (OpKind, Option<String>) {
        let shared_key = matches!(
            request.op,
            OpKind::GetHit | OpKind::GetMiss | OpKind::Fault | OpKind::List | OpKind::Root
        );
        (request.op, shared_key.then(|| request.path.clone()))
    }

    #[test]
    fn striped_shards_merge_back_into_the_single_schedule() {
        let plan = plan();
        for ramp in [false, true] {
            let single = shard_arrivals(&plan, Shard::WHOLE, ramp);
            assert!(single.len() > 400, "{}", single.len());
            for count in 1..=8 {
                let mut union: Vec<Arrival> = (1..=count)
                    .flat_map(|number| {
                        shard_arrivals(&plan, Shard::new(number, count).unwrap(), ramp)
                    })
                    .collect();
                union.sort_by_key(|arrival| arrival.index);
                assert_eq!(union.len(), single.len(), "{count} shards");
                for (merged, one) in union.iter().zip(&single) {
                    assert_eq!(
                        (merged.index, merged.offset),
                        (one.index, one.offset),
                        "{count} shards"
                    );
                    assert_eq!(
                        essence(&merged.request),
                        essence(&one.request),
                        "{count} shards, arrival {}",
                        one.index
                    );
                }
            }
        }
    }

    #[test]
    fn keys_of_different_shards_never_collide() {
        let plan = plan();
        let single_preload: BTreeSet<String> =
            preload::keys(&RequestGen::new(&plan, 40), plan.keyspace.preload, 40)
                .into_iter()
                .collect();
        for count in 2..=6 {
            let mut preloaded = BTreeSet::new();
            let mut owners: std::collections::BTreeMap<String, u64> = Default::default();
            let mut read = BTreeSet::new();
            for number in 1..=count {
                let shard = Shard::new(number, count).unwrap();
                let requests = RequestGen::new(&plan, 40).for_shard(shard);
                let own_preload = preload::keys(&requests, plan.keyspace.preload, 40);
                let mut rng = stream_rng(plan.seed, 0, number);
                let sent: Vec<PlannedRequest> =
                    (0..2000).map(|_| requests.next(&mut rng)).collect();
                let written = sent.iter().filter_map(|r| match r.op {
                    OpKind::Put => Some(
                        r.body
                            .as_ref()
                            .map(|b| {
                                String::from_utf8_lossy(b)
                                    .split('"')
                                    .nth(3)
                                    .unwrap()
                                    .to_owned()
                            })
                            .unwrap(),
                    ),
                    OpKind::Delete => Some(r.path.trim_start_matches("/items/").to_owned()),
                    _ => None,
                });
                // Whatever a shard writes or deletes (preload included) is its own.
                for key in own_preload.iter().cloned().chain(written) {
                    let owner = *owners.entry(key.clone()).or_insert(number);
                    assert_eq!(
                        owner, number,
                        "{key} is touched by shards {owner} and {number} of {count}"
                    );
                }
                preloaded.extend(own_preload);
                read.extend(
                    sent.iter()
                        .filter(|r| r.op == OpKind::GetHit)
                        .map(|r| r.path.trim_start_matches("/items/").to_owned()),
                );
            }
            // The union preloads exactly what one process would ...
            assert_eq!(preloaded, single_preload, "{count} shards");
            // ... and every hit reads a preloaded key that no shard writes after the preload.
            for key in &read {
                assert!(single_preload.contains(key), "{key}");
                assert!(!key.contains(":w:") && !key.contains(":d:"), "{key}");
            }
        }
    }

    #[test]
    fn deletes_expect_204_exactly_for_the_shards_own_pool() {
        let plan = plan();
        let shard = Shard::new(2, 3).unwrap();
        let requests = RequestGen::new(&plan, 40).for_shard(shard);
        let mut rng = stream_rng(plan.seed, 0, 1);
        let deletes: Vec<PlannedRequest> = (0..3000)
            .map(|_| requests.next(&mut rng))
            .filter(|r| r.op == OpKind::Delete)
            .collect();
        // Global indices 1, 4, ..., 37 of the pool of 40: 13 keys.
        assert_eq!(requests.own_delete_pool(), 13);
        assert!(deletes[..13].iter().all(|r| r.expected_status == 204));
        assert!(deletes[13..].iter().all(|r| r.expected_status == 404));
        assert_eq!(deletes[0].path, "/items/lg11:d:1");
        assert_eq!(deletes[12].path, "/items/lg11:d:37");
    }
}
