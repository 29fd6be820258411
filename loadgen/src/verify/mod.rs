//! Verification against the server side: the Prometheus/Alertmanager API
//! client, reconciliation of the service's own counters with the client's,
//! scenario expectations evaluated in Prometheus, and the `verify-alerts`
//! and `verify-dashboard` commands. Every check here must be able to fail.

pub mod alert_plan;
pub mod alerts;
pub mod check;
pub mod dashboard;
pub mod prometheus;
pub mod reconcile;
pub mod scope;
pub mod server;
pub mod webhook;
