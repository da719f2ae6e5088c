//! ListTransactions: the transactions this broker coordinates (admin clients ask every broker), filtered by
//! state names, producer ids and (v1, KIP-994) a minimum running time. Unknown state names are echoed back
//! in unknown_state_filters, as Kafka does. v2's transactional id regular expression is not advertised.

use std::collections::HashSet;

use kafka_protocol::messages::list_transactions_response::TransactionState;
use kafka_protocol::messages::{ListTransactionsRequest, ListTransactionsResponse, ProducerId, RequestHeader, TransactionalId};
use kafka_protocol::protocol::{StrBytes, VersionRange};

use super::RequestContext;
use crate::broker::now_ms;
use crate::protocol::errors::KafkaCode;
use crate::txn::{TxnError, TxnState};

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 1 };

pub async fn handle(ctx: &RequestContext, header: &RequestHeader, request: ListTransactionsRequest) -> ListTransactionsResponse {
    let broker = &ctx.broker;
    let mut unknown_state_filters = Vec::new();
    let mut states = HashSet::new();
    for name in &request.state_filters {
        match TxnState::from_name(name.as_str()) {
            Some(state) => {
                states.insert(state);
            }
            None => unknown_state_filters.push(name.clone()),
        }
    }
    // Only unknown names asked for: nothing can match.
    if states.is_empty() && !request.state_filters.is_empty() {
        return ListTransactionsResponse::default().with_unknown_state_filters(unknown_state_filters);
    }
    let producer_ids: HashSet<i64> = request.producer_id_filters.iter().map(|p| p.0).collect();
    let min_duration_ms = if header.request_api_version >= 1 { request.duration_filter } else { -1 };
    let now = now_ms();
    let listed = broker
        .txns
        .read_all(broker, move |shard| {
            shard
                .iter()
                .filter(|(_, txn)| states.is_empty() || states.contains(&txn.state))
                .filter(|(_, txn)| producer_ids.is_empty() || producer_ids.contains(&txn.producer_id))
                .filter(|(_, txn)| min_duration_ms < 0 || (txn.start_ms >= 0 && now - txn.start_ms >= min_duration_ms))
                .map(|(id, txn)| (id.clone(), txn.producer_id, txn.state))
                .collect::<Vec<_>>()
        })
        .await;
    let listed = match listed {
        Ok(listed) => listed,
        // The topic does not exist yet: this broker coordinates nothing.
        Err(TxnError::NotCoordinator) => Vec::new(),
        Err(e) => return ListTransactionsResponse::default().with_error_code(e.error_code()).with_unknown_state_filters(unknown_state_filters),
    };
    let transaction_states = listed
        .into_iter()
        .flatten()
        .map(|(id, producer_id, state)| {
            TransactionState::default()
                .with_transactional_id(TransactionalId(StrBytes::from_string(id)))
                .with_producer_id(ProducerId(producer_id))
                .with_transaction_state(StrBytes::from_static_str(state.name()))
        })
        .collect();
    ListTransactionsResponse::default().with_unknown_state_filters(unknown_state_filters).with_transaction_states(transaction_states)
}
