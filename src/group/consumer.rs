//! KIP-848 consumer groups: ConsumerGroupHeartbeat with server-side assignment (Kafka's GroupMetadataManager
//! consumer path and CurrentAssignmentBuilder, simplified where noted).
//!
//! Epochs: the *group epoch* bumps whenever membership, a subscription or the subscribed topics' partition
//! counts change; the *assignment epoch* is the group epoch the target assignment was computed for; each
//! member's *member epoch* reaches the assignment epoch once it has reconciled. A heartbeat:
//! 1. validates (join with epoch 0; -1 leave; -2 static leave that keeps the member's partitions until its
//!    session expires; any other epoch must be the member's current one, or its previous one with owned
//!    partitions still a subset of its assignment — otherwise FENCED_MEMBER_EPOCH);
//! 2. updates the member's subscription, bumping the group epoch if anything changed;
//! 3. recomputes the target assignment with the "uniform" or "range" assignor when the group epoch is ahead;
//! 4. moves the member towards its target: partitions it must give up are revoked first (it keeps its epoch and
//!    state UnrevokedPartitions until a heartbeat shows it no longer owns them); only then does it take new
//!    partitions, and only those no other member still owns (UnreleasedPartitions until they are released).
//!
//! Every change is a record; the state changes only by applying records (`apply`), the same function replay
//! uses, so a reloaded shard has exactly the state that was written. Regular-expression subscriptions are not
//! supported (INVALID_REQUEST with a message).

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::consumer_group_describe_response as describe_response;
use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment as ResponseAssignment, TopicPartitions as ResponseTopicPartitions};
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::assignor::{self, Assignment, MemberSubscription};
use super::records::{ConsumerGroupMemberMetadataValue, ConsumerGroupMetadataValue, CurrentMemberAssignmentValue, GroupRecord, TopicPartitions};
use super::{code, str_bytes, ClientInfo, Ctx, Group, Reply, RequestId, TimerKey};

/// What the runtime knows about topics (from the metadata image): name, id, partition count.
#[derive(Clone, Debug, Default)]
pub struct Topics {
    by_name: BTreeMap<String, (Uuid, i32)>,
    by_id: BTreeMap<Uuid, (String, i32)>,
}

impl Topics {
    pub fn new<'a>(topics: impl IntoIterator<Item = (&'a str, Uuid, i32)>) -> Self {
        let mut t = Topics::default();
        for (name, id, partitions) in topics {
            t.by_name.insert(name.to_string(), (id, partitions));
            t.by_id.insert(id, (name.to_string(), partitions));
        }
        t
    }
    pub fn by_name(&self, name: &str) -> Option<(Uuid, i32)> {
        self.by_name.get(name).copied()
    }
    pub fn by_id(&self, id: &Uuid) -> Option<(&str, i32)> {
        self.by_id.get(id).map(|(n, p)| (n.as_str(), *p))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsumerGroupState {
    Empty,
    Assigning,
    Reconciling,
    Stable,
}

impl ConsumerGroupState {
    pub fn name(self) -> &'static str {
        match self {
            ConsumerGroupState::Empty => "Empty",
            ConsumerGroupState::Assigning => "Assigning",
            ConsumerGroupState::Reconciling => "Reconciling",
            ConsumerGroupState::Stable => "Stable",
        }
    }
}

/// Kafka's MemberState, with its record codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberState {
    Stable,
    UnrevokedPartitions,
    UnreleasedPartitions,
    Unknown,
}

impl MemberState {
    fn code(self) -> i8 {
        match self {
            MemberState::Stable => 0,
            MemberState::UnrevokedPartitions => 1,
            MemberState::UnreleasedPartitions => 2,
            MemberState::Unknown => 127,
        }
    }
    fn from_code(code: i8) -> Self {
        match code {
            0 => MemberState::Stable,
            1 => MemberState::UnrevokedPartitions,
            2 => MemberState::UnreleasedPartitions,
            _ => MemberState::Unknown,
        }
    }
}

/// Member epoch of a static member that left temporarily (it keeps its partitions until its session expires).
const STATIC_LEAVE_EPOCH: i32 = -2;
const LEAVE_EPOCH: i32 = -1;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_topic_names: Vec<String>,
    pub rebalance_timeout_ms: i32,
    pub server_assignor: Option<String>,
    pub member_epoch: i32,
    pub previous_member_epoch: i32,
    pub state: MemberState,
    pub assigned: Assignment,
    pub pending_revocation: Assignment,
}

