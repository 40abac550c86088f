//! One relay session's control handling, shared by the QUIC and UDP drivers: the session's
//! phase (awaiting hello, awaiting request, publishing, viewing), what each control message
//! means in it, and the NACKs the relay owes a publisher for what its leg lost.
//!
//! No I/O and no clock: a driver hands in decoded messages and the time, and does what the
//! returned [`Action`] says (send, ask the hub, retransmit, end). What differs between
//! transports stays in the drivers: UDP's tokens, credential, sealing and peer table, QUIC's
//! connection, object streams and timers. The drivers keep their own handles for a stream
//! (`P` while publishing, `V` while viewing) in the session, so there is one state, not two.

use std::time::Duration;

use stallwatch_measure::Time;
use stallwatch_measure::repair::{MAX_NACK_SEQS, Nack, NackConfig, NackScheduler};
use stallwatch_proto::control::{CONTROL_VERSION, Control, ErrorCode, Role, StartAt};
use stallwatch_proto::media::{FLAG_RETRANSMITTED, MediaHeader};

use super::Transport;

/// What the driver does about one control message.
#[derive(Debug, PartialEq)]
pub(crate) enum Action {
    /// Nothing (an accepted or repeated hello).
    Nothing,
    /// Send this to the client.
    Reply(Control),
    /// Answer a ping (the driver stamps the send time as it sends).
    Pong(Pong),
    /// Start publishing `stream` (caps and hub are the driver's), then call
    /// [`Session::published`], or send the refusal and leave the session as it is.
    Publish { stream: String },
    /// Subscribe to `stream`, then call [`Session::subscribed`], or send the refusal.
    Subscribe { stream: String, start: StartAt },
    /// Resend these packets of the viewed stream (at most [`MAX_NACK_SEQS`]), within the
    /// viewer's budget.
    Retransmit(Nack),
    /// A viewer asks for a keyframe of the stream it views: pass it through the hub's gate
    /// to the publisher.
    ForwardKeyframeRequest { stream_id: u32 },
    /// The client said goodbye: end the session.
    Goodbye,
    /// Out of order, or a message only relays send: count it as `unexpected_control` and
    /// send `reply`, if any.
    Unexpected { reply: Option<Control> },
}

/// A ping to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pong {
    pub id: u64,
    pub echo_send_ns: u64,
    pub relay_recv_ns: u64,
}

impl Pong {
    /// The `Pong` sent at `relay_send_ns`.
    pub(crate) fn at(self, relay_send_ns: u64) -> Control {
        Control::Pong {
            id: self.id,
            echo_send_ns: self.echo_send_ns,
            relay_recv_ns: self.relay_recv_ns,
            relay_send_ns,
        }
    }
}

enum Phase<P, V> {
    /// QUIC before its hello (a UDP session starts from a verified hello).
    AwaitingHello,
    /// Greeted with `role`; no stream yet (or every request so far refused).
    AwaitingRequest(Role),
    Publishing {
        stream: String,
        stream_id: u32,
        /// What the publisher's leg lost, to NACK (`None` on quic-stream, which QUIC repairs).
        nack: Option<Box<NackScheduler>>,
        handle: P,
    },
    Viewing {
        stream: String,
        stream_id: u32,
        /// The stream ended (UDP keeps the session, so the viewer may subscribe again).
        ended: bool,
        handle: V,
    },
}

/// One session's control state. `P` and `V` are the driver's handles on a publication and a
/// subscription.
pub(crate) struct Session<P, V> {
    phase: Phase<P, V>,
    /// NACKs and keyframe requests run over this transport (not quic-stream, which QUIC
    /// repairs and where a new GOP starts a new stream anyway).
    repair: bool,
    /// The `session` of this session's `Ok`s: UDP's nonce, 0 on QUIC.
    nonce: u64,
}

impl<P, V> Session<P, V> {
    /// A session over `transport` that waits for its hello.
    pub(crate) fn new(transport: Transport, nonce: u64) -> Self {
        Session { phase: Phase::AwaitingHello, repair: transport != Transport::QuicStream, nonce }
    }

