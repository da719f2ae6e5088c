//! The controller runtime on every node: the quorum member, command execution on the quorum leader (or
//! forwarding to it), and the leader's liveness tracking of brokers.
//!
//! - [`Controller::execute`]: a broker's command. On the leader it is planned under the plan lock against an
//!   image that includes every committed entry (`ensure_linearizable`), so plans never race; the records are
//!   committed through openraft. Elsewhere it is forwarded to the leader; either way the call returns once
//!   this node's own image includes the result, so the caller can act on it right away.
//! - Liveness: heartbeats are not records (as in Kafka). The leader keeps the time of each broker's last
//!   heartbeat in memory and fences brokers silent for broker.session.timeout.ms; a new leader starts every
//!   broker's clock afresh.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::cluster;
use super::commands::{self, Command, Outcome};
use super::image::MetadataImage;
use super::quorum::network::Peer;
use super::quorum::codec::{Request, Response};
use super::quorum::{propose_locally, Quorum, QuorumOptions, TypeConfig};
use super::records::MetadataRecord;
use super::{ControllerError, PRODUCER_ID_BLOCK_SIZE};
use crate::config::BrokerConfig;
use openraft::Raft;

/// How long a command may take end to end (finding the leader, forwarding, committing, applying here).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for one forwarded command's answer. A leader that stopped (SIGSTOP, isolation) accepts the
/// connection but never answers; after this the command is retried with whoever leads by then. Long enough
/// that a slow but working commit is not sent twice (a retried CreateTopics would answer TOPIC_ALREADY_EXISTS);
/// heartbeats, which must reach a new controller within a session, are bounded by their caller instead.
const FORWARD_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest pause between two attempts of a command while the leader is unknown or changing.
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// How often the leader looks for brokers whose session expired.
const LIVENESS_CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// Idle connections to the leader kept for forwarding.
const MAX_POOLED_PEERS: usize = 4;

struct Shared {
    node_id: u64,
    raft: Raft<TypeConfig>,
    images: watch::Receiver<Arc<MetadataImage>>,
    config: BrokerConfig,
    /// Serialises planning + committing on the leader.
    plan_lock: tokio::sync::Mutex<()>,
    /// Last heartbeat per broker, on the leader only.
    heartbeats: Mutex<HashMap<i32, Instant>>,
    /// Broker processes (node, incarnation) that finished a controlled shutdown: a heartbeat of theirs still
    /// in flight must not unfence them.
    shut_down: Mutex<HashSet<(i32, uuid::Uuid)>>,
    /// Legacy single-node records to propose into an empty quorum once.
    legacy_records: Mutex<Option<Vec<MetadataRecord>>>,
    /// Where the legacy log lives, to retire it once migrated.
    metadata_dir: PathBuf,
    /// The cluster id this node proposes if it is the first leader (from its meta.properties).
    bootstrap_cluster_id: String,
}

pub struct Controller {
    node_id: i32,
    quorum: Quorum,
    shared: Arc<Shared>,
    /// Connections to the current leader's controller listener, for forwarding.
    peers: Mutex<HashMap<u64, Vec<Peer>>>,
    liveness: JoinHandle<()>,
}

impl Controller {
    /// Starts this node's quorum member (voters: id → controller address; `listener` may be None for a
    /// quorum of one) and the controller runtime around it.
    pub async fn start(
        node_id: i32,
        metadata_dir: &Path,
        listener: Option<tokio::net::TcpListener>,
        voters: BTreeMap<u64, String>,
        config: BrokerConfig,
        options: QuorumOptions,
        bootstrap_cluster_id: String,
    ) -> Result<Controller, ControllerError> {
        let legacy = super::read_legacy_metadata_log(metadata_dir)?;
        let quorum = Quorum::start_with_listener(node_id as u64, metadata_dir, listener, voters, options)
            .await
            .map_err(|e| ControllerError::NotController(format!("starting the controller quorum: {e}")))?;
        let shared = Arc::new(Shared {
            node_id: node_id as u64,
            raft: quorum.raft().clone(),
            images: quorum.subscribe(),
            config,
            plan_lock: tokio::sync::Mutex::new(()),
            heartbeats: Mutex::new(HashMap::new()),
            shut_down: Mutex::new(HashSet::new()),
            legacy_records: Mutex::new((!legacy.is_empty()).then_some(legacy)),
            metadata_dir: metadata_dir.to_path_buf(),
            bootstrap_cluster_id,
        });
        let hook_shared = shared.clone();
        quorum.set_executor(Arc::new(move |bytes: Vec<u8>| {
            let shared = hook_shared.clone();
            Box::pin(async move {
                let result = match Command::decode(&bytes) {
                    Ok(command) => shared.execute_here(command).await,
                    Err(e) => Err(ControllerError::InvalidRequest(e.to_string())),
                };
                commands::encode_result(&result)
            })
        }));
        let liveness = tokio::spawn(liveness_loop(shared.clone()));
        Ok(Controller { node_id, quorum, shared, peers: Mutex::new(HashMap::new()), liveness })
    }

