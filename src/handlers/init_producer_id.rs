//! InitProducerId for idempotent producers: a fresh producer id at epoch 0. A producer re-initialising with
//! its current id and epoch (KIP-360, after an unknown sequence error) gets a fresh id too, which resets
//! its sequences everywhere. Transactional ids wait for the transaction coordinator.

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId, RequestHeader};
use kafka_protocol::protocol::VersionRange;
use kafka_protocol::ResponseError;

use super::RequestContext;
use crate::protocol::errors::KafkaCode;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 5 };

pub async fn handle(ctx: &RequestContext, _header: &RequestHeader, request: InitProducerIdRequest) -> InitProducerIdResponse {
    let failed = |code: i16| InitProducerIdResponse::default().with_error_code(code).with_producer_id(ProducerId(-1)).with_producer_epoch(-1);
    if request.transactional_id.as_ref().is_some_and(|id| !id.0.is_empty()) {
        // No transaction coordinator yet: refuse clearly instead of handing out an unfenced id.
        return failed(ResponseError::TransactionalIdAuthorizationFailed.code());
    }
    match ctx.broker.allocate_producer_id().await {
        Ok(id) => InitProducerIdResponse::default().with_producer_id(ProducerId(id)).with_producer_epoch(0),
        Err(e) => {
            tracing::error!(error = %e, "allocating a producer id failed");
            failed(e.error_code())
        }
    }
}
