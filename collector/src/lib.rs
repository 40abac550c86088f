//! The stallwatch collector: takes agents' interval reports over mutual TLS, merges them into
//! per-cohort series, exports Prometheus metrics, raises alerts and writes regional reports.
//!
//! Built so far: the fleet PKI (`pki`), the configuration file (`config`), the history store
//! (`store`), per-cohort series and their exposition (`series`), the collector's own telemetry
//! (`telemetry`), the server (`server`: ingest, plans, `/metrics`, reports over HTTP), proactive
//! alerts (`alerts`) and regional reports (`reports`).

pub mod alerts;
pub mod clock;
pub mod config;
pub mod demo;
pub mod pki;
pub mod reports;
pub mod series;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod web;
