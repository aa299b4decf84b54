//! Replicated stream metadata: streams, shards (hash ranges, lineage,
//! replica placement, primary and epoch), registered consumers and consumer
//! group checkpoints. Applied by every master through [`FsState::apply_stream`].
//!
//! Hash keys are 128-bit; they are kept as decimal strings so that every
//! serialiser handles them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::namenode::state::{CommandResult, FsError, FsErrorKind, FsState};

pub const MAX_HASH: u128 = u128::MAX;
pub const DEFAULT_RETENTION_MS: u64 = 24 * 3600 * 1000;
pub const MAX_SHARDS_PER_STREAM: u32 = 1024;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StreamsState {
    pub streams: BTreeMap<String, Stream>,
    pub next_uid: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Stream {
    pub name: String,
    /// A recreated stream of the same name gets a new uid (workers key their data by it).
    pub uid: u64,
    pub retention_ms: u64,
    pub replication: u32,
    pub created_ms: i64,
    pub shards: Vec<Shard>,
    pub next_shard: u32,
    pub consumers: Vec<String>,
    /// Group → shard → checkpoint.
    pub groups: BTreeMap<String, BTreeMap<String, GroupCheckpoint>>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct GroupCheckpoint {
    /// The next seq to read.
    pub seq: u64,
    /// A closed shard read to its end: its children may be handed out.
    pub finished: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Shard {
    pub id: String,
    pub start: String,
    pub end: String,
    pub open: bool,
    pub parent: Option<String>,
    pub adjacent_parent: Option<String>,
    /// Every shard whose range this one took over (more than two after UpdateShardCount).
    #[serde(default)]
    pub parents: Vec<String>,
    pub created_ms: i64,
    pub epoch: u64,
    /// 0 while no in-sync replica is alive.
    pub primary: u64,
    pub replicas: Vec<u64>,
    pub isr: Vec<u64>,
}

impl Shard {
    pub fn range(&self) -> (u128, u128) {
        (
            self.start.parse().unwrap_or(0),
            self.end.parse().unwrap_or(MAX_HASH),
        )
    }
}

/// A change to stream metadata.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum StreamCommand {
    Create {
        name: String,
        shards: u32,
        replication: u32,
        retention_ms: u64,
        /// Replica sets per shard, chosen by the leader (first = primary).
        placement: Vec<Vec<u64>>,
        now_ms: i64,
    },
    Delete {
        name: String,
    },
    /// Close `parents` and open children with these ranges and replicas.
    Reshard {
        name: String,
        parents: Vec<String>,
        /// (start, end, parents, replicas) of each child.
        children: Vec<(String, String, Vec<String>, Vec<u64>)>,
        now_ms: i64,
    },
    SetRetention {
        name: String,
        retention_ms: u64,
    },
    /// A change of primary, replicas or in-sync set. Relative, so that the
    /// monitor's and a primary's concurrent changes compose. `expect_epoch`
    /// refuses the change unless the shard is still at that epoch.
    ChangeReplicas {
        name: String,
        shard: String,
        expect_epoch: Option<u64>,
        bump_epoch: bool,
        primary: Option<u64>,
        /// Removed from the replicas and the in-sync set.
        remove: Vec<u64>,
        /// New replicas (not in sync until their primary says so).
        add: Vec<u64>,
        isr_add: Vec<u64>,
        isr_remove: Vec<u64>,
    },
    RegisterConsumer {
        name: String,
        consumer: String,
        deregister: bool,
    },
    Checkpoint {
        name: String,
        group: String,
        checkpoints: Vec<(String, GroupCheckpoint)>,
    },
}

fn err<T>(kind: FsErrorKind, message: impl Into<String>) -> Result<T, FsError> {
    Err(FsError {
        kind,
        message: message.into(),
    })
}

pub fn shard_name(n: u32) -> String {
    format!("shardId-{n:012}")
}

/// Splits the whole hash space into `n` even ranges.
pub fn even_ranges(n: u32) -> Vec<(u128, u128)> {
    ranges_between(0, MAX_HASH, n)
}

/// Splits `[lo, hi]` into `n` even contiguous ranges.
pub fn ranges_between(lo: u128, hi: u128, n: u32) -> Vec<(u128, u128)> {
    let n = n.max(1) as u128;
    let step = (hi - lo) / n;
    (0..n)
        .map(|i| {
            let start = lo + i * step;
            let end = if i == n - 1 {
                hi
            } else {
                lo + (i + 1) * step - 1
            };
            (start, end)
        })
        .collect()
}

impl FsState {
    pub fn apply_stream(&mut self, cmd: &StreamCommand) -> Result<CommandResult, FsError> {
        let st = &mut self.streams;
        match cmd {
            StreamCommand::Create {
                name,
                shards,
                replication,
                retention_ms,
                placement,
                now_ms,
            } => {
                if st.streams.contains_key(name) {
                    return err(
                        FsErrorKind::AlreadyExists,
                        format!("ResourceInUseException: stream {name} already exists"),
                    );
                }
                st.next_uid += 1;
                let ranges = even_ranges(*shards);
                let shards: Vec<Shard> = ranges
                    .iter()
                    .zip(placement)
                    .enumerate()
                    .map(|(i, ((a, b), reps))| Shard {
                        id: shard_name(i as u32),
                        start: a.to_string(),
                        end: b.to_string(),
                        open: true,
                        parent: None,
                        adjacent_parent: None,
                        parents: vec![],
                        created_ms: *now_ms,
                        epoch: 1,
                        primary: reps.first().copied().unwrap_or(0),
                        replicas: reps.clone(),
                        isr: reps.clone(),
                    })
                    .collect();
                let next_shard = shards.len() as u32;
                st.streams.insert(
                    name.clone(),
                    Stream {
                        name: name.clone(),
                        uid: st.next_uid,
                        retention_ms: *retention_ms,
                        replication: *replication,
                        created_ms: *now_ms,
                        shards,
                        next_shard,
                        consumers: vec![],
                        groups: BTreeMap::new(),
                    },
                );
                Ok(CommandResult::Ok)
            }
            StreamCommand::Delete { name } => match st.streams.remove(name) {
                Some(_) => Ok(CommandResult::Ok),
                None => not_found(name),
            },
            StreamCommand::Reshard {
                name,
                parents,
                children,
                now_ms,
            } => {
                let s = stream_mut(st, name)?;
                for p in parents {
                    match s.shards.iter().find(|x| &x.id == p) {
                        Some(x) if x.open => {}
                        Some(_) => {
                            return err(
                                FsErrorKind::InvalidArgument,
                                format!("ResourceInUseException: shard {p} is already closed"),
                            );
                        }
                        None => {
                            return err(
                                FsErrorKind::NotFound,
                                format!("ResourceNotFoundException: no shard {p} in {name}"),
                            );
                        }
                    }
                }
                for sh in s.shards.iter_mut().filter(|x| parents.contains(&x.id)) {
                    sh.open = false;
                }
                for (start, end, ps, reps) in children {
                    let id = shard_name(s.next_shard);
                    s.next_shard += 1;
                    s.shards.push(Shard {
                        id,
                        start: start.clone(),
                        end: end.clone(),
                        open: true,
                        parent: ps.first().cloned(),
                        adjacent_parent: ps.get(1).cloned(),
                        parents: ps.clone(),
                        created_ms: *now_ms,
                        epoch: 1,
                        primary: reps.first().copied().unwrap_or(0),
                        replicas: reps.clone(),
                        isr: reps.clone(),
                    });
                }
                Ok(CommandResult::Ok)
            }
            StreamCommand::SetRetention { name, retention_ms } => {
                stream_mut(st, name)?.retention_ms = *retention_ms;
                Ok(CommandResult::Ok)
            }
            StreamCommand::ChangeReplicas {
                name,
                shard,
                expect_epoch,
                bump_epoch,
                primary,
                remove,
                add,
                isr_add,
                isr_remove,
            } => {
                let s = stream_mut(st, name)?;
                let Some(sh) = s.shards.iter_mut().find(|x| &x.id == shard) else {
                    return err(
                        FsErrorKind::NotFound,
                        format!("ResourceNotFoundException: no shard {shard} in {name}"),
                    );
                };
                if let Some(e) = expect_epoch
                    && *e != sh.epoch
                {
                    return err(
                        FsErrorKind::InvalidArgument,
                        format!("stale epoch {e}: shard {shard} is at epoch {}", sh.epoch),
                    );
                }
                sh.replicas.retain(|r| !remove.contains(r));
                sh.isr
                    .retain(|r| !remove.contains(r) && !isr_remove.contains(r));
                for a in add {
                    if !sh.replicas.contains(a) {
                        sh.replicas.push(*a);
                    }
                }
                for a in isr_add {
                    if sh.replicas.contains(a) && !sh.isr.contains(a) {
                        sh.isr.push(*a);
                    }
                }
                if let Some(p) = primary {
                    sh.primary = *p;
                }
                if remove.contains(&sh.primary) {
                    sh.primary = 0;
                }
                if *bump_epoch {
                    sh.epoch += 1;
                }
                Ok(CommandResult::Ok)
            }
            StreamCommand::RegisterConsumer {
                name,
                consumer,
                deregister,
            } => {
                let s = stream_mut(st, name)?;
                s.consumers.retain(|c| c != consumer);
                if !deregister {
                    s.consumers.push(consumer.clone());
                }
                Ok(CommandResult::Ok)
            }
            StreamCommand::Checkpoint {
                name,
                group,
                checkpoints,
            } => {
                let s = stream_mut(st, name)?;
                let g = s.groups.entry(group.clone()).or_default();
                for (shard, cp) in checkpoints {
                    let e = g.entry(shard.clone()).or_default();
                    // Checkpoints only move forward.
                    if cp.seq >= e.seq || cp.finished {
                        e.seq = e.seq.max(cp.seq);
                        e.finished |= cp.finished;
                    }
                }
                Ok(CommandResult::Ok)
            }
        }
    }
}

fn not_found<T>(name: &str) -> Result<T, FsError> {
    err(
        FsErrorKind::NotFound,
        format!("ResourceNotFoundException: stream {name} not found"),
    )
}

fn stream_mut<'a>(st: &'a mut StreamsState, name: &str) -> Result<&'a mut Stream, FsError> {
    match st.streams.get_mut(name) {
        Some(s) => Ok(s),
        None => not_found(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_ranges_cover_the_space() {
        for n in [1u32, 2, 3, 4, 7] {
            let r = even_ranges(n);
            assert_eq!(r.len(), n as usize);
            assert_eq!(r[0].0, 0);
            assert_eq!(r[r.len() - 1].1, MAX_HASH);
            for w in r.windows(2) {
                assert_eq!(w[0].1 + 1, w[1].0);
            }
        }
    }
}
