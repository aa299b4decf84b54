//! Records as Hadoop Streaming sees them: one line, key up to the first TAB,
//! value after it. Sorted runs on disk are plain `key<TAB>value` lines, and
//! [`Merger`] merges several sorted runs into one sorted sequence.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

pub type Record = (Vec<u8>, Vec<u8>);

/// Splits a line at its first TAB.
pub fn parse(line: &[u8]) -> Record {
    match line.iter().position(|b| *b == b'\t') {
        Some(i) => (line[..i].to_vec(), line[i + 1..].to_vec()),
        None => (line.to_vec(), Vec::new()),
    }
}

/// Appends `key<TAB>value\n` (or `key\n` when the value is empty).
pub fn write_record(out: &mut impl Write, key: &[u8], value: &[u8]) -> std::io::Result<()> {
    out.write_all(key)?;
    if !value.is_empty() {
        out.write_all(b"\t")?;
        out.write_all(value)?;
    }
    out.write_all(b"\n")
}

/// The reduce partition of a key (stable across processes and versions).
pub fn partition(key: &[u8], partitions: u32) -> u32 {
    if partitions <= 1 {
        return 0;
    }
    crc32c::crc32c(key) % partitions
}

struct Head {
    key: Vec<u8>,
    value: Vec<u8>,
    src: usize,
}

impl PartialEq for Head {
    fn eq(&self, o: &Self) -> bool {
        self.key == o.key && self.src == o.src
    }
}
impl Eq for Head {}
impl PartialOrd for Head {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Head {
    // Min-heap on (key, source): equal keys keep the order of their runs.
    fn cmp(&self, o: &Self) -> Ordering {
        o.key.cmp(&self.key).then(o.src.cmp(&self.src))
    }
}

/// K-way merge of sorted record files.
pub struct Merger {
    readers: Vec<BufReader<std::fs::File>>,
    heap: BinaryHeap<Head>,
    line: Vec<u8>,
}

impl Merger {
    pub fn open(paths: &[impl AsRef<Path>]) -> std::io::Result<Self> {
        let mut m = Merger {
            readers: Vec::new(),
            heap: BinaryHeap::new(),
            line: Vec::new(),
        };
        for p in paths {
            m.readers.push(BufReader::with_capacity(
                256 * 1024,
                std::fs::File::open(p)?,
            ));
        }
        for i in 0..m.readers.len() {
            m.refill(i)?;
        }
        Ok(m)
    }

    fn refill(&mut self, src: usize) -> std::io::Result<()> {
        self.line.clear();
        let n = self.readers[src].read_until(b'\n', &mut self.line)?;
        if n > 0 {
            if self.line.last() == Some(&b'\n') {
                self.line.pop();
            }
            let (key, value) = parse(&self.line);
            self.heap.push(Head { key, value, src });
        }
        Ok(())
    }

    pub fn next_record(&mut self) -> std::io::Result<Option<Record>> {
        let Some(h) = self.heap.pop() else {
            return Ok(None);
        };
        self.refill(h.src)?;
        Ok(Some((h.key, h.value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_sorted_runs() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::write(&a, b"apple\t1\ncherry\t1\n").unwrap();
        std::fs::write(&b, b"banana\t2\ncherry\t2\nzebra\n").unwrap();
        let mut m = Merger::open(&[a, b]).unwrap();
        let mut keys = Vec::new();
        while let Some((k, v)) = m.next_record().unwrap() {
            keys.push(format!(
                "{}={}",
                String::from_utf8_lossy(&k),
                String::from_utf8_lossy(&v)
            ));
        }
        assert_eq!(
            keys,
            ["apple=1", "banana=2", "cherry=1", "cherry=2", "zebra="]
        );
        assert_eq!(parse(b"k\tv\tw"), (b"k".to_vec(), b"v\tw".to_vec()));
        assert!(partition(b"x", 4) < 4);
    }
}
