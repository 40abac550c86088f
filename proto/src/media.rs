//! The header every synthetic media packet (UDP, QUIC datagram) or object (QUIC stream) carries.
//!
//! Layout, all integers big-endian, 48 bytes:
//!
//! ```text
//!  0  version      u8   (= 1)
//!  1  kind         u8   (0 = I frame, 1 = P frame, 2 = audio)
//!  2  frag_index   u16  (0-based fragment of the frame)
//!  4  frag_count   u16  (>= 1)
//!  6  flags        u16  (bit 0: FROM_CACHE, set by a relay replaying its GOP cache;
//!                         bit 1: RETRANSMITTED, a repair answering a NACK;
//!                         bit 2: END_OF_STREAM, the last frame of its medium;
//!                         other bits reserved: sent as 0, ignored)
//!  8  stream_id    u32
//! 12  payload_len  u32  (bytes of synthetic payload after the header)
//! 16  seq          u64  (per stream, over all packets and media, starting at 0)
//! 24  frame        u32  (per medium: video frame number or audio packet number)
//! 28  gop          u32  (video GOP number; audio carries the current video GOP)
//! 32  capture_ns   u64  (sender wall clock when the frame was due, ns since the Unix epoch)
//! 40  send_ns      u64  (sender wall clock when this packet was sent, ns since the Unix epoch)
//! ```
//!
//! Loss and reordering are measured from `seq`, never from transport statistics.

use thiserror::Error;

/// Current media header version.
pub const MEDIA_VERSION: u8 = 1;
/// Encoded size of [`MediaHeader`].
pub const MEDIA_HEADER_LEN: usize = 48;
/// Largest payload of one quic-stream object (a 1080p keyframe is about 100 KiB): the relay
/// refuses a larger object from a publisher and a viewer stops reading a stream that announces
/// one.
pub const MAX_OBJECT_PAYLOAD: u32 = 4 * 1024 * 1024;

/// `flags` bit: the relay replayed this packet from its GOP cache to a joining viewer, long
/// after it was sent, so it says nothing about the path's jitter or delay.
pub const FLAG_FROM_CACHE: u16 = 1;

/// `flags` bit: a retransmission answering a NACK (RFC 4585 generic NACK), not the packet's
/// original transmission, so it says nothing about the path's loss, jitter or delay.
pub const FLAG_RETRANSMITTED: u16 = 2;

/// `flags` bit: the last frame of its medium (video, or audio) before the publisher ends the
/// stream. A player stops after it instead of counting the wait for the goodbye as a stall:
/// a publisher that repairs keeps answering NACKs for a while after its last frame.
pub const FLAG_END_OF_STREAM: u16 = 4;

/// Kind of media a packet belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// Video keyframe: decodable on its own, starts a GOP.
    Key,
    /// Video predicted frame: needs every earlier frame of its GOP.
    Predicted,
    /// Audio packet: decodable on its own.
    Audio,
}

impl FrameKind {
    fn to_byte(self) -> u8 {
        match self {
            FrameKind::Key => 0,
            FrameKind::Predicted => 1,
            FrameKind::Audio => 2,
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(FrameKind::Key),
            1 => Some(FrameKind::Predicted),
            2 => Some(FrameKind::Audio),
            _ => None,
        }
    }

    /// Whether this is a video frame (key or predicted).
    pub fn is_video(self) -> bool {
        !matches!(self, FrameKind::Audio)
    }
}

/// Errors decoding a [`MediaHeader`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MediaError {
    #[error("media packet too short: {len} bytes, header needs {MEDIA_HEADER_LEN}")]
    Truncated { len: usize },
    #[error("unsupported media header version {0} (this build speaks {MEDIA_VERSION})")]
    Version(u8),
    #[error("unknown frame kind {0}")]
    Kind(u8),
    #[error("bad fragment {index} of {count}")]
    Fragment { index: u16, count: u16 },
    #[error("payload length {declared} does not match the {available} bytes present")]
    PayloadLength { declared: u32, available: usize },
}

