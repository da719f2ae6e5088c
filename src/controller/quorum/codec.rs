//! Our own binary encoding of the openraft types that go to disk or over the wire (openraft's `serde` feature
//! stays off). Big-endian fixed-width integers, u32 length prefixes; every count and length is checked against
//! the bytes left before anything is allocated, so a lying peer gets an error, never a panic or a huge buffer.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Buf, BufMut};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest, VoteResponse};
use openraft::{BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, Membership, SnapshotMeta, StoredMembership, Vote};

use super::{RecordBatch, TypeConfig};
use crate::controller::records::MetadataRecord;

#[derive(thiserror::Error, Debug, PartialEq, Eq)]
#[error("malformed quorum message: {0}")]
pub struct DecodeError(pub String);

fn err<T>(what: impl Into<String>) -> Result<T, DecodeError> {
    Err(DecodeError(what.into()))
}

/// Reads from a byte slice, checking each length first.
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf }
    }

    fn need(&self, bytes: usize, what: &str) -> Result<(), DecodeError> {
        if self.buf.remaining() < bytes {
            return err(format!("{what} needs {bytes} bytes, {} left", self.buf.remaining()));
        }
        Ok(())
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        self.need(1, "u8")?;
        Ok(self.buf.get_u8())
    }

    pub fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => err(format!("bool byte {other}")),
        }
    }

    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        self.need(2, "u16")?;
        Ok(self.buf.get_u16())
    }

    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        self.need(4, "u32")?;
        Ok(self.buf.get_u32())
    }

    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        self.need(8, "u64")?;
        Ok(self.buf.get_u64())
    }

    /// A count of items each at least `min_item_bytes` long: checked against the bytes left.
    pub fn count(&mut self, min_item_bytes: usize, what: &str) -> Result<usize, DecodeError> {
        let count = self.u32()? as usize;
        self.need(count.saturating_mul(min_item_bytes.max(1)), what)?;
        Ok(count)
    }

    pub fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.u32()? as usize;
        self.need(len, "bytes")?;
        let (head, tail) = self.buf.split_at(len);
        self.buf = tail;
        Ok(head)
    }

    pub fn string(&mut self) -> Result<String, DecodeError> {
        let bytes = self.bytes()?;
        std::str::from_utf8(bytes).map(str::to_string).map_err(|e| DecodeError(format!("string: {e}")))
    }

    /// Fails unless everything was read.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if !self.buf.is_empty() {
            return err(format!("{} bytes after the message", self.buf.len()));
        }
        Ok(())
    }

    pub fn log_id(&mut self) -> Result<LogId<u64>, DecodeError> {
        let term = self.u64()?;
        let node_id = self.u64()?;
        let index = self.u64()?;
        Ok(LogId::new(CommittedLeaderId::new(term, node_id), index))
    }

    pub fn option_log_id(&mut self) -> Result<Option<LogId<u64>>, DecodeError> {
        match self.bool()? {
            false => Ok(None),
            true => self.log_id().map(Some),
        }
    }

    pub fn vote(&mut self) -> Result<Vote<u64>, DecodeError> {
        let term = self.u64()?;
        let node_id = self.u64()?;
        Ok(match self.bool()? {
            true => Vote::new_committed(term, node_id),
            false => Vote::new(term, node_id),
        })
    }

    pub fn membership(&mut self) -> Result<Membership<u64, BasicNode>, DecodeError> {
        let config_count = self.count(4, "membership configs")?;
        let mut configs = Vec::with_capacity(config_count);
        for _ in 0..config_count {
            let ids = self.count(8, "membership voters")?;
            configs.push((0..ids).map(|_| self.u64()).collect::<Result<BTreeSet<_>, _>>()?);
        }
        let node_count = self.count(12, "membership nodes")?;
        let mut nodes = BTreeMap::new();
        for _ in 0..node_count {
            let id = self.u64()?;
            nodes.insert(id, BasicNode::new(self.string()?));
        }
        Ok(Membership::new(configs, nodes))
    }

    pub fn stored_membership(&mut self) -> Result<StoredMembership<u64, BasicNode>, DecodeError> {
        let log_id = self.option_log_id()?;
        Ok(StoredMembership::new(log_id, self.membership()?))
    }

    pub fn records(&mut self) -> Result<Vec<MetadataRecord>, DecodeError> {
        let count = self.count(5, "records")?;
        (0..count)
            .map(|_| MetadataRecord::decode(self.bytes()?).map_err(|e| DecodeError(e.to_string())))
            .collect()
    }

    pub fn entry(&mut self) -> Result<Entry<TypeConfig>, DecodeError> {
        let log_id = self.log_id()?;
        let payload = match self.u8()? {
            0 => EntryPayload::Blank,
            1 => EntryPayload::Normal(RecordBatch(self.records()?)),
            2 => EntryPayload::Membership(self.membership()?),
            other => return err(format!("entry payload tag {other}")),
        };
        Ok(Entry { log_id, payload })
    }

    pub fn snapshot_meta(&mut self) -> Result<SnapshotMeta<u64, BasicNode>, DecodeError> {
        Ok(SnapshotMeta { last_log_id: self.option_log_id()?, last_membership: self.stored_membership()?, snapshot_id: self.string()? })
    }
}

