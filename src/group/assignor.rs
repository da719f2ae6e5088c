//! Server-side assignors of KIP-848 consumer groups: given every member's subscription and the previous target
//! assignment, compute the next target assignment. Pure functions, deterministic (members and partitions are
//! visited in sorted order), so the same inputs always give the same assignment on every replica.
//!
//! - [`UNIFORM`] (the default, like Kafka's UniformAssignor): sticky and balanced. Members keep what they had
//!   while it is still subscribed and within their fair share; the rest goes to the least-loaded eligible member;
//!   then partitions move from the most to the least loaded member until no move improves balance. With equal
//!   subscriptions every member ends with ⌊P/N⌋ or ⌈P/N⌉ partitions.
//! - [`RANGE`] (like Kafka's server RangeAssignor): per topic, the subscribed members sorted by id take
//!   contiguous ranges; the first P mod N members take one more.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

pub const UNIFORM: &str = "uniform";
pub const RANGE: &str = "range";
pub const ASSIGNORS: &[&str] = &[UNIFORM, RANGE];

/// Partitions per topic id.
pub type Assignment = BTreeMap<Uuid, BTreeSet<i32>>;

/// What the assignor knows about one member.
#[derive(Clone, Debug, Default)]
pub struct MemberSubscription {
    pub subscribed_topic_ids: BTreeSet<Uuid>,
    /// The member's previous target assignment, for stickiness.
    pub previous: Assignment,
}

pub fn is_known(name: &str) -> bool {
    ASSIGNORS.contains(&name)
}

/// Computes the target assignment. `partition_counts` holds every subscribed topic that exists.
pub fn assign(
    assignor: &str,
    members: &BTreeMap<String, MemberSubscription>,
    partition_counts: &BTreeMap<Uuid, i32>,
) -> BTreeMap<String, Assignment> {
    match assignor {
        RANGE => assign_range(members, partition_counts),
        _ => assign_uniform(members, partition_counts),
    }
}

fn assign_range(members: &BTreeMap<String, MemberSubscription>, partition_counts: &BTreeMap<Uuid, i32>) -> BTreeMap<String, Assignment> {
    let mut result: BTreeMap<String, Assignment> = members.keys().map(|m| (m.clone(), Assignment::new())).collect();
    for (&topic, &count) in partition_counts {
        let subscribers: Vec<&String> = members.iter().filter(|(_, s)| s.subscribed_topic_ids.contains(&topic)).map(|(m, _)| m).collect();
        if subscribers.is_empty() || count <= 0 {
            continue;
        }
        let n = subscribers.len() as i32;
        let (quota, extra) = (count / n, count % n);
        let mut next = 0;
        for (i, member) in subscribers.into_iter().enumerate() {
            let take = quota + i32::from((i as i32) < extra);
            if take > 0 {
                let partitions = result.entry(member.clone()).or_default().entry(topic).or_default();
                partitions.extend(next..next + take);
            }
            next += take;
        }
    }
    result
}

