//! InitProducerId. Without a transactional id (idempotent producers): a fresh producer id at epoch 0; a
//! producer re-initialising with its current id and epoch (KIP-360, after an unknown sequence error) gets a
//! fresh id too, which resets its sequences everywhere. With a transactional id the transaction coordinator
//! answers (`TxnShard::init_producer_id`): the same producer id with its epoch bumped, which fences older
//! producers of the id; an open transaction is aborted first (CONCURRENT_TRANSACTIONS until it is).

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId, RequestHeader};
use kafka_protocol::protocol::VersionRange;

use super::RequestContext;
use crate::protocol::errors::KafkaCode;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 5 };

/// The first version that understands PRODUCER_FENCED (KIP-588); older ones get INVALID_PRODUCER_EPOCH.
const PRODUCER_FENCED_SINCE: i16 = 4;

pub async fn handle(ctx: &RequestContext, header: &RequestHeader, request: InitProducerIdRequest) -> InitProducerIdResponse {
    let failed = |code: i16| InitProducerIdResponse::default().with_error_code(code).with_producer_id(ProducerId(-1)).with_producer_epoch(-1);
    let broker = &ctx.broker;
    // An unused id, for a new transactional id or an exhausted epoch (taken from this broker's block).
    let fresh_producer_id = match broker.allocate_producer_id().await {
        Ok(id) => id,
        Err(e) => {
            tracing::error!(error = %e, "allocating a producer id failed");
            return failed(e.error_code());
        }
    };
    let Some(transactional_id) = request.transactional_id.as_ref().map(|id| id.0.to_string()).filter(|id| !id.is_empty()) else {
        return InitProducerIdResponse::default().with_producer_id(ProducerId(fresh_producer_id)).with_producer_epoch(0);
    };
    let timeout_ms = request.transaction_timeout_ms;
    let expected = (header.request_api_version >= 3 && request.producer_id.0 >= 0).then_some((request.producer_id.0, request.producer_epoch));
    let id = transactional_id.clone();
    let result = broker
        .txns
        .call(broker, &transactional_id, move |shard, now| shard.init_producer_id(&id, timeout_ms, expected, fresh_producer_id, now))
        .await;
    match result {
        Ok((producer_id, epoch)) => InitProducerIdResponse::default().with_producer_id(ProducerId(producer_id)).with_producer_epoch(epoch),
        Err(e) => {
            tracing::debug!(transactional_id, error = %e, "InitProducerId refused");
            failed(e.code_for(header.request_api_version, PRODUCER_FENCED_SINCE))
        }
    }
}