impl ConsumerMember {
    fn new(member_id: &str) -> Self {
        ConsumerMember {
            member_id: member_id.to_string(),
            instance_id: None,
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            subscribed_topic_names: Vec::new(),
            rebalance_timeout_ms: -1,
            server_assignor: None,
            member_epoch: 0,
            previous_member_epoch: 0,
            state: MemberState::Stable,
            assigned: Assignment::new(),
            pending_revocation: Assignment::new(),
        }
    }

    fn metadata_value(&self) -> ConsumerGroupMemberMetadataValue {
        ConsumerGroupMemberMetadataValue {
            instance_id: self.instance_id.clone(),
            rack_id: self.rack_id.clone(),
            client_id: self.client_id.clone(),
            client_host: self.client_host.clone(),
            subscribed_topic_names: self.subscribed_topic_names.clone(),
            subscribed_topic_regex: None,
            rebalance_timeout_ms: self.rebalance_timeout_ms,
            server_assignor: self.server_assignor.clone(),
        }
    }

    fn assignment_value(&self) -> CurrentMemberAssignmentValue {
        CurrentMemberAssignmentValue {
            member_epoch: self.member_epoch,
            previous_member_epoch: self.previous_member_epoch,
            state: self.state.code(),
            assigned_partitions: to_record(&self.assigned),
            partitions_pending_revocation: to_record(&self.pending_revocation),
        }
    }
}

fn to_record(assignment: &Assignment) -> Vec<TopicPartitions> {
    assignment
        .iter()
        .filter(|(_, ps)| !ps.is_empty())
        .map(|(id, ps)| TopicPartitions { topic_id: *id, partitions: ps.iter().copied().collect() })
        .collect()
}

fn from_record(topics: &[TopicPartitions]) -> Assignment {
    topics.iter().map(|t| (t.topic_id, t.partitions.iter().copied().collect())).filter(|(_, ps): &(Uuid, BTreeSet<i32>)| !ps.is_empty()).collect()
}

#[derive(Clone, Debug)]
pub struct ConsumerGroup {
    group_id: String,
    group_epoch: i32,
    assignment_epoch: i32,
    metadata_hash: i64,
    members: BTreeMap<String, ConsumerMember>,
    target: BTreeMap<String, Assignment>,
    static_members: BTreeMap<String, String>,
}

impl ConsumerGroup {
    pub fn new(group_id: &str) -> Self {
        ConsumerGroup {
            group_id: group_id.to_string(),
            group_epoch: 0,
            assignment_epoch: 0,
            metadata_hash: 0,
            members: BTreeMap::new(),
            target: BTreeMap::new(),
            static_members: BTreeMap::new(),
        }
    }

    pub fn group_epoch(&self) -> i32 {
        self.group_epoch
    }
    pub fn assignment_epoch(&self) -> i32 {
        self.assignment_epoch
    }
    pub fn members(&self) -> &BTreeMap<String, ConsumerMember> {
        &self.members
    }
    pub fn target(&self, member_id: &str) -> Option<&Assignment> {
        self.target.get(member_id)
    }
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn state(&self) -> ConsumerGroupState {
        if self.members.is_empty() {
            ConsumerGroupState::Empty
        } else if self.group_epoch > self.assignment_epoch {
            ConsumerGroupState::Assigning
        } else if self.members.values().any(|m| m.member_epoch != self.assignment_epoch || m.state != MemberState::Stable) {
            ConsumerGroupState::Reconciling
        } else {
            ConsumerGroupState::Stable
        }
    }

    pub fn subscribed_topic_names(&self) -> BTreeSet<String> {
        self.members.values().flat_map(|m| m.subscribed_topic_names.iter().cloned()).collect()
    }

    /// The member (other than `except`) that still owns a partition, as assigned or pending revocation.
    fn owner_of(&self, topic: &Uuid, partition: i32, except: &str) -> Option<&str> {
        self.members
            .values()
            .filter(|m| m.member_id != except)
            .find(|m| {
                m.assigned.get(topic).is_some_and(|s| s.contains(&partition)) || m.pending_revocation.get(topic).is_some_and(|s| s.contains(&partition))
            })
            .map(|m| m.member_id.as_str())
    }

    pub(crate) fn validate_offset_commit(&self, epoch: i32, member_id: &str) -> Result<(), ResponseError> {
        if member_id.is_empty() && epoch < 0 && self.members.is_empty() {
            return Ok(());
        }
        let member = self.members.get(member_id).ok_or(ResponseError::UnknownMemberId)?;
        if epoch != member.member_epoch {
            return Err(ResponseError::StaleMemberEpoch);
        }
        Ok(())
    }

