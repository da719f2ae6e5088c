//! The controller quorum: the metadata log replicated with openraft (0.9, `storage-v2`, no serde).
//!
//! - [`log_store`]: the Raft log on disk (`RaftLogStorage`): CRC-framed entries, vote/committed/purged files.
//! - [`state_machine`]: applies committed batches of [`MetadataRecord`]s to a [`MetadataImage`] and publishes
//!   it (`RaftStateMachine`); snapshots are the image as records.
//! - [`network`]: the length-prefixed TCP protocol between controllers (`RaftNetwork`), and its server.
//! - [`codec`]: our encoding of openraft's types.
//!
//! A proposal's life: [`Quorum::propose`] → openraft `client_write` on the leader (a follower forwards the
//! batch to the leader over the controller protocol) → the entry is appended on a majority → committed →
//! every member's state machine applies it and publishes a new image to [`Quorum::subscribe`]rs.
//!
//! Voters are static (`--voters 1@h:p,2@h:p,3@h:p`): every voter whose log is empty initialises the cluster
//! with the same membership, which openraft allows; a single voter is a quorum of one running the same code.

pub mod codec;
pub mod log_store;
pub mod network;
pub mod state_machine;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, Config, Raft, SnapshotPolicy};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::image::MetadataImage;
use super::records::MetadataRecord;
use codec::{Request, Response};
use log_store::LogStore;
pub use network::ExecuteHook;
use network::{Network, Peer};
use state_machine::StateMachine;

/// An entry's payload: one batch of records, committed and applied atomically.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordBatch(pub Vec<MetadataRecord>);

impl std::fmt::Display for RecordBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} metadata records", self.0.len())
    }
}

openraft::declare_raft_types!(
    /// Node ids are Kafka node.ids; a node's info is its controller address.
    pub TypeConfig:
        D = RecordBatch,
        R = (),
        NodeId = u64,
        Node = BasicNode,
);

#[derive(thiserror::Error, Debug)]
pub enum QuorumError {
    /// This node is not the leader and the proposal could not be forwarded; `leader` is the one it knows of.
    #[error("not the controller (leader: {leader:?})")]
    NotController { leader: Option<u64> },
    #[error("invalid quorum configuration: {0}")]
    Config(String),
    #[error("quorum storage: {0}")]
    Io(#[from] std::io::Error),
    #[error("quorum: {0}")]
    Raft(String),
}

/// Timing and snapshot settings; the defaults suit a LAN, tests use faster ones.
#[derive(Clone, Debug)]
pub struct QuorumOptions {
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// A snapshot is built after this many entries since the last one.
    pub snapshot_every_entries: u64,
    /// Entries kept in the log behind the last snapshot (for followers slightly behind).
    pub entries_kept_after_snapshot: u64,
}

impl Default for QuorumOptions {
    fn default() -> QuorumOptions {
        QuorumOptions {
            heartbeat_interval_ms: 250,
            election_timeout_min_ms: 1000,
            election_timeout_max_ms: 2000,
            snapshot_every_entries: 5000,
            entries_kept_after_snapshot: 1000,
        }
    }
}

/// Parses `--voters 1@host:port,2@host:port`.
pub fn parse_voters(spec: &str) -> Result<BTreeMap<u64, String>, QuorumError> {
    let mut voters = BTreeMap::new();
    for item in spec.split(',').map(str::trim).filter(|item| !item.is_empty()) {
        let (id, addr) = item.split_once('@').ok_or_else(|| QuorumError::Config(format!("voter {item:?} is not id@host:port")))?;
        let id: u64 = id.parse().map_err(|_| QuorumError::Config(format!("voter id {id:?} is not a number")))?;
        if addr.rsplit_once(':').is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err()) {
            return Err(QuorumError::Config(format!("voter {id} address {addr:?} is not host:port")));
        }
        if voters.insert(id, addr.to_string()).is_some() {
            return Err(QuorumError::Config(format!("voter {id} is listed twice")));
        }
    }
    if voters.is_empty() {
        return Err(QuorumError::Config("no voters".into()));
    }
    Ok(voters)
}

/// A running quorum member.
pub struct Quorum {
    node_id: u64,
    raft: Raft<TypeConfig>,
    image: watch::Receiver<Arc<MetadataImage>>,
    voters: BTreeMap<u64, String>,
    /// None for a quorum of one without a controller listener.
    server: Option<JoinHandle<()>>,
    executor: Arc<OnceLock<ExecuteHook>>,
}

impl Quorum {
    /// Binds `listen` and starts; see [`Quorum::start_with_listener`].
    pub async fn start(node_id: u64, data_dir: &Path, listen: &str, voters: BTreeMap<u64, String>) -> Result<Quorum, QuorumError> {
        let listener = TcpListener::bind(listen).await?;
        Quorum::start_with_listener(node_id, data_dir, Some(listener), voters, QuorumOptions::default()).await
    }

