//! Test 5: stop everything, restart on the same data dirs: every file and
//! its contents are intact.

use basin_tests::{Cluster, Spec, random_bytes};

#[test]
fn full_restart_keeps_every_file() -> anyhow::Result<()> {
    let mut c = Cluster::start(Spec {
        masters: 3,
        core: 3,
        task: 1,
        ..Spec::default()
    })?;
    let mut files = Vec::new();
    for i in 0..4u64 {
        let data = random_bytes(700_000 * (i as usize + 1), 10 + i);
        let local = c.dir.path().join(format!("f{i}.bin"));
        std::fs::write(&local, &data)?;
        c.ok(&[
            "dfs",
            "put",
            "--block-size",
            "524288",
            local.to_str().unwrap(),
            &format!("/keep/f{i}.bin"),
        ])
        .or_else(|_| {
            c.ok(&["dfs", "mkdir", "-p", "/keep"])?;
            c.ok(&[
                "dfs",
                "put",
                "--block-size",
                "524288",
                local.to_str().unwrap(),
                &format!("/keep/f{i}.bin"),
            ])
        })?;
        files.push((format!("/keep/f{i}.bin"), data));
    }
    // Stop everything gracefully (SIGTERM): every role exits 0.
    for p in c.workers.iter_mut().chain(c.masters.iter_mut()) {
        assert_eq!(p.stop(), Some(0), "{} did not exit cleanly", p.name);
    }
    for p in c.masters.iter_mut().chain(c.workers.iter_mut()) {
        p.start()?;
    }
    c.wait_healthy(4)?;
    for (path, data) in &files {
        let out = c.dir.path().join("out.bin");
        c.ok(&["dfs", "get", "-f", path, out.to_str().unwrap()])?;
        assert!(
            std::fs::read(&out)? == *data,
            "{path} differs after restart"
        );
    }
    let fsck = c.json(&["dfs", "fsck", "/"])?;
    assert_eq!(fsck["missing"], 0);
    Ok(())
}
