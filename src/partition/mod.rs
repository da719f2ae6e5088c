//! A partition: its log plus the replication state Kafka attaches to it (leader epoch, replicas, ISR, high
//! watermark) and its idempotent-producer state.
//!
//! All of it is owned by one `std::sync::Mutex` that is never held across `.await`: appends, reads and offset
//! look-ups are short and synchronous. Three things happen outside the lock: fsync (group commit: the first
//! producer to wait syncs everything appended so far, the others find their offsets already durable), waiting
//! for data (fetch requests register a `Notify`: consumers are woken by high-watermark advances, followers by
//! appends) and acks=all waiting (a `watch` channel bumped on every high-watermark advance or leadership change).
//!
//! Roles (Kafka's ISR model): the leader assigns offsets, tracks each follower's fetch position in a
//! [`leader_state::LeaderState`] and keeps HW = min LEO over the ISR; a follower appends what its fetcher
//! ([`crate::replication`]) copies from the leader, offsets and epochs as they are, with HW = min(leader HW,
//! own LEO). The broker feeds every metadata change to [`Partition::apply_leadership`]; ISR changes are
//! proposed by [`Partition::isr_change`] and take effect only when the controller's new leadership comes back.
//!
//! Transactions (KIP-98, [`txn::TxnState`]): producer state, open transactions, the last stable offset and the
//! aborted-transaction index are all derived from the log, batch by batch, on every path (leader appends and
//! [`Partition::append_marker`], a follower's replicated bytes, the scan on open and after truncation).

pub mod leader_state;
pub mod producer_state;
pub mod replay;
pub mod txn;

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::{watch, Notify};
use uuid::Uuid;

use crate::log::{batch, BatchHeader, CleanerConfig, EpochEntry, Log, LogConfig, LogError};
use leader_state::LeaderState;
pub use leader_state::IsrChange;
pub use producer_state::ProducerSnapshot;
pub use txn::{AbortedTxn, TxnMarker};
use producer_state::{SequenceCheck, SequenceError};
use txn::TxnState;

#[derive(thiserror::Error, Debug)]
pub enum PartitionError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Sequence(#[from] SequenceError),
    #[error("{isr} in-sync replicas, min.insync.replicas is {min}")]
    NotEnoughReplicas { isr: usize, min: i32 },
    #[error("request leader epoch {requested} is older than the current {current}")]
    FencedLeaderEpoch { requested: i32, current: i32 },
    #[error("request leader epoch {requested} is newer than the current {current}")]
    UnknownLeaderEpoch { requested: i32, current: i32 },
    #[error("a produce request must hold exactly one record batch per partition, got {0}")]
    BatchCount(usize),
    #[error("record set is missing")]
    MissingRecords,
    #[error("fsync task failed: {0}")]
    FlushTask(String),
    #[error("this broker is not the leader of the partition (leader {leader}, epoch {leader_epoch})")]
    NotLeaderOrFollower { leader: i32, leader_epoch: i32 },
    #[error("replica {replica_id} is not an assigned follower of the partition")]
    UnknownReplica { replica_id: i32, request_had_epoch: bool },
    #[error("the high watermark reached the batch, but only {isr} in-sync replicas remain; min.insync.replicas is {min}")]
    NotEnoughReplicasAfterAppend { isr: usize, min: i32 },
    #[error("the batch was not replicated to the ISR before the request timeout")]
    RequestTimedOut,
    #[error("the high watermark {high_watermark} is behind the start {epoch_start_offset} of this leader's epoch")]
    OffsetNotAvailable { high_watermark: i64, epoch_start_offset: i64 },
    #[error("marker for producer {producer_id} from coordinator epoch {coordinator_epoch}, older than the last one's {current}")]
    CoordinatorFenced { producer_id: i64, coordinator_epoch: i32, current: i32 },
    #[error("producer {producer_id} has a transaction open here and sent a non-transactional batch")]
    InvalidTxnState { producer_id: i64 },
}

/// Who writes a batch: a producer, or a coordinator writing its internal topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    Client,
    Coordinator,
}

/// Which records a reader may see: up to the high watermark, or up to the last stable offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    ReadUncommitted,
    ReadCommitted,
}

impl Isolation {
    pub fn from_wire(level: i8) -> Isolation {
        if level == 1 {
            Isolation::ReadCommitted
        } else {
            Isolation::ReadUncommitted
        }
    }
}

/// The answer to a successful produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendOutcome {
    pub base_offset: i64,
    pub last_offset: i64,
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
    /// The leader epoch the batch was appended in: acks=all waits under it.
    pub leader_epoch: i32,
}

