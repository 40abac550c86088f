//! Stream profiles: the shape of a synthetic live stream (DESIGN.md section 3).

use std::fmt;
use std::str::FromStr;

/// The shape of a synthetic live stream: frame rate, bitrate, GOP and audio.
///
/// Video is CBR with one keyframe per GOP and no B-frames; a keyframe is `key_ratio` times the
/// size of a predicted frame. Audio is a constant packet rate (Opus-like, 20 ms packets).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamProfile {
    /// Preset name, or "custom".
    pub name: String,
    /// Video frames per second; 0 for an audio-only stream.
    pub fps: u32,
    /// Video bitrate in bits per second.
    pub video_bitrate_bps: u64,
    /// Frames per GOP (keyframe interval).
    pub gop_frames: u32,
    /// Size of a keyframe relative to a predicted frame.
    pub key_ratio: f64,
    /// Audio packets per second; 0 for no audio.
    pub audio_pps: u32,
    /// Audio bitrate in bits per second.
    pub audio_bitrate_bps: u64,
}

/// Names accepted by [`StreamProfile::from_str`]: the contract's list, which the collector
/// checks plans against; a profile is added there and here.
pub use stallwatch_proto::plan::PROFILE_NAMES;

/// Default keyframe to predicted-frame size ratio (DESIGN.md: "6x is a fair default").
pub const DEFAULT_KEY_RATIO: f64 = 6.0;

impl StreamProfile {
    fn video(name: &str, fps: u32, video_bitrate_bps: u64) -> Self {
        StreamProfile {
            name: name.to_string(),
            fps,
            video_bitrate_bps,
            gop_frames: fps * 2, // 2 s GOP
            key_ratio: DEFAULT_KEY_RATIO,
            audio_pps: 50,
            audio_bitrate_bps: 64_000,
        }
    }

    /// Total bitrate, video plus audio, in bits per second.
    pub fn total_bitrate_bps(&self) -> u64 {
        self.video_bitrate_bps + self.audio_bitrate_bps
    }

    /// Bytes of one GOP of video.
    fn gop_bytes(&self) -> f64 {
        self.video_bitrate_bps as f64 / 8.0 * f64::from(self.gop_frames) / f64::from(self.fps)
    }

    /// Size in bytes of a predicted frame: a GOP holds one keyframe (`key_ratio` P-frames
    /// worth) and `gop_frames - 1` predicted frames.
    pub fn predicted_frame_bytes(&self) -> u32 {
        if self.fps == 0 || self.gop_frames == 0 {
            return 0;
        }
        let units = self.key_ratio + f64::from(self.gop_frames - 1);
        (self.gop_bytes() / units).round().max(1.0) as u32
    }

    /// Size in bytes of a keyframe.
    pub fn key_frame_bytes(&self) -> u32 {
        (f64::from(self.predicted_frame_bytes()) * self.key_ratio).round() as u32
    }

    /// Size in bytes of an audio packet.
    pub fn audio_packet_bytes(&self) -> u32 {
        if self.audio_pps == 0 {
            return 0;
        }
        (self.audio_bitrate_bps / 8 / u64::from(self.audio_pps)).max(1) as u32
    }

    /// Checks that the profile describes a stream that can be paced.
    pub fn validate(&self) -> Result<(), String> {
        if self.fps == 0 && self.audio_pps == 0 {
            return Err("profile has neither video (fps) nor audio (audio_pps)".into());
        }
        if self.fps > 240 || self.audio_pps > 1000 {
            return Err("profile rates out of range (fps <= 240, audio_pps <= 1000)".into());
        }
        if self.fps > 0 && (self.gop_frames == 0 || self.video_bitrate_bps == 0) {
            return Err("a video profile needs gop_frames > 0 and a bitrate".into());
        }
        if !(self.key_ratio >= 1.0 && self.key_ratio <= 100.0) {
            return Err("key_ratio must be between 1 and 100".into());
        }
        Ok(())
    }
}

impl FromStr for StreamProfile {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let unknown = || {
            format!("unknown stream profile {s:?}; known profiles: {}", PROFILE_NAMES.join(", "))
        };
        // The contract's list decides which names exist, so no profile is accepted here that
        // the collector would refuse in a plan.
        if !PROFILE_NAMES.contains(&s) {
            return Err(unknown());
        }
        Ok(match s {
            "360p15" => StreamProfile::video(s, 15, 600_000),
            "360p30" => StreamProfile::video(s, 30, 1_200_000),
            "720p30" => StreamProfile::video(s, 30, 2_000_000),
            "1080p30" => StreamProfile::video(s, 30, 4_500_000),
            "audio" => StreamProfile {
                name: s.to_string(),
                fps: 0,
                video_bitrate_bps: 0,
                gop_frames: 0,
                key_ratio: DEFAULT_KEY_RATIO,
                audio_pps: 50,
                audio_bitrate_bps: 64_000,
            },
            _ => return Err(unknown()),
        })
    }
}

impl fmt::Display for StreamProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gop_sizes_add_up_to_the_bitrate() {
        let p: StreamProfile = "720p30".parse().unwrap();
        let gop = u64::from(p.key_frame_bytes()) + 59 * u64::from(p.predicted_frame_bytes());
        // 2 Mbps for 2 s = 500_000 bytes, within rounding of one byte per frame.
        assert!(gop.abs_diff(500_000) <= 60, "gop bytes {gop}");
        assert_eq!(p.key_frame_bytes(), 6 * p.predicted_frame_bytes());
        assert_eq!(p.audio_packet_bytes(), 160);
    }

    #[test]
    fn every_preset_is_valid_and_unknown_names_are_listed() {
        for name in PROFILE_NAMES {
            let p: StreamProfile = name.parse().unwrap();
            p.validate().unwrap();
        }
        let err = "4k".parse::<StreamProfile>().unwrap_err();
        assert!(err.contains("720p30"), "{err}");
        // The contract's list gates parsing: near misses of listed names are refused.
        for name in ["720P30", "720p60", "video", " audio", ""] {
            assert!(name.parse::<StreamProfile>().is_err(), "{name:?} is not listed");
        }
    }
}
