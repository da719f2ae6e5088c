use std::fs::OpenOptions;
use std::io::Write;

use super::batch::{split_batches, BatchBuilder, NewRecord};
use super::*;

fn cfg() -> LogConfig {
    LogConfig { fsync: false, index_interval_bytes: 128, retention_ms: -1, ..LogConfig::default() }
}

fn small_segments() -> LogConfig {
    LogConfig { segment_bytes: 2_000, ..cfg() }
}

/// `n` records with timestamps `ts, ts+1, ...` (the second one goes back in time to exercise max handling).
fn make_batch(n: usize, ts: i64, codec: Compression) -> Vec<u8> {
    let values: Vec<String> = (0..n).map(|i| format!("value-{ts}-{i}")).collect();
    let recs: Vec<NewRecord> = values
        .iter()
        .enumerate()
        .map(|(i, v)| NewRecord { timestamp_ms: if i == 1 { ts - 5 } else { ts + i as i64 }, key: Some(b"k"), value: Some(v.as_bytes()), headers: &[] })
        .collect();
    BatchBuilder::new().compression(codec).build(&recs).unwrap()
}

fn append_with(log: &mut Log, n: usize, ts: i64, epoch: i32, codec: Compression) -> AppendInfo {
    let mut b = make_batch(n, ts, codec);
    let headers = batch::validate_record_set(&b, u32::MAX, false).unwrap();
    log.append_as_leader(&mut b, &headers, epoch, ts).unwrap()
}

fn append(log: &mut Log, n: usize, ts: i64) -> AppendInfo {
    append_with(log, n, ts, 0, Compression::None)
}

/// Every (offset, timestamp) readable from the log start, in order, checking batch invariants on the way.
fn all_records(log: &Log) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    let end = log.log_end_offset();
    while offset < end {
        let bytes = log.read(offset, 1 << 20, i64::MAX, true).unwrap();
        assert!(!bytes.is_empty(), "nothing read at {offset} < {end}");
        for item in split_batches(&bytes) {
            let (h, b) = item.unwrap();
            assert_eq!(batch::compute_crc(b), h.crc);
            for r in batch::decode_records(b).unwrap() {
                if r.offset >= offset {
                    out.push((r.offset, r.timestamp));
                }
            }
            offset = h.last_offset() + 1;
        }
    }
    out
}

fn first_offset_of(bytes: &Bytes) -> Option<(i64, i64)> {
    split_batches(bytes).next().map(|r| r.map(|(h, _)| (h.base_offset, h.last_offset())).unwrap())
}

fn log_file(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}

#[test]
fn append_and_read_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), cfg()).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
    for i in 0..10 {
        let info = append(&mut log, 5, 1_000 + i);
        assert_eq!((info.first_offset, info.last_offset, info.log_append_time_ms), (i * 5, i * 5 + 4, -1));
    }
    assert_eq!(log.log_end_offset(), 50);
    assert_eq!(all_records(&log).iter().map(|r| r.0).collect::<Vec<_>>(), (0..50).collect::<Vec<_>>());
    // The batch containing the offset comes first.
    assert_eq!(first_offset_of(&log.read(12, 1 << 20, 50, false).unwrap()), Some((10, 14)));
    // max_offset: batches at or past it are left out.
    let b = log.read(0, 1 << 20, 20, false).unwrap();
    assert_eq!(split_batches(&b).count(), 4);
    assert!(log.read(20, 1 << 20, 20, false).unwrap().is_empty());
    // max_bytes and min_one.
    let one = log.read(0, 1 << 20, 50, false).unwrap().len() / 10;
    assert_eq!(log.read(0, one * 3 + 5, 50, false).unwrap().len(), one * 3);
    assert!(log.read(0, 10, 50, false).unwrap().is_empty());
    assert_eq!(log.read(0, 10, 50, true).unwrap().len(), one);
    assert!(log.read(50, 100, 50, true).unwrap().is_empty());
    assert!(matches!(log.read(51, 100, 60, true), Err(LogError::OffsetOutOfRange { offset: 51, .. })));
    assert!(matches!(log.read(-1, 100, 60, true), Err(LogError::OffsetOutOfRange { .. })));
    // Stored bytes carry the assigned offsets and a valid CRC.
    let b = log.read(35, 1 << 20, 50, false).unwrap();
    let headers = batch::validate_record_set(&b, u32::MAX, false).unwrap();
    assert_eq!(headers.iter().map(|h| h.base_offset).collect::<Vec<_>>(), vec![35, 40, 45]);
    assert_eq!(headers[0].max_timestamp, 1_007 + 4);
}