/// Appends encodings to a byte vector.
pub trait Writer {
    fn put_bool(&mut self, value: bool);
    fn put_sized(&mut self, bytes: &[u8]);
    fn put_string(&mut self, value: &str);
    fn put_log_id(&mut self, log_id: &LogId<u64>);
    fn put_option_log_id(&mut self, log_id: &Option<LogId<u64>>);
    fn put_vote(&mut self, vote: &Vote<u64>);
    fn put_membership(&mut self, membership: &Membership<u64, BasicNode>);
    fn put_stored_membership(&mut self, membership: &StoredMembership<u64, BasicNode>);
    fn put_records(&mut self, records: &[MetadataRecord]);
    fn put_entry(&mut self, entry: &Entry<TypeConfig>);
    fn put_snapshot_meta(&mut self, meta: &SnapshotMeta<u64, BasicNode>);
}

impl Writer for Vec<u8> {
    fn put_bool(&mut self, value: bool) {
        self.put_u8(value as u8);
    }

    fn put_sized(&mut self, bytes: &[u8]) {
        self.put_u32(bytes.len() as u32);
        self.put_slice(bytes);
    }

    fn put_string(&mut self, value: &str) {
        self.put_sized(value.as_bytes());
    }

    fn put_log_id(&mut self, log_id: &LogId<u64>) {
        self.put_u64(log_id.leader_id.term);
        self.put_u64(log_id.leader_id.node_id);
        self.put_u64(log_id.index);
    }

    fn put_option_log_id(&mut self, log_id: &Option<LogId<u64>>) {
        self.put_bool(log_id.is_some());
        if let Some(log_id) = log_id {
            self.put_log_id(log_id);
        }
    }

    fn put_vote(&mut self, vote: &Vote<u64>) {
        self.put_u64(vote.leader_id.term);
        self.put_u64(vote.leader_id.node_id);
        self.put_bool(vote.committed);
    }

    fn put_membership(&mut self, membership: &Membership<u64, BasicNode>) {
        let configs = membership.get_joint_config();
        self.put_u32(configs.len() as u32);
        for config in configs {
            self.put_u32(config.len() as u32);
            config.iter().for_each(|id| self.put_u64(*id));
        }
        let nodes: Vec<_> = membership.nodes().collect();
        self.put_u32(nodes.len() as u32);
        for (id, node) in nodes {
            self.put_u64(*id);
            self.put_string(&node.addr);
        }
    }

    fn put_stored_membership(&mut self, membership: &StoredMembership<u64, BasicNode>) {
        self.put_option_log_id(membership.log_id());
        self.put_membership(membership.membership());
    }

    fn put_records(&mut self, records: &[MetadataRecord]) {
        self.put_u32(records.len() as u32);
        records.iter().for_each(|record| self.put_sized(&record.encode()));
    }

    fn put_entry(&mut self, entry: &Entry<TypeConfig>) {
        self.put_log_id(&entry.log_id);
        match &entry.payload {
            EntryPayload::Blank => self.put_u8(0),
            EntryPayload::Normal(batch) => {
                self.put_u8(1);
                self.put_records(&batch.0);
            }
            EntryPayload::Membership(membership) => {
                self.put_u8(2);
                self.put_membership(membership);
            }
        }
    }

    fn put_snapshot_meta(&mut self, meta: &SnapshotMeta<u64, BasicNode>) {
        self.put_option_log_id(&meta.last_log_id);
        self.put_stored_membership(&meta.last_membership);
        self.put_string(&meta.snapshot_id);
    }
}

/// The messages of the controller protocol, one per request frame.
pub enum Request {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<u64>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// A follower forwards a proposal to the leader.
    Propose(Vec<MetadataRecord>),
    /// A broker asks the leader to plan and commit a controller command (encoded by `controller::commands`).
    Execute(Vec<u8>),
}

