//! The Raft log and vote on sled ([`LogStore`]).
//!
//! - tree `raft_log`: key = log index as 8-byte big-endian, value = serde_json
//!   of the [`Entry`];
//! - tree `raft_meta`: keys `vote`, `committed` and `last_purged` (serde_json).
//!
//! Appends and vote changes are flushed to disk before they are acknowledged.
//! The committed log id is saved too, so a restarted master re-applies the
//! committed entries after its last snapshot.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, LogState, OptionalSend, RaftLogId, RaftLogReader, StorageIOError, Vote};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::types::{Entry, LogId, NodeId, StorageError, TypeConfig};

const LOG_TREE: &str = "raft_log";
const META_TREE: &str = "raft_meta";
const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_LAST_PURGED: &str = "last_purged";

/// Raft log storage on two sled trees. Cheap to clone: clones share the trees.
#[derive(Clone, Debug)]
pub struct LogStore {
    node_id: NodeId,
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn bound_key(b: Bound<&u64>) -> Bound<[u8; 8]> {
    match b {
        Bound::Included(i) => Bound::Included(index_key(*i)),
        Bound::Excluded(i) => Bound::Excluded(index_key(*i)),
        Bound::Unbounded => Bound::Unbounded,
    }
}

fn decode_entry(bytes: &[u8]) -> Result<Entry, StorageError> {
    serde_json::from_slice(bytes).map_err(|e| StorageIOError::read_logs(AnyError::new(&e)).into())
}

impl LogStore {
    /// Opens (or creates) the log trees in `db` for node `node_id`.
    pub fn open(db: &sled::Db, node_id: NodeId) -> Result<Self, sled::Error> {
        Ok(Self {
            node_id,
            db: db.clone(),
            log: db.open_tree(LOG_TREE)?,
            meta: db.open_tree(META_TREE)?,
        })
    }

    fn get_meta<T: DeserializeOwned>(
        &self,
        key: &str,
        err: fn(AnyError) -> StorageIOError<NodeId>,
    ) -> Result<Option<T>, StorageError> {
        let Some(bytes) = self.meta.get(key).map_err(|e| err(AnyError::new(&e)))? else {
            return Ok(None);
        };
        let v = serde_json::from_slice(&bytes).map_err(|e| err(AnyError::new(&e)))?;
        Ok(Some(v))
    }

    fn put_meta<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        err: fn(AnyError) -> StorageIOError<NodeId>,
    ) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(value).map_err(|e| err(AnyError::new(&e)))?;
        self.meta
            .insert(key, bytes)
            .map_err(|e| err(AnyError::new(&e)))?;
        Ok(())
    }

    async fn flush(&self, err: fn(AnyError) -> StorageIOError<NodeId>) -> Result<(), StorageError> {
        self.db
            .flush_async()
            .await
            .map_err(|e| err(AnyError::new(&e)))?;
        Ok(())
    }

    fn last_purged(&self) -> Result<Option<LogId>, StorageError> {
        self.get_meta(KEY_LAST_PURGED, StorageIOError::read_logs)
    }

    fn last_entry_log_id(&self) -> Result<Option<LogId>, StorageError> {
        let last = self
            .log
            .last()
            .map_err(|e| StorageIOError::read_logs(AnyError::new(&e)))?;
        match last {
            Some((_, v)) => Ok(Some(*decode_entry(&v)?.get_log_id())),
            None => Ok(None),
        }
    }

    fn entry_at(&self, index: u64) -> Result<Option<Entry>, StorageError> {
        let v = self
            .log
            .get(index_key(index))
            .map_err(|e| StorageIOError::read_logs(AnyError::new(&e)))?;
        v.map(|b| decode_entry(&b)).transpose()
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let bounds = (bound_key(range.start_bound()), bound_key(range.end_bound()));
        let mut out = Vec::new();
        for kv in self.log.range(bounds) {
            let (_, v) = kv.map_err(|e| StorageIOError::read_logs(AnyError::new(&e)))?;
            out.push(decode_entry(&v)?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id = self.last_purged()?;
        let last_log_id = match self.last_entry_log_id()? {
            Some(id) if Some(id) > last_purged_log_id => Some(id),
            _ => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        self.put_meta(KEY_VOTE, vote, StorageIOError::write_vote)?;
        self.flush(StorageIOError::write_vote).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.get_meta(KEY_VOTE, StorageIOError::read_vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not flushed here: sled persists writes in order, so a durable
        // `committed` never gets ahead of the durable log, and losing the
        // latest value only means re-applying less on restart.
        self.put_meta(KEY_COMMITTED, &committed, StorageIOError::write)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let committed: Option<LogId> = self
            .get_meta(KEY_COMMITTED, StorageIOError::read)?
            .flatten();
        let Some(c) = committed else {
            return Ok(None);
        };
        // Only trust a committed id the log can back: present with the same
        // log id, or already purged (hence inside a snapshot).
        if Some(c) <= self.last_purged()? {
            return Ok(Some(c));
        }
        match self.entry_at(c.index)? {
            Some(e) if *e.get_log_id() == c => Ok(Some(c)),
            _ => {
                tracing::warn!(
                    node_id = self.node_id,
                    committed = %c,
                    "saved committed log id is not in the log; ignoring it",
                );
                Ok(None)
            }
        }
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = sled::Batch::default();
        for entry in entries {
            let bytes = serde_json::to_vec(&entry).map_err(|e| {
                StorageIOError::write_log_entry(*entry.get_log_id(), AnyError::new(&e))
            })?;
            batch.insert(index_key(entry.get_log_id().index).as_slice(), bytes);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)))?;
        let flushed = self
            .db
            .flush_async()
            .await
            .map(|_| ())
            .map_err(std::io::Error::other);
        let failed = flushed
            .as_ref()
            .err()
            .map(|e| StorageIOError::write_logs(AnyError::new(e)));
        callback.log_io_completed(flushed);
        match failed {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(node_id = self.node_id, %log_id, "truncating raft log");
        let mut batch = sled::Batch::default();
        for kv in self.log.range(index_key(log_id.index)..) {
            let (k, _) = kv.map_err(|e| StorageIOError::write_logs(AnyError::new(&e)))?;
            batch.remove(k);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)))?;
        self.flush(StorageIOError::write_logs).await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(node_id = self.node_id, %log_id, "purging raft log");
        // Record the purge point first: a crash in between leaves extra
        // entries behind, never a hole.
        self.put_meta(KEY_LAST_PURGED, &log_id, StorageIOError::write_logs)?;
        let mut batch = sled::Batch::default();
        for kv in self.log.range(..=index_key(log_id.index)) {
            let (k, _) = kv.map_err(|e| StorageIOError::write_logs(AnyError::new(&e)))?;
            batch.remove(k);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)))?;
        self.flush(StorageIOError::write_logs).await
    }
}
