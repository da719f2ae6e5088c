//! The controller: the single writer of cluster metadata, replicated by a Raft quorum (openraft).
//!
//! - Plans are pure functions of the metadata image that return records: topics and configs here,
//!   [`placement`] of new replicas across brokers and racks, [`cluster`] membership and leadership (broker
//!   registration and fencing, elections from the ISR, AlterPartition, reassignments).
//! - [`commands`]: what brokers ask for; [`runtime`] plans a command on the quorum leader against an up-to-date
//!   image and commits the records (or forwards the command to the leader), and fences brokers whose
//!   heartbeats stop.
//! - [`quorum`]: the replicated metadata log; every node applies committed records to its [`image`].
//!   State changes only when records are applied. A single node is a quorum of one running the same code.

pub mod cluster;
pub mod commands;
pub mod image;
pub mod placement;
pub mod quorum;
pub mod records;
pub mod runtime;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kafka_protocol::ResponseError;
use uuid::Uuid;

use crate::config::{self, BrokerConfig, ConfigError};
pub use image::{MetadataImage, PartitionImage, TopicImage};
pub use records::{ConfigResource, MetadataRecord};
pub use runtime::Controller;

/// Producer ids are handed out in blocks; each block costs one metadata record.
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;
/// Kafka's limit on topic name length.
pub const MAX_TOPIC_NAME_LENGTH: usize = 249;
/// Upper bound on partitions per topic, so a request cannot make us open millions of files.
pub const MAX_PARTITIONS_PER_TOPIC: i32 = 10_000;
/// The metadata log's topic name: its directory is `__cluster_metadata-0`, so no user topic may take it.
pub const CLUSTER_METADATA_TOPIC: &str = "__cluster_metadata";
/// Upper bound on one metadata record (the largest is a config value).
const MAX_RECORD_BYTES: usize = 1 << 20;

