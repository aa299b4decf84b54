//! Graceful shutdown on SIGTERM: a core worker started with --drain-on-stop
//! moves its blocks elsewhere before it exits 0; the leader master steps
//! down cleanly and another master takes over.

use std::time::Duration;

use basin_tests::{Cluster, Spec, wait_for};

#[test]
fn draining_worker_and_stepping_down_leader() -> anyhow::Result<()> {
    let mut c = Cluster::start(Spec {
        masters: 3,
        core: 4,
        task: 0,
        ..Spec::default()
    })?;
    // core-4 drains on stop.
    {
        let w = c.worker("core-4");
        w.kill9();
        w.args.extend([
            "--drain-on-stop".to_string(),
            "--drain-timeout".to_string(),
            "60s".to_string(),
        ]);
        w.start()?;
    }
    c.wait_healthy(4)?;
    let data = c.put_random("/g.bin", 6 * 1024 * 1024, 111, &["--block-size", "1048576"])?;
    let drained = c.node_id("core-4")?;
    let on_it = c
        .block_replicas("/g.bin")?
        .iter()
        .filter(|(_, r)| r.contains(&drained))
        .count();
    assert!(on_it > 0, "core-4 should hold some replicas");

    assert_eq!(
        c.worker("core-4").stop(),
        Some(0),
        "the draining worker exits 0"
    );
    // Every block already has 3 replicas on the other workers: nothing to heal.
    let fsck = c.json(&["dfs", "fsck", "/"])?;
    for f in fsck["files"].as_array().unwrap() {
        for b in f["blocks"].as_array().unwrap() {
            let others = b["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|n| n.as_u64() != Some(drained))
                .count();
            assert!(
                others >= 3,
                "block {} left with {others} replicas off the drained node",
                b["block_id"]
            );
        }
    }

    // SIGTERM the leader master: it exits 0 and another master leads.
    let leader = c.status()?["leader"]["id"].as_u64().unwrap() as usize;
    assert_eq!(c.masters[leader - 1].stop(), Some(0));
    wait_for("a new leader", Duration::from_secs(30), || {
        let id = c.status().ok()?["leader"]["id"].as_u64()?;
        (id != 0 && id as usize != leader).then_some(())
    })?;
    c.ok(&["dfs", "mkdir", "/after-stepdown"])?;
    let out = c.dir.path().join("out.bin");
    c.ok(&["dfs", "get", "/g.bin", out.to_str().unwrap()])?;
    assert!(std::fs::read(&out)? == data);
    Ok(())
}