    /// What to do about `msg`, received at `now`.
    pub(crate) fn on_control(&mut self, now: Time, msg: Control) -> Action {
        match msg {
            Control::Hello { version, role, .. } => self.on_hello(version, role),
            Control::Publish { stream } => self.on_publish(stream),
            Control::Subscribe { stream, start } => self.on_subscribe(stream, start),
            Control::Ping { id, send_ns } => {
                Action::Pong(Pong { id, echo_send_ns: send_ns, relay_recv_ns: now.as_nanos() })
            }
            Control::Goodbye => Action::Goodbye,
            Control::Nack { stream_id, ranges } => match self.viewed_with_repair(stream_id) {
                // Decoding bounds a NACK already; this holds for any message handed in.
                true => Action::Retransmit(Nack {
                    seqs: ranges.iter().flat_map(|r| r.seqs()).take(MAX_NACK_SEQS).collect(),
                }),
                false => Action::Unexpected { reply: None },
            },
            Control::KeyframeRequest { stream_id } => match self.viewed_with_repair(stream_id) {
                true => Action::ForwardKeyframeRequest { stream_id },
                false => Action::Unexpected { reply: None },
            },
            Control::Challenge { .. }
            | Control::Ok { .. }
            | Control::Error { .. }
            | Control::Pong { .. } => Action::Unexpected { reply: None },
        }
    }

    fn on_hello(&mut self, version: u8, role: Role) -> Action {
        match self.phase {
            // A client repeats its hello with its request; the session has its role by now.
            Phase::Publishing { .. } | Phase::Viewing { .. } => Action::Nothing,
            _ if version != CONTROL_VERSION => Action::Reply(version_mismatch(version)),
            _ => {
                self.phase = Phase::AwaitingRequest(role);
                Action::Nothing
            }
        }
    }

    fn on_publish(&mut self, stream: String) -> Action {
        match &self.phase {
            Phase::AwaitingHello => unexpected("send hello before publish or subscribe"),
            Phase::AwaitingRequest(Role::Viewer) | Phase::Viewing { .. } => {
                unexpected("hello said viewer: publish is not allowed")
            }
            Phase::AwaitingRequest(Role::Publisher) => Action::Publish { stream },
            Phase::Publishing { stream: ours, stream_id, .. } if *ours == stream => {
                Action::Reply(self.ok(*stream_id))
            }
            Phase::Publishing { stream: ours, .. } => {
                unexpected(&format!("this session already publishes {ours:?}"))
            }
        }
    }

    fn on_subscribe(&mut self, stream: String, start: StartAt) -> Action {
        match &self.phase {
            Phase::AwaitingHello => unexpected("send hello before publish or subscribe"),
            Phase::AwaitingRequest(Role::Publisher) | Phase::Publishing { .. } => {
                unexpected("hello said publisher: subscribe is not allowed")
            }
            Phase::AwaitingRequest(Role::Viewer) | Phase::Viewing { ended: true, .. } => {
                Action::Subscribe { stream, start }
            }
            Phase::Viewing { stream: ours, stream_id, .. } if *ours == stream => {
                Action::Reply(self.ok(*stream_id))
            }
            Phase::Viewing { stream: ours, .. } => {
                unexpected(&format!("this session already views {ours:?}"))
            }
        }
    }

    fn viewed_with_repair(&self, id: u32) -> bool {
        self.repair && matches!(self.phase, Phase::Viewing { stream_id, .. } if stream_id == id)
    }

    /// The `Ok` for stream `stream_id` on this session.
    pub(crate) fn ok(&self, stream_id: u32) -> Control {
        Control::Ok { stream_id, session: self.nonce }
    }

    /// The hub accepted the [`Action::Publish`]: the session publishes `stream`.
    pub(crate) fn published(&mut self, stream: &str, stream_id: u32, handle: P) {
        let nack = self.repair.then(|| Box::new(NackScheduler::new(NackConfig::default())));
        self.phase = Phase::Publishing { stream: stream.to_owned(), stream_id, nack, handle };
    }

    /// The hub accepted the [`Action::Subscribe`]: the session views `stream` (in place of a
    /// stream that ended).
    pub(crate) fn subscribed(&mut self, stream: &str, stream_id: u32, handle: V) {
        self.phase = Phase::Viewing { stream: stream.to_owned(), stream_id, ended: false, handle };
    }

    /// The viewed stream ended; the viewer may subscribe again.
    pub(crate) fn on_stream_ended(&mut self) {
        if let Phase::Viewing { ended, .. } = &mut self.phase {
            *ended = true;
        }
    }

