//! A write pipeline that includes a dead worker (killed, not yet declared
//! dead by the master) still succeeds: the failed node is replaced and every
//! block ends up with its full replica count on live workers.

use basin_tests::{Cluster, Spec, random_bytes};

#[test]
fn failed_pipeline_node_is_replaced() -> anyhow::Result<()> {
    // A long dead-after keeps the killed worker in the placement candidates.
    let mut c = Cluster::start(Spec {
        core: 5,
        task: 0,
        dead_after: "60s",
        ..Spec::default()
    })?;
    let victim = c.node_id("core-3")?;
    c.worker("core-3").kill9();
    let status = c.status()?;
    let listed_live = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["id"].as_u64() == Some(victim) && n["state"] == "live");
    assert!(
        listed_live,
        "the master should not know yet that core-3 is gone"
    );

    let data = random_bytes(16 * 1024 * 1024, 91);
    let local = c.dir.path().join("in.bin");
    std::fs::write(&local, &data)?;
    let put = c.basin(&[
        "dfs",
        "put",
        "--block-size",
        "1048576",
        local.to_str().unwrap(),
        "/p.bin",
    ]);
    let put_log = String::from_utf8_lossy(&put.stderr).to_string();
    assert!(put.status.success(), "{put_log}");
    for (id, reps) in c.block_replicas("/p.bin")? {
        assert_eq!(reps.len(), 3, "block {id}: {reps:?}\nput log: {put_log}");
        assert!(
            !reps.contains(&victim),
            "block {id} placed on the dead worker"
        );
    }
    let out = c.dir.path().join("out.bin");
    c.ok(&["dfs", "get", "/p.bin", out.to_str().unwrap()])?;
    assert!(std::fs::read(&out)? == data);
    Ok(())
}

#[test]
fn fsck_fails_when_blocks_are_missing() -> anyhow::Result<()> {
    let mut c = Cluster::start(Spec {
        core: 2,
        task: 0,
        ..Spec::default()
    })?;
    let local = c.dir.path().join("in.bin");
    std::fs::write(&local, random_bytes(100_000, 92))?;
    c.ok(&[
        "dfs",
        "put",
        "--replication",
        "1",
        local.to_str().unwrap(),
        "/single.bin",
    ])?;
    let holder = c.block_replicas("/single.bin")?[0].1[0];
    let name = if c.node_id("core-1")? == holder {
        "core-1"
    } else {
        "core-2"
    };
    c.worker(name).kill9();
    let missing = basin_tests::wait_for(
        "fsck to report the block missing",
        std::time::Duration::from_secs(30),
        || {
            let o = c.basin(&["dfs", "fsck", "/"]);
            (!o.status.success()).then_some(o)
        },
    )?;
    let out = String::from_utf8_lossy(&missing.stdout);
    assert!(out.contains("MISSING") && out.contains("CORRUPT"), "{out}");
    assert!(String::from_utf8_lossy(&missing.stderr).contains("missing"));
    Ok(())
}
