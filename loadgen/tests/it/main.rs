//! Integration tests of loadgen against a real items-service and
//! `redis-server` (and, for verification, real Prometheus and Alertmanager).

mod alert_docs;
mod alert_routing;
mod common;
mod dashboard_lint;
mod distributed;
mod error_burst;
mod exit_codes;
mod html;
mod k8s;
mod run;
mod scenarios;
mod stack_files;
mod telemetry;
mod verdicts;
mod verify;
