//! Writing transaction markers: the coordinator's side (sending WriteTxnMarkers to every leader of a
//! transaction's partitions, retrying until each marker is written) and the partition leader's side
//! ([`write_local`], which the WriteTxnMarkers handler and a coordinator that leads the partition itself
//! both use): append the control batch, make it durable and wait for the in-sync replicas, like acks=all.
//! Markers for `__consumer_offsets` partitions go through the group coordinator, which completes the
//! transaction's pending offset commits in the same step.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::messages::write_txn_markers_request::{WritableTxnMarker, WritableTxnMarkerTopic};
use kafka_protocol::messages::{ApiKey, ProducerId, TopicName, WriteTxnMarkersRequest, WriteTxnMarkersResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::broker::{now_ms, Broker};
use crate::group::runtime::OFFSETS_TOPIC;
use crate::partition::TxnMarker;
use crate::protocol::errors::KafkaCode;
use crate::replication::client::KafkaClient;

/// How long a leader waits for its in-sync replicas to have a marker (Kafka uses the request timeout).
const MARKER_REPLICATION_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on one WriteTxnMarkers round trip to another broker (it waits for its replicas, above).
const MARKER_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
const MARKER_RESPONSE_MAX_BYTES: usize = 1 << 20;
/// WriteTxnMarkers v1 is the flexible version every supported broker answers.
const MARKER_REQUEST_VERSION: i16 = 1;

/// Writes `marker` to each of `partitions` that this broker leads; one error code per partition, in order.
pub async fn write_local(broker: &Arc<Broker>, marker: TxnMarker, partitions: &[(String, i32)]) -> Vec<i16> {
    let mut writes = tokio::task::JoinSet::new();
    for (slot, (topic, index)) in partitions.iter().enumerate() {
        let broker = broker.clone();
        let (topic, index) = (topic.clone(), *index);
        writes.spawn(async move { (slot, write_one(&broker, marker, &topic, index).await) });
    }
    let mut codes = vec![ResponseError::UnknownServerError.code(); partitions.len()];
    while let Some(joined) = writes.join_next().await {
        match joined {
            Ok((slot, code)) => codes[slot] = code,
            Err(e) => tracing::error!(error = %e, "a marker write task failed"),
        }
    }
    codes
}

async fn write_one(broker: &Arc<Broker>, marker: TxnMarker, topic: &str, index: i32) -> i16 {
    if topic == OFFSETS_TOPIC {
        return match broker.groups.write_marker(broker, index, marker).await {
            Ok(()) => 0,
            Err(code) => code,
        };
    }
    let Some(partition) = broker.partition(topic, index) else { return ResponseError::UnknownTopicOrPartition.code() };
    let outcome = match partition.append_marker(&marker, now_ms()) {
        Ok(outcome) => outcome,
        Err(e) => {
            tracing::debug!(topic, partition = index, error = %e, "marker refused");
            return e.error_code();
        }
    };
    let end = outcome.last_offset + 1;
    let deadline = tokio::time::Instant::now() + MARKER_REPLICATION_TIMEOUT;
    let result = match partition.flush_to(end).await {
        Ok(()) => partition.wait_for_replication(end, outcome.leader_epoch, deadline).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            tracing::debug!(topic, partition = index, error = %e, "marker not replicated");
            e.error_code()
        }
    }
}

/// What became of one partition's marker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    Written,
    /// Try again later (leader moving, replicas behind, network).
    Retry,
    /// Never going to be written, and need not be: the topic is gone, or the partition has a newer producer
    /// epoch or coordinator (the transaction was fenced there).
    GiveUp,
}

/// How the coordinator treats a marker's error code (Kafka's TransactionMarkerRequestCompletionHandler).
pub fn classify(code: i16, topic_exists: bool) -> Delivery {
    if code == 0 {
        return Delivery::Written;
    }
    match ResponseError::try_from_code(code) {
        Some(ResponseError::UnknownTopicOrPartition) if !topic_exists => Delivery::GiveUp,
        Some(ResponseError::InvalidProducerEpoch | ResponseError::TransactionCoordinatorFenced) => Delivery::GiveUp,
        Some(ResponseError::CorruptMessage | ResponseError::MessageTooLarge | ResponseError::RecordListTooLarge | ResponseError::InvalidRequiredAcks) => {
            Delivery::GiveUp
        }
        _ => Delivery::Retry,
    }
}

/// Connections to the other brokers for markers, one per broker, reused; a failed one is dropped.
#[derive(Default)]
pub struct MarkerClients {
    clients: Mutex<HashMap<i32, Arc<tokio::sync::Mutex<Option<KafkaClient>>>>>,
}

