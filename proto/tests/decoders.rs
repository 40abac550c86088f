//! Property tests for every decoder in `stallwatch-proto`: no input makes one panic, valid
//! values round-trip, and a compression bomb inside a report is caught.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::OnceLock;
use std::time::Duration;

use hdrhistogram::Histogram;
use proptest::prelude::*;
use proptest::sample::Index;
use stallwatch_proto::control::{Control, ErrorCode, Role, StartAt};
use stallwatch_proto::duration::{format_duration, parse_duration};
use stallwatch_proto::hdr::{self, HdrError, HdrLimits};
use stallwatch_proto::media::{FrameKind, MediaHeader};
use stallwatch_proto::plan::{
    Plan, ProbeMode, ProbePlan, RelayPlan, Repair, Transport, UdpCredential, decode_plan,
    encode_plan,
};
use stallwatch_proto::report::{
    HistogramData, REPORT_SCHEMA_VERSION, Report, ReportError, ReportLimits, Series, SeriesLabels,
    decode_report, encode_report,
};

const MAX_PLAN_BYTES: usize = 64 * 1024;

/// Feeds one input to every decoder; each may fail but none may panic.
fn feed_all(bytes: &[u8]) {
    let _ = MediaHeader::decode(bytes);
    let _ = MediaHeader::decode_packet(bytes);
    let _ = Control::decode_frame(bytes);
    let _ = Control::decode_datagram(bytes);
    let _ = hdr::decode(bytes, &HdrLimits::default());
    let _ = hdr::decode_sparse(bytes, &HdrLimits::default());
    let _ = decode_report(bytes, &ReportLimits::default());
    let _ = decode_plan(bytes, MAX_PLAN_BYTES);
    let _ = parse_duration(&String::from_utf8_lossy(bytes));
}

/// The sparse decoder accepts and refuses exactly what the full one does, and what it keeps
/// is the full histogram: every recorded bucket (highest equivalent value and count, as
/// `iter_recorded` walks them), the total, min and max.
fn check_sparse_matches_full(bytes: &[u8], limits: &HdrLimits) {
    let full = hdr::decode(bytes, limits);
    let sparse = hdr::decode_sparse(bytes, limits);
    match (&sparse, &full) {
        (Ok(sparse), Ok(full)) => {
            assert_eq!(&sparse.to_histogram().unwrap(), full);
            assert_eq!(sparse.len(), full.len());
            assert_eq!((sparse.max(), sparse.min_nz()), (full.max(), full.min_nz()));
            assert_eq!((sparse.low(), sparse.sigfig()), (full.low(), full.sigfig()));
            let recorded: Vec<(u64, u64, u64)> =
                sparse.iter().map(|b| (b.value, b.highest, b.count)).collect();
            let expected: Vec<(u64, u64, u64)> = full
                .iter_recorded()
                .map(|v| {
                    let to = v.value_iterated_to();
                    (full.lowest_equivalent(to), to, v.count_at_value())
                })
                .collect();
            assert_eq!(recorded, expected);
            assert_eq!(sparse.bucket_count(), expected.len());
        }
        // By their text: a NaN conversion ratio is not equal to itself.
        (Err(a), Err(b)) => assert_eq!(format!("{a:?}"), format!("{b:?}")),
        _ => panic!("sparse {sparse:?} but full {full:?}"),
    }
}

/// Like [`feed_all`], but also checks that whatever decodes re-encodes to the same value.
fn feed_all_checked(bytes: &[u8]) {
    feed_all(bytes);
    if let Ok(h) = MediaHeader::decode(bytes) {
        assert_eq!(MediaHeader::decode(&h.to_bytes()), Ok(h));
    }
    if let Ok(Some((msg, used))) = Control::decode_frame(bytes) {
        assert!(used <= bytes.len());
        assert_eq!(Control::decode_datagram(&msg.encode()), Ok(msg));
    }
    if let Ok(h) = hdr::decode(bytes, &HdrLimits::default()) {
        assert_eq!(hdr::decode(&hdr::encode(&h), &HdrLimits::default()).as_ref(), Ok(&h));
    }
    check_sparse_matches_full(bytes, &HdrLimits::default());
    if let Ok(plan) = decode_plan(bytes, MAX_PLAN_BYTES) {
        assert_eq!(decode_plan(&encode_plan(&plan), MAX_PLAN_BYTES), Ok(plan));
    }
    if let Ok(d) = parse_duration(&String::from_utf8_lossy(bytes)) {
        assert_eq!(parse_duration(&format_duration(d)), Ok(d));
    }
}

