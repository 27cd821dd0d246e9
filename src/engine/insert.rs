//! `INSERT INTO table VALUES … | SELECT …`: evaluate the rows with
//! DataFusion, fit them to the table's columns, enforce NOT NULL, push.

use std::sync::Arc;

use datafusion::arrow::array::{new_null_array, Array, ArrayRef};
use datafusion::arrow::compute::{cast_with_options, CastOptions};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::FormatOptions;
use datafusion::common::ParamValues;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast;

use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use futures::StreamExt;

use super::interrupt::Interrupt;
use super::{Engine, Outcome};
use crate::catalog::ObjectRef;
use crate::connectors::StreamObject;
use crate::error::{EddyError, Result};
use crate::sql::statement::{normalize_ident, normalize_object_name};

/// The column an INSERT target names (its last identifier).
fn column_name(c: &ast::ObjectName) -> String {
    c.0.last()
        .and_then(|p| p.as_ident())
        .map(normalize_ident)
        .unwrap_or_default()
}
use crate::sql::ObjectKind;

impl Engine {
    /// `INSERT`: the rows are computed as a stream and inserted in chunks of
    /// at most [`INSERT_CHUNK_BYTES`] (each checked whole, then logged and
    /// published), so `INSERT … SELECT` of any size runs in bounded memory.
    /// An INSERT that fits in one chunk is all or nothing; a larger one that
    /// fails midway says how many rows went in before the error. A cancel or
    /// `statement_timeout` stops it between chunks.
    pub(super) async fn insert(
        &self,
        stmt: ast::Statement,
        params: Option<ParamValues>,
        interrupt: &mut Interrupt,
    ) -> Result<Outcome> {
        let ast::Statement::Insert(ins) = stmt else {
            return Err(EddyError::Internal("not an INSERT".into()));
        };
        let ast::TableObject::TableName(name) = &ins.table else {
            return Err(EddyError::not_supported("INSERT INTO a table function"));
        };
        let name = normalize_object_name(name)?;
        let stream = self.insert_target(&name, "INSERT into")?;
        let Some(source) = ins.source.clone() else {
            return Err(EddyError::not_supported("INSERT without VALUES or SELECT"));
        };
        let schema = stream.schema.clone();
        let columns: Vec<String> = ins.columns.iter().map(column_name).collect();
        let targets = target_columns(&name, &schema, &columns)?;
        let plan = self
            .ctx
            .state()
            .statement_to_plan(DfStatement::Statement(Box::new(ast::Statement::Query(
                source,
            ))))
            .await?;
        let plan = match params {
            Some(p) => plan.with_param_values(p)?,
            None => plan,
        };
        let df = interrupt
            .run(async { Ok(self.ctx.execute_logical_plan(plan).await?) })
            .await?;
        let mut rows = interrupt
            .run(async { Ok(df.execute_stream().await?) })
            .await?;
        let mut chunk = Chunk::new(&self.ctx);
        let mut inserted = 0usize;
        let result: Result<()> = async {
            loop {
                let next = interrupt.run(async { Ok(rows.next().await) }).await?;
                let Some(b) = next else { break };
                let b = b?;
                if b.num_columns() != targets.len() {
                    return Err(EddyError::DatatypeMismatch(format!(
                        "INSERT has {} expressions but {} target columns",
                        b.num_columns(),
                        targets.len()
                    )));
                }
                let batch = fit(&name, &schema, &targets, &b)?;
                // Refused before anything is logged: a logged row must replay.
                if let Some((row, why)) = stream.event_time_violations(&batch).into_iter().next() {
                    return Err(EddyError::DatetimeOverflow(format!(
                        "row {} of the INSERT into \"{name}\": {why}",
                        inserted + chunk.rows + row + 1
                    )));
                }
                // An upsert table logs operations: these rows are upserts.
                let batch = if stream.is_upsert() {
                    crate::connectors::upsert::with_op(&batch, true)?
                } else {
                    batch
                };
                if !chunk.add(batch) {
                    inserted += chunk.flush(&stream).await?;
                }
            }
            inserted += chunk.flush(&stream).await?;
            Ok(())
        }
        .await;
        match result {
            Ok(()) => Ok(Outcome::Command {
                tag: "INSERT".into(),
                rows: Some(inserted),
            }),
            Err(e) if inserted == 0 => Err(e),
            Err(e) => Err(partial_insert(e, inserted)),
        }
    }
}

