//! WriteTxnMarkers (inter-broker, from a transaction coordinator): writes each commit or abort marker to the
//! partitions this broker leads, durable and on every in-sync replica before answering, like acks=all.
//! Only v1 exists in the protocol crate (Kafka 4 removed v0).

use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{RequestHeader, WriteTxnMarkersRequest, WriteTxnMarkersResponse};
use kafka_protocol::protocol::VersionRange;

use super::RequestContext;
use crate::partition::TxnMarker;
use crate::txn::markers;

pub const VERSIONS: VersionRange = VersionRange { min: 1, max: 1 };

pub async fn handle(ctx: &RequestContext, _header: &RequestHeader, request: WriteTxnMarkersRequest) -> WriteTxnMarkersResponse {
    let mut results = Vec::with_capacity(request.markers.len());
    for marker in request.markers {
        let txn_marker = TxnMarker {
            producer_id: marker.producer_id.0,
            producer_epoch: marker.producer_epoch,
            commit: marker.transaction_result,
            coordinator_epoch: marker.coordinator_epoch,
        };
        let partitions: Vec<(String, i32)> = marker
            .topics
            .iter()
            .flat_map(|t| t.partition_indexes.iter().map(move |&p| (t.name.0.to_string(), p)))
            .collect();
        let mut codes = markers::write_local(&ctx.broker, txn_marker, &partitions).await.into_iter();
        let topics = marker
            .topics
            .iter()
            .map(|topic| {
                let partitions = topic
                    .partition_indexes
                    .iter()
                    .map(|&index| {
                        let code = codes.next().unwrap_or(kafka_protocol::ResponseError::UnknownServerError.code());
                        WritableTxnMarkerPartitionResult::default().with_partition_index(index).with_error_code(code)
                    })
                    .collect();
                WritableTxnMarkerTopicResult::default().with_name(topic.name.clone()).with_partitions(partitions)
            })
            .collect();
        results.push(WritableTxnMarkerResult::default().with_producer_id(marker.producer_id).with_topics(topics));
    }
    WriteTxnMarkersResponse::default().with_markers(results)
}