pub struct FetchedData {
    pub records: Bytes,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    /// read_committed only: the aborted transactions overlapping the records returned, by first offset, for
    /// the consumer to skip. None for read_uncommitted and replica reads.
    pub aborted_transactions: Option<Vec<AbortedTxn>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offsets {
    pub log_start_offset: i64,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_end_offset: i64,
}

/// A partition's settings, derived from its topic's configs.
#[derive(Clone, Debug)]
pub struct PartitionSettings {
    pub log: LogConfig,
    pub cleaner: CleanerConfig,
    pub min_insync_replicas: i32,
}

/// Replica placement and leadership, as the controller's metadata image states it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leadership {
    pub leader: i32,
    pub leader_epoch: i32,
    /// Bumped by the controller on every leader or ISR change; orders changes within one leader epoch.
    pub partition_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

/// What [`Partition::apply_leadership`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleChange {
    /// This broker now leads a new leader epoch: start serving clients, stop fetching.
    BecameLeader,
    /// This broker now follows `leader` in `leader_epoch`: (re)start fetching from it, with truncation.
    BecameFollower { leader: i32, leader_epoch: i32 },
    /// Same role and leader epoch; replicas or ISR changed.
    Updated,
    /// Nothing changed.
    Unchanged,
    /// Older than what the partition already has (a late metadata delta): ignored.
    Stale,
}

/// A follower's position, for its fetcher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FollowerPosition {
    pub leader: i32,
    pub leader_epoch: i32,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub high_watermark: i64,
    /// The newest leader epoch in the log (None: empty log, or batches without epochs).
    pub latest_epoch: Option<i32>,
}

enum Role {
    Leader(LeaderState),
    Follower,
}

struct PartitionState {
    log: Log,
    leadership: Leadership,
    role: Role,
    high_watermark: i64,
    min_insync_replicas: i32,
    /// Idempotent-producer and transaction state, derived from the log.
    txn: TxnState,
}

impl PartitionState {
    /// Raises the leader's HW to min LEO over the maximal ISR; never lowers it. True if it moved.
    fn advance_high_watermark(&mut self) -> bool {
        let Role::Leader(leader) = &self.role else { return false };
        let log_end_offset = self.log.log_end_offset();
        let Some(bound) = leader.high_watermark_bound(&self.leadership, log_end_offset) else { return false };
        debug_assert!(bound <= log_end_offset, "high watermark bound passed the log end offset");
        if bound > self.high_watermark {
            self.set_high_watermark(bound);
            return true;
        }
        false
    }

    /// Every HW change goes through here: transactions whose marker it passed become stable.
    fn set_high_watermark(&mut self, high_watermark: i64) {
        self.high_watermark = high_watermark;
        self.txn.on_high_watermark(high_watermark);
    }

    fn last_stable_offset(&self) -> i64 {
        let last_stable_offset = self.txn.last_stable_offset(self.high_watermark, self.log.log_start_offset());
        debug_assert!(last_stable_offset <= self.high_watermark, "last stable offset passed the high watermark");
        last_stable_offset
    }

    /// acks=all (and transaction markers) need min.insync.replicas in the ISR before appending.
    fn check_min_insync(&self) -> Result<(), PartitionError> {
        let isr = self.leadership.isr.len();
        if (isr as i32) < self.min_insync_replicas {
            return Err(PartitionError::NotEnoughReplicas { isr, min: self.min_insync_replicas });
        }
        Ok(())
    }

    /// Appends validated batches as leader (offsets and leader epoch patched into a copy), lets `record` note
    /// them in the producer/transaction state at their first offset, then advances the HW (at once when the
    /// leader is alone in the ISR). Returns the outcome and whether the HW moved.
    fn append_as_leader(
        &mut self,
        records: &[u8],
        batches: &[BatchHeader],
        now_ms: i64,
        record: impl FnOnce(&mut TxnState, i64),
    ) -> Result<(AppendOutcome, bool), PartitionError> {
        let epoch = self.leadership.leader_epoch;
        // The leader patches offsets into the batch, so it needs a mutable copy; a reused per-thread buffer
        // spares a fresh (page-faulting) allocation per request.
        let info = with_append_buffer(records, |copy| self.log.append_as_leader(copy, batches, epoch, now_ms))?;
        record(&mut self.txn, info.first_offset);
        let hw_advanced = self.advance_high_watermark();
        debug_assert!(self.high_watermark <= self.log.log_end_offset(), "high watermark passed the log end offset");
        let outcome = AppendOutcome {
            base_offset: info.first_offset,
            last_offset: info.last_offset,
            log_append_time_ms: info.log_append_time_ms,
            log_start_offset: info.log_start_offset,
            leader_epoch: epoch,
        };
        Ok((outcome, hw_advanced))
    }

    fn not_leader(&self) -> PartitionError {
        PartitionError::NotLeaderOrFollower { leader: self.leadership.leader, leader_epoch: self.leadership.leader_epoch }
    }

    /// Checks the client's idea of the leader epoch (KIP-320), then that this broker leads, in Kafka's order.
    fn check_leader(&self, requested_epoch: i32) -> Result<(), PartitionError> {
        check_epoch(requested_epoch, self.leadership.leader_epoch)?;
        match self.role {
            Role::Leader(_) => Ok(()),
            Role::Follower => Err(self.not_leader()),
        }
    }

    /// Checks that this broker follows in `leader_epoch`: a fetcher still working for an older leader or
    /// epoch must not touch the log.
    fn check_follower(&self, leader_epoch: i32) -> Result<(), PartitionError> {
        match self.role {
            Role::Follower if self.leadership.leader_epoch == leader_epoch => Ok(()),
            _ => Err(self.not_leader()),
        }
    }

