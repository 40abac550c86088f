//! stallwatch's sans-IO measurement core.
//!
//! Like `quinn-proto`, this crate contains no networking code and does not read any clock:
//! every entry point takes `now`, so the same code runs in the agent and, deterministically,
//! under virtual time in tests and the link simulator.
#![forbid(unsafe_code)]

pub mod link;
pub mod time;

pub use time::Time;
