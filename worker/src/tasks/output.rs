//! Writing a task's output lines to its attempt file in the cluster file system.

use basin_client::dfs::DfsWriter;
use basin_client::{CreateOptions, DfsClient};
use bytes::Bytes;

use super::records::write_text;

pub struct OutputWriter {
    w: DfsWriter,
    buf: Vec<u8>,
    pub records: u64,
}

const FLUSH_AT: usize = 1 << 20;

impl OutputWriter {
    pub async fn create(dfs: &DfsClient, path: &str) -> Result<Self, String> {
        if let Some(parent) = basin_common::path::parent(path) {
            dfs.mkdir(parent, true)
                .await
                .map_err(|e| format!("creating {parent}: {e}"))?;
        }
        let w = dfs
            .create(
                path,
                &CreateOptions {
                    overwrite: true,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| format!("creating {path}: {e}"))?;
        Ok(OutputWriter {
            w,
            buf: Vec::with_capacity(FLUSH_AT),
            records: 0,
        })
    }

    pub async fn write(&mut self, key: &[u8], value: &[u8]) -> Result<(), String> {
        let _ = write_text(&mut self.buf, key, value);
        self.records += 1;
        if self.buf.len() >= FLUSH_AT {
            self.flush().await?;
        }
        Ok(())
    }

    /// Writes bytes as they are (fixed-size binary records).
    pub async fn write_raw(&mut self, data: &[u8]) -> Result<(), String> {
        self.buf.extend_from_slice(data);
        self.records += 1;
        if self.buf.len() >= FLUSH_AT {
            self.flush().await?;
        }
        Ok(())
    }

    /// Writes a raw line (streaming output is passed through as is).
    pub async fn write_line(&mut self, line: &[u8]) -> Result<(), String> {
        self.buf.extend_from_slice(line);
        self.buf.push(b'\n');
        self.records += 1;
        if self.buf.len() >= FLUSH_AT {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), String> {
        let data = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(FLUSH_AT),
        ));
        self.w
            .write(data)
            .await
            .map_err(|e| format!("writing output: {e}"))
    }

    pub async fn close(mut self) -> Result<u64, String> {
        self.flush().await?;
        let n = self.records;
        self.w
            .close()
            .await
            .map_err(|e| format!("closing output: {e}"))?;
        Ok(n)
    }
}
