//! `basin local up`: one process runs every role, writes `cluster.env`,
//! stops cleanly on SIGTERM, and brings every file back when started again
//! on the same data dir. `basin demo` runs its tour and exits 0.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use basin_tests::{basin_bin, random_bytes, wait_for};

fn env_file(dir: &std::path::Path) -> Option<(String, String)> {
    let text = std::fs::read_to_string(dir.join("cluster.env")).ok()?;
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")).map(str::to_string))
    };
    Some((get("BASIN_MASTER")?, get("BASIN_TOKEN")?))
}

fn up(dir: &std::path::Path, log: &std::path::Path) -> anyhow::Result<Child> {
    let _ = std::fs::remove_file(dir.join("cluster.env"));
    let log = std::fs::File::create(log)?;
    Ok(Command::new(basin_bin())
        .args([
            "local",
            "up",
            "--data-dir",
            dir.to_str().unwrap(),
            "--workers",
            "3",
            "--task-workers",
            "1",
        ])
        .stdout(log.try_clone()?)
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()?)
}

fn term(child: &mut Child) -> Option<i32> {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    wait_for("local cluster exit", Duration::from_secs(30), || {
        child.try_wait().ok().flatten()
    })
    .ok()?
    .code()
}

fn cli(master: &str, token: &str, args: &[&str]) -> std::process::Output {
    Command::new(basin_bin())
        .args(["--master", master, "--token", token])
        .args(args)
        .output()
        .expect("basin")
}

#[test]
fn local_up_restart_keeps_files() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("data");
    let log = tmp.path().join("local.log");
    let mut child = up(&dir, &log)?;
    let (master, token) = wait_for("cluster.env", Duration::from_secs(60), || env_file(&dir))?;
    let data = random_bytes(3_000_000, 71);
    let local = tmp.path().join("in.bin");
    std::fs::write(&local, &data)?;
    let o = cli(
        &master,
        &token,
        &["dfs", "put", local.to_str().unwrap(), "/kept.bin"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        term(&mut child),
        Some(0),
        "local up did not stop cleanly: {}",
        std::fs::read_to_string(&log)?
    );

    let mut child = up(&dir, &log)?;
    let (master2, token2) = wait_for("cluster.env again", Duration::from_secs(60), || {
        env_file(&dir)
    })?;
    assert_eq!(
        (master2.as_str(), token2.as_str()),
        (master.as_str(), token.as_str()),
        "same endpoints and token"
    );
    let out = tmp.path().join("out.bin");
    let o = cli(
        &master,
        &token,
        &["dfs", "get", "/kept.bin", out.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::read(&out)? == data);
    assert_eq!(term(&mut child), Some(0));
    Ok(())
}

#[test]
fn demo_runs_its_tour() -> anyhow::Result<()> {
    let o = Command::new(basin_bin()).arg("demo").output()?;
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for step in [
        "dfs put",
        "dfs ls",
        "dfs stat",
        "dfs get",
        "identical",
        "builtin wordcount",
        "counted 600 times",
        "dfs fsck",
        "every step passed",
    ] {
        assert!(out.contains(step), "demo output lacks {step:?}: {out}");
    }
    Ok(())
}
