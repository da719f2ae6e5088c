use std::collections::BTreeMap;
use std::path::Path;

use super::super::batch::{split_batches, BatchBuilder, NewRecord};
use super::super::*;
use super::{CleanerConfig, Step};

fn cfg() -> LogConfig {
    LogConfig { fsync: false, index_interval_bytes: 64, segment_bytes: 1_000, retention_ms: -1, compact: true, ..LogConfig::default() }
}

fn cleaner() -> CleanerConfig {
    CleanerConfig { min_cleanable_dirty_ratio: 0.0, delete_retention_ms: 1_000, ..CleanerConfig::default() }
}

fn open(dir: &Path, config: LogConfig) -> Log {
    let mut log = Log::open(dir, config).unwrap();
    log.set_cleaner_config(cleaner());
    log
}

type Entry = (i64, String, Option<String>, i64);

/// Appends one batch of (key, value) records at timestamp `ts`; returns the first offset.
fn put_batch(log: &mut Log, builder: BatchBuilder, records: &[(&str, Option<&str>)], ts: i64) -> i64 {
    let recs: Vec<NewRecord> = records
        .iter()
        .map(|(k, v)| NewRecord { timestamp_ms: ts, key: Some(k.as_bytes()), value: v.map(str::as_bytes), headers: &[] })
        .collect();
    let mut b = builder.build(&recs).unwrap();
    let headers = batch::validate_record_set(&b, u32::MAX, true).unwrap();
    let epoch = log.latest_epoch().unwrap_or(0);
    log.append_as_leader(&mut b, &headers, epoch, ts).unwrap().first_offset
}

fn put(log: &mut Log, key: &str, value: Option<&str>, ts: i64) -> i64 {
    put_batch(log, BatchBuilder::new(), &[(key, value)], ts)
}

/// Every record readable from the log start: (offset, key, value, timestamp), checking CRCs and order.
fn contents(log: &Log) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::new();
    let mut offset = log.log_start_offset();
    let end = log.log_end_offset();
    while offset < end {
        let bytes = log.read(offset, 1 << 20, i64::MAX, true).unwrap();
        if bytes.is_empty() {
            break;
        }
        for item in split_batches(&bytes) {
            let (h, b) = item.unwrap();
            assert_eq!(batch::compute_crc(b), h.crc);
            for r in batch::decode_records(b).unwrap() {
                assert!(r.offset >= h.base_offset && r.offset <= h.last_offset());
                if r.offset >= offset {
                    assert!(out.last().is_none_or(|l| l.0 < r.offset), "offsets grow");
                    let s = |b: Option<Bytes>| b.map(|b| String::from_utf8(b.to_vec()).unwrap());
                    out.push((r.offset, s(r.key).unwrap(), s(r.value), r.timestamp));
                }
            }
            offset = h.last_offset() + 1;
        }
    }
    out
}

/// Key → latest value (None: tombstone) as a consumer replaying the log sees it.
fn replay(entries: &[Entry]) -> BTreeMap<String, Option<String>> {
    entries.iter().map(|e| (e.1.clone(), e.2.clone())).collect()
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".cleaned") || n.ends_with(".swap") || n.ends_with(".swap-end"))
        .collect()
}

/// 10 keys written 8 times each, one record per batch, into several segments; the last round sits in the
/// active segment.
fn fill(log: &mut Log) -> Vec<Entry> {
    let mut written = Vec::new();
    for round in 0..8 {
        for k in 0..10 {
            let (key, value) = (format!("key-{k}"), format!("value-{round}-{k}"));
            let ts = 1_000 + round * 10 + k;
            let offset = put(log, &key, Some(&value), ts);
            written.push((offset, key, Some(value), ts));
        }
        if round == 6 {
            log.roll().unwrap();
        }
    }
    written
}

