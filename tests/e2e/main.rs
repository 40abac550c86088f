//! End-to-end and architecture tests: one test binary, a module per area (ripgrep's layout).
//!
//! libtest starts tests in name order, two at a time here (two cores), so module names set
//! the schedule: the demo (the longest `load_tolerant()` test) starts in the first seconds;
//! the `heavy()` timing tests (probe, relay_hostile, repair) run one at a time after the
//! tolerant ones; `the_alert_path`'s idle tests sort after them, so they start beside the
//! last heavy test instead of taking a turn of their own (BENCHMARKS.md, "End-to-end test
//! time").

mod alert_rules;
mod architecture;
mod cli;
mod collector;
mod dashboards;
mod demo;
mod fleet;
mod hostile;
mod probe;
mod relay_hostile;
mod repair;
mod the_alert_path;
mod webui;
