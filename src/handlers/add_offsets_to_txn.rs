//! AddOffsetsToTxn: adds the group's `__consumer_offsets` partition to the producer's transaction, so the
//! transaction's markers reach the group coordinator (which then applies the TxnOffsetCommits it holds).

use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, RequestHeader};
use kafka_protocol::protocol::VersionRange;

use super::RequestContext;
use crate::group::runtime::OFFSETS_TOPIC;
use crate::protocol::errors::KafkaCode;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 4 };

/// The first version that understands PRODUCER_FENCED (KIP-588).
const PRODUCER_FENCED_SINCE: i16 = 2;

pub async fn handle(ctx: &RequestContext, header: &RequestHeader, request: AddOffsetsToTxnRequest) -> AddOffsetsToTxnResponse {
    let broker = &ctx.broker;
    let transactional_id = request.transactional_id.0.to_string();
    let group_id = request.group_id.0.to_string();
    let index = match broker.groups.partition_for(broker, &group_id).await {
        Ok(index) => index,
        Err(e) => return AddOffsetsToTxnResponse::default().with_error_code(e.error_code()),
    };
    let (producer_id, producer_epoch) = (request.producer_id.0, request.producer_epoch);
    let id = transactional_id.clone();
    let result = broker
        .txns
        .call(broker, &transactional_id, move |shard, now| {
            shard.add_partitions(&id, producer_id, producer_epoch, &[(OFFSETS_TOPIC.to_string(), index)], now)
        })
        .await;
    match result {
        Ok(()) => AddOffsetsToTxnResponse::default(),
        Err(e) => {
            tracing::debug!(transactional_id, group_id, error = %e, "AddOffsetsToTxn refused");
            AddOffsetsToTxnResponse::default().with_error_code(e.code_for(header.request_api_version, PRODUCER_FENCED_SINCE))
        }
    }
}
