//! Stream control RPCs: create, delete, describe, list, reshard, retention,
//! consumers, a primary's in-sync set changes, and consumer-group heartbeats.

use std::collections::BTreeMap;

use basin_proto as pb;
use tonic::Status;

use super::state::{
    DEFAULT_RETENTION_MS, GroupCheckpoint, MAX_SHARDS_PER_STREAM, StreamCommand, ranges_between,
};
use super::stream_info;
use crate::namenode::Namenode;
use crate::namenode::state::Command;

fn invalid(msg: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("InvalidArgumentException: {msg}"))
}

fn not_found(name: &str) -> Status {
    Status::not_found(format!(
        "ResourceNotFoundException: stream {name} not found"
    ))
}

fn limit(msg: impl std::fmt::Display) -> Status {
    Status::resource_exhausted(format!("LimitExceededException: {msg}"))
}

fn check_name(name: &str) -> Result<(), Status> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!(
            "ValidationException: stream name {name:?} must be 1-128 characters of a-z, A-Z, 0-9, _ - ."
        )))
    }
}

pub fn describe(nn: &Namenode, name: &str) -> Result<pb::StreamInfo, Status> {
    nn.require_leader()?;
    nn.read(|s| s.streams.streams.get(name).map(|st| stream_info(s, st)))
        .ok_or_else(|| not_found(name))
}

/// Chooses `n` replica sets of `replication` core workers, spreading
/// primaries and replicas over the workers holding the fewest shards.
pub fn place(nn: &Namenode, n: usize, replication: u32) -> Result<Vec<Vec<u64>>, Status> {
    let mut cands: Vec<u64> = nn.candidates().into_iter().map(|c| c.id).collect();
    if cands.is_empty() {
        return Err(Status::unavailable(
            "InternalFailure: no live core worker to hold shard replicas",
        ));
    }
    let mut load: BTreeMap<u64, usize> = cands.iter().map(|c| (*c, 0)).collect();
    nn.read(|s| {
        for st in s.streams.streams.values() {
            for sh in &st.shards {
                for r in &sh.replicas {
                    if let Some(l) = load.get_mut(r) {
                        *l += 1;
                    }
                }
            }
        }
    });
    let rf = (replication as usize).min(cands.len()).max(1);
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        cands.sort_by_key(|c| (load.get(c).copied().unwrap_or(0), *c));
        let set: Vec<u64> = cands.iter().take(rf).copied().collect();
        for c in &set {
            *load.entry(*c).or_default() += 1;
        }
        // The first of each set is the primary: weigh primaries a little more.
        if let Some(p) = set.first() {
            *load.entry(*p).or_default() += 1;
        }
        out.push(set);
    }
    Ok(out)
}

pub async fn create(nn: &Namenode, r: pb::CreateStreamRequest) -> Result<pb::StreamInfo, Status> {
    nn.require_leader()?;
    check_name(&r.name)?;
    if r.shards == 0 || r.shards > MAX_SHARDS_PER_STREAM {
        return Err(invalid(format!(
            "shard count must be 1 to {MAX_SHARDS_PER_STREAM} (got {})",
            r.shards
        )));
    }
    let retention_ms = retention_from(nn, r.retention_hours, r.retention_ms)?;
    let replication = if r.replication == 0 { 3 } else { r.replication };
    if replication > 5 {
        return Err(invalid("replication must be 1 to 5"));
    }
    if nn.read(|s| s.streams.streams.contains_key(&r.name)) {
        return Err(Status::already_exists(format!(
            "ResourceInUseException: stream {} already exists",
            r.name
        )));
    }
    let placement = place(nn, r.shards as usize, replication)?;
    let replication = placement.first().map(|p| p.len() as u32).unwrap_or(1);
    nn.write(Command::Stream(StreamCommand::Create {
        name: r.name.clone(),
        shards: r.shards,
        replication,
        retention_ms,
        placement,
        now_ms: basin_common::now_ms(),
    }))
    .await?;
    tracing::info!(node_id = nn.cfg.id, stream = %r.name, shards = r.shards, replication, "stream created");
    describe(nn, &r.name)
}

