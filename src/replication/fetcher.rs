//! Replica fetchers: the follower side of replication. One task per leader broker copies the partitions this
//! broker follows from it, as Kafka's ReplicaFetcherThread does:
//!
//! 1. Truncation (KIP-101/279), whenever a partition is new to the fetcher or its leader or leader epoch
//!    changed: OffsetForLeaderEpoch for the follower's latest epoch; if the leader answers an older epoch the
//!    follower does not know, truncate to the follower's end of the largest epoch below it and ask again;
//!    otherwise truncate to min(leader's end offset, follower's end of that epoch). Never blindly to the HW
//!    (only when the leader knows no epochs at all, Kafka's fallback).
//! 2. Fetch loop: fsync what was appended (so the position reported to the leader is durable), Fetch from
//!    the log end offset with replica_id set, append what comes back as is (`append_replicated`), repeat.
//!
//! The broker owns the assignment: after applying a metadata change to the partitions
//! (`Partition::apply_leadership`) it calls [`ReplicaFetchers::update`] with the whole set of followed
//! partitions. Errors that only a metadata change can fix (FENCED_LEADER_EPOCH, the partition no longer a
//! follower in that epoch) park the partition until the next `update`; transient ones (NOT_LEADER_OR_FOLLOWER,
//! UNKNOWN_LEADER_EPOCH: the leader may learn the new epoch after us) are retried after
//! replica.fetch.backoff.ms; connection errors drop the connection, back off and reconnect.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

use super::client::{ClientError, KafkaClient};
use crate::broker::now_ms;
use crate::config::BrokerConfig;
use crate::partition::{FollowerPosition, Partition, PartitionError};

/// Fetch v13: the first with topic ids, still with replica_id in the body.
const FETCH_VERSION: i16 = 13;
/// OffsetForLeaderEpoch v4: flexible, with replica_id and current_leader_epoch.
const OFFSET_FOR_LEADER_EPOCH_VERSION: i16 = 4;
/// Room above replica.fetch.response.max.bytes for a response frame: the leader returns the first batch
/// whole even past the limit (KIP-74), and a batch can be as large as the topic's max.message.bytes.
const RESPONSE_FRAME_HEADROOM_BYTES: usize = 64 << 20;
/// Consecutive truncation rounds of one partition before backing off. Each round moves to a strictly older
/// epoch, so this only trips on a leader answering inconsistently.
const TRUNCATION_ROUNDS_MAX: u32 = 64;

/// Kafka's replica fetcher settings (same names and defaults).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetcherConfig {
    /// replica.fetch.wait.max.ms: how long the leader may hold a fetch without new data.
    pub wait_max_ms: i32,
    /// replica.fetch.min.bytes
    pub min_bytes: i32,
    /// replica.fetch.max.bytes: per partition.
    pub partition_max_bytes: i32,
    /// replica.fetch.response.max.bytes: per response.
    pub response_max_bytes: i32,
    /// replica.fetch.backoff.ms: wait after an error before retrying a partition or reconnecting.
    pub backoff_ms: u64,
    /// replica.socket.timeout.ms: bound on connecting and on each request.
    pub socket_timeout_ms: u64,
}

impl Default for FetcherConfig {
    fn default() -> Self {
        FetcherConfig {
            wait_max_ms: 500,
            min_bytes: 1,
            partition_max_bytes: 1_048_576,
            response_max_bytes: 10_485_760,
            backoff_ms: 1000,
            socket_timeout_ms: 30_000,
        }
    }
}

impl FetcherConfig {
    /// Reads the replica.* properties when the broker config has them, Kafka's defaults otherwise.
    pub fn from_broker_config(config: &BrokerConfig) -> FetcherConfig {
        let defaults = FetcherConfig::default();
        let number = |name: &str| config.get(name).trim().parse::<i64>().ok().filter(|v| *v >= 0);
        let int = |name: &str, default: i32| number(name).and_then(|v| i32::try_from(v).ok()).unwrap_or(default);
        let long = |name: &str, default: u64| number(name).map(|v| v as u64).unwrap_or(default);
        FetcherConfig {
            wait_max_ms: int("replica.fetch.wait.max.ms", defaults.wait_max_ms),
            min_bytes: int("replica.fetch.min.bytes", defaults.min_bytes),
            partition_max_bytes: int("replica.fetch.max.bytes", defaults.partition_max_bytes),
            response_max_bytes: int("replica.fetch.response.max.bytes", defaults.response_max_bytes),
            backoff_ms: long("replica.fetch.backoff.ms", defaults.backoff_ms),
            socket_timeout_ms: long("replica.socket.timeout.ms", defaults.socket_timeout_ms),
        }
    }

