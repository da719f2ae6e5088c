//! The records of the compacted internal topic `__consumer_offsets`, encoded byte for byte as Kafka's group
//! coordinator writes them (group-coordinator/src/main/resources/common/message/*.json), so Kafka's tools and
//! `kcat -C -t __consumer_offsets` users recognise them and a log written by Kafka can be read here.
//!
//! Every record is a key and a value; each starts with an int16 version. The key version names the record type:
//!
//! | key version | record                                   | value versions written (read)     |
//! |-------------|------------------------------------------|-----------------------------------|
//! | 0, 1        | OffsetCommit (group, topic, partition)   | 3, or 1 with an expire time (0-4) |
//! | 2           | GroupMetadata (classic group)            | 3 (0-4)                           |
//! | 3           | ConsumerGroupMetadata (KIP-848)          | 0                                 |
//! | 5           | ConsumerGroupMemberMetadata              | 0                                 |
//! | 6           | ConsumerGroupTargetAssignmentMetadata    | 0                                 |
//! | 7           | ConsumerGroupTargetAssignmentMember      | 0                                 |
//! | 8           | ConsumerGroupCurrentMemberAssignment     | 0                                 |
//!
//! Keys are never "flexible" (int16-length strings); KIP-848 values are flexible (compact strings, tagged
//! fields). A null value is a tombstone: it deletes what the key names. Other key versions (4, the partition
//! metadata Kafka 4.1 stopped writing; share and streams groups) decode to `None` and are skipped.
//!
//! Decoding bounds every length by the bytes left and never panics on input.

use bytes::Bytes;
use uuid::Uuid;

#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    #[error("__consumer_offsets record truncated while reading {0}")]
    Truncated(&'static str),
    #[error("__consumer_offsets record: invalid {0}")]
    Invalid(&'static str),
    #[error("__consumer_offsets record: unsupported value version {version} for key version {key_version}")]
    UnsupportedValueVersion { key_version: i16, version: i16 },
}

/// OffsetCommitValue: one committed offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetCommitValue {
    pub offset: i64,
    /// -1 when unknown.
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
    /// Only in value version 1 (a commit with an explicit retention time); -1 otherwise.
    pub expire_timestamp_ms: i64,
}

/// One member of a classic group as GroupMetadataValue stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupMemberMetadata {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    /// The member's metadata for the selected protocol (a ConsumerProtocolSubscription for "consumer").
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// GroupMetadataValue: a classic group after a completed rebalance (or emptied).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupMetadataValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub current_state_timestamp_ms: i64,
    pub members: Vec<GroupMemberMetadata>,
}

/// ConsumerGroupMetadataValue: the group epoch of a KIP-848 group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerGroupMetadataValue {
    pub epoch: i32,
    /// Tagged field 0: a hash of the subscribed topics' metadata; a change means "recompute the assignment".
    pub metadata_hash: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerGroupMemberMetadataValue {
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_topic_names: Vec<String>,
    pub subscribed_topic_regex: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub server_assignor: Option<String>,
}

/// Partitions of one topic (by id), as the KIP-848 records list them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicPartitions {
    pub topic_id: Uuid,
    pub partitions: Vec<i32>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CurrentMemberAssignmentValue {
    pub member_epoch: i32,
    pub previous_member_epoch: i32,
    /// Kafka's MemberState: 0 stable, 1 unrevoked partitions, 2 unreleased partitions, 127 unknown.
    pub state: i8,
    pub assigned_partitions: Vec<TopicPartitions>,
    pub partitions_pending_revocation: Vec<TopicPartitions>,
}

/// One `__consumer_offsets` record; `value: None` is a tombstone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupRecord {
    OffsetCommit { group: String, topic: String, partition: i32, value: Option<OffsetCommitValue> },
    GroupMetadata { group: String, value: Option<GroupMetadataValue> },
    ConsumerGroupMetadata { group: String, value: Option<ConsumerGroupMetadataValue> },
    ConsumerGroupMemberMetadata { group: String, member_id: String, value: Option<ConsumerGroupMemberMetadataValue> },
    /// The value is the assignment epoch.
    ConsumerGroupTargetAssignmentMetadata { group: String, value: Option<i32> },
    ConsumerGroupTargetAssignmentMember { group: String, member_id: String, value: Option<Vec<TopicPartitions>> },
    ConsumerGroupCurrentMemberAssignment { group: String, member_id: String, value: Option<CurrentMemberAssignmentValue> },
}

