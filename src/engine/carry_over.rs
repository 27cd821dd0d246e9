//! `CREATE OR REPLACE MATERIALIZED VIEW` that keeps unchanged aggregates:
//! the old graph stops at a handover barrier, a new view starts from the
//! state of the operators [`crate::plan::carry`] keeps (they restate their
//! results to the new operators after them) and takes the old view's place.

use std::sync::Arc;

use datafusion::common::TableReference;
use tokio::sync::mpsc;

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
    /// backfill), and takes the old one's place in the catalog.
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
        let handoff = self.backfills().handoff.lock().await;
        let (mut held, snapshot) = self
            .stop_at_handover(view, &refs, &distinct, &old_inputs)
            .await?;
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
        drop(held);
        drop(handoff);
        let carried = Carried {
            snapshot: kept_state(snapshot, &carry),
            inputs: prepared,
            restate: carry.restate.clone(),
        };
        let (new_view, tasks, depends_on) = match self.start_carried(&v, carried).await {
            Ok(started) => started,
            Err(e) => {
                let e = EddyError::Internal(format!(
                    "the new definition of materialized view \"{name}\" could not start from \
                     the state of its unchanged operators: {e}"
                ));
                view.fail(&e);
                return Err(e);
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
        // A new catalog id: a restart before the next checkpoint must not
        // restore the old definition's state into the new one.
        self.record_created(false, &name, ObjectKind::MaterializedView, &v.sql, None)
            .await
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
