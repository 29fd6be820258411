//! Which keys requests use. Keys live in three disjoint families so every
//! operation's expected status is known in advance:
//! - `lg<seed>:s:<i>` — preloaded, then only ever read: `get_hit` and
//!   `fault` use them, so a hit is always a hit;
//! - `lg<seed>:w:<i>` — what `put` writes (the index drawn from the same
//!   distribution): no read depends on them, so writes of concurrent
//!   processes (`--shard`) can never turn another's hit into anything else;
//! - `lg<seed>:d:<i>` — preloaded delete pool, each key deleted at most once
//!   (204); once the pool is used up a delete expects 404;
//! - `lg<seed>:m:<random>` — never written by anyone: `get_miss` is always 404.
//!
//! Which indices of the `w` and `d` families a shard may touch is decided by
//! [`crate::engine::shard`].

use rand::{Rng, RngExt};
use rand_distr::{Distribution as _, Zipf};

use crate::scenario::plan::{Distribution, Keyspace};

/// Picks indices of preloaded keys according to the configured distribution.
#[derive(Debug, Clone)]
pub struct KeyPicker {
    namespace: String,
    preload: u64,
    sampler: Sampler,
}

#[derive(Debug, Clone)]
enum Sampler {
    Uniform,
    Zipf(Zipf<f64>),
    Hotset { hot: u64, hot_probability: f64 },
}

impl KeyPicker {
    pub fn new(keyspace: &Keyspace, seed: u64) -> Self {
        let preload = keyspace.preload.max(1);
        let sampler = match keyspace.distribution {
            Distribution::Uniform => Sampler::Uniform,
            Distribution::Zipf { exponent } => Sampler::Zipf(
                Zipf::new(preload as f64, exponent).expect("validated zipf parameters"),
            ),
            Distribution::Hotset {
                hot_fraction,
                hot_probability,
            } => Sampler::Hotset {
                hot: ((preload as f64 * hot_fraction).round() as u64)
                    .clamp(1, preload.saturating_sub(1).max(1)),
                hot_probability,
            },
        };
        Self {
            namespace: format!("lg{seed}"),
            preload,
            sampler,
        }
    }

    /// Index in `0..preload` of the next preloaded key.
    pub fn pick(&self, rng: &mut impl Rng) -> u64 {
        match &self.sampler {
            Sampler::Uniform => rng.random_range(0..self.preload),
            // Zipf yields ranks 1..=n; rank 1 is the most popular key.
            Sampler::Zipf(zipf) => (zipf.sample(rng) as u64).clamp(1, self.preload) - 1,
            Sampler::Hotset {
                hot,
                hot_probability,
            } => {
                if *hot >= self.preload || rng.random_bool(*hot_probability) {
                    rng.random_range(0..*hot)
                } else {
                    rng.random_range(*hot..self.preload)
                }
            }
        }
    }

    pub fn stable_key(&self, index: u64) -> String {
        format!("{}:s:{index}", self.namespace)
    }

    pub fn written_key(&self, index: u64) -> String {
        format!("{}:w:{index}", self.namespace)
    }

    pub fn delete_key(&self, index: u64) -> String {
        format!("{}:d:{index}", self.namespace)
    }

    /// A key nobody writes, named by a random `tag`.
    pub fn missing_key(&self, tag: u64) -> String {
        format!("{}:m:{tag:016x}", self.namespace)
    }
}

#[cfg(test)]
mod tests {
    use rand::{rngs::StdRng, SeedableRng};

    use super::*;

    fn counts(distribution: Distribution, draws: usize) -> Vec<u64> {
        let picker = KeyPicker::new(
            &Keyspace {
                preload: 100,
                value_bytes: 1,
                distribution,
            },
            1,
        );
        let mut rng = StdRng::seed_from_u64(42);
        let mut counts = vec![0u64; 100];
        for _ in 0..draws {
            counts[picker.pick(&mut rng) as usize] += 1;
        }
        counts
    }

    #[test]
    fn uniform_is_flat() {
        let counts = counts(Distribution::Uniform, 100_000);
        assert!(counts.iter().all(|c| (800..1200).contains(c)), "{counts:?}");
    }

    #[test]
    fn zipf_follows_rank_frequency() {
        // With exponent 1, key k is chosen ∝ 1/(k+1): key 0 twice as often as key 1,
        // ten times as often as key 9.
        let counts = counts(Distribution::Zipf { exponent: 1.0 }, 200_000);
        let ratio_1 = counts[0] as f64 / counts[1] as f64;
        let ratio_9 = counts[0] as f64 / counts[9] as f64;
        assert!((1.85..2.15).contains(&ratio_1), "{ratio_1}");
        assert!((8.8..11.2).contains(&ratio_9), "{ratio_9}");
    }

    #[test]
    fn hotset_sends_the_configured_share_to_hot_keys() {
        let counts = counts(
            Distribution::Hotset {
                hot_fraction: 0.1,
                hot_probability: 0.9,
            },
            100_000,
        );
        let hot: u64 = counts[..10].iter().sum();
        let share = hot as f64 / 100_000.0;
        assert!((0.89..0.91).contains(&share), "{share}");
    }
}
