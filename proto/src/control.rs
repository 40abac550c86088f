//! Relay control messages: hello/challenge, publish, subscribe, errors, ping/pong, goodbye,
//! and repair feedback (NACK, keyframe request).
//!
//! Frame, integers big-endian:
//!
//! ```text
//!  0  type      u8   (0x80..=0x8a, see below)
//!  1  body_len  u16  (at most MAX_CONTROL_BODY)
//!  3  body
//! ```
//!
//! On plain UDP, control frames and media packets share one socket: media packets start with
//! their version byte (1) and control types start at 0x80, so [`is_control`] tells them apart
//! from the first byte.
//!
//! Bodies (`str8` is a u8 length then UTF-8 bytes, `str16` a u16 length then UTF-8 bytes):
//!
//! ```text
//! 0x80 Hello      version u8, role u8 (0 publisher, 1 viewer), has_token u8 (0|1),
//!                 token [16] (zeros when has_token = 0), then, only in a tokened hello to a
//!                 relay that needs a credential: proof [16]
//! 0x81 Challenge  token [16]
//! 0x82 Publish    stream str8
//! 0x83 Subscribe  stream str8, start u8 (0 cached GOP, 1 live)
//! 0x84 Ok         stream_id u32, session u64 (plain UDP: the session nonce; 0 on QUIC)
//! 0x85 Error      code u16, message str16
//! 0x86 Ping       id u64, send_ns u64
//! 0x87 Pong       id u64, echo_send_ns u64, relay_recv_ns u64, relay_send_ns u64
//! 0x88 Goodbye    (empty)
//! 0x89 Nack       stream_id u32, range_count u8 (1..=MAX_NACK_RANGES),
//!                 range_count x (first u64, count u16 (>= 1)); ranges ascending, apart by at
//!                 least one number, at most MAX_NACK_SEQS numbers in all
//! 0x8a KeyframeRequest  stream_id u32
//! ```
//!
//! A NACK (RFC 4585 generic NACK) asks the sender to resend the packets with those sequence
//! numbers; a keyframe request (RFC 4585 PLI) asks it to start a new GOP. Both go from a viewer
//! to the relay and from the relay to its publisher. The bounds are checked when decoding, so
//! one NACK can never name more than [`MAX_NACK_SEQS`] packets.
//!
//! On plain UDP a session is bound to its `Ok`'s nonce, not only to the source address: after
//! the `Ok`, every datagram a client sends the relay (control frame or media packet) ends with
//! the 8-byte `session` trailer ([`seal`], [`unseal`]). The relay drops anything else from that
//! address but a repeated hello or request (answered with the same `Ok`), and only sealed
//! datagrams keep the session alive, so an off-path spoofer who knows the address cannot end,
//! steer, feed or keep alive the session. Control version 2 introduced the nonce.
//!
//! A relay run from a plan holds a per-relay UDP credential (32 bytes, from the collector); a
//! tokened hello to it must end with `proof`, the first 16 bytes of HMAC-SHA256(credential,
//! token), or the relay answers `Error` (unauthorized). The proof is bound to the token, so
//! it is good for one address for 30-60 s. Control version 3 introduced the proof.
//!
//! Hello always carries the 16 token bytes, so a first hello (22 bytes) is never smaller than
//! the challenge it draws (19 bytes): the relay cannot be used to amplify traffic towards a
//! spoofed address.

use thiserror::Error;

/// Control protocol version carried in [`Control::Hello`] (2: `Ok` carries the UDP session
/// nonce and UDP clients seal their datagrams with it; 3: a tokened hello may carry a
/// credential proof).
pub const CONTROL_VERSION: u8 = 3;
/// Bytes of the session trailer on a sealed UDP datagram.
pub const SESSION_TRAILER_LEN: usize = 8;
/// Largest control body in bytes.
pub const MAX_CONTROL_BODY: usize = 1024;
/// Size of the frame header (type and body length).
pub const CONTROL_HEADER_LEN: usize = 3;
/// Longest stream name in bytes.
pub const MAX_STREAM_NAME_LEN: usize = 64;
/// Longest [`Control::Error`] message in bytes.
pub const MAX_ERROR_MESSAGE_LEN: usize = 256;
/// Sequence numbers one [`Control::Nack`] may name (`measure::repair::MAX_NACK_SEQS`).
pub const MAX_NACK_SEQS: usize = 64;
/// Ranges one [`Control::Nack`] may carry: one per number at worst.
pub const MAX_NACK_RANGES: usize = MAX_NACK_SEQS;
/// First bytes of control frames; media packets start with a version byte below this range.
pub const CONTROL_FIRST_BYTE_RANGE: std::ops::RangeInclusive<u8> = 0x80..=0xff;

const TYPE_HELLO: u8 = 0x80;
const TYPE_CHALLENGE: u8 = 0x81;
const TYPE_PUBLISH: u8 = 0x82;
const TYPE_SUBSCRIBE: u8 = 0x83;
const TYPE_OK: u8 = 0x84;
const TYPE_ERROR: u8 = 0x85;
const TYPE_PING: u8 = 0x86;
const TYPE_PONG: u8 = 0x87;
const TYPE_GOODBYE: u8 = 0x88;
const TYPE_NACK: u8 = 0x89;
const TYPE_KEYFRAME_REQUEST: u8 = 0x8a;