    /// The answer to a request repeated after its `Ok`: the same `Ok` if it names this
    /// session's live stream, else `None`. Changes nothing (UDP answers unsealed repeats).
    pub(crate) fn repeated_ok(&self, msg: &Control) -> Option<Control> {
        match (&self.phase, msg) {
            (Phase::Publishing { stream: ours, stream_id, .. }, Control::Publish { stream })
            | (
                Phase::Viewing { stream: ours, stream_id, ended: false, .. },
                Control::Subscribe { stream, .. },
            ) if ours == stream => Some(self.ok(*stream_id)),
            _ => None,
        }
    }

    /// Whether no stream has been accepted yet.
    pub(crate) fn awaiting_request(&self) -> bool {
        matches!(self.phase, Phase::AwaitingHello | Phase::AwaitingRequest(_))
    }

    /// The role of the session's hello, if it had one.
    pub(crate) fn role(&self) -> Option<Role> {
        match self.phase {
            Phase::AwaitingHello => None,
            Phase::AwaitingRequest(role) => Some(role),
            Phase::Publishing { .. } => Some(Role::Publisher),
            Phase::Viewing { .. } => Some(Role::Viewer),
        }
    }

    /// The published stream's id and the driver's handle, while publishing.
    pub(crate) fn publishing(&mut self) -> Option<(u32, &mut P)> {
        match &mut self.phase {
            Phase::Publishing { stream_id, handle, .. } => Some((*stream_id, handle)),
            _ => None,
        }
    }

    /// The published stream's id, while publishing.
    pub(crate) fn published_stream_id(&self) -> Option<u32> {
        match self.phase {
            Phase::Publishing { stream_id, .. } => Some(stream_id),
            _ => None,
        }
    }

    /// The viewed stream's id and the driver's handle, while viewing.
    pub(crate) fn viewing(&mut self) -> Option<(u32, &mut V)> {
        match &mut self.phase {
            Phase::Viewing { stream_id, handle, .. } => Some((*stream_id, handle)),
            _ => None,
        }
    }

    /// A publisher's media packet arrived at `now`: track what its leg lost. `path_rtt` is the
    /// transport's RTT (QUIC); without one (UDP) the publisher's answers to the relay's NACKs,
    /// marked `RETRANSMITTED`, time the RTT.
    pub(crate) fn on_media(&mut self, now: Time, header: &MediaHeader, path_rtt: Option<Duration>) {
        let Phase::Publishing { nack: Some(nack), .. } = &mut self.phase else {
            return;
        };
        match path_rtt {
            Some(rtt) => {
                nack.on_rtt_sample(rtt);
                nack.on_packet(now, header.seq, header.capture_ns);
            }
            None if header.flags & FLAG_RETRANSMITTED != 0 => {
                nack.on_retransmission(now, header.seq, header.capture_ns);
            }
            None => nack.on_packet(now, header.seq, header.capture_ns),
        }
    }

    /// When the next NACK to the publisher may be due (`None`: nothing missing).
    pub(crate) fn nack_due(&self) -> Option<Time> {
        match &self.phase {
            Phase::Publishing { nack: Some(nack), .. } => nack.poll_timeout(),
            _ => None,
        }
    }

    /// The NACKs to send the publisher at `now`.
    pub(crate) fn poll_nacks(&mut self, now: Time) -> Vec<Control> {
        let Phase::Publishing { nack: Some(nack), stream_id, .. } = &mut self.phase else {
            return Vec::new();
        };
        let mut due = Vec::new();
        while let Some(n) = nack.poll_nack(now, None) {
            due.extend(Control::nack(*stream_id, &n.seqs));
        }
        due
    }
}

fn unexpected(message: &str) -> Action {
    Action::Unexpected { reply: Some(bad_request(message)) }
}

pub(crate) fn bad_request(message: &str) -> Control {
    Control::Error { code: ErrorCode::BadRequest, message: message.to_owned() }
}

fn version_mismatch(version: u8) -> Control {
    Control::Error {
        code: ErrorCode::VersionMismatch,
        message: format!("this relay speaks control version {CONTROL_VERSION}, not {version}"),
    }
}

#[cfg(test)]
mod tests {
    use stallwatch_proto::control::NackRange;
    use stallwatch_proto::media::FrameKind;

