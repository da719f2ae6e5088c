//! State-machine tests of the shard: exact replies, records and timers for the classic and KIP-848 flows, and
//! replay of everything written rebuilding the same state.

use bytes::Bytes;
use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions as OwnedPartitions;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_delete_request::{OffsetDeleteRequestPartition, OffsetDeleteRequestTopic};
use kafka_protocol::messages::offset_fetch_request::{OffsetFetchRequestGroup, OffsetFetchRequestTopics};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::*;

const GROUP: &str = "g";

struct Harness {
    shard: GroupShard,
    log: Vec<GroupRecord>,
    timers: BTreeMap<TimerKey, i64>,
    replies: Vec<(RequestId, Reply)>,
    next_request: RequestId,
}

fn counter_uuids() -> Box<dyn FnMut() -> Uuid + Send> {
    let mut n = 0u128;
    Box::new(move || {
        n += 1;
        Uuid::from_u128(n)
    })
}

fn uuid_str(n: u128) -> String {
    Uuid::from_u128(n).to_string()
}

fn consumer_subscription(topics: &[&str]) -> Bytes {
    // ConsumerProtocolSubscription v0: version, topics, user data (null).
    let mut b = vec![0u8, 0];
    b.extend_from_slice(&(topics.len() as i32).to_be_bytes());
    for t in topics {
        b.extend_from_slice(&(t.len() as i16).to_be_bytes());
        b.extend_from_slice(t.as_bytes());
    }
    b.extend_from_slice(&(-1i32).to_be_bytes());
    Bytes::from(b)
}

impl Harness {
    fn new() -> Self {
        Self::with_config(GroupConfig::default())
    }

    fn with_config(config: GroupConfig) -> Self {
        Harness {
            shard: GroupShard::with_uuid_source(config, counter_uuids()),
            log: Vec::new(),
            timers: BTreeMap::new(),
            replies: Vec::new(),
            next_request: 0,
        }
    }

