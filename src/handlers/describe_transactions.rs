//! DescribeTransactions: the coordinator's metadata of each transactional id (admin clients send it to the
//! coordinator FindCoordinator named). NOT_COORDINATOR for ids another broker coordinates,
//! TRANSACTIONAL_ID_NOT_FOUND for unknown ones.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::{DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId, RequestHeader, TopicName};
use kafka_protocol::protocol::{StrBytes, VersionRange};

use super::RequestContext;
use crate::protocol::errors::KafkaCode;
use crate::txn::{TxnError, TxnMetadata};

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 0 };

pub async fn handle(ctx: &RequestContext, _header: &RequestHeader, request: DescribeTransactionsRequest) -> DescribeTransactionsResponse {
    let broker = &ctx.broker;
    let mut states = Vec::with_capacity(request.transactional_ids.len());
    for id in request.transactional_ids {
        let transactional_id = id.0.to_string();
        let key = transactional_id.clone();
        let found = broker.txns.read(broker, &transactional_id, move |shard| shard.get(&key).cloned()).await;
        let state = match found.and_then(|txn| txn.ok_or(TxnError::TransactionalIdNotFound)) {
            Ok(txn) => described(&txn),
            Err(e) => TransactionState::default().with_error_code(e.error_code()).with_producer_id(ProducerId(-1)).with_producer_epoch(-1),
        };
        states.push(state.with_transactional_id(id));
    }
    DescribeTransactionsResponse::default().with_transaction_states(states)
}

fn described(txn: &TxnMetadata) -> TransactionState {
    let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in &txn.partitions {
        topics.entry(topic.as_str()).or_default().push(*partition);
    }
    TransactionState::default()
        .with_transaction_state(StrBytes::from_static_str(txn.state.name()))
        .with_transaction_timeout_ms(txn.timeout_ms)
        .with_transaction_start_time_ms(txn.start_ms)
        .with_producer_id(ProducerId(txn.producer_id))
        .with_producer_epoch(txn.producer_epoch)
        .with_topics(
            topics
                .into_iter()
                .map(|(topic, partitions)| TopicData::default().with_topic(TopicName(StrBytes::from_string(topic.to_string()))).with_partitions(partitions))
                .collect(),
        )
}