/// Appends the session trailer to a datagram a UDP client sends after its `Ok`.
pub fn seal(datagram: &mut Vec<u8>, session: u64) {
    datagram.extend_from_slice(&session.to_be_bytes());
}

/// The datagram without its trailer if it is sealed with `session` (compared in constant
/// time, so timing says nothing about the nonce); `None` otherwise.
pub fn unseal(datagram: &[u8], session: u64) -> Option<&[u8]> {
    let cut = datagram.len().checked_sub(SESSION_TRAILER_LEN)?;
    let (inner, trailer) = datagram.split_at(cut);
    let diff = trailer.iter().zip(session.to_be_bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b));
    (diff == 0 && !inner.is_empty()).then_some(inner)
}

/// Whether a datagram whose first byte is `first_byte` is a control frame (not media).
pub fn is_control(first_byte: u8) -> bool {
    CONTROL_FIRST_BYTE_RANGE.contains(&first_byte)
}

/// Which side of a stream a client is: what it asks the relay for in `Hello`, and the `role`
/// label of the series it reports.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Pushes a stream to the relay.
    Publisher,
    /// Pulls a stream from the relay.
    Viewer,
}

impl Role {
    /// Both roles, in a stable order.
    pub const ALL: [Role; 2] = [Role::Publisher, Role::Viewer];

    /// The `role` label value in reports and on the collector's series.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Publisher => "publisher",
            Role::Viewer => "viewer",
        }
    }
}

/// Where a new viewer starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StartAt {
    /// From the start of the relay's cached GOP (fast first frame, like most live servers).
    CachedGop,
    /// From the next frame the publisher sends (waits for the next keyframe).
    Live,
}

/// Why the relay refused or ended something. A `u16` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The request was malformed or out of order.
    BadRequest,
    /// The client speaks another control version.
    VersionMismatch,
    /// Missing or wrong handshake token.
    Unauthorized,
    /// No publisher for the requested stream.
    StreamNotFound,
    /// Another publisher already holds the stream name.
    StreamExists,
    /// The relay's stream limit is reached.
    TooManyStreams,
    /// The stream's viewer limit is reached.
    TooManyViewers,
    /// The client sent too many requests.
    RateLimited,
    /// The relay failed internally.
    Internal,
    /// A code this build does not know. Known codes wrapped here encode as themselves and
    /// decode as their named variant.
    Other(u16),
}

impl ErrorCode {
    /// The code on the wire.
    pub fn to_u16(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 1,
            ErrorCode::VersionMismatch => 2,
            ErrorCode::Unauthorized => 3,
            ErrorCode::StreamNotFound => 4,
            ErrorCode::StreamExists => 5,
            ErrorCode::TooManyStreams => 6,
            ErrorCode::TooManyViewers => 7,
            ErrorCode::RateLimited => 8,
            ErrorCode::Internal => 9,
            ErrorCode::Other(code) => code,
        }
    }

    /// The code for a wire value; unknown values become [`ErrorCode::Other`].
    pub fn from_u16(code: u16) -> Self {
        match code {
            1 => ErrorCode::BadRequest,
            2 => ErrorCode::VersionMismatch,
            3 => ErrorCode::Unauthorized,
            4 => ErrorCode::StreamNotFound,
            5 => ErrorCode::StreamExists,
            6 => ErrorCode::TooManyStreams,
            7 => ErrorCode::TooManyViewers,
            8 => ErrorCode::RateLimited,
            9 => ErrorCode::Internal,
            other => ErrorCode::Other(other),
        }
    }
}

