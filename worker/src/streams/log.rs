//! On-disk, append-only, segmented log holding one stream shard's replica on a worker.
//!
//! Segments are files `{base_seq:020}.seg` in the log's directory. `base_seq` is the seq of the
//! segment's first record; for an empty segment it is the next seq to append, which is how
//! `reset_start` persists. Segments are contiguous and only the last (active) one is appended to.
//! Each record is, little endian:
//!
//! ```text
//! u32 len of the rest | u32 crc32c of the rest | u64 seq | u64 epoch | i64 arrival_ms
//! | u16 key len | key (utf-8) | data
//! ```
//!
//! `open` scans every segment, checking length, CRC32C and seq continuity, and builds an in-memory
//! index (offset, length, arrival_ms, epoch per record); reads are positioned reads. A bad record
//! in the last segment is a torn write and the tail is cut there (with a warning); in an earlier
//! segment it is `LogError::Corrupt`. Empty non-last segments (left by an interrupted
//! `reset_start` or `truncate`) are deleted. With `LogOptions::fsync` false nothing is fsynced.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;

/// `len` + `crc`.
const HDR: usize = 8;
/// Header plus seq, epoch, arrival_ms and key len: where the key starts.
const KEY_AT: usize = HDR + 8 + 8 + 8 + 2;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("shard log i/o: {0}")]
    Io(#[from] io::Error),
    #[error("shard log corrupt: {0}")]
    Corrupt(String),
    #[error("shard log out of order: {0}")]
    OutOfOrder(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub epoch: u64,
    pub arrival_ms: i64,
    pub partition_key: String,
    pub data: Bytes,
}

#[derive(Clone, Debug)]
pub struct LogOptions {
    /// Roll when the active segment reaches this many bytes.
    pub segment_bytes: u64,
    /// Roll when the active segment's first record arrived this long before the batch's first.
    pub segment_ms: i64,
    /// fdatasync appends and truncations, fsync the directory on file creation/deletion.
    pub fsync: bool,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            segment_bytes: 64 << 20,
            segment_ms: 3_600_000,
            fsync: true,
        }
    }
}

#[derive(Clone, Copy)]
struct Entry {
    offset: u64,
    len: u32,
    arrival_ms: i64,
    epoch: u64,
}

struct Segment {
    base: u64,
    path: PathBuf,
    file: File,
    size: u64,
    index: Vec<Entry>,
    /// (epoch, first seq) of each run of one epoch in this segment.
    runs: Vec<(u64, u64)>,
    max_arrival: i64,
}

impl Segment {
    fn new(base: u64, path: PathBuf, file: File) -> Segment {
        let (index, runs) = (Vec::new(), Vec::new());
        Segment {
            base,
            path,
            file,
            size: 0,
            index,
            runs,
            max_arrival: i64::MIN,
        }
    }

    fn end(&self) -> u64 {
        self.base + self.index.len() as u64
    }

    fn push(&mut self, e: Entry) {
        if self.runs.last().map(|r| r.0) != Some(e.epoch) {
            self.runs.push((e.epoch, self.end()));
        }
        self.max_arrival = self.max_arrival.max(e.arrival_ms);
        self.size = e.offset + u64::from(e.len);
        self.index.push(e);
    }

    /// Cuts the file so that `to` (base <= to < end) becomes the end.
    fn truncate_to(&mut self, to: u64, fsync: bool) -> io::Result<()> {
        let keep = (to - self.base) as usize;
        let offset = self.index.get(keep).map_or(self.size, |e| e.offset);
        self.file.set_len(offset)?;
        if fsync {
            self.file.sync_data()?;
        }
        self.index.truncate(keep);
        self.runs.retain(|r| r.1 < to);
        self.max_arrival = self
            .index
            .iter()
            .map(|e| e.arrival_ms)
            .max()
            .unwrap_or(i64::MIN);
        self.size = offset;
        Ok(())
    }
}

/// One shard replica's log. Not shared; callers wrap it in a `Mutex`.
pub struct ShardLog {
    dir: PathBuf,
    opts: LogOptions,
    /// Never empty, contiguous; only the last may be empty.
    segs: Vec<Segment>,
    last_epoch: u64,
}

