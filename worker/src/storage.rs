//! Block files on a core worker's disk.
//!
//! Layout under `DATA/blocks/`:
//! - `current/blk_<id>` (data) and `current/blk_<id>.crc` (checksums): finalized replicas;
//! - `tmp/`: replicas being written (removed at start: never reported);
//! - `corrupt/`: replicas that failed verification, kept for inspection.
//!
//! The `.crc` file starts with a header (magic, format version, chunk size)
//! followed by one CRC32C per chunk. Every read verifies the chunks it touches.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use thiserror::Error;

/// Bytes covered by one checksum.
pub const CHUNK: usize = 64 * 1024;
const MAGIC: &[u8; 4] = b"BCRC";
const FORMAT_VERSION: u16 = 1;
const HEADER_LEN: usize = 10;

#[derive(Debug, Error)]
pub enum StorageError {
    #[error("block {0} is not stored here")]
    NotFound(u64),
    #[error("block {block}: checksum mismatch in chunk {chunk}")]
    Corrupt { block: u64, chunk: u64 },
    #[error("block {0}: bad checksum file: {1}")]
    BadMeta(u64, String),
    #[error("block {block}: read past the end ({offset} > {len})")]
    Range { block: u64, offset: u64, len: u64 },
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// The replicas this worker holds.
#[derive(Clone)]
pub struct BlockStore {
    root: PathBuf,
    blocks: Arc<Mutex<HashMap<u64, u64>>>,
}

impl BlockStore {
    /// Opens (or creates) the store, clearing unfinished writes and indexing
    /// finalized replicas.
    pub fn open(data_dir: &Path) -> Result<Self> {
        let root = data_dir.join("blocks");
        for d in ["current", "tmp", "corrupt"] {
            std::fs::create_dir_all(root.join(d))?;
        }
        for e in std::fs::read_dir(root.join("tmp"))? {
            let _ = std::fs::remove_file(e?.path());
        }
        let mut blocks = HashMap::new();
        for e in std::fs::read_dir(root.join("current"))? {
            let e = e?;
            let name = e.file_name().to_string_lossy().to_string();
            let Some(id) = name
                .strip_prefix("blk_")
                .and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            let meta_ok = root.join("current").join(format!("blk_{id}.crc")).exists();
            if !meta_ok {
                // Data without checksums: an interrupted finalize. Discard it.
                let _ = std::fs::remove_file(e.path());
                continue;
            }
            blocks.insert(id, e.metadata()?.len());
        }
        Ok(Self {
            root,
            blocks: Arc::new(Mutex::new(blocks)),
        })
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<u64, u64>> {
        self.blocks.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn data_path(&self, id: u64) -> PathBuf {
        self.root.join("current").join(format!("blk_{id}"))
    }

    fn meta_path(&self, id: u64) -> PathBuf {
        self.root.join("current").join(format!("blk_{id}.crc"))
    }

    /// (block id, length) of every finalized replica.
    pub fn list(&self) -> Vec<(u64, u64)> {
        let mut v: Vec<(u64, u64)> = self.map().iter().map(|(k, v)| (*k, *v)).collect();
        v.sort_unstable();
        v
    }

    pub fn len_of(&self, id: u64) -> Option<u64> {
        self.map().get(&id).copied()
    }

    pub fn used_bytes(&self) -> u64 {
        self.map().values().sum()
    }

    pub fn count(&self) -> usize {
        self.map().len()
    }

    /// Starts writing a new replica (in `tmp/` until finished).
    pub fn create(&self, id: u64) -> Result<BlockWriter> {
        let tmp = self
            .root
            .join("tmp")
            .join(format!("blk_{id}.{}", uuid::Uuid::new_v4()));
        let file = std::fs::File::create(&tmp)?;
        Ok(BlockWriter {
            id,
            tmp,
            file: std::io::BufWriter::with_capacity(1 << 20, file),
            crcs: Vec::new(),
            cur_crc: 0,
            cur_len: 0,
            len: 0,
            store: self.clone(),
            done: false,
        })
    }

    /// Removes a replica.
    pub fn delete(&self, id: u64) -> Result<bool> {
        let had = self.map().remove(&id).is_some();
        for p in [self.data_path(id), self.meta_path(id)] {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(had)
    }

    /// Moves a replica that failed verification out of service.
    pub fn quarantine(&self, id: u64) {
        self.map().remove(&id);
        for (p, name) in [
            (self.data_path(id), format!("blk_{id}")),
            (self.meta_path(id), format!("blk_{id}.crc")),
        ] {
            let _ = std::fs::rename(&p, self.root.join("corrupt").join(name));
        }
    }

    /// Opens a verified reader over `[offset, offset+len)` of a replica
    /// (`len` 0 means to the end).
    pub fn reader(&self, id: u64, offset: u64, len: u64) -> Result<BlockReader> {
        let total = self.len_of(id).ok_or(StorageError::NotFound(id))?;
        if offset > total {
            return Err(StorageError::Range {
                block: id,
                offset,
                len: total,
            });
        }
        let end = if len == 0 {
            total
        } else {
            (offset + len).min(total)
        };
        let mut meta = Vec::new();
        std::fs::File::open(self.meta_path(id))
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    StorageError::NotFound(id)
                } else {
                    e.into()
                }
            })?
            .read_to_end(&mut meta)?;
        if meta.len() < HEADER_LEN || &meta[..4] != MAGIC {
            return Err(StorageError::BadMeta(id, "bad header".into()));
        }
        let version = u16::from_le_bytes([meta[4], meta[5]]);
        if version != FORMAT_VERSION {
            return Err(StorageError::BadMeta(
                id,
                format!("format version {version}, this build reads {FORMAT_VERSION}"),
            ));
        }
        let chunk = u32::from_le_bytes([meta[6], meta[7], meta[8], meta[9]]) as usize;
        if chunk == 0 {
            return Err(StorageError::BadMeta(id, "zero chunk size".into()));
        }
        let crcs: Vec<u32> = meta[HEADER_LEN..]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let expected_chunks = total.div_ceil(chunk as u64) as usize;
        if crcs.len() != expected_chunks {
            return Err(StorageError::BadMeta(
                id,
                format!("{} checksums for {expected_chunks} chunks", crcs.len()),
            ));
        }
        let mut file = std::fs::File::open(self.data_path(id))?;
        let first_chunk = offset / chunk as u64;
        file.seek(SeekFrom::Start(first_chunk * chunk as u64))?;
        Ok(BlockReader {
            id,
            file,
            crcs,
            chunk,
            pos: first_chunk * chunk as u64,
            start: offset,
            end,
            total,
        })
    }
}

/// A replica being written; dropped without [`BlockWriter::finish`] it vanishes.
pub struct BlockWriter {
    pub id: u64,
    tmp: PathBuf,
    file: std::io::BufWriter<std::fs::File>,
    crcs: Vec<u32>,
    cur_crc: u32,
    cur_len: usize,
    len: u64,
    store: BlockStore,
    done: bool,
}

impl BlockWriter {
    pub fn write(&mut self, mut data: &[u8]) -> Result<()> {
        self.file.write_all(data)?;
        self.len += data.len() as u64;
        while !data.is_empty() {
            let take = (CHUNK - self.cur_len).min(data.len());
            self.cur_crc = crc32c::crc32c_append(self.cur_crc, &data[..take]);
            self.cur_len += take;
            data = &data[take..];
            if self.cur_len == CHUNK {
                self.crcs.push(self.cur_crc);
                self.cur_crc = 0;
                self.cur_len = 0;
            }
        }
        Ok(())
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Makes the replica durable and visible; returns its length.
    pub fn finish(mut self) -> Result<u64> {
        if self.cur_len > 0 {
            self.crcs.push(self.cur_crc);
        }
        self.file.flush()?;
        self.file.get_ref().sync_data()?;
        let mut meta = Vec::with_capacity(HEADER_LEN + 4 * self.crcs.len());
        meta.extend_from_slice(MAGIC);
        meta.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        meta.extend_from_slice(&(CHUNK as u32).to_le_bytes());
        for c in &self.crcs {
            meta.extend_from_slice(&c.to_le_bytes());
        }
        let meta_tmp = self.tmp.with_extension("crc");
        {
            let mut f = std::fs::File::create(&meta_tmp)?;
            f.write_all(&meta)?;
            f.sync_data()?;
        }
        let id = self.id;
        // Data first: a data file without checksums is discarded at start.
        std::fs::rename(&self.tmp, self.store.data_path(id))?;
        std::fs::rename(&meta_tmp, self.store.meta_path(id))?;
        if let Ok(dir) = std::fs::File::open(self.store.root.join("current")) {
            let _ = dir.sync_all();
        }
        self.done = true;
        self.store.map().insert(id, self.len);
        Ok(self.len)
    }
}

impl Drop for BlockWriter {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Reads a replica range, verifying every chunk it touches.
pub struct BlockReader {
    pub id: u64,
    file: std::fs::File,
    crcs: Vec<u32>,
    chunk: usize,
    pos: u64,
    start: u64,
    end: u64,
    total: u64,
}

impl BlockReader {
    /// Next verified piece of at most about `max` bytes; `None` at the end.
    pub fn next_piece(&mut self, max: usize) -> Result<Option<Vec<u8>>> {
        if self.pos >= self.end {
            return Ok(None);
        }
        let chunks = (max / self.chunk).max(1);
        let want = ((chunks * self.chunk) as u64).min(self.total - self.pos) as usize;
        let mut buf = vec![0u8; want];
        self.file.read_exact(&mut buf)?;
        for (i, c) in buf.chunks(self.chunk).enumerate() {
            let idx = (self.pos / self.chunk as u64) as usize + i;
            if crc32c::crc32c(c) != self.crcs.get(idx).copied().unwrap_or(!crc32c::crc32c(c)) {
                return Err(StorageError::Corrupt {
                    block: self.id,
                    chunk: idx as u64,
                });
            }
        }
        let piece_start = self.pos;
        self.pos += want as u64;
        let lo = self.start.saturating_sub(piece_start) as usize;
        let hi = (self.end.min(self.pos) - piece_start) as usize;
        Ok(Some(buf[lo..hi].to_vec()))
    }

