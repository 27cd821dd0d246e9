//! `ALTER SOURCE s ADD [COLUMN] col type`: a source reads a new column from
//! its next record on, and the views that read it keep working unchanged.
//!
//! A new stream object with the new columns takes over exactly where the old
//! one stopped: the old stream is held (nothing is published), its position
//! goes into the new stream (as a restore would), the new connector resumes
//! from it, the old one's tasks end, and the old stream's subscribers move to
//! the new stream's publisher with a projection back to the columns they were
//! built for. After a restart views are planned again against the new
//! columns, so the statement is refused when that would change any view's
//! operators or output (`SELECT *`).

use std::sync::Arc;

use datafusion::common::TableReference;
use tokio::task::JoinSet;

use super::replace::{difference, shape, stored_definition};
use super::{Engine, Outcome};
use crate::catalog::ObjectRef;
use crate::connectors::{StreamObject, StreamTable};
use crate::error::{EddyError, Result};
use crate::sql::alter_source::{with_column, AlterSource};
use crate::sql::{ObjectKind, Statement};
use crate::types::projection::Projection;

/// Connectors that generate their rows from the definition.
const GENERATORS: [&str; 2] = ["datagen", "nexmark"];

fn command() -> Outcome {
    Outcome::Command {
        tag: "ALTER SOURCE".into(),
        rows: None,
    }
}

impl Engine {
    /// `ALTER SOURCE … ADD COLUMN …` (under the DDL lock).
    pub(super) async fn alter_source(&self, a: AlterSource) -> Result<Outcome> {
        let found = self.catalog.with(|e| {
            e.get(&a.name).map(|e| match &e.object {
                ObjectRef::Stream(s) => Ok((s.clone(), e.sql.clone())),
                _ => Err(e.kind()),
            })
        });
        let (old, old_sql) = match found {
            None if a.if_exists => {
                return Ok(command()
                    .with_notice(format!("relation \"{}\" does not exist, skipping", a.name)))
            }
            None => {
                return Err(EddyError::UndefinedObject(format!(
                    "source \"{}\" does not exist",
                    a.name
                )))
            }
            Some(Err(kind)) => {
                return Err(EddyError::Data {
                    code: "42809",
                    message: format!("\"{}\" is a {}, not a source", a.name, kind.noun()),
                })
            }
            Some(Ok(found)) => found,
        };
        check_alterable(&a.name, &old)?;
        let column = a.column.name.value.clone();
        if old.schema.index_of(&column).is_ok() {
            if a.if_not_exists {
                return Ok(command().with_notice(format!(
                    "column \"{column}\" of relation \"{}\" already exists, skipping",
                    a.name
                )));
            }
            return Err(EddyError::Data {
                code: "42701",
                message: format!(
                    "column \"{column}\" of relation \"{}\" already exists",
                    a.name
                ),
            });
        }
        let new_sql = with_column(&old_sql, &a.column_sql)?;
        let Some(Statement::CreateStream(c)) = crate::sql::parse(&new_sql)?.into_iter().next()
        else {
            return Err(EddyError::Internal(format!(
                "the stored definition of \"{}\" is not a CREATE SOURCE: {old_sql}",
                a.name
            )));
        };
        let id = self.durable.as_ref().and_then(|d| d.id_of(&a.name));
        let (c, columns, new) = self.build_stream(*c, id).await?;
        let projection = Projection::new(
            old.schema
                .fields()
                .iter()
                .map(|f| new.schema.index_of(f.name()))
                .collect::<std::result::Result<Vec<_>, _>>()?,
        );
        self.check_dependants(&a.name, &new).await?;
        // Recorded first: if that fails nothing has changed; if the handover fails, undone.
        if let Some(d) = &self.durable {
            d.redefined(&a.name, &c.sql)?;
        }

        // The handover: nothing is published by the old stream from here on.
        let held = old.hold().await;
        let position = old.position_while_held(&held);
        new.restore_position(&position).await;
        let mut tasks = JoinSet::new();
        let started = self
            .start_connector(&c, &columns, &new, &mut tasks)
            .and_then(|()| new.carry_over(&old));
        let moved = match started {
            Ok(()) => {
                let mut from = old.publisher.hold().await;
                let mut to = new.publisher.hold().await;
                from.move_subscribers(&mut to, &projection)
            }
            Err(e) => Err(e),
        };
        if let Err(e) = moved {
            tasks.shutdown().await;
            drop(held);
            if let Some(d) = &self.durable {
                if let Err(undo) = d.redefined(&a.name, &old_sql) {
                    tracing::error!(source = %a.name, error = %undo,
                        "cannot record the source's definition back after a failed ALTER");
                }
            }
            return Err(e);
        }
        let old_tasks = self.catalog.with(|e| {
            e.get_mut(&a.name).map(|e| {
                e.object = ObjectRef::Stream(new.clone());
                e.sql = c.sql.clone();
                std::mem::replace(&mut e.tasks, tasks)
            })
        });
        // The old reader's publishing task waits on the held stream: ending it
        // closes the reader thread's channel, which ends that thread.
        if let Some(mut t) = old_tasks {
            t.shutdown().await;
        }
        drop(held);
        self.ctx
            .deregister_table(TableReference::bare(a.name.as_str()))?;
        self.ctx.register_table(
            TableReference::bare(a.name.as_str()),
            Arc::new(StreamTable(new)),
        )?;
        Ok(command())
    }