impl Engine {
    /// The table `name`, which INSERT and COPY FROM may write: not a source, view or sink.
    /// `verb` says which in the error (`INSERT into`, `COPY to`).
    pub(super) fn insert_target(&self, name: &str, verb: &str) -> Result<Arc<StreamObject>> {
        self.catalog.with(|e| match e.get(name).map(|e| &e.object) {
            Some(ObjectRef::Stream(s)) if s.kind == ObjectKind::Table => Ok(s.clone()),
            Some(ObjectRef::Stream(_)) => Err(EddyError::InvalidParameter {
                message: format!("cannot {verb} source \"{name}\": it is fed by its connector"),
                hint: None,
            }),
            Some(ObjectRef::View(_)) => Err(EddyError::InvalidParameter {
                message: format!("cannot {verb} materialized view \"{name}\""),
                hint: None,
            }),
            Some(ObjectRef::Sink(_)) => Err(EddyError::InvalidParameter {
                message: format!("cannot {verb} sink \"{name}\""),
                hint: None,
            }),
            None => Err(EddyError::UndefinedObject(format!(
                "relation \"{name}\" does not exist"
            ))),
        })
    }
}

/// Positions in `schema` of the named target `columns`, in the order given (none named: all).
pub(super) fn target_columns(
    table: &str,
    schema: &datafusion::arrow::datatypes::SchemaRef,
    columns: &[String],
) -> Result<Vec<usize>> {
    if columns.is_empty() {
        return Ok((0..schema.fields().len()).collect());
    }
    columns
        .iter()
        .map(|c| {
            schema.index_of(c).map_err(|_| {
                EddyError::UndefinedColumn(format!(
                    "column \"{c}\" of relation \"{table}\" does not exist"
                ))
            })
        })
        .collect()
}

/// Most bytes of rows an INSERT holds before logging and publishing them;
/// an INSERT up to this size is all or nothing.
pub const INSERT_CHUNK_BYTES: usize = 64 << 20;

/// Rows of an INSERT not yet logged, counted against the query memory pool.
pub(super) struct Chunk {
    batches: Vec<RecordBatch>,
    rows: usize,
    bytes: usize,
    reservation: MemoryReservation,
}

impl Chunk {
    pub(super) fn new(ctx: &datafusion::prelude::SessionContext) -> Self {
        let pool = ctx.runtime_env().memory_pool.clone();
        Chunk {
            batches: Vec::new(),
            rows: 0,
            bytes: 0,
            reservation: MemoryConsumer::new("INSERT").register(&pool),
        }
    }

    /// Add `batch`; false when the chunk should be flushed now (it is full,
    /// or the query memory pool has no room for more).
    pub(super) fn add(&mut self, batch: RecordBatch) -> bool {
        let size = batch.get_array_memory_size();
        let granted = self.reservation.try_grow(size).is_ok();
        self.bytes += size;
        self.rows += batch.num_rows();
        self.batches.push(batch);
        granted && self.bytes < INSERT_CHUNK_BYTES
    }

    /// Log and publish the rows held; returns how many.
    pub(super) async fn flush(&mut self, stream: &StreamObject) -> Result<usize> {
        let rows = self.rows;
        if rows > 0 {
            stream.insert(std::mem::take(&mut self.batches)).await?;
        }
        self.rows = 0;
        self.bytes = 0;
        self.reservation.free();
        Ok(rows)
    }
}

