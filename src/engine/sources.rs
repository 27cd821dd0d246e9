//! `CREATE SOURCE` / `CREATE TABLE` schemas and connectors: column types
//! (including `STRUCT<…>` and `T[]`), `INCLUDE` metadata columns, the data
//! contract (`NOT NULL`, `CHECK`), and starting a connector's tasks.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::common::DFSchema;
use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{ColumnDef, ColumnOption, Expr as SqlExpr};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::Engine;
use crate::connectors::backfill::ReplaySpec;
use crate::connectors::contract::{Check, Contract};
use crate::connectors::datagen::{DatagenGenerator, DatagenOptions};
use crate::connectors::file::{read_files, FileOptions};
use crate::connectors::format::Format;
use crate::connectors::ingest::{Ingest, IngestSpec, Meta, OnError};
use crate::connectors::kafka::{read_kafka, DeadLetterTopic, KafkaOptions};
use crate::connectors::nexmark::{read_nexmark, NexmarkBatches, NexmarkOptions};
use crate::connectors::runner::{publish_reader, run_datagen, READER_CHANNEL_CAPACITY};
use crate::connectors::{BatchBounds, StreamObject};
use crate::error::{EddyError, Result};
use crate::sql::CreateStream;

/// A stream's columns as declared: the Arrow schema (payload columns, then
/// `INCLUDE` columns) and the `CHECK` constraints, unplanned.
pub(super) struct Columns {
    /// The full row schema.
    pub schema: SchemaRef,
    /// Metadata columns, in order, at the end of `schema`.
    pub includes: Vec<Meta>,
    /// `CHECK (…)` constraints as written.
    pub checks: Vec<SqlExpr>,
}

