//! The broker: its identity (node id, cluster id, advertised address), the controller's metadata image and
//! the partitions this node hosts. After every metadata commit, [`Broker::reconcile`] brings the hosted
//! partitions in line with the image (open new ones, apply leadership, reconfigure, delete removed ones), so
//! the image stays the single source of truth. The broker registers with the controller and heartbeats; the
//! controller fences it (and moves its leaderships) when the heartbeats stop.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use tokio::net::TcpListener;
use tokio::sync::watch;
use uuid::Uuid;

use crate::config::BrokerConfig;
use crate::controller::commands::{Command, Outcome};
use crate::controller::quorum::{parse_voters, QuorumOptions};
use crate::controller::image::BrokerImage;
use crate::controller::{self, ConfigChange, Controller, ControllerError, IncrementalChange, MetadataImage, NewTopic, PartitionImage, TopicRef};
use crate::group::runtime::{group_config, GroupCoordinator, OFFSETS_TOPIC};
use crate::partition::{Leadership, Partition, PartitionSettings};
use crate::protocol::errors::KafkaCode;
use crate::replication::fetcher::{FetcherConfig, FollowerAssignment, ReplicaFetchers};
use crate::txn::runtime::{txn_config, TxnCoordinator};
use crate::txn::TRANSACTION_STATE_TOPIC;

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

pub struct Broker {
    pub config: BrokerConfig,
    pub node_id: i32,
    /// This process's registration: a restarted broker registers anew, so the controller can tell a stale
    /// heartbeat from a live one.
    pub incarnation: Uuid,
    local_cluster_id: String,
    pub advertised_host: String,
    pub advertised_port: i32,
    pub rack: Option<String>,
    pub data_dir: PathBuf,
    pub controller: Controller,
    /// The group coordinator: one task per led `__consumer_offsets` partition, started lazily.
    pub groups: GroupCoordinator,
    /// The transaction coordinator: one task per led `__transaction_state` partition.
    pub txns: TxnCoordinator,
    /// Hosted partitions by topic id and partition index.
    partitions: RwLock<HashMap<Uuid, BTreeMap<i32, Arc<Partition>>>>,
    /// Serialises reconciliation so two image changes never open the same partition twice.
    reconcile_lock: Mutex<()>,
    /// The producer-id block this broker hands out from: [next, end).
    producer_ids: tokio::sync::Mutex<(i64, i64)>,
    /// Follower side of replication: one fetcher task per leader this broker follows.
    fetchers: ReplicaFetchers,
    /// Set by the controlled shutdown: heartbeats stop, so nothing unfences this broker again.
    shutting_down: AtomicBool,
}

/// A coordinator's compacted internal topic and the broker properties that shape it.
pub struct InternalTopic<'a> {
    pub name: &'a str,
    pub partitions_property: &'a str,
    pub replication_factor_property: &'a str,
    pub segment_bytes_property: &'a str,
    /// Its min.insync.replicas (capped at the replication factor); None: the broker default.
    pub min_insync_replicas_property: Option<&'a str>,
}

/// How long a single-node broker waits at start for its own registration (a quorum of one elects itself at
/// once, so this only bounds a broken disk).
const SINGLE_NODE_REGISTRATION_WAIT: Duration = Duration::from_secs(10);