const REQUEST_APPEND_ENTRIES: u8 = 1;
const REQUEST_VOTE: u8 = 2;
const REQUEST_INSTALL_SNAPSHOT: u8 = 3;
const REQUEST_PROPOSE: u8 = 4;
const REQUEST_EXECUTE: u8 = 5;

impl Request {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        match self {
            Request::AppendEntries(rpc) => {
                out.put_u8(REQUEST_APPEND_ENTRIES);
                out.put_vote(&rpc.vote);
                out.put_option_log_id(&rpc.prev_log_id);
                out.put_option_log_id(&rpc.leader_commit);
                out.put_u32(rpc.entries.len() as u32);
                rpc.entries.iter().for_each(|entry| out.put_entry(entry));
            }
            Request::Vote(rpc) => {
                out.put_u8(REQUEST_VOTE);
                out.put_vote(&rpc.vote);
                out.put_option_log_id(&rpc.last_log_id);
            }
            Request::InstallSnapshot(rpc) => {
                out.put_u8(REQUEST_INSTALL_SNAPSHOT);
                out.put_vote(&rpc.vote);
                out.put_snapshot_meta(&rpc.meta);
                out.put_u64(rpc.offset);
                out.put_sized(&rpc.data);
                out.put_bool(rpc.done);
            }
            Request::Propose(records) => {
                out.put_u8(REQUEST_PROPOSE);
                out.put_records(records);
            }
            Request::Execute(command) => {
                out.put_u8(REQUEST_EXECUTE);
                out.put_sized(command);
            }
        }
        out
    }

    pub fn decode(buf: &[u8]) -> Result<Request, DecodeError> {
        let mut r = Reader::new(buf);
        let request = match r.u8()? {
            REQUEST_APPEND_ENTRIES => {
                let vote = r.vote()?;
                let prev_log_id = r.option_log_id()?;
                let leader_commit = r.option_log_id()?;
                let count = r.count(25, "entries")?;
                let entries = (0..count).map(|_| r.entry()).collect::<Result<Vec<_>, _>>()?;
                Request::AppendEntries(AppendEntriesRequest { vote, prev_log_id, leader_commit, entries })
            }
            REQUEST_VOTE => Request::Vote(VoteRequest { vote: r.vote()?, last_log_id: r.option_log_id()? }),
            REQUEST_INSTALL_SNAPSHOT => Request::InstallSnapshot(InstallSnapshotRequest {
                vote: r.vote()?,
                meta: r.snapshot_meta()?,
                offset: r.u64()?,
                data: r.bytes()?.to_vec(),
                done: r.bool()?,
            }),
            REQUEST_PROPOSE => Request::Propose(r.records()?),
            REQUEST_EXECUTE => Request::Execute(r.bytes()?.to_vec()),
            other => return err(format!("request kind {other}")),
        };
        r.finish()?;
        Ok(request)
    }
}

/// The answers, one per response frame. A remote failure travels as text: the caller treats it as a network
/// error and openraft retries.
#[derive(Debug)]
pub enum Response {
    AppendEntries(AppendEntriesResponse<u64>),
    Vote(VoteResponse<u64>),
    InstallSnapshot(InstallSnapshotResponse<u64>),
    Proposed,
    NotController { leader: Option<u64> },
    Error(String),
    /// The encoded result of an `Execute`.
    Executed(Vec<u8>),
}

const RESPONSE_APPEND_ENTRIES: u8 = 1;
const RESPONSE_VOTE: u8 = 2;
const RESPONSE_INSTALL_SNAPSHOT: u8 = 3;
const RESPONSE_PROPOSED: u8 = 4;
const RESPONSE_NOT_CONTROLLER: u8 = 5;
const RESPONSE_ERROR: u8 = 6;
const RESPONSE_EXECUTED: u8 = 7;