#[test]
fn append_rejects_mismatched_input() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), cfg()).unwrap();
    let mut b = make_batch(3, 1, Compression::None);
    let mut headers = batch::validate_record_set(&b, u32::MAX, false).unwrap();
    let mut short = b[..b.len() - 1].to_vec();
    assert!(log.append_as_leader(&mut short, &headers, 0, 0).is_err());
    assert!(log.append_as_leader(&mut b, &[], 0, 0).is_err());
    headers[0].last_offset_delta = 7;
    assert!(log.append_as_leader(&mut b, &headers, 0, 0).is_err());
    assert_eq!(log.log_end_offset(), 0);
    append_with(&mut log, 1, 1, 5, Compression::None);
    let mut b = make_batch(1, 1, Compression::None);
    let headers = batch::validate_record_set(&b, u32::MAX, false).unwrap();
    assert!(matches!(log.append_as_leader(&mut b, &headers, 4, 0), Err(LogError::InvalidRecord(m)) if m.contains("epoch")));
}

#[test]
fn several_batches_in_one_append_and_compressed_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_segments()).unwrap();
    for round in 0..10 {
        let mut set = Vec::new();
        for codec in [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
            set.extend(make_batch(4, 100 * round, codec));
        }
        let headers = batch::validate_record_set(&set, u32::MAX, false).unwrap();
        let info = log.append_as_leader(&mut set, &headers, 1, 0).unwrap();
        assert_eq!(info.last_offset - info.first_offset, 19);
    }
    assert!(log.segment_base_offsets().len() > 3, "rolled mid-append: {:?}", log.segment_base_offsets());
    assert_eq!(all_records(&log).len(), 200);
}

#[test]
fn segments_roll_and_every_offset_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_segments()).unwrap();
    for i in 0..200 {
        append(&mut log, 1 + (i % 3) as usize, 10_000 + i);
    }
    let end = log.log_end_offset();
    let bases = log.segment_base_offsets();
    assert!(bases.len() > 10);
    assert!(log.size_bytes() > 20_000);
    let check = |log: &Log| {
        for offset in 0..end {
            let (base, last) = first_offset_of(&log.read(offset, 1, end, true).unwrap()).unwrap();
            assert!(base <= offset && offset <= last, "offset {offset} gave batch {base}..={last}");
        }
    };
    check(&log);
    drop(log);
    // Reopen: closed segments come back from their index files.
    let log = Log::open(dir.path(), small_segments()).unwrap();
    assert_eq!((log.log_end_offset(), log.segment_base_offsets()), (end, bases.clone()));
    check(&log);
    drop(log);
    // Missing and damaged index files are rebuilt.
    std::fs::remove_file(dir.path().join(format!("{:020}.index", bases[1]))).unwrap();
    std::fs::write(dir.path().join(format!("{:020}.index", bases[2])), [0xffu8; 16]).unwrap();
    std::fs::write(dir.path().join(format!("{:020}.timeindex", bases[3])), [1u8; 5]).unwrap();
    let log = Log::open(dir.path(), small_segments()).unwrap();
    assert_eq!((log.log_end_offset(), log.segment_base_offsets()), (end, bases));
    check(&log);
}

#[test]
fn recovery_cuts_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), cfg()).unwrap();
    for i in 0..20 {
        append(&mut log, 3, i);
    }
    let good_end = log.log_end_offset();
    let good_size = log.size_bytes();
    append(&mut log, 3, 99);
    drop(log);
    // Cut the last batch in half.
    let f = OpenOptions::new().write(true).open(log_file(dir.path(), 0)).unwrap();
    f.set_len(good_size + 30).unwrap();
    drop(f);
    let mut log = Log::open(dir.path(), cfg()).unwrap();
    assert_eq!(log.log_end_offset(), good_end);
    assert_eq!(log.size_bytes(), good_size);
    assert_eq!(all_records(&log).len() as i64, good_end);
    // Appends continue at the recovered end; then garbage after them is cut too.
    assert_eq!(append(&mut log, 2, 5).first_offset, good_end);
    drop(log);
    let mut f = OpenOptions::new().append(true).open(log_file(dir.path(), 0)).unwrap();
    f.write_all(&[0xab; 500]).unwrap();
    drop(f);
    let log = Log::open(dir.path(), cfg()).unwrap();
    assert_eq!(log.log_end_offset(), good_end + 2);
    assert_eq!(all_records(&log).len() as i64, good_end + 2);
}

