//! The thin runtime around the pure [`TxnShard`]s: the only part of `txn/` that does I/O besides markers.
//!
//! - `__transaction_state` is created at the first transactional request (FindCoordinator included), as
//!   Kafka does: compacted, transaction.state.log.num.partitions partitions, replication factor
//!   transaction.state.log.replication.factor capped at the cluster size, min.insync.replicas
//!   transaction.state.log.min.isr capped at that factor.
//! - One tokio task per `__transaction_state` partition this broker leads owns that partition's shard. Handlers
//!   send it jobs over a bounded channel; the jobs already queued when it wakes run together, their records are
//!   appended as one batch, made durable and replicated (one fsync for all), and only then are their replies
//!   sent. A failed write answers NOT_COORDINATOR (the client finds the coordinator again and retries) and
//!   rebuilds the shard from its log.
//! - Markers: after a prepare is durable, one task per transaction writes its markers (retrying until every
//!   partition has one, while this broker is still the coordinator) and then sends the shard the job that
//!   completes the transaction. The coordinator epoch in the markers is the leader epoch of the shard's
//!   partition when it was loaded.
//! - Timers: every transaction.abort.timed.out.transaction.cleanup.interval.ms the shard aborts transactions
//!   past their timeout; every transaction.remove.expired.transaction.cleanup.interval.ms it forgets idle ids.
//! - Loading: the task replays its partition up to the log end before serving (COORDINATOR_LOAD_IN_PROGRESS
//!   meanwhile), then resends the markers of transactions caught between prepare and complete.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::markers::{self, Delivery, MarkerClients};
use super::records;
use super::{MarkerJob, Step, TxnConfig, TxnError, TxnMetadata, TxnShard, TRANSACTION_STATE_TOPIC};
use crate::broker::{now_ms, Broker, InternalTopic};
use crate::config::BrokerConfig;
use crate::log::batch::{BatchBuilder, NewRecord};
use crate::partition::replay::{replay_to_end, Replayed};
use crate::partition::{Partition, PartitionError, TxnMarker};

/// How long a `__transaction_state` write waits for the in-sync replicas.
const STATE_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
const SHARD_QUEUE: usize = 1024;
/// Jobs handled together before one fsync (group commit inside a shard).
const MAX_JOBS_PER_FSYNC: usize = 256;
/// Pause between marker attempts for the partitions that still lack one, growing to the maximum.
const MARKER_RETRY_BACKOFF: Duration = Duration::from_millis(50);
const MARKER_RETRY_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Builds the coordinator settings from the broker properties.
pub fn txn_config(config: &BrokerConfig) -> TxnConfig {
    TxnConfig {
        max_timeout_ms: config.get_i32("transaction.max.timeout.ms"),
        id_expiration_ms: i64::from(config.get_i32("transactional.id.expiration.ms")),
    }
}

/// Sends a job's answer back to its handler: the operation's result, or the error that kept it from being
/// written.
type SendReply<R> = Box<dyn FnOnce(Result<R, TxnError>) + Send>;

/// What a job produced: records to write, the reply to send once they are durable, markers to send after.
struct Output {
    writes: Vec<(String, Option<TxnMetadata>)>,
    reply: Option<SendReply<()>>,
    markers: Vec<MarkerJob>,
}

impl Output {
    fn from_step<R: Send + 'static>(step: Step<R>, reply: Option<SendReply<R>>) -> Output {
        let Step { reply: value, write, markers } = step;
        Output {
            writes: write.into_iter().collect(),
            reply: reply.map(|send| -> SendReply<()> { Box::new(move |written| send(written.map(|()| value))) }),
            markers: markers.into_iter().collect(),
        }
    }
}

type Job = Box<dyn FnOnce(&mut TxnShard, i64) -> Output + Send>;

#[derive(Clone)]
struct ShardHandle {
    jobs: mpsc::Sender<Job>,
    loaded: Arc<AtomicBool>,
}