impl GroupRecord {
    pub fn group_id(&self) -> &str {
        match self {
            GroupRecord::OffsetCommit { group, .. }
            | GroupRecord::GroupMetadata { group, .. }
            | GroupRecord::ConsumerGroupMetadata { group, .. }
            | GroupRecord::ConsumerGroupMemberMetadata { group, .. }
            | GroupRecord::ConsumerGroupTargetAssignmentMetadata { group, .. }
            | GroupRecord::ConsumerGroupTargetAssignmentMember { group, .. }
            | GroupRecord::ConsumerGroupCurrentMemberAssignment { group, .. } => group,
        }
    }

    pub fn is_tombstone(&self) -> bool {
        self.encode_value().is_none()
    }

    /// The record key: int16 key version, then the key fields.
    pub fn encode_key(&self) -> Bytes {
        let mut out = Vec::with_capacity(64);
        match self {
            GroupRecord::OffsetCommit { group, topic, partition, .. } => {
                put_i16(&mut out, 1);
                put_string(&mut out, group);
                put_string(&mut out, topic);
                put_i32(&mut out, *partition);
            }
            GroupRecord::GroupMetadata { group, .. } => {
                put_i16(&mut out, 2);
                put_string(&mut out, group);
            }
            GroupRecord::ConsumerGroupMetadata { group, .. } => {
                put_i16(&mut out, 3);
                put_string(&mut out, group);
            }
            GroupRecord::ConsumerGroupMemberMetadata { group, member_id, .. } => {
                put_i16(&mut out, 5);
                put_string(&mut out, group);
                put_string(&mut out, member_id);
            }
            GroupRecord::ConsumerGroupTargetAssignmentMetadata { group, .. } => {
                put_i16(&mut out, 6);
                put_string(&mut out, group);
            }
            GroupRecord::ConsumerGroupTargetAssignmentMember { group, member_id, .. } => {
                put_i16(&mut out, 7);
                put_string(&mut out, group);
                put_string(&mut out, member_id);
            }
            GroupRecord::ConsumerGroupCurrentMemberAssignment { group, member_id, .. } => {
                put_i16(&mut out, 8);
                put_string(&mut out, group);
                put_string(&mut out, member_id);
            }
        }
        Bytes::from(out)
    }