/// One relay control message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Control {
    /// Client greeting. On UDP the first hello has no token; the relay answers
    /// [`Control::Challenge`] and the client repeats the hello with that token, proving it
    /// receives at its source address (like irtt).
    Hello {
        /// Control protocol version ([`CONTROL_VERSION`]).
        version: u8,
        /// What the client will do.
        role: Role,
        /// The token from the relay's challenge, if any.
        token: Option<[u8; 16]>,
        /// Proof of the relay's UDP credential over `token` (a tokened hello only).
        proof: Option<[u8; 16]>,
    },
    /// Relay's answer to a hello without a valid token.
    Challenge {
        /// Token the client must echo in its next hello.
        token: [u8; 16],
    },
    /// Publisher asks to push a stream.
    Publish {
        /// Stream name (see [`validate_stream_name`]).
        stream: String,
    },
    /// Viewer asks to pull a stream.
    Subscribe {
        /// Stream name (see [`validate_stream_name`]).
        stream: String,
        /// Where to start.
        start: StartAt,
    },
    /// Relay accepted a publish or subscribe.
    Ok {
        /// Id media packets of this stream carry.
        stream_id: u32,
        /// Plain UDP: the session nonce every later datagram from the client ends with
        /// ([`seal`]). 0 on QUIC, where the connection is the session.
        session: u64,
    },
    /// Relay refused a request or is ending the session.
    Error {
        /// Machine-readable reason.
        code: ErrorCode,
        /// Human-readable detail, at most [`MAX_ERROR_MESSAGE_LEN`] bytes (longer ones are
        /// cut at a character boundary when encoded).
        message: String,
    },
    /// Client clock probe, answered by [`Control::Pong`].
    Ping {
        /// Matches the pong to the ping.
        id: u64,
        /// Client wall clock at send, ns since the Unix epoch.
        send_ns: u64,
    },
    /// Relay's answer to a ping: with the client's receive time this gives the RTT and the
    /// clock offset, NTP-style.
    Pong {
        /// The ping's id.
        id: u64,
        /// The ping's `send_ns`, echoed.
        echo_send_ns: u64,
        /// Relay wall clock when the ping arrived, ns since the Unix epoch.
        relay_recv_ns: u64,
        /// Relay wall clock when this pong was sent, ns since the Unix epoch.
        relay_send_ns: u64,
    },
    /// Either side is closing the session.
    Goodbye,
    /// Resend these packets of a stream (RFC 4585 generic NACK).
    Nack {
        /// The stream the numbers belong to.
        stream_id: u32,
        /// Runs of missing sequence numbers (see [`NackRange`] and [`Control::nack`]).
        ranges: Vec<NackRange>,
    },
    /// Start a new GOP of this stream now (RFC 4585 PLI).
    KeyframeRequest {
        /// The stream.
        stream_id: u32,
    },
}

/// A run of consecutive sequence numbers in a [`Control::Nack`]: `first..first + count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NackRange {
    /// First number of the run.
    pub first: u64,
    /// How many numbers, at least 1.
    pub count: u16,
}

impl NackRange {
    /// The numbers of the run.
    pub fn seqs(self) -> impl Iterator<Item = u64> {
        (0..u64::from(self.count)).map(move |i| self.first + i)
    }
}

