//! stallwatch's sans-IO measurement core.
//!
//! Like `quinn-proto`, this crate contains no networking code and does not read any clock:
//! every entry point takes `now`, so the same code runs in the agent and, deterministically,
//! under virtual time in tests and the link simulator.
//!
//! - [`profile`] and [`pacer`]: the sender's schedule of frames and packets.
//! - [`receiver`]: every receive-side metric, built on [`sequence`] (loss, reordering,
//!   bursts) and [`player`] (first frame, stalls, freezes, rebuffering), with [`noise`] (the
//!   self-noise guard).
//! - [`repair`]: NACK scheduling, send history and retransmission, keyframe requests.
//! - [`link`]: a userspace network emulator (delay, jitter, loss, bursts, rate, reordering).
//! - [`sim`]: publisher -> link -> receiver, and feedback back over a second link, under
//!   virtual time, for tests, `simulate` and benchmarks.
#![forbid(unsafe_code)]

pub mod link;
pub mod noise;
pub mod pacer;
pub mod player;
pub mod profile;
pub mod receiver;
pub mod recorder;
pub mod repair;
pub mod report;
pub mod sequence;
pub mod sim;
pub mod time;

pub use pacer::{Pacer, Packetizer, ScheduledFrame};
pub use profile::StreamProfile;
pub use receiver::{FirstFrame, Phase, Receiver, ReceiverConfig, RepairCounters, WindowMetrics};
pub use recorder::Recorder;
pub use repair::{Feedback, Nack, Repair};
pub use time::Time;
