//! The relay as the probes see it: in-process relays on loopback, driven by a minimal client
//! that speaks docs/protocol.md with quinn and a plain UDP socket.
#![allow(clippy::disallowed_methods, reason = "test deadlines read the clock")]

#[path = "relay_protocol/support.rs"]
mod support;

#[path = "relay_protocol/quic.rs"]
mod quic;

#[path = "relay_protocol/udp.rs"]
mod udp;

#[path = "relay_protocol/binary.rs"]
mod binary;

#[path = "relay_protocol/load.rs"]
mod load;
