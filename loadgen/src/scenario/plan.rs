//! The validated form of a scenario: everything the engine needs, with
//! units resolved and invariants checked (see `scenario` for parsing).

use std::time::Duration;

/// The operations a scenario can mix, in report order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpKind {
    GetHit,
    GetMiss,
    Put,
    Delete,
    List,
    Root,
    Fault,
}

impl OpKind {
    pub const ALL: [OpKind; 7] = [
        OpKind::GetHit,
        OpKind::GetMiss,
        OpKind::Put,
        OpKind::Delete,
        OpKind::List,
        OpKind::Root,
        OpKind::Fault,
    ];

    /// Name used in scenarios, tables and reports.
    pub fn name(self) -> &'static str {
        match self {
            OpKind::GetHit => "get_hit",
            OpKind::GetMiss => "get_miss",
            OpKind::Put => "put",
            OpKind::Delete => "delete",
            OpKind::List => "list",
            OpKind::Root => "root",
            OpKind::Fault => "fault",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// The service's `method` and `endpoint` labels for this operation.
    pub fn route(self) -> (&'static str, &'static str) {
        match self {
            OpKind::GetHit | OpKind::GetMiss | OpKind::Fault => ("GET", "/items/{key}"),
            OpKind::Put => ("POST", "/items"),
            OpKind::Delete => ("DELETE", "/items/{key}"),
            OpKind::List => ("GET", "/items"),
            OpKind::Root => ("GET", "/"),
        }
    }
}

/// How keys are chosen among the preloaded ones.
#[derive(Debug, Clone, PartialEq)]
pub enum Distribution {
    Uniform,
    /// Rank-frequency follows 1/rank^exponent.
    Zipf {
        exponent: f64,
    },
    /// `hot_probability` of accesses go to the first `hot_fraction` of keys.
    Hotset {
        hot_fraction: f64,
        hot_probability: f64,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Keyspace {
    pub preload: u64,
    pub value_bytes: usize,
    pub distribution: Distribution,
}

/// `[fault]`: what a `fault` operation asks the service for.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub status: u16,
    pub delay: Duration,
}

/// One ramp stage: move linearly to `target` over `duration`.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub target: f64,
    pub duration: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Executor {
    ConstantArrivalRate {
        rate: f64,
        duration: Duration,
    },
    RampingArrivalRate {
        start_rate: f64,
        stages: Vec<Stage>,
    },
    ConstantVus {
        vus: u32,
        duration: Duration,
        think_time: Duration,
    },
    RampingVus {
        start_vus: u32,
        stages: Vec<Stage>,
        think_time: Duration,
    },
}

impl Executor {
    pub fn name(&self) -> &'static str {
        match self {
            Executor::ConstantArrivalRate { .. } => "constant-arrival-rate",
            Executor::RampingArrivalRate { .. } => "ramping-arrival-rate",
            Executor::ConstantVus { .. } => "constant-vus",
            Executor::RampingVus { .. } => "ramping-vus",
        }
    }

    pub fn duration(&self) -> Duration {
        match self {
            Executor::ConstantArrivalRate { duration, .. }
            | Executor::ConstantVus { duration, .. } => *duration,
            Executor::RampingArrivalRate { stages, .. } | Executor::RampingVus { stages, .. } => {
                stages.iter().map(|stage| stage.duration).sum()
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    pub name: String,
    pub executor: Executor,
    /// Open loop: concurrent requests before new ones are dropped.
    pub max_in_flight: usize,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientExpect {
    pub error_ratio_max: Option<f64>,
    pub p50_max: Option<Duration>,
    pub p99_max: Option<Duration>,
    pub achieved_rate_min_ratio: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerExpect {
    pub error_ratio_max: Option<f64>,
    pub p99_max: Option<Duration>,
    pub cache_hit_ratio_min: Option<f64>,
    /// Largest allowed |server ratio − client ratio|.
    pub cache_hit_ratio_matches_client: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PromqlExpect {
    pub name: String,
    pub query: String,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertState {
    Firing,
    Inactive,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AlertExpect {
    pub name: String,
    pub state: AlertState,
    pub within: Duration,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Expectations {
    pub client: ClientExpect,
    pub server: ServerExpect,
    pub promql: Vec<PromqlExpect>,
    pub alerts: Vec<AlertExpect>,
}

impl Expectations {
    /// Whether anything must be checked against Prometheus.
    pub fn needs_prometheus(&self) -> bool {
        self.server != ServerExpect::default() || !self.promql.is_empty() || !self.alerts.is_empty()
    }
}

/// A validated scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub name: String,
    pub description: String,
    pub seed: u64,
    pub request_timeout: Duration,
    pub keyspace: Keyspace,
    /// Weight per operation, indexed by `OpKind::index`.
    pub mix: [u32; 7],
    pub fault: Fault,
    pub phases: Vec<Phase>,
    pub expect: Expectations,
}

impl Plan {
    pub fn total_duration(&self) -> Duration {
        self.phases
            .iter()
            .map(|phase| phase.executor.duration())
            .sum()
    }
}
