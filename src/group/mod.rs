//! The group coordinator's core: pure state machines, no I/O, no clock, no tokio. A thin runtime (not here)
//! owns one [`GroupShard`] per `__consumer_offsets` partition it leads and drives it:
//!
//! - requests: the handler calls the shard method for its API (`join_group`, `sync_group`, `heartbeat`,
//!   `leave_group`, `offset_commit`, `txn_offset_commit`, `offset_fetch`, `offset_delete`, `delete_groups`,
//!   `describe_group`, `list_groups`, `consumer_group_heartbeat`, `consumer_group_describe`) with `now_ms` and,
//!   for APIs whose answer may wait, a [`RequestId`] the runtime chose. Read-only APIs return their answer
//!   directly; the others return `Vec<Effect>`.
//! - [`Effect`]s, in order: `Append{records, producer}` to the shard's `__consumer_offsets` partition (a
//!   transactional batch of that producer when there is one); `Reply` to a pending request (maybe one parked
//!   by an earlier call: a JoinGroup waits for the rebalance); `ScheduleTimer`/`CancelTimer`.
//! - durability rule: the state machine applies its records to memory at once (as Kafka's coordinator does);
//!   **the runtime sends a reply only once every `Append` emitted before it (by this or any earlier call on this
//!   shard) is durable**. One FIFO of effects per shard does it. If an append fails, the runtime drops the shard
//!   and rebuilds it from the log ([`GroupShard::replay`]), answering the waiting replies with
//!   NOT_COORDINATOR, which makes clients find the coordinator again and retry.
//! - timers: `ScheduleTimer{key, deadline_ms}` replaces any earlier deadline of `key`; when it passes the
//!   runtime calls [`GroupShard::timer`]. A stale or cancelled firing is ignored, so the runtime need not be exact.
//! - loading: on becoming leader of the partition, `replay` every record from the start of the log (tombstones
//!   delete; records of transactional batches through `replay_transactional`, markers through
//!   `complete_transaction`), then call [`GroupShard::load_complete`], which re-arms session timers.
//! - transaction markers: the runtime appends the marker, waits until it is durable and replicated, then calls
//!   [`GroupShard::complete_transaction`] (pending offsets of the producer become committed or are dropped).
//!
//! Modules: [`records`] (the byte-exact `__consumer_offsets` codec), [`classic`] (JoinGroup/SyncGroup/
//! Heartbeat/LeaveGroup rebalances, static membership), [`consumer`] (KIP-848 ConsumerGroupHeartbeat groups),
//! [`assignor`] (uniform and range server assignors), [`offsets`] (committed offsets of every group),
//! [`txn_offsets`] (TxnOffsetCommit and the pending offsets of open transactions).

pub mod assignor;
pub mod classic;
pub mod consumer;
pub mod offsets;
pub mod records;
pub mod runtime;
#[cfg(test)]
mod shard_tests;
pub mod txn_offsets;
#[cfg(test)]
mod txn_tests;

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::offset_fetch_response::OffsetFetchResponseGroup;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use uuid::Uuid;

pub use classic::{ClassicGroup, ClassicState};
pub use consumer::{ConsumerGroup, ConsumerGroupState, Topics};
pub use offsets::OffsetStore;
pub use records::{GroupRecord, RecordError};

/// Chosen by the runtime to route a reply back to its connection.
pub type RequestId = u64;

/// The settings of the coordinator, under Kafka's property names.
#[derive(Clone, Debug)]
pub struct GroupConfig {
    /// group.min.session.timeout.ms
    pub min_session_timeout_ms: i32,
    /// group.max.session.timeout.ms
    pub max_session_timeout_ms: i32,
    /// group.initial.rebalance.delay.ms
    pub initial_rebalance_delay_ms: i32,
    /// group.max.size
    pub max_size: usize,
    /// How long a new classic member may take to complete its first join (Kafka's fixed 5 minutes).
    pub new_member_join_timeout_ms: i32,
    /// offset.metadata.max.bytes
    pub offset_metadata_max_bytes: usize,
    /// group.consumer.session.timeout.ms
    pub consumer_session_timeout_ms: i32,
    /// group.consumer.heartbeat.interval.ms
    pub consumer_heartbeat_interval_ms: i32,
    /// group.consumer.max.size
    pub consumer_max_size: usize,
    /// The first of group.consumer.assignors is the default.
    pub consumer_default_assignor: String,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            max_size: i32::MAX as usize,
            new_member_join_timeout_ms: 300_000,
            offset_metadata_max_bytes: 4096,
            consumer_session_timeout_ms: 45_000,
            consumer_heartbeat_interval_ms: 5_000,
            consumer_max_size: i32::MAX as usize,
            consumer_default_assignor: assignor::UNIFORM.to_string(),
        }
    }
}

