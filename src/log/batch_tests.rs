use super::*;
use proptest::prelude::*;

const MAX: u32 = 1 << 20;

fn records(n: usize, ts0: i64) -> Vec<(Vec<u8>, Vec<u8>, i64)> {
    (0..n).map(|i| (format!("key-{i}").into_bytes(), format!("value-{i}-{}", "x".repeat(i % 50)).into_bytes(), ts0 + (i as i64 * 7) % 23)).collect()
}

fn build(codec: Compression, n: usize) -> Vec<u8> {
    let recs = records(n, 1_000);
    let hdr: &[(&[u8], Option<&[u8]>)] = &[(b"h", Some(b"v"))];
    let new: Vec<NewRecord> =
        recs.iter().map(|(k, v, ts)| NewRecord { timestamp_ms: *ts, key: Some(k), value: Some(v), headers: hdr }).collect();
    BatchBuilder::new().compression(codec).build(&new).unwrap()
}

fn fix_crc(batch: &mut [u8]) {
    let crc = compute_crc(batch);
    batch[field::CRC..field::CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

const CODECS: [Compression; 5] = [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd];

#[test]
fn every_codec_validates_and_decodes() {
    for codec in CODECS {
        let batch = build(codec, 100);
        let headers = validate_record_set(&batch, MAX, true).unwrap();
        assert_eq!(headers.len(), 1);
        let h = headers[0];
        assert_eq!(h.compression().unwrap(), codec);
        assert_eq!((h.record_count, h.last_offset_delta), (100, 99));
        assert_eq!(h.max_timestamp, 1_000 + 22);
        let decoded = decode_records(&batch).unwrap();
        let expect = records(100, 1_000);
        assert_eq!(decoded.len(), 100);
        for (i, (r, (k, v, ts))) in decoded.iter().zip(&expect).enumerate() {
            assert_eq!(r.offset, i as i64);
            assert_eq!(r.timestamp, *ts);
            assert_eq!(r.key.as_deref(), Some(&k[..]));
            assert_eq!(r.value.as_deref(), Some(&v[..]));
            assert_eq!(r.headers, vec![(Bytes::from_static(b"h"), Some(Bytes::from_static(b"v")))]);
        }
    }
}

#[test]
fn several_batches_back_to_back() {
    let mut set = build(Compression::None, 3);
    set.extend(build(Compression::Lz4, 5));
    set.extend(build(Compression::Zstd, 1));
    let headers = validate_record_set(&set, MAX, false).unwrap();
    assert_eq!(headers.iter().map(|h| h.record_count).collect::<Vec<_>>(), vec![3, 5, 1]);
    assert_eq!(split_batches(&set).count(), 3);
}

/// Raw snappy (not xerial framed), as librdkafka and others send it.
#[test]
fn raw_snappy_batch() {
    let plain = build(Compression::None, 20);
    let body = snap::raw::Encoder::new().compress_vec(&plain[BATCH_HEADER_BYTES..]).unwrap();
    let mut batch = plain[..BATCH_HEADER_BYTES].to_vec();
    batch.extend_from_slice(&body);
    let len = (batch.len() - LOG_OVERHEAD) as i32;
    batch[8..12].copy_from_slice(&len.to_be_bytes());
    batch[field::ATTRIBUTES + 1] |= 2;
    fix_crc(&mut batch);
    assert_eq!(validate_record_set(&batch, MAX, false).unwrap()[0].record_count, 20);
    assert_eq!(decode_records(&batch).unwrap().len(), 20);
}

/// A batch written by kafka-protocol's encoder (an independent implementation) validates, and ours decode
/// with its decoder.
#[test]
fn interoperates_with_kafka_protocol() {
    use kafka_protocol::records::{Compression as KC, Record as KR, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType as KT};
    let recs: Vec<KR> = (0..10)
        .map(|i| KR {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: 7,
            producer_epoch: 1,
            timestamp_type: KT::Creation,
            offset: i,
            sequence: i as i32,
            timestamp: 5_000 + i,
            key: Some(Bytes::from(format!("k{i}"))),
            value: if i % 3 == 0 { None } else { Some(Bytes::from(vec![i as u8; i as usize * 10])) },
            headers: Default::default(),
        })
        .collect();
    let mut buf = bytes::BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, &recs, &RecordEncodeOptions { version: 2, compression: KC::None }).unwrap();
    let h = validate_record_set(&buf, MAX, true).unwrap()[0];
    assert_eq!((h.record_count, h.producer_id, h.base_sequence, h.max_timestamp), (10, 7, 0, 5_009));
    let ours = decode_records(&buf).unwrap();
    assert_eq!(ours[3].value, None);
    assert_eq!(ours[4].value.as_ref().map(|v| v.len()), Some(40));

    let batch = build(Compression::None, 10);
    let mut bytes = Bytes::from(batch);
    let set = RecordBatchDecoder::decode(&mut bytes).unwrap();
    assert_eq!(set.records.len(), 10);
    assert_eq!(set.records[9].key.as_deref(), Some(&b"key-9"[..]));
}

#[test]
fn crc_corruption_is_detected() {
    for codec in CODECS {
        let mut batch = build(codec, 10);
        let last = batch.len() - 1;
        batch[last] ^= 0x01;
        assert!(matches!(validate_record_set(&batch, MAX, false), Err(LogError::CorruptMessage(m)) if m.contains("CRC")));
    }
}

#[test]
fn truncated_input_is_rejected_at_every_length() {
    let batch = build(Compression::Gzip, 5);
    for len in 0..batch.len() {
        assert!(validate_record_set(&batch[..len], MAX, false).is_err(), "prefix of {len} bytes");
    }
    let mut two = build(Compression::None, 2);
    two.extend_from_slice(&build(Compression::None, 2)[..30]);
    assert!(matches!(validate_record_set(&two, MAX, false), Err(LogError::CorruptMessage(_))));
}

#[test]
fn size_limits() {
    let batch = build(Compression::None, 50);
    assert!(matches!(
        validate_record_set(&batch, batch.len() as u32 - 1, false),
        Err(LogError::RecordTooLarge { size, .. }) if size == batch.len()
    ));
    assert!(validate_record_set(&batch, batch.len() as u32, false).is_ok());
    let mut bad = batch.clone();
    bad[8..12].copy_from_slice(&10i32.to_be_bytes());
    assert!(matches!(validate_record_set(&bad, MAX, false), Err(LogError::CorruptMessage(_))));
    bad[8..12].copy_from_slice(&i32::MAX.to_be_bytes());
    assert!(matches!(validate_record_set(&bad, MAX, false), Err(LogError::CorruptMessage(_))));
}

#[test]
fn magic_and_codec_checks() {
    let mut batch = build(Compression::None, 2);
    batch[field::MAGIC] = 1;
    assert!(matches!(validate_record_set(&batch, MAX, false), Err(LogError::InvalidRecord(m)) if m.contains("magic")));
    let mut batch = build(Compression::None, 2);
    batch[field::ATTRIBUTES + 1] |= 5;
    fix_crc(&mut batch);
    assert!(matches!(validate_record_set(&batch, MAX, false), Err(LogError::UnsupportedCompression(5))));
    assert!(matches!(validate_record_set(&[], MAX, false), Err(LogError::InvalidRecord(_))));
}

#[test]
fn counts_must_match() {
    for (count, delta) in [(11, 10), (9, 8), (10, 9), (i32::MAX, 9), (10, i32::MAX), (-1, 9), (0, -1)] {
        let mut batch = build(Compression::None, 10);
        batch[field::RECORD_COUNT..field::RECORD_COUNT + 4].copy_from_slice(&count.to_be_bytes());
        batch[field::LAST_OFFSET_DELTA..field::LAST_OFFSET_DELTA + 4].copy_from_slice(&delta.to_be_bytes());
        fix_crc(&mut batch);
        let res = validate_record_set(&batch, MAX, false);
        if (count, delta) == (10, 9) {
            assert!(res.is_ok());
        } else {
            assert!(res.is_err(), "count {count} delta {delta}");
        }
    }
    // A compressed batch claiming more records than it holds.
    let mut batch = build(Compression::Zstd, 10);
    batch[field::RECORD_COUNT..field::RECORD_COUNT + 4].copy_from_slice(&1_000_000i32.to_be_bytes());
    batch[field::LAST_OFFSET_DELTA..field::LAST_OFFSET_DELTA + 4].copy_from_slice(&999_999i32.to_be_bytes());
    fix_crc(&mut batch);
    assert!(matches!(validate_record_set(&batch, MAX, false), Err(LogError::CorruptMessage(_))));
}

#[test]
fn keys_required_on_compacted_topics() {
    let batch = BatchBuilder::new().build(&[NewRecord { timestamp_ms: 1, key: None, value: Some(b"v"), headers: &[] }]).unwrap();
    assert!(validate_record_set(&batch, MAX, false).is_ok());
    assert!(matches!(validate_record_set(&batch, MAX, true), Err(LogError::InvalidRecord(m)) if m.contains("key")));
}

#[test]
fn control_and_empty_batches() {
    let key = [0u8, 0, 0, 1]; // version 0, type COMMIT
    let ctl = BatchBuilder { control: true, transactional: true, producer_id: 3, producer_epoch: 0, ..Default::default() }
        .build(&[NewRecord { timestamp_ms: 9, key: Some(&key), value: Some(&[0, 0, 0, 0, 0, 0]), headers: &[] }])
        .unwrap();
    let h = validate_record_set(&ctl, MAX, true).unwrap()[0];
    assert!(h.is_control() && h.is_transactional());
    // record_count 0 is only acceptable for a control batch
    let mut empty = build(Compression::None, 1);
    empty.truncate(BATCH_HEADER_BYTES);
    empty[8..12].copy_from_slice(&MIN_BATCH_LENGTH.to_be_bytes());
    empty[field::RECORD_COUNT..field::RECORD_COUNT + 4].copy_from_slice(&0i32.to_be_bytes());
    empty[field::LAST_OFFSET_DELTA..field::LAST_OFFSET_DELTA + 4].copy_from_slice(&0i32.to_be_bytes());
    fix_crc(&mut empty);
    assert!(matches!(validate_record_set(&empty, MAX, false), Err(LogError::InvalidRecord(_))));
    empty[field::ATTRIBUTES + 1] |= ATTR_CONTROL as u8;
    fix_crc(&mut empty);
    assert!(validate_record_set(&empty, MAX, false).is_ok());
    // transactional without producer id
    let mut txn = build(Compression::None, 1);
    txn[field::ATTRIBUTES + 1] |= ATTR_TRANSACTIONAL as u8;
    fix_crc(&mut txn);
    assert!(matches!(validate_record_set(&txn, MAX, false), Err(LogError::InvalidRecord(_))));
}

#[test]
fn trailing_bytes_inside_a_batch() {
    for codec in [Compression::None, Compression::Gzip] {
        let plain = build(Compression::None, 3);
        let mut body = plain[BATCH_HEADER_BYTES..].to_vec();
        body.push(0);
        let body = compression::compress(codec, &body).unwrap();
        let mut batch = plain[..BATCH_HEADER_BYTES].to_vec();
        batch.extend_from_slice(&body);
        let len = (batch.len() - LOG_OVERHEAD) as i32;
        batch[8..12].copy_from_slice(&len.to_be_bytes());
        batch[field::ATTRIBUTES + 1] |= codec.id() as u8;
        fix_crc(&mut batch);
        assert!(matches!(validate_record_set(&batch, MAX, false), Err(LogError::CorruptMessage(m)) if m.contains("left after")));
    }
}

#[test]
fn decompression_bomb_is_capped() {
    // One record whose 8 MiB value is zeros: tiny compressed, over a 1 MiB cap.
    let value = vec![0u8; 8 << 20];
    for codec in [Compression::Gzip, Compression::Lz4, Compression::Zstd, Compression::Snappy] {
        let batch = BatchBuilder::new()
            .compression(codec)
            .build(&[NewRecord { timestamp_ms: 0, key: None, value: Some(&value), headers: &[] }])
            .unwrap();
        assert!(batch.len() < 1 << 20, "{codec:?} compresses zeros");
        let res = validate_record_set_with_limit(&batch, 1 << 30, false, Some(1 << 20));
        assert!(matches!(&res, Err(LogError::CorruptMessage(m)) if m.contains("limit")), "{codec:?}: {res:?}");
        assert!(validate_record_set_with_limit(&batch, 1 << 30, false, Some(16 << 20)).is_ok());
    }
}

#[test]
fn log_append_time_and_patch() {
    let mut batch = build(Compression::Snappy, 4);
    patch_batch(&mut batch, 100, 7, 0, Some(55_555));
    let h = check_batch_frame(&batch, MAX).unwrap();
    assert_eq!((h.base_offset, h.partition_leader_epoch, h.max_timestamp, h.base_timestamp), (100, 7, 55_555, 55_555));
    assert_eq!(h.timestamp_type(), TimestampType::LogAppendTime);
    let mut seen = Vec::new();
    for_each_record(&batch, &mut |o, t| {
        seen.push((o, t));
        true
    })
    .unwrap();
    assert_eq!(seen, (100..104).map(|o| (o, 55_555)).collect::<Vec<_>>());
}

fn codec_strategy() -> impl Strategy<Value = Compression> {
    prop::sample::select(CODECS.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_on_arbitrary_bytes(data in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = validate_record_set(&data, MAX, true);
        let _ = decode_records(&data);
        let _ = split_batches(&data).count();
    }

    /// Mutations of valid batches with the CRC fixed up, so the record parser and decompressors see them.
    #[test]
    fn never_panics_on_mutated_batches(
        codec in codec_strategy(),
        n in 1usize..20,
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        fix in any::<bool>(),
    ) {
        let mut batch = build(codec, n);
        for (at, byte) in edits {
            let i = at.index(batch.len());
            batch[i] = byte;
        }
        if fix && batch.len() > BATCH_HEADER_BYTES {
            let body_len = batch.len() - LOG_OVERHEAD;
            if (BatchHeader::parse(&batch).unwrap().batch_length as usize) == body_len {
                fix_crc(&mut batch);
            }
        }
        let len = batch.len();
        let _ = validate_record_set(&batch, MAX, false);
        let _ = validate_record_set(&batch[..cut.index(len + 1)], MAX, false);
        let _ = decode_records(&batch);
    }

    /// Record-level mutations: the body is edited before compression, so decompression succeeds and the
    /// record parser gets garbage.
    #[test]
    fn never_panics_on_mutated_records(
        codec in codec_strategy(),
        n in 1usize..10,
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let plain = build(Compression::None, n);
        let mut body = plain[BATCH_HEADER_BYTES..].to_vec();
        for (at, byte) in edits {
            let i = at.index(body.len());
            body[i] = byte;
        }
        let body = compression::compress(codec, &body).unwrap();
        let mut batch = plain[..BATCH_HEADER_BYTES].to_vec();
        batch.extend_from_slice(&body);
        let len = (batch.len() - LOG_OVERHEAD) as i32;
        batch[8..12].copy_from_slice(&len.to_be_bytes());
        batch[field::ATTRIBUTES + 1] = (batch[field::ATTRIBUTES + 1] & !7) | codec.id() as u8;
        fix_crc(&mut batch);
        let _ = validate_record_set(&batch, MAX, true);
        let _ = decode_records(&batch);
    }
}

#[test]
fn control_batches_round_trip_and_validate() {
    for commit in [true, false] {
        let control = ControlRecord { commit, coordinator_epoch: 7 };
        let bytes = control_batch(42, 3, control, 1_000).expect("build");
        let header = BatchHeader::parse(&bytes).expect("header");
        assert!(header.is_control() && header.is_transactional());
        assert_eq!((header.producer_id, header.producer_epoch, header.base_sequence), (42, 3, -1));
        assert_eq!(parse_control_batch(&bytes).expect("parse"), Some(control));
        validate_record_set(&bytes, 1 << 20, false).expect("a control batch is a valid record set");
    }
}