    /// The record value (int16 value version, then the fields), or `None` for a tombstone.
    pub fn encode_value(&self) -> Option<Bytes> {
        let mut out = Vec::with_capacity(64);
        match self {
            GroupRecord::OffsetCommit { value, .. } => {
                let v = value.as_ref()?;
                // Kafka writes version 1 only when the commit carried a retention time, else version 3.
                let version = if v.expire_timestamp_ms >= 0 { 1 } else { 3 };
                put_i16(&mut out, version);
                put_i64(&mut out, v.offset);
                if version >= 3 {
                    put_i32(&mut out, v.leader_epoch);
                }
                put_string(&mut out, &v.metadata);
                put_i64(&mut out, v.commit_timestamp_ms);
                if version == 1 {
                    put_i64(&mut out, v.expire_timestamp_ms);
                }
            }
            GroupRecord::GroupMetadata { value, .. } => {
                let v = value.as_ref()?;
                put_i16(&mut out, 3);
                put_string(&mut out, &v.protocol_type);
                put_i32(&mut out, v.generation);
                put_nullable_string(&mut out, v.protocol.as_deref());
                put_nullable_string(&mut out, v.leader.as_deref());
                put_i64(&mut out, v.current_state_timestamp_ms);
                put_i32(&mut out, v.members.len() as i32);
                for m in &v.members {
                    put_string(&mut out, &m.member_id);
                    put_nullable_string(&mut out, m.group_instance_id.as_deref());
                    put_string(&mut out, &m.client_id);
                    put_string(&mut out, &m.client_host);
                    put_i32(&mut out, m.rebalance_timeout_ms);
                    put_i32(&mut out, m.session_timeout_ms);
                    put_bytes(&mut out, &m.subscription);
                    put_bytes(&mut out, &m.assignment);
                }
            }
            GroupRecord::ConsumerGroupMetadata { value, .. } => {
                let v = value.as_ref()?;
                put_i16(&mut out, 0);
                put_i32(&mut out, v.epoch);
                if v.metadata_hash != 0 {
                    put_uvarint(&mut out, 1); // one tagged field
                    put_uvarint(&mut out, 0); // tag 0: MetadataHash
                    put_uvarint(&mut out, 8);
                    put_i64(&mut out, v.metadata_hash);
                } else {
                    put_uvarint(&mut out, 0);
                }
            }
            GroupRecord::ConsumerGroupMemberMetadata { value, .. } => {
                let v = value.as_ref()?;
                put_i16(&mut out, 0);
                put_compact_nullable_string(&mut out, v.instance_id.as_deref());
                put_compact_nullable_string(&mut out, v.rack_id.as_deref());
                put_compact_string(&mut out, &v.client_id);
                put_compact_string(&mut out, &v.client_host);
                put_uvarint(&mut out, v.subscribed_topic_names.len() as u64 + 1);
                for name in &v.subscribed_topic_names {
                    put_compact_string(&mut out, name);
                }
                put_compact_nullable_string(&mut out, v.subscribed_topic_regex.as_deref());
                put_i32(&mut out, v.rebalance_timeout_ms);
                put_compact_nullable_string(&mut out, v.server_assignor.as_deref());
                put_uvarint(&mut out, 0);
            }
            GroupRecord::ConsumerGroupTargetAssignmentMetadata { value, .. } => {
                let epoch = (*value)?;
                put_i16(&mut out, 0);
                put_i32(&mut out, epoch);
                put_uvarint(&mut out, 0);
            }
            GroupRecord::ConsumerGroupTargetAssignmentMember { value, .. } => {
                let topics = value.as_ref()?;
                put_i16(&mut out, 0);
                put_topic_partitions(&mut out, topics);
                put_uvarint(&mut out, 0);
            }
            GroupRecord::ConsumerGroupCurrentMemberAssignment { value, .. } => {
                let v = value.as_ref()?;
                put_i16(&mut out, 0);
                put_i32(&mut out, v.member_epoch);
                put_i32(&mut out, v.previous_member_epoch);
                put_i8(&mut out, v.state);
                put_topic_partitions(&mut out, &v.assigned_partitions);
                put_topic_partitions(&mut out, &v.partitions_pending_revocation);
                put_uvarint(&mut out, 0);
            }
        }
        Some(Bytes::from(out))
    }

