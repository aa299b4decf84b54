//! The replicated namespace and node registry: the state machine that every
//! master applies, in log order, from the Raft log.
//!
//! Everything here is deterministic: commands carry their own timestamps and
//! lease ids, so every master reaches the same state. Block *locations* are
//! not here (see [`super::blocks`]): they are soft state from block reports.

use std::collections::BTreeMap;

use basin_common::path;
use serde::{Deserialize, Serialize};

/// Version of this state's serialised form (snapshots).
pub const STATE_FORMAT_VERSION: u32 = 1;
/// The user that may do anything (as HDFS's superuser).
pub const SUPERUSER: &str = "basin";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum InodeKind {
    Dir,
    File,
}

/// One allocated block of a file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BlockRef {
    pub id: u64,
    pub len: u64,
}

/// A writer's hold on a file under construction.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Lease {
    pub id: String,
    pub client: String,
    pub renewed_ms: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Inode {
    pub kind: InodeKind,
    pub owner: String,
    pub mode: u32,
    pub mtime_ms: i64,
    pub replication: u32,
    pub block_size: u64,
    pub blocks: Vec<BlockRef>,
    /// Some while the file is being written: invisible to readers until closed.
    pub lease: Option<Lease>,
}

impl Inode {
    pub fn is_dir(&self) -> bool {
        self.kind == InodeKind::Dir
    }
    pub fn visible(&self) -> bool {
        self.lease.is_none()
    }
    pub fn length(&self) -> u64 {
        self.blocks.iter().map(|b| b.len).sum()
    }
    fn dir(owner: &str, mode: u32, mtime_ms: i64) -> Self {
        Inode {
            kind: InodeKind::Dir,
            owner: owner.to_string(),
            mode,
            mtime_ms,
            replication: 0,
            block_size: 0,
            blocks: Vec::new(),
            lease: None,
        }
    }
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum Role {
    Core,
    Task,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum AdminState {
    Normal,
    Decommissioning,
    Decommissioned,
}

/// A registered worker.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeRecord {
    pub id: u64,
    pub uuid: String,
    pub addr: String,
    pub role: Role,
    pub zone: String,
    pub name: String,
    pub admin: AdminState,
    /// Address for clients outside the cluster network (empty: use `addr`).
    #[serde(default)]
    pub external_addr: String,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum FsErrorKind {
    NotFound,
    AlreadyExists,
    NotADirectory,
    IsADirectory,
    DirectoryNotEmpty,
    PermissionDenied,
    InvalidArgument,
    LeaseMismatch,
    /// A conditional write found its condition no longer true.
    Conflict,
}

/// A refused command: the same on every master.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FsError {
    pub kind: FsErrorKind,
    pub message: String,
}

fn err<T>(kind: FsErrorKind, message: impl Into<String>) -> Result<T, FsError> {
    Err(FsError {
        kind,
        message: message.into(),
    })
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Command {
    Mkdir {
        path: String,
        parents: bool,
        user: String,
        mtime_ms: i64,
    },
    CreateFile {
        path: String,
        user: String,
        mode: u32,
        replication: u32,
        block_size: u64,
        overwrite: bool,
        lease: Lease,
    },
    AllocateBlock {
        path: String,
        lease: String,
    },
    CompleteFile {
        path: String,
        lease: String,
        lengths: Vec<u64>,
        mtime_ms: i64,
    },
    AbandonFile {
        path: String,
        lease: Option<String>,
    },
    RenewLease {
        path: String,
        lease: String,
        now_ms: i64,
    },
    Delete {
        path: String,
        recursive: bool,
        user: String,
    },
    Rename {
        src: String,
        dst: String,
        user: String,
        mtime_ms: i64,
    },
    SetReplication {
        path: String,
        replication: u32,
        user: String,
    },
    RegisterNode {
        uuid: String,
        addr: String,
        role: Role,
        zone: String,
        name: String,
        #[serde(default)]
        external_addr: String,
    },
    SetNodeAdmin {
        id: u64,
        admin: AdminState,
    },
    Job(crate::jobtracker::state::JobCommand),
    Stream(crate::streams::state::StreamCommand),
    Warehouse(crate::warehouse::state::WarehouseCommand),
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub enum CommandResult {
    #[default]
    Ok,
    BlockId(u64),
    NodeId(u64),
    Count(u64),
    /// Blocks no file refers to any more (to delete from workers).
    Freed(Vec<u64>),
    /// The file displaced by an overwrite, and its freed blocks.
    Err(FsError),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FsState {
    pub format_version: u32,
    /// Path → inode; "/" always exists.
    pub inodes: BTreeMap<String, Inode>,
    /// Block id → path of the file that owns it.
    pub block_owner: BTreeMap<u64, String>,
    pub next_block_id: u64,
    pub nodes: BTreeMap<u64, NodeRecord>,
    pub next_node_id: u64,
    /// The job tracker's state (see `crate::jobtracker::state`).
    #[serde(default)]
    pub jobs: crate::jobtracker::state::JobsState,
    /// Streams and shards (see `crate::streams::state`).
    #[serde(default)]
    pub streams: crate::streams::state::StreamsState,
    /// The warehouse catalog (see `crate::warehouse::state`).
    #[serde(default)]
    pub warehouse: crate::warehouse::state::WarehouseState,
}

impl Default for FsState {
    fn default() -> Self {
        let mut inodes = BTreeMap::new();
        inodes.insert("/".to_string(), Inode::dir(SUPERUSER, 0o777, 0));
        FsState {
            format_version: STATE_FORMAT_VERSION,
            inodes,
            block_owner: BTreeMap::new(),
            next_block_id: 1,
            nodes: BTreeMap::new(),
            next_node_id: 1,
            jobs: Default::default(),
            streams: Default::default(),
            warehouse: Default::default(),
        }
    }
}

/// Whether `user` may modify entries inside directory `dir`.
fn may_write(dir: &Inode, user: &str) -> bool {
    user == SUPERUSER || dir.owner == user || dir.mode & 0o002 != 0
}

impl FsState {
    /// Applies one command; refusals come back as [`CommandResult::Err`].
    pub fn apply(&mut self, cmd: &Command) -> CommandResult {
        let r = match cmd {
            Command::Mkdir {
                path,
                parents,
                user,
                mtime_ms,
            } => self
                .mkdir(path, *parents, user, *mtime_ms)
                .map(|_| CommandResult::Ok),
            Command::CreateFile {
                path,
                user,
                mode,
                replication,
                block_size,
                overwrite,
                lease,
            } => self.create(
                path,
                user,
                *mode,
                *replication,
                *block_size,
                *overwrite,
                lease,
            ),
            Command::AllocateBlock { path, lease } => self.allocate(path, lease),
            Command::CompleteFile {
                path,
                lease,
                lengths,
                mtime_ms,
            } => self.complete(path, lease, lengths, *mtime_ms),
            Command::AbandonFile { path, lease } => self.abandon(path, lease.as_deref()),
            Command::RenewLease {
                path,
                lease,
                now_ms,
            } => self.renew(path, lease, *now_ms),
            Command::Delete {
                path,
                recursive,
                user,
            } => self.delete(path, *recursive, user),
            Command::Rename {
                src,
                dst,
                user,
                mtime_ms,
            } => self.rename(src, dst, user, *mtime_ms),
            Command::SetReplication {
                path,
                replication,
                user,
            } => self.set_replication(path, *replication, user),
            Command::RegisterNode {
                uuid,
                addr,
                role,
                zone,
                name,
                external_addr,
            } => Ok(self.register(uuid, addr, *role, zone, name, external_addr)),
            Command::SetNodeAdmin { id, admin } => match self.nodes.get_mut(id) {
                Some(n) => {
                    n.admin = *admin;
                    Ok(CommandResult::Ok)
                }
                None => err(FsErrorKind::NotFound, format!("no such node: {id}")),
            },
            Command::Job(cmd) => self.apply_job(cmd),
            Command::Stream(cmd) => self.apply_stream(cmd),
            Command::Warehouse(cmd) => self.apply_warehouse(cmd),
        };
        r.unwrap_or_else(CommandResult::Err)
    }

    /// The visible inode at `path` (files under construction are hidden).
    pub fn lookup(&self, path: &str) -> Option<&Inode> {
        self.inodes.get(path).filter(|i| i.visible())
    }

    /// Visible direct children of a directory, in name order.
    pub fn children<'a>(&'a self, dir: &str) -> impl Iterator<Item = (&'a String, &'a Inode)> + 'a {
        let prefix = if dir == "/" {
            "/".to_string()
        } else {
            format!("{dir}/")
        };
        let plen = prefix.len();
        self.inodes
            .range(prefix.clone()..)
            .take_while(move |(k, _)| k.starts_with(&prefix))
            .filter(move |(k, i)| k.len() > plen && !k[plen..].contains('/') && i.visible())
    }

    /// Every inode at or below `path` (including hidden ones).
    pub fn subtree<'a>(
        &'a self,
        path: &'a str,
    ) -> impl Iterator<Item = (&'a String, &'a Inode)> + 'a {
        let prefix = if path == "/" {
            "/".to_string()
        } else {
            format!("{path}/")
        };
        let own = self.inodes.get_key_value(path);
        own.into_iter().chain(
            self.inodes
                .range(prefix.clone()..)
                .take_while(move |(k, _)| k.starts_with(&prefix))
                .filter(move |(k, _)| k.as_str() != path),
        )
    }