    /// Re-reads producer and transaction state from the log after a follower truncation removed batches it
    /// may remember (a removed marker re-opens its transaction).
    fn rebuild_producer_state(&mut self, now_ms: i64) -> Result<(), PartitionError> {
        self.txn = scan_txn_state(&self.log, self.high_watermark, now_ms)?;
        Ok(())
    }
}

/// Producer and transaction state of everything in `log`.
fn scan_txn_state(log: &Log, high_watermark: i64, now_ms: i64) -> Result<TxnState, LogError> {
    let state = TxnState::rebuild(|f| log.scan_batches_with_control(log.log_start_offset(), f), high_watermark, now_ms)?;
    Ok(state)
}

pub struct Partition {
    pub topic: String,
    pub topic_id: Uuid,
    pub index: i32,
    /// This broker's node id: the partition leads when the leadership names it.
    local_node: i32,
    state: Mutex<PartitionState>,
    /// Consumer fetches parked until the next high-watermark advance (or leadership change).
    fetch_waiters: Mutex<Vec<Arc<Notify>>>,
    /// Follower fetches parked until the next append (or leadership change).
    replica_fetch_waiters: Mutex<Vec<Arc<Notify>>>,
    /// Bumped on every high-watermark advance and leadership change; acks=all produces wait on it.
    replication_events: watch::Sender<u64>,
    flush_lock: tokio::sync::Mutex<()>,
}