#[test]
fn recovery_cuts_at_a_corrupt_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), cfg()).unwrap();
    let mut sizes = Vec::new();
    for i in 0..10 {
        append(&mut log, 2, i);
        sizes.push(log.size_bytes());
    }
    drop(log);
    // Flip a byte inside batch 6 (offsets 12..13): batches 6.. go.
    let f = OpenOptions::new().read(true).write(true).open(log_file(dir.path(), 0)).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &[0x5a], sizes[5] + 70).unwrap();
    drop(f);
    let log = Log::open(dir.path(), cfg()).unwrap();
    assert_eq!(log.log_end_offset(), 12);
    assert_eq!(log.size_bytes(), sizes[5]);
}

#[test]
fn recovery_rescans_segments_after_the_recovery_point() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig { fsync: true, ..small_segments() };
    let mut log = Log::open(dir.path(), config.clone()).unwrap();
    for i in 0..100 {
        append(&mut log, 2, i);
    }
    // Nothing marked flushed: the recovery point stays at 0, so every segment is re-verified on open.
    let bases = log.segment_base_offsets();
    assert!(bases.len() > 4);
    drop(log);
    // Corrupt the middle of a closed segment: it is cut there; later segments survive (a gap).
    let victim = log_file(dir.path(), bases[2]);
    let len = std::fs::metadata(&victim).unwrap().len();
    let f = OpenOptions::new().read(true).write(true).open(&victim).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &[0xee; 4], len - 10).unwrap();
    drop(f);
    let log = Log::open(dir.path(), config).unwrap();
    assert_eq!(log.log_end_offset(), 200);
    assert_eq!(log.segment_base_offsets(), bases);
    let records = all_records(&log);
    assert!(records.len() < 200 && records.len() >= 190, "{}", records.len());
    assert_eq!(records.last().map(|r| r.0), Some(199));
}

#[test]
fn retention_by_size_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig { retention_bytes: 5_000, ..small_segments() };
    let mut log = Log::open(dir.path(), config).unwrap();
    for i in 0..100 {
        append(&mut log, 2, 1_000 + i);
    }
    let segments = log.segment_base_offsets().len();
    let deleted = log.enforce_retention(2_000).unwrap();
    assert!(deleted > 0 && deleted < segments);
    assert!(log.size_bytes() <= 5_000 + 2_000, "{}", log.size_bytes());
    let start = log.log_start_offset();
    assert_eq!(start, log.segment_base_offsets()[0]);
    assert!(matches!(log.read(start - 1, 100, 200, true), Err(LogError::OffsetOutOfRange { .. })));
    assert_eq!(all_records(&log).first().map(|r| r.0), Some(start));

    // Time: segments whose newest record is older than retention.ms go, never the active one.
    let mut config = log.config().clone();
    config.retention_bytes = -1;
    config.retention_ms = 50;
    log.set_config(config);
    // Newest timestamp per closed segment grows with the offsets; keep those newer than 1090 - 50.
    let deleted = log.enforce_retention(1_130).unwrap();
    assert!(deleted > 0);
    let first = all_records(&log)[0];
    assert!(first.1 >= 1_040, "{first:?}");
    let deleted_all = log.enforce_retention(1_000_000).unwrap();
    assert!(deleted_all > 0);
    assert_eq!(log.segment_base_offsets().len(), 1, "the active segment stays");
    assert_eq!(log.log_start_offset(), log.segment_base_offsets()[0]);
    drop(log);
    let log = Log::open(dir.path(), small_segments()).unwrap();
    assert_eq!(log.log_end_offset(), 200);
}

