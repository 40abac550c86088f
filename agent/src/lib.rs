//! The stallwatch agent: publishes and views synthetic live streams and measures what a viewer
//! would feel. The measurement itself lives in the sans-IO `stallwatch-measure` crate; this
//! crate adds the network, the CLI and the output around it.

pub mod clock;
pub mod impair;
pub mod lateness;
pub mod probe;
pub mod relay;
pub mod report;
pub mod run;
pub mod simulate;
pub mod summary;
pub mod tls;
pub mod transport;
