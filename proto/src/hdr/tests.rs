use super::*;
use hdrhistogram::serialization::Deserializer;

/// Builds a V2+DEFLATE encoding from raw uncompressed V2 bytes; lets tests craft hostile
/// histograms that the real serializer would never write.
fn deflate_raw_v2(uncompressed: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    // Writing into a Vec cannot fail.
    let _ = z.write_all(uncompressed);
    let body = z.finish().unwrap_or_default();
    let mut out = Vec::with_capacity(super::COMPRESSED_PREFIX_LEN + body.len());
    out.extend_from_slice(&(super::V2_COMPRESSED_COOKIE_BASE | 0x10).to_be_bytes());
    out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Inflates a V2+DEFLATE encoding without any checks beyond a cap; lets tests mutate the
/// uncompressed form of real histograms.
fn inflate_raw_v2(encoded: &[u8], max: usize) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    super::inflate_capped(encoded.get(super::COMPRESSED_PREFIX_LEN..)?, max, &mut out).ok()?;
    Some(out)
}

#[test]
fn counts_beyond_32_bits_decode_into_wide_pairs_with_the_same_result() {
    let mut h = new_histogram();
    h.record_n(3, 7).unwrap();
    h.record_n(40_000, 5_000_000_000).unwrap();
    h.record_n(900_000, 2).unwrap();
    let sparse = decode_sparse(&encode(&h), &HdrLimits::default()).unwrap();
    assert_eq!(sparse.heap_bytes(), 3 * 16, "wide pairs");
    assert_eq!(sparse.len(), 5_000_000_009);
    assert_eq!(sparse.to_histogram().unwrap(), h);
    h.reset();
    h.record_n(40_000, u64::from(u32::MAX)).unwrap();
    let sparse = decode_sparse(&encode(&h), &HdrLimits::default()).unwrap();
    assert_eq!(sparse.heap_bytes(), 8, "a count of u32::MAX still fits a narrow pair");
    assert_eq!(sparse.to_histogram().unwrap(), h);
}

#[test]
fn stored_zlib_streams_inflate_to_their_input() {
    use std::io::Read;
    for len in [0, 1, 1000, 65_535, 65_536, 200_000] {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let mut stream = Vec::new();
        write_stored_zlib(&data, &mut stream);
        let mut back = Vec::new();
        flate2::read::ZlibDecoder::new(&stream[..]).read_to_end(&mut back).unwrap();
        assert_eq!(back, data, "{len} bytes");
        // Nothing after the checksum: the decoder's trailing-bytes check holds.
        let mut inflated = Vec::new();
        inflate_capped(&stream, len + 1, &mut inflated).unwrap();
        assert_eq!(inflated, data, "{len} bytes");
    }
    // Level 0 histograms decode to what was encoded.
    let h = sample();
    let mut out = Vec::new();
    Encoder::with_level(0).encode_into(&h, &mut out).unwrap();
    assert_eq!(decode(&out, &HdrLimits::default()).unwrap(), h);
}

/// What inflate makes of `stream` under `max`, without the stored-block copy.
fn inflated_by_zlib(stream: &[u8], max: usize) -> Result<Vec<u8>, HdrError> {
    let mut out = Vec::new();
    inflate_any(&mut Decompress::new(true), stream, max, &mut out).map(|()| out)
}

