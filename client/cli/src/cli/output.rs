//! Human and JSON output helpers, and progress bars.

use indicatif::{ProgressBar, ProgressStyle};

/// Prints JSON to stdout; a closed pipe (`| head`) is not an error.
pub fn print_json(v: &serde_json::Value) {
    use std::io::Write;
    let text = serde_json::to_string_pretty(v).unwrap_or_default();
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

/// A byte progress bar on stderr (hidden when stderr is not a terminal).
pub fn bytes_bar(len: Option<u64>, label: &str) -> ProgressBar {
    let pb = match len {
        Some(l) => ProgressBar::new(l),
        None => ProgressBar::no_length(),
    };
    let style = ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    pb.set_style(style);
    pb.set_message(label.to_string());
    pb
}

pub fn human_bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}

pub fn mode_string(is_dir: bool, mode: u32) -> String {
    let mut s = String::from(if is_dir { "d" } else { "-" });
    for shift in [6, 3, 0] {
        let m = (mode >> shift) & 7;
        s.push(if m & 4 != 0 { 'r' } else { '-' });
        s.push(if m & 2 != 0 { 'w' } else { '-' });
        s.push(if m & 1 != 0 { 'x' } else { '-' });
    }
    s
}

pub fn time_string(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A minimal HTTP GET (no client library in the image): Ok when the answer is 200.
pub async fn healthcheck(addr: &str, path: &str) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&buf).to_string())
    };
    let text = tokio::time::timeout(std::time::Duration::from_secs(3), fut)
        .await
        .map_err(|_| anyhow::anyhow!("{addr}{path}: no answer within 3s"))??;
    let code = text.split_whitespace().nth(1).unwrap_or("");
    if code != "200" {
        anyhow::bail!("{addr}{path} answered {code:?}");
    }
    println!("ok");
    Ok(())
}