    /// Opens the log and state machine under `data_dir`, serves peers on `listener` and joins the quorum of
    /// `voters` (id → controller address), initialising it if this node's log is empty.
    pub async fn start_with_listener(
        node_id: u64,
        data_dir: &Path,
        listener: Option<TcpListener>,
        voters: BTreeMap<u64, String>,
        options: QuorumOptions,
    ) -> Result<Quorum, QuorumError> {
        if listener.is_none() && voters.len() > 1 {
            return Err(QuorumError::Config("a quorum of several voters needs a controller listener".into()));
        }
        if !voters.contains_key(&node_id) {
            return Err(QuorumError::Config(format!("node {node_id} is not among the voters {:?}", voters.keys().collect::<Vec<_>>())));
        }
        let config = Config {
            cluster_name: "odradek".into(),
            heartbeat_interval: options.heartbeat_interval_ms,
            election_timeout_min: options.election_timeout_min_ms,
            election_timeout_max: options.election_timeout_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(options.snapshot_every_entries),
            max_in_snapshot_log_to_keep: options.entries_kept_after_snapshot,
            snapshot_max_chunk_size: (network::MAX_FRAME_BYTES / 4) as u64,
            ..Default::default()
        }
        .validate()
        .map_err(|e| QuorumError::Config(e.to_string()))?;

        let log_store = LogStore::open(data_dir)?;
        let (publish, image) = watch::channel(Arc::new(MetadataImage::default()));
        let state_machine = StateMachine::open(data_dir, publish)?;
        let raft = Raft::new(node_id, Arc::new(config), Network, log_store, state_machine)
            .await
            .map_err(|e| QuorumError::Raft(format!("starting raft: {e}")))?;
        let executor: Arc<OnceLock<ExecuteHook>> = Arc::new(OnceLock::new());
        let server = listener.map(|listener| tokio::spawn(network::serve(listener, raft.clone(), executor.clone())));

        let initialized = raft.is_initialized().await.map_err(|e| QuorumError::Raft(e.to_string()))?;
        if !initialized {
            let members: BTreeMap<u64, BasicNode> = voters.iter().map(|(id, addr)| (*id, BasicNode::new(addr))).collect();
            // Another voter may have initialised us meanwhile: that is fine, the membership is the same.
            if let Err(e) = raft.initialize(members).await {
                tracing::info!(node_id, error = %e, "not initialising the controller quorum");
            }
        }
        if voters.len() == 1 {
            // A quorum of one need not wait out an election timeout after a restart.
            if let Err(e) = raft.trigger().elect().await {
                tracing::warn!(node_id, error = %e, "triggering the election of a single-voter quorum");
            }
        }
        Ok(Quorum { node_id, raft, image, voters, server, executor })
    }

    /// Installs the handler of commands forwarded by other members (set once; later calls are ignored).
    pub fn set_executor(&self, hook: ExecuteHook) {
        let _ = self.executor.set(hook);
    }

    pub fn voters(&self) -> &BTreeMap<u64, String> {
        &self.voters
    }

    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    /// The latest applied image; cheap (an `Arc` clone).
    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.borrow().clone()
    }

    /// A receiver that sees every new image.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.image.clone()
    }

    /// The leader this node knows of.
    pub fn leader(&self) -> Option<u64> {
        self.raft.metrics().borrow().current_leader
    }

    /// The last log index applied to this node's image.
    pub fn applied_index(&self) -> Option<u64> {
        self.raft.metrics().borrow().last_applied.map(|log_id| log_id.index)
    }

    pub fn raft(&self) -> &Raft<TypeConfig> {
        &self.raft
    }

    /// Commits `records` as one batch; returns once they are applied on the leader. A follower forwards the
    /// batch to the leader it knows of.
    pub async fn propose(&self, records: Vec<MetadataRecord>) -> Result<(), QuorumError> {
        match propose_locally(&self.raft, records.clone()).await {
            Err(QuorumError::NotController { leader: Some(leader) }) if leader != self.node_id => {
                let Some(addr) = self.voters.get(&leader) else { return Err(QuorumError::NotController { leader: Some(leader) }) };
                let mut peer = Peer::new(addr.clone());
                match peer.call(&Request::Propose(records), network::PROPOSE_TIMEOUT).await {
                    Ok(Response::Proposed) => Ok(()),
                    Ok(Response::NotController { leader }) => Err(QuorumError::NotController { leader }),
                    Ok(other) => Err(QuorumError::Raft(format!("leader {leader} answered {other:?}"))),
                    Err(e) => {
                        tracing::debug!(leader, error = %e, "forwarding a proposal failed");
                        Err(QuorumError::NotController { leader: Some(leader) })
                    }
                }
            }
            other => other,
        }
    }

    /// Stops raft and the server; the data directory can be reopened afterwards.
    pub async fn shutdown(self) {
        if let Some(server) = self.server {
            server.abort();
            let _ = server.await;
        }
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(node_id = self.node_id, error = %e, "controller quorum shutdown");
        }
    }
}

/// `client_write` on this node, with openraft's errors turned into ours.
pub(crate) async fn propose_locally(raft: &Raft<TypeConfig>, records: Vec<MetadataRecord>) -> Result<(), QuorumError> {
    match raft.client_write(RecordBatch(records)).await {
        Ok(_) => Ok(()),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => Err(QuorumError::NotController { leader: forward.leader_id }),
        Err(e) => Err(QuorumError::Raft(e.to_string())),
    }
}

/// Waits until `check` holds for the image of `quorum`, up to `timeout`.
pub async fn wait_for_image<F>(quorum: &Quorum, timeout: Duration, check: F) -> bool
where
    F: Fn(&MetadataImage) -> bool,
{
    let mut images = quorum.subscribe();
    let wait = async {
        loop {
            if check(&images.borrow_and_update()) {
                return true;
            }
            if images.changed().await.is_err() {
                return false;
            }
        }
    };
    tokio::time::timeout(timeout, wait).await.unwrap_or(false)
}