impl Broker {
    /// Opens the data directory (creating it), checks its identity, starts the controller quorum member,
    /// opens the partitions the metadata assigns here and registers with the controller.
    pub async fn open(config: BrokerConfig, advertised: (String, i32)) -> anyhow::Result<Arc<Broker>> {
        let data_dir = PathBuf::from(config.get("log.dirs"));
        std::fs::create_dir_all(&data_dir).with_context(|| format!("creating data directory {}", data_dir.display()))?;
        let node_id = config.node_id();
        let local_cluster_id = load_or_create_identity(&data_dir, node_id)?;
        let (voters, listener) = controller_endpoints(&config, node_id).await?;
        let single_voter = voters.len() == 1;
        let controller = Controller::start(node_id, &controller::metadata_dir(&data_dir), listener, voters, config.clone(), QuorumOptions::default(), local_cluster_id.clone())
            .await
            .with_context(|| format!("starting the controller in {}", data_dir.display()))?;
        let rack = Some(config.get("broker.rack").to_string()).filter(|r| !r.is_empty());
        let groups = GroupCoordinator::new(group_config(&config));
        let txns = TxnCoordinator::new(txn_config(&config));
        let fetchers = ReplicaFetchers::new(node_id, FetcherConfig::from_broker_config(&config));
        let broker = Arc::new(Broker {
            groups,
            txns,
            config,
            node_id,
            incarnation: Uuid::new_v4(),
            local_cluster_id,
            advertised_host: advertised.0,
            advertised_port: advertised.1,
            rack,
            data_dir,
            controller,
            partitions: RwLock::new(HashMap::new()),
            reconcile_lock: Mutex::new(()),
            producer_ids: tokio::sync::Mutex::new((0, 0)),
            fetchers,
            shutting_down: AtomicBool::new(false),
        });
        broker.reconcile().context("opening partitions")?;
        tokio::spawn(follow_metadata(Arc::downgrade(&broker), broker.controller.subscribe()));
        tokio::spawn(isr_loop(Arc::downgrade(&broker)));
        let registered = tokio::spawn(membership_loop(Arc::downgrade(&broker)));
        if single_voter {
            // A single node serves only once it is registered and unfenced, so its first client sees it.
            let wait = async {
                let mut images = broker.controller.subscribe();
                while !broker.is_serving(&images.borrow_and_update()) {
                    if images.changed().await.is_err() {
                        break;
                    }
                }
            };
            if tokio::time::timeout(SINGLE_NODE_REGISTRATION_WAIT, wait).await.is_err() {
                registered.abort();
                anyhow::bail!("this broker did not register with its own controller within {SINGLE_NODE_REGISTRATION_WAIT:?}");
            }
            // The image that unfenced us also made us leader again of the partitions we alone hold; apply it
            // now rather than when follow_metadata gets to it, or the first client could be told
            // NOT_LEADER_OR_FOLLOWER by a broker that just said it is ready.
            broker.reconcile().context("opening partitions")?;
        }
        Ok(broker)
    }

    pub fn image(&self) -> Arc<MetadataImage> {
        self.controller.image()
    }

    /// Whether `image` has this process's registration, unfenced. Until then the image may be a replay from
    /// before a crash that still names this node as a leader.
    fn is_serving(&self, image: &MetadataImage) -> bool {
        image.broker(self.node_id).is_some_and(|b| b.incarnation == self.incarnation && !b.fenced)
    }

    /// The cluster id: the metadata log's, else (before the quorum has one) this directory's.
    pub fn cluster_id(&self) -> String {
        self.image().cluster_id.clone().unwrap_or_else(|| self.local_cluster_id.clone())
    }

    /// The brokers clients are told about: the live (unfenced) ones. Until this node's registration is in
    /// the image (a cluster still forming), at least this node, so a client always has somewhere to go.
    pub fn client_brokers(&self) -> Vec<BrokerImage> {
        let image = self.image();
        let live: Vec<BrokerImage> = image.live_brokers().cloned().collect();
        if !live.is_empty() {
            return live;
        }
        vec![BrokerImage {
            node_id: self.node_id,
            incarnation: self.incarnation,
            host: self.advertised_host.clone(),
            port: self.advertised_port,
            rack: self.rack.clone(),
            fenced: false,
        }]
    }

    /// The active controller as clients see it (-1 while no quorum leader is known).
    pub fn controller_id(&self) -> i32 {
        self.controller.active_controller().unwrap_or(-1)
    }

    pub fn partition(&self, topic: &str, index: i32) -> Option<Arc<Partition>> {
        let topic_id = self.image().topic(topic)?.topic_id;
        self.partition_by_id(&topic_id, index)
    }

    pub fn partition_by_id(&self, topic_id: &Uuid, index: i32) -> Option<Arc<Partition>> {
        let partitions = self.partitions.read().unwrap_or_else(|p| p.into_inner());
        partitions.get(topic_id)?.get(&index).cloned()
    }

