//! Moving block data to and from workers, shared by the client (put/get) and
//! by workers (re-replication).

use basin_proto as pb;
use basin_proto::worker_client::WorkerClient;
use bytes::Bytes;
use futures::StreamExt;
use tonic::Status;

use crate::rpc::{AuthChannel, Connector};

/// Size of one data message on the wire.
pub const WIRE_CHUNK: usize = 1024 * 1024;

pub fn worker_client(
    connector: &Connector,
    addr: &str,
) -> Result<WorkerClient<AuthChannel>, Status> {
    let ch = connector
        .channel(addr)
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    Ok(WorkerClient::new(ch)
        .max_decoding_message_size(crate::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(crate::MAX_MESSAGE_BYTES))
}

/// Sends a whole block down a pipeline `targets[0] → targets[1] → …`.
/// The response says which nodes stored it.
pub async fn write_block(
    connector: &Connector,
    targets: &[pb::NodeInfo],
    block_id: u64,
    data: Vec<Bytes>,
) -> Result<pb::WriteBlockResponse, Status> {
    let length: u64 = data.iter().map(|b| b.len() as u64).sum();
    let Some(first) = targets.first() else {
        return Err(Status::invalid_argument("empty pipeline"));
    };
    let mut client = worker_client(connector, &first.addr)?;
    let header = pb::WriteBlockMessage {
        msg: Some(pb::write_block_message::Msg::Header(pb::WriteBlockHeader {
            block_id,
            downstream: targets[1..].to_vec(),
            length,
        })),
    };
    let msgs = std::iter::once(header).chain(data.into_iter().flat_map(|b| {
        // Split large buffers into wire-sized messages without copying.
        let n = b.len().div_ceil(WIRE_CHUNK).max(1);
        (0..n)
            .map(move |i| b.slice(i * WIRE_CHUNK..((i + 1) * WIRE_CHUNK).min(b.len())))
            .filter(|s| !s.is_empty())
            .map(|s| pb::WriteBlockMessage {
                msg: Some(pb::write_block_message::Msg::Data(s)),
            })
            .collect::<Vec<_>>()
    }));
    let resp = client.write_block(futures::stream::iter(msgs)).await?;
    Ok(resp.into_inner())
}

/// Reads a byte range of a block replica from one worker, whole.
pub async fn read_block(
    connector: &Connector,
    addr: &str,
    block_id: u64,
    offset: u64,
    length: u64,
) -> Result<Vec<Bytes>, Status> {
    let mut client = worker_client(connector, addr)?;
    let mut stream = client
        .read_block(pb::ReadBlockRequest {
            block_id,
            offset,
            length,
        })
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.push(chunk?.data);
    }
    Ok(out)
}