#[test]
fn segment_ms_rolls_and_empty_segments_never_roll() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig { segment_ms: 1_000, ..cfg() };
    let mut log = Log::open(dir.path(), config).unwrap();
    log.enforce_retention(1_000_000).unwrap();
    assert_eq!(log.segment_base_offsets(), vec![0]);
    let mut b = make_batch(1, 5, Compression::None);
    let h = batch::validate_record_set(&b, u32::MAX, false).unwrap();
    log.append_as_leader(&mut b, &h, 0, 10_000).unwrap();
    log.enforce_retention(10_500).unwrap();
    assert_eq!(log.segment_base_offsets(), vec![0]);
    log.enforce_retention(11_000).unwrap();
    assert_eq!(log.segment_base_offsets(), vec![0, 1]);
    log.enforce_retention(50_000).unwrap();
    assert_eq!(log.segment_base_offsets(), vec![0, 1]);
    // An append long after the segment started rolls first.
    let mut b = make_batch(1, 5, Compression::None);
    log.append_as_leader(&mut b, &h, 0, 60_000).unwrap();
    let mut b = make_batch(1, 5, Compression::None);
    log.append_as_leader(&mut b, &h, 0, 61_500).unwrap();
    assert_eq!(log.segment_base_offsets(), vec![0, 1, 2]);
}

#[test]
fn timestamp_lookup_matches_a_full_scan() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_segments()).unwrap();
    let codecs = [Compression::None, Compression::Gzip, Compression::Lz4, Compression::Zstd, Compression::Snappy];
    for i in 0..120i64 {
        // Mostly growing, with some out-of-order batches.
        let ts = if i % 7 == 3 { 10 * i - 300 } else { 10 * i };
        append_with(&mut log, 1 + (i % 4) as usize, ts, 0, codecs[i as usize % 5]);
    }
    let check = |log: &Log| {
        let records = all_records(log);
        for target in (-400..1_300).step_by(7) {
            let expect = records.iter().find(|r| r.1 >= target).copied();
            assert_eq!(log.find_offset_by_timestamp(target).unwrap(), expect, "target {target}");
        }
        let max = records.iter().map(|r| r.1).max().unwrap();
        let expect = records.iter().find(|r| r.1 == max).copied();
        assert_eq!(log.max_timestamp().unwrap(), expect);
    };
    check(&log);
    log.advance_log_start_offset(77).unwrap();
    check(&log);
    drop(log);
    let log = Log::open(dir.path(), small_segments()).unwrap();
    check(&log);
}

#[test]
fn log_append_time() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig { message_timestamp_type: TimestampType::LogAppendTime, ..cfg() };
    let mut log = Log::open(dir.path(), config).unwrap();
    let mut b = make_batch(3, 5, Compression::Gzip);
    let h = batch::validate_record_set(&b, u32::MAX, false).unwrap();
    let info = log.append_as_leader(&mut b, &h, 0, 777).unwrap();
    assert_eq!(info.log_append_time_ms, 777);
    assert_eq!(all_records(&log), vec![(0, 777), (1, 777), (2, 777)]);
    assert_eq!(log.find_offset_by_timestamp(700).unwrap(), Some((0, 777)));
    assert_eq!(log.find_offset_by_timestamp(778).unwrap(), None);
    assert_eq!(log.max_timestamp().unwrap(), Some((0, 777)));
}