impl Engine {
    /// Plan the column definitions with DataFusion's type mapping and append `INCLUDE` columns.
    pub(super) async fn stream_columns(&self, c: &CreateStream) -> Result<Columns> {
        if c.columns.is_empty() {
            return Err(EddyError::syntax(format!(
                "{} \"{}\" needs at least one column",
                c.kind.noun(),
                c.name
            )));
        }
        let mut checks = Vec::new();
        let cols: Vec<String> = c
            .columns
            .iter()
            .map(|col| {
                let mut col: ColumnDef = col.clone();
                col.options.retain(|o| match &o.option {
                    ColumnOption::Check(expr) => {
                        checks.push(expr.expr.as_ref().clone());
                        false
                    }
                    _ => true,
                });
                col.to_string()
            })
            .collect();
        let sql = format!("CREATE TABLE __eddy_columns ({})", cols.join(", "));
        let stmt = Parser::new(&GenericDialect {})
            .try_with_sql(&sql)
            .and_then(|mut p| p.parse_statement())
            .map_err(|e| EddyError::syntax(e.to_string()))?;
        let plan = self
            .ctx
            .state()
            .statement_to_plan(DfStatement::Statement(Box::new(stmt)))
            .await?;
        let LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(t)) = plan else {
            return Err(EddyError::Internal("column planning gave no table".into()));
        };
        let mut fields: Vec<Field> = t
            .input
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        let mut includes = Vec::new();
        for (item, column) in &c.includes {
            let meta = Meta::parse(item).ok_or_else(|| {
                EddyError::syntax(format!(
                    "cannot INCLUDE \"{item}\": available are partition, offset, timestamp, key (Kafka) and file, offset (file)"
                ))
            })?;
            if fields.iter().any(|f| f.name() == column) {
                return Err(EddyError::DuplicateObject(format!(
                    "column \"{column}\" specified more than once"
                )));
            }
            fields.push(Field::new(column, meta.data_type(), true));
            includes.push(meta);
        }
        Ok(Columns {
            schema: Arc::new(Schema::new(fields)),
            includes,
            checks,
        })
    }

    /// Compile the data contract of a source: NOT NULL columns and CHECKs.
    fn contract(&self, columns: &Columns) -> Result<Contract> {
        let schema = &columns.schema;
        let not_null = schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| !f.is_nullable())
            .map(|(i, f)| (i, f.name().clone()))
            .collect();
        let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
        let state = self.ctx.state();
        let mut checks = Vec::new();
        for expr in &columns.checks {
            let logical = state.create_logical_expr(&expr.to_string(), &df_schema)?;
            checks.push(Check {
                sql: format!("CHECK ({expr})"),
                expr: crate::plan::physical_expr(&state, logical, &df_schema)?,
            });
        }
        Ok(Contract { not_null, checks })
    }

    /// Start the tasks of a source's connector.
    pub(super) fn start_connector(
        &self,
        c: &CreateStream,
        columns: &Columns,
        stream: &Arc<StreamObject>,
        tasks: &mut JoinSet<()>,
    ) -> Result<()> {
        let mut opts: BTreeMap<String, String> = self.with_secrets(&c.options, &c.secrets)?;
        let connector = opts.remove("connector").unwrap_or_default();
        match connector.as_str() {
            "datagen" => {
                if !columns.includes.is_empty() || !columns.checks.is_empty() {
                    return Err(EddyError::invalid(
                        "connector 'datagen' takes no INCLUDE and no CHECK constraints",
                    ));
                }
                let options =
                    DatagenOptions::parse(&columns.schema, &opts).map_err(EddyError::invalid)?;
                let rate = options.rows_per_second;
                let gen = DatagenGenerator::new(columns.schema.clone(), options);
                tasks.spawn(run_datagen(stream.clone(), gen, rate));
            }
            "file" => {
                let (ingest, bounds, spec) = self.ingest(columns, stream, &mut opts, None)?;
                if ingest.registry().is_some() {
                    return Err(EddyError::invalid(
                        "'schema.registry.url' is supported by connector 'kafka' only",
                    ));
                }
                let skip_header = matches!(
                    ingest_format(&c.options),
                    Some(Format::Csv { header: true, .. })
                );
                let mut file = FileOptions::from_options(&mut opts, skip_header)
                    .map_err(EddyError::invalid)?;
                file.path = self.readable_path("file", &file.path.to_string_lossy())?;
                no_leftovers("file", &opts)?;
                stream.set_replay(ReplaySpec::File {
                    opts: file.clone(),
                    spec,
                    bounds,
                });
                let (tx, rx) = mpsc::channel(READER_CHANNEL_CAPACITY);
                let resume = stream.resume_position();
                tasks.spawn_blocking(move || read_files(file, ingest, bounds, tx, resume));
                tasks.spawn(publish_reader(stream.clone(), rx));
            }
            "kafka" => {
                let mut kafka =
                    KafkaOptions::from_options(&c.name, &mut opts).map_err(EddyError::invalid)?;
                self.check_kafka_files(&mut kafka.properties)?;
                let (ingest, bounds, spec) =
                    self.ingest(columns, stream, &mut opts, Some(&kafka.bootstrap))?;
                no_leftovers("kafka", &opts)?;
                stream.set_replay(ReplaySpec::Kafka {
                    opts: kafka.clone(),
                    spec,
                    bounds,
                });
                let (tx, rx) = mpsc::channel(READER_CHANNEL_CAPACITY);
                let s = stream.clone();
                let resume = stream.resume_position();
                tasks.spawn_blocking(move || read_kafka(kafka, ingest, bounds, s, tx, resume));
                tasks.spawn(publish_reader(stream.clone(), rx));
            }
            "nexmark" => {
                if !columns.includes.is_empty() || !columns.checks.is_empty() {
                    return Err(EddyError::invalid(
                        "connector 'nexmark' takes no INCLUDE and no CHECK constraints",
                    ));
                }
                let options = NexmarkOptions::parse(&opts)?;
                let batches = NexmarkBatches::new(columns.schema.clone(), options)?;
                let (tx, rx) = mpsc::channel(READER_CHANNEL_CAPACITY);
                let resume = stream.resume_position();
                tasks.spawn_blocking(move || read_nexmark(batches, tx, resume));
                tasks.spawn(publish_reader(stream.clone(), rx));
            }
            other => {
                return Err(EddyError::InvalidParameter {
                    message: format!("unknown connector '{other}'"),
                    hint: Some("Available connectors: datagen, nexmark, file, kafka.".into()),
                })
            }
        }
        Ok(())
    }

    /// The decode → contract → dead-letter path of a file or Kafka source.
    fn ingest(
        &self,
        columns: &Columns,
        stream: &Arc<StreamObject>,
        opts: &mut BTreeMap<String, String>,
        source_brokers: Option<&str>,
    ) -> Result<(Ingest, BatchBounds, IngestSpec)> {
        let mut format = Format::from_options(opts).map_err(EddyError::invalid)?;
        if let Format::Changes { keys, .. } = &mut format {
            *keys = stream.primary_key().unwrap_or_default();
        }
        let on_error = OnError::from_options(opts).map_err(EddyError::invalid)?;
        let bounds =
            BatchBounds::from_options(opts, self.limits.partitions).map_err(EddyError::invalid)?;
        let spec = IngestSpec {
            format,
            includes: columns.includes.clone(),
            contract: self.contract(columns)?,
            on_error,
        };
        let mut ingest = Ingest::new(stream.clone(), spec.clone(), self.dead_letters.clone())
            .map_err(EddyError::invalid)?;
        let dlq_brokers = opts.remove("dead_letter.bootstrap.servers");
        if let Some(topic) = opts.remove("dead_letter.topic") {
            if on_error != OnError::DeadLetter {
                return Err(EddyError::invalid(
                    "'dead_letter.topic' needs on_error = 'dead_letter'",
                ));
            }
            let brokers = dlq_brokers.as_deref().or(source_brokers).ok_or_else(|| {
                EddyError::invalid("'dead_letter.topic' needs 'dead_letter.bootstrap.servers'")
            })?;
            ingest = ingest.with_dead_letter_topic(
                DeadLetterTopic::new(brokers, topic).map_err(EddyError::invalid)?,
            );
        }
        Ok((ingest, bounds, spec))
    }
}

fn ingest_format(options: &BTreeMap<String, String>) -> Option<Format> {
    let mut o = options.clone();
    Format::from_options(&mut o).ok()
}

/// Reject options nobody read.
fn no_leftovers(connector: &str, opts: &BTreeMap<String, String>) -> Result<()> {
    match opts.keys().next() {
        None => Ok(()),
        Some(k) => Err(EddyError::invalid(format!(
            "unknown option '{k}' for connector '{connector}'"
        ))),
    }
}
