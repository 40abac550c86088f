//! The virtual player: assembles frames from fragments and plays them on a fixed timeline, the
//! way a live player with a fixed playout buffer would, counting what a viewer would see.
//!
//! - Playback starts with the first complete keyframe. With `offset` = its completion time
//!   minus its capture time, frame `f` is due at `capture(f) + offset + playout_delay`.
//! - At its deadline a frame is rendered if it is complete and decodable: a keyframe always,
//!   a predicted frame only if every earlier frame of its GOP was rendered (no B-frames, no
//!   error concealment). Otherwise it is skipped: `missing` (not complete), `undecodable`
//!   (complete but its GOP is broken). A frame completed after its deadline is `late`.
//! - A gap between consecutive rendered frames longer than 500 ms is a stall (Agora RTC
//!   SDK); longer than 600 ms, a 600 ms stall (Agora Analytics); at least
//!   max(3 x avg, avg + 150 ms), with avg the mean of the previous 30 gaps, a freeze (W3C
//!   webrtc-stats `freezeCount`). Stall time is the sum of stall gaps; play time the sum of the
//!   other gaps.
//! - A stall still going on when a window closes is counted in that window, and its time so far
//!   is reported, so a viewer that has stopped receiving anything shows up at once.
//!
//! Memory is bounded: a ring of [`FRAME_SLOTS`] frames and 30 recent gaps.

use std::time::Duration;

use stallwatch_proto::media::{FrameKind, MediaHeader};

use crate::recorder::Recorder;
use crate::time::Time;

/// A gap between rendered frames longer than this is a stall (Agora RTC SDK).
pub const STALL_GAP: Duration = Duration::from_millis(500);
/// The 600 ms stall variant (Agora Analytics).
pub const STALL_GAP_600: Duration = Duration::from_millis(600);
/// W3C freeze detection averages the durations of this many previous frames.
pub const FREEZE_AVERAGE_FRAMES: usize = 30;
/// W3C freeze: a gap of at least avg + this is a freeze (if also at least 3 x avg).
pub const FREEZE_EXTRA: Duration = Duration::from_millis(150);
/// Frames the player tracks at once (17 s of 30 fps video); frames further ahead are dropped.
pub const FRAME_SLOTS: usize = 512;

/// What the player counted in one window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlayerCounters {
    pub frames_rendered: u64,
    /// Frames not complete by their deadline.
    pub frames_missing: u64,
    /// Frames complete by their deadline but not decodable (an earlier frame of the GOP was not).
    pub frames_undecodable: u64,
    /// Frames that became complete after their deadline.
    pub frames_late: u64,
    /// Fragments of frames too far ahead of playback to track.
    pub fragments_out_of_window: u64,
    pub stalls: u64,
    pub stalls_600ms: u64,
    pub freezes: u64,
    pub stall_time_ns: u64,
    pub play_time_ns: u64,
    pub freeze_time_ns: u64,
}

impl std::ops::AddAssign<&PlayerCounters> for PlayerCounters {
    fn add_assign(&mut self, o: &PlayerCounters) {
        self.frames_rendered += o.frames_rendered;
        self.frames_missing += o.frames_missing;
        self.frames_undecodable += o.frames_undecodable;
        self.frames_late += o.frames_late;
        self.fragments_out_of_window += o.fragments_out_of_window;
        self.stalls += o.stalls;
        self.stalls_600ms += o.stalls_600ms;
        self.freezes += o.freezes;
        self.stall_time_ns += o.stall_time_ns;
        self.play_time_ns += o.play_time_ns;
        self.freeze_time_ns += o.freeze_time_ns;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    Empty,
    Assembling,
    Complete(Time),
    /// Its deadline has passed; `rendered` says whether it was shown.
    Played {
        rendered: bool,
    },
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    frame: u64,
    key: bool,
    frag_count: u16,
    received: u16,
    capture_ns: u64,
    state: SlotState,
}

const EMPTY_SLOT: Slot = Slot {
    frame: 0,
    key: false,
    frag_count: 0,
    received: 0,
    capture_ns: 0,
    state: SlotState::Empty,
};

/// Which medium drives the player: video frames, or audio packets for an audio-only stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Medium {
    #[default]
    Video,
    Audio,
}