#[test]
fn leader_epoch_cache() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_segments()).unwrap();
    assert_eq!(log.latest_epoch(), None);
    assert_eq!(log.end_offset_for_epoch(0), None);
    for _ in 0..3 {
        append_with(&mut log, 10, 1, 1, Compression::None);
    }
    for _ in 0..2 {
        append_with(&mut log, 10, 1, 3, Compression::None);
    }
    let expect = |log: &Log| {
        assert_eq!(log.latest_epoch(), Some(3));
        assert_eq!(log.end_offset_for_epoch(3), Some((3, 50)));
        assert_eq!(log.end_offset_for_epoch(2), Some((1, 30)));
        assert_eq!(log.end_offset_for_epoch(1), Some((1, 30)));
        assert_eq!(log.end_offset_for_epoch(0), Some((0, 0)));
        assert_eq!(log.end_offset_for_epoch(4), None);
    };
    expect(&log);
    drop(log);
    let log = Log::open(dir.path(), small_segments()).unwrap();
    expect(&log);
    drop(log);
    // Lost checkpoint: rebuilt from the batches' partition leader epochs.
    std::fs::remove_file(dir.path().join("leader-epoch-checkpoint")).unwrap();
    let mut log = Log::open(dir.path(), small_segments()).unwrap();
    expect(&log);
    log.begin_leader_epoch(5).unwrap();
    assert_eq!(log.end_offset_for_epoch(3), Some((3, 50)));
    assert_eq!(log.end_offset_for_epoch(5), Some((5, 50)));
    append_with(&mut log, 1, 1, 5, Compression::None);
    assert_eq!(log.leader_epochs().iter().map(|e| (e.epoch, e.start_offset)).collect::<Vec<_>>(), vec![(1, 0), (3, 30), (5, 50)]);
    // Truncation drops epochs that start past the new end.
    log.truncate_to(45).unwrap();
    assert_eq!(log.log_end_offset(), 40);
    assert_eq!(log.latest_epoch(), Some(3));
    assert_eq!(log.end_offset_for_epoch(3), Some((3, 40)));
    log.truncate_to(35).unwrap();
    assert_eq!(log.latest_epoch(), Some(1), "the batch holding 35 started epoch 3 at 30");
}

#[test]
fn delete_records_advances_the_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_segments()).unwrap();
    for i in 0..100 {
        append(&mut log, 2, i);
    }
    let segments = log.segment_base_offsets().len();
    log.advance_log_start_offset(101).unwrap();
    assert_eq!(log.log_start_offset(), 101);
    assert!(log.segment_base_offsets().len() < segments);
    assert!(matches!(log.read(100, 100, 200, true), Err(LogError::OffsetOutOfRange { .. })));
    // The batch holding 101 starts at 100: it is returned whole, clients skip the record below the start.
    assert_eq!(first_offset_of(&log.read(101, 100, 200, true).unwrap()), Some((100, 101)));
    log.advance_log_start_offset(50).unwrap();
    assert_eq!(log.log_start_offset(), 101, "never lowered");
    assert!(matches!(log.advance_log_start_offset(201), Err(LogError::OffsetOutOfRange { .. })));
    drop(log);
    let mut log = Log::open(dir.path(), small_segments()).unwrap();
    assert_eq!(log.log_start_offset(), 101);
    // Deleting everything rolls and keeps an empty active segment.
    log.advance_log_start_offset(200).unwrap();
    assert_eq!(log.segment_base_offsets(), vec![200]);
    assert_eq!(log.size_bytes(), 0);
    assert!(log.read(200, 100, 200, true).unwrap().is_empty());
    assert_eq!(append(&mut log, 1, 1).first_offset, 200);
}

#[test]
fn truncation() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_segments()).unwrap();
    for i in 0..100 {
        append(&mut log, 2, i);
    }
    let bases = log.segment_base_offsets();
    // Inside a batch: the whole batch goes.
    log.truncate_to(151).unwrap();
    assert_eq!(log.log_end_offset(), 150);
    assert!(log.segment_base_offsets().len() <= bases.len());
    assert_eq!(all_records(&log).len(), 150);
    assert_eq!(append(&mut log, 3, 1_000).first_offset, 150);
    // Across segments, to a segment boundary.
    let b = bases[3];
    log.truncate_to(b).unwrap();
    assert_eq!(log.log_end_offset(), b);
    assert_eq!(log.segment_base_offsets().last(), Some(&b));
    assert_eq!(append(&mut log, 2, 1_000).first_offset, b);
    drop(log);
    let mut log = Log::open(dir.path(), small_segments()).unwrap();
    assert_eq!(log.log_end_offset(), b + 2);
    assert_eq!(all_records(&log).len() as i64, b + 2);
    // Into a closed segment (its index files go; it becomes the active segment).
    log.truncate_to(bases[1] + 3).unwrap();
    assert_eq!(log.segment_base_offsets(), bases[..2].to_vec());
    assert!(log.log_end_offset() <= bases[1] + 3);
    for i in 0..30 {
        append(&mut log, 2, 2_000 + i);
    }
    let end = log.log_end_offset();
    drop(log);
    let mut log = Log::open(dir.path(), small_segments()).unwrap();
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(all_records(&log).len() as i64, end);
    // Below the first segment: start over there.
    log.advance_log_start_offset(bases[1]).unwrap();
    log.truncate_to(bases[1] - 1).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (bases[1] - 1, bases[1] - 1));
    assert_eq!(append(&mut log, 1, 1).first_offset, bases[1] - 1);
    log.truncate_to(1_000_000).unwrap();
    assert!(log.truncate_to(-1).is_err());
}

