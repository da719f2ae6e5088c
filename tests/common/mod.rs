//! What the in-process integration tests share: a broker on a loopback port and a client speaking hand-built
//! Kafka requests to it. Each test file uses part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
use odradek::broker::Broker;
use odradek::config::BrokerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct TestBroker {
    pub address: SocketAddr,
    pub broker: Arc<Broker>,
    _dir: tempfile::TempDir,
}

/// A single-node broker `node_id` (no fsync) in a temporary directory, serving a loopback port.
pub async fn start_broker(node_id: i32) -> TestBroker {
    start_broker_with(node_id, &[]).await
}

/// As [`start_broker`], with broker properties set.
pub async fn start_broker_with(node_id: i32, properties: &[(&str, &str)]) -> TestBroker {
    let dir = tempfile::tempdir().unwrap();
    let mut config = BrokerConfig::default();
    config.set("log.dirs", dir.path().to_str().unwrap()).unwrap();
    config.set("log.flush.enable", "false").unwrap();
    config.set("node.id", &node_id.to_string()).unwrap();
    for (name, value) in properties {
        config.set(name, value).unwrap();
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let broker = Broker::open(config, ("127.0.0.1".into(), address.port() as i32)).await.unwrap();
    tokio::spawn(odradek::server::serve(listener, broker.clone()));
    TestBroker { address, broker, _dir: dir }
}

pub struct Client {
    stream: TcpStream,
    correlation_id: i32,
}

impl Client {
    pub async fn connect(address: SocketAddr) -> Client {
        Client { stream: TcpStream::connect(address).await.unwrap(), correlation_id: 0 }
    }

    pub async fn send_raw(&mut self, frame: &[u8]) {
        self.stream.write_all(frame).await.unwrap();
    }

    /// Reads one response frame; None if the broker closed the connection.
    pub async fn read_frame(&mut self) -> Option<Bytes> {
        let size = self.stream.read_i32().await.ok()?;
        let mut body = vec![0u8; size as usize];
        self.stream.read_exact(&mut body).await.ok()?;
        Some(Bytes::from(body))
    }

    pub async fn call<Req: Encodable + HeaderVersion, Resp: Decodable + HeaderVersion>(&mut self, api: ApiKey, version: i16, request: &Req) -> Resp {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("odradek-integration-test")));
        let mut body = BytesMut::new();
        header.encode(&mut body, api.request_header_version(version)).unwrap();
        request.encode(&mut body, version).unwrap();
        let mut frame = BytesMut::new();
        frame.put_i32(body.len() as i32);
        frame.put_slice(&body);
        self.send_raw(&frame).await;
        let mut response = self.read_frame().await.expect("broker closed the connection");
        let header = ResponseHeader::decode(&mut response, api.response_header_version(version)).unwrap();
        assert_eq!(header.correlation_id, self.correlation_id);
        Resp::decode(&mut response, version).unwrap()
    }

    /// Produces one batch of `values` to partition 0; returns (error code, base offset).
    pub async fn produce(&mut self, topic: &str, values: &[&str], acks: i16, timeout_ms: i32) -> (i16, i64) {
        let request = ProduceRequest::default().with_acks(acks).with_timeout_ms(timeout_ms).with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(record_batch(values)))])]);
        let response: ProduceResponse = self.call(ApiKey::Produce, 9, &request).await;
        let answer = &response.responses[0].partition_responses[0];
        (answer.error_code, answer.base_offset)
    }
}

/// A producer's fields for [`producer_batch`].
#[derive(Clone, Copy, Debug)]
pub struct BatchProducer {
    pub id: i64,
    pub epoch: i16,
    pub first_sequence: i32,
    pub transactional: bool,
}

/// One uncompressed v2 batch of `values` keyed `key-0`, `key-1`, ...
pub fn record_batch(values: &[&str]) -> Bytes {
    encode_batch(values, None)
}

/// As [`record_batch`], written by an idempotent or transactional producer.
pub fn producer_batch(values: &[&str], producer: BatchProducer) -> Bytes {
    encode_batch(values, Some(producer))
}

fn encode_batch(values: &[&str], producer: Option<BatchProducer>) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, value)| Record {
            transactional: producer.is_some_and(|p| p.transactional),
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: producer.map_or(-1, |p| p.id),
            producer_epoch: producer.map_or(-1, |p| p.epoch),
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch unless offset - sequence is constant, and a produce request
            // carries exactly one batch per partition; without a producer the first sequence (-1) is the
            // batch's: none.
            sequence: producer.map_or(-1, |p| p.first_sequence) + i as i32,
            timestamp: 1_700_000_000_000 + i as i64,
            key: Some(Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::from(value.to_string())),
            headers: Default::default(),
        })
        .collect();
    let mut out = BytesMut::new();
    RecordBatchEncoder::encode(&mut out, &records, &RecordEncodeOptions { version: 2, compression: Compression::None }).unwrap();
    out.freeze()
}
