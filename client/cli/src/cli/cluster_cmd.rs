//! `basin cluster status|decommission`.

use std::time::Duration;

use anyhow::bail;
use basin_proto as pb;
use serde_json::json;

use super::Global;
use super::output::{bytes_bar, human_bytes, print_json};

#[derive(clap::Subcommand)]
pub enum ClusterCmd {
    /// Nodes, roles, health, capacity, the leader master and safe mode.
    Status,
    /// Drain a core worker's blocks to others, then retire it.
    Decommission {
        /// Node id, name or address.
        node: String,
        /// Return once draining has started.
        #[arg(long)]
        no_wait: bool,
    },
}

fn role_name(r: i32) -> &'static str {
    match pb::NodeRole::try_from(r) {
        Ok(pb::NodeRole::Core) => "core",
        Ok(pb::NodeRole::Task) => "task",
        _ => "?",
    }
}

fn state_name(s: i32) -> &'static str {
    match pb::NodeState::try_from(s) {
        Ok(pb::NodeState::Live) => "live",
        Ok(pb::NodeState::Dead) => "dead",
        Ok(pb::NodeState::Decommissioning) => "decommissioning",
        Ok(pb::NodeState::Decommissioned) => "decommissioned",
        _ => "?",
    }
}

pub fn node_json(n: &pb::NodeInfo) -> serde_json::Value {
    json!({
        "id": n.id, "name": n.name, "addr": n.addr, "role": role_name(n.role), "state": state_name(n.state),
        "zone": n.zone, "capacity_bytes": n.capacity_bytes, "used_bytes": n.used_bytes, "blocks": n.blocks,
        "last_heartbeat_ms_ago": n.last_heartbeat_ms_ago,
    })
}

async fn status(g: &Global) -> anyhow::Result<pb::ClusterStatusResponse> {
    Ok(g.masters()?
        .call(|mut c| async move { c.cluster_status(pb::Empty {}).await })
        .await?)
}

pub async fn run(g: &Global, cmd: ClusterCmd) -> anyhow::Result<()> {
    match cmd {
        ClusterCmd::Status => {
            let s = status(g).await?;
            if g.json {
                print_json(&json!({
                    "leader": {"id": s.leader_id, "addr": s.leader_addr},
                    "masters": s.masters.iter().map(|m| json!({"id": m.id, "addr": m.addr, "leader": m.leader, "reachable": m.reachable})).collect::<Vec<_>>(),
                    "nodes": s.nodes.iter().map(node_json).collect::<Vec<_>>(),
                    "safe_mode": s.safe_mode,
                    "safe_mode_threshold": s.safe_mode_threshold,
                    "blocks_total": s.blocks_total,
                    "blocks_reported": s.blocks_reported,
                    "files": s.files,
                    "default_block_size": s.default_block_size,
                    "default_replication": s.default_replication,
                    "raft_term": s.raft_term,
                    "raft_last_applied": s.raft_last_applied,
                }));
                return Ok(());
            }
            println!(
                "leader master: {} ({})  term {}",
                s.leader_id, s.leader_addr, s.raft_term
            );
            for m in &s.masters {
                println!(
                    "  master {:<3} {:<24} {}{}",
                    m.id,
                    m.addr,
                    if m.leader { "leader" } else { "follower" },
                    if m.reachable { "" } else { " (unreachable)" }
                );
            }
            println!(
                "safe mode: {} ({} of {} blocks reported, threshold {})",
                if s.safe_mode { "ON" } else { "off" },
                s.blocks_reported,
                s.blocks_total,
                s.safe_mode_threshold
            );
            println!(
                "files: {}  default block size: {}  default replication: {}",
                s.files,
                human_bytes(s.default_block_size),
                s.default_replication
            );
            println!(
                "{:<4} {:<16} {:<22} {:<5} {:<16} {:<8} {:>8} {:>10} {:>10}",
                "ID", "NAME", "ADDR", "ROLE", "STATE", "ZONE", "BLOCKS", "USED", "CAPACITY"
            );
            for n in &s.nodes {
                println!(
                    "{:<4} {:<16} {:<22} {:<5} {:<16} {:<8} {:>8} {:>10} {:>10}",
                    n.id,
                    n.name,
                    n.addr,
                    role_name(n.role),
                    state_name(n.state),
                    n.zone,
                    n.blocks,
                    human_bytes(n.used_bytes),
                    human_bytes(n.capacity_bytes)
                );
            }
            Ok(())
        }
        ClusterCmd::Decommission { node, no_wait } => {
            let masters = g.masters()?;
            let req = pb::DecommissionRequest { node: node.clone() };
            let first = masters
                .call(|mut c| {
                    let r = req.clone();
                    async move { c.decommission(r).await }
                })
                .await?;
            let total = first.blocks_remaining;
            let bar = bytes_bar(Some(total), "draining");
            bar.set_style(
                indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} blocks")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let mut last = first;
            loop {
                let state = last.node.as_ref().map(|n| n.state).unwrap_or(0);
                if no_wait || state == pb::NodeState::Decommissioned as i32 {
                    break;
                }
                if state == pb::NodeState::Dead as i32 {
                    bar.abandon();
                    bail!(
                        "node {node} died while draining; the replication monitor restores its blocks from other replicas"
                    );
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                last = masters
                    .call(|mut c| {
                        let r = req.clone();
                        async move { c.decommission(r).await }
                    })
                    .await?;
                bar.set_position(total.saturating_sub(last.blocks_remaining).min(total));
            }
            bar.finish_and_clear();
            let n = last.node.unwrap_or_default();
            if g.json {
                print_json(&node_json(&n));
            } else {
                println!("node {} ({}): {}", n.id, n.addr, state_name(n.state));
            }
            Ok(())
        }
    }
}