    pub fn all_partitions(&self) -> Vec<Arc<Partition>> {
        let partitions = self.partitions.read().unwrap_or_else(|p| p.into_inner());
        partitions.values().flat_map(|p| p.values()).cloned().collect()
    }

    /// Runs a command on the active controller, then brings this broker's partitions in line with the result.
    async fn execute(&self, command: Command) -> Result<Outcome, ControllerError> {
        let outcome = self.controller.execute(command).await?;
        self.reconcile()?;
        Ok(outcome)
    }

    /// Creates a topic through the controller and opens its partitions hosted here.
    pub async fn create_topic(&self, topic: &NewTopic, validate_only: bool) -> Result<(), ControllerError> {
        self.execute(Command::CreateTopic { topic: topic.clone(), validate_only }).await.map(drop)
    }

    /// Metadata's auto-creation with the broker defaults. Racing creators both succeed.
    pub async fn auto_create_topic(&self, name: &str) -> Result<(), ControllerError> {
        let topic = NewTopic {
            name: name.to_string(),
            num_partitions: self.config.get_i32("num.partitions"),
            replication_factor: self.config.get_i32("default.replication.factor"),
            configs: BTreeMap::new(),
            assignments: None,
        };
        match self.create_topic(&topic, false).await {
            Err(e) if e.is_topic_exists() => Ok(()),
            other => other,
        }
    }

    /// Deletes a topic through the controller and removes its partitions.
    pub async fn delete_topic(&self, topic: &TopicRef) -> Result<(), ControllerError> {
        if !self.config.get_bool("delete.topic.enable") {
            return Err(ControllerError::TopicDeletionDisabled);
        }
        self.execute(Command::DeleteTopic(topic.clone())).await.map(drop)
    }

    /// Grows a topic to `total` partitions (optionally manually assigned) and opens the new ones.
    pub async fn create_partitions(&self, name: &str, total: i32, assignments: Option<Vec<Vec<i32>>>, validate_only: bool) -> Result<(), ControllerError> {
        self.execute(Command::CreatePartitions { name: name.to_string(), total, assignments, validate_only }).await.map(drop)
    }

    /// Changes a topic's config overrides (`replace_all`: AlterConfigs, which drops overrides it does not
    /// name); reconcile re-applies them to the partitions.
    pub async fn alter_topic_configs(&self, name: &str, changes: &[ConfigChange], replace_all: bool, validate_only: bool) -> Result<(), ControllerError> {
        let command = Command::AlterTopicConfigs { name: name.to_string(), changes: changes.to_vec(), replace_all, validate_only };
        self.execute(command).await.map(drop)
    }

    /// IncrementalAlterConfigs on a topic, resolved by the controller against the overrides at commit time.
    pub async fn incremental_alter_topic_configs(&self, name: &str, changes: &[IncrementalChange], validate_only: bool) -> Result<(), ControllerError> {
        let command = Command::IncrementalAlterTopicConfigs { name: name.to_string(), changes: changes.to_vec(), validate_only };
        self.execute(command).await.map(drop)
    }

    /// ElectLeaders for one partition: preferred, or unclean (an offline partition to any live replica).
    pub async fn elect_leader(&self, topic: &str, partition: i32, unclean: bool) -> Result<(), ControllerError> {
        self.execute(Command::ElectLeader { topic: topic.to_string(), partition, unclean }).await.map(drop)
    }

    /// AlterPartitionReassignments for one partition (`None` cancels).
    pub async fn reassign_partition(&self, topic: &str, partition: i32, target: Option<Vec<i32>>) -> Result<(), ControllerError> {
        self.execute(Command::Reassign { topic: topic.to_string(), partition, target }).await.map(drop)
    }