#[test]
fn keeps_the_latest_record_per_key_at_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), cfg());
    let written = fill(&mut log);
    let before = contents(&log);
    assert_eq!(before, written);
    let segments_before = log.segment_base_offsets();
    let active_base = *segments_before.last().unwrap();
    let end = log.log_end_offset();

    let stats = log.compact(2_000, i64::MAX).unwrap().expect("a pass ran");
    assert!(stats.records_removed > 0);
    assert_eq!(stats.cleaned_up_to, active_base);
    let after = contents(&log);
    assert_eq!(replay(&after), replay(&written));
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, end));
    // Below the active segment one record per key, the latest one there, at its original offset.
    let cleaned: Vec<&Entry> = after.iter().filter(|e| e.0 < active_base).collect();
    let expected: Vec<&Entry> = written.iter().filter(|e| e.0 < active_base && e.0 >= active_base - 10).collect();
    assert_eq!(cleaned, expected);
    // The active segment is untouched.
    let active: Vec<&Entry> = after.iter().filter(|e| e.0 >= active_base).collect();
    assert_eq!(active, written.iter().filter(|e| e.0 >= active_base).collect::<Vec<_>>());
    assert_eq!(*log.segment_base_offsets().last().unwrap(), active_base);
    assert!(log.size_bytes() < segments_before.len() as u64 * 1_000);

    // Reads from any offset, timestamp lookups and the indexes work across the gaps, also after reopening.
    for reopen in [false, true] {
        if reopen {
            drop(log);
            log = open(dir.path(), cfg());
            assert_eq!(contents(&log), after);
        }
        for offset in 0..end {
            let bytes = log.read(offset, 1 << 20, i64::MAX, false).unwrap();
            let first = split_batches(&bytes).next().unwrap().unwrap().0;
            let want = after.iter().find(|e| e.0 >= offset).unwrap().0;
            assert!(first.base_offset <= want && want <= first.last_offset(), "read at {offset}");
        }
        for ts in [0, 1_000, 1_005, 1_060, 1_065, 1_069, 1_075, 5_000] {
            let want = after.iter().find(|e| e.3 >= ts).map(|e| (e.0, e.3));
            assert_eq!(log.find_offset_by_timestamp(ts).unwrap(), want, "timestamp {ts}");
        }
        assert_eq!(log.max_timestamp().unwrap(), after.iter().max_by_key(|e| (e.3, -e.0)).map(|e| (e.0, e.3)));
    }
    // Nothing dirty: no second pass.
    assert_eq!(log.compact(2_000, i64::MAX).unwrap(), None);
    assert!(leftovers(dir.path()).is_empty());
}

#[test]
fn tombstones_stay_for_delete_retention_then_go() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), cfg());
    put(&mut log, "a", Some("1"), 1_000);
    put(&mut log, "b", Some("1"), 1_000);
    let tomb = put(&mut log, "a", None, 5_000);
    log.roll().unwrap();
    put(&mut log, "c", Some("1"), 5_000);

    // delete.retention.ms = 1000: at 5500 the tombstone stays, the value it deletes goes.
    log.compact(5_500, i64::MAX).unwrap().unwrap();
    let keys: Vec<(i64, String, Option<String>)> = contents(&log).into_iter().map(|e| (e.0, e.1, e.2)).collect();
    assert_eq!(keys, vec![(1, "b".into(), Some("1".into())), (tomb, "a".into(), None), (3, "c".into(), Some("1".into()))]);

    // A later pass after the horizon removes it (new dirty data makes the pass run).
    log.roll().unwrap();
    assert_eq!(log.compact(6_001, i64::MAX).unwrap().unwrap().tombstones_removed, 1);
    let keys: Vec<String> = contents(&log).into_iter().map(|e| e.1).collect();
    assert_eq!(keys, vec!["b", "c"]);
    assert_eq!(log.log_start_offset(), 0, "compaction never moves the log start");
}

#[test]
fn the_active_segment_is_never_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), cfg());
    for i in 0..5 {
        put(&mut log, "k", Some(&i.to_string()), 1_000);
    }
    let before = contents(&log);
    assert_eq!(log.compact(9_999_999, i64::MAX).unwrap(), None);
    assert_eq!(contents(&log), before);
}

#[test]
fn high_watermark_and_min_compaction_lag_bound_the_dirty_section() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), cfg());
    for i in 0..4 {
        put(&mut log, "k", Some(&i.to_string()), 1_000 + i);
    }
    log.roll().unwrap();
    for i in 4..8 {
        put(&mut log, "k", Some(&i.to_string()), 2_000 + i);
    }
    log.roll().unwrap();
    put(&mut log, "x", Some("x"), 3_000);
    // High watermark 2: only offsets 0 and 1 are mapped; offset 0 goes.
    assert_eq!(log.compact(10_000, 2).unwrap().unwrap().cleaned_up_to, 2);
    assert_eq!(contents(&log).iter().map(|e| e.0).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5, 6, 7, 8]);
    // min.compaction.lag.ms: the second segment (newest record 2007) is too young at 2500.
    log.set_cleaner_config(CleanerConfig { min_compaction_lag_ms: 1_000, ..cleaner() });
    assert_eq!(log.compact(2_500, i64::MAX).unwrap().unwrap().cleaned_up_to, 4);
    assert_eq!(contents(&log).iter().map(|e| e.0).collect::<Vec<_>>(), vec![3, 4, 5, 6, 7, 8]);
    assert_eq!(log.compact(3_500, i64::MAX).unwrap().unwrap().cleaned_up_to, 8);
    assert_eq!(contents(&log).iter().map(|e| e.0).collect::<Vec<_>>(), vec![7, 8]);
}