#[test]
fn group_commit_bookkeeping() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig { fsync: true, ..small_segments() }).unwrap();
    assert!(log.unflushed().is_none());
    for i in 0..30 {
        append(&mut log, 2, i);
    }
    assert_eq!(log.flushed_offset(), 0);
    let target = log.unflushed().unwrap();
    assert_eq!(target.up_to_offset, 60);
    assert_eq!(target.files.len(), log.segment_base_offsets().len());
    for f in &target.files {
        f.sync_data().unwrap();
    }
    log.mark_flushed(target.up_to_offset);
    assert_eq!(log.flushed_offset(), 60);
    assert!(log.unflushed().is_none());
    append(&mut log, 2, 1);
    assert_eq!(log.unflushed().unwrap().files.len(), 1);
    // A truncation between unflushed() and mark_flushed() caps what that flush vouches for.
    let target = log.unflushed().unwrap();
    log.truncate_to(55).unwrap();
    append(&mut log, 10, 1);
    log.mark_flushed(target.up_to_offset);
    assert_eq!(log.flushed_offset(), 54);
    let target = log.unflushed().unwrap();
    log.mark_flushed(target.up_to_offset);
    assert_eq!(log.flushed_offset(), log.log_end_offset());
    drop(log);
    // Without fsync everything counts as flushed.
    let mut log = Log::open(dir.path(), small_segments()).unwrap();
    append(&mut log, 1, 1);
    assert!(log.unflushed().is_none());
    assert_eq!(log.flushed_offset(), log.log_end_offset());
}

#[test]
fn follower_append_replicates_bytes_and_epochs() {
    let (ld, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut leader = Log::open(ld.path(), small_segments()).unwrap();
    let mut follower = Log::open(fd.path(), small_segments()).unwrap();
    for i in 0..40 {
        append_with(&mut leader, 3, i, (i / 10) as i32, Compression::Lz4);
    }
    let mut offset = 0;
    while offset < leader.log_end_offset() {
        let bytes = leader.read(offset, 700, i64::MAX, true).unwrap();
        // Cut the response mid-batch, as a size-limited fetch may: the partial batch is ignored.
        let cut = if split_batches(&bytes).count() > 1 { &bytes[..bytes.len() - 20] } else { &bytes[..] };
        let info = follower.append_as_follower(cut, 0).unwrap();
        offset = info.last_offset + 1;
        assert_eq!(follower.log_end_offset(), offset);
    }
    assert_eq!(follower.leader_epochs(), leader.leader_epochs());
    assert_eq!(all_records(&follower), all_records(&leader));
    assert_eq!(follower.read(0, 1 << 20, i64::MAX, true).unwrap(), leader.read(0, 1 << 20, i64::MAX, true).unwrap());
    // Going backwards or a bad CRC is refused.
    let again = leader.read(0, 100, i64::MAX, true).unwrap();
    assert!(follower.append_as_follower(&again, 0).is_err());
    let mut bad = make_batch(1, 1, Compression::None);
    bad[..8].copy_from_slice(&follower.log_end_offset().to_be_bytes());
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(matches!(follower.append_as_follower(&bad, 0), Err(LogError::CorruptMessage(_))));
}

#[test]
fn scan_batches_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topic-0");
    let mut log = Log::open(&path, small_segments()).unwrap();
    for i in 0..50 {
        append(&mut log, 2, i);
    }
    let mut seen = Vec::new();
    log.scan_batches(31, &mut |h| seen.push(h.base_offset)).unwrap();
    assert_eq!(seen, (30..100).step_by(2).collect::<Vec<_>>());
    log.delete().unwrap();
    assert!(!path.exists());
}

