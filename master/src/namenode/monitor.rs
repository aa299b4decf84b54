//! The leader's housekeeping loop: dead-node detection, re-replication,
//! trimming over-replication, decommission progress, expired write leases
//! and safe mode.

use std::collections::HashMap;
use std::time::Instant;

use basin_proto as pb;
use tracing::{info, warn};

use super::Namenode;
use super::blocks::PendingReplication;
use super::placement::{self, Candidate};
use super::state::{AdminState, Command, CommandResult, Role};

/// Runs until `shutdown` fires.
pub async fn run(nn: Namenode, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(nn.cfg.monitor_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // When this master became leader: shard failover waits until workers
    // have had `dead_after` to heartbeat it.
    let mut leader_since: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        expire_dead_nodes(&nn);
        nn.update_safe_mode();
        if nn.raft.is_leader() {
            let since = *leader_since.get_or_insert_with(Instant::now);
            let settled = since.elapsed() >= nn.cfg.dead_after;
            crate::streams::monitor::check(&nn, settled).await;
        } else {
            leader_since = None;
        }
        if !nn.raft.is_leader() || nn.in_safe_mode() {
            continue;
        }
        check_replication(&nn);
        if let Err(e) = finish_decommissions(&nn).await {
            warn!(node_id = nn.cfg.id, "decommission check failed: {e}");
        }
        if let Err(e) = crate::jobtracker::scheduler::check_lost_work(&nn, nn.cfg.dead_after).await
        {
            warn!(node_id = nn.cfg.id, "lost-work check failed: {e}");
        }
        if let Err(e) = expire_leases(&nn).await {
            warn!(node_id = nn.cfg.id, "lease expiry failed: {e}");
        }
    }
}

fn expire_dead_nodes(nn: &Namenode) {
    let mut bm = nn.block_map();
    let dead: Vec<u64> = bm
        .live
        .iter()
        .filter(|(_, l)| l.reported && l.last_heartbeat.elapsed() >= nn.cfg.dead_after)
        .map(|(id, _)| *id)
        .collect();
    for id in dead {
        warn!(
            node_id = nn.cfg.id,
            worker = id,
            "worker is dead; its replicas no longer count"
        );
        bm.forget_node(id);
    }
}

/// Compares every block of every closed file with its replication factor and
/// queues replications or deletions.
fn check_replication(nn: &Namenode) {
    struct FileBlocks {
        replication: u32,
        blocks: Vec<u64>,
    }
    let (files, nodes) = nn.read(|s| {
        let files: Vec<FileBlocks> = s
            .inodes
            .values()
            .filter(|i| !i.is_dir() && i.visible())
            .map(|i| FileBlocks {
                replication: i.replication,
                blocks: i.blocks.iter().map(|b| b.id).collect(),
            })
            .collect();
        (files, s.nodes.clone())
    });
    let candidates = nn.candidates();
    let normal_live = candidates.len() as u32;
    let mut bm = nn.block_map();
    let dead_after = nn.cfg.dead_after;
    let zone_of = |id: u64| nodes.get(&id).map(|n| n.zone.clone()).unwrap_or_default();
    let used_of =
        |bm: &super::blocks::BlockMap, id: u64| bm.live.get(&id).map(|l| l.used_bytes).unwrap_or(0);
    let mut queued = 0u64;
    let mut under = 0u64;
    for f in files {
        let expected = f.replication.min(normal_live.max(1)) as usize;
        for b in f.blocks {
            let live: Vec<u64> = bm
                .locations
                .get(&b)
                .map(|s| {
                    s.iter()
                        .copied()
                        .filter(|n| bm.is_live(*n, dead_after))
                        .collect()
                })
                .unwrap_or_default();
            if live.is_empty() {
                continue; // missing: nothing to copy from
            }
            let counted: Vec<u64> = live
                .iter()
                .copied()
                .filter(|n| nodes.get(n).is_some_and(|r| r.admin == AdminState::Normal))
                .collect();
            if counted.len() < expected {
                under += 1;
                if let Some(p) = bm.pending.get(&b)
                    && p.since.elapsed() < nn.cfg.replication_timeout
                {
                    continue;
                }
                let zones: Vec<String> = counted.iter().map(|n| zone_of(*n)).collect();
                let mut exclude = live.clone();
                exclude.extend(bm.corrupt.get(&b).into_iter().flatten().copied());
                let targets = placement::choose(
                    candidates.clone(),
                    &zones,
                    &exclude,
                    expected - counted.len(),
                );
                if targets.is_empty() {
                    continue;
                }
                // Copy from a normal replica when there is one, else a draining one.
                let source = counted.first().or(live.first()).copied();
                let Some(source) = source else { continue };
                let infos: Vec<pb::NodeInfo> = targets
                    .iter()
                    .filter_map(|t| nn_info(nn, &nodes, &bm, t.id))
                    .collect();
                bm.pending.insert(
                    b,
                    PendingReplication {
                        targets: targets.iter().map(|t| t.id).collect(),
                        since: Instant::now(),
                    },
                );
                bm.queue(
                    source,
                    pb::block_command::Kind::Replicate(pb::ReplicateCommand {
                        block_id: b,
                        targets: infos,
                    }),
                );
                queued += 1;
            } else if counted.len() > expected && !bm.pending.contains_key(&b) {
                let holders: Vec<Candidate> = counted
                    .iter()
                    .map(|n| Candidate {
                        id: *n,
                        zone: zone_of(*n),
                        used_bytes: used_of(&bm, *n),
                    })
                    .collect();
                let mut excess = counted.len() - expected;
                let mut holders = holders;
                while excess > 0 {
                    let Some(victim) = placement::choose_excess(&holders) else {
                        break;
                    };
                    holders.retain(|h| h.id != victim);
                    bm.queue_delete(victim, vec![b]);
                    excess -= 1;
                }
            } else if counted.len() >= expected {
                bm.corrupt.remove(&b);
            }
        }
    }
    metrics::gauge!("basin_master_under_replicated_blocks").set(under as f64);
    if queued > 0 {
        info!(node_id = nn.cfg.id, queued, under, "re-replication queued");
    }
}