#[test]
fn stored_blocks_are_copied_only_where_inflate_gives_the_same_bytes() {
    let (mut copied, mut fell_back) = (0, 0);
    // Empty, one block, a full block, and three blocks.
    for len in [0usize, 300, 65_535, 140_000] {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let mut stream = Vec::new();
        write_stored_zlib(&data, &mut stream);
        let mut out = Vec::new();
        assert!(copy_stored_blocks(&stream, len, &mut out), "{len} bytes");
        assert_eq!(out, data, "{len} bytes");
        if len > 0 {
            assert!(!copy_stored_blocks(&stream, len - 1, &mut out), "over the cap: inflate's");
        }
        // Every byte of the headers, of the checksum and of the data around block boundaries,
        // each changed three ways; and every cut.
        let block_starts: Vec<usize> = (0..len.div_ceil(65_535)).map(|b| 2 + b * 65_540).collect();
        let positions = (0..stream.len()).filter(|&p| {
            p < 8
                || p + 8 > stream.len()
                || block_starts.iter().any(|&b| p.abs_diff(b) < 8 || p.abs_diff(b + 65_540) < 8)
        });
        for p in positions {
            for flip in [0x01, 0x20, 0xff] {
                let mut changed = stream.clone();
                changed[p] ^= flip;
                if copy_stored_blocks(&changed, len, &mut out) {
                    copied += 1;
                    assert_eq!(
                        inflated_by_zlib(&changed, len).as_ref(),
                        Ok(&out),
                        "byte {p} ^ {flip:#x}"
                    );
                } else {
                    fell_back += 1;
                }
            }
        }
        for cut in (0..stream.len()).filter(|&c| c < 16 || c + 16 > stream.len()) {
            assert!(!copy_stored_blocks(&stream[..cut], len, &mut out), "{len} bytes cut at {cut}");
            assert!(inflated_by_zlib(&stream[..cut], len).is_err(), "{len} bytes cut at {cut}");
        }
    }
    // Changed padding bits of a block header are copied (inflate skips them too); the rest falls
    // back to inflate, which refuses nearly all of it.
    assert!(copied > 0 && fell_back > 10 * copied, "copied {copied}, fell back {fell_back}");
    // A compressed stream is inflated, not copied.
    let compressed = encode(&sample());
    let mut out = Vec::new();
    assert!(!copy_stored_blocks(&compressed[COMPRESSED_PREFIX_LEN..], 1 << 20, &mut out));
    assert_eq!(decode(&compressed, &HdrLimits::default()).unwrap(), sample());
}

#[test]
fn agents_histograms_are_stored_blocks_every_hdr_decoder_reads() {
    let h = sample();
    let data = crate::report::HistogramData::from_histogram(&h, 0);
    let stream = &data.hdr[COMPRESSED_PREFIX_LEN..];
    assert_eq!(stream[2] & 0b110, 0, "the first block is stored");
    let mut inflated = Vec::new();
    assert!(copy_stored_blocks(stream, DEFAULT_MAX_DECODED_BYTES, &mut inflated));
    let theirs: Histogram<u64> = Deserializer::new().deserialize(&mut data.hdr.as_slice()).unwrap();
    assert_eq!(theirs, h);
    assert_eq!(decode(&data.hdr, &HdrLimits::default()).unwrap(), h);
}

#[test]
fn the_largest_histogram_fits_the_default_limits_as_stored_blocks() {
    // Every slot of stallwatch's layout holding 2^40: six-byte varints, 168 KiB of counts.
    let counts = vec![1u64 << 40; STALLWATCH_SLOTS];
    let mut encoded = Vec::new();
    Encoder::with_level(0).encode_counts_into(&counts, &mut encoded).unwrap();
    assert!(encoded.len() > 128 << 10, "{} bytes", encoded.len());
    let sparse = decode_sparse(&encoded, &HdrLimits::default()).unwrap();
    assert_eq!(sparse.len(), (1u64 << 40) * STALLWATCH_SLOTS as u64);
    assert_eq!(sparse.last_index(), Some(STALLWATCH_SLOTS as u64 - 1));
}

#[test]
fn sparse_from_stallwatch_counts_equals_decoding_the_encoded_counts() {
    let mut huge = sample();
    // A count past 32 bits: the pairs are stored wide.
    huge.record_n(7, 1 << 40).unwrap();
    for h in [sample(), huge] {
        let decoded = decode_sparse(&encode(&h), &HdrLimits::default()).unwrap();
        let mut counts = vec![0u64; 1 + decoded.last_index().unwrap() as usize];
        for (index, count) in decoded.raw_buckets() {
            counts[index as usize] = count;
        }
        // Trailing zeros change nothing.
        counts.extend([0, 0, 0]);
        assert_eq!(SparseHistogram::from_stallwatch_counts(&counts), Some(decoded));
    }
    let empty = SparseHistogram::from_stallwatch_counts(&[0; 10]).unwrap();
    assert!(empty.is_empty() && empty.is_stallwatch_layout() && empty.bucket_count() == 0);
    assert_eq!(SparseHistogram::from_stallwatch_counts(&[1; STALLWATCH_SLOTS + 1]), None);
}

fn sample() -> Histogram<u64> {
    let mut h = new_histogram();
    for v in [1, 250, 999, 1_500, 20_000, 20_001, 3_000_000, HIGHEST_TRACKABLE_US] {
        h.record(v).unwrap();
    }
    h.record_n(42_000, 17).unwrap();
    h
}