    pub fn node_id(&self) -> i32 {
        self.node_id
    }

    /// The latest image applied on this node; cheap (an `Arc` clone).
    pub fn image(&self) -> Arc<MetadataImage> {
        self.quorum.image()
    }

    /// A receiver that sees every new image.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.quorum.subscribe()
    }

    /// How many nodes the controller quorum has (every voter is also a broker).
    pub fn voter_count(&self) -> usize {
        self.quorum.voters().len()
    }

    /// The quorum leader this node knows of: the "controller" Metadata and DescribeCluster report.
    pub fn active_controller(&self) -> Option<i32> {
        self.quorum.leader().map(|id| id as i32)
    }

    /// Runs `command` on the active controller and waits until this node's image includes its result.
    pub async fn execute(&self, command: Command) -> Result<Outcome, ControllerError> {
        self.execute_within(command, COMMAND_TIMEOUT).await
    }

    /// [`Controller::execute`] bounded by `timeout` (heartbeats must not outlive their session).
    pub async fn execute_within(&self, command: Command, timeout: Duration) -> Result<Outcome, ControllerError> {
        let deadline = Instant::now() + timeout;
        let (outcome, index) = self.execute_somewhere(command, deadline).await?;
        self.wait_applied(index, deadline).await;
        Ok(outcome)
    }

    async fn execute_somewhere(&self, command: Command, deadline: Instant) -> Result<(Outcome, u64), ControllerError> {
        let mut last_error = String::from("no quorum leader elected yet");
        loop {
            let leader = self.quorum.leader();
            let attempt = match leader {
                Some(leader) if leader == self.shared.node_id => self.shared.execute_here(command.clone()).await,
                Some(leader) => self.forward(leader, &command, deadline).await,
                None => Err(ControllerError::NotController(last_error.clone())),
            };
            match attempt {
                Err(ControllerError::NotController(reason)) => last_error = reason,
                Err(ControllerError::Remote { code, message }) if code == kafka_protocol::ResponseError::NotController.code() => {
                    last_error = message
                }
                other => return other,
            }
            if Instant::now() + RETRY_PAUSE >= deadline {
                return Err(ControllerError::NotController(last_error));
            }
            // Retry as soon as the quorum's state changes (a leader is elected), at the latest after a pause.
            let mut metrics = self.shared.raft.metrics();
            metrics.borrow_and_update();
            let _ = tokio::time::timeout(RETRY_PAUSE, metrics.changed()).await;
        }
    }

    async fn forward(&self, leader: u64, command: &Command, deadline: Instant) -> Result<(Outcome, u64), ControllerError> {
        let Some(addr) = self.quorum.voters().get(&leader).cloned() else {
            return Err(ControllerError::NotController(format!("leader {leader} is not a known voter")));
        };
        let pooled = self.peers.lock().unwrap_or_else(|p| p.into_inner()).get_mut(&leader).and_then(Vec::pop);
        let mut peer = pooled.unwrap_or_else(|| Peer::new(addr));
        let timeout = deadline.saturating_duration_since(Instant::now()).min(FORWARD_ATTEMPT_TIMEOUT).max(Duration::from_millis(10));
        let answer = peer.call(&Request::Execute(command.encode()), timeout).await;
        let result = match answer {
            Ok(Response::Executed(bytes)) => commands::decode_result(&bytes)
                .map_err(|e| ControllerError::NotController(format!("controller {leader} answered garbage: {e}")))?,
            Ok(Response::NotController { .. }) => Err(ControllerError::NotController(format!("node {leader} is no longer the leader"))),
            Ok(other) => Err(ControllerError::NotController(format!("controller {leader} answered {other:?}"))),
            Err(e) => Err(ControllerError::NotController(format!("forwarding to controller {leader}: {e}"))),
        };
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        let pool = peers.entry(leader).or_default();
        if pool.len() < MAX_POOLED_PEERS {
            pool.push(peer);
        }
        result
    }

    /// Waits (bounded) until this node has applied log index `index`.
    async fn wait_applied(&self, index: u64, deadline: Instant) {
        let mut metrics = self.shared.raft.metrics();
        loop {
            if metrics.borrow_and_update().last_applied.is_some_and(|applied| applied.index >= index) {
                return;
            }
            if tokio::time::timeout_at(deadline, metrics.changed()).await.map_or(true, |r| r.is_err()) {
                tracing::warn!(index, "this node did not apply a committed controller command in time");
                return;
            }
        }
    }

    pub async fn shutdown(self) {
        self.liveness.abort();
        self.quorum.shutdown().await;
    }
}

