//! Namespace RPCs: the `hdfs dfs` surface of the master.

use basin_common::path;
use basin_proto as pb;
use tonic::Status;

use crate::namenode::Namenode;
use crate::namenode::placement;
use crate::namenode::state::{Command, CommandResult, Inode, Lease};

pub(crate) fn norm(p: &str) -> Result<String, Status> {
    path::normalize(p).map_err(|e| Status::invalid_argument(e.to_string()))
}

fn user_or_default(u: &str) -> String {
    if u.is_empty() {
        crate::namenode::state::SUPERUSER.to_string()
    } else {
        u.to_string()
    }
}

pub(crate) fn status_of(p: &str, i: &Inode) -> pb::FileStatus {
    pb::FileStatus {
        path: p.to_string(),
        is_dir: i.is_dir(),
        length: i.length(),
        replication: i.replication,
        block_size: i.block_size,
        owner: i.owner.clone(),
        mode: i.mode,
        mtime_ms: i.mtime_ms,
    }
}

pub async fn mkdir(nn: &Namenode, r: pb::MkdirRequest) -> Result<pb::Empty, Status> {
    let p = norm(&r.path)?;
    let cmd = Command::Mkdir {
        path: p,
        parents: r.parents,
        user: user_or_default(&r.owner),
        mtime_ms: basin_common::now_ms(),
    };
    nn.write_namespace(cmd).await?;
    Ok(pb::Empty {})
}

pub fn list(nn: &Namenode, r: pb::PathRequest) -> Result<pb::ListResponse, Status> {
    nn.require_leader()?;
    let p = norm(&r.path)?;
    nn.read(|s| match s.lookup(&p) {
        None => Err(Status::not_found(format!("no such file or directory: {p}"))),
        Some(i) if !i.is_dir() => Ok(pb::ListResponse {
            entries: vec![status_of(&p, i)],
        }),
        Some(_) => Ok(pb::ListResponse {
            entries: s.children(&p).map(|(k, i)| status_of(k, i)).collect(),
        }),
    })
}

pub fn stat(nn: &Namenode, r: pb::PathRequest) -> Result<pb::StatResponse, Status> {
    nn.require_leader()?;
    let p = norm(&r.path)?;
    let inode = nn
        .read(|s| s.lookup(&p).cloned())
        .ok_or_else(|| Status::not_found(format!("no such file or directory: {p}")))?;
    let nodes = nn.read(|s| s.nodes.clone());
    let bm = nn.block_map();
    let mut offset = 0;
    let blocks = inode
        .blocks
        .iter()
        .map(|b| {
            let replicas = nn
                .live_replicas(&bm, b.id)
                .into_iter()
                .filter_map(|n| nodes.get(&n).map(|rec| nn.describe_node(rec, &bm)))
                .collect();
            let loc = pb::BlockLocation {
                block_id: b.id,
                offset,
                length: b.len,
                replicas,
            };
            offset += b.len;
            loc
        })
        .collect();
    Ok(pb::StatResponse {
        status: Some(status_of(&p, &inode)),
        blocks,
    })
}

pub async fn delete(nn: &Namenode, r: pb::DeleteRequest) -> Result<pb::Empty, Status> {
    let p = norm(&r.path)?;
    nn.write_namespace(Command::Delete {
        path: p,
        recursive: r.recursive,
        user: user_or_default(&r.user),
    })
    .await?;
    Ok(pb::Empty {})
}

pub async fn rename(nn: &Namenode, r: pb::RenameRequest) -> Result<pb::Empty, Status> {
    let (src, dst) = (norm(&r.src)?, norm(&r.dst)?);
    let cmd = Command::Rename {
        src,
        dst,
        user: user_or_default(&r.user),
        mtime_ms: basin_common::now_ms(),
    };
    nn.write_namespace(cmd).await?;
    Ok(pb::Empty {})
}

pub async fn set_replication(
    nn: &Namenode,
    r: pb::SetReplicationRequest,
) -> Result<pb::SetReplicationResponse, Status> {
    let p = norm(&r.path)?;
    if r.replication == 0 || r.replication > 32 {
        return Err(Status::invalid_argument(
            "replication must be between 1 and 32",
        ));
    }
    let cmd = Command::SetReplication {
        path: p,
        replication: r.replication,
        user: user_or_default(&r.user),
    };
    match nn.write_namespace(cmd).await? {
        CommandResult::Count(n) => Ok(pb::SetReplicationResponse { files: n as u32 }),
        _ => Ok(pb::SetReplicationResponse { files: 0 }),
    }
}

pub fn summary(nn: &Namenode, r: pb::PathRequest) -> Result<pb::ContentSummary, Status> {
    nn.require_leader()?;
    let p = norm(&r.path)?;
    nn.read(|s| {
        if s.lookup(&p).is_none() {
            return Err(Status::not_found(format!("no such file or directory: {p}")));
        }
        let mut out = pb::ContentSummary::default();
        for (_, i) in s.subtree(&p).filter(|(_, i)| i.visible()) {
            if i.is_dir() {
                out.dirs += 1;
            } else {
                out.files += 1;
                out.length += i.length();
                out.space_consumed += i.length() * i.replication as u64;
            }
        }
        Ok(out)
    })
}