impl Partition {
    /// Opens the partition's log (recovering it), rebuilds producer state from it and takes the role the
    /// leadership gives `local_node` (as leader it starts its leader epoch at the log end offset).
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        data_dir: &Path,
        topic: &str,
        topic_id: Uuid,
        index: i32,
        settings: PartitionSettings,
        leadership: Leadership,
        local_node: i32,
        now_ms: i64,
    ) -> Result<Partition, PartitionError> {
        let PartitionSettings { log: log_config, cleaner, min_insync_replicas } = settings;
        let mut log = Log::open(&data_dir.join(format!("{topic}-{index}")), log_config)?;
        log.set_cleaner_config(cleaner);
        // The HW is not persisted: a leader starts from its LEO (it is the only replica whose data it knows)
        // only when it is alone in the ISR; otherwise it starts from the log start and waits for followers.
        // A follower learns the HW from its leader.
        let alone = leadership.leader == local_node && leadership.isr.iter().all(|&r| r == local_node);
        let role = if leadership.leader == local_node {
            log.begin_leader_epoch(leadership.leader_epoch)?;
            Role::Leader(LeaderState::new(&leadership, local_node, log.log_end_offset(), now_ms))
        } else {
            Role::Follower
        };
        let high_watermark = if alone { log.log_end_offset() } else { log.log_start_offset() };
        let txn = scan_txn_state(&log, high_watermark, now_ms)?;
        let mut state = PartitionState { log, leadership, role, high_watermark, min_insync_replicas, txn };
        state.advance_high_watermark();
        Ok(Partition {
            topic: topic.to_string(),
            topic_id,
            index,
            local_node,
            state: Mutex::new(state),
            fetch_waiters: Mutex::new(Vec::new()),
            replica_fetch_waiters: Mutex::new(Vec::new()),
            replication_events: watch::Sender::new(0),
            flush_lock: tokio::sync::Mutex::new(()),
        })
    }

    pub fn local_node(&self) -> i32 {
        self.local_node
    }

    pub fn is_leader(&self) -> bool {
        matches!(self.lock().role, Role::Leader(_))
    }

    /// Applies the controller's view of this partition after a metadata change. Older leaderships (lower
    /// leader epoch, or same leader epoch and lower partition epoch) are ignored. Becoming leader starts the
    /// new epoch in the log and forgets what was known of followers; becoming follower sends waiting acks=all
    /// produces away with NOT_LEADER_OR_FOLLOWER; a new ISR in the same epoch may advance the HW.
    pub fn apply_leadership(&self, new: Leadership, now_ms: i64) -> Result<RoleChange, PartitionError> {
        let change = {
            let mut state = self.lock();
            let current = &state.leadership;
            let older = new.leader_epoch < current.leader_epoch
                || (new.leader_epoch == current.leader_epoch && new.partition_epoch < current.partition_epoch);
            if older {
                return Ok(RoleChange::Stale);
            }
            if new == *current {
                return Ok(RoleChange::Unchanged);
            }
            let new_epoch = new.leader_epoch != current.leader_epoch;
            let leader_changed = new.leader != current.leader;
            let was_leader = matches!(state.role, Role::Leader(_));
            let leads = new.leader == self.local_node;
            let log_end_offset = state.log.log_end_offset();
            let change = if leads && (new_epoch || !was_leader) {
                // The epoch goes into the log first: if that fails the partition keeps its old role.
                state.log.begin_leader_epoch(new.leader_epoch)?;
                state.role = Role::Leader(LeaderState::new(&new, self.local_node, log_end_offset, now_ms));
                RoleChange::BecameLeader
            } else if !leads && (new_epoch || was_leader || leader_changed) {
                state.role = Role::Follower;
                RoleChange::BecameFollower { leader: new.leader, leader_epoch: new.leader_epoch }
            } else {
                if let Role::Leader(leader) = &mut state.role {
                    leader.update_replicas(&new, log_end_offset, now_ms);
                }
                RoleChange::Updated
            };
            state.leadership = new;
            state.advance_high_watermark();
            change
        };
        // Every parked fetch and produce re-checks: it may now have to answer NOT_LEADER_OR_FOLLOWER, or the
        // new ISR may have moved the HW past it.
        self.wake_fetchers();
        self.wake_replica_fetchers();
        self.signal_replication();
        Ok(change)
    }

    /// Leader only: a follower fetched from `fetch_offset`, so it holds everything below it (it fsyncs before
    /// fetching). Updates its LEO and caught-up time and advances the HW. `current_leader_epoch` is the one in
    /// the fetch request (-1: none), which picks the error for a replica that is not assigned, as Kafka does.
    pub fn record_follower_fetch(
        &self,
        replica_id: i32,
        fetch_offset: i64,
        current_leader_epoch: i32,
        now_ms: i64,
    ) -> Result<(), PartitionError> {
        let advanced = {
            let mut state = self.lock();
            let log_end_offset = state.log.log_end_offset();
            let log_start_offset = state.log.log_start_offset();
            let not_leader = state.not_leader();
            let Role::Leader(leader) = &mut state.role else { return Err(not_leader) };
            if !leader.is_follower(replica_id) {
                return Err(PartitionError::UnknownReplica { replica_id, request_had_epoch: current_leader_epoch >= 0 });
            }
            // A position outside our log is not vouched for: it must never count towards the HW.
            if fetch_offset < log_start_offset || fetch_offset > log_end_offset {
                return Err(LogError::OffsetOutOfRange { offset: fetch_offset, log_start_offset, log_end_offset }.into());
            }
            leader.record_fetch(replica_id, fetch_offset, log_end_offset, now_ms);
            state.advance_high_watermark()
        };
        if advanced {
            self.wake_fetchers();
            self.signal_replication();
        }
        Ok(())
    }

    /// Leader only: the ISR change to propose to the controller, if any (see [`LeaderState::isr_change`]).
    /// The broker polls this every few hundred milliseconds; the same proposal comes back at most once a
    /// second for one partition epoch.
    pub fn isr_change(&self, now_ms: i64, replica_lag_time_max_ms: i64) -> Option<IsrChange> {
        let mut state = self.lock();
        let log_end_offset = state.log.log_end_offset();
        let high_watermark = state.high_watermark;
        let PartitionState { role, leadership, .. } = &mut *state;
        let Role::Leader(leader) = role else { return None };
        leader.isr_change(leadership, log_end_offset, high_watermark, now_ms, replica_lag_time_max_ms)
    }

    /// Leader only: the controller refused `change` (a stale epoch, a fenced or unknown replica), so a pending
    /// expansion stops holding the HW back; the HW may move at once.
    pub fn isr_change_refused(&self, change: &IsrChange) {
        let advanced = {
            let mut state = self.lock();
            let Role::Leader(leader) = &mut state.role else { return };
            leader.proposal_refused(change);
            state.advance_high_watermark()
        };
        if advanced {
            self.wake_fetchers();
            self.signal_replication();
        }
    }

    /// acks=all: waits until the HW reaches `end_offset` (everything below it is on every ISR member).
    /// NOT_LEADER_OR_FOLLOWER when leadership moved or the leader epoch changed since the append;
    /// NOT_ENOUGH_REPLICAS_AFTER_APPEND when the HW got there with fewer than min.insync.replicas in the ISR
    /// (Kafka's `checkEnoughReplicasReachOffset`); REQUEST_TIMED_OUT at `deadline`. Woken by events, no polling.
    pub async fn wait_for_replication(
        &self,
        end_offset: i64,
        leader_epoch: i32,
        deadline: tokio::time::Instant,
    ) -> Result<(), PartitionError> {
        // Subscribe before looking at the state, so an advance in between is not missed.
        let mut events = self.replication_events.subscribe();
        loop {
            {
                let state = self.lock();
                let leads = matches!(state.role, Role::Leader(_));
                if !leads || state.leadership.leader_epoch != leader_epoch {
                    return Err(state.not_leader());
                }
                if state.high_watermark >= end_offset {
                    let isr = state.leadership.isr.len();
                    if (isr as i32) < state.min_insync_replicas {
                        return Err(PartitionError::NotEnoughReplicasAfterAppend { isr, min: state.min_insync_replicas });
                    }
                    return Ok(());
                }
            }
            match tokio::time::timeout_at(deadline, events.changed()).await {
                Ok(Ok(())) => {}
                // The sender lives as long as `self`; treat its loss like a leadership change.
                Ok(Err(_)) => return Err(self.lock().not_leader()),
                Err(_) => return Err(PartitionError::RequestTimedOut),
            }
        }
    }

    /// Follower only, in `leader_epoch`: where the fetcher stands.
    pub fn follower_position(&self, leader_epoch: i32) -> Result<FollowerPosition, PartitionError> {
        let state = self.lock();
        state.check_follower(leader_epoch)?;
        Ok(FollowerPosition {
            leader: state.leadership.leader,
            leader_epoch: state.leadership.leader_epoch,
            log_start_offset: state.log.log_start_offset(),
            log_end_offset: state.log.log_end_offset(),
            high_watermark: state.high_watermark,
            latest_epoch: state.log.latest_epoch(),
        })
    }

    /// Follower only, in `leader_epoch`: appends record bytes from a leader's fetch response as they are
    /// (a trailing partial batch is ignored), records every batch in the producer state so a later leader
    /// still de-duplicates, raises the log start to the leader's (never above our HW) and sets HW =
    /// min(leader HW, own LEO). Returns the new position. The caller fsyncs (`flush_to`) before fetching on.
    pub fn append_replicated(
        &self,
        records: &[u8],
        leader_epoch: i32,
        leader_high_watermark: i64,
        leader_log_start_offset: i64,
        now_ms: i64,
    ) -> Result<FollowerPosition, PartitionError> {
        let (appended, hw_advanced, position) = {
            let mut state = self.lock();
            state.check_follower(leader_epoch)?;
            let info = state.log.append_as_follower(records, now_ms)?;
            let appended = info.last_offset >= info.first_offset;
            if appended {
                // The bytes were just validated by the log; walk their batches again for the producer state.
                for_each_batch(records, |header, bytes| {
                    if header.base_offset >= info.first_offset && header.last_offset() <= info.last_offset {
                        state.txn.replay(header, header.is_control().then_some(bytes), now_ms);
                    }
                });
            }
            let log_end_offset = state.log.log_end_offset();
            let new_high_watermark = leader_high_watermark.min(log_end_offset);
            let hw_advanced = new_high_watermark > state.high_watermark;
            if hw_advanced {
                state.set_high_watermark(new_high_watermark);
            }
            let log_start_target = leader_log_start_offset.min(state.high_watermark);
            if log_start_target > state.log.log_start_offset() {
                state.log.advance_log_start_offset(log_start_target)?;
                let log_start_offset = state.log.log_start_offset();
                state.txn.on_log_start(log_start_offset);
            }
            let position = FollowerPosition {
                leader: state.leadership.leader,
                leader_epoch: state.leadership.leader_epoch,
                log_start_offset: state.log.log_start_offset(),
                log_end_offset,
                high_watermark: state.high_watermark,
                latest_epoch: state.log.latest_epoch(),
            };
            (appended, hw_advanced, position)
        };
        if appended {
            self.wake_replica_fetchers();
        }
        if hw_advanced {
            self.wake_fetchers();
            self.signal_replication();
        }
        Ok(position)
    }

    /// Follower only, in `leader_epoch`: drops everything at and after `offset` (truncation by leader epoch);
    /// the HW follows the log end down and producer state is rebuilt without the removed batches.
    pub fn truncate_replica_to(&self, offset: i64, leader_epoch: i32, now_ms: i64) -> Result<(), PartitionError> {
        let mut state = self.lock();
        state.check_follower(leader_epoch)?;
        let removes_data = offset < state.log.log_end_offset();
        state.log.truncate_to(offset)?;
        if !removes_data {
            return Ok(());
        }
        state.high_watermark = state.high_watermark.min(state.log.log_end_offset());
        state.rebuild_producer_state(now_ms)
    }

    /// Follower only, in `leader_epoch`: empties the log and restarts it at `offset`, the leader's log start,
    /// when our log ends below it (Kafka's truncateFullyAndStartAt).
    pub fn reset_replica_to(&self, offset: i64, leader_epoch: i32) -> Result<(), PartitionError> {
        let mut state = self.lock();
        state.check_follower(leader_epoch)?;
        state.log.reset_to(offset)?;
        state.high_watermark = offset;
        state.txn = TxnState::default();
        Ok(())
    }

    /// The newest leader epoch in the log.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.lock().log.latest_epoch()
    }

    /// The log's leader-epoch cache: (epoch, first offset written in it), oldest first.
    pub fn leader_epochs(&self) -> Vec<EpochEntry> {
        self.lock().log.leader_epochs()
    }

    /// Reads from `offset` up to the log end offset, not the HW, whatever the role: what a follower fetch
    /// returns (the caller has checked leadership) and what tests compare.
    pub fn read_log(&self, offset: i64, max_bytes: usize, min_one: bool) -> Result<FetchedData, PartitionError> {
        let state = self.lock();
        let log_end_offset = state.log.log_end_offset();
        let records = state.log.read(offset, max_bytes, log_end_offset, min_one)?;
        Ok(FetchedData {
            records,
            high_watermark: state.high_watermark,
            last_stable_offset: state.last_stable_offset(),
            log_start_offset: state.log.log_start_offset(),
            aborted_transactions: None,
        })
    }

    fn lock(&self) -> MutexGuard<'_, PartitionState> {
        // A panic while holding the lock cannot leave the log half-written (appends complete or return an
        // error before mutating in-memory state), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn leadership(&self) -> Leadership {
        self.lock().leadership.clone()
    }

    pub fn offsets(&self) -> Offsets {
        let state = self.lock();
        Offsets {
            log_start_offset: state.log.log_start_offset(),
            high_watermark: state.high_watermark,
            last_stable_offset: state.last_stable_offset(),
            log_end_offset: state.log.log_end_offset(),
        }
    }

    pub fn size_bytes(&self) -> u64 {
        self.lock().log.size_bytes()
    }

    /// Checks the leader epoch a client believes current (-1: no check), as Fetch/ListOffsets/Produce do.
    pub fn check_leader_epoch(&self, requested: i32) -> Result<(), PartitionError> {
        let current = self.lock().leadership.leader_epoch;
        check_epoch(requested, current)
    }

    /// For client requests that only the leader serves: the epoch check above, then NOT_LEADER_OR_FOLLOWER
    /// unless this broker leads (Kafka's `localLogWithEpochOrThrow` with fetchOnlyLeader).
    pub fn check_leader(&self, requested_epoch: i32) -> Result<(), PartitionError> {
        self.lock().check_leader(requested_epoch)
    }

    /// Validates and appends one Produce record set. Duplicates of recent idempotent batches are answered
    /// with their original offsets and not appended again.
    pub fn append(&self, records: impl AsRef<[u8]>, acks: i16, now_ms: i64) -> Result<AppendOutcome, PartitionError> {
        self.append_from(records.as_ref(), acks, now_ms, Origin::Client)
    }

    /// A coordinator's own write to its internal topic (acks=all): like [`Partition::append`], but its
    /// transactional batches (TxnOffsetCommit) carry no sequence numbers, as Kafka's coordinator origin.
    pub fn append_from_coordinator(&self, records: impl AsRef<[u8]>, now_ms: i64) -> Result<AppendOutcome, PartitionError> {
        self.append_from(records.as_ref(), -1, now_ms, Origin::Coordinator)
    }

    fn append_from(&self, records: &[u8], acks: i16, now_ms: i64, origin: Origin) -> Result<AppendOutcome, PartitionError> {
        let (max_message_bytes, require_keys) = {
            let state = self.lock();
            (state.log.config().max_message_bytes, state.log.config().compact)
        };
        // Validation (CRC, decompression) is the expensive part and needs no lock.
        let batches = batch::validate_record_set(records, max_message_bytes, require_keys)?;
        if batches.len() != 1 {
            return Err(PartitionError::BatchCount(batches.len()));
        }
        let header = batches[0];
        if origin == Origin::Client && header.is_transactional() && header.base_sequence < 0 {
            // Only a coordinator may skip sequences; a client's transactional batch is de-duplicated like any other.
            return Err(LogError::InvalidRecord(format!("transactional batch of producer {} has no base sequence", header.producer_id)).into());
        }
        let (outcome, hw_advanced) = {
            let mut state = self.lock();
            state.check_leader(-1)?;
            if acks == -1 {
                state.check_min_insync()?;
            }
            if let SequenceCheck::Duplicate(original) = state.txn.check_append(&header)? {
                return Ok(AppendOutcome {
                    base_offset: original.first_offset,
                    last_offset: original.last_offset,
                    log_append_time_ms: -1,
                    log_start_offset: state.log.log_start_offset(),
                    leader_epoch: state.leadership.leader_epoch,
                });
            }
            state.append_as_leader(records, &batches, now_ms, |txn, first_offset| txn.record_batch(&header, first_offset, now_ms))?
        };
        self.after_leader_append(hw_advanced);
        Ok(outcome)
    }

    /// Leader only: writes a transaction marker (WriteTxnMarkers) as a control batch, ending the producer's
    /// transaction here. Refused with INVALID_PRODUCER_EPOCH for an older producer epoch and
    /// TRANSACTION_COORDINATOR_FENCED for an older coordinator epoch than the producer's last marker. Written
    /// even when the producer has no transaction open here, as Kafka does; like an acks=all produce it needs
    /// min.insync.replicas in the ISR, and the caller waits for replication as for one.
    pub fn append_marker(&self, marker: &TxnMarker, now_ms: i64) -> Result<AppendOutcome, PartitionError> {
        let control = batch::ControlRecord { commit: marker.commit, coordinator_epoch: marker.coordinator_epoch };
        let records = batch::control_batch(marker.producer_id, marker.producer_epoch, control, now_ms)?;
        // Gives the header with the max timestamp computed as for client batches.
        let batches = batch::validate_record_set(&records, u32::MAX, false)?;
        let timestamp_ms = batches.first().map_or(now_ms, |header| header.max_timestamp);
        let (outcome, hw_advanced) = {
            let mut state = self.lock();
            state.check_leader(-1)?;
            state.check_min_insync()?;
            state.txn.check_marker(marker)?;
            state.append_as_leader(&records, &batches, now_ms, |txn, offset| txn.record_marker(marker, offset, timestamp_ms, now_ms))?
        };
        self.after_leader_append(hw_advanced);
        Ok(outcome)
    }

    /// After a leader append: followers have something to fetch; consumers and acks=all waiters too if the HW
    /// moved.
    fn after_leader_append(&self, hw_advanced: bool) {
        self.wake_replica_fetchers();
        if hw_advanced {
            self.wake_fetchers();
            self.signal_replication();
        }
    }

    /// Waits until every offset below `end_offset` is fsynced. Concurrent callers share one fsync.
    pub async fn flush_to(&self, end_offset: i64) -> Result<(), PartitionError> {
        if self.lock().log.flushed_offset() >= end_offset {
            return Ok(());
        }
        let _one_flusher = self.flush_lock.lock().await;
        let target = {
            let state = self.lock();
            if state.log.flushed_offset() >= end_offset {
                return Ok(());
            }
            state.log.unflushed()
        };
        let Some(target) = target else { return Ok(()) };
        let files = target.files;
        tokio::task::spawn_blocking(move || files.iter().try_for_each(|file| file.sync_data()))
            .await
            .map_err(|e| PartitionError::FlushTask(e.to_string()))?
            .map_err(LogError::Io)?;
        self.lock().log.mark_flushed(target.up_to_offset);
        Ok(())
    }

    /// Reads from `offset` up to the high watermark, or under read_committed up to the last stable offset
    /// with the aborted transactions overlapping what was read (Kafka's collectAbortedTransactions: marker at
    /// or after `offset`, first offset before the end of the last batch returned). An offset at or past the
    /// visible end (but in the log) reads nothing, without error: the consumer parks until it moves.
    pub fn read(&self, offset: i64, max_bytes: usize, min_one: bool, isolation: Isolation) -> Result<FetchedData, PartitionError> {
        let state = self.lock();
        let last_stable_offset = state.last_stable_offset();
        let visible_end = match isolation {
            Isolation::ReadUncommitted => state.high_watermark,
            Isolation::ReadCommitted => last_stable_offset,
        };
        let log_start_offset = state.log.log_start_offset();
        let records = if offset == visible_end && offset <= state.log.log_end_offset() && offset >= log_start_offset {
            Bytes::new()
        } else {
            state.log.read(offset, max_bytes, visible_end, min_one)?
        };
        let aborted_transactions = match isolation {
            Isolation::ReadUncommitted => None,
            // Nothing read, nothing to skip (Kafka answers an empty list too).
            Isolation::ReadCommitted => Some(match end_of_batches(&records) {
                Some(upper_offset) => state.txn.aborted_between(offset, upper_offset),
                None => Vec::new(),
            }),
        };
        Ok(FetchedData { records, high_watermark: state.high_watermark, last_stable_offset, log_start_offset, aborted_transactions })
    }

    /// Wakes `waiter` (a consumer fetch) at the next high-watermark advance or leadership change.
    pub fn register_waiter(&self, waiter: Arc<Notify>) {
        register(&self.fetch_waiters, waiter);
    }

    /// Wakes `waiter` (a follower fetch) at the next append or leadership change.
    pub fn register_replica_waiter(&self, waiter: Arc<Notify>) {
        register(&self.replica_fetch_waiters, waiter);
    }

    fn wake_fetchers(&self) {
        wake(&self.fetch_waiters);
    }

    fn wake_replica_fetchers(&self) {
        wake(&self.replica_fetch_waiters);
    }

    fn signal_replication(&self) {
        self.replication_events.send_modify(|events| *events = events.wrapping_add(1));
    }

    /// ListOffsets: -1 latest, -2 earliest, -3 max timestamp, -4 earliest local, else the first record with a
    /// timestamp at or after the given one. Returns (timestamp, offset); None when no record qualifies.
    /// Under read_committed, "latest" is the last stable offset and no lookup answers an offset at or past it.
    pub fn list_offset(&self, timestamp: i64, isolation: Isolation) -> Result<Option<(i64, i64)>, PartitionError> {
        let state = self.lock();
        let high_watermark = state.high_watermark;
        // A new leader's high watermark may lag behind what the old leader had exposed until its followers
        // fetch again; answering from it could send a consumer backwards (Kafka: OFFSET_NOT_AVAILABLE, retry).
        if let Role::Leader(leader) = &state.role {
            if high_watermark < leader.epoch_start_offset() {
                return Err(PartitionError::OffsetNotAvailable { high_watermark, epoch_start_offset: leader.epoch_start_offset() });
            }
        }
        let visible_end = match isolation {
            Isolation::ReadUncommitted => high_watermark,
            Isolation::ReadCommitted => state.last_stable_offset(),
        };
        Ok(match timestamp {
            -1 => Some((-1, visible_end)),
            -2 | -4 => Some((-1, state.log.log_start_offset())),
            -3 => state.log.max_timestamp()?.filter(|(offset, _)| *offset < visible_end).map(|(offset, ts)| (ts, offset)),
            ts => state.log.find_offset_by_timestamp(ts)?.filter(|(offset, _)| *offset < visible_end).map(|(offset, ts)| (ts, offset)),
        })
    }

    /// DeleteRecords (leader only): raises the log start offset; -1 means the high watermark. Returns the new
    /// low watermark. Followers follow the leader's log start through their fetches.
    pub fn delete_records(&self, offset: i64) -> Result<i64, PartitionError> {
        let mut state = self.lock();
        state.check_leader(-1)?;
        let high_watermark = state.high_watermark;
        let target = if offset == -1 { high_watermark } else { offset };
        if target < 0 || target > high_watermark {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start_offset: state.log.log_start_offset(),
                log_end_offset: high_watermark,
            }
            .into());
        }
        state.log.advance_log_start_offset(target)?;
        let log_start_offset = state.log.log_start_offset();
        state.txn.on_log_start(log_start_offset);
        Ok(log_start_offset)
    }

    /// OffsetForLeaderEpoch: (largest known epoch <= `epoch`, its end offset), as Kafka computes it; None when
    /// the log knows no such epoch (the handler answers -1/-1).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        self.lock().log.end_offset_for_epoch(epoch)
    }

    pub fn leader_epoch(&self) -> i32 {
        self.lock().leadership.leader_epoch
    }

    /// Applies new topic configs.
    pub fn reconfigure(&self, settings: PartitionSettings) {
        let mut state = self.lock();
        state.log.set_config(settings.log);
        state.log.set_cleaner_config(settings.cleaner);
        state.min_insync_replicas = settings.min_insync_replicas;
    }

    /// Runs retention or compaction (never above the high watermark, which followers may still truncate)
    /// and producer-id expiry, and forgets aborted transactions retention removed; returns deleted segments.
    pub fn housekeeping(&self, now_ms: i64, producer_expiration_ms: i64) -> Result<usize, PartitionError> {
        let mut state = self.lock();
        state.txn.expire(now_ms, producer_expiration_ms);
        let high_watermark = state.high_watermark;
        let deleted = state.log.cleanup(now_ms, high_watermark)?;
        let log_start_offset = state.log.log_start_offset();
        state.txn.on_log_start(log_start_offset);
        Ok(deleted)
    }

    /// The partition's producers (DescribeProducers), by producer id. The caller checks leadership.
    pub fn producers(&self) -> Vec<ProducerSnapshot> {
        self.lock().txn.producers()
    }

    /// Removes the partition's files (DeleteTopics).
    pub fn delete(self) -> Result<(), PartitionError> {
        let state = self.state.into_inner().unwrap_or_else(|p| p.into_inner());
        state.log.delete()?;
        Ok(())
    }

    /// Takes the partition's files away from a shared handle, for deletion once no request uses it.
    pub fn delete_shared(partition: Arc<Partition>) -> Result<(), PartitionError> {
        match Arc::try_unwrap(partition) {
            Ok(partition) => partition.delete(),
            Err(shared) => {
                // A request still holds it: remove the directory now; the open files go away with the last user.
                let dir = shared.lock().log.dir().to_path_buf();
                std::fs::remove_dir_all(&dir).map_err(LogError::Io)?;
                Ok(())
            }
        }
    }
}

