//! Replication over real TCP: the in-process broker (node 1) leads a partition whose replicas are [1, 2]; a
//! follower `Partition` of node 2 in its own directory is fed by `ReplicaFetchers` talking to the broker's
//! port (OffsetForLeaderEpoch, then Fetch with replica_id 2). Checks that the follower's log ends up
//! byte-identical to the leader's (same offsets, same epochs), that acks=all waits for it, and that a follower
//! holding divergent data from an older epoch is truncated by leader epoch, not to its high watermark.
//!
//! There is one broker in this process, so the leader partition's replica set is widened with
//! `apply_leadership`, as a broker applies the controller's partition changes (compat-tests/cluster runs
//! three real broker processes).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{record_batch, start_broker, Client, TestBroker};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use odradek::broker::now_ms;
use odradek::log::{CleanerConfig, LogConfig};
use odradek::partition::{Leadership, Partition, PartitionSettings, RoleChange};
use odradek::replication::{FetcherConfig, FollowerAssignment, ReplicaFetchers};

const LEADER: i32 = 1;
const FOLLOWER: i32 = 2;
const WAIT: Duration = Duration::from_secs(15);

/// Creates `topic` (one partition, led by node 1) and makes node 2 a replica of it outside the ISR.
async fn create_replicated_topic(broker: &TestBroker, client: &mut Client, topic: &str) -> Arc<Partition> {
    let request = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_string(topic.into()))))]))
        .with_allow_auto_topic_creation(true);
    let metadata: MetadataResponse = client.call(ApiKey::Metadata, 12, &request).await;
    assert_eq!(metadata.topics[0].error_code, 0);
    let leader = broker.broker.partition(topic, 0).unwrap();
    let current = leader.leadership();
    let widened = Leadership { replicas: vec![LEADER, FOLLOWER], isr: vec![LEADER], partition_epoch: current.partition_epoch + 1, ..current };
    assert_eq!(leader.apply_leadership(widened, now_ms()).unwrap(), RoleChange::Updated);
    leader
}

fn open_follower(dir: &tempfile::TempDir, leader: &Partition) -> Arc<Partition> {
    let settings = PartitionSettings {
        log: LogConfig { fsync: false, ..LogConfig::default() },
        cleaner: CleanerConfig::default(),
        min_insync_replicas: 1,
    };
    let leadership = leader.leadership();
    Arc::new(Partition::open(dir.path(), &leader.topic, leader.topic_id, leader.index, settings, leadership, FOLLOWER, now_ms()).unwrap())
}

fn fetchers() -> ReplicaFetchers {
    ReplicaFetchers::new(FOLLOWER, FetcherConfig { wait_max_ms: 100, backoff_ms: 50, socket_timeout_ms: 5_000, ..FetcherConfig::default() })
}

fn assignment(follower: &Arc<Partition>, broker: &TestBroker) -> FollowerAssignment {
    let leadership = follower.leadership();
    FollowerAssignment {
        partition: follower.clone(),
        leader_id: leadership.leader,
        leader_epoch: leadership.leader_epoch,
        leader_host: broker.address.ip().to_string(),
        leader_port: broker.address.port() as i32,
    }
}

fn whole_log(partition: &Partition) -> Bytes {
    partition.read_log(partition.offsets().log_start_offset, 64 << 20, true).unwrap().records
}

fn epochs(partition: &Partition) -> Vec<(i32, i64)> {
    partition.leader_epochs().iter().map(|e| (e.epoch, e.start_offset)).collect()
}