impl Medium {
    fn accepts(self, kind: FrameKind) -> bool {
        match self {
            Medium::Video => kind.is_video(),
            Medium::Audio => kind == FrameKind::Audio,
        }
    }
}

/// The virtual player of one stream.
#[derive(Debug, Clone)]
pub struct Player {
    medium: Medium,
    playout_delay: Duration,
    slots: Vec<Slot>,
    /// Receiver time minus capture time, set by the first complete keyframe.
    offset_ns: Option<i128>,
    first_keyframe: Option<Time>,
    next_frame: u64,
    highest_frame: u64,
    gop_ok: bool,
    last_render: Option<Time>,
    recent_gaps: [u64; FREEZE_AVERAGE_FRAMES],
    recent_len: usize,
    recent_next: usize,
    /// A stall in progress already counted at a window boundary, and its time reported so far.
    open_stall_reported_ns: Option<u64>,
    open_stall_600_counted: bool,
    counters: PlayerCounters,
    stall_durations: Recorder,
}

impl Player {
    pub fn new(medium: Medium, playout_delay: Duration) -> Self {
        Player {
            medium,
            playout_delay,
            slots: vec![EMPTY_SLOT; FRAME_SLOTS],
            offset_ns: None,
            first_keyframe: None,
            next_frame: 0,
            highest_frame: 0,
            gop_ok: false,
            last_render: None,
            recent_gaps: [0; FREEZE_AVERAGE_FRAMES],
            recent_len: 0,
            recent_next: 0,
            open_stall_reported_ns: None,
            open_stall_600_counted: false,
            counters: PlayerCounters::default(),
            stall_durations: Recorder::new(),
        }
    }

    /// When the first keyframe became complete, if it has.
    pub fn first_keyframe(&self) -> Option<Time> {
        self.first_keyframe
    }

    /// Feeds one fragment that arrived at `now` (duplicates must already be filtered out).
    pub fn on_fragment(&mut self, now: Time, header: &MediaHeader) {
        if !self.medium.accepts(header.kind) {
            return;
        }
        let frame = u64::from(header.frame);
        if self.offset_ns.is_some() {
            if frame < self.next_frame {
                self.on_late_fragment(header);
                return;
            }
            if frame >= self.next_frame + FRAME_SLOTS as u64 {
                self.counters.fragments_out_of_window += 1;
                return;
            }
        }
        let slot = &mut self.slots[(frame % FRAME_SLOTS as u64) as usize];
        if slot.state == SlotState::Empty || slot.frame != frame {
            *slot = Slot {
                frame,
                key: header.kind != FrameKind::Predicted,
                frag_count: header.frag_count,
                received: 0,
                capture_ns: header.capture_ns,
                state: SlotState::Assembling,
            };
        }
        if slot.state != SlotState::Assembling {
            return;
        }
        slot.received += 1;
        if slot.received < slot.frag_count {
            return;
        }
        slot.state = SlotState::Complete(now);
        let (key, capture_ns) = (slot.key, slot.capture_ns);
        if self.offset_ns.is_none() {
            if key {
                // Playback starts here; earlier frames are not played.
                self.offset_ns = Some(i128::from(now.as_nanos()) - i128::from(capture_ns));
                self.first_keyframe = Some(now);
                self.next_frame = frame;
                self.highest_frame = frame;
            }
            return;
        }
        self.highest_frame = self.highest_frame.max(frame);
    }

    /// A fragment of a frame whose deadline has passed: it may complete the frame, late.
    fn on_late_fragment(&mut self, header: &MediaHeader) {
        let frame = u64::from(header.frame);
        let slot = &mut self.slots[(frame % FRAME_SLOTS as u64) as usize];
        if slot.state == SlotState::Empty || slot.frame < frame {
            // Nothing of it had arrived by its deadline.
            *slot = Slot {
                frame,
                key: header.kind != FrameKind::Predicted,
                frag_count: header.frag_count,
                received: 0,
                capture_ns: header.capture_ns,
                state: SlotState::Played { rendered: false },
            };
        }
        if slot.frame != frame || slot.state != (SlotState::Played { rendered: false }) {
            return;
        }
        slot.received = slot.received.saturating_add(1);
        if slot.received == slot.frag_count {
            self.counters.frames_late += 1;
        }
    }