/// The transaction coordinator of this broker: one shard task per led `__transaction_state` partition.
pub struct TxnCoordinator {
    config: TxnConfig,
    /// Bounded by the partition count of `__transaction_state`. Never held across `.await`.
    shards: Mutex<HashMap<i32, ShardHandle>>,
    clients: Arc<MarkerClients>,
}

impl TxnCoordinator {
    pub fn new(config: TxnConfig) -> TxnCoordinator {
        TxnCoordinator { config, shards: Mutex::new(HashMap::new()), clients: Arc::new(MarkerClients::default()) }
    }

    /// Partitions of `__transaction_state`, creating it if needed.
    pub async fn ensure_topic(&self, broker: &Arc<Broker>) -> Result<i32, TxnError> {
        let topic = InternalTopic {
            name: TRANSACTION_STATE_TOPIC,
            partitions_property: "transaction.state.log.num.partitions",
            replication_factor_property: "transaction.state.log.replication.factor",
            segment_bytes_property: "transaction.state.log.segment.bytes",
            min_insync_replicas_property: Some("transaction.state.log.min.isr"),
        };
        broker.ensure_internal_topic(&topic).await.ok_or(TxnError::NotAvailable)
    }

    /// Starts (loading) every shard this broker leads, when `__transaction_state` exists (at broker start
    /// and after leadership changes), so prepared transactions get their markers without waiting for a client.
    pub fn start_led_shards(&self, broker: &Arc<Broker>) {
        let Some(partitions) = broker.image().topic(TRANSACTION_STATE_TOPIC).map(|t| t.partitions.len() as i32) else { return };
        for index in 0..partitions {
            let _ = self.shard(broker, index);
        }
    }

    /// Stops the shards of partitions this broker no longer leads; the new leader loads them from the log.
    pub fn retain_led_shards(&self, leads: impl Fn(i32) -> bool) {
        let mut shards = self.shards.lock().unwrap_or_else(|p| p.into_inner());
        shards.retain(|index, _| leads(*index));
    }

    /// The `__transaction_state` partition of `transactional_id` (Kafka's hash), creating the topic if needed.
    pub async fn partition_for(&self, broker: &Arc<Broker>, transactional_id: &str) -> Result<i32, TxnError> {
        let partitions = self.ensure_topic(broker).await?;
        Ok(crate::group::partition_for_group(transactional_id, partitions))
    }

    fn shard(&self, broker: &Arc<Broker>, index: i32) -> Result<ShardHandle, TxnError> {
        let partition = broker.partition(TRANSACTION_STATE_TOPIC, index).ok_or(TxnError::NotCoordinator)?;
        let leadership = partition.leadership();
        if leadership.leader != broker.node_id || !partition.is_leader() {
            return Err(TxnError::NotCoordinator);
        }
        let mut shards = self.shards.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(handle) = shards.get(&index) {
            if !handle.jobs.is_closed() {
                return Ok(handle.clone());
            }
        }
        let (jobs, receiver) = mpsc::channel(SHARD_QUEUE);
        let handle = ShardHandle { jobs, loaded: Arc::new(AtomicBool::new(false)) };
        let task = ShardTask {
            broker: Arc::downgrade(broker),
            partition,
            config: self.config.clone(),
            coordinator_epoch: leadership.leader_epoch,
            loaded: handle.loaded.clone(),
            jobs: handle.jobs.downgrade(),
            clients: self.clients.clone(),
        };
        tokio::spawn(task.run(receiver));
        shards.insert(index, handle.clone());
        Ok(handle)
    }

    async fn ready_shard(&self, broker: &Arc<Broker>, transactional_id: &str) -> Result<ShardHandle, TxnError> {
        let index = self.partition_for(broker, transactional_id).await?;
        let handle = self.shard(broker, index)?;
        if !handle.loaded.load(Ordering::Acquire) {
            return Err(TxnError::LoadInProgress);
        }
        Ok(handle)
    }

