//! Cluster RPCs: status, decommission, and what workers send (register,
//! heartbeats, block reports, bad replicas).

use basin_proto as pb;
use tonic::Status;
use tracing::{info, warn};

use crate::namenode::Namenode;
use crate::namenode::state::{AdminState, Command, CommandResult, Role};

pub fn cluster_status(nn: &Namenode) -> Result<pb::ClusterStatusResponse, Status> {
    nn.update_safe_mode();
    let leader = nn.raft.leader();
    let metrics = nn.raft.metrics();
    let (records, files) = nn.read(|s| {
        (
            s.nodes.values().cloned().collect::<Vec<_>>(),
            s.inodes
                .values()
                .filter(|i| !i.is_dir() && i.visible())
                .count(),
        )
    });
    let bm = nn.block_map();
    let nodes = records.iter().map(|r| nn.describe_node(r, &bm)).collect();
    let replication = metrics.replication.clone();
    let masters = nn
        .cfg
        .peers
        .iter()
        .map(|(id, addr)| {
            let is_leader = leader.as_ref().is_some_and(|(l, _)| l == id);
            let reachable = *id == nn.cfg.id
                || replication
                    .as_ref()
                    .is_some_and(|r| r.get(id).is_some_and(|m| m.is_some()));
            pb::MasterInfo {
                id: *id,
                addr: addr.clone(),
                leader: is_leader,
                reachable,
            }
        })
        .collect();
    let under = metrics::gauge!("basin_master_under_replicated_blocks");
    drop(under);
    let sm = nn.safe_mode();
    Ok(pb::ClusterStatusResponse {
        nodes,
        masters,
        leader_id: leader.as_ref().map(|(id, _)| *id).unwrap_or(0),
        leader_addr: leader.map(|(_, a)| a).unwrap_or_default(),
        safe_mode: sm.on,
        blocks_total: sm.total,
        blocks_reported: sm.reported,
        safe_mode_threshold: nn.cfg.safe_mode_threshold,
        files: files as u64,
        under_replicated: 0,
        default_block_size: nn.cfg.default_block_size,
        default_replication: nn.cfg.default_replication,
        raft_term: metrics.current_term,
        raft_last_applied: metrics.last_applied.map(|l| l.index).unwrap_or(0),
    })
}

pub async fn decommission(
    nn: &Namenode,
    r: pb::DecommissionRequest,
) -> Result<pb::DecommissionResponse, Status> {
    nn.require_leader()?;
    let rec = nn
        .read(|s| {
            s.nodes
                .values()
                .find(|n| {
                    n.id.to_string() == r.node
                        || n.name == r.node
                        || n.addr == r.node
                        || n.uuid == r.node
                })
                .cloned()
        })
        .ok_or_else(|| Status::not_found(format!("no such node: {}", r.node)))?;
    if rec.admin == AdminState::Normal {
        if rec.role == Role::Core {
            let others = nn
                .candidates()
                .into_iter()
                .filter(|c| c.id != rec.id)
                .count();
            if others == 0 {
                return Err(Status::failed_precondition(
                    "cannot decommission the last live core worker: its blocks would have nowhere to go",
                ));
            }
        }
        let admin = if rec.role == Role::Core {
            AdminState::Decommissioning
        } else {
            AdminState::Decommissioned
        };
        nn.write(Command::SetNodeAdmin { id: rec.id, admin })
            .await?;
        info!(node_id = nn.cfg.id, worker = rec.id, "decommission started");
    }
    let node = nn.node_info(rec.id);
    let remaining = crate::namenode::monitor::undrained_blocks(nn, rec.id);
    Ok(pb::DecommissionResponse {
        node,
        blocks_remaining: remaining,
    })
}

pub async fn register(
    nn: &Namenode,
    r: pb::RegisterRequest,
) -> Result<pb::RegisterResponse, Status> {
    if r.node_uuid.is_empty() || r.addr.is_empty() {
        return Err(Status::invalid_argument(
            "register needs node_uuid and addr",
        ));
    }
    let role = match pb::NodeRole::try_from(r.role) {
        Ok(pb::NodeRole::Core) => Role::Core,
        Ok(pb::NodeRole::Task) => Role::Task,
        _ => return Err(Status::invalid_argument("role must be core or task")),
    };
    let cmd = Command::RegisterNode {
        uuid: r.node_uuid,
        addr: r.addr,
        role,
        zone: r.zone,
        name: r.name,
        external_addr: r.external_addr,
    };
    match nn.write(cmd).await? {
        CommandResult::NodeId(id) => {
            info!(node_id = nn.cfg.id, worker = id, "worker registered");
            Ok(pb::RegisterResponse { node_id: id })
        }
        other => Err(Status::internal(format!("unexpected result {other:?}"))),
    }
}