pub async fn create_file(
    nn: &Namenode,
    r: pb::CreateFileRequest,
) -> Result<pb::CreateFileResponse, Status> {
    let p = norm(&r.path)?;
    let live = nn.candidates().len() as u32;
    if live == 0 {
        return Err(Status::failed_precondition(
            "no live core workers to store blocks on",
        ));
    }
    let wanted = if r.replication == 0 {
        nn.cfg.default_replication
    } else {
        r.replication
    };
    if wanted > 32 {
        return Err(Status::invalid_argument(
            "replication must be between 1 and 32",
        ));
    }
    let replication = wanted.min(live);
    let block_size = if r.block_size == 0 {
        nn.cfg.default_block_size
    } else {
        r.block_size
    };
    if !(4096..=2 * 1024 * 1024 * 1024).contains(&block_size) {
        return Err(Status::invalid_argument(
            "block size must be between 4 KiB and 2 GiB",
        ));
    }
    let lease = Lease {
        id: uuid::Uuid::new_v4().to_string(),
        client: r.client.clone(),
        renewed_ms: basin_common::now_ms(),
    };
    let cmd = Command::CreateFile {
        path: p,
        user: user_or_default(&r.owner),
        mode: if r.mode == 0 { 0o644 } else { r.mode },
        replication,
        block_size,
        overwrite: r.overwrite,
        lease: lease.clone(),
    };
    nn.write_namespace(cmd).await?;
    Ok(pb::CreateFileResponse {
        lease: lease.id,
        replication,
        block_size,
    })
}

fn targets(nn: &Namenode, count: usize, exclude: &[u64]) -> Result<Vec<pb::NodeInfo>, Status> {
    let chosen = placement::choose(nn.candidates(), &[], exclude, count);
    if chosen.is_empty() {
        return Err(Status::failed_precondition(
            "no live core workers to store blocks on",
        ));
    }
    Ok(chosen.iter().filter_map(|c| nn.node_info(c.id)).collect())
}

pub async fn add_block(
    nn: &Namenode,
    r: pb::AddBlockRequest,
) -> Result<pb::AddBlockResponse, Status> {
    let p = norm(&r.path)?;
    let replication = nn
        .read(|s| {
            s.inodes
                .get(&p)
                .filter(|i| i.lease.is_some())
                .map(|i| i.replication)
        })
        .ok_or_else(|| Status::invalid_argument(format!("no file under construction at {p}")))?;
    let targets = targets(nn, replication as usize, &r.exclude_nodes)?;
    let id = match nn
        .write(Command::AllocateBlock {
            path: p,
            lease: r.lease,
        })
        .await?
    {
        CommandResult::BlockId(id) => id,
        other => return Err(Status::internal(format!("unexpected result {other:?}"))),
    };
    Ok(pb::AddBlockResponse {
        block_id: id,
        targets,
    })
}

pub fn extra_targets(
    nn: &Namenode,
    r: pb::ExtraTargetsRequest,
) -> Result<pb::ExtraTargetsResponse, Status> {
    nn.require_leader()?;
    Ok(pb::ExtraTargetsResponse {
        targets: targets(nn, r.count as usize, &r.exclude_nodes)?,
    })
}

pub async fn complete_file(
    nn: &Namenode,
    r: pb::CompleteFileRequest,
) -> Result<pb::FileStatus, Status> {
    let p = norm(&r.path)?;
    let cmd = Command::CompleteFile {
        path: p.clone(),
        lease: r.lease,
        lengths: r.block_lengths,
        mtime_ms: basin_common::now_ms(),
    };
    nn.write(cmd).await?;
    nn.read(|s| s.lookup(&p).map(|i| status_of(&p, i)))
        .ok_or_else(|| Status::internal(format!("{p} vanished after completion")))
}

pub async fn abandon_file(nn: &Namenode, r: pb::AbandonFileRequest) -> Result<pb::Empty, Status> {
    let p = norm(&r.path)?;
    if let CommandResult::Freed(blocks) = nn
        .write(Command::AbandonFile {
            path: p,
            lease: Some(r.lease),
        })
        .await?
    {
        nn.block_map().free_blocks(&blocks);
    }
    Ok(pb::Empty {})
}

pub async fn renew_lease(nn: &Namenode, r: pb::RenewLeaseRequest) -> Result<pb::Empty, Status> {
    let p = norm(&r.path)?;
    nn.write(Command::RenewLease {
        path: p,
        lease: r.lease,
        now_ms: basin_common::now_ms(),
    })
    .await?;
    Ok(pb::Empty {})
}

pub fn fsck(nn: &Namenode, r: pb::FsckRequest) -> Result<pb::FsckResponse, Status> {
    nn.require_leader()?;
    let p = norm(if r.path.is_empty() { "/" } else { &r.path })?;
    let files: Vec<(String, Inode)> = nn.read(|s| {
        if s.lookup(&p).is_none() {
            return Err(Status::not_found(format!("no such file or directory: {p}")));
        }
        Ok(s.subtree(&p)
            .filter(|(_, i)| !i.is_dir() && i.visible())
            .map(|(k, i)| (k.clone(), i.clone()))
            .collect())
    })?;
    let bm = nn.block_map();
    let mut out = pb::FsckResponse::default();
    for (path, inode) in files {
        let mut fb = Vec::new();
        for b in &inode.blocks {
            let live = nn.live_replicas(&bm, b.id);
            let corrupt = bm.corrupt.get(&b.id).map(|s| s.len()).unwrap_or(0) as u32;
            let n = live.len() as u32;
            match n {
                0 => out.missing += 1,
                n if n < inode.replication => out.under_replicated += 1,
                n if n > inode.replication => out.over_replicated += 1,
                _ => out.healthy += 1,
            }
            if corrupt > 0 {
                out.corrupt += 1;
            }
            fb.push(pb::FsckBlock {
                block_id: b.id,
                live: n,
                expected: inode.replication,
                corrupt,
                nodes: live,
            });
        }
        out.files.push(pb::FsckFile { path, blocks: fb });
    }
    Ok(out)
}
