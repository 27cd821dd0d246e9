//! psql compatibility on top of `datafusion-pg-catalog`: materialized views
//! appear in `pg_class` with `relkind = 'm'`, so `\dm` lists them and `\dt`
//! does not. Everything else is the crate's own `pg_catalog`.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, StringArray};
use datafusion::arrow::datatypes::SchemaRef;
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

#[async_trait]
impl TableProvider for PgClass {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
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
        let views: Vec<String> = self
            .catalog
            .views()
            .iter()
            .map(|v| v.name.clone())
            .collect();
        let schema = self.schema();
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