/// A V2 header with the given fields, without counts.
fn v2_header(payload_len: u32, sigfigs: u32, low: u64, high: u64) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&V2_COOKIE_CANONICAL.to_be_bytes());
    b.extend_from_slice(&payload_len.to_be_bytes());
    b.extend_from_slice(&0u32.to_be_bytes());
    b.extend_from_slice(&sigfigs.to_be_bytes());
    b.extend_from_slice(&low.to_be_bytes());
    b.extend_from_slice(&high.to_be_bytes());
    b.extend_from_slice(&1.0f64.to_be_bytes());
    b
}

#[test]
fn a_low_that_rounds_up_to_a_power_of_two_is_refused_as_hdrhistogram_refuses_it() {
    // hdrhistogram takes log2 of `low` in floating point: 2^63 - 1 rounds to 2^63, and
    // with sigfig 0 the layout no longer fits 64 bits. Found by the decoders proptest.
    let limits = HdrLimits {
        max_highest_trackable: u64::MAX,
        max_significant_figures: 5,
        ..HdrLimits::default()
    };
    let bytes = deflate_raw_v2(&v2_header(0, 0, i64::MAX as u64, u64::MAX));
    let expected = Histogram::<u64>::new_with_bounds(i64::MAX as u64, u64::MAX, 0);
    assert!(expected.is_err());
    assert!(matches!(
        decode_sparse(&bytes, &limits),
        Err(HdrError::Deserialize(e)) if e == "CannotRepresentSigFigBeyondLow"
    ));
}

#[test]
fn round_trip_keeps_counts_and_percentiles() {
    let h = sample();
    let bytes = encode(&h);
    assert_eq!(bytes[..4], 0x1c84_9314u32.to_be_bytes());
    let d = decode(&bytes, &HdrLimits::default()).unwrap();
    assert_eq!(d, h);
    assert_eq!(d.len(), h.len());
    assert_eq!(d.min(), h.min());
    assert_eq!(d.max(), h.max());
    for q in [0.0, 0.5, 0.9, 0.99, 0.999, 1.0] {
        assert_eq!(d.value_at_quantile(q), h.value_at_quantile(q), "q={q}");
    }
}

#[test]
fn default_range_counts_array_is_224_kib() {
    // ReportLimits' memory cap is documented in terms of this size.
    assert_eq!(new_histogram().distinct_values() * 8, 224 * 1024);
}

#[test]
fn round_trip_empty() {
    let h = new_histogram();
    let d = decode(&encode(&h), &HdrLimits::default()).unwrap();
    assert_eq!(d, h);
    assert!(d.is_empty());
}

#[test]
fn zlib_bomb_is_rejected_before_allocating_its_size() {
    let mut raw = v2_header(1 << 20, 3, 1, HIGHEST_TRACKABLE_US);
    raw.resize(V2_HEADER_LEN + (1 << 20), 0);
    let bomb = deflate_raw_v2(&raw);
    assert!(bomb.len() < 2048, "bomb is {} bytes", bomb.len());
    let e = decode(&bomb, &HdrLimits::default()).unwrap_err();
    assert_eq!(e, HdrError::DecompressedTooLarge { max: DEFAULT_MAX_DECODED_BYTES });
    assert_eq!(e.to_string(), "histogram inflates past the 262144-byte cap");
}

#[test]
fn range_too_large_is_rejected() {
    let raw = v2_header(0, 3, 1, u64::MAX / 2);
    let e = decode(&deflate_raw_v2(&raw), &HdrLimits::default()).unwrap_err();
    assert!(matches!(e, HdrError::HighestTrackable { found, .. } if found == u64::MAX / 2));
}

