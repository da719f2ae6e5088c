//! The transaction coordinator (KIP-98), as Kafka's `TransactionCoordinator` before KIP-890 (transaction
//! version 1: the epoch is bumped by InitProducerId and by the coordinator's own aborts, not per transaction).
//!
//! This module is the pure core: one [`TxnShard`] per `__transaction_state` partition holds the metadata of
//! the transactional ids that hash to it; no I/O, no clock (time is an input). Every operation returns a
//! [`Step`]: the reply, the record to write to `__transaction_state` (the new metadata of that id, or a
//! tombstone) and the markers to send. The state is changed in memory at once; the runtime
//! ([`runtime`]) sends the reply only once the record is durable and replicated, and if that fails it rebuilds
//! the shard from the log (the same durability rule as the group coordinator).
//!
//! A transaction's life: InitProducerId (Empty, epoch bumped) → AddPartitionsToTxn/AddOffsetsToTxn (Ongoing)
//! → EndTxn (PrepareCommit/PrepareAbort; the client is answered here) → markers written to every partition
//! of the transaction (WriteTxnMarkers, [`markers`]) → CompleteCommit/CompleteAbort. An InitProducerId
//! while a transaction is Ongoing, and a transaction older than its timeout, bump the epoch (fencing the old
//! producer at every partition, through the abort markers it writes) and abort.

pub mod markers;
pub mod records;
pub mod runtime;

use std::collections::{BTreeSet, HashMap};

use kafka_protocol::ResponseError;

use crate::protocol::errors::KafkaCode;

pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";

/// Kafka's `TransactionState`, with its on-disk codes and DescribeTransactions/ListTransactions names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    Dead,
    PrepareEpochFence,
}

impl TxnState {
    pub const ALL: [TxnState; 8] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
        TxnState::Dead,
        TxnState::PrepareEpochFence,
    ];

    pub fn code(self) -> i8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
            TxnState::Dead => 6,
            TxnState::PrepareEpochFence => 7,
        }
    }

    pub fn from_code(code: i8) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|s| s.code() == code)
    }

    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    pub fn from_name(name: &str) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|s| s.name() == name)
    }

    fn is_complete_or_empty(self) -> bool {
        matches!(self, TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort)
    }
}

/// Why a transactional request is refused; each maps to Kafka's error code.
#[derive(thiserror::Error, Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnError {
    #[error("the producer id does not match the transactional id's")]
    InvalidProducerIdMapping,
    #[error("a newer producer with the same transactional id exists (the producer epoch is stale)")]
    ProducerFenced,
    #[error("a previous transaction of this transactional id is still being completed")]
    ConcurrentTransactions,
    #[error("the transaction is not in a state that allows this request")]
    InvalidTxnState,
    #[error("transaction.timeout.ms is not positive or exceeds transaction.max.timeout.ms")]
    InvalidTransactionTimeout,
    #[error("this broker is not the transaction coordinator of the transactional id")]
    NotCoordinator,
    #[error("the transaction coordinator is loading the transaction state")]
    LoadInProgress,
    #[error("the transaction coordinator is not available")]
    NotAvailable,
    #[error("the transactional id is unknown")]
    TransactionalIdNotFound,
}

impl TxnError {
    /// The error code, in the form a request of `version` understands: PRODUCER_FENCED (KIP-588) is sent
    /// as INVALID_PRODUCER_EPOCH to versions from before it (`fenced_since`).
    pub fn code_for(self, version: i16, fenced_since: i16) -> i16 {
        match self {
            TxnError::ProducerFenced if version < fenced_since => ResponseError::InvalidProducerEpoch.code(),
            other => other.error_code(),
        }
    }
}

/// The coordinator's settings, under Kafka's property names.
#[derive(Clone, Debug)]
pub struct TxnConfig {
    /// transaction.max.timeout.ms
    pub max_timeout_ms: i32,
    /// transactional.id.expiration.ms
    pub id_expiration_ms: i64,
}