    /// The partition count of a coordinator's internal topic, creating it first if needed (compacted, its
    /// replication factor capped at the cluster's size: its voters, or more registered brokers). None while it
    /// cannot be created: fewer live brokers than that factor (a cluster with brokers down does not create it
    /// under-replicated; the coordinator answers COORDINATOR_NOT_AVAILABLE until they are back, as Kafka), or
    /// the controller refused.
    pub async fn ensure_internal_topic(&self, topic: &InternalTopic<'_>) -> Option<i32> {
        let name = topic.name;
        if let Some(found) = self.image().topic(name) {
            return Some(found.partitions.len() as i32);
        }
        let image = self.image();
        let cluster_size = self.controller.voter_count().max(image.brokers.len()).max(1) as i32;
        let replication_factor = self.config.get_i32(topic.replication_factor_property).min(cluster_size);
        let live_brokers = image.live_brokers().count() as i32;
        if live_brokers < replication_factor {
            tracing::info!(live_brokers, replication_factor, "not creating {name} until enough brokers are alive");
            return None;
        }
        let mut configs = BTreeMap::from([
            ("cleanup.policy".to_string(), "compact".to_string()),
            ("segment.bytes".to_string(), self.config.get(topic.segment_bytes_property).to_string()),
        ]);
        if let Some(property) = topic.min_insync_replicas_property {
            configs.insert("min.insync.replicas".to_string(), self.config.get_i32(property).min(replication_factor).to_string());
        }
        let new_topic = NewTopic {
            name: name.to_string(),
            num_partitions: self.config.get_i32(topic.partitions_property),
            replication_factor,
            configs,
            assignments: None,
        };
        match self.create_topic(&new_topic, false).await {
            Ok(()) => tracing::info!(partitions = new_topic.num_partitions, replication_factor, "created {name}"),
            Err(e) if e.is_topic_exists() => {}
            Err(e) => {
                tracing::warn!(error = %e, "creating {name} failed");
                return None;
            }
        }
        self.image().topic(name).map(|t| t.partitions.len() as i32)
    }

    /// Hands out a producer id, asking the controller for a new block when the current one is used up.
    pub async fn allocate_producer_id(&self) -> Result<i64, ControllerError> {
        let mut block = self.producer_ids.lock().await;
        if block.0 >= block.1 {
            match self.controller.execute(Command::AllocateProducerIds { broker: self.node_id }).await? {
                Outcome::ProducerIdBlock { start } => *block = (start, start + controller::PRODUCER_ID_BLOCK_SIZE),
                other => return Err(ControllerError::NotController(format!("unexpected answer to a producer id request: {other:?}"))),
            }
        }
        let id = block.0;
        block.0 += 1;
        Ok(id)
    }

    /// Controlled shutdown: asks the controller to move this broker's leaderships away and fence it, so
    /// clients switch to the new leaders before this process stops serving. Bounded by `timeout`.
    pub async fn controlled_shutdown(&self, timeout: Duration) {
        if !self.config.get_bool("controlled.shutdown.enable") {
            return;
        }
        self.shutting_down.store(true, Ordering::Release);
        let command = Command::BrokerHeartbeat { broker: self.node_id, incarnation: self.incarnation, want_shutdown: true };
        match self.controller.execute_within(command, timeout).await {
            Ok(_) => {
                tracing::info!("controlled shutdown: leaderships moved");
                if let Err(e) = self.reconcile() {
                    tracing::warn!(error = %e, "applying the controlled shutdown locally");
                }
            }
            Err(e) => tracing::warn!(error = %e, "controlled shutdown failed; stopping anyway"),
        }
    }

