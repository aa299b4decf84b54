//! The applied state machine ([`StateMachineStore`]) and its snapshots.
//!
//! The applied state (last applied log id, last membership, [`FsState`])
//! lives in memory. It is made durable by snapshots, stored in the sled tree
//! `sm_snapshot` (key `meta`: serde_json of the snapshot meta, key `data`:
//! the snapshot bytes), plus the Raft log: on restart the latest snapshot is
//! loaded and openraft re-applies the committed entries after it.
//!
//! Snapshot data is serde_json of `{ format_version, last_applied,
//! last_membership, state }`.

use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use openraft::storage::RaftStateMachine;
use openraft::{AnyError, EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};

use super::types::{
    Entry, LogId, NodeId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use crate::namenode::state::{CommandResult, FsState};

/// Version of the snapshot data format written by this build.
pub const SNAPSHOT_FORMAT_VERSION: u32 = 1;

const SNAPSHOT_TREE: &str = "sm_snapshot";
const KEY_META: &str = "meta";
const KEY_DATA: &str = "data";

/// Snapshot data as written.
#[derive(Serialize)]
struct SnapshotFileRef<'a> {
    format_version: u32,
    last_applied: &'a Option<LogId>,
    last_membership: &'a StoredMembership,
    state: &'a FsState,
}

/// Snapshot data as read.
#[derive(Deserialize)]
struct SnapshotFile {
    format_version: u32,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    state: FsState,
}

/// The in-memory applied state.
#[derive(Debug, Default)]
struct Applied {
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    fs: Arc<FsState>,
}

struct Inner {
    node_id: NodeId,
    db: sled::Db,
    tree: sled::Tree,
    state: RwLock<Applied>,
    /// Serializes snapshot writes so an older snapshot never replaces a newer one.
    persist: tokio::sync::Mutex<()>,
    snapshot_seq: AtomicU64,
}

/// The master's state machine. Cheap to clone: clones share the state.
#[derive(Clone)]
pub struct StateMachineStore {
    inner: Arc<Inner>,
}

/// Builds a snapshot from a copy of the state taken when it was created.
pub struct SnapshotBuilder {
    store: StateMachineStore,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    fs: Arc<FsState>,
}

fn decode_snapshot(meta: &SnapshotMeta, data: &[u8]) -> Result<SnapshotFile, StorageError> {
    let sig = Some(meta.signature());
    let file: SnapshotFile = serde_json::from_slice(data)
        .map_err(|e| StorageIOError::read_snapshot(sig.clone(), AnyError::new(&e)))?;
    if file.format_version != SNAPSHOT_FORMAT_VERSION {
        let msg = format!(
            "unsupported snapshot format {}; this build reads {SNAPSHOT_FORMAT_VERSION}",
            file.format_version
        );
        return Err(StorageIOError::read_snapshot(sig, AnyError::error(msg)).into());
    }
    Ok(file)
}

impl StateMachineStore {
    /// Opens the state machine of node `node_id` on `db`, loading the
    /// latest stored snapshot.
    pub fn open(db: &sled::Db, node_id: NodeId) -> Result<Self, StorageError> {
        let tree = db
            .open_tree(SNAPSHOT_TREE)
            .map_err(|e| StorageIOError::read_state_machine(AnyError::new(&e)))?;
        let store = Self {
            inner: Arc::new(Inner {
                node_id,
                db: db.clone(),
                tree,
                state: RwLock::new(Applied::default()),
                persist: tokio::sync::Mutex::new(()),
                snapshot_seq: AtomicU64::new(0),
            }),
        };
        if let Some((meta, data)) = store.load_snapshot()? {
            let file = decode_snapshot(&meta, &data)?;
            if file.last_applied != meta.last_log_id || file.last_membership != meta.last_membership
            {
                tracing::warn!(
                    node_id,
                    snapshot = %meta,
                    "snapshot data and meta disagree; using meta",
                );
            }
            let mut st = store.write();
            st.last_applied = meta.last_log_id;
            st.last_membership = meta.last_membership.clone();
            st.fs = Arc::new(file.state);
            tracing::info!(node_id, snapshot = %meta, "loaded state machine snapshot");
        }
        Ok(store)
    }

    /// Runs `f` on the applied state.
    pub fn read<T>(&self, f: impl FnOnce(&FsState) -> T) -> T {
        f(&self.read_lock().fs)
    }

    /// The id of the last applied log entry.
    pub fn last_applied(&self) -> Option<LogId> {
        self.read_lock().last_applied
    }

    fn read_lock(&self) -> RwLockReadGuard<'_, Applied> {
        self.inner.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Applied> {
        self.inner.state.write().unwrap_or_else(|p| p.into_inner())
    }

