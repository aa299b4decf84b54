//! Streams on the master: replicated metadata ([`state`]), the control RPCs
//! ([`rpc`]), shard primary failover and replica replacement ([`monitor`]),
//! consumer-group leases ([`groups`]). The Kinesis JSON API is
//! [`crate::kinesis`].

pub mod groups;
pub mod monitor;
pub mod rpc;
pub mod state;

use basin_proto as pb;

use crate::namenode::Namenode;
use crate::namenode::state::FsState;
use state::{Shard, Stream};

/// The wire form of a stream, with each primary's address.
pub fn stream_info(s: &FsState, st: &Stream) -> pb::StreamInfo {
    pb::StreamInfo {
        name: st.name.clone(),
        status: "ACTIVE".into(),
        retention_hours: (st.retention_ms / 3_600_000) as u32,
        replication: st.replication,
        created_ms: st.created_ms,
        shards: st.shards.iter().map(|sh| shard_info(s, sh)).collect(),
        consumers: st.consumers.clone(),
        retention_ms: st.retention_ms,
        groups: st
            .groups
            .iter()
            .map(|(name, cps)| pb::GroupInfo {
                name: name.clone(),
                checkpoints: cps
                    .iter()
                    .map(|(shard, c)| pb::Checkpoint {
                        shard: shard.clone(),
                        seq: c.seq,
                        finished: c.finished,
                    })
                    .collect(),
            })
            .collect(),
    }
}

fn shard_info(s: &FsState, sh: &Shard) -> pb::ShardInfo {
    let node = s.nodes.get(&sh.primary);
    pb::ShardInfo {
        shard_id: sh.id.clone(),
        start_hash: sh.start.clone(),
        end_hash: sh.end.clone(),
        open: sh.open,
        parent: sh.parent.clone().unwrap_or_default(),
        adjacent_parent: sh.adjacent_parent.clone().unwrap_or_default(),
        epoch: sh.epoch,
        primary: sh.primary,
        replicas: sh.replicas.clone(),
        isr: sh.isr.clone(),
        created_ms: sh.created_ms,
        primary_addr: node.map(|n| n.addr.clone()).unwrap_or_default(),
        primary_external_addr: node.map(|n| n.external_addr.clone()).unwrap_or_default(),
        parents: if sh.parents.is_empty() {
            sh.parent
                .iter()
                .chain(&sh.adjacent_parent)
                .cloned()
                .collect()
        } else {
            sh.parents.clone()
        },
    }
}

/// Every shard replica `node` holds, for its heartbeat answer.
pub fn assignments_for(nn: &Namenode, node: u64) -> Vec<pb::ShardAssignment> {
    nn.read(|s| {
        let addr = |id: u64| s.nodes.get(&id).map(|n| n.addr.clone()).unwrap_or_default();
        s.streams
            .streams
            .values()
            .flat_map(|st| {
                st.shards
                    .iter()
                    .filter(|sh| sh.replicas.contains(&node))
                    .map(|sh| pb::ShardAssignment {
                        stream: st.name.clone(),
                        shard: sh.id.clone(),
                        epoch: sh.epoch,
                        primary: sh.primary,
                        replicas: sh
                            .replicas
                            .iter()
                            .map(|r| pb::ShardReplica {
                                node_id: *r,
                                addr: addr(*r),
                            })
                            .collect(),
                        isr: sh.isr.clone(),
                        open: sh.open,
                        retention_ms: st.retention_ms,
                        start_hash: sh.start.clone(),
                        end_hash: sh.end.clone(),
                        stream_uid: st.uid.to_string(),
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    })
}
