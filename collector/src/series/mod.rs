//! Per-cohort cumulative series and their Prometheus exposition. (Being built.)