mod model {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Append { n: usize, codec: usize, ts: i64 },
        Truncate(prop::sample::Index),
        AdvanceStart(prop::sample::Index),
        Roll,
        Reopen,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (1usize..6, 0usize..5, 0i64..1_000).prop_map(|(n, codec, ts)| Op::Append { n, codec, ts }),
            1 => any::<prop::sample::Index>().prop_map(Op::Truncate),
            1 => any::<prop::sample::Index>().prop_map(Op::AdvanceStart),
            1 => Just(Op::Roll),
            1 => Just(Op::Reopen),
        ]
    }

    const CODECS: [Compression; 5] = [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd];

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// Random appends, truncations, DeleteRecords, rolls and reopens agree with a plain list of batches.
        #[test]
        fn log_matches_a_model(ops in prop::collection::vec(op(), 1..40), fsync in any::<bool>()) {
            let dir = tempfile::tempdir().unwrap();
            let config = LogConfig { fsync, segment_bytes: 700, index_interval_bytes: 100, ..cfg() };
            let mut log = Log::open(dir.path(), config.clone()).unwrap();
            // (base offset, record timestamps) per batch, and the log start offset.
            let mut batches: Vec<(i64, Vec<i64>)> = Vec::new();
            let mut start = 0i64;
            let mut leo = 0i64;
            for op in ops {
                match op {
                    Op::Append { n, codec, ts } => {
                        let info = append_with(&mut log, n, ts, 0, CODECS[codec]);
                        prop_assert_eq!(info.first_offset, leo);
                        leo += n as i64;
                        let stamps = (0..n as i64).map(|i| if i == 1 { ts - 5 } else { ts + i }).collect();
                        batches.push((info.first_offset, stamps));
                    }
                    Op::Truncate(i) => {
                        let to = start + i.index((leo - start + 1) as usize) as i64;
                        log.truncate_to(to).unwrap();
                        // Whole batches go: the one holding `to` and everything after.
                        if let Some((base, _)) = batches.iter().find(|(base, ts)| *base <= to && to < base + ts.len() as i64) {
                            leo = *base;
                        }
                        batches.retain(|(base, ts)| base + ts.len() as i64 <= to);
                        start = start.min(leo);
                    }
                    Op::AdvanceStart(i) => {
                        let to = start + i.index((leo - start + 1) as usize) as i64;
                        log.advance_log_start_offset(to).unwrap();
                        start = to;
                        batches.retain(|(base, ts)| base + ts.len() as i64 > to);
                    }
                    Op::Roll => log.roll().unwrap(),
                    Op::Reopen => {
                        if let Some(t) = log.unflushed() {
                            log.mark_flushed(t.up_to_offset);
                        }
                        drop(log);
                        log = Log::open(dir.path(), config.clone()).unwrap();
                    }
                }
                prop_assert_eq!(log.log_end_offset(), leo);
                prop_assert_eq!(log.log_start_offset(), start);
                let expect: Vec<(i64, i64)> = batches
                    .iter()
                    .flat_map(|(base, ts)| ts.iter().enumerate().map(move |(i, t)| (base + i as i64, *t)))
                    .filter(|r| r.0 >= start)
                    .collect();
                prop_assert_eq!(all_records(&log), expect.clone());
                for target in [0i64, 3, 500, 1_003] {
                    let want = expect.iter().find(|r| r.1 >= target).copied();
                    prop_assert_eq!(log.find_offset_by_timestamp(target).unwrap(), want);
                }
            }
        }
    }
}

#[test]
fn reset_to_restarts_an_empty_log_that_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), cfg()).unwrap();
    append_with(&mut log, 3, 1000, 1, Compression::None);
    log.reset_to(50).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (50, 50));
    assert!(log.leader_epochs().is_empty());
    append_with(&mut log, 1, 2000, 2, Compression::None);
    assert_eq!(log.log_end_offset(), 51);
    drop(log);
    let log = Log::open(dir.path(), cfg()).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (50, 51));
    assert_eq!(log.leader_epochs(), vec![EpochEntry { epoch: 2, start_offset: 50 }]);
}

#[test]
fn truncating_at_the_end_drops_an_epoch_that_wrote_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), cfg()).unwrap();
    append_with(&mut log, 3, 1000, 1, Compression::None);
    log.begin_leader_epoch(4).unwrap();
    assert_eq!(log.latest_epoch(), Some(4));
    log.truncate_to(3).unwrap();
    assert_eq!(log.log_end_offset(), 3);
    assert_eq!(log.leader_epochs(), vec![EpochEntry { epoch: 1, start_offset: 0 }]);
}
