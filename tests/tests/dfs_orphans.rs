//! A client that dies mid-write leaves no visible file, and the blocks it
//! had written are garbage-collected once its lease expires.

use std::process::{Command, Stdio};
use std::time::Duration;

use basin_tests::{Cluster, Spec, basin_bin, block_files, random_bytes, wait_for};

#[test]
fn dead_writer_leaves_no_file_and_no_blocks() -> anyhow::Result<()> {
    let spec = Spec {
        core: 3,
        task: 0,
        extra_master_args: vec!["--lease-timeout".into(), "2s".into()],
        ..Spec::default()
    };
    let c = Cluster::start(spec)?;
    let local = c.dir.path().join("big.bin");
    std::fs::write(&local, random_bytes(200 * 1024 * 1024, 31))?;
    let mut writer = Command::new(basin_bin())
        .args(["--master", &c.master_list(), "--token", &c.token])
        .args([
            "dfs",
            "put",
            "--block-size",
            "1048576",
            local.to_str().unwrap(),
            "/partial.bin",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let core: Vec<_> = c.workers.iter().map(|w| w.data_dir.clone()).collect();
    wait_for("some blocks written", Duration::from_secs(60), || {
        (core.iter().map(|d| block_files(d)).sum::<usize>() >= 6).then_some(())
    })?;
    writer.kill()?;
    writer.wait()?;

    // Never visible, even while the lease is still held.
    assert!(c.basin(&["dfs", "stat", "/partial.bin"]).status.code() != Some(0));
    wait_for(
        "orphan blocks removed from every worker",
        Duration::from_secs(60),
        || (core.iter().map(|d| block_files(d)).sum::<usize>() == 0).then_some(()),
    )?;
    assert!(c.json(&["dfs", "ls", "/"])?.as_array().unwrap().is_empty());
    // The name is free again.
    std::fs::write(&local, b"small")?;
    c.ok(&["dfs", "put", local.to_str().unwrap(), "/partial.bin"])?;
    Ok(())
}
