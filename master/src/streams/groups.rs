//! Consumer groups: which member reads which shard.
//!
//! Checkpoints are replicated (Raft); membership is soft state on the leader,
//! renewed by each member's heartbeat (a new leader learns it within one
//! heartbeat). The assignment is a pure function of the live members and the
//! shards ready to read, so every member sees the same split: a child shard is
//! ready only once each of its parents is read to its end.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use basin_proto as pb;

use crate::namenode::Namenode;

/// Member → last heartbeat.
type Members = BTreeMap<String, Instant>;

#[derive(Clone, Default)]
pub struct Groups {
    /// (stream, group) → members.
    members: Arc<Mutex<BTreeMap<(String, String), Members>>>,
}

impl Groups {
    /// Renews `member`'s lease (or drops it when leaving) and returns the shards it owns.
    pub fn heartbeat(
        &self,
        nn: &Namenode,
        stream: &str,
        group: &str,
        member: &str,
        leave: bool,
    ) -> Vec<pb::Checkpoint> {
        let live: Vec<String> = {
            let mut g = self.members.lock().unwrap_or_else(|p| p.into_inner());
            let m = g
                .entry((stream.to_string(), group.to_string()))
                .or_default();
            if leave {
                m.remove(member);
            } else {
                m.insert(member.to_string(), Instant::now());
            }
            m.retain(|_, t| t.elapsed() < nn.cfg.group_lease);
            m.keys().cloned().collect()
        };
        if leave {
            return vec![];
        }
        let Some(me) = live.iter().position(|m| m == member) else {
            return vec![];
        };
        let ready = ready_shards(nn, stream, group);
        ready
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % live.len() == me)
            .map(|(_, c)| c)
            .collect()
    }
}

/// Shards of `stream` the group should read now, in id order, with their checkpoints.
fn ready_shards(nn: &Namenode, stream: &str, group: &str) -> Vec<pb::Checkpoint> {
    nn.read(|s| {
        let Some(st) = s.streams.streams.get(stream) else {
            return vec![];
        };
        let cps = st.groups.get(group);
        let finished: BTreeSet<&str> = cps
            .map(|g| {
                g.iter()
                    .filter(|(_, c)| c.finished)
                    .map(|(k, _)| k.as_str())
                    .collect()
            })
            .unwrap_or_default();
        let exists: BTreeSet<&str> = st.shards.iter().map(|sh| sh.id.as_str()).collect();
        st.shards
            .iter()
            .filter(|sh| !finished.contains(sh.id.as_str()))
            .filter(|sh| {
                let mut parents: Vec<&str> = sh.parents.iter().map(String::as_str).collect();
                parents.extend(sh.parent.as_deref());
                parents.extend(sh.adjacent_parent.as_deref());
                parents
                    .iter()
                    .all(|p| finished.contains(p) || !exists.contains(p))
            })
            .map(|sh| {
                let cp = cps.and_then(|g| g.get(&sh.id)).cloned().unwrap_or_default();
                pb::Checkpoint {
                    shard: sh.id.clone(),
                    seq: cp.seq,
                    finished: cp.finished,
                }
            })
            .collect()
    })
}
