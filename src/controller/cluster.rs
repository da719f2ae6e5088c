//! Plans for the cluster's membership and partition leadership: broker registration, fencing and unfencing,
//! ISR changes asked for by leaders (AlterPartition), and leader elections. Pure functions of the image, like
//! the topic plans: they return records, the runtime commits them.
//!
//! Kafka's rules: a leader is chosen only from the ISR (unclean.leader.election.enable=false); a fenced broker
//! leaves every ISR unless it is the last member (then the partition goes offline, leader -1, and that member
//! leads again when it comes back); every change bumps the partition epoch, a leader change the leader epoch.

use uuid::Uuid;

use super::image::{MetadataImage, PartitionImage};
use super::records::MetadataRecord;
use super::ControllerError;

/// Why an AlterPartition was refused; the leader drops its proposal and waits for the next image.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum AlterPartitionError {
    #[error("unknown topic or partition")]
    UnknownPartition,
    #[error("broker {0} is not the leader")]
    NotLeader(i32),
    #[error("leader epoch {requested} is not the current {current}")]
    FencedLeaderEpoch { requested: i32, current: i32 },
    #[error("partition epoch {requested} is not the current {current}")]
    InvalidUpdateVersion { requested: i32, current: i32 },
    #[error("{0}")]
    InvalidIsr(String),
}

/// The first replica, in replica order, that is in the ISR and live (preferred replica first, as Kafka).
fn elect_from_isr(image: &MetadataImage, p: &PartitionImage, excluded: Option<i32>) -> i32 {
    p.replicas.iter().copied().find(|&b| Some(b) != excluded && p.isr.contains(&b) && image.is_live(b)).unwrap_or(-1)
}

/// Records that take `broker` out of every partition's leadership and ISR (fencing, controlled shutdown,
/// re-registration of a restarted process); `broker` counts as fenced whatever `image` says. The last ISR member stays in the ISR so the partition can come
/// back with it rather than with an out-of-sync replica.
fn remove_broker_from_partitions(image: &MetadataImage, broker: i32) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    for topic in image.topics.values() {
        for (index, p) in topic.partitions.iter().enumerate() {
            if p.leader != broker && !p.isr.contains(&broker) {
                continue;
            }
            let mut next = p.clone();
            if p.isr.len() > 1 {
                next.isr.retain(|&b| b != broker);
            }
            if p.leader == broker {
                next.leader = elect_from_isr(image, &next, Some(broker));
                next.leader_epoch += 1;
            }
            if next != *p {
                next.partition_epoch += 1;
                records.push(next.to_record(topic.topic_id, index));
            }
        }
    }
    records
}

/// A broker process registers (at start). A restarted process leads nothing until its heartbeats unfence it,
/// so the partitions it led move to other in-sync replicas first.
pub fn plan_register_broker(
    image: &MetadataImage,
    broker: i32,
    incarnation: Uuid,
    host: &str,
    port: i32,
    rack: Option<&str>,
) -> Vec<MetadataRecord> {
    if let Some(existing) = image.broker(broker) {
        if existing.incarnation == incarnation && existing.host == host && existing.port == port && existing.rack.as_deref() == rack {
            return Vec::new();
        }
    }
    // RegisterBroker applies as fenced: the broker leaves its leaderships and ISRs as when it is fenced.
    let mut records = vec![MetadataRecord::RegisterBroker {
        broker,
        incarnation,
        host: host.to_string(),
        port,
        rack: rack.map(String::from),
    }];
    records.extend(remove_broker_from_partitions(image, broker));
    records
}

/// Fences a broker that missed its heartbeats (or finished a controlled shutdown).
pub fn plan_fence_broker(image: &MetadataImage, broker: i32) -> Vec<MetadataRecord> {
    let Some(existing) = image.broker(broker) else { return Vec::new() };
    if existing.fenced {
        return Vec::new();
    }
    let mut records = vec![MetadataRecord::BrokerFencing { broker, fenced: true }];
    records.extend(remove_broker_from_partitions(image, broker));
    records
}

/// Unfences a broker whose heartbeats arrive; offline partitions whose last in-sync replica it is get it
/// back as leader.
pub fn plan_unfence_broker(image: &MetadataImage, broker: i32) -> Vec<MetadataRecord> {
    let Some(existing) = image.broker(broker) else { return Vec::new() };
    if !existing.fenced {
        return Vec::new();
    }
    let mut records = vec![MetadataRecord::BrokerFencing { broker, fenced: false }];
    for topic in image.topics.values() {
        for (index, p) in topic.partitions.iter().enumerate() {
            if p.leader == -1 && p.isr.contains(&broker) {
                // Offline means no live in-sync replica: the returning broker is the only one.
                let mut next = p.clone();
                next.leader = broker;
                next.leader_epoch += 1;
                next.partition_epoch += 1;
                records.push(next.to_record(topic.topic_id, index));
            }
        }
    }
    records
}