    use super::*;

    type Machine = Session<(), ()>;

    const T0: Time = Time::from_millis(1_000);

    fn hello(role: Role) -> Control {
        Control::Hello { version: CONTROL_VERSION, role, token: None, proof: None }
    }

    fn publish(stream: &str) -> Control {
        Control::Publish { stream: stream.to_owned() }
    }

    fn subscribe(stream: &str) -> Control {
        Control::Subscribe { stream: stream.to_owned(), start: StartAt::CachedGop }
    }

    fn code(action: &Action) -> Option<ErrorCode> {
        match action {
            Action::Reply(Control::Error { code, .. })
            | Action::Unexpected { reply: Some(Control::Error { code, .. }) } => Some(*code),
            _ => None,
        }
    }

    fn publisher(transport: Transport) -> Machine {
        let mut s = Machine::new(transport, 7);
        assert_eq!(s.on_control(T0, hello(Role::Publisher)), Action::Nothing);
        assert_eq!(s.on_control(T0, publish("a")), Action::Publish { stream: "a".into() });
        s.published("a", 3, ());
        s
    }

    fn viewer(transport: Transport) -> Machine {
        let mut s = Machine::new(transport, 7);
        assert_eq!(s.on_control(T0, hello(Role::Viewer)), Action::Nothing);
        assert_eq!(
            s.on_control(T0, subscribe("a")),
            Action::Subscribe { stream: "a".into(), start: StartAt::CachedGop }
        );
        s.subscribed("a", 3, ());
        s
    }

    #[test]
    fn requests_need_a_hello_of_the_matching_role() {
        let mut s = Machine::new(Transport::QuicDatagram, 0);
        let before = s.on_control(T0, publish("a"));
        assert!(matches!(before, Action::Unexpected { reply: Some(_) }), "{before:?}");
        assert_eq!(code(&before), Some(ErrorCode::BadRequest));
        assert!(matches!(s.on_control(T0, subscribe("a")), Action::Unexpected { .. }));

        s.on_control(T0, hello(Role::Viewer));
        assert_eq!(code(&s.on_control(T0, publish("a"))), Some(ErrorCode::BadRequest));
        assert!(matches!(s.on_control(T0, subscribe("a")), Action::Subscribe { .. }));

        let mut s = Machine::new(Transport::Udp, 0);
        s.on_control(T0, hello(Role::Publisher));
        assert_eq!(code(&s.on_control(T0, subscribe("a"))), Some(ErrorCode::BadRequest));
        assert!(s.awaiting_request());
        assert_eq!(s.role(), Some(Role::Publisher));
    }

    #[test]
    fn a_hello_of_another_version_is_refused_and_the_session_waits() {
        let mut s = Machine::new(Transport::QuicStream, 0);
        let wrong = Control::Hello {
            version: CONTROL_VERSION + 1,
            role: Role::Publisher,
            token: None,
            proof: None,
        };
        assert_eq!(code(&s.on_control(T0, wrong.clone())), Some(ErrorCode::VersionMismatch));
        assert_eq!(s.role(), None);
        assert!(matches!(s.on_control(T0, publish("a")), Action::Unexpected { .. }));
        s.on_control(T0, hello(Role::Publisher));
        assert!(matches!(s.on_control(T0, publish("a")), Action::Publish { .. }));
        s.published("a", 1, ());
        // Once publishing, hellos (of any version) are repeats and change nothing.
        assert_eq!(s.on_control(T0, wrong), Action::Nothing);
        assert_eq!(s.on_control(T0, hello(Role::Viewer)), Action::Nothing);
        assert_eq!(s.role(), Some(Role::Publisher));
    }

    #[test]
    fn a_refused_request_leaves_the_session_waiting() {
        let mut s = Machine::new(Transport::Udp, 0);
        s.on_control(T0, hello(Role::Viewer));
        // The driver's hub refused the first (no publisher yet); the viewer asks again.
        assert!(matches!(s.on_control(T0, subscribe("a")), Action::Subscribe { .. }));
        assert!(s.awaiting_request());
        assert!(matches!(s.on_control(T0, subscribe("a")), Action::Subscribe { .. }));
    }

