//! The thin runtime around the pure [`GroupShard`]s: the only part of `group/` that does I/O.
//!
//! - `__consumer_offsets` is created at the first group request (FindCoordinator included), as Kafka does,
//!   with cleanup.policy=compact and offsets.topic.num.partitions partitions.
//! - One tokio task per `__consumer_offsets` partition this broker leads owns that partition's `GroupShard`
//!   (one owner of state). Handlers send it commands over a bounded channel; a command that may wait (JoinGroup,
//!   SyncGroup, writes) gets a request id and a oneshot parked until the shard emits its `Effect::Reply`.
//! - Commands run one at a time, in order; the commands already queued when the task wakes are run together
//!   and their effects applied in order: `Append` encodes the records as one batch and appends it to the
//!   partition (acks=-1); replies that follow an append are held until one `flush_to` has made the batch's
//!   appends durable (the durability rule of `group/mod.rs`, with group commit across commands). A failed append drops the shard's parked
//!   requests (their handlers answer NOT_COORDINATOR) and rebuilds the shard from the log.
//! - Transaction markers (WriteTxnMarkers for a `__consumer_offsets` partition, [`GroupCoordinator::write_marker`])
//!   are commands too, so a marker lands after every append the shard made before it: the batch of commands
//!   before the marker is applied (and made durable) first, then the marker is appended, made durable and
//!   replicated, and only then does the shard end the producer's transaction in memory.
//! - Timers: a set of deadlines in the task, woken with `sleep_until`; stale firings are ignored by the shard.
//! - Loading: the task replays the partition from its log start to the high watermark before serving;
//!   until then the handlers answer COORDINATOR_LOAD_IN_PROGRESS. Records of transactional batches are
//!   replayed as pending offsets of their producer, markers (control batches) end them.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use kafka_protocol::ResponseError;

use super::{Effect, GroupConfig, GroupRecord, GroupShard, Reply, RequestId, TimerKey, Topics, TxnProducer};
use crate::broker::{now_ms, Broker, InternalTopic};
use crate::config::BrokerConfig;
use crate::log::batch::{self, BatchBuilder, NewRecord};
use crate::log::BatchHeader;
use crate::partition::replay::{replay_to_end, Replayed};
use crate::partition::{Partition, PartitionError, TxnMarker};
use crate::protocol::errors::KafkaCode;

pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// How long a group write waits for the in-sync replicas (Kafka's offsets.commit.timeout.ms default).
const OFFSETS_COMMIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Commands queued per shard before senders wait.
const SHARD_QUEUE: usize = 1024;
/// Requests parked per shard (waiting JoinGroup/SyncGroup, writes waiting for their fsync).
const MAX_PARKED: usize = 100_000;
/// Queued commands handled together before one fsync (group commit inside a shard).
const MAX_COMMANDS_PER_FSYNC: usize = 256;

#[derive(thiserror::Error, Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoordinatorError {
    #[error("this broker is not the coordinator of the group")]
    NotCoordinator,
    #[error("the group coordinator is still loading the group")]
    LoadInProgress,
    #[error("the group coordinator is not available")]
    NotAvailable,
}

/// Builds the coordinator settings from the broker properties.
pub fn group_config(config: &BrokerConfig) -> GroupConfig {
    let size = |name: &str| usize::try_from(config.get_i32(name)).unwrap_or(usize::MAX);
    let assignor = config.get("group.consumer.assignors").split(',').map(str::trim).find(|a| !a.is_empty()).unwrap_or(super::assignor::UNIFORM);
    GroupConfig {
        min_session_timeout_ms: config.get_i32("group.min.session.timeout.ms"),
        max_session_timeout_ms: config.get_i32("group.max.session.timeout.ms"),
        initial_rebalance_delay_ms: config.get_i32("group.initial.rebalance.delay.ms"),
        max_size: size("group.max.size"),
        offset_metadata_max_bytes: size("offset.metadata.max.bytes"),
        consumer_session_timeout_ms: config.get_i32("group.consumer.session.timeout.ms"),
        consumer_heartbeat_interval_ms: config.get_i32("group.consumer.heartbeat.interval.ms"),
        consumer_max_size: size("group.consumer.max.size"),
        consumer_default_assignor: assignor.to_string(),
        ..GroupConfig::default()
    }
}

