//! Transactions end to end in-process, over TCP with hand-built requests: the coordinator's APIs, control
//! markers in the partition log, the last stable offset and the aborted transactions a read_committed Fetch
//! returns, fencing and timeouts. (compat-tests/transactions runs the real clients against the binary.)

use std::time::{Duration, Instant};

use bytes::Buf;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;
use kafka_protocol::ResponseError;
mod common;

use common::{producer_batch, start_broker, start_broker_with, BatchProducer, Client};

const TOPIC: &str = "txn-topic";

fn name(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

async fn create_topic(client: &mut Client) {
    let request = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(TopicName(name(TOPIC))))]))
        .with_allow_auto_topic_creation(true);
    let _: MetadataResponse = client.call(ApiKey::Metadata, 12, &request).await;
}

/// A producer of one transactional id, speaking to the single broker (coordinator and leader).
struct TxnProducer {
    id: String,
    producer_id: i64,
    epoch: i16,
    sequence: i32,
}

impl TxnProducer {
    /// InitProducerId, retried while the coordinator answers CONCURRENT_TRANSACTIONS or is loading.
    async fn init(client: &mut Client, id: &str, timeout_ms: i32) -> TxnProducer {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let response = init_producer_id(client, id, timeout_ms).await;
            if response.error_code == 0 {
                return TxnProducer { id: id.to_string(), producer_id: response.producer_id.0, epoch: response.producer_epoch, sequence: 0 };
            }
            let retriable = [ResponseError::ConcurrentTransactions.code(), ResponseError::CoordinatorLoadInProgress.code()];
            assert!(retriable.contains(&response.error_code) && Instant::now() < deadline, "InitProducerId: {}", response.error_code);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn add_partition(&self, client: &mut Client) -> i16 {
        let request = AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(TransactionalId(name(&self.id)))
            .with_v3_and_below_producer_id(ProducerId(self.producer_id))
            .with_v3_and_below_producer_epoch(self.epoch)
            .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default().with_name(TopicName(name(TOPIC))).with_partitions(vec![0])]);
        let response: AddPartitionsToTxnResponse = client.call(ApiKey::AddPartitionsToTxn, 3, &request).await;
        response.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code
    }

    /// Produces `values` as one transactional batch; returns (error code, base offset).
    async fn produce(&mut self, client: &mut Client, values: &[&str]) -> (i16, i64) {
        let producer = BatchProducer { id: self.producer_id, epoch: self.epoch, first_sequence: self.sequence, transactional: true };
        let batch = producer_batch(values, producer);
        let request = ProduceRequest::default()
            .with_transactional_id(Some(TransactionalId(name(&self.id))))
            .with_acks(-1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(name(TOPIC)))
                .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(batch))])]);
        let response: ProduceResponse = client.call(ApiKey::Produce, 9, &request).await;
        let answer = &response.responses[0].partition_responses[0];
        if answer.error_code == 0 {
            self.sequence += values.len() as i32;
        }
        (answer.error_code, answer.base_offset)
    }

    async fn end(&self, client: &mut Client, commit: bool) -> i16 {
        let request = EndTxnRequest::default()
            .with_transactional_id(TransactionalId(name(&self.id)))
            .with_producer_id(ProducerId(self.producer_id))
            .with_producer_epoch(self.epoch)
            .with_committed(commit);
        let response: EndTxnResponse = client.call(ApiKey::EndTxn, 3, &request).await;
        response.error_code
    }
}

async fn init_producer_id(client: &mut Client, id: &str, timeout_ms: i32) -> InitProducerIdResponse {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(name(id))))
        .with_transaction_timeout_ms(timeout_ms)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    client.call(ApiKey::InitProducerId, 4, &request).await
}

/// Fetches partition 0 from `offset` under `isolation_level` (0 read_uncommitted, 1 read_committed).
async fn fetch(client: &mut Client, offset: i64, isolation_level: i8) -> PartitionData {
    let request = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_isolation_level(isolation_level)
        .with_topics(vec![FetchTopic::default().with_topic(TopicName(name(TOPIC))).with_partitions(vec![
            FetchPartition::default().with_partition(0).with_fetch_offset(offset).with_partition_max_bytes(1 << 20),
        ])]);
    let response: FetchResponse = client.call(ApiKey::Fetch, 11, &request).await;
    response.responses[0].partitions[0].clone()
}

/// (offset, value, is control) of every record fetched.
fn records_of(data: &PartitionData) -> Vec<(i64, Option<String>, bool)> {
    let mut records = data.records.clone().unwrap_or_default();
    let mut out = Vec::new();
    while records.has_remaining() {
        let set = RecordBatchDecoder::decode(&mut records).unwrap();
        for record in set.records {
            out.push((record.offset, record.value.map(|v| String::from_utf8_lossy(&v).into_owned()), record.control));
        }
    }
    out
}