    fn backoff(&self) -> Duration {
        Duration::from_millis(self.backoff_ms)
    }
}

/// One partition this broker follows, and where its leader is.
#[derive(Clone)]
pub struct FollowerAssignment {
    pub partition: Arc<Partition>,
    pub leader_id: i32,
    pub leader_epoch: i32,
    pub leader_host: String,
    pub leader_port: i32,
}

/// What a leader's task is told to fetch.
#[derive(Clone)]
struct Assigned {
    partition: Arc<Partition>,
    leader_epoch: i32,
}

type PartitionKey = (Uuid, i32);

fn key_of(partition: &Partition) -> PartitionKey {
    (partition.topic_id, partition.index)
}

struct LeaderFetcher {
    host: String,
    port: i32,
    assignments: watch::Sender<Vec<Assigned>>,
    task: JoinHandle<()>,
}

/// The set of fetcher tasks of this broker, one per leader broker.
pub struct ReplicaFetchers {
    local_node: i32,
    config: FetcherConfig,
    runtime: Option<tokio::runtime::Handle>,
    fetchers: Mutex<HashMap<i32, LeaderFetcher>>,
}

impl ReplicaFetchers {
    /// Captures the current tokio runtime (if any) to spawn fetcher tasks from synchronous callers.
    pub fn new(local_node: i32, config: FetcherConfig) -> ReplicaFetchers {
        ReplicaFetchers {
            local_node,
            config,
            runtime: tokio::runtime::Handle::try_current().ok(),
            fetchers: Mutex::new(HashMap::new()),
        }
    }

    /// Replaces the whole set of followed partitions: tasks of leaders no longer listed (or whose address
    /// changed) stop; a partition whose leader or leader epoch changed starts over with truncation. Call it
    /// after the partitions' `apply_leadership`, so a fetcher never sees an epoch its partition does not know.
    pub fn update(&self, assignments: Vec<FollowerAssignment>) {
        let mut by_leader: BTreeMap<i32, (String, i32, BTreeMap<PartitionKey, Assigned>)> = BTreeMap::new();
        for a in assignments {
            if a.leader_id < 0 || a.leader_id == self.local_node {
                tracing::warn!(topic = %a.partition.topic, partition = a.partition.index, leader = a.leader_id, "not fetching: no remote leader");
                continue;
            }
            let entry = by_leader.entry(a.leader_id).or_insert_with(|| (a.leader_host.clone(), a.leader_port, BTreeMap::new()));
            entry.2.insert(key_of(&a.partition), Assigned { partition: a.partition, leader_epoch: a.leader_epoch });
        }
        let mut fetchers = self.fetchers.lock().unwrap_or_else(|p| p.into_inner());
        fetchers.retain(|leader_id, fetcher| {
            let keep = by_leader.get(leader_id).is_some_and(|(host, port, _)| *host == fetcher.host && *port == fetcher.port);
            if !keep {
                fetcher.task.abort();
            }
            keep
        });
        for (leader_id, (host, port, partitions)) in by_leader {
            let partitions: Vec<Assigned> = partitions.into_values().collect();
            if let Some(fetcher) = fetchers.get(&leader_id) {
                fetcher.assignments.send_replace(partitions);
                continue;
            }
            let Some(runtime) = self.runtime.clone().or_else(|| tokio::runtime::Handle::try_current().ok()) else {
                tracing::error!(leader = leader_id, "cannot start a replica fetcher outside a tokio runtime");
                continue;
            };
            let (sender, receiver) = watch::channel(partitions);
            let task = LeaderTask {
                local_node: self.local_node,
                leader_id,
                host: host.clone(),
                port,
                config: self.config.clone(),
                assignments: receiver,
                partitions: BTreeMap::new(),
                client: None,
                last_connection_error: None,
            };
            let span = tracing::info_span!("replica_fetcher", leader = leader_id);
            let task = runtime.spawn(tracing::Instrument::instrument(task.run(), span));
            fetchers.insert(leader_id, LeaderFetcher { host, port, assignments: sender, task });
        }
    }