    /// Brings hosted partitions in line with the metadata image: opens partitions assigned here, applies
    /// leadership changes, removes partitions of deleted topics or no longer assigned here.
    pub fn reconcile(&self) -> Result<(), ControllerError> {
        let _one_at_a_time = self.reconcile_lock.lock().unwrap_or_else(|p| p.into_inner());
        let image = self.image();
        let now = now_ms();
        // Until the controller has this process's registration: lead nothing and follow no one.
        let serving = self.is_serving(&image);
        let mut removed = Vec::new();
        {
            let mut hosted = self.partitions.write().unwrap_or_else(|p| p.into_inner());
            hosted.retain(|topic_id, partitions| {
                let Some(topic) = image.topic_by_id(topic_id) else {
                    removed.extend(std::mem::take(partitions).into_values());
                    return false;
                };
                partitions.retain(|index, partition| {
                    let assigned = topic.partitions.get(*index as usize).is_some_and(|p| p.replicas.contains(&self.node_id));
                    if !assigned {
                        removed.push(partition.clone());
                    }
                    assigned
                });
                true
            });
        }
        for partition in removed {
            let name = format!("{}-{}", partition.topic, partition.index);
            if let Err(e) = Partition::delete_shared(partition) {
                tracing::error!(partition = %name, error = %e, "failed to delete partition files");
            }
        }
        for topic in image.topics.values() {
            let settings = PartitionSettings {
                log: self.config.log_config(&topic.configs),
                cleaner: self.config.cleaner_config(&topic.configs),
                min_insync_replicas: self.config.topic_value(&topic.configs, "min.insync.replicas").parse().unwrap_or(1),
            };
            let existing = self.partitions.read().unwrap_or_else(|p| p.into_inner()).get(&topic.topic_id).cloned().unwrap_or_default();
            let mut opened = Vec::new();
            for (index, placement) in topic.partitions.iter().enumerate() {
                if !placement.replicas.contains(&self.node_id) {
                    continue;
                }
                let mut leadership = leadership_of(placement);
                if !serving && leadership.leader == self.node_id {
                    leadership.leader = -1;
                }
                if let Some(partition) = existing.get(&(index as i32)) {
                    partition.reconfigure(settings.clone());
                    if let Err(e) = partition.apply_leadership(leadership, now) {
                        tracing::error!(topic = %topic.name, partition = index, error = %e, "applying a leadership change failed");
                    }
                    continue;
                }
                let partition = Partition::open(&self.data_dir, &topic.name, topic.topic_id, index as i32, settings.clone(), leadership, self.node_id, now)
                    .map_err(|e| ControllerError::Io(std::io::Error::other(format!("opening {}-{index}: {e}", topic.name))))?;
                opened.push((index as i32, Arc::new(partition)));
            }
            if !opened.is_empty() {
                let mut hosted = self.partitions.write().unwrap_or_else(|p| p.into_inner());
                hosted.entry(topic.topic_id).or_default().extend(opened);
            }
        }
        self.fetchers.update(if serving { self.follower_assignments(&image) } else { Vec::new() });
        self.groups.retain_led_shards(|index| {
            image
                .topic(OFFSETS_TOPIC)
                .and_then(|t| t.partitions.get(index as usize))
                .is_some_and(|p| p.leader == self.node_id)
        });
        self.txns.retain_led_shards(|index| {
            image
                .topic(TRANSACTION_STATE_TOPIC)
                .and_then(|t| t.partitions.get(index as usize))
                .is_some_and(|p| p.leader == self.node_id)
        });
        Ok(())
    }

    /// The partitions this broker follows, with their leaders' addresses (partitions whose leader is offline or
    /// unknown are not fetched).
    fn follower_assignments(&self, image: &MetadataImage) -> Vec<FollowerAssignment> {
        let mut assignments = Vec::new();
        for partition in self.all_partitions() {
            let Some(placement) = image.topic_by_id(&partition.topic_id).and_then(|t| t.partitions.get(partition.index as usize)) else {
                continue;
            };
            if placement.leader == self.node_id || placement.leader < 0 {
                continue;
            }
            let Some(leader) = image.broker(placement.leader) else { continue };
            assignments.push(FollowerAssignment {
                partition,
                leader_id: placement.leader,
                leader_epoch: placement.leader_epoch,
                leader_host: leader.host.clone(),
                leader_port: leader.port,
            });
        }
        assignments
    }