/// Waits until the follower's log is the leader's, byte for byte, with the same epochs.
async fn wait_identical(leader: &Partition, follower: &Partition) {
    let started = Instant::now();
    loop {
        let same = leader.offsets().log_end_offset == follower.offsets().log_end_offset
            && whole_log(leader) == whole_log(follower)
            && epochs(leader) == epochs(follower);
        if same {
            return;
        }
        if started.elapsed() > WAIT {
            panic!(
                "follower did not converge: leader end {} epochs {:?}, follower end {} epochs {:?}",
                leader.offsets().log_end_offset,
                epochs(leader),
                follower.offsets().log_end_offset,
                epochs(follower)
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_follower_copies_the_leader_log_and_acks_all_waits_for_it() {
    let broker = start_broker(LEADER).await;
    let mut client = Client::connect(broker.address).await;
    let leader = create_replicated_topic(&broker, &mut client, "replicated").await;
    for values in [&["a", "b"][..], &["c"], &["d", "e", "f"]] {
        assert_eq!(client.produce("replicated", values, 1, 5000).await.0, 0);
    }
    let follower_dir = tempfile::tempdir().unwrap();
    let follower = open_follower(&follower_dir, &leader);
    let fetchers = fetchers();
    fetchers.update(vec![assignment(&follower, &broker)]);
    wait_identical(&leader, &follower).await;
    assert_eq!(follower.offsets().log_end_offset, 6);
    assert_eq!(fetchers.leaders(), vec![LEADER]);

    // Caught up to the HW: the leader proposes adding it to the ISR; the "controller" commits that.
    let change = leader.isr_change(now_ms(), 30_000).expect("an ISR expansion");
    assert_eq!(change.new_isr, vec![LEADER, FOLLOWER]);
    let current = leader.leadership();
    let expanded = Leadership { isr: change.new_isr, partition_epoch: current.partition_epoch + 1, ..current };
    assert_eq!(leader.apply_leadership(expanded, now_ms()).unwrap(), RoleChange::Updated);

    // acks=all is answered once the follower fetched past the batch.
    let (error, base_offset) = client.produce("replicated", &["g"], -1, 10_000).await;
    assert_eq!((error, base_offset), (0, 6));
    assert!(follower.offsets().log_end_offset >= 7, "acknowledged before the follower had it");
    assert_eq!(leader.offsets().high_watermark, 7);
    wait_identical(&leader, &follower).await;

    // Without the follower fetching, acks=all times out (REQUEST_TIMED_OUT) though the leader appended.
    fetchers.shutdown().await;
    assert!(fetchers.leaders().is_empty());
    let (error, _) = client.produce("replicated", &["h"], -1, 300).await;
    assert_eq!(error, 7);
    assert_eq!(leader.offsets().log_end_offset, 8);
    assert_eq!(leader.offsets().high_watermark, 7);
    // The consumer side sees only up to the HW.
    let data = leader.read(7, 1 << 20, true, odradek::partition::Isolation::ReadUncommitted).unwrap();
    assert!(data.records.is_empty());
}

#[tokio::test]
async fn a_follower_with_divergent_data_from_an_older_epoch_is_truncated_by_leader_epoch() {
    let broker = start_broker(LEADER).await;
    let mut client = Client::connect(broker.address).await;
    let leader = create_replicated_topic(&broker, &mut client, "diverged").await;
    for values in [&["a"][..], &["b", "c"]] {
        assert_eq!(client.produce("diverged", values, 1, 5000).await.0, 0);
    }
    let first_epoch = leader.leader_epoch();
    let follower_dir = tempfile::tempdir().unwrap();
    let follower = open_follower(&follower_dir, &leader);
    let fetchers = fetchers();
    fetchers.update(vec![assignment(&follower, &broker)]);
    wait_identical(&leader, &follower).await;
    fetchers.update(Vec::new());
    assert!(fetchers.leaders().is_empty());

    // Node 2 briefly leads epoch +1 alone and writes two batches node 1 never sees; its HW follows them.
    let base = leader.leadership();
    let follower_led = Leadership { leader: FOLLOWER, leader_epoch: first_epoch + 1, partition_epoch: base.partition_epoch + 1, isr: vec![FOLLOWER], ..base.clone() };
    assert_eq!(follower.apply_leadership(follower_led, now_ms()).unwrap(), RoleChange::BecameLeader);
    for values in [&["x"][..], &["y", "z"]] {
        follower.append(record_batch(values), 1, now_ms()).unwrap();
    }
    assert_eq!(follower.offsets().log_end_offset, 6);
    assert_eq!(follower.offsets().high_watermark, 6, "a blind truncation to the HW would keep the divergent data");

    // Node 1 is elected for epoch +2 (it never knew epoch +1) and takes one more batch.
    let leader_again = Leadership { leader: LEADER, leader_epoch: first_epoch + 2, partition_epoch: base.partition_epoch + 2, isr: vec![LEADER], ..base };
    assert_eq!(leader.apply_leadership(leader_again.clone(), now_ms()).unwrap(), RoleChange::BecameLeader);
    assert_eq!(client.produce("diverged", &["d"], 1, 5000).await, (0, 3));
    assert_eq!(follower.apply_leadership(leader_again.clone(), now_ms()).unwrap(), RoleChange::BecameFollower { leader: LEADER, leader_epoch: first_epoch + 2 });

    // Fetching again: OffsetForLeaderEpoch(epoch +1) → the leader's epoch `first_epoch` ends at 3, so the
    // follower cuts its epoch +1 batches at 3 and copies the leader's epoch +2 batch.
    fetchers.update(vec![assignment(&follower, &broker)]);
    wait_identical(&leader, &follower).await;
    assert_eq!(epochs(&follower), vec![(first_epoch, 0), (first_epoch + 2, 3)]);
    assert_eq!(follower.offsets().log_end_offset, 4);
    fetchers.shutdown().await;
}

#[tokio::test]
async fn clients_are_refused_by_a_follower_and_a_follower_of_the_wrong_epoch_is_fenced() {
    let broker = start_broker(LEADER).await;
    let mut client = Client::connect(broker.address).await;
    let leader = create_replicated_topic(&broker, &mut client, "fenced").await;
    assert_eq!(client.produce("fenced", &["a"], 1, 5000).await.0, 0);
    // The broker stops leading (epoch +1 goes to node 2): produce answers NOT_LEADER_OR_FOLLOWER.
    let base = leader.leadership();
    let moved = Leadership { leader: FOLLOWER, leader_epoch: base.leader_epoch + 1, partition_epoch: base.partition_epoch + 1, ..base.clone() };
    assert!(matches!(leader.apply_leadership(moved, now_ms()).unwrap(), RoleChange::BecameFollower { .. }));
    assert_eq!(client.produce("fenced", &["b"], 1, 5000).await.0, 6);

    // A replica fetcher that believes node 1 still leads epoch 0 is fenced: its partition never changes.
    let follower_dir = tempfile::tempdir().unwrap();
    let follower = Arc::new(
        Partition::open(
            follower_dir.path(),
            &leader.topic,
            leader.topic_id,
            0,
            PartitionSettings { log: LogConfig { fsync: false, ..LogConfig::default() }, cleaner: CleanerConfig::default(), min_insync_replicas: 1 },
            base,
            FOLLOWER,
            now_ms(),
        )
        .unwrap(),
    );
    let fetchers = fetchers();
    fetchers.update(vec![assignment(&follower, &broker)]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(follower.offsets().log_end_offset, 0);
    fetchers.shutdown().await;
}
