//! TeraGen, TeraSort and TeraValidate, in Hadoop's record format: 100-byte
//! records, a 10-byte key then 90 bytes of value (2 bytes 00 11, the row id as
//! 32 hex digits, 88 99 AA BB, 48 filler bytes, CC DD EE FF).
//!
//! - TeraGen is map-only: each map writes a range of rows.
//! - TeraSort partitions by sampled key boundaries (total order), so the part
//!   files in name order form one sorted sequence.
//! - TeraValidate summarises each split (count, checksum, first and last key,
//!   keys out of order) and one reducer checks the splits against each other.

pub const RECORD: usize = 100;
pub const KEY: usize = 10;

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Row `row` of the data set (deterministic, so a rerun writes the same bytes).
pub fn record(row: u64) -> [u8; RECORD] {
    let mut r = [0u8; RECORD];
    let a = splitmix(row).to_be_bytes();
    let b = splitmix(row ^ 0xA5A5_A5A5_A5A5_A5A5).to_be_bytes();
    r[..8].copy_from_slice(&a);
    r[8..10].copy_from_slice(&b[..2]);
    r[10] = 0x00;
    r[11] = 0x11;
    let hex = format!("{row:032X}");
    r[12..44].copy_from_slice(hex.as_bytes());
    r[44..48].copy_from_slice(&[0x88, 0x99, 0xAA, 0xBB]);
    let filler = b'A' + (row % 26) as u8;
    for x in &mut r[48..96] {
        *x = filler;
    }
    r[96..100].copy_from_slice(&[0xCC, 0xDD, 0xEE, 0xFF]);
    r
}

/// The reduce partition of a key under sorted `boundaries` (total order).
pub fn partition(key: &[u8], boundaries: &[Vec<u8>]) -> u32 {
    boundaries.partition_point(|b| b.as_slice() <= key) as u32
}

/// Boundaries as the submitter sends them: hex keys separated by commas.
pub fn decode_boundaries(s: &str) -> Vec<Vec<u8>> {
    s.split(',').filter(|k| !k.is_empty()).map(unhex).collect()
}

/// Order-independent checksum of a set of records.
pub fn checksum(rec: &[u8]) -> u64 {
    crc32c::crc32c(rec) as u64
}

/// One split's summary, as TeraValidate's map emits it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub count: u64,
    pub checksum: u64,
    pub unsorted: u64,
    pub first: Vec<u8>,
    pub last: Vec<u8>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

impl Summary {
    pub fn add(&mut self, rec: &[u8]) {
        let key = &rec[..KEY.min(rec.len())];
        if self.count == 0 {
            self.first = key.to_vec();
        } else if key < self.last.as_slice() {
            self.unsorted += 1;
        }
        self.last = key.to_vec();
        self.count += 1;
        self.checksum = self.checksum.wrapping_add(checksum(rec));
    }

    pub fn encode(&self) -> Vec<u8> {
        format!(
            "{} {} {} {} {}",
            self.count,
            self.checksum,
            self.unsorted,
            hex(&self.first),
            hex(&self.last)
        )
        .into_bytes()
    }

    pub fn decode(v: &[u8]) -> Option<Summary> {
        let s = std::str::from_utf8(v).ok()?;
        let mut it = s.split(' ');
        Some(Summary {
            count: it.next()?.parse().ok()?,
            checksum: it.next()?.parse().ok()?,
            unsorted: it.next()?.parse().ok()?,
            first: unhex(it.next().unwrap_or("")),
            last: unhex(it.next().unwrap_or("")),
        })
    }
}

/// Joins the split summaries in split order: keys out of order inside a split
/// or across a split boundary are counted.
pub fn validate(summaries: impl IntoIterator<Item = Summary>) -> Summary {
    let mut total = Summary::default();
    for s in summaries.into_iter().filter(|s| s.count > 0) {
        if total.count > 0 && s.first < total.last {
            total.unsorted += 1;
        }
        if total.count == 0 {
            total.first = s.first.clone();
        }
        total.count += s.count;
        total.checksum = total.checksum.wrapping_add(s.checksum);
        total.unsorted += s.unsorted;
        total.last = s.last;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_partitions_and_validation() {
        let r = record(7);
        assert_eq!(r.len(), 100);
        assert_eq!(&r[12..44], format!("{:032X}", 7).as_bytes());
        let b = vec![vec![0x40; 10], vec![0x80; 10]];
        assert_eq!(partition(&[0x00; 10], &b), 0);
        assert_eq!(partition(&[0x40; 10], &b), 1);
        assert_eq!(partition(&[0xff; 10], &b), 2);
        let mut sorted: Vec<[u8; 100]> = (0..50).map(record).collect();
        sorted.sort();
        let mut s1 = Summary::default();
        let mut s2 = Summary::default();
        for r in &sorted[..20] {
            s1.add(r);
        }
        for r in &sorted[20..] {
            s2.add(r);
        }
        let ok = validate([s1.clone(), s2.clone()]);
        assert_eq!((ok.count, ok.unsorted), (50, 0));
        assert_eq!(validate([s2, s1]).unsorted, 1);
        assert_eq!(Summary::decode(&ok.encode()), Some(ok));
    }
}
