//! Integration tests of loadgen against a real items-service and
//! `redis-server` (and, for verification, real Prometheus and Alertmanager).

mod common;
mod distributed;
mod exit_codes;
mod k8s;
mod run;
mod scenarios;
mod stack_files;
mod verdicts;
mod verify;