/// Everything known of one transactional id: what `__transaction_state` stores for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnMetadata {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    /// The partitions of the current (or just prepared) transaction; emptied when it completes.
    pub partitions: BTreeSet<(String, i32)>,
    pub last_update_ms: i64,
    /// When the current transaction began (-1: none).
    pub start_ms: i64,
    /// The epoch before the last re-initialisation that named its epoch (KIP-360), so that a retry of it whose
    /// answer was lost gets the same answer instead of PRODUCER_FENCED. In memory only (-1 after a reload and
    /// not written to __transaction_state), as Kafka's lastProducerEpoch.
    pub previous_epoch: i16,
}

impl TxnMetadata {
    /// Checks a client's producer id and epoch against ours (Kafka's order: id first, then epoch).
    fn check_producer(&self, producer_id: i64, producer_epoch: i16) -> Result<(), TxnError> {
        if self.producer_id != producer_id {
            return Err(TxnError::InvalidProducerIdMapping);
        }
        if self.producer_epoch != producer_epoch {
            return Err(TxnError::ProducerFenced);
        }
        Ok(())
    }
}

/// Markers to write for one transaction: `commit` or abort for (`producer_id`, `producer_epoch`) at every
/// partition; once all are written the runtime calls [`TxnShard::complete`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarkerJob {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    pub partitions: Vec<(String, i32)>,
}

/// What one operation did: its reply, the `__transaction_state` record to write before replying (the id and
/// its new value; None value: tombstone), and markers to send after.
#[derive(Debug)]
pub struct Step<R> {
    pub reply: R,
    pub write: Option<(String, Option<TxnMetadata>)>,
    pub markers: Option<MarkerJob>,
}

impl<R> Step<R> {
    fn reply(reply: R) -> Step<R> {
        Step { reply, write: None, markers: None }
    }
}

/// The transactional ids of one `__transaction_state` partition.
pub struct TxnShard {
    config: TxnConfig,
    txns: HashMap<String, TxnMetadata>,
}

/// Epochs stop short of i16::MAX: the coordinator's abort needs one more (Kafka's isEpochExhausted).
fn epoch_exhausted(epoch: i16) -> bool {
    epoch >= i16::MAX - 1
}

impl TxnShard {
    pub fn new(config: TxnConfig) -> TxnShard {
        TxnShard { config, txns: HashMap::new() }
    }

    pub fn get(&self, transactional_id: &str) -> Option<&TxnMetadata> {
        self.txns.get(transactional_id)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &TxnMetadata)> {
        self.txns.iter()
    }

    /// Replays one `__transaction_state` record while loading (None: tombstone).
    pub fn replay(&mut self, transactional_id: String, value: Option<TxnMetadata>) {
        match value {
            Some(value) => {
                self.txns.insert(transactional_id, value);
            }
            None => {
                self.txns.remove(&transactional_id);
            }
        }
    }

    /// After loading: the transactions caught between prepare and complete, whose markers must be (re)sent.
    pub fn pending_markers(&self) -> Vec<MarkerJob> {
        let mut jobs: Vec<MarkerJob> = self
            .txns
            .iter()
            .filter_map(|(id, txn)| {
                let commit = match txn.state {
                    TxnState::PrepareCommit => true,
                    TxnState::PrepareAbort => false,
                    _ => return None,
                };
                Some(marker_job(id, txn, commit))
            })
            .collect();
        jobs.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        jobs
    }

    fn write(&self, transactional_id: &str) -> Option<(String, Option<TxnMetadata>)> {
        Some((transactional_id.to_string(), self.txns.get(transactional_id).cloned()))
    }

