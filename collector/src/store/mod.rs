//! The history store: per-minute merged histograms per cohort, behind a trait. (Being built.)