    /// Decodes a record; `Ok(None)` for record types this coordinator does not use (skip them).
    pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<Option<GroupRecord>, RecordError> {
        let mut k = Reader::new(key);
        let key_version = k.i16("key version")?;
        let record = match key_version {
            0 | 1 => {
                let group = k.string("group")?;
                let topic = k.string("topic")?;
                let partition = k.i32("partition")?;
                let value = value.map(decode_offset_commit_value).transpose()?;
                GroupRecord::OffsetCommit { group, topic, partition, value }
            }
            2 => {
                let group = k.string("group")?;
                let value = value.map(decode_group_metadata_value).transpose()?;
                GroupRecord::GroupMetadata { group, value }
            }
            3 => {
                let group = k.string("group")?;
                let value = value
                    .map(|bytes| {
                        let mut r = flexible_value(bytes, key_version)?;
                        let epoch = r.i32("epoch")?;
                        let mut metadata_hash = 0;
                        r.tagged_fields(|tag, field| {
                            if tag == 0 {
                                metadata_hash = field.i64("metadata hash")?;
                            }
                            Ok(())
                        })?;
                        Ok(ConsumerGroupMetadataValue { epoch, metadata_hash })
                    })
                    .transpose()?;
                GroupRecord::ConsumerGroupMetadata { group, value }
            }
            5 => {
                let group = k.string("group")?;
                let member_id = k.string("member id")?;
                let value = value
                    .map(|bytes| {
                        let mut r = flexible_value(bytes, key_version)?;
                        let instance_id = r.compact_nullable_string("instance id")?;
                        let rack_id = r.compact_nullable_string("rack id")?;
                        let client_id = r.compact_string("client id")?;
                        let client_host = r.compact_string("client host")?;
                        let count = r.compact_array_len("subscribed topics", 2)?;
                        let mut subscribed_topic_names = Vec::with_capacity(count);
                        for _ in 0..count {
                            subscribed_topic_names.push(r.compact_string("subscribed topic")?);
                        }
                        let subscribed_topic_regex = r.compact_nullable_string("regex")?;
                        let rebalance_timeout_ms = r.i32("rebalance timeout")?;
                        let server_assignor = r.compact_nullable_string("server assignor")?;
                        r.tagged_fields(|_, _| Ok(()))?;
                        Ok(ConsumerGroupMemberMetadataValue {
                            instance_id,
                            rack_id,
                            client_id,
                            client_host,
                            subscribed_topic_names,
                            subscribed_topic_regex,
                            rebalance_timeout_ms,
                            server_assignor,
                        })
                    })
                    .transpose()?;
                GroupRecord::ConsumerGroupMemberMetadata { group, member_id, value }
            }
            6 => {
                let group = k.string("group")?;
                let value = value
                    .map(|bytes| {
                        let mut r = flexible_value(bytes, key_version)?;
                        let epoch = r.i32("assignment epoch")?;
                        r.tagged_fields(|_, _| Ok(()))?;
                        Ok(epoch)
                    })
                    .transpose()?;
                GroupRecord::ConsumerGroupTargetAssignmentMetadata { group, value }
            }
            7 => {
                let group = k.string("group")?;
                let member_id = k.string("member id")?;
                let value = value
                    .map(|bytes| {
                        let mut r = flexible_value(bytes, key_version)?;
                        let topics = r.topic_partitions()?;
                        r.tagged_fields(|_, _| Ok(()))?;
                        Ok(topics)
                    })
                    .transpose()?;
                GroupRecord::ConsumerGroupTargetAssignmentMember { group, member_id, value }
            }
            8 => {
                let group = k.string("group")?;
                let member_id = k.string("member id")?;
                let value = value
                    .map(|bytes| {
                        let mut r = flexible_value(bytes, key_version)?;
                        let member_epoch = r.i32("member epoch")?;
                        let previous_member_epoch = r.i32("previous member epoch")?;
                        let state = r.i8("state")?;
                        let assigned_partitions = r.topic_partitions()?;
                        let partitions_pending_revocation = r.topic_partitions()?;
                        r.tagged_fields(|_, _| Ok(()))?;
                        Ok(CurrentMemberAssignmentValue {
                            member_epoch,
                            previous_member_epoch,
                            state,
                            assigned_partitions,
                            partitions_pending_revocation,
                        })
                    })
                    .transpose()?;
                GroupRecord::ConsumerGroupCurrentMemberAssignment { group, member_id, value }
            }
            _ => return Ok(None),
        };
        Ok(Some(record))
    }
}

fn flexible_value(bytes: &[u8], key_version: i16) -> Result<Reader<'_>, RecordError> {
    let mut r = Reader::new(bytes);
    let version = r.i16("value version")?;
    if version != 0 {
        return Err(RecordError::UnsupportedValueVersion { key_version, version });
    }
    Ok(r)
}

fn decode_offset_commit_value(bytes: &[u8]) -> Result<OffsetCommitValue, RecordError> {
    let mut r = Reader::new(bytes);
    let version = r.i16("value version")?;
    if !(0..=4).contains(&version) {
        return Err(RecordError::UnsupportedValueVersion { key_version: 1, version });
    }
    let flexible = version >= 4;
    let offset = r.i64("offset")?;
    let leader_epoch = if version >= 3 { r.i32("leader epoch")? } else { -1 };
    let metadata = if flexible { r.compact_string("metadata")? } else { r.string("metadata")? };
    let commit_timestamp_ms = r.i64("commit timestamp")?;
    let expire_timestamp_ms = if version == 1 { r.i64("expire timestamp")? } else { -1 };
    if flexible {
        r.tagged_fields(|_, _| Ok(()))?;
    }
    Ok(OffsetCommitValue { offset, leader_epoch, metadata, commit_timestamp_ms, expire_timestamp_ms })
}