    /// Leaders this broker currently fetches from.
    pub fn leaders(&self) -> Vec<i32> {
        let fetchers = self.fetchers.lock().unwrap_or_else(|p| p.into_inner());
        let mut leaders: Vec<i32> = fetchers.keys().copied().collect();
        leaders.sort_unstable();
        leaders
    }

    /// Stops every fetcher task and waits for them to end. Partition state is only changed under the
    /// partition's lock, so a task stopped at any await point leaves nothing half-done.
    pub async fn shutdown(&self) {
        let stopped: Vec<LeaderFetcher> = self.fetchers.lock().unwrap_or_else(|p| p.into_inner()).drain().map(|(_, f)| f).collect();
        for fetcher in stopped {
            fetcher.task.abort();
            let _ = fetcher.task.await;
        }
    }
}

impl Drop for ReplicaFetchers {
    fn drop(&mut self) {
        for fetcher in self.fetchers.get_mut().unwrap_or_else(|p| p.into_inner()).values() {
            fetcher.task.abort();
        }
    }
}

/// Where one partition is in the fetcher's cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Needs an OffsetForLeaderEpoch round before fetching.
    Truncating { rounds: u32 },
    Fetching,
    /// Only a new assignment (another leader epoch) can help: FENCED_LEADER_EPOCH, or the partition is no
    /// longer a follower in this epoch.
    Parked,
}

struct PartitionFetch {
    partition: Arc<Partition>,
    leader_epoch: i32,
    phase: Phase,
    /// Not before this instant (after an error).
    retry_at: Option<Instant>,
    /// The last error logged for this partition, so a repeating error is logged once.
    last_error: Option<String>,
}

impl PartitionFetch {
    fn ready(&self, now: Instant) -> bool {
        self.retry_at.is_none_or(|at| at <= now)
    }

    /// Logs `error` at warn the first time it happens in a row, at debug after that.
    fn note_error(&mut self, error: String) {
        if self.last_error.as_deref() != Some(error.as_str()) {
            tracing::warn!(topic = %self.partition.topic, partition = self.partition.index, leader_epoch = self.leader_epoch, %error, "replica fetch failed");
            self.last_error = Some(error);
        } else {
            tracing::debug!(topic = %self.partition.topic, partition = self.partition.index, %error, "replica fetch failed again");
        }
    }

    fn back_off(&mut self, config: &FetcherConfig, error: String) {
        self.note_error(error);
        self.retry_at = Some(Instant::now() + config.backoff());
    }

    fn park(&mut self, error: String) {
        self.note_error(error);
        self.phase = Phase::Parked;
    }

    fn succeeded(&mut self) {
        self.retry_at = None;
        self.last_error = None;
    }
}

/// How far a follower truncates, from the leader's OffsetForLeaderEpoch answer (Kafka's
/// `AbstractFetcherThread.getOffsetTruncationState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Truncation {
    /// Truncate here, then fetch.
    Complete(i64),
    /// Truncate here, then ask again with the (now older) latest epoch: the leader answered an epoch this
    /// follower does not have.
    Partial(i64),
}

/// `leader_answer`: (epoch, end offset) from the leader, -1/-1 when it knows no such epoch. `local_end`: this
/// follower's `end_offset_for_epoch(answer epoch)`.
pub fn truncation_for(leader_answer: (i32, i64), local_end: Option<(i32, i64)>, position: &FollowerPosition) -> Truncation {
    let (leader_epoch, leader_end_offset) = leader_answer;
    let log_end_offset = position.log_end_offset;
    if leader_epoch < 0 || leader_end_offset < 0 {
        // The leader has no epoch information for us: Kafka's fallback is the follower's HW.
        return Truncation::Complete(position.high_watermark.min(log_end_offset));
    }
    match local_end {
        Some((local_epoch, local_end_offset)) if local_epoch != leader_epoch => Truncation::Partial(local_end_offset.min(log_end_offset)),
        Some((_, local_end_offset)) => Truncation::Complete(local_end_offset.min(leader_end_offset).min(log_end_offset)),
        // We know no epoch that old: the leader's end offset for it is where our histories part.
        None => Truncation::Complete(leader_end_offset.min(log_end_offset)),
    }
}