fn register(waiters: &Mutex<Vec<Arc<Notify>>>, waiter: Arc<Notify>) {
    let mut waiters = waiters.lock().unwrap_or_else(|p| p.into_inner());
    // Bound the list: waiters whose fetch already finished hold the only other reference.
    waiters.retain(|w| Arc::strong_count(w) > 1);
    waiters.push(waiter);
}

fn wake(waiters: &Mutex<Vec<Arc<Notify>>>) {
    let waiters = std::mem::take(&mut *waiters.lock().unwrap_or_else(|p| p.into_inner()));
    for waiter in waiters {
        waiter.notify_one();
    }
}

/// Calls `f` with the header and bytes of every whole batch in `records` (stops at a trailing partial batch).
fn for_each_batch(records: &[u8], mut f: impl FnMut(&BatchHeader, &[u8])) {
    let mut pos = 0usize;
    while let Some(rest) = records.get(pos..) {
        if rest.len() < batch::BATCH_HEADER_BYTES {
            break;
        }
        let Ok(header) = BatchHeader::parse(rest) else { break };
        let size = header.total_size();
        if header.batch_length < batch::MIN_BATCH_LENGTH || size > rest.len() {
            break;
        }
        f(&header, &rest[..size]);
        pos += size;
    }
}

/// One past the last offset of the whole batches in `records`; None when there are none.
fn end_of_batches(records: &[u8]) -> Option<i64> {
    let mut end = None;
    for_each_batch(records, |header, _| end = Some(header.last_offset() + 1));
    end
}