fn decode_group_metadata_value(bytes: &[u8]) -> Result<GroupMetadataValue, RecordError> {
    let mut r = Reader::new(bytes);
    let version = r.i16("value version")?;
    if !(0..=4).contains(&version) {
        return Err(RecordError::UnsupportedValueVersion { key_version: 2, version });
    }
    let flexible = version >= 4;
    let string = |r: &mut Reader, what| if flexible { r.compact_string(what) } else { r.string(what) };
    let nullable = |r: &mut Reader, what| if flexible { r.compact_nullable_string(what) } else { r.nullable_string(what) };
    let protocol_type = string(&mut r, "protocol type")?;
    let generation = r.i32("generation")?;
    let protocol = nullable(&mut r, "protocol")?;
    let leader = nullable(&mut r, "leader")?;
    let current_state_timestamp_ms = if version >= 2 { r.i64("state timestamp")? } else { -1 };
    // The smallest member takes 4 empty strings and 2 ints and 2 empty byte arrays: at least 12 bytes.
    let count = if flexible { r.compact_array_len("members", 12)? } else { r.array_len("members", 12)? };
    let mut members = Vec::with_capacity(count);
    for _ in 0..count {
        let member_id = string(&mut r, "member id")?;
        let group_instance_id = if version >= 3 { nullable(&mut r, "group instance id")? } else { None };
        let client_id = string(&mut r, "client id")?;
        let client_host = string(&mut r, "client host")?;
        let session_or_rebalance = r.i32("timeout")?;
        let (rebalance_timeout_ms, session_timeout_ms) =
            if version >= 1 { (session_or_rebalance, r.i32("session timeout")?) } else { (session_or_rebalance, session_or_rebalance) };
        let subscription = if flexible { r.compact_bytes("subscription")? } else { r.bytes("subscription")? };
        let assignment = if flexible { r.compact_bytes("assignment")? } else { r.bytes("assignment")? };
        if flexible {
            r.tagged_fields(|_, _| Ok(()))?;
        }
        members.push(GroupMemberMetadata {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    if flexible {
        r.tagged_fields(|_, _| Ok(()))?;
    }
    Ok(GroupMetadataValue { protocol_type, generation, protocol, leader, current_state_timestamp_ms, members })
}

fn put_i8(out: &mut Vec<u8>, v: i8) {
    out.push(v as u8);
}
fn put_i16(out: &mut Vec<u8>, v: i16) {
    out.extend_from_slice(&v.to_be_bytes());
}
fn put_i32(out: &mut Vec<u8>, v: i32) {
    out.extend_from_slice(&v.to_be_bytes());
}
fn put_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&v.to_be_bytes());
}
fn put_string(out: &mut Vec<u8>, s: &str) {
    put_i16(out, s.len() as i16);
    out.extend_from_slice(s.as_bytes());
}
fn put_nullable_string(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => put_string(out, s),
        None => put_i16(out, -1),
    }
}
fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_i32(out, b.len() as i32);
    out.extend_from_slice(b);
}
fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}
fn put_compact_string(out: &mut Vec<u8>, s: &str) {
    put_uvarint(out, s.len() as u64 + 1);
    out.extend_from_slice(s.as_bytes());
}
fn put_compact_nullable_string(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => put_compact_string(out, s),
        None => put_uvarint(out, 0),
    }
}
fn put_topic_partitions(out: &mut Vec<u8>, topics: &[TopicPartitions]) {
    put_uvarint(out, topics.len() as u64 + 1);
    for t in topics {
        out.extend_from_slice(t.topic_id.as_bytes());
        put_uvarint(out, t.partitions.len() as u64 + 1);
        for p in &t.partitions {
            put_i32(out, *p);
        }
        put_uvarint(out, 0);
    }
}