    /// TxnOffsetCommit (KIP-447): member and epoch are checked only when the request names any of them
    /// (versions before 3 cannot); a stale epoch is ILLEGAL_GENERATION, which transactional producers know.
    pub(crate) fn validate_txn_offset_commit(&self, epoch: i32, member_id: &str, instance_id: Option<&str>) -> Result<(), ResponseError> {
        if epoch < 0 && member_id.is_empty() && instance_id.is_none() {
            return Ok(());
        }
        match self.validate_offset_commit(epoch, member_id) {
            Err(ResponseError::StaleMemberEpoch) => Err(ResponseError::IllegalGeneration),
            other => other,
        }
    }

    pub(crate) fn validate_offset_fetch(&self, member_id: &str, epoch: i32) -> Result<(), ResponseError> {
        let member = self.members.get(member_id).ok_or(ResponseError::UnknownMemberId)?;
        if epoch != member.member_epoch {
            return Err(ResponseError::StaleMemberEpoch);
        }
        Ok(())
    }

    /// The records that delete the whole group.
    pub(crate) fn tombstones(&self) -> Vec<GroupRecord> {
        let mut records = Vec::new();
        for member_id in self.members.keys() {
            records.extend(member_tombstones(&self.group_id, member_id));
        }
        records.push(GroupRecord::ConsumerGroupTargetAssignmentMetadata { group: self.group_id.clone(), value: None });
        records.push(GroupRecord::ConsumerGroupMetadata { group: self.group_id.clone(), value: None });
        records
    }

    /// DescribeGroups (the classic API) on a consumer group: members without metadata.
    pub fn describe_classic(&self) -> DescribedGroup {
        let members = self
            .members
            .values()
            .map(|m| {
                DescribedGroupMember::default()
                    .with_member_id(str_bytes(&m.member_id))
                    .with_group_instance_id(m.instance_id.as_deref().map(str_bytes))
                    .with_client_id(str_bytes(&m.client_id))
                    .with_client_host(str_bytes(&m.client_host))
            })
            .collect();
        DescribedGroup::default()
            .with_group_id(str_bytes(&self.group_id).into())
            .with_group_state(str_bytes(self.state().name()))
            .with_protocol_type(str_bytes("consumer"))
            .with_members(members)
    }

    pub(crate) fn on_loaded(&self, ctx: &mut Ctx) {
        for member in self.members.values() {
            let key = TimerKey::ConsumerSession { group: self.group_id.clone(), member: member.member_id.clone() };
            ctx.out.schedule(key, ctx.now_ms + i64::from(ctx.config.consumer_session_timeout_ms));
        }
    }

