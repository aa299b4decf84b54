//! The namenode: the replicated namespace ([`state`]), the soft block map
//! ([`blocks`]), replica placement ([`placement`]) and the monitor that keeps
//! every block at its replication factor ([`monitor`]).

pub mod blocks;
pub mod monitor;
pub mod placement;
pub mod state;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use basin_proto as pb;
use tonic::Status;

use crate::config::MasterConfig;
use crate::error::{MasterError, Result};
use crate::raft::{RaftNode, WriteError};
use blocks::BlockMap;
use placement::Candidate;
use state::{AdminState, Command, CommandResult, FsState, NodeRecord, Role};

/// Shared state of one master process.
#[derive(Clone)]
pub struct Namenode {
    pub cfg: Arc<MasterConfig>,
    pub raft: RaftNode,
    pub blocks: Arc<Mutex<BlockMap>>,
    /// Safe mode: no namespace changes and no replica deletions until
    /// enough blocks have been reported after start.
    pub safe_mode: Arc<Mutex<SafeMode>>,
    /// Consumer-group membership (soft state; see `crate::streams::groups`).
    pub groups: crate::streams::groups::Groups,
}

#[derive(Debug)]
pub struct SafeMode {
    pub on: bool,
    pub started: Instant,
    pub total: u64,
    pub reported: u64,
}

impl Namenode {
    pub fn new(cfg: Arc<MasterConfig>, raft: RaftNode) -> Self {
        Self {
            cfg,
            raft,
            blocks: Arc::new(Mutex::new(BlockMap::default())),
            safe_mode: Arc::new(Mutex::new(SafeMode {
                on: true,
                started: Instant::now(),
                total: 0,
                reported: 0,
            })),
            groups: Default::default(),
        }
    }

    pub fn block_map(&self) -> MutexGuard<'_, BlockMap> {
        self.blocks.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn safe_mode(&self) -> MutexGuard<'_, SafeMode> {
        self.safe_mode.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn in_safe_mode(&self) -> bool {
        self.safe_mode().on
    }

    /// The status to answer a write with when this master cannot take it.
    pub fn not_leader_status(&self) -> Status {
        let leader = self.raft.leader().map(|(_, addr)| addr);
        basin_common::error::not_leader(leader.as_deref())
    }

    /// Refuses the call unless this master leads (reads are served by the leader).
    pub fn require_leader(&self) -> std::result::Result<(), Status> {
        if self.raft.is_leader() {
            Ok(())
        } else {
            Err(self.not_leader_status())
        }
    }

    fn refuse_in_safe_mode(&self) -> std::result::Result<(), Status> {
        let sm = self.safe_mode();
        if sm.on {
            return Err(Status::unavailable(format!(
                "master is in safe mode: {} of {} blocks reported (threshold {:.3})",
                sm.reported, sm.total, self.cfg.safe_mode_threshold
            )));
        }
        Ok(())
    }

    /// Proposes a namespace change through Raft; refusals become statuses.
    pub async fn write(&self, cmd: Command) -> std::result::Result<CommandResult, Status> {
        if !self.raft.is_leader() {
            return Err(self.not_leader_status());
        }
        match self.raft.write(cmd).await {
            Ok(CommandResult::Err(e)) => Err(MasterError::Fs(e).into()),
            Ok(r) => Ok(r),
            Err(WriteError::NotLeader { leader_addr, .. }) => {
                Err(basin_common::error::not_leader(leader_addr.as_deref()))
            }
            Err(e) => Err(MasterError::Raft(e.to_string()).into()),
        }
    }

    /// A namespace change that safe mode forbids.
    pub async fn write_namespace(
        &self,
        cmd: Command,
    ) -> std::result::Result<CommandResult, Status> {
        self.require_leader()?;
        self.refuse_in_safe_mode()?;
        let r = self.write(cmd).await?;
        if let CommandResult::Freed(blocks) = &r {
            self.block_map().free_blocks(blocks);
        }
        Ok(r)
    }

