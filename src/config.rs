//! Broker and topic configuration, keyed by Kafka's own property names.
//!
//! One table, [`BROKER_PROPERTIES`], lists every supported broker property with its type, default and unit. It
//! drives parsing (TOML file, `--set key=value`), validation, DescribeConfigs for the broker resource and the
//! commented example in config/. [`TOPIC_PROPERTIES`] does the same for topic configs, each of which falls back
//! to a broker property (`retention.ms` ← `log.retention.ms`) as in Kafka.

use std::collections::BTreeMap;
use std::path::Path;

use crate::log::{CleanerConfig, LogConfig, TimestampType};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PropertyType {
    Boolean,
    Int,
    Long,
    Double,
    Text,
    /// Comma-separated list.
    List,
}

impl PropertyType {
    /// Kafka's DescribeConfigs config_type codes.
    pub fn describe_configs_code(self) -> i8 {
        match self {
            PropertyType::Boolean => 1,
            PropertyType::Text => 2,
            PropertyType::Int => 3,
            PropertyType::Long => 5,
            PropertyType::Double => 6,
            PropertyType::List => 7,
        }
    }
}

pub struct Property {
    pub name: &'static str,
    pub kind: PropertyType,
    pub default: &'static str,
    pub doc: &'static str,
    /// Accepted values for enumerations; empty means any value of the type.
    pub choices: &'static [&'static str],
    /// Smallest accepted number, for Int and Long.
    pub min: i64,
}

const fn prop(name: &'static str, kind: PropertyType, default: &'static str, doc: &'static str) -> Property {
    Property { name, kind, default, doc, choices: &[], min: i64::MIN }
}

const fn at_least(mut p: Property, min: i64) -> Property {
    p.min = min;
    p
}

const fn one_of(mut p: Property, choices: &'static [&'static str]) -> Property {
    p.choices = choices;
    p
}

use PropertyType::*;