#[test]
fn header_fields_are_checked() {
    let limits = HdrLimits::default();
    let check = |raw: Vec<u8>| decode(&deflate_raw_v2(&raw), &limits).unwrap_err();
    assert_eq!(check(v2_header(0, 5, 1, 1000)), HdrError::SignificantFigures { found: 5, max: 3 });
    assert_eq!(check(v2_header(0, 3, 0, 1000)), HdrError::LowestIsZero);
    assert_eq!(check(v2_header(0, 3, 600, 1000)), HdrError::Range { low: 600, high: 1000 });
    assert_eq!(
        check(v2_header(7, 3, 1, 1000)),
        HdrError::PayloadLength { declared: 7, available: 0 }
    );
    assert_eq!(check(vec![1, 2, 3]), HdrError::HeaderTruncated { len: 3 });
    let mut raw = v2_header(0, 3, 1, 1000);
    raw[32..40].copy_from_slice(&2.0f64.to_be_bytes());
    assert_eq!(check(raw), HdrError::ConversionRatio(2.0));
}

#[test]
fn hostile_counts_are_rejected() {
    let limits = HdrLimits::default();
    // A zero run of i64::MIN would overflow hdrhistogram's negation.
    let mut raw = v2_header(9, 3, 1, 1000);
    raw.extend_from_slice(&[0xff; 9]);
    let e = decode(&deflate_raw_v2(&raw), &limits).unwrap_err();
    assert!(matches!(e, HdrError::Counts(_)), "{e}");
    // A varint cut short.
    let mut raw = v2_header(1, 3, 1, 1000);
    raw.push(0x80);
    let e = decode(&deflate_raw_v2(&raw), &limits).unwrap_err();
    assert_eq!(e, HdrError::Counts("truncated varint"));
    // More counts than the range holds.
    let mut raw = v2_header(4000, 3, 1, 1000);
    raw.resize(V2_HEADER_LEN + 4000, 2);
    let e = decode(&deflate_raw_v2(&raw), &limits).unwrap_err();
    assert!(matches!(e, HdrError::Counts(_)), "{e}");
}

#[test]
fn truncated_input_is_rejected() {
    let bytes = encode(&sample());
    for len in 0..bytes.len() {
        assert!(decode(&bytes[..len], &HdrLimits::default()).is_err(), "len {len}");
    }
    assert_eq!(decode(&bytes[..5], &HdrLimits::default()), Err(HdrError::Truncated { len: 5 }));
    // A consistent prefix around a cut zlib stream.
    let mut cut = bytes[..bytes.len() - 3].to_vec();
    let len = u32::try_from(cut.len() - 8).unwrap();
    cut[4..8].copy_from_slice(&len.to_be_bytes());
    assert!(matches!(decode(&cut, &HdrLimits::default()), Err(HdrError::Inflate(_))));
}

#[test]
fn framing_errors() {
    let limits = HdrLimits::default();
    let mut bytes = encode(&sample());
    bytes.push(0);
    assert!(matches!(decode(&bytes, &limits), Err(HdrError::CompressedLength { .. })));
    let len = u32::try_from(bytes.len() - 8).unwrap();
    bytes[4..8].copy_from_slice(&len.to_be_bytes());
    assert_eq!(decode(&bytes, &limits), Err(HdrError::TrailingCompressed { extra: 1 }));
    bytes[0] = 0;
    assert!(matches!(decode(&bytes, &limits), Err(HdrError::BadCookie { .. })));
    let small = HdrLimits { max_encoded_bytes: 10, ..limits };
    assert!(matches!(decode(&bytes, &small), Err(HdrError::EncodedTooLarge { max: 10, .. })));
}

#[test]
fn other_word_size_bits_are_accepted() {
    let h = sample();
    let mut raw = inflate_raw_v2(&encode(&h), DEFAULT_MAX_DECODED_BYTES).unwrap();
    raw[..4].copy_from_slice(&V2_COOKIE_BASE.to_be_bytes());
    assert_eq!(decode(&deflate_raw_v2(&raw), &HdrLimits::default()).unwrap(), h);
}

#[test]
fn compact_high_covers_the_slots_as_hdrhistogram_lays_them_out() {
    for sigfigs in 0..=5u8 {
        for low in [1u64, 2, 3, 1000, 1 << 20] {
            let Ok(full) = Histogram::<u64>::new_with_bounds(low, u64::MAX / 4, sigfigs) else {
                continue;
            };
            for slots in [0, 1, 2, 100, 1023, 1024, 1025, 2048, 3000, 5000, 20_000, 28_672] {
                let slots = slots.min(full.distinct_values() as u64);
                let high = compact_high(low, u32::from(sigfigs), slots).unwrap();
                let h = Histogram::<u64>::new_with_bounds(low, high, sigfigs).unwrap();
                let len = h.distinct_values() as u64;
                assert!(len >= slots, "low {low} sigfigs {sigfigs} slots {slots}: {len}");
                // At most one bucket (half a sub-bucket count) to spare; at least two
                // half-buckets whatever the slots.
                let half = (2 * 10u64.pow(u32::from(sigfigs))).next_power_of_two() / 2;
                assert!(len <= slots.max(2 * half) + half, "low {low} sigfigs {sigfigs} {slots}");
            }
        }
    }
}