    /// Refuse when an object reading the source would change at a restart, or
    /// cannot be carried over now.
    async fn check_dependants(&self, name: &str, new: &StreamObject) -> Result<()> {
        let mut changed = Vec::new();
        for d in self.catalog.dependants(name) {
            let found = self.catalog.with(|e| {
                e.get(&d).map(|e| match &e.object {
                    ObjectRef::View(v) => Some((v.clone(), e.sql.clone())),
                    _ => None,
                })
            });
            let Some(found) = found else { continue };
            let Some((view, sql)) = found else {
                return Err(EddyError::NotSupported {
                    message: format!(
                        "cannot add a column to source \"{name}\": sink \"{d}\" writes its rows, \
                         and would write the new column after a restart"
                    ),
                    hint: Some(
                        "Drop the sink, alter the source, and create the sink again (or sink a \
                         view that names its columns)."
                            .into(),
                    ),
                });
            };
            if view.status() == "backfilling" {
                return Err(EddyError::Data {
                    code: "55000",
                    message: format!(
                        "materialized view \"{d}\" on source \"{name}\" is backfilling; the \
                         source can be altered once eddy.views shows it running"
                    ),
                });
            }
            if let Some(why) = self.plan_changes(&sql, name, new).await? {
                changed.push(format!("\"{d}\" ({why})"));
            }
        }
        if changed.is_empty() {
            return Ok(());
        }
        Err(EddyError::NotSupported {
            message: format!(
                "cannot add a column to source \"{name}\": materialized view(s) {} would change \
                 when planned against the new columns at a restart",
                changed.join(", ")
            ),
            hint: Some(
                "Name the view's columns instead of SELECT *, or drop the view, alter the \
                 source, and create it again."
                    .into(),
            ),
        })
    }

    /// Why the view stored as `sql` would plan differently with `source`
    /// replaced by `new` (`None`: the same operators and output).
    async fn plan_changes(
        &self,
        sql: &str,
        source: &str,
        new: &StreamObject,
    ) -> Result<Option<String>> {
        let def = stored_definition(sql)?;
        let (before, inputs) = match self.plan(&def).await {
            Ok(planned) => planned,
            Err(e) => return Ok(Some(format!("its definition no longer plans: {e}"))),
        };
        let kind = |n: &str| inputs.get(n).map_or("?".to_string(), |i| i.kind.clone());
        let mut substituted = inputs.clone();
        if let Some(i) = substituted.get_mut(source) {
            i.schema = new.schema.clone();
        }
        let after = match self.plan_with(&def, substituted).await {
            Ok((after, _)) => after,
            Err(e) => return Ok(Some(format!("it would no longer plan: {e}"))),
        };
        if before.output.schema.fields() != after.output.schema.fields() {
            let names = |p: &crate::plan::ViewPlan| -> Vec<String> {
                p.output
                    .schema
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect()
            };
            return Ok(Some(format!(
                "its columns would become {}",
                names(&after).join(", ")
            )));
        }
        Ok(difference(&shape(&before, &kind)?, &shape(&after, &kind)?)
            .map(|what| format!("its operators would change: {what}")))
    }
}

/// Refuse objects whose columns cannot grow in place.
fn check_alterable(name: &str, s: &StreamObject) -> Result<()> {
    if s.kind == ObjectKind::Table {
        return Err(EddyError::NotSupported {
            message: format!("ALTER SOURCE cannot add a column to table \"{name}\""),
            hint: Some(
                "Tables are fed by INSERT: create a new table with the column and INSERT INTO it."
                    .into(),
            ),
        });
    }
    if GENERATORS.contains(&s.connector.as_str()) {
        return Err(EddyError::NotSupported {
            message: format!(
                "cannot add a column to source \"{name}\": connector '{}' generates its rows \
                 from the source's definition",
                s.connector
            ),
            hint: Some("Create a new source with the column.".into()),
        });
    }
    if s.is_upsert() {
        return Err(EddyError::NotSupported {
            message: format!(
                "cannot add a column to source \"{name}\": it is keyed (PRIMARY KEY), and its \
                 current rows are kept and checkpointed with its columns"
            ),
            hint: Some("Create a new source with the column.".into()),
        });
    }
    Ok(())
}
