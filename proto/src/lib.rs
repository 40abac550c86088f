//! Wire formats shared by the stallwatch agent and collector.
//!
//! This crate contains no networking code and reads no clock: every time value is a field the
//! caller fills in. Every decoder returns an error, never panics, on any input (see the
//! property tests), because every byte it reads comes from the network.
#![forbid(unsafe_code)]

pub mod catalogue;
#[cfg(feature = "config")]
pub mod config_file;
pub mod control;
pub mod duration;
pub mod hdr;
pub mod identity;
pub mod labels;
pub mod media;
pub mod plan;
pub mod report;

pub use control::{Control, ControlError, ErrorCode, Role, StartAt, is_control};
pub use duration::{DurationError, DurationErrorKind, format_duration, parse_duration};
pub use hdr::{HdrError, HdrLimits};
pub use identity::{AgentIdentity, IdentityError};
pub use media::{FrameKind, MediaError, MediaHeader};
pub use plan::{Plan, PlanError, ProbeMode, ProbePlan, RelayPlan, Repair, Transport};
pub use report::{
    DecodedReport, HistogramData, LabelError, LabelProblem, Report, ReportError, ReportLimits,
    Series, SeriesLabels, decode_report, encode_report,
};