/// Errors decoding a control frame.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ControlError {
    /// The first byte is not a known control type.
    #[error("unknown control message type {0:#04x}")]
    UnknownType(u8),
    /// The body length is over [`MAX_CONTROL_BODY`].
    #[error("control body of {len} bytes exceeds the {MAX_CONTROL_BODY}-byte limit")]
    BodyTooLarge {
        /// Declared body length.
        len: usize,
    },
    /// A datagram ended before its frame did.
    #[error("control frame truncated: needs {needed} bytes, {len} present")]
    Truncated {
        /// Bytes the frame needs.
        needed: usize,
        /// Bytes present.
        len: usize,
    },
    /// A datagram held bytes after its one frame.
    #[error("{extra} bytes after the control frame in a datagram")]
    TrailingDatagram {
        /// Extra bytes.
        extra: usize,
    },
    /// A body ended before all its fields.
    #[error("{kind} body ends early: {len} bytes")]
    BodyTruncated {
        /// Message kind.
        kind: &'static str,
        /// Body length.
        len: usize,
    },
    /// A body held bytes after its last field.
    #[error("{extra} trailing bytes inside a {kind} body")]
    TrailingBytes {
        /// Message kind.
        kind: &'static str,
        /// Extra bytes.
        extra: usize,
    },
    /// A string field is not UTF-8.
    #[error("{kind} carries invalid utf-8")]
    BadUtf8 {
        /// Message kind.
        kind: &'static str,
    },
    /// A stream name breaks [`validate_stream_name`].
    #[error("bad stream name {name:?}: {reason}")]
    BadStreamName {
        /// The name (lossily decoded).
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An error message longer than [`MAX_ERROR_MESSAGE_LEN`].
    #[error("error message of {len} bytes exceeds the {MAX_ERROR_MESSAGE_LEN}-byte limit")]
    MessageTooLong {
        /// Message length.
        len: usize,
    },
    /// A hello without a token carries a credential proof.
    #[error("hello without a token carries a credential proof")]
    StrayProof,
    /// A hello without a token has non-zero token bytes.
    #[error("hello without a token carries non-zero token bytes")]
    StrayToken,
    /// A NACK's ranges are empty, out of order, overlapping, touching or too many.
    #[error("bad nack: {0}")]
    BadNack(&'static str),
    /// An enum field (role, start, token flag) has an unknown value.
    #[error("bad {field} value {value} in a {kind} body")]
    BadValue {
        /// Message kind.
        kind: &'static str,
        /// Field name.
        field: &'static str,
        /// Value found.
        value: u8,
    },
}

/// Checks a stream name: 1 to [`MAX_STREAM_NAME_LEN`] bytes of `[A-Za-z0-9._-]`.
pub fn validate_stream_name(name: &str) -> Result<(), ControlError> {
    let bad = |reason| ControlError::BadStreamName { name: name.to_owned(), reason };
    if name.is_empty() {
        return Err(bad("empty"));
    }
    if name.len() > MAX_STREAM_NAME_LEN {
        return Err(bad("longer than 64 bytes"));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
        return Err(bad("only A-Z, a-z, 0-9, '.', '_' and '-' are allowed"));
    }
    Ok(())
}

impl Control {
    /// Short name of the message kind, for errors and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Control::Hello { .. } => "hello",
            Control::Challenge { .. } => "challenge",
            Control::Publish { .. } => "publish",
            Control::Subscribe { .. } => "subscribe",
            Control::Ok { .. } => "ok",
            Control::Error { .. } => "error",
            Control::Ping { .. } => "ping",
            Control::Pong { .. } => "pong",
            Control::Goodbye => "goodbye",
            Control::Nack { .. } => "nack",
            Control::KeyframeRequest { .. } => "keyframe-request",
        }
    }

    /// A NACK for `seqs` (ascending, no duplicates), as ranges; `None` when `seqs` is empty,
    /// not strictly ascending or holds more than [`MAX_NACK_SEQS`] numbers.
    pub fn nack(stream_id: u32, seqs: &[u64]) -> Option<Control> {
        if seqs.is_empty() || seqs.len() > MAX_NACK_SEQS {
            return None;
        }
        let mut ranges: Vec<NackRange> = Vec::new();
        for &seq in seqs {
            match ranges.last_mut() {
                Some(r) if r.first + u64::from(r.count) == seq => r.count += 1,
                Some(r) if r.first + u64::from(r.count) > seq => return None,
                _ => ranges.push(NackRange { first: seq, count: 1 }),
            }
        }
        Some(Control::Nack { stream_id, ranges })
    }

    /// Checks what [`Control::encode`] cannot fix for the caller: stream names and the error
    /// message length. Frames of messages that pass always decode.
    pub fn validate(&self) -> Result<(), ControlError> {
        match self {
            Control::Publish { stream } | Control::Subscribe { stream, .. } => {
                validate_stream_name(stream)
            }
            Control::Error { message, .. } if message.len() > MAX_ERROR_MESSAGE_LEN => {
                Err(ControlError::MessageTooLong { len: message.len() })
            }
            Control::Nack { ranges, .. } => check_nack_ranges(ranges),
            Control::Hello { token: None, proof: Some(_), .. } => Err(ControlError::StrayProof),
            _ => Ok(()),
        }
    }

    /// Encodes the message as one frame.
    ///
    /// Error messages over [`MAX_ERROR_MESSAGE_LEN`] bytes are cut at a character boundary.
    /// Stream names are not checked here (see [`Control::validate`]); an invalid one makes a
    /// frame the peer rejects.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(32);
        let ty = match self {
            Control::Hello { version, role, token, proof } => {
                body.push(*version);
                body.push(match role {
                    Role::Publisher => 0,
                    Role::Viewer => 1,
                });
                body.push(u8::from(token.is_some()));
                body.extend_from_slice(&token.unwrap_or_default());
                if let Some(proof) = proof {
                    body.extend_from_slice(proof);
                }
                TYPE_HELLO
            }
            Control::Challenge { token } => {
                body.extend_from_slice(token);
                TYPE_CHALLENGE
            }
            Control::Publish { stream } => {
                put_str8(&mut body, stream);
                TYPE_PUBLISH
            }
            Control::Subscribe { stream, start } => {
                put_str8(&mut body, stream);
                body.push(match start {
                    StartAt::CachedGop => 0,
                    StartAt::Live => 1,
                });
                TYPE_SUBSCRIBE
            }
            Control::Ok { stream_id, session } => {
                body.extend_from_slice(&stream_id.to_be_bytes());
                body.extend_from_slice(&session.to_be_bytes());
                TYPE_OK
            }
            Control::Error { code, message } => {
                body.extend_from_slice(&code.to_u16().to_be_bytes());
                let message = truncate_at_char(message, MAX_ERROR_MESSAGE_LEN);
                // At most 256 bytes, so the length fits in u16.
                body.extend_from_slice(&(message.len() as u16).to_be_bytes());
                body.extend_from_slice(message.as_bytes());
                TYPE_ERROR
            }
            Control::Ping { id, send_ns } => {
                body.extend_from_slice(&id.to_be_bytes());
                body.extend_from_slice(&send_ns.to_be_bytes());
                TYPE_PING
            }
            Control::Pong { id, echo_send_ns, relay_recv_ns, relay_send_ns } => {
                for v in [id, echo_send_ns, relay_recv_ns, relay_send_ns] {
                    body.extend_from_slice(&v.to_be_bytes());
                }
                TYPE_PONG
            }
            Control::Goodbye => TYPE_GOODBYE,
            Control::Nack { stream_id, ranges } => {
                body.extend_from_slice(&stream_id.to_be_bytes());
                // Ranges beyond the limit are left out so the frame stays well-formed; a
                // caller that skipped `validate` gets a NACK the peer may still refuse.
                let ranges = &ranges[..ranges.len().min(MAX_NACK_RANGES)];
                body.push(ranges.len() as u8);
                for r in ranges {
                    body.extend_from_slice(&r.first.to_be_bytes());
                    body.extend_from_slice(&r.count.to_be_bytes());
                }
                TYPE_NACK
            }
            Control::KeyframeRequest { stream_id } => {
                body.extend_from_slice(&stream_id.to_be_bytes());
                TYPE_KEYFRAME_REQUEST
            }
        };
        let mut out = Vec::with_capacity(CONTROL_HEADER_LEN + body.len());
        out.push(ty);
        // Every body above is at most 5 + 64 x 10 bytes, far below u16::MAX.
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Decodes the frame at the start of a byte stream.
    ///
    /// Returns `Ok(None)` when `buf` holds only part of a frame (read more and retry), or the
    /// message and the bytes it used. Unknown types and oversize bodies are errors as soon as
    /// the header shows them, so a reader never waits for a frame it will reject.
    pub fn decode_frame(buf: &[u8]) -> Result<Option<(Control, usize)>, ControlError> {
        let Some(&ty) = buf.first() else {
            return Ok(None);
        };
        let kind = kind_of(ty).ok_or(ControlError::UnknownType(ty))?;
        let (Some(&hi), Some(&lo)) = (buf.get(1), buf.get(2)) else {
            return Ok(None);
        };
        let body_len = usize::from(u16::from_be_bytes([hi, lo]));
        if body_len > MAX_CONTROL_BODY {
            return Err(ControlError::BodyTooLarge { len: body_len });
        }
        let frame_len = CONTROL_HEADER_LEN + body_len;
        let Some(body) = buf.get(CONTROL_HEADER_LEN..frame_len) else {
            return Ok(None);
        };
        let msg = decode_body(ty, kind, body)?;
        Ok(Some((msg, frame_len)))
    }

    /// Decodes a datagram that must hold exactly one whole frame.
    pub fn decode_datagram(buf: &[u8]) -> Result<Control, ControlError> {
        match Self::decode_frame(buf)? {
            Some((msg, used)) if used == buf.len() => Ok(msg),
            Some((_, used)) => Err(ControlError::TrailingDatagram { extra: buf.len() - used }),
            None => {
                let needed = match (buf.get(1), buf.get(2)) {
                    (Some(&hi), Some(&lo)) => {
                        CONTROL_HEADER_LEN + usize::from(u16::from_be_bytes([hi, lo]))
                    }
                    _ => CONTROL_HEADER_LEN,
                };
                Err(ControlError::Truncated { needed, len: buf.len() })
            }
        }
    }
}

