//! Controller commands: what brokers ask the active controller to do. A command is planned on the quorum
//! leader against its up-to-date image (so two brokers creating the same topic cannot both succeed) and the
//! records it yields are committed. A broker that is not the leader forwards the encoded command over the
//! controller protocol and gets the encoded result back.
//!
//! The encoding is ours (it never leaves the cluster): a tag byte then the fields, every length checked
//! before use.

use std::collections::BTreeMap;

use bytes::BufMut;
use uuid::Uuid;

use super::quorum::codec::{DecodeError, Reader, Writer};
use super::{ConfigChange, ControllerError, IncrementalChange, NewTopic, TopicRef};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    CreateTopic { topic: NewTopic, validate_only: bool },
    DeleteTopic(TopicRef),
    CreatePartitions { name: String, total: i32, assignments: Option<Vec<Vec<i32>>>, validate_only: bool },
    AlterTopicConfigs { name: String, changes: Vec<ConfigChange>, replace_all: bool, validate_only: bool },
    IncrementalAlterTopicConfigs { name: String, changes: Vec<IncrementalChange>, validate_only: bool },
    AllocateProducerIds { broker: i32 },
    RegisterBroker { broker: i32, incarnation: Uuid, host: String, port: i32, rack: Option<String> },
    /// `want_shutdown`: controlled shutdown; the controller moves the broker's leaderships and fences it.
    BrokerHeartbeat { broker: i32, incarnation: Uuid, want_shutdown: bool },
    AlterPartition { topic_id: Uuid, partition: i32, leader: i32, leader_epoch: i32, partition_epoch: i32, new_isr: Vec<i32> },
    /// ElectLeaders: preferred, or `unclean` (an offline partition to any live replica).
    ElectLeader { topic: String, partition: i32, unclean: bool },
    /// AlterPartitionReassignments for one partition; `target: None` cancels.
    Reassign { topic: String, partition: i32, target: Option<Vec<i32>> },
}

/// What a committed command answers beyond success.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// Producer ids [start, start + PRODUCER_ID_BLOCK_SIZE) belong to the asking broker.
    ProducerIdBlock { start: i64 },
    /// The broker's state after the heartbeat.
    Heartbeat { fenced: bool },
}

const CREATE_TOPIC: u8 = 1;
const DELETE_TOPIC: u8 = 2;
const CREATE_PARTITIONS: u8 = 3;
const ALTER_TOPIC_CONFIGS: u8 = 4;
const INCREMENTAL_ALTER_TOPIC_CONFIGS: u8 = 5;
const ALLOCATE_PRODUCER_IDS: u8 = 6;
const REGISTER_BROKER: u8 = 7;
const BROKER_HEARTBEAT: u8 = 8;
const ALTER_PARTITION: u8 = 9;
const ELECT_LEADER: u8 = 10;
const REASSIGN: u8 = 11;

fn put_i32(out: &mut Vec<u8>, v: i32) {
    out.put_i32(v);
}

fn put_i32s(out: &mut Vec<u8>, values: &[i32]) {
    out.put_u32(values.len() as u32);
    values.iter().for_each(|v| out.put_i32(*v));
}

fn put_option_string(out: &mut Vec<u8>, value: &Option<String>) {
    out.put_bool(value.is_some());
    if let Some(value) = value {
        out.put_string(value);
    }
}

fn get_i32(r: &mut Reader) -> Result<i32, DecodeError> {
    Ok(r.u32()? as i32)
}

fn get_i32s(r: &mut Reader) -> Result<Vec<i32>, DecodeError> {
    let count = r.count(4, "int32 array")?;
    (0..count).map(|_| get_i32(r)).collect()
}

fn get_option_string(r: &mut Reader) -> Result<Option<String>, DecodeError> {
    Ok(if r.bool()? { Some(r.string()?) } else { None })
}

fn get_uuid(r: &mut Reader) -> Result<Uuid, DecodeError> {
    let bytes = r.bytes()?;
    Uuid::from_slice(bytes).map_err(|_| DecodeError(format!("uuid of {} bytes", bytes.len())))
}

fn put_uuid(out: &mut Vec<u8>, id: &Uuid) {
    out.put_sized(id.as_bytes());
}

fn put_assignments(out: &mut Vec<u8>, assignments: &Option<Vec<Vec<i32>>>) {
    out.put_bool(assignments.is_some());
    if let Some(lists) = assignments {
        out.put_u32(lists.len() as u32);
        lists.iter().for_each(|l| put_i32s(out, l));
    }
}