#[test]
fn dirty_ratio_gates_a_pass() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), cfg());
    log.set_cleaner_config(CleanerConfig { min_cleanable_dirty_ratio: 0.5, ..cleaner() });
    let _ = fill(&mut log);
    log.roll().unwrap();
    assert!(log.compact(2_000, i64::MAX).unwrap().is_some(), "all dirty: ratio 1");
    // A little new dirty data next to a larger clean section stays below 0.5.
    put(&mut log, "key-1", Some("new"), 3_000);
    log.roll().unwrap();
    assert_eq!(log.compact(3_000, i64::MAX).unwrap(), None);
    for i in 0..20 {
        put(&mut log, "key-2", Some(&i.to_string()), 3_000);
    }
    log.roll().unwrap();
    assert!(log.compact(3_000, i64::MAX).unwrap().is_some());
    assert_eq!(replay(&contents(&log)).len(), 10);
}

#[test]
fn a_producers_last_batch_survives_as_an_empty_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), cfg());
    put_batch(&mut log, BatchBuilder::new().producer(7, 1, 0), &[("a", Some("1")), ("b", Some("1"))], 1_000);
    put_batch(&mut log, BatchBuilder::new().producer(7, 1, 2), &[("a", Some("2")), ("b", Some("2"))], 1_000);
    put_batch(&mut log, BatchBuilder::new().producer(8, 0, 0), &[("c", Some("1"))], 1_000);
    // A newer producer 8 batch lives in the active segment: its first batch may go entirely.
    put_batch(&mut log, BatchBuilder::new(), &[("a", Some("3")), ("b", Some("3")), ("c", Some("3"))], 1_000);
    log.roll().unwrap();
    put_batch(&mut log, BatchBuilder::new().producer(8, 0, 1), &[("d", Some("1"))], 1_000);
    log.compact(2_000, i64::MAX).unwrap().unwrap();
    let mut batches = Vec::new();
    log.scan_batches(0, &mut |h| batches.push((h.base_offset, h.last_offset_delta, h.record_count, h.producer_id, h.base_sequence))).unwrap();
    assert_eq!(batches, vec![(2, 1, 0, 7, 2), (5, 2, 3, -1, -1), (8, 0, 1, 8, 1)]);
    assert_eq!(contents(&log).iter().map(|e| e.0).collect::<Vec<_>>(), vec![5, 6, 7, 8]);
    drop(log);
    let log = open(dir.path(), cfg());
    let mut last7 = None;
    log.scan_batches(0, &mut |h| {
        if h.producer_id == 7 {
            last7 = Some(h.last_sequence());
        }
    })
    .unwrap();
    assert_eq!(last7, Some(3), "the producer's last sequence is still known");
}

#[test]
fn partially_superseded_batches_keep_codec_timestamps_and_headers() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), cfg());
    for codec in [Compression::None, Compression::Gzip, Compression::Lz4, Compression::Zstd, Compression::Snappy] {
        let recs = [
            NewRecord { timestamp_ms: 1_000, key: Some(b"x"), value: Some(b"old"), headers: &[] },
            NewRecord { timestamp_ms: 1_010, key: Some(b"y"), value: Some(b"keep"), headers: &[(b"h", Some(b"v"))] },
            NewRecord { timestamp_ms: 990, key: Some(b"z"), value: Some(b"old"), headers: &[] },
        ];
        let mut b = BatchBuilder::new().compression(codec).build(&recs).unwrap();
        let headers = batch::validate_record_set(&b, u32::MAX, true).unwrap();
        let first = log.append_as_leader(&mut b, &headers, 3, 1_000).unwrap().first_offset;
        put(&mut log, "x", Some("new"), 2_000);
        put(&mut log, "z", Some("new"), 2_000);
        log.roll().unwrap();
        log.compact(3_000, i64::MAX).unwrap().unwrap();
        let bytes = log.read(first, 1 << 20, i64::MAX, false).unwrap();
        let (h, b) = split_batches(&bytes).next().unwrap().unwrap();
        assert_eq!((h.base_offset, h.last_offset_delta, h.record_count, h.partition_leader_epoch), (first, 2, 1, 3));
        assert_eq!(h.compression().unwrap(), codec);
        assert_eq!(h.max_timestamp, 1_010);
        let r = &batch::decode_records(b).unwrap()[0];
        assert_eq!((r.offset, r.timestamp, r.value.as_deref()), (first + 1, 1_010, Some(&b"keep"[..])));
        assert_eq!(r.headers, vec![(Bytes::from_static(b"h"), Some(Bytes::from_static(b"v")))]);
        // Later rounds put "y" again, superseding this one.
        let _ = put(&mut log, "y", Some("later"), 2_000);
    }
}

