//! Unit tests of the shard log (`log.rs`).

use super::*;

fn rec(seq: u64, epoch: u64) -> Record {
    let data = Bytes::from(vec![seq as u8; 100]);
    Record {
        seq,
        epoch,
        arrival_ms: seq as i64 * 10,
        partition_key: format!("k{seq}"),
        data,
    }
}

fn recs(from: u64, n: u64, epoch: u64) -> Vec<Record> {
    (from..from + n).map(|s| rec(s, epoch)).collect()
}

fn open(dir: &tempfile::TempDir) -> ShardLog {
    let opts = LogOptions {
        segment_bytes: 1000,
        segment_ms: 1_000_000,
        fsync: false,
    };
    ShardLog::open(dir.path(), opts).unwrap()
}

fn seqs(log: &ShardLog) -> Vec<u64> {
    log.read(0, u64::MAX, usize::MAX, usize::MAX)
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect()
}

fn append_batches(log: &mut ShardLog, from: u64, to: u64, epoch: u64) {
    (from..to)
        .step_by(5)
        .for_each(|s| log.append(&recs(s, 5.min(to - s), epoch)).unwrap());
}

fn segment_file(dir: &tempfile::TempDir, first: bool) -> PathBuf {
    let bases = list_segments(dir.path()).unwrap();
    let base = if first {
        bases[0]
    } else {
        bases[bases.len() - 1]
    };
    segment_path(dir.path(), base)
}

#[test]
fn round_trip_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let opts = LogOptions {
        segment_bytes: 1000,
        ..LogOptions::default()
    }; // with fsync
    let mut log = ShardLog::open(dir.path(), opts).unwrap();
    assert!(log.is_empty() && log.last_epoch() == 0);
    append_batches(&mut log, 0, 25, 1);
    append_batches(&mut log, 25, 50, 2);
    let all: Vec<Record> = (0..50).map(|s| rec(s, 1 + s / 25)).collect();
    assert!(log.segment_files() > 3);
    assert_eq!(log.read(0, 100, 1000, usize::MAX).unwrap(), all);
    let page = |from, max_r, max_b| -> Vec<u64> {
        log.read(from, 30, max_r, max_b)
            .unwrap()
            .iter()
            .map(|r| r.seq)
            .collect()
    };
    assert_eq!(page(7, 5, usize::MAX), vec![7, 8, 9, 10, 11]);
    assert_eq!((page(7, 100, 300), page(7, 100, 1)), (vec![7, 8], vec![7]));
    assert_eq!(log.epochs(), vec![(1, 0), (2, 25)]);
    let (files, bytes) = (log.segment_files(), log.bytes());
    drop(log);
    let log = open(&dir);
    assert_eq!(
        (log.start_seq(), log.end_seq(), log.last_epoch()),
        (0, 50, 2)
    );
    assert_eq!((log.segment_files(), log.bytes()), (files, bytes));
    assert_eq!(log.read(0, 50, 1000, usize::MAX).unwrap(), all);
    assert_eq!(log.epochs(), vec![(1, 0), (2, 25)]);
    assert_eq!((log.arrival_of(33), log.arrival_of(50)), (Some(330), None));
}

#[test]
fn rolls_on_age() {
    let dir = tempfile::tempdir().unwrap();
    let opts = LogOptions {
        segment_bytes: u64::MAX,
        segment_ms: 100,
        fsync: false,
    };
    let mut log = ShardLog::open(dir.path(), opts).unwrap();
    (0..30).for_each(|s| log.append(&recs(s, 1, 1)).unwrap()); // arrival 10 * s
    assert_eq!(log.segment_files(), 3);
}

#[test]
fn torn_tail_is_cut_at_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(&dir);
    append_batches(&mut log, 0, 20, 1);
    drop(log);
    let mut data = fs::read(segment_file(&dir, false)).unwrap();
    data.extend_from_slice(&[0xAB; 77]); // garbage after the last record
    fs::write(segment_file(&dir, false), &data).unwrap();
    let mut log = open(&dir);
    assert_eq!(log.end_seq(), 20);
    log.append(&recs(20, 3, 1)).unwrap();
    assert_eq!(seqs(&log), (0..23).collect::<Vec<_>>());
    drop(log);
    let file = OpenOptions::new()
        .write(true)
        .open(segment_file(&dir, false))
        .unwrap();
    file.set_len(file.metadata().unwrap().len() - 60).unwrap(); // last record cut in half
    let mut log = open(&dir);
    assert_eq!(log.end_seq(), 22);
    log.append(&recs(22, 2, 2)).unwrap();
    drop(log);
    let log = open(&dir);
    let want = vec![rec(20, 1), rec(21, 1), rec(22, 2), rec(23, 2)];
    assert_eq!(log.read(20, 100, 100, usize::MAX).unwrap(), want);
}

#[test]
fn corrupt_earlier_segment_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(&dir);
    append_batches(&mut log, 0, 20, 1);
    assert!(log.segment_files() > 1);
    drop(log);
    let mut data = fs::read(segment_file(&dir, true)).unwrap();
    data[40] ^= 0xFF;
    fs::write(segment_file(&dir, true), &data).unwrap();
    let opts = LogOptions::default();
    assert!(matches!(
        ShardLog::open(dir.path(), opts),
        Err(LogError::Corrupt(_))
    ));
}

