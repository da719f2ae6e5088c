//! State-machine tests of transactional offsets: TxnOffsetCommit validation, pending offsets invisible until
//! the commit marker, aborts, require_stable, and replay of the written batches and markers (through the byte
//! codec and the log's batch format) rebuilding the same state.

use bytes::Bytes;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_delete_request::{OffsetDeleteRequestPartition, OffsetDeleteRequestTopic};
use kafka_protocol::messages::offset_fetch_request::{OffsetFetchRequestGroup, OffsetFetchRequestTopics};
use kafka_protocol::messages::txn_offset_commit_request::{TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::records::{GroupMemberMetadata, GroupMetadataValue};
use super::*;
use crate::log::batch::{self, BatchBuilder, ControlRecord, NewRecord};

const GROUP: &str = "g";
const PID: i64 = 7;
const UNSTABLE: i16 = 88;

/// What the shard wrote, in log order.
#[derive(Clone, Debug)]
enum Entry {
    Batch { records: Vec<GroupRecord>, producer: Option<TxnProducer> },
    Marker { producer_id: i64, producer_epoch: i16, commit: bool },
}

struct Harness {
    shard: GroupShard,
    log: Vec<Entry>,
    replies: Vec<(RequestId, Reply)>,
    next_request: RequestId,
}

/// Who commits: generation (or member epoch), member id, instance id.
#[derive(Clone, Copy)]
struct Member<'a> {
    generation: i32,
    member_id: &'a str,
    instance_id: Option<&'a str>,
}

const NO_MEMBER: Member<'static> = Member { generation: -1, member_id: "", instance_id: None };

impl Harness {
    fn new() -> Self {
        let mut n = 0u128;
        let uuids = Box::new(move || {
            n += 1;
            Uuid::from_u128(n)
        });
        Harness { shard: GroupShard::with_uuid_source(GroupConfig::default(), uuids), log: Vec::new(), replies: Vec::new(), next_request: 0 }
    }