fn nn_info(
    nn: &Namenode,
    nodes: &std::collections::BTreeMap<u64, super::state::NodeRecord>,
    bm: &super::blocks::BlockMap,
    id: u64,
) -> Option<pb::NodeInfo> {
    nodes.get(&id).map(|r| nn.describe_node(r, bm))
}

/// Blocks on `node` that do not yet have their full replica count on
/// workers in normal service (what a decommission still has to copy).
pub fn undrained_blocks(nn: &Namenode, node: u64) -> u64 {
    let replication_of: HashMap<u64, u32> = nn.read(|s| {
        s.inodes
            .values()
            .filter(|i| !i.is_dir() && i.visible())
            .flat_map(|i| i.blocks.iter().map(move |b| (b.id, i.replication)))
            .collect()
    });
    let nodes = nn.read(|s| s.nodes.clone());
    let normal_live = nn.candidates().len() as u32;
    let bm = nn.block_map();
    let Some(blocks) = bm.node_blocks.get(&node) else {
        return 0;
    };
    blocks
        .iter()
        .filter(|b| {
            let Some(rep) = replication_of.get(b) else {
                return false;
            };
            let expected = (*rep).min(normal_live.max(1)) as usize;
            let elsewhere = nn
                .live_replicas(&bm, **b)
                .into_iter()
                .filter(|n| {
                    *n != node && nodes.get(n).is_some_and(|r| r.admin == AdminState::Normal)
                })
                .count();
            elsewhere < expected
        })
        .count() as u64
}

/// Marks draining nodes decommissioned once each of their blocks has enough
/// replicas elsewhere.
async fn finish_decommissions(nn: &Namenode) -> Result<(), tonic::Status> {
    let draining: Vec<u64> = nn.read(|s| {
        s.nodes
            .values()
            .filter(|n| n.admin == AdminState::Decommissioning && n.role == Role::Core)
            .map(|n| n.id)
            .collect()
    });
    for id in draining {
        if undrained_blocks(nn, id) == 0 {
            info!(node_id = nn.cfg.id, worker = id, "decommission complete");
            nn.write(Command::SetNodeAdmin {
                id,
                admin: AdminState::Decommissioned,
            })
            .await?;
        }
    }
    Ok(())
}

/// Abandons files whose writer stopped renewing its lease; their blocks are freed.
async fn expire_leases(nn: &Namenode) -> Result<(), tonic::Status> {
    let now = basin_common::now_ms();
    let limit = nn.cfg.lease_timeout.as_millis() as i64;
    let expired: Vec<(String, String)> = nn.read(|s| {
        s.inodes
            .iter()
            .filter_map(|(p, i)| {
                i.lease
                    .as_ref()
                    .filter(|l| now - l.renewed_ms > limit)
                    .map(|l| (p.clone(), l.id.clone()))
            })
            .collect()
    });
    for (path, lease) in expired {
        warn!(node_id = nn.cfg.id, path = %path, "write lease expired; abandoning the unfinished file");
        if let CommandResult::Freed(blocks) = nn
            .write(Command::AbandonFile {
                path,
                lease: Some(lease),
            })
            .await?
        {
            nn.block_map().free_blocks(&blocks);
        }
    }
    Ok(())
}