/// A leader asks to change its ISR (shrink after replica.lag.time.max.ms, expand when a follower caught up).
pub fn plan_alter_partition(
    image: &MetadataImage,
    topic_id: Uuid,
    partition: i32,
    leader: i32,
    leader_epoch: i32,
    partition_epoch: i32,
    new_isr: &[i32],
) -> Result<Vec<MetadataRecord>, AlterPartitionError> {
    let topic = image.topic_by_id(&topic_id).ok_or(AlterPartitionError::UnknownPartition)?;
    let index = usize::try_from(partition).map_err(|_| AlterPartitionError::UnknownPartition)?;
    let p = topic.partitions.get(index).ok_or(AlterPartitionError::UnknownPartition)?;
    if p.leader != leader {
        return Err(AlterPartitionError::NotLeader(leader));
    }
    if p.leader_epoch != leader_epoch {
        return Err(AlterPartitionError::FencedLeaderEpoch { requested: leader_epoch, current: p.leader_epoch });
    }
    if p.partition_epoch != partition_epoch {
        return Err(AlterPartitionError::InvalidUpdateVersion { requested: partition_epoch, current: p.partition_epoch });
    }
    if !new_isr.contains(&leader) {
        return Err(AlterPartitionError::InvalidIsr(format!("the ISR {new_isr:?} must contain the leader {leader}")));
    }
    for (i, b) in new_isr.iter().enumerate() {
        if !p.replicas.contains(b) || new_isr[..i].contains(b) {
            return Err(AlterPartitionError::InvalidIsr(format!("the ISR {new_isr:?} is not a set of replicas {:?}", p.replicas)));
        }
        if !p.isr.contains(b) && !image.is_live(*b) {
            return Err(AlterPartitionError::InvalidIsr(format!("broker {b} is fenced and cannot join the ISR")));
        }
    }
    let mut next = p.clone();
    // Keep replica order, so the ISR reads the same on every broker.
    next.isr = p.replicas.iter().copied().filter(|b| new_isr.contains(b)).collect();
    if next.isr == p.isr {
        return Ok(Vec::new());
    }
    complete_reassignment_if_caught_up(image, &mut next);
    next.partition_epoch += 1;
    Ok(vec![next.to_record(topic_id, index)])
}

/// A reassignment completes once every target replica is in the ISR: the replicas become the target, removed
/// replicas leave the ISR, and a leader that is being removed hands over to an in-sync target replica.
fn complete_reassignment_if_caught_up(image: &MetadataImage, p: &mut PartitionImage) {
    if !p.is_reassigning() {
        return;
    }
    let target = p.target_replicas();
    if !target.iter().all(|b| p.isr.contains(b)) {
        return;
    }
    p.isr.retain(|b| target.contains(b));
    p.replicas = target;
    p.adding.clear();
    p.removing.clear();
    if !p.replicas.contains(&p.leader) {
        p.leader = elect_from_isr(image, p, None);
        p.leader_epoch += 1;
    }
}