#[test]
fn a_segment_that_comes_out_empty_is_dropped_without_moving_the_log_start() {
    let dir = tempfile::tempdir().unwrap();
    // Small segments: the first two closed segments (about 210 and 70 bytes) do not merge into one.
    let mut log = open(dir.path(), LogConfig { segment_bytes: 250, ..cfg() });
    for i in 0..3 {
        put(&mut log, "a", Some(&i.to_string()), 1_000);
    }
    log.roll().unwrap();
    put(&mut log, "a", Some("3"), 1_000);
    log.roll().unwrap();
    put(&mut log, "b", Some("1"), 1_000);
    log.compact(2_000, i64::MAX).unwrap().unwrap();
    assert_eq!(log.segment_base_offsets(), vec![3, 4]);
    assert_eq!(log.log_start_offset(), 0);
    assert_eq!(contents(&log).iter().map(|e| e.0).collect::<Vec<_>>(), vec![3, 4]);
    // Retention under "compact" alone deletes nothing, and reopening keeps the start.
    log.set_config(LogConfig { retention_ms: 0, retention_bytes: 0, ..cfg() });
    log.roll().unwrap();
    assert_eq!(log.enforce_retention(1_000_000).unwrap(), 0);
    drop(log);
    let log = open(dir.path(), cfg());
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 5));
    let bytes = log.read(0, 1 << 20, i64::MAX, false).unwrap();
    assert_eq!(split_batches(&bytes).next().unwrap().unwrap().0.base_offset, 3);
}

#[test]
fn compact_and_delete_applies_both() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), LogConfig { retention_ms: 500, ..cfg() });
    log.set_cleaner_config(CleanerConfig { delete: Some(true), ..cleaner() });
    for i in 0..3 {
        put(&mut log, "old", Some(&i.to_string()), 1_000);
    }
    log.roll().unwrap();
    for i in 0..3 {
        put(&mut log, "new", Some(&i.to_string()), 2_000);
    }
    log.roll().unwrap();
    put(&mut log, "active", Some("x"), 2_000);
    // At 1600 the first segment is past retention.ms; the second is compacted.
    assert_eq!(log.enforce_retention(1_600).unwrap(), 1);
    assert_eq!(log.log_start_offset(), 3);
    assert_eq!(contents(&log).iter().map(|e| e.0).collect::<Vec<_>>(), vec![5, 6]);
}

#[test]
fn a_small_offset_map_takes_several_passes() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), LogConfig { segment_bytes: 100_000, ..cfg() });
    log.set_cleaner_config(CleanerConfig { offset_map_max_entries: 4, ..cleaner() });
    let mut written = Vec::new();
    for round in 0..3 {
        for k in 0..10 {
            let (key, value) = (format!("k{k}"), format!("v{round}"));
            written.push((put(&mut log, &key, Some(&value), 1_000), key, value));
        }
    }
    log.roll().unwrap();
    let mut passes = 0;
    let mut last_end = 0;
    while let Some(stats) = log.compact(2_000, i64::MAX).unwrap() {
        assert!(stats.cleaned_up_to > last_end);
        last_end = stats.cleaned_up_to;
        passes += 1;
        assert_eq!(replay(&contents(&log)), replay(&contents_of(&written)));
    }
    assert!(passes >= 5, "{passes} passes");
    assert_eq!(contents(&log).iter().map(|e| e.0).collect::<Vec<_>>(), (20..30).collect::<Vec<_>>());
}

fn contents_of(written: &[(i64, String, String)]) -> Vec<Entry> {
    written.iter().map(|(o, k, v)| (*o, k.clone(), Some(v.clone()), 0)).collect()
}