#[test]
fn counts_len_is_hdrhistograms() {
    for sigfigs in 0..=5u8 {
        for low in [1u64, 2, 3, 1000, 1 << 20] {
            for high in [2 * low, 1000, 1 << 20, 1 << 36, u64::MAX / 4, u64::MAX] {
                let Ok(h) = Histogram::<u64>::new_with_bounds(low, high, sigfigs) else {
                    continue;
                };
                let layout = Layout::new(low, u32::from(sigfigs)).unwrap();
                assert_eq!(layout.counts_len(high), h.distinct_values() as u64, "{low} {high}");
            }
        }
    }
}

#[test]
fn stallwatch_index_is_hdrhistograms() {
    assert_eq!(new_histogram().distinct_values(), STALLWATCH_SLOTS);
    let h = new_histogram();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut values: Vec<u64> = (0..5000u64).collect();
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        values.push(x % (1 << (x % 38)));
    }
    values.extend([HIGHEST_TRACKABLE_US, HIGHEST_STORABLE_US, HIGHEST_STORABLE_US + 1]);
    for v in values {
        let Some(i) = stallwatch_index(v) else {
            assert!(v > HIGHEST_STORABLE_US);
            continue;
        };
        assert!(i < STALLWATCH_SLOTS, "{v}");
        assert_eq!(STALLWATCH_LAYOUT.value_for(i as u64), h.lowest_equivalent(v), "{v}");
        assert_eq!(STALLWATCH_LAYOUT.highest_equivalent(i as u64), h.highest_equivalent(v));
        // The last index at most v: its highest value is <= v, the next one's is not.
        let sparse = decode_sparse(&encode(&h), &HdrLimits::default()).unwrap();
        match sparse.last_index_at_most(v) {
            Some(j) => {
                assert!(STALLWATCH_LAYOUT.highest_equivalent(j) <= v, "{v}");
                assert!(STALLWATCH_LAYOUT.highest_equivalent(j + 1) > v, "{v}");
            }
            None => assert!(STALLWATCH_LAYOUT.highest_equivalent(0) > v, "{v}"),
        }
    }
}

#[test]
fn encode_counts_matches_encode() {
    let mut x = 0x1234_5678_9abc_def1u64;
    let mut shapes = vec![new_histogram(), sample()];
    let mut zeros = new_histogram();
    zeros.record_n(0, 3).unwrap();
    shapes.push(zeros);
    // Counts around the one-byte varint edge and far past it.
    let mut big = new_histogram();
    for (i, n) in [63, 64, 65, 127, 128, 1 << 20, 1 << 40, 1].into_iter().enumerate() {
        big.record_n(1_000 * (i as u64 + 1), n).unwrap();
    }
    shapes.push(big);
    for n in [1, 2, 10, 3000] {
        let mut h = new_histogram();
        for _ in 0..n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            h.record_n(x % (1 << (x % 37)), x % 3 + 1).unwrap();
        }
        shapes.push(h);
    }
    for level in [0, 6] {
        let mut encoder = Encoder::with_level(level);
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for h in &shapes {
            let sparse = decode_sparse(&encode(h), &HdrLimits::default()).unwrap();
            let mut counts = vec![0u64; 64];
            for (i, c) in sparse.raw_buckets() {
                if counts.len() <= i as usize {
                    counts.resize(i as usize + 1, 0);
                }
                counts[i as usize] = c;
            }
            encoder.encode_counts_into(&counts, &mut ours).unwrap();
            encoder.encode_into(h, &mut theirs).unwrap();
            assert_eq!(ours, theirs, "level {level}, {} values", h.len());
        }
    }
    let too_many = vec![1u64; STALLWATCH_SLOTS + 1];
    assert!(Encoder::new().encode_counts_into(&too_many, &mut Vec::new()).is_err());
    let huge = [0, u64::MAX];
    assert!(matches!(
        Encoder::new().encode_counts_into(&huge, &mut Vec::new()),
        Err(HdrEncodeError::CountTooLarge)
    ));
}