    fn absorb(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Append { records, producer } => self.log.push(Entry::Batch { records, producer }),
                Effect::Reply { request, reply } => self.replies.push((request, reply)),
                Effect::ScheduleTimer { .. } | Effect::CancelTimer(_) => {}
            }
        }
    }

    fn reply(&mut self, request: RequestId) -> Reply {
        let at = self.replies.iter().position(|(r, _)| *r == request).expect("the request was answered");
        self.replies.remove(at).1
    }

    fn txn_commit_in(&mut self, group: &str, epoch: i16, member: Member, partitions: &[(&str, i32, i64, &str)]) -> Vec<i16> {
        self.next_request += 1;
        let id = self.next_request;
        let topics = partitions
            .iter()
            .map(|(t, p, o, m)| {
                TxnOffsetCommitRequestTopic::default().with_name(str_bytes(t).into()).with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                    .with_partition_index(*p)
                    .with_committed_offset(*o)
                    .with_committed_leader_epoch(3)
                    .with_committed_metadata(Some(str_bytes(m)))])
            })
            .collect();
        let request = TxnOffsetCommitRequest::default()
            .with_transactional_id(str_bytes("tx").into())
            .with_group_id(str_bytes(group).into())
            .with_producer_id(PID.into())
            .with_producer_epoch(epoch)
            .with_generation_id(member.generation)
            .with_member_id(str_bytes(member.member_id))
            .with_group_instance_id(member.instance_id.map(str_bytes))
            .with_topics(topics);
        let effects = self.shard.txn_offset_commit(1_000, id, request);
        self.absorb(effects);
        match self.reply(id) {
            Reply::TxnOffsetCommit(r) => r.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)).collect(),
            other => panic!("{other:?}"),
        }
    }

    fn txn_commit(&mut self, epoch: i16, member: Member, partitions: &[(&str, i32, i64)]) -> Vec<i16> {
        let partitions: Vec<_> = partitions.iter().map(|&(t, p, o)| (t, p, o, "tx")).collect();
        self.txn_commit_in(GROUP, epoch, member, &partitions)
    }

    /// A plain OffsetCommit of a "simple" consumer.
    fn commit(&mut self, partitions: &[(&str, i32, i64)]) {
        self.next_request += 1;
        let id = self.next_request;
        let topics = partitions
            .iter()
            .map(|(t, p, o)| {
                OffsetCommitRequestTopic::default()
                    .with_name(str_bytes(t).into())
                    .with_partitions(vec![OffsetCommitRequestPartition::default().with_partition_index(*p).with_committed_offset(*o)])
            })
            .collect();
        let request = OffsetCommitRequest::default()
            .with_group_id(str_bytes(GROUP).into())
            .with_generation_id_or_member_epoch(-1)
            .with_retention_time_ms(-1)
            .with_topics(topics);
        let effects = self.shard.offset_commit(1_000, id, request);
        self.absorb(effects);
        let Reply::OffsetCommit(r) = self.reply(id) else { panic!() };
        assert!(r.topics.iter().all(|t| t.partitions.iter().all(|p| p.error_code == 0)));
    }

    /// The runtime's order: the marker is in the log (durable, replicated), then the shard completes.
    fn marker(&mut self, producer_epoch: i16, commit: bool) {
        self.log.push(Entry::Marker { producer_id: PID, producer_epoch, commit });
        self.shard.complete_transaction(PID, producer_epoch, commit);
    }

    fn offset_delete(&mut self, topic: &str, partition: i32) -> i16 {
        self.next_request += 1;
        let id = self.next_request;
        let request = OffsetDeleteRequest::default().with_group_id(str_bytes(GROUP).into()).with_topics(vec![OffsetDeleteRequestTopic::default()
            .with_name(str_bytes(topic).into())
            .with_partitions(vec![OffsetDeleteRequestPartition::default().with_partition_index(partition)])]);
        let effects = self.shard.offset_delete(2_000, id, request);
        self.absorb(effects);
        let Reply::OffsetDelete(r) = self.reply(id) else { panic!() };
        r.topics[0].partitions[0].error_code.max(r.error_code)
    }

    /// The log as the runtime writes it: each entry one batch, in Kafka's format, with offsets.
    fn encoded_log(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut offset = 0i64;
        for entry in &self.log {
            let mut framed = match entry {
                Entry::Batch { records, producer } => {
                    let encoded: Vec<_> = records.iter().map(|r| (r.encode_key(), r.encode_value())).collect();
                    let new_records: Vec<NewRecord> =
                        encoded.iter().map(|(k, v)| NewRecord { timestamp_ms: 1, key: Some(k), value: v.as_deref(), headers: &[] }).collect();
                    let builder = match producer {
                        Some(p) => BatchBuilder { transactional: true, ..BatchBuilder::new().producer(p.producer_id, p.producer_epoch, -1) },
                        None => BatchBuilder::new(),
                    };
                    builder.build(&new_records).unwrap()
                }
                Entry::Marker { producer_id, producer_epoch, commit } => {
                    batch::control_batch(*producer_id, *producer_epoch, ControlRecord { commit: *commit, coordinator_epoch: 5 }, 1).unwrap()
                }
            };
            framed[..8].copy_from_slice(&offset.to_be_bytes());
            offset += batch::BatchHeader::parse(&framed).unwrap().offset_count();
            out.extend_from_slice(&framed);
        }
        out
    }
}

/// Replays a log the way the runtime's load does: transactional batches as pending offsets, markers end them.
fn replay_log(config: GroupConfig, log: &[u8]) -> GroupShard {
    let mut shard = GroupShard::new(config);
    for item in batch::split_batches(log) {
        let (header, bytes) = item.unwrap();
        if header.is_control() {
            let control = batch::parse_control_batch(bytes).unwrap().unwrap();
            shard.complete_transaction(header.producer_id, header.producer_epoch, control.commit);
            continue;
        }
        for record in batch::decode_records(bytes).unwrap() {
            let key = record.key.unwrap();
            if header.is_transactional() {
                shard.replay_transactional_bytes(header.producer_id, header.producer_epoch, &key, record.value.as_deref()).unwrap();
            } else {
                shard.replay_bytes(&key, record.value.as_deref()).unwrap();
            }
        }
    }
    shard
}

/// (offset, error) of each partition of `topic`.
fn fetch(shard: &GroupShard, topic: &str, partitions: &[i32], require_stable: bool) -> Vec<(i64, i16)> {
    let request = OffsetFetchRequestGroup::default()
        .with_group_id(str_bytes(GROUP).into())
        .with_topics(Some(vec![OffsetFetchRequestTopics::default().with_name(str_bytes(topic).into()).with_partition_indexes(partitions.to_vec())]));
    let answer = shard.offset_fetch(&request, require_stable);
    assert_eq!(answer.error_code, 0);
    answer.topics[0].partitions.iter().map(|p| (p.committed_offset, p.error_code)).collect()
}

