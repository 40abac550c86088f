//! Wire formats shared by the stallwatch agent and collector.
//!
//! This crate contains no networking code and reads no clock: every time value is a field the
//! caller fills in. Every decoder returns an error, never panics, on any input (see the
//! property tests), because every byte it reads comes from the network.
#![forbid(unsafe_code)]

pub mod control;
pub mod hdr;
pub mod media;
pub mod plan;
pub mod report;

pub use media::{FrameKind, MediaHeader, MediaError};
