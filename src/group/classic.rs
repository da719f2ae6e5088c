//! Classic consumer groups (JoinGroup/SyncGroup/Heartbeat/LeaveGroup) with the semantics of Kafka's
//! GroupMetadataManager and ClassicGroup (3.7+/4.x).
//!
//! States: Empty → PreparingRebalance (members join; the join phase ends when every known member has rejoined,
//! or at the rebalance timeout, or — for a group that was Empty — after group.initial.rebalance.delay.ms,
//! extended while new members keep arriving, up to the rebalance timeout) → CompletingRebalance (generation
//! bumped, protocol chosen by vote, leader gets every member's metadata; members wait in SyncGroup) → Stable
//! (the leader's SyncGroup brought the assignments; they are written as a GroupMetadata record before anyone is
//! answered) → back to PreparingRebalance when a member joins, changes its protocols, leaves or expires.
//! Dead only exists for groups being removed.
//!
//! Join flows: v4+ dynamic members first get MEMBER_ID_REQUIRED with a fresh "client_id-uuid" id and must
//! rejoin with it (within the session timeout); v0-3 and static members (group.instance.id) join directly.
//! A static member rejoining with an unknown member id replaces the previous incarnation (whose member id is
//! fenced with FENCED_INSTANCE_ID); in a Stable group whose chosen protocol would not change this costs no
//! rebalance, the group is only rewritten.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use super::records::{GroupMemberMetadata, GroupMetadataValue, GroupRecord};
use super::{code, str_bytes, ClientInfo, Ctx, Group, Reply, RequestId, TimerKey};

/// The protocol type of consumers; only its subscriptions can be read to protect subscribed offsets.
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClassicState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl ClassicState {
    /// The names Kafka uses in DescribeGroups and ListGroups.
    pub fn name(self) -> &'static str {
        match self {
            ClassicState::Empty => "Empty",
            ClassicState::PreparingRebalance => "PreparingRebalance",
            ClassicState::CompletingRebalance => "CompletingRebalance",
            ClassicState::Stable => "Stable",
            ClassicState::Dead => "Dead",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassicMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub protocol_type: String,
    /// (name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    /// A JoinGroup waiting for the join phase to end.
    pub pending_join: Option<RequestId>,
    /// A SyncGroup waiting for the leader's assignment.
    pub pending_sync: Option<RequestId>,
    /// Joined but not yet through a completed join phase: expires after the new-member timeout.
    pub is_new: bool,
}

impl ClassicMember {
    fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols.iter().find(|(name, _)| name == protocol).map(|(_, m)| m.clone()).unwrap_or_default()
    }

    fn matches(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }
}

#[derive(Clone, Debug)]
pub struct ClassicGroup {
    group_id: String,
    state: ClassicState,
    previous_state: ClassicState,
    state_timestamp_ms: i64,
    generation: i32,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, ClassicMember>,
    /// group.instance.id → member id.
    static_members: BTreeMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, not yet joined.
    pending_members: BTreeSet<String>,
    /// Members of the current generation that have not sent SyncGroup yet.
    pending_sync_members: BTreeSet<String>,
    /// A member joined during the initial delay, so the delay may be extended.
    new_member_added: bool,
    /// How much longer the initial delay may still be extended.
    initial_delay_remaining_ms: i64,
}

fn join_error(member_id: &str, error: ResponseError) -> JoinGroupResponse {
    JoinGroupResponse::default()
        .with_error_code(code(error))
        .with_generation_id(-1)
        .with_protocol_name(None)
        .with_member_id(str_bytes(member_id))
}

fn sync_error(error: ResponseError) -> SyncGroupResponse {
    SyncGroupResponse::default().with_error_code(code(error))
}

/// The topics of a ConsumerProtocolSubscription (versions 0-3 share the prefix: int16 version, then an int32
/// count of int16-length topic names). `None` if the bytes are not one.
pub fn subscription_topics(metadata: &[u8]) -> Option<BTreeSet<String>> {
    let mut buf = metadata.get(2..)?;
    let take = |buf: &mut &[u8], n: usize| -> Option<Vec<u8>> {
        let head = buf.get(..n)?.to_vec();
        *buf = &buf[n..];
        Some(head)
    };
    let count = i32::from_be_bytes(take(&mut buf, 4)?.try_into().ok()?);
    if count < 0 || count as usize > buf.len() / 2 {
        return None;
    }
    let mut topics = BTreeSet::new();
    for _ in 0..count {
        let len = i16::from_be_bytes(take(&mut buf, 2)?.try_into().ok()?);
        let name = take(&mut buf, usize::try_from(len).ok()?)?;
        topics.insert(String::from_utf8(name).ok()?);
    }
    Some(topics)
}

impl ClassicGroup {
    pub fn new(group_id: &str, now_ms: i64) -> Self {
        ClassicGroup {
            group_id: group_id.to_string(),
            state: ClassicState::Empty,
            previous_state: ClassicState::Empty,
            state_timestamp_ms: now_ms,
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: BTreeMap::new(),
            static_members: BTreeMap::new(),
            pending_members: BTreeSet::new(),
            pending_sync_members: BTreeSet::new(),
            new_member_added: false,
            initial_delay_remaining_ms: 0,
        }
    }

