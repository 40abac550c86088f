//! Sender side: turns a [`StreamProfile`] into a schedule of frames, and frames into packets.
//!
//! The pacer never sleeps: the caller asks [`Pacer::poll_timeout`] when the next frame is due,
//! waits however it likes, then drains [`Pacer::poll_frame`] with the current time. A keyframe
//! request ([`Pacer::request_keyframe`]) makes the next video frame a keyframe that starts a
//! new GOP, as an encoder answers a PLI; the next scheduled keyframe is then a GOP later.
//! Requests less than [`MIN_KEYFRAME_REQUEST_INTERVAL`] after the last one honoured are
//! ignored, as libwebrtc's sender does: several viewers asking at once make one keyframe.

use std::time::Duration;

use stallwatch_proto::media::{FLAG_END_OF_STREAM, FrameKind, MEDIA_HEADER_LEN, MediaHeader};

use crate::profile::StreamProfile;
use crate::time::Time;

/// A keyframe request this soon after the last one honoured is ignored (libwebrtc
/// `EncoderRtcpFeedback`'s `kMinKeyframeSendIntervalMs`).
pub const MIN_KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(300);

/// One frame (or audio packet) the sender must emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduledFrame {
    pub kind: FrameKind,
    /// Video frame number or audio packet number, counted from 0 per medium.
    pub frame: u32,
    /// The video GOP this frame belongs to (audio: the GOP being sent at the time).
    pub gop: u32,
    /// When the frame is due, i.e. its capture time.
    pub due: Time,
    /// Frame size in bytes, before fragmentation.
    pub size: u32,
    /// The last frame of its medium: the stream ends after it ([`Pacer::poll_frame_before`]).
    pub last: bool,
}

/// Schedules the frames of one stream from a start time.
#[derive(Debug, Clone)]
pub struct Pacer {
    profile: StreamProfile,
    start: Time,
    next_video: u64,
    next_audio: u64,
    /// First frame of the current GOP, and its number.
    gop_start: u64,
    gop: u32,
    keyframe_requested: bool,
    last_request_honoured: Option<Time>,
}

impl Pacer {
    /// A pacer whose first frame (a keyframe) is due at `start`.
    pub fn new(profile: StreamProfile, start: Time) -> Self {
        Pacer {
            profile,
            start,
            next_video: 0,
            next_audio: 0,
            gop_start: 0,
            gop: 0,
            keyframe_requested: false,
            last_request_honoured: None,
        }
    }

    /// A keyframe request (RFC 4585 PLI) at `now`: the next video frame is a keyframe starting
    /// a new GOP, unless a request was honoured less than [`MIN_KEYFRAME_REQUEST_INTERVAL`]
    /// ago. Returns whether it was honoured.
    pub fn request_keyframe(&mut self, now: Time) -> bool {
        if self.last_request_honoured.is_some_and(|t| now < t + MIN_KEYFRAME_REQUEST_INTERVAL) {
            return false;
        }
        self.last_request_honoured = Some(now);
        self.keyframe_requested = true;
        true
    }

    /// The profile being paced.
    pub fn profile(&self) -> &StreamProfile {
        &self.profile
    }

    fn video_due(&self, n: u64) -> Option<Time> {
        let fps = u64::from(self.profile.fps);
        (fps > 0).then(|| self.start + Duration::from_nanos(n * 1_000_000_000 / fps))
    }

    fn audio_due(&self, n: u64) -> Option<Time> {
        let pps = u64::from(self.profile.audio_pps);
        (pps > 0).then(|| self.start + Duration::from_nanos(n * 1_000_000_000 / pps))
    }

    /// Like [`Pacer::poll_frame`] for a stream that ends at `end`: a frame whose medium has no
    /// frame due before `end` after it is marked [`ScheduledFrame::last`]. Frames due at or
    /// after `end` are not sent.
    pub fn poll_frame_before(&mut self, now: Time, end: Time) -> Option<ScheduledFrame> {
        let before_end = Time::from_nanos(end.as_nanos().saturating_sub(1));
        let mut frame = self.poll_frame(now.min(before_end))?;
        let next = match frame.kind {
            FrameKind::Audio => self.audio_due(self.next_audio),
            _ => self.video_due(self.next_video),
        };
        frame.last = next.is_none_or(|t| t >= end);
        Some(frame)
    }

    /// When the next frame is due; `None` for an empty profile.
    pub fn poll_timeout(&self) -> Option<Time> {
        match (self.video_due(self.next_video), self.audio_due(self.next_audio)) {
            (Some(v), Some(a)) => Some(v.min(a)),
            (v, a) => v.or(a),
        }
    }

