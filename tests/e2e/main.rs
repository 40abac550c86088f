//! End-to-end and architecture tests: one test binary, a module per area (ripgrep's layout).

mod architecture;
mod cli;
mod collector;
mod dashboards;
mod demo;
mod fleet;
mod probe;