/// The task fetching from one leader broker.
struct LeaderTask {
    local_node: i32,
    leader_id: i32,
    host: String,
    port: i32,
    config: FetcherConfig,
    assignments: watch::Receiver<Vec<Assigned>>,
    partitions: BTreeMap<PartitionKey, PartitionFetch>,
    client: Option<KafkaClient>,
    last_connection_error: Option<String>,
}

impl LeaderTask {
    async fn run(mut self) {
        let mut reload = true;
        loop {
            match self.assignments.has_changed() {
                // The sender went away: ReplicaFetchers dropped this leader.
                Err(_) => return,
                Ok(changed) => reload |= changed,
            }
            if reload {
                reload = false;
                let assigned = self.assignments.borrow_and_update().clone();
                self.apply_assignments(assigned);
            }
            if self.partitions.is_empty() {
                // Nothing to fetch: hold no connection and wait for work.
                self.client = None;
                if self.assignments.changed().await.is_err() {
                    return;
                }
                reload = true;
                continue;
            }
            let wait = match self.cycle().await {
                Ok(None) => continue,
                Ok(Some(wait)) => wait,
                Err(e) => {
                    self.client = None;
                    let error = e.to_string();
                    if self.last_connection_error.as_deref() != Some(error.as_str()) {
                        tracing::warn!(leader = self.leader_id, host = %self.host, port = self.port, %error, "replica fetcher connection failed; reconnecting after backoff");
                        self.last_connection_error = Some(error);
                    }
                    self.config.backoff()
                }
            };
            match self.sleep_or_reassigned(wait).await {
                Ok(changed) => reload |= changed,
                Err(()) => return,
            }
        }
    }

    /// Sleeps for `wait`, or less if the assignment changes: Ok(true) then. Err when the sender is gone.
    async fn sleep_or_reassigned(&mut self, wait: Duration) -> Result<bool, ()> {
        tokio::select! {
            _ = tokio::time::sleep(wait) => Ok(false),
            changed = self.assignments.changed() => changed.map(|_| true).map_err(|_| ()),
        }
    }

    fn apply_assignments(&mut self, assigned: Vec<Assigned>) {
        let mut next = BTreeMap::new();
        for a in assigned {
            let key = key_of(&a.partition);
            let kept = self
                .partitions
                .remove(&key)
                .filter(|existing| existing.leader_epoch == a.leader_epoch && Arc::ptr_eq(&existing.partition, &a.partition));
            let state = kept.unwrap_or(PartitionFetch {
                partition: a.partition,
                leader_epoch: a.leader_epoch,
                phase: Phase::Truncating { rounds: 0 },
                retry_at: None,
                last_error: None,
            });
            next.insert(key, state);
        }
        self.partitions = next;
    }

    async fn connected(&mut self) -> Result<&mut KafkaClient, ClientError> {
        if self.client.is_none() {
            let timeout = Duration::from_millis(self.config.socket_timeout_ms);
            let max_response = (self.config.response_max_bytes.max(0) as usize).saturating_add(RESPONSE_FRAME_HEADROOM_BYTES);
            let client_id = format!("odradek-replica-{}", self.local_node);
            let client = KafkaClient::connect(&self.host, self.port, client_id, timeout, max_response).await?;
            if self.last_connection_error.take().is_some() {
                tracing::info!(leader = self.leader_id, "replica fetcher reconnected");
            }
            self.client = Some(client);
        }
        match self.client.as_mut() {
            Some(client) => Ok(client),
            None => Err(ClientError::Closed),
        }
    }

