//! Soft state rebuilt from workers: liveness, block locations, corrupt
//! replicas, and the commands waiting for each worker's next heartbeat.
//!
//! Nothing here is replicated: every master keeps its own copy from the
//! heartbeats and block reports that workers send to all masters, as HDFS
//! datanodes do with every namenode.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use basin_proto as pb;

/// What one master knows of one worker's liveness.
#[derive(Clone, Debug)]
pub struct NodeLive {
    pub last_heartbeat: Instant,
    pub capacity_bytes: u64,
    pub used_bytes: u64,
    /// Whether this master has had a full block report since the worker (re)appeared.
    pub reported: bool,
}

/// A replication this master asked for and is waiting to see reported.
#[derive(Clone, Debug)]
pub struct PendingReplication {
    pub targets: Vec<u64>,
    pub since: Instant,
}

#[derive(Default)]
pub struct BlockMap {
    pub live: HashMap<u64, NodeLive>,
    /// Block id → nodes holding a finalized, unverified-bad-free replica.
    pub locations: HashMap<u64, BTreeSet<u64>>,
    /// Node → blocks it reported.
    pub node_blocks: HashMap<u64, HashSet<u64>>,
    /// Block id → nodes whose replica was found corrupt (kept until healed).
    pub corrupt: HashMap<u64, BTreeSet<u64>>,
    pub pending: HashMap<u64, PendingReplication>,
    pub commands: HashMap<u64, Vec<pb::BlockCommand>>,
}

impl BlockMap {
    pub fn is_live(&self, node: u64, dead_after: Duration) -> bool {
        self.live
            .get(&node)
            .is_some_and(|n| n.last_heartbeat.elapsed() < dead_after)
    }

    /// Records a heartbeat; returns true when this master needs a full report.
    pub fn heartbeat(&mut self, node: u64, capacity: u64, used: u64) -> bool {
        let e = self.live.entry(node).or_insert(NodeLive {
            last_heartbeat: Instant::now(),
            capacity_bytes: capacity,
            used_bytes: used,
            reported: false,
        });
        e.last_heartbeat = Instant::now();
        e.capacity_bytes = capacity;
        e.used_bytes = used;
        !e.reported
    }

    pub fn add_replica(&mut self, node: u64, block: u64) {
        self.locations.entry(block).or_default().insert(node);
        self.node_blocks.entry(node).or_default().insert(block);
        if let Some(p) = self.pending.get_mut(&block) {
            p.targets.retain(|t| *t != node);
            if p.targets.is_empty() {
                self.pending.remove(&block);
            }
        }
    }

    pub fn remove_replica(&mut self, node: u64, block: u64) {
        if let Some(set) = self.locations.get_mut(&block) {
            set.remove(&node);
            if set.is_empty() {
                self.locations.remove(&block);
            }
        }
        if let Some(set) = self.node_blocks.get_mut(&node) {
            set.remove(&block);
        }
    }

    /// Replaces everything known of `node` with a full report.
    pub fn full_report(&mut self, node: u64, blocks: &[u64]) {
        let old: Vec<u64> = self
            .node_blocks
            .get(&node)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        for b in old {
            self.remove_replica(node, b);
        }
        for b in blocks {
            self.add_replica(node, *b);
        }
        if let Some(l) = self.live.get_mut(&node) {
            l.reported = true;
        }
    }

    /// Forgets a dead node's replicas (they come back with its next full report).
    pub fn forget_node(&mut self, node: u64) {
        if let Some(blocks) = self.node_blocks.remove(&node) {
            for b in blocks {
                if let Some(set) = self.locations.get_mut(&b) {
                    set.remove(&node);
                    if set.is_empty() {
                        self.locations.remove(&b);
                    }
                }
            }
        }
        if let Some(l) = self.live.get_mut(&node) {
            l.reported = false;
        }
        self.commands.remove(&node);
    }

    pub fn mark_corrupt(&mut self, node: u64, block: u64) {
        self.remove_replica(node, block);
        self.corrupt.entry(block).or_default().insert(node);
    }

    pub fn queue(&mut self, node: u64, cmd: pb::block_command::Kind) {
        self.commands
            .entry(node)
            .or_default()
            .push(pb::BlockCommand { kind: Some(cmd) });
    }

    pub fn queue_delete(&mut self, node: u64, blocks: Vec<u64>) {
        if blocks.is_empty() {
            return;
        }
        for b in &blocks {
            self.remove_replica(node, *b);
        }
        self.queue(
            node,
            pb::block_command::Kind::Delete(pb::DeleteCommand { block_ids: blocks }),
        );
    }

    /// Deletes freed blocks wherever they are.
    pub fn free_blocks(&mut self, blocks: &[u64]) {
        let mut per_node: HashMap<u64, Vec<u64>> = HashMap::new();
        for b in blocks {
            if let Some(nodes) = self.locations.get(b) {
                for n in nodes {
                    per_node.entry(*n).or_default().push(*b);
                }
            }
            self.corrupt.remove(b);
            self.pending.remove(b);
        }
        for (n, bs) in per_node {
            self.queue_delete(n, bs);
        }
    }

    pub fn take_commands(&mut self, node: u64) -> Vec<pb::BlockCommand> {
        self.commands.remove(&node).unwrap_or_default()
    }
}