/// A classic group, Stable in generation 4, with a dynamic member "m" and a static member "s" (instance "i"),
/// as if its rebalance had been written to the log.
fn stable_classic_group(h: &mut Harness) {
    let member = |member_id: &str, instance: Option<&str>| GroupMemberMetadata {
        member_id: member_id.into(),
        group_instance_id: instance.map(str::to_string),
        client_id: "c".into(),
        client_host: "/h".into(),
        rebalance_timeout_ms: 60_000,
        session_timeout_ms: 10_000,
        subscription: Bytes::new(),
        assignment: Bytes::new(),
    };
    let record = GroupRecord::GroupMetadata {
        group: GROUP.into(),
        value: Some(GroupMetadataValue {
            protocol_type: "consumer".into(),
            generation: 4,
            protocol: Some("range".into()),
            leader: Some("m".into()),
            current_state_timestamp_ms: 0,
            members: vec![member("m", None), member("s", Some("i"))],
        }),
    };
    h.shard.replay(record.clone());
    h.log.push(Entry::Batch { records: vec![record], producer: None });
}

#[test]
fn pending_offsets_are_invisible_until_the_commit_marker() {
    let mut h = Harness::new();
    h.commit(&[("t", 0, 5)]);
    assert_eq!(h.txn_commit(0, NO_MEMBER, &[("t", 0, 10), ("t", 1, 11)]), vec![0, 0]);

    // One transactional batch of the producer, without sequence; the reply follows it (durability rule).
    let Some(Entry::Batch { records, producer }) = h.log.last() else { panic!() };
    assert_eq!(*producer, Some(TxnProducer { producer_id: PID, producer_epoch: 0 }));
    assert_eq!(records.len(), 2);
    assert_eq!(h.shard.offsets().pending(PID, GROUP, "t", 1).map(|v| (v.offset, v.leader_epoch, v.metadata.as_str())), Some((11, 3, "tx")));

    assert_eq!(fetch(&h.shard, "t", &[0, 1], false), vec![(5, 0), (-1, 0)], "the committed offsets underneath");
    assert_eq!(fetch(&h.shard, "t", &[0, 1, 2], true), vec![(-1, UNSTABLE), (-1, UNSTABLE), (-1, 0)]);

    h.marker(0, true);
    assert_eq!(fetch(&h.shard, "t", &[0, 1], true), vec![(10, 0), (11, 0)]);
    assert!(!h.shard.offsets().has_pending(GROUP, "t", 0));
    assert_eq!(h.shard.offsets().pending(PID, GROUP, "t", 1), None);
}

#[test]
fn an_abort_marker_drops_pending_offsets() {
    let mut h = Harness::new();
    h.commit(&[("t", 0, 5)]);
    h.txn_commit(0, NO_MEMBER, &[("t", 0, 10), ("t", 1, 11)]);
    h.marker(0, false);
    assert_eq!(fetch(&h.shard, "t", &[0, 1], true), vec![(5, 0), (-1, 0)]);
    // The next transaction of the same producer starts clean.
    h.txn_commit(0, NO_MEMBER, &[("t", 1, 12)]);
    h.marker(0, true);
    assert_eq!(fetch(&h.shard, "t", &[0, 1], true), vec![(5, 0), (12, 0)]);
}

#[test]
fn a_plain_commit_written_after_the_transactional_one_wins() {
    let mut h = Harness::new();
    h.txn_commit(0, NO_MEMBER, &[("t", 0, 10), ("t", 1, 11)]);
    h.commit(&[("t", 0, 20)]);
    assert_eq!(fetch(&h.shard, "t", &[0], false), vec![(20, 0)]);
    h.marker(0, true);
    // Kafka keeps the record appended later: t-0's plain commit, t-1's transactional one.
    assert_eq!(fetch(&h.shard, "t", &[0, 1], true), vec![(20, 0), (11, 0)]);
    let reloaded = replay_log(GroupConfig::default(), &h.encoded_log());
    assert_eq!(fetch(&reloaded, "t", &[0, 1], true), vec![(20, 0), (11, 0)]);
}

#[test]
fn markers_without_pending_offsets_change_nothing_but_fence_older_epochs() {
    let mut h = Harness::new();
    h.commit(&[("t", 0, 5)]);
    h.marker(2, true);
    assert_eq!(fetch(&h.shard, "t", &[0], true), vec![(5, 0)]);
    assert_eq!(h.shard.offsets().producer_epoch(PID), Some(2));

    let fenced = ResponseError::InvalidProducerEpoch.code();
    let before = h.log.len();
    assert_eq!(h.txn_commit(1, NO_MEMBER, &[("t", 0, 10)]), vec![fenced]);
    assert_eq!(h.log.len(), before, "a fenced producer writes nothing");
    assert_eq!(h.txn_commit(2, NO_MEMBER, &[("t", 0, 10)]), vec![0]);
    assert_eq!(h.txn_commit(3, NO_MEMBER, &[("t", 0, 11)]), vec![0]);
    assert_eq!(h.txn_commit(2, NO_MEMBER, &[("t", 0, 12)]), vec![fenced], "epoch 3 fenced epoch 2");
    let reloaded = replay_log(GroupConfig::default(), &h.encoded_log());
    assert_eq!(reloaded.offsets().producer_epoch(PID), Some(3));
}