    /// One round: truncation for partitions that need it, then one fetch. Returns how long to wait when
    /// nothing was ready.
    async fn cycle(&mut self) -> Result<Option<Duration>, ClientError> {
        let now = Instant::now();
        let truncating: Vec<PartitionKey> = self
            .partitions
            .iter()
            .filter(|(_, p)| matches!(p.phase, Phase::Truncating { .. }) && p.ready(now))
            .map(|(k, _)| *k)
            .collect();
        if !truncating.is_empty() {
            self.truncate(&truncating).await?;
        }
        let fetching: Vec<PartitionKey> =
            self.partitions.iter().filter(|(_, p)| p.phase == Phase::Fetching && p.ready(now)).map(|(k, _)| *k).collect();
        if !fetching.is_empty() {
            self.fetch(&fetching).await?;
            return Ok(None);
        }
        if self.partitions.values().any(|p| matches!(p.phase, Phase::Truncating { .. }) && p.ready(Instant::now())) {
            return Ok(None);
        }
        // Nothing ready: wait for the earliest retry (bounded by the backoff), or a new assignment.
        let wait = self
            .partitions
            .values()
            .filter(|p| p.phase != Phase::Parked)
            .filter_map(|p| p.retry_at)
            .min()
            .map(|at| at.saturating_duration_since(Instant::now()))
            .unwrap_or(self.config.backoff())
            .min(self.config.backoff());
        Ok(Some(wait))
    }

    /// One OffsetForLeaderEpoch round for `keys`, then truncation by its answers.
    async fn truncate(&mut self, keys: &[PartitionKey]) -> Result<(), ClientError> {
        let mut topics: BTreeMap<String, Vec<OffsetForLeaderPartition>> = BTreeMap::new();
        let mut asked = Vec::new();
        let now = now_ms();
        for key in keys {
            let Some(state) = self.partitions.get_mut(key) else { continue };
            let position = match state.partition.follower_position(state.leader_epoch) {
                Ok(position) => position,
                Err(e) => {
                    state.park(e.to_string());
                    continue;
                }
            };
            let Some(latest_epoch) = position.latest_epoch else {
                // No epochs: an empty log has nothing to truncate; batches without epochs (never written by
                // a leader of ours) fall back to the HW, as Kafka does.
                if let Err(e) = state.partition.truncate_replica_to(position.high_watermark, state.leader_epoch, now) {
                    state.back_off(&self.config, format!("truncating to the high watermark: {e}"));
                    continue;
                }
                state.phase = Phase::Fetching;
                continue;
            };
            topics.entry(state.partition.topic.clone()).or_default().push(
                OffsetForLeaderPartition::default()
                    .with_partition(state.partition.index)
                    .with_current_leader_epoch(state.leader_epoch)
                    .with_leader_epoch(latest_epoch),
            );
            asked.push((state.partition.topic.clone(), state.partition.index, *key, position));
        }
        if asked.is_empty() {
            return Ok(());
        }
        let request = OffsetForLeaderEpochRequest::default().with_replica_id(BrokerId(self.local_node)).with_topics(
            topics
                .into_iter()
                .map(|(topic, partitions)| {
                    OffsetForLeaderTopic::default().with_topic(TopicName(StrBytes::from_string(topic))).with_partitions(partitions)
                })
                .collect(),
        );
        let client = self.connected().await?;
        let response: OffsetForLeaderEpochResponse =
            client.call(ApiKey::OffsetForLeaderEpoch, OFFSET_FOR_LEADER_EPOCH_VERSION, &request).await?;
        let mut answers = HashMap::new();
        for topic in &response.topics {
            for p in &topic.partitions {
                answers.insert((topic.topic.0.to_string(), p.partition), p.clone());
            }
        }
        for (topic, index, key, position) in asked {
            let Some(state) = self.partitions.get_mut(&key) else { continue };
            let Some(answer) = answers.get(&(topic, index)) else {
                state.back_off(&self.config, "the leader's OffsetForLeaderEpoch answer left the partition out".into());
                continue;
            };
            if answer.error_code != 0 {
                handle_error_code(state, &self.config, answer.error_code, "OffsetForLeaderEpoch");
                continue;
            }
            let local_end = state.partition.end_offset_for_epoch(answer.leader_epoch);
            let step = truncation_for((answer.leader_epoch, answer.end_offset), local_end, &position);
            let (offset, complete) = match step {
                Truncation::Complete(offset) => (offset, true),
                Truncation::Partial(offset) => (offset, false),
            };
            if offset < position.log_end_offset {
                tracing::info!(
                    topic = %state.partition.topic,
                    partition = state.partition.index,
                    from = position.log_end_offset,
                    to = offset,
                    leader_epoch = answer.leader_epoch,
                    leader_end_offset = answer.end_offset,
                    "truncating follower log by leader epoch"
                );
            }
            if let Err(e) = state.partition.truncate_replica_to(offset, state.leader_epoch, now) {
                match e {
                    PartitionError::NotLeaderOrFollower { .. } => state.park(e.to_string()),
                    _ => state.back_off(&self.config, format!("truncating to {offset}: {e}")),
                }
                continue;
            }
            state.phase = match (complete, state.phase) {
                (true, _) => Phase::Fetching,
                (false, Phase::Truncating { rounds }) if rounds + 1 < TRUNCATION_ROUNDS_MAX => Phase::Truncating { rounds: rounds + 1 },
                (false, _) => {
                    state.back_off(&self.config, "the leader's epoch answers do not converge".into());
                    Phase::Truncating { rounds: 0 }
                }
            };
            if complete {
                state.succeeded();
            }
        }
        Ok(())
    }