pub async fn heartbeat(
    nn: &Namenode,
    r: pb::HeartbeatRequest,
) -> Result<pb::HeartbeatResponse, Status> {
    let known = nn.read(|s| s.nodes.contains_key(&r.node_id));
    if !known {
        return Ok(pb::HeartbeatResponse {
            reregister: true,
            ..Default::default()
        });
    }
    let (need_report, commands) = {
        let mut bm = nn.block_map();
        let need_report = bm.heartbeat(r.node_id, r.capacity_bytes, r.used_bytes);
        let commands = if nn.raft.is_leader() {
            bm.take_commands(r.node_id)
        } else {
            Vec::new()
        };
        (need_report, commands)
    };
    let (mut tasks, mut kill) = (Vec::new(), Vec::new());
    if nn.raft.is_leader() && !nn.in_safe_mode() {
        kill = crate::jobtracker::scheduler::reconcile(nn, r.node_id, &r.running).await?;
        let usable = nn.read(|s| {
            s.nodes
                .get(&r.node_id)
                .is_some_and(|n| n.admin == AdminState::Normal)
        });
        if usable {
            tasks = crate::jobtracker::scheduler::assign(nn, r.node_id, r.free_task_slots).await?;
        }
    }
    let leader = nn.raft.is_leader();
    let shards = if leader {
        crate::streams::assignments_for(nn, r.node_id)
    } else {
        Vec::new()
    };
    Ok(pb::HeartbeatResponse {
        commands,
        reregister: need_report,
        tasks,
        kill,
        shards,
        shards_authoritative: leader,
    })
}

pub fn block_report(nn: &Namenode, r: pb::BlockReportRequest) -> Result<pb::Empty, Status> {
    let (known, lengths) = nn.read(|s| {
        let known = s.nodes.get(&r.node_id).map(|n| n.role == Role::Core);
        let lengths: Vec<Option<Option<u64>>> = r
            .blocks
            .iter()
            .map(|b| {
                s.block_owner.get(&b.block_id).map(|p| {
                    s.inodes.get(p).and_then(|i| {
                        if i.visible() {
                            i.blocks.iter().find(|x| x.id == b.block_id).map(|x| x.len)
                        } else {
                            None
                        }
                    })
                })
            })
            .collect();
        (known, lengths)
    });
    match known {
        None => {
            return Err(Status::failed_precondition(format!(
                "unknown node {}: register first",
                r.node_id
            )));
        }
        Some(false) => return Err(Status::invalid_argument("task workers hold no blocks")),
        Some(true) => {}
    }
    let next_block = nn.read(|s| s.next_block_id);
    let may_delete = nn.raft.is_leader() && !nn.in_safe_mode();
    let mut bm = nn.block_map();
    let mut good = Vec::new();
    let mut orphans = Vec::new();
    for (b, len) in r.blocks.iter().zip(lengths) {
        match len {
            // Owned by a closed file: the reported length must match.
            Some(Some(expected)) if expected != b.length => {
                warn!(
                    node_id = nn.cfg.id,
                    worker = r.node_id,
                    block_id = b.block_id,
                    "replica has the wrong length; treating it as corrupt"
                );
                bm.mark_corrupt(r.node_id, b.block_id);
                orphans.push(b.block_id);
            }
            Some(_) => good.push(b.block_id),
            None if b.block_id < next_block => orphans.push(b.block_id),
            None => good.push(b.block_id),
        }
    }
    if r.full {
        bm.full_report(r.node_id, &good);
    } else {
        for b in &good {
            bm.add_replica(r.node_id, *b);
        }
    }
    if may_delete && !orphans.is_empty() {
        info!(
            node_id = nn.cfg.id,
            worker = r.node_id,
            count = orphans.len(),
            "deleting orphan replicas"
        );
        bm.queue_delete(r.node_id, orphans);
    }
    Ok(pb::Empty {})
}

pub fn report_bad_block(nn: &Namenode, r: pb::BadBlockRequest) -> Result<pb::Empty, Status> {
    warn!(node_id = nn.cfg.id, worker = r.node_id, block_id = r.block_id, reason = %r.reason, "corrupt replica reported");
    nn.block_map().mark_corrupt(r.node_id, r.block_id);
    Ok(pb::Empty {})
}
