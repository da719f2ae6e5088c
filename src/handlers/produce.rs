//! Produce: validate each partition's record batch, append it (leader only), fsync it (group commit) before
//! answering acks=1/all, and answer nothing for acks=0. acks=all then waits in the partition's purgatory until
//! the high watermark passes the batch (every ISR member has it), bounded by the request's timeout_ms.
//!
//! Versions 0-2 are routed too (librdkafka only enables some features when Produce v0 is advertised). Their
//! body is the v3 body without the transactional id, so they are decoded as v3; their batches are magic 0/1 in
//! practice and are refused per partition like any other bad batch.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, RequestHeader, TopicName};
use kafka_protocol::protocol::{StrBytes, VersionRange};
use kafka_protocol::ResponseError;

use std::sync::Arc;

use super::{Pending, Reply, RequestContext};
use crate::broker::now_ms;
use crate::partition::{AppendOutcome, Partition, PartitionError};
use crate::protocol::errors::KafkaCode;
use crate::protocol::{self, RequestError};

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 11 };

/// The first version the kafka-protocol crate decodes.
const FIRST_MODERN_VERSION: i16 = 3;

pub async fn handle(ctx: &RequestContext, header: &RequestHeader, request: ProduceRequest) -> ProduceReply {
    let acks = request.acks;
    let version = header.request_api_version;
    let now = now_ms();
    // The request's timeout bounds the wait for replication, counted from its arrival as in Kafka.
    let replication_deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(request.timeout_ms.max(0) as u64);
    let valid_acks = (-1..=1).contains(&acks);
    let mut to_flush = Vec::new();
    let mut responses = Vec::with_capacity(request.topic_data.len());
    for topic in request.topic_data {
        let name = topic.name.0.to_string();
        let mut partition_responses = Vec::with_capacity(topic.partition_data.len());
        for data in topic.partition_data {
            let mut answer = PartitionProduceResponse::default().with_index(data.index).with_base_offset(-1);
            let result = if !valid_acks {
                Err(ResponseError::InvalidRequiredAcks.code())
            } else {
                append_one(ctx, &name, &topic.topic_id, version, data.index, data.records, acks, now)
            };
            match result {
                Ok((partition, outcome)) => {
                    answer.base_offset = outcome.base_offset;
                    if version >= 2 {
                        answer.log_append_time_ms = outcome.log_append_time_ms;
                    }
                    if version >= 5 {
                        answer.log_start_offset = outcome.log_start_offset;
                    }
                    if acks != 0 {
                        to_flush.push(Appended {
                            partition,
                            end_offset: outcome.last_offset + 1,
                            leader_epoch: outcome.leader_epoch,
                            partition_slot: partition_responses.len(),
                            topic_slot: responses.len(),
                        });
                    }
                }
                Err(code) => answer.error_code = code,
            }
            partition_responses.push(answer);
        }
        // An owned name, not a slice of the request frame: a deferred response must not pin the frame buffer,
        // which the connection reuses for the next request.
        let owned_name = TopicName(StrBytes::from_string(name));
        responses.push(TopicProduceResponse::default().with_name(owned_name).with_topic_id(topic.topic_id).with_partition_responses(partition_responses));
    }
    ProduceReply { response: ProduceResponse::default().with_responses(responses), to_flush, acks, replication_deadline }
}

/// One partition's append that the answer waits for.
struct Appended {
    partition: Arc<Partition>,
    /// The offset that must be durable (and, for acks=all, below the high watermark).
    end_offset: i64,
    leader_epoch: i32,
    /// Where its answer sits in the response: partition index within the topic, topic index.
    partition_slot: usize,
    topic_slot: usize,
}

/// A produce whose records are appended but maybe not yet durable. Appending happens in request order on
/// the connection; waiting for the fsync does not, so the next request's append overlaps this one's fsync and
/// the two share it (group commit).
pub struct ProduceReply {
    response: ProduceResponse,
    to_flush: Vec<Appended>,
    acks: i16,
    replication_deadline: tokio::time::Instant,
}