impl ShardLog {
    /// Opens (creating the dir if needed) and recovers; see the module docs.
    pub fn open(dir: &Path, opts: LogOptions) -> Result<ShardLog, LogError> {
        fs::create_dir_all(dir)?;
        let bases = list_segments(dir)?;
        let mut log = ShardLog {
            dir: dir.to_path_buf(),
            opts,
            segs: Vec::new(),
            last_epoch: 0,
        };
        for (i, &base) in bases.iter().enumerate() {
            let seg = log.load_segment(base, i + 1 == bases.len())?;
            log.attach(seg)?;
        }
        if log.segs.is_empty() {
            let seg = log.create_segment(0)?;
            log.segs.push(seg);
        }
        log.last_epoch = log.tail_epoch();
        Ok(log)
    }

    /// First retained seq; == end_seq() when empty.
    pub fn start_seq(&self) -> u64 {
        self.segs.first().map_or(0, |s| s.base)
    }

    /// The next seq to append.
    pub fn end_seq(&self) -> u64 {
        self.segs.last().map_or(0, Segment::end)
    }

    pub fn is_empty(&self) -> bool {
        self.start_seq() == self.end_seq()
    }

    /// (epoch, first retained seq of that epoch), ascending, derived from the records.
    pub fn epochs(&self) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        for &run in self.segs.iter().flat_map(|s| &s.runs) {
            if out.last().map(|l| l.0) != Some(run.0) {
                out.push(run);
            }
        }
        out
    }

    /// Epoch of the last appended record: kept by `expire`, recomputed from the remaining
    /// records by `truncate` and `open`; 0 when empty and never written.
    pub fn last_epoch(&self) -> u64 {
        self.last_epoch
    }

    /// Only on an empty log: the next appended seq will be `seq`.
    pub fn reset_start(&mut self, seq: u64) -> Result<(), LogError> {
        if !self.is_empty() {
            let (start, end) = (self.start_seq(), self.end_seq());
            let msg = format!("reset_start({seq}) on non-empty log [{start}, {end})");
            return Err(LogError::OutOfOrder(msg));
        }
        if self.start_seq() != seq {
            let fresh = self.create_segment(seq)?;
            for seg in std::mem::replace(&mut self.segs, vec![fresh]) {
                fs::remove_file(&seg.path)?;
            }
            self.sync_dir()?;
        }
        Ok(())
    }

    /// Appends records with seqs end_seq(), end_seq()+1, … and non-decreasing epochs >=
    /// last_epoch(), with one write and one fdatasync; on error nothing is appended.
    pub fn append(&mut self, recs: &[Record]) -> Result<(), LogError> {
        let (Some(first), Some(last)) = (recs.first(), recs.last()) else {
            return Ok(());
        };
        self.check_order(recs)?;
        let mut buf = Vec::new();
        let lens = recs
            .iter()
            .map(|r| encode(r, &mut buf))
            .collect::<Result<Vec<_>, _>>()?;
        self.maybe_roll(first.arrival_ms)?;
        let fsync = self.opts.fsync;
        let seg = self.active_mut()?;
        let mut offset = seg.size;
        if let Err(e) = write_synced(&seg.file, &buf, offset, fsync) {
            let _ = seg.file.set_len(offset); // best effort: drop a partial write
            return Err(e.into());
        }
        for (r, len) in recs.iter().zip(lens) {
            seg.push(Entry {
                offset,
                len,
                arrival_ms: r.arrival_ms,
                epoch: r.epoch,
            });
            offset += u64::from(len);
        }
        self.last_epoch = last.epoch;
        Ok(())
    }

    /// Records with seq in [max(from, start_seq), upto) in order, at most `max_records` and
    /// roughly `max_bytes` (counted as encoded size; at least one record if any qualifies).
    pub fn read(
        &self,
        from: u64,
        upto: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<Record>, LogError> {
        let upto = upto.min(self.end_seq());
        let mut seq = from.max(self.start_seq());
        let (mut out, mut bytes) = (Vec::new(), 0usize);
        while let Some(seg) = self.segment_of(seq).filter(|_| seq < upto) {
            let first = (seq - seg.base) as usize;
            let stop = (upto.min(seg.end()) - seg.base) as usize;
            let mut n = 0;
            while first + n < stop && out.len() + n < max_records {
                let len = seg.index[first + n].len as usize;
                if out.len() + n > 0 && bytes + len > max_bytes {
                    break;
                }
                bytes += len;
                n += 1;
            }
            if n > 0 {
                out.extend(read_span(seg, first, n)?);
            }
            if first + n < stop {
                break;
            }
            seq += n as u64;
        }
        Ok(out)
    }

    /// The first retained seq whose arrival_ms >= ts_ms (end_seq() if none).
    pub fn seq_at_time(&self, ts_ms: i64) -> u64 {
        let mut segs = self.segs.iter().filter(|s| s.max_arrival >= ts_ms);
        let found = segs.find_map(|s| {
            let i = s.index.iter().position(|e| e.arrival_ms >= ts_ms)?;
            Some(s.base + i as u64)
        });
        found.unwrap_or(self.end_seq())
    }

    /// arrival_ms of the record at `seq`, if retained.
    pub fn arrival_of(&self, seq: u64) -> Option<i64> {
        let seg = self.segment_of(seq)?;
        Some(seg.index[(seq - seg.base) as usize].arrival_ms)
    }

    /// Removes every record with seq >= `to` (durably); later appends continue at `to`.
    pub fn truncate(&mut self, to: u64) -> Result<(), LogError> {
        if to >= self.end_seq() {
            return Ok(());
        }
        match self.segs.iter().position(|s| s.base <= to && to < s.end()) {
            Some(i) => {
                while self.segs.len() > i + 1 {
                    self.remove_last_segment()?;
                }
                let fsync = self.opts.fsync;
                self.active_mut()?.truncate_to(to, fsync)?;
            }
            None => {
                // `to` < start_seq: everything goes and the log restarts at `to`.
                let fresh = self.create_segment(to)?;
                while !self.segs.is_empty() {
                    self.remove_last_segment()?;
                }
                self.segs.push(fresh);
            }
        }
        self.last_epoch = self.tail_epoch();
        self.sync_dir()
    }

    /// Retention: deletes the leading segment files whose last record's arrival_ms < cutoff_ms,
    /// the active one included (replaced by an empty one at end_seq()). Returns files deleted.
    pub fn expire(&mut self, cutoff_ms: i64) -> Result<usize, LogError> {
        let old = |s: &&Segment| s.index.last().is_some_and(|e| e.arrival_ms < cutoff_ms);
        let n = self.segs.iter().take_while(old).count();
        if n == 0 {
            return Ok(0);
        }
        if n == self.segs.len() {
            let fresh = self.create_segment(self.end_seq())?;
            self.segs.push(fresh);
        }
        for _ in 0..n {
            fs::remove_file(&self.segs[0].path)?;
            self.segs.remove(0);
        }
        self.sync_dir()?;
        Ok(n)
    }

    pub fn segment_files(&self) -> usize {
        self.segs.len()
    }

    /// On-disk bytes of all segments.
    pub fn bytes(&self) -> u64 {
        self.segs.iter().map(|s| s.size).sum()
    }

    fn check_order(&self, recs: &[Record]) -> Result<(), LogError> {
        let (mut next, mut epoch) = (self.end_seq(), self.last_epoch);
        for r in recs {
            let why = match () {
                _ if r.seq != next => format!("expected seq {next}, got {}", r.seq),
                _ if r.epoch < epoch => format!("seq {}: epoch {} < {epoch}", r.seq, r.epoch),
                _ => {
                    (next, epoch) = (next + 1, r.epoch);
                    continue;
                }
            };
            return Err(LogError::OutOfOrder(why));
        }
        Ok(())
    }

    fn maybe_roll(&mut self, arrival_ms: i64) -> Result<(), LogError> {
        let seg = self.segs.last().ok_or_else(no_segments)?;
        let Some(first) = seg.index.first() else {
            return Ok(());
        };
        let aged = arrival_ms.saturating_sub(first.arrival_ms) >= self.opts.segment_ms;
        if aged || seg.size >= self.opts.segment_bytes {
            let fresh = self.create_segment(self.end_seq())?;
            self.segs.push(fresh);
        }
        Ok(())
    }

    fn tail_epoch(&self) -> u64 {
        self.segs
            .iter()
            .rev()
            .find_map(|s| s.index.last())
            .map_or(0, |e| e.epoch)
    }

    fn active_mut(&mut self) -> Result<&mut Segment, LogError> {
        self.segs.last_mut().ok_or_else(no_segments)
    }

    /// The segment holding the record `seq`, if retained.
    fn segment_of(&self, seq: u64) -> Option<&Segment> {
        let i = self
            .segs
            .partition_point(|s| s.base <= seq)
            .checked_sub(1)?;
        self.segs.get(i).filter(|s| seq < s.end())
    }

    fn remove_last_segment(&mut self) -> Result<(), LogError> {
        if let Some(seg) = self.segs.pop() {
            fs::remove_file(&seg.path)?;
        }
        Ok(())
    }

    fn create_segment(&self, base: u64) -> Result<Segment, LogError> {
        let path = segment_path(&self.dir, base);
        let mut oo = OpenOptions::new();
        let file = oo
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        self.sync_dir()?;
        Ok(Segment::new(base, path, file))
    }

    fn load_segment(&self, base: u64, is_last: bool) -> Result<Segment, LogError> {
        let path = segment_path(&self.dir, base);
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        let size = file.metadata()?.len();
        let (entries, problem) = scan(&file, base, size)?;
        let mut seg = Segment::new(base, path, file);
        entries.into_iter().for_each(|e| seg.push(e));
        let Some(why) = problem else { return Ok(seg) };
        if !is_last {
            return Err(LogError::Corrupt(format!("{}: {why}", seg.path.display())));
        }
        let (path, cut) = (seg.path.display(), size - seg.size);
        tracing::warn!(segment = %path, cut_bytes = cut, "shard log: cutting torn tail: {why}");
        seg.file.set_len(seg.size)?;
        if self.opts.fsync {
            seg.file.sync_data()?;
        }
        Ok(seg)
    }

    /// Adds a loaded segment after dropping an empty predecessor; checks continuity.
    fn attach(&mut self, seg: Segment) -> Result<(), LogError> {
        if self.segs.last().is_some_and(|p| p.index.is_empty()) {
            self.remove_last_segment()?;
            tracing::warn!(next = %seg.path.display(), "shard log: removed empty non-last segment");
        }
        if let Some(prev) = self.segs.last()
            && prev.end() != seg.base
        {
            let (p, n) = (prev.path.display(), seg.path.display());
            let msg = format!(
                "{p} ends at seq {} but {n} starts at {}",
                prev.end(),
                seg.base
            );
            return Err(LogError::Corrupt(msg));
        }
        self.segs.push(seg);
        Ok(())
    }

    fn sync_dir(&self) -> Result<(), LogError> {
        if self.opts.fsync {
            File::open(&self.dir)?.sync_all()?;
        }
        Ok(())
    }
}