type Job = Box<dyn FnOnce(&mut GroupShard, i64, RequestId) -> Vec<Effect> + Send>;
type Run = Box<dyn FnOnce(&mut GroupShard, i64) -> Vec<Effect> + Send>;

enum Command {
    /// A call whose answer comes back as an `Effect::Reply`.
    Call { job: Job, reply: oneshot::Sender<Reply> },
    /// A call that answers by itself (reads, heartbeats); it runs after every earlier append is durable.
    Run(Run),
    /// A transaction marker to append after the shard's earlier appends; answered with a Kafka error code.
    Marker { marker: TxnMarker, reply: oneshot::Sender<Result<(), i16>> },
}

/// A command taken off the queue: its effects, or a marker that must wait for the effects before it.
enum Step {
    Effects(Vec<Effect>),
    Marker(TxnMarker, oneshot::Sender<Result<(), i16>>),
}

#[derive(Clone)]
struct ShardHandle {
    commands: mpsc::Sender<Command>,
    loaded: Arc<AtomicBool>,
}

/// The group coordinator of this broker: one shard task per led `__consumer_offsets` partition.
pub struct GroupCoordinator {
    config: GroupConfig,
    /// Bounded by the partition count of `__consumer_offsets`. Never held across `.await`.
    shards: Mutex<HashMap<i32, ShardHandle>>,
}

impl GroupCoordinator {
    pub fn new(config: GroupConfig) -> Self {
        GroupCoordinator { config, shards: Mutex::new(HashMap::new()) }
    }

    /// Partitions of `__consumer_offsets`, creating it if needed.
    pub async fn ensure_topic(&self, broker: &Arc<Broker>) -> Result<i32, CoordinatorError> {
        let topic = InternalTopic {
            name: OFFSETS_TOPIC,
            partitions_property: "offsets.topic.num.partitions",
            replication_factor_property: "offsets.topic.replication.factor",
            segment_bytes_property: "offsets.topic.segment.bytes",
            min_insync_replicas_property: None,
        };
        broker.ensure_internal_topic(&topic).await.ok_or(CoordinatorError::NotAvailable)
    }

    /// Creates the topic if needed and starts (loading) every shard this broker leads.
    pub async fn start(&self, broker: &Arc<Broker>) -> Result<i32, CoordinatorError> {
        let partitions = self.ensure_topic(broker).await?;
        for index in 0..partitions {
            // A partition led elsewhere is simply not started here.
            let _ = self.shard(broker, index);
        }
        Ok(partitions)
    }

    /// Starts the shards when `__consumer_offsets` already exists (at broker start), so loading begins at once.
    pub async fn start_if_present(&self, broker: &Arc<Broker>) {
        if broker.image().topic(OFFSETS_TOPIC).is_some() {
            let _ = self.start(broker).await;
        }
    }

    /// Stops the shards of partitions this broker no longer leads (their state moves with the leadership;
    /// the new leader loads it from the log). A shard task ends once its last handle is gone.
    pub fn retain_led_shards(&self, leads: impl Fn(i32) -> bool) {
        let mut shards = self.shards.lock().unwrap_or_else(|p| p.into_inner());
        shards.retain(|index, _| leads(*index));
    }

    /// The `__consumer_offsets` partition of `group_id` (Kafka's hash), creating the topic if needed.
    pub async fn partition_for(&self, broker: &Arc<Broker>, group_id: &str) -> Result<i32, CoordinatorError> {
        let partitions = self.start(broker).await?;
        Ok(super::partition_for_group(group_id, partitions))
    }