fn retention_from(nn: &Namenode, hours: u32, ms: u64) -> Result<u64, Status> {
    if ms > 0 {
        return Ok(ms);
    }
    if hours == 0 {
        return Ok(DEFAULT_RETENTION_MS);
    }
    let max = nn.cfg.max_retention_hours.max(24);
    if !(24..=max).contains(&hours) {
        return Err(invalid(format!(
            "retention must be 24 to {max} hours (got {hours})"
        )));
    }
    Ok(hours as u64 * 3_600_000)
}

pub async fn delete(nn: &Namenode, r: pb::StreamRequest) -> Result<pb::Empty, Status> {
    nn.require_leader()?;
    nn.write(Command::Stream(StreamCommand::Delete {
        name: r.name.clone(),
    }))
    .await?;
    tracing::info!(node_id = nn.cfg.id, stream = %r.name, "stream deleted");
    Ok(pb::Empty {})
}

pub fn list(nn: &Namenode) -> Result<pb::ListStreamsResponse, Status> {
    nn.require_leader()?;
    Ok(pb::ListStreamsResponse {
        names: nn.read(|s| s.streams.streams.keys().cloned().collect()),
    })
}

fn parse_hash(s: &str) -> Result<u128, Status> {
    s.trim()
        .parse::<u128>()
        .map_err(|_| invalid(format!("{s:?} is not a hash key in 0..2^128-1")))
}

/// (id, start, end, open) of every shard of a stream.
fn shards_of(nn: &Namenode, name: &str) -> Result<Vec<(String, u128, u128, bool)>, Status> {
    nn.read(|s| {
        s.streams.streams.get(name).map(|st| {
            st.shards
                .iter()
                .map(|sh| {
                    let (a, b) = sh.range();
                    (sh.id.clone(), a, b, sh.open)
                })
                .collect()
        })
    })
    .ok_or_else(|| not_found(name))
}

async fn reshard(
    nn: &Namenode,
    name: &str,
    parents: Vec<String>,
    children: Vec<(u128, u128, Vec<String>)>,
) -> Result<pb::StreamInfo, Status> {
    let replication = nn
        .read(|s| s.streams.streams.get(name).map(|st| st.replication))
        .ok_or_else(|| not_found(name))?;
    let placement = place(nn, children.len(), replication)?;
    let children = children
        .into_iter()
        .zip(placement)
        .map(|((a, b, ps), reps)| (a.to_string(), b.to_string(), ps, reps))
        .collect();
    nn.write(Command::Stream(StreamCommand::Reshard {
        name: name.to_string(),
        parents,
        children,
        now_ms: basin_common::now_ms(),
    }))
    .await?;
    describe(nn, name)
}

pub async fn split(nn: &Namenode, r: pb::SplitShardRequest) -> Result<pb::StreamInfo, Status> {
    nn.require_leader()?;
    let shards = shards_of(nn, &r.stream)?;
    let Some((id, a, b, open)) = shards.into_iter().find(|s| s.0 == r.shard) else {
        return Err(Status::not_found(format!(
            "ResourceNotFoundException: stream {} has no shard {}",
            r.stream, r.shard
        )));
    };
    if !open {
        return Err(Status::failed_precondition(format!(
            "ResourceInUseException: shard {id} is closed"
        )));
    }
    let h = parse_hash(&r.new_starting_hash)?;
    if h <= a || h > b {
        return Err(invalid(format!(
            "new starting hash key {h} must be inside shard {id}'s range ({a}, {b}]"
        )));
    }
    let info = reshard(
        nn,
        &r.stream,
        vec![id.clone()],
        vec![(a, h - 1, vec![id.clone()]), (h, b, vec![id.clone()])],
    )
    .await?;
    tracing::info!(node_id = nn.cfg.id, stream = %r.stream, shard = %id, "shard split");
    Ok(info)
}

