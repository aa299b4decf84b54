//! Records. At the edges they are what Hadoop Streaming sees: one line, key
//! up to the first TAB, value after it. Inside the shuffle (spills, merged
//! map output, fetched reduce input) they are length-framed, so keys and
//! values may hold any bytes (TeraSort's binary keys); [`Merger`] merges
//! several sorted runs into one sorted sequence.

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

/// Appends `key<TAB>value` without a newline (a line for a user command).
pub fn text_line(key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut line = Vec::with_capacity(key.len() + value.len() + 1);
    line.extend_from_slice(key);
    if !value.is_empty() {
        line.push(b'\t');
        line.extend_from_slice(value);
    }
    line
}

/// Appends one framed record: key length, value length (u32 LE), key, value.
pub fn write_framed(out: &mut impl Write, key: &[u8], value: &[u8]) -> std::io::Result<()> {
    out.write_all(&(key.len() as u32).to_le_bytes())?;
    out.write_all(&(value.len() as u32).to_le_bytes())?;
    out.write_all(key)?;
    out.write_all(value)
}

fn read_framed(r: &mut impl BufRead) -> std::io::Result<Option<Record>> {
    let mut len = [0u8; 8];
    match r.read_exact(&mut len[..1]) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    r.read_exact(&mut len[1..])?;
    let k = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
    let v = u32::from_le_bytes([len[4], len[5], len[6], len[7]]) as usize;
    let mut key = vec![0u8; k];
    r.read_exact(&mut key)?;
    let mut value = vec![0u8; v];
    r.read_exact(&mut value)?;
    Ok(Some((key, value)))
}

/// Appends `key<TAB>value\n` (or `key\n` when the value is empty).
pub fn write_text(out: &mut impl Write, key: &[u8], value: &[u8]) -> std::io::Result<()> {
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
}

impl Merger {
    pub fn open(paths: &[impl AsRef<Path>]) -> std::io::Result<Self> {
        let mut m = Merger {
            readers: Vec::new(),
            heap: BinaryHeap::new(),
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
        if let Some((key, value)) = read_framed(&mut self.readers[src])? {
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
        let framed = |recs: &[(&str, &str)]| {
            let mut out = Vec::new();
            for (k, v) in recs {
                write_framed(&mut out, k.as_bytes(), v.as_bytes()).unwrap();
            }
            out
        };
        std::fs::write(&a, framed(&[("apple", "1"), ("cherry", "1")])).unwrap();
        std::fs::write(
            &b,
            framed(&[("banana", "2"), ("cherry", "2"), ("zebra", "")]),
        )
        .unwrap();
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
