//! The stallwatch collector: takes agents' interval reports over mutual TLS, merges them into
//! per-cohort series, exports Prometheus metrics, raises alerts and writes regional reports.
//!
//! Only the report and plan wire formats exist so far (in `stallwatch-proto`); the collector's
//! services are tracked in issue 4.
