//! The docker-compose cluster on the real Docker engine, with faults: image
//! built here (deploy/docker/build-image.sh), cluster up with
//! deploy/compose/up.sh, data from the host CLI, a core worker killed, the
//! leader master cut off the network and back, a full restart, and always
//! `docker-compose down -v` at the end. Says SKIPPED when no engine answers.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use basin_tests::{basin_bin, free_port, random_bytes, wait_for};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

fn docker_available() -> bool {
    Command::new("docker")
        .arg("info")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
        && Command::new("docker-compose")
            .arg("version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
}

/// The cluster under test; `Drop` always tears it down with its volumes.
struct Compose {
    project: String,
    env: Vec<(String, String)>,
    dir: PathBuf,
    master: String,
    token: String,
    /// Set at the end of a passing test; otherwise `Drop` prints the containers' logs.
    passed: bool,
}

impl Compose {
    fn cmd(&self, args: &[&str]) -> Output {
        Command::new("docker-compose")
            .args(["-p", &self.project])
            .args(args)
            .current_dir(&self.dir)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("docker-compose")
    }

    fn container(&self, service: &str) -> String {
        let o = self.cmd(&["ps", "-q", service]);
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    fn basin(&self, args: &[&str]) -> Output {
        Command::new(basin_bin())
            .args([
                "--master",
                &self.master,
                "--token",
                &self.token,
                "--external-addrs",
                "--timeout",
                "60s",
            ])
            .args(args)
            .output()
            .expect("basin")
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.basin(args);
        assert!(
            o.status.success(),
            "basin {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).to_string()
    }

    fn json(&self, args: &[&str]) -> Option<serde_json::Value> {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let o = self.basin(&a);
        serde_json::from_slice(&o.stdout).ok()
    }

    fn live_nodes(&self) -> usize {
        self.json(&["cluster", "status"])
            .and_then(|s| {
                s["nodes"]
                    .as_array()
                    .map(|n| n.iter().filter(|n| n["state"] == "live").count())
            })
            .unwrap_or(0)
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        if !self.passed {
            let logs = self.cmd(&["logs", "--tail", "40"]);
            eprintln!("{}", String::from_utf8_lossy(&logs.stdout));
        }
        let o = self.cmd(&["down", "-v", "--remove-orphans"]);
        eprintln!("compose down: {}", o.status);
        let _ = std::fs::remove_file(self.dir.join("cluster.env"));
        let _ = std::fs::remove_file(self.dir.join("token.env"));
    }
}

#[test]
fn compose_cluster_survives_faults() -> anyhow::Result<()> {
    if !docker_available() {
        eprintln!("SKIPPED: no Docker engine (or docker-compose) answers on this machine");
        return Ok(());
    }
    let started = Instant::now();
    // A private copy of the compose directory, so parallel runs do not share token files.
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("compose");
    std::fs::create_dir_all(&dir)?;
    std::fs::copy(
        repo().join("deploy/compose/docker-compose.yml"),
        dir.join("docker-compose.yml"),
    )?;
    std::fs::copy(repo().join("deploy/compose/up.sh"), dir.join("up.sh"))?;
    let project = format!("basintest{}", rand::random::<u32>());
    let image = format!("basin:test-{project}");
    let mut env: Vec<(String, String)> = vec![("BASIN_IMAGE".into(), image.clone())];
    for name in [
        "MASTER1",
        "MASTER2",
        "MASTER3",
        "CORE1",
        "CORE2",
        "CORE3",
        "TASK1",
        "MASTER1_HTTP",
        "MASTER2_HTTP",
        "MASTER3_HTTP",
        "PG",
        "LEADER",
    ] {
        env.push((format!("BASIN_{name}_PORT"), free_port().to_string()));
    }
    // The image from the binary these tests use (debug build): no pull, no registry.
    let build = Command::new(repo().join("deploy/docker/build-image.sh"))
        .args(["--profile", "debug", "--tag", &image, "--binary"])
        .arg(basin_bin())
        .output()?;
    assert!(
        build.status.success(),
        "build-image.sh: {}",
        String::from_utf8_lossy(&build.stderr)
    );
    let port = |n: &str| {
        env.iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let master = format!(
        "127.0.0.1:{},127.0.0.1:{},127.0.0.1:{}",
        port("BASIN_MASTER1_PORT"),
        port("BASIN_MASTER2_PORT"),
        port("BASIN_MASTER3_PORT")
    );
    let mut c = Compose {
        project: project.clone(),
        env: env.clone(),
        dir: dir.clone(),
        master,
        token: String::new(),
        passed: false,
    };
    let up = Command::new("bash")
        .arg(dir.join("up.sh"))
        .current_dir(&dir)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("BASIN_SKIP_BUILD", "1")
        .env("COMPOSE_PROJECT_NAME", &project)
        .output()?;
    assert!(
        up.status.success(),
        "up.sh: {}",
        String::from_utf8_lossy(&up.stderr)
    );
    let cluster_env = std::fs::read_to_string(dir.join("cluster.env"))?;
    c.token = cluster_env
        .lines()
        .find_map(|l| l.strip_prefix("BASIN_TOKEN="))
        .unwrap_or_default()
        .to_string();
    assert!(cluster_env.contains("BASIN_EXTERNAL_ADDRS=1"));

    wait_for(
        "7 live workers... (3 core + 1 task)",
        Duration::from_secs(120),
        || (c.live_nodes() >= 4).then_some(()),
    )?;

    // Data through the host CLI: a multi-block file at replication 2.
    let data = random_bytes(6 * 1024 * 1024 + 3, 101);
    let local = tmp.path().join("in.bin");
    std::fs::write(&local, &data)?;
    c.ok(&[
        "dfs",
        "put",
        "--block-size",
        "1048576",
        "--replication",
        "2",
        local.to_str().unwrap(),
        "/compose.bin",
    ]);
    let out = tmp.path().join("out.bin");
    c.ok(&["dfs", "get", "-f", "/compose.bin", out.to_str().unwrap()]);
    assert!(std::fs::read(&out)? == data, "bytes differ through compose");

    // A wordcount job on the containers' workers (tasks read and shuffle over the container network).
    let text: String = (0..3000)
        .map(|i| format!("alpha beta{}\n", i % 4))
        .collect();
    std::fs::write(tmp.path().join("words.txt"), &text)?;
    c.ok(&[
        "dfs",
        "put",
        "--block-size",
        "16384",
        tmp.path().join("words.txt").to_str().unwrap(),
        "/words.txt",
    ]);
    let job = c.ok(&[
        "job",
        "submit",
        "--input",
        "/words.txt",
        "--output",
        "/wc",
        "--builtin",
        "wordcount",
        "--reducers",
        "2",
        "--wait",
    ]);
    assert!(job.contains("SUCCEEDED"), "{job}");
    let mut counts: Vec<String> = c
        .ok(&["dfs", "cat", "/wc/part-00000", "/wc/part-00001"])
        .lines()
        .map(str::to_string)
        .collect();
    counts.sort();
    assert_eq!(
        counts,
        [
            "alpha\t3000",
            "beta0\t750",
            "beta1\t750",
            "beta2\t750",
            "beta3\t750"
        ]
    );

    // A stream on the containers' core workers, written from the host.
    c.ok(&["stream", "create", "cstream", "--shards", "2"]);
    for (k, v) in [("a", "s-one"), ("b", "s-two"), ("a", "s-three")] {
        c.ok(&["stream", "put", "cstream", "--partition-key", k, v]);
    }

    // The warehouse in containers: a table through Flight SQL (basin sql) from the host,
    // loaded with COPY from the cluster file system, queried across the compute nodes.
    let leader_addr = format!("127.0.0.1:{}", port("BASIN_LEADER_PORT"));
    assert!(cluster_env.contains(&format!("BASIN_LEADER={leader_addr}")));
    std::fs::write(
        tmp.path().join("sales.csv"),
        (1..=100)
            .map(|i| format!("{i},r{}\n", i % 3))
            .collect::<String>(),
    )?;
    c.ok(&[
        "dfs",
        "put",
        tmp.path().join("sales.csv").to_str().unwrap(),
        "/sales.csv",
    ]);
    let sql = |stmt: &str| -> anyhow::Result<String> {
        let o = Command::new(basin_bin())
            .args(["sql", "--csv", "-c", stmt])
            .env("BASIN_LEADER", &leader_addr)
            .env("BASIN_TOKEN", &c.token)
            .output()?;
        anyhow::ensure!(
            o.status.success(),
            "basin sql: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        Ok(String::from_utf8_lossy(&o.stdout).to_string())
    };
    wait_for("the warehouse leader", Duration::from_secs(120), || {
        sql("SELECT 1").ok()
    })?;
    sql(
        "CREATE TABLE csales (id BIGINT, region VARCHAR(5)) DISTSTYLE KEY DISTKEY(region); COPY csales FROM 'basin:///sales.csv' FORMAT CSV",
    )?;
    let rows = sql("SELECT region, count(*) AS n FROM csales GROUP BY region ORDER BY region")?;
    assert_eq!(
        rows, "region,n\nr0,33\nr1,34\nr2,33\n",
        "warehouse in compose"
    );

    // docker kill one core worker: fsck comes back to full replication.
    let victim_id = c
        .json(&["cluster", "status"])
        .and_then(|s| {
            s["nodes"]
                .as_array()?
                .iter()
                .find(|n| n["name"] == "core-2")?["id"]
                .as_u64()
        })
        .expect("core-2 registered");
    let victim = c.container("core-2");
    assert!(
        Command::new("docker")
            .args(["kill", &victim])
            .status()?
            .success()
    );
    wait_for(
        "full replication without core-2",
        Duration::from_secs(120),
        || {
            let f = c.json(&["dfs", "fsck", "/"])?;
            let ok = f["files"].as_array()?.iter().all(|file| {
                file["blocks"].as_array().is_some_and(|bs| {
                    bs.iter().all(|b| {
                        let on_victim = b["nodes"]
                            .as_array()
                            .is_some_and(|ns| ns.iter().any(|n| n.as_u64() == Some(victim_id)));
                        b["live"] == 2 && !on_victim
                    })
                })
            });
            (ok && f["missing"] == 0).then_some(())
        },
    )?;
    c.ok(&["dfs", "get", "-f", "/compose.bin", out.to_str().unwrap()]);
    assert!(std::fs::read(&out)? == data);

    // Cut the leader master off the network: a new leader, writes go on.
    let status = c.json(&["cluster", "status"]).expect("status");
    let leader = status["leader"]["id"].as_u64().expect("leader id");
    let leader_container = c.container(&format!("master-{leader}"));
    let network = format!("{project}_default");
    assert!(
        Command::new("docker")
            .args(["network", "disconnect", &network, &leader_container])
            .status()?
            .success()
    );
    let new_leader = wait_for("a new leader", Duration::from_secs(60), || {
        let s = c.json(&["cluster", "status"])?;
        let id = s["leader"]["id"].as_u64()?;
        (id != 0 && id != leader).then_some(id)
    })?;
    c.ok(&["dfs", "mkdir", "-p", "/during-partition"]);
    assert!(
        Command::new("docker")
            .args(["network", "connect", &network, &leader_container])
            .status()?
            .success()
    );
    // The old leader rejoins: asked directly, it knows a leader and has
    // applied everything the group had committed after the partition.
    let applied = c
        .json(&["cluster", "status"])
        .and_then(|s| s["raft_last_applied"].as_u64())
        .unwrap_or(0);
    let old_port = port(&format!("BASIN_MASTER{leader}_PORT"));
    wait_for("the old leader to rejoin", Duration::from_secs(120), || {
        let o = Command::new(basin_bin())
            .args([
                "--master",
                &format!("127.0.0.1:{old_port}"),
                "--token",
                &c.token,
                "--timeout",
                "3s",
                "--json",
                "cluster",
                "status",
            ])
            .output()
            .ok()?;
        let s: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
        (s["leader"]["id"].as_u64()? != 0 && s["raft_last_applied"].as_u64()? >= applied)
            .then_some(())
    })?;
    eprintln!("leader {leader} cut off, {new_leader} took over, {leader} rejoined");

    // docker-compose restart: everything intact.
    let o = c.cmd(&["restart"]);
    assert!(
        o.status.success(),
        "restart: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    wait_for(
        "the cluster back after restart",
        Duration::from_secs(120),
        || {
            let s = c.json(&["cluster", "status"])?;
            (s["safe_mode"] == false && c.live_nodes() >= 3).then_some(())
        },
    )?;
    let out2 = tmp.path().join("out2.bin");
    c.ok(&["dfs", "get", "/compose.bin", out2.to_str().unwrap()]);
    assert!(std::fs::read(&out2)? == data, "data changed across restart");
    assert!(c.ok(&["dfs", "ls", "/"]).contains("/during-partition"));
    // The stream's records survived the lost worker and the restart, in key order.
    let lines = wait_for("the stream after restart", Duration::from_secs(120), || {
        let o = c.basin(&["stream", "read", "cstream"]);
        let text = String::from_utf8_lossy(&o.stdout).to_string();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        (o.status.success() && lines.len() == 3).then_some(lines)
    })?;
    let pos = |v: &str| lines.iter().position(|l| l == v);
    assert!(
        pos("s-one") < pos("s-three") && pos("s-two").is_some(),
        "stream records: {lines:?}"
    );
    eprintln!(
        "compose fault test took {:.0}s",
        started.elapsed().as_secs_f64()
    );
    let _ = Command::new("docker").args(["rmi", "-f", &image]).output();
    c.passed = true;
    Ok(())
}