pub static BROKER_PROPERTIES: &[Property] = &[
    at_least(prop("node.id", Int, "1", "Id of this broker in the cluster."), 0),
    prop("listeners", Text, "127.0.0.1:9092", "Address the broker listens on, HOST:PORT."),
    prop("advertised.listeners", Text, "", "Address clients are told to connect to, HOST:PORT; empty means the listen address."),
    prop("log.dirs", Text, "./odradek-data", "Directory holding partition data and the metadata log."),
    prop("broker.rack", Text, "", "Rack of this broker, reported in Metadata."),
    at_least(prop("socket.request.max.bytes", Int, "104857600", "Largest request frame accepted, in bytes; larger frames close the connection before anything is allocated."), 64),
    at_least(prop("queued.max.requests", Int, "500", "Requests a connection may have in flight before the broker stops reading from it."), 1),
    at_least(prop("connections.max.idle.ms", Long, "600000", "Close connections idle for longer than this, in milliseconds."), 1),
    at_least(prop("max.connections", Int, "10000", "Most client connections open at once; further ones are refused."), 1),
    prop("auto.create.topics.enable", Boolean, "true", "Create a topic when a client asks Metadata for one that does not exist."),
    prop("delete.topic.enable", Boolean, "true", "Allow DeleteTopics."),
    at_least(prop("num.partitions", Int, "1", "Partitions of an auto-created topic or of CreateTopics with num_partitions -1."), 1),
    at_least(prop("default.replication.factor", Int, "1", "Replication factor of auto-created topics."), 1),
    at_least(prop("min.insync.replicas", Int, "1", "Fewest in-sync replicas for an acks=all write; fewer gives NOT_ENOUGH_REPLICAS."), 1),
    at_least(prop("message.max.bytes", Int, "1048588", "Largest record batch accepted, in bytes (topic: max.message.bytes)."), 0),
    at_least(prop("log.segment.bytes", Int, "1073741824", "Segment file size before rolling, in bytes (topic: segment.bytes)."), 14),
    at_least(prop("log.roll.ms", Long, "604800000", "Age of a segment before rolling, in milliseconds (topic: segment.ms)."), 1),
    at_least(prop("log.retention.ms", Long, "604800000", "Keep closed segments this long, in milliseconds; -1 keeps forever (topic: retention.ms)."), -1),
    at_least(prop("log.retention.bytes", Long, "-1", "Largest size of a partition before old segments are deleted, in bytes; -1 is unlimited (topic: retention.bytes)."), -1),
    at_least(prop("log.retention.check.interval.ms", Long, "300000", "How often retention is enforced, in milliseconds."), 1),
    at_least(prop("log.index.interval.bytes", Int, "4096", "Bytes between two offset-index entries (topic: index.interval.bytes)."), 0),
    one_of(prop("log.cleanup.policy", List, "delete", "delete or compact (topic: cleanup.policy)."), &["delete", "compact", "compact,delete", "delete,compact"]),
    at_least(prop("log.cleaner.delete.retention.ms", Long, "86400000", "How long tombstones stay in a compacted log, in milliseconds (topic: delete.retention.ms)."), 0),
    prop("log.cleaner.min.cleanable.ratio", Double, "0.5", "Compact a log only when its dirty bytes exceed this share of its cleanable bytes, 0 to 1 (topic: min.cleanable.dirty.ratio)."),
    at_least(prop("log.cleaner.min.compaction.lag.ms", Long, "0", "Leave records uncompacted for at least this long, in milliseconds (topic: min.compaction.lag.ms)."), 0),
    one_of(prop("log.message.timestamp.type", Text, "CreateTime", "CreateTime or LogAppendTime (topic: message.timestamp.type)."), &["CreateTime", "LogAppendTime"]),
    prop("log.flush.enable", Boolean, "true", "fsync before acknowledging writes (group commit); --dev sets false."),
    prop("unclean.leader.election.enable", Boolean, "false", "Allow an out-of-sync replica to become leader (never with a single node)."),
    prop("controller.listener", Text, "", "Address the controller quorum listens on (--controller-listen), HOST:PORT; empty with a single voter."),
    prop("controller.quorum.voters", Text, "", "The controller quorum (--voters), id@host:port,...; empty: this node alone."),
    at_least(prop("broker.heartbeat.interval.ms", Int, "2000", "How often a broker heartbeats to the controller, in milliseconds."), 1),
    at_least(prop("broker.session.timeout.ms", Int, "9000", "A broker without a heartbeat for this long is fenced and loses its leaderships, in milliseconds."), 1),
    prop("auto.leader.rebalance.enable", Boolean, "true", "Periodically move leadership back to each partition's preferred (first) replica when it is a live in-sync replica."),
    at_least(prop("leader.imbalance.check.interval.seconds", Long, "300", "How often the controller moves leaderships back to preferred replicas, in seconds."), 1),
    prop("controlled.shutdown.enable", Boolean, "true", "On SIGTERM, move this broker's leaderships to other in-sync replicas before exiting."),
    at_least(prop("replica.lag.time.max.ms", Long, "30000", "A follower that has not caught up for this long leaves the ISR, in milliseconds."), 1),
    at_least(prop("replica.fetch.wait.max.ms", Int, "500", "Longest a follower's fetch waits at the leader for data, in milliseconds."), 0),
    at_least(prop("replica.fetch.min.bytes", Int, "1", "Bytes a follower's fetch waits for."), 1),
    at_least(prop("replica.fetch.max.bytes", Int, "1048576", "Bytes a follower fetches per partition per request."), 1),
    at_least(prop("replica.fetch.response.max.bytes", Int, "10485760", "Bytes a follower fetches per request."), 1),
    at_least(prop("replica.fetch.backoff.ms", Int, "1000", "Pause after a failed follower fetch, in milliseconds."), 0),
    at_least(prop("replica.socket.timeout.ms", Int, "30000", "Network timeout of a follower's requests, in milliseconds."), 1),
    at_least(prop("producer.id.expiration.ms", Int, "86400000", "Forget an idle idempotent producer after this long, in milliseconds."), 1),
    at_least(prop("group.initial.rebalance.delay.ms", Int, "3000", "How long a new classic group waits for more members before its first rebalance, in milliseconds."), 0),
    at_least(prop("group.min.session.timeout.ms", Int, "6000", "Smallest session timeout a classic group member may ask for, in milliseconds."), 0),
    at_least(prop("group.max.session.timeout.ms", Int, "1800000", "Largest session timeout a classic group member may ask for, in milliseconds."), 0),
    at_least(prop("group.max.size", Int, "2147483647", "Most members of one classic group."), 1),
    at_least(prop("group.consumer.session.timeout.ms", Int, "45000", "Session timeout of KIP-848 consumer group members, in milliseconds."), 1),
    at_least(prop("group.consumer.heartbeat.interval.ms", Int, "5000", "Heartbeat interval of KIP-848 consumer group members, in milliseconds."), 1),
    at_least(prop("group.consumer.max.size", Int, "2147483647", "Most members of one KIP-848 consumer group."), 1),
    prop("group.consumer.assignors", List, "uniform,range", "Server-side assignors of KIP-848 groups (uniform, range); the first is the default."),
    at_least(prop("offset.metadata.max.bytes", Int, "4096", "Largest metadata string of a committed offset, in bytes."), 0),
    at_least(prop("offsets.topic.num.partitions", Int, "50", "Partitions of __consumer_offsets, created at the first group request."), 1),
    at_least(prop("offsets.topic.replication.factor", Int, "3", "Replication factor of __consumer_offsets, capped at the cluster size (voters or registered brokers); created only once that many brokers are alive."), 1),
    at_least(prop("offsets.topic.segment.bytes", Int, "104857600", "Segment size of __consumer_offsets, in bytes."), 14),
    at_least(prop("transaction.state.log.num.partitions", Int, "50", "Partitions of __transaction_state, created at the first transactional request."), 1),
    at_least(prop("transaction.state.log.replication.factor", Int, "3", "Replication factor of __transaction_state, capped at the cluster size; created only once that many brokers are alive."), 1),
    at_least(prop("transaction.state.log.min.isr", Int, "2", "min.insync.replicas of __transaction_state (capped at its replication factor)."), 1),
    at_least(prop("transaction.state.log.segment.bytes", Int, "104857600", "Segment size of __transaction_state, in bytes."), 14),
    at_least(prop("transaction.max.timeout.ms", Int, "900000", "Largest transaction.timeout.ms a producer may ask for, in milliseconds."), 1),
    at_least(prop("transactional.id.expiration.ms", Int, "604800000", "Forget a transactional id without a transaction for this long, in milliseconds."), 1),
    at_least(prop("transaction.abort.timed.out.transaction.cleanup.interval.ms", Int, "10000", "How often the coordinator aborts transactions past their timeout, in milliseconds."), 1),
    at_least(prop("transaction.remove.expired.transaction.cleanup.interval.ms", Int, "3600000", "How often the coordinator forgets expired transactional ids, in milliseconds."), 1),
    at_least(prop("offsets.retention.minutes", Int, "10080", "Keep the committed offsets of an empty group this long, in minutes (not enforced yet)."), 1),
];

