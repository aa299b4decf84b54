//! Uncorrelated scalar subqueries (`WHERE x > (SELECT avg(x) FROM t)`).
//! DataFusion evaluates them inside the plan, in whichever process runs the
//! `ScalarSubqueryExec`; stages on other nodes could not see the value. So
//! each subquery runs first, as a distributed query of its own, its value is
//! stored where the plan's `ScalarSubqueryExpr`s read it, and the plan is
//! sent to the compute nodes with those expressions as literals.

use std::sync::Arc;

use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::DataFusionError;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Literal;
use datafusion::physical_expr::scalar_subquery::ScalarSubqueryExpr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::scalar_subquery::ScalarSubqueryExec;
use datafusion_proto::physical_plan::from_proto::parse_physical_expr_with_converter;
use datafusion_proto::physical_plan::to_proto::serialize_physical_expr_with_converter;
use datafusion_proto::physical_plan::{
    PhysicalExtensionCodec, PhysicalPlanDecodeContext, PhysicalPlanNodeExt,
    PhysicalProtoConverterExtension,
};
use datafusion_proto::protobuf;
use futures::FutureExt;
use futures::future::BoxFuture;

use crate::engine::{Engine, Planned};
use crate::error::{Result, WarehouseError};

/// `plan` without its `ScalarSubqueryExec`s (each replaced by its main
/// input), and the subquery plans they held, innermost first.
pub fn strip(
    plan: Arc<dyn ExecutionPlan>,
    subqueries: &mut Vec<Arc<dyn ExecutionPlan>>,
) -> Result<Arc<dyn ExecutionPlan>> {
    Ok(plan
        .transform_up(|p| {
            if let Some(s) = p.downcast_ref::<ScalarSubqueryExec>() {
                subqueries.extend(s.subqueries().iter().map(|l| l.plan.clone()));
                return Ok(Transformed::yes(s.input().clone()));
            }
            Ok(Transformed::no(p))
        })?
        .data)
}

/// The one value a subquery's rows hold.
fn scalar(
    batches: &[arrow::array::RecordBatch],
    plan: &Arc<dyn ExecutionPlan>,
) -> Result<ScalarValue> {
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    if rows > 1 {
        return Err(WarehouseError::Sql(DataFusionError::Execution(
            "more than one row returned by a subquery used as an expression".into(),
        )));
    }
    let schema = plan.schema();
    let field = schema
        .fields()
        .first()
        .ok_or_else(|| WarehouseError::Invalid("a scalar subquery returns no column".into()))?;
    match batches.iter().find(|b| b.num_rows() > 0) {
        Some(b) => Ok(ScalarValue::try_from_array(b.column(0), 0)?),
        None => Ok(ScalarValue::try_from(field.data_type())?),
    }
}

impl Engine {
    /// Runs every scalar subquery of `plan` (innermost first) and returns the
    /// plan without its `ScalarSubqueryExec`s, their values filled in.
    pub(crate) fn resolve_subqueries<'a>(
        &'a self,
        plan: Arc<dyn ExecutionPlan>,
        p: &'a Planned,
    ) -> BoxFuture<'a, Result<Arc<dyn ExecutionPlan>>> {
        async move {
            let mut children = Vec::new();
            for c in plan.children().into_iter().cloned() {
                children.push(self.resolve_subqueries(c, p).await?);
            }
            let plan = if children.is_empty() {
                plan
            } else {
                #[allow(deprecated)]
                plan.with_new_children(children)?
            };
            let Some(s) = plan.downcast_ref::<ScalarSubqueryExec>() else {
                return Ok(plan);
            };
            for link in s.subqueries() {
                let (batches, _) = self.run_physical(link.plan.clone(), p).await?;
                s.results().set(link.index, scalar(&batches, &link.plan)?)?;
            }
            Ok(s.input().clone())
        }
        .boxed()
    }
}

/// Plan serialization that writes a scalar subquery whose value is known
/// as that value.
pub struct LiteralSubqueries;

impl PhysicalProtoConverterExtension for LiteralSubqueries {
    fn proto_to_execution_plan(
        &self,
        proto: &protobuf::PhysicalPlanNode,
        ctx: &PhysicalPlanDecodeContext<'_>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        proto.try_into_physical_plan_with_context(ctx, self)
    }

    fn execution_plan_to_proto(
        &self,
        plan: &Arc<dyn ExecutionPlan>,
        codec: &dyn PhysicalExtensionCodec,
    ) -> datafusion::error::Result<protobuf::PhysicalPlanNode> {
        protobuf::PhysicalPlanNode::try_from_physical_plan_with_converter(plan.clone(), codec, self)
    }

    fn proto_to_physical_expr(
        &self,
        proto: &protobuf::PhysicalExprNode,
        input_schema: &arrow::datatypes::Schema,
        ctx: &PhysicalPlanDecodeContext<'_>,
    ) -> datafusion::error::Result<Arc<dyn PhysicalExpr>> {
        parse_physical_expr_with_converter(proto, input_schema, ctx, self)
    }

    fn physical_expr_to_proto(
        &self,
        expr: &Arc<dyn PhysicalExpr>,
        codec: &dyn PhysicalExtensionCodec,
    ) -> datafusion::error::Result<protobuf::PhysicalExprNode> {
        // `index` is deprecated only because DataFusion's own serialization
        // stopped needing it; it is how this one finds the value.
        #[allow(deprecated)]
        if let Some(s) = expr.downcast_ref::<ScalarSubqueryExpr>()
            && let Some(v) = s.results().get(s.index())
        {
            let lit: Arc<dyn PhysicalExpr> = Arc::new(Literal::new(v));
            return serialize_physical_expr_with_converter(&lit, codec, self);
        }
        serialize_physical_expr_with_converter(expr, codec, self)
    }
}