    fn preferred_assignor(&self, ctx: &Ctx) -> String {
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(a) = &m.server_assignor {
                *votes.entry(a.as_str()).or_default() += 1;
            }
        }
        votes.into_iter().max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0))).map(|(a, _)| a.to_string()).unwrap_or_else(|| ctx.config.consumer_default_assignor.clone())
    }

    /// A hash of the subscribed topics that exist, with their ids and partition counts (FNV-1a).
    fn metadata_hash_for(&self, topics: &Topics) -> i64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut feed = |bytes: &[u8]| {
            for b in bytes {
                hash ^= u64::from(*b);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        };
        for name in self.subscribed_topic_names() {
            if let Some((id, partitions)) = topics.by_name(&name) {
                feed(name.as_bytes());
                feed(&[0]);
                feed(id.as_bytes());
                feed(&partitions.to_be_bytes());
            }
        }
        hash as i64
    }

    fn compute_target(&self, ctx: &Ctx, topics: &Topics) -> BTreeMap<String, Assignment> {
        let mut partition_counts = BTreeMap::new();
        let subscriptions: BTreeMap<String, MemberSubscription> = self
            .members
            .values()
            .map(|m| {
                let ids: BTreeSet<Uuid> = m
                    .subscribed_topic_names
                    .iter()
                    .filter_map(|n| topics.by_name(n))
                    .map(|(id, count)| {
                        partition_counts.insert(id, count);
                        id
                    })
                    .collect();
                let previous = self.target.get(&m.member_id).cloned().unwrap_or_default();
                (m.member_id.clone(), MemberSubscription { subscribed_topic_ids: ids, previous })
            })
            .collect();
        assignor::assign(&self.preferred_assignor(ctx), &subscriptions, &partition_counts)
    }

    /// Kafka's CurrentAssignmentBuilder: the member's next state given its target and what it says it owns
    /// (`owned` = None when the heartbeat did not say).
    fn reconcile(&self, member: &ConsumerMember, owned: Option<&Assignment>) -> ConsumerMember {
        let owns_any = |pending: &Assignment| match owned {
            None => true,
            Some(owned) => pending.iter().any(|(t, ps)| owned.get(t).is_some_and(|o| !o.is_disjoint(ps))),
        };
        match member.state {
            MemberState::Stable if member.member_epoch == self.assignment_epoch => return member.clone(),
            MemberState::UnrevokedPartitions if owns_any(&member.pending_revocation) => return member.clone(),
            _ => {}
        }
        let empty = Assignment::new();
        let target = self.target.get(&member.member_id).unwrap_or(&empty);
        let mut retained = Assignment::new();
        let mut to_revoke = Assignment::new();
        let mut to_assign = Assignment::new();
        let mut unreleased = false;
        let topics: BTreeSet<&Uuid> = target.keys().chain(member.assigned.keys()).collect();
        for topic in topics {
            let current = member.assigned.get(topic).cloned().unwrap_or_default();
            let wanted = target.get(topic).cloned().unwrap_or_default();
            let keep: BTreeSet<i32> = current.intersection(&wanted).copied().collect();
            let revoke: BTreeSet<i32> = current.difference(&wanted).copied().collect();
            let mut free = BTreeSet::new();
            for &p in wanted.difference(&current) {
                if self.owner_of(topic, p, &member.member_id).is_some() {
                    unreleased = true;
                } else {
                    free.insert(p);
                }
            }
            for (map, set) in [(&mut retained, keep), (&mut to_revoke, revoke), (&mut to_assign, free)] {
                if !set.is_empty() {
                    map.insert(*topic, set);
                }
            }
        }
        let mut next = member.clone();
        if !to_revoke.is_empty() && owns_any(&to_revoke) {
            // Revoke first: the member keeps its epoch and gets nothing new until it has let go.
            next.state = MemberState::UnrevokedPartitions;
            next.assigned = retained;
            next.pending_revocation = to_revoke;
            return next;
        }
        for (topic, ps) in to_assign {
            retained.entry(topic).or_default().extend(ps);
        }
        next.state = if unreleased { MemberState::UnreleasedPartitions } else { MemberState::Stable };
        if next.member_epoch != self.assignment_epoch {
            next.previous_member_epoch = next.member_epoch;
            next.member_epoch = self.assignment_epoch;
        }
        next.assigned = retained;
        next.pending_revocation = Assignment::new();
        next
    }
}

fn member_tombstones(group: &str, member_id: &str) -> [GroupRecord; 3] {
    [
        GroupRecord::ConsumerGroupCurrentMemberAssignment { group: group.to_string(), member_id: member_id.to_string(), value: None },
        GroupRecord::ConsumerGroupTargetAssignmentMember { group: group.to_string(), member_id: member_id.to_string(), value: None },
        GroupRecord::ConsumerGroupMemberMetadata { group: group.to_string(), member_id: member_id.to_string(), value: None },
    ]
}

/// Applies a KIP-848 record, live or from the log.
pub(crate) fn replay(groups: &mut BTreeMap<String, Group>, record: GroupRecord) {
    let group_id = record.group_id().to_string();
    if let GroupRecord::ConsumerGroupMetadata { value: None, .. } = &record {
        if matches!(groups.get(&group_id), Some(Group::Consumer(_))) {
            groups.remove(&group_id);
        }
        return;
    }
    if record.is_tombstone() && !matches!(groups.get(&group_id), Some(Group::Consumer(_))) {
        return;
    }
    if !matches!(groups.get(&group_id), Some(Group::Consumer(_))) {
        groups.insert(group_id.clone(), Group::Consumer(ConsumerGroup::new(&group_id)));
    }
    let Some(Group::Consumer(group)) = groups.get_mut(&group_id) else { return };
    match record {
        GroupRecord::ConsumerGroupMetadata { value: Some(v), .. } => {
            group.group_epoch = v.epoch;
            group.metadata_hash = v.metadata_hash;
        }
        GroupRecord::ConsumerGroupMemberMetadata { member_id, value, .. } => match value {
            Some(v) => {
                let member = group.members.entry(member_id.clone()).or_insert_with(|| ConsumerMember::new(&member_id));
                member.instance_id = v.instance_id;
                member.rack_id = v.rack_id;
                member.client_id = v.client_id;
                member.client_host = v.client_host;
                member.subscribed_topic_names = v.subscribed_topic_names;
                member.rebalance_timeout_ms = v.rebalance_timeout_ms;
                member.server_assignor = v.server_assignor;
                if let Some(instance) = &member.instance_id {
                    group.static_members.insert(instance.clone(), member_id);
                }
            }
            None => {
                if let Some(member) = group.members.remove(&member_id) {
                    if let Some(instance) = member.instance_id {
                        if group.static_members.get(&instance) == Some(&member_id) {
                            group.static_members.remove(&instance);
                        }
                    }
                }
            }
        },
        GroupRecord::ConsumerGroupTargetAssignmentMetadata { value: Some(epoch), .. } => group.assignment_epoch = epoch,
        GroupRecord::ConsumerGroupTargetAssignmentMember { member_id, value, .. } => match value {
            Some(topics) => {
                group.target.insert(member_id, from_record(&topics));
            }
            None => {
                group.target.remove(&member_id);
            }
        },
        GroupRecord::ConsumerGroupCurrentMemberAssignment { member_id, value, .. } => {
            let member = group.members.entry(member_id.clone()).or_insert_with(|| ConsumerMember::new(&member_id));
            match value {
                Some(v) => {
                    member.member_epoch = v.member_epoch;
                    member.previous_member_epoch = v.previous_member_epoch;
                    member.state = MemberState::from_code(v.state);
                    member.assigned = from_record(&v.assigned_partitions);
                    member.pending_revocation = from_record(&v.partitions_pending_revocation);
                }
                None => {
                    member.assigned.clear();
                    member.pending_revocation.clear();
                }
            }
        }
        _ => {}
    }
}