fn kind_of(ty: u8) -> Option<&'static str> {
    Some(match ty {
        TYPE_HELLO => "hello",
        TYPE_CHALLENGE => "challenge",
        TYPE_PUBLISH => "publish",
        TYPE_SUBSCRIBE => "subscribe",
        TYPE_OK => "ok",
        TYPE_ERROR => "error",
        TYPE_PING => "ping",
        TYPE_PONG => "pong",
        TYPE_GOODBYE => "goodbye",
        TYPE_NACK => "nack",
        TYPE_KEYFRAME_REQUEST => "keyframe-request",
        _ => return None,
    })
}

fn decode_body(ty: u8, kind: &'static str, body: &[u8]) -> Result<Control, ControlError> {
    let mut r = Reader { kind, body, pos: 0 };
    let msg = match ty {
        TYPE_HELLO => {
            let version = r.u8()?;
            let role = match r.u8()? {
                0 => Role::Publisher,
                1 => Role::Viewer,
                value => return Err(r.bad_value("role", value)),
            };
            let has_token = r.u8()?;
            let token = r.array16()?;
            let token = match has_token {
                0 if token == [0; 16] => None,
                0 => return Err(ControlError::StrayToken),
                1 => Some(token),
                value => return Err(r.bad_value("has_token", value)),
            };
            // Optional trailing proof: exactly 16 more bytes or none (finish() refuses others).
            let proof = if r.body.len() - r.pos >= 16 { Some(r.array16()?) } else { None };
            if proof.is_some() && token.is_none() {
                return Err(ControlError::StrayProof);
            }
            Control::Hello { version, role, token, proof }
        }
        TYPE_CHALLENGE => Control::Challenge { token: r.array16()? },
        TYPE_PUBLISH => Control::Publish { stream: r.stream_name()? },
        TYPE_SUBSCRIBE => {
            let stream = r.stream_name()?;
            let start = match r.u8()? {
                0 => StartAt::CachedGop,
                1 => StartAt::Live,
                value => return Err(r.bad_value("start", value)),
            };
            Control::Subscribe { stream, start }
        }
        TYPE_OK => Control::Ok { stream_id: r.u32()?, session: r.u64()? },
        TYPE_ERROR => {
            let code = ErrorCode::from_u16(r.u16()?);
            let len = usize::from(r.u16()?);
            if len > MAX_ERROR_MESSAGE_LEN {
                return Err(ControlError::MessageTooLong { len });
            }
            let message = r.utf8(len)?.to_owned();
            Control::Error { code, message }
        }
        TYPE_PING => Control::Ping { id: r.u64()?, send_ns: r.u64()? },
        TYPE_PONG => Control::Pong {
            id: r.u64()?,
            echo_send_ns: r.u64()?,
            relay_recv_ns: r.u64()?,
            relay_send_ns: r.u64()?,
        },
        TYPE_GOODBYE => Control::Goodbye,
        TYPE_NACK => {
            let stream_id = r.u32()?;
            let count = usize::from(r.u8()?);
            if count == 0 || count > MAX_NACK_RANGES {
                return Err(ControlError::BadNack("range count must be 1 to 64"));
            }
            // The count is checked first, so this allocation is bounded.
            let mut ranges = Vec::with_capacity(count);
            for _ in 0..count {
                ranges.push(NackRange { first: r.u64()?, count: r.u16()? });
            }
            check_nack_ranges(&ranges)?;
            Control::Nack { stream_id, ranges }
        }
        TYPE_KEYFRAME_REQUEST => Control::KeyframeRequest { stream_id: r.u32()? },
        _ => return Err(ControlError::UnknownType(ty)),
    };
    r.finish()?;
    Ok(msg)
}