/// Wraps uncompressed V2 bytes in the V2+DEFLATE envelope, as a hostile sender could.
fn deflate_v2(uncompressed: &[u8]) -> Vec<u8> {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(uncompressed).unwrap();
    let body = z.finish().unwrap();
    let mut out = 0x1c84_9314u32.to_be_bytes().to_vec();
    out.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// The uncompressed V2 form inside a V2+DEFLATE encoding.
fn inflate_v2(encoded: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut z = flate2::write::ZlibDecoder::new(&mut out);
    z.write_all(&encoded[8..]).unwrap();
    z.finish().unwrap();
    out
}

fn histogram(values: &[u64]) -> Histogram<u64> {
    let mut h = hdr::new_histogram();
    for &v in values {
        h.record(v).unwrap();
    }
    h
}

fn sample_report() -> Report {
    let jitter = histogram(&[100, 2_000, 2_500, 31_000, 31_000]);
    let first_frame = histogram(&[850_000, 1_200_000]);
    Report {
        schema_version: REPORT_SCHEMA_VERSION,
        agent: "edge-fra-1".into(),
        agent_version: "0.1.0".into(),
        seq: 9,
        window_start_ms: 1_700_000_000_000,
        window_end_ms: 1_700_000_010_000,
        plan_revision: 2,
        spool_depth: 1,
        series: vec![Series {
            labels: SeriesLabels::new("p1", Transport::Udp, Repair::Nack, "relay-1", Role::Viewer),
            counters: [("packets_lost".to_owned(), 3)].into(),
            histograms: [
                ("jitter_us".to_owned(), HistogramData::from_histogram(&jitter, 66_600)),
                (
                    "first_frame_us".to_owned(),
                    HistogramData::from_histogram(&first_frame, 2_050_000),
                ),
            ]
            .into(),
        }],
    }
}

fn sample_plan() -> Plan {
    Plan {
        revision: 4,
        report_interval: Duration::from_secs(10),
        relay: Some(RelayPlan {
            listen: "0.0.0.0:4433".into(),
            gop_cache: true,
            udp_credential: Some(UdpCredential([0xab; 32])),
            revoked_serials: vec!["0a1b".into()],
        }),
        probes: vec![
            ProbePlan {
                name: "fra-view".into(),
                target: "fra".into(),
                address: "relay.fra:4433".into(),
                transport: Transport::QuicStream,
                profile: "720p30".into(),
                mode: ProbeMode::View { stream: "fra.720p30".into() },
                every: Duration::from_secs(60),
                duration: Duration::from_secs(20),
                start_offset: Duration::from_millis(1500),
                emulate: Some("3g".into()),
                repair: None,
                udp_credential: None,
            },
            ProbePlan {
                name: "loop".into(),
                target: "self".into(),
                address: "127.0.0.1:4433".into(),
                transport: Transport::Udp,
                profile: "audio".into(),
                mode: ProbeMode::Loopback,
                every: Duration::from_secs(30),
                duration: Duration::from_secs(30),
                start_offset: Duration::ZERO,
                emulate: None,
                repair: Some(stallwatch_proto::plan::Repair::None),
                udp_credential: Some(UdpCredential([7; 32])),
            },
        ],
    }
}

fn all_controls() -> Vec<Control> {
    vec![
        Control::Hello { version: 1, role: Role::Publisher, token: None, proof: None },
        Control::Hello { version: 1, role: Role::Viewer, token: Some([7; 16]), proof: None },
        Control::Challenge { token: [0x5a; 16] },
        Control::Publish { stream: "fra.720p30".into() },
        Control::Subscribe { stream: "fra.720p30".into(), start: StartAt::Live },
        Control::Ok { stream_id: 77, session: 5 },
        Control::Error { code: ErrorCode::TooManyViewers, message: "viewer limit 100".into() },
        Control::Ping { id: 5, send_ns: 1_700_000_000_000_000_000 },
        Control::Pong { id: 5, echo_send_ns: 1, relay_recv_ns: 2, relay_send_ns: 3 },
        Control::Goodbye,
        Control::nack(77, &[1000, 1001, 1005, 1010, 1011]).unwrap(),
        Control::KeyframeRequest { stream_id: 77 },
    ]
}

/// Valid encodings that the mutation fuzzer starts from.
struct Seeds {
    all: Vec<Vec<u8>>,
    /// Uncompressed V2 forms, mutated and then re-deflated so corruption reaches the parser
    /// instead of stopping at the zlib checksum.
    raw_v2: Vec<Vec<u8>>,
}

fn seeds() -> &'static Seeds {
    static SEEDS: OnceLock<Seeds> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut all = Vec::new();
        let media = MediaHeader {
            kind: FrameKind::Key,
            flags: 0,
            frag_index: 1,
            frag_count: 3,
            stream_id: 9,
            payload_len: 16,
            seq: 1000,
            frame: 60,
            gop: 1,
            capture_ns: 1,
            send_ns: 2,
        };
        let mut packet = media.to_bytes().to_vec();
        packet.extend_from_slice(&[0xaa; 16]);
        all.push(packet);
        let mut stream = Vec::new();
        for c in all_controls() {
            all.push(c.encode());
            stream.extend_from_slice(&c.encode());
        }
        all.push(stream);
        let hists = [
            hdr::new_histogram(),
            histogram(&[1, 2, 3]),
            histogram(&[5, 500, 50_000, 5_000_000, 1 << 36]),
        ];
        let raw_v2 = hists.iter().map(|h| inflate_v2(&hdr::encode(h))).collect();
        all.extend(hists.iter().map(hdr::encode));
        all.push(encode_report(&sample_report()));
        all.push(encode_plan(&sample_plan()));
        all.extend(["1h30m", "250ms", "0s", "2d", "1m30s5ms7us9ns"].map(|s| s.as_bytes().to_vec()));
        Seeds { all, raw_v2 }
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(Index, u8),
    Set(Index, u8),
    Insert(Index, u8),
    Remove(Index),
    Truncate(Index),
    /// Repeat a slice in place, which stretches lengths and varint runs.
    Repeat(Index, Index),
    /// Overwrite a run with an edge byte (0x00, 0x7f, 0x80, 0xff): extreme lengths and varints.
    Fill(Index, usize, u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<Index>().prop_map(Mutation::Remove),
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::Repeat(a, b)),
        (any::<Index>(), 1usize..12, proptest::sample::select(vec![0x00, 0x7f, 0x80, 0xff]))
            .prop_map(|(i, n, b)| Mutation::Fill(i, n, b)),
    ]
}

