//! The stallwatch collector: takes agents' interval reports over mutual TLS, merges them into
//! per-cohort series, exports Prometheus metrics, raises alerts and writes regional reports.
//!
//! Built so far: the fleet PKI (`pki`), the configuration file (`config`), per-cohort series
//! and their exposition (`series`), the history store (`store`), the `run` server (`server`)
//! and proactive alerts (`alerts`). Regional reports are tracked in the issues.

pub mod alerts;
pub mod clock;
pub mod config;
pub mod demo;
pub mod pki;
pub mod series;
pub mod server;
pub mod store;