/// Who sent a request, beyond its body.
#[derive(Clone, Debug, Default)]
pub struct ClientInfo {
    pub client_id: String,
    /// Kafka's form: "/" followed by the address.
    pub client_host: String,
}

/// An answer for a request that may have waited.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    JoinGroup(JoinGroupResponse),
    SyncGroup(SyncGroupResponse),
    LeaveGroup(LeaveGroupResponse),
    OffsetCommit(OffsetCommitResponse),
    TxnOffsetCommit(TxnOffsetCommitResponse),
    OffsetDelete(OffsetDeleteResponse),
    DeleteGroups(Vec<DeletableGroupResult>),
    ConsumerGroupHeartbeat(ConsumerGroupHeartbeatResponse),
}

/// Timers, one per purpose and group (and member).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimerKey {
    /// The end of a classic group's join phase: initial delay or rebalance timeout.
    ClassicJoin { group: String },
    /// Members that have not sent SyncGroup by then are removed.
    ClassicSync { group: String, generation: i32 },
    /// A classic member's session (or, while new, its first-join timeout).
    ClassicHeartbeat { group: String, member: String },
    /// A member id handed out with MEMBER_ID_REQUIRED that has not joined with it yet.
    ClassicPendingMember { group: String, member: String },
    /// A KIP-848 member's session.
    ConsumerSession { group: String, member: String },
    /// A KIP-848 member that has not revoked partitions within its rebalance timeout is fenced.
    ConsumerRevocation { group: String, member: String, epoch: i32 },
}

/// The producer of a transactional write: its records stay pending until its marker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxnProducer {
    pub producer_id: i64,
    pub producer_epoch: i16,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Records to append as one batch; with a producer, a transactional batch of that producer.
    Append { records: Vec<GroupRecord>, producer: Option<TxnProducer> },
    Reply { request: RequestId, reply: Reply },
    ScheduleTimer { key: TimerKey, deadline_ms: i64 },
    CancelTimer(TimerKey),
}

/// Collects the effects of one call.
#[derive(Default, Debug)]
pub struct Outbox {
    pub effects: Vec<Effect>,
}

impl Outbox {
    pub fn append(&mut self, records: Vec<GroupRecord>) {
        if !records.is_empty() {
            self.effects.push(Effect::Append { records, producer: None });
        }
    }
    pub fn append_transactional(&mut self, producer_id: i64, producer_epoch: i16, records: Vec<GroupRecord>) {
        if !records.is_empty() {
            self.effects.push(Effect::Append { records, producer: Some(TxnProducer { producer_id, producer_epoch }) });
        }
    }
    pub fn reply(&mut self, request: RequestId, reply: Reply) {
        self.effects.push(Effect::Reply { request, reply });
    }
    pub fn schedule(&mut self, key: TimerKey, deadline_ms: i64) {
        self.effects.push(Effect::ScheduleTimer { key, deadline_ms });
    }
    pub fn cancel(&mut self, key: TimerKey) {
        self.effects.push(Effect::CancelTimer(key));
    }
}

/// What the group state machines need besides their group: time, settings, fresh ids, the effects sink.
pub struct Ctx<'a> {
    pub now_ms: i64,
    pub config: &'a GroupConfig,
    pub out: &'a mut Outbox,
    pub new_uuid: &'a mut (dyn FnMut() -> Uuid + Send),
}

/// A group of either protocol. Offsets live beside it in the [`OffsetStore`].
#[derive(Clone, Debug)]
pub enum Group {
    Classic(ClassicGroup),
    Consumer(ConsumerGroup),
}