    /// Makes every partition in `keys` durable up to its log end (the offset it is about to report), then
    /// sends one Fetch for them and appends what comes back.
    async fn fetch(&mut self, keys: &[PartitionKey]) -> Result<(), ClientError> {
        let mut flushes = tokio::task::JoinSet::new();
        for key in keys {
            let Some(state) = self.partitions.get(key) else { continue };
            let partition = state.partition.clone();
            let end = partition.offsets().log_end_offset;
            let key = *key;
            flushes.spawn(async move { (key, partition.flush_to(end).await) });
        }
        let mut durable = Vec::with_capacity(keys.len());
        while let Some(joined) = flushes.join_next().await {
            match joined {
                Ok((key, Ok(()))) => durable.push(key),
                Ok((key, Err(e))) => {
                    if let Some(state) = self.partitions.get_mut(&key) {
                        state.back_off(&self.config, format!("fsync before fetching failed: {e}"));
                    }
                }
                Err(e) => tracing::error!(error = %e, "replica fsync task failed"),
            }
        }
        let mut topics: BTreeMap<Uuid, Vec<FetchPartition>> = BTreeMap::new();
        let mut fetched: Vec<PartitionKey> = Vec::new();
        for key in durable {
            let Some(state) = self.partitions.get_mut(&key) else { continue };
            let position = match state.partition.follower_position(state.leader_epoch) {
                Ok(position) => position,
                Err(e) => {
                    state.park(e.to_string());
                    continue;
                }
            };
            topics.entry(state.partition.topic_id).or_default().push(
                FetchPartition::default()
                    .with_partition(state.partition.index)
                    .with_current_leader_epoch(state.leader_epoch)
                    .with_fetch_offset(position.log_end_offset)
                    .with_last_fetched_epoch(-1)
                    .with_log_start_offset(position.log_start_offset)
                    .with_partition_max_bytes(self.config.partition_max_bytes),
            );
            fetched.push(key);
        }
        if fetched.is_empty() {
            return Ok(());
        }
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(self.local_node))
            .with_max_wait_ms(self.config.wait_max_ms)
            .with_min_bytes(self.config.min_bytes)
            .with_max_bytes(self.config.response_max_bytes)
            .with_isolation_level(0)
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_topics(
                topics
                    .into_iter()
                    .map(|(topic_id, partitions)| FetchTopic::default().with_topic_id(topic_id).with_partitions(partitions))
                    .collect(),
            );
        let client = self.connected().await?;
        let response: FetchResponse = client.call(ApiKey::Fetch, FETCH_VERSION, &request).await?;
        if response.error_code != 0 {
            for key in &fetched {
                if let Some(state) = self.partitions.get_mut(key) {
                    handle_error_code(state, &self.config, response.error_code, "Fetch");
                }
            }
            return Ok(());
        }
        let mut unanswered: BTreeSet<PartitionKey> = fetched.iter().copied().collect();
        for topic in response.responses {
            for data in topic.partitions {
                let key = (topic.topic_id, data.partition_index);
                if !unanswered.remove(&key) {
                    continue; // not asked for, or answered twice
                }
                let Some(state) = self.partitions.get_mut(&key) else { continue };
                match data.error_code {
                    0 => {
                        let records = data.records.unwrap_or_default();
                        let result =
                            state.partition.append_replicated(&records, state.leader_epoch, data.high_watermark, data.log_start_offset, now_ms());
                        match result {
                            Ok(_) => state.succeeded(),
                            Err(e @ PartitionError::NotLeaderOrFollower { .. }) => state.park(e.to_string()),
                            Err(e) => {
                                // What the leader sent does not fit our log: find the divergence again.
                                state.back_off(&self.config, format!("appending replicated records: {e}"));
                                state.phase = Phase::Truncating { rounds: 0 };
                            }
                        }
                    }
                    code if code == ResponseError::OffsetOutOfRange.code() => handle_out_of_range(state, &self.config, data.log_start_offset),
                    code => handle_error_code(state, &self.config, code, "Fetch"),
                }
            }
        }
        for key in &unanswered {
            if let Some(state) = self.partitions.get_mut(key) {
                state.back_off(&self.config, "the leader's Fetch answer left the partition out".into());
            }
        }
        Ok(())
    }
}

