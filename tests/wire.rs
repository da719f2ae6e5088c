//! The broker in-process on a loopback port, spoken to over TCP with hand-built requests: the dispatch,
//! produce/fetch round trip, long-poll wake-up and bad-frame handling, without any third-party client.
//! (compat-tests/ runs the real clients against the real binary.)

use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};
use kafka_protocol::records::RecordBatchDecoder;
mod common;

use common::{record_batch, start_broker, Client};

fn produce_request(topic: &str, batch: Bytes, acks: i16) -> ProduceRequest {
    ProduceRequest::default().with_acks(acks).with_timeout_ms(5000).with_topic_data(vec![TopicProduceData::default()
        .with_name(TopicName(StrBytes::from_string(topic.into())))
        .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(batch))])])
}

fn fetch_request(topic: &str, offset: i64, max_wait_ms: i32) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default().with_topic(TopicName(StrBytes::from_string(topic.into()))).with_partitions(vec![
            FetchPartition::default().with_partition(0).with_fetch_offset(offset).with_partition_max_bytes(1 << 20),
        ])])
}

fn fetched_values(response: &FetchResponse) -> Vec<(i64, String)> {
    let mut records = response.responses[0].partitions[0].records.clone().unwrap_or_default();
    let mut values = Vec::new();
    while records.has_remaining() {
        let set = RecordBatchDecoder::decode(&mut records).unwrap();
        for record in set.records {
            values.push((record.offset, String::from_utf8(record.value.unwrap().to_vec()).unwrap()));
        }
    }
    values
}

async fn create_by_metadata(client: &mut Client, topic: &str) -> MetadataResponse {
    let request = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_string(topic.into()))))]))
        .with_allow_auto_topic_creation(true);
    client.call(ApiKey::Metadata, 12, &request).await
}

#[tokio::test]
async fn api_versions_lists_handled_apis_and_answers_too_new_requests_in_v0() {
    let broker = start_broker(1).await;
    let mut client = Client::connect(broker.address).await;
    let response: ApiVersionsResponse = client.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default()).await;
    assert_eq!(response.error_code, 0);
    let produce = response.api_keys.iter().find(|k| k.api_key == ApiKey::Produce as i16).unwrap();
    assert_eq!(produce.min_version, 0);
    assert!(response.api_keys.iter().all(|k| k.min_version <= k.max_version));

    // ApiVersions v99: a v0 response (header v0, no tagged fields) with UNSUPPORTED_VERSION.
    let mut frame = BytesMut::new();
    frame.put_i32(10);
    frame.put_i16(ApiKey::ApiVersions as i16);
    frame.put_i16(99);
    frame.put_i32(42);
    frame.put_i16(-1);
    client.send_raw(&frame).await;
    let mut answer = client.read_frame().await.unwrap();
    assert_eq!(answer.get_i32(), 42);
    let v0 = ApiVersionsResponse::decode(&mut answer, 0).unwrap();
    assert_eq!(v0.error_code, 35);
    assert_eq!(v0.api_keys.len(), response.api_keys.len());
}

#[tokio::test]
async fn produce_then_fetch_round_trips_offsets_and_values() {
    let broker = start_broker(1).await;
    let mut client = Client::connect(broker.address).await;
    let metadata = create_by_metadata(&mut client, "round-trip").await;
    assert_eq!(metadata.topics[0].error_code, 0);
    assert_eq!(metadata.topics[0].partitions.len(), 1);

    let first: ProduceResponse = client.call(ApiKey::Produce, 9, &produce_request("round-trip", record_batch(&["a", "b", "c"]), -1)).await;
    let second: ProduceResponse = client.call(ApiKey::Produce, 9, &produce_request("round-trip", record_batch(&["d"]), 1)).await;
    assert_eq!(first.responses[0].partition_responses[0].error_code, 0);
    assert_eq!(first.responses[0].partition_responses[0].base_offset, 0);
    assert_eq!(second.responses[0].partition_responses[0].base_offset, 3);

    let fetched: FetchResponse = client.call(ApiKey::Fetch, 12, &fetch_request("round-trip", 1, 0)).await;
    let partition = &fetched.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    assert_eq!(partition.high_watermark, 4);
    // Fetch returns whole batches: the first batch starts at 0 even though offset 1 was asked for.
    let values = fetched_values(&fetched);
    assert_eq!(values, vec![(0, "a".into()), (1, "b".into()), (2, "c".into()), (3, "d".into())]);

    let out_of_range: FetchResponse = client.call(ApiKey::Fetch, 12, &fetch_request("round-trip", 99, 0)).await;
    assert_eq!(out_of_range.responses[0].partitions[0].error_code, 1);
}

#[tokio::test]
async fn a_waiting_fetch_is_woken_by_an_append() {
    let broker = start_broker(1).await;
    let mut producer = Client::connect(broker.address).await;
    create_by_metadata(&mut producer, "long-poll").await;
    let address = broker.address;
    let waiting = tokio::spawn(async move {
        let mut consumer = Client::connect(address).await;
        let started = Instant::now();
        let response: FetchResponse = consumer.call(ApiKey::Fetch, 12, &fetch_request("long-poll", 0, 30_000)).await;
        (started.elapsed(), fetched_values(&response))
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _: ProduceResponse = producer.call(ApiKey::Produce, 9, &produce_request("long-poll", record_batch(&["wake"]), 1)).await;
    let (elapsed, values) = waiting.await.unwrap();
    assert_eq!(values, vec![(0, "wake".into())]);
    // Woken by the append, far before max_wait_ms (30 s) would have ended it.
    assert!(elapsed < Duration::from_secs(10), "fetch took {elapsed:?}");
}

#[tokio::test]
async fn bad_frames_close_only_their_connection() {
    let broker = start_broker(1).await;
    let mut bad = Client::connect(broker.address).await;
    bad.send_raw(&i32::MAX.to_be_bytes()).await;
    assert!(bad.read_frame().await.is_none(), "an oversized frame must close the connection");

    let mut unknown = Client::connect(broker.address).await;
    unknown.send_raw(&[0, 0, 0, 8, 0x0f, 0xff, 0, 0, 0, 0, 0, 1]).await;
    assert!(unknown.read_frame().await.is_none(), "an unknown API key must close the connection");

    let mut good = Client::connect(broker.address).await;
    let response: ApiVersionsResponse = good.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default()).await;
    assert_eq!(response.error_code, 0);
}

#[tokio::test]
async fn corrupt_batches_get_corrupt_message_and_nothing_is_appended() {
    let broker = start_broker(1).await;
    let mut client = Client::connect(broker.address).await;
    create_by_metadata(&mut client, "corrupt").await;
    let mut batch = record_batch(&["x", "y"]).to_vec();
    let last = batch.len() - 1;
    batch[last] ^= 0xff;
    let response: ProduceResponse = client.call(ApiKey::Produce, 9, &produce_request("corrupt", Bytes::from(batch), 1)).await;
    assert_eq!(response.responses[0].partition_responses[0].error_code, 2);
    let fetched: FetchResponse = client.call(ApiKey::Fetch, 12, &fetch_request("corrupt", 0, 0)).await;
    assert_eq!(fetched.responses[0].partitions[0].high_watermark, 0);
}

