//! The scenario file as written: every value keeps its span so validation
//! can point at it. Unknown keys are found separately (`schema.rs`), so
//! these structs accept anything serde can read and leave judging to
//! `validate.rs`.

use serde::Deserialize;
use toml::Spanned;

pub type S<T> = Option<Spanned<T>>;

#[derive(Debug, Deserialize)]
pub struct RawScenario {
    pub name: S<String>,
    pub description: S<String>,
    pub seed: S<i64>,
    pub request_timeout: S<String>,
    pub keyspace: S<RawKeyspace>,
    pub mix: S<RawMix>,
    pub fault: S<RawFault>,
    pub phases: S<Vec<Spanned<RawPhase>>>,
    pub expect: S<RawExpect>,
}

#[derive(Debug, Deserialize)]
pub struct RawKeyspace {
    pub preload: S<i64>,
    pub value_bytes: S<i64>,
    pub distribution: S<String>,
    pub zipf_exponent: S<f64>,
    pub hot_fraction: S<f64>,
    pub hot_probability: S<f64>,
}

#[derive(Debug, Deserialize)]
pub struct RawMix {
    pub get_hit: S<i64>,
    pub get_miss: S<i64>,
    pub put: S<i64>,
    pub delete: S<i64>,
    pub list: S<i64>,
    pub root: S<i64>,
    pub fault: S<i64>,
}

#[derive(Debug, Deserialize)]
pub struct RawFault {
    pub status: S<i64>,
    pub delay: S<String>,
}

#[derive(Debug, Deserialize)]
pub struct RawStage {
    pub target: S<f64>,
    pub duration: S<String>,
}

#[derive(Debug, Deserialize)]
pub struct RawPhase {
    pub name: S<String>,
    pub executor: S<String>,
    pub rate: S<f64>,
    pub start_rate: S<f64>,
    pub duration: S<String>,
    pub stages: S<Vec<Spanned<RawStage>>>,
    pub vus: S<i64>,
    pub start_vus: S<i64>,
    pub think_time: S<String>,
    pub max_in_flight: S<i64>,
}

#[derive(Debug, Deserialize)]
pub struct RawExpect {
    pub client: S<RawClientExpect>,
    pub server: S<RawServerExpect>,
    pub promql: S<Vec<Spanned<RawPromql>>>,
    pub alerts: S<Vec<Spanned<RawAlert>>>,
}

#[derive(Debug, Deserialize)]
pub struct RawClientExpect {
    pub error_ratio_max: S<f64>,
    pub p50_max: S<String>,
    pub p99_max: S<String>,
    pub achieved_rate_min_ratio: S<f64>,
}

#[derive(Debug, Deserialize)]
pub struct RawServerExpect {
    pub error_ratio_max: S<f64>,
    pub p99_max: S<String>,
    pub cache_hit_ratio_min: S<f64>,
    pub cache_hit_ratio_matches_client: S<f64>,
}

#[derive(Debug, Deserialize)]
pub struct RawPromql {
    pub name: S<String>,
    pub query: S<String>,
    pub min: S<f64>,
    pub max: S<f64>,
}

#[derive(Debug, Deserialize)]
pub struct RawAlert {
    pub name: S<String>,
    pub state: S<String>,
    pub within: S<String>,
}