/// All groups of one `__consumer_offsets` partition.
pub struct GroupShard {
    config: GroupConfig,
    groups: BTreeMap<String, Group>,
    offsets: OffsetStore,
    /// The deadline of every armed timer, to ignore stale firings.
    timers: HashMap<TimerKey, i64>,
    new_uuid: Box<dyn FnMut() -> Uuid + Send>,
}

/// Kafka's `Utils.abs(groupId.hashCode()) % partitions`: Java's String.hashCode over UTF-16 code units, and
/// `abs` that maps i32::MIN to 0 (it is `n & 0x7fffffff`).
pub fn partition_for_group(group_id: &str, partitions: i32) -> i32 {
    let hash = group_id.encode_utf16().fold(0i32, |h, unit| h.wrapping_mul(31).wrapping_add(unit as i32));
    (hash & 0x7fff_ffff) % partitions.max(1)
}

pub(crate) fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

pub(crate) fn code(error: ResponseError) -> i16 {
    error.code()
}

impl GroupShard {
    pub fn new(config: GroupConfig) -> Self {
        Self::with_uuid_source(config, Box::new(Uuid::new_v4))
    }

    /// Tests pass a deterministic source of member-id uuids.
    pub fn with_uuid_source(config: GroupConfig, new_uuid: Box<dyn FnMut() -> Uuid + Send>) -> Self {
        GroupShard { config, groups: BTreeMap::new(), offsets: OffsetStore::default(), timers: HashMap::new(), new_uuid }
    }

    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    pub fn group(&self, group_id: &str) -> Option<&Group> {
        self.groups.get(group_id)
    }

    pub fn offsets(&self) -> &OffsetStore {
        &self.offsets
    }

    /// Runs `f` on a fresh outbox and records its timers, so stale firings can be recognised.
    fn run<R>(&mut self, now_ms: i64, f: impl FnOnce(&mut BTreeMap<String, Group>, &mut OffsetStore, &mut Ctx) -> R) -> (R, Vec<Effect>) {
        let mut out = Outbox::default();
        let result = {
            let GroupShard { config, groups, offsets, new_uuid, .. } = self;
            let mut ctx = Ctx { now_ms, config, out: &mut out, new_uuid: &mut **new_uuid };
            f(groups, offsets, &mut ctx)
        };
        for effect in &out.effects {
            match effect {
                Effect::ScheduleTimer { key, deadline_ms } => {
                    self.timers.insert(key.clone(), *deadline_ms);
                }
                Effect::CancelTimer(key) => {
                    self.timers.remove(key);
                }
                _ => {}
            }
        }
        (result, out.effects)
    }

    pub fn join_group(&mut self, now_ms: i64, request_id: RequestId, version: i16, client: &ClientInfo, request: JoinGroupRequest) -> Vec<Effect> {
        self.run(now_ms, |groups, _, ctx| classic::join_group(groups, ctx, request_id, version, client, request)).1
    }

    pub fn sync_group(&mut self, now_ms: i64, request_id: RequestId, request: SyncGroupRequest) -> Vec<Effect> {
        self.run(now_ms, |groups, _, ctx| classic::sync_group(groups, ctx, request_id, request)).1
    }

    /// Heartbeats never wait and never write.
    pub fn heartbeat(&mut self, now_ms: i64, request: HeartbeatRequest) -> (HeartbeatResponse, Vec<Effect>) {
        self.run(now_ms, |groups, _, ctx| classic::heartbeat(groups, ctx, request))
    }

    /// `request.members` must be filled for every version (the handler turns v0-2's member_id into one entry).
    pub fn leave_group(&mut self, now_ms: i64, request_id: RequestId, request: LeaveGroupRequest) -> Vec<Effect> {
        self.run(now_ms, |groups, _, ctx| classic::leave_group(groups, ctx, request_id, request)).1
    }

    pub fn offset_commit(&mut self, now_ms: i64, request_id: RequestId, request: OffsetCommitRequest) -> Vec<Effect> {
        self.run(now_ms, |groups, offsets, ctx| offsets::offset_commit(groups, offsets, ctx, request_id, request)).1
    }

