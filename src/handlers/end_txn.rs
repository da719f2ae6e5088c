//! EndTxn: commits or aborts the producer's transaction. Answered once the coordinator's PrepareCommit or
//! PrepareAbort is durable (the outcome is then decided); the markers are written after, and the producer's
//! next transaction waits for them (CONCURRENT_TRANSACTIONS).

use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse, RequestHeader};
use kafka_protocol::protocol::VersionRange;

use super::RequestContext;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 4 };

/// The first version that understands PRODUCER_FENCED (KIP-588).
const PRODUCER_FENCED_SINCE: i16 = 2;

pub async fn handle(ctx: &RequestContext, header: &RequestHeader, request: EndTxnRequest) -> EndTxnResponse {
    let broker = &ctx.broker;
    let transactional_id = request.transactional_id.0.to_string();
    let (producer_id, producer_epoch, commit) = (request.producer_id.0, request.producer_epoch, request.committed);
    let id = transactional_id.clone();
    let result = broker
        .txns
        .call(broker, &transactional_id, move |shard, now| shard.end_txn(&id, producer_id, producer_epoch, commit, now))
        .await;
    match result {
        Ok(()) => EndTxnResponse::default(),
        Err(e) => {
            tracing::debug!(transactional_id, commit, error = %e, "EndTxn refused");
            EndTxnResponse::default().with_error_code(e.code_for(header.request_api_version, PRODUCER_FENCED_SINCE))
        }
    }
}
