//! Metadata records: every change to topics, partitions, configs and producer-id blocks is one of these,
//! appended to the metadata log and then applied to the image. The encoding is ours (the log never leaves the
//! broker): a tag byte then the fields; every length is checked against the bytes left before it is used.

use bytes::{Buf, BufMut};
use uuid::Uuid;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigResource {
    Topic(String),
    Broker(i32),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetadataRecord {
    Topic { name: String, topic_id: Uuid },
    /// A partition's placement and leadership. `leader` is -1 while no in-sync replica is alive (offline);
    /// `partition_epoch` grows with every change, so a stale ISR change from a leader can be refused.
    /// During a reassignment `replicas` holds old and new replicas; `adding` and `removing` say which is which.
    Partition {
        topic_id: Uuid,
        partition: i32,
        replicas: Vec<i32>,
        isr: Vec<i32>,
        leader: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        adding: Vec<i32>,
        removing: Vec<i32>,
    },
    /// `value: None` removes the override.
    Config { resource: ConfigResource, name: String, value: Option<String> },
    RemoveTopic { topic_id: Uuid },
    /// Producer ids below `next_block_start` are handed out; a broker owns [start, next_block_start).
    ProducerIds { broker: i32, next_block_start: i64 },
    /// A broker (re)registers: its client address and rack. `incarnation` is new on every process start, so a
    /// heartbeat from an older process of the same node is told apart. A registered broker starts fenced.
    RegisterBroker { broker: i32, incarnation: Uuid, host: String, port: i32, rack: Option<String> },
    /// A fenced broker leads nothing and is not in any ISR it could leave; it is unfenced by its heartbeats.
    BrokerFencing { broker: i32, fenced: bool },
    /// The cluster's id, written once by the first controller leader.
    ClusterId { id: String },
}

#[derive(thiserror::Error, Debug, PartialEq, Eq)]
#[error("corrupt metadata record: {0}")]
pub struct RecordDecodeError(pub String);

const TAG_TOPIC: u8 = 1;
const TAG_PARTITION: u8 = 2;
const TAG_CONFIG: u8 = 3;
const TAG_REMOVE_TOPIC: u8 = 4;
const TAG_PRODUCER_IDS: u8 = 5;
/// The partition record with its partition epoch (tag 2 is the single-node layout without it).
const TAG_PARTITION_WITH_EPOCH: u8 = 6;
const TAG_REGISTER_BROKER: u8 = 7;
const TAG_BROKER_FENCING: u8 = 8;
const TAG_CLUSTER_ID: u8 = 9;
const RESOURCE_TOPIC: u8 = 2;
const RESOURCE_BROKER: u8 = 4;

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.put_u32(s.len() as u32);
    out.put_slice(s.as_bytes());
}

fn put_i32s(out: &mut Vec<u8>, values: &[i32]) {
    out.put_u32(values.len() as u32);
    values.iter().for_each(|v| out.put_i32(*v));
}