#[test]
fn a_crash_at_any_swap_step_recovers_a_consistent_log() {
    let steps = [
        Step::CleanedWritten,
        Step::IndexesSwapped,
        Step::Committed,
        Step::FirstOldDeleted,
        Step::OldDeleted,
        Step::IndexesInPlace,
        Step::LogInPlace,
    ];
    // Reference: the same log compacted without a crash.
    let reference = {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path(), cfg());
        fill(&mut log);
        log.set_config(LogConfig { segment_bytes: 100_000, ..cfg() });
        log.compact(2_000, i64::MAX).unwrap().unwrap();
        contents(&log)
    };
    for (i, &step) in steps.iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path(), cfg());
        let written = fill(&mut log);
        assert!(log.segment_base_offsets().len() > 3);
        // Larger segments: all closed segments merge into one group, so the swap replaces several.
        log.set_config(LogConfig { segment_bytes: 100_000, ..cfg() });
        log.crash_at = Some(step);
        assert!(log.compact(2_000, i64::MAX).is_err(), "{step:?}");
        drop(log);
        let mut log = open(dir.path(), cfg());
        assert!(leftovers(dir.path()).is_empty(), "{step:?}: {:?}", leftovers(dir.path()));
        let got = contents(&log);
        assert_eq!(replay(&got), replay(&written), "{step:?}");
        let committed = i >= 2;
        assert_eq!(got, if committed { reference.clone() } else { written.clone() }, "{step:?}");
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 80));
        // The log keeps working: another pass and appends.
        log.set_config(LogConfig { segment_bytes: 100_000, ..cfg() });
        let _ = log.compact(2_000, i64::MAX).unwrap();
        assert_eq!(contents(&log), reference, "{step:?}");
        put(&mut log, "key-0", Some("after"), 3_000);
        assert_eq!(log.log_end_offset(), 81);
    }
}

#[test]
fn a_crash_while_dropping_an_emptied_group_keeps_newer_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), LogConfig { segment_bytes: 200, ..cfg() });
    let mut written = Vec::new();
    for i in 0..12 {
        let v = i.to_string();
        written.push((put(&mut log, "a", Some(&v), 1_000), "a".to_string(), v));
    }
    log.roll().unwrap();
    written.push((put(&mut log, "a", Some("last"), 1_000), "a".to_string(), "last".to_string()));
    log.roll().unwrap();
    put(&mut log, "b", Some("1"), 1_000);
    // One group of every closed segment but the last, all superseded.
    log.set_config(LogConfig { segment_bytes: 100_000, ..cfg() });
    let bases = log.segment_base_offsets();
    assert!(bases.len() > 3);
    log.crash_at = Some(Step::FirstOldDeleted);
    assert!(log.compact(2_000, i64::MAX).is_err());
    drop(log);
    let mut log = open(dir.path(), cfg());
    let got = contents(&log);
    assert_eq!(replay(&got).get("a"), Some(&Some("last".to_string())));
    assert_eq!(log.log_start_offset(), 0);
    log.set_config(LogConfig { segment_bytes: 100_000, ..cfg() });
    log.compact(2_000, i64::MAX).unwrap().unwrap();
    assert_eq!(contents(&log).iter().map(|e| e.0).collect::<Vec<_>>(), vec![12, 13]);
}

#[test]
fn truncation_below_the_cleaner_checkpoint_makes_new_data_dirty() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), cfg());
    fill(&mut log);
    log.compact(2_000, i64::MAX).unwrap().unwrap();
    let checkpoint = log.cleaner_checkpoint();
    log.truncate_to(checkpoint - 5).unwrap();
    assert!(log.cleaner_checkpoint() <= checkpoint - 5);
    drop(log);
    let log = open(dir.path(), cfg());
    assert!(log.cleaner_checkpoint() <= checkpoint - 5);
}

mod model {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Put { key: u8, value: Option<u8>, records: u8 },
        Roll,
        Compact { advance_ms: i64 },
        Reopen,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (0u8..8, prop::option::weighted(0.8, 0u8..100), 1u8..4).prop_map(|(key, value, records)| Op::Put { key, value, records }),
            2 => Just(Op::Roll),
            2 => (0i64..1_500).prop_map(|advance_ms| Op::Compact { advance_ms }),
            1 => Just(Op::Reopen),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

