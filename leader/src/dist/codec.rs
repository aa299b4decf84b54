//! Basin's own plan nodes inside DataFusion's plan protobuf: a scan of
//! slices and an exchange reader travel as JSON (their specs) with the Arrow
//! schema as protobuf bytes. Decoding binds them to the node that runs them
//! (its data directory and file-system client, the cluster token).

use std::sync::Arc;

use arrow::compute::SortOptions;
use arrow::datatypes::{Schema, SchemaRef};
use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use datafusion::common::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::physical_expr::expressions::Literal;
use datafusion::physical_expr::{
    AcrossPartitions, ConstExpr, EquivalenceProperties, PhysicalExpr, PhysicalSortExpr,
};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::physical_plan::{
    PhysicalExtensionCodec, PhysicalPlanDecodeContext, PhysicalProtoConverterExtension,
};
use prost::Message;
use serde::{Deserialize, Serialize};

use super::exchange::{ExchangeSpec, ShuffleReaderExec};
use super::scan_exec::{ScanEnv, ScanSpec, SliceScanExec};
use crate::error::{Result, WarehouseError};

#[derive(Serialize, Deserialize)]
#[serde(tag = "node", rename_all = "snake_case")]
enum Node {
    Scan {
        spec: ScanSpec,
        schema: String,
    },
    Exchange {
        spec: ExchangeSpec,
        schema: String,
        #[serde(default)]
        props: Props,
    },
}

/// What the consumer was planned knowing of an exchange's rows: columns
/// that are constant and orders the rows keep. Operators such as a sorted
/// window aggregate check them when they run, so they travel with the reader.
/// Expressions are DataFusion protobuf, base64.
#[derive(Default, Serialize, Deserialize)]
struct Props {
    constants: Vec<Constant>,
    orderings: Vec<Vec<SortKey>>,
}

#[derive(Serialize, Deserialize)]
struct Constant {
    expr: String,
    /// The same value in every partition (a literal when it is known).
    uniform: bool,
    value: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct SortKey {
    expr: String,
    descending: bool,
    nulls_first: bool,
}

fn expr_to_text(
    e: &Arc<dyn PhysicalExpr>,
    codec: &BasinCodec,
    conv: &dyn PhysicalProtoConverterExtension,
) -> datafusion::error::Result<String> {
    Ok(BASE64_STANDARD.encode(conv.physical_expr_to_proto(e, codec)?.encode_to_vec()))
}

fn expr_from_text(
    text: &str,
    schema: &Schema,
    ctx: &PhysicalPlanDecodeContext<'_>,
    conv: &dyn PhysicalProtoConverterExtension,
) -> datafusion::error::Result<Arc<dyn PhysicalExpr>> {
    let bytes = BASE64_STANDARD.decode(text).map_err(df)?;
    let node =
        datafusion_proto::protobuf::PhysicalExprNode::decode(bytes.as_slice()).map_err(df)?;
    conv.proto_to_physical_expr(&node, schema, ctx)
}

impl Props {
    fn of(
        eq: &EquivalenceProperties,
        codec: &BasinCodec,
        conv: &dyn PhysicalProtoConverterExtension,
    ) -> datafusion::error::Result<Self> {
        let constants = eq
            .constants()
            .into_iter()
            .map(|c| {
                let (uniform, value) = match &c.across_partitions {
                    AcrossPartitions::Uniform(v) => (
                        true,
                        v.as_ref()
                            .map(|v| {
                                let lit: Arc<dyn PhysicalExpr> = Arc::new(Literal::new(v.clone()));
                                expr_to_text(&lit, codec, conv)
                            })
                            .transpose()?,
                    ),
                    AcrossPartitions::Heterogeneous => (false, None),
                };
                Ok(Constant {
                    expr: expr_to_text(&c.expr, codec, conv)?,
                    uniform,
                    value,
                })
            })
            .collect::<datafusion::error::Result<_>>()?;
        let orderings = eq
            .oeq_class()
            .iter()
            .map(|o| {
                o.iter()
                    .map(|k| {
                        Ok(SortKey {
                            expr: expr_to_text(&k.expr, codec, conv)?,
                            descending: k.options.descending,
                            nulls_first: k.options.nulls_first,
                        })
                    })
                    .collect::<datafusion::error::Result<Vec<_>>>()
            })
            .collect::<datafusion::error::Result<_>>()?;
        Ok(Self {
            constants,
            orderings,
        })
    }

    fn apply(
        &self,
        schema: SchemaRef,
        ctx: &PhysicalPlanDecodeContext<'_>,
        conv: &dyn PhysicalProtoConverterExtension,
    ) -> datafusion::error::Result<EquivalenceProperties> {
        let mut eq = EquivalenceProperties::new(schema.clone());
        let mut constants = Vec::new();
        for c in &self.constants {
            let expr = expr_from_text(&c.expr, &schema, ctx, conv)?;
            let across = match (&c.value, c.uniform) {
                (Some(v), _) => {
                    let lit = expr_from_text(v, &schema, ctx, conv)?;
                    AcrossPartitions::Uniform(
                        lit.downcast_ref::<Literal>().map(|l| l.value().clone()),
                    )
                }
                (None, true) => AcrossPartitions::Uniform(None),
                (None, false) => AcrossPartitions::Heterogeneous,
            };
            constants.push(ConstExpr::new(expr, across));
        }
        eq.add_constants(constants)?;
        let mut orderings = Vec::new();
        for o in &self.orderings {
            let mut keys = Vec::new();
            for k in o {
                keys.push(PhysicalSortExpr::new(
                    expr_from_text(&k.expr, &schema, ctx, conv)?,
                    SortOptions {
                        descending: k.descending,
                        nulls_first: k.nulls_first,
                    },
                ));
            }
            orderings.push(keys);
        }
        eq.add_orderings(orderings);
        Ok(eq)
    }
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
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let node: Node = serde_json::from_slice(buf).map_err(df)?;
        Ok(match node {
            Node::Scan { spec, schema } => Arc::new(SliceScanExec::new(
                spec,
                schema_from_text(&schema)?,
                self.env.clone(),
            )),
            Node::Exchange {
                spec,
                schema,
                props,
            } => {
                let schema = schema_from_text(&schema)?;
                let decode = PhysicalPlanDecodeContext::new(ctx, self);
                let eq = props.apply(schema, &decode, proto_converter)?;
                Arc::new(ShuffleReaderExec::decoded(spec, eq, self.env.token.clone()))
            }
        })
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
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
                props: Props::of(&r.properties().eq_properties, self, proto_converter)?,
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
