//! End-to-end quorum tests on loopback: a quorum of one across a restart; three members electing, replicating,
//! failing over, and a restarted member catching up through a snapshot.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use tokio::net::TcpListener;
use uuid::Uuid;

use super::*;

const WAIT: Duration = Duration::from_secs(5);

fn fast() -> QuorumOptions {
    QuorumOptions {
        heartbeat_interval_ms: 50,
        election_timeout_min_ms: 300,
        election_timeout_max_ms: 600,
        snapshot_every_entries: 5,
        entries_kept_after_snapshot: 0,
    }
}

fn topic(name: &str, id: u128) -> Vec<MetadataRecord> {
    vec![MetadataRecord::Topic { name: name.into(), topic_id: Uuid::from_u128(id) }]
}

async fn start(node_id: u64, dir: &Path, addr: &str, voters: &BTreeMap<u64, String>) -> Quorum {
    let listener = TcpListener::bind(addr).await.unwrap();
    Quorum::start_with_listener(node_id, dir, Some(listener), voters.clone(), fast()).await.unwrap()
}

/// Waits until every member names the same leader, one of them; returns it.
async fn agreed_leader(members: &[&Quorum]) -> u64 {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let leaders: Vec<_> = members.iter().map(|q| q.leader()).collect();
        if let Some(Some(leader)) = leaders.first() {
            if leaders.iter().all(|l| *l == Some(*leader)) && members.iter().any(|q| q.node_id() == *leader) {
                return *leader;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "no agreed leader: {leaders:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Proposes through `quorum`, retrying while a leader change is in progress.
async fn propose(quorum: &Quorum, records: Vec<MetadataRecord>) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match quorum.propose(records.clone()).await {
            Ok(()) => return,
            Err(e) => assert!(tokio::time::Instant::now() < deadline, "proposal failed: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn has_topic(quorum: &Quorum, name: &str) -> bool {
    wait_for_image(quorum, WAIT, |image| image.topic(name).is_some()).await
}

async fn free_addr() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quorum_of_one_commits_and_restarts_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr().await;
    let voters = BTreeMap::from([(1, addr.clone())]);
    let quorum = start(1, dir.path(), &addr, &voters).await;
    assert_eq!(agreed_leader(&[&quorum]).await, 1);
    // Enough batches to build a snapshot and purge the log behind it.
    for i in 0..8 {
        propose(&quorum, topic(&format!("t{i}"), i)).await;
    }
    assert!(has_topic(&quorum, "t7").await);
    // A snapshot was built and the log behind it purged, so the restart loads the snapshot and replays after it.
    assert!(quorum.raft().metrics().borrow().purged.is_some());
    let before = quorum.image().to_records();
    quorum.shutdown().await;

    let quorum = start(1, dir.path(), &addr, &voters).await;
    assert_eq!(agreed_leader(&[&quorum]).await, 1);
    assert!(has_topic(&quorum, "t7").await);
    assert_eq!(quorum.image().to_records(), before);
    propose(&quorum, topic("after", 100)).await;
    assert!(has_topic(&quorum, "after").await);
    quorum.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_replicate_fail_over_and_catch_up() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut addrs = Vec::new();
    for _ in 0..3 {
        addrs.push(free_addr().await);
    }
    let voters: BTreeMap<u64, String> = (1..=3).zip(addrs.iter().cloned()).collect();
    let mut members = Vec::new();
    for (i, id) in (1..=3u64).enumerate() {
        members.push(Some(start(id, dirs[i].path(), &addrs[i], &voters).await));
    }
    let all: Vec<&Quorum> = members.iter().flatten().collect();
    let leader = agreed_leader(&all).await;

    // A follower forwards to the leader; every image sees the batch.
    let follower = all.iter().find(|q| q.node_id() != leader).unwrap();
    propose(follower, topic("first", 1)).await;
    for q in &all {
        assert!(has_topic(q, "first").await, "node {} lacks the topic", q.node_id());
    }

    // The leader goes away; the other two elect a new one and keep committing.
    let index = (leader - 1) as usize;
    let Some(old) = members[index].take() else { unreachable!() };
    let old_last_index = old.raft().metrics().borrow().last_log_index;
    old.shutdown().await;
    let rest: Vec<&Quorum> = members.iter().flatten().collect();
    let new_leader = agreed_leader(&rest).await;
    assert_ne!(new_leader, leader);
    for i in 0..8 {
        propose(rest[i % 2], topic(&format!("later{i}"), 10 + i as u128)).await;
    }
    for q in &rest {
        assert!(has_topic(q, "later7").await);
    }

    // The old leader comes back and catches up, from the leader's log or its snapshot.
    // (A leader postpones purging while a replication to the dead member has those entries in flight, so
    // whether it catches up from the snapshot or the log depends on timing; a follower purges at once.)
    let purged: Vec<_> = rest.iter().map(|q| q.raft().metrics().borrow().purged.map(|log_id| log_id.index)).collect();
    assert!(purged.iter().any(|p| *p > old_last_index), "purged {purged:?}, old leader's last index {old_last_index:?}");
    let back = start(leader, dirs[index].path(), &addrs[index], &voters).await;
    assert!(has_topic(&back, "later7").await, "restarted node did not catch up");
    assert_eq!(back.image().to_records(), rest[0].image().to_records());
    propose(&back, topic("last", 99)).await;
    for q in rest.iter().copied().chain([&back]) {
        assert!(has_topic(q, "last").await);
    }
    back.shutdown().await;
    for q in members.into_iter().flatten() {
        q.shutdown().await;
    }
}