#[derive(thiserror::Error, Debug)]
pub enum ControllerError {
    #[error("topic {0} already exists")]
    TopicExists(String),
    #[error("topic {0} does not exist")]
    UnknownTopic(String),
    #[error("topic id {0} does not exist")]
    UnknownTopicId(Uuid),
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopic { name: String, reason: String },
    /// The message is a complete sentence: clients show it as it is.
    #[error("{0}")]
    InvalidPartitions(String),
    #[error("invalid replication factor {factor}: {reason}")]
    InvalidReplicationFactor { factor: i32, reason: String },
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    #[error(transparent)]
    InvalidConfig(#[from] ConfigError),
    /// CreateTopics configs without a value.
    #[error("Null value not supported for topic configs: {}", .0.join(","))]
    NullConfigValues(Vec<String>),
    #[error("topic deletion is disabled (delete.topic.enable=false)")]
    TopicDeletionDisabled,
    #[error("{0}")]
    InvalidRequest(String),
    #[error("metadata log: {0}")]
    Io(#[from] std::io::Error),
    /// No controller could be reached (no quorum leader, or it did not answer in time). Clients retry.
    #[error("no active controller: {0}")]
    NotController(String),
    /// An error the active controller returned for a forwarded command: its Kafka code and message.
    #[error("{message}")]
    Remote { code: i16, message: String },
    #[error("AlterPartition refused: {0}")]
    AlterPartition(#[from] cluster::AlterPartitionError),
    /// A heartbeat from a process the controller no longer knows (it must register again).
    #[error("broker {0} is registered with another incarnation")]
    StaleBrokerEpoch(i32),
    #[error("the preferred leader is already the leader")]
    ElectionNotNeeded,
    #[error("{0}")]
    PreferredLeaderNotAvailable(String),
    #[error("{0}")]
    EligibleLeadersNotAvailable(String),
    #[error("{0}")]
    NoReassignmentInProgress(String),
}

impl ControllerError {
    /// A create that lost a race with another creator of the same topic, locally or at the controller.
    pub fn is_topic_exists(&self) -> bool {
        use crate::protocol::errors::KafkaCode;
        matches!(self, ControllerError::TopicExists(_)) || matches!(self, ControllerError::Remote { .. } if self.error_code() == 36)
    }

    /// The controller answered an AlterPartition with a refusal (here or forwarded), as opposed to not answering.
    pub fn is_alter_partition_refusal(&self) -> bool {
        const REFUSALS: [ResponseError; 5] = [
            ResponseError::UnknownTopicOrPartition,
            ResponseError::NotLeaderOrFollower,
            ResponseError::FencedLeaderEpoch,
            ResponseError::InvalidUpdateVersion,
            ResponseError::IneligibleReplica,
        ];
        match self {
            ControllerError::AlterPartition(_) => true,
            ControllerError::Remote { code, .. } => REFUSALS.iter().any(|r| r.code() == *code),
            _ => false,
        }
    }
}

/// Checks a topic name as Kafka does: 1..=249 of [a-zA-Z0-9._-], not "." or "..".
pub fn validate_topic_name(name: &str) -> Result<(), ControllerError> {
    let invalid = |reason: &str| ControllerError::InvalidTopic { name: name.to_string(), reason: reason.to_string() };
    if name.is_empty() {
        return Err(invalid("the name is empty"));
    }
    if name == "." || name == ".." {
        return Err(invalid("'.' and '..' are not allowed"));
    }
    if name.len() > MAX_TOPIC_NAME_LENGTH {
        return Err(invalid("longer than 249 characters"));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-') {
        return Err(invalid("only ASCII letters, digits, '.', '_' and '-' are allowed"));
    }
    Ok(())
}

/// What CreateTopics asks for, after defaults are filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewTopic {
    pub name: String,
    pub num_partitions: i32,
    pub replication_factor: i32,
    pub configs: BTreeMap<String, String>,
    /// Manual replica lists for partitions 0..n (already checked for shape), instead of placement.
    pub assignments: Option<Vec<Vec<i32>>>,
}

/// Plans the records that create a topic.
pub fn plan_create_topic(image: &MetadataImage, topic: &NewTopic) -> Result<Vec<MetadataRecord>, ControllerError> {
    validate_topic_name(&topic.name)?;
    if topic.name == CLUSTER_METADATA_TOPIC {
        // Its partition directory would be the metadata log's own directory.
        return Err(ControllerError::InvalidRequest(format!("Creation of internal topic {CLUSTER_METADATA_TOPIC} is prohibited.")));
    }
    if image.topic(&topic.name).is_some() {
        return Err(ControllerError::TopicExists(topic.name.clone()));
    }
    if let Some(existing) = colliding_topic(image, &topic.name) {
        return Err(ControllerError::InvalidTopic {
            name: topic.name.clone(),
            reason: format!("it collides with existing topic {existing} ('.' and '_' are the same in metric names)"),
        });
    }
    if topic.num_partitions < 1 || topic.num_partitions > MAX_PARTITIONS_PER_TOPIC {
        return Err(ControllerError::InvalidPartitions(format!(
            "Invalid partition count {}: must be between 1 and {MAX_PARTITIONS_PER_TOPIC}.",
            topic.num_partitions
        )));
    }
    for (name, value) in &topic.configs {
        config::validate_topic_config(name, value)?;
    }
    let topic_id = Uuid::new_v4();
    let assignments = match &topic.assignments {
        Some(assignments) => {
            for replicas in assignments {
                check_replica_list(image, replicas)?;
            }
            assignments.clone()
        }
        None => {
            let (start, shift) = spread_seed(&topic_id);
            placement::assign_replicas(image, 0, topic.num_partitions, topic.replication_factor, start, shift)?
        }
    };
    let mut records = vec![MetadataRecord::Topic { name: topic.name.clone(), topic_id }];
    records.extend(assignments.into_iter().enumerate().map(|(partition, replicas)| new_partition(image, topic_id, partition as i32, replicas)));
    records.extend(topic.configs.iter().map(|(name, value)| MetadataRecord::Config {
        resource: ConfigResource::Topic(topic.name.clone()),
        name: name.clone(),
        value: Some(value.clone()),
    }));
    Ok(records)
}

/// Where placement starts for a topic: Kafka picks at random; the fresh topic id is random already.
fn spread_seed(topic_id: &Uuid) -> (usize, usize) {
    let bytes = topic_id.as_bytes();
    (bytes[0] as usize, bytes[1] as usize)
}

/// A new partition: every replica in sync (the log is empty), led by the first live replica.
fn new_partition(image: &MetadataImage, topic_id: Uuid, partition: i32, replicas: Vec<i32>) -> MetadataRecord {
    let leader = replicas.iter().copied().find(|&b| image.is_live(b)).unwrap_or(-1);
    MetadataRecord::Partition {
        topic_id,
        partition,
        isr: replicas.clone(),
        replicas,
        leader,
        leader_epoch: 0,
        partition_epoch: 0,
        adding: Vec::new(),
        removing: Vec::new(),
    }
}

/// Plans CreatePartitions: grow `name` to `total` partitions.
pub fn plan_create_partitions(image: &MetadataImage, name: &str, total: i32) -> Result<Vec<MetadataRecord>, ControllerError> {
    plan_create_partitions_with_assignments(image, name, total, None)
}

/// Plans CreatePartitions with optional manual assignments, one replica list per new partition. New
/// partitions get the replication factor of partition 0.
pub fn plan_create_partitions_with_assignments(
    image: &MetadataImage,
    name: &str,
    total: i32,
    assignments: Option<&[Vec<i32>]>,
) -> Result<Vec<MetadataRecord>, ControllerError> {
    let topic = image.topic(name).ok_or_else(|| ControllerError::UnknownTopic(name.to_string()))?;
    let current = topic.partitions.len() as i32;
    if total == current {
        return Err(ControllerError::InvalidPartitions(format!("Topic already has {current} partition(s).")));
    }
    if total < current {
        return Err(ControllerError::InvalidPartitions(format!(
            "The topic {name} currently has {current} partition(s); {total} would not be an increase."
        )));
    }
    if total > MAX_PARTITIONS_PER_TOPIC {
        return Err(ControllerError::InvalidPartitions(format!(
            "Invalid partition count {total}: a topic has at most {MAX_PARTITIONS_PER_TOPIC} partitions."
        )));
    }
    let additional = (total - current) as usize;
    let replica_lists = match assignments {
        Some(assignments) => {
            if assignments.len() != additional {
                return Err(ControllerError::InvalidReplicaAssignment(format!(
                    "Attempted to add {additional} additional partition(s), but only {} assignment(s) were specified.",
                    assignments.len()
                )));
            }
            for replicas in assignments {
                check_replica_list(image, replicas)?;
            }
            assignments.to_vec()
        }
        None => {
            let factor = topic.partitions.first().map(|p| p.replicas.len() as i32).unwrap_or(1);
            let (start, shift) = spread_seed(&topic.topic_id);
            placement::assign_replicas(image, current, total - current, factor, start, shift)?
        }
    };
    Ok(replica_lists.into_iter().zip(current..total).map(|(replicas, p)| new_partition(image, topic.topic_id, p, replicas)).collect())
}

/// Checks one manually assigned replica list: not empty, registered brokers, each once.
pub fn check_replica_list(image: &MetadataImage, replicas: &[i32]) -> Result<(), ControllerError> {
    let invalid = |reason: String| Err(ControllerError::InvalidReplicaAssignment(reason));
    if replicas.is_empty() {
        return invalid("The manual partition assignment includes an empty replica list.".into());
    }
    if let Some(unknown) = replicas.iter().find(|&&broker| image.broker(broker).is_none()) {
        return invalid(format!("The manual partition assignment includes broker {unknown}, but no such broker is registered."));
    }
    for (i, broker) in replicas.iter().enumerate() {
        if replicas[..i].contains(broker) {
            return invalid(format!("The manual partition assignment includes the broker {broker} more than once."));
        }
    }
    Ok(())
}

/// Checks CreateTopics' manual assignments, given as (partition index, replicas): every index once, the indexes
/// 0..n, every replica list valid. Returns the replica lists in partition order.
pub fn check_manual_assignment(image: &MetadataImage, assignments: &[(i32, Vec<i32>)]) -> Result<Vec<Vec<i32>>, ControllerError> {
    let mut by_partition = BTreeMap::new();
    for (partition, replicas) in assignments {
        if by_partition.insert(*partition, replicas.clone()).is_some() {
            return Err(ControllerError::InvalidReplicaAssignment(format!(
                "Found multiple manual partition assignments for partition {partition}"
            )));
        }
        check_replica_list(image, replicas)?;
    }
    // The map is sorted and duplicate-free, so the indexes are 0..n exactly when the last one is n - 1.
    let count = by_partition.len() as i32;
    if by_partition.keys().next().is_some_and(|&first| first != 0) || by_partition.keys().last().is_some_and(|&last| last != count - 1) {
        return Err(ControllerError::InvalidReplicaAssignment("partitions should be a consecutive 0-based integer sequence".into()));
    }
    Ok(by_partition.into_values().collect())
}

/// Kafka treats '.' and '_' as the same character in metric names, so two topics may not differ only in
/// them. Returns the existing topic `name` collides with.
pub fn colliding_topic<'a>(image: &'a MetadataImage, name: &str) -> Option<&'a str> {
    if !name.contains(['.', '_']) {
        return None;
    }
    let unified = name.replace('.', "_");
    image.topics.keys().find(|existing| existing.as_str() != name && existing.replace('.', "_") == unified).map(String::as_str)
}