#[test]
fn require_stable_reports_unstable_partitions_when_fetching_all_topics() {
    let mut h = Harness::new();
    h.commit(&[("t", 0, 5), ("u", 0, 6)]);
    h.txn_commit(0, NO_MEMBER, &[("t", 0, 10), ("v", 0, 1)]);
    let all = |shard: &GroupShard, require_stable| {
        let answer = shard.offset_fetch(&OffsetFetchRequestGroup::default().with_group_id(str_bytes(GROUP).into()).with_topics(None), require_stable);
        answer.topics.iter().map(|t| (t.name.to_string(), t.partitions[0].committed_offset, t.partitions[0].error_code)).collect::<Vec<_>>()
    };
    // As Kafka: the committed partitions only (v has only a pending offset), the unstable one flagged.
    assert_eq!(all(&h.shard, true), vec![("t".into(), -1, UNSTABLE), ("u".into(), 6, 0)]);
    assert_eq!(all(&h.shard, false), vec![("t".into(), 5, 0), ("u".into(), 6, 0)]);
}

#[test]
fn txn_offset_commit_validates_classic_members_generation_and_instance() {
    let mut h = Harness::new();
    stable_classic_group(&mut h);
    let code = |e: ResponseError| e.code();
    let ok = |h: &mut Harness, member: Member| h.txn_commit(0, member, &[("t", 0, 1)]);
    assert_eq!(ok(&mut h, Member { generation: 4, member_id: "m", instance_id: None }), vec![0]);
    assert_eq!(ok(&mut h, Member { generation: 3, member_id: "m", instance_id: None }), vec![code(ResponseError::IllegalGeneration)]);
    assert_eq!(ok(&mut h, Member { generation: 4, member_id: "x", instance_id: None }), vec![code(ResponseError::UnknownMemberId)]);
    assert_eq!(ok(&mut h, Member { generation: 4, member_id: "s", instance_id: Some("i") }), vec![0]);
    assert_eq!(ok(&mut h, Member { generation: 4, member_id: "m", instance_id: Some("i") }), vec![code(ResponseError::FencedInstanceId)]);
    assert_eq!(ok(&mut h, Member { generation: 4, member_id: "s", instance_id: Some("j") }), vec![code(ResponseError::UnknownMemberId)]);
    // Versions 0-2 name no member: accepted even though the group has members (unlike OffsetCommit).
    assert_eq!(ok(&mut h, NO_MEMBER), vec![0]);

    // A group that is gone: refused to a member of a generation, created for generation -1.
    assert_eq!(h.txn_commit_in("gone", 0, Member { generation: 1, member_id: "m", instance_id: None }, &[("t", 0, 1, "")]), vec![
        code(ResponseError::IllegalGeneration)
    ]);
    assert!(h.shard.group("gone").is_none());
    assert_eq!(h.txn_commit_in("simple", 0, NO_MEMBER, &[("t", 0, 1, "")]), vec![0]);
    assert!(matches!(h.shard.group("simple"), Some(Group::Classic(g)) if g.state() == ClassicState::Empty));
    assert_eq!(h.txn_commit_in("", 0, NO_MEMBER, &[("t", 0, 1, "")]), vec![code(ResponseError::InvalidGroupId)]);

    // Metadata over offset.metadata.max.bytes: that partition only.
    let long = "x".repeat(4097);
    assert_eq!(h.txn_commit_in(GROUP, 0, NO_MEMBER, &[("t", 0, 1, long.as_str()), ("t", 1, 2, "")]), vec![
        code(ResponseError::OffsetMetadataTooLarge),
        0
    ]);
}

