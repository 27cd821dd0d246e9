//! psql compatibility on top of `datafusion-pg-catalog`:
//!
//! - materialized views appear in `pg_class` with `relkind = 'm'`, so `\dm` lists them and
//!   `\dt` does not; `pg_class.reloptions` exists (NULL);
//! - the array columns the crate keeps as text (`pg_index.indkey` as `1 2`,
//!   `pg_constraint.conkey` as `[1, 2]`, `pg_proc.proargtypes`) are arrays, as in PostgreSQL,
//!   so the queries of SQLAlchemy's reflection, Metabase and pgcli can `unnest` them, index
//!   them and compare with `= ANY(…)`.
//!
//! Everything else is the crate's own `pg_catalog`.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, ListArray, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::TableType;
use datafusion::error::Result;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::{collect, ExecutionPlan};

use crate::catalog::Catalog;

/// Wraps the `pg_catalog` schema to patch `pg_class`.
pub struct PgCatalogOverlay {
    inner: Arc<dyn SchemaProvider>,
    catalog: Arc<Catalog>,
}

impl std::fmt::Debug for PgCatalogOverlay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgCatalogOverlay")
    }
}

impl PgCatalogOverlay {
    /// Overlay `inner` (the crate's pg_catalog schema).
    pub fn new(inner: Arc<dyn SchemaProvider>, catalog: Arc<Catalog>) -> Self {
        PgCatalogOverlay { inner, catalog }
    }
}

#[async_trait]
impl SchemaProvider for PgCatalogOverlay {
    fn table_names(&self) -> Vec<String> {
        self.inner.table_names()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let t = self.inner.table(name).await?;
        if let Some((_, columns)) = ARRAY_COLUMNS
            .iter()
            .find(|(table, _)| name.eq_ignore_ascii_case(table))
        {
            return Ok(t.map(|inner| ArrayColumns::over(inner, columns)));
        }
        if name.eq_ignore_ascii_case("pg_class") {
            Ok(t.map(|inner| {
                Arc::new(PgClass {
                    inner,
                    catalog: self.catalog.clone(),
                }) as Arc<dyn TableProvider>
            }))
        } else {
            Ok(t)
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }
}

struct PgClass {
    inner: Arc<dyn TableProvider>,
    catalog: Arc<Catalog>,
}

impl std::fmt::Debug for PgClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgClass")
    }
}

impl PgClass {
    /// The crate's `pg_class` lacks `reloptions` (psql's `\d+`, SQLAlchemy's index reflection
    /// read it): it is added, NULL for every relation (eddy has no storage options).
    fn missing_reloptions(&self) -> bool {
        self.inner.schema().index_of("reloptions").is_err()
    }

    fn with_reloptions(b: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
        let mut cols: Vec<ArrayRef> = b.columns().to_vec();
        cols.push(datafusion::arrow::array::new_null_array(
            &reloptions_type(),
            b.num_rows(),
        ));
        Ok(RecordBatch::try_new(schema.clone(), cols)?)
    }
}

fn reloptions_type() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

#[async_trait]
impl TableProvider for PgClass {
    fn schema(&self) -> SchemaRef {
        let inner = self.inner.schema();
        if !self.missing_reloptions() {
            return inner;
        }
        let mut fields: Vec<Field> = inner.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("reloptions", reloptions_type(), true));
        Arc::new(Schema::new(fields))
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let plan = self.inner.scan(state, None, &[], None).await?;
        let mut batches = collect(plan, state.task_ctx()).await?;
        let schema = self.schema();
        if self.missing_reloptions() {
            batches = batches
                .into_iter()
                .map(|b| Self::with_reloptions(b, &schema))
                .collect::<Result<_>>()?;
        }
        let views: Vec<String> = self
            .catalog
            .views()
            .iter()
            .map(|v| v.name.clone())
            .collect();
        let (Ok(name_idx), Ok(kind_idx)) = (schema.index_of("relname"), schema.index_of("relkind"))
        else {
            return MemorySourceConfig::try_new_exec(&[batches], schema, projection.cloned())
                .map(|e| e as Arc<dyn ExecutionPlan>);
        };
        let mut patched = Vec::with_capacity(batches.len());
        for b in batches {
            let names = b.column(name_idx).as_any().downcast_ref::<StringArray>();
            let kinds = b.column(kind_idx).as_any().downcast_ref::<StringArray>();
            let (Some(names), Some(kinds)) = (names, kinds) else {
                patched.push(b);
                continue;
            };
            let new_kinds: StringArray = (0..b.num_rows())
                .map(|i| {
                    if kinds.is_null(i) {
                        None
                    } else if kinds.value(i) == "v" && views.iter().any(|v| v == names.value(i)) {
                        Some("m")
                    } else {
                        Some(kinds.value(i))
                    }
                })
                .collect();
            let mut cols: Vec<ArrayRef> = b.columns().to_vec();
            cols[kind_idx] = Arc::new(new_kinds);
            patched.push(RecordBatch::try_new(b.schema(), cols)?);
        }
        MemorySourceConfig::try_new_exec(&[patched], schema, projection.cloned())
            .map(|e| e as Arc<dyn ExecutionPlan>)
    }
}