/// One requested change to a config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigChange {
    Set(String, String),
    Delete(String),
}

/// Plans config changes of a topic. With `replace_all` (AlterConfigs), overrides not named are removed.
pub fn plan_alter_topic_configs(
    image: &MetadataImage,
    name: &str,
    changes: &[ConfigChange],
    replace_all: bool,
) -> Result<Vec<MetadataRecord>, ControllerError> {
    let topic = image.topic(name).ok_or_else(|| ControllerError::UnknownTopic(name.to_string()))?;
    let resource = ConfigResource::Topic(name.to_string());
    let mut records = Vec::new();
    if replace_all {
        for existing in topic.configs.keys() {
            let kept = changes.iter().any(|c| matches!(c, ConfigChange::Set(n, _) if n == existing));
            if !kept {
                records.push(MetadataRecord::Config { resource: resource.clone(), name: existing.clone(), value: None });
            }
        }
    }
    for change in changes {
        match change {
            ConfigChange::Set(key, value) => {
                config::validate_topic_config(key, value)?;
                records.push(MetadataRecord::Config { resource: resource.clone(), name: key.clone(), value: Some(value.clone()) });
            }
            ConfigChange::Delete(key) => {
                if config::topic_property(key).is_none() {
                    return Err(ConfigError::Unknown(key.clone()).into());
                }
                records.push(MetadataRecord::Config { resource: resource.clone(), name: key.clone(), value: None });
            }
        }
    }
    Ok(records)
}

