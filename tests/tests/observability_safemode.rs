//! `/metrics`, `/healthz`, `/readyz` on every role; safe mode after a master
//! restart until the blocks are reported, visible in `cluster status`.

use std::time::Duration;

use basin_tests::{Cluster, Spec, http_get, random_bytes, stderr, wait_for};

#[test]
fn http_endpoints_on_every_role() -> anyhow::Result<()> {
    let c = Cluster::start(Spec {
        core: 1,
        task: 1,
        ..Spec::default()
    })?;
    let local = c.dir.path().join("in.bin");
    std::fs::write(&local, random_bytes(10_000, 41))?;
    c.ok(&["dfs", "put", local.to_str().unwrap(), "/m.bin"])?;
    for p in c.masters.iter().chain(c.workers.iter()) {
        let h = http_get(&p.http, "/healthz")
            .map_err(|e| anyhow::anyhow!("{} {}: {e}", p.name, p.http))?;
        assert_eq!(h.0, 200, "{}", p.name);
        assert_eq!(http_get(&p.http, "/readyz")?.0, 200, "{}", p.name);
    }
    let (code, body) = http_get(&c.masters[0].http, "/metrics")?;
    assert_eq!(code, 200);
    assert!(body.contains("basin_master_rpc_total"), "{body}");
    let (_, body) = http_get(&c.workers[0].http, "/metrics")?;
    assert!(body.contains("basin_worker_bytes_written_total"), "{body}");
    Ok(())
}

#[test]
fn safe_mode_until_blocks_are_reported() -> anyhow::Result<()> {
    let mut c = Cluster::start(Spec {
        core: 3,
        task: 0,
        ..Spec::default()
    })?;
    let local = c.dir.path().join("in.bin");
    std::fs::write(&local, random_bytes(3 * 1024 * 1024, 42))?;
    c.ok(&[
        "dfs",
        "put",
        "--block-size",
        "1048576",
        local.to_str().unwrap(),
        "/s.bin",
    ])?;
    for p in c.workers.iter_mut().chain(c.masters.iter_mut()) {
        p.stop();
    }
    c.masters[0].start()?;
    let s = wait_for("the master back", Duration::from_secs(30), || {
        c.status().ok()
    })?;
    assert_eq!(s["safe_mode"], true);
    assert_eq!(s["blocks_total"], 3);
    assert_eq!(s["blocks_reported"], 0);
    let o = c.basin(&["dfs", "mkdir", "/during-safe-mode"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("safe mode"), "{}", stderr(&o));
    // Reads of the namespace still work.
    assert_eq!(c.json(&["dfs", "ls", "/"])?.as_array().unwrap().len(), 1);

    for w in c.workers.iter_mut() {
        w.start()?;
    }
    wait_for("safe mode off", Duration::from_secs(30), || {
        let s = c.status().ok()?;
        (s["safe_mode"] == false && s["blocks_reported"] == 3).then_some(())
    })?;
    c.ok(&["dfs", "mkdir", "/after-safe-mode"])?;
    Ok(())
}