fn assign_uniform(members: &BTreeMap<String, MemberSubscription>, partition_counts: &BTreeMap<Uuid, i32>) -> BTreeMap<String, Assignment> {
    let mut owner: BTreeMap<(Uuid, i32), &str> = BTreeMap::new();
    let mut load: BTreeMap<&str, BTreeSet<(Uuid, i32)>> = members.keys().map(|m| (m.as_str(), BTreeSet::new())).collect();
    let eligible = |member: &str, topic: &Uuid| members.get(member).is_some_and(|s| s.subscribed_topic_ids.contains(topic));
    let total: usize = partition_counts
        .iter()
        .filter(|(t, _)| members.values().any(|s| s.subscribed_topic_ids.contains(t)))
        .map(|(_, &c)| c.max(0) as usize)
        .sum();
    let fair_share = if members.is_empty() { 0 } else { total.div_ceil(members.len()) };

    // 1. Stickiness: keep previous partitions that still exist and are still subscribed, up to the fair share.
    for (member, subscription) in members {
        for (topic, partitions) in &subscription.previous {
            let Some(&count) = partition_counts.get(topic) else { continue };
            if !subscription.subscribed_topic_ids.contains(topic) {
                continue;
            }
            for &p in partitions {
                let mine = &load[member.as_str()];
                if p < count && !owner.contains_key(&(*topic, p)) && mine.len() < fair_share {
                    owner.insert((*topic, p), member.as_str());
                    load.get_mut(member.as_str()).map(|s| s.insert((*topic, p)));
                }
            }
        }
    }
    // 2. Everything else to the least-loaded eligible member.
    for (&topic, &count) in partition_counts {
        for p in 0..count.max(0) {
            if owner.contains_key(&(topic, p)) {
                continue;
            }
            let least = load.iter().filter(|(m, _)| eligible(m, &topic)).min_by_key(|(m, s)| (s.len(), **m)).map(|(m, _)| *m);
            if let Some(member) = least {
                owner.insert((topic, p), member);
                load.get_mut(member).map(|s| s.insert((topic, p)));
            }
        }
    }
    // 3. Balance: move a partition from a member to an eligible one with at least two fewer. Each move lowers
    // the sum of squared loads, so this ends; the bound is a safety net.
    let mut moves_left = total.saturating_mul(members.len()).max(1);
    'balance: while moves_left > 0 {
        let mut by_load: Vec<(&str, usize)> = load.iter().map(|(m, s)| (*m, s.len())).collect();
        by_load.sort_by_key(|(m, n)| (std::cmp::Reverse(*n), *m));
        for &(from, from_len) in &by_load {
            for &(to, to_len) in by_load.iter().rev() {
                if to_len + 1 >= from_len {
                    break;
                }
                let candidate = load[from].iter().rev().find(|(topic, _)| eligible(to, topic)).copied();
                if let Some(tp) = candidate {
                    load.get_mut(from).map(|s| s.remove(&tp));
                    load.get_mut(to).map(|s| s.insert(tp));
                    moves_left -= 1;
                    continue 'balance;
                }
            }
        }
        break;
    }
    load.into_iter()
        .map(|(member, partitions)| {
            let mut assignment = Assignment::new();
            for (topic, p) in partitions {
                assignment.entry(topic).or_default().insert(p);
            }
            (member.to_string(), assignment)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn topic(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn subscribed(topics: &[Uuid]) -> MemberSubscription {
        MemberSubscription { subscribed_topic_ids: topics.iter().copied().collect(), previous: Assignment::new() }
    }

    fn count(a: &Assignment) -> usize {
        a.values().map(|s| s.len()).sum()
    }

    #[test]
    fn range_gives_contiguous_ranges_extra_to_first_members() {
        let t = topic(1);
        let members: BTreeMap<String, MemberSubscription> =
            [("a".to_string(), subscribed(&[t])), ("b".to_string(), subscribed(&[t]))].into_iter().collect();
        let result = assign(RANGE, &members, &[(t, 3)].into_iter().collect());
        assert_eq!(result["a"][&t], [0, 1].into_iter().collect());
        assert_eq!(result["b"][&t], [2].into_iter().collect());
    }

    #[test]
    fn uniform_is_sticky_when_a_member_joins() {
        let t = topic(1);
        let counts: BTreeMap<Uuid, i32> = [(t, 4)].into_iter().collect();
        let one: BTreeMap<String, MemberSubscription> = [("a".to_string(), subscribed(&[t]))].into_iter().collect();
        let first = assign(UNIFORM, &one, &counts);
        assert_eq!(count(&first["a"]), 4);
        let mut a = subscribed(&[t]);
        a.previous = first["a"].clone();
        let two: BTreeMap<String, MemberSubscription> = [("a".to_string(), a), ("b".to_string(), subscribed(&[t]))].into_iter().collect();
        let second = assign(UNIFORM, &two, &counts);
        assert_eq!(count(&second["a"]), 2);
        assert_eq!(count(&second["b"]), 2);
        assert!(second["a"][&t].is_subset(&first["a"][&t]));
    }

    proptest! {
        #[test]
        fn uniform_balances_equal_subscriptions_and_assigns_everything(
            members in 1usize..6,
            counts in proptest::collection::vec(0i32..9, 1..4),
            previous_seed in 0u64..1000,
        ) {
            let topics: Vec<Uuid> = (0..counts.len()).map(|i| topic(i as u128 + 1)).collect();
            let partition_counts: BTreeMap<Uuid, i32> = topics.iter().copied().zip(counts.iter().copied()).collect();
            let mut subs = BTreeMap::new();
            for m in 0..members {
                let mut s = subscribed(&topics);
                // A pseudo-random previous assignment, possibly overlapping other members' and out of range.
                for (i, t) in topics.iter().enumerate() {
                    let p = ((previous_seed as usize + m * 7 + i * 3) % 10) as i32;
                    s.previous.entry(*t).or_default().insert(p);
                }
                subs.insert(format!("m{m}"), s);
            }
            let result = assign(UNIFORM, &subs, &partition_counts);
            let loads: Vec<usize> = result.values().map(count).collect();
            let total: usize = counts.iter().map(|&c| c as usize).sum();
            prop_assert_eq!(loads.iter().sum::<usize>(), total);
            prop_assert!(loads.iter().max().unwrap() - loads.iter().min().unwrap() <= 1);
            let mut seen = BTreeSet::new();
            for a in result.values() {
                for (t, ps) in a {
                    for p in ps {
                        prop_assert!(*p < partition_counts[t]);
                        prop_assert!(seen.insert((*t, *p)));
                    }
                }
            }
        }

        #[test]
        fn uniform_only_assigns_subscribed_topics(members in 1usize..5, p in 1i32..8) {
            let (t1, t2) = (topic(1), topic(2));
            let mut subs = BTreeMap::new();
            for m in 0..members {
                let topics = if m % 2 == 0 { vec![t1] } else { vec![t1, t2] };
                subs.insert(format!("m{m}"), subscribed(&topics));
            }
            let result = assign(UNIFORM, &subs, &[(t1, p), (t2, p)].into_iter().collect());
            for (m, a) in &result {
                for t in a.keys() {
                    prop_assert!(subs[m].subscribed_topic_ids.contains(t));
                }
            }
            let t2_assigned: usize = result.values().filter_map(|a| a.get(&t2)).map(|s| s.len()).sum();
            prop_assert_eq!(t2_assigned, if members > 1 { p as usize } else { 0 });
        }
    }
}
