//! The broker: its identity (node id, cluster id, advertised address), the controller's metadata image and
//! the partitions this node hosts. After every metadata commit, [`Broker::reconcile`] brings the hosted
//! partitions in line with the image (open new ones, reconfigure, delete removed ones), so the image stays
//! the single source of truth.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use uuid::Uuid;

use crate::config::BrokerConfig;
use crate::controller::{self, ConfigChange, Controller, ControllerError, IncrementalChange, MetadataImage, NewTopic, TopicRef};
use crate::group::runtime::{group_config, GroupCoordinator};
use crate::partition::{Leadership, Partition, PartitionSettings};

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

pub struct Broker {
    pub config: BrokerConfig,
    pub node_id: i32,
    pub cluster_id: String,
    pub advertised_host: String,
    pub advertised_port: i32,
    pub rack: Option<String>,
    pub data_dir: PathBuf,
    pub controller: Controller,
    /// The group coordinator: one task per led `__consumer_offsets` partition, started lazily.
    pub groups: GroupCoordinator,
    /// Hosted partitions by topic id, in partition order.
    partitions: RwLock<HashMap<Uuid, Vec<Arc<Partition>>>>,
    /// Serialises reconciliation so two commits never open the same partition twice.
    reconcile_lock: Mutex<()>,
}

impl Broker {
    /// Opens the data directory (creating it), checks its identity, replays metadata and opens partitions.
    pub fn open(config: BrokerConfig, advertised: (String, i32)) -> anyhow::Result<Arc<Broker>> {
        let data_dir = PathBuf::from(config.get("log.dirs"));
        std::fs::create_dir_all(&data_dir).with_context(|| format!("creating data directory {}", data_dir.display()))?;
        let node_id = config.node_id();
        let cluster_id = load_or_create_identity(&data_dir, node_id)?;
        let controller = Controller::open(&data_dir, node_id, config.get_bool("log.flush.enable"))
            .with_context(|| format!("opening the metadata log in {}", data_dir.display()))?;
        let rack = Some(config.get("broker.rack").to_string()).filter(|r| !r.is_empty());
        let groups = GroupCoordinator::new(group_config(&config));
        let broker = Arc::new(Broker {
            groups,
            config,
            node_id,
            cluster_id,
            advertised_host: advertised.0,
            advertised_port: advertised.1,
            rack,
            data_dir,
            controller,
            partitions: RwLock::new(HashMap::new()),
            reconcile_lock: Mutex::new(()),
        });
        broker.reconcile().context("opening partitions")?;
        Ok(broker)
    }

    pub fn image(&self) -> Arc<MetadataImage> {
        self.controller.image()
    }

    pub fn partition(&self, topic: &str, index: i32) -> Option<Arc<Partition>> {
        let topic_id = self.image().topic(topic)?.topic_id;
        self.partition_by_id(&topic_id, index)
    }

    pub fn partition_by_id(&self, topic_id: &Uuid, index: i32) -> Option<Arc<Partition>> {
        let partitions = self.partitions.read().unwrap_or_else(|p| p.into_inner());
        partitions.get(topic_id)?.get(usize::try_from(index).ok()?).cloned()
    }

    pub fn all_partitions(&self) -> Vec<Arc<Partition>> {
        let partitions = self.partitions.read().unwrap_or_else(|p| p.into_inner());
        partitions.values().flatten().cloned().collect()
    }

    /// Creates a topic through the controller and opens its partitions.
    pub fn create_topic(&self, topic: &NewTopic, validate_only: bool) -> Result<(), ControllerError> {
        let node_id = self.node_id;
        if validate_only {
            controller::plan_create_topic(&self.image(), node_id, topic)?;
            return Ok(());
        }
        self.controller.commit(|image| controller::plan_create_topic(image, node_id, topic))?;
        self.reconcile()
    }

    /// Metadata's auto-creation with the broker defaults. Racing creators both succeed.
    pub fn auto_create_topic(&self, name: &str) -> Result<(), ControllerError> {
        let topic = NewTopic {
            name: name.to_string(),
            num_partitions: self.config.get_i32("num.partitions"),
            replication_factor: self.config.get_i32("default.replication.factor"),
            configs: BTreeMap::new(),
        };
        match self.create_topic(&topic, false) {
            Err(ControllerError::TopicExists(_)) => Ok(()),
            other => other,
        }
    }

    /// Deletes a topic through the controller and removes its partitions.
    pub fn delete_topic(&self, topic: &TopicRef) -> Result<(), ControllerError> {
        if !self.config.get_bool("delete.topic.enable") {
            return Err(ControllerError::TopicDeletionDisabled);
        }
        self.controller.commit(|image| controller::plan_delete_topic(image, topic))?;
        self.reconcile()
    }

    /// Grows a topic to `total` partitions (optionally manually assigned) and opens the new ones.
    pub fn create_partitions(&self, name: &str, total: i32, assignments: Option<&[Vec<i32>]>, validate_only: bool) -> Result<(), ControllerError> {
        let node_id = self.node_id;
        let plan = |image: &MetadataImage| controller::plan_create_partitions_with_assignments(image, node_id, name, total, assignments);
        if validate_only {
            plan(&self.image())?;
            return Ok(());
        }
        self.controller.commit(plan)?;
        self.reconcile()
    }

