//! End-to-end and architecture tests: one test binary, a module per area (ripgrep's layout).

mod alert_rules;
mod alerts;
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
mod webui;
