//! The metadata image: what the replayed metadata log says about topics, partitions and configs. Immutable;
//! each committed batch of records produces a new image that readers pick up as an `Arc`.

use std::collections::{BTreeMap, HashMap};

use uuid::Uuid;

use super::records::{ConfigResource, MetadataRecord};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionImage {
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// -1: offline (no in-sync replica is alive).
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    /// An ongoing reassignment: replicas being added (catching up) and replicas to remove once they have.
    pub adding: Vec<i32>,
    pub removing: Vec<i32>,
}

impl PartitionImage {
    /// The replicas a reassignment is heading for (all replicas when none is ongoing).
    pub fn target_replicas(&self) -> Vec<i32> {
        self.replicas.iter().copied().filter(|b| !self.removing.contains(b)).collect()
    }

    pub fn is_reassigning(&self) -> bool {
        !self.adding.is_empty() || !self.removing.is_empty()
    }

    /// The record that sets partition `index` of `topic_id` to this state.
    pub fn to_record(&self, topic_id: Uuid, index: usize) -> MetadataRecord {
        MetadataRecord::Partition {
            topic_id,
            partition: index as i32,
            replicas: self.replicas.clone(),
            isr: self.isr.clone(),
            leader: self.leader,
            leader_epoch: self.leader_epoch,
            partition_epoch: self.partition_epoch,
            adding: self.adding.clone(),
            removing: self.removing.clone(),
        }
    }
}

/// A registered broker as clients and peers see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerImage {
    pub node_id: i32,
    pub incarnation: Uuid,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
    /// A fenced broker missed its heartbeats (or shut down): it leads nothing and clients are not sent to it.
    pub fenced: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicImage {
    pub name: String,
    pub topic_id: Uuid,
    pub partitions: Vec<PartitionImage>,
    /// Topic config overrides (Kafka names); everything else takes the broker default.
    pub configs: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default)]
pub struct MetadataImage {
    pub topics: BTreeMap<String, TopicImage>,
    pub topic_names: HashMap<Uuid, String>,
    pub broker_configs: BTreeMap<i32, BTreeMap<String, String>>,
    pub next_producer_id_block: i64,
    pub brokers: BTreeMap<i32, BrokerImage>,
    pub cluster_id: Option<String>,
}

impl MetadataImage {
    pub fn topic(&self, name: &str) -> Option<&TopicImage> {
        self.topics.get(name)
    }

    pub fn topic_by_id(&self, topic_id: &Uuid) -> Option<&TopicImage> {
        self.topic_names.get(topic_id).and_then(|name| self.topics.get(name))
    }

    pub fn broker(&self, node_id: i32) -> Option<&BrokerImage> {
        self.brokers.get(&node_id)
    }

    /// Registered brokers that are not fenced, in node id order.
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerImage> {
        self.brokers.values().filter(|b| !b.fenced)
    }

    pub fn is_live(&self, node_id: i32) -> bool {
        self.brokers.get(&node_id).is_some_and(|b| !b.fenced)
    }

    /// An empty image with the given brokers registered and live, for tests of plans.
    #[cfg(test)]
    pub fn with_live_brokers(ids: &[i32]) -> MetadataImage {
        let mut image = MetadataImage::default();
        for &id in ids {
            image.apply(&MetadataRecord::RegisterBroker { broker: id, incarnation: Uuid::nil(), host: "localhost".into(), port: 9092, rack: None });
            image.apply(&MetadataRecord::BrokerFencing { broker: id, fenced: false });
        }
        image
    }

    /// The records that rebuild this image when applied to an empty one, in a deterministic order: what a
    /// snapshot of the metadata log holds.
    pub fn to_records(&self) -> Vec<MetadataRecord> {
        let mut records = Vec::new();
        if let Some(id) = &self.cluster_id {
            records.push(MetadataRecord::ClusterId { id: id.clone() });
        }
        for b in self.brokers.values() {
            records.push(MetadataRecord::RegisterBroker {
                broker: b.node_id,
                incarnation: b.incarnation,
                host: b.host.clone(),
                port: b.port,
                rack: b.rack.clone(),
            });
            records.push(MetadataRecord::BrokerFencing { broker: b.node_id, fenced: b.fenced });
        }
        for topic in self.topics.values() {
            records.push(MetadataRecord::Topic { name: topic.name.clone(), topic_id: topic.topic_id });
            records.extend(topic.partitions.iter().enumerate().map(|(index, p)| p.to_record(topic.topic_id, index)));
            records.extend(topic.configs.iter().map(|(name, value)| MetadataRecord::Config {
                resource: ConfigResource::Topic(topic.name.clone()),
                name: name.clone(),
                value: Some(value.clone()),
            }));
        }
        for (broker, configs) in &self.broker_configs {
            records.extend(configs.iter().map(|(name, value)| MetadataRecord::Config {
                resource: ConfigResource::Broker(*broker),
                name: name.clone(),
                value: Some(value.clone()),
            }));
        }
        if self.next_producer_id_block != 0 {
            // `broker` is not part of the image; apply ignores it.
            records.push(MetadataRecord::ProducerIds { broker: -1, next_block_start: self.next_producer_id_block });
        }
        records
    }