    pub fn read<T>(&self, f: impl FnOnce(&FsState) -> T) -> T {
        self.raft.read(f)
    }

    /// Live core workers in normal service, as placement candidates.
    pub fn candidates(&self) -> Vec<Candidate> {
        let nodes: Vec<NodeRecord> = self.read(|s| s.nodes.values().cloned().collect());
        let bm = self.block_map();
        nodes
            .into_iter()
            .filter(|n| n.role == Role::Core && n.admin == AdminState::Normal)
            .filter(|n| bm.is_live(n.id, self.cfg.dead_after))
            .map(|n| Candidate {
                id: n.id,
                zone: n.zone.clone(),
                used_bytes: bm.live.get(&n.id).map(|l| l.used_bytes).unwrap_or(0),
            })
            .collect()
    }

    pub fn node_info(&self, id: u64) -> Option<pb::NodeInfo> {
        let rec = self.read(|s| s.nodes.get(&id).cloned())?;
        Some(self.describe_node(&rec, &self.block_map()))
    }

    pub fn describe_node(&self, n: &NodeRecord, bm: &BlockMap) -> pb::NodeInfo {
        let live = bm.live.get(&n.id);
        let alive = bm.is_live(n.id, self.cfg.dead_after);
        let state = match (alive, n.admin) {
            (_, AdminState::Decommissioned) => pb::NodeState::Decommissioned,
            (false, _) => pb::NodeState::Dead,
            (true, AdminState::Decommissioning) => pb::NodeState::Decommissioning,
            (true, AdminState::Normal) => pb::NodeState::Live,
        };
        pb::NodeInfo {
            id: n.id,
            addr: n.addr.clone(),
            role: match n.role {
                Role::Core => pb::NodeRole::Core,
                Role::Task => pb::NodeRole::Task,
            } as i32,
            zone: n.zone.clone(),
            state: state as i32,
            capacity_bytes: live.map(|l| l.capacity_bytes).unwrap_or(0),
            used_bytes: live.map(|l| l.used_bytes).unwrap_or(0),
            blocks: bm
                .node_blocks
                .get(&n.id)
                .map(|s| s.len() as u64)
                .unwrap_or(0),
            last_heartbeat_ms_ago: live
                .map(|l| l.last_heartbeat.elapsed().as_millis() as i64)
                .unwrap_or(-1),
            name: n.name.clone(),
            external_addr: n.external_addr.clone(),
        }
    }

    /// Expected replica count of a block: its file's factor.
    pub fn live_replicas(&self, bm: &BlockMap, block: u64) -> Vec<u64> {
        bm.locations
            .get(&block)
            .map(|s| {
                s.iter()
                    .copied()
                    .filter(|n| bm.is_live(*n, self.cfg.dead_after))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Leaves safe mode once enough blocks of closed files have a replica.
    pub fn update_safe_mode(&self) {
        let blocks: Vec<u64> = self.read(|s| {
            s.inodes
                .values()
                .filter(|i| i.visible())
                .flat_map(|i| i.blocks.iter().map(|b| b.id))
                .collect()
        });
        let total = blocks.len() as u64;
        let reported = {
            let bm = self.block_map();
            blocks
                .iter()
                .filter(|b| !self.live_replicas(&bm, **b).is_empty())
                .count() as u64
        };
        let mut sm = self.safe_mode();
        sm.total = total;
        sm.reported = reported;
        if sm.on {
            let frac = if total == 0 {
                1.0
            } else {
                reported as f64 / total as f64
            };
            if frac >= self.cfg.safe_mode_threshold
                && sm.started.elapsed() >= self.cfg.safe_mode_extension
            {
                sm.on = false;
                tracing::info!(node_id = self.cfg.id, reported, total, "leaving safe mode");
            }
        }
    }

    pub fn dead_after(&self) -> Duration {
        self.cfg.dead_after
    }
}

impl From<MasterError> for Status {
    fn from(e: MasterError) -> Self {
        e.to_status()
    }
}

pub type NnResult<T> = Result<T>;