    fn load_snapshot(&self) -> Result<Option<(SnapshotMeta, Vec<u8>)>, StorageError> {
        let err =
            |e: &dyn std::error::Error| StorageIOError::read_snapshot(None, AnyError::error(e));
        let meta = self.inner.tree.get(KEY_META).map_err(|e| err(&e))?;
        let data = self.inner.tree.get(KEY_DATA).map_err(|e| err(&e))?;
        match (meta, data) {
            (Some(meta), Some(data)) => {
                let meta: SnapshotMeta = serde_json::from_slice(&meta).map_err(|e| err(&e))?;
                Ok(Some((meta, data.to_vec())))
            }
            (None, None) => Ok(None),
            _ => Err(StorageIOError::read_snapshot(
                None,
                AnyError::error("snapshot meta or data missing"),
            )
            .into()),
        }
    }

    /// Stores a snapshot unless a newer one is already stored.
    async fn persist(&self, meta: &SnapshotMeta, data: &[u8]) -> Result<(), StorageError> {
        let sig = Some(meta.signature());
        let err = |e: &dyn std::error::Error| {
            StorageIOError::write_snapshot(sig.clone(), AnyError::error(e))
        };
        let _guard = self.inner.persist.lock().await;
        if let Some(cur) = self.inner.tree.get(KEY_META).map_err(|e| err(&e))? {
            let cur: SnapshotMeta = serde_json::from_slice(&cur).map_err(|e| err(&e))?;
            if cur.last_log_id > meta.last_log_id {
                tracing::info!(
                    node_id = self.inner.node_id,
                    stored = %cur,
                    built = %meta,
                    "a newer snapshot is stored; keeping it",
                );
                return Ok(());
            }
        }
        let meta_bytes = serde_json::to_vec(meta).map_err(|e| err(&e))?;
        let mut batch = sled::Batch::default();
        batch.insert(KEY_META, meta_bytes);
        batch.insert(KEY_DATA, data);
        self.inner.tree.apply_batch(batch).map_err(|e| err(&e))?;
        self.inner.db.flush_async().await.map_err(|e| err(&e))?;
        Ok(())
    }

    fn apply_entries(&self, entries: impl Iterator<Item = Entry>) -> Vec<CommandResult> {
        let mut st = self.write();
        let mut out = Vec::new();
        for entry in entries {
            st.last_applied = Some(entry.log_id);
            let r = match entry.payload {
                EntryPayload::Blank => CommandResult::default(),
                EntryPayload::Normal(cmd) => Arc::make_mut(&mut st.fs).apply(&cmd),
                EntryPayload::Membership(m) => {
                    st.last_membership = StoredMembership::new(Some(entry.log_id), m);
                    CommandResult::default()
                }
            };
            out.push(r);
        }
        out
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let seq = self
            .store
            .inner
            .snapshot_seq
            .fetch_add(1, Ordering::Relaxed);
        let snapshot_id = match &self.last_applied {
            Some(l) => format!("{}-{}-{seq}", l.leader_id.term, l.index),
            None => format!("none-{seq}"),
        };
        let (last_applied, last_membership, fs) = (
            self.last_applied,
            self.last_membership.clone(),
            self.fs.clone(),
        );
        let encoded = tokio::task::spawn_blocking(move || {
            serde_json::to_vec(&SnapshotFileRef {
                format_version: SNAPSHOT_FORMAT_VERSION,
                last_applied: &last_applied,
                last_membership: &last_membership,
                state: &fs,
            })
        })
        .await;
        let data = match encoded {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => {
                return Err(StorageIOError::write_snapshot(None, AnyError::new(&e)).into());
            }
            Err(e) => return Err(StorageIOError::write_snapshot(None, AnyError::new(&e)).into()),
        };
        let meta = SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.last_membership.clone(),
            snapshot_id,
        };
        self.store.persist(&meta, &data).await?;
        tracing::info!(
            node_id = self.store.inner.node_id,
            snapshot = %meta,
            bytes = data.len(),
            "built state machine snapshot",
        );
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let st = self.read_lock();
        Ok((st.last_applied, st.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        Ok(self.apply_entries(entries.into_iter()))
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // The state is shared copy-on-write: the next apply clones it if this
        // builder still holds it, so building never blocks applying.
        let st = self.read_lock();
        SnapshotBuilder {
            store: self.clone(),
            last_applied: st.last_applied,
            last_membership: st.last_membership.clone(),
            fs: st.fs.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let file = decode_snapshot(meta, &data)?;
        self.persist(meta, &data).await?;
        {
            let mut st = self.write();
            st.last_applied = meta.last_log_id;
            st.last_membership = meta.last_membership.clone();
            st.fs = Arc::new(file.state);
        }
        tracing::info!(
            node_id = self.inner.node_id,
            snapshot = %meta,
            bytes = data.len(),
            "installed state machine snapshot",
        );
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        Ok(self.load_snapshot()?.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}
