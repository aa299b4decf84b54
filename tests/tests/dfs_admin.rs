//! Replication administration: `setrep` up and down (re-replication and
//! trimming), and decommissioning a core worker, which drains it first.

use std::time::Duration;

use basin_tests::{Cluster, Spec, random_bytes, wait_for};

fn replica_counts(c: &Cluster, path: &str) -> Vec<usize> {
    c.block_replicas(path)
        .map(|b| b.iter().map(|(_, r)| r.len()).collect())
        .unwrap_or_default()
}

#[test]
fn setrep_grows_and_trims_replicas() -> anyhow::Result<()> {
    let c = Cluster::start(Spec {
        core: 4,
        task: 0,
        ..Spec::default()
    })?;
    let local = c.dir.path().join("in.bin");
    std::fs::write(&local, random_bytes(3 * 1024 * 1024, 21))?;
    c.ok(&[
        "dfs",
        "put",
        "--block-size",
        "1048576",
        "--replication",
        "2",
        local.to_str().unwrap(),
        "/r.bin",
    ])?;
    assert_eq!(replica_counts(&c, "/r.bin"), vec![2, 2, 2]);

    c.ok(&["dfs", "setrep", "-w", "4", "/r.bin"])?;
    assert_eq!(replica_counts(&c, "/r.bin"), vec![4, 4, 4]);
    assert_eq!(c.json(&["dfs", "ls", "/r.bin"])?[0]["replication"], 4);

    c.ok(&["dfs", "setrep", "1", "/r.bin"])?;
    wait_for("replicas trimmed to 1", Duration::from_secs(30), || {
        (replica_counts(&c, "/r.bin") == vec![1, 1, 1]).then_some(())
    })?;
    let fsck = c.json(&["dfs", "fsck", "/"])?;
    assert_eq!(fsck["healthy"], 3);
    Ok(())
}

#[test]
fn decommission_drains_blocks_first() -> anyhow::Result<()> {
    let c = Cluster::start(Spec {
        core: 4,
        task: 0,
        ..Spec::default()
    })?;
    let data = random_bytes(6 * 1024 * 1024, 22);
    let local = c.dir.path().join("in.bin");
    std::fs::write(&local, &data)?;
    c.ok(&[
        "dfs",
        "put",
        "--block-size",
        "1048576",
        local.to_str().unwrap(),
        "/d.bin",
    ])?;
    let victim = c.node_id("core-2")?;

    let out = c.json(&["cluster", "decommission", "core-2"])?;
    assert_eq!(out["state"], "decommissioned");
    // Every block has 3 replicas on the other workers.
    for (id, reps) in c.block_replicas("/d.bin")? {
        let others = reps.iter().filter(|r| **r != victim).count();
        assert!(
            others >= 3,
            "block {id} has only {others} replicas off the decommissioned node"
        );
    }
    // New writes avoid it.
    c.ok(&[
        "dfs",
        "put",
        "--block-size",
        "1048576",
        local.to_str().unwrap(),
        "/after.bin",
    ])?;
    for (_, reps) in c.block_replicas("/after.bin")? {
        assert!(!reps.contains(&victim));
    }
    let o = c.basin(&["cluster", "decommission", "no-such-node"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no such node"));
    Ok(())
}
