//! The metadata image: what the replayed metadata log says about topics, partitions and configs. Immutable;
//! each committed batch of records produces a new image that readers pick up as an `Arc`.

use std::collections::{BTreeMap, HashMap};

use uuid::Uuid;

use super::records::{ConfigResource, MetadataRecord};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionImage {
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub leader: i32,
    pub leader_epoch: i32,
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
}

impl MetadataImage {
    pub fn topic(&self, name: &str) -> Option<&TopicImage> {
        self.topics.get(name)
    }

    pub fn topic_by_id(&self, topic_id: &Uuid) -> Option<&TopicImage> {
        self.topic_names.get(topic_id).and_then(|name| self.topics.get(name))
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
            MetadataRecord::Partition { topic_id, partition, replicas, isr, leader, leader_epoch } => {
                let Some(name) = self.topic_names.get(topic_id) else { return };
                let Some(topic) = self.topics.get_mut(name) else { return };
                let image = PartitionImage { replicas: replicas.clone(), isr: isr.clone(), leader: *leader, leader_epoch: *leader_epoch };
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
        }
    }
}