    /// Runs an operation on the shard of `transactional_id`; its reply comes once its record is durable.
    pub async fn call<R: Send + 'static>(
        &self,
        broker: &Arc<Broker>,
        transactional_id: &str,
        operation: impl FnOnce(&mut TxnShard, i64) -> Step<Result<R, TxnError>> + Send + 'static,
    ) -> Result<R, TxnError> {
        let handle = self.ready_shard(broker, transactional_id).await?;
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |shard, now| {
            let send: SendReply<Result<R, TxnError>> = Box::new(move |result| {
                let _ = reply.send(result.and_then(|r| r));
            });
            Output::from_step(operation(shard, now), Some(send))
        });
        handle.jobs.send(job).await.map_err(|_| TxnError::NotCoordinator)?;
        answer.await.map_err(|_| TxnError::NotCoordinator)?
    }

    /// Reads the shard of `transactional_id` (DescribeTransactions).
    pub async fn read<R: Send + 'static>(
        &self,
        broker: &Arc<Broker>,
        transactional_id: &str,
        read: impl FnOnce(&TxnShard) -> R + Send + 'static,
    ) -> Result<R, TxnError> {
        let handle = self.ready_shard(broker, transactional_id).await?;
        read_on(&handle, read).await
    }

    /// Reads every shard this broker leads (ListTransactions); LOAD_IN_PROGRESS while one is loading.
    pub async fn read_all<R: Send + 'static>(
        &self,
        broker: &Arc<Broker>,
        read: impl Fn(&TxnShard) -> R + Send + Sync + 'static,
    ) -> Result<Vec<R>, TxnError> {
        self.start_led_shards(broker);
        let handles: Vec<ShardHandle> = self.shards.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        let read = Arc::new(read);
        let mut out = Vec::with_capacity(handles.len());
        for handle in handles {
            if !handle.loaded.load(Ordering::Acquire) {
                return Err(TxnError::LoadInProgress);
            }
            let read = read.clone();
            out.push(read_on(&handle, move |shard| read(shard)).await?);
        }
        Ok(out)
    }
}

async fn read_on<R: Send + 'static>(handle: &ShardHandle, read: impl FnOnce(&TxnShard) -> R + Send + 'static) -> Result<R, TxnError> {
    let (reply, answer) = oneshot::channel();
    let job: Job = Box::new(move |shard, _| {
        let _ = reply.send(read(shard));
        Output { writes: Vec::new(), reply: None, markers: Vec::new() }
    });
    handle.jobs.send(job).await.map_err(|_| TxnError::NotCoordinator)?;
    answer.await.map_err(|_| TxnError::NotCoordinator)
}

struct ShardTask {
    broker: Weak<Broker>,
    partition: Arc<Partition>,
    config: TxnConfig,
    coordinator_epoch: i32,
    loaded: Arc<AtomicBool>,
    /// For marker tasks to send the completion back; weak, so the task ends when the coordinator drops it.
    jobs: mpsc::WeakSender<Job>,
    clients: Arc<MarkerClients>,
}