    /// The next frame due at or before `now`, in due order (video first on a tie).
    pub fn poll_frame(&mut self, now: Time) -> Option<ScheduledFrame> {
        let video = self.video_due(self.next_video).filter(|&t| t <= now);
        let audio = self.audio_due(self.next_audio).filter(|&t| t <= now);
        let gop_frames = u64::from(self.profile.gop_frames.max(1));
        match (video, audio) {
            (Some(v), a) if a.is_none_or(|a| v <= a) => {
                let n = self.next_video;
                self.next_video += 1;
                let scheduled = (n - self.gop_start).is_multiple_of(gop_frames);
                let key = scheduled || self.keyframe_requested;
                if key {
                    self.keyframe_requested = false;
                    if n > 0 {
                        self.gop += 1;
                    }
                    self.gop_start = n;
                }
                Some(ScheduledFrame {
                    kind: if key { FrameKind::Key } else { FrameKind::Predicted },
                    frame: n as u32,
                    gop: self.gop,
                    due: v,
                    size: if key {
                        self.profile.key_frame_bytes()
                    } else {
                        self.profile.predicted_frame_bytes()
                    },
                    last: false,
                })
            }
            (_, Some(a)) => {
                let n = self.next_audio;
                self.next_audio += 1;
                Some(ScheduledFrame {
                    kind: FrameKind::Audio,
                    frame: n as u32,
                    gop: self.gop,
                    due: a,
                    size: self.profile.audio_packet_bytes(),
                    last: false,
                })
            }
            _ => None,
        }
    }
}

/// Splits a frame of `size` bytes into fragments whose payload is at most `max_payload`
/// bytes. Returns the payload length of each fragment; every fragment but the last is full.
///
/// A zero-byte frame is one empty fragment. `max_payload` below 1 is treated as 1, and the
/// count is capped at `u16::MAX` by growing the fragment size, so the header always fits.
pub fn fragment_sizes(size: u32, max_payload: usize) -> impl Iterator<Item = u32> {
    let size = size as usize;
    let mut chunk = max_payload.max(1);
    if size.div_ceil(chunk) > usize::from(u16::MAX) {
        chunk = size.div_ceil(usize::from(u16::MAX));
    }
    let count = size.div_ceil(chunk).max(1);
    (0..count).map(move |i| (size - i * chunk).min(chunk) as u32)
}

/// Largest payload that fits in a datagram of `max_datagram` bytes after the media header.
pub fn max_payload(max_datagram: usize) -> usize {
    max_datagram.saturating_sub(MEDIA_HEADER_LEN).max(1)
}

/// Numbers the packets of one stream: turns scheduled frames into media headers.
#[derive(Debug, Clone)]
pub struct Packetizer {
    stream_id: u32,
    next_seq: u64,
}

impl Packetizer {
    pub fn new(stream_id: u32) -> Self {
        Packetizer { stream_id, next_seq: 0 }
    }