fn get_assignments(r: &mut Reader) -> Result<Option<Vec<Vec<i32>>>, DecodeError> {
    if !r.bool()? {
        return Ok(None);
    }
    let count = r.count(4, "replica lists")?;
    Ok(Some((0..count).map(|_| get_i32s(r)).collect::<Result<_, _>>()?))
}

impl Command {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        match self {
            Command::CreateTopic { topic, validate_only } => {
                out.put_u8(CREATE_TOPIC);
                out.put_string(&topic.name);
                put_i32(&mut out, topic.num_partitions);
                put_i32(&mut out, topic.replication_factor);
                out.put_u32(topic.configs.len() as u32);
                for (name, value) in &topic.configs {
                    out.put_string(name);
                    out.put_string(value);
                }
                put_assignments(&mut out, &topic.assignments);
                out.put_bool(*validate_only);
            }
            Command::DeleteTopic(topic) => {
                out.put_u8(DELETE_TOPIC);
                match topic {
                    TopicRef::Name(name) => {
                        out.put_u8(0);
                        out.put_string(name);
                    }
                    TopicRef::Id(id) => {
                        out.put_u8(1);
                        put_uuid(&mut out, id);
                    }
                }
            }
            Command::CreatePartitions { name, total, assignments, validate_only } => {
                out.put_u8(CREATE_PARTITIONS);
                out.put_string(name);
                put_i32(&mut out, *total);
                put_assignments(&mut out, assignments);
                out.put_bool(*validate_only);
            }
            Command::AlterTopicConfigs { name, changes, replace_all, validate_only } => {
                out.put_u8(ALTER_TOPIC_CONFIGS);
                out.put_string(name);
                out.put_u32(changes.len() as u32);
                for change in changes {
                    match change {
                        ConfigChange::Set(key, value) => {
                            out.put_u8(0);
                            out.put_string(key);
                            out.put_string(value);
                        }
                        ConfigChange::Delete(key) => {
                            out.put_u8(1);
                            out.put_string(key);
                        }
                    }
                }
                out.put_bool(*replace_all);
                out.put_bool(*validate_only);
            }
            Command::IncrementalAlterTopicConfigs { name, changes, validate_only } => {
                out.put_u8(INCREMENTAL_ALTER_TOPIC_CONFIGS);
                out.put_string(name);
                out.put_u32(changes.len() as u32);
                for change in changes {
                    let (op, key, value) = match change {
                        IncrementalChange::Set(k, v) => (0, k, Some(v)),
                        IncrementalChange::Delete(k) => (1, k, None),
                        IncrementalChange::Append(k, v) => (2, k, Some(v)),
                        IncrementalChange::Subtract(k, v) => (3, k, Some(v)),
                    };
                    out.put_u8(op);
                    out.put_string(key);
                    put_option_string(&mut out, &value.cloned());
                }
                out.put_bool(*validate_only);
            }
            Command::AllocateProducerIds { broker } => {
                out.put_u8(ALLOCATE_PRODUCER_IDS);
                put_i32(&mut out, *broker);
            }
            Command::RegisterBroker { broker, incarnation, host, port, rack } => {
                out.put_u8(REGISTER_BROKER);
                put_i32(&mut out, *broker);
                put_uuid(&mut out, incarnation);
                out.put_string(host);
                put_i32(&mut out, *port);
                put_option_string(&mut out, rack);
            }
            Command::BrokerHeartbeat { broker, incarnation, want_shutdown } => {
                out.put_u8(BROKER_HEARTBEAT);
                put_i32(&mut out, *broker);
                put_uuid(&mut out, incarnation);
                out.put_bool(*want_shutdown);
            }
            Command::AlterPartition { topic_id, partition, leader, leader_epoch, partition_epoch, new_isr } => {
                out.put_u8(ALTER_PARTITION);
                put_uuid(&mut out, topic_id);
                put_i32(&mut out, *partition);
                put_i32(&mut out, *leader);
                put_i32(&mut out, *leader_epoch);
                put_i32(&mut out, *partition_epoch);
                put_i32s(&mut out, new_isr);
            }
            Command::ElectLeader { topic, partition, unclean } => {
                out.put_u8(ELECT_LEADER);
                out.put_string(topic);
                put_i32(&mut out, *partition);
                out.put_bool(*unclean);
            }
            Command::Reassign { topic, partition, target } => {
                out.put_u8(REASSIGN);
                out.put_string(topic);
                put_i32(&mut out, *partition);
                out.put_bool(target.is_some());
                if let Some(target) = target {
                    put_i32s(&mut out, target);
                }
            }
        }
        out
    }

    pub fn decode(buf: &[u8]) -> Result<Command, DecodeError> {
        let mut r = Reader::new(buf);
        let command = match r.u8()? {
            CREATE_TOPIC => {
                let name = r.string()?;
                let num_partitions = get_i32(&mut r)?;
                let replication_factor = get_i32(&mut r)?;
                let count = r.count(8, "configs")?;
                let mut configs = BTreeMap::new();
                for _ in 0..count {
                    configs.insert(r.string()?, r.string()?);
                }
                let assignments = get_assignments(&mut r)?;
                let validate_only = r.bool()?;
                Command::CreateTopic { topic: NewTopic { name, num_partitions, replication_factor, configs, assignments }, validate_only }
            }
            DELETE_TOPIC => Command::DeleteTopic(match r.u8()? {
                0 => TopicRef::Name(r.string()?),
                _ => TopicRef::Id(get_uuid(&mut r)?),
            }),
            CREATE_PARTITIONS => Command::CreatePartitions {
                name: r.string()?,
                total: get_i32(&mut r)?,
                assignments: get_assignments(&mut r)?,
                validate_only: r.bool()?,
            },
            ALTER_TOPIC_CONFIGS => {
                let name = r.string()?;
                let count = r.count(5, "config changes")?;
                let mut changes = Vec::with_capacity(count);
                for _ in 0..count {
                    changes.push(match r.u8()? {
                        0 => ConfigChange::Set(r.string()?, r.string()?),
                        _ => ConfigChange::Delete(r.string()?),
                    });
                }
                Command::AlterTopicConfigs { name, changes, replace_all: r.bool()?, validate_only: r.bool()? }
            }
            INCREMENTAL_ALTER_TOPIC_CONFIGS => {
                let name = r.string()?;
                let count = r.count(6, "config changes")?;
                let mut changes = Vec::with_capacity(count);
                for _ in 0..count {
                    let op = r.u8()?;
                    let key = r.string()?;
                    let value = get_option_string(&mut r)?.unwrap_or_default();
                    changes.push(match op {
                        0 => IncrementalChange::Set(key, value),
                        1 => IncrementalChange::Delete(key),
                        2 => IncrementalChange::Append(key, value),
                        3 => IncrementalChange::Subtract(key, value),
                        other => return Err(DecodeError(format!("config operation {other}"))),
                    });
                }
                Command::IncrementalAlterTopicConfigs { name, changes, validate_only: r.bool()? }
            }
            ALLOCATE_PRODUCER_IDS => Command::AllocateProducerIds { broker: get_i32(&mut r)? },
            REGISTER_BROKER => Command::RegisterBroker {
                broker: get_i32(&mut r)?,
                incarnation: get_uuid(&mut r)?,
                host: r.string()?,
                port: get_i32(&mut r)?,
                rack: get_option_string(&mut r)?,
            },
            BROKER_HEARTBEAT => {
                Command::BrokerHeartbeat { broker: get_i32(&mut r)?, incarnation: get_uuid(&mut r)?, want_shutdown: r.bool()? }
            }
            ALTER_PARTITION => Command::AlterPartition {
                topic_id: get_uuid(&mut r)?,
                partition: get_i32(&mut r)?,
                leader: get_i32(&mut r)?,
                leader_epoch: get_i32(&mut r)?,
                partition_epoch: get_i32(&mut r)?,
                new_isr: get_i32s(&mut r)?,
            },
            ELECT_LEADER => Command::ElectLeader { topic: r.string()?, partition: get_i32(&mut r)?, unclean: r.bool()? },
            REASSIGN => Command::Reassign {
                topic: r.string()?,
                partition: get_i32(&mut r)?,
                target: if r.bool()? { Some(get_i32s(&mut r)?) } else { None },
            },
            other => return Err(DecodeError(format!("command kind {other}"))),
        };
        r.finish()?;
        Ok(command)
    }
}