/// A NACK's ranges: 1 to [`MAX_NACK_RANGES`], none empty, ascending with a gap between
/// neighbours (touching runs would be one), no overflow past `u64::MAX`, at most
/// [`MAX_NACK_SEQS`] numbers in all.
fn check_nack_ranges(ranges: &[NackRange]) -> Result<(), ControlError> {
    if ranges.is_empty() || ranges.len() > MAX_NACK_RANGES {
        return Err(ControlError::BadNack("range count must be 1 to 64"));
    }
    let mut total = 0usize;
    let mut next_free: Option<u64> = None;
    for r in ranges {
        if r.count == 0 {
            return Err(ControlError::BadNack("empty range"));
        }
        if next_free.is_some_and(|free| r.first <= free) {
            return Err(ControlError::BadNack("ranges not ascending and apart"));
        }
        let end = r
            .first
            .checked_add(u64::from(r.count))
            .ok_or(ControlError::BadNack("range runs past the largest sequence number"))?;
        total += usize::from(r.count);
        if total > MAX_NACK_SEQS {
            return Err(ControlError::BadNack("more than 64 sequence numbers"));
        }
        next_free = Some(end);
    }
    Ok(())
}

/// Bounds-checked cursor over one body.
struct Reader<'a> {
    kind: &'static str,
    body: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ControlError> {
        let end = self.pos.checked_add(n);
        let bytes = end
            .and_then(|end| self.body.get(self.pos..end))
            .ok_or(ControlError::BodyTruncated { kind: self.kind, len: self.body.len() })?;
        self.pos += n;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ControlError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, ControlError> {
        Ok(u8::from_be_bytes(self.array()?))
    }

    fn u16(&mut self) -> Result<u16, ControlError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, ControlError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, ControlError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn array16(&mut self) -> Result<[u8; 16], ControlError> {
        self.array()
    }

    fn utf8(&mut self, len: usize) -> Result<&'a str, ControlError> {
        let kind = self.kind;
        std::str::from_utf8(self.take(len)?).map_err(|_| ControlError::BadUtf8 { kind })
    }

    fn stream_name(&mut self) -> Result<String, ControlError> {
        let len = usize::from(self.u8()?);
        let name = self.utf8(len)?;
        validate_stream_name(name)?;
        Ok(name.to_owned())
    }

    fn bad_value(&self, field: &'static str, value: u8) -> ControlError {
        ControlError::BadValue { kind: self.kind, field, value }
    }

    fn finish(self) -> Result<(), ControlError> {
        match self.body.len() - self.pos {
            0 => Ok(()),
            extra => Err(ControlError::TrailingBytes { kind: self.kind, extra }),
        }
    }
}

fn put_str8(body: &mut Vec<u8>, s: &str) {
    // Valid names are at most 64 bytes; longer ones are cut so the frame stays well-formed
    // and the peer rejects the name rather than misparsing the frame.
    let s = truncate_at_char(s, usize::from(u8::MAX));
    body.push(s.len() as u8);
    body.extend_from_slice(s.as_bytes());
}

