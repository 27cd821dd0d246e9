//! `CREATE OR REPLACE MATERIALIZED VIEW` that keeps unchanged aggregates:
//! the old graph stops at a handover barrier, a new view starts from the
//! state of the operators [`crate::plan::carry`] keeps (they restate their
//! results to the new operators after them) and takes the old view's place.

use std::sync::Arc;

use datafusion::common::TableReference;
use tokio::sync::mpsc;

use super::durable::Persisted;
use super::Engine;
use crate::catalog::ObjectRef;
use crate::error::{EddyError, Result};
use crate::plan::carry::Carry;
use crate::plan::ViewPlan;
use crate::runtime::ViewInput;
use crate::sql::{CreateView, ObjectKind};
use crate::state::ViewSnapshot;
use crate::views::MaterializedView;

impl Engine {
    /// Replace `view` by `v` (planned as `plan`), keeping the state of the
    /// operators `carry` names: the old graph stops at a handover barrier,
    /// a new view starts from the kept state (its inputs that only kept
    /// operators read go on from where the old graph stopped; the others
    /// backfill), and takes the old one's place in the catalog. The new
    /// definition is recorded (under a new id) before the old graph stops;
    /// if the replacement fails, the old record is written back, so a
    /// restart recovers the old view from its last checkpoint.
    pub(super) async fn carry_over(
        &self,
        view: &Arc<MaterializedView>,
        v: CreateView,
        plan: ViewPlan,
        carry: Carry,
        old_inputs: Vec<String>,
    ) -> Result<()> {
        self.refuse_dependants(&v.name)?;
        let choice = super::backfill::Choice::of(&v)?;
        let new_inputs = plan.inputs();
        let fresh: Vec<String> = new_inputs
            .iter()
            .zip(&carry.live)
            .filter(|(_, live)| !**live)
            .map(|(i, _)| i.clone())
            .collect();
        self.refuse_misses(&v.name, &choice, &fresh)?;
        let name = v.name.clone();
        let (distinct, refs) = self.resolve(&old_inputs)?;
        let before = self.record_replacement(&name, &v.sql)?;
        let undo = |e: EddyError| {
            self.undo_replacement(&name, before.clone());
            e
        };
        let handoff = self.backfills().handoff.lock().await;
        let (mut held, snapshot) = self
            .stop_at_handover(view, &refs, &distinct, &old_inputs)
            .await
            .map_err(undo)?;
        // From here on the old graph is gone: a failure fails the view.
        let mut prepared = Vec::with_capacity(new_inputs.len());
        for (input, live) in new_inputs.iter().zip(&carry.live) {
            let at = distinct.iter().position(|d| d == input);
            prepared.push(match (live, at) {
                (true, Some(i)) => {
                    let (tx, rx) = mpsc::channel(self.limits.channel_capacity);
                    held[i].subscribe(&name, tx);
                    Some(ViewInput {
                        snapshot: Vec::new(),
                        rx,
                    })
                }
                _ => None,
            });
        }
        // The kept inputs' channels fill until the new graph runs; no fresh input
        // reads one of them (`Carry::shared`), so nothing below waits on them.
        drop(held);
        drop(handoff);
        let carried = Carried {
            snapshot: kept_state(snapshot, &carry),
            inputs: prepared,
            restate: carry.restate.clone(),
            plan,
        };
        let (new_view, tasks, depends_on) = match self.start_carried(&v, carried).await {
            Ok(started) => started,
            Err(e) => {
                let e = EddyError::Internal(format!(
                    "the new definition of materialized view \"{name}\" could not start from \
                     the state of its unchanged operators: {e}; the old definition is kept for \
                     a restart, which recovers it from its last checkpoint"
                ));
                view.fail(&e);
                return Err(undo(e));
            }
        };
        view.changes
            .lock()
            .close(crate::views::changes::Ended::Replaced);
        let table = Arc::new(crate::views::ViewTable(new_view.clone()));
        self.catalog.with(|e| {
            if let Some(e) = e.get_mut(&name) {
                e.object = ObjectRef::View(new_view);
                e.sql = v.sql.clone();
                e.depends_on = depends_on;
                e.tasks = tasks;
            }
        });
        // Queries read the new view from here on.
        self.ctx
            .deregister_table(TableReference::bare(name.as_str()))?;
        self.ctx
            .register_table(TableReference::bare(name.as_str()), table)?;
        Ok(())
    }

    /// Record `sql` as the definition of `name` under a new catalog id (a
    /// restart before the next checkpoint must not restore the old
    /// definition's state into the new one); returns the record it replaced.
    fn record_replacement(&self, name: &str, sql: &str) -> Result<Option<Persisted>> {
        let Some(d) = &self.durable else {
            return Ok(None);
        };
        let before = d.record_of(name);
        d.created(Persisted {
            name: name.to_string(),
            kind: ObjectKind::MaterializedView.noun().to_string(),
            sql: sql.to_string(),
            id: 0,
        })?;
        Ok(before)
    }

    /// Write back the record a failed replacement replaced.
    fn undo_replacement(&self, name: &str, before: Option<Persisted>) {
        if let (Some(d), Some(before)) = (&self.durable, before) {
            if let Err(e) = d.created(before) {
                tracing::error!(view = %name, error = %e,
                    "cannot record the view's old definition back after a failed replacement");
            }
        }
    }

    /// After a replacement kept operators' state: a checkpoint makes it
    /// durable. If that fails, the view says so in `eddy.views.last_error`.
    pub(super) async fn settle_replacement(&self, name: &str) {
        if self.data_dir.is_none() {
            return;
        }
        let Err(e) = self.checkpoint("replace").await else {
            return;
        };
        tracing::warn!(view = %name, error = %e,
            "no checkpoint after a replaced view kept operator state");
        if let Some(super::ddl::InputRef::View(v)) = self.input_ref(name) {
            *v.last_error.lock() = Some(format!(
                "the checkpoint after CREATE OR REPLACE failed ({e}): until a checkpoint \
                 completes, a restart rebuilds this view from what its inputs still hold"
            ));
        }
    }
}

/// What a replacing view starts from besides its definition.
pub(super) struct Carried {
    /// The kept operators' state, under their new ids.
    pub snapshot: ViewSnapshot,
    /// Per view input: `Some` when it is read on from where the old graph stopped.
    pub inputs: Vec<Option<ViewInput>>,
    /// Kept operators that restate their output to new ones.
    pub restate: Vec<String>,
    /// The new definition's plan, which `carry` was computed for.
    pub plan: ViewPlan,
}

/// The part of `snapshot` (an old graph's state) that `carry` keeps, under
/// the new plan's ids; the view's rows start empty.
fn kept_state(snapshot: ViewSnapshot, carry: &Carry) -> ViewSnapshot {
    let nodes = snapshot
        .nodes
        .into_iter()
        .filter_map(|mut n| {
            let (new_id, _) = carry.kept.iter().find(|(_, old)| *old == n.id)?;
            n.id = new_id.clone();
            Some(n)
        })
        .collect();
    ViewSnapshot {
        nodes,
        ..ViewSnapshot::default()
    }
}