/// A bounds-checked cursor over untrusted bytes.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], RecordError> {
        if n > self.buf.len() {
            return Err(RecordError::Truncated(what));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn i8(&mut self, what: &'static str) -> Result<i8, RecordError> {
        Ok(self.take(1, what)?[0] as i8)
    }
    fn i16(&mut self, what: &'static str) -> Result<i16, RecordError> {
        let b = self.take(2, what)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self, what: &'static str) -> Result<i32, RecordError> {
        let b = self.take(4, what)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i64(&mut self, what: &'static str) -> Result<i64, RecordError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }
    fn uuid(&mut self, what: &'static str) -> Result<Uuid, RecordError> {
        let b = self.take(16, what)?;
        let mut a = [0u8; 16];
        a.copy_from_slice(b);
        Ok(Uuid::from_bytes(a))
    }
    fn uvarint(&mut self, what: &'static str) -> Result<u64, RecordError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.take(1, what)?[0];
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(RecordError::Invalid(what))
    }
    fn utf8(&mut self, len: usize, what: &'static str) -> Result<String, RecordError> {
        let b = self.take(len, what)?;
        String::from_utf8(b.to_vec()).map_err(|_| RecordError::Invalid(what))
    }
    fn nullable_string(&mut self, what: &'static str) -> Result<Option<String>, RecordError> {
        let len = self.i16(what)?;
        if len < 0 {
            return Ok(None);
        }
        self.utf8(len as usize, what).map(Some)
    }
    fn string(&mut self, what: &'static str) -> Result<String, RecordError> {
        self.nullable_string(what)?.ok_or(RecordError::Invalid(what))
    }
    fn bytes(&mut self, what: &'static str) -> Result<Bytes, RecordError> {
        let len = self.i32(what)?;
        if len < 0 {
            return Ok(Bytes::new());
        }
        Ok(Bytes::copy_from_slice(self.take(len as usize, what)?))
    }
    fn compact_len(&mut self, what: &'static str) -> Result<Option<usize>, RecordError> {
        let n = self.uvarint(what)?;
        if n == 0 {
            return Ok(None);
        }
        let len = usize::try_from(n - 1).map_err(|_| RecordError::Invalid(what))?;
        if len > self.buf.len() {
            return Err(RecordError::Truncated(what));
        }
        Ok(Some(len))
    }
    fn compact_nullable_string(&mut self, what: &'static str) -> Result<Option<String>, RecordError> {
        match self.compact_len(what)? {
            None => Ok(None),
            Some(len) => self.utf8(len, what).map(Some),
        }
    }
    fn compact_string(&mut self, what: &'static str) -> Result<String, RecordError> {
        self.compact_nullable_string(what)?.ok_or(RecordError::Invalid(what))
    }
    fn compact_bytes(&mut self, what: &'static str) -> Result<Bytes, RecordError> {
        match self.compact_len(what)? {
            None => Ok(Bytes::new()),
            Some(len) => Ok(Bytes::copy_from_slice(self.take(len, what)?)),
        }
    }
    /// An int32 array length, checked against the bytes left assuming each element takes `min_element_bytes`.
    fn array_len(&mut self, what: &'static str, min_element_bytes: usize) -> Result<usize, RecordError> {
        let n = self.i32(what)?;
        if n < 0 {
            return Ok(0);
        }
        let n = n as usize;
        if n.saturating_mul(min_element_bytes) > self.buf.len() {
            return Err(RecordError::Truncated(what));
        }
        Ok(n)
    }
    fn compact_array_len(&mut self, what: &'static str, min_element_bytes: usize) -> Result<usize, RecordError> {
        let n = self.uvarint(what)?;
        if n == 0 {
            return Ok(0);
        }
        let n = usize::try_from(n - 1).map_err(|_| RecordError::Invalid(what))?;
        if n.saturating_mul(min_element_bytes) > self.buf.len() {
            return Err(RecordError::Truncated(what));
        }
        Ok(n)
    }
    fn topic_partitions(&mut self) -> Result<Vec<TopicPartitions>, RecordError> {
        // A topic entry is at least a uuid, an empty array and an empty tag section: 18 bytes.
        let count = self.compact_array_len("topic partitions", 18)?;
        let mut topics = Vec::with_capacity(count);
        for _ in 0..count {
            let topic_id = self.uuid("topic id")?;
            let n = self.compact_array_len("partitions", 4)?;
            let mut partitions = Vec::with_capacity(n);
            for _ in 0..n {
                partitions.push(self.i32("partition")?);
            }
            self.tagged_fields(|_, _| Ok(()))?;
            topics.push(TopicPartitions { topic_id, partitions });
        }
        Ok(topics)
    }
    /// Reads a tagged-field section, handing each field's bytes to `on_field` (which may ignore them).
    fn tagged_fields(
        &mut self,
        mut on_field: impl FnMut(u64, &mut Reader<'a>) -> Result<(), RecordError>,
    ) -> Result<(), RecordError> {
        let count = self.uvarint("tagged fields")?;
        for _ in 0..count {
            let tag = self.uvarint("tag")?;
            let size = self.uvarint("tag size")?;
            let size = usize::try_from(size).map_err(|_| RecordError::Invalid("tag size"))?;
            let mut field = Reader::new(self.take(size, "tagged field")?);
            on_field(tag, &mut field)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<GroupRecord> {
        let topic_id = Uuid::from_u128(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10);
        vec![
            GroupRecord::OffsetCommit {
                group: "g".into(),
                topic: "t".into(),
                partition: 3,
                value: Some(OffsetCommitValue {
                    offset: 42,
                    leader_epoch: 7,
                    metadata: "meta".into(),
                    commit_timestamp_ms: 1000,
                    expire_timestamp_ms: -1,
                }),
            },
            GroupRecord::OffsetCommit {
                group: "g".into(),
                topic: "t".into(),
                partition: 0,
                value: Some(OffsetCommitValue {
                    offset: 1,
                    leader_epoch: -1,
                    metadata: String::new(),
                    commit_timestamp_ms: 5,
                    expire_timestamp_ms: 99,
                }),
            },
            GroupRecord::OffsetCommit { group: "g".into(), topic: "t".into(), partition: 1, value: None },
            GroupRecord::GroupMetadata {
                group: "g".into(),
                value: Some(GroupMetadataValue {
                    protocol_type: "consumer".into(),
                    generation: 5,
                    protocol: Some("range".into()),
                    leader: Some("m1".into()),
                    current_state_timestamp_ms: 77,
                    members: vec![GroupMemberMetadata {
                        member_id: "m1".into(),
                        group_instance_id: Some("i1".into()),
                        client_id: "c".into(),
                        client_host: "/127.0.0.1".into(),
                        rebalance_timeout_ms: 300_000,
                        session_timeout_ms: 45_000,
                        subscription: Bytes::from_static(b"sub"),
                        assignment: Bytes::from_static(b"asg"),
                    }],
                }),
            },
            GroupRecord::GroupMetadata { group: "g".into(), value: None },
            GroupRecord::ConsumerGroupMetadata { group: "g".into(), value: Some(ConsumerGroupMetadataValue { epoch: 3, metadata_hash: 0 }) },
            GroupRecord::ConsumerGroupMetadata { group: "g".into(), value: Some(ConsumerGroupMetadataValue { epoch: 4, metadata_hash: -5 }) },
            GroupRecord::ConsumerGroupMemberMetadata {
                group: "g".into(),
                member_id: "m".into(),
                value: Some(ConsumerGroupMemberMetadataValue {
                    instance_id: None,
                    rack_id: Some("r".into()),
                    client_id: "c".into(),
                    client_host: "h".into(),
                    subscribed_topic_names: vec!["a".into(), "b".into()],
                    subscribed_topic_regex: None,
                    rebalance_timeout_ms: 1000,
                    server_assignor: Some("uniform".into()),
                }),
            },
            GroupRecord::ConsumerGroupTargetAssignmentMetadata { group: "g".into(), value: Some(9) },
            GroupRecord::ConsumerGroupTargetAssignmentMember {
                group: "g".into(),
                member_id: "m".into(),
                value: Some(vec![TopicPartitions { topic_id, partitions: vec![0, 2] }]),
            },
            GroupRecord::ConsumerGroupCurrentMemberAssignment {
                group: "g".into(),
                member_id: "m".into(),
                value: Some(CurrentMemberAssignmentValue {
                    member_epoch: 4,
                    previous_member_epoch: 3,
                    state: 1,
                    assigned_partitions: vec![TopicPartitions { topic_id, partitions: vec![1] }],
                    partitions_pending_revocation: vec![TopicPartitions { topic_id, partitions: vec![0] }],
                }),
            },
            GroupRecord::ConsumerGroupCurrentMemberAssignment { group: "g".into(), member_id: "m".into(), value: None },
        ]
    }

    #[test]
    fn every_record_round_trips() {
        for record in samples() {
            let key = record.encode_key();
            let value = record.encode_value();
            let decoded = GroupRecord::decode(&key, value.as_deref()).unwrap().unwrap();
            assert_eq!(decoded, record);
        }
    }

    #[test]
    fn truncated_input_is_an_error_never_a_panic() {
        for record in samples() {
            let key = record.encode_key();
            for cut in 0..key.len() {
                assert!(GroupRecord::decode(&key[..cut], None).is_err(), "{record:?} key cut at {cut}");
            }
            if let Some(value) = record.encode_value() {
                for cut in 0..value.len() {
                    assert!(GroupRecord::decode(&key, Some(&value[..cut])).is_err(), "{record:?} value cut at {cut}");
                }
            }
        }
    }

    #[test]
    fn offset_commit_bytes_match_kafka_layout() {
        let record = GroupRecord::OffsetCommit {
            group: "g".into(),
            topic: "t".into(),
            partition: 2,
            value: Some(OffsetCommitValue { offset: 5, leader_epoch: -1, metadata: String::new(), commit_timestamp_ms: 6, expire_timestamp_ms: -1 }),
        };
        assert_eq!(&record.encode_key()[..], &[0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 2]);
        assert_eq!(
            &record.encode_value().unwrap()[..],
            &[0, 3, 0, 0, 0, 0, 0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 6]
        );
    }

    #[test]
    fn reads_older_and_flexible_value_versions() {
        // GroupMetadataValue v0: no state timestamp, no instance id, one timeout.
        let mut v0 = Vec::new();
        put_i16(&mut v0, 0);
        put_string(&mut v0, "consumer");
        put_i32(&mut v0, 1);
        put_nullable_string(&mut v0, Some("range"));
        put_nullable_string(&mut v0, None);
        put_i32(&mut v0, 1);
        put_string(&mut v0, "m");
        put_string(&mut v0, "c");
        put_string(&mut v0, "h");
        put_i32(&mut v0, 10_000);
        put_bytes(&mut v0, b"s");
        put_bytes(&mut v0, b"a");
        let value = decode_group_metadata_value(&v0).unwrap();
        assert_eq!(value.members[0].session_timeout_ms, 10_000);
        assert_eq!(value.current_state_timestamp_ms, -1);
        assert_eq!(value.leader, None);

        // OffsetCommitValue v4 (flexible) with an unknown tagged field.
        let mut v4 = Vec::new();
        put_i16(&mut v4, 4);
        put_i64(&mut v4, 10);
        put_i32(&mut v4, 2);
        put_compact_string(&mut v4, "x");
        put_i64(&mut v4, 3);
        put_uvarint(&mut v4, 1);
        put_uvarint(&mut v4, 9);
        put_uvarint(&mut v4, 2);
        v4.extend_from_slice(&[1, 2]);
        let value = decode_offset_commit_value(&v4).unwrap();
        assert_eq!((value.offset, value.leader_epoch, value.metadata.as_str()), (10, 2, "x"));
    }

    #[test]
    fn huge_declared_lengths_are_rejected_before_allocating() {
        let mut key = Vec::new();
        put_i16(&mut key, 2);
        put_string(&mut key, "g");
        let mut value = Vec::new();
        put_i16(&mut value, 3);
        put_string(&mut value, "consumer");
        put_i32(&mut value, 1);
        put_nullable_string(&mut value, None);
        put_nullable_string(&mut value, None);
        put_i64(&mut value, 0);
        put_i32(&mut value, i32::MAX);
        assert_eq!(GroupRecord::decode(&key, Some(&value)), Err(RecordError::Truncated("members")));
    }

    #[test]
    fn unknown_key_versions_are_skipped() {
        assert_eq!(GroupRecord::decode(&[0, 4, 0, 1, b'g'], Some(&[0, 0])), Ok(None));
    }
}