/// A topic property and the broker property that supplies its default.
pub struct TopicProperty {
    pub name: &'static str,
    pub broker_default: &'static str,
    pub kind: PropertyType,
}

pub static TOPIC_PROPERTIES: &[TopicProperty] = &[
    TopicProperty { name: "cleanup.policy", broker_default: "log.cleanup.policy", kind: List },
    TopicProperty { name: "retention.ms", broker_default: "log.retention.ms", kind: Long },
    TopicProperty { name: "retention.bytes", broker_default: "log.retention.bytes", kind: Long },
    TopicProperty { name: "segment.bytes", broker_default: "log.segment.bytes", kind: Int },
    TopicProperty { name: "segment.ms", broker_default: "log.roll.ms", kind: Long },
    TopicProperty { name: "index.interval.bytes", broker_default: "log.index.interval.bytes", kind: Int },
    TopicProperty { name: "max.message.bytes", broker_default: "message.max.bytes", kind: Int },
    TopicProperty { name: "message.timestamp.type", broker_default: "log.message.timestamp.type", kind: Text },
    TopicProperty { name: "delete.retention.ms", broker_default: "log.cleaner.delete.retention.ms", kind: Long },
    TopicProperty { name: "min.cleanable.dirty.ratio", broker_default: "log.cleaner.min.cleanable.ratio", kind: Double },
    TopicProperty { name: "min.compaction.lag.ms", broker_default: "log.cleaner.min.compaction.lag.ms", kind: Long },
    TopicProperty { name: "min.insync.replicas", broker_default: "min.insync.replicas", kind: Int },
    TopicProperty { name: "unclean.leader.election.enable", broker_default: "unclean.leader.election.enable", kind: Boolean },
];