#[test]
fn out_of_order_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(&dir);
    log.append(&recs(0, 5, 3)).unwrap();
    let bytes = log.bytes();
    let bad = [
        recs(6, 2, 3),
        recs(4, 2, 3),
        vec![rec(5, 3), rec(7, 3)],
        recs(5, 1, 2),
    ];
    for bad in bad.into_iter().chain([vec![rec(5, 4), rec(6, 3)]]) {
        assert!(
            matches!(log.append(&bad), Err(LogError::OutOfOrder(_))),
            "{bad:?}"
        );
    }
    assert_eq!(
        (log.end_seq(), log.bytes(), log.last_epoch()),
        (5, bytes, 3)
    );
    log.append(&recs(5, 1, 3)).unwrap();
}

#[test]
fn truncate_across_segments_then_append() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(&dir);
    append_batches(&mut log, 0, 10, 1);
    append_batches(&mut log, 10, 30, 2);
    append_batches(&mut log, 30, 40, 3);
    assert!(log.segment_files() >= 3);
    log.truncate(100).unwrap();
    assert_eq!(log.end_seq(), 40);
    log.truncate(7).unwrap();
    assert_eq!(
        (log.end_seq(), log.last_epoch(), log.segment_files()),
        (7, 1, 1)
    );
    assert_eq!(log.epochs(), vec![(1, 0)]);
    log.append(&recs(7, 5, 4)).unwrap();
    drop(log);
    let mut log = open(&dir);
    assert_eq!(log.epochs(), vec![(1, 0), (4, 7)]);
    assert_eq!(seqs(&log), (0..12).collect::<Vec<_>>());
    log.truncate(0).unwrap();
    assert!(log.is_empty() && log.end_seq() == 0 && log.last_epoch() == 0);
    log.append(&recs(0, 1, 1)).unwrap();
}

#[test]
fn expire_keeps_end_seq() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(&dir);
    log.append(&recs(0, 20, 1)).unwrap(); // one batch: one segment
    append_batches(&mut log, 20, 40, 2);
    let files = log.segment_files();
    let n = log.expire(250).unwrap(); // seqs < 25 arrived before 250
    assert!(n >= 1 && log.segment_files() == files - n);
    let start = log.start_seq();
    assert!(start > 0 && start <= 25 && log.end_seq() == 40);
    assert_eq!(seqs(&log)[0], start);
    assert_eq!(
        (log.epochs(), log.arrival_of(start - 1)),
        (vec![(2, start)], None)
    );
    assert_eq!(log.expire(100_000).unwrap(), files - n);
    assert!(log.is_empty() && log.epochs().is_empty() && log.last_epoch() == 2);
    assert_eq!(
        (log.start_seq(), log.end_seq(), log.segment_files()),
        (40, 40, 1)
    );
    assert_eq!(log.expire(100_000).unwrap(), 0);
    drop(log);
    let mut log = open(&dir);
    assert_eq!((log.start_seq(), log.end_seq()), (40, 40));
    log.append(&recs(40, 2, 3)).unwrap();
    assert_eq!(seqs(&log), vec![40, 41]);
}

#[test]
fn reset_start_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    open(&dir).reset_start(100).unwrap();
    let mut log = open(&dir);
    assert_eq!(
        (log.start_seq(), log.end_seq(), log.segment_files()),
        (100, 100, 1)
    );
    log.reset_start(50).unwrap();
    log.append(&recs(50, 2, 1)).unwrap();
    assert!(matches!(log.reset_start(7), Err(LogError::OutOfOrder(_))));
    drop(log);
    let log = open(&dir);
    assert_eq!(
        (log.start_seq(), log.end_seq(), log.segment_files()),
        (50, 52, 1)
    );
}

#[test]
fn seq_at_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(&dir);
    assert_eq!(log.seq_at_time(0), 0);
    log.append(&recs(0, 30, 1)).unwrap();
    log.append(&recs(30, 10, 1)).unwrap();
    let at = |t| log.seq_at_time(t);
    assert_eq!((at(i64::MIN), at(55), at(350), at(10_000)), (0, 6, 35, 40));
}

#[test]
fn divergence_cases() {
    let h = [(1, 0), (2, 5)];
    assert_eq!(divergence(&h, 10, &h, 10), 10); // identical
    assert_eq!(divergence(&h, 8, &h, 10), 8); // follower behind, agreeing
    // Follower has an unacked tail, from an older epoch or past the primary's end.
    assert_eq!(divergence(&[(1, 0), (2, 8)], 10, &[(1, 0), (3, 8)], 12), 8);
    assert_eq!(divergence(&[(1, 0)], 12, &[(1, 0)], 10), 10);
    // Follower missing records of the primary's newer epoch.
    assert_eq!(divergence(&[(1, 0)], 5, &[(1, 0), (2, 7)], 10), 5);
    // Follower has a stale range in an epoch the primary never had.
    assert_eq!(
        divergence(&[(1, 0), (2, 5), (3, 8)], 10, &[(1, 0), (3, 8)], 12),
        5
    );
    assert_eq!(
        divergence(&[(1, 0), (3, 4)], 10, &[(1, 0), (2, 5), (3, 8)], 12),
        4
    );
    // The primary expired the start of the follower's range: that part agrees.
    assert_eq!(divergence(&h, 10, &[(2, 7)], 12), 10);
    assert_eq!(divergence(&[], 4, &h, 10), 4); // empty follower
    assert_eq!(divergence(&[], 40, &h, 10), 10);
}