/// Columns PostgreSQL has as arrays (`int2vector`, `oidvector`, `int2[]`, `oid[]`), by table,
/// with their element types.
const ARRAY_COLUMNS: &[(&str, &[(&str, DataType)])] = &[
    (
        "pg_index",
        &[
            ("indkey", DataType::Int16),
            ("indclass", DataType::Int32),
            ("indcollation", DataType::Int32),
            ("indoption", DataType::Int16),
        ],
    ),
    (
        "pg_constraint",
        &[
            ("conkey", DataType::Int16),
            ("confkey", DataType::Int16),
            ("conpfeqop", DataType::Int32),
            ("conppeqop", DataType::Int32),
            ("conffeqop", DataType::Int32),
            ("conexclop", DataType::Int32),
        ],
    ),
    ("pg_policy", &[("polroles", DataType::Int32)]),
    (
        "pg_proc",
        &[
            ("proargtypes", DataType::Int32),
            ("proallargtypes", DataType::Int32),
        ],
    ),
];

/// A table whose text-encoded array columns are read as arrays.
struct ArrayColumns {
    inner: Arc<dyn TableProvider>,
    /// Column index and element type of each array column.
    columns: Vec<(usize, DataType)>,
    schema: SchemaRef,
}

impl std::fmt::Debug for ArrayColumns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ArrayColumns")
    }
}

impl ArrayColumns {
    fn over(inner: Arc<dyn TableProvider>, wanted: &[(&str, DataType)]) -> Arc<dyn TableProvider> {
        let base = inner.schema();
        let columns: Vec<(usize, DataType)> = wanted
            .iter()
            .filter_map(|(name, t)| {
                let i = base.index_of(name).ok()?;
                // Only text columns are rewritten: if the crate already has an array, keep it.
                matches!(
                    base.field(i).data_type(),
                    DataType::Utf8 | DataType::Utf8View
                )
                .then(|| (i, t.clone()))
            })
            .collect();
        if columns.is_empty() {
            return inner;
        }
        let fields: Vec<Field> = base
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| match columns.iter().find(|(c, _)| *c == i) {
                Some((_, t)) => Field::new(
                    f.name(),
                    DataType::List(Arc::new(Field::new("item", t.clone(), true))),
                    true,
                ),
                None => f.as_ref().clone(),
            })
            .collect();
        Arc::new(ArrayColumns {
            inner,
            columns,
            schema: Arc::new(Schema::new(fields)),
        })
    }
}

/// The numbers of `1 2`, `[1, 2]` or `{1,2}` (empty text: no numbers).
fn numbers_of(text: &str) -> std::result::Result<Vec<i64>, std::num::ParseIntError> {
    text.trim_matches(|c| c == '[' || c == ']' || c == '{' || c == '}')
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect()
}

fn array_column(text: &dyn Array, element: &DataType) -> Result<ArrayRef> {
    let text = datafusion::arrow::compute::cast(text, &DataType::Utf8)?;
    let text = text.as_string::<i32>();
    let mut values: Vec<Option<Vec<Option<i64>>>> = Vec::with_capacity(text.len());
    for i in 0..text.len() {
        if text.is_null(i) {
            values.push(None);
            continue;
        }
        let numbers = numbers_of(text.value(i)).map_err(|e| {
            datafusion::error::DataFusionError::Execution(format!(
                "pg_catalog array {:?}: {e}",
                text.value(i)
            ))
        })?;
        values.push(Some(numbers.into_iter().map(Some).collect()));
    }
    let list = ListArray::from_iter_primitive::<Int64Type, _, _>(values);
    let target = DataType::List(Arc::new(Field::new("item", element.clone(), true)));
    Ok(datafusion::arrow::compute::cast(&list, &target)?)
}

#[async_trait]
impl TableProvider for ArrayColumns {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let plan = self.inner.scan(state, None, &[], None).await?;
        let batches = collect(plan, state.task_ctx()).await?;
        let mut converted = Vec::with_capacity(batches.len());
        for b in batches {
            let mut cols: Vec<ArrayRef> = b.columns().to_vec();
            for (i, element) in &self.columns {
                cols[*i] = array_column(cols[*i].as_ref(), element)?;
            }
            converted.push(RecordBatch::try_new(self.schema.clone(), cols)?);
        }
        MemorySourceConfig::try_new_exec(&[converted], self.schema.clone(), projection.cloned())
            .map(|e| e as Arc<dyn ExecutionPlan>)
    }
}

#[cfg(test)]
mod tests {
    use super::numbers_of;

    #[test]
    fn vectors_and_arrays_read_as_numbers() {
        assert_eq!(numbers_of("1 2").unwrap(), vec![1, 2]);
        assert_eq!(numbers_of("[2, 20, 3]").unwrap(), vec![2, 20, 3]);
        assert_eq!(numbers_of("{1,2}").unwrap(), vec![1, 2]);
        assert_eq!(numbers_of("").unwrap(), Vec::<i64>::new());
        assert!(numbers_of("[x]").is_err());
    }
}