    fn shard(&self, broker: &Arc<Broker>, index: i32) -> Result<ShardHandle, CoordinatorError> {
        let partition = broker.partition(OFFSETS_TOPIC, index).ok_or(CoordinatorError::NotCoordinator)?;
        if partition.leadership().leader != broker.node_id {
            return Err(CoordinatorError::NotCoordinator);
        }
        let mut shards = self.shards.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(handle) = shards.get(&index) {
            if !handle.commands.is_closed() {
                return Ok(handle.clone());
            }
        }
        let (commands, receiver) = mpsc::channel(SHARD_QUEUE);
        let handle = ShardHandle { commands, loaded: Arc::new(AtomicBool::new(false)) };
        let task = ShardTask {
            broker: Arc::downgrade(broker),
            partition,
            config: self.config.clone(),
            loaded: handle.loaded.clone(),
            parked: HashMap::new(),
            timers: Timers::default(),
            next_request: 0,
        };
        tokio::spawn(task.run(receiver));
        shards.insert(index, handle.clone());
        Ok(handle)
    }

    async fn ready_shard(&self, broker: &Arc<Broker>, group_id: &str) -> Result<ShardHandle, CoordinatorError> {
        let index = self.partition_for(broker, group_id).await?;
        let handle = self.shard(broker, index)?;
        if !handle.loaded.load(Ordering::Acquire) {
            return Err(CoordinatorError::LoadInProgress);
        }
        Ok(handle)
    }

    /// Runs a call on the group's shard and waits for its reply (which may wait for other members).
    pub async fn call(
        &self,
        broker: &Arc<Broker>,
        group_id: &str,
        job: impl FnOnce(&mut GroupShard, i64, RequestId) -> Vec<Effect> + Send + 'static,
    ) -> Result<Reply, CoordinatorError> {
        let handle = self.ready_shard(broker, group_id).await?;
        let (reply, answer) = oneshot::channel();
        handle.commands.send(Command::Call { job: Box::new(job), reply }).await.map_err(|_| CoordinatorError::NotCoordinator)?;
        answer.await.map_err(|_| CoordinatorError::NotCoordinator)
    }

    /// Runs a call that answers by itself on the group's shard.
    pub async fn run<R: Send + 'static>(
        &self,
        broker: &Arc<Broker>,
        group_id: &str,
        f: impl FnOnce(&mut GroupShard, i64) -> (R, Vec<Effect>) + Send + 'static,
    ) -> Result<R, CoordinatorError> {
        let handle = self.ready_shard(broker, group_id).await?;
        run_on(&handle, f).await
    }

    /// WriteTxnMarkers for `__consumer_offsets` partition `partition_index`: appends the marker to it, ordered
    /// after the shard's earlier appends, and once it is durable and replicated ends the producer's
    /// transaction in the shard (pending offsets committed or dropped; a marker without any is just
    /// appended). Errors are Kafka codes for the WriteTxnMarkers answer: UNKNOWN_TOPIC_OR_PARTITION (no such
    /// partition), NOT_LEADER_OR_FOLLOWER (led elsewhere, or leadership lost meanwhile),
    /// COORDINATOR_LOAD_IN_PROGRESS (still loading; Kafka's handler turns it into NOT_LEADER_OR_FOLLOWER so the
    /// transaction coordinator retries), else the append's error.
    pub async fn write_marker(&self, broker: &Arc<Broker>, partition_index: i32, marker: TxnMarker) -> Result<(), i16> {
        let not_leader = ResponseError::NotLeaderOrFollower.code();
        let partition = broker.partition(OFFSETS_TOPIC, partition_index).ok_or(ResponseError::UnknownTopicOrPartition.code())?;
        if partition.leadership().leader != broker.node_id {
            return Err(not_leader);
        }
        let handle = self.shard(broker, partition_index).map_err(|_| not_leader)?;
        if !handle.loaded.load(Ordering::Acquire) {
            return Err(ResponseError::CoordinatorLoadInProgress.code());
        }
        let (reply, answer) = oneshot::channel();
        handle.commands.send(Command::Marker { marker, reply }).await.map_err(|_| not_leader)?;
        answer.await.map_err(|_| not_leader)?
    }

    /// Runs `f` on every shard (ListGroups); an error if any shard is missing or loading.
    pub async fn run_all<R: Send + 'static>(
        &self,
        broker: &Arc<Broker>,
        f: impl Fn(&GroupShard) -> R + Send + Sync + 'static,
    ) -> Result<Vec<R>, CoordinatorError> {
        let partitions = self.start(broker).await?;
        let f = Arc::new(f);
        let mut handles = Vec::new();
        for index in 0..partitions {
            let handle = self.shard(broker, index)?;
            if !handle.loaded.load(Ordering::Acquire) {
                return Err(CoordinatorError::LoadInProgress);
            }
            handles.push(handle);
        }
        let mut out = Vec::with_capacity(handles.len());
        for handle in handles {
            let f = f.clone();
            out.push(run_on(&handle, move |shard, _| (f(shard), Vec::new())).await?);
        }
        Ok(out)
    }
}

