//! stallwatch's sans-IO measurement core.
//!
//! Like `quinn-proto`, this crate contains no networking code and does not read any clock:
//! every entry point takes `now`, so the same code runs in the agent and, deterministically,
//! under virtual time in tests and the link simulator.
//!
//! - [`profile`] and [`pacer`]: the sender's schedule of frames and packets.
//! - [`receiver`]: every receive-side metric, built on [`sequence`] (loss, reordering,
//!   bursts) and [`player`] (first frame, stalls, freezes).
//! - [`link`]: a userspace network emulator (delay, jitter, loss, bursts, rate, reordering).
//! - [`sim`]: publisher -> link -> receiver under virtual time, for tests and benchmarks.
#![forbid(unsafe_code)]

pub mod link;
pub mod pacer;
pub mod player;
pub mod profile;
pub mod receiver;
pub mod recorder;
pub mod report;
pub mod sequence;
pub mod sim;
pub mod time;

pub use pacer::{Pacer, Packetizer, ScheduledFrame};
pub use profile::StreamProfile;
pub use receiver::{Phase, Receiver, ReceiverConfig, WindowMetrics};
pub use recorder::Recorder;
pub use time::Time;