pub async fn merge(nn: &Namenode, r: pb::MergeShardsRequest) -> Result<pb::StreamInfo, Status> {
    nn.require_leader()?;
    let shards = shards_of(nn, &r.stream)?;
    let find = |id: &str| {
        shards.iter().find(|s| s.0 == id).cloned().ok_or_else(|| {
            Status::not_found(format!(
                "ResourceNotFoundException: stream {} has no shard {id}",
                r.stream
            ))
        })
    };
    let x = find(&r.shard)?;
    let y = find(&r.adjacent)?;
    if !x.3 || !y.3 {
        return Err(Status::failed_precondition(
            "ResourceInUseException: both shards must be open to merge",
        ));
    }
    let (lo, hi) = if x.1 < y.1 { (&x, &y) } else { (&y, &x) };
    if lo.2.checked_add(1) != Some(hi.1) {
        return Err(invalid(format!(
            "shards {} and {} are not adjacent: only adjacent hash ranges can be merged",
            x.0, y.0
        )));
    }
    let info = reshard(
        nn,
        &r.stream,
        vec![x.0.clone(), y.0.clone()],
        vec![(lo.1, hi.2, vec![x.0.clone(), y.0.clone()])],
    )
    .await?;
    tracing::info!(node_id = nn.cfg.id, stream = %r.stream, a = %x.0, b = %y.0, "shards merged");
    Ok(info)
}

pub async fn update_shard_count(
    nn: &Namenode,
    r: pb::UpdateShardCountRequest,
) -> Result<pb::StreamInfo, Status> {
    nn.require_leader()?;
    let shards = shards_of(nn, &r.stream)?;
    let open: Vec<_> = shards.into_iter().filter(|s| s.3).collect();
    let n = open.len() as u32;
    if r.target == 0 || r.target > MAX_SHARDS_PER_STREAM {
        return Err(invalid(format!(
            "target shard count must be 1 to {MAX_SHARDS_PER_STREAM}"
        )));
    }
    if r.target > n * 2 || r.target * 2 < n {
        return Err(limit(format!(
            "target {} is outside 50%-200% of the {n} open shards",
            r.target
        )));
    }
    if r.target == n {
        return describe(nn, &r.stream);
    }
    let lo = open.iter().map(|s| s.1).min().unwrap_or(0);
    let hi = open.iter().map(|s| s.2).max().unwrap_or(u128::MAX);
    let children = ranges_between(lo, hi, r.target)
        .into_iter()
        .map(|(a, b)| {
            let ps = open
                .iter()
                .filter(|s| s.1 <= b && a <= s.2)
                .map(|s| s.0.clone())
                .collect();
            (a, b, ps)
        })
        .collect();
    let parents = open.iter().map(|s| s.0.clone()).collect();
    let info = reshard(nn, &r.stream, parents, children).await?;
    tracing::info!(node_id = nn.cfg.id, stream = %r.stream, target = r.target, "shard count updated");
    Ok(info)
}

pub async fn set_retention(
    nn: &Namenode,
    r: pb::RetentionRequest,
) -> Result<pb::StreamInfo, Status> {
    nn.require_leader()?;
    let current = nn
        .read(|s| s.streams.streams.get(&r.stream).map(|st| st.retention_ms))
        .ok_or_else(|| not_found(&r.stream))?;
    let ms = retention_from(nn, r.hours, r.retention_ms)?;
    if r.increase && ms < current {
        return Err(invalid(format!(
            "{} hours is less than the current retention of {} hours",
            r.hours,
            current / 3_600_000
        )));
    }
    if r.decrease && ms > current {
        return Err(invalid(format!(
            "{} hours is more than the current retention of {} hours",
            r.hours,
            current / 3_600_000
        )));
    }
    nn.write(Command::Stream(StreamCommand::SetRetention {
        name: r.stream.clone(),
        retention_ms: ms,
    }))
    .await?;
    describe(nn, &r.stream)
}