impl ProduceReply {
    /// Waits for every appended partition to be durable and, for acks=all, replicated to the ISR; a partition
    /// whose fsync or replication failed is answered with an error instead of an offset. None for acks=0.
    pub async fn finish(self) -> Option<ProduceResponse> {
        let ProduceReply { mut response, to_flush, acks, replication_deadline } = self;
        // The partitions of one request are fsynced and replicated in parallel.
        let mut flushes = tokio::task::JoinSet::new();
        for Appended { partition, end_offset, leader_epoch, partition_slot, topic_slot } in to_flush {
            flushes.spawn(async move {
                let mut result = partition.flush_to(end_offset).await;
                if result.is_ok() && acks == -1 {
                    result = partition.wait_for_replication(end_offset, leader_epoch, replication_deadline).await;
                }
                (result, partition, partition_slot, topic_slot)
            });
        }
        while let Some(joined) = flushes.join_next().await {
            let (result, partition, partition_slot, topic_slot) = match joined {
                Ok(done) => done,
                Err(e) => {
                    // The flush task panicked: we cannot know which partition, so no write of this request is
                    // acknowledged.
                    tracing::error!(error = %e, "fsync task failed");
                    for topic in &mut response.responses {
                        for answer in &mut topic.partition_responses {
                            answer.error_code = ResponseError::KafkaStorageError.code();
                            answer.base_offset = -1;
                        }
                    }
                    continue;
                }
            };
            if let Err(e) = result {
                match e {
                    PartitionError::Log(_) | PartitionError::FlushTask(_) => {
                        tracing::error!(topic = %partition.topic, partition = partition.index, error = %e, "fsync failed; the write is not acknowledged")
                    }
                    _ => tracing::debug!(topic = %partition.topic, partition = partition.index, error = %e, "acks=all produce not acknowledged"),
                }
                let answer = &mut response.responses[topic_slot].partition_responses[partition_slot];
                answer.error_code = e.error_code();
                answer.base_offset = -1;
            }
        }
        if acks == 0 {
            return None;
        }
        Some(response)
    }
}

impl Reply for ProduceReply {
    fn into_pending(self, api: ApiKey, version: i16, correlation_id: i32) -> Result<Pending, RequestError> {
        if self.acks == 0 {
            return Ok(Pending::Ready(None));
        }
        if self.to_flush.is_empty() {
            let response = self.response;
            return protocol::encode_response(api, version, correlation_id, &response).map(|bytes| Pending::Ready(Some(bytes)));
        }
        Ok(Pending::Deferred(Box::pin(async move {
            match self.finish().await {
                Some(response) => protocol::encode_response(api, version, correlation_id, &response).map(Some),
                None => Ok(None),
            }
        })))
    }
}

type AppendResult = (Arc<Partition>, AppendOutcome);

#[allow(clippy::too_many_arguments)]
fn append_one(
    ctx: &RequestContext,
    topic: &str,
    topic_id: &uuid::Uuid,
    version: i16,
    index: i32,
    records: Option<Bytes>,
    acks: i16,
    now: i64,
) -> Result<AppendResult, i16> {
    let partition = if version >= 13 { ctx.broker.partition_by_id(topic_id, index) } else { ctx.broker.partition(topic, index) };
    let Some(partition) = partition else {
        return Err(if version >= 13 { ResponseError::UnknownTopicId.code() } else { ResponseError::UnknownTopicOrPartition.code() });
    };
    let records = records.ok_or(PartitionError::MissingRecords).map_err(|e| e.error_code())?;
    match partition.append(&records, acks, now) {
        Ok(outcome) => Ok((partition, outcome)),
        Err(e) => {
            tracing::debug!(topic, partition = index, error = %e, "produce refused");
            Err(e.error_code())
        }
    }
}

/// Produce v0-2: decode as v3, answer in the old layout.
pub async fn handle_legacy(ctx: &RequestContext, header: &RequestHeader, body: Bytes) -> Result<Pending, RequestError> {
    let version = header.request_api_version;
    let request = decode_legacy(body)?;
    let Some(response) = handle(ctx, header, request).await.finish().await else { return Ok(Pending::Ready(None)) };
    if version == 2 {
        // The v2 response layout is the v3 one.
        return protocol::encode_response(ApiKey::Produce, FIRST_MODERN_VERSION, header.correlation_id, &response)
            .map(|bytes| Pending::Ready(Some(bytes)));
    }
    Ok(Pending::Ready(Some(encode_v0_v1(header.correlation_id, version, &response))))
}

/// Decodes a Produce v0-2 body: the v3 body without its leading transactional id.
pub fn decode_legacy(body: Bytes) -> Result<ProduceRequest, RequestError> {
    let mut as_v3 = BytesMut::with_capacity(body.len() + 2);
    as_v3.put_i16(-1); // null transactional id
    as_v3.put_slice(&body);
    protocol::decode_body(&mut as_v3.freeze(), ApiKey::Produce, FIRST_MODERN_VERSION)
}

fn put_string(out: &mut BytesMut, s: &StrBytes) {
    out.put_i16(s.len() as i16);
    out.put_slice(s.as_bytes());
}

fn encode_v0_v1(correlation_id: i32, version: i16, response: &ProduceResponse) -> BytesMut {
    let mut body = BytesMut::new();
    body.put_i32(correlation_id);
    body.put_i32(response.responses.len() as i32);
    for topic in &response.responses {
        put_string(&mut body, &topic.name.0);
        body.put_i32(topic.partition_responses.len() as i32);
        for partition in &topic.partition_responses {
            body.put_i32(partition.index);
            body.put_i16(partition.error_code);
            body.put_i64(partition.base_offset);
        }
    }
    if version == 1 {
        body.put_i32(response.throttle_time_ms);
    }
    let mut frame = BytesMut::with_capacity(body.len() + 4);
    frame.put_i32(body.len() as i32);
    frame.put_slice(&body);
    frame
}