    fn absorb(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Append { records, .. } => self.log.extend(records),
                Effect::Reply { request, reply } => self.replies.push((request, reply)),
                Effect::ScheduleTimer { key, deadline_ms } => {
                    self.timers.insert(key, deadline_ms);
                }
                Effect::CancelTimer(key) => {
                    self.timers.remove(&key);
                }
            }
        }
    }

    fn request_id(&mut self) -> RequestId {
        self.next_request += 1;
        self.next_request
    }

    /// Takes the reply to `request`, if it was sent.
    fn reply(&mut self, request: RequestId) -> Option<Reply> {
        let at = self.replies.iter().position(|(r, _)| *r == request)?;
        Some(self.replies.remove(at).1)
    }

    fn join_reply(&mut self, request: RequestId) -> Option<JoinGroupResponse> {
        match self.reply(request)? {
            Reply::JoinGroup(r) => Some(r),
            other => panic!("not a join reply: {other:?}"),
        }
    }

    fn sync_reply(&mut self, request: RequestId) -> Option<SyncGroupResponse> {
        match self.reply(request)? {
            Reply::SyncGroup(r) => Some(r),
            other => panic!("not a sync reply: {other:?}"),
        }
    }

    fn join(&mut self, now: i64, version: i16, member_id: &str, instance: Option<&str>, protocols: &[(&str, Bytes)]) -> RequestId {
        let id = self.request_id();
        let request = JoinGroupRequest::default()
            .with_group_id(str_bytes(GROUP).into())
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(60_000)
            .with_member_id(str_bytes(member_id))
            .with_group_instance_id(instance.map(str_bytes))
            .with_protocol_type(str_bytes("consumer"))
            .with_protocols(
                protocols.iter().map(|(name, meta)| JoinGroupRequestProtocol::default().with_name(str_bytes(name)).with_metadata(meta.clone())).collect(),
            );
        let client = ClientInfo { client_id: "c".into(), client_host: "/127.0.0.1".into() };
        let effects = self.shard.join_group(now, id, version, &client, request);
        self.absorb(effects);
        id
    }

    fn join_range(&mut self, now: i64, member_id: &str, instance: Option<&str>) -> RequestId {
        self.join(now, 9, member_id, instance, &[("range", consumer_subscription(&["t"]))])
    }

    /// The two-step v4+ join: returns the member id handed out and the parked join request.
    fn join_new(&mut self, now: i64) -> (String, RequestId) {
        let first = self.join_range(now, "", None);
        let reply = self.join_reply(first).expect("member id required is immediate");
        assert_eq!(reply.error_code, ResponseError::MemberIdRequired.code());
        let member_id = reply.member_id.to_string();
        (member_id.clone(), self.join_range(now, &member_id, None))
    }

    fn sync(&mut self, now: i64, member_id: &str, generation: i32, assignments: &[(&str, &[u8])]) -> RequestId {
        let id = self.request_id();
        let request = SyncGroupRequest::default()
            .with_group_id(str_bytes(GROUP).into())
            .with_generation_id(generation)
            .with_member_id(str_bytes(member_id))
            .with_assignments(
                assignments
                    .iter()
                    .map(|(m, a)| SyncGroupRequestAssignment::default().with_member_id(str_bytes(m)).with_assignment(Bytes::copy_from_slice(a)))
                    .collect(),
            );
        let effects = self.shard.sync_group(now, id, request);
        self.absorb(effects);
        id
    }

    fn heartbeat(&mut self, now: i64, member_id: &str, generation: i32) -> i16 {
        let request = HeartbeatRequest::default().with_group_id(str_bytes(GROUP).into()).with_generation_id(generation).with_member_id(str_bytes(member_id));
        let (response, effects) = self.shard.heartbeat(now, request);
        self.absorb(effects);
        response.error_code
    }

    /// Fires every timer due by `now`, in deadline order.
    fn advance(&mut self, now: i64) {
        loop {
            let due = self.timers.iter().filter(|(_, &d)| d <= now).min_by_key(|(_, &d)| d).map(|(k, &d)| (k.clone(), d));
            let Some((key, deadline)) = due else { break };
            self.timers.remove(&key);
            let effects = self.shard.timer(deadline, key);
            self.absorb(effects);
        }
    }

    fn classic(&self) -> &ClassicGroup {
        match self.shard.group(GROUP) {
            Some(Group::Classic(g)) => g,
            other => panic!("no classic group: {other:?}"),
        }
    }

    fn consumer(&self) -> &ConsumerGroup {
        match self.shard.group(GROUP) {
            Some(Group::Consumer(g)) => g,
            other => panic!("no consumer group: {other:?}"),
        }
    }

    fn commit(&mut self, now: i64, generation: i32, member_id: &str, partitions: &[(&str, i32, i64)]) -> OffsetCommitResponse {
        let id = self.request_id();
        let topics = partitions
            .iter()
            .map(|(t, p, o)| {
                OffsetCommitRequestTopic::default().with_name(str_bytes(t).into()).with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(*p)
                    .with_committed_offset(*o)
                    .with_committed_metadata(Some(str_bytes("m")))])
            })
            .collect();
        let request = OffsetCommitRequest::default()
            .with_group_id(str_bytes(GROUP).into())
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(str_bytes(member_id))
            .with_retention_time_ms(-1)
            .with_topics(topics);
        let effects = self.shard.offset_commit(now, id, request);
        self.absorb(effects);
        match self.reply(id) {
            Some(Reply::OffsetCommit(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    fn fetch(&self, group: &str, topic: &str, partitions: &[i32]) -> OffsetFetchResponseGroup {
        let request = OffsetFetchRequestGroup::default().with_group_id(str_bytes(group).into()).with_topics(Some(vec![OffsetFetchRequestTopics::default()
            .with_name(str_bytes(topic).into())
            .with_partition_indexes(partitions.to_vec())]));
        self.shard.offset_fetch(&request, false)
    }

    /// A shard rebuilt from everything this one wrote, through the byte codec.
    fn reloaded(&self) -> GroupShard {
        let mut shard = GroupShard::with_uuid_source(self.shard.config().clone(), counter_uuids());
        for record in &self.log {
            shard.replay_bytes(&record.encode_key(), record.encode_value().as_deref()).unwrap();
        }
        shard
    }
}

fn commit_errors(response: &OffsetCommitResponse) -> Vec<i16> {
    response.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)).collect()
}

/// One dynamic member through the whole classic flow; returns its member id (generation 1, Stable).
fn single_member_stable(h: &mut Harness) -> String {
    let (member, join) = h.join_new(0);
    assert_eq!(member, format!("c-{}", uuid_str(1)));
    assert!(h.join_reply(join).is_none(), "waits for the initial rebalance delay");
    assert_eq!(h.classic().state(), ClassicState::PreparingRebalance);
    h.advance(3_000);
    let reply = h.join_reply(join).expect("join completes after the delay");
    assert_eq!(reply.error_code, 0);
    assert_eq!(reply.generation_id, 1);
    assert_eq!(reply.leader.as_str(), member);
    assert_eq!(reply.protocol_name.as_ref().map(|p| p.as_str()), Some("range"));
    assert_eq!(reply.members.len(), 1);
    assert_eq!(h.classic().state(), ClassicState::CompletingRebalance);
    let sync = h.sync(3_001, &member, 1, &[(&member, b"A")]);
    let reply = h.sync_reply(sync).unwrap();
    assert_eq!((reply.error_code, &reply.assignment[..]), (0, &b"A"[..]));
    assert_eq!(h.classic().state(), ClassicState::Stable);
    member
}

