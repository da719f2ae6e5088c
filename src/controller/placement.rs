//! Where a new partition's replicas go: Kafka's round-robin assignment over the live brokers, with the broker
//! list interleaved by rack so that consecutive replicas land on different racks whenever racks allow.

use std::collections::BTreeMap;

use super::image::MetadataImage;
use super::ControllerError;

/// The live brokers, ordered so that neighbours are on different racks: rack A's first broker, rack B's first,
/// ..., rack A's second, ... (Kafka's `getRackAlternatedBrokerList`). Brokers without a rack form one rack.
pub fn rack_alternated_brokers(image: &MetadataImage) -> Vec<i32> {
    let mut by_rack: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for broker in image.live_brokers() {
        by_rack.entry(broker.rack.as_deref().unwrap_or("")).or_default().push(broker.node_id);
    }
    let longest = by_rack.values().map(Vec::len).max().unwrap_or(0);
    let mut ordered = Vec::new();
    for round in 0..longest {
        for brokers in by_rack.values() {
            if let Some(&broker) = brokers.get(round) {
                ordered.push(broker);
            }
        }
    }
    ordered
}

/// Replica lists for partitions `first_partition..first_partition + count`, each of `replication_factor`
/// distinct live brokers. `start` spreads leaders of different topics (Kafka picks it at random); `shift`
/// does the same for followers.
pub fn assign_replicas(
    image: &MetadataImage,
    first_partition: i32,
    count: i32,
    replication_factor: i32,
    start: usize,
    shift: usize,
) -> Result<Vec<Vec<i32>>, ControllerError> {
    let brokers = rack_alternated_brokers(image);
    let available = brokers.len();
    if replication_factor < 1 {
        return Err(ControllerError::InvalidReplicationFactor {
            factor: replication_factor,
            reason: "the replication factor must be larger than 0".into(),
        });
    }
    if replication_factor as usize > available {
        return Err(ControllerError::InvalidReplicationFactor {
            factor: replication_factor,
            reason: format!("larger than the {available} available brokers"),
        });
    }
    let n = available;
    let rack_of: BTreeMap<i32, Option<&str>> = image.live_brokers().map(|b| (b.node_id, b.rack.as_deref())).collect();
    let rack_count = rack_of.values().collect::<std::collections::BTreeSet<_>>().len();
    let mut assignments = Vec::with_capacity(count.max(0) as usize);
    for offset in 0..count.max(0) as usize {
        let partition = first_partition as usize + offset;
        let first = (start + partition) % n;
        // Kafka bumps the follower shift every time the leaders wrap around the broker list.
        let shift = shift + partition / n;
        let mut replicas = vec![brokers[first]];
        for j in 0..(replication_factor as usize - 1) {
            let distance = 1 + (shift + j) % (n - 1);
            // From that distance on, the first broker not chosen yet, preferring a rack not used yet while
            // unused racks remain (Kafka's rack-aware rule).
            let racks_used: Vec<Option<&str>> = replicas.iter().map(|b| rack_of[b]).collect();
            let want_new_rack = racks_used.len() < rack_count;
            let candidates = (0..n).map(|k| brokers[(first + distance + k) % n]).filter(|b| !replicas.contains(b));
            let chosen = candidates
                .clone()
                .find(|b| !want_new_rack || !racks_used.contains(&rack_of[b]))
                .or_else(|| candidates.clone().next());
            match chosen {
                Some(broker) => replicas.push(broker),
                None => break,
            }
        }
        assignments.push(replicas);
    }
    Ok(assignments)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::records::MetadataRecord;
    use std::collections::BTreeSet;
    use uuid::Uuid;

    fn image_with(brokers: &[(i32, Option<&str>, bool)]) -> MetadataImage {
        let mut image = MetadataImage::default();
        for (id, rack, fenced) in brokers {
            image.apply(&MetadataRecord::RegisterBroker {
                broker: *id,
                incarnation: Uuid::nil(),
                host: "h".into(),
                port: 9092,
                rack: rack.map(String::from),
            });
            image.apply(&MetadataRecord::BrokerFencing { broker: *id, fenced: *fenced });
        }
        image
    }

    #[test]
    fn replicas_are_distinct_live_and_leaders_spread() {
        let image = image_with(&[(1, None, false), (2, None, false), (3, None, false), (4, None, true)]);
        let assignments = assign_replicas(&image, 0, 6, 3, 0, 0).unwrap();
        let mut leaders = BTreeMap::new();
        for replicas in &assignments {
            assert_eq!(replicas.iter().collect::<BTreeSet<_>>().len(), 3, "{replicas:?}");
            assert!(!replicas.contains(&4), "fenced broker used: {replicas:?}");
            *leaders.entry(replicas[0]).or_insert(0) += 1;
        }
        assert_eq!(leaders.values().copied().collect::<Vec<_>>(), vec![2, 2, 2]);
    }

    #[test]
    fn too_few_brokers_is_an_invalid_replication_factor() {
        let image = image_with(&[(1, None, false), (2, None, true)]);
        assert!(matches!(assign_replicas(&image, 0, 1, 2, 0, 0), Err(ControllerError::InvalidReplicationFactor { factor: 2, .. })));
        assert!(matches!(assign_replicas(&image, 0, 1, 0, 0, 0), Err(ControllerError::InvalidReplicationFactor { factor: 0, .. })));
        assert_eq!(assign_replicas(&image, 0, 2, 1, 0, 0).unwrap(), vec![vec![1], vec![1]]);
    }

    #[test]
    fn consecutive_replicas_are_on_different_racks() {
        let image = image_with(&[(1, Some("a"), false), (2, Some("a"), false), (3, Some("b"), false), (4, Some("b"), false)]);
        assert_eq!(rack_alternated_brokers(&image), vec![1, 3, 2, 4]);
        let rack = |id: i32| if id <= 2 { "a" } else { "b" };
        for start in 0..4 {
            for replicas in assign_replicas(&image, 0, 8, 2, start, 0).unwrap() {
                assert_ne!(rack(replicas[0]), rack(replicas[1]), "{replicas:?}");
            }
        }
    }
}
