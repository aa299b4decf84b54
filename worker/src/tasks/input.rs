//! Reading a map task's input split as lines. A line belongs to the split in
//! which it starts: a split that does not start at 0 skips the line under
//! way, and the last line is read past the split's end to its newline — so
//! no line is lost or read twice.

use basin_client::{DfsClient, Location, transfer};
use basin_proto as pb;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::BoxStream;

pub struct LineReader {
    stream: BoxStream<'static, basin_client::Result<Bytes>>,
    buf: BytesMut,
    /// Absolute offset of `buf[0]`.
    pos: u64,
    /// Lines starting at or after this offset belong to the next split.
    end: Option<u64>,
    eof: bool,
}

pub async fn open(dfs: &DfsClient, split: &pb::InputSplit) -> Result<LineReader, String> {
    let loc = Location::parse(&split.path).map_err(|e| e.to_string())?;
    match loc {
        Location::Basin(p) if !split.whole_file => {
            let start = split.offset;
            let from = start.saturating_sub(1);
            let (_, stream) = dfs.open_from(&p, from).await.map_err(|e| e.to_string())?;
            let mut r = LineReader {
                stream,
                buf: BytesMut::new(),
                pos: from,
                end: Some(start + split.length),
                eof: false,
            };
            if start > 0 {
                // Skip through the first newline at or after start-1: the line
                // under way at `start` belongs to the previous split.
                r.next_raw().await?;
            }
            Ok(r)
        }
        other => {
            let src = transfer::open(dfs, &other)
                .await
                .map_err(|e| e.to_string())?;
            Ok(LineReader {
                stream: src.stream,
                buf: BytesMut::new(),
                pos: 0,
                end: None,
                eof: false,
            })
        }
    }
}

impl LineReader {
    /// The next line of this split, without its newline.
    pub async fn next_line(&mut self) -> Result<Option<Bytes>, String> {
        if self.end.is_some_and(|e| self.pos >= e) {
            return Ok(None);
        }
        self.next_raw().await
    }

    async fn next_raw(&mut self) -> Result<Option<Bytes>, String> {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let mut line = self.buf.split_to(i + 1);
                self.pos += line.len() as u64;
                line.truncate(i);
                return Ok(Some(line.freeze()));
            }
            if self.eof {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                let line = self.buf.split();
                self.pos += line.len() as u64;
                return Ok(Some(line.freeze()));
            }
            match self.stream.next().await {
                Some(Ok(chunk)) => self.buf.extend_from_slice(&chunk),
                Some(Err(e)) => return Err(format!("reading input: {e}")),
                None => self.eof = true,
            }
        }
    }
}

/// Reads a split of fixed-size binary records (TeraSort's format): a record
/// belongs to the split in which it starts.
pub struct FixedReader {
    stream: BoxStream<'static, basin_client::Result<Bytes>>,
    buf: BytesMut,
    pos: u64,
    end: u64,
    size: usize,
}

pub async fn open_fixed(
    dfs: &DfsClient,
    split: &pb::InputSplit,
    size: usize,
) -> Result<FixedReader, String> {
    let p = match Location::parse(&split.path).map_err(|e| e.to_string())? {
        Location::Basin(p) => p,
        _ => return Err("fixed-size record input must be on basin://".into()),
    };
    let size64 = size as u64;
    let start = split.offset.div_ceil(size64) * size64;
    let end = split.offset + split.length;
    let (_, stream) = dfs.open_from(&p, start).await.map_err(|e| e.to_string())?;
    Ok(FixedReader {
        stream,
        buf: BytesMut::new(),
        pos: start,
        end,
        size,
    })
}

impl FixedReader {
    pub async fn next_record(&mut self) -> Result<Option<Bytes>, String> {
        if self.pos >= self.end {
            return Ok(None);
        }
        while self.buf.len() < self.size {
            match self.stream.next().await {
                Some(Ok(chunk)) => self.buf.extend_from_slice(&chunk),
                Some(Err(e)) => return Err(format!("reading input: {e}")),
                None if self.buf.is_empty() => return Ok(None),
                None => return Err(format!("input ends inside a {}-byte record", self.size)),
            }
        }
        self.pos += self.size as u64;
        Ok(Some(self.buf.split_to(self.size).freeze()))
    }
}
