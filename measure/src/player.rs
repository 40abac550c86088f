//! The virtual player: assembles frames from fragments and plays them the way a live player
//! with a playout buffer would, counting what a viewer would see.
//!
//! - **Start.** The decodable chain starts with the first complete keyframe. The timeline is
//!   anchored on the first *live* frame: the first frame completed by a packet that crossed the
//!   path at its own pace (not a GOP-cache replay, not a retransmission, not a live packet queued
//!   behind a replay; the caller says which). With `offset` = its completion time minus its
//!   capture time, frame `f` is due at `capture(f) + offset + playout_delay`. Frames before the
//!   anchor (the cached GOP) are decoded to reach the live edge but not shown
//!   (`frames_caught_up`), so every viewer has the configured buffer whatever its join time.
//! - **Playing.** At its deadline a frame is rendered if it is complete and decodable: a
//!   keyframe always, a predicted frame only if every earlier frame of its GOP was decoded (no
//!   B-frames, no error concealment). Otherwise, if a later frame has arrived, it is skipped:
//!   `missing` (not complete), `undecodable` (complete but its GOP is broken); a missing video
//!   frame breaks its GOP, and the player needs a keyframe ([`Player::needs_keyframe`]). A
//!   frame of which nothing arrived is due at a capture time interpolated between its
//!   neighbours (frames are evenly spaced).
//! - **Waiting for a repair.** With repair on, a frame still incomplete at its deadline is
//!   waited for up to the repair wait ([`Player::set_repair_wait`], the receiver's NACK retry
//!   interval: an RTT and its variation, so an ask made before the deadline can be answered),
//!   rather than skipped at once: skipping a predicted frame breaks its GOP and costs a
//!   keyframe request and a keyframe, a freeze of an RTT and more, where the repair is often
//!   a few tens of milliseconds late (libwebrtc's frame buffer too waits for an incomplete
//!   frame instead of dropping it). Past the wait the frame is missing as without repair.
//! - **Rebuffering.** If nothing after the frame has arrived, the buffer has run dry: the
//!   player waits for it. When a frame the player waited for completes, late, it resumes once
//!   its buffer holds the playout delay again, at the new offset: at once if the frames that
//!   arrived while it waited (a repair's) already span the playout delay, else the frame is
//!   shown when they would (after a dry buffer: `playout_delay` after the frame arrived). A
//!   lasting delay step is one stall of about the step, not a stall to the end. The offset
//!   never decreases (no catch-up), so a late repair also deepens the buffer for the next.
//! - **Stalls.** A gap between consecutive rendered frames longer than 500 ms is a stall (Agora
//!   RTC SDK); longer than 600 ms, a 600 ms stall (Agora Analytics); at least
//!   max(3 x avg, avg + 150 ms), with avg the mean of the previous 30 gaps and at least 5 of
//!   them, a freeze (W3C webrtc-stats `freezeCount`, libwebrtc's
//!   `kMinFrameSamplesToDetectFreeze`). Stall time is the sum of stall gaps; play time the sum
//!   of the other gaps.
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
/// W3C freeze detection needs at least this many previous frame gaps (libwebrtc
/// `kMinFrameSamplesToDetectFreeze`).
pub const FREEZE_MIN_SAMPLES: usize = 5;
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
    /// Frames of a GOP-cache replay decoded to reach the live edge, not shown.
    pub frames_caught_up: u64,
    /// Fragments of frames too far ahead of playback to track.
    pub fragments_out_of_window: u64,
    /// Times the buffer ran dry and playback resumed at a later offset.
    pub rebuffers: u64,
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
        self.frames_caught_up += o.frames_caught_up;
        self.fragments_out_of_window += o.fragments_out_of_window;
        self.rebuffers += o.rebuffers;
        self.stalls += o.stalls;
        self.stalls_600ms += o.stalls_600ms;
        self.freezes += o.freezes;
        self.stall_time_ns += o.stall_time_ns;
        self.play_time_ns += o.play_time_ns;
        self.freeze_time_ns += o.freeze_time_ns;
    }
}

/// The player's timeline: a frame captured at `capture_ns` (sender's clock) is due at
/// `capture_ns + offset` on the receiver's clock, the offset including the playout delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlayoutClock {
    capture_to_deadline_ns: i128,
}