#[test]
fn txn_offset_commit_validates_consumer_group_members() {
    let mut h = Harness::new();
    let topics = Topics::new([("t", Uuid::from_u128(0xAA), 2)]);
    let join = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(str_bytes(GROUP).into())
        .with_member_id(str_bytes("m1"))
        .with_member_epoch(0)
        .with_rebalance_timeout_ms(30_000)
        .with_subscribed_topic_names(Some(vec![str_bytes("t").into()]))
        .with_topic_partitions(Some(Vec::new()));
    let client = ClientInfo::default();
    let effects = h.shard.consumer_group_heartbeat(0, 99, &client, &topics, join);
    h.absorb(effects);
    let Reply::ConsumerGroupHeartbeat(joined) = h.reply(99) else { panic!() };
    let epoch = joined.member_epoch;
    assert!(epoch > 0);
    let ok = |h: &mut Harness, member: Member| h.txn_commit(0, member, &[("t", 0, 1)]);
    assert_eq!(ok(&mut h, Member { generation: epoch, member_id: "m1", instance_id: None }), vec![0]);
    assert_eq!(ok(&mut h, Member { generation: epoch - 1, member_id: "m1", instance_id: None }), vec![ResponseError::IllegalGeneration.code()]);
    assert_eq!(ok(&mut h, Member { generation: epoch, member_id: "m2", instance_id: None }), vec![ResponseError::UnknownMemberId.code()]);
    assert_eq!(ok(&mut h, NO_MEMBER), vec![0]);
}

#[test]
fn replay_of_transactional_batches_and_markers_rebuilds_the_same_state() {
    let mut h = Harness::new();
    h.commit(&[("t", 0, 5)]);
    stable_classic_group(&mut h);
    h.txn_commit(0, Member { generation: 4, member_id: "m", instance_id: None }, &[("t", 0, 10), ("t", 1, 11)]);
    h.marker(0, true);
    h.txn_commit(0, NO_MEMBER, &[("t", 1, 20)]);
    h.marker(0, false);
    h.txn_commit(0, NO_MEMBER, &[("t", 2, 30)]);

    let reloaded = replay_log(GroupConfig::default(), &h.encoded_log());
    for require_stable in [false, true] {
        assert_eq!(fetch(&reloaded, "t", &[0, 1, 2], require_stable), fetch(&h.shard, "t", &[0, 1, 2], require_stable));
    }
    assert_eq!(fetch(&reloaded, "t", &[0, 1, 2], true), vec![(10, 0), (11, 0), (-1, UNSTABLE)]);
    assert_eq!(reloaded.offsets().pending(PID, GROUP, "t", 2).map(|v| v.offset), Some(30));
    assert_eq!(reloaded.describe_group(GROUP), h.shard.describe_group(GROUP));

    // The still-open transaction commits after the reload just as before it.
    let mut reloaded = reloaded;
    reloaded.complete_transaction(PID, 0, true);
    h.marker(0, true);
    assert_eq!(fetch(&reloaded, "t", &[2], true), vec![(30, 0)]);
    assert_eq!(fetch(&h.shard, "t", &[2], true), vec![(30, 0)]);
}

#[test]
fn deleting_offsets_or_the_group_drops_pending_offsets_too() {
    let mut h = Harness::new();
    h.commit(&[("t", 0, 5)]);
    h.txn_commit(0, NO_MEMBER, &[("t", 0, 10), ("t", 1, 11)]);
    // OffsetDelete of a partition with only a pending offset writes its tombstone.
    assert_eq!(h.offset_delete("t", 1), 0);
    let Some(Entry::Batch { records, producer: None }) = h.log.last() else { panic!() };
    assert_eq!(records, &vec![GroupRecord::OffsetCommit { group: GROUP.into(), topic: "t".into(), partition: 1, value: None }]);
    assert!(!h.shard.offsets().has_pending(GROUP, "t", 1));
    assert!(h.shard.offsets().has_pending(GROUP, "t", 0));

    // DeleteGroups of the (empty, simple) group: tombstones for committed and pending partitions.
    h.txn_commit(0, NO_MEMBER, &[("t", 2, 12)]);
    let effects = h.shard.delete_groups(3_000, 50, &[GROUP.to_string()]);
    h.absorb(effects);
    let Reply::DeleteGroups(results) = h.reply(50) else { panic!() };
    assert_eq!(results[0].error_code, 0);
    for partition in 0..3 {
        assert!(!h.shard.offsets().has_pending(GROUP, "t", partition));
    }
    // The commit marker that follows finds nothing left to commit.
    h.marker(0, true);
    assert_eq!(fetch(&h.shard, "t", &[0, 1, 2], true), vec![(-1, 0), (-1, 0), (-1, 0)]);
    let reloaded = replay_log(GroupConfig::default(), &h.encoded_log());
    assert!(reloaded.group(GROUP).is_none());
    assert_eq!(fetch(&reloaded, "t", &[0, 1, 2], true), vec![(-1, 0), (-1, 0), (-1, 0)]);
}