        /// Random puts, tombstones, rolls, compactions and reopens: a consumer replaying the log always sees the
        /// model's latest value per key (a deleted key either absent or a tombstone), every surviving record is
        /// the one written at its offset, and the offsets, log start and log end never change.
        #[test]
        fn compaction_preserves_the_latest_value_per_key(ops in prop::collection::vec(op(), 1..60), fsync in any::<bool>()) {
            let dir = tempfile::tempdir().unwrap();
            let config = LogConfig { fsync, segment_bytes: 400, index_interval_bytes: 50, ..cfg() };
            let mut log = open(dir.path(), config.clone());
            let mut now = 1_000i64;
            let mut model: BTreeMap<String, Option<String>> = BTreeMap::new();
            let mut by_offset: BTreeMap<i64, (String, Option<String>)> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Put { key, value, records } => {
                        let recs: Vec<(String, Option<String>)> = (0..records)
                            .map(|i| (format!("k{}", (key + i) % 8), value.map(|v| format!("v{v}-{i}"))))
                            .collect();
                        let refs: Vec<(&str, Option<&str>)> = recs.iter().map(|(k, v)| (k.as_str(), v.as_deref())).collect();
                        let first = put_batch(&mut log, BatchBuilder::new(), &refs, now);
                        for (i, (k, v)) in recs.into_iter().enumerate() {
                            by_offset.insert(first + i as i64, (k.clone(), v.clone()));
                            model.insert(k, v);
                        }
                    }
                    Op::Roll => log.roll().unwrap(),
                    Op::Compact { advance_ms } => {
                        now += advance_ms;
                        log.compact(now, i64::MAX).unwrap();
                    }
                    Op::Reopen => {
                        drop(log);
                        log = open(dir.path(), config.clone());
                    }
                }
                let got = contents(&log);
                for (offset, key, value, _) in &got {
                    prop_assert_eq!(by_offset.get(offset), Some(&(key.clone(), value.clone())));
                }
                let seen = replay(&got);
                for (key, value) in &model {
                    match value {
                        Some(v) => prop_assert_eq!(seen.get(key), Some(&Some(v.clone())), "key {}", key),
                        None => prop_assert!(matches!(seen.get(key), None | Some(None)), "deleted key {} is back", key),
                    }
                }
                prop_assert_eq!(seen.len() <= model.len(), true);
                prop_assert_eq!(log.log_start_offset(), 0);
                prop_assert_eq!(log.log_end_offset(), by_offset.len() as i64);
                prop_assert!(leftovers(dir.path()).is_empty());
            }
        }
    }
}

#[test]
fn transactional_and_control_batches_are_kept_and_protect_later_tombstones() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), cfg());
    let txn = BatchBuilder { transactional: true, ..BatchBuilder::new().producer(5, 0, 0) };
    put_batch(&mut log, txn.clone(), &[("a", Some("txn")), ("b", Some("txn"))], 1_000);
    let marker = BatchBuilder { control: true, transactional: true, ..BatchBuilder::new().producer(5, 0, -1) };
    let recs = [NewRecord { timestamp_ms: 1_000, key: Some(&[0, 0, 0, 1]), value: Some(&[0, 0, 0, 0, 0, 0]), headers: &[] }];
    let mut b = marker.build(&recs).unwrap();
    let headers = batch::validate_record_set(&b, u32::MAX, false).unwrap();
    log.append_as_leader(&mut b, &headers, 0, 1_000).unwrap();
    put(&mut log, "a", Some("plain"), 1_000);
    put(&mut log, "a", None, 1_000);
    put(&mut log, "c", Some("1"), 1_000);
    put(&mut log, "c", None, 1_000);
    put(&mut log, "b", Some("plain"), 1_000);
    log.roll().unwrap();
    put(&mut log, "z", Some("1"), 1_000);
    let stats = log.compact(1_000_000, i64::MAX).unwrap().unwrap();
    // "a"'s tombstone stays (a transactional "a" precedes it); "c"'s expired tombstone goes.
    assert_eq!(stats.tombstones_removed, 1);
    let mut batches = Vec::new();
    log.scan_batches(0, &mut |h| batches.push((h.base_offset, h.is_transactional(), h.is_control()))).unwrap();
    assert_eq!(&batches[..2], &[(0, true, false), (2, true, true)]);
    let got: Vec<(i64, String)> = contents(&log).into_iter().map(|e| (e.0, e.1)).collect();
    assert_eq!(got, vec![(0, "a".into()), (1, "b".into()), (2, String::from_utf8(vec![0, 0, 0, 1]).unwrap()), (4, "a".into()), (7, "b".into()), (8, "z".into())]);
}
