//! Test 6: a task worker never holds a block; a worker (or client) without
//! the cluster token is refused.

use std::time::Duration;

use basin_tests::{Cluster, Spec, random_bytes, stderr, wait_for};

#[test]
fn task_workers_hold_no_blocks_and_tokens_are_checked() -> anyhow::Result<()> {
    let mut c = Cluster::start(Spec {
        core: 2,
        task: 2,
        ..Spec::default()
    })?;
    let local = c.dir.path().join("in.bin");
    std::fs::write(&local, random_bytes(5 * 1024 * 1024, 6))?;
    c.ok(&[
        "dfs",
        "put",
        "--block-size",
        "1048576",
        local.to_str().unwrap(),
        "/t.bin",
    ])?;
    let status = c.status()?;
    let task_ids: Vec<u64> = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["role"] == "task")
        .map(|n| {
            assert_eq!(n["blocks"], 0, "task worker {} holds blocks", n["name"]);
            n["id"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(task_ids.len(), 2);
    for (_, reps) in c.block_replicas("/t.bin")? {
        assert_eq!(reps.len(), 2, "replication is capped at the 2 core workers");
        assert!(reps.iter().all(|r| !task_ids.contains(r)));
    }
    for w in c.workers.iter().filter(|w| w.name.starts_with("task")) {
        assert!(
            !w.data_dir.join("blocks").exists(),
            "{} created a block store",
            w.name
        );
    }

    // A worker with the wrong token is refused and never joins.
    let idx = c.add_worker("core", "intruder", "wrong-token")?;
    wait_for(
        "the intruder to be refused",
        Duration::from_secs(20),
        || c.workers[idx].log_text().contains("token").then_some(()),
    )?;
    let names: Vec<String> = c.status()?["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(!names.contains(&"intruder".to_string()));

    // A client with the wrong token gets a clear refusal.
    let o = std::process::Command::new(basin_tests::basin_bin())
        .args([
            "--master",
            &c.master_list(),
            "--token",
            "nope",
            "dfs",
            "ls",
            "/",
        ])
        .output()?;
    assert!(!o.status.success());
    assert!(stderr(&o).contains("unauthenticated"), "{}", stderr(&o));
    Ok(())
}