    /// Applies one record. Records come from our own committed log, so a record about an unknown topic is
    /// ignored rather than trusted to create state.
    pub fn apply(&mut self, record: &MetadataRecord) {
        match record {
            MetadataRecord::Topic { name, topic_id } => {
                self.topic_names.insert(*topic_id, name.clone());
                self.topics.insert(
                    name.clone(),
                    TopicImage { name: name.clone(), topic_id: *topic_id, partitions: Vec::new(), configs: BTreeMap::new() },
                );
            }
            MetadataRecord::Partition { topic_id, partition, replicas, isr, leader, leader_epoch, partition_epoch, adding, removing } => {
                let Some(name) = self.topic_names.get(topic_id) else { return };
                let Some(topic) = self.topics.get_mut(name) else { return };
                let image = PartitionImage {
                    replicas: replicas.clone(),
                    isr: isr.clone(),
                    leader: *leader,
                    leader_epoch: *leader_epoch,
                    partition_epoch: *partition_epoch,
                    adding: adding.clone(),
                    removing: removing.clone(),
                };
                let index = *partition as usize;
                if index < topic.partitions.len() {
                    topic.partitions[index] = image;
                } else if index == topic.partitions.len() {
                    topic.partitions.push(image);
                }
            }
            MetadataRecord::Config { resource, name, value } => {
                let configs = match resource {
                    ConfigResource::Topic(topic) => match self.topics.get_mut(topic) {
                        Some(topic) => &mut topic.configs,
                        None => return,
                    },
                    ConfigResource::Broker(id) => self.broker_configs.entry(*id).or_default(),
                };
                match value {
                    Some(value) => configs.insert(name.clone(), value.clone()),
                    None => configs.remove(name),
                };
            }
            MetadataRecord::RemoveTopic { topic_id } => {
                if let Some(name) = self.topic_names.remove(topic_id) {
                    self.topics.remove(&name);
                }
            }
            MetadataRecord::ProducerIds { next_block_start, .. } => {
                self.next_producer_id_block = self.next_producer_id_block.max(*next_block_start);
            }
            MetadataRecord::RegisterBroker { broker, incarnation, host, port, rack } => {
                self.brokers.insert(
                    *broker,
                    BrokerImage { node_id: *broker, incarnation: *incarnation, host: host.clone(), port: *port, rack: rack.clone(), fenced: true },
                );
            }
            MetadataRecord::BrokerFencing { broker, fenced } => {
                if let Some(b) = self.brokers.get_mut(broker) {
                    b.fenced = *fenced;
                }
            }
            MetadataRecord::ClusterId { id } => {
                // The first one wins: the id never changes once clients have seen it.
                if self.cluster_id.is_none() {
                    self.cluster_id = Some(id.clone());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_records_rebuilds_the_same_image() {
        let id = Uuid::from_u128(9);
        let mut image = MetadataImage::default();
        for record in [
            MetadataRecord::Topic { name: "t".into(), topic_id: id },
            MetadataRecord::RegisterBroker { broker: 2, incarnation: id, host: "h".into(), port: 1, rack: None },
            MetadataRecord::BrokerFencing { broker: 2, fenced: false },
            MetadataRecord::ClusterId { id: "cluster".into() },
            MetadataRecord::RegisterBroker { broker: 1, incarnation: id, host: "h".into(), port: 2, rack: Some("r".into()) },
            MetadataRecord::Partition { topic_id: id, partition: 0, replicas: vec![1, 2], isr: vec![2], leader: 2, leader_epoch: 3, partition_epoch: 5, adding: vec![], removing: vec![2] },
            MetadataRecord::Partition { topic_id: id, partition: 1, replicas: vec![1], isr: vec![1], leader: 1, leader_epoch: 0, partition_epoch: 0, adding: vec![], removing: vec![] },
            MetadataRecord::Config { resource: ConfigResource::Topic("t".into()), name: "retention.ms".into(), value: Some("5".into()) },
            MetadataRecord::Config { resource: ConfigResource::Broker(2), name: "x".into(), value: Some("y".into()) },
            MetadataRecord::ProducerIds { broker: 1, next_block_start: 2000 },
        ] {
            image.apply(&record);
        }
        let mut rebuilt = MetadataImage::default();
        image.to_records().iter().for_each(|r| rebuilt.apply(r));
        assert_eq!(rebuilt.topics, image.topics);
        assert_eq!(rebuilt.topic_names, image.topic_names);
        assert_eq!(rebuilt.broker_configs, image.broker_configs);
        assert_eq!(rebuilt.brokers, image.brokers);
        assert_eq!(rebuilt.cluster_id.as_deref(), Some("cluster"));
        assert!(!rebuilt.brokers[&2].fenced && rebuilt.brokers[&1].fenced);
        assert_eq!(rebuilt.next_producer_id_block, 2000);
        assert_eq!(rebuilt.to_records(), image.to_records());
    }
}
