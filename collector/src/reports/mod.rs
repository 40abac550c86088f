//! Regional reports for customer-success managers (DESIGN.md section 8): per region and
//! period, the headline figures against the SLO and the previous period, breakdowns by network
//! type, transport and target, distributions, an hour-of-day heatmap in the region's local
//! time, incidents, recommendations drawn from rules over the data, definitions and what the
//! support team knows about the market. HTML (self-contained), Markdown, CSV or JSON, in
//! English or Chinese.
//!
//! Layout:
//! - `config.rs`: `[reports]` in the collector configuration (region knowledge).
//! - `zone.rs`: region time zones.
//! - `data.rs`: reading the history store and adding it up exactly (the only store reads).
//! - `incidents.rs`: the incident type and its source (the only incident reads).
//! - `report.rs`: the report value and [`build`]; `recommend.rs`: the rules.
//! - `i18n.rs`: texts in both languages; `render/`: one file per format.
//! - `seed/`: `seed-history`, a deterministic history generator.
//! - `cli.rs`: the `report` and `seed-history` commands.
//!
//! **Invariant:** every figure comes from counters summed and HDR histograms merged over the
//! stored rows, never from averaging quantiles or ratios.

pub mod cli;
pub mod config;
pub mod data;
pub mod i18n;
pub mod incidents;
pub mod recommend;
pub mod render;
pub mod report;
pub mod seed;
pub mod zone;

pub(crate) use config::check as check_config;
pub use config::{KnownIssue, RegionSettings, ReportsSection};
pub use i18n::Lang;
pub use incidents::{AlertState, Incident, IncidentError, IncidentFile, IncidentSource, Level};
pub use render::{Format, render};
pub use report::{Report, ReportError, ReportRequest, build};