impl MarkerClients {
    fn slot(&self, node_id: i32) -> Arc<tokio::sync::Mutex<Option<KafkaClient>>> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients.entry(node_id).or_default().clone()
    }

    /// Sends one WriteTxnMarkers to `node_id` (at host:port); per partition its error code, or None for all
    /// when the request failed.
    pub async fn send(
        &self,
        local_node: i32,
        (node_id, host, port): (i32, &str, i32),
        marker: TxnMarker,
        partitions: &[(String, i32)],
    ) -> Option<Vec<i16>> {
        let slot = self.slot(node_id);
        let mut client = slot.lock().await;
        if client.is_none() {
            let client_id = format!("odradek-txn-markers-{local_node}");
            match KafkaClient::connect(host, port, client_id, MARKER_REQUEST_TIMEOUT, MARKER_RESPONSE_MAX_BYTES).await {
                Ok(connected) => *client = Some(connected),
                Err(e) => {
                    tracing::debug!(node_id, error = %e, "connecting for transaction markers failed");
                    return None;
                }
            }
        }
        let connection = client.as_mut()?;
        let request = request_for(marker, partitions);
        match connection.call::<_, WriteTxnMarkersResponse>(ApiKey::WriteTxnMarkers, MARKER_REQUEST_VERSION, &request).await {
            Ok(response) => Some(codes_in_order(&response, partitions)),
            Err(e) => {
                tracing::debug!(node_id, error = %e, "WriteTxnMarkers failed");
                *client = None;
                None
            }
        }
    }
}

fn request_for(marker: TxnMarker, partitions: &[(String, i32)]) -> WriteTxnMarkersRequest {
    let mut topics: Vec<WritableTxnMarkerTopic> = Vec::new();
    for (topic, index) in partitions {
        match topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
            Some(entry) => entry.partition_indexes.push(*index),
            None => topics.push(
                WritableTxnMarkerTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.clone())))
                    .with_partition_indexes(vec![*index]),
            ),
        }
    }
    let marker = WritableTxnMarker::default()
        .with_producer_id(ProducerId(marker.producer_id))
        .with_producer_epoch(marker.producer_epoch)
        .with_transaction_result(marker.commit)
        .with_coordinator_epoch(marker.coordinator_epoch)
        .with_topics(topics);
    WriteTxnMarkersRequest::default().with_markers(vec![marker])
}

/// The response's codes in the order of `partitions`; a partition the response does not mention is retried.
fn codes_in_order(response: &WriteTxnMarkersResponse, partitions: &[(String, i32)]) -> Vec<i16> {
    let mut found = HashMap::new();
    for marker in &response.markers {
        for topic in &marker.topics {
            for partition in &topic.partitions {
                found.insert((topic.name.0.as_str(), partition.partition_index), partition.error_code);
            }
        }
    }
    partitions
        .iter()
        .map(|(topic, index)| found.get(&(topic.as_str(), *index)).copied().unwrap_or(ResponseError::RequestTimedOut.code()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::write_txn_markers_response::{
        WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
    };

    #[test]
    fn requests_group_partitions_by_topic_and_codes_come_back_in_order() {
        let marker = TxnMarker { producer_id: 9, producer_epoch: 2, commit: true, coordinator_epoch: 4 };
        let partitions = vec![("a".to_string(), 0), ("b".to_string(), 3), ("a".to_string(), 1)];
        let request = request_for(marker, &partitions);
        let topics: Vec<(String, Vec<i32>)> =
            request.markers[0].topics.iter().map(|t| (t.name.0.to_string(), t.partition_indexes.clone())).collect();
        assert_eq!(topics, vec![("a".to_string(), vec![0, 1]), ("b".to_string(), vec![3])]);
        let result = |index, error_code| WritableTxnMarkerPartitionResult::default().with_partition_index(index).with_error_code(error_code);
        let response = WriteTxnMarkersResponse::default().with_markers(vec![WritableTxnMarkerResult::default().with_topics(vec![
            WritableTxnMarkerTopicResult::default().with_name(TopicName(StrBytes::from_static_str("a"))).with_partitions(vec![result(1, 6), result(0, 0)]),
        ])]);
        assert_eq!(codes_in_order(&response, &partitions), vec![0, ResponseError::RequestTimedOut.code(), 6]);
    }

    #[test]
    fn marker_errors_are_retried_unless_they_can_never_succeed() {
        assert_eq!(classify(0, true), Delivery::Written);
        assert_eq!(classify(ResponseError::NotLeaderOrFollower.code(), true), Delivery::Retry);
        assert_eq!(classify(ResponseError::NotEnoughReplicas.code(), true), Delivery::Retry);
        assert_eq!(classify(ResponseError::UnknownTopicOrPartition.code(), true), Delivery::Retry);
        assert_eq!(classify(ResponseError::UnknownTopicOrPartition.code(), false), Delivery::GiveUp);
        assert_eq!(classify(ResponseError::InvalidProducerEpoch.code(), true), Delivery::GiveUp);
    }
}