/// Waits until DescribeTransactions shows `state` for `id`.
async fn wait_for_state(client: &mut Client, id: &str, state: &str) -> describe_transactions_response::TransactionState {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let request = DescribeTransactionsRequest::default().with_transactional_ids(vec![TransactionalId(name(id))]);
        let response: DescribeTransactionsResponse = client.call(ApiKey::DescribeTransactions, 0, &request).await;
        let described = response.transaction_states[0].clone();
        if described.error_code == 0 && described.transaction_state.as_str() == state {
            return described;
        }
        assert!(Instant::now() < deadline, "{id} never reached {state}: {described:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn committed_and_aborted_transactions_show_in_fetches() {
    let broker = start_broker(1).await;
    let mut client = Client::connect(broker.address).await;
    create_topic(&mut client).await;
    let coordinator: FindCoordinatorResponse =
        client.call(ApiKey::FindCoordinator, 3, &FindCoordinatorRequest::default().with_key(name("t1")).with_key_type(1)).await;
    assert_eq!((coordinator.error_code, coordinator.node_id.0), (0, 1));

    let mut producer = TxnProducer::init(&mut client, "t1", 60_000).await;
    assert_eq!(producer.epoch, 0);
    assert_eq!(producer.add_partition(&mut client).await, 0);
    assert_eq!(producer.produce(&mut client, &["a0", "a1", "a2"]).await, (0, 0));
    assert_eq!(client.produce(TOPIC, &["plain"], -1, 5000).await, (0, 3));

    // The open transaction holds the last stable offset at its first offset.
    let committed = fetch(&mut client, 0, 1).await;
    assert_eq!((committed.high_watermark, committed.last_stable_offset), (4, 0));
    assert!(records_of(&committed).is_empty(), "read_committed must not see an open transaction");
    let uncommitted = fetch(&mut client, 0, 0).await;
    assert_eq!(records_of(&uncommitted).len(), 4);
    assert_eq!(uncommitted.aborted_transactions, None, "read_uncommitted gets no aborted list");

    assert_eq!(producer.end(&mut client, false).await, 0);
    wait_for_state(&mut client, "t1", "CompleteAbort").await;
    let after_abort = fetch(&mut client, 0, 1).await;
    assert_eq!((after_abort.high_watermark, after_abort.last_stable_offset), (5, 5));
    let aborted: Vec<(i64, i64)> = after_abort.aborted_transactions.clone().unwrap_or_default().iter().map(|a| (a.producer_id.0, a.first_offset)).collect();
    assert_eq!(aborted, vec![(producer.producer_id, 0)]);
    let fetched = records_of(&after_abort);
    assert!(fetched.last().is_some_and(|(offset, _, control)| *offset == 4 && *control), "the abort marker is at offset 4: {fetched:?}");

    // A second transaction of the same producer continues its sequence and commits.
    assert_eq!(producer.add_partition(&mut client).await, 0);
    assert_eq!(producer.produce(&mut client, &["b0", "b1"]).await, (0, 5));
    assert_eq!(producer.end(&mut client, true).await, 0);
    let described = wait_for_state(&mut client, "t1", "CompleteCommit").await;
    assert_eq!((described.producer_id.0, described.producer_epoch), (producer.producer_id, 0));
    let after_commit = fetch(&mut client, 5, 1).await;
    assert_eq!(after_commit.last_stable_offset, 8);
    assert_eq!(after_commit.aborted_transactions.as_deref().map(<[_]>::len), Some(0), "the aborted transaction ended before offset 5");
    let values: Vec<String> = records_of(&after_commit).into_iter().filter(|r| !r.2).filter_map(|r| r.1).collect();
    assert_eq!(values, vec!["b0", "b1"]);

    let listed: ListTransactionsResponse = client.call(ApiKey::ListTransactions, 1, &ListTransactionsRequest::default().with_duration_filter(-1)).await;
    let states: Vec<(String, String)> =
        listed.transaction_states.iter().map(|t| (t.transactional_id.0.to_string(), t.transaction_state.to_string())).collect();
    assert_eq!(states, vec![("t1".to_string(), "CompleteCommit".to_string())]);
    let unknown: ListTransactionsResponse =
        client.call(ApiKey::ListTransactions, 1, &ListTransactionsRequest::default().with_state_filters(vec![name("Bogus")]).with_duration_filter(-1)).await;
    assert_eq!(unknown.unknown_state_filters, vec![name("Bogus")]);
    assert!(unknown.transaction_states.is_empty());
}

#[tokio::test]
async fn a_new_producer_with_the_same_id_fences_the_zombie() {
    let broker = start_broker(1).await;
    let mut client = Client::connect(broker.address).await;
    create_topic(&mut client).await;
    let mut zombie = TxnProducer::init(&mut client, "fenced", 60_000).await;
    assert_eq!(zombie.add_partition(&mut client).await, 0);
    assert_eq!(zombie.produce(&mut client, &["zombie"]).await.0, 0);

    // The new producer's first attempt aborts the zombie's transaction (CONCURRENT_TRANSACTIONS), the retry wins.
    assert_eq!(init_producer_id(&mut client, "fenced", 60_000).await.error_code, ResponseError::ConcurrentTransactions.code());
    let successor = TxnProducer::init(&mut client, "fenced", 60_000).await;
    assert_eq!((successor.producer_id, successor.epoch), (zombie.producer_id, 2));

    assert_eq!(zombie.produce(&mut client, &["late"]).await.0, ResponseError::InvalidProducerEpoch.code());
    assert_eq!(zombie.end(&mut client, true).await, ResponseError::ProducerFenced.code());
    assert_eq!(zombie.add_partition(&mut client).await, ResponseError::ProducerFenced.code());
    let committed = fetch(&mut client, 0, 1).await;
    let aborted: Vec<i64> = committed.aborted_transactions.clone().unwrap_or_default().iter().map(|a| a.first_offset).collect();
    assert_eq!(aborted, vec![0], "the zombie's record is in an aborted transaction");
}

#[tokio::test]
async fn a_transaction_past_its_timeout_is_aborted() {
    let broker = start_broker_with(1, &[("transaction.abort.timed.out.transaction.cleanup.interval.ms", "50")]).await;
    let mut client = Client::connect(broker.address).await;
    create_topic(&mut client).await;
    let mut producer = TxnProducer::init(&mut client, "slow", 200).await;
    assert_eq!(producer.add_partition(&mut client).await, 0);
    assert_eq!(producer.produce(&mut client, &["too late"]).await.0, 0);
    let described = wait_for_state(&mut client, "slow", "CompleteAbort").await;
    assert_eq!(described.producer_epoch, 1, "the abort bumped the epoch");
    assert_eq!(producer.end(&mut client, true).await, ResponseError::ProducerFenced.code());
    let committed = fetch(&mut client, 0, 1).await;
    assert_eq!(committed.last_stable_offset, committed.high_watermark);
    assert_eq!(committed.aborted_transactions.unwrap_or_default().len(), 1);
}

#[tokio::test]
async fn invalid_requests_get_kafkas_errors() {
    let broker = start_broker(1).await;
    let mut client = Client::connect(broker.address).await;
    create_topic(&mut client).await;
    assert_eq!(init_producer_id(&mut client, "t", 0).await.error_code, ResponseError::InvalidTransactionTimeout.code());
    assert_eq!(init_producer_id(&mut client, "t", 900_001).await.error_code, ResponseError::InvalidTransactionTimeout.code());
    let unknown = TxnProducer { id: "never-initialised".into(), producer_id: 1, epoch: 0, sequence: 0 };
    assert_eq!(unknown.add_partition(&mut client).await, ResponseError::InvalidProducerIdMapping.code());
    assert_eq!(unknown.end(&mut client, true).await, ResponseError::InvalidProducerIdMapping.code());
    let producer = TxnProducer::init(&mut client, "t", 1000).await;
    assert_eq!(producer.end(&mut client, true).await, ResponseError::InvalidTxnState.code(), "nothing to commit");
    let request = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(TransactionalId(name("t")))
        .with_v3_and_below_producer_id(ProducerId(producer.producer_id))
        .with_v3_and_below_producer_epoch(producer.epoch)
        .with_v3_and_below_topics(vec![
            AddPartitionsToTxnTopic::default().with_name(TopicName(name(TOPIC))).with_partitions(vec![0]),
            AddPartitionsToTxnTopic::default().with_name(TopicName(name("no-such-topic"))).with_partitions(vec![0]),
        ]);
    let response: AddPartitionsToTxnResponse = client.call(ApiKey::AddPartitionsToTxn, 3, &request).await;
    let codes: Vec<i16> = response.results_by_topic_v3_and_below.iter().map(|t| t.results_by_partition[0].partition_error_code).collect();
    assert_eq!(codes, vec![ResponseError::OperationNotAttempted.code(), ResponseError::UnknownTopicOrPartition.code()]);
    let described: DescribeTransactionsResponse =
        client.call(ApiKey::DescribeTransactions, 0, &DescribeTransactionsRequest::default().with_transactional_ids(vec![TransactionalId(name("nobody"))])).await;
    assert_eq!(described.transaction_states[0].error_code, ResponseError::TransactionalIdNotFound.code());
}
