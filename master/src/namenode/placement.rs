//! Choosing workers for new replicas: live core workers in normal service,
//! spread across zones first, then the least-loaded.

use std::collections::HashMap;

use rand::seq::SliceRandom;

/// A candidate worker for a replica.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub id: u64,
    pub zone: String,
    pub used_bytes: u64,
}

/// Picks up to `count` candidates, none in `exclude`, spreading over zones
/// (counting the zones of `existing` replicas) and preferring emptier nodes.
pub fn choose(
    mut candidates: Vec<Candidate>,
    existing_zones: &[String],
    exclude: &[u64],
    count: usize,
) -> Vec<Candidate> {
    candidates.retain(|c| !exclude.contains(&c.id));
    candidates.shuffle(&mut rand::rng());
    candidates.sort_by_key(|c| c.used_bytes / (64 * 1024 * 1024));
    let mut zone_use: HashMap<String, usize> = HashMap::new();
    for z in existing_zones {
        *zone_use.entry(z.clone()).or_default() += 1;
    }
    let mut picked = Vec::new();
    while picked.len() < count && !candidates.is_empty() {
        // The first candidate (in load order) whose zone is least used so far.
        let best = candidates
            .iter()
            .enumerate()
            .min_by_key(|(i, c)| (zone_use.get(&c.zone).copied().unwrap_or(0), *i))
            .map(|(i, _)| i);
        let Some(i) = best else { break };
        let c = candidates.remove(i);
        *zone_use.entry(c.zone.clone()).or_default() += 1;
        picked.push(c);
    }
    picked
}

/// Of the replicas on `nodes` (id, zone), which one to drop when a block has
/// one too many: one from the most crowded zone, the fullest there.
pub fn choose_excess(nodes: &[Candidate]) -> Option<u64> {
    let mut zone_use: HashMap<&str, usize> = HashMap::new();
    for n in nodes {
        *zone_use.entry(n.zone.as_str()).or_default() += 1;
    }
    nodes
        .iter()
        .max_by_key(|n| {
            (
                zone_use.get(n.zone.as_str()).copied().unwrap_or(0),
                n.used_bytes,
                n.id,
            )
        })
        .map(|n| n.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: u64, zone: &str) -> Candidate {
        Candidate {
            id,
            zone: zone.into(),
            used_bytes: 0,
        }
    }

    #[test]
    fn spreads_over_zones() {
        let picked = choose(
            vec![c(1, "a"), c(2, "a"), c(3, "b"), c(4, "c")],
            &[],
            &[],
            3,
        );
        let mut zones: Vec<_> = picked.iter().map(|c| c.zone.clone()).collect();
        zones.sort();
        assert_eq!(zones, vec!["a", "b", "c"]);
        let picked = choose(vec![c(1, "a"), c(2, "b")], &[], &[2], 3);
        assert_eq!(picked.len(), 1);
        assert_eq!(
            choose_excess(&[c(1, "a"), c(2, "a"), c(3, "b")]).map(|id| id == 1 || id == 2),
            Some(true)
        );
    }
}