/// AlterPartitionReassignments for one partition: `Some(target)` moves the partition to those replicas (the
/// new ones join as followers, catch up and enter the ISR; then the old ones are dropped); `None` cancels an
/// ongoing reassignment, going back to the original replicas.
pub fn plan_reassign(image: &MetadataImage, topic: &str, partition: i32, target: Option<&[i32]>) -> Result<Vec<MetadataRecord>, ControllerError> {
    let t = image.topic(topic).ok_or_else(|| ControllerError::UnknownTopic(topic.to_string()))?;
    let index = usize::try_from(partition).ok().filter(|&i| i < t.partitions.len()).ok_or_else(|| ControllerError::UnknownTopic(topic.to_string()))?;
    let p = &t.partitions[index];
    let original: Vec<i32> = p.replicas.iter().copied().filter(|b| !p.adding.contains(b)).collect();
    let mut next = p.clone();
    match target {
        None => {
            if !p.is_reassigning() {
                return Err(ControllerError::NoReassignmentInProgress(format!("no reassignment of {topic}-{partition} is in progress")));
            }
            next.replicas = original.clone();
            next.adding.clear();
            next.removing.clear();
            let kept: Vec<i32> = p.isr.iter().copied().filter(|b| original.contains(b)).collect();
            if !kept.is_empty() {
                next.isr = kept;
            }
            if !next.replicas.contains(&next.leader) {
                next.leader = elect_from_isr(image, &next, None);
                next.leader_epoch += 1;
            }
        }
        Some(target) => {
            super::check_replica_list(image, target)?;
            if target == original.as_slice() && !p.is_reassigning() {
                return Ok(Vec::new());
            }
            // The target first (its first replica is the new preferred leader), then the originals leaving.
            let mut replicas = target.to_vec();
            replicas.extend(original.iter().copied().filter(|b| !target.contains(b)));
            next.adding = target.iter().copied().filter(|b| !original.contains(b)).collect();
            next.removing = original.iter().copied().filter(|b| !target.contains(b)).collect();
            next.replicas = replicas;
            next.isr.retain(|b| original.contains(b));
            complete_reassignment_if_caught_up(image, &mut next);
        }
    }
    next.partition_epoch += 1;
    Ok(vec![next.to_record(t.topic_id, index)])
}

/// ElectLeaders (preferred): moves leadership to the first replica where it is in the ISR and live.
/// Returns the records, or the error Kafka gives per partition.
pub fn plan_elect_preferred(image: &MetadataImage, topic: &str, partition: i32) -> Result<Vec<MetadataRecord>, ControllerError> {
    let t = image.topic(topic).ok_or_else(|| ControllerError::UnknownTopic(topic.to_string()))?;
    let p = usize::try_from(partition).ok().and_then(|i| t.partitions.get(i)).ok_or_else(|| ControllerError::UnknownTopic(topic.to_string()))?;
    let preferred = p.replicas.first().copied().unwrap_or(-1);
    if p.leader == preferred {
        return Err(ControllerError::ElectionNotNeeded);
    }
    if !p.isr.contains(&preferred) || !image.is_live(preferred) {
        return Err(ControllerError::PreferredLeaderNotAvailable(format!(
            "preferred replica {preferred} of {topic}-{partition} is not a live in-sync replica"
        )));
    }
    let mut next = p.clone();
    next.leader = preferred;
    next.leader_epoch += 1;
    next.partition_epoch += 1;
    Ok(vec![next.to_record(t.topic_id, partition as usize)])
}

/// auto.leader.rebalance.enable: every partition whose preferred replica is a live in-sync replica but not
/// the leader gets it back as leader (after a restarted broker caught up, leadership returns to it).
pub fn plan_preferred_rebalance(image: &MetadataImage) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    for topic in image.topics.values() {
        for index in 0..topic.partitions.len() {
            if let Ok(mut elected) = plan_elect_preferred(image, &topic.name, index as i32) {
                records.append(&mut elected);
            }
        }
    }
    records
}