    fn deadline(&self, slot: &Slot) -> Time {
        let offset = self.offset_ns.unwrap_or(0);
        let ns = i128::from(slot.capture_ns) + offset + self.playout_delay.as_nanos() as i128;
        Time::from_nanos(ns.clamp(0, i128::from(u64::MAX)) as u64)
    }

    /// The next frame the player knows of, at or after `next_frame`.
    fn next_known(&self) -> Option<(u64, Time)> {
        self.offset_ns?;
        (self.next_frame..=self.highest_frame).find_map(|f| {
            let slot = &self.slots[(f % FRAME_SLOTS as u64) as usize];
            (slot.frame == f && slot.state != SlotState::Empty).then(|| (f, self.deadline(slot)))
        })
    }

    /// When the next known frame is due.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.next_known().map(|(_, deadline)| deadline)
    }

    /// Plays every frame whose deadline is at or before `now`.
    pub fn handle_timeout(&mut self, now: Time) {
        while let Some((frame, deadline)) = self.next_known().filter(|&(_, d)| d <= now) {
            // Frames between the last played one and this one never arrived at all.
            let never_arrived = frame - self.next_frame;
            if never_arrived > 0 {
                self.counters.frames_missing += never_arrived;
                self.gop_ok = false;
            }
            let index = (frame % FRAME_SLOTS as u64) as usize;
            let slot = self.slots[index];
            let rendered = match slot.state {
                SlotState::Complete(at) if at <= deadline && (slot.key || self.gop_ok) => {
                    self.render(deadline);
                    if slot.key {
                        self.gop_ok = true;
                    }
                    true
                }
                SlotState::Complete(at) if at <= deadline => {
                    self.counters.frames_undecodable += 1;
                    false
                }
                SlotState::Complete(_) => {
                    // Completed after its deadline (seen only now): late, and so missing.
                    self.counters.frames_late += 1;
                    self.counters.frames_missing += 1;
                    self.gop_ok = false;
                    false
                }
                _ => {
                    self.counters.frames_missing += 1;
                    self.gop_ok = false;
                    false
                }
            };
            self.slots[index].state = SlotState::Played { rendered };
            self.next_frame = frame + 1;
        }
    }

    fn render(&mut self, at: Time) {
        self.counters.frames_rendered += 1;
        if let Some(last) = self.last_render.replace(at) {
            self.account_gap(at.saturating_since(last));
        }
    }

    fn account_gap(&mut self, gap: Duration) {
        let gap_ns = gap.as_nanos() as u64;
        let c = &mut self.counters;
        if let Some(reported) = self.open_stall_reported_ns.take() {
            // Counted when a window closed during it; add the rest of its time.
            c.stall_time_ns += gap_ns.saturating_sub(reported);
            self.stall_durations.record_nanos_as_micros(gap_ns);
            if gap > STALL_GAP_600 && !self.open_stall_600_counted {
                c.stalls_600ms += 1;
            }
        } else if gap > STALL_GAP {
            c.stalls += 1;
            c.stall_time_ns += gap_ns;
            self.stall_durations.record_nanos_as_micros(gap_ns);
            if gap > STALL_GAP_600 {
                c.stalls_600ms += 1;
            }
        } else {
            c.play_time_ns += gap_ns;
        }
        self.open_stall_600_counted = false;
        if self.recent_len > 0 {
            let avg =
                self.recent_gaps[..self.recent_len].iter().sum::<u64>() / self.recent_len as u64;
            let threshold = (3 * avg).max(avg + FREEZE_EXTRA.as_nanos() as u64);
            if gap_ns >= threshold {
                c.freezes += 1;
                c.freeze_time_ns += gap_ns;
            }
        }
        self.recent_gaps[self.recent_next] = gap_ns;
        self.recent_next = (self.recent_next + 1) % FREEZE_AVERAGE_FRAMES;
        self.recent_len = (self.recent_len + 1).min(FREEZE_AVERAGE_FRAMES);
    }

    /// Counts a stall in progress at `now` (nothing rendered for more than 500 ms), reporting its
    /// time so far; the rest is added when it ends.
    fn account_open_stall(&mut self, now: Time) {
        let Some(last) = self.last_render else { return };
        let gap = now.saturating_since(last);
        if gap <= STALL_GAP {
            return;
        }
        let gap_ns = gap.as_nanos() as u64;
        let reported = match self.open_stall_reported_ns {
            Some(reported) => reported,
            None => {
                self.counters.stalls += 1;
                0
            }
        };
        self.counters.stall_time_ns += gap_ns.saturating_sub(reported);
        self.open_stall_reported_ns = Some(gap_ns.max(reported));
        if gap > STALL_GAP_600 && !self.open_stall_600_counted {
            self.counters.stalls_600ms += 1;
            self.open_stall_600_counted = true;
        }
    }

    /// Ends playback at `now`: plays what is due and counts a stall in progress, recording its
    /// duration so far. Returns the last window like [`Player::take_window`].
    pub fn finish(&mut self, now: Time) -> (PlayerCounters, Recorder) {
        self.handle_timeout(now);
        self.account_open_stall(now);
        if let Some(reported) = self.open_stall_reported_ns.take() {
            self.stall_durations.record_nanos_as_micros(reported);
        }
        (std::mem::take(&mut self.counters), self.stall_durations.take())
    }

    /// Counters so far in this window.
    pub fn counters(&self) -> &PlayerCounters {
        &self.counters
    }

    /// Closes a window at `now`: plays what is due, counts a stall in progress, and returns the
    /// window's counters and stall durations (µs; a stall is recorded when it ends).
    pub fn take_window(&mut self, now: Time) -> (PlayerCounters, Recorder) {
        self.handle_timeout(now);
        self.account_open_stall(now);
        (std::mem::take(&mut self.counters), self.stall_durations.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME_NS: u64 = 33_333_333;

    fn frame(n: u32, kind: FrameKind, frags: u16, index: u16) -> MediaHeader {
        MediaHeader {
            kind,
            flags: 0,
            frag_index: index,
            frag_count: frags,
            stream_id: 1,
            payload_len: 1000,
            seq: 0,
            frame: n,
            gop: n / 60,
            capture_ns: u64::from(n) * FRAME_NS,
            send_ns: u64::from(n) * FRAME_NS,
        }
    }

    /// Delivers frames 0..n (single fragment each, keyframe every 60) with a fixed 10 ms delay,
    /// skipping those in `skip`, and plays them up to the end.
    fn play(n: u32, skip: impl Fn(u32) -> bool) -> PlayerCounters {
        let mut p = Player::new(Medium::Video, Duration::from_millis(100));
        for f in 0..n {
            let now = Time::from_nanos(u64::from(f) * FRAME_NS + 10_000_000);
            p.handle_timeout(now);
            if !skip(f) {
                let kind = if f % 60 == 0 { FrameKind::Key } else { FrameKind::Predicted };
                p.on_fragment(now, &frame(f, kind, 1, 0));
            }
        }
        let end = Time::from_nanos(u64::from(n) * FRAME_NS + 200_000_000);
        p.take_window(end).0
    }

    #[test]
    fn a_clean_stream_renders_every_frame_without_stalls() {
        let c = play(300, |_| false);
        assert_eq!(c.frames_rendered, 300);
        assert_eq!((c.stalls, c.freezes, c.frames_missing), (0, 0, 0));
        assert_eq!(c.play_time_ns, 299 * FRAME_NS);
    }

    #[test]
    fn a_lost_frame_breaks_its_gop_until_the_next_keyframe() {
        // Frame 100 is lost: 101..119 are undecodable, 120 (a keyframe) renders.
        let c = play(300, |f| f == 100);
        assert_eq!(c.frames_missing, 1);
        assert_eq!(c.frames_undecodable, 19);
        assert_eq!(c.frames_rendered, 280);
        // The gap from frame 99 to frame 120 is 21 frame intervals = 700 ms: one stall of both kinds.
        assert_eq!(c.stalls, 1);
        assert_eq!(c.stalls_600ms, 1);
        assert_eq!(c.stall_time_ns, 21 * FRAME_NS);
        assert_eq!(c.freezes, 1);
        assert_eq!(c.play_time_ns + c.stall_time_ns, 299 * FRAME_NS);
    }

    #[test]
    fn a_short_gap_is_a_freeze_but_not_a_stall() {
        // Lose the last ten frames before a keyframe, so nothing after them is undecodable.
        let c = play(300, |f| (170..180).contains(&f));
        // Gap from 169 to 180 is 11 intervals = 367 ms: a W3C freeze, not a stall.
        assert_eq!(c.frames_missing, 10);
        assert_eq!(c.stalls, 0);
        assert_eq!(c.freezes, 1);
        assert_eq!(c.freeze_time_ns, 11 * FRAME_NS);
    }

    #[test]
    fn playback_starts_with_the_first_complete_keyframe() {
        let mut p = Player::new(Medium::Video, Duration::from_millis(100));
        // A P frame first (ignored), then a keyframe in two fragments.
        p.on_fragment(Time::from_millis(1), &frame(59, FrameKind::Predicted, 1, 0));
        p.on_fragment(Time::from_millis(5), &frame(60, FrameKind::Key, 2, 0));
        assert_eq!(p.first_keyframe(), None);
        p.on_fragment(Time::from_millis(9), &frame(60, FrameKind::Key, 2, 1));
        assert_eq!(p.first_keyframe(), Some(Time::from_millis(9)));
        assert_eq!(p.poll_timeout(), Some(Time::from_millis(109)));
    }

    #[test]
    fn an_ongoing_stall_is_reported_when_the_window_closes_and_not_counted_twice() {
        let mut p = Player::new(Medium::Video, Duration::ZERO);
        p.on_fragment(Time::ZERO, &frame(0, FrameKind::Key, 1, 0));
        p.handle_timeout(Time::ZERO);
        // Nothing more for 2 s: the window closing at 1 s sees a 1 s stall in progress.
        let (c, _) = p.take_window(Time::from_millis(1_000));
        assert_eq!((c.stalls, c.stall_time_ns), (1, 1_000_000_000));
        let f = frame(60, FrameKind::Key, 1, 0); // captured at 2 s
        p.on_fragment(Time::from_nanos(f.capture_ns), &f);
        let (c, stalls) = p.take_window(Time::from_nanos(f.capture_ns));
        assert_eq!(c.stalls, 0);
        assert_eq!(c.stall_time_ns, 60 * FRAME_NS - 1_000_000_000);
        assert_eq!(stalls.count(), 1);
        assert_eq!(c.stalls_600ms, 0, "the 600 ms variant was counted in the first window");
    }

    #[test]
    fn a_frame_completing_after_its_deadline_is_late_not_rendered() {
        // Frames arrive in order but 1 s late from frame 50 on, with a 100 ms playout delay:
        // each completes before the player looks at it, yet after its deadline.
        let mut p = Player::new(Medium::Video, Duration::from_millis(100));
        for f in 0..200u32 {
            let delay = if f < 50 { 10_000_000 } else { 1_010_000_000 };
            let now = Time::from_nanos(u64::from(f) * FRAME_NS + delay);
            let kind = if f % 60 == 0 { FrameKind::Key } else { FrameKind::Predicted };
            p.on_fragment(now, &frame(f, kind, 1, 0));
            p.handle_timeout(now);
        }
        let (c, _) = p.finish(Time::from_nanos(200 * FRAME_NS + 1_200_000_000));
        assert_eq!(c.frames_rendered, 50);
        assert_eq!(c.frames_late, 150);
        assert_eq!(c.frames_missing, 150);
        // Nothing rendered after frame 49: one stall, open at the end, recorded by finish.
        assert_eq!(c.stalls, 1);
        assert!(c.stall_time_ns > 6_000_000_000);
    }

    #[test]
    fn late_frames_are_counted_once() {
        let mut p = Player::new(Medium::Video, Duration::from_millis(50));
        p.on_fragment(Time::ZERO, &frame(0, FrameKind::Key, 1, 0));
        p.on_fragment(Time::from_millis(10), &frame(1, FrameKind::Predicted, 2, 0));
        p.on_fragment(Time::from_millis(40), &frame(2, FrameKind::Predicted, 1, 0));
        p.handle_timeout(Time::from_millis(200));
        p.on_fragment(Time::from_millis(210), &frame(1, FrameKind::Predicted, 2, 1));
        let (c, _) = p.take_window(Time::from_millis(220));
        assert_eq!(c.frames_late, 1);
        assert_eq!(c.frames_missing, 1);
        assert_eq!(c.frames_undecodable, 1);
        assert_eq!(c.frames_rendered, 1);
    }
}