    #[test]
    fn a_repeated_request_gets_the_same_ok_and_another_one_bad_request() {
        let mut s = publisher(Transport::Udp);
        let ok = Control::Ok { stream_id: 3, session: 7 };
        assert_eq!(s.on_control(T0, publish("a")), Action::Reply(ok.clone()));
        assert_eq!(s.repeated_ok(&publish("a")), Some(ok.clone()));
        assert_eq!(s.repeated_ok(&publish("b")), None);
        assert_eq!(code(&s.on_control(T0, publish("b"))), Some(ErrorCode::BadRequest));
        assert!(matches!(s.on_control(T0, subscribe("a")), Action::Unexpected { .. }));
        assert_eq!(s.publishing().map(|(id, _)| id), Some(3));

        let mut s = viewer(Transport::QuicDatagram);
        assert_eq!(s.on_control(T0, subscribe("a")), Action::Reply(ok.clone()));
        assert_eq!(s.repeated_ok(&subscribe("a")), Some(ok));
        assert!(matches!(s.on_control(T0, subscribe("b")), Action::Unexpected { .. }));
        assert_eq!(code(&s.on_control(T0, publish("a"))), Some(ErrorCode::BadRequest));
        assert_eq!(s.viewing().map(|(id, _)| id), Some(3));
    }

    #[test]
    fn a_viewer_whose_stream_ended_may_subscribe_again() {
        let mut s = viewer(Transport::Udp);
        s.on_stream_ended();
        // No Ok for the dead stream, not even to a repeat.
        assert_eq!(s.repeated_ok(&subscribe("a")), None);
        assert!(matches!(s.on_control(T0, subscribe("b")), Action::Subscribe { .. }));
        assert!(!s.awaiting_request(), "a viewer that had an Ok stays past its request");
        s.subscribed("b", 4, ());
        assert_eq!(s.viewing().map(|(id, _)| id), Some(4));
    }

    #[test]
    fn goodbye_ends_every_phase() {
        let mut fresh = Machine::new(Transport::QuicStream, 0);
        assert_eq!(fresh.on_control(T0, Control::Goodbye), Action::Goodbye);
        let mut greeted = Machine::new(Transport::Udp, 0);
        greeted.on_control(T0, hello(Role::Viewer));
        assert_eq!(greeted.on_control(T0, Control::Goodbye), Action::Goodbye);
        assert_eq!(publisher(Transport::Udp).on_control(T0, Control::Goodbye), Action::Goodbye);
        assert_eq!(viewer(Transport::Udp).on_control(T0, Control::Goodbye), Action::Goodbye);
    }

    #[test]
    fn a_ping_is_answered_with_the_time_it_arrived() {
        let mut s = Machine::new(Transport::QuicStream, 0);
        let at = Time::from_nanos(123_456_789);
        let Action::Pong(pong) = s.on_control(at, Control::Ping { id: 9, send_ns: 55 }) else {
            panic!("no pong");
        };
        assert_eq!(
            pong.at(123_456_999),
            Control::Pong {
                id: 9,
                echo_send_ns: 55,
                relay_recv_ns: 123_456_789,
                relay_send_ns: 123_456_999
            }
        );
        assert!(matches!(
            viewer(Transport::Udp).on_control(at, Control::Ping { id: 1, send_ns: 0 }),
            Action::Pong(_)
        ));
    }

    #[test]
    fn one_nack_cannot_ask_for_more_than_the_bound() {
        let mut s = viewer(Transport::Udp);
        // Not what a decoder lets through: 64 runs of 65,535 numbers.
        let ranges: Vec<NackRange> =
            (0..64u64).map(|i| NackRange { first: i * 100_000, count: u16::MAX }).collect();
        let Action::Retransmit(nack) = s.on_control(T0, Control::Nack { stream_id: 3, ranges })
        else {
            panic!("not a retransmission");
        };
        assert_eq!(nack.seqs.len(), MAX_NACK_SEQS);
        assert_eq!(nack.seqs.first(), Some(&0));

        let small = vec![NackRange { first: 10, count: 3 }];
        assert_eq!(
            s.on_control(T0, Control::Nack { stream_id: 3, ranges: small.clone() }),
            Action::Retransmit(Nack { seqs: vec![10, 11, 12] })
        );
        // Another stream's, or on quic-stream (QUIC repairs it), or from a publisher: counted.
        let other = Control::Nack { stream_id: 4, ranges: small.clone() };
        assert_eq!(s.on_control(T0, other), Action::Unexpected { reply: None });
        let on_streams = Control::Nack { stream_id: 3, ranges: small.clone() };
        let action = viewer(Transport::QuicStream).on_control(T0, on_streams.clone());
        assert_eq!(action, Action::Unexpected { reply: None });
        let action = publisher(Transport::Udp).on_control(T0, on_streams);
        assert_eq!(action, Action::Unexpected { reply: None });
    }