#[test]
fn join_requires_a_member_id_then_completes_after_the_initial_delay() {
    let mut h = Harness::new();
    let member = single_member_stable(&mut h);
    // The assignment was written before the sync reply.
    match h.log.last() {
        Some(GroupRecord::GroupMetadata { value: Some(v), .. }) => {
            assert_eq!(v.generation, 1);
            assert_eq!(v.leader.as_deref(), Some(member.as_str()));
            assert_eq!(&v.members[0].assignment[..], b"A");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.heartbeat(4_000, &member, 1), 0);
    assert_eq!(h.heartbeat(4_000, &member, 0), ResponseError::IllegalGeneration.code());
    assert_eq!(h.heartbeat(4_000, "nobody", 1), ResponseError::UnknownMemberId.code());
}

#[test]
fn old_clients_join_directly_and_invalid_session_timeouts_are_refused() {
    let mut h = Harness::with_config(GroupConfig { initial_rebalance_delay_ms: 0, ..GroupConfig::default() });
    let join = h.join(0, 3, "", None, &[("range", Bytes::new())]);
    h.advance(0);
    let reply = h.join_reply(join).unwrap();
    assert_eq!((reply.error_code, reply.generation_id), (0, 1));

    let id = h.request_id();
    let request = JoinGroupRequest::default().with_group_id(str_bytes("other").into()).with_session_timeout_ms(1).with_protocol_type(str_bytes("consumer"));
    let effects = h.shard.join_group(0, id, 5, &ClientInfo::default(), request);
    h.absorb(effects);
    assert_eq!(h.join_reply(id).unwrap().error_code, ResponseError::InvalidSessionTimeout.code());
}

#[test]
fn initial_delay_extends_while_members_arrive_and_three_members_share_a_generation() {
    let mut h = Harness::new();
    let (a, join_a) = h.join_new(0);
    let (b, join_b) = h.join_new(2_000);
    h.advance(3_000); // a new member arrived during the delay: extended by another delay
    assert!(h.join_reply(join_a).is_none());
    let (c, join_c) = h.join_new(4_000);
    h.advance(6_000); // extended again because c arrived
    assert!(h.join_reply(join_a).is_none());
    h.advance(9_000);
    let replies: Vec<JoinGroupResponse> = [join_a, join_b, join_c].iter().map(|r| h.join_reply(*r).unwrap()).collect();
    assert!(replies.iter().all(|r| r.generation_id == 1 && r.leader.as_str() == a));
    assert_eq!(replies[0].members.len(), 3, "the leader sees every member");
    assert!(replies[1].members.is_empty() && replies[2].members.is_empty());

    // Followers wait for the leader's assignment.
    let sync_b = h.sync(9_001, &b, 1, &[]);
    assert!(h.sync_reply(sync_b).is_none());
    let sync_a = h.sync(9_002, &a, 1, &[(&a, b"1"), (&b, b"2"), (&c, b"3")]);
    assert_eq!(&h.sync_reply(sync_a).unwrap().assignment[..], b"1");
    assert_eq!(&h.sync_reply(sync_b).unwrap().assignment[..], b"2");
    let sync_c = h.sync(9_003, &c, 1, &[]);
    assert_eq!(&h.sync_reply(sync_c).unwrap().assignment[..], b"3");
}

#[test]
fn a_new_member_triggers_a_rebalance_and_heartbeats_say_so() {
    let mut h = Harness::new();
    let a = single_member_stable(&mut h);
    let (b, join_b) = h.join_new(5_000);
    assert_eq!(h.classic().state(), ClassicState::PreparingRebalance);
    assert_eq!(h.heartbeat(5_001, &a, 1), ResponseError::RebalanceInProgress.code());
    // a rejoins: everyone is in, the join phase ends at once.
    let join_a = h.join_range(5_002, &a, None);
    let reply_a = h.join_reply(join_a).unwrap();
    let reply_b = h.join_reply(join_b).unwrap();
    assert_eq!((reply_a.generation_id, reply_b.generation_id), (2, 2));
    assert_eq!(reply_b.member_id.as_str(), b);
}

#[test]
fn rebalance_timeout_removes_members_that_did_not_rejoin() {
    let mut h = Harness::new();
    let a = single_member_stable(&mut h);
    let (_b, join_b) = h.join_new(5_000);
    assert_eq!(h.heartbeat(6_000, &a, 1), ResponseError::RebalanceInProgress.code());
    h.advance(5_000 + 60_000); // a never rejoins within the rebalance timeout
    let reply = h.join_reply(join_b).unwrap();
    assert_eq!(reply.generation_id, 2);
    assert_eq!(reply.members.len(), 1, "b leads alone");
    assert!(!h.classic().members().contains_key(&a));
    assert_eq!(h.heartbeat(65_001, &a, 2), ResponseError::UnknownMemberId.code());
}

#[test]
fn session_expiry_removes_the_member_and_empties_the_group() {
    let mut h = Harness::new();
    let a = single_member_stable(&mut h);
    assert_eq!(h.heartbeat(5_000, &a, 1), 0);
    h.advance(14_999);
    assert_eq!(h.classic().state(), ClassicState::Stable);
    h.advance(15_000);
    assert_eq!(h.classic().state(), ClassicState::Empty);
    assert_eq!(h.classic().generation(), 2);
    match h.log.last() {
        Some(GroupRecord::GroupMetadata { value: Some(v), .. }) => assert!(v.members.is_empty() && v.generation == 2),
        other => panic!("{other:?}"),
    }
}

#[test]
fn leader_that_never_syncs_is_removed_at_the_sync_timeout() {
    let mut h = Harness::new();
    let (a, join_a) = h.join_new(0);
    h.advance(3_000);
    assert!(h.join_reply(join_a).is_some());
    let _ = a;
    h.advance(3_000 + 60_000);
    assert_eq!(h.classic().state(), ClassicState::Empty);
}

#[test]
fn static_member_replacement_fences_the_old_id_without_a_rebalance() {
    let mut h = Harness::new();
    let join = h.join_range(0, "", Some("i1"));
    h.advance(3_000);
    let old = h.join_reply(join).unwrap();
    assert_eq!(old.error_code, 0, "static members never get MEMBER_ID_REQUIRED");
    let old_id = old.member_id.to_string();
    let sync = h.sync(3_001, &old_id, 1, &[(&old_id, b"A")]);
    assert!(h.sync_reply(sync).is_some());
    let records_before = h.log.len();

    // Restarted with the same instance id: a new member id, same generation, no rebalance.
    let rejoin = h.join_range(4_000, "", Some("i1"));
    let reply = h.join_reply(rejoin).unwrap();
    assert_eq!(reply.error_code, 0);
    assert_eq!(reply.generation_id, 1);
    assert_ne!(reply.member_id.to_string(), old_id);
    assert!(reply.skip_assignment, "the replaced leader keeps its assignment");
    assert_eq!(h.classic().state(), ClassicState::Stable);
    assert_eq!(h.log.len(), records_before + 1, "the new member id is persisted");

    let request = HeartbeatRequest::default()
        .with_group_id(str_bytes(GROUP).into())
        .with_generation_id(1)
        .with_member_id(str_bytes(&old_id))
        .with_group_instance_id(Some(str_bytes("i1")));
    let (response, _) = h.shard.heartbeat(4_001, request);
    assert_eq!(response.error_code, ResponseError::FencedInstanceId.code());
    let new_id = reply.member_id.to_string();
    let sync = h.sync(4_002, &new_id, 1, &[]);
    assert_eq!(&h.sync_reply(sync).unwrap().assignment[..], b"A");
}

#[test]
fn static_member_with_new_protocols_triggers_a_rebalance() {
    let mut h = Harness::new();
    let join = h.join_range(0, "", Some("i1"));
    h.advance(3_000);
    let id = h.join_reply(join).unwrap().member_id.to_string();
    let sync = h.sync(3_001, &id, 1, &[(&id, b"A")]);
    assert!(h.sync_reply(sync).is_some());
    let rejoin = h.join(4_000, 9, "", Some("i1"), &[("roundrobin", Bytes::new()), ("range", Bytes::new())]);
    let reply = h.join_reply(rejoin).unwrap();
    assert_eq!(reply.generation_id, 2);
    assert_eq!(reply.protocol_name.as_ref().map(|p| p.to_string()), Some("roundrobin".to_string()));
}

#[test]
fn leave_group_removes_a_batch_by_member_or_instance_id() {
    let mut h = Harness::new();
    let (a, join_a) = h.join_new(0);
    let join_s = h.join_range(1, "", Some("s1"));
    h.advance(6_000); // s arrived during the initial delay, which was extended once
    assert!(h.join_reply(join_a).is_some());
    let s = h.join_reply(join_s).unwrap().member_id.to_string();
    let sync = h.sync(6_001, &a, 1, &[]);
    assert!(h.sync_reply(sync).is_some());

    let id = h.request_id();
    let request = LeaveGroupRequest::default().with_group_id(str_bytes(GROUP).into()).with_members(vec![
        MemberIdentity::default().with_member_id(str_bytes(&a)),
        MemberIdentity::default().with_group_instance_id(Some(str_bytes("s1"))),
        MemberIdentity::default().with_member_id(str_bytes("ghost")),
    ]);
    let effects = h.shard.leave_group(4_000, id, request);
    h.absorb(effects);
    let Some(Reply::LeaveGroup(response)) = h.reply(id) else { panic!() };
    let errors: Vec<i16> = response.members.iter().map(|m| m.error_code).collect();
    assert_eq!(errors, vec![0, 0, ResponseError::UnknownMemberId.code()]);
    assert_eq!(h.classic().state(), ClassicState::Empty);
    assert!(!h.classic().members().contains_key(&s));
}

#[test]
fn group_max_size_is_enforced() {
    let mut h = Harness::with_config(GroupConfig { max_size: 1, ..GroupConfig::default() });
    let _ = single_member_stable(&mut h);
    let join = h.join_range(5_000, "", None);
    assert_eq!(h.join_reply(join).unwrap().error_code, ResponseError::GroupMaxSizeReached.code());
}

#[test]
fn offsets_commit_fetch_delete_and_unknown_groups() {
    let mut h = Harness::new();
    // A group that does not exist: offsets -1, no error.
    let fetched = h.fetch("nope", "t", &[0]);
    assert_eq!(fetched.error_code, 0);
    assert_eq!(fetched.topics[0].partitions[0].committed_offset, -1);

    // Simple consumer: generation -1, no member id, creates an Empty group.
    let response = h.commit(10, -1, "", &[("t", 0, 42), ("u", 1, 7)]);
    assert_eq!(commit_errors(&response), vec![0, 0]);
    let fetched = h.fetch(GROUP, "t", &[0, 1]);
    assert_eq!(fetched.topics[0].partitions[0].committed_offset, 42);
    assert_eq!(fetched.topics[0].partitions[0].metadata.as_ref().map(|m| m.as_str()), Some("m"));
    assert_eq!(fetched.topics[0].partitions[1].committed_offset, -1);

    // All topics (null list).
    let all = h.shard.offset_fetch(&OffsetFetchRequestGroup::default().with_group_id(str_bytes(GROUP).into()).with_topics(None), false);
    assert_eq!(all.topics.len(), 2);

    // Members of a generation: checked.
    let member = single_member_stable(&mut h);
    assert_eq!(commit_errors(&h.commit(4_000, 1, &member, &[("t", 0, 50)])), vec![0]);
    assert_eq!(commit_errors(&h.commit(4_000, 0, &member, &[("t", 0, 51)])), vec![ResponseError::IllegalGeneration.code()]);
    assert_eq!(commit_errors(&h.commit(4_000, 1, "x", &[("t", 0, 51)])), vec![ResponseError::UnknownMemberId.code()]);
    assert_eq!(commit_errors(&h.commit(4_000, -1, "", &[("t", 0, 51)])), vec![ResponseError::UnknownMemberId.code()]);
    assert_eq!(h.fetch(GROUP, "t", &[0]).topics[0].partitions[0].committed_offset, 50);

    // OffsetDelete refuses subscribed topics of a live group, deletes others.
    let id = h.request_id();
    let request = OffsetDeleteRequest::default().with_group_id(str_bytes(GROUP).into()).with_topics(vec![
        OffsetDeleteRequestTopic::default().with_name(str_bytes("t").into()).with_partitions(vec![OffsetDeleteRequestPartition::default().with_partition_index(0)]),
        OffsetDeleteRequestTopic::default().with_name(str_bytes("u").into()).with_partitions(vec![OffsetDeleteRequestPartition::default().with_partition_index(1)]),
    ]);
    let effects = h.shard.offset_delete(5_000, id, request);
    h.absorb(effects);
    let Some(Reply::OffsetDelete(response)) = h.reply(id) else { panic!() };
    assert_eq!(response.error_code, 0);
    assert_eq!(response.topics[0].partitions[0].error_code, ResponseError::GroupSubscribedToTopic.code());
    assert_eq!(response.topics[1].partitions[0].error_code, 0);
    assert_eq!(h.fetch(GROUP, "u", &[1]).topics[0].partitions[0].committed_offset, -1);

    // DeleteGroups: not while members are in; then yes.
    let id = h.request_id();
    let effects = h.shard.delete_groups(5_000, id, &[GROUP.to_string(), "missing".to_string()]);
    h.absorb(effects);
    let Some(Reply::DeleteGroups(results)) = h.reply(id) else { panic!() };
    assert_eq!(results.iter().map(|r| r.error_code).collect::<Vec<_>>(), vec![ResponseError::NonEmptyGroup.code(), ResponseError::GroupIdNotFound.code()]);
    h.advance(60_000); // session expiry empties the group
    let id = h.request_id();
    let effects = h.shard.delete_groups(60_000, id, &[GROUP.to_string()]);
    h.absorb(effects);
    let Some(Reply::DeleteGroups(results)) = h.reply(id) else { panic!() };
    assert_eq!(results[0].error_code, 0);
    assert!(h.shard.group(GROUP).is_none());
    assert_eq!(h.fetch(GROUP, "t", &[0]).topics[0].partitions[0].committed_offset, -1);
    assert!(h.reloaded().group(GROUP).is_none(), "the tombstones delete it on reload too");
}

#[test]
fn describe_and_list_with_filters() {
    let mut h = Harness::new();
    let member = single_member_stable(&mut h);
    let described = h.shard.describe_group(GROUP);
    assert_eq!(described.group_state.as_str(), "Stable");
    assert_eq!(described.protocol_data.as_str(), "range");
    assert_eq!(described.members[0].member_id.as_str(), member);
    assert_eq!(&described.members[0].member_assignment[..], b"A");
    let missing = h.shard.describe_group("missing");
    assert_eq!((missing.error_code, missing.group_state.as_str()), (0, "Dead"));

    assert_eq!(h.shard.list_groups(&[], &[]).len(), 1);
    assert_eq!(h.shard.list_groups(&["stable".into()], &[]).len(), 1);
    assert_eq!(h.shard.list_groups(&["Empty".into()], &[]).len(), 0);
    assert_eq!(h.shard.list_groups(&[], &["consumer".into()]).len(), 0);
    let listed = &h.shard.list_groups(&[], &["Classic".into()])[0];
    assert_eq!((listed.protocol_type.as_str(), listed.group_type.as_str()), ("consumer", "classic"));
}

#[test]
fn replay_rebuilds_classic_groups_and_offsets() {
    let mut h = Harness::new();
    let member = single_member_stable(&mut h);
    h.commit(4_000, 1, &member, &[("t", 0, 9)]);
    let mut reloaded = h.reloaded();
    let Some(Group::Classic(group)) = reloaded.group(GROUP) else { panic!() };
    assert_eq!(group.state(), ClassicState::Stable);
    assert_eq!(group.generation(), 1);
    assert_eq!(group.leader(), Some(member.as_str()));
    assert_eq!(reloaded.describe_group(GROUP), h.shard.describe_group(GROUP));
    assert_eq!(reloaded.offsets().get(GROUP, "t", 0).map(|v| v.offset), Some(9));
    let effects = reloaded.load_complete(100_000);
    assert!(effects.contains(&Effect::ScheduleTimer {
        key: TimerKey::ClassicHeartbeat { group: GROUP.into(), member: member.clone() },
        deadline_ms: 110_000
    }));
}

// KIP-848

fn topics() -> Topics {
    Topics::new([("t", Uuid::from_u128(T1), 4)])
}

const T1: u128 = 0xAA;

impl Harness {
    fn consumer_heartbeat(&mut self, now: i64, topics: &Topics, request: ConsumerGroupHeartbeatRequest) -> ConsumerGroupHeartbeatResponse {
        let id = self.request_id();
        let client = ClientInfo { client_id: "c".into(), client_host: "/h".into() };
        let effects = self.shard.consumer_group_heartbeat(now, id, &client, topics, request);
        self.absorb(effects);
        match self.reply(id) {
            Some(Reply::ConsumerGroupHeartbeat(r)) => r,
            other => panic!("{other:?}"),
        }
    }
}

fn cg_join(member_id: &str) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest::default()
        .with_group_id(str_bytes(GROUP).into())
        .with_member_id(str_bytes(member_id))
        .with_member_epoch(0)
        .with_rebalance_timeout_ms(30_000)
        .with_subscribed_topic_names(Some(vec![str_bytes("t").into()]))
        .with_topic_partitions(Some(Vec::new()))
}