fn apply(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len();
        match *m {
            Mutation::Flip(ref i, bit) if len > 0 => bytes[i.index(len)] ^= 1 << bit,
            Mutation::Set(ref i, b) if len > 0 => bytes[i.index(len)] = b,
            Mutation::Insert(ref i, b) => bytes.insert(i.index(len + 1), b),
            Mutation::Remove(ref i) if len > 0 => {
                bytes.remove(i.index(len));
            }
            Mutation::Truncate(ref i) => bytes.truncate(i.index(len + 1)),
            Mutation::Repeat(ref a, ref b) if len > 0 => {
                let (a, b) = (a.index(len), b.index(len));
                let (start, end) = (a.min(b), a.max(b).min(a.min(b) + 64));
                let chunk = bytes[start..end].to_vec();
                bytes.splice(end..end, chunk);
            }
            Mutation::Fill(ref i, n, b) if len > 0 => {
                let start = i.index(len);
                let end = (start + n).min(len);
                bytes[start..end].fill(b);
            }
            _ => {}
        }
    }
    bytes
}

mod arbitrary_bytes {
    use super::*;

    /// `len` pseudo-random bytes from `seed` (splitmix64). proptest's `vec(any::<u8>(), ..)`
    /// builds a value tree per byte, which made 100,000 cases take over a minute in a debug
    /// build; a seed keeps every failure reproducible from the (seed, len) proptest prints.
    fn random_bytes(mut seed: u64, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = seed;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
        }
        out.truncate(len);
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 100_000, ..ProptestConfig::default() })]

        /// Every decoder, fed the same random bytes, then the bytes behind prefixes that get
        /// past the first check of the control, HDR and duration decoders.
        #[test]
        fn no_decoder_panics(seed in any::<u64>(), len in 0usize..2048) {
            let bytes = random_bytes(seed, len);
            feed_all_checked(&bytes);

            // A known control type in front reaches the body parsers.
            let mut control = bytes.clone();
            if let Some(first) = control.first_mut() {
                *first = 0x80 + *first % 9;
            }
            let _ = Control::decode_frame(&control);
            let _ = Control::decode_datagram(&control);

            // A consistent HDR prefix reaches the inflater.
            let mut hdr_bytes = 0x1c84_9314u32.to_be_bytes().to_vec();
            hdr_bytes.extend_from_slice(&u32::try_from(bytes.len()).unwrap().to_be_bytes());
            hdr_bytes.extend_from_slice(&bytes);
            check_sparse_matches_full(&hdr_bytes, &HdrLimits::default());

            // Duration-alphabet text reaches past the first character.
            let alphabet = ['0', '1', '9', 'd', 'h', 'm', 's', 'n', 'u', 'µ', '-'];
            let text: String =
                bytes.iter().take(40).map(|b| alphabet[usize::from(*b) % alphabet.len()]).collect();
            if let Ok(d) = parse_duration(&text) {
                prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
            }
        }
    }
}