/// One IncrementalAlterConfigs operation, with Kafka's wire codes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IncrementalChange {
    /// SET (0).
    Set(String, String),
    /// DELETE (1): back to the default.
    Delete(String),
    /// APPEND (2): add list items not present yet (list configs only).
    Append(String, String),
    /// SUBTRACT (3): remove list items (list configs only).
    Subtract(String, String),
}

/// Turns incremental operations into plain changes against the topic's current overrides. APPEND and SUBTRACT
/// start from the effective value (the override, else the broker default), as Kafka does.
pub fn resolve_incremental_changes(
    broker_config: &BrokerConfig,
    overrides: &BTreeMap<String, String>,
    changes: &[IncrementalChange],
) -> Result<Vec<ConfigChange>, ControllerError> {
    let list_edit = |key: &str, items: &str, append: bool| -> Result<ConfigChange, ControllerError> {
        let property = config::topic_property(key).ok_or_else(|| ConfigError::Unknown(key.to_string()))?;
        if property.kind != config::PropertyType::List {
            let op = if append { "APPEND" } else { "SUBTRACT" };
            return Err(ConfigError::InvalidValue {
                name: key.to_string(),
                value: items.to_string(),
                reason: format!("can't {op} to it because its type is not LIST"),
            }
            .into());
        }
        let split = |value: &str| value.split(',').map(str::trim).filter(|item| !item.is_empty()).map(String::from).collect::<Vec<_>>();
        let mut current = split(broker_config.topic_value(overrides, key));
        for item in split(items) {
            if append && !current.contains(&item) {
                current.push(item);
            } else if !append {
                current.retain(|existing| *existing != item);
            }
        }
        Ok(ConfigChange::Set(key.to_string(), current.join(",")))
    };
    changes
        .iter()
        .map(|change| match change {
            IncrementalChange::Set(key, value) => Ok(ConfigChange::Set(key.clone(), value.clone())),
            IncrementalChange::Delete(key) => Ok(ConfigChange::Delete(key.clone())),
            IncrementalChange::Append(key, items) => list_edit(key, items, true),
            IncrementalChange::Subtract(key, items) => list_edit(key, items, false),
        })
        .collect()
}