    /// InitProducerId with a transactional id. `expected` is the producer's current id and epoch when it
    /// re-initialises (KIP-360), `fresh_producer_id` an unused id for a new transactional id or a rotation.
    /// An ongoing transaction is aborted under a bumped epoch first (the old producer is fenced) and the
    /// client is told CONCURRENT_TRANSACTIONS, so it retries once the abort completed.
    pub fn init_producer_id(
        &mut self,
        transactional_id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        fresh_producer_id: i64,
        now_ms: i64,
    ) -> Step<Result<(i64, i16), TxnError>> {
        if timeout_ms <= 0 || timeout_ms > self.config.max_timeout_ms {
            return Step::reply(Err(TxnError::InvalidTransactionTimeout));
        }
        let Some(txn) = self.txns.get_mut(transactional_id) else {
            let txn = TxnMetadata {
                producer_id: fresh_producer_id,
                producer_epoch: 0,
                timeout_ms,
                state: TxnState::Empty,
                partitions: BTreeSet::new(),
                last_update_ms: now_ms,
                start_ms: -1,
                previous_epoch: -1,
            };
            self.txns.insert(transactional_id.to_string(), txn);
            return Step { reply: Ok((fresh_producer_id, 0)), write: self.write(transactional_id), markers: None };
        };
        if let Some((producer_id, epoch)) = expected {
            // A producer re-initialising after an error must still own the id (not fenced meanwhile).
            if producer_id != txn.producer_id {
                return Step::reply(Err(TxnError::ProducerFenced));
            }
            if epoch != txn.producer_epoch {
                let retried = epoch == txn.previous_epoch && epoch >= 0 && txn.state == TxnState::Empty;
                return Step::reply(if retried { Ok((txn.producer_id, txn.producer_epoch)) } else { Err(TxnError::ProducerFenced) });
            }
        }
        match txn.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence => {
                Step::reply(Err(TxnError::ConcurrentTransactions))
            }
            TxnState::Ongoing => {
                txn.producer_epoch = txn.producer_epoch.saturating_add(1);
                txn.state = TxnState::PrepareAbort;
                txn.last_update_ms = now_ms;
                let markers = Some(marker_job(transactional_id, txn, false));
                Step { reply: Err(TxnError::ConcurrentTransactions), write: self.write(transactional_id), markers }
            }
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort | TxnState::Dead => {
                txn.previous_epoch = if expected.is_some() { txn.producer_epoch } else { -1 };
                if epoch_exhausted(txn.producer_epoch) {
                    txn.producer_id = fresh_producer_id;
                    txn.producer_epoch = 0;
                } else {
                    txn.producer_epoch += 1;
                }
                txn.timeout_ms = timeout_ms;
                txn.state = TxnState::Empty;
                txn.partitions.clear();
                txn.start_ms = -1;
                txn.last_update_ms = now_ms;
                let reply = Ok((txn.producer_id, txn.producer_epoch));
                Step { reply, write: self.write(transactional_id), markers: None }
            }
        }
    }

    /// The metadata of `transactional_id` if the client's producer id and epoch are its current ones.
    fn producer_txn(&mut self, transactional_id: &str, producer_id: i64, producer_epoch: i16) -> Result<&mut TxnMetadata, TxnError> {
        let txn = self.txns.get_mut(transactional_id).ok_or(TxnError::InvalidProducerIdMapping)?;
        txn.check_producer(producer_id, producer_epoch)?;
        Ok(txn)
    }

    /// AddPartitionsToTxn / AddOffsetsToTxn: adds `partitions` to the producer's transaction, starting it.
    pub fn add_partitions(
        &mut self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[(String, i32)],
        now_ms: i64,
    ) -> Step<Result<(), TxnError>> {
        let txn = match self.producer_txn(transactional_id, producer_id, producer_epoch) {
            Ok(txn) => txn,
            Err(e) => return Step::reply(Err(e)),
        };
        match txn.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence => {
                return Step::reply(Err(TxnError::ConcurrentTransactions))
            }
            TxnState::Dead => return Step::reply(Err(TxnError::InvalidTxnState)),
            TxnState::Ongoing if partitions.iter().all(|p| txn.partitions.contains(p)) => return Step::reply(Ok(())),
            _ => {}
        }
        if txn.state != TxnState::Ongoing {
            txn.partitions.clear();
            txn.start_ms = now_ms;
            txn.state = TxnState::Ongoing;
        }
        txn.partitions.extend(partitions.iter().cloned());
        txn.last_update_ms = now_ms;
        Step { reply: Ok(()), write: self.write(transactional_id), markers: None }
    }

    /// EndTxn: prepares the commit or abort (answered once that is durable); markers follow. A retried EndTxn
    /// of a completed transaction succeeds again; the opposite outcome is INVALID_TXN_STATE.
    pub fn end_txn(
        &mut self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        now_ms: i64,
    ) -> Step<Result<(), TxnError>> {
        let txn = match self.producer_txn(transactional_id, producer_id, producer_epoch) {
            Ok(txn) => txn,
            Err(e) => return Step::reply(Err(e)),
        };
        let outcome = match (txn.state, commit) {
            (TxnState::Ongoing, _) => None,
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => Some(Ok(())),
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => Some(Err(TxnError::ConcurrentTransactions)),
            (TxnState::PrepareEpochFence, _) => Some(Err(TxnError::ConcurrentTransactions)),
            _ => Some(Err(TxnError::InvalidTxnState)),
        };
        if let Some(reply) = outcome {
            return Step::reply(reply);
        }
        txn.state = if commit { TxnState::PrepareCommit } else { TxnState::PrepareAbort };
        txn.last_update_ms = now_ms;
        let markers = Some(marker_job(transactional_id, txn, commit));
        Step { reply: Ok(()), write: self.write(transactional_id), markers }
    }

    /// Every marker of a prepared transaction is written: CompleteCommit/CompleteAbort. Ignored when the
    /// transaction moved on meanwhile (a reload, a newer epoch).
    pub fn complete(&mut self, job: &MarkerJob, now_ms: i64) -> Step<()> {
        let Some(txn) = self.txns.get_mut(&job.transactional_id) else { return Step::reply(()) };
        let expected = if job.commit { TxnState::PrepareCommit } else { TxnState::PrepareAbort };
        if txn.state != expected || txn.producer_id != job.producer_id || txn.producer_epoch != job.producer_epoch {
            return Step::reply(());
        }
        txn.state = if job.commit { TxnState::CompleteCommit } else { TxnState::CompleteAbort };
        txn.partitions.clear();
        txn.start_ms = -1;
        txn.last_update_ms = now_ms;
        Step { reply: (), write: self.write(&job.transactional_id), markers: None }
    }

    /// The transactional ids whose metadata satisfies `condition`, in order (so records are written in a
    /// deterministic order).
    fn ids_where(&self, condition: impl Fn(&TxnMetadata) -> bool) -> Vec<String> {
        let mut ids: Vec<String> = self.txns.iter().filter(|(_, t)| condition(t)).map(|(id, _)| id.clone()).collect();
        ids.sort();
        ids
    }

    /// Transactions open longer than their timeout are aborted under a bumped epoch, which fences the producer
    /// that let it time out (Kafka's abortTimedOutTransactions).
    pub fn abort_timed_out(&mut self, now_ms: i64) -> Vec<Step<()>> {
        let expired = self.ids_where(|t| t.state == TxnState::Ongoing && t.start_ms.saturating_add(i64::from(t.timeout_ms)) < now_ms);
        let mut steps = Vec::with_capacity(expired.len());
        for id in expired {
            let Some(txn) = self.txns.get_mut(&id) else { continue };
            if !epoch_exhausted(txn.producer_epoch) {
                txn.producer_epoch += 1;
            }
            txn.state = TxnState::PrepareAbort;
            txn.last_update_ms = now_ms;
            let markers = Some(marker_job(&id, txn, false));
            steps.push(Step { reply: (), write: self.write(&id), markers });
        }
        steps
    }

    /// Transactional ids idle (no transaction) for transactional.id.expiration.ms are forgotten: tombstones.
    pub fn expire_ids(&mut self, now_ms: i64) -> Vec<Step<()>> {
        let expiration = self.config.id_expiration_ms;
        self.ids_where(|t| t.state.is_complete_or_empty() && t.last_update_ms.saturating_add(expiration) < now_ms)
            .into_iter()
            .map(|id| {
                self.txns.remove(&id);
                Step { reply: (), write: Some((id, None)), markers: None }
            })
            .collect()
    }
}

fn marker_job(transactional_id: &str, txn: &TxnMetadata, commit: bool) -> MarkerJob {
    MarkerJob {
        transactional_id: transactional_id.to_string(),
        producer_id: txn.producer_id,
        producer_epoch: txn.producer_epoch,
        commit,
        partitions: txn.partitions.iter().cloned().collect(),
    }
}

#[cfg(test)]
mod tests;
