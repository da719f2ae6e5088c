//! Replication, follower side: [`fetcher::ReplicaFetchers`] runs one task per leader broker that truncates
//! each followed partition by leader epoch (OffsetForLeaderEpoch) and then copies the leader's log with the
//! Fetch API (replica_id set), appending through `Partition::append_replicated` and fsyncing before each
//! fetch so the position the leader counts towards its high watermark is durable. [`client::KafkaClient`] is
//! the small broker-to-broker Kafka client they use.
//!
//! The leader side lives in `partition` (follower positions, HW, ISR proposals, acks=all) and
//! `handlers::fetch` (follower fetches).

pub mod client;
pub mod fetcher;

pub use fetcher::{FetcherConfig, FollowerAssignment, ReplicaFetchers};