impl ShardTask {
    async fn run(self, mut receiver: mpsc::Receiver<Job>) {
        let Some(broker) = self.broker.upgrade() else { return };
        let (abort_every, expire_every) = {
            let interval = |name: &str| Duration::from_millis(u64::try_from(broker.config.get_i32(name)).unwrap_or(1).max(1));
            (
                interval("transaction.abort.timed.out.transaction.cleanup.interval.ms"),
                interval("transaction.remove.expired.transaction.cleanup.interval.ms"),
            )
        };
        drop(broker);
        let mut shard = self.load().await;
        let mut abort_timer = tokio::time::interval(abort_every);
        let mut expire_timer = tokio::time::interval(expire_every);
        abort_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        expire_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let mut outputs = tokio::select! {
                job = receiver.recv() => match job {
                    None => break,
                    Some(job) => vec![job(&mut shard, now_ms())],
                },
                _ = abort_timer.tick() => shard.abort_timed_out(now_ms()).into_iter().map(|s| Output::from_step(s, None)).collect(),
                _ = expire_timer.tick() => shard.expire_ids(now_ms()).into_iter().map(|s| Output::from_step(s, None)).collect(),
            };
            while outputs.len() < MAX_JOBS_PER_FSYNC {
                match receiver.try_recv() {
                    Ok(job) => outputs.push(job(&mut shard, now_ms())),
                    Err(_) => break,
                }
            }
            if self.broker.strong_count() == 0 {
                break;
            }
            let writes: Vec<_> = outputs.iter_mut().flat_map(|o| std::mem::take(&mut o.writes)).collect();
            let written = self.write(&writes).await;
            if let Err(e) = &written {
                tracing::error!(partition = self.partition.index, error = %e, "writing {TRANSACTION_STATE_TOPIC} failed; reloading the shard from its log");
            }
            let failed = written.is_err();
            for output in outputs {
                if let Some(reply) = output.reply {
                    reply(if failed { Err(TxnError::NotCoordinator) } else { Ok(()) });
                }
                if !failed {
                    for job in output.markers {
                        self.spawn_markers(job);
                    }
                }
            }
            if failed {
                shard = self.load().await;
            }
        }
    }

    /// Appends the records as one batch and waits until they are durable and on every in-sync replica.
    async fn write(&self, writes: &[(String, Option<TxnMetadata>)]) -> Result<(), PartitionError> {
        if writes.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        let encoded: Vec<(Vec<u8>, Option<Vec<u8>>)> =
            writes.iter().map(|(id, value)| (records::encode_key(id), value.as_ref().map(records::encode_value))).collect();
        let new_records: Vec<NewRecord> = encoded
            .iter()
            .map(|(key, value)| NewRecord { timestamp_ms: now, key: Some(key), value: value.as_deref(), headers: &[] })
            .collect();
        let batch = BatchBuilder::new().build(&new_records)?;
        let outcome = self.partition.append_from_coordinator(batch, now)?;
        let end = outcome.last_offset + 1;
        self.partition.flush_to(end).await?;
        let deadline = tokio::time::Instant::now() + STATE_WRITE_TIMEOUT;
        self.partition.wait_for_replication(end, outcome.leader_epoch, deadline).await
    }

    fn spawn_markers(&self, job: MarkerJob) {
        let delivery = MarkerDelivery {
            broker: self.broker.clone(),
            jobs: self.jobs.clone(),
            clients: self.clients.clone(),
            coordinator_epoch: self.coordinator_epoch,
        };
        tokio::spawn(delivery.run(job));
    }

    /// Rebuilds the shard from the partition's log up to its end, then resends pending markers.
    async fn load(&self) -> TxnShard {
        self.loaded.store(false, Ordering::Release);
        let started = std::time::Instant::now();
        let mut shard = TxnShard::new(self.config.clone());
        let mut records_read = 0usize;
        let index = self.partition.index;
        let replayed = replay_to_end(&self.partition, |item| match item {
            // Markers live in the data partitions, never here.
            Replayed::Control { .. } => {}
            Replayed::Record { record, .. } => {
                let Some(key) = record.key else { return };
                let decoded = records::decode_key(&key).and_then(|id| Ok((id, record.value.as_deref().map(records::decode_value).transpose()?)));
                match decoded {
                    Ok((id, value)) => {
                        records_read += 1;
                        shard.replay(id, value);
                    }
                    Err(e) => tracing::warn!(partition = index, offset = record.offset, error = %e, "skipping an undecodable transaction record"),
                }
            }
            Replayed::Undecodable { header, error } => {
                tracing::warn!(partition = index, offset = header.base_offset, %error, "skipping an undecodable batch")
            }
        })
        .await;
        if let Err(e) = replayed {
            tracing::error!(partition = index, error = %e, "reading {TRANSACTION_STATE_TOPIC} while loading failed");
        }
        for job in shard.pending_markers() {
            self.spawn_markers(job);
        }
        if records_read > 0 {
            tracing::info!(partition = self.partition.index, records = records_read, elapsed_ms = started.elapsed().as_millis() as u64, "loaded transaction coordinator shard");
        }
        self.loaded.store(true, Ordering::Release);
        shard
    }
}