/// A command's result as it travels back to the forwarding broker: the outcome and the metadata log index
/// that holds its records, or the error as (Kafka code, message).
pub fn encode_result(result: &Result<(Outcome, u64), ControllerError>) -> Vec<u8> {
    use crate::protocol::errors::KafkaCode;
    let mut out = Vec::with_capacity(32);
    match result {
        Ok((outcome, index)) => {
            out.put_u8(0);
            out.put_u64(*index);
            match outcome {
                Outcome::Done => out.put_u8(0),
                Outcome::ProducerIdBlock { start } => {
                    out.put_u8(1);
                    out.put_u64(*start as u64);
                }
                Outcome::Heartbeat { fenced } => {
                    out.put_u8(2);
                    out.put_bool(*fenced);
                }
            }
        }
        Err(e) => {
            out.put_u8(1);
            out.put_u16(e.error_code() as u16);
            out.put_string(&e.to_string());
        }
    }
    out
}

pub fn decode_result(buf: &[u8]) -> Result<Result<(Outcome, u64), ControllerError>, DecodeError> {
    let mut r = Reader::new(buf);
    let result = match r.u8()? {
        0 => {
            let index = r.u64()?;
            let outcome = match r.u8()? {
                0 => Outcome::Done,
                1 => Outcome::ProducerIdBlock { start: r.u64()? as i64 },
                2 => Outcome::Heartbeat { fenced: r.bool()? },
                other => return Err(DecodeError(format!("outcome kind {other}"))),
            };
            Ok((outcome, index))
        }
        _ => {
            let code = r.u16()? as i16;
            Err(ControllerError::Remote { code, message: r.string()? })
        }
    };
    r.finish()?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_round_trips_and_truncation_is_an_error() {
        let id = Uuid::from_u128(42);
        let commands = vec![
            Command::CreateTopic {
                topic: NewTopic {
                    name: "t".into(),
                    num_partitions: 3,
                    replication_factor: 2,
                    configs: BTreeMap::from([("retention.ms".into(), "5".into())]),
                    assignments: Some(vec![vec![1, 2], vec![2, 3]]),
                },
                validate_only: true,
            },
            Command::DeleteTopic(TopicRef::Name("t".into())),
            Command::DeleteTopic(TopicRef::Id(id)),
            Command::CreatePartitions { name: "t".into(), total: 4, assignments: None, validate_only: false },
            Command::AlterTopicConfigs {
                name: "t".into(),
                changes: vec![ConfigChange::Set("a".into(), "b".into()), ConfigChange::Delete("c".into())],
                replace_all: true,
                validate_only: false,
            },
            Command::IncrementalAlterTopicConfigs {
                name: "t".into(),
                changes: vec![
                    IncrementalChange::Set("a".into(), "1".into()),
                    IncrementalChange::Delete("b".into()),
                    IncrementalChange::Append("c".into(), "x".into()),
                    IncrementalChange::Subtract("d".into(), "y".into()),
                ],
                validate_only: true,
            },
            Command::AllocateProducerIds { broker: 3 },
            Command::RegisterBroker { broker: 2, incarnation: id, host: "h".into(), port: 9093, rack: Some("r".into()) },
            Command::BrokerHeartbeat { broker: 2, incarnation: id, want_shutdown: true },
            Command::AlterPartition { topic_id: id, partition: 1, leader: 2, leader_epoch: 3, partition_epoch: 4, new_isr: vec![2, 1] },
            Command::ElectLeader { topic: "t".into(), partition: 0, unclean: true },
            Command::Reassign { topic: "t".into(), partition: 1, target: Some(vec![3, 1]) },
            Command::Reassign { topic: "t".into(), partition: 1, target: None },
        ];
        for command in commands {
            let encoded = command.encode();
            assert_eq!(Command::decode(&encoded).unwrap(), command);
            for cut in 0..encoded.len() {
                assert!(Command::decode(&encoded[..cut]).is_err(), "{command:?} cut at {cut}");
            }
        }
    }

    #[test]
    fn results_round_trip_with_the_kafka_code() {
        for result in [Ok((Outcome::Done, 7)), Ok((Outcome::ProducerIdBlock { start: 2000 }, 8)), Ok((Outcome::Heartbeat { fenced: true }, 9))] {
            let decoded = decode_result(&encode_result(&result)).unwrap();
            assert_eq!(decoded.unwrap(), result.unwrap());
        }
        let error = Err(ControllerError::TopicExists("t".into()));
        match decode_result(&encode_result(&error)).unwrap() {
            Err(ControllerError::Remote { code, message }) => assert_eq!((code, message.as_str()), (36, "topic t already exists")),
            other => panic!("{other:?}"),
        }
    }
}