    /// Verifies the whole range without returning data.
    pub fn verify_all(mut self) -> Result<()> {
        while self.next_piece(1 << 20)?.is_some() {}
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_verify_and_detect_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlockStore::open(dir.path()).unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut w = store.create(7).unwrap();
        w.write(&data[..1000]).unwrap();
        w.write(&data[1000..]).unwrap();
        assert_eq!(w.finish().unwrap(), data.len() as u64);
        let mut r = store.reader(7, 70_000, 100_000).unwrap();
        let mut out = Vec::new();
        while let Some(p) = r.next_piece(1 << 20).unwrap() {
            out.extend(p);
        }
        assert_eq!(out, &data[70_000..170_000]);
        // Reopen: the replica is indexed again.
        let store = BlockStore::open(dir.path()).unwrap();
        assert_eq!(store.list(), vec![(7, data.len() as u64)]);
        // Corrupt one byte in the second chunk.
        let p = dir.path().join("blocks/current/blk_7");
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[CHUNK + 5] ^= 0xff;
        std::fs::write(&p, bytes).unwrap();
        let err = store.reader(7, 0, 0).unwrap().verify_all().unwrap_err();
        assert!(matches!(err, StorageError::Corrupt { chunk: 1, .. }));
        store.quarantine(7);
        assert!(store.list().is_empty());
    }
}
