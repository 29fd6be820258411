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
            part.trim()
                .parse::<u64>()
                .map_err(|_| format!("{text:?} is not I/N (e.g. 2/4: the second of four shards)"))
        };
        let (number, count) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not I/N (e.g. 2/4: the second of four shards)"))?;
        Shard::new(parse(number)?, parse(count)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        assert_eq!("3/8".parse::<Shard>().unwrap().to_string(), "3/8");
        assert_eq!("1/1".parse::<Shard>().unwrap(), Shard::WHOLE);
        for bad in ["0/4", "5/4", "1/0", "2", "a/b", "1/10001", "-1/4"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad} must be rejected");
        }
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
}