    /// Sends the ISR changes the partitions this broker leads ask for (shrink after replica.lag.time.max.ms,
    /// expand on catch-up) to the controller as AlterPartition commands.
    async fn propose_isr_changes(&self) {
        let now = now_ms();
        let lag_max = self.config.get_i64("replica.lag.time.max.ms");
        for partition in self.all_partitions() {
            let Some(change) = partition.isr_change(now, lag_max) else { continue };
            let command = Command::AlterPartition {
                topic_id: partition.topic_id,
                partition: partition.index,
                leader: self.node_id,
                leader_epoch: change.leader_epoch,
                partition_epoch: change.partition_epoch,
                new_isr: change.new_isr.clone(),
            };
            // Bounded, so a controller that stopped answering does not hold up the other partitions' changes; a
            // repeated proposal is harmless (the controller refuses a stale partition epoch).
            let outcome = self.controller.execute_within(command, ISR_PROPOSAL_TIMEOUT).await;
            match outcome {
                Ok(_) => match self.reconcile() {
                    Ok(()) => tracing::info!(topic = %partition.topic, partition = partition.index, isr = ?change.new_isr, "ISR changed"),
                    Err(e) => tracing::warn!(topic = %partition.topic, partition = partition.index, error = %e, "applying an ISR change failed"),
                },
                Err(e) if e.is_alter_partition_refusal() => {
                    tracing::info!(topic = %partition.topic, partition = partition.index, isr = ?change.new_isr, error = %e, "ISR change refused");
                    partition.isr_change_refused(&change);
                }
                // No answer: the change may still have been committed, so it keeps counting until one comes.
                Err(e) => tracing::debug!(topic = %partition.topic, partition = partition.index, error = %e, "ISR change not answered"),
            }
        }
    }

    /// Stops fetching (on shutdown).
    pub async fn stop_replication(&self) {
        self.fetchers.shutdown().await;
    }

    /// Periodic retention and producer-state expiry over all partitions.
    pub fn housekeeping(&self) {
        let now = now_ms();
        let expiration = self.config.get_i64("producer.id.expiration.ms");
        for partition in self.all_partitions() {
            match partition.housekeeping(now, expiration) {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(topic = %partition.topic, partition = partition.index, deleted, "retention deleted segments"),
                Err(e) => tracing::warn!(topic = %partition.topic, partition = partition.index, error = %e, "retention failed"),
            }
        }
    }
}

fn leadership_of(placement: &PartitionImage) -> Leadership {
    Leadership {
        leader: placement.leader,
        leader_epoch: placement.leader_epoch,
        partition_epoch: placement.partition_epoch,
        replicas: placement.replicas.clone(),
        isr: placement.isr.clone(),
    }
}

/// Longest wait for the controller to take one ISR change.
const ISR_PROPOSAL_TIMEOUT: Duration = Duration::from_secs(2);
/// How often leaders look for ISR changes to propose.
const ISR_CHECK_INTERVAL: Duration = Duration::from_millis(200);

async fn isr_loop(broker: Weak<Broker>) {
    let mut ticker = tokio::time::interval(ISR_CHECK_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(broker) = broker.upgrade() else { return };
        broker.propose_isr_changes().await;
    }
}

/// The quorum this node belongs to (controller.quorum.voters, or this node alone) and the controller listener
/// to serve it on (none for a quorum of one without controller.listener).
async fn controller_endpoints(config: &BrokerConfig, node_id: i32) -> anyhow::Result<(BTreeMap<u64, String>, Option<TcpListener>)> {
    let listen = config.get("controller.listener").to_string();
    let voters = match config.get("controller.quorum.voters") {
        "" => BTreeMap::from([(node_id as u64, if listen.is_empty() { "127.0.0.1:0".to_string() } else { listen.clone() })]),
        spec => parse_voters(spec).context("parsing --voters")?,
    };
    if !voters.contains_key(&(node_id as u64)) {
        anyhow::bail!("node {node_id} is not among the voters {:?}", voters.keys().collect::<Vec<_>>());
    }
    let listener = if listen.is_empty() {
        if voters.len() > 1 {
            anyhow::bail!("a cluster of several voters needs --controller-listen");
        }
        None
    } else {
        Some(bind_listener(&listen).await.with_context(|| format!("binding the controller listener {listen}"))?)
    };
    Ok((voters, listener))
}

/// How long binding a listener is retried while its address is in use.
const BIND_RETRY_FOR: Duration = Duration::from_secs(10);