/// ElectLeaders (unclean): an offline partition (no live in-sync replica) goes to its first live replica,
/// which becomes the whole ISR. Records written only to the lost replicas are gone, as in Kafka.
pub fn plan_elect_unclean(image: &MetadataImage, topic: &str, partition: i32) -> Result<Vec<MetadataRecord>, ControllerError> {
    let t = image.topic(topic).ok_or_else(|| ControllerError::UnknownTopic(topic.to_string()))?;
    let p = usize::try_from(partition).ok().and_then(|i| t.partitions.get(i)).ok_or_else(|| ControllerError::UnknownTopic(topic.to_string()))?;
    if p.leader >= 0 {
        return Err(ControllerError::ElectionNotNeeded);
    }
    let Some(leader) = p.replicas.iter().copied().find(|&b| image.is_live(b)) else {
        return Err(ControllerError::EligibleLeadersNotAvailable(format!("no replica of {topic}-{partition} is alive")));
    };
    let mut next = p.clone();
    next.leader = leader;
    next.isr = vec![leader];
    next.leader_epoch += 1;
    next.partition_epoch += 1;
    Ok(vec![next.to_record(t.topic_id, partition as usize)])
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPIC: Uuid = Uuid::from_u128(7);

    fn image(brokers: &[(i32, bool)], replicas: &[i32], isr: &[i32], leader: i32) -> MetadataImage {
        let mut image = MetadataImage::default();
        for &(id, fenced) in brokers {
            image.apply(&MetadataRecord::RegisterBroker { broker: id, incarnation: Uuid::nil(), host: "h".into(), port: 1, rack: None });
            image.apply(&MetadataRecord::BrokerFencing { broker: id, fenced });
        }
        image.apply(&MetadataRecord::Topic { name: "t".into(), topic_id: TOPIC });
        image.apply(&MetadataRecord::Partition {
            topic_id: TOPIC,
            partition: 0,
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            leader,
            leader_epoch: 3,
            partition_epoch: 10,
            adding: vec![],
            removing: vec![],
        });
        image
    }

    fn applied(mut image: MetadataImage, records: &[MetadataRecord]) -> PartitionImage {
        records.iter().for_each(|r| image.apply(r));
        image.topics["t"].partitions[0].clone()
    }

    #[test]
    fn fencing_the_leader_elects_the_next_in_sync_replica() {
        let img = image(&[(1, false), (2, false), (3, false)], &[1, 2, 3], &[1, 2, 3], 1);
        let p = applied(img.clone(), &plan_fence_broker(&img, 1));
        assert_eq!((p.leader, p.isr.clone(), p.leader_epoch, p.partition_epoch), (2, vec![2, 3], 4, 11));
    }

    #[test]
    fn fencing_a_follower_only_shrinks_the_isr() {
        let img = image(&[(1, false), (2, false), (3, false)], &[1, 2, 3], &[1, 2, 3], 1);
        let p = applied(img.clone(), &plan_fence_broker(&img, 3));
        assert_eq!((p.leader, p.isr.clone(), p.leader_epoch, p.partition_epoch), (1, vec![1, 2], 3, 11));
    }

    #[test]
    fn the_last_in_sync_replica_goes_offline_and_comes_back_as_leader() {
        let img = image(&[(1, false), (2, false), (3, false)], &[1, 2, 3], &[2], 2);
        let records = plan_fence_broker(&img, 2);
        let p = applied(img.clone(), &records);
        // No unclean election: 1 and 3 are alive but out of sync.
        assert_eq!((p.leader, p.isr.clone()), (-1, vec![2]));
        let mut fenced = img.clone();
        records.iter().for_each(|r| fenced.apply(r));
        let p = applied(fenced.clone(), &plan_unfence_broker(&fenced, 2));
        assert_eq!((p.leader, p.isr, p.leader_epoch), (2, vec![2], 5));
    }

    #[test]
    fn a_restarted_broker_gives_up_leadership_until_unfenced() {
        let img = image(&[(1, false), (2, false)], &[1, 2], &[1, 2], 1);
        let records = plan_register_broker(&img, 1, Uuid::from_u128(99), "h", 1, None);
        let p = applied(img.clone(), &records);
        assert_eq!((p.leader, p.isr), (2, vec![2]));
        // The same process registering again changes nothing.
        let mut registered = img.clone();
        records.iter().for_each(|r| registered.apply(r));
        assert!(plan_register_broker(&registered, 1, Uuid::from_u128(99), "h", 1, None).is_empty());
    }

    #[test]
    fn alter_partition_checks_epochs_membership_and_liveness() {
        let img = image(&[(1, false), (2, false), (3, true)], &[1, 2, 3], &[1], 1);
        let p = applied(img.clone(), &plan_alter_partition(&img, TOPIC, 0, 1, 3, 10, &[2, 1]).unwrap());
        assert_eq!((p.isr, p.partition_epoch), (vec![1, 2], 11));
        assert_eq!(plan_alter_partition(&img, TOPIC, 0, 1, 2, 10, &[1, 2]), Err(AlterPartitionError::FencedLeaderEpoch { requested: 2, current: 3 }));
        assert_eq!(plan_alter_partition(&img, TOPIC, 0, 1, 3, 9, &[1, 2]), Err(AlterPartitionError::InvalidUpdateVersion { requested: 9, current: 10 }));
        assert_eq!(plan_alter_partition(&img, TOPIC, 0, 2, 3, 10, &[1, 2]), Err(AlterPartitionError::NotLeader(2)));
        assert!(matches!(plan_alter_partition(&img, TOPIC, 0, 1, 3, 10, &[1, 3]), Err(AlterPartitionError::InvalidIsr(_))));
        assert!(matches!(plan_alter_partition(&img, TOPIC, 0, 1, 3, 10, &[2]), Err(AlterPartitionError::InvalidIsr(_))));
        assert!(matches!(plan_alter_partition(&img, TOPIC, 0, 1, 3, 10, &[1, 4]), Err(AlterPartitionError::InvalidIsr(_))));
        assert_eq!(plan_alter_partition(&img, TOPIC, 1, 1, 3, 10, &[1]), Err(AlterPartitionError::UnknownPartition));
    }

    #[test]
    fn preferred_election_needs_a_live_in_sync_preferred_replica() {
        let img = image(&[(1, false), (2, false)], &[1, 2], &[1, 2], 2);
        let p = applied(img.clone(), &plan_elect_preferred(&img, "t", 0).unwrap());
        assert_eq!((p.leader, p.leader_epoch), (1, 4));
        let led = image(&[(1, false), (2, false)], &[1, 2], &[1, 2], 1);
        assert!(matches!(plan_elect_preferred(&led, "t", 0), Err(ControllerError::ElectionNotNeeded)));
        let out_of_sync = image(&[(1, false), (2, false)], &[1, 2], &[2], 2);
        assert!(matches!(plan_elect_preferred(&out_of_sync, "t", 0), Err(ControllerError::PreferredLeaderNotAvailable(_))));
    }

    #[test]
    fn a_reassignment_adds_then_drops_replicas_once_the_new_ones_are_in_sync() {
        let img = image(&[(1, false), (2, false), (3, false), (4, false)], &[1, 2, 3], &[1, 2, 3], 1);
        let mut moving = img.clone();
        plan_reassign(&img, "t", 0, Some(&[4, 2, 3])).unwrap().iter().for_each(|r| moving.apply(r));
        let p = moving.topics["t"].partitions[0].clone();
        assert_eq!((p.replicas.clone(), p.adding.clone(), p.removing.clone(), p.isr.clone()), (vec![4, 2, 3, 1], vec![4], vec![1], vec![1, 2, 3]));
        // The leader (1) takes 4 into the ISR: the reassignment completes and leadership leaves 1.
        let done = applied(moving.clone(), &plan_alter_partition(&moving, TOPIC, 0, 1, 3, p.partition_epoch, &[1, 2, 3, 4]).unwrap());
        assert_eq!((done.replicas, done.isr, done.adding, done.removing), (vec![4, 2, 3], vec![4, 2, 3], vec![], vec![]));
        assert_eq!((done.leader, done.leader_epoch), (4, 4));
        // Cancelling goes back to the original replicas.
        let cancelled = applied(moving.clone(), &plan_reassign(&moving, "t", 0, None).unwrap());
        assert_eq!((cancelled.replicas, cancelled.adding, cancelled.leader), (vec![2, 3, 1], vec![], 1));
        assert!(matches!(plan_reassign(&img, "t", 0, None), Err(ControllerError::NoReassignmentInProgress(_))));
        assert!(matches!(plan_reassign(&img, "t", 0, Some(&[1, 9])), Err(ControllerError::InvalidReplicaAssignment(_))));
        // Shrinking to in-sync replicas completes at once.
        let shrunk = applied(img.clone(), &plan_reassign(&img, "t", 0, Some(&[2, 3])).unwrap());
        assert_eq!((shrunk.replicas, shrunk.isr, shrunk.leader), (vec![2, 3], vec![2, 3], 2));
    }

    #[test]
    fn the_rebalance_moves_only_partitions_whose_preferred_replica_can_lead() {
        let moved = image(&[(1, false), (2, false)], &[1, 2], &[1, 2], 2);
        let p = applied(moved.clone(), &plan_preferred_rebalance(&moved));
        assert_eq!((p.leader, p.leader_epoch), (1, 4));
        let lagging = image(&[(1, false), (2, false)], &[1, 2], &[2], 2);
        assert!(plan_preferred_rebalance(&lagging).is_empty());
        let home = image(&[(1, false), (2, false)], &[1, 2], &[1, 2], 1);
        assert!(plan_preferred_rebalance(&home).is_empty());
    }

    #[test]
    fn unclean_election_takes_any_live_replica_of_an_offline_partition() {
        let offline = image(&[(1, false), (2, true)], &[2, 1], &[2], -1);
        let p = applied(offline.clone(), &plan_elect_unclean(&offline, "t", 0).unwrap());
        assert_eq!((p.leader, p.isr, p.leader_epoch), (1, vec![1], 4));
        let online = image(&[(1, false), (2, false)], &[2, 1], &[2], 2);
        assert!(matches!(plan_elect_unclean(&online, "t", 0), Err(ControllerError::ElectionNotNeeded)));
        let dead = image(&[(1, true), (2, true)], &[2, 1], &[2], -1);
        assert!(matches!(plan_elect_unclean(&dead, "t", 0), Err(ControllerError::EligibleLeadersNotAvailable(_))));
    }
}