    /// Changes a topic's config overrides (`replace_all`: AlterConfigs, which drops overrides it does not
    /// name); reconcile re-applies them to the partitions.
    pub fn alter_topic_configs(&self, name: &str, changes: &[ConfigChange], replace_all: bool, validate_only: bool) -> Result<(), ControllerError> {
        let plan = |image: &MetadataImage| controller::plan_alter_topic_configs(image, name, changes, replace_all);
        if validate_only {
            plan(&self.image())?;
            return Ok(());
        }
        self.controller.commit(plan)?;
        self.reconcile()
    }

    /// IncrementalAlterConfigs on a topic. Planned under the commit lock, so APPEND/SUBTRACT see the
    /// overrides as they are at commit time.
    pub fn incremental_alter_topic_configs(&self, name: &str, changes: &[IncrementalChange], validate_only: bool) -> Result<(), ControllerError> {
        let plan = |image: &MetadataImage| controller::plan_incremental_alter_topic_configs(image, &self.config, name, changes);
        if validate_only {
            plan(&self.image())?;
            return Ok(());
        }
        self.controller.commit(plan)?;
        self.reconcile()
    }

    /// Brings hosted partitions in line with the metadata image.
    pub fn reconcile(&self) -> Result<(), ControllerError> {
        let _one_at_a_time = self.reconcile_lock.lock().unwrap_or_else(|p| p.into_inner());
        let image = self.image();
        let now = now_ms();
        let mut removed = Vec::new();
        {
            let mut hosted = self.partitions.write().unwrap_or_else(|p| p.into_inner());
            hosted.retain(|topic_id, partitions| {
                let keep = image.topic_by_id(topic_id).is_some();
                if !keep {
                    removed.append(partitions);
                }
                keep
            });
        }
        for partition in removed {
            let name = format!("{}-{}", partition.topic, partition.index);
            if let Err(e) = Partition::delete_shared(partition) {
                tracing::error!(partition = %name, error = %e, "failed to delete partition files");
            }
        }
        for topic in image.topics.values() {
            let settings = PartitionSettings {
                log: self.config.log_config(&topic.configs),
                cleaner: self.config.cleaner_config(&topic.configs),
                min_insync_replicas: self.config.topic_value(&topic.configs, "min.insync.replicas").parse().unwrap_or(1),
            };
            let existing = self.partitions.read().unwrap_or_else(|p| p.into_inner()).get(&topic.topic_id).cloned().unwrap_or_default();
            for partition in &existing {
                partition.reconfigure(settings.clone());
            }
            let mut opened = Vec::new();
            for (index, placement) in topic.partitions.iter().enumerate().skip(existing.len()) {
                if !placement.replicas.contains(&self.node_id) {
                    continue;
                }
                let leadership = Leadership {
                    leader: placement.leader,
                    leader_epoch: placement.leader_epoch,
                    // The metadata image has no partition epoch yet.
                    partition_epoch: 0,
                    replicas: placement.replicas.clone(),
                    isr: placement.isr.clone(),
                };
                let partition = Partition::open(
                    &self.data_dir,
                    &topic.name,
                    topic.topic_id,
                    index as i32,
                    settings.clone(),
                    leadership,
                    self.node_id,
                    now,
                )
                .map_err(|e| ControllerError::Io(std::io::Error::other(format!("opening {}-{index}: {e}", topic.name))))?;
                opened.push(Arc::new(partition));
            }
            if !opened.is_empty() {
                let mut hosted = self.partitions.write().unwrap_or_else(|p| p.into_inner());
                hosted.entry(topic.topic_id).or_default().extend(opened);
            }
        }
        Ok(())
    }

    /// Periodic retention and producer-state expiry over all partitions.
    pub fn housekeeping(&self) {
        let now = now_ms();
        let expiration = self.config.get_i64("producer.id.expiration.ms");
        for partition in self.all_partitions() {
            match partition.housekeeping(now, expiration) {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(topic = %partition.topic, partition = partition.index, deleted, "retention deleted segments"),
                Err(e) => tracing::warn!(topic = %partition.topic, partition = partition.index, error = %e, "retention failed"),
            }
        }
    }
}

/// Reads meta.properties (cluster.id, node.id) or writes it for a new data directory. A data directory of
/// another node is refused, as Kafka does.
fn load_or_create_identity(data_dir: &Path, node_id: i32) -> anyhow::Result<String> {
    let path = data_dir.join("meta.properties");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let value = |key: &str| text.lines().find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix('='))).map(str::trim);
        let stored_node: i32 = value("node.id").and_then(|v| v.parse().ok()).context("meta.properties has no valid node.id")?;
        if stored_node != node_id {
            bail!("data directory {} belongs to node {stored_node}, not node {node_id}", data_dir.display());
        }
        return Ok(value("cluster.id").context("meta.properties has no cluster.id")?.to_string());
    }
    let cluster_id = base64_url(Uuid::new_v4().as_bytes());
    let temp = data_dir.join("meta.properties.tmp");
    std::fs::write(&temp, format!("version=1\ncluster.id={cluster_id}\nnode.id={node_id}\n"))?;
    std::fs::rename(&temp, &path)?;
    Ok(cluster_id)
}

/// Kafka cluster ids are a UUID in unpadded URL-safe base64 (22 characters).
fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (*b as u32) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_look_like_kafkas() {
        assert_eq!(base64_url(&[0u8; 16]), "AAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(base64_url(b"\xfb\xff"), "-_8");
    }

    #[test]
    fn identity_is_kept_and_other_nodes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_identity(dir.path(), 1).unwrap();
        assert_eq!(first.len(), 22);
        assert_eq!(load_or_create_identity(dir.path(), 1).unwrap(), first);
        assert!(load_or_create_identity(dir.path(), 2).is_err());
    }
}