    /// Offsets committed inside the transaction of the request's producer: pending until its marker.
    pub fn txn_offset_commit(&mut self, now_ms: i64, request_id: RequestId, request: TxnOffsetCommitRequest) -> Vec<Effect> {
        self.run(now_ms, |groups, offsets, ctx| txn_offsets::txn_offset_commit(groups, offsets, ctx, request_id, request)).1
    }

    /// One group of an OffsetFetch (v8+ shape; the handler maps v0-7's single group onto it). A group that does
    /// not exist answers every requested partition with offset -1 and no error. With `require_stable` (v7+),
    /// partitions with offsets in an open transaction answer UNSTABLE_OFFSET_COMMIT.
    pub fn offset_fetch(&self, group: &OffsetFetchRequestGroup, require_stable: bool) -> OffsetFetchResponseGroup {
        offsets::offset_fetch(&self.groups, &self.offsets, group, require_stable)
    }

    pub fn offset_delete(&mut self, now_ms: i64, request_id: RequestId, request: OffsetDeleteRequest) -> Vec<Effect> {
        self.run(now_ms, |groups, offsets, ctx| offsets::offset_delete(groups, offsets, ctx, request_id, request)).1
    }

    /// The groups of this shard named in a DeleteGroups request; one `Reply::DeleteGroups` with their results.
    pub fn delete_groups(&mut self, now_ms: i64, request_id: RequestId, group_ids: &[String]) -> Vec<Effect> {
        self.run(now_ms, |groups, offsets, ctx| offsets::delete_groups(groups, offsets, ctx, request_id, group_ids)).1
    }

    pub fn describe_group(&self, group_id: &str) -> DescribedGroup {
        match self.groups.get(group_id) {
            Some(Group::Classic(group)) => group.describe(),
            Some(Group::Consumer(group)) => group.describe_classic(),
            None => DescribedGroup::default()
                .with_group_id(str_bytes(group_id).into())
                .with_group_state(str_bytes(ClassicState::Dead.name())),
        }
    }

    /// Groups whose state is in `states_filter` and type in `types_filter` (both case-insensitive; empty = all).
    pub fn list_groups(&self, states_filter: &[String], types_filter: &[String]) -> Vec<ListedGroup> {
        let matches = |filter: &[String], value: &str| filter.is_empty() || filter.iter().any(|f| f.eq_ignore_ascii_case(value));
        self.groups
            .iter()
            .filter_map(|(id, group)| {
                let (state, group_type, protocol_type) = match group {
                    Group::Classic(g) => (g.state().name(), "classic", g.protocol_type().unwrap_or("").to_string()),
                    Group::Consumer(g) => (g.state().name(), "consumer", "consumer".to_string()),
                };
                (matches(states_filter, state) && matches(types_filter, group_type)).then(|| {
                    ListedGroup::default()
                        .with_group_id(str_bytes(id).into())
                        .with_protocol_type(str_bytes(&protocol_type))
                        .with_group_state(str_bytes(state))
                        .with_group_type(str_bytes(group_type))
                })
            })
            .collect()
    }

    pub fn consumer_group_heartbeat(
        &mut self,
        now_ms: i64,
        request_id: RequestId,
        client: &ClientInfo,
        topics: &Topics,
        request: ConsumerGroupHeartbeatRequest,
    ) -> Vec<Effect> {
        self.run(now_ms, |groups, _, ctx| consumer::heartbeat(groups, ctx, request_id, client, topics, request)).1
    }

    pub fn consumer_group_describe(&self, group_id: &str, topics: &Topics) -> consumer_group_describe_response::DescribedGroup {
        consumer::describe(&self.groups, group_id, topics)
    }

    /// A timer fired. Stale firings (cancelled, or re-armed to a later deadline) do nothing.
    pub fn timer(&mut self, now_ms: i64, key: TimerKey) -> Vec<Effect> {
        match self.timers.get(&key) {
            Some(&deadline) if deadline <= now_ms => {
                self.timers.remove(&key);
            }
            _ => return Vec::new(),
        }
        self.run(now_ms, |groups, _, ctx| match &key {
            TimerKey::ConsumerSession { .. } | TimerKey::ConsumerRevocation { .. } => consumer::on_timer(groups, ctx, &key),
            _ => classic::on_timer(groups, ctx, &key),
        })
        .1
    }