pub async fn register_consumer(
    nn: &Namenode,
    r: pb::RegisterConsumerRequest,
) -> Result<pb::StreamInfo, Status> {
    nn.require_leader()?;
    check_name(&r.consumer)?;
    nn.write(Command::Stream(StreamCommand::RegisterConsumer {
        name: r.stream.clone(),
        consumer: r.consumer,
        deregister: r.deregister,
    }))
    .await?;
    describe(nn, &r.stream)
}

/// A primary shrinking or growing its in-sync set (only in its current epoch).
pub async fn update_isr(nn: &Namenode, r: pb::UpdateIsrRequest) -> Result<pb::Empty, Status> {
    nn.require_leader()?;
    let current = nn.read(|s| {
        s.streams.streams.get(&r.stream).and_then(|st| {
            st.shards
                .iter()
                .find(|sh| sh.id == r.shard)
                .map(|sh| (sh.primary, sh.epoch, sh.isr.clone()))
        })
    });
    let Some((primary, epoch, isr)) = current else {
        return Err(not_found(&r.stream));
    };
    if primary != r.node_id || epoch != r.epoch {
        return Err(Status::failed_precondition(format!(
            "node {} at epoch {} is not the primary of {}/{} (primary {primary}, epoch {epoch})",
            r.node_id, r.epoch, r.stream, r.shard
        )));
    }
    if !r.isr.contains(&r.node_id) {
        return Err(invalid("the in-sync set must contain the primary"));
    }
    let isr_add: Vec<u64> = r.isr.iter().filter(|n| !isr.contains(n)).copied().collect();
    let isr_remove: Vec<u64> = isr.iter().filter(|n| !r.isr.contains(n)).copied().collect();
    nn.write(Command::Stream(StreamCommand::ChangeReplicas {
        name: r.stream.clone(),
        shard: r.shard.clone(),
        expect_epoch: Some(r.epoch),
        bump_epoch: false,
        primary: None,
        remove: vec![],
        add: vec![],
        isr_add: isr_add.clone(),
        isr_remove: isr_remove.clone(),
    }))
    .await?;
    tracing::info!(node_id = nn.cfg.id, stream = %r.stream, shard = %r.shard, ?isr_add, ?isr_remove, "in-sync replicas changed");
    Ok(pb::Empty {})
}

pub async fn group_heartbeat(
    nn: &Namenode,
    r: pb::GroupHeartbeatRequest,
) -> Result<pb::GroupHeartbeatResponse, Status> {
    nn.require_leader()?;
    if r.group.is_empty() || r.member.is_empty() {
        return Err(invalid("a group heartbeat needs a group and a member name"));
    }
    let known = nn.read(|s| {
        s.streams
            .streams
            .get(&r.stream)
            .map(|st| st.groups.get(&r.group).cloned().unwrap_or_default())
    });
    let Some(saved) = known else {
        return Err(not_found(&r.stream));
    };
    let changed: Vec<(String, GroupCheckpoint)> = r
        .checkpoints
        .iter()
        .filter(|c| {
            let old = saved.get(&c.shard);
            old.is_none_or(|o| c.seq > o.seq || (c.finished && !o.finished))
        })
        .map(|c| {
            (
                c.shard.clone(),
                GroupCheckpoint {
                    seq: c.seq,
                    finished: c.finished,
                },
            )
        })
        .collect();
    if !changed.is_empty() {
        nn.write(Command::Stream(StreamCommand::Checkpoint {
            name: r.stream.clone(),
            group: r.group.clone(),
            checkpoints: changed,
        }))
        .await?;
    }
    let owned = nn
        .groups
        .heartbeat(nn, &r.stream, &r.group, &r.member, r.leave);
    Ok(pb::GroupHeartbeatResponse {
        owned,
        lease_ms: nn.cfg.group_lease.as_millis() as u64,
    })
}
