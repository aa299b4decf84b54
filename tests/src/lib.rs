//! Multi-process test harness: real `basin` processes on free loopback
//! ports, one log file per process, `kill -9` and restart, and helpers that
//! wait on a condition with a deadline (never a bare sleep). When a test
//! fails, the tail of every process log is printed.

pub mod streams;
pub mod warehouse;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// The `basin` binary built next to this test binary (`cargo build --workspace` first).
pub fn basin_bin() -> PathBuf {
    if let Ok(p) = std::env::var("BASIN_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    // target/debug/deps/<test> → target/debug/basin
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("basin");
    assert!(
        bin.exists(),
        "{} not found: run `cargo build --workspace` before the tests",
        bin.display()
    );
    bin
}

/// A free loopback port for a process to listen on. It is drawn from below
/// Linux's ephemeral range (32768+), so the outgoing connections of running
/// tests can never take it before the process binds it; ports already handed
/// out in this test process are not handed out again.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port: u16 = rand::random_range(20_000..32_000);
        let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
        if given.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
}

/// Polls `f` until it returns Some or the deadline passes.
pub fn wait_for<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> Result<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if start.elapsed() > deadline {
            bail!("timed out after {deadline:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One `basin` server process.
pub struct Proc {
    pub name: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub log: PathBuf,
    pub data_dir: PathBuf,
    pub addr: String,
    /// The `--http-listen` address (`/metrics`, `/healthz`, `/readyz`).
    pub http: String,
    child: Option<Child>,
}

impl Proc {
    pub fn start(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(basin_bin())
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env_remove("BASIN_MASTER")
            .env("RUST_LOG", "info,openraft=warn,sled=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawn {}", self.name))?;
        self.child = Some(child);
        Ok(())
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then wait for a clean exit; returns the exit status code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let start = Instant::now();
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                return st.code();
            }
            if start.elapsed() > Duration::from_secs(20) {
                let _ = c.kill();
                let _ = c.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Shapes of a test cluster.
#[derive(Clone, Debug)]
pub struct Spec {
    pub masters: usize,
    pub core: usize,
    pub task: usize,
    pub dead_after: &'static str,
    pub heartbeat: &'static str,
    pub extra_master_args: Vec<String>,
    /// Added to every server role (e.g. TLS flags).
    pub server_args: Vec<String>,
    /// Added to every CLI call (e.g. `--tls-ca`).
    pub client_args: Vec<String>,
    /// Added to every worker (e.g. stream limits).
    pub worker_args: Vec<String>,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            masters: 1,
            core: 3,
            task: 1,
            dead_after: "3s",
            heartbeat: "300ms",
            extra_master_args: vec![],
            server_args: vec![],
            client_args: vec![],
            worker_args: vec![],
        }
    }
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub token: String,
    pub masters: Vec<Proc>,
    pub workers: Vec<Proc>,
    pub spec: Spec,
}

impl Cluster {
    pub fn start(spec: Spec) -> Result<Cluster> {
        let dir = tempfile::Builder::new().prefix("basin-test-").tempdir()?;
        let token = format!("test-token-{}", rand::random::<u64>());
        let ports: Vec<u16> = (0..spec.masters).map(|_| free_port()).collect();
        let peers: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{}=127.0.0.1:{p}", i + 1))
            .collect();
        let mut c = Cluster {
            dir,
            token,
            masters: vec![],
            workers: vec![],
            spec: spec.clone(),
        };
        for (i, port) in ports.iter().enumerate() {
            let id = i + 1;
            let data = c.dir.path().join(format!("master-{id}"));
            let http = format!("127.0.0.1:{}", free_port());
            let mut args = vec![
                "master".into(),
                "--id".into(),
                id.to_string(),
                "--listen".into(),
                format!("127.0.0.1:{port}"),
                "--data-dir".into(),
                data.display().to_string(),
                "--peers".into(),
                peers.join(","),
                "--dead-after".into(),
                spec.dead_after.into(),
                "--http-listen".into(),
                http.clone(),
            ];
            args.extend(spec.extra_master_args.iter().cloned());
            args.extend(spec.server_args.iter().cloned());
            let mut p = Proc {
                name: format!("master-{id}"),
                args,
                env: vec![("BASIN_TOKEN".into(), c.token.clone())],
                log: c.dir.path().join(format!("master-{id}.log")),
                data_dir: data,
                addr: format!("127.0.0.1:{port}"),
                http,
                child: None,
            };
            p.start()?;
            c.masters.push(p);
        }
        for i in 0..spec.core {
            c.add_worker("core", &format!("core-{}", i + 1), &c.token.clone())?;
        }
        for i in 0..spec.task {
            c.add_worker("task", &format!("task-{}", i + 1), &c.token.clone())?;
        }
        if let Err(e) = c.wait_healthy(spec.core + spec.task) {
            c.dump_logs();
            return Err(e);
        }
        Ok(c)
    }

    pub fn master_list(&self) -> String {
        self.masters
            .iter()
            .map(|m| m.addr.clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Starts one more worker; returns its index in `workers`.
    pub fn add_worker(&mut self, role: &str, name: &str, token: &str) -> Result<usize> {
        let port = free_port();
        let data = self.dir.path().join(name);
        let http = format!("127.0.0.1:{}", free_port());
        let mut args: Vec<String> = vec![
            "worker".into(),
            "--role".into(),
            role.into(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--data-dir".into(),
            data.display().to_string(),
            "--master".into(),
            self.master_list(),
            "--heartbeat-interval".into(),
            self.spec.heartbeat.into(),
            "--block-report-interval".into(),
            "10s".into(),
            "--name".into(),
            name.into(),
            "--http-listen".into(),
            http.clone(),
        ];
        args.extend(self.spec.server_args.iter().cloned());
        args.extend(self.spec.worker_args.iter().cloned());
        let mut p = Proc {
            name: name.into(),
            args,
            env: vec![("BASIN_TOKEN".into(), token.into())],
            log: self.dir.path().join(format!("{name}.log")),
            data_dir: data,
            addr: format!("127.0.0.1:{port}"),
            http,
            child: None,
        };
        p.start()?;
        self.workers.push(p);
        Ok(self.workers.len() - 1)
    }

    /// Starts another role (`leader`, `compute`) on a free port; `addr` is its
    /// `--listen` (or `--pg-listen` for a leader). Returns its index in `workers`.
    pub fn add_role(&mut self, role: &str, name: &str, extra: &[&str]) -> Result<usize> {
        let addr = format!("127.0.0.1:{}", free_port());
        let http = format!("127.0.0.1:{}", free_port());
        let data = self.dir.path().join(name);
        let listen_flag = if role == "leader" {
            "--pg-listen"
        } else {
            "--listen"
        };
        let mut args: Vec<String> = vec![
            role.into(),
            listen_flag.into(),
            addr.clone(),
            "--master".into(),
            self.master_list(),
            "--http-listen".into(),
            http.clone(),
        ];
        if role == "compute" {
            args.extend(["--data-dir".into(), data.display().to_string()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut p = Proc {
            name: name.into(),
            args,
            env: vec![("BASIN_TOKEN".into(), self.token.clone())],
            log: self.dir.path().join(format!("{name}.log")),
            data_dir: data,
            addr,
            http,
            child: None,
        };
        p.start()?;
        self.workers.push(p);
        Ok(self.workers.len() - 1)
    }

    pub fn worker(&mut self, name: &str) -> &mut Proc {
        self.workers
            .iter_mut()
            .find(|w| w.name == name)
            .expect("worker by name")
    }

    /// Runs the CLI against this cluster.
    pub fn basin(&self, args: &[&str]) -> Output {
        self.basin_env(args, &[])
    }

    pub fn basin_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new(basin_bin())
            .args(["--master", &self.master_list(), "--token", &self.token])
            .args(&self.spec.client_args)
            .args(args)
            .envs(env.iter().copied())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .expect("run basin")
    }

    /// Runs the CLI and insists on success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> Result<String> {
        let out = self.basin(args);
        if !out.status.success() {
            bail!(
                "basin {args:?} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    }

    pub fn json(&self, args: &[&str]) -> Result<Value> {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let s = self.ok(&a)?;
        serde_json::from_str(&s).with_context(|| format!("json from {args:?}: {s}"))
    }

    pub fn status(&self) -> Result<Value> {
        self.json(&["cluster", "status"])
    }

    /// Waits for a leader, `workers` live workers and the end of safe mode.
    pub fn wait_healthy(&self, workers: usize) -> Result<()> {
        wait_for("a healthy cluster", Duration::from_secs(60), || {
            let s = self.status().ok()?;
            let live = s["nodes"]
                .as_array()?
                .iter()
                .filter(|n| n["state"] == "live")
                .count();
            (live >= workers && s["safe_mode"] == false && s["leader"]["id"].as_u64()? > 0)
                .then_some(())
        })
    }

    /// Writes `len` deterministic random bytes (from `seed`) to a local file
    /// and puts it at `dest` with the extra `put` options; returns the bytes.
    pub fn put_random(
        &self,
        dest: &str,
        len: usize,
        seed: u64,
        options: &[&str],
    ) -> Result<Vec<u8>> {
        let data = random_bytes(len, seed);
        let local = self.dir.path().join(format!("random-{seed}.bin"));
        std::fs::write(&local, &data)?;
        let local = local.display().to_string();
        let mut args = vec!["dfs", "put"];
        args.extend_from_slice(options);
        args.extend([local.as_str(), dest]);
        self.ok(&args)?;
        Ok(data)
    }

    /// Node ids holding each block of a file, from `dfs stat --json`.
    pub fn block_replicas(&self, path: &str) -> Result<Vec<(u64, Vec<u64>)>> {
        let st = self.json(&["dfs", "stat", path])?;
        Ok(st["blocks"]
            .as_array()
            .context("blocks")?
            .iter()
            .map(|b| {
                let reps = b["replicas"]
                    .as_array()
                    .map(|r| r.iter().filter_map(|n| n["id"].as_u64()).collect())
                    .unwrap_or_default();
                (b["block_id"].as_u64().unwrap_or(0), reps)
            })
            .collect())
    }

    /// Worker name → node id, from `cluster status`.
    pub fn node_id(&self, name: &str) -> Result<u64> {
        let s = self.status()?;
        s["nodes"]
            .as_array()
            .and_then(|ns| ns.iter().find(|n| n["name"] == name))
            .and_then(|n| n["id"].as_u64())
            .with_context(|| format!("no node named {name}"))
    }

    pub fn dump_logs(&self) {
        for p in self.masters.iter().chain(self.workers.iter()) {
            let text = p.log_text();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!(
                "----- {} ({}) last {} lines -----",
                p.name,
                p.log.display(),
                tail.len()
            );
            for l in tail {
                eprintln!("{l}");
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        for p in self.masters.iter_mut().chain(self.workers.iter_mut()) {
            p.kill9();
        }
    }
}

/// Deterministic pseudo-random bytes (xorshift), so failures can be reproduced.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A plain HTTP GET on loopback: (status code, body).
pub fn http_get(addr: &str, path: &str) -> Result<(u16, String)> {
    http_request(addr, "GET", path, &[], &[])
}

/// A plain HTTP/1.1 POST with extra headers; returns the status and body.
pub fn http_post(
    addr: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(u16, String)> {
    http_request(addr, "POST", path, headers, body)
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`).
fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if method != "GET" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let buf = String::from_utf8_lossy(&raw);
    let code = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("http status")?;
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

/// Number of finalized block files in a worker's data dir.
pub fn block_files(data_dir: &Path) -> usize {
    std::fs::read_dir(data_dir.join("blocks/current"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| {
                    let n = e.file_name().to_string_lossy().to_string();
                    n.starts_with("blk_") && !n.ends_with(".crc")
                })
                .count()
        })
        .unwrap_or(0)
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}
