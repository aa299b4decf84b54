//! Test 1: a ≥ 40 MB random file with 1 MiB blocks goes in and comes back
//! byte for byte; every block sits on 3 distinct core workers.

use basin_tests::{Cluster, Spec, random_bytes};

#[test]
fn put_get_roundtrip_with_three_distinct_replicas() -> anyhow::Result<()> {
    let c = Cluster::start(Spec::default())?;
    let data = random_bytes(40 * 1024 * 1024 + 4321, 1);
    let local = c.dir.path().join("in.bin");
    std::fs::write(&local, &data)?;
    c.ok(&["dfs", "mkdir", "-p", "/data"])?;
    c.ok(&[
        "dfs",
        "put",
        "--block-size",
        "1048576",
        local.to_str().unwrap(),
        "/data/big.bin",
    ])?;

    let out = c.dir.path().join("out.bin");
    c.ok(&["dfs", "get", "/data/big.bin", out.to_str().unwrap()])?;
    assert!(std::fs::read(&out)? == data, "bytes read back differ");

    let status = c.status()?;
    let core_ids: Vec<u64> = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["role"] == "core")
        .filter_map(|n| n["id"].as_u64())
        .collect();
    let blocks = c.block_replicas("/data/big.bin")?;
    assert_eq!(blocks.len(), 41, "40 MiB + a bit in 1 MiB blocks");
    for (id, reps) in &blocks {
        let mut distinct = reps.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 3, "block {id} on {reps:?}");
        assert!(
            reps.iter().all(|r| core_ids.contains(r)),
            "block {id} on a non-core node: {reps:?}"
        );
    }
    let ls = c.json(&["dfs", "ls", "/data"])?;
    assert_eq!(ls[0]["length"].as_u64(), Some(data.len() as u64));
    assert_eq!(ls[0]["replication"].as_u64(), Some(3));
    Ok(())
}