#[derive(thiserror::Error, Debug, PartialEq)]
pub enum ConfigError {
    #[error("unknown config {0}")]
    Unknown(String),
    #[error("invalid value {value:?} for config {name}: {reason}")]
    InvalidValue { name: String, value: String, reason: String },
    #[error("config file {path}: {reason}")]
    File { path: String, reason: String },
}

pub fn broker_property(name: &str) -> Option<&'static Property> {
    BROKER_PROPERTIES.iter().find(|p| p.name == name)
}

pub fn topic_property(name: &str) -> Option<&'static TopicProperty> {
    TOPIC_PROPERTIES.iter().find(|p| p.name == name)
}

/// Checks that `value` parses as `kind` and meets the property's bounds.
fn check_value(name: &str, kind: PropertyType, min: i64, choices: &[&str], value: &str) -> Result<(), ConfigError> {
    let invalid = |reason: String| ConfigError::InvalidValue { name: name.to_string(), value: value.to_string(), reason };
    match kind {
        Boolean => {
            if !value.eq_ignore_ascii_case("true") && !value.eq_ignore_ascii_case("false") {
                return Err(invalid("expected true or false".into()));
            }
        }
        Int | Long => {
            let number: i64 = value.trim().parse().map_err(|_| invalid("expected an integer".into()))?;
            if kind == Int && i32::try_from(number).is_err() {
                return Err(invalid("out of the 32-bit integer range".into()));
            }
            if number < min {
                return Err(invalid(format!("must be at least {min}")));
            }
        }
        Double => {
            let number: f64 = value.trim().parse().map_err(|_| invalid("expected a number".into()))?;
            if !(0.0..=1.0).contains(&number) {
                return Err(invalid("must be between 0 and 1".into()));
            }
        }
        Text | List => {}
    }
    if !choices.is_empty() && !choices.contains(&value) {
        return Err(invalid(format!("must be one of {}", choices.join(", "))));
    }
    Ok(())
}

/// Validates a topic config as CreateTopics / AlterConfigs receive it.
pub fn validate_topic_config(name: &str, value: &str) -> Result<(), ConfigError> {
    let topic = topic_property(name).ok_or_else(|| ConfigError::Unknown(name.to_string()))?;
    let broker = broker_property(topic.broker_default).expect("every topic property names a broker property");
    check_value(name, topic.kind, broker.min, broker.choices, value)
}

/// The broker's effective configuration: every property of [`BROKER_PROPERTIES`] with a value.
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    values: BTreeMap<String, String>,
    /// Keys set explicitly (file or --set), reported as STATIC_BROKER_CONFIG by DescribeConfigs.
    explicit: BTreeMap<String, String>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        let values = BROKER_PROPERTIES.iter().map(|p| (p.name.to_string(), p.default.to_string())).collect();
        BrokerConfig { values, explicit: BTreeMap::new() }
    }
}