mod mutations {
    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 20_000, ..ProptestConfig::default() })]

        /// Valid encodings with bytes flipped, set, inserted, removed, truncated or repeated.
        #[test]
        fn mutated_encodings_never_panic(
            seed in any::<Index>(),
            raw in any::<Index>(),
            mutations in proptest::collection::vec(mutation(), 1..6),
        ) {
            let seeds = seeds();
            let bytes = apply(seed.get(&seeds.all).clone(), &mutations);
            feed_all_checked(&bytes);

            // Corrupt the uncompressed V2 form, then re-deflate it so the checks behind the
            // zlib checksum (and hdrhistogram's own parser) see the damage.
            let v2 = apply(raw.get(&seeds.raw_v2).clone(), &mutations);
            let encoded = deflate_v2(&v2);
            check_sparse_matches_full(&encoded, &HdrLimits::default());
            if let Ok(h) = hdr::decode(&encoded, &HdrLimits::default()) {
                prop_assert_eq!(hdr::decode(&hdr::encode(&h), &HdrLimits::default()), Ok(h));
            }
        }
    }
}

mod structured_hdr {
    use super::*;

    /// LEB128-64b9B, as the V2 format writes counts.
    fn put_varint(out: &mut Vec<u8>, mut v: u64) {
        for _ in 0..8 {
            if v < 0x80 {
                out.push(v as u8);
                return;
            }
            out.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn zig_zag(v: i64) -> u64 {
        ((v << 1) ^ (v >> 63)) as u64
    }

    fn edge_u64() -> impl Strategy<Value = u64> {
        prop_oneof![
            Just(0u64),
            Just(1),
            Just(2),
            Just(1000),
            Just(1 << 36),
            Just((1 << 36) + 1),
            Just(u64::MAX / 2),
            Just(u64::MAX),
            any::<u64>(),
        ]
    }

    /// A count (non-negative) or a zero run (negative), biased towards the extremes.
    fn count_or_run() -> impl Strategy<Value = u64> {
        prop_oneof![
            (0i64..100).prop_map(zig_zag),
            (-30_000i64..0).prop_map(zig_zag),
            Just(zig_zag(i64::MAX)),
            Just(zig_zag(i64::MIN)),
            Just(zig_zag(i64::MIN + 1)),
            any::<u64>(),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 5_000, ..ProptestConfig::default() })]

        /// Uncompressed V2 forms with hostile header fields and counts, properly deflated so
        /// they reach the header checks and hdrhistogram's parser.
        #[test]
        fn hostile_v2_never_panics(
            (sigfigs, low, high) in (0u32..7, edge_u64(), edge_u64()),
            counts in proptest::collection::vec(count_or_run(), 0..40),
            (offset, ratio_one, length_slack) in (0u32..2, any::<bool>(), -2i64..=2),
        ) {
            let mut payload = Vec::new();
            for c in counts {
                put_varint(&mut payload, c);
            }
            let declared = (payload.len() as i64 + length_slack).max(0) as u32;
            let mut raw = 0x1c84_9313u32.to_be_bytes().to_vec();
            raw.extend_from_slice(&declared.to_be_bytes());
            raw.extend_from_slice(&offset.to_be_bytes());
            raw.extend_from_slice(&sigfigs.to_be_bytes());
            raw.extend_from_slice(&low.to_be_bytes());
            raw.extend_from_slice(&high.to_be_bytes());
            raw.extend_from_slice(&(if ratio_one { 1.0f64 } else { 0.5 }).to_be_bytes());
            raw.extend_from_slice(&payload);
            let encoded = deflate_v2(&raw);
            for limits in [HdrLimits::default(), HdrLimits {
                max_highest_trackable: u64::MAX,
                max_significant_figures: 5,
                ..HdrLimits::default()
            }] {
                check_sparse_matches_full(&encoded, &limits);
                if let Ok(h) = hdr::decode(&encoded, &limits) {
                    let again = hdr::decode(&hdr::encode(&h), &limits);
                    prop_assert_eq!(again, Ok(h));
                }
            }
        }
    }
}