impl MetadataRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        match self {
            MetadataRecord::Topic { name, topic_id } => {
                out.put_u8(TAG_TOPIC);
                put_string(&mut out, name);
                out.put_slice(topic_id.as_bytes());
            }
            MetadataRecord::Partition { topic_id, partition, replicas, isr, leader, leader_epoch, partition_epoch, adding, removing } => {
                out.put_u8(TAG_PARTITION_WITH_EPOCH);
                out.put_slice(topic_id.as_bytes());
                out.put_i32(*partition);
                put_i32s(&mut out, replicas);
                put_i32s(&mut out, isr);
                out.put_i32(*leader);
                out.put_i32(*leader_epoch);
                out.put_i32(*partition_epoch);
                put_i32s(&mut out, adding);
                put_i32s(&mut out, removing);
            }
            MetadataRecord::Config { resource, name, value } => {
                out.put_u8(TAG_CONFIG);
                match resource {
                    ConfigResource::Topic(topic) => {
                        out.put_u8(RESOURCE_TOPIC);
                        put_string(&mut out, topic);
                    }
                    ConfigResource::Broker(id) => {
                        out.put_u8(RESOURCE_BROKER);
                        out.put_i32(*id);
                    }
                }
                put_string(&mut out, name);
                match value {
                    Some(value) => {
                        out.put_u8(1);
                        put_string(&mut out, value);
                    }
                    None => out.put_u8(0),
                }
            }
            MetadataRecord::RemoveTopic { topic_id } => {
                out.put_u8(TAG_REMOVE_TOPIC);
                out.put_slice(topic_id.as_bytes());
            }
            MetadataRecord::ProducerIds { broker, next_block_start } => {
                out.put_u8(TAG_PRODUCER_IDS);
                out.put_i32(*broker);
                out.put_i64(*next_block_start);
            }
            MetadataRecord::RegisterBroker { broker, incarnation, host, port, rack } => {
                out.put_u8(TAG_REGISTER_BROKER);
                out.put_i32(*broker);
                out.put_slice(incarnation.as_bytes());
                put_string(&mut out, host);
                out.put_i32(*port);
                match rack {
                    Some(rack) => {
                        out.put_u8(1);
                        put_string(&mut out, rack);
                    }
                    None => out.put_u8(0),
                }
            }
            MetadataRecord::BrokerFencing { broker, fenced } => {
                out.put_u8(TAG_BROKER_FENCING);
                out.put_i32(*broker);
                out.put_u8(u8::from(*fenced));
            }
            MetadataRecord::ClusterId { id } => {
                out.put_u8(TAG_CLUSTER_ID);
                put_string(&mut out, id);
            }
        }
        out
    }

    pub fn decode(mut buf: &[u8]) -> Result<MetadataRecord, RecordDecodeError> {
        let record = match get_u8(&mut buf)? {
            TAG_TOPIC => MetadataRecord::Topic { name: get_string(&mut buf)?, topic_id: get_uuid(&mut buf)? },
            tag @ (TAG_PARTITION | TAG_PARTITION_WITH_EPOCH) => MetadataRecord::Partition {
                topic_id: get_uuid(&mut buf)?,
                partition: get_i32(&mut buf)?,
                replicas: get_i32s(&mut buf)?,
                isr: get_i32s(&mut buf)?,
                leader: get_i32(&mut buf)?,
                leader_epoch: get_i32(&mut buf)?,
                partition_epoch: if tag == TAG_PARTITION_WITH_EPOCH { get_i32(&mut buf)? } else { 0 },
                adding: if tag == TAG_PARTITION_WITH_EPOCH { get_i32s(&mut buf)? } else { Vec::new() },
                removing: if tag == TAG_PARTITION_WITH_EPOCH { get_i32s(&mut buf)? } else { Vec::new() },
            },
            TAG_CONFIG => {
                let resource = match get_u8(&mut buf)? {
                    RESOURCE_TOPIC => ConfigResource::Topic(get_string(&mut buf)?),
                    RESOURCE_BROKER => ConfigResource::Broker(get_i32(&mut buf)?),
                    other => return Err(RecordDecodeError(format!("unknown config resource type {other}"))),
                };
                let name = get_string(&mut buf)?;
                let value = match get_u8(&mut buf)? {
                    0 => None,
                    _ => Some(get_string(&mut buf)?),
                };
                MetadataRecord::Config { resource, name, value }
            }
            TAG_REMOVE_TOPIC => MetadataRecord::RemoveTopic { topic_id: get_uuid(&mut buf)? },
            TAG_PRODUCER_IDS => MetadataRecord::ProducerIds { broker: get_i32(&mut buf)?, next_block_start: get_i64(&mut buf)? },
            TAG_REGISTER_BROKER => MetadataRecord::RegisterBroker {
                broker: get_i32(&mut buf)?,
                incarnation: get_uuid(&mut buf)?,
                host: get_string(&mut buf)?,
                port: get_i32(&mut buf)?,
                rack: match get_u8(&mut buf)? {
                    0 => None,
                    _ => Some(get_string(&mut buf)?),
                },
            },
            TAG_BROKER_FENCING => MetadataRecord::BrokerFencing { broker: get_i32(&mut buf)?, fenced: get_u8(&mut buf)? != 0 },
            TAG_CLUSTER_ID => MetadataRecord::ClusterId { id: get_string(&mut buf)? },
            other => return Err(RecordDecodeError(format!("unknown record tag {other}"))),
        };
        if !buf.is_empty() {
            return Err(RecordDecodeError(format!("{} bytes after the record", buf.len())));
        }
        Ok(record)
    }
}

