//! Test 7: bad input gets one clear line and a non-zero exit, and nothing
//! already stored is lost.

use basin_tests::{Cluster, Spec, free_port, random_bytes, stderr};

fn fails_with(c: &Cluster, args: &[&str], env: &[(&str, &str)], needle: &str) {
    let o = c.basin_env(args, env);
    let err = stderr(&o);
    assert!(!o.status.success(), "{args:?} should fail");
    assert!(
        err.contains(needle),
        "{args:?}: expected {needle:?} in {err:?}"
    );
    assert_eq!(
        err.trim().lines().count(),
        1,
        "{args:?}: one line expected, got {err:?}"
    );
}

#[test]
fn every_error_is_one_clear_line_and_loses_nothing() -> anyhow::Result<()> {
    let c = Cluster::start(Spec {
        core: 3,
        task: 0,
        ..Spec::default()
    })?;
    let data = random_bytes(200_000, 7);
    let local = c.dir.path().join("in.bin");
    std::fs::write(&local, &data)?;
    let l = local.to_str().unwrap();
    c.ok(&["dfs", "mkdir", "-p", "/a/b"])?;
    c.ok(&["dfs", "put", l, "/a/file.bin"])?;
    let out = c.dir.path().join("out.bin");
    let o = out.to_str().unwrap();

    fails_with(
        &c,
        &["dfs", "get", "/nope.bin", o],
        &[],
        "no such file or directory: /nope.bin",
    );
    fails_with(
        &c,
        &["dfs", "cat", "/a/missing"],
        &[],
        "no such file or directory",
    );
    fails_with(
        &c,
        &["dfs", "ls", "/missing-dir"],
        &[],
        "no such file or directory",
    );
    fails_with(
        &c,
        &["dfs", "put", l, "/a/file.bin"],
        &[],
        "already exists: /a/file.bin",
    );
    fails_with(
        &c,
        &["dfs", "mkdir", "/a/file.bin/sub"],
        &[],
        "not a directory",
    );
    fails_with(&c, &["dfs", "rm", "/a"], &[], "directory not empty");
    fails_with(
        &c,
        &["dfs", "mkdir", "/a/../etc"],
        &[],
        "'..' is not allowed",
    );
    fails_with(&c, &["dfs", "mkdir", "/a//b"], &[], "empty component");

    // Permission: alice's directory is not bob's to write in.
    c.basin_env(&["dfs", "mkdir", "/alice"], &[("BASIN_USER", "alice")]);
    fails_with(
        &c,
        &["dfs", "put", l, "/alice/x.bin"],
        &[("BASIN_USER", "bob")],
        "permission denied",
    );
    fails_with(
        &c,
        &["dfs", "rm", "/a/file.bin"],
        &[("BASIN_USER", "bob")],
        "permission denied",
    );

    // Master unreachable: names the address tried, distinct exit code.
    let port = free_port();
    let dead = format!("127.0.0.1:{port}");
    let o2 = std::process::Command::new(basin_tests::basin_bin())
        .args([
            "--master",
            &dead,
            "--token",
            &c.token,
            "--timeout",
            "2s",
            "dfs",
            "ls",
            "/",
        ])
        .output()?;
    assert_eq!(o2.status.code(), Some(3), "{}", stderr(&o2));
    assert!(
        stderr(&o2).contains("master unreachable") && stderr(&o2).contains(&dead),
        "{}",
        stderr(&o2)
    );

    // Nothing was lost along the way.
    c.ok(&["dfs", "get", "/a/file.bin", o])?;
    assert!(std::fs::read(&out)? == data);
    assert_eq!(c.json(&["dfs", "ls", "/a"])?.as_array().unwrap().len(), 2);
    Ok(())
}

#[test]
fn no_live_core_workers_is_a_clear_error() -> anyhow::Result<()> {
    let c = Cluster::start(Spec {
        core: 0,
        task: 1,
        ..Spec::default()
    })?;
    let local = c.dir.path().join("in.bin");
    std::fs::write(&local, b"hello")?;
    fails_with(
        &c,
        &["dfs", "put", local.to_str().unwrap(), "/x"],
        &[],
        "no live core workers",
    );
    let o = c.basin(&["dfs", "ls", "/"]);
    assert!(o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stdout).trim().is_empty(),
        "no file may appear"
    );
    Ok(())
}
