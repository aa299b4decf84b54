//! Shared set-up for the warehouse tests: a cluster with compute nodes and a
//! leader, and `psql` sessions against it.

use std::process::Command;
use std::time::Duration;

use anyhow::Result;

use crate::{Cluster, Spec, free_port, http_get, wait_for};

pub fn psql_available() -> bool {
    Command::new("psql")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Runs statements in one psql session as user `basin` (the cluster token
/// is its password); returns (success, stdout, stderr).
/// Rows come back unaligned and tuples-only: `a|b|c`, NULL as empty.
pub fn psql(pg: &str, password: &str, stmts: &[&str]) -> (bool, String, String) {
    psql_as(pg, "basin", password, stmts)
}

/// As [`psql`], logged in as `user`.
pub fn psql_as(pg: &str, user: &str, password: &str, stmts: &[&str]) -> (bool, String, String) {
    let (host, port) = pg.split_once(':').expect("host:port");
    let mut cmd = Command::new("psql");
    cmd.args([
        "-h", host, "-p", port, "-U", user, "-d", "dev", "-X", "-A", "-t", "-q",
    ])
    .args(["-v", "VERBOSITY=verbose", "-v", "ON_ERROR_STOP=0"])
    .env("PGPASSWORD", password)
    .env("PGCONNECT_TIMEOUT", "10");
    for s in stmts {
        cmd.args(["-c", s]);
    }
    let o = cmd.output().expect("psql");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    )
}

/// Statements that must all succeed; their output.
pub fn psql_ok(pg: &str, password: &str, stmts: &[&str]) -> Result<String> {
    let (ok, out, err) = psql(pg, password, stmts);
    anyhow::ensure!(ok && err.trim().is_empty(), "psql failed: {err}");
    Ok(out)
}

/// A warehouse: `computes` compute nodes with two slices each and a leader,
/// on a cluster with `core` core workers (for `basin://` files).
pub struct Warehouse {
    pub computes: Vec<usize>,
    pub leader: usize,
    pub pg: String,
    /// The leader's Arrow Flight SQL address (`--listen`).
    pub flight: String,
}

pub fn start_warehouse(c: &mut Cluster, computes: usize) -> Result<Warehouse> {
    start_warehouse_with(c, computes, &[])
}

/// As [`start_warehouse`], with extra flags for the leader.
pub fn start_warehouse_with(
    c: &mut Cluster,
    computes: usize,
    leader_args: &[&str],
) -> Result<Warehouse> {
    let mut idx = Vec::new();
    for i in 0..computes {
        idx.push(c.add_role("compute", &format!("compute-{}", i + 1), &["--slices", "2"])?);
    }
    start_leader_with(c, idx, leader_args)
}

/// A leader over compute nodes the test started itself (with its own flags).
pub fn start_leader(c: &mut Cluster, computes: Vec<usize>) -> Result<Warehouse> {
    start_leader_with(c, computes, &[])
}

fn start_leader_with(c: &mut Cluster, idx: Vec<usize>, leader_args: &[&str]) -> Result<Warehouse> {
    let flight = format!("127.0.0.1:{}", free_port());
    let mut args = vec!["--listen", flight.as_str()];
    args.extend_from_slice(leader_args);
    let leader = c.add_role("leader", "leader", &args)?;
    for i in idx.iter().chain([&leader]) {
        let http = c.workers[*i].http.clone();
        wait_for("the role to be ready", Duration::from_secs(60), || {
            http_get(&http, "/readyz")
                .ok()
                .filter(|(code, _)| *code == 200)
        })?;
    }
    let pg = c.workers[leader].addr.clone();
    let token = c.token.clone();
    wait_for("the leader to answer psql", Duration::from_secs(30), || {
        psql(&pg, &token, &["SELECT 1"]).0.then_some(())
    })?;
    Ok(Warehouse {
        computes: idx,
        leader,
        pg,
        flight,
    })
}

/// A cluster of one master and `core` core workers, no task workers.
pub fn cluster(core: usize) -> Result<Cluster> {
    Cluster::start(Spec {
        core,
        task: 0,
        ..Spec::default()
    })
}

/// Runs a warehouse test on a cluster of one master and one core worker;
/// on failure prints every process's log tail and panics.
pub fn on_cluster(f: impl FnOnce(&mut Cluster) -> Result<()>) {
    let mut c = cluster(1).expect("cluster");
    if let Err(e) = f(&mut c) {
        c.dump_logs();
        panic!("{e:#}");
    }
}

/// [`on_cluster`] for a test that drives `psql`: says SKIPPED without it.
pub fn psql_test(f: impl FnOnce(&mut Cluster) -> Result<()>) {
    if !psql_available() {
        println!("SKIPPED: psql (postgresql-client) not installed");
        return;
    }
    on_cluster(f)
}
