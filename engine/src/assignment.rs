//! Which node should own which partition: rendezvous hashing with quotas. Every
//! node computes the same answer from the partition count (config) and the
//! live-node list, so they agree without talking — and without reading the
//! tenants; leases (`lease.rs`) keep it safe while views differ.
//!
//! Each node gets a quota of ⌊P/N⌋ partitions, and the P mod N nodes ranked
//! first by their hash with the empty string one more, so counts differ by at
//! most one. Partitions are placed in order, each on the node with the highest
//! `hash(partition, node)` that still has room: with the quotas this is stable —
//! a node joining or leaving moves roughly its own share, not everything.

use std::collections::HashMap;

use crate::partition::Partition;
use sha2::{Digest, Sha256};

/// The rendezvous weight of `node` for `key`.
fn weight(key: &[u8], node: &str) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(key);
    hasher.update([0xff]);
    hasher.update(node.as_bytes());
    let digest = hasher.finalize();
    u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// The owner of each of `partitions` partitions among `nodes` (ids; order and
/// repeats do not matter). Empty when there are no nodes.
pub fn assign(partitions: u32, nodes: &[String]) -> HashMap<Partition, String> {
    let keys: Vec<Partition> = (0..partitions).collect();
    assign_keys(&keys, nodes)
}

/// The partitions of `node` among `partitions` shared by `nodes`, sorted.
pub fn share_of(partitions: u32, nodes: &[String], node: &str) -> Vec<Partition> {
    let mut mine: Vec<Partition> = assign(partitions, nodes)
        .into_iter()
        .filter(|(_, owner)| owner == node)
        .map(|(p, _)| p)
        .collect();
    mine.sort_unstable();
    mine
}

fn assign_keys(keys: &[Partition], nodes: &[String]) -> HashMap<Partition, String> {
    let mut nodes: Vec<&str> = nodes.iter().map(String::as_str).collect();
    nodes.sort_unstable();
    nodes.dedup();
    if nodes.is_empty() {
        return HashMap::new();
    }
    let mut keys: Vec<Partition> = keys.to_vec();
    keys.sort_unstable();
    keys.dedup();
    // Which nodes carry the remainder: ranked by a hash of the node alone.
    let mut ranked = nodes.clone();
    ranked.sort_by_key(|node| std::cmp::Reverse(weight(b"", node)));
    let (base, extra) = (keys.len() / nodes.len(), keys.len() % nodes.len());
    let mut room: HashMap<&str, usize> = ranked
        .iter()
        .enumerate()
        .map(|(rank, node)| (*node, base + usize::from(rank < extra)))
        .collect();
    let mut owners = HashMap::with_capacity(keys.len());
    for key in keys {
        let best = nodes
            .iter()
            .filter(|node| room[**node] > 0)
            .max_by_key(|node| (weight(&key.to_be_bytes(), node), **node))
            .copied()
            .expect("the quotas add up to the keys");
        *room.get_mut(best).expect("a node of the list") -= 1;
        owners.insert(key, best.to_string());
    }
    owners
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenants(n: u32) -> Vec<Partition> {
        (0..n).collect()
    }

    fn assign(keys: &[Partition], nodes: &[String]) -> HashMap<Partition, String> {
        assign_keys(keys, nodes)
    }

    fn nodes(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    fn counts(owners: &HashMap<Partition, String>) -> Vec<usize> {
        let mut per: HashMap<&str, usize> = HashMap::new();
        for node in owners.values() {
            *per.entry(node).or_default() += 1;
        }
        let mut counts: Vec<usize> = per.into_values().collect();
        counts.sort_unstable();
        counts
    }

    #[test]
    fn every_tenant_has_one_owner_and_counts_differ_by_at_most_one() {
        for t in [0, 1, 2, 5, 6, 7, 31, 100] {
            for n in 1..=5 {
                let names: Vec<String> = (0..n).map(|i| format!("node-{i}")).collect();
                let owners = assign(&tenants(t), &names);
                assert_eq!(owners.len(), t as usize);
                let c = counts(&owners);
                if let (Some(lo), Some(hi)) = (c.first(), c.last()) {
                    assert!(hi - lo <= 1, "{t} tenants on {n} nodes: {c:?}");
                }
            }
        }
    }

    #[test]
    fn the_answer_does_not_depend_on_order_or_repeats() {
        let a = assign(&tenants(20), &nodes(&["b", "a", "c"]));
        let mut shuffled = tenants(20);
        shuffled.reverse();
        shuffled.push(shuffled[0]);
        let b = assign(&shuffled, &nodes(&["c", "a", "b", "a"]));
        assert_eq!(a, b);
        assert!(assign(&tenants(3), &[]).is_empty());
    }

    #[test]
    fn share_of_is_this_nodes_part_of_assign() {
        let nodes = nodes(&["a", "b", "c"]);
        let all = super::assign(512, &nodes);
        let mut from_share: Vec<Partition> = ["a", "b", "c"]
            .iter()
            .flat_map(|n| share_of(512, &nodes, n))
            .collect();
        from_share.sort_unstable();
        assert_eq!(from_share, (0..512).collect::<Vec<_>>());
        assert_eq!(
            share_of(512, &nodes, "a").len(),
            all.values().filter(|n| *n == "a").count()
        );
    }

    #[test]
    fn a_joining_node_takes_about_its_share() {
        let before = assign(&tenants(60), &nodes(&["a", "b"]));
        let after = assign(&tenants(60), &nodes(&["a", "b", "c"]));
        let moved = before.iter().filter(|(t, n)| after[*t] != **n).count();
        assert_eq!(after.values().filter(|n| *n == "c").count(), 20);
        // c's 20, plus a few moved between a and b by the quotas.
        assert!(moved <= 30, "{moved} of 60 tenants moved");
    }
}