    /// Rebuilds a group from its last GroupMetadata record: Stable with its members, or Empty.
    pub fn from_record(group_id: &str, value: GroupMetadataValue) -> Self {
        let mut group = ClassicGroup::new(group_id, value.current_state_timestamp_ms);
        group.generation = value.generation;
        group.protocol_type = Some(value.protocol_type.clone()).filter(|t| !t.is_empty());
        group.protocol_name = value.protocol.clone();
        group.leader = value.leader.clone();
        for m in value.members {
            if let Some(instance) = &m.group_instance_id {
                group.static_members.insert(instance.clone(), m.member_id.clone());
            }
            let protocols = vec![(value.protocol.clone().unwrap_or_default(), m.subscription)];
            group.members.insert(
                m.member_id.clone(),
                ClassicMember {
                    member_id: m.member_id,
                    group_instance_id: m.group_instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    protocol_type: value.protocol_type.clone(),
                    protocols,
                    assignment: m.assignment,
                    pending_join: None,
                    pending_sync: None,
                    is_new: false,
                },
            );
        }
        group.state = if group.members.is_empty() { ClassicState::Empty } else { ClassicState::Stable };
        group
    }

    pub fn group_id(&self) -> &str {
        &self.group_id
    }
    pub fn state(&self) -> ClassicState {
        self.state
    }
    pub fn generation(&self) -> i32 {
        self.generation
    }
    pub fn leader(&self) -> Option<&str> {
        self.leader.as_deref()
    }
    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }
    pub fn protocol_name(&self) -> Option<&str> {
        self.protocol_name.as_deref()
    }
    pub fn members(&self) -> &BTreeMap<String, ClassicMember> {
        &self.members
    }
    pub fn is_empty(&self) -> bool {
        self.state == ClassicState::Empty || (self.members.is_empty() && self.pending_members.is_empty())
    }

    fn transition(&mut self, ctx: &Ctx, to: ClassicState) {
        self.previous_state = self.state;
        self.state = to;
        self.state_timestamp_ms = ctx.now_ms;
    }

    fn rebalance_timeout_ms(&self) -> i64 {
        self.members.values().map(|m| i64::from(m.rebalance_timeout_ms)).max().unwrap_or(0)
    }

    fn awaiting_join_count(&self) -> usize {
        self.members.values().filter(|m| m.pending_join.is_some()).count()
    }

    fn has_all_members_joined(&self) -> bool {
        self.members.len() == self.awaiting_join_count() && self.pending_members.is_empty()
    }

    fn supports_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|(name, _)| self.members.values().all(|m| m.protocols.iter().any(|(n, _)| n == name)))
    }

    /// The protocol every member supports that most members prefer (ties: the smaller name).
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|name| self.members.values().all(|m| m.protocols.iter().any(|(n, _)| n == *name)))
            .collect();
        let mut votes: BTreeMap<&String, usize> = BTreeMap::new();
        for member in self.members.values() {
            if let Some((name, _)) = member.protocols.iter().find(|(n, _)| candidates.contains(&n)) {
                *votes.entry(name).or_default() += 1;
            }
        }
        votes.into_iter().max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0))).map(|(name, _)| name.clone())
    }

    /// Topics the members subscribe to, if the protocol is "consumer" and every subscription parses.
    pub fn subscribed_topics(&self) -> Option<BTreeSet<String>> {
        if self.protocol_type.as_deref() != Some(CONSUMER_PROTOCOL_TYPE) {
            return None;
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut topics = BTreeSet::new();
        for member in self.members.values() {
            topics.extend(subscription_topics(&member.metadata(protocol))?);
        }
        Some(topics)
    }

    fn validate_member(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), ResponseError> {
        match instance_id {
            Some(instance) => match self.static_members.get(instance) {
                Some(current) if current != member_id => Err(ResponseError::FencedInstanceId),
                Some(_) => Ok(()),
                None => Err(ResponseError::UnknownMemberId),
            },
            None if self.members.contains_key(member_id) => Ok(()),
            None => Err(ResponseError::UnknownMemberId),
        }
    }

    /// OffsetCommit and, with `transactional`, TxnOffsetCommit (Kafka's validateOffsetCommit): a transactional
    /// commit naming no member is accepted (versions before 3 cannot name one) and is not refused mid-rebalance.
    pub(crate) fn validate_offset_commit(&self, generation: i32, member_id: &str, instance_id: Option<&str>, transactional: bool) -> Result<(), ResponseError> {
        if self.state == ClassicState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if generation < 0 && self.state == ClassicState::Empty {
            // A "simple" consumer (assign + commit) or the admin client.
            return Ok(());
        }
        if generation >= 0 || !member_id.is_empty() || instance_id.is_some() {
            self.validate_member(member_id, instance_id)?;
            if generation != self.generation {
                return Err(ResponseError::IllegalGeneration);
            }
        } else if !transactional {
            return Err(ResponseError::UnknownMemberId);
        }
        if !transactional && self.state == ClassicState::CompletingRebalance {
            return Err(ResponseError::RebalanceInProgress);
        }
        Ok(())
    }

    /// Which topics' offsets OffsetDelete must refuse: `Ok(None)` = none (the group is Empty).
    pub(crate) fn offset_delete_check(&self) -> Result<Option<BTreeSet<String>>, ResponseError> {
        match self.state {
            ClassicState::Dead => Err(ResponseError::GroupIdNotFound),
            ClassicState::Empty => Ok(None),
            _ => match self.subscribed_topics() {
                Some(topics) => Ok(Some(topics)),
                None => Err(ResponseError::NonEmptyGroup),
            },
        }
    }

    pub fn describe(&self) -> DescribedGroup {
        let stable = self.state == ClassicState::Stable;
        let protocol = if stable { self.protocol_name.clone().unwrap_or_default() } else { String::new() };
        let members = self
            .members
            .values()
            .map(|m| {
                let described = DescribedGroupMember::default()
                    .with_member_id(str_bytes(&m.member_id))
                    .with_group_instance_id(m.group_instance_id.as_deref().map(str_bytes))
                    .with_client_id(str_bytes(&m.client_id))
                    .with_client_host(str_bytes(&m.client_host));
                if stable {
                    described.with_member_metadata(m.metadata(&protocol)).with_member_assignment(m.assignment.clone())
                } else {
                    described
                }
            })
            .collect();
        DescribedGroup::default()
            .with_group_id(str_bytes(&self.group_id).into())
            .with_group_state(str_bytes(self.state.name()))
            .with_protocol_type(str_bytes(self.protocol_type.as_deref().unwrap_or("")))
            .with_protocol_data(str_bytes(&protocol))
            .with_members(members)
    }

    /// The GroupMetadata record of the group as it is now.
    fn metadata_record(&self) -> GroupRecord {
        let protocol = self.protocol_name.clone();
        let members = self
            .members
            .values()
            .map(|m| GroupMemberMetadata {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                session_timeout_ms: m.session_timeout_ms,
                subscription: protocol.as_deref().map(|p| m.metadata(p)).unwrap_or_default(),
                assignment: m.assignment.clone(),
            })
            .collect();
        GroupRecord::GroupMetadata {
            group: self.group_id.clone(),
            value: Some(GroupMetadataValue {
                protocol_type: self.protocol_type.clone().unwrap_or_default(),
                generation: self.generation,
                protocol,
                leader: self.leader.clone(),
                current_state_timestamp_ms: self.state_timestamp_ms,
                members,
            }),
        }
    }

    fn heartbeat_key(&self, member_id: &str) -> TimerKey {
        TimerKey::ClassicHeartbeat { group: self.group_id.clone(), member: member_id.to_string() }
    }

    fn reschedule_heartbeat(&self, ctx: &mut Ctx, member_id: &str, timeout_ms: i64) {
        ctx.out.schedule(self.heartbeat_key(member_id), ctx.now_ms + timeout_ms);
    }

    fn reschedule_session(&self, ctx: &mut Ctx, member_id: &str) {
        if let Some(member) = self.members.get(member_id) {
            let timeout = if member.is_new { ctx.config.new_member_join_timeout_ms } else { member.session_timeout_ms };
            self.reschedule_heartbeat(ctx, member_id, i64::from(timeout));
        }
    }

    /// The answer to a member of the generation that just completed its join phase.
    fn join_response(&self, member_id: &str, skip_assignment: bool) -> JoinGroupResponse {
        let is_leader = self.leader.as_deref() == Some(member_id);
        let protocol = self.protocol_name.clone().unwrap_or_default();
        let members = if is_leader {
            self.members
                .values()
                .map(|m| {
                    JoinGroupResponseMember::default()
                        .with_member_id(str_bytes(&m.member_id))
                        .with_group_instance_id(m.group_instance_id.as_deref().map(str_bytes))
                        .with_metadata(m.metadata(&protocol))
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinGroupResponse::default()
            .with_generation_id(self.generation)
            .with_protocol_type(self.protocol_type.as_deref().map(str_bytes))
            .with_protocol_name(self.protocol_name.as_deref().map(str_bytes))
            .with_leader(str_bytes(self.leader.as_deref().unwrap_or("")))
            .with_skip_assignment(skip_assignment)
            .with_member_id(str_bytes(member_id))
            .with_members(members)
    }

    fn add_member(&mut self, member: ClassicMember) {
        if self.members.is_empty() {
            self.protocol_type = Some(member.protocol_type.clone());
        }
        if self.leader.is_none() {
            self.leader = Some(member.member_id.clone());
        }
        if let Some(instance) = &member.group_instance_id {
            self.static_members.insert(instance.clone(), member.member_id.clone());
        }
        self.members.insert(member.member_id.clone(), member);
    }

    /// Removes a member, answering its waiting requests with `error` and stopping its session timer.
    fn remove_member(&mut self, ctx: &mut Ctx, member_id: &str, error: ResponseError) -> Option<ClassicMember> {
        let member = self.members.remove(member_id)?;
        if let Some(request) = member.pending_join {
            ctx.out.reply(request, Reply::JoinGroup(join_error(member_id, error)));
        }
        if let Some(request) = member.pending_sync {
            ctx.out.reply(request, Reply::SyncGroup(sync_error(error)));
        }
        if let Some(instance) = &member.group_instance_id {
            if self.static_members.get(instance).map(String::as_str) == Some(member_id) {
                self.static_members.remove(instance);
            }
        }
        self.pending_sync_members.remove(member_id);
        if self.leader.as_deref() == Some(member_id) {
            self.leader = self.members.keys().next().cloned();
        }
        ctx.out.cancel(self.heartbeat_key(member_id));
        Some(member)
    }

    /// After members left or expired: rebalance, or finish a join phase that was only waiting for them.
    fn after_member_removal(&mut self, ctx: &mut Ctx) {
        match self.state {
            ClassicState::Stable | ClassicState::CompletingRebalance => self.prepare_rebalance(ctx),
            ClassicState::PreparingRebalance => self.maybe_complete_join_phase(ctx),
            ClassicState::Empty | ClassicState::Dead => {}
        }
    }

    fn prepare_rebalance(&mut self, ctx: &mut Ctx) {
        if self.state == ClassicState::CompletingRebalance {
            // The assignment being synced is obsolete: waiting followers must rejoin.
            for member in self.members.values_mut() {
                member.assignment = Bytes::new();
                if let Some(request) = member.pending_sync.take() {
                    ctx.out.reply(request, Reply::SyncGroup(sync_error(ResponseError::RebalanceInProgress)));
                }
            }
        }
        ctx.out.cancel(TimerKey::ClassicSync { group: self.group_id.clone(), generation: self.generation });
        self.pending_sync_members.clear();
        let initial = self.state == ClassicState::Empty;
        self.transition(ctx, ClassicState::PreparingRebalance);
        let join_key = TimerKey::ClassicJoin { group: self.group_id.clone() };
        if initial {
            let delay = i64::from(ctx.config.initial_rebalance_delay_ms);
            self.new_member_added = false;
            self.initial_delay_remaining_ms = (self.rebalance_timeout_ms() - delay).max(0);
            ctx.out.schedule(join_key, ctx.now_ms + delay);
        } else if self.has_all_members_joined() {
            ctx.out.cancel(join_key);
            self.complete_join(ctx);
        } else {
            ctx.out.schedule(join_key, ctx.now_ms + self.rebalance_timeout_ms());
        }
    }

    fn maybe_complete_join_phase(&mut self, ctx: &mut Ctx) {
        // During the initial delay only the timer ends the phase, so late members still make the first generation.
        if self.state == ClassicState::PreparingRebalance && self.has_all_members_joined() && self.previous_state != ClassicState::Empty {
            ctx.out.cancel(TimerKey::ClassicJoin { group: self.group_id.clone() });
            self.complete_join(ctx);
        }
    }

    fn maybe_prepare_rebalance_or_complete_join(&mut self, ctx: &mut Ctx) {
        match self.state {
            ClassicState::Stable | ClassicState::CompletingRebalance | ClassicState::Empty => self.prepare_rebalance(ctx),
            ClassicState::PreparingRebalance => self.maybe_complete_join_phase(ctx),
            ClassicState::Dead => {}
        }
    }

    /// Ends the join phase: drops dynamic members that did not rejoin, elects a leader among those who did,
    /// bumps the generation and answers every waiting JoinGroup.
    fn complete_join(&mut self, ctx: &mut Ctx) {
        if self.state != ClassicState::PreparingRebalance {
            return;
        }
        let not_rejoined: Vec<String> =
            self.members.values().filter(|m| m.pending_join.is_none() && m.group_instance_id.is_none()).map(|m| m.member_id.clone()).collect();
        for member_id in not_rejoined {
            self.remove_member(ctx, &member_id, ResponseError::UnknownMemberId);
        }
        let leader_joined = self.leader.as_ref().and_then(|l| self.members.get(l)).is_some_and(|m| m.pending_join.is_some());
        if !leader_joined {
            self.leader = self.members.values().find(|m| m.pending_join.is_some()).map(|m| m.member_id.clone());
        }
        if self.leader.is_none() && !self.members.is_empty() {
            // Only static members that did not rejoin are left: wait for them to rejoin or expire.
            ctx.out.schedule(TimerKey::ClassicJoin { group: self.group_id.clone() }, ctx.now_ms + self.rebalance_timeout_ms());
            return;
        }
        self.generation += 1;
        self.pending_members.clear();
        if self.members.is_empty() {
            self.protocol_name = None;
            self.transition(ctx, ClassicState::Empty);
            ctx.out.append(vec![self.metadata_record()]);
            return;
        }
        self.protocol_name = self.select_protocol();
        self.transition(ctx, ClassicState::CompletingRebalance);
        self.pending_sync_members = self.members.keys().cloned().collect();
        let joined: Vec<(String, RequestId)> = self.members.values().filter_map(|m| Some((m.member_id.clone(), m.pending_join?))).collect();
        for (member_id, request) in joined {
            let response = self.join_response(&member_id, false);
            ctx.out.reply(request, Reply::JoinGroup(response));
            if let Some(member) = self.members.get_mut(&member_id) {
                member.pending_join = None;
                member.is_new = false;
            }
            self.reschedule_session(ctx, &member_id);
        }
        let sync_key = TimerKey::ClassicSync { group: self.group_id.clone(), generation: self.generation };
        ctx.out.schedule(sync_key, ctx.now_ms + self.rebalance_timeout_ms());
    }

    fn on_join_timer(&mut self, ctx: &mut Ctx) {
        if self.state != ClassicState::PreparingRebalance {
            return;
        }
        if self.previous_state == ClassicState::Empty && self.new_member_added && self.initial_delay_remaining_ms > 0 {
            // New members keep arriving during the initial delay: wait another delay, within the rebalance timeout.
            let delay = i64::from(ctx.config.initial_rebalance_delay_ms);
            self.new_member_added = false;
            let wait = delay.min(self.initial_delay_remaining_ms);
            self.initial_delay_remaining_ms = (self.initial_delay_remaining_ms - delay).max(0);
            ctx.out.schedule(TimerKey::ClassicJoin { group: self.group_id.clone() }, ctx.now_ms + wait);
            return;
        }
        self.complete_join(ctx);
    }

    fn on_sync_timer(&mut self, ctx: &mut Ctx, generation: i32) {
        if generation != self.generation || !matches!(self.state, ClassicState::CompletingRebalance | ClassicState::Stable) {
            return;
        }
        let missing: Vec<String> = self.pending_sync_members.iter().cloned().collect();
        if missing.is_empty() {
            return;
        }
        for member_id in missing {
            self.remove_member(ctx, &member_id, ResponseError::UnknownMemberId);
        }
        self.prepare_rebalance(ctx);
    }

    fn on_heartbeat_timer(&mut self, ctx: &mut Ctx, member_id: &str) {
        let Some(member) = self.members.get(member_id) else { return };
        if !member.is_new && (member.pending_join.is_some() || member.pending_sync.is_some()) {
            // A waiting request keeps the member alive; the end of the phase re-arms its session.
            return;
        }
        self.remove_member(ctx, member_id, ResponseError::UnknownMemberId);
        self.after_member_removal(ctx);
    }

    fn on_pending_member_timer(&mut self, ctx: &mut Ctx, member_id: &str) {
        if self.pending_members.remove(member_id) && self.state == ClassicState::PreparingRebalance {
            self.maybe_complete_join_phase(ctx);
        }
    }

    /// After loading: members must heartbeat again within their session timeout.
    pub(crate) fn on_loaded(&self, ctx: &mut Ctx) {
        for member_id in self.members.keys() {
            self.reschedule_session(ctx, member_id);
        }
    }

    fn join_known_member(&mut self, ctx: &mut Ctx, request_id: RequestId, member_id: &str, protocols: Vec<(String, Bytes)>, request: &JoinGroupRequest) {
        let Some(member) = self.members.get(member_id) else { return };
        let is_leader = self.leader.as_deref() == Some(member_id);
        let unchanged = member.matches(&protocols);
        let answer_current = match self.state {
            ClassicState::CompletingRebalance => unchanged,
            ClassicState::Stable => unchanged && !is_leader,
            _ => false,
        };
        if answer_current {
            // A retry after a lost JoinGroup response: the current generation is still valid for it.
            let response = self.join_response(member_id, false);
            ctx.out.reply(request_id, Reply::JoinGroup(response));
            self.reschedule_session(ctx, member_id);
            return;
        }
        self.update_member_then_rebalance(ctx, request_id, member_id, protocols, request);
    }

    fn update_member_then_rebalance(&mut self, ctx: &mut Ctx, request_id: RequestId, member_id: &str, protocols: Vec<(String, Bytes)>, request: &JoinGroupRequest) {
        let Some(member) = self.members.get_mut(member_id) else { return };
        member.protocols = protocols;
        member.rebalance_timeout_ms = request.rebalance_timeout_ms;
        member.session_timeout_ms = request.session_timeout_ms;
        if let Some(previous) = member.pending_join.replace(request_id) {
            // The client gave up on its earlier request; answer it so the runtime does not keep it.
            ctx.out.reply(previous, Reply::JoinGroup(join_error(member_id, ResponseError::RebalanceInProgress)));
        }
        self.maybe_prepare_rebalance_or_complete_join(ctx);
    }

    /// A static member rejoins with a new incarnation: the old member id is fenced and replaced.
    #[allow(clippy::too_many_arguments)]
    fn replace_static_member(
        &mut self,
        ctx: &mut Ctx,
        request_id: RequestId,
        instance_id: &str,
        old_member_id: &str,
        new_member_id: String,
        protocols: Vec<(String, Bytes)>,
        request: &JoinGroupRequest,
    ) {
        let Some(mut member) = self.members.remove(old_member_id) else { return };
        if let Some(request) = member.pending_join.take() {
            ctx.out.reply(request, Reply::JoinGroup(join_error(old_member_id, ResponseError::FencedInstanceId)));
        }
        if let Some(request) = member.pending_sync.take() {
            ctx.out.reply(request, Reply::SyncGroup(sync_error(ResponseError::FencedInstanceId)));
        }
        ctx.out.cancel(self.heartbeat_key(old_member_id));
        let was_leader = self.leader.as_deref() == Some(old_member_id);
        if was_leader {
            self.leader = Some(new_member_id.clone());
        }
        if self.pending_sync_members.remove(old_member_id) {
            self.pending_sync_members.insert(new_member_id.clone());
        }
        member.member_id = new_member_id.clone();
        self.static_members.insert(instance_id.to_string(), new_member_id.clone());
        self.members.insert(new_member_id.clone(), member);

        match self.state {
            ClassicState::Stable => {
                // Kafka's rule: no rebalance if the protocol the group would choose does not change; the group
                // is only rewritten with the new member id.
                if let Some(m) = self.members.get_mut(&new_member_id) {
                    m.protocols = protocols.clone();
                    m.rebalance_timeout_ms = request.rebalance_timeout_ms;
                    m.session_timeout_ms = request.session_timeout_ms;
                }
                if self.select_protocol() == self.protocol_name {
                    ctx.out.append(vec![self.metadata_record()]);
                    // The leader learns the members but keeps its assignment (KIP-814 skip_assignment).
                    let response = self.join_response(&new_member_id, was_leader);
                    ctx.out.reply(request_id, Reply::JoinGroup(response));
                    self.reschedule_session(ctx, &new_member_id);
                } else {
                    self.update_member_then_rebalance(ctx, request_id, &new_member_id, protocols, request);
                }
            }
            _ => self.update_member_then_rebalance(ctx, request_id, &new_member_id, protocols, request),
        }
    }

    fn accepts_new_member(&self, ctx: &Ctx) -> bool {
        match self.state {
            ClassicState::Empty | ClassicState::Dead => true,
            ClassicState::PreparingRebalance => self.awaiting_join_count() + self.pending_members.len() < ctx.config.max_size,
            _ => self.members.len() + self.pending_members.len() < ctx.config.max_size,
        }
    }
}

fn new_member_id(ctx: &mut Ctx, client_id: &str) -> String {
    format!("{client_id}-{}", (ctx.new_uuid)())
}

pub(crate) fn join_group(
    groups: &mut BTreeMap<String, Group>,
    ctx: &mut Ctx,
    request_id: RequestId,
    version: i16,
    client: &ClientInfo,
    request: JoinGroupRequest,
) {
    let group_id = request.group_id.as_str().to_string();
    let member_id = request.member_id.as_str().to_string();
    let instance_id = request.group_instance_id.as_ref().map(|s| s.as_str().to_string());
    let protocol_type = request.protocol_type.as_str().to_string();
    let protocols: Vec<(String, Bytes)> = request.protocols.iter().map(|p| (p.name.as_str().to_string(), p.metadata.clone())).collect();
    let fail = |ctx: &mut Ctx, error| ctx.out.reply(request_id, Reply::JoinGroup(join_error(&member_id, error)));

    if group_id.is_empty() {
        return fail(ctx, ResponseError::InvalidGroupId);
    }
    if request.session_timeout_ms < ctx.config.min_session_timeout_ms || request.session_timeout_ms > ctx.config.max_session_timeout_ms {
        return fail(ctx, ResponseError::InvalidSessionTimeout);
    }
    let unknown_member = member_id.is_empty();
    if !groups.contains_key(&group_id) {
        if !unknown_member {
            return fail(ctx, ResponseError::UnknownMemberId);
        }
        groups.insert(group_id.clone(), Group::Classic(ClassicGroup::new(&group_id, ctx.now_ms)));
    }
    let group = match groups.get_mut(&group_id) {
        Some(Group::Classic(group)) => group,
        Some(Group::Consumer(group)) if group.is_empty() => {
            // An empty KIP-848 group may turn classic (Kafka converts it on the first classic join).
            groups.insert(group_id.clone(), Group::Classic(ClassicGroup::new(&group_id, ctx.now_ms)));
            match groups.get_mut(&group_id) {
                Some(Group::Classic(group)) => group,
                _ => return,
            }
        }
        // Mixing protocols inside one non-empty group is not supported here.
        Some(Group::Consumer(_)) | None => return fail(ctx, ResponseError::InconsistentGroupProtocol),
    };
    if !group.supports_protocols(&protocol_type, &protocols) {
        return fail(ctx, ResponseError::InconsistentGroupProtocol);
    }
    let known_member = group.members.contains_key(&member_id) || group.pending_members.contains(&member_id);
    if !known_member && !group.accepts_new_member(ctx) {
        return fail(ctx, ResponseError::GroupMaxSizeReached);
    }

    if unknown_member {
        if let Some(instance) = &instance_id {
            if let Some(old_member_id) = group.static_members.get(instance).cloned() {
                let new_id = new_member_id(ctx, &client.client_id);
                group.replace_static_member(ctx, request_id, instance, &old_member_id, new_id, protocols, &request);
                return;
            }
        } else if version >= 4 {
            // KIP-394: the client must come back with this id, so a join retried after a timeout does not leave
            // a ghost member behind.
            let new_id = new_member_id(ctx, &client.client_id);
            group.pending_members.insert(new_id.clone());
            let timeout = i64::from(request.session_timeout_ms);
            ctx.out.schedule(TimerKey::ClassicPendingMember { group: group_id.clone(), member: new_id.clone() }, ctx.now_ms + timeout);
            ctx.out.reply(request_id, Reply::JoinGroup(join_error(&new_id, ResponseError::MemberIdRequired)));
            return;
        }
        let new_id = new_member_id(ctx, &client.client_id);
        add_member_and_rebalance(group, ctx, request_id, new_id, instance_id, client, protocol_type, protocols, &request);
        return;
    }

    if group.pending_members.remove(&member_id) {
        ctx.out.cancel(TimerKey::ClassicPendingMember { group: group_id.clone(), member: member_id.clone() });
        add_member_and_rebalance(group, ctx, request_id, member_id, instance_id, client, protocol_type, protocols, &request);
        return;
    }
    if let Err(error) = group.validate_member(&member_id, instance_id.as_deref()) {
        return fail(ctx, error);
    }
    match group.state {
        ClassicState::Empty | ClassicState::Dead => fail(ctx, ResponseError::UnknownMemberId),
        _ => group.join_known_member(ctx, request_id, &member_id, protocols, &request),
    }
}

#[allow(clippy::too_many_arguments)]
fn add_member_and_rebalance(
    group: &mut ClassicGroup,
    ctx: &mut Ctx,
    request_id: RequestId,
    member_id: String,
    instance_id: Option<String>,
    client: &ClientInfo,
    protocol_type: String,
    protocols: Vec<(String, Bytes)>,
    request: &JoinGroupRequest,
) {
    if group.state == ClassicState::PreparingRebalance && group.previous_state == ClassicState::Empty {
        group.new_member_added = true;
    }
    group.add_member(ClassicMember {
        member_id: member_id.clone(),
        group_instance_id: instance_id,
        client_id: client.client_id.clone(),
        client_host: client.client_host.clone(),
        rebalance_timeout_ms: request.rebalance_timeout_ms,
        session_timeout_ms: request.session_timeout_ms,
        protocol_type,
        protocols,
        assignment: Bytes::new(),
        pending_join: Some(request_id),
        pending_sync: None,
        is_new: true,
    });
    // A new member cannot heartbeat before its first join completes; if it vanishes it expires after this.
    group.reschedule_session(ctx, &member_id);
    group.maybe_prepare_rebalance_or_complete_join(ctx);
}

pub(crate) fn sync_group(groups: &mut BTreeMap<String, Group>, ctx: &mut Ctx, request_id: RequestId, request: SyncGroupRequest) {
    let fail = |ctx: &mut Ctx, error| ctx.out.reply(request_id, Reply::SyncGroup(sync_error(error)));
    let Some(Group::Classic(group)) = groups.get_mut(request.group_id.as_str()) else {
        return fail(ctx, ResponseError::UnknownMemberId);
    };
    let member_id = request.member_id.as_str().to_string();
    if group.state == ClassicState::Dead {
        return fail(ctx, ResponseError::CoordinatorNotAvailable);
    }
    if let Err(error) = group.validate_member(&member_id, request.group_instance_id.as_ref().map(|s| s.as_str())) {
        return fail(ctx, error);
    }
    if request.generation_id != group.generation {
        return fail(ctx, ResponseError::IllegalGeneration);
    }
    let inconsistent = |given: &Option<kafka_protocol::protocol::StrBytes>, ours: &Option<String>| {
        given.as_ref().is_some_and(|g| Some(g.as_str()) != ours.as_deref())
    };
    if inconsistent(&request.protocol_type, &group.protocol_type) || inconsistent(&request.protocol_name, &group.protocol_name) {
        return fail(ctx, ResponseError::InconsistentGroupProtocol);
    }
    match group.state {
        ClassicState::Empty | ClassicState::Dead => fail(ctx, ResponseError::UnknownMemberId),
        ClassicState::PreparingRebalance => fail(ctx, ResponseError::RebalanceInProgress),
        ClassicState::CompletingRebalance => {
            group.pending_sync_members.remove(&member_id);
            if let Some(member) = group.members.get_mut(&member_id) {
                if let Some(previous) = member.pending_sync.replace(request_id) {
                    ctx.out.reply(previous, Reply::SyncGroup(sync_error(ResponseError::RebalanceInProgress)));
                }
            }
            group.reschedule_session(ctx, &member_id);
            if group.leader.as_deref() == Some(member_id.as_str()) {
                let assignments: BTreeMap<&str, &Bytes> = request.assignments.iter().map(|a| (a.member_id.as_str(), &a.assignment)).collect();
                for member in group.members.values_mut() {
                    member.assignment = assignments.get(member.member_id.as_str()).map(|b| (*b).clone()).unwrap_or_default();
                }
                group.transition(ctx, ClassicState::Stable);
                // Persisted before any member learns its assignment (replies follow the append).
                ctx.out.append(vec![group.metadata_record()]);
                let protocol_type = group.protocol_type.clone();
                let protocol_name = group.protocol_name.clone();
                for member in group.members.values_mut() {
                    if let Some(request) = member.pending_sync.take() {
                        let response = SyncGroupResponse::default()
                            .with_protocol_type(protocol_type.as_deref().map(str_bytes))
                            .with_protocol_name(protocol_name.as_deref().map(str_bytes))
                            .with_assignment(member.assignment.clone());
                        ctx.out.reply(request, Reply::SyncGroup(response));
                    }
                }
            }
        }
        ClassicState::Stable => {
            group.pending_sync_members.remove(&member_id);
            let assignment = group.members.get(&member_id).map(|m| m.assignment.clone()).unwrap_or_default();
            let response = SyncGroupResponse::default()
                .with_protocol_type(group.protocol_type.as_deref().map(str_bytes))
                .with_protocol_name(group.protocol_name.as_deref().map(str_bytes))
                .with_assignment(assignment);
            ctx.out.reply(request_id, Reply::SyncGroup(response));
            group.reschedule_session(ctx, &member_id);
        }
    }
}

pub(crate) fn heartbeat(groups: &mut BTreeMap<String, Group>, ctx: &mut Ctx, request: HeartbeatRequest) -> HeartbeatResponse {
    let answer = |error: ResponseError| HeartbeatResponse::default().with_error_code(code(error));
    let Some(Group::Classic(group)) = groups.get_mut(request.group_id.as_str()) else {
        return answer(ResponseError::UnknownMemberId);
    };
    let member_id = request.member_id.as_str();
    if group.state == ClassicState::Dead {
        return answer(ResponseError::CoordinatorNotAvailable);
    }
    if let Err(error) = group.validate_member(member_id, request.group_instance_id.as_ref().map(|s| s.as_str())) {
        return answer(error);
    }
    if group.state == ClassicState::Empty {
        return answer(ResponseError::UnknownMemberId);
    }
    if request.generation_id != group.generation {
        return answer(ResponseError::IllegalGeneration);
    }
    group.reschedule_session(ctx, member_id);
    match group.state {
        ClassicState::PreparingRebalance => answer(ResponseError::RebalanceInProgress),
        _ => HeartbeatResponse::default(),
    }
}

pub(crate) fn leave_group(groups: &mut BTreeMap<String, Group>, ctx: &mut Ctx, request_id: RequestId, request: LeaveGroupRequest) {
    let Some(Group::Classic(group)) = groups.get_mut(request.group_id.as_str()) else {
        let response = LeaveGroupResponse::default().with_error_code(code(ResponseError::UnknownMemberId));
        return ctx.out.reply(request_id, Reply::LeaveGroup(response));
    };
    let mut removed_any = false;
    let mut results = Vec::new();
    for identity in &request.members {
        let instance_id = identity.group_instance_id.as_ref().map(|s| s.as_str());
        let given_id = identity.member_id.as_str();
        let outcome: Result<(), ResponseError> = if given_id.is_empty() {
            // A static member may leave by instance id alone.
            match instance_id.and_then(|i| group.static_members.get(i).cloned()) {
                Some(member_id) => {
                    group.remove_member(ctx, &member_id, ResponseError::UnknownMemberId);
                    removed_any = true;
                    Ok(())
                }
                None => Err(ResponseError::UnknownMemberId),
            }
        } else if group.pending_members.remove(given_id) {
            ctx.out.cancel(TimerKey::ClassicPendingMember { group: group.group_id.clone(), member: given_id.to_string() });
            removed_any = true;
            Ok(())
        } else {
            group.validate_member(given_id, instance_id).map(|()| {
                group.remove_member(ctx, given_id, ResponseError::UnknownMemberId);
                removed_any = true;
            })
        };
        results.push(
            MemberResponse::default()
                .with_member_id(identity.member_id.clone())
                .with_group_instance_id(identity.group_instance_id.clone())
                .with_error_code(outcome.err().map_or(0, code)),
        );
    }
    if removed_any {
        group.after_member_removal(ctx);
    }
    ctx.out.reply(request_id, Reply::LeaveGroup(LeaveGroupResponse::default().with_members(results)));
}

pub(crate) fn on_timer(groups: &mut BTreeMap<String, Group>, ctx: &mut Ctx, key: &TimerKey) {
    let group_id = match key {
        TimerKey::ClassicJoin { group }
        | TimerKey::ClassicSync { group, .. }
        | TimerKey::ClassicHeartbeat { group, .. }
        | TimerKey::ClassicPendingMember { group, .. } => group,
        _ => return,
    };
    let Some(Group::Classic(group)) = groups.get_mut(group_id) else { return };
    match key {
        TimerKey::ClassicJoin { .. } => group.on_join_timer(ctx),
        TimerKey::ClassicSync { generation, .. } => group.on_sync_timer(ctx, *generation),
        TimerKey::ClassicHeartbeat { member, .. } => group.on_heartbeat_timer(ctx, member),
        TimerKey::ClassicPendingMember { member, .. } => group.on_pending_member_timer(ctx, member),
        _ => {}
    }
}