/// Plans IncrementalAlterConfigs on a topic: only the named configs change.
pub fn plan_incremental_alter_topic_configs(
    image: &MetadataImage,
    broker_config: &BrokerConfig,
    name: &str,
    changes: &[IncrementalChange],
) -> Result<Vec<MetadataRecord>, ControllerError> {
    let topic = image.topic(name).ok_or_else(|| ControllerError::UnknownTopic(name.to_string()))?;
    let resolved = resolve_incremental_changes(broker_config, &topic.configs, changes)?;
    plan_alter_topic_configs(image, name, &resolved, false)
}

/// A topic as DeleteTopics names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TopicRef {
    Name(String),
    Id(Uuid),
}

/// Finds the topic a request names, with the error Kafka gives for each way of naming it.
pub fn resolve_topic<'a>(image: &'a MetadataImage, topic: &TopicRef) -> Result<&'a TopicImage, ControllerError> {
    match topic {
        TopicRef::Name(name) => image.topic(name).ok_or_else(|| ControllerError::UnknownTopic(name.clone())),
        TopicRef::Id(id) => image.topic_by_id(id).ok_or(ControllerError::UnknownTopicId(*id)),
    }
}

/// Plans DeleteTopics for one topic. Its configs go with it; `Broker::reconcile` removes its partitions.
pub fn plan_delete_topic(image: &MetadataImage, topic: &TopicRef) -> Result<Vec<MetadataRecord>, ControllerError> {
    let topic = resolve_topic(image, topic)?;
    Ok(vec![MetadataRecord::RemoveTopic { topic_id: topic.topic_id }])
}

/// Reads the records of a single-node metadata log written before the replicated quorum existed
/// (`metadata.log`: frames of [length u32][crc32c u32][record]), stopping at a torn or corrupt tail. The
/// controller proposes them once into an empty quorum so an old data directory keeps its topics.
pub fn read_legacy_metadata_log(dir: &Path) -> std::io::Result<Vec<MetadataRecord>> {
    let bytes = match std::fs::read(dir.join(LEGACY_METADATA_LOG)) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut records = Vec::new();
    let mut position = 0;
    while bytes.len() - position >= 8 {
        let header = &bytes[position..position + 8];
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        if len > MAX_RECORD_BYTES || bytes.len() - position - 8 < len {
            break;
        }
        let payload = &bytes[position + 8..position + 8 + len];
        if crc32c::crc32c(payload) != crc {
            break;
        }
        match MetadataRecord::decode(payload) {
            Ok(record) => records.push(record),
            Err(e) => {
                tracing::warn!(error = %e, position, "stopping the legacy metadata replay at an undecodable record");
                break;
            }
        }
        position += 8 + len;
    }
    Ok(records)
}