impl PlayoutClock {
    /// A timeline on which capture time `c` is due at receiver time `c + offset_ns`.
    pub fn from_offset_ns(offset_ns: i128) -> Self {
        PlayoutClock { capture_to_deadline_ns: offset_ns }
    }

    /// When a frame captured at `capture_ns` is due.
    pub fn deadline(&self, capture_ns: u64) -> Time {
        let ns = i128::from(capture_ns) + self.capture_to_deadline_ns;
        Time::from_nanos(ns.clamp(0, i128::from(u64::MAX)) as u64)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    Empty,
    Assembling,
    Complete(Time),
    /// Its deadline has passed (or it was caught up); `decoded` says whether it was.
    Played {
        decoded: bool,
    },
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    frame: u64,
    key: bool,
    frag_count: u16,
    received: u16,
    capture_ns: u64,
    /// Capture time of the newest frame of which anything had arrived when this frame
    /// completed: how much media the buffer held after it then.
    newest_capture_ns: u64,
    state: SlotState,
}

const EMPTY_SLOT: Slot = Slot {
    frame: 0,
    key: false,
    frag_count: 0,
    received: 0,
    capture_ns: 0,
    newest_capture_ns: 0,
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
    /// How long past its deadline an incomplete frame is waited for (zero without repair).
    repair_wait: Duration,
    slots: Vec<Slot>,
    /// The first complete keyframe has arrived: frames from `next_frame` on are tracked.
    started: bool,
    /// Receiver time minus capture time of the timeline (without the playout delay): set by the
    /// first live frame, raised when the player rebuffers.
    offset_ns: Option<i128>,
    first_keyframe: Option<Time>,
    first_render: Option<Time>,
    next_frame: u64,
    /// Highest frame of which a fragment arrived (of frames from `next_frame` on, once
    /// started).
    highest_frame: u64,
    /// The last frame played (its deadline passed) and its capture time.
    last_played: Option<(u64, u64)>,
    /// The next frame's deadline passed with nothing after it: waiting for it.
    waiting: bool,
    gop_ok: bool,
    /// A video frame was lost: a keyframe newer than this frame is needed.
    keyframe_needed_after: Option<u64>,
    last_render: Option<Time>,
    recent_gaps: [u64; FREEZE_AVERAGE_FRAMES],
    recent_len: usize,
    recent_next: usize,
    /// The stream's last frame, once a fragment marked end-of-stream has arrived: nothing is a
    /// stall after it is played (the publisher may linger to answer NACKs before its goodbye).
    end_frame: Option<u64>,
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
            repair_wait: Duration::ZERO,
            slots: vec![EMPTY_SLOT; FRAME_SLOTS],
            started: false,
            offset_ns: None,
            first_keyframe: None,
            first_render: None,
            next_frame: 0,
            highest_frame: 0,
            last_played: None,
            waiting: false,
            gop_ok: false,
            keyframe_needed_after: None,
            end_frame: None,
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

    /// When the first frame was shown, if one has been.
    pub fn first_render(&self) -> Option<Time> {
        self.first_render
    }

    /// The timeline frames are due on, while playing (not before the first live frame, nor
    /// while waiting for a late frame).
    pub fn playout_clock(&self) -> Option<PlayoutClock> {
        let offset = self.offset_ns.filter(|_| !self.waiting)?;
        Some(PlayoutClock::from_offset_ns(offset + self.playout_delay.as_nanos() as i128))
    }

    /// The timeline a repair is of use on: [`Player::playout_clock`] plus the repair wait.
    pub fn repair_clock(&self) -> Option<PlayoutClock> {
        let clock = self.playout_clock()?;
        Some(PlayoutClock::from_offset_ns(
            clock.capture_to_deadline_ns + self.repair_wait.as_nanos() as i128,
        ))
    }

    /// How long past its deadline a frame still incomplete is waited for, for its repair (zero,
    /// the default, without repair).
    pub fn set_repair_wait(&mut self, wait: Duration) {
        self.repair_wait = wait;
    }

    /// Whether the stream's last frame (marked end-of-stream) has been played.
    pub fn ended(&self) -> bool {
        self.end_frame.is_some_and(|end| self.started && self.next_frame > end)
    }

    /// Whether a video frame was lost and no keyframe after it has started arriving.
    pub fn needs_keyframe(&self) -> bool {
        self.keyframe_needed_after.is_some()
    }

    fn index(frame: u64) -> usize {
        (frame % FRAME_SLOTS as u64) as usize
    }

    /// The slot of `frame`, if anything of it is known.
    fn known(&self, frame: u64) -> Option<&Slot> {
        let slot = &self.slots[Self::index(frame)];
        (slot.frame == frame && slot.state != SlotState::Empty).then_some(slot)
    }

    /// Feeds one fragment that arrived at `now` (duplicates must already be filtered out).
    /// `live` says it crossed the path at its own pace: not replayed from a GOP cache, not a
    /// retransmission, not queued behind a replay. Only a frame completed by a live fragment
    /// anchors the timeline.
    pub fn on_fragment(&mut self, now: Time, header: &MediaHeader, live: bool) {
        if !self.medium.accepts(header.kind) {
            return;
        }
        let frame = u64::from(header.frame);
        if header.end_of_stream() {
            self.end_frame = Some(frame);
        }
        let key = header.kind != FrameKind::Predicted;
        if key && self.keyframe_needed_after.is_some_and(|lost| frame > lost) {
            // A newer keyframe is on its way; if it does not make it, it will be lost in turn.
            self.keyframe_needed_after = None;
        }
        if self.started {
            if frame < self.next_frame {
                self.on_late_fragment(header);
                return;
            }
            if frame >= self.next_frame + FRAME_SLOTS as u64 {
                self.counters.fragments_out_of_window += 1;
                return;
            }
            self.waiting = false;
        }
        // Before the start too: frames after the first keyframe may complete before it does
        // (its last fragment repaired late).
        self.highest_frame = self.highest_frame.max(frame);
        let newest_capture_ns = self
            .known(self.highest_frame)
            .map_or(header.capture_ns, |s| s.capture_ns.max(header.capture_ns));
        let slot = &mut self.slots[Self::index(frame)];
        if slot.state == SlotState::Empty || slot.frame != frame {
            *slot = Slot {
                frame,
                key,
                frag_count: header.frag_count,
                received: 0,
                capture_ns: header.capture_ns,
                newest_capture_ns: header.capture_ns,
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
        slot.newest_capture_ns = newest_capture_ns;
        let capture_ns = slot.capture_ns;
        if !self.started {
            if !key {
                return;
            }
            // The decodable chain starts here; earlier frames are not played.
            self.started = true;
            self.first_keyframe = Some(now);
            self.next_frame = frame;
        }
        if self.offset_ns.is_none() && live {
            self.anchor(now, frame, capture_ns);
        }
    }

    /// Starts the timeline on `frame`, completed live at `now`. Frames before it (a GOP-cache
    /// replay) are decoded to reach it, not shown.
    fn anchor(&mut self, now: Time, frame: u64, capture_ns: u64) {
        while self.next_frame < frame {
            let f = self.next_frame;
            match self.known(f).copied() {
                Some(slot) => {
                    let decoded = match slot.state {
                        SlotState::Complete(_) if slot.key || self.gop_ok => {
                            self.counters.frames_caught_up += 1;
                            self.gop_ok = true;
                            true
                        }
                        SlotState::Complete(_) => {
                            self.counters.frames_undecodable += 1;
                            false
                        }
                        _ => {
                            self.lose(f);
                            false
                        }
                    };
                    self.slots[Self::index(f)].state = SlotState::Played { decoded };
                    self.last_played = Some((f, slot.capture_ns));
                }
                None => self.lose(f),
            }
            self.next_frame += 1;
        }
        self.offset_ns = Some(i128::from(now.as_nanos()) - i128::from(capture_ns));
    }

    /// Whether a frame incomplete at `deadline` is still waited for at `now`, for its repair
    /// ([`Player::poll_timeout`] says until when): within the repair wait, and only if it
    /// could be shown (a keyframe, or its GOP is intact so far).
    fn worth_waiting_for(&self, key: bool, now: Time, deadline: Time) -> bool {
        now < deadline + self.repair_wait && (key || self.gop_ok)
    }

    /// A frame not complete by its deadline: missing, and its GOP is broken.
    fn lose(&mut self, frame: u64) {
        self.counters.frames_missing += 1;
        self.gop_ok = false;
        if self.medium == Medium::Video && !self.keyframe_known_after(frame) {
            self.keyframe_needed_after = Some(frame);
        }
    }

    fn keyframe_known_after(&self, frame: u64) -> bool {
        (frame + 1..=self.highest_frame).any(|f| self.known(f).is_some_and(|s| s.key))
    }

    /// A fragment of a frame whose deadline has passed: it may complete the frame, late.
    fn on_late_fragment(&mut self, header: &MediaHeader) {
        let frame = u64::from(header.frame);
        let slot = &mut self.slots[Self::index(frame)];
        if slot.state == SlotState::Empty || slot.frame < frame {
            // Nothing of it had arrived by its deadline.
            *slot = Slot {
                frame,
                key: header.kind != FrameKind::Predicted,
                frag_count: header.frag_count,
                received: 0,
                capture_ns: header.capture_ns,
                newest_capture_ns: header.capture_ns,
                state: SlotState::Played { decoded: false },
            };
        }
        if slot.frame != frame || slot.state != (SlotState::Played { decoded: false }) {
            return;
        }
        slot.received = slot.received.saturating_add(1);
        if slot.received == slot.frag_count {
            self.counters.frames_late += 1;
        }
    }

    fn deadline(&self, offset_ns: i128, capture_ns: u64) -> Time {
        PlayoutClock::from_offset_ns(offset_ns + self.playout_delay.as_nanos() as i128)
            .deadline(capture_ns)
    }

    /// Capture time of the next frame to play: its own if anything of it arrived, else
    /// interpolated between the last played frame and the next known one (`None` if no later
    /// frame has arrived: nothing to play yet).
    fn next_capture(&self) -> Option<u64> {
        let f = self.next_frame;
        if let Some(slot) = self.known(f) {
            return Some(slot.capture_ns);
        }
        let (k, ck) =
            (f + 1..=self.highest_frame).find_map(|k| self.known(k).map(|s| (k, s.capture_ns)))?;
        let Some((a, ca)) = self.last_played else { return Some(ck) };
        let span = i128::from(ck) - i128::from(ca);
        let c = i128::from(ca) + span * i128::from(f - a) / i128::from(k - a);
        Some(c.clamp(i128::from(ca.min(ck)), i128::from(ca.max(ck))) as u64)
    }

    /// When the next frame is due (`None` before the timeline starts, while waiting for a late
    /// frame, or when nothing is left to play).
    pub fn poll_timeout(&self) -> Option<Time> {
        let offset = self.offset_ns.filter(|_| !self.waiting)?;
        let due = self.deadline(offset, self.next_capture()?);
        // An incomplete frame that could still be shown is waited for, for its repair.
        let waits = match self.known(self.next_frame) {
            Some(slot) => {
                !matches!(slot.state, SlotState::Complete(_)) && (slot.key || self.gop_ok)
            }
            None => self.gop_ok,
        };
        Some(if waits { due + self.repair_wait } else { due })
    }

    /// Plays every frame whose deadline is at or before `now`.
    pub fn handle_timeout(&mut self, now: Time) {
        while let Some(offset) = self.offset_ns {
            let f = self.next_frame;
            let Some(capture_ns) = self.next_capture() else { return };
            let deadline = self.deadline(offset, capture_ns);
            if deadline > now {
                return;
            }
            let later_arrived = self.highest_frame > f;
            let slot = self.known(f).copied();
            let decoded = match slot.map(|s| (s.state, s.key)) {
                Some((SlotState::Complete(at), key)) if at <= deadline => {
                    if key || self.gop_ok {
                        self.render(deadline);
                        self.gop_ok = true;
                        true
                    } else {
                        self.counters.frames_undecodable += 1;
                        false
                    }
                }
                Some((SlotState::Complete(at), _))
                    if !later_arrived || at <= deadline + self.repair_wait =>
                {
                    // The player waited for this frame (the buffer ran dry, or its repair was
                    // on the way): resume once the buffer holds the playout delay again.
                    let newest = self.known(f).map_or(capture_ns, |s| s.newest_capture_ns);
                    let held = (i128::from(newest) - i128::from(capture_ns))
                        .clamp(0, self.playout_delay.as_nanos() as i128);
                    let resumed = i128::from(at.as_nanos()) - i128::from(capture_ns) - held;
                    self.offset_ns = Some(offset.max(resumed));
                    self.counters.rebuffers += 1;
                    continue;
                }
                _ if !later_arrived => {
                    self.waiting = true;
                    return;
                }
                Some((SlotState::Assembling, key))
                    if self.worth_waiting_for(key, now, deadline) =>
                {
                    return;
                }
                None if self.worth_waiting_for(false, now, deadline) => return,
                Some((SlotState::Complete(_), _)) => {
                    self.counters.frames_late += 1;
                    self.lose(f);
                    false
                }
                _ => {
                    self.lose(f);
                    false
                }
            };
            if slot.is_some() {
                self.slots[Self::index(f)].state = SlotState::Played { decoded };
            }
            self.last_played = Some((f, capture_ns));
            self.next_frame = f + 1;
        }
    }

    fn render(&mut self, at: Time) {
        self.counters.frames_rendered += 1;
        self.first_render.get_or_insert(at);
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
        if self.recent_len >= FREEZE_MIN_SAMPLES {
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
        if self.ended() {
            return;
        }
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
                p.on_fragment(now, &frame(f, kind, 1, 0), true);
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
        p.on_fragment(Time::from_millis(1), &frame(59, FrameKind::Predicted, 1, 0), true);
        p.on_fragment(Time::from_millis(5), &frame(60, FrameKind::Key, 2, 0), true);
        assert_eq!(p.first_keyframe(), None);
        p.on_fragment(Time::from_millis(9), &frame(60, FrameKind::Key, 2, 1), true);
        assert_eq!(p.first_keyframe(), Some(Time::from_millis(9)));
        assert_eq!(p.poll_timeout(), Some(Time::from_millis(109)));
    }

    #[test]
    fn an_ongoing_stall_is_reported_when_the_window_closes_and_not_counted_twice() {
        let mut p = Player::new(Medium::Video, Duration::ZERO);
        p.on_fragment(Time::ZERO, &frame(0, FrameKind::Key, 1, 0), true);
        p.handle_timeout(Time::ZERO);
        // Nothing more for 2 s: the window closing at 1 s sees a 1 s stall in progress.
        let (c, _) = p.take_window(Time::from_millis(1_000));
        assert_eq!((c.stalls, c.stall_time_ns), (1, 1_000_000_000));
        let f = frame(60, FrameKind::Key, 1, 0); // captured at 2 s
        p.on_fragment(Time::from_nanos(f.capture_ns), &f, true);
        let (c, stalls) = p.take_window(Time::from_nanos(f.capture_ns));
        assert_eq!(c.stalls, 0);
        assert_eq!(c.stall_time_ns, 60 * FRAME_NS - 1_000_000_000);
        assert_eq!(stalls.count(), 1);
        assert_eq!(c.stalls_600ms, 0, "the 600 ms variant was counted in the first window");
    }

    #[test]
    fn after_the_last_frame_of_the_stream_the_wait_for_the_goodbye_is_no_stall() {
        let mut p = Player::new(Medium::Video, Duration::ZERO);
        p.on_fragment(Time::ZERO, &frame(0, FrameKind::Key, 1, 0), true);
        let mut last = frame(1, FrameKind::Predicted, 1, 0);
        last.flags = stallwatch_proto::media::FLAG_END_OF_STREAM;
        p.on_fragment(Time::from_nanos(last.capture_ns), &last, true);
        p.handle_timeout(Time::from_nanos(last.capture_ns));
        assert!(p.ended());
        // The publisher answers NACKs for a second before it says goodbye: nothing renders.
        let (c, _) = p.take_window(Time::from_millis(1_000));
        assert_eq!((c.stalls, c.stall_time_ns, c.frames_rendered), (0, 0, 2));
        let (c, stalls) = p.finish(Time::from_millis(2_000));
        assert_eq!((c.stalls, c.stall_time_ns, stalls.count()), (0, 0, 0));
        assert_eq!(p.poll_timeout(), None);
    }

    #[test]
    fn a_stream_that_stops_without_its_last_frame_still_shows_the_stall() {
        let mut p = Player::new(Medium::Video, Duration::ZERO);
        let mut last = frame(1, FrameKind::Predicted, 1, 0);
        last.flags = stallwatch_proto::media::FLAG_END_OF_STREAM;
        p.on_fragment(Time::ZERO, &frame(0, FrameKind::Key, 1, 0), true);
        p.handle_timeout(Time::ZERO);
        // The end-marked frame is known (a fragment of two) but never completes.
        last.frag_count = 2;
        p.on_fragment(Time::from_millis(10), &last, true);
        assert!(!p.ended());
        let (c, _) = p.take_window(Time::from_millis(1_000));
        assert_eq!(c.stalls, 1);
    }

    #[test]
    fn a_lasting_delay_step_is_one_stall_of_about_the_step_then_playback_goes_on() {
        // Frames arrive in order, 1 s later from frame 50 on, with a 100 ms playout delay.
        // Frame 49 shows at c49 + 110 ms. Frame 50's deadline (c50 + 110 ms) passes with
        // nothing after it: the player waits, and when frame 50 arrives (c50 + 1010 ms) it
        // resumes a playout delay later, at c50 + 1110 ms, on the new offset. One stall of
        // (c50 - c49) + 1000 ms = 1033.3 ms; every frame is shown.
        let mut p = Player::new(Medium::Video, Duration::from_millis(100));
        for f in 0..200u32 {
            let delay = if f < 50 { 10_000_000 } else { 1_010_000_000 };
            let now = Time::from_nanos(u64::from(f) * FRAME_NS + delay);
            p.handle_timeout(now);
            let kind = if f % 60 == 0 { FrameKind::Key } else { FrameKind::Predicted };
            p.on_fragment(now, &frame(f, kind, 1, 0), true);
            p.handle_timeout(now);
        }
        let (c, stalls) = p.finish(Time::from_nanos(200 * FRAME_NS + 1_200_000_000));
        assert_eq!(c.frames_rendered, 200);
        assert_eq!((c.frames_late, c.frames_missing, c.frames_undecodable), (0, 0, 0));
        assert_eq!((c.stalls, c.rebuffers), (1, 1));
        assert_eq!(c.stall_time_ns, FRAME_NS + 1_000_000_000);
        assert_eq!(stalls.sum(), 1_033_333);
        assert_eq!(c.play_time_ns, 198 * FRAME_NS);
        assert!(!p.needs_keyframe());
    }

    #[test]
    fn late_frames_are_counted_once() {
        let mut p = Player::new(Medium::Video, Duration::from_millis(50));
        p.on_fragment(Time::ZERO, &frame(0, FrameKind::Key, 1, 0), true);
        p.on_fragment(Time::from_millis(10), &frame(1, FrameKind::Predicted, 2, 0), true);
        p.on_fragment(Time::from_millis(40), &frame(2, FrameKind::Predicted, 1, 0), true);
        p.handle_timeout(Time::from_millis(200));
        p.on_fragment(Time::from_millis(210), &frame(1, FrameKind::Predicted, 2, 1), true);
        let (c, _) = p.take_window(Time::from_millis(220));
        assert_eq!(c.frames_late, 1);
        assert_eq!(c.frames_missing, 1);
        assert_eq!(c.frames_undecodable, 1);
        assert_eq!(c.frames_rendered, 1);
    }

    #[test]
    fn a_cached_gop_is_caught_up_and_the_timeline_starts_on_the_first_live_frame() {
        // A viewer joins 1 s into a GOP: the relay replays frames 0..=29 (captured 0..967 ms)
        // at once at t = 2 s, then live frame 30 arrives at c30 + 20 ms = 1020 ms... on the
        // viewer's clock 2020 ms (offset 1 s). Nothing is shown before frame 30, which is due
        // a playout delay after it arrived.
        let at = |ms| Time::from_millis(ms);
        let mut p = Player::new(Medium::Video, Duration::from_millis(300));
        for f in 0..30u32 {
            let kind = if f == 0 { FrameKind::Key } else { FrameKind::Predicted };
            p.on_fragment(at(2_000), &frame(f, kind, 1, 0), false);
        }
        assert_eq!(p.first_keyframe(), Some(at(2_000)));
        assert_eq!(p.poll_timeout(), None, "no timeline before a live frame");
        let live = frame(30, FrameKind::Predicted, 1, 0);
        let arrival = Time::from_nanos(live.capture_ns + 1_020_000_000);
        p.on_fragment(arrival, &live, true);
        assert_eq!(p.poll_timeout(), Some(arrival + Duration::from_millis(300)));
        p.handle_timeout(arrival + Duration::from_millis(300));
        assert_eq!(p.first_render(), Some(arrival + Duration::from_millis(300)));
        let c = p.counters();
        assert_eq!((c.frames_caught_up, c.frames_rendered, c.frames_missing), (30, 1, 0));
    }

    #[test]
    fn a_freeze_needs_five_earlier_frame_gaps() {
        // Frames 0, 1, 2 and then 12: the third gap is 10 intervals (333 ms), at least
        // max(3 x 33 ms, 33 + 150 ms), but only two gaps came before it.
        let mut p = Player::new(Medium::Video, Duration::from_millis(100));
        for f in [0u32, 1, 2, 12, 13, 14, 15, 16, 17, 27] {
            let now = Time::from_nanos(u64::from(f) * FRAME_NS + 10_000_000);
            p.handle_timeout(now);
            let kind =
                if f == 0 || f == 12 || f == 27 { FrameKind::Key } else { FrameKind::Predicted };
            p.on_fragment(now, &frame(f, kind, 1, 0), true);
        }
        let (c, _) = p.finish(Time::from_nanos(27 * FRAME_NS + 200_000_000));
        assert_eq!(c.frames_rendered, 10);
        // Only the last gap (17 -> 27), after six gaps, is a freeze.
        assert_eq!((c.freezes, c.freeze_time_ns), (1, 10 * FRAME_NS));
    }

    #[test]
    fn a_lost_video_frame_needs_a_keyframe_until_a_newer_one_arrives() {
        let mut p = Player::new(Medium::Video, Duration::from_millis(100));
        for f in 0..10u32 {
            let now = Time::from_nanos(u64::from(f) * FRAME_NS + 10_000_000);
            p.handle_timeout(now);
            if f != 5 {
                let kind = if f == 0 { FrameKind::Key } else { FrameKind::Predicted };
                p.on_fragment(now, &frame(f, kind, 1, 0), true);
            }
        }
        p.handle_timeout(Time::from_nanos(5 * FRAME_NS + 110_000_000));
        assert!(p.needs_keyframe());
        assert_eq!(p.counters().frames_missing, 1);
        // The first fragment of a newer keyframe is enough: it is on its way.
        p.on_fragment(Time::from_nanos(10 * FRAME_NS), &frame(10, FrameKind::Key, 3, 0), true);
        assert!(!p.needs_keyframe());
        // An audio player never needs one.
        let mut p = Player::new(Medium::Audio, Duration::from_millis(100));
        for n in [0u32, 1, 3] {
            let mut a = frame(n, FrameKind::Audio, 1, 0);
            a.capture_ns = u64::from(n) * 20_000_000;
            p.on_fragment(Time::from_nanos(a.capture_ns), &a, true);
        }
        p.handle_timeout(Time::from_millis(200));
        assert_eq!((p.counters().frames_missing, p.needs_keyframe()), (1, false));
    }

    #[test]
    fn a_first_keyframe_repaired_after_its_gop_still_starts_the_chain() {
        // The replay's keyframe misses a fragment; frames 1 and 2 arrive whole; the missing
        // fragment comes back as a retransmission; live frame 3 anchors the timeline.
        let at = |ms| Time::from_millis(ms);
        let mut p = Player::new(Medium::Video, Duration::from_millis(100));
        p.on_fragment(at(100), &frame(0, FrameKind::Key, 2, 0), false);
        p.on_fragment(at(100), &frame(1, FrameKind::Predicted, 1, 0), false);
        p.on_fragment(at(100), &frame(2, FrameKind::Predicted, 1, 0), false);
        p.on_fragment(at(150), &frame(0, FrameKind::Key, 2, 1), false);
        assert_eq!((p.first_keyframe(), p.poll_timeout()), (Some(at(150)), None));
        let live = frame(3, FrameKind::Predicted, 1, 0);
        p.on_fragment(at(160), &live, true);
        p.handle_timeout(at(260));
        let c = p.counters();
        assert_eq!((c.frames_caught_up, c.frames_rendered, c.frames_missing), (3, 1, 0));
        assert_eq!(p.first_render(), Some(at(260)));
    }
}
