//! Test 3: bytes overwritten in one replica's block file on disk: `get`
//! still returns the right bytes, and the corrupt replica is replaced.

use std::time::Duration;

use basin_tests::{Cluster, Spec, wait_for};

#[test]
fn corrupt_replica_is_detected_and_replaced() -> anyhow::Result<()> {
    let c = Cluster::start(Spec {
        core: 4,
        task: 0,
        ..Spec::default()
    })?;
    let data = c.put_random(
        "/c.bin",
        3 * 1024 * 1024 + 77,
        3,
        &["--block-size", "1048576"],
    )?;

    // Corrupt the replica a reader tries first.
    let blocks = c.block_replicas("/c.bin")?;
    let (block, replicas) = blocks[1].clone();
    let first = replicas[0];
    let status = c.status()?;
    let name = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"].as_u64() == Some(first))
        .unwrap()["name"]
        .as_str()
        .unwrap()
        .to_string();
    let worker = c.workers.iter().find(|w| w.name == name).unwrap();
    let file = worker.data_dir.join(format!("blocks/current/blk_{block}"));
    let mut bytes = std::fs::read(&file)?;
    for b in &mut bytes[1000..1100] {
        *b ^= 0x5a;
    }
    std::fs::write(&file, &bytes)?;

    let out = c.dir.path().join("out.bin");
    c.ok(&["dfs", "get", "/c.bin", out.to_str().unwrap()])?;
    assert!(std::fs::read(&out)? == data, "get returned wrong bytes");

    // The corrupt copy is quarantined and a healthy third replica appears.
    let quarantined = worker.data_dir.join(format!("blocks/corrupt/blk_{block}"));
    wait_for(
        "the corrupt replica quarantined and replaced",
        Duration::from_secs(30),
        || {
            let reps = c.block_replicas("/c.bin").ok()?;
            let (_, now) = reps.iter().find(|(id, _)| *id == block)?;
            (quarantined.exists() && now.len() == 3 && !now.contains(&first)).then_some(())
        },
    )?;
    let again = c.dir.path().join("again.bin");
    c.ok(&["dfs", "get", "/c.bin", again.to_str().unwrap()])?;
    assert!(std::fs::read(&again)? == data);
    Ok(())
}
