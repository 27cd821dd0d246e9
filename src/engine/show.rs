//! `SHOW TABLES | SOURCES | MATERIALIZED VIEWS`, `SHOW CREATE`, `DESCRIBE`.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;

use super::{Engine, Outcome};
use crate::catalog::ObjectRef;
use crate::error::{EddyError, Result};
use crate::sql::ObjectKind;

fn string_batch(columns: &[&str], rows: Vec<Vec<String>>) -> Result<RecordBatch> {
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(*c, DataType::Utf8, false))
            .collect::<Vec<_>>(),
    ));
    let cols: Vec<ArrayRef> = (0..columns.len())
        .map(|i| {
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r[i].clone()),
            )) as ArrayRef
        })
        .collect();
    Ok(RecordBatch::try_new(schema, cols)?)
}

/// Postgres-style name of an Arrow type.
pub(crate) fn sql_type_name(t: &DataType) -> String {
    match t {
        DataType::Boolean => "boolean".into(),
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => "smallint".into(),
        DataType::Int32 | DataType::UInt16 => "integer".into(),
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => "bigint".into(),
        DataType::Float16 | DataType::Float32 => "real".into(),
        DataType::Float64 => "double precision".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "varchar".into(),
        DataType::Timestamp(_, None) => "timestamp".into(),
        DataType::Timestamp(_, Some(_)) => "timestamptz".into(),
        DataType::Date32 | DataType::Date64 => "date".into(),
        DataType::Decimal128(p, s) => format!("numeric({p},{s})"),
        DataType::Interval(_) => "interval".into(),
        DataType::Binary | DataType::LargeBinary => "bytea".into(),
        other => other.to_string().to_lowercase(),
    }
}

impl Engine {
    pub(super) fn show_objects(&self, kind: ObjectKind) -> Result<Outcome> {
        let rows: Vec<Vec<String>> = self.catalog.with(|e| {
            e.iter()
                .filter(|(_, e)| e.kind() == kind)
                .map(|(name, e)| match &e.object {
                    ObjectRef::Stream(s) => vec![name.clone(), s.connector.clone()],
                    ObjectRef::View(v) => vec![name.clone(), v.emit.name().to_string()],
                    ObjectRef::Sink(s) => vec![name.clone(), s.from.clone(), s.connector.clone()],
                })
                .collect()
        });
        let batch = match kind {
            ObjectKind::Table => string_batch(
                &["name"],
                rows.into_iter().map(|mut r| vec![r.remove(0)]).collect(),
            )?,
            ObjectKind::Source => string_batch(&["name", "connector"], rows)?,
            ObjectKind::MaterializedView => string_batch(&["name", "emit_mode"], rows)?,
            ObjectKind::Sink => string_batch(&["name", "from", "connector"], rows)?,
        };
        self.rows(batch)
    }

    pub(super) fn show_create(&self, kind: ObjectKind, name: &str) -> Result<Outcome> {
        let sql = self.catalog.with(|e| match e.get(name) {
            Some(e) if e.kind() == kind => Ok(e.sql.clone()),
            Some(e) => Err(EddyError::InvalidParameter {
                message: format!("\"{name}\" is not a {}", kind.noun()),
                hint: Some(format!("Use SHOW CREATE {}.", e.kind().sql_name())),
            }),
            None => Err(EddyError::UndefinedObject(format!(
                "{} \"{name}\" does not exist",
                kind.noun()
            ))),
        })?;
        self.rows(string_batch(
            &["name", "create_sql"],
            vec![vec![name.to_string(), sql]],
        )?)
    }

    pub(super) async fn describe(&self, name: &str) -> Result<Outcome> {
        let provider = self.ctx.table_provider(name).await.map_err(|_| {
            EddyError::UndefinedObject(format!("relation \"{name}\" does not exist"))
        })?;
        let schema = provider.schema();
        let time_col = self.catalog.with(|e| {
            e.get(name).and_then(|e| match &e.object {
                ObjectRef::Stream(s) => s.time_column().map(str::to_string),
                ObjectRef::View(v) => v.output.time.column.clone(),
                ObjectRef::Sink(_) => None,
            })
        });
        let rows = schema
            .fields()
            .iter()
            .map(|f| {
                vec![
                    f.name().clone(),
                    sql_type_name(f.data_type()),
                    if f.is_nullable() { "YES" } else { "NO" }.to_string(),
                    if time_col.as_deref() == Some(f.name().as_str()) {
                        "event time (watermark)".to_string()
                    } else {
                        String::new()
                    },
                ]
            })
            .collect();
        self.rows(string_batch(
            &["column_name", "data_type", "is_nullable", "comment"],
            rows,
        )?)
    }
}