    /// Applies one record read from the log while loading.
    pub fn replay(&mut self, record: GroupRecord) {
        match record {
            GroupRecord::OffsetCommit { group, topic, partition, value } => {
                if value.is_some() && !self.groups.contains_key(&group) {
                    // Offsets without group metadata belong to a "simple" group (assign + commit), as in Kafka.
                    self.groups.insert(group.clone(), Group::Classic(ClassicGroup::new(&group, 0)));
                }
                self.offsets.replay(&group, &topic, partition, value);
            }
            GroupRecord::GroupMetadata { group, value } => match value {
                Some(value) => {
                    self.groups.insert(group.clone(), Group::Classic(ClassicGroup::from_record(&group, value)));
                }
                None => {
                    if matches!(self.groups.get(&group), Some(Group::Classic(_))) {
                        self.groups.remove(&group);
                    }
                }
            },
            other => consumer::replay(&mut self.groups, other),
        }
    }

    /// Applies one record of a transactional batch of `producer_id` read from the log while loading: offsets
    /// wait for the producer's marker. Other records (Kafka writes none in such batches) apply as usual.
    pub fn replay_transactional(&mut self, producer_id: i64, producer_epoch: i16, record: GroupRecord) {
        match record {
            GroupRecord::OffsetCommit { group, topic, partition, value: Some(value) } => {
                if !self.groups.contains_key(&group) {
                    self.groups.insert(group.clone(), Group::Classic(ClassicGroup::new(&group, 0)));
                }
                self.offsets.replay_pending(producer_id, producer_epoch, &group, &topic, partition, value);
            }
            other => self.replay(other),
        }
    }

    /// Decodes and applies a raw record; unknown record types are skipped.
    pub fn replay_bytes(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), RecordError> {
        if let Some(record) = GroupRecord::decode(key, value)? {
            self.replay(record);
        }
        Ok(())
    }

    /// [`Self::replay_transactional`] of a raw record.
    pub fn replay_transactional_bytes(&mut self, producer_id: i64, producer_epoch: i16, key: &[u8], value: Option<&[u8]>) -> Result<(), RecordError> {
        if let Some(record) = GroupRecord::decode(key, value)? {
            self.replay_transactional(producer_id, producer_epoch, record);
        }
        Ok(())
    }

    /// A commit or abort marker of `producer_id` is in the log (durable and replicated, or read while loading):
    /// its pending offsets in this shard become committed, or are dropped. Without pending offsets it only
    /// records the producer's epoch.
    pub fn complete_transaction(&mut self, producer_id: i64, producer_epoch: i16, commit: bool) {
        self.offsets.complete_transaction(producer_id, producer_epoch, commit);
    }

    /// After the log is replayed: arm every member's session timer.
    pub fn load_complete(&mut self, now_ms: i64) -> Vec<Effect> {
        self.run(now_ms, |groups, _, ctx| {
            for group in groups.values_mut() {
                match group {
                    Group::Classic(g) => g.on_loaded(ctx),
                    Group::Consumer(g) => g.on_loaded(ctx),
                }
            }
        })
        .1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_for_group_matches_java_string_hash_code() {
        // "a".hashCode() = 97; "group".hashCode() = 98629247; "console-consumer-12345".hashCode() is negative.
        assert_eq!(partition_for_group("a", 50), 97 % 50);
        assert_eq!(partition_for_group("group", 50), 98_629_247 % 50);
        assert_eq!(partition_for_group("", 50), 0);
        // "polygenelubricants".hashCode() == Integer.MIN_VALUE, which Kafka's Utils.abs maps to 0.
        assert_eq!(partition_for_group("polygenelubricants", 50), 0);
        // Non-BMP characters count as two UTF-16 units: "😀".hashCode() = 0xD83D*31 + 0xDE00 = 1772899.
        assert_eq!(partition_for_group("😀", 1_000_000_007), 1_772_899);
    }
}
