//! Fetch: read from each requested partition up to its high watermark, and when fewer than min_bytes are
//! available, park until an append wakes us (or max_wait_ms passes). Waiting is event-driven: each partition
//! holds this request's `Notify` until its next high-watermark advance; nothing polls.
//!
//! read_committed consumers read up to the last stable offset instead and get the aborted transactions
//! overlapping what they read (an empty list when none; null for read_uncommitted, as Kafka answers).
//!
//! Two kinds of fetchers, told apart by replica_id (a body field before v15, `replica_state` in v15):
//! consumers (-1) read up to the HW and are woken by HW advances; followers (their broker id) first record
//! their position with the leader (`record_follower_fetch`, which may advance the HW), then read up to the log
//! end offset and are woken by appends. Both are served by the partition leader only (no KIP-392 follower
//! fetching): NOT_LEADER_OR_FOLLOWER elsewhere.
//!
//! Fetch sessions (KIP-227) are answered sessionless: the response carries session id 0, which tells the
//! client to keep sending full requests.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::fetch_response::{AbortedTransaction, FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse, RequestHeader};
use kafka_protocol::protocol::VersionRange;
use kafka_protocol::ResponseError;
use tokio::sync::Notify;

use super::RequestContext;
use crate::broker::now_ms;
use crate::partition::{AbortedTxn, FetchedData, Isolation, Partition, PartitionError};
use crate::protocol::errors::KafkaCode;

pub const VERSIONS: VersionRange = VersionRange { min: 4, max: 15 };

/// Longest a fetch may park, whatever max_wait_ms says, so a connection is never stuck for long.
const MAX_WAIT_CAP_MS: i32 = 5 * 60 * 1000;

pub async fn handle(ctx: &RequestContext, header: &RequestHeader, request: FetchRequest) -> FetchResponse {
    let version = header.request_api_version;
    if version >= 7 && request.session_id != 0 {
        // We never hand out sessions, so any session id the client names is unknown to us.
        return FetchResponse::default().with_error_code(ResponseError::FetchSessionIdNotFound.code());
    }
    let replica_id = if version >= 15 { request.replica_state.replica_id.0 } else { request.replica_id.0 };
    let reader = if replica_id >= 0 { Reader::Follower { replica_id } } else { Reader::Consumer(Isolation::from_wire(request.isolation_level)) };
    let max_wait = Duration::from_millis(request.max_wait_ms.clamp(0, MAX_WAIT_CAP_MS) as u64);
    let deadline = tokio::time::Instant::now() + max_wait;
    let min_bytes = request.min_bytes.max(0) as usize;
    let max_bytes = if request.max_bytes > 0 { request.max_bytes as usize } else { usize::MAX };

    // Resolve partitions once; a partition deleted meanwhile keeps answering from its handle until we return.
    let targets: Vec<Vec<Option<Arc<Partition>>>> = request
        .topics
        .iter()
        .map(|topic| {
            topic
                .partitions
                .iter()
                .map(|p| {
                    if version >= 13 {
                        ctx.broker.partition_by_id(&topic.topic_id, p.partition)
                    } else {
                        ctx.broker.partition(&topic.topic.0, p.partition)
                    }
                })
                .collect()
        })
        .collect();

    let waiter = Arc::new(Notify::new());
    loop {
        for partition in targets.iter().flatten().flatten() {
            match reader {
                Reader::Consumer(_) => partition.register_waiter(waiter.clone()),
                Reader::Follower { .. } => partition.register_replica_waiter(waiter.clone()),
            }
        }
        let (responses, bytes, has_error) = read_all(&request, &targets, version, reader, max_bytes);
        if bytes >= min_bytes || has_error || tokio::time::Instant::now() >= deadline {
            return FetchResponse::default().with_responses(responses);
        }
        if tokio::time::timeout_at(deadline, waiter.notified()).await.is_err() {
            let (responses, _, _) = read_all(&request, &targets, version, reader, max_bytes);
            return FetchResponse::default().with_responses(responses);
        }
    }
}