    /// Sequence number the next packet will carry.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Headers for every fragment of `frame`, with consecutive sequence numbers.
    ///
    /// `capture_ns` is the sender's wall-clock time for `frame.due`. `send_ns` is left equal to
    /// it; the transport overwrites it with the real send time just before each packet leaves.
    pub fn packetize(
        &mut self,
        frame: &ScheduledFrame,
        capture_ns: u64,
        max_payload: usize,
    ) -> Vec<MediaHeader> {
        let sizes: Vec<u32> = fragment_sizes(frame.size, max_payload).collect();
        let count = sizes.len() as u16;
        sizes
            .into_iter()
            .enumerate()
            .map(|(i, payload_len)| {
                let seq = self.next_seq;
                self.next_seq += 1;
                MediaHeader {
                    kind: frame.kind,
                    flags: if frame.last { FLAG_END_OF_STREAM } else { 0 },
                    frag_index: i as u16,
                    frag_count: count,
                    stream_id: self.stream_id,
                    payload_len,
                    seq,
                    frame: frame.frame,
                    gop: frame.gop,
                    capture_ns,
                    send_ns: capture_ns,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(pacer: &mut Pacer, until: Time) -> Vec<ScheduledFrame> {
        std::iter::from_fn(|| pacer.poll_frame(until)).collect()
    }

    #[test]
    fn one_second_of_720p30_has_30_frames_50_audio_packets_and_one_keyframe() {
        let mut pacer = Pacer::new("720p30".parse().unwrap(), Time::ZERO);
        let frames = drain(&mut pacer, Time::from_nanos(999_999_999));
        let video: Vec<_> = frames.iter().filter(|f| f.kind.is_video()).collect();
        assert_eq!(video.len(), 30);
        assert_eq!(frames.len() - video.len(), 50);
        assert_eq!(video.iter().filter(|f| f.kind == FrameKind::Key).count(), 1);
        assert_eq!(video[1].due, Time::from_nanos(33_333_333));
        // Frames come out in due order.
        assert!(frames.windows(2).all(|w| w[0].due <= w[1].due));
        assert_eq!(pacer.poll_timeout(), Some(Time::from_nanos(1_000_000_000)));
    }

    #[test]
    fn keyframes_start_every_gop() {
        let mut pacer = Pacer::new("360p15".parse().unwrap(), Time::ZERO);
        let frames = drain(&mut pacer, Time::from_millis(6_000));
        let keys: Vec<u32> =
            frames.iter().filter(|f| f.kind == FrameKind::Key).map(|f| f.frame).collect();
        assert_eq!(keys, vec![0, 30, 60, 90]);
        assert!(frames.iter().filter(|f| f.kind.is_video()).all(|f| f.gop == f.frame / 30));
    }

    #[test]
    fn a_keyframe_request_starts_a_new_gop_at_the_next_video_frame() {
        let mut pacer = Pacer::new("360p15".parse().unwrap(), Time::ZERO);
        drain(&mut pacer, Time::from_millis(1_000)); // frames 0..=15
        assert!(pacer.request_keyframe(Time::from_millis(1_000)));
        // A second request within 300 ms is the same keyframe; one after it is honoured.
        assert!(!pacer.request_keyframe(Time::from_millis(1_299)));
        let frames = drain(&mut pacer, Time::from_millis(6_000));
        let video: Vec<&ScheduledFrame> = frames.iter().filter(|f| f.kind.is_video()).collect();
        let keys: Vec<(u32, u32)> =
            video.iter().filter(|f| f.kind == FrameKind::Key).map(|f| (f.frame, f.gop)).collect();
        // Frame 16 answers the requests; the schedule restarts from it (a GOP is 30 frames).
        assert_eq!(keys, vec![(16, 1), (46, 2), (76, 3)]);
        assert_eq!(video[0].size, pacer.profile().key_frame_bytes());
        assert!(video.iter().all(|f| f.gop == 1 + (f.frame - 16) / 30));
        assert!(pacer.request_keyframe(Time::from_millis(1_300)));
        // Audio carries the GOP being sent.
        let audio_gop = |f: &&ScheduledFrame| f.gop == if f.due < video[0].due { 0 } else { 1 };
        assert!(
            frames
                .iter()
                .filter(|f| !f.kind.is_video() && f.due < video[1].due)
                .all(|f| audio_gop(&f))
        );
    }

    #[test]
    fn nothing_is_due_before_its_time() {
        let mut pacer = Pacer::new("audio".parse().unwrap(), Time::from_millis(100));
        assert_eq!(pacer.poll_frame(Time::from_millis(99)), None);
        assert_eq!(pacer.poll_frame(Time::from_millis(100)).unwrap().kind, FrameKind::Audio);
        assert_eq!(pacer.poll_frame(Time::from_millis(119)), None);
    }

    #[test]
    fn fragments_fill_the_payload_and_sum_to_the_frame() {
        let sizes: Vec<u32> = fragment_sizes(2500, 1000).collect();
        assert_eq!(sizes, vec![1000, 1000, 500]);
        assert_eq!(fragment_sizes(0, 1000).collect::<Vec<_>>(), vec![0]);
        assert_eq!(fragment_sizes(1000, 1000).count(), 1);
        let huge: Vec<u32> = fragment_sizes(u32::MAX, 1).collect();
        assert!(huge.len() <= usize::from(u16::MAX));
        assert_eq!(huge.iter().map(|&s| u64::from(s)).sum::<u64>(), u64::from(u32::MAX));
    }

    #[test]
    fn the_last_frame_of_each_medium_before_the_end_is_marked_and_nothing_after_it_is_sent() {
        let mut pacer = Pacer::new("720p30".parse().unwrap(), Time::ZERO);
        let end = Time::from_millis(1_000);
        let frames: Vec<_> =
            std::iter::from_fn(|| pacer.poll_frame_before(Time::from_millis(5_000), end)).collect();
        assert!(frames.iter().all(|f| f.due < end));
        let video: Vec<_> = frames.iter().filter(|f| f.kind != FrameKind::Audio).collect();
        let audio: Vec<_> = frames.iter().filter(|f| f.kind == FrameKind::Audio).collect();
        assert_eq!(video.len(), 30);
        assert!(!audio.is_empty());
        for medium in [video, audio] {
            let (last, rest) = medium.split_last().unwrap();
            assert!(last.last, "{last:?}");
            assert!(rest.iter().all(|f| !f.last));
        }
        let mut pk = Packetizer::new(1);
        let last =
            frames.iter().rfind(|f| f.kind == FrameKind::Key || f.kind == FrameKind::Predicted);
        let headers = pk.packetize(last.unwrap(), 0, max_payload(1248));
        assert!(headers.iter().all(|h| h.end_of_stream()));
        let headers = pk.packetize(&frames[0], 0, max_payload(1248));
        assert!(headers.iter().all(|h| !h.end_of_stream()));
    }

    #[test]
    fn packetizer_numbers_fragments_consecutively() {
        let mut pk = Packetizer::new(7);
        let frame = ScheduledFrame {
            kind: FrameKind::Key,
            frame: 0,
            gop: 0,
            due: Time::ZERO,
            size: 3000,
            last: false,
        };
        let headers = pk.packetize(&frame, 5, max_payload(1248));
        assert_eq!(headers.len(), 3);
        assert_eq!(headers.iter().map(|h| h.seq).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert!(headers.iter().all(|h| h.frag_count == 3 && h.stream_id == 7));
        assert_eq!(headers.iter().map(|h| h.payload_len).sum::<u32>(), 3000);
        assert_eq!(pk.next_seq(), 3);
    }
}