impl Shared {
    fn image(&self) -> Arc<MetadataImage> {
        self.images.borrow().clone()
    }

    fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.node_id)
    }

    /// Plans and commits `command` on this node, which must be the quorum leader.
    async fn execute_here(&self, command: Command) -> Result<(Outcome, u64), ControllerError> {
        let _one_plan_at_a_time = self.plan_lock.lock().await;
        if !self.is_leader() {
            return Err(ControllerError::NotController(format!("node {} is not the leader", self.node_id)));
        }
        // Plan against an image with every committed entry applied (a new leader may lag behind).
        self.raft.ensure_linearizable().await.map_err(|e| ControllerError::NotController(e.to_string()))?;
        self.bootstrap().await?;
        let image = self.image();
        let (records, outcome) = self.plan(&image, &command)?;
        let index = if records.is_empty() {
            self.raft.metrics().borrow().last_applied.map(|l| l.index).unwrap_or(0)
        } else {
            self.commit(records).await?
        };
        Ok((outcome, index))
    }

    async fn commit(&self, records: Vec<MetadataRecord>) -> Result<u64, ControllerError> {
        match self.raft.client_write(super::quorum::RecordBatch(records)).await {
            Ok(response) => Ok(response.log_id.index),
            Err(e) => Err(ControllerError::NotController(format!("committing: {e}"))),
        }
    }

    /// What a leader writes before anything else, once: the cluster id, and the records of a data directory
    /// from before the quorum (its single-node metadata log). Called with the plan lock held.
    async fn bootstrap(&self) -> Result<(), ControllerError> {
        let pending = self.legacy_records.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(records) = pending {
            if self.image().topics.is_empty() {
                tracing::info!(records = records.len(), "moving the single-node metadata log into the controller quorum");
                propose_locally(&self.raft, records).await.map_err(|e| ControllerError::NotController(e.to_string()))?;
            }
            // Migrated (or the quorum has its own topics): the file must never be replayed again, or topics
            // deleted since would come back after a restart.
            super::retire_legacy_metadata_log(&self.metadata_dir)?;
            *self.legacy_records.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        if self.image().cluster_id.is_none() {
            let record = MetadataRecord::ClusterId { id: self.bootstrap_cluster_id.clone() };
            propose_locally(&self.raft, vec![record]).await.map_err(|e| ControllerError::NotController(e.to_string()))?;
        }
        Ok(())
    }

    fn plan(&self, image: &MetadataImage, command: &Command) -> Result<(Vec<MetadataRecord>, Outcome), ControllerError> {
        let done = |records: Vec<MetadataRecord>| Ok((records, Outcome::Done));
        let only_validate = |records: Vec<MetadataRecord>, validate_only: bool| done(if validate_only { Vec::new() } else { records });
        match command {
            Command::CreateTopic { topic, validate_only } => only_validate(super::plan_create_topic(image, topic)?, *validate_only),
            Command::DeleteTopic(topic) => done(super::plan_delete_topic(image, topic)?),
            Command::CreatePartitions { name, total, assignments, validate_only } => {
                only_validate(super::plan_create_partitions_with_assignments(image, name, *total, assignments.as_deref())?, *validate_only)
            }
            Command::AlterTopicConfigs { name, changes, replace_all, validate_only } => {
                only_validate(super::plan_alter_topic_configs(image, name, changes, *replace_all)?, *validate_only)
            }
            Command::IncrementalAlterTopicConfigs { name, changes, validate_only } => {
                only_validate(super::plan_incremental_alter_topic_configs(image, &self.config, name, changes)?, *validate_only)
            }
            Command::AllocateProducerIds { broker } => {
                let start = image.next_producer_id_block;
                let records = vec![MetadataRecord::ProducerIds { broker: *broker, next_block_start: start + PRODUCER_ID_BLOCK_SIZE }];
                Ok((records, Outcome::ProducerIdBlock { start }))
            }
            Command::RegisterBroker { broker, incarnation, host, port, rack } => {
                // A new process of this node: forget the shut-down ones (bounded by the node count).
                self.shut_down.lock().unwrap_or_else(|p| p.into_inner()).retain(|(node, _)| node != broker);
                self.note_heartbeat(*broker);
                done(cluster::plan_register_broker(image, *broker, *incarnation, host, *port, rack.as_deref()))
            }
            Command::BrokerHeartbeat { broker, incarnation, want_shutdown } => {
                let registered = image.broker(*broker).filter(|b| b.incarnation == *incarnation).ok_or(ControllerError::StaleBrokerEpoch(*broker))?;
                let mut shut_down = self.shut_down.lock().unwrap_or_else(|p| p.into_inner());
                if *want_shutdown {
                    shut_down.insert((*broker, *incarnation));
                    self.heartbeats.lock().unwrap_or_else(|p| p.into_inner()).remove(broker);
                    return Ok((cluster::plan_fence_broker(image, *broker), Outcome::Heartbeat { fenced: true }));
                }
                if shut_down.contains(&(*broker, *incarnation)) {
                    return Ok((Vec::new(), Outcome::Heartbeat { fenced: true }));
                }
                drop(shut_down);
                self.note_heartbeat(*broker);
                let records = if registered.fenced { cluster::plan_unfence_broker(image, *broker) } else { Vec::new() };
                Ok((records, Outcome::Heartbeat { fenced: false }))
            }
            Command::AlterPartition { topic_id, partition, leader, leader_epoch, partition_epoch, new_isr } => {
                done(cluster::plan_alter_partition(image, *topic_id, *partition, *leader, *leader_epoch, *partition_epoch, new_isr)?)
            }
            Command::ElectLeader { topic, partition, unclean: false } => done(cluster::plan_elect_preferred(image, topic, *partition)?),
            Command::ElectLeader { topic, partition, unclean: true } => done(cluster::plan_elect_unclean(image, topic, *partition)?),
            Command::Reassign { topic, partition, target } => done(cluster::plan_reassign(image, topic, *partition, target.as_deref())?),
        }
    }

    /// The leader's own changes (fencing, elections): planned under the plan lock against an up-to-date image
    /// and committed, like a broker's command.
    async fn commit_own_plan(&self, what: &str, plan: impl FnOnce(&MetadataImage) -> Vec<MetadataRecord>) {
        let _one_plan_at_a_time = self.plan_lock.lock().await;
        if !self.is_leader() || self.raft.ensure_linearizable().await.is_err() {
            return;
        }
        let records = plan(&self.image());
        if records.is_empty() {
            return;
        }
        tracing::warn!(records = records.len(), "{what}");
        if let Err(e) = self.commit(records).await {
            tracing::warn!(error = %e, "{what} failed");
        }
    }

    fn note_heartbeat(&self, broker: i32) {
        self.heartbeats.lock().unwrap_or_else(|p| p.into_inner()).insert(broker, Instant::now());
    }

    /// Live brokers whose last heartbeat is older than the session timeout.
    fn expired_brokers(&self, image: &MetadataImage, now: Instant) -> Vec<i32> {
        let timeout = Duration::from_millis(self.config.get_i64("broker.session.timeout.ms").max(1) as u64);
        let mut heartbeats = self.heartbeats.lock().unwrap_or_else(|p| p.into_inner());
        image
            .live_brokers()
            .filter(|b| {
                // A broker this leader never heard from gets a full session from now.
                let last = *heartbeats.entry(b.node_id).or_insert(now);
                now.duration_since(last) > timeout
            })
            .map(|b| b.node_id)
            .collect()
    }
}