fn apply_all(groups: &mut BTreeMap<String, Group>, ctx: &mut Ctx, records: Vec<GroupRecord>) {
    for record in &records {
        replay(groups, record.clone());
    }
    ctx.out.append(records);
}

fn response_assignment(assignment: &Assignment) -> ResponseAssignment {
    ResponseAssignment::default().with_topic_partitions(
        assignment
            .iter()
            .map(|(id, ps)| ResponseTopicPartitions::default().with_topic_id(*id).with_partitions(ps.iter().copied().collect()))
            .collect(),
    )
}

fn heartbeat_error(error: ResponseError, message: Option<&str>) -> ConsumerGroupHeartbeatResponse {
    ConsumerGroupHeartbeatResponse::default().with_error_code(code(error)).with_error_message(message.map(str_bytes))
}

/// Removes a member for good (leave, session expiry, revocation timeout): its records go, the group epoch
/// bumps so the others get its partitions.
fn fence_member(groups: &mut BTreeMap<String, Group>, ctx: &mut Ctx, group_id: &str, member_id: &str) {
    let Some(Group::Consumer(group)) = groups.get(group_id) else { return };
    if !group.members.contains_key(member_id) {
        return;
    }
    let mut records: Vec<GroupRecord> = member_tombstones(group_id, member_id).into();
    records.push(GroupRecord::ConsumerGroupMetadata {
        group: group_id.to_string(),
        value: Some(ConsumerGroupMetadataValue { epoch: group.group_epoch + 1, metadata_hash: group.metadata_hash }),
    });
    ctx.out.cancel(TimerKey::ConsumerSession { group: group_id.to_string(), member: member_id.to_string() });
    apply_all(groups, ctx, records);
}

pub(crate) fn on_timer(groups: &mut BTreeMap<String, Group>, ctx: &mut Ctx, key: &TimerKey) {
    match key {
        TimerKey::ConsumerSession { group, member } => fence_member(groups, ctx, group, member),
        TimerKey::ConsumerRevocation { group, member, epoch } => {
            let late = match groups.get(group) {
                Some(Group::Consumer(g)) => g.members.get(member).is_some_and(|m| m.state == MemberState::UnrevokedPartitions && m.member_epoch == *epoch),
                _ => false,
            };
            if late {
                fence_member(groups, ctx, group, member);
            }
        }
        _ => {}
    }
}

pub(crate) fn heartbeat(
    groups: &mut BTreeMap<String, Group>,
    ctx: &mut Ctx,
    request_id: RequestId,
    client: &ClientInfo,
    topics: &Topics,
    request: ConsumerGroupHeartbeatRequest,
) {
    let response = match heartbeat_inner(groups, ctx, client, topics, &request) {
        Ok(response) => response,
        Err((error, message)) => heartbeat_error(error, message.as_deref()),
    };
    ctx.out.reply(request_id, Reply::ConsumerGroupHeartbeat(response));
}

type HeartbeatError = (ResponseError, Option<String>);

fn invalid(message: &str) -> HeartbeatError {
    (ResponseError::InvalidRequest, Some(message.to_string()))
}