mod round_trips {
    use super::*;

    fn stream_name() -> impl Strategy<Value = String> {
        "[A-Za-z0-9._-]{1,64}"
    }

    fn control() -> impl Strategy<Value = Control> {
        prop_oneof![
            (any::<u8>(), any::<bool>(), any::<Option<[u8; 16]>>(), any::<[u8; 16]>()).prop_map(
                |(version, viewer, token, proof)| {
                    Control::Hello {
                        version,
                        role: if viewer { Role::Viewer } else { Role::Publisher },
                        token,
                        // A proof only rides on a tokened hello.
                        proof: token.map(|_| proof),
                    }
                }
            ),
            any::<[u8; 16]>().prop_map(|token| Control::Challenge { token }),
            stream_name().prop_map(|stream| Control::Publish { stream }),
            (stream_name(), any::<bool>()).prop_map(|(stream, live)| Control::Subscribe {
                stream,
                start: if live { StartAt::Live } else { StartAt::CachedGop },
            }),
            (any::<u32>(), any::<u64>())
                .prop_map(|(stream_id, session)| Control::Ok { stream_id, session }),
            (any::<u16>(), "\\PC{0,64}").prop_map(|(code, message)| Control::Error {
                code: ErrorCode::from_u16(code),
                message,
            }),
            (any::<u64>(), any::<u64>()).prop_map(|(id, send_ns)| Control::Ping { id, send_ns }),
            any::<[u64; 4]>().prop_map(|[id, echo_send_ns, relay_recv_ns, relay_send_ns]| {
                Control::Pong { id, echo_send_ns, relay_recv_ns, relay_send_ns }
            }),
            Just(Control::Goodbye),
            (any::<u32>(), any::<u64>(), proptest::collection::btree_set(0u64..200, 1..=64))
                .prop_map(|(stream_id, base, offsets)| {
                    let base = base.min(u64::MAX - 200);
                    let seqs: Vec<u64> = offsets.into_iter().map(|o| base + o).collect();
                    Control::nack(stream_id, &seqs).expect("1 to 64 ascending numbers")
                }),
            any::<u32>().prop_map(|stream_id| Control::KeyframeRequest { stream_id }),
        ]
    }