/// OFFSET_OUT_OF_RANGE on a fetch from our log end: below the leader's log start we cannot fetch what we
/// miss, so the log restarts there; otherwise our log runs past the leader's and truncation is redone.
fn handle_out_of_range(state: &mut PartitionFetch, config: &FetcherConfig, leader_log_start_offset: i64) {
    let position = match state.partition.follower_position(state.leader_epoch) {
        Ok(position) => position,
        Err(e) => return state.park(e.to_string()),
    };
    if leader_log_start_offset > position.log_end_offset {
        tracing::info!(
            topic = %state.partition.topic,
            partition = state.partition.index,
            log_end_offset = position.log_end_offset,
            leader_log_start_offset,
            "follower log ends below the leader's log start; restarting it there"
        );
        match state.partition.reset_replica_to(leader_log_start_offset, state.leader_epoch) {
            Ok(()) => state.succeeded(),
            Err(e) => state.back_off(config, format!("restarting the log at {leader_log_start_offset}: {e}")),
        }
        return;
    }
    state.back_off(config, format!("fetch offset {} out of range on the leader", position.log_end_offset));
    state.phase = Phase::Truncating { rounds: 0 };
}

/// Partition-level errors from the leader, as Kafka's fetcher treats them.
fn handle_error_code(state: &mut PartitionFetch, config: &FetcherConfig, code: i16, api: &str) {
    let name = ResponseError::try_from_code(code).map(|e| format!("{e:?}")).unwrap_or_else(|| format!("error code {code}"));
    if code == ResponseError::FencedLeaderEpoch.code() {
        // The leader is in a newer epoch than our assignment: only a metadata update helps.
        state.park(format!("{api}: {name}"));
    } else {
        // NOT_LEADER_OR_FOLLOWER, UNKNOWN_LEADER_EPOCH (the leader may not have the new epoch yet),
        // UNKNOWN_TOPIC_ID, storage errors...: retry after the backoff.
        state.back_off(config, format!("{api}: {name}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position(log_end_offset: i64, high_watermark: i64) -> FollowerPosition {
        FollowerPosition { leader: 1, leader_epoch: 5, log_start_offset: 0, log_end_offset, high_watermark, latest_epoch: Some(3) }
    }

    #[test]
    fn truncation_follows_kip_279() {
        // Same epoch known on both sides: the smaller end offset.
        assert_eq!(truncation_for((3, 40), Some((3, 50)), &position(50, 10)), Truncation::Complete(40));
        assert_eq!(truncation_for((3, 60), Some((3, 50)), &position(50, 10)), Truncation::Complete(50));
        // The leader answers epoch 2, which we do not have (we have 1 then 3): truncate to our end of 1 and ask again.
        assert_eq!(truncation_for((2, 30), Some((1, 20)), &position(50, 10)), Truncation::Partial(20));
        // Older than all our epochs: the leader's end offset.
        assert_eq!(truncation_for((0, 5), None, &position(50, 10)), Truncation::Complete(5));
        // Never beyond our own log end.
        assert_eq!(truncation_for((0, 500), None, &position(50, 10)), Truncation::Complete(50));
        // The leader knows no epochs: Kafka's high-watermark fallback.
        assert_eq!(truncation_for((-1, -1), None, &position(50, 10)), Truncation::Complete(10));
    }

    #[test]
    fn config_reads_kafka_names_and_falls_back_to_defaults() {
        let config = BrokerConfig::default();
        assert_eq!(FetcherConfig::from_broker_config(&config), FetcherConfig::default());
    }
}
