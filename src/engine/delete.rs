//! `DELETE FROM table [WHERE …]` on an upsert table: the rows the condition
//! selects (a plain DataFusion query over the table's current rows) become
//! delete operations in the table's log and retractions for its views.

use std::sync::Arc;

use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::sqlparser::ast;

use super::{Engine, Outcome};
use crate::catalog::ObjectRef;
use crate::connectors::StreamObject;
use crate::error::{EddyError, Result};
use crate::sql::statement::normalize_object_name;
use crate::sql::ObjectKind;

impl Engine {
    /// The table a DELETE removes rows from, and the query selecting them.
    pub async fn delete_plan(
        &self,
        stmt: &ast::Statement,
    ) -> Result<(Arc<StreamObject>, LogicalPlan)> {
        let ast::Statement::Delete(d) = stmt else {
            return Err(EddyError::Internal("not a DELETE".into()));
        };
        let (ast::FromTable::WithFromKeyword(from) | ast::FromTable::WithoutKeyword(from)) =
            &d.from;
        let unsupported = d.using.is_some()
            || d.returning.is_some()
            || d.limit.is_some()
            || !d.order_by.is_empty()
            || !d.tables.is_empty();
        let ([t], false) = (from.as_slice(), unsupported) else {
            return Err(EddyError::not_supported(
                "DELETE with USING, RETURNING, LIMIT or several tables",
            ));
        };
        let ast::TableFactor::Table { name, .. } = &t.relation else {
            return Err(EddyError::not_supported("DELETE from a table function"));
        };
        if !t.joins.is_empty() {
            return Err(EddyError::not_supported("DELETE with a join"));
        }
        let name = normalize_object_name(name)?;
        let stream = self
            .catalog
            .with(|e| match e.get(&name).map(|e| &e.object) {
                Some(ObjectRef::Stream(s)) if s.is_upsert() => Ok(s.clone()),
                Some(ObjectRef::Stream(s)) if s.kind == ObjectKind::Table => {
                    Err(EddyError::NotSupported {
                        message: format!(
                            "cannot DELETE from table \"{name}\": it is an append-only stream"
                        ),
                        hint: Some(
                            "Give the table a PRIMARY KEY (an upsert table) to delete rows by key."
                                .into(),
                        ),
                    })
                }
                Some(_) => Err(EddyError::InvalidParameter {
                    message: format!("cannot DELETE from \"{name}\": it is not a table"),
                    hint: None,
                }),
                None => Err(EddyError::UndefinedObject(format!(
                    "relation \"{name}\" does not exist"
                ))),
            })?;
        let filter = d
            .selection
            .as_ref()
            .map(|e| format!(" WHERE {e}"))
            .unwrap_or_default();
        let sql = format!("SELECT * FROM {}{filter}", t.relation);
        let plan = self.ctx.state().create_logical_plan(&sql).await?;
        Ok((stream, plan))
    }

    pub(super) async fn delete(
        &self,
        stmt: ast::Statement,
        params: Option<ParamValues>,
    ) -> Result<Outcome> {
        let (stream, plan) = self.delete_plan(&stmt).await?;
        let plan = match params {
            Some(p) => plan.with_param_values(p)?,
            None => plan,
        };
        let batches = self.ctx.execute_logical_plan(plan).await?.collect().await?;
        let mut ops = Vec::new();
        let mut rows = 0;
        for b in batches.into_iter().filter(|b| b.num_rows() > 0) {
            rows += b.num_rows();
            let b = datafusion::arrow::record_batch::RecordBatch::try_new(
                stream.schema.clone(),
                b.columns().to_vec(),
            )?;
            ops.push(crate::connectors::upsert::with_op(&b, false)?);
        }
        stream.insert(ops).await?;
        Ok(Outcome::Command {
            tag: "DELETE".into(),
            rows: Some(rows),
        })
    }
}