/// Binds `address`, retrying for a while if it is in use: after a crash, a fixed port can be held briefly by
/// an outgoing connection that happened to get it as its ephemeral port (or by the dying process).
pub async fn bind_listener(address: &str) -> std::io::Result<TcpListener> {
    let deadline = tokio::time::Instant::now() + BIND_RETRY_FOR;
    loop {
        match TcpListener::bind(address).await {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tokio::time::Instant::now() < deadline => {
                tracing::warn!(address, "address in use; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
}

/// Reconciles on every new metadata image.
async fn follow_metadata(broker: Weak<Broker>, mut images: watch::Receiver<Arc<MetadataImage>>) {
    while images.changed().await.is_ok() {
        let Some(broker) = broker.upgrade() else { return };
        if let Err(e) = broker.reconcile() {
            tracing::error!(error = %e, "applying a metadata change failed");
        }
        // A transaction coordinator that just took over must finish the transactions it finds prepared.
        broker.txns.start_led_shards(&broker);
    }
}

/// Registers this broker with the controller, then heartbeats every broker.heartbeat.interval.ms. A heartbeat
/// the controller does not accept as this process's (it fenced and forgot us, or a new controller lost the
/// registration) leads to registering again.
async fn membership_loop(broker: Weak<Broker>) {
    let mut registered = false;
    loop {
        let Some(b) = broker.upgrade() else { return };
        if b.shutting_down.load(Ordering::Acquire) {
            return;
        }
        let interval = Duration::from_millis(b.config.get_i64("broker.heartbeat.interval.ms").max(1) as u64);
        let command = if registered {
            Command::BrokerHeartbeat { broker: b.node_id, incarnation: b.incarnation, want_shutdown: false }
        } else {
            Command::RegisterBroker {
                broker: b.node_id,
                incarnation: b.incarnation,
                host: b.advertised_host.clone(),
                port: b.advertised_port,
                rack: b.rack.clone(),
            }
        };
        // A heartbeat that cannot get through in time is dropped and the next one sent: a broker keeps its
        // session by reaching whichever controller leads now, not by waiting on one that stopped answering.
        let attempt_timeout = interval.max(Duration::from_secs(1));
        match b.controller.execute_within(command, attempt_timeout).await {
            Ok(Outcome::Done) if !registered => {
                registered = true;
                tracing::info!(node_id = b.node_id, "registered with the controller");
                // Heartbeat at once: it unfences us.
                continue;
            }
            Ok(_) => {}
            Err(e) if e.error_code() == kafka_protocol::ResponseError::StaleBrokerEpoch.code() => {
                tracing::warn!(error = %e, "the controller does not know this broker's registration; registering again");
                registered = false;
                continue;
            }
            Err(e) => tracing::debug!(error = %e, "heartbeat failed"),
        }
        drop(b);
        tokio::time::sleep(interval).await;
    }
}

/// Reads meta.properties (cluster.id, node.id) or writes it for a new data directory. A data directory of
/// another node is refused, as Kafka does.
fn load_or_create_identity(data_dir: &Path, node_id: i32) -> anyhow::Result<String> {
    let path = data_dir.join("meta.properties");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let value = |key: &str| text.lines().find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix('='))).map(str::trim);
        let stored_node: i32 = value("node.id").and_then(|v| v.parse().ok()).context("meta.properties has no valid node.id")?;
        if stored_node != node_id {
            bail!("data directory {} belongs to node {stored_node}, not node {node_id}", data_dir.display());
        }
        return Ok(value("cluster.id").context("meta.properties has no cluster.id")?.to_string());
    }
    let cluster_id = base64_url(Uuid::new_v4().as_bytes());
    let temp = data_dir.join("meta.properties.tmp");
    std::fs::write(&temp, format!("version=1\ncluster.id={cluster_id}\nnode.id={node_id}\n"))?;
    std::fs::rename(&temp, &path)?;
    Ok(cluster_id)
}

/// Kafka cluster ids are a UUID in unpadded URL-safe base64 (22 characters).
fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (*b as u32) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_look_like_kafkas() {
        assert_eq!(base64_url(&[0u8; 16]), "AAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(base64_url(b"\xfb\xff"), "-_8");
    }

    #[test]
    fn identity_is_kept_and_other_nodes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_identity(dir.path(), 1).unwrap();
        assert_eq!(first.len(), 22);
        assert_eq!(load_or_create_identity(dir.path(), 1).unwrap(), first);
        assert!(load_or_create_identity(dir.path(), 2).is_err());
    }
}
