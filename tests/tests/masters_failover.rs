//! Test 4: three masters; `kill -9` the Raft leader: a new leader is
//! elected, every acknowledged namespace change survives, new writes
//! succeed, and the killed master restarts and catches up.

use std::time::Duration;

use basin_tests::{Cluster, Spec, random_bytes, wait_for};

#[test]
fn leader_master_killed_and_restarted() -> anyhow::Result<()> {
    // Small snapshots: the log is compacted often, so the restarted master
    // catches up from a snapshot sent over the network, not only from the log.
    let mut c = Cluster::start(Spec {
        masters: 3,
        core: 3,
        task: 0,
        extra_master_args: vec!["--snapshot-logs".into(), "10".into()],
        ..Spec::default()
    })?;
    let small = c.dir.path().join("small.bin");
    std::fs::write(&small, random_bytes(300_000, 4))?;
    for i in 0..10 {
        c.ok(&["dfs", "mkdir", "-p", &format!("/dirs/d{i}")])?;
    }
    c.ok(&["dfs", "put", small.to_str().unwrap(), "/dirs/d0/before.bin"])?;

    let status = c.status()?;
    let leader = status["leader"]["id"].as_u64().unwrap() as usize;
    c.masters[leader - 1].kill9();

    let new_leader = wait_for("a new leader", Duration::from_secs(30), || {
        let s = c.status().ok()?;
        let id = s["leader"]["id"].as_u64()?;
        (id != 0 && id as usize != leader).then_some(id)
    })?;
    assert_ne!(new_leader as usize, leader);

    let ls = c.json(&["dfs", "ls", "/dirs"])?;
    assert_eq!(
        ls.as_array().unwrap().len(),
        10,
        "every directory acknowledged before the kill is there"
    );
    let out = c.dir.path().join("out.bin");
    c.ok(&["dfs", "get", "/dirs/d0/before.bin", out.to_str().unwrap()])?;
    assert_eq!(std::fs::read(&out)?, std::fs::read(&small)?);

    c.ok(&["dfs", "put", small.to_str().unwrap(), "/dirs/d1/after.bin"])?;
    c.ok(&["dfs", "mkdir", "/dirs/after-failover"])?;

    // Restart the old leader: it catches up with the group.
    c.masters[leader - 1].start()?;
    let addr = c.masters[leader - 1].addr.clone();
    let leader_applied = c.status()?["raft_last_applied"].as_u64().unwrap();
    wait_for(
        "the restarted master to catch up",
        Duration::from_secs(30),
        || {
            let o = std::process::Command::new(basin_tests::basin_bin())
                .args([
                    "--master", &addr, "--token", &c.token, "--json", "cluster", "status",
                ])
                .output()
                .ok()?;
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
            (v["raft_last_applied"].as_u64()? >= leader_applied).then_some(())
        },
    )?;
    // And the group still serves writes with all three.
    c.ok(&["dfs", "mkdir", "/dirs/after-restart"])?;
    assert_eq!(
        c.json(&["dfs", "ls", "/dirs"])?.as_array().unwrap().len(),
        12
    );
    Ok(())
}