/// Where a follower's log stops agreeing with the primary's: the smallest seq s, from the
/// follower's first history entry on, with s >= primary_end or differing epochs at s;
/// `follower_end` if they agree on the whole follower log. Seqs below the primary's first
/// history entry (expired there) count as agreeing.
pub fn divergence(
    follower: &[(u64, u64)],
    follower_end: u64,
    primary: &[(u64, u64)],
    primary_end: u64,
) -> u64 {
    let limit = follower_end.min(primary_end);
    let Some(&(_, lo)) = follower.first() else {
        return limit;
    };
    let mut points: Vec<u64> = follower
        .iter()
        .chain(primary)
        .map(|e| e.1.max(lo))
        .collect();
    points.sort_unstable();
    let differs = |&s: &u64| match (epoch_at(follower, s), epoch_at(primary, s)) {
        (Some(f), Some(p)) => f != p,
        _ => false,
    };
    points
        .into_iter()
        .take_while(|&s| s < limit)
        .find(differs)
        .unwrap_or(limit)
}

fn epoch_at(history: &[(u64, u64)], seq: u64) -> Option<u64> {
    history.iter().rev().find(|e| e.1 <= seq).map(|e| e.0)
}

fn no_segments() -> LogError {
    LogError::Corrupt("log has no segments".into())
}

fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.seg"))
}

/// Sorted base seqs of the segment files in `dir` (other files are ignored).
fn list_segments(dir: &Path) -> Result<Vec<u64>, LogError> {
    let mut bases = Vec::new();
    for ent in fs::read_dir(dir)? {
        let name = ent?.file_name();
        let stem = name.to_str().and_then(|n| n.strip_suffix(".seg"));
        bases.extend(stem.and_then(|n| n.parse::<u64>().ok()));
    }
    bases.sort_unstable();
    Ok(bases)
}

fn write_synced(file: &File, buf: &[u8], at: u64, fsync: bool) -> io::Result<()> {
    file.write_all_at(buf, at)?;
    if fsync {
        file.sync_data()?;
    }
    Ok(())
}

/// Encodes one record onto `out`; returns its encoded length.
fn encode(r: &Record, out: &mut Vec<u8>) -> Result<u32, LogError> {
    let invalid =
        |m: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("seq {}: {m}", r.seq));
    let key = r.partition_key.as_bytes();
    let key_len = u16::try_from(key.len()).map_err(|_| invalid("partition key too long"))?;
    let len = u32::try_from(KEY_AT + key.len() + r.data.len()).map_err(|_| invalid("too large"))?;
    let start = out.len();
    out.extend_from_slice(&(len - HDR as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    for n in [r.seq, r.epoch, r.arrival_ms as u64] {
        out.extend_from_slice(&n.to_le_bytes());
    }
    out.extend_from_slice(&key_len.to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&r.data);
    let crc = crc32c::crc32c(&out[start + HDR..]);
    out[start + 4..start + HDR].copy_from_slice(&crc.to_le_bytes());
    Ok(len)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    b[at..at + 4].try_into().map_or(0, u32::from_le_bytes)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    b[at..at + 8].try_into().map_or(0, u64::from_le_bytes)
}

struct Meta {
    epoch: u64,
    arrival_ms: i64,
    key_end: usize,
}

/// Checks one whole encoded record (header included) that should hold `seq`.
fn check(rec: &[u8], seq: u64) -> Result<Meta, String> {
    if rec.len() < KEY_AT || u32_at(rec, 0) as usize + HDR != rec.len() {
        return Err(format!("bad length ({} bytes)", rec.len()));
    }
    if crc32c::crc32c(&rec[HDR..]) != u32_at(rec, 4) {
        return Err("crc mismatch".into());
    }
    let key_end = KEY_AT + usize::from(u16::from_le_bytes([rec[KEY_AT - 2], rec[KEY_AT - 1]]));
    match u64_at(rec, 8) {
        _ if key_end > rec.len() => Err("key runs past the record".into()),
        _ if std::str::from_utf8(&rec[KEY_AT..key_end]).is_err() => Err("key not utf-8".into()),
        s if s != seq => Err(format!("found seq {s}")),
        _ => Ok(Meta {
            epoch: u64_at(rec, 16),
            arrival_ms: u64_at(rec, 24) as i64,
            key_end,
        }),
    }
}

/// Reads `n` consecutive records from index `first` of `seg` with one positioned read.
fn read_span(seg: &Segment, first: usize, n: usize) -> Result<Vec<Record>, LogError> {
    let entries = &seg.index[first..first + n];
    let start = entries[0].offset;
    let mut buf = vec![0; (entries[n - 1].offset + u64::from(entries[n - 1].len) - start) as usize];
    seg.file.read_exact_at(&mut buf, start)?;
    let buf = Bytes::from(buf);
    let mut out = Vec::with_capacity(n);
    for (seq, e) in (seg.base + first as u64..).zip(entries) {
        let (at, end) = (
            (e.offset - start) as usize,
            (e.offset - start) as usize + e.len as usize,
        );
        let m = check(&buf[at..end], seq)
            .map_err(|why| LogError::Corrupt(format!("{} seq {seq}: {why}", seg.path.display())))?;
        let key = String::from_utf8_lossy(&buf[at + KEY_AT..at + m.key_end]).into_owned();
        let data = buf.slice(at + m.key_end..end);
        out.push(Record {
            seq,
            epoch: m.epoch,
            arrival_ms: m.arrival_ms,
            partition_key: key,
            data,
        });
    }
    Ok(out)
}

/// Indexes the valid prefix of a segment file; also returns why it stopped early, if it did.
fn scan(file: &File, base: u64, size: u64) -> Result<(Vec<Entry>, Option<String>), LogError> {
    let mut rd = BufReader::with_capacity(1 << 20, file);
    let (mut entries, mut offset, mut buf) = (Vec::new(), 0u64, Vec::new());
    while offset < size {
        let (seq, left) = (base + entries.len() as u64, size - offset);
        let torn = |why: String| Some(format!("offset {offset} (seq {seq}): {why}"));
        if left < KEY_AT as u64 {
            return Ok((entries, torn(format!("torn record ({left} bytes left)"))));
        }
        buf.resize(HDR, 0);
        rd.read_exact(&mut buf)?;
        let len = HDR + u32_at(&buf, 0) as usize;
        if len as u64 > left {
            return Ok((entries, torn(format!("length {len} > {left} bytes left"))));
        }
        buf.resize(len, 0);
        rd.read_exact(&mut buf[HDR..])?;
        match check(&buf, seq) {
            Ok(m) => entries.push(Entry {
                offset,
                len: len as u32,
                arrival_ms: m.arrival_ms,
                epoch: m.epoch,
            }),
            Err(why) => return Ok((entries, torn(why))),
        }
        offset += len as u64;
    }
    Ok((entries, None))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
#[path = "log_tests.rs"]
mod tests;