impl Response {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        match self {
            Response::AppendEntries(response) => {
                out.put_u8(RESPONSE_APPEND_ENTRIES);
                match response {
                    AppendEntriesResponse::Success => out.put_u8(0),
                    AppendEntriesResponse::PartialSuccess(matching) => {
                        out.put_u8(1);
                        out.put_option_log_id(matching);
                    }
                    AppendEntriesResponse::Conflict => out.put_u8(2),
                    AppendEntriesResponse::HigherVote(vote) => {
                        out.put_u8(3);
                        out.put_vote(vote);
                    }
                }
            }
            Response::Vote(response) => {
                out.put_u8(RESPONSE_VOTE);
                out.put_vote(&response.vote);
                out.put_bool(response.vote_granted);
                out.put_option_log_id(&response.last_log_id);
            }
            Response::InstallSnapshot(response) => {
                out.put_u8(RESPONSE_INSTALL_SNAPSHOT);
                out.put_vote(&response.vote);
            }
            Response::Proposed => out.put_u8(RESPONSE_PROPOSED),
            Response::NotController { leader } => {
                out.put_u8(RESPONSE_NOT_CONTROLLER);
                out.put_bool(leader.is_some());
                out.put_u64(leader.unwrap_or(0));
            }
            Response::Error(message) => {
                out.put_u8(RESPONSE_ERROR);
                out.put_string(message);
            }
            Response::Executed(result) => {
                out.put_u8(RESPONSE_EXECUTED);
                out.put_sized(result);
            }
        }
        out
    }

    pub fn decode(buf: &[u8]) -> Result<Response, DecodeError> {
        let mut r = Reader::new(buf);
        let response = match r.u8()? {
            RESPONSE_APPEND_ENTRIES => Response::AppendEntries(match r.u8()? {
                0 => AppendEntriesResponse::Success,
                1 => AppendEntriesResponse::PartialSuccess(r.option_log_id()?),
                2 => AppendEntriesResponse::Conflict,
                3 => AppendEntriesResponse::HigherVote(r.vote()?),
                other => return err(format!("append-entries response tag {other}")),
            }),
            RESPONSE_VOTE => Response::Vote(VoteResponse { vote: r.vote()?, vote_granted: r.bool()?, last_log_id: r.option_log_id()? }),
            RESPONSE_INSTALL_SNAPSHOT => Response::InstallSnapshot(InstallSnapshotResponse { vote: r.vote()? }),
            RESPONSE_PROPOSED => Response::Proposed,
            RESPONSE_NOT_CONTROLLER => {
                let known = r.bool()?;
                let id = r.u64()?;
                Response::NotController { leader: known.then_some(id) }
            }
            RESPONSE_ERROR => Response::Error(r.string()?),
            RESPONSE_EXECUTED => Response::Executed(r.bytes()?.to_vec()),
            other => return err(format!("response kind {other}")),
        };
        r.finish()?;
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn membership() -> Membership<u64, BasicNode> {
        let nodes = BTreeMap::from([(1, BasicNode::new("127.0.0.1:1")), (2, BasicNode::new("127.0.0.1:2"))]);
        Membership::new(vec![BTreeSet::from([1, 2])], nodes)
    }

    #[test]
    fn entries_and_messages_round_trip() {
        let log_id = LogId::new(CommittedLeaderId::new(3, 2), 17);
        let records = vec![MetadataRecord::Topic { name: "t".into(), topic_id: Uuid::from_u128(5) }];
        let entries = vec![
            Entry { log_id, payload: EntryPayload::Blank },
            Entry { log_id, payload: EntryPayload::Normal(RecordBatch(records.clone())) },
            Entry { log_id, payload: EntryPayload::Membership(membership()) },
        ];
        let request = Request::AppendEntries(AppendEntriesRequest {
            vote: Vote::new_committed(3, 2),
            prev_log_id: Some(log_id),
            leader_commit: None,
            entries,
        });
        let encoded = request.encode();
        let Ok(Request::AppendEntries(decoded)) = Request::decode(&encoded) else { panic!("not append-entries") };
        assert_eq!(decoded.vote, Vote::new_committed(3, 2));
        assert_eq!(decoded.prev_log_id, Some(log_id));
        assert_eq!(decoded.entries.len(), 3);
        assert!(matches!(&decoded.entries[1].payload, EntryPayload::Normal(batch) if batch.0 == records));
        assert!(matches!(&decoded.entries[2].payload, EntryPayload::Membership(m) if *m == membership()));
        // Every cut is an error, never a panic.
        for cut in 0..encoded.len() {
            assert!(Request::decode(&encoded[..cut]).is_err());
        }

        let response = Response::Vote(VoteResponse { vote: Vote::new(4, 1), vote_granted: true, last_log_id: Some(log_id) });
        let Ok(Response::Vote(decoded)) = Response::decode(&response.encode()) else { panic!("not a vote response") };
        assert_eq!((decoded.vote, decoded.vote_granted, decoded.last_log_id), (Vote::new(4, 1), true, Some(log_id)));
    }

    #[test]
    fn lying_counts_are_rejected_before_allocating() {
        let mut lying = vec![REQUEST_PROPOSE];
        lying.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(Request::decode(&lying).is_err());
        assert!(Request::decode(&[99]).is_err());
        assert!(Response::decode(&[]).is_err());
    }
}