/// Largest append buffer kept between requests; a bigger one (a rare huge batch) is freed after use.
const APPEND_BUFFER_KEEP_BYTES: usize = 16 << 20;

thread_local! {
    static APPEND_BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` on a mutable copy of `records` held in this thread's reusable buffer.
fn with_append_buffer<T>(records: &[u8], f: impl FnOnce(&mut [u8]) -> T) -> T {
    APPEND_BUFFER.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buffer) => {
            buffer.clear();
            buffer.extend_from_slice(records);
            let result = f(&mut buffer);
            if buffer.capacity() > APPEND_BUFFER_KEEP_BYTES {
                *buffer = Vec::new();
            }
            result
        }
        // Re-entered on this thread (never expected): fall back to a one-off copy.
        Err(_) => f(&mut records.to_vec()),
    })
}

fn check_epoch(requested: i32, current: i32) -> Result<(), PartitionError> {
    if requested == -1 || requested == current {
        Ok(())
    } else if requested < current {
        Err(PartitionError::FencedLeaderEpoch { requested, current })
    } else {
        Err(PartitionError::UnknownLeaderEpoch { requested, current })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leader_epoch_checks_follow_kip_320() {
        assert!(check_epoch(-1, 5).is_ok());
        assert!(check_epoch(5, 5).is_ok());
        assert!(matches!(check_epoch(4, 5), Err(PartitionError::FencedLeaderEpoch { .. })));
        assert!(matches!(check_epoch(6, 5), Err(PartitionError::UnknownLeaderEpoch { .. })));
    }
}

#[cfg(test)]
mod replication_tests;

#[cfg(test)]
mod txn_tests;
