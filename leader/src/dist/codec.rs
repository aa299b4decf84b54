//! Basin's own plan nodes inside DataFusion's plan protobuf: a scan of
//! slices and an exchange reader travel as JSON (their specs) with the Arrow
//! schema as protobuf bytes. Decoding binds them to the node that runs them
//! (its data directory and file-system client, the cluster token).

use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use datafusion::common::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use prost::Message;
use serde::{Deserialize, Serialize};

use super::exchange::{ExchangeSpec, ShuffleReaderExec};
use super::scan_exec::{ScanEnv, ScanSpec, SliceScanExec};
use crate::error::{Result, WarehouseError};

#[derive(Serialize, Deserialize)]
#[serde(tag = "node", rename_all = "snake_case")]
enum Node {
    Scan { spec: ScanSpec, schema: String },
    Exchange { spec: ExchangeSpec, schema: String },
}

#[derive(Debug, Clone)]
pub struct BasinCodec {
    pub env: ScanEnv,
}

fn df(e: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::Internal(format!("plan codec: {e}"))
}

fn schema_to_text(schema: &Schema) -> datafusion::error::Result<String> {
    let p = datafusion_proto::protobuf::Schema::try_from(schema).map_err(df)?;
    Ok(BASE64_STANDARD.encode(p.encode_to_vec()))
}

fn schema_from_text(text: &str) -> datafusion::error::Result<SchemaRef> {
    let bytes = BASE64_STANDARD.decode(text).map_err(df)?;
    let p = datafusion_proto::protobuf::Schema::decode(bytes.as_slice()).map_err(df)?;
    Ok(Arc::new(Schema::try_from(&p).map_err(df)?))
}

impl PhysicalExtensionCodec for BasinCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        _inputs: &[Arc<dyn ExecutionPlan>],
        _ctx: &TaskContext,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let node: Node = serde_json::from_slice(buf).map_err(df)?;
        Ok(match node {
            Node::Scan { spec, schema } => Arc::new(SliceScanExec::new(
                spec,
                schema_from_text(&schema)?,
                self.env.clone(),
            )),
            Node::Exchange { spec, schema } => Arc::new(ShuffleReaderExec::decoded(
                spec,
                schema_from_text(&schema)?,
                self.env.token.clone(),
            )),
        })
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> datafusion::error::Result<()> {
        let n = if let Some(s) = node.downcast_ref::<SliceScanExec>() {
            Node::Scan {
                spec: (*s.spec).clone(),
                schema: schema_to_text(s.schema_ref())?,
            }
        } else if let Some(r) = node.downcast_ref::<ShuffleReaderExec>() {
            Node::Exchange {
                spec: r.spec.clone(),
                schema: schema_to_text(r.schema_ref())?,
            }
        } else {
            return Err(DataFusionError::NotImplemented(format!(
                "{} cannot be sent to a compute node",
                node.name()
            )));
        };
        serde_json::to_writer(buf, &n).map_err(df)
    }
}

/// A plan as bytes for a compute node.
pub fn encode(plan: Arc<dyn ExecutionPlan>, codec: &BasinCodec) -> Result<Vec<u8>> {
    Ok(
        datafusion_proto::bytes::physical_plan_to_bytes_with_proto_converter(
            plan,
            codec,
            &super::subquery::LiteralSubqueries,
        )?
        .to_vec(),
    )
}

/// A plan from the leader, bound to this node.
pub fn decode(
    bytes: &[u8],
    ctx: &TaskContext,
    codec: &BasinCodec,
) -> Result<Arc<dyn ExecutionPlan>> {
    datafusion_proto::bytes::physical_plan_from_bytes_with_extension_codec(bytes, ctx, codec)
        .map_err(|e| WarehouseError::Invalid(format!("cannot decode the task's plan: {e}")))
}
