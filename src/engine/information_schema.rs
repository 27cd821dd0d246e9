//! `information_schema` in PostgreSQL's shape, over DataFusion's: `columns` numbers columns
//! from 1 and names types as PostgreSQL does (`data_type` `bigint`, `udt_name` `int8`,
//! `timestamp without time zone`; DataFusion's said `Int64`, `Timestamp(ns)`), with the
//! columns tools read (`udt_schema`, `is_identity`, `is_generated`, …); `table_constraints` and
//! `key_column_usage` exist (Metabase's sync joins them to find primary keys). The other tables
//! (`tables`, `views`, `schemata`, …) are DataFusion's.
//!
//! It is a schema of the catalog rather than DataFusion's built-in provider, so it is listed in
//! `pg_namespace` as PostgreSQL lists it.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, Int64Builder, RecordBatch, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::information_schema::InformationSchemaProvider;
use datafusion::catalog::{CatalogProviderList, SchemaProvider, Session, TableProvider};
use datafusion::datasource::memory::{MemTable, MemorySourceConfig};
use datafusion::datasource::TableType;
use datafusion::error::Result;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

/// The `information_schema` schema.
pub struct InformationSchema {
    inner: InformationSchemaProvider,
    catalogs: Arc<dyn CatalogProviderList>,
}

impl std::fmt::Debug for InformationSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InformationSchema")
    }
}

impl InformationSchema {
    /// Over the catalogs of `catalogs`.
    pub fn new(catalogs: Arc<dyn CatalogProviderList>) -> Self {
        InformationSchema {
            inner: InformationSchemaProvider::new(catalogs.clone()),
            catalogs,
        }
    }
}

/// Tables added to DataFusion's.
const CONSTRAINT_TABLES: [&str; 2] = ["table_constraints", "key_column_usage"];

#[async_trait]
impl SchemaProvider for InformationSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.inner.table_names();
        names.extend(CONSTRAINT_TABLES.iter().map(|t| t.to_string()));
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        match name.to_ascii_lowercase().as_str() {
            "columns" => Ok(Some(Arc::new(Columns {
                catalogs: self.catalogs.clone(),
            }))),
            "table_constraints" => empty(&[
                "constraint_catalog",
                "constraint_schema",
                "constraint_name",
                "table_catalog",
                "table_schema",
                "table_name",
                "constraint_type",
                "is_deferrable",
                "initially_deferred",
                "enforced",
                "nulls_distinct",
            ]),
            "key_column_usage" => empty(&[
                "constraint_catalog",
                "constraint_schema",
                "constraint_name",
                "table_catalog",
                "table_schema",
                "table_name",
                "column_name",
                "ordinal_position",
                "position_in_unique_constraint",
            ]),
            _ => self.inner.table(name).await,
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        CONSTRAINT_TABLES.contains(&name.to_ascii_lowercase().as_str())
            || self.inner.table_exist(name)
    }
}

/// A table of text columns with no rows: eddy has no constraints to list (an upsert table's
/// key is not yet shown as a PRIMARY KEY here).
fn empty(columns: &[&str]) -> Result<Option<Arc<dyn TableProvider>>> {
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(*c, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    Ok(Some(Arc::new(MemTable::try_new(schema, vec![vec![]])?)))
}

/// PostgreSQL's `data_type` and `udt_name` for an Arrow type.
fn pg_type_names(t: &DataType) -> (String, String) {
    let udt = arrow_pg::datatypes::into_pg_type(t)
        .map(|t| t.name().to_string())
        .unwrap_or_else(|_| "text".into());
    let data_type = match udt.as_str() {
        "bool" => "boolean",
        "int2" => "smallint",
        "int4" => "integer",
        "int8" => "bigint",
        "float4" => "real",
        "float8" => "double precision",
        "varchar" => "character varying",
        "bpchar" => "character",
        "timestamp" => "timestamp without time zone",
        "timestamptz" => "timestamp with time zone",
        "time" => "time without time zone",
        "timetz" => "time with time zone",
        a if a.starts_with('_') => "ARRAY",
        "text" | "date" | "interval" | "numeric" | "bytea" | "json" | "jsonb" | "uuid" | "char"
        | "name" | "oid" => udt.as_str(),
        _ => "USER-DEFINED",
    }
    .to_string();
    (data_type, udt)
}

/// The text columns of `information_schema.columns`, in PostgreSQL's order (those eddy fills).
const TEXT_COLUMNS: [&str; 9] = [
    "table_catalog",
    "table_schema",
    "table_name",
    "column_name",
    "column_default",
    "is_nullable",
    "data_type",
    "udt_catalog",
    "udt_schema",
];

/// `information_schema.columns`.
struct Columns {
    catalogs: Arc<dyn CatalogProviderList>,
}

impl std::fmt::Debug for Columns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("information_schema.columns")
    }
}

