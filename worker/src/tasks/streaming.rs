//! Hadoop-Streaming user code: a command run with `sh -c` in the task's
//! working directory, fed lines on stdin, read line by line from stdout;
//! its stderr is kept (the tail) as the attempt's log.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

/// Bytes of stderr kept per attempt.
const STDERR_TAIL: usize = 16 * 1024;

pub struct Running {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    pub stdout: BufReader<tokio::process::ChildStdout>,
    pub stderr: Arc<Mutex<Vec<u8>>>,
    pub cmd: String,
}

pub fn spawn(cmd: &str, cwd: &Path) -> Result<Running, String> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Its own process group, so that a killed attempt takes its children along.
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    let stdin = child.stdin.take();
    let stdout = BufReader::with_capacity(256 * 1024, child.stdout.take().ok_or("no stdout")?);
    let mut err = child.stderr.take().ok_or("no stderr")?;
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let sink = stderr.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 8192];
        while let Ok(n) = err.read(&mut buf).await {
            if n == 0 {
                break;
            }
            let mut s = sink.lock().unwrap_or_else(|p| p.into_inner());
            s.extend_from_slice(&buf[..n]);
            if s.len() > STDERR_TAIL * 2 {
                let cut = s.len() - STDERR_TAIL;
                s.drain(..cut);
            }
        }
    });
    Ok(Running {
        child,
        stdin,
        stdout,
        stderr,
        cmd: cmd.to_string(),
    })
}

impl Drop for Running {
    fn drop(&mut self) {
        // A command still running here was abandoned (attempt killed or failed):
        // stop the whole group, not only `sh`.
        if let (Some(pid), Ok(None)) = (self.child.id(), self.child.try_wait()) {
            let group = format!("-{pid}");
            let _ = std::process::Command::new("kill")
                .args(["-s", "KILL", "--", &group])
                .status();
        }
    }
}

impl Running {
    pub fn stderr_tail(&self) -> String {
        let s = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        let start = s.len().saturating_sub(STDERR_TAIL);
        String::from_utf8_lossy(&s[start..]).to_string()
    }

    /// Next stdout line without its newline.
    pub async fn next_line(&mut self, buf: &mut Vec<u8>) -> Result<bool, String> {
        buf.clear();
        let n = self
            .stdout
            .read_until(b'\n', buf)
            .await
            .map_err(|e| format!("reading {}: {e}", self.cmd))?;
        if n == 0 {
            return Ok(false);
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
        }
        Ok(true)
    }

    /// Waits for the exit; a non-zero status fails the attempt.
    pub async fn wait(mut self) -> Result<String, (String, String)> {
        let status = self
            .child
            .wait()
            .await
            .map_err(|e| (format!("waiting for {}: {e}", self.cmd), self.stderr_tail()))?;
        // Let the stderr reader drain.
        tokio::task::yield_now().await;
        let log = self.stderr_tail();
        if status.success() {
            Ok(log)
        } else {
            Err((format!("{:?} exited with {status}", self.cmd), log))
        }
    }
}

/// Feeds lines to a child's stdin from a channel, closing it at the end.
pub fn feed(
    mut stdin: ChildStdin,
    mut lines: tokio::sync::mpsc::Receiver<Vec<u8>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(mut l) = lines.recv().await {
            l.push(b'\n');
            if stdin.write_all(&l).await.is_err() {
                return; // the command stopped reading; its exit status tells why
            }
        }
        let _ = stdin.shutdown().await;
    })
}