async fn run_on<R: Send + 'static>(
    handle: &ShardHandle,
    f: impl FnOnce(&mut GroupShard, i64) -> (R, Vec<Effect>) + Send + 'static,
) -> Result<R, CoordinatorError> {
    let (reply, answer) = oneshot::channel();
    let run: Run = Box::new(move |shard, now| {
        let (result, effects) = f(shard, now);
        let _ = reply.send(result);
        effects
    });
    handle.commands.send(Command::Run(run)).await.map_err(|_| CoordinatorError::NotCoordinator)?;
    answer.await.map_err(|_| CoordinatorError::NotCoordinator)
}

/// The metadata the KIP-848 assignors need: every topic with its id and partition count.
pub fn topics_of(broker: &Broker) -> Topics {
    let image = broker.image();
    Topics::new(image.topics.values().map(|t| (t.name.as_str(), t.topic_id, t.partitions.len() as i32)))
}

/// Armed timers, earliest first. Bounded by the members of the shard's groups.
#[derive(Default)]
struct Timers {
    by_deadline: BTreeSet<(i64, TimerKey)>,
    by_key: HashMap<TimerKey, i64>,
}

impl Timers {
    fn schedule(&mut self, key: TimerKey, deadline_ms: i64) {
        if let Some(old) = self.by_key.insert(key.clone(), deadline_ms) {
            self.by_deadline.remove(&(old, key.clone()));
        }
        self.by_deadline.insert((deadline_ms, key));
    }
    fn cancel(&mut self, key: &TimerKey) {
        if let Some(old) = self.by_key.remove(key) {
            self.by_deadline.remove(&(old, key.clone()));
        }
    }
    fn next_deadline(&self) -> Option<i64> {
        self.by_deadline.first().map(|(deadline, _)| *deadline)
    }
    fn pop_due(&mut self, now_ms: i64) -> Vec<TimerKey> {
        let mut due = Vec::new();
        while let Some((deadline, _)) = self.by_deadline.first() {
            if *deadline > now_ms {
                break;
            }
            if let Some((_, key)) = self.by_deadline.pop_first() {
                self.by_key.remove(&key);
                due.push(key);
            }
        }
        due
    }
    fn clear(&mut self) {
        self.by_deadline.clear();
        self.by_key.clear();
    }
}

struct ShardTask {
    broker: Weak<Broker>,
    partition: Arc<Partition>,
    config: GroupConfig,
    loaded: Arc<AtomicBool>,
    parked: HashMap<RequestId, oneshot::Sender<Reply>>,
    timers: Timers,
    next_request: RequestId,
}