fn heartbeat_inner(
    groups: &mut BTreeMap<String, Group>,
    ctx: &mut Ctx,
    client: &ClientInfo,
    topics: &Topics,
    request: &ConsumerGroupHeartbeatRequest,
) -> Result<ConsumerGroupHeartbeatResponse, HeartbeatError> {
    let group_id = request.group_id.as_str().to_string();
    let epoch = request.member_epoch;
    let instance_id = request.instance_id.as_ref().map(|s| s.as_str().to_string());
    if group_id.is_empty() {
        return Err(invalid("GroupId can't be empty."));
    }
    // librdkafka sends an empty regex when it subscribes by name; only a non-empty one is a regex.
    if request.subscribed_topic_regex.as_ref().is_some_and(|r| !r.is_empty()) {
        return Err(invalid("SubscribedTopicRegex is not supported by this broker; subscribe to topic names."));
    }
    if epoch == 0 {
        if request.rebalance_timeout_ms == -1 {
            return Err(invalid("RebalanceTimeoutMs must be provided in first request."));
        }
        if request.topic_partitions.as_ref().is_some_and(|t| !t.is_empty()) {
            return Err(invalid("TopicPartitions must be empty when (re-)joining."));
        }
        if request.subscribed_topic_names.is_none() {
            return Err(invalid("SubscribedTopicNames must be set in first request."));
        }
    } else if request.member_id.is_empty() {
        return Err(invalid("MemberId can't be empty."));
    } else if epoch < STATIC_LEAVE_EPOCH {
        return Err(invalid("MemberEpoch is invalid."));
    } else if epoch == STATIC_LEAVE_EPOCH && instance_id.is_none() {
        return Err(invalid("InstanceId can't be null when leaving with epoch -2."));
    }
    if let Some(assignor) = &request.server_assignor {
        if !assignor::is_known(assignor.as_str()) {
            return Err((ResponseError::UnsupportedAssignor, Some(format!("ServerAssignor {} is not supported.", assignor.as_str()))));
        }
    }

    match groups.get(&group_id) {
        Some(Group::Consumer(_)) => {}
        Some(Group::Classic(classic)) if epoch == 0 && classic.is_empty() => {
            groups.insert(group_id.clone(), Group::Consumer(ConsumerGroup::new(&group_id)));
        }
        Some(Group::Classic(_)) => {
            return Err((ResponseError::GroupIdNotFound, Some(format!("Group {group_id} is not a consumer group."))));
        }
        None if epoch == 0 => {
            groups.insert(group_id.clone(), Group::Consumer(ConsumerGroup::new(&group_id)));
        }
        None => return Err((ResponseError::GroupIdNotFound, Some(format!("Group {group_id} not found.")))),
    }
    let Some(Group::Consumer(group)) = groups.get(&group_id) else { return Err((ResponseError::GroupIdNotFound, None)) };
    let mut records = Vec::new();

    // Leaving.
    if epoch == LEAVE_EPOCH || epoch == STATIC_LEAVE_EPOCH {
        let member_id = request.member_id.as_str().to_string();
        let member = group.members.get(&member_id).ok_or((ResponseError::UnknownMemberId, None))?;
        if epoch == LEAVE_EPOCH {
            fence_member(groups, ctx, &group_id, &member_id);
        } else {
            if member.instance_id != instance_id {
                return Err((ResponseError::FencedInstanceId, None));
            }
            // The static member comes back soon: it keeps its partitions, with a marker epoch.
            let mut left = member.clone();
            left.member_epoch = STATIC_LEAVE_EPOCH;
            records.push(GroupRecord::ConsumerGroupCurrentMemberAssignment {
                group: group_id.clone(),
                member_id: member_id.clone(),
                value: Some(left.assignment_value()),
            });
            apply_all(groups, ctx, records);
        }
        return Ok(ConsumerGroupHeartbeatResponse::default().with_member_id(Some(str_bytes(&member_id))).with_member_epoch(epoch));
    }

    // Who is this member?
    let mut member: ConsumerMember;
    let mut is_new = false;
    let mut replaced_static: Option<String> = None;
    if epoch == 0 {
        let static_owner = instance_id.as_ref().and_then(|i| group.static_members.get(i));
        match static_owner.and_then(|id| group.members.get(id)) {
            Some(previous) if previous.member_epoch != STATIC_LEAVE_EPOCH && previous.member_id != request.member_id.as_str() => {
                return Err((ResponseError::UnreleasedInstanceId, Some(format!("Static member {} is still in use.", instance_id.clone().unwrap_or_default()))));
            }
            Some(previous) => {
                // A new incarnation of a static member takes over the previous one's assignment and epoch.
                let new_id = if request.member_id.is_empty() { (ctx.new_uuid)().to_string() } else { request.member_id.as_str().to_string() };
                member = previous.clone();
                member.member_id = new_id;
                if member.member_epoch == STATIC_LEAVE_EPOCH {
                    member.member_epoch = member.previous_member_epoch.max(0);
                }
                if previous.member_id != member.member_id {
                    replaced_static = Some(previous.member_id.clone());
                    is_new = true;
                }
            }
            None => {
                if group.members.len() >= ctx.config.consumer_max_size && !group.members.contains_key(request.member_id.as_str()) {
                    return Err((ResponseError::GroupMaxSizeReached, None));
                }
                let new_id = if request.member_id.is_empty() { (ctx.new_uuid)().to_string() } else { request.member_id.as_str().to_string() };
                // A known member rejoining with epoch 0 starts over: it lost its partitions.
                member = ConsumerMember::new(&new_id);
                is_new = true;
            }
        }
    } else {
        let current = group.members.get(request.member_id.as_str()).ok_or((ResponseError::UnknownMemberId, None))?;
        if current.instance_id.is_some() && current.instance_id != instance_id {
            return Err((ResponseError::FencedInstanceId, None));
        }
        if epoch > current.member_epoch {
            return Err((ResponseError::FencedMemberEpoch, None));
        }
        if epoch < current.member_epoch {
            // Allowed only if the member missed the response that bumped it and owns nothing it should not.
            let owned_ok = request.topic_partitions.as_ref().is_none_or(|owned| {
                owned.iter().all(|t| t.partitions.iter().all(|p| current.assigned.get(&t.topic_id).is_some_and(|s| s.contains(p))))
            });
            if epoch != current.previous_member_epoch || !owned_ok {
                return Err((ResponseError::FencedMemberEpoch, None));
            }
        }
        member = current.clone();
    }

    // Subscription.
    let before = member.metadata_value();
    member.instance_id = instance_id.clone().or(member.instance_id);
    member.client_id = client.client_id.clone();
    member.client_host = client.client_host.clone();
    if let Some(rack) = &request.rack_id {
        member.rack_id = Some(rack.as_str().to_string());
    }
    if request.rebalance_timeout_ms != -1 {
        member.rebalance_timeout_ms = request.rebalance_timeout_ms;
    }
    if let Some(names) = &request.subscribed_topic_names {
        let mut names: Vec<String> = names.iter().map(|n| n.as_str().to_string()).collect();
        names.sort();
        names.dedup();
        member.subscribed_topic_names = names;
    }
    if let Some(assignor) = &request.server_assignor {
        member.server_assignor = Some(assignor.as_str().to_string());
    }
    let subscription_changed = is_new
        || before.subscribed_topic_names != member.subscribed_topic_names
        || before.server_assignor != member.server_assignor;
    if let Some(old_id) = &replaced_static {
        records.extend(member_tombstones(&group_id, old_id));
    }
    if is_new || before != member.metadata_value() {
        records.push(GroupRecord::ConsumerGroupMemberMetadata {
            group: group_id.clone(),
            member_id: member.member_id.clone(),
            value: Some(member.metadata_value()),
        });
    }
    // A replaced static member keeps the previous target; moving it needs no new assignment.
    if let Some(old_id) = &replaced_static {
        if let Some(target) = group.target.get(old_id) {
            records.push(GroupRecord::ConsumerGroupTargetAssignmentMember {
                group: group_id.clone(),
                member_id: member.member_id.clone(),
                value: Some(to_record(target)),
            });
        }
    }
    apply_all(groups, ctx, std::mem::take(&mut records));
    let Some(Group::Consumer(group)) = groups.get(&group_id) else { return Err((ResponseError::GroupIdNotFound, None)) };

    // Group epoch: bump when membership or subscriptions or the subscribed topics changed.
    let hash = group.metadata_hash_for(topics);
    if (subscription_changed && replaced_static.is_none()) || hash != group.metadata_hash {
        records.push(GroupRecord::ConsumerGroupMetadata {
            group: group_id.clone(),
            value: Some(ConsumerGroupMetadataValue { epoch: group.group_epoch + 1, metadata_hash: hash }),
        });
        apply_all(groups, ctx, std::mem::take(&mut records));
    }
    let Some(Group::Consumer(group)) = groups.get(&group_id) else { return Err((ResponseError::GroupIdNotFound, None)) };

    // Target assignment.
    if group.group_epoch > group.assignment_epoch {
        let target = group.compute_target(ctx, topics);
        for (member_id, assignment) in &target {
            if group.target.get(member_id) != Some(assignment) {
                records.push(GroupRecord::ConsumerGroupTargetAssignmentMember {
                    group: group_id.clone(),
                    member_id: member_id.clone(),
                    value: Some(to_record(assignment)),
                });
            }
        }
        records.push(GroupRecord::ConsumerGroupTargetAssignmentMetadata { group: group_id.clone(), value: Some(group.group_epoch) });
        apply_all(groups, ctx, std::mem::take(&mut records));
    }
    let Some(Group::Consumer(group)) = groups.get(&group_id) else { return Err((ResponseError::GroupIdNotFound, None)) };

    // Reconciliation.
    let member_id = member.member_id.clone();
    // `member` is the member as it now stands, with the assignment it had (none if it is new).
    let current = member;
    let owned: Option<Assignment> =
        request.topic_partitions.as_ref().map(|tps| tps.iter().map(|t| (t.topic_id, t.partitions.iter().copied().collect())).collect());
    let next = group.reconcile(&current, owned.as_ref());
    let assignment_changed = next.assigned != current.assigned || is_new;
    if next != current || is_new {
        records.push(GroupRecord::ConsumerGroupCurrentMemberAssignment {
            group: group_id.clone(),
            member_id: member_id.clone(),
            value: Some(next.assignment_value()),
        });
        apply_all(groups, ctx, records);
    }
    if let Some(old_id) = replaced_static {
        ctx.out.cancel(TimerKey::ConsumerSession { group: group_id.clone(), member: old_id });
    }
    ctx.out.schedule(
        TimerKey::ConsumerSession { group: group_id.clone(), member: member_id.clone() },
        ctx.now_ms + i64::from(ctx.config.consumer_session_timeout_ms),
    );
    if next.state == MemberState::UnrevokedPartitions && (current.state != MemberState::UnrevokedPartitions || is_new) {
        let timeout = i64::from(next.rebalance_timeout_ms.max(0));
        ctx.out.schedule(TimerKey::ConsumerRevocation { group: group_id.clone(), member: member_id.clone(), epoch: next.member_epoch }, ctx.now_ms + timeout);
    }

    // The assignment goes out on a full request (join, or after an error) or when it changed.
    let full_request = epoch == 0 || (request.rebalance_timeout_ms != -1 && request.subscribed_topic_names.is_some() && request.topic_partitions.is_some());
    let response = ConsumerGroupHeartbeatResponse::default()
        .with_member_id(Some(str_bytes(&member_id)))
        .with_member_epoch(next.member_epoch)
        .with_heartbeat_interval_ms(ctx.config.consumer_heartbeat_interval_ms)
        .with_assignment((full_request || assignment_changed).then(|| response_assignment(&next.assigned)));
    Ok(response)
}