/// The single-node metadata log's file name (renamed once migrated).
pub const LEGACY_METADATA_LOG: &str = "metadata.log";

/// Renames the legacy log out of the way once its records are in the quorum.
pub fn retire_legacy_metadata_log(dir: &Path) -> std::io::Result<()> {
    match std::fs::rename(dir.join(LEGACY_METADATA_LOG), dir.join(format!("{LEGACY_METADATA_LOG}.migrated"))) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

pub fn metadata_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("__cluster_metadata-0")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_topic(name: &str, partitions: i32) -> NewTopic {
        NewTopic { name: name.into(), num_partitions: partitions, replication_factor: 1, configs: BTreeMap::new(), assignments: None }
    }

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("orders.v1_eu-west").is_ok());
        for bad in ["", ".", "..", "a b", "topic/1", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn create_topic_plans_topic_partitions_and_configs() {
        let mut topic = new_topic("t", 3);
        topic.configs.insert("retention.ms".into(), "100".into());
        let mut image = image_with(&[]);
        let records = plan_create_topic(&image, &topic).unwrap();
        assert_eq!(records.len(), 1 + 3 + 1);
        records.iter().for_each(|r| image.apply(r));
        let t = image.topic("t").unwrap();
        assert_eq!(t.partitions.len(), 3);
        assert_eq!(t.partitions[2].leader, 1);
        assert_eq!(t.configs.get("retention.ms").map(String::as_str), Some("100"));
        assert!(matches!(plan_create_topic(&image, &topic), Err(ControllerError::TopicExists(_))));
        assert!(matches!(plan_create_topic(&image, &new_topic("u", 0)), Err(ControllerError::InvalidPartitions(_))));
        let mut bad_config = new_topic("v", 1);
        bad_config.configs.insert("retention.ms".into(), "soon".into());
        assert!(matches!(plan_create_topic(&image, &bad_config), Err(ControllerError::InvalidConfig(_))));
    }

    #[test]
    fn a_legacy_metadata_log_is_read_up_to_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let records = [
            MetadataRecord::Topic { name: "kept".into(), topic_id: Uuid::from_u128(1) },
            MetadataRecord::ProducerIds { broker: 1, next_block_start: 1000 },
        ];
        let mut bytes = Vec::new();
        for record in &records {
            let payload = record.encode();
            bytes.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            bytes.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
            bytes.extend_from_slice(&payload);
        }
        bytes.extend_from_slice(&[0, 0, 0, 50, 1, 2]);
        std::fs::write(dir.path().join(LEGACY_METADATA_LOG), &bytes).unwrap();
        assert_eq!(read_legacy_metadata_log(dir.path()).unwrap(), records);
        assert!(read_legacy_metadata_log(&dir.path().join("none")).unwrap().is_empty());
    }

    /// An image with broker 1 registered and live, and the given topics.
    fn image_with(topics: &[(&str, i32)]) -> MetadataImage {
        let mut image = MetadataImage::default();
        image.apply(&MetadataRecord::RegisterBroker { broker: 1, incarnation: Uuid::nil(), host: "h".into(), port: 9092, rack: None });
        image.apply(&MetadataRecord::BrokerFencing { broker: 1, fenced: false });
        for (name, partitions) in topics {
            let records = plan_create_topic(&image, &new_topic(name, *partitions)).unwrap();
            records.iter().for_each(|r| image.apply(r));
        }
        image
    }

    #[test]
    fn the_metadata_topic_and_colliding_names_cannot_be_created() {
        let image = image_with(&[("a.b", 1)]);
        let reserved = plan_create_topic(&image, &new_topic(CLUSTER_METADATA_TOPIC, 1));
        assert!(matches!(reserved, Err(ControllerError::InvalidRequest(_))));
        assert!(matches!(plan_create_topic(&image, &new_topic("a_b", 1)), Err(ControllerError::InvalidTopic { .. })));
        assert!(matches!(plan_create_topic(&image, &new_topic("a.b", 1)), Err(ControllerError::TopicExists(_))));
        assert!(plan_create_topic(&image, &new_topic("a-b", 1)).is_ok());
        assert_eq!(colliding_topic(&image, "a_b"), Some("a.b"));
        assert_eq!(colliding_topic(&image, "ab"), None);
    }

    #[test]
    fn create_partitions_checks_count_and_assignments() {
        let image = image_with(&[("t", 2)]);
        let same = plan_create_partitions(&image, "t", 2).unwrap_err();
        assert_eq!(same.to_string(), "Topic already has 2 partition(s).");
        let fewer = plan_create_partitions(&image, "t", 1).unwrap_err();
        assert_eq!(fewer.to_string(), "The topic t currently has 2 partition(s); 1 would not be an increase.");
        assert!(matches!(plan_create_partitions(&image, "u", 3), Err(ControllerError::UnknownTopic(_))));
        assert!(matches!(plan_create_partitions(&image, "t", MAX_PARTITIONS_PER_TOPIC + 1), Err(ControllerError::InvalidPartitions(_))));

        let two = [vec![1], vec![1]];
        assert_eq!(plan_create_partitions_with_assignments(&image, "t", 4, Some(&two)).unwrap().len(), 2);
        let too_few = plan_create_partitions_with_assignments(&image, "t", 5, Some(&two)).unwrap_err();
        assert_eq!(too_few.to_string(), "Attempted to add 3 additional partition(s), but only 2 assignment(s) were specified.");
        for bad in [vec![], vec![2], vec![1, 1]] {
            let assignments = [vec![1], bad.clone()];
            let result = plan_create_partitions_with_assignments(&image, "t", 4, Some(&assignments));
            assert!(matches!(result, Err(ControllerError::InvalidReplicaAssignment(_))), "{bad:?}");
        }
    }

    #[test]
    fn manual_assignments_must_name_registered_brokers_once_and_partitions_zero_to_n() {
        let image = image_with(&[]);
        assert_eq!(check_manual_assignment(&image, &[(1, vec![1]), (0, vec![1])]).unwrap(), vec![vec![1], vec![1]]);
        let cases: [&[(i32, Vec<i32>)]; 5] = [
            &[(0, vec![1]), (0, vec![1])],
            &[(0, vec![1]), (2, vec![1])],
            &[(1, vec![1])],
            &[(0, vec![2])],
            &[(0, vec![])],
        ];
        for case in cases {
            assert!(matches!(check_manual_assignment(&image, case), Err(ControllerError::InvalidReplicaAssignment(_))), "{case:?}");
        }
        assert!(matches!(check_manual_assignment(&image, &[(-1, vec![1])]), Err(ControllerError::InvalidReplicaAssignment(_))));
    }

    #[test]
    fn alter_configs_replace_all_removes_unnamed_overrides() {
        let mut image = image_with(&[]);
        let mut topic = new_topic("t", 1);
        topic.configs.insert("retention.ms".into(), "100".into());
        topic.configs.insert("segment.bytes".into(), "2048".into());
        plan_create_topic(&image, &topic).unwrap().iter().for_each(|r| image.apply(r));

        let replace = [ConfigChange::Set("retention.ms".into(), "200".into())];
        let mut replaced = image.clone();
        plan_alter_topic_configs(&image, "t", &replace, true).unwrap().iter().for_each(|r| replaced.apply(r));
        let configs = &replaced.topic("t").unwrap().configs;
        assert_eq!(configs.len(), 1);
        assert_eq!(configs["retention.ms"], "200");

        let mut merged = image.clone();
        plan_alter_topic_configs(&image, "t", &replace, false).unwrap().iter().for_each(|r| merged.apply(r));
        assert_eq!(merged.topic("t").unwrap().configs.len(), 2);

        let bad = [ConfigChange::Set("retention.ms".into(), "soon".into())];
        assert!(matches!(plan_alter_topic_configs(&image, "t", &bad, true), Err(ControllerError::InvalidConfig(_))));
        assert!(matches!(plan_alter_topic_configs(&image, "u", &replace, true), Err(ControllerError::UnknownTopic(_))));
    }

    #[test]
    fn incremental_changes_append_and_subtract_list_items() {
        let broker = BrokerConfig::default();
        let mut overrides = BTreeMap::new();
        let append = [IncrementalChange::Append("cleanup.policy".into(), "compact".into())];
        let resolved = resolve_incremental_changes(&broker, &overrides, &append).unwrap();
        assert!(matches!(&resolved[..], [ConfigChange::Set(k, v)] if k == "cleanup.policy" && v == "delete,compact"));

        overrides.insert("cleanup.policy".to_string(), "delete,compact".to_string());
        let again = resolve_incremental_changes(&broker, &overrides, &append).unwrap();
        assert!(matches!(&again[..], [ConfigChange::Set(_, v)] if v == "delete,compact"));
        let subtract = [IncrementalChange::Subtract("cleanup.policy".into(), "delete".into())];
        let resolved = resolve_incremental_changes(&broker, &overrides, &subtract).unwrap();
        assert!(matches!(&resolved[..], [ConfigChange::Set(_, v)] if v == "compact"));

        let not_a_list = [IncrementalChange::Append("retention.ms".into(), "1".into())];
        assert!(matches!(resolve_incremental_changes(&broker, &overrides, &not_a_list), Err(ControllerError::InvalidConfig(_))));
        let unknown = [IncrementalChange::Subtract("no.such".into(), "1".into())];
        assert!(matches!(resolve_incremental_changes(&broker, &overrides, &unknown), Err(ControllerError::InvalidConfig(_))));
    }

    #[test]
    fn incremental_plan_sets_and_deletes_and_validates_the_result() {
        let broker = BrokerConfig::default();
        let mut image = image_with(&[]);
        let mut topic = new_topic("t", 1);
        topic.configs.insert("retention.ms".into(), "100".into());
        plan_create_topic(&image, &topic).unwrap().iter().for_each(|r| image.apply(r));

        let changes = [
            IncrementalChange::Delete("retention.ms".into()),
            IncrementalChange::Set("segment.bytes".into(), "4096".into()),
        ];
        plan_incremental_alter_topic_configs(&image, &broker, "t", &changes).unwrap().iter().for_each(|r| image.apply(r));
        let configs = &image.topic("t").unwrap().configs;
        assert_eq!(configs.keys().collect::<Vec<_>>(), ["segment.bytes"]);

        // Subtracting every item leaves an empty policy, which is not a valid value.
        let empty = [IncrementalChange::Subtract("cleanup.policy".into(), "delete".into())];
        assert!(matches!(plan_incremental_alter_topic_configs(&image, &broker, "t", &empty), Err(ControllerError::InvalidConfig(_))));
    }

    #[test]
    fn delete_topic_by_name_or_id_removes_topic_and_configs() {
        let mut image = image_with(&[("t", 2), ("u", 1)]);
        let id = image.topic("t").unwrap().topic_id;
        assert!(matches!(plan_delete_topic(&image, &TopicRef::Name("x".into())), Err(ControllerError::UnknownTopic(_))));
        assert!(matches!(plan_delete_topic(&image, &TopicRef::Id(Uuid::from_u128(7))), Err(ControllerError::UnknownTopicId(_))));
        let records = plan_delete_topic(&image, &TopicRef::Id(id)).unwrap();
        assert_eq!(records, vec![MetadataRecord::RemoveTopic { topic_id: id }]);
        records.iter().for_each(|r| image.apply(r));
        assert!(image.topic("t").is_none() && image.topic_by_id(&id).is_none());
        assert!(image.topic("u").is_some());
        // The name is free again, under a new id.
        let recreate = plan_create_topic(&image, &new_topic("t", 1)).unwrap();
        recreate.iter().for_each(|r| image.apply(r));
        assert_ne!(image.topic("t").unwrap().topic_id, id);
        assert!(plan_delete_topic(&image, &TopicRef::Name("u".into())).is_ok());
    }
}