impl ShardTask {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut shard = self.load().await;
        loop {
            let deadline = self.timers.next_deadline();
            let sleep = async {
                match deadline {
                    Some(deadline) => {
                        let wait_ms = u64::try_from(deadline.saturating_sub(now_ms())).unwrap_or(0);
                        tokio::time::sleep(Duration::from_millis(wait_ms)).await
                    }
                    None => std::future::pending().await,
                }
            };
            let first = tokio::select! {
                command = commands.recv() => match command {
                    None => break,
                    Some(command) => self.process(&mut shard, command),
                },
                () = sleep => {
                    let now = now_ms();
                    let mut effects = Vec::new();
                    for key in self.timers.pop_due(now) {
                        effects.extend(shard.timer(now, key));
                    }
                    Step::Effects(effects)
                }
            };
            // Group commit: commands already queued are handled now too, so their appends share one fsync. A
            // marker ends the batch: it is appended after the batch's records are.
            let mut batch = Vec::new();
            let mut marker = None;
            let mut next = Some(first);
            while let Some(step) = next.take() {
                match step {
                    Step::Effects(effects) => batch.push(effects),
                    Step::Marker(m, reply) => {
                        marker = Some((m, reply));
                        break;
                    }
                }
                if batch.len() < MAX_COMMANDS_PER_FSYNC {
                    next = commands.try_recv().ok().map(|command| self.process(&mut shard, command));
                }
            }
            if self.broker.strong_count() == 0 {
                break;
            }
            if let Err(e) = self.apply(batch).await {
                tracing::error!(partition = self.partition.index, error = %e, "appending group records failed; reloading the shard from its log");
                shard = self.reload().await;
            }
            if let Some((m, reply)) = marker {
                let _ = reply.send(self.write_marker(&mut shard, &m).await);
            }
        }
    }

    /// Drops the shard's parked requests (their handlers answer NOT_COORDINATOR; clients retry) and timers, and
    /// rebuilds the shard from the log.
    async fn reload(&mut self) -> GroupShard {
        self.parked.clear();
        self.timers.clear();
        self.load().await
    }

    /// Appends a transaction marker, waits until it is durable and replicated, then ends the producer's
    /// transaction in the shard. A failed append wrote nothing, so the shard stays as it is; a failure after it
    /// reloads the shard from the log, which then has the marker or not, and the transaction coordinator retries
    /// (a second marker finds no pending offsets and changes nothing).
    async fn write_marker(&mut self, shard: &mut GroupShard, marker: &TxnMarker) -> Result<(), i16> {
        let outcome = self.partition.append_marker(marker, now_ms()).map_err(|e| {
            tracing::warn!(partition = self.partition.index, producer_id = marker.producer_id, error = %e, "appending a transaction marker failed");
            e.error_code()
        })?;
        let end = outcome.last_offset + 1;
        let durable = async {
            self.partition.flush_to(end).await?;
            let deadline = tokio::time::Instant::now() + OFFSETS_COMMIT_TIMEOUT;
            self.partition.wait_for_replication(end, outcome.leader_epoch, deadline).await
        }
        .await;
        match durable {
            Ok(()) => {
                shard.complete_transaction(marker.producer_id, marker.producer_epoch, marker.commit);
                Ok(())
            }
            Err(e) => {
                tracing::error!(partition = self.partition.index, producer_id = marker.producer_id, error = %e, "a transaction marker did not become durable; reloading the shard from its log");
                *shard = self.reload().await;
                Err(e.error_code())
            }
        }
    }

    /// Runs one command on the shard, parking its reply channel when the shard will answer later. A marker
    /// is handed back: it runs after the effects before it are applied.
    fn process(&mut self, shard: &mut GroupShard, command: Command) -> Step {
        match command {
            Command::Call { job, reply } => {
                if self.parked.len() >= MAX_PARKED {
                    tracing::warn!(partition = self.partition.index, "too many parked group requests; refusing one");
                    return Step::Effects(Vec::new()); // dropping `reply` answers NOT_COORDINATOR; the client retries
                }
                self.next_request += 1;
                let id = self.next_request;
                self.parked.insert(id, reply);
                Step::Effects(job(shard, now_ms(), id))
            }
            Command::Run(run) => Step::Effects(run(shard, now_ms())),
            Command::Marker { marker, reply } => Step::Marker(marker, reply),
        }
    }

    /// Runs the effects of a batch of commands in order. Appends go to the log at once; a reply that follows
    /// an append is held until one fsync has made every append of the batch durable (the durability rule),
    /// while replies before the batch's first append go out immediately.
    async fn apply(&mut self, batch: Vec<Vec<Effect>>) -> Result<(), PartitionError> {
        let mut durable_end = None;
        let mut held_replies = Vec::new();
        for effect in batch.into_iter().flatten() {
            match effect {
                Effect::Append { records, producer } => {
                    if let Some(appended) = self.append(&records, producer)? {
                        durable_end = Some(appended);
                    }
                }
                Effect::Reply { request, reply } => {
                    if durable_end.is_some() {
                        held_replies.push((request, reply));
                    } else if let Some(waiter) = self.parked.remove(&request) {
                        let _ = waiter.send(reply);
                    }
                }
                Effect::ScheduleTimer { key, deadline_ms } => self.timers.schedule(key, deadline_ms),
                Effect::CancelTimer(key) => self.timers.cancel(&key),
            }
        }
        if let Some((end, leader_epoch)) = durable_end {
            self.partition.flush_to(end).await?;
            // Like acks=all: a commit is answered once every in-sync replica has it, so it survives failover.
            let deadline = tokio::time::Instant::now() + OFFSETS_COMMIT_TIMEOUT;
            self.partition.wait_for_replication(end, leader_epoch, deadline).await?;
        }
        for (request, reply) in held_replies {
            if let Some(waiter) = self.parked.remove(&request) {
                let _ = waiter.send(reply);
            }
        }
        Ok(())
    }

    /// Appends records as one batch; returns the offset that must be durable and replicated before dependent
    /// replies, and the leader epoch of the append. A producer's records form a transactional batch without a
    /// sequence number, as Kafka's coordinator writes them (its own writes are not idempotent-producer retries).
    fn append(&self, records: &[GroupRecord], producer: Option<TxnProducer>) -> Result<Option<(i64, i32)>, PartitionError> {
        if records.is_empty() {
            return Ok(None);
        }
        let now = now_ms();
        let encoded: Vec<_> = records.iter().map(|r| (r.encode_key(), r.encode_value())).collect();
        let new_records: Vec<NewRecord> = encoded
            .iter()
            .map(|(key, value)| NewRecord { timestamp_ms: now, key: Some(key), value: value.as_deref(), headers: &[] })
            .collect();
        let builder = match producer {
            Some(p) => BatchBuilder { transactional: true, ..BatchBuilder::new().producer(p.producer_id, p.producer_epoch, -1) },
            None => BatchBuilder::new(),
        };
        let batch = builder.build(&new_records)?;
        let outcome = self.partition.append_from_coordinator(batch, now)?;
        Ok(Some((outcome.last_offset + 1, outcome.leader_epoch)))
    }

    /// Rebuilds a shard from the partition's log, then arms its timers.
    async fn load(&mut self) -> GroupShard {
        self.loaded.store(false, Ordering::Release);
        let started = std::time::Instant::now();
        let mut shard = GroupShard::new(self.config.clone());
        let mut records = 0usize;
        let index = self.partition.index;
        let replayed = replay_to_end(&self.partition, |item| match item {
            Replayed::Control { header, bytes } => replay_marker(&mut shard, index, header, bytes),
            Replayed::Record { header, record } => {
                let Some(key) = record.key else { return };
                records += 1;
                let replayed = if header.is_transactional() {
                    shard.replay_transactional_bytes(header.producer_id, header.producer_epoch, &key, record.value.as_deref())
                } else {
                    shard.replay_bytes(&key, record.value.as_deref())
                };
                if let Err(e) = replayed {
                    tracing::warn!(partition = index, offset = record.offset, error = %e, "skipping an undecodable group record");
                }
            }
            Replayed::Undecodable { header, error } => {
                tracing::warn!(partition = index, offset = header.base_offset, %error, "skipping an undecodable batch")
            }
        })
        .await;
        if let Err(e) = replayed {
            tracing::error!(partition = index, error = %e, "reading {OFFSETS_TOPIC} while loading failed");
        }
        let effects = shard.load_complete(now_ms());
        for effect in effects {
            match effect {
                Effect::ScheduleTimer { key, deadline_ms } => self.timers.schedule(key, deadline_ms),
                Effect::CancelTimer(key) => self.timers.cancel(&key),
                other => tracing::warn!(?other, "unexpected effect of load_complete"),
            }
        }
        if records > 0 {
            tracing::info!(partition = self.partition.index, records, elapsed_ms = started.elapsed().as_millis() as u64, "loaded group coordinator shard");
        }
        self.loaded.store(true, Ordering::Release);
        shard
    }
}