pub(crate) fn describe(groups: &BTreeMap<String, Group>, group_id: &str, topics: &Topics) -> describe_response::DescribedGroup {
    let answer = describe_response::DescribedGroup::default().with_group_id(str_bytes(group_id).into());
    let group = match groups.get(group_id) {
        Some(Group::Consumer(group)) => group,
        Some(Group::Classic(_)) => {
            return answer
                .with_error_code(code(ResponseError::GroupIdNotFound))
                .with_error_message(Some(str_bytes(&format!("Group {group_id} is not a consumer group."))))
        }
        None => {
            return answer
                .with_error_code(code(ResponseError::GroupIdNotFound))
                .with_error_message(Some(str_bytes(&format!("Group {group_id} not found."))))
        }
    };
    let describe_assignment = |a: &Assignment| {
        describe_response::Assignment::default().with_topic_partitions(
            a.iter()
                .map(|(id, ps)| {
                    describe_response::TopicPartitions::default()
                        .with_topic_id(*id)
                        .with_topic_name(str_bytes(topics.by_id(id).map_or("", |(n, _)| n)).into())
                        .with_partitions(ps.iter().copied().collect())
                })
                .collect(),
        )
    };
    let members = group
        .members
        .values()
        .map(|m| {
            describe_response::Member::default()
                .with_member_id(str_bytes(&m.member_id))
                .with_instance_id(m.instance_id.as_deref().map(str_bytes))
                .with_rack_id(m.rack_id.as_deref().map(str_bytes))
                .with_member_epoch(m.member_epoch)
                .with_client_id(str_bytes(&m.client_id))
                .with_client_host(str_bytes(&m.client_host))
                .with_subscribed_topic_names(m.subscribed_topic_names.iter().map(|n| str_bytes(n).into()).collect())
                .with_assignment(describe_assignment(&m.assigned))
                .with_target_assignment(describe_assignment(group.target.get(&m.member_id).unwrap_or(&Assignment::new())))
        })
        .collect();
    answer
        .with_group_state(str_bytes(group.state().name()))
        .with_group_epoch(group.group_epoch)
        .with_assignment_epoch(group.assignment_epoch)
        .with_assignor_name(str_bytes(&group.members.values().find_map(|m| m.server_assignor.clone()).unwrap_or_else(|| assignor::UNIFORM.to_string())))
        .with_members(members)
}