fn cg_beat(member_id: &str, epoch: i32, owned: Option<&[i32]>) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest::default()
        .with_group_id(str_bytes(GROUP).into())
        .with_member_id(str_bytes(member_id))
        .with_member_epoch(epoch)
        .with_rebalance_timeout_ms(-1)
        .with_topic_partitions(owned.map(|ps| vec![OwnedPartitions::default().with_topic_id(Uuid::from_u128(T1)).with_partitions(ps.to_vec())]))
}

fn assigned(response: &ConsumerGroupHeartbeatResponse) -> Option<Vec<i32>> {
    response.assignment.as_ref().map(|a| a.topic_partitions.iter().flat_map(|t| t.partitions.iter().copied()).collect())
}

#[test]
fn consumer_group_join_reassign_with_revocation_first_then_leave() {
    let mut h = Harness::new();
    let topics = topics();
    let a = h.consumer_heartbeat(0, &topics, cg_join("a"));
    assert_eq!((a.error_code, a.member_epoch), (0, 1));
    assert_eq!(assigned(&a), Some(vec![0, 1, 2, 3]));
    assert_eq!(h.consumer().state(), ConsumerGroupState::Stable);

    // b joins: epoch 2; a must revoke two partitions before b may have them.
    let b = h.consumer_heartbeat(10, &topics, cg_join("b"));
    assert_eq!(b.member_epoch, 2);
    assert_eq!(assigned(&b), Some(vec![]), "b's partitions are still owned by a");
    assert_eq!(h.consumer().state(), ConsumerGroupState::Reconciling);

    let a = h.consumer_heartbeat(20, &topics, cg_beat("a", 1, Some(&[0, 1, 2, 3])));
    assert_eq!(a.member_epoch, 1, "a keeps its epoch until it has revoked");
    let a_keeps = assigned(&a).unwrap();
    assert_eq!(a_keeps.len(), 2);
    let revoked: Vec<i32> = (0..4).filter(|p| !a_keeps.contains(p)).collect();

    // b asks again: still unreleased.
    let b = h.consumer_heartbeat(30, &topics, cg_beat("b", 2, Some(&[])));
    assert_eq!(assigned(&b), None, "nothing changed for b");

    // a acknowledges the revocation: it moves to epoch 2; then b gets the freed partitions.
    let a = h.consumer_heartbeat(40, &topics, cg_beat("a", 1, Some(&a_keeps)));
    assert_eq!(a.member_epoch, 2);
    let b = h.consumer_heartbeat(50, &topics, cg_beat("b", 2, Some(&[])));
    assert_eq!(assigned(&b), Some(revoked.clone()));
    assert_eq!(h.consumer().state(), ConsumerGroupState::Stable);

    // Offset commits carry the member epoch.
    assert_eq!(commit_errors(&h.commit(60, 2, "b", &[("t", revoked[0], 5)])), vec![0]);
    assert_eq!(commit_errors(&h.commit(60, 1, "b", &[("t", revoked[0], 5)])), vec![ResponseError::StaleMemberEpoch.code()]);
    assert_eq!(commit_errors(&h.commit(60, 2, "zz", &[("t", 0, 5)])), vec![ResponseError::UnknownMemberId.code()]);

    // Describe.
    let described = h.shard.consumer_group_describe(GROUP, &topics);
    assert_eq!((described.error_code, described.group_state.as_str(), described.group_epoch, described.assignment_epoch), (0, "Stable", 2, 2));
    assert_eq!(described.members.len(), 2);
    assert_eq!(described.members[1].assignment.topic_partitions[0].topic_name.as_str(), "t");
    assert_eq!(h.shard.list_groups(&[], &["consumer".into()]).len(), 1);

    // Replay gives the same group.
    let reloaded = h.reloaded();
    assert_eq!(reloaded.consumer_group_describe(GROUP, &topics), described);

    // b leaves: the group epoch bumps and a gets everything back.
    let left = h.consumer_heartbeat(70, &topics, cg_beat("b", -1, None));
    assert_eq!(left.member_epoch, -1);
    let a = h.consumer_heartbeat(80, &topics, cg_beat("a", 2, Some(&a_keeps)));
    assert_eq!(a.member_epoch, 3);
    assert_eq!(assigned(&a), Some(vec![0, 1, 2, 3]));
}