    fn duration() -> impl Strategy<Value = Duration> {
        prop_oneof![
            (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
            (0u64..1 << 40).prop_map(Duration::from_nanos),
            (0u64..100_000).prop_map(Duration::from_secs),
        ]
    }

    fn probe() -> impl Strategy<Value = ProbePlan> {
        (
            ("[a-z0-9-]{0,12}", "[a-z]{1,8}", "[a-z.]{1,12}:[0-9]{1,5}"),
            (proptest::sample::select(Transport::ALL.to_vec()), "(360p15|720p30|audio)"),
            prop_oneof![
                Just(ProbeMode::Loopback),
                stream_name().prop_map(|stream| ProbeMode::Publish { stream }),
                stream_name().prop_map(|stream| ProbeMode::View { stream }),
            ],
            (1u64..1 << 40, 0u64..1 << 40, any::<u64>()),
            // Only names the plan accepts: a preset or alias, or custom settings (`=`).
            proptest::option::of(prop_oneof![
                proptest::sample::select(
                    stallwatch_proto::plan::EMULATION_PRESETS
                        .iter()
                        .chain(stallwatch_proto::plan::EMULATION_PRESET_ALIASES)
                        .map(|p| p.to_string())
                        .collect::<Vec<_>>()
                ),
                "delay=[0-9]{1,3}ms",
            ]),
            proptest::option::of(proptest::sample::select(
                stallwatch_proto::plan::Repair::ALL.to_vec(),
            )),
            proptest::option::of(any::<[u8; 32]>()),
        )
            .prop_map(
                |(
                    (name, target, address),
                    (transport, profile),
                    mode,
                    (d, extra, off),
                    emulate,
                    repair,
                    credential,
                )| {
                    let every = d + extra;
                    ProbePlan {
                        name,
                        target,
                        address,
                        transport,
                        profile,
                        mode,
                        every: Duration::from_nanos(every),
                        duration: Duration::from_nanos(d),
                        start_offset: Duration::from_nanos(off % every),
                        emulate,
                        // nack on quic-stream is a plan error, not a round trip.
                        repair: repair.filter(|_| transport != Transport::QuicStream),
                        udp_credential: credential.map(UdpCredential),
                    }
                },
            )
    }

    fn plan() -> impl Strategy<Value = Plan> {
        (
            any::<u64>(),
            (1u64..1 << 40).prop_map(Duration::from_nanos),
            proptest::option::of(("[0-9.:]{1,21}", any::<bool>(), any::<Option<[u8; 32]>>())),
            proptest::collection::vec(probe(), 0..8),
        )
            .prop_map(|(revision, report_interval, relay, mut probes)| {
                // Names must be unique and non-empty.
                for (i, p) in probes.iter_mut().enumerate() {
                    p.name = format!("{}{i}", p.name);
                }
                Plan {
                    revision,
                    report_interval,
                    relay: relay.map(|(listen, gop_cache, credential)| RelayPlan {
                        listen,
                        gop_cache,
                        udp_credential: credential.map(UdpCredential),
                        revoked_serials: Vec::new(),
                    }),
                    probes,
                }
            })
    }

    fn series() -> impl Strategy<Value = (Series, BTreeMap<String, Histogram<u64>>)> {
        let name = "[a-z][a-z0-9_]{0,20}";
        let labels = (
            "\\PC{0,20}",
            proptest::sample::select(Transport::ALL.to_vec()),
            proptest::option::of(proptest::sample::select(Repair::ALL.to_vec())),
            "\\PC{1,20}",
            proptest::sample::select(Role::ALL.to_vec()),
        )
            .prop_map(|(probe, transport, repair, target, role)| SeriesLabels {
                probe,
                repair,
                role,
                target,
                transport,
            });
        (
            labels,
            proptest::collection::btree_map(name, any::<u64>(), 0..8),
            proptest::collection::btree_map(
                name,
                proptest::collection::vec(1u64..=hdr::HIGHEST_TRACKABLE_US, 0..50),
                0..4,
            ),
        )
            .prop_map(|(labels, counters, values)| {
                let mut histograms = BTreeMap::new();
                let mut decoded = BTreeMap::new();
                for (name, values) in values {
                    let h = histogram(&values);
                    let sum = values.iter().sum();
                    histograms.insert(name.clone(), HistogramData::from_histogram(&h, sum));
                    decoded.insert(name, h);
                }
                (Series { labels, counters, histograms }, decoded)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn media_header(
            kind in proptest::sample::select(vec![FrameKind::Key, FrameKind::Predicted, FrameKind::Audio]),
            (frag_count, frag_index) in (1u16..=u16::MAX).prop_flat_map(|c| (Just(c), 0..c)),
            (stream_id, payload_len, frame, gop) in (any::<u32>(), 0u32..64, any::<u32>(), any::<u32>()),
            (seq, capture_ns, send_ns) in any::<(u64, u64, u64)>(),
        ) {
            let h = MediaHeader {
                kind, frag_index, frag_count, stream_id, payload_len, seq, frame, gop, capture_ns, send_ns,
                flags: 0,
            };
            let mut packet = h.to_bytes().to_vec();
            prop_assert_eq!(MediaHeader::decode(&packet), Ok(h));
            packet.resize(packet.len() + payload_len as usize, 0xee);
            prop_assert_eq!(MediaHeader::decode_packet(&packet), Ok(h));
        }

        #[test]
        fn control_messages(msg in control()) {
            prop_assert_eq!(msg.validate(), Ok(()));
            let bytes = msg.encode();
            prop_assert_eq!(Control::decode_datagram(&bytes), Ok(msg.clone()));
            prop_assert_eq!(Control::decode_frame(&bytes), Ok(Some((msg, bytes.len()))));
        }

        #[test]
        fn plans(plan in plan()) {
            prop_assert_eq!(plan.validate(), Ok(()));
            prop_assert_eq!(decode_plan(&encode_plan(&plan), MAX_PLAN_BYTES), Ok(plan));
        }

        #[test]
        fn reports(
            series in proptest::collection::vec(series(), 0..4),
            (seq, start, len) in (any::<u64>(), 0u64..1 << 50, 0u64..1 << 20),
        ) {
            let (series, decoded): (Vec<_>, Vec<_>) = series.into_iter().unzip();
            let report = Report {
                schema_version: REPORT_SCHEMA_VERSION,
                agent: "agent-1".into(),
                agent_version: "1.2.3".into(),
                seq,
                window_start_ms: start,
                window_end_ms: start + len,
                plan_revision: 1,
                spool_depth: 0,
                series,
            };
            let d = decode_report(&encode_report(&report), &ReportLimits::default()).unwrap();
            prop_assert_eq!(&d.report, &report);
            let full: Vec<BTreeMap<String, Histogram<u64>>> = d
                .histograms
                .iter()
                .map(|s| s.iter().map(|(k, h)| (k.clone(), h.to_histogram().unwrap())).collect())
                .collect();
            prop_assert_eq!(full, decoded);
            for (series, hists) in report.series.iter().zip(&d.histograms) {
                for (name, h) in hists {
                    check_sparse_matches_full(&series.histograms[name].hdr, &HdrLimits::default());
                    prop_assert_eq!(h.len(), series.histograms[name].count);
                }
            }
        }

        #[test]
        fn durations(d in duration()) {
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }
}

mod acceptance {
    use super::*;

    /// A ~1 KiB report whose one histogram inflates past the HDR cap is refused with
    /// `DecompressedTooLarge`, before the inflated bytes are held or a histogram allocated.
    #[test]
    fn small_report_with_histogram_bomb_is_rejected() {
        // A valid V2 header claiming 300 KiB of counts, then 300 KiB of zero counts.
        let payload = 300 * 1024;
        let mut raw = Vec::with_capacity(40 + payload);
        raw.extend_from_slice(&0x1c84_9313u32.to_be_bytes());
        raw.extend_from_slice(&u32::try_from(payload).unwrap().to_be_bytes());
        raw.extend_from_slice(&0u32.to_be_bytes());
        raw.extend_from_slice(&3u32.to_be_bytes());
        raw.extend_from_slice(&1u64.to_be_bytes());
        raw.extend_from_slice(&hdr::HIGHEST_TRACKABLE_US.to_be_bytes());
        raw.extend_from_slice(&1.0f64.to_be_bytes());
        raw.resize(40 + payload, 0);
        let bomb = deflate_v2(&raw);

        let mut report = sample_report();
        report.series[0]
            .histograms
            .insert("bomb_us".into(), HistogramData { hdr: bomb, sum: 0, count: 0 });
        let bytes = encode_report(&report);
        assert!(bytes.len() <= 1536, "report is {} bytes", bytes.len());

        let limits = ReportLimits::default();
        let e = decode_report(&bytes, &limits).unwrap_err();
        match &e {
            ReportError::Histogram {
                name, source: HdrError::DecompressedTooLarge { max }, ..
            } => {
                assert_eq!(name, "bomb_us");
                assert_eq!(*max, limits.hdr.max_decoded_bytes);
            }
            other => panic!("wrong error: {other:?}"),
        }
        assert_eq!(e.reason(), "histogram_too_large");
        let message = e.to_string();
        assert!(message.contains("inflates past the 262144-byte cap"), "{message}");
    }
}