/// A control batch read while loading: a commit or abort marker ends its producer's transaction in the shard.
fn replay_marker(shard: &mut GroupShard, partition: i32, header: &BatchHeader, bytes: &[u8]) {
    match batch::parse_control_batch(bytes) {
        Ok(Some(control)) => shard.complete_transaction(header.producer_id, header.producer_epoch, control.commit),
        Ok(None) => {}
        Err(e) => tracing::warn!(partition, offset = header.base_offset, error = %e, "skipping an undecodable control batch"),
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::offset_fetch_request::{OffsetFetchRequestGroup, OffsetFetchRequestTopics};
    use kafka_protocol::messages::txn_offset_commit_request::{TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic};
    use kafka_protocol::messages::TxnOffsetCommitRequest;
    use uuid::Uuid;

    use super::*;
    use crate::group::records::OffsetCommitValue;
    use crate::group::str_bytes;
    use crate::log::batch::ControlRecord;
    use crate::log::{CleanerConfig, LogConfig};
    use crate::partition::{Leadership, PartitionSettings};

    const GROUP: &str = "g";

    fn open_partition(dir: &tempfile::TempDir, leader: i32) -> Arc<Partition> {
        let settings = PartitionSettings {
            log: LogConfig { fsync: false, compact: true, ..LogConfig::default() },
            cleaner: CleanerConfig::default(),
            min_insync_replicas: 1,
        };
        let isr = if leader == 1 { vec![1] } else { vec![1, 2] };
        let leadership = Leadership { leader, leader_epoch: 1, partition_epoch: 1, replicas: isr.clone(), isr };
        Arc::new(Partition::open(dir.path(), OFFSETS_TOPIC, Uuid::nil(), 0, settings, leadership, 1, 0).unwrap())
    }

    fn task(partition: Arc<Partition>) -> ShardTask {
        ShardTask {
            broker: Weak::new(),
            partition,
            config: GroupConfig::default(),
            loaded: Arc::new(AtomicBool::new(false)),
            parked: HashMap::new(),
            timers: Timers::default(),
            next_request: 0,
        }
    }

    fn offset(topic: &str, partition: i32, offset: i64) -> GroupRecord {
        let value = OffsetCommitValue { offset, leader_epoch: -1, metadata: String::new(), commit_timestamp_ms: 1, expire_timestamp_ms: -1 };
        GroupRecord::OffsetCommit { group: GROUP.into(), topic: topic.into(), partition, value: Some(value) }
    }

    /// One batch at `base_offset` as a leader would have written it in epoch 1.
    fn batch_at(base_offset: i64, records: &[GroupRecord], producer: Option<(i64, i16)>) -> Vec<u8> {
        let encoded: Vec<_> = records.iter().map(|r| (r.encode_key(), r.encode_value())).collect();
        let new_records: Vec<NewRecord> = encoded.iter().map(|(k, v)| NewRecord { timestamp_ms: 1, key: Some(k), value: v.as_deref(), headers: &[] }).collect();
        let builder = match producer {
            Some((id, epoch)) => BatchBuilder { transactional: true, ..BatchBuilder::new().producer(id, epoch, -1) },
            None => BatchBuilder::new(),
        };
        BatchBuilder { base_offset, partition_leader_epoch: 1, ..builder }.build(&new_records).unwrap()
    }

    fn marker_at(base_offset: i64, producer_id: i64, commit: bool) -> Vec<u8> {
        let mut framed = batch::control_batch(producer_id, 0, ControlRecord { commit, coordinator_epoch: 3 }, 1).unwrap();
        // Neither field is covered by the CRC.
        framed[batch::field::BASE_OFFSET..][..8].copy_from_slice(&base_offset.to_be_bytes());
        framed[batch::field::PARTITION_LEADER_EPOCH..][..4].copy_from_slice(&1i32.to_be_bytes());
        framed
    }

    fn fetch(shard: &GroupShard, partitions: &[i32], require_stable: bool) -> Vec<(i64, i16)> {
        let request = OffsetFetchRequestGroup::default()
            .with_group_id(str_bytes(GROUP).into())
            .with_topics(Some(vec![OffsetFetchRequestTopics::default().with_name(str_bytes("t").into()).with_partition_indexes(partitions.to_vec())]));
        shard.offset_fetch(&request, require_stable).topics[0].partitions.iter().map(|p| (p.committed_offset, p.error_code)).collect()
    }

    #[tokio::test]
    async fn load_replays_transactional_batches_and_their_markers() {
        let dir = tempfile::tempdir().unwrap();
        // A follower's copy of what a coordinator wrote: its log is what a new leader loads.
        let partition = open_partition(&dir, 2);
        let mut log = Vec::new();
        log.extend(batch_at(0, &[offset("t", 0, 5)], None));
        log.extend(batch_at(1, &[offset("t", 0, 10), offset("t", 1, 11)], Some((7, 0))));
        log.extend(marker_at(3, 7, true));
        log.extend(batch_at(4, &[offset("t", 1, 20)], Some((7, 0))));
        log.extend(marker_at(5, 7, false));
        log.extend(batch_at(6, &[offset("t", 2, 30)], Some((8, 0))));
        log.extend(marker_at(7, 9, true)); // a producer without pending offsets here
        partition.append_replicated(&log, 1, 8, 0, 1).unwrap();
        assert_eq!(partition.offsets().log_end_offset, 8);

        let mut task = task(partition);
        let shard = task.load().await;
        assert!(task.loaded.load(Ordering::Acquire));
        assert_eq!(fetch(&shard, &[0, 1, 2], false), vec![(10, 0), (11, 0), (-1, 0)]);
        assert_eq!(fetch(&shard, &[0, 1, 2], true), vec![(10, 0), (11, 0), (-1, ResponseError::UnstableOffsetCommit.code())]);
        assert_eq!(shard.offsets().pending(8, GROUP, "t", 2).map(|v| v.offset), Some(30));
    }

    /// The live path end to end on a leader partition: TxnOffsetCommit's transactional batch (the coordinator's
    /// own, without sequence numbers), then the commit marker.
    #[tokio::test]
    async fn txn_offset_commit_then_commit_marker_through_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let partition = open_partition(&dir, 1);
        let mut task = task(partition.clone());
        let mut shard = task.load().await;
        let request = TxnOffsetCommitRequest::default()
            .with_group_id(str_bytes(GROUP).into())
            .with_producer_id(7.into())
            .with_producer_epoch(0)
            .with_topics(vec![TxnOffsetCommitRequestTopic::default()
                .with_name(str_bytes("t").into())
                .with_partitions(vec![TxnOffsetCommitRequestPartition::default().with_partition_index(0).with_committed_offset(10)])]);
        let effects = shard.txn_offset_commit(now_ms(), 1, request);
        task.apply(vec![effects]).await.expect("the transactional batch is appended");
        assert_eq!(fetch(&shard, &[0], true), vec![(-1, ResponseError::UnstableOffsetCommit.code())]);
        let marker = TxnMarker { producer_id: 7, producer_epoch: 0, commit: true, coordinator_epoch: 3 };
        assert_eq!(task.write_marker(&mut shard, &marker).await, Ok(()));
        assert_eq!(fetch(&shard, &[0], true), vec![(10, 0)]);
        // And a new leader loading the log agrees.
        let reloaded = task.load().await;
        assert_eq!(fetch(&reloaded, &[0], true), vec![(10, 0)]);
        assert_eq!(partition.offsets().log_end_offset, 2);
    }

    #[test]
    fn timers_replace_and_pop_in_order() {
        let mut timers = Timers::default();
        let a = TimerKey::ClassicJoin { group: "a".into() };
        let b = TimerKey::ClassicJoin { group: "b".into() };
        timers.schedule(a.clone(), 50);
        timers.schedule(b.clone(), 20);
        timers.schedule(a.clone(), 10);
        assert_eq!(timers.next_deadline(), Some(10));
        assert_eq!(timers.pop_due(15), vec![a.clone()]);
        timers.cancel(&b);
        assert_eq!(timers.next_deadline(), None);
        assert!(timers.pop_due(100).is_empty());
    }
}
