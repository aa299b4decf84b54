//! Replicas spread across `--zone` labels.

use std::collections::{HashMap, HashSet};

use basin_tests::{Cluster, Spec, random_bytes};

#[test]
fn replicas_spread_across_zones() -> anyhow::Result<()> {
    let mut c = Cluster::start(Spec {
        core: 0,
        task: 0,
        ..Spec::default()
    })?;
    let token = c.token.clone();
    for (i, zone) in ["a", "a", "b", "b", "c", "c"].iter().enumerate() {
        let idx = c.add_worker("core", &format!("core-{zone}{i}"), &token)?;
        c.workers[idx]
            .args
            .extend(["--zone".to_string(), zone.to_string()]);
        c.workers[idx].kill9();
        c.workers[idx].start()?;
    }
    c.wait_healthy(6)?;
    let status = c.status()?;
    let zone_of: HashMap<u64, String> = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["id"].as_u64().unwrap(),
                n["zone"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        zone_of.values().all(|z| !z.is_empty()),
        "zones registered: {zone_of:?}"
    );
    let local = c.dir.path().join("in.bin");
    std::fs::write(&local, random_bytes(8 * 1024 * 1024, 81))?;
    c.ok(&[
        "dfs",
        "put",
        "--block-size",
        "1048576",
        local.to_str().unwrap(),
        "/z.bin",
    ])?;
    for (id, reps) in c.block_replicas("/z.bin")? {
        let zones: HashSet<&String> = reps.iter().filter_map(|r| zone_of.get(r)).collect();
        assert_eq!(
            zones.len(),
            3,
            "block {id} replicas {reps:?} not spread over 3 zones"
        );
    }
    Ok(())
}