/// Writes one transaction's markers everywhere, then completes it on the shard.
struct MarkerDelivery {
    broker: Weak<Broker>,
    jobs: mpsc::WeakSender<Job>,
    clients: Arc<MarkerClients>,
    coordinator_epoch: i32,
}

impl MarkerDelivery {
    async fn run(self, job: MarkerJob) {
        let marker = TxnMarker {
            producer_id: job.producer_id,
            producer_epoch: job.producer_epoch,
            commit: job.commit,
            coordinator_epoch: self.coordinator_epoch,
        };
        let mut remaining = job.partitions.clone();
        let mut backoff = MARKER_RETRY_BACKOFF;
        while !remaining.is_empty() {
            // Stop when this broker is no longer the coordinator: the new one resends from its log.
            if self.jobs.upgrade().is_none_or(|jobs| jobs.is_closed()) {
                return;
            }
            let Some(broker) = self.broker.upgrade() else { return };
            remaining = self.attempt(&broker, marker, remaining).await;
            drop(broker);
            if !remaining.is_empty() {
                tracing::debug!(transactional_id = %job.transactional_id, partitions = remaining.len(), "retrying transaction markers");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MARKER_RETRY_BACKOFF_MAX);
            }
        }
        let Some(jobs) = self.jobs.upgrade() else { return };
        let complete: Job = Box::new(move |shard, now| Output::from_step(shard.complete(&job, now), None));
        let _ = jobs.send(complete).await;
    }

    /// One round: every partition's marker to its current leader, in parallel per leader. Returns the
    /// partitions to try again.
    async fn attempt(&self, broker: &Arc<Broker>, marker: TxnMarker, partitions: Vec<(String, i32)>) -> Vec<(String, i32)> {
        let image = broker.image();
        let mut by_leader: BTreeMap<i32, Vec<(String, i32)>> = BTreeMap::new();
        let mut retry = Vec::new();
        for (topic, index) in partitions {
            let Some(found) = image.topic(&topic) else {
                tracing::info!(topic, partition = index, "dropping the marker of a deleted topic");
                continue;
            };
            match found.partitions.get(index as usize).map(|p| p.leader) {
                Some(leader) if leader >= 0 => by_leader.entry(leader).or_default().push((topic, index)),
                Some(_) => retry.push((topic, index)),
                None => tracing::info!(topic, partition = index, "dropping the marker of a partition that no longer exists"),
            }
        }
        let mut rounds = tokio::task::JoinSet::new();
        for (leader, partitions) in by_leader {
            let broker = broker.clone();
            let clients = self.clients.clone();
            let address = image.broker(leader).filter(|b| !b.fenced).map(|b| (b.host.clone(), b.port));
            rounds.spawn(async move {
                let codes = if leader == broker.node_id {
                    Some(markers::write_local(&broker, marker, &partitions).await)
                } else if let Some((host, port)) = address {
                    clients.send(broker.node_id, (leader, &host, port), marker, &partitions).await
                } else {
                    None
                };
                (partitions, codes)
            });
        }
        while let Some(joined) = rounds.join_next().await {
            let Ok((partitions, codes)) = joined else { continue };
            let Some(codes) = codes else {
                retry.extend(partitions);
                continue;
            };
            for ((topic, index), code) in partitions.into_iter().zip(codes) {
                match markers::classify(code, image.topic(&topic).is_some()) {
                    Delivery::Written => {}
                    Delivery::Retry => retry.push((topic, index)),
                    Delivery::GiveUp => tracing::warn!(topic, partition = index, code, producer_id = marker.producer_id, "giving up on a transaction marker"),
                }
            }
        }
        retry
    }
}