impl BrokerConfig {
    /// Sets one property, validating name and value.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        let property = broker_property(name).ok_or_else(|| ConfigError::Unknown(name.to_string()))?;
        check_value(name, property.kind, property.min, property.choices, value)?;
        self.values.insert(name.to_string(), value.to_string());
        self.explicit.insert(name.to_string(), value.to_string());
        Ok(())
    }

    /// Loads a TOML file whose keys are Kafka property names. Both `"num.partitions" = 3` and the
    /// equivalent dotted-key form `num.partitions = 3` (a nested table to TOML) are accepted.
    pub fn load_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let file_error = |reason: String| ConfigError::File { path: path.display().to_string(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| file_error(e.message().to_string()))?;
        let mut flat = Vec::new();
        flatten_toml("", &toml::Value::Table(table), &mut flat);
        for (name, value) in flat {
            self.set(&name, &value)?;
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> &str {
        self.values.get(name).map(String::as_str).unwrap_or("")
    }

    pub fn is_explicit(&self, name: &str) -> bool {
        self.explicit.contains_key(name)
    }

    pub fn get_bool(&self, name: &str) -> bool {
        self.get(name).eq_ignore_ascii_case("true")
    }

    /// Values were validated on `set`, and defaults are valid by construction.
    pub fn get_i64(&self, name: &str) -> i64 {
        self.get(name).trim().parse().unwrap_or(0)
    }

    pub fn get_i32(&self, name: &str) -> i32 {
        i32::try_from(self.get_i64(name)).unwrap_or(i32::MAX)
    }

    pub fn node_id(&self) -> i32 {
        self.get_i32("node.id")
    }

    /// The effective value of a topic property: the topic's own override, else the broker default.
    pub fn topic_value<'a>(&'a self, overrides: &'a BTreeMap<String, String>, name: &str) -> &'a str {
        if let Some(value) = overrides.get(name) {
            return value;
        }
        topic_property(name).map(|p| self.get(p.broker_default)).unwrap_or("")
    }

    /// The storage settings of a partition of a topic with these overrides.
    pub fn log_config(&self, overrides: &BTreeMap<String, String>) -> LogConfig {
        let number = |name: &str| self.topic_value(overrides, name).trim().parse::<i64>().unwrap_or(-1);
        let cleanup = self.topic_value(overrides, "cleanup.policy");
        LogConfig {
            segment_bytes: number("segment.bytes").max(14) as u64,
            segment_ms: number("segment.ms"),
            retention_ms: number("retention.ms"),
            retention_bytes: number("retention.bytes"),
            index_interval_bytes: number("index.interval.bytes").clamp(0, u32::MAX as i64) as u32,
            max_message_bytes: number("max.message.bytes").clamp(0, u32::MAX as i64) as u32,
            message_timestamp_type: if self.topic_value(overrides, "message.timestamp.type") == "LogAppendTime" {
                TimestampType::LogAppendTime
            } else {
                TimestampType::CreateTime
            },
            compact: cleanup.split(',').any(|p| p.trim() == "compact"),
            fsync: self.get_bool("log.flush.enable"),
        }
    }
}

impl BrokerConfig {
    /// The compaction settings of a topic with these overrides, and whether delete retention applies too.
    pub fn cleaner_config(&self, overrides: &BTreeMap<String, String>) -> CleanerConfig {
        let number = |name: &str| self.topic_value(overrides, name).trim().parse::<i64>().unwrap_or(0);
        CleanerConfig {
            delete: Some(self.topic_value(overrides, "cleanup.policy").split(',').any(|p| p.trim() == "delete")),
            delete_retention_ms: number("delete.retention.ms").max(0),
            min_cleanable_dirty_ratio: self
                .topic_value(overrides, "min.cleanable.dirty.ratio")
                .trim()
                .parse::<f64>()
                .unwrap_or(0.5)
                .clamp(0.0, 1.0),
            min_compaction_lag_ms: number("min.compaction.lag.ms").max(0),
            ..CleanerConfig::default()
        }
    }
}

fn flatten_toml(prefix: &str, value: &toml::Value, out: &mut Vec<(String, String)>) {
    match value {
        toml::Value::Table(table) => {
            for (key, inner) in table {
                let name = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                flatten_toml(&name, inner, out);
            }
        }
        toml::Value::String(s) => out.push((prefix.to_string(), s.clone())),
        toml::Value::Array(items) => {
            let joined: Vec<String> = items
                .iter()
                .map(|item| match item {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            out.push((prefix.to_string(), joined.join(",")));
        }
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

/// Renders the commented example configuration shipped as config/odradek.toml.
pub fn example_toml() -> String {
    let mut out = String::from(
        "# odradek broker configuration. Keys are Kafka's own broker property names; every supported key is\n\
         # listed with its default. Uncomment to change. Load with `odradek --config config/odradek.toml`;\n\
         # `--set key=value` overrides a key from the command line.\n\n",
    );
    for p in BROKER_PROPERTIES {
        out.push_str(&format!("# {}\n", p.doc));
        let value = match p.kind {
            Boolean | Int | Long | Double => p.default.to_string(),
            Text | List => format!("{:?}", p.default),
        };
        out.push_str(&format!("# \"{}\" = {}\n\n", p.name, value));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_values() {
        for p in BROKER_PROPERTIES {
            check_value(p.name, p.kind, p.min, p.choices, p.default).unwrap();
        }
        for t in TOPIC_PROPERTIES {
            assert!(broker_property(t.broker_default).is_some(), "{}", t.name);
        }
    }

    #[test]
    fn set_rejects_unknown_and_bad_values() {
        let mut config = BrokerConfig::default();
        assert_eq!(config.set("no.such.key", "1"), Err(ConfigError::Unknown("no.such.key".into())));
        assert!(matches!(config.set("num.partitions", "zero"), Err(ConfigError::InvalidValue { .. })));
        assert!(matches!(config.set("num.partitions", "0"), Err(ConfigError::InvalidValue { .. })));
        assert!(matches!(config.set("log.message.timestamp.type", "Now"), Err(ConfigError::InvalidValue { .. })));
        config.set("num.partitions", "3").unwrap();
        assert_eq!(config.get_i32("num.partitions"), 3);
        assert!(config.is_explicit("num.partitions"));
    }

    #[test]
    fn toml_file_accepts_quoted_and_dotted_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broker.toml");
        std::fs::write(&path, "\"num.partitions\" = 4\nlog.retention.ms = 1000\nauto.create.topics.enable = false\n").unwrap();
        let mut config = BrokerConfig::default();
        config.load_file(&path).unwrap();
        assert_eq!(config.get_i32("num.partitions"), 4);
        assert_eq!(config.get_i64("log.retention.ms"), 1000);
        assert!(!config.get_bool("auto.create.topics.enable"));
    }

    #[test]
    fn topic_overrides_fall_back_to_broker_defaults() {
        let mut config = BrokerConfig::default();
        config.set("log.retention.ms", "5000").unwrap();
        let mut overrides = BTreeMap::new();
        overrides.insert("segment.bytes".to_string(), "2048".to_string());
        overrides.insert("cleanup.policy".to_string(), "compact".to_string());
        let log = config.log_config(&overrides);
        assert_eq!(log.retention_ms, 5000);
        assert_eq!(log.segment_bytes, 2048);
        assert!(log.compact);
        assert!(validate_topic_config("retention.ms", "-1").is_ok());
        assert!(validate_topic_config("retention.ms", "-2").is_err());
        assert!(validate_topic_config("bogus", "1").is_err());
    }

    #[test]
    fn cleanup_policy_and_cleaner_settings_follow_topic_overrides() {
        let config = BrokerConfig::default();
        let mut overrides = BTreeMap::new();
        assert_eq!(config.cleaner_config(&overrides).delete, Some(true));
        overrides.insert("cleanup.policy".to_string(), "compact,delete".to_string());
        overrides.insert("min.cleanable.dirty.ratio".to_string(), "0.25".to_string());
        let cleaner = config.cleaner_config(&overrides);
        assert_eq!(cleaner.delete, Some(true));
        assert_eq!(cleaner.min_cleanable_dirty_ratio, 0.25);
        assert_eq!(cleaner.delete_retention_ms, 86_400_000);
        assert!(config.log_config(&overrides).compact);
        overrides.insert("cleanup.policy".to_string(), "compact".to_string());
        assert_eq!(config.cleaner_config(&overrides).delete, Some(false));
        assert!(validate_topic_config("min.cleanable.dirty.ratio", "1.5").is_err());
        assert!(validate_topic_config("min.cleanable.dirty.ratio", "half").is_err());
    }

    #[test]
    fn shipped_example_matches_the_property_table() {
        let shipped = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/odradek.toml")).unwrap();
        assert_eq!(shipped, example_toml(), "regenerate with `odradek --print-default-config > config/odradek.toml`");
    }
}