/// The error of an INSERT that failed after some of its chunks went in.
pub(super) fn partial_insert(e: EddyError, inserted: usize) -> EddyError {
    let note = format!(
        " ({inserted} rows were inserted before this: an INSERT larger than {} MiB goes in \
         chunks)",
        INSERT_CHUNK_BYTES >> 20
    );
    match e {
        EddyError::DatatypeMismatch(m) => EddyError::DatatypeMismatch(m + &note),
        EddyError::DatetimeOverflow(m) => EddyError::DatetimeOverflow(m + &note),
        EddyError::NotNullViolation(m) => EddyError::NotNullViolation(m + &note),
        EddyError::Canceled(m) => EddyError::Canceled(m + &note),
        EddyError::Execution(m) => EddyError::Execution(m + &note),
        other => other,
    }
}

impl Engine {
    /// Types of `$n` parameters of an INSERT: a parameter standing alone in
    /// a VALUES row takes the type of the column it fills.
    pub fn insert_param_types(
        &self,
        stmt: &ast::Statement,
    ) -> Result<Vec<Option<datafusion::arrow::datatypes::DataType>>> {
        let ast::Statement::Insert(ins) = stmt else {
            return Ok(vec![]);
        };
        let ast::TableObject::TableName(name) = &ins.table else {
            return Ok(vec![]);
        };
        let name = normalize_object_name(name)?;
        let Some(schema) = self
            .catalog
            .with(|e| match e.get(&name).map(|e| &e.object) {
                Some(ObjectRef::Stream(s)) => Some(s.schema.clone()),
                _ => None,
            })
        else {
            return Ok(vec![]);
        };
        let targets: Vec<Option<usize>> = if ins.columns.is_empty() {
            (0..schema.fields().len()).map(Some).collect()
        } else {
            ins.columns
                .iter()
                .map(|c| schema.index_of(&column_name(c)).ok())
                .collect()
        };
        let mut types: Vec<Option<datafusion::arrow::datatypes::DataType>> = Vec::new();
        let Some(source) = &ins.source else {
            return Ok(types);
        };
        if let ast::SetExpr::Values(values) = source.body.as_ref() {
            for row in &values.rows {
                for (j, e) in row.iter().enumerate() {
                    if let ast::Expr::Value(v) = e {
                        if let ast::Value::Placeholder(p) = &v.value {
                            if let Ok(n) = p.trim_start_matches('$').parse::<usize>() {
                                if (1..=65_535).contains(&n) {
                                    if types.len() < n {
                                        types.resize(n, None);
                                    }
                                    types[n - 1] = targets
                                        .get(j)
                                        .copied()
                                        .flatten()
                                        .map(|i| schema.field(i).data_type().clone());
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(types)
    }
}

/// Cast `b`'s columns to the table's types at `targets`, NULL elsewhere; check NOT NULL.
pub(super) fn fit(
    table: &str,
    schema: &datafusion::arrow::datatypes::SchemaRef,
    targets: &[usize],
    b: &RecordBatch,
) -> Result<RecordBatch> {
    let opts = CastOptions {
        safe: false,
        format_options: FormatOptions::default(),
    };
    let n = b.num_rows();
    let mut cols: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| new_null_array(f.data_type(), n))
        .collect();
    for (src, &dst) in targets.iter().enumerate() {
        let field = schema.field(dst);
        let value = b.column(src);
        // PostgreSQL reads '2020-04-15 08:05' as a timestamp; Arrow wants the seconds.
        let completed = match (value.data_type(), field.data_type()) {
            (
                DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8,
                DataType::Timestamp(..),
            ) => crate::pgtext::datetime::complete_seconds_in(value.as_ref()),
            _ => None,
        };
        let value = completed.as_ref().unwrap_or(value);
        cols[dst] = cast_with_options(value, field.data_type(), &opts).map_err(|e| {
            EddyError::DatatypeMismatch(format!(
                "column \"{}\" is of type {} but the value cannot be converted: {e}",
                field.name(),
                super::show::sql_type_name(field.data_type())
            ))
        })?;
    }
    for (i, f) in schema.fields().iter().enumerate() {
        if !f.is_nullable() && cols[i].null_count() > 0 {
            return Err(EddyError::NotNullViolation(format!(
                "null value in column \"{}\" of relation \"{table}\" violates not-null constraint",
                f.name()
            )));
        }
    }
    Ok(RecordBatch::try_new(Arc::clone(schema), cols)?)
}