/// Who is fetching.
#[derive(Clone, Copy, Debug)]
enum Reader {
    Consumer(Isolation),
    Follower { replica_id: i32 },
}

/// Reads one partition for `reader`, leader only. A follower's fetch offset is recorded first (every pass of
/// a long poll is a read of the leader's log, as Kafka records on the first read and on completion).
fn read_one(partition: &Partition, reader: Reader, wanted_epoch: i32, offset: i64, limit: usize, min_one: bool) -> Result<FetchedData, PartitionError> {
    partition.check_leader(wanted_epoch)?;
    match reader {
        Reader::Consumer(isolation) => partition.read(offset, limit, min_one, isolation),
        Reader::Follower { replica_id } => {
            partition.record_follower_fetch(replica_id, offset, wanted_epoch, now_ms())?;
            partition.read_log(offset, limit, min_one)
        }
    }
}

/// Reads every requested partition once. Returns the topic responses, bytes read and whether any partition
/// answered with an error (which ends the wait, as in Kafka).
fn read_all(
    request: &FetchRequest,
    targets: &[Vec<Option<Arc<Partition>>>],
    version: i16,
    reader: Reader,
    max_bytes: usize,
) -> (Vec<FetchableTopicResponse>, usize, bool) {
    let mut remaining = max_bytes;
    let mut total = 0usize;
    let mut has_error = false;
    let mut responses = Vec::with_capacity(request.topics.len());
    for (topic, partitions) in request.topics.iter().zip(targets) {
        let mut answers = Vec::with_capacity(topic.partitions.len());
        for (wanted, partition) in topic.partitions.iter().zip(partitions) {
            let mut answer = PartitionData::default().with_partition_index(wanted.partition).with_high_watermark(-1).with_last_stable_offset(-1);
            if version >= 5 {
                answer.log_start_offset = -1;
            }
            let Some(partition) = partition else {
                answer.error_code =
                    if version >= 13 { ResponseError::UnknownTopicId.code() } else { ResponseError::UnknownTopicOrPartition.code() };
                has_error = true;
                answers.push(answer);
                continue;
            };
            // KIP-74: the first partition with data returns at least one whole batch, even past the limits.
            let min_one = total == 0;
            let limit = (wanted.partition_max_bytes.max(0) as usize).min(remaining);
            let result = read_one(partition, reader, wanted.current_leader_epoch, wanted.fetch_offset, limit, min_one);
            match result {
                Ok(data) => {
                    total += data.records.len();
                    remaining = remaining.saturating_sub(data.records.len());
                    answer.high_watermark = data.high_watermark;
                    answer.last_stable_offset = data.last_stable_offset;
                    if version >= 5 {
                        answer.log_start_offset = data.log_start_offset;
                    }
                    answer.aborted_transactions = data.aborted_transactions.map(|aborted| aborted.iter().map(wire_aborted).collect());
                    answer.records = Some(data.records);
                }
                Err(e) => {
                    has_error = true;
                    answer.error_code = e.error_code();
                    let offsets = partition.offsets();
                    answer.high_watermark = offsets.high_watermark;
                    answer.last_stable_offset = offsets.last_stable_offset;
                    if version >= 5 {
                        answer.log_start_offset = offsets.log_start_offset;
                    }
                }
            }
            answers.push(answer);
        }
        let mut response = FetchableTopicResponse::default().with_partitions(answers);
        if version >= 13 {
            response.topic_id = topic.topic_id;
        } else {
            response.topic = topic.topic.clone();
        }
        responses.push(response);
    }
    (responses, total, has_error)
}

fn wire_aborted(txn: &AbortedTxn) -> AbortedTransaction {
    AbortedTransaction::default().with_producer_id(txn.producer_id.into()).with_first_offset(txn.first_offset)
}
