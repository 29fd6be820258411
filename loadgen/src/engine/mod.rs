//! The load engine: turns a [`Plan`](crate::scenario::plan::Plan) into
//! requests on a timeline (executors), sends them (client), and folds every
//! sample into exact histograms and per-second series (aggregator).

pub mod aggregate;
pub mod client;
pub mod executor;
pub mod keyspace;
pub mod live;
pub mod preload;
pub mod progress;
pub mod request;
pub mod sample;
pub mod shard;