fn columns_schema() -> SchemaRef {
    let text = |n: &str| Field::new(n, DataType::Utf8, true);
    let int = |n: &str| Field::new(n, DataType::Int64, true);
    let mut fields: Vec<Field> = TEXT_COLUMNS[..4].iter().map(|c| text(c)).collect();
    fields.push(int("ordinal_position"));
    fields.extend(TEXT_COLUMNS[4..7].iter().map(|c| text(c)));
    fields.extend(
        [
            "character_maximum_length",
            "character_octet_length",
            "numeric_precision",
            "numeric_precision_radix",
            "numeric_scale",
            "datetime_precision",
        ]
        .map(int),
    );
    fields.extend(TEXT_COLUMNS[7..].iter().map(|c| text(c)));
    fields.extend(
        [
            "udt_name",
            "is_identity",
            "identity_generation",
            "is_generated",
            "generation_expression",
            "is_updatable",
        ]
        .map(text),
    );
    Arc::new(Schema::new(fields))
}

#[async_trait]
impl TableProvider for Columns {
    fn schema(&self) -> SchemaRef {
        columns_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = columns_schema();
        let mut text: Vec<StringBuilder> = (0..15).map(|_| StringBuilder::new()).collect();
        let mut ints: Vec<Int64Builder> = (0..7).map(|_| Int64Builder::new()).collect();
        for catalog_name in self.catalogs.catalog_names() {
            let Some(catalog) = self.catalogs.catalog(&catalog_name) else {
                continue;
            };
            for schema_name in catalog.schema_names() {
                let Some(s) = catalog.schema(&schema_name) else {
                    continue;
                };
                for table_name in s.table_names() {
                    let Some(table) = s.table(&table_name).await? else {
                        continue;
                    };
                    let updatable = table.table_type() == TableType::Base;
                    for (i, f) in table.schema().fields().iter().enumerate() {
                        let (data_type, udt) = pg_type_names(f.data_type());
                        let (precision, radix, scale) = match f.data_type() {
                            DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => {
                                (Some(i64::from(*p)), Some(10), Some(i64::from(*s)))
                            }
                            DataType::Int16 => (Some(16), Some(2), Some(0)),
                            DataType::Int32 => (Some(32), Some(2), Some(0)),
                            DataType::Int64 => (Some(64), Some(2), Some(0)),
                            DataType::Float32 => (Some(24), Some(2), None),
                            DataType::Float64 => (Some(53), Some(2), None),
                            _ => (None, None, None),
                        };
                        let datetime =
                            matches!(f.data_type(), DataType::Timestamp(..)).then_some(6);
                        let row: [Option<&str>; 15] = [
                            Some(&catalog_name),
                            Some(&schema_name),
                            Some(&table_name),
                            Some(f.name()),
                            None,
                            Some(if f.is_nullable() { "YES" } else { "NO" }),
                            Some(&data_type),
                            Some(&catalog_name),
                            Some("pg_catalog"),
                            Some(&udt),
                            Some("NO"),
                            None,
                            Some("NEVER"),
                            None,
                            Some(if updatable { "YES" } else { "NO" }),
                        ];
                        for (b, v) in text.iter_mut().zip(row) {
                            b.append_option(v);
                        }
                        let nums = [
                            Some(i as i64 + 1),
                            None,
                            None,
                            precision,
                            radix,
                            scale,
                            datetime,
                        ];
                        for (b, v) in ints.iter_mut().zip(nums) {
                            b.append_option(v);
                        }
                    }
                }
            }
        }
        let mut text: Vec<ArrayRef> = text
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef)
            .collect();
        let mut ints: Vec<ArrayRef> = ints
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef)
            .collect();
        // Put the columns in the schema's order.
        let mut columns: Vec<ArrayRef> = text.drain(..4).collect();
        columns.push(ints.remove(0));
        columns.extend(text.drain(..3));
        columns.extend(ints.drain(..6));
        columns.extend(text.drain(..8));
        let batch = RecordBatch::try_new(schema.clone(), columns)?;
        MemorySourceConfig::try_new_exec(&[vec![batch]], schema, projection.cloned())
            .map(|e| e as Arc<dyn ExecutionPlan>)
    }
}