fn truncate_at_char(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_variants() -> Vec<Control> {
        vec![
            Control::Hello {
                version: CONTROL_VERSION,
                role: Role::Publisher,
                token: None,
                proof: None,
            },
            Control::Hello { version: 7, role: Role::Viewer, token: Some([9; 16]), proof: None },
            Control::Hello {
                version: CONTROL_VERSION,
                role: Role::Publisher,
                token: Some([9; 16]),
                proof: Some([7; 16]),
            },
            Control::Challenge { token: [0xab; 16] },
            Control::Publish { stream: "probe-1.720p_30".into() },
            Control::Subscribe { stream: "a".into(), start: StartAt::CachedGop },
            Control::Subscribe { stream: "x".repeat(64), start: StartAt::Live },
            Control::Ok { stream_id: 0xdead_beef, session: 0x0123_4567_89ab_cdef },
            Control::Error { code: ErrorCode::StreamNotFound, message: "no such stream".into() },
            Control::Error { code: ErrorCode::Other(999), message: String::new() },
            Control::Ping { id: 1, send_ns: u64::MAX },
            Control::Pong { id: 1, echo_send_ns: 2, relay_recv_ns: 3, relay_send_ns: 4 },
            Control::Goodbye,
            Control::nack(7, &[3]).unwrap(),
            Control::nack(u32::MAX, &[1, 2, 3, 10, 12, 13]).unwrap(),
            Control::nack(1, &(0..64).map(|i| i * 2).collect::<Vec<u64>>()).unwrap(),
            Control::KeyframeRequest { stream_id: 9 },
        ]
    }

    #[test]
    fn round_trips_every_variant() {
        for msg in all_variants() {
            let bytes = msg.encode();
            assert!(is_control(bytes[0]));
            assert_eq!(Control::decode_datagram(&bytes), Ok(msg.clone()));
            assert_eq!(Control::decode_frame(&bytes), Ok(Some((msg, bytes.len()))));
        }
    }

    #[test]
    fn stream_framing_waits_for_whole_frames() {
        let mut stream = Vec::new();
        for msg in all_variants() {
            stream.extend_from_slice(&msg.encode());
        }
        let mut got = Vec::new();
        let mut rest = &stream[..];
        while !rest.is_empty() {
            // Every strict prefix of the next frame asks for more bytes.
            let (msg, used) = Control::decode_frame(rest).unwrap().unwrap();
            for cut in 0..used {
                assert_eq!(Control::decode_frame(&rest[..cut]), Ok(None), "cut {cut}");
            }
            got.push(msg);
            rest = &rest[used..];
        }
        assert_eq!(got, all_variants());
    }

    #[test]
    fn a_sealed_datagram_unseals_only_with_its_session() {
        let mut datagram = Control::Goodbye.encode();
        seal(&mut datagram, 0xfeed);
        assert_eq!(unseal(&datagram, 0xfeed), Some(&Control::Goodbye.encode()[..]));
        assert_eq!(unseal(&datagram, 0xfeee), None);
        // Unsealed, or nothing but a trailer: refused.
        assert_eq!(unseal(&Control::Goodbye.encode(), 0xfeed), None);
        assert_eq!(unseal(&0xfeed_u64.to_be_bytes(), 0xfeed), None);
        assert_eq!(unseal(&[], 0), None);
    }

    #[test]
    fn hello_is_never_smaller_than_its_challenge() {
        let hello =
            Control::Hello { version: 1, role: Role::Viewer, token: None, proof: None }.encode();
        let challenge = Control::Challenge { token: [1; 16] }.encode();
        assert!(hello.len() >= challenge.len());
    }

    #[test]
    fn media_first_byte_is_not_control() {
        assert!(!is_control(crate::media::MEDIA_VERSION));
        assert!(is_control(0x80));
    }

    #[test]
    fn rejects_bad_frames() {
        assert_eq!(Control::decode_frame(&[0x01]), Err(ControlError::UnknownType(1)));
        assert_eq!(Control::decode_frame(&[0x99, 0, 0]), Err(ControlError::UnknownType(0x99)));
        assert_eq!(
            Control::decode_frame(&[TYPE_PING, 0x04, 0x01]),
            Err(ControlError::BodyTooLarge { len: 1025 })
        );
        assert_eq!(
            Control::decode_datagram(&[TYPE_OK, 0, 12, 0]),
            Err(ControlError::Truncated { needed: 15, len: 4 })
        );
        assert_eq!(
            Control::decode_datagram(&[TYPE_GOODBYE, 0, 1, 0]),
            Err(ControlError::TrailingBytes { kind: "goodbye", extra: 1 })
        );
        assert_eq!(
            Control::decode_datagram(&[TYPE_GOODBYE, 0, 0, 0]),
            Err(ControlError::TrailingDatagram { extra: 1 })
        );
        assert_eq!(
            Control::decode_datagram(&[TYPE_OK, 0, 2, 0, 0]),
            Err(ControlError::BodyTruncated { kind: "ok", len: 2 })
        );
        assert!(matches!(
            Control::decode_datagram(&[TYPE_PUBLISH, 0, 3, 2, b'a', b' ']),
            Err(ControlError::BadStreamName { .. })
        ));
        assert!(matches!(
            Control::decode_datagram(&[TYPE_PUBLISH, 0, 1, 0]),
            Err(ControlError::BadStreamName { reason: "empty", .. })
        ));
        assert_eq!(
            Control::decode_datagram(&[TYPE_ERROR, 0, 5, 0, 1, 0, 1, 0xff]),
            Err(ControlError::BadUtf8 { kind: "error" })
        );
        let mut hello =
            Control::Hello { version: 1, role: Role::Viewer, token: None, proof: None }.encode();
        hello[4] = 2;
        assert!(matches!(
            Control::decode_datagram(&hello),
            Err(ControlError::BadValue { field: "role", value: 2, .. })
        ));
    }

    #[test]
    fn long_error_messages_are_cut_at_a_char_boundary() {
        let msg = Control::Error { code: ErrorCode::Internal, message: "é".repeat(200) };
        assert!(msg.validate().is_err());
        let Control::Error { message, .. } = Control::decode_datagram(&msg.encode()).unwrap()
        else {
            panic!("not an error");
        };
        assert_eq!(message, "é".repeat(128));
    }

    #[test]
    fn error_codes_map_both_ways() {
        for code in 0..=20u16 {
            assert_eq!(ErrorCode::from_u16(code).to_u16(), code);
        }
        assert_eq!(ErrorCode::from_u16(4), ErrorCode::StreamNotFound);
        assert_eq!(ErrorCode::from_u16(4000), ErrorCode::Other(4000));
    }

    #[test]
    fn nacks_are_built_as_ranges() {
        let Some(Control::Nack { stream_id, ranges }) = Control::nack(5, &[1, 2, 3, 10, 12, 13])
        else {
            panic!("not a nack");
        };
        assert_eq!(stream_id, 5);
        let pairs: Vec<(u64, u16)> = ranges.iter().map(|r| (r.first, r.count)).collect();
        assert_eq!(pairs, vec![(1, 3), (10, 1), (12, 2)]);
        let seqs: Vec<u64> = ranges.iter().flat_map(|r| r.seqs()).collect();
        assert_eq!(seqs, vec![1, 2, 3, 10, 12, 13]);
        // Empty, unordered, duplicated or too long lists make no NACK.
        assert_eq!(Control::nack(5, &[]), None);
        assert_eq!(Control::nack(5, &[2, 1]), None);
        assert_eq!(Control::nack(5, &[2, 2]), None);
        assert_eq!(Control::nack(5, &(0..65).collect::<Vec<u64>>()), None);
        assert!(Control::nack(5, &(0..64).collect::<Vec<u64>>()).is_some());
    }

    fn nack_frame(range_count: u8, ranges: &[(u64, u16)]) -> Vec<u8> {
        let mut body = vec![0, 0, 0, 1, range_count];
        for (first, count) in ranges {
            body.extend_from_slice(&first.to_be_bytes());
            body.extend_from_slice(&count.to_be_bytes());
        }
        let mut frame = vec![TYPE_NACK];
        frame.extend_from_slice(&(body.len() as u16).to_be_bytes());
        frame.extend_from_slice(&body);
        frame
    }

    #[test]
    fn malformed_nacks_are_refused() {
        let ok = nack_frame(2, &[(1, 2), (4, 1)]);
        assert!(Control::decode_datagram(&ok).is_ok());
        let bad = |frame: Vec<u8>| match Control::decode_datagram(&frame) {
            Err(ControlError::BadNack(why)) => why,
            other => panic!("{other:?}"),
        };
        assert_eq!(bad(nack_frame(0, &[])), "range count must be 1 to 64");
        assert_eq!(bad(nack_frame(65, &[(1, 1)])), "range count must be 1 to 64");
        assert_eq!(bad(nack_frame(1, &[(1, 0)])), "empty range");
        assert_eq!(bad(nack_frame(2, &[(4, 1), (1, 1)])), "ranges not ascending and apart");
        assert_eq!(bad(nack_frame(2, &[(1, 3), (3, 1)])), "ranges not ascending and apart");
        // Touching runs would be one range: refused, so a NACK has one encoding.
        assert_eq!(bad(nack_frame(2, &[(1, 3), (4, 1)])), "ranges not ascending and apart");
        assert_eq!(
            bad(nack_frame(1, &[(u64::MAX, 1)])),
            "range runs past the largest sequence number"
        );
        assert_eq!(bad(nack_frame(1, &[(0, 65)])), "more than 64 sequence numbers");
        assert_eq!(bad(nack_frame(2, &[(0, 60), (100, 5)])), "more than 64 sequence numbers");
        // A count that promises more ranges than the body holds is truncated, not trusted.
        assert_eq!(
            Control::decode_datagram(&nack_frame(3, &[(1, 1)])),
            Err(ControlError::BodyTruncated { kind: "nack", len: 15 })
        );
        // Bytes after the last range.
        let mut trailing = nack_frame(1, &[(1, 1)]);
        trailing.push(0);
        trailing[2] += 1;
        assert_eq!(
            Control::decode_datagram(&trailing),
            Err(ControlError::TrailingBytes { kind: "nack", extra: 1 })
        );
        assert_eq!(
            Control::decode_datagram(&[TYPE_KEYFRAME_REQUEST, 0, 2, 0, 1]),
            Err(ControlError::BodyTruncated { kind: "keyframe-request", len: 2 })
        );
        // `validate` applies the decoder's rules to a hand-built message.
        let hand = Control::Nack { stream_id: 1, ranges: vec![NackRange { first: 1, count: 0 }] };
        assert_eq!(hand.validate(), Err(ControlError::BadNack("empty range")));
    }

    #[test]
    fn every_prefix_and_byte_flip_of_a_nack_decodes_or_errs() {
        let frame = Control::nack(3, &[5, 6, 9, 40, 41, 42]).unwrap().encode();
        for cut in 0..frame.len() {
            assert!(Control::decode_datagram(&frame[..cut]).is_err(), "cut {cut}");
        }
        for i in 0..frame.len() {
            for bit in 0..8 {
                let mut mutated = frame.clone();
                mutated[i] ^= 1 << bit;
                // Whatever it decodes to must validate and re-encode to the same bytes.
                if let Ok(msg) = Control::decode_datagram(&mutated) {
                    assert_eq!(msg.validate(), Ok(()));
                    assert_eq!(msg.encode(), mutated);
                }
            }
        }
    }
}