#[test]
fn consumer_group_fencing_session_expiry_and_validation() {
    let mut h = Harness::new();
    let topics = topics();
    h.consumer_heartbeat(0, &topics, cg_join("a"));
    assert_eq!(h.consumer_heartbeat(1, &topics, cg_beat("a", 5, None)).error_code, ResponseError::FencedMemberEpoch.code());
    assert_eq!(h.consumer_heartbeat(1, &topics, cg_beat("x", 1, None)).error_code, ResponseError::UnknownMemberId.code());
    let regex = cg_join("r").with_subscribed_topic_names(None).with_subscribed_topic_regex(Some(str_bytes("t.*")));
    assert_eq!(h.consumer_heartbeat(1, &topics, regex).error_code, ResponseError::InvalidRequest.code());
    let bad_assignor = cg_join("r").with_server_assignor(Some(str_bytes("sticky")));
    assert_eq!(h.consumer_heartbeat(1, &topics, bad_assignor).error_code, ResponseError::UnsupportedAssignor.code());

    // A classic join on a live consumer group is refused; a consumer heartbeat on a classic group too.
    let join = h.join_range(2, "", None);
    assert_eq!(h.join_reply(join).unwrap().error_code, ResponseError::InconsistentGroupProtocol.code());

    // Session expiry removes the member.
    h.advance(45_000);
    assert!(h.consumer().members().is_empty());
    assert_eq!(h.consumer().state(), ConsumerGroupState::Empty);
}