    fn parent_dir(&self, p: &str, user: &str) -> Result<(), FsError> {
        let Some(parent) = path::parent(p) else {
            return err(FsErrorKind::InvalidArgument, "the root cannot be changed");
        };
        match self.inodes.get(parent) {
            None => err(
                FsErrorKind::NotFound,
                format!("no such directory: {parent}"),
            ),
            Some(i) if !i.is_dir() => err(
                FsErrorKind::NotADirectory,
                format!("not a directory: {parent}"),
            ),
            Some(i) if !may_write(i, user) => err(
                FsErrorKind::PermissionDenied,
                format!(
                    "permission denied: user={user}, access=WRITE, inode={parent} (owner {}, mode {:o})",
                    i.owner, i.mode
                ),
            ),
            Some(_) => Ok(()),
        }
    }

    fn mkdir(&mut self, p: &str, parents: bool, user: &str, mtime: i64) -> Result<(), FsError> {
        if let Some(existing) = self.inodes.get(p) {
            return if existing.is_dir() && parents {
                Ok(())
            } else if existing.is_dir() {
                err(FsErrorKind::AlreadyExists, format!("already exists: {p}"))
            } else {
                err(
                    FsErrorKind::AlreadyExists,
                    format!("already exists as a file: {p}"),
                )
            };
        }
        if parents {
            // Create missing ancestors first, top-down.
            let mut chain = Vec::new();
            let mut cur = path::parent(p);
            while let Some(c) = cur {
                match self.inodes.get(c) {
                    Some(i) if i.is_dir() => break,
                    Some(_) => {
                        return err(FsErrorKind::NotADirectory, format!("not a directory: {c}"));
                    }
                    None => chain.push(c.to_string()),
                }
                cur = path::parent(c);
            }
            for c in chain.iter().rev() {
                self.parent_dir(c, user)?;
                self.inodes
                    .insert(c.clone(), Inode::dir(user, 0o755, mtime));
            }
        }
        self.parent_dir(p, user)?;
        self.inodes
            .insert(p.to_string(), Inode::dir(user, 0o755, mtime));
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn create(
        &mut self,
        p: &str,
        user: &str,
        mode: u32,
        replication: u32,
        block_size: u64,
        overwrite: bool,
        lease: &Lease,
    ) -> Result<CommandResult, FsError> {
        if replication == 0 || block_size == 0 {
            return err(
                FsErrorKind::InvalidArgument,
                "replication and block size must be positive",
            );
        }
        self.parent_dir(p, user)?;
        let mut freed = Vec::new();
        if let Some(existing) = self.inodes.get(p) {
            if existing.is_dir() {
                return err(FsErrorKind::IsADirectory, format!("is a directory: {p}"));
            }
            if existing.lease.is_some() {
                return err(
                    FsErrorKind::AlreadyExists,
                    format!("already being written by another client: {p}"),
                );
            }
            if !overwrite {
                return err(FsErrorKind::AlreadyExists, format!("already exists: {p}"));
            }
            freed = self.remove_file(p);
        }
        self.inodes.insert(
            p.to_string(),
            Inode {
                kind: InodeKind::File,
                owner: user.to_string(),
                mode,
                mtime_ms: lease.renewed_ms,
                replication,
                block_size,
                blocks: Vec::new(),
                lease: Some(lease.clone()),
            },
        );
        Ok(CommandResult::Freed(freed))
    }

    fn under_construction(&mut self, p: &str, lease: &str) -> Result<&mut Inode, FsError> {
        match self.inodes.get_mut(p) {
            Some(i) if i.lease.as_ref().is_some_and(|l| l.id == lease) => Ok(i),
            Some(_) => err(
                FsErrorKind::LeaseMismatch,
                format!("lease on {p} is not held (expired or taken over)"),
            ),
            None => err(
                FsErrorKind::LeaseMismatch,
                format!("no file under construction at {p} (lease expired?)"),
            ),
        }
    }

    fn allocate(&mut self, p: &str, lease: &str) -> Result<CommandResult, FsError> {
        let id = self.next_block_id;
        self.under_construction(p, lease)?
            .blocks
            .push(BlockRef { id, len: 0 });
        self.next_block_id += 1;
        self.block_owner.insert(id, p.to_string());
        Ok(CommandResult::BlockId(id))
    }

    fn complete(
        &mut self,
        p: &str,
        lease: &str,
        lengths: &[u64],
        mtime: i64,
    ) -> Result<CommandResult, FsError> {
        let inode = self.under_construction(p, lease)?;
        if inode.blocks.len() != lengths.len() {
            return err(
                FsErrorKind::InvalidArgument,
                format!(
                    "{p} has {} blocks but {} lengths were given",
                    inode.blocks.len(),
                    lengths.len()
                ),
            );
        }
        for (b, len) in inode.blocks.iter_mut().zip(lengths) {
            b.len = *len;
        }
        inode.lease = None;
        inode.mtime_ms = mtime;
        Ok(CommandResult::Ok)
    }

    fn abandon(&mut self, p: &str, lease: Option<&str>) -> Result<CommandResult, FsError> {
        match self.inodes.get(p) {
            Some(i)
                if i.lease.is_some()
                    && lease.is_none_or(|l| i.lease.as_ref().is_some_and(|h| h.id == l)) =>
            {
                Ok(CommandResult::Freed(self.remove_file(p)))
            }
            _ => Ok(CommandResult::Freed(Vec::new())),
        }
    }

    fn renew(&mut self, p: &str, lease: &str, now: i64) -> Result<CommandResult, FsError> {
        let inode = self.under_construction(p, lease)?;
        if let Some(l) = inode.lease.as_mut() {
            l.renewed_ms = now;
        }
        Ok(CommandResult::Ok)
    }

    /// Removes one file inode and returns its block ids.
    fn remove_file(&mut self, p: &str) -> Vec<u64> {
        let Some(inode) = self.inodes.remove(p) else {
            return Vec::new();
        };
        let ids: Vec<u64> = inode.blocks.iter().map(|b| b.id).collect();
        for id in &ids {
            self.block_owner.remove(id);
        }
        ids
    }

    fn delete(&mut self, p: &str, recursive: bool, user: &str) -> Result<CommandResult, FsError> {
        let Some(inode) = self.lookup(p) else {
            return err(
                FsErrorKind::NotFound,
                format!("no such file or directory: {p}"),
            );
        };
        if p == "/" {
            return err(
                FsErrorKind::InvalidArgument,
                "the root directory cannot be deleted",
            );
        }
        let is_dir = inode.is_dir();
        self.parent_dir(p, user)?;
        if is_dir && !recursive && self.subtree(p).nth(1).is_some() {
            return err(
                FsErrorKind::DirectoryNotEmpty,
                format!("directory not empty: {p} (use -r)"),
            );
        }
        let victims: Vec<String> = self.subtree(p).map(|(k, _)| k.clone()).collect();
        let mut freed = Vec::new();
        for v in victims {
            freed.extend(self.remove_file(&v));
        }
        Ok(CommandResult::Freed(freed))
    }

    fn rename(
        &mut self,
        src: &str,
        dst: &str,
        user: &str,
        mtime: i64,
    ) -> Result<CommandResult, FsError> {
        if self.lookup(src).is_none() {
            return err(
                FsErrorKind::NotFound,
                format!("no such file or directory: {src}"),
            );
        }
        if src == "/" {
            return err(
                FsErrorKind::InvalidArgument,
                "the root directory cannot be moved",
            );
        }
        // Moving onto an existing directory moves into it, as `mv` does.
        let dst = match self.lookup(dst) {
            Some(d) if d.is_dir() => path::join(dst, path::file_name(src)),
            Some(_) => return err(FsErrorKind::AlreadyExists, format!("already exists: {dst}")),
            None => dst.to_string(),
        };
        if self.inodes.contains_key(&dst) {
            return err(FsErrorKind::AlreadyExists, format!("already exists: {dst}"));
        }
        if path::is_within(&dst, src) {
            return err(
                FsErrorKind::InvalidArgument,
                format!("cannot move {src} into itself"),
            );
        }
        self.parent_dir(src, user)?;
        self.parent_dir(&dst, user)?;
        let moved: Vec<String> = self.subtree(src).map(|(k, _)| k.clone()).collect();
        for old in moved {
            if let Some(mut inode) = self.inodes.remove(&old) {
                let new = format!("{dst}{}", &old[src.len()..]);
                if old == src {
                    inode.mtime_ms = mtime;
                }
                for b in &inode.blocks {
                    self.block_owner.insert(b.id, new.clone());
                }
                self.inodes.insert(new, inode);
            }
        }
        Ok(CommandResult::Ok)
    }

    fn set_replication(
        &mut self,
        p: &str,
        replication: u32,
        user: &str,
    ) -> Result<CommandResult, FsError> {
        if replication == 0 {
            return err(
                FsErrorKind::InvalidArgument,
                "replication must be at least 1",
            );
        }
        let Some(inode) = self.lookup(p) else {
            return err(
                FsErrorKind::NotFound,
                format!("no such file or directory: {p}"),
            );
        };
        if user != SUPERUSER && inode.owner != user {
            return err(
                FsErrorKind::PermissionDenied,
                format!("permission denied: {user} does not own {p}"),
            );
        }
        let files: Vec<String> = self
            .subtree(p)
            .filter(|(_, i)| !i.is_dir() && i.visible())
            .map(|(k, _)| k.clone())
            .collect();
        for f in &files {
            if let Some(i) = self.inodes.get_mut(f) {
                i.replication = replication;
            }
        }
        Ok(CommandResult::Count(files.len() as u64))
    }

    #[allow(clippy::too_many_arguments)]
    fn register(
        &mut self,
        uuid: &str,
        addr: &str,
        role: Role,
        zone: &str,
        name: &str,
        external_addr: &str,
    ) -> CommandResult {
        if let Some(n) = self.nodes.values_mut().find(|n| n.uuid == uuid) {
            n.addr = addr.to_string();
            n.external_addr = external_addr.to_string();
            n.role = role;
            n.zone = zone.to_string();
            n.name = name.to_string();
            if n.admin == AdminState::Decommissioned {
                // A decommissioned node that comes back starts over as a normal node.
                n.admin = AdminState::Normal;
            }
            return CommandResult::NodeId(n.id);
        }
        let id = self.next_node_id;
        self.next_node_id += 1;
        self.nodes.insert(
            id,
            NodeRecord {
                id,
                uuid: uuid.to_string(),
                addr: addr.to_string(),
                role,
                zone: zone.to_string(),
                name: name.to_string(),
                admin: AdminState::Normal,
                external_addr: external_addr.to_string(),
            },
        );
        CommandResult::NodeId(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(id: &str) -> Lease {
        Lease {
            id: id.into(),
            client: "c".into(),
            renewed_ms: 1,
        }
    }

    #[test]
    fn file_lifecycle() {
        let mut s = FsState::default();
        assert_eq!(
            s.apply(&Command::Mkdir {
                path: "/a/b".into(),
                parents: true,
                user: "u".into(),
                mtime_ms: 1
            }),
            CommandResult::Ok
        );
        let r = s.apply(&Command::CreateFile {
            path: "/a/b/f".into(),
            user: "u".into(),
            mode: 0o644,
            replication: 3,
            block_size: 10,
            overwrite: false,
            lease: lease("l"),
        });
        assert_eq!(r, CommandResult::Freed(vec![]));
        assert!(s.lookup("/a/b/f").is_none(), "under construction is hidden");
        assert_eq!(
            s.apply(&Command::AllocateBlock {
                path: "/a/b/f".into(),
                lease: "l".into()
            }),
            CommandResult::BlockId(1)
        );
        assert_eq!(
            s.apply(&Command::CompleteFile {
                path: "/a/b/f".into(),
                lease: "l".into(),
                lengths: vec![7],
                mtime_ms: 2
            }),
            CommandResult::Ok
        );
        assert_eq!(s.lookup("/a/b/f").map(|i| i.length()), Some(7));
        assert_eq!(
            s.apply(&Command::Rename {
                src: "/a".into(),
                dst: "/z".into(),
                user: "u".into(),
                mtime_ms: 3
            }),
            CommandResult::Ok
        );
        assert_eq!(s.block_owner.get(&1).map(String::as_str), Some("/z/b/f"));
        let CommandResult::Err(e) = s.apply(&Command::Delete {
            path: "/z".into(),
            recursive: false,
            user: "u".into(),
        }) else {
            panic!()
        };
        assert_eq!(e.kind, FsErrorKind::DirectoryNotEmpty);
        let CommandResult::Err(e) = s.apply(&Command::Delete {
            path: "/z/b/f".into(),
            recursive: false,
            user: "other".into(),
        }) else {
            panic!()
        };
        assert_eq!(e.kind, FsErrorKind::PermissionDenied);
        assert_eq!(
            s.apply(&Command::Delete {
                path: "/z".into(),
                recursive: true,
                user: "u".into()
            }),
            CommandResult::Freed(vec![1])
        );
        assert!(s.block_owner.is_empty());
    }
}