/// How often the leader looks for offline partitions of topics with unclean.leader.election.enable=true.
const UNCLEAN_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Offline partitions (no live in-sync replica) of topics that allow unclean election (the topic's
/// unclean.leader.election.enable, else the broker's) go to a live out-of-sync replica.
fn plan_unclean_elections(image: &MetadataImage, config: &BrokerConfig) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    for topic in image.topics.values() {
        if config.topic_value(&topic.configs, "unclean.leader.election.enable") != "true" {
            continue;
        }
        for (index, p) in topic.partitions.iter().enumerate() {
            if p.leader < 0 {
                if let Ok(mut elected) = cluster::plan_elect_unclean(image, &topic.name, index as i32) {
                    records.append(&mut elected);
                }
            }
        }
    }
    records
}

/// On the leader: fences brokers whose session expired. A node that just became leader starts every
/// broker's session afresh, since heartbeats went to the old leader.
async fn liveness_loop(shared: Arc<Shared>) {
    let mut was_leader = false;
    let rebalance_every = Duration::from_secs(shared.config.get_i64("leader.imbalance.check.interval.seconds").max(1) as u64);
    let mut next_rebalance = Instant::now() + rebalance_every;
    let mut next_unclean_check = Instant::now();
    let mut ticker = tokio::time::interval(LIVENESS_CHECK_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let leader = shared.is_leader();
        if leader && !was_leader {
            shared.heartbeats.lock().unwrap_or_else(|p| p.into_inner()).clear();
        }
        was_leader = leader;
        if !leader {
            continue;
        }
        if Instant::now() >= next_unclean_check {
            next_unclean_check = Instant::now() + UNCLEAN_CHECK_INTERVAL;
            shared.commit_own_plan("unclean leader election of offline partitions", |image| plan_unclean_elections(image, &shared.config)).await;
        }
        if shared.config.get_bool("auto.leader.rebalance.enable") && Instant::now() >= next_rebalance {
            next_rebalance = Instant::now() + rebalance_every;
            shared.commit_own_plan("moving leaderships back to preferred replicas", cluster::plan_preferred_rebalance).await;
        }
        for broker in shared.expired_brokers(&shared.image(), Instant::now()) {
            let what = format!("fencing broker {broker}, whose session expired");
            shared.commit_own_plan(&what, |image| cluster::plan_fence_broker(image, broker)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::records::ConfigResource;
    use uuid::Uuid;

    #[test]
    fn only_topics_allowing_it_get_unclean_elections() {
        let mut image = MetadataImage::with_live_brokers(&[1, 2]);
        for (name, id) in [("allowed", 1u128), ("strict", 2u128)] {
            let topic_id = Uuid::from_u128(id);
            image.apply(&MetadataRecord::Topic { name: name.into(), topic_id });
            image.apply(&MetadataRecord::Partition {
                topic_id,
                partition: 0,
                replicas: vec![3, 2],
                isr: vec![3],
                leader: -1,
                leader_epoch: 1,
                partition_epoch: 1,
                adding: vec![],
                removing: vec![],
            });
        }
        image.apply(&MetadataRecord::Config {
            resource: ConfigResource::Topic("allowed".into()),
            name: "unclean.leader.election.enable".into(),
            value: Some("true".into()),
        });
        let records = plan_unclean_elections(&image, &BrokerConfig::default());
        records.iter().for_each(|r| image.apply(r));
        assert_eq!((image.topics["allowed"].partitions[0].leader, image.topics["allowed"].partitions[0].isr.clone()), (2, vec![2]));
        assert_eq!(image.topics["strict"].partitions[0].leader, -1);
    }

    #[tokio::test]
    async fn a_broker_registers_is_unfenced_by_heartbeats_and_stays_fenced_after_a_controlled_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let voters = BTreeMap::from([(1u64, "127.0.0.1:0".to_string())]);
        let controller = Controller::start(1, dir.path(), None, voters, BrokerConfig::default(), QuorumOptions::default(), "cluster".into())
            .await
            .unwrap();
        let incarnation = Uuid::from_u128(1);
        let register = Command::RegisterBroker { broker: 1, incarnation, host: "h".into(), port: 9092, rack: None };
        assert_eq!(controller.execute(register).await.unwrap(), Outcome::Done);
        assert!(controller.image().broker(1).unwrap().fenced, "registered brokers start fenced");
        let heartbeat = |want_shutdown| Command::BrokerHeartbeat { broker: 1, incarnation, want_shutdown };
        assert_eq!(controller.execute(heartbeat(false)).await.unwrap(), Outcome::Heartbeat { fenced: false });
        assert!(controller.image().is_live(1));
        assert_eq!(controller.image().cluster_id.as_deref(), Some("cluster"));

        assert_eq!(controller.execute(heartbeat(true)).await.unwrap(), Outcome::Heartbeat { fenced: true });
        assert!(!controller.image().is_live(1));
        // A heartbeat that was already on its way does not undo the shutdown.
        assert_eq!(controller.execute(heartbeat(false)).await.unwrap(), Outcome::Heartbeat { fenced: true });
        assert!(!controller.image().is_live(1));
        // Another process of the node is refused until it registers.
        let stranger = Command::BrokerHeartbeat { broker: 1, incarnation: Uuid::from_u128(2), want_shutdown: false };
        assert!(matches!(controller.execute(stranger).await, Err(ControllerError::StaleBrokerEpoch(1))));
        controller.shutdown().await;
    }

    #[tokio::test]
    async fn a_legacy_metadata_log_is_moved_into_the_quorum_once() {
        let dir = tempfile::tempdir().unwrap();
        let topic_id = Uuid::from_u128(5);
        let legacy = [
            MetadataRecord::Topic { name: "old".into(), topic_id },
            MetadataRecord::Partition {
                topic_id,
                partition: 0,
                replicas: vec![1],
                isr: vec![1],
                leader: 1,
                leader_epoch: 0,
                partition_epoch: 0,
                adding: vec![],
                removing: vec![],
            },
        ];
        let mut bytes = Vec::new();
        for record in &legacy {
            let payload = record.encode();
            bytes.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            bytes.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
            bytes.extend_from_slice(&payload);
        }
        std::fs::write(dir.path().join(crate::controller::LEGACY_METADATA_LOG), bytes).unwrap();
        let voters = || BTreeMap::from([(1u64, "127.0.0.1:0".to_string())]);
        let start = || Controller::start(1, dir.path(), None, voters(), BrokerConfig::default(), QuorumOptions::default(), "c".into());

        let controller = start().await.unwrap();
        let register = Command::RegisterBroker { broker: 1, incarnation: Uuid::from_u128(1), host: "h".into(), port: 9092, rack: None };
        controller.execute(register).await.unwrap();
        assert!(controller.image().topic("old").is_some());
        assert!(!dir.path().join(crate::controller::LEGACY_METADATA_LOG).exists(), "the legacy log is retired");
        controller.execute(Command::DeleteTopic(crate::controller::TopicRef::Name("old".into()))).await.unwrap();
        controller.shutdown().await;

        // After a restart the deleted topic stays deleted.
        let controller = start().await.unwrap();
        let register = Command::RegisterBroker { broker: 1, incarnation: Uuid::from_u128(2), host: "h".into(), port: 9092, rack: None };
        controller.execute(register).await.unwrap();
        assert!(controller.image().topic("old").is_none());
        controller.shutdown().await;
    }
}