#[test]
fn consumer_group_picks_up_new_partitions_and_range_assignor() {
    let mut h = Harness::new();
    let t = topics();
    let join = |id: &str| cg_join(id).with_server_assignor(Some(str_bytes("range")));
    h.consumer_heartbeat(0, &t, join("a"));
    let b = h.consumer_heartbeat(1, &t, join("b"));
    let a = h.consumer_heartbeat(2, &t, cg_beat("a", 1, Some(&[0, 1, 2, 3])));
    assert_eq!(assigned(&a), Some(vec![0, 1]), "range: a gets the first half");
    let a = h.consumer_heartbeat(3, &t, cg_beat("a", 1, Some(&[0, 1])));
    assert_eq!(a.member_epoch, 2);
    let b = h.consumer_heartbeat(4, &t, cg_beat("b", b.member_epoch, Some(&[])));
    assert_eq!(assigned(&b), Some(vec![2, 3]));

    // The topic grows to 6 partitions: the group epoch bumps on the next heartbeat.
    let grown = Topics::new([("t", Uuid::from_u128(T1), 6)]);
    let a = h.consumer_heartbeat(5, &grown, cg_beat("a", 2, Some(&[0, 1])));
    assert_eq!(a.member_epoch, 3);
    assert_eq!(assigned(&a), None, "partition 2 is still b's: a waits with what it has");
    // b revokes 2 first, then takes 4 and 5.
    let b = h.consumer_heartbeat(6, &grown, cg_beat("b", 2, Some(&[2, 3])));
    assert_eq!((b.member_epoch, assigned(&b)), (2, Some(vec![3])));
    let b = h.consumer_heartbeat(7, &grown, cg_beat("b", 2, Some(&[3])));
    assert_eq!((b.member_epoch, assigned(&b)), (3, Some(vec![3, 4, 5])));
    let a = h.consumer_heartbeat(8, &grown, cg_beat("a", 3, Some(&[0, 1])));
    assert_eq!(assigned(&a), Some(vec![0, 1, 2]));
    assert_eq!(h.consumer().state(), ConsumerGroupState::Stable);
}

#[test]
fn static_consumer_member_rejoins_with_its_partitions() {
    let mut h = Harness::new();
    let t = topics();
    let join = cg_join("a1").with_instance_id(Some(str_bytes("i")));
    h.consumer_heartbeat(0, &t, join);
    let again = cg_join("a2").with_instance_id(Some(str_bytes("i")));
    assert_eq!(h.consumer_heartbeat(1, &t, again.clone()).error_code, ResponseError::UnreleasedInstanceId.code());
    let leave = cg_beat("a1", -2, None).with_instance_id(Some(str_bytes("i")));
    assert_eq!(h.consumer_heartbeat(2, &t, leave).member_epoch, -2);
    let back = h.consumer_heartbeat(3, &t, again);
    assert_eq!(back.error_code, 0);
    assert_eq!(back.member_epoch, 1, "no new group epoch");
    assert_eq!(assigned(&back), Some(vec![0, 1, 2, 3]));
    assert!(!h.consumer().members().contains_key("a1"));
}
