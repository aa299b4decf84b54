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

fn kinesis_url(dir: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("cluster.env")).ok()?;
    text.lines().find_map(|l| {
        l.strip_prefix("BASIN_KINESIS_URL=http://")
            .map(str::to_string)
    })
}

fn env_value(dir: &std::path::Path, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("cluster.env")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")).map(str::to_string))
}

/// `basin sql -c` against the warehouse named in cluster.env (BASIN_LEADER).
fn sql(dir: &std::path::Path, token: &str, stmt: &str) -> std::process::Output {
    Command::new(basin_bin())
        .args(["sql", "--csv", "-c", stmt])
        .env(
            "BASIN_LEADER",
            env_value(dir, "BASIN_LEADER").unwrap_or_default(),
        )
        .env("BASIN_TOKEN", token)
        .output()
        .expect("basin sql")
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
    // A stream with a few records, through the CLI.
    let o = cli(
        &master,
        &token,
        &["stream", "create", "kept", "--shards", "2"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for (k, v) in [("a", "one"), ("b", "two"), ("a", "three")] {
        let o = cli(
            &master,
            &token,
            &["stream", "put", "kept", "--partition-key", k, v],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    // The Kinesis API named in cluster.env answers.
    let http = kinesis_url(&dir).expect("BASIN_KINESIS_URL in cluster.env");
    let (code, body) = basin_tests::http_post(
        &http,
        "/",
        &[("X-Amz-Target", "Kinesis_20131202.ListStreams")],
        b"{}",
    )?;
    assert!(code == 200 && body.contains("kept"), "{code} {body}");
    // The warehouse: BASIN_PG and BASIN_LEADER in cluster.env, a table through Flight SQL.
    assert!(
        env_value(&dir, "BASIN_PG").is_some(),
        "no BASIN_PG in cluster.env"
    );
    let o = sql(
        &dir,
        &token,
        "CREATE TABLE kept_t (id BIGINT, name VARCHAR(10)) DISTSTYLE EVEN; INSERT INTO kept_t VALUES (1, 'a'), (2, 'b'), (3, 'c')",
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
    // The stream's records survive the restart, each key's in order.
    let got = wait_for("the stream's records", Duration::from_secs(60), || {
        let o = cli(&master, &token, &["stream", "read", "kept"]);
        let text = String::from_utf8_lossy(&o.stdout).to_string();
        (o.status.success() && text.lines().count() == 3).then_some(text)
    })?;
    let lines: Vec<&str> = got.lines().collect();
    let pos = |v: &str| lines.iter().position(|l| *l == v).expect("record");
    assert!(pos("one") < pos("three"), "key a out of order: {lines:?}");
    assert!(lines.contains(&"two"));
    // The warehouse's table and rows survive the restart.
    let o = wait_for(
        "the warehouse after restart",
        Duration::from_secs(60),
        || {
            let o = sql(
                &dir,
                &token,
                "SELECT count(*) AS n, max(name) AS m FROM kept_t",
            );
            o.status.success().then_some(o)
        },
    )?;
    assert_eq!(String::from_utf8_lossy(&o.stdout), "n,m\n3,c\n");
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
        "stream put clicks",
        "stream split",
        "COPY sales FROM",
        "region-3|250|",
        "dfs fsck",
        "every step passed",
    ] {
        assert!(out.contains(step), "demo output lacks {step:?}: {out}");
    }
    Ok(())
}