#[test]
fn highest_storable_is_the_end_of_the_counts_array() {
    let mut h = new_histogram();
    assert!(h.record(HIGHEST_STORABLE_US).is_ok());
    assert!(h.record(HIGHEST_STORABLE_US + 1).is_err());
}

#[test]
fn decoded_histograms_are_compact_and_exact() {
    let mut h = new_histogram();
    for v in [3, 250, 999, 1_500, 20_000, 20_001] {
        h.record(v).unwrap();
    }
    let d = decode(&encode(&h), &HdrLimits::default()).unwrap();
    assert!(d.distinct_values() * 8 <= 48 * 1024, "{} slots", d.distinct_values());
    assert_eq!(d, h);
    assert_eq!(d.len(), h.len());
    assert_eq!((d.min(), d.max()), (h.min(), h.max()));
    // Adding both ways gives the full-range result.
    let mut full = new_histogram();
    full.add(&d).unwrap();
    assert_eq!(full, h);
    let mut compact = d.clone();
    compact.add(sample()).unwrap();
    let mut expected = h.clone();
    expected.add(sample()).unwrap();
    assert_eq!(compact, expected);
    assert_eq!(decode(&encode(&compact), &HdrLimits::default()).unwrap(), expected);
    // A compact histogram encodes to the same bytes as its full-range original.
    assert_eq!(encode(&d), encode(&h));
    assert_eq!(encode(&compact), encode(&expected));
}

#[test]
fn reused_encoder_matches_fresh_encodings_at_every_level() {
    let shapes: Vec<Histogram<u64>> = vec![sample(), new_histogram(), {
        let mut h = new_histogram();
        for v in (1..5000).map(|i| i * 37) {
            h.record_n(v, v % 7 + 1).unwrap();
        }
        h
    }];
    for level in [0, 1, 6, 9] {
        let mut encoder = Encoder::with_level(level);
        let mut out = Vec::new();
        for _ in 0..2 {
            for h in &shapes {
                encoder.encode_into(h, &mut out).unwrap();
                assert_eq!(&decode(&out, &HdrLimits::default()).unwrap(), h, "level {level}");
                // hdrhistogram's own reader accepts it too.
                let theirs: Histogram<u64> =
                    Deserializer::new().deserialize(&mut out.as_slice()).unwrap();
                assert_eq!(&theirs, h);
            }
        }
    }
}

#[test]
fn decode_matches_hdrhistogram_for_every_layout() {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for sigfigs in 0..=5u8 {
        for low in [1u64, 3, 1000] {
            let mut h = Histogram::<u64>::new_with_bounds(low, 1 << 40, sigfigs).unwrap();
            for _ in 0..500 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                h.record_n(x % (1 << (x % 40)), x % 5 + 1).unwrap();
            }
            let limits = HdrLimits {
                max_highest_trackable: 1 << 40,
                max_significant_figures: 5,
                max_decoded_bytes: 64 << 20,
                max_encoded_bytes: 64 << 20,
            };
            let bytes = encode(&h);
            let ours = decode(&bytes, &limits).unwrap();
            let theirs: Histogram<u64> =
                Deserializer::new().deserialize(&mut bytes.as_slice()).unwrap();
            assert_eq!(ours, theirs, "low {low} sigfigs {sigfigs}");
            assert_eq!(ours, h, "low {low} sigfigs {sigfigs}");
            let recorded = |h: &Histogram<u64>| -> Vec<(u64, u64)> {
                h.iter_recorded().map(|v| (v.value_iterated_to(), v.count_at_value())).collect()
            };
            assert_eq!(recorded(&ours), recorded(&h));
            let sparse = decode_sparse(&bytes, &limits).unwrap();
            let highest: Vec<(u64, u64)> = sparse.iter().map(|b| (b.highest, b.count)).collect();
            assert_eq!(highest, recorded(&h), "low {low} sigfigs {sigfigs}");
            assert_eq!(
                (sparse.len(), sparse.max(), sparse.min_nz()),
                (h.len(), h.max(), h.min_nz())
            );
            assert_eq!((ours.min_nz(), ours.max(), ours.len()), (h.min_nz(), h.max(), h.len()));
        }
    }
}