/// The header of one media packet or object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MediaHeader {
    /// Video keyframe, predicted frame, or audio.
    pub kind: FrameKind,
    /// Flag bits, see [`FLAG_FROM_CACHE`].
    pub flags: u16,
    pub frag_index: u16,
    pub frag_count: u16,
    pub stream_id: u32,
    pub payload_len: u32,
    pub seq: u64,
    pub frame: u32,
    pub gop: u32,
    pub capture_ns: u64,
    pub send_ns: u64,
}

impl MediaHeader {
    /// Whether a relay replayed this packet from its GOP cache.
    pub fn from_cache(&self) -> bool {
        self.flags & FLAG_FROM_CACHE != 0
    }

    /// Whether this is a fragment of the last frame of its medium.
    pub fn end_of_stream(&self) -> bool {
        self.flags & FLAG_END_OF_STREAM != 0
    }

    /// Writes the 48-byte header into the start of `out`.
    ///
    /// # Panics
    /// If `out` is shorter than [`MEDIA_HEADER_LEN`]; callers size their buffers.
    pub fn encode_into(&self, out: &mut [u8]) {
        let out = &mut out[..MEDIA_HEADER_LEN];
        out[0] = MEDIA_VERSION;
        out[1] = self.kind.to_byte();
        out[2..4].copy_from_slice(&self.frag_index.to_be_bytes());
        out[4..6].copy_from_slice(&self.frag_count.to_be_bytes());
        out[6..8].copy_from_slice(&self.flags.to_be_bytes());
        out[8..12].copy_from_slice(&self.stream_id.to_be_bytes());
        out[12..16].copy_from_slice(&self.payload_len.to_be_bytes());
        out[16..24].copy_from_slice(&self.seq.to_be_bytes());
        out[24..28].copy_from_slice(&self.frame.to_be_bytes());
        out[28..32].copy_from_slice(&self.gop.to_be_bytes());
        out[32..40].copy_from_slice(&self.capture_ns.to_be_bytes());
        out[40..48].copy_from_slice(&self.send_ns.to_be_bytes());
    }

    /// The header as a fresh 48-byte array.
    pub fn to_bytes(&self) -> [u8; MEDIA_HEADER_LEN] {
        let mut out = [0u8; MEDIA_HEADER_LEN];
        self.encode_into(&mut out);
        out
    }

    /// Decodes the header at the start of `buf` without checking the payload that follows
    /// (QUIC stream objects read the payload separately).
    pub fn decode(buf: &[u8]) -> Result<Self, MediaError> {
        let Some(h) = buf.get(..MEDIA_HEADER_LEN) else {
            return Err(MediaError::Truncated { len: buf.len() });
        };
        if h[0] != MEDIA_VERSION {
            return Err(MediaError::Version(h[0]));
        }
        let kind = FrameKind::from_byte(h[1]).ok_or(MediaError::Kind(h[1]))?;
        let u16_at = |i: usize| u16::from_be_bytes([h[i], h[i + 1]]);
        let u32_at = |i: usize| u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&h[i..i + 8]);
            u64::from_be_bytes(b)
        };
        let frag_index = u16_at(2);
        let frag_count = u16_at(4);
        if frag_count == 0 || frag_index >= frag_count {
            return Err(MediaError::Fragment { index: frag_index, count: frag_count });
        }
        Ok(MediaHeader {
            kind,
            flags: u16_at(6),
            frag_index,
            frag_count,
            stream_id: u32_at(8),
            payload_len: u32_at(12),
            seq: u64_at(16),
            frame: u32_at(24),
            gop: u32_at(28),
            capture_ns: u64_at(32),
            send_ns: u64_at(40),
        })
    }

    /// Decodes a whole datagram: the header and exactly `payload_len` bytes after it.
    pub fn decode_packet(buf: &[u8]) -> Result<Self, MediaError> {
        let header = Self::decode(buf)?;
        let available = buf.len() - MEDIA_HEADER_LEN;
        if header.payload_len as usize != available {
            return Err(MediaError::PayloadLength { declared: header.payload_len, available });
        }
        Ok(header)
    }
}