fn need(buf: &[u8], bytes: usize, what: &str) -> Result<(), RecordDecodeError> {
    if buf.remaining() < bytes {
        return Err(RecordDecodeError(format!("{what} needs {bytes} bytes, {} left", buf.remaining())));
    }
    Ok(())
}

fn get_u8(buf: &mut &[u8]) -> Result<u8, RecordDecodeError> {
    need(buf, 1, "tag")?;
    Ok(buf.get_u8())
}

fn get_i32(buf: &mut &[u8]) -> Result<i32, RecordDecodeError> {
    need(buf, 4, "int32")?;
    Ok(buf.get_i32())
}

fn get_i64(buf: &mut &[u8]) -> Result<i64, RecordDecodeError> {
    need(buf, 8, "int64")?;
    Ok(buf.get_i64())
}

fn get_uuid(buf: &mut &[u8]) -> Result<Uuid, RecordDecodeError> {
    need(buf, 16, "uuid")?;
    let mut bytes = [0u8; 16];
    buf.copy_to_slice(&mut bytes);
    Ok(Uuid::from_bytes(bytes))
}

fn get_string(buf: &mut &[u8]) -> Result<String, RecordDecodeError> {
    need(buf, 4, "string length")?;
    let len = buf.get_u32() as usize;
    need(buf, len, "string")?;
    let s = std::str::from_utf8(&buf[..len]).map_err(|e| RecordDecodeError(format!("string: {e}")))?.to_string();
    buf.advance(len);
    Ok(s)
}

fn get_i32s(buf: &mut &[u8]) -> Result<Vec<i32>, RecordDecodeError> {
    need(buf, 4, "array length")?;
    let count = buf.get_u32() as usize;
    need(buf, count.saturating_mul(4), "int32 array")?;
    Ok((0..count).map(|_| buf.get_i32()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_record_round_trips() {
        let id = Uuid::from_u128(0x1234);
        let records = [
            MetadataRecord::Topic { name: "orders".into(), topic_id: id },
            MetadataRecord::Partition { topic_id: id, partition: 3, replicas: vec![1, 2], isr: vec![1], leader: 1, leader_epoch: 4, partition_epoch: 7, adding: vec![2], removing: vec![] },
            MetadataRecord::RegisterBroker { broker: 2, incarnation: id, host: "h".into(), port: 9093, rack: Some("r1".into()) },
            MetadataRecord::RegisterBroker { broker: 3, incarnation: id, host: "h".into(), port: 9094, rack: None },
            MetadataRecord::BrokerFencing { broker: 2, fenced: true },
            MetadataRecord::ClusterId { id: "abc".into() },
            MetadataRecord::Config { resource: ConfigResource::Topic("orders".into()), name: "retention.ms".into(), value: Some("5".into()) },
            MetadataRecord::Config { resource: ConfigResource::Broker(1), name: "x".into(), value: None },
            MetadataRecord::RemoveTopic { topic_id: id },
            MetadataRecord::ProducerIds { broker: 1, next_block_start: 2000 },
        ];
        for record in records {
            assert_eq!(MetadataRecord::decode(&record.encode()), Ok(record));
        }
    }

    #[test]
    fn truncated_and_lying_input_is_an_error() {
        let encoded = MetadataRecord::Topic { name: "orders".into(), topic_id: Uuid::nil() }.encode();
        for cut in 0..encoded.len() {
            assert!(MetadataRecord::decode(&encoded[..cut]).is_err());
        }
        assert!(MetadataRecord::decode(&[TAG_PARTITION, 0, 0]).is_err());
        let mut huge_array = vec![TAG_PARTITION];
        huge_array.extend_from_slice(&[0; 16]);
        huge_array.extend_from_slice(&[0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff]);
        assert!(MetadataRecord::decode(&huge_array).is_err());
        assert!(MetadataRecord::decode(&[99]).is_err());
    }
}
