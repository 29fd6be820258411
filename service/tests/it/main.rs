//! Integration tests of items-service against a real `redis-server`.

mod common;
mod concurrency;
mod containment;
mod errors;
mod faults;
mod foreign_data;
mod metrics;
mod pagination;
mod routes;
mod slow_clients;