    #[test]
    fn keyframe_requests_go_on_only_from_a_viewer_of_that_stream() {
        let request = |id| Control::KeyframeRequest { stream_id: id };
        let mut s = viewer(Transport::QuicDatagram);
        assert_eq!(s.on_control(T0, request(3)), Action::ForwardKeyframeRequest { stream_id: 3 });
        assert_eq!(s.on_control(T0, request(4)), Action::Unexpected { reply: None });
        let action = viewer(Transport::QuicStream).on_control(T0, request(3));
        assert_eq!(action, Action::Unexpected { reply: None });
        let action = publisher(Transport::QuicDatagram).on_control(T0, request(3));
        assert_eq!(action, Action::Unexpected { reply: None });
    }

    #[test]
    fn messages_only_relays_send_are_counted_in_every_phase() {
        let relay_only = [
            Control::Challenge { token: [0; 16] },
            Control::Ok { stream_id: 1, session: 0 },
            Control::Error { code: ErrorCode::BadRequest, message: "x".into() },
            Control::Pong { id: 1, echo_send_ns: 0, relay_recv_ns: 0, relay_send_ns: 0 },
        ];
        let mut greeted = Machine::new(Transport::Udp, 0);
        greeted.on_control(T0, hello(Role::Viewer));
        let mut sessions = [
            Machine::new(Transport::QuicDatagram, 0),
            greeted,
            publisher(Transport::QuicDatagram),
            viewer(Transport::Udp),
        ];
        for s in &mut sessions {
            for msg in relay_only.clone() {
                assert_eq!(s.on_control(T0, msg), Action::Unexpected { reply: None });
            }
        }
        // ... and change nothing.
        assert_eq!(sessions[2].publishing().map(|(id, _)| id), Some(3));
        assert_eq!(sessions[3].viewing().map(|(id, _)| id), Some(3));
    }

    fn packet(seq: u64, flags: u16) -> MediaHeader {
        MediaHeader {
            kind: FrameKind::Predicted,
            flags,
            frag_index: 0,
            frag_count: 1,
            stream_id: 3,
            payload_len: 100,
            seq,
            frame: seq as u32,
            gop: 0,
            capture_ns: seq * 1_000_000,
            send_ns: 0,
        }
    }

    #[test]
    fn a_gap_in_a_publishers_packets_is_nacked_when_due() {
        let mut s = publisher(Transport::Udp);
        for seq in [0, 1, 3] {
            s.on_media(T0, &packet(seq, 0), None);
        }
        let due = s.nack_due().expect("a NACK is due for seq 2");
        assert!(due >= T0);
        assert_eq!(s.poll_nacks(due), vec![Control::nack(3, &[2]).unwrap()]);
        // Unanswered, it is asked for again later ...
        let again = s.nack_due().expect("a retry is due");
        assert!(again > due);
        // ... but the answer (marked retransmitted) closes the gap: nothing more to ask.
        s.on_media(due, &packet(2, FLAG_RETRANSMITTED), None);
        assert!(s.poll_nacks(again).is_empty());
        assert!(s.poll_nacks(Time::from_millis(60_000)).is_empty());
    }

    #[test]
    fn quic_stream_publishers_and_viewers_get_no_nacks() {
        let mut s = publisher(Transport::QuicStream);
        for seq in [0, 5] {
            s.on_media(T0, &packet(seq, 0), Some(Duration::from_millis(10)));
        }
        assert_eq!(s.nack_due(), None);
        assert!(s.poll_nacks(Time::from_millis(60_000)).is_empty());
        // A viewer has no publisher leg to repair.
        let mut v = viewer(Transport::Udp);
        v.on_media(T0, &packet(0, 0), None);
        v.on_media(T0, &packet(5, 0), None);
        assert_eq!(v.nack_due(), None);
    }
}
