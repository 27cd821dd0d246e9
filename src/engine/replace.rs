//! New definitions for running views: `CREATE OR REPLACE MATERIALIZED VIEW`
//! and `ALTER MATERIALIZED VIEW … SET (…) | RESET (…)`.
//!
//! - **Same operators** (the new plan's EXPLAIN equals the old one but for
//!   `state_ttl` values): the view keeps everything. Its inputs are held
//!   still, a [`HANDOVER`] barrier goes through its graph alone, each
//!   operator hands its state over at it, and the new graph starts from that
//!   state where the old one stopped: no row is lost or counted twice. The
//!   view's rows, its subscribers and the views and sinks that read it see
//!   nothing but the new definition's later output.
//! - **Unchanged aggregates** ([`carry`] decides): the old graph stops at a
//!   handover barrier the same way, and a new view takes over the state of
//!   the unchanged operators up to the aggregates; those restate their
//!   results to the new operators after them. Inputs only kept operators
//!   read go on from the held position; the others backfill. The view's
//!   rows are rebuilt and its subscribers told.
//! - **Other operators**: the view is rebuilt, as if dropped and created in
//!   one statement: it backfills its inputs (status `backfilling` until it
//!   has caught up).
//!
//! The last two are refused while views or sinks read the view (their
//! state was built from the old rows), and when an input read from the
//! start cannot read again what it delivered (a generator), unless
//! `backfill = 'none'`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use super::ddl::InputRef;
use super::{Engine, Outcome};
use crate::catalog::ObjectRef;
use crate::error::{EddyError, Result};
use crate::plan::carry::{self, mask_ttl, Carry};
use crate::plan::{explain, ViewPlan};
use crate::runtime::{spawn_view, ViewInput};
use crate::sql::alter::AlterView;
use crate::sql::{CreateView, ObjectKind, Statement};
use crate::state::{ViewSnapshot, HANDOVER};
use crate::types::publish::Held;
use crate::types::Message;
use crate::views::MaterializedView;

/// Longest a view may take to reach the handover barrier (its channels drain first).
const HANDOVER_TIMEOUT: Duration = Duration::from_secs(120);

/// The view options `ALTER MATERIALIZED VIEW … SET` may change on a running view.
const ALTERABLE: [&str; 1] = ["state_ttl"];

/// What a new definition does to a running view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Replacement {
    /// The same operators: every operator's state, the rows and subscribers are kept.
    Keep,
    /// Some operators unchanged: they keep their state, the new ones start
    /// from their results; `old_inputs` are what the old plan reads, `why`
    /// what changes.
    Partial {
        carry: Carry,
        old_inputs: Vec<String>,
        why: String,
    },
    /// Other operators: rebuilt from its inputs; why.
    Rebuild(String),
}

impl Replacement {
    /// The last line of `EXPLAIN CREATE OR REPLACE`; `inputs` are the new plan's.
    pub(super) fn describe(&self, inputs: &[String]) -> String {
        match self {
            Replacement::Keep => "Replace: in place; every operator keeps its state, the view \
                                  its rows and subscribers"
                .to_string(),
            Replacement::Partial { carry, why, .. } => {
                let names = |live: bool| {
                    let mut n: Vec<&str> = inputs
                        .iter()
                        .zip(&carry.live)
                        .filter(|(_, l)| **l == live)
                        .map(|(i, _)| i.as_str())
                        .collect();
                    n.sort_unstable();
                    n.dedup();
                    n.join(", ")
                };
                let mut line = format!(
                    "Replace: keeps {} and the operators before {}, with their state; the \
                     operators after {} start from {} current results, and the view's rows are \
                     rebuilt from them; reads {} on from where the view stood",
                    carry
                        .what
                        .iter()
                        .map(|w| format!("\"{w}\""))
                        .collect::<Vec<_>>()
                        .join(" and "),
                    if carry.what.len() > 1 { "them" } else { "it" },
                    if carry.what.len() > 1 { "them" } else { "it" },
                    if carry.what.len() > 1 { "their" } else { "its" },
                    names(true)
                );
                let fresh = names(false);
                if !fresh.is_empty() {
                    line.push_str(&format!(", and {fresh} from the start (backfill)"));
                }
                line.push_str(&format!(" (what changes: {why})"));
                line
            }
            Replacement::Rebuild(why) => {
                format!("Replace: rebuilds the view from its inputs, because {why}")
            }
        }
    }
}

impl Engine {
    /// `CREATE OR REPLACE MATERIALIZED VIEW` of an existing object (under
    /// the DDL lock); true when a new view took over operators' state (a
    /// checkpoint should make that durable).
    pub(super) async fn replace_view(&self, v: CreateView) -> Result<(Outcome, bool)> {
        let (view, old_sql) = self.running_view(&v.name)?;
        super::ddl::check_view_options(&v)?;
        let (plan, verdict) = self.compare(&old_sql, &v).await?;
        let done = command("CREATE MATERIALIZED VIEW");
        // What was done, said as EXPLAIN CREATE OR REPLACE says it beforehand.
        let said = |what: &Replacement| {
            let line = what.describe(&plan.inputs());
            let line = line.trim_start_matches("Replace: ");
            format!("materialized view \"{}\": {line}", v.name)
        };
        let running = view.status() == "running";
        match verdict {
            Replacement::Keep if running => {
                let notice = said(&verdict);
                self.redefine_in_place(&view, &plan, &v.sql, &old_sql)
                    .await?;
                Ok((done.with_notice(notice), false))
            }
            Replacement::Keep | Replacement::Partial { .. } if view.status() == "backfilling" => {
                Err(backfilling(&v.name))
            }
            Replacement::Partial { .. } if running => {
                let notice = said(&verdict);
                let Replacement::Partial {
                    carry, old_inputs, ..
                } = verdict
                else {
                    return Err(EddyError::Internal("a partial replacement changed".into()));
                };
                self.carry_over(&view, v, plan, carry, old_inputs).await?;
                Ok((done.with_notice(notice), true))
            }
            other => {
                let notice = match other {
                    Replacement::Rebuild(_) => said(&other),
                    _ => said(&Replacement::Rebuild(format!("it is {}", view.status()))),
                };
                self.rebuild(v).await?;
                Ok((done.with_notice(notice), false))
            }
        }
    }

    /// `ALTER MATERIALIZED VIEW name SET (…) | RESET (…)` (under the DDL lock).
    pub(super) async fn alter_view(&self, a: AlterView) -> Result<Outcome> {
        let tag = command("ALTER MATERIALIZED VIEW");
        if a.if_exists && self.input_ref(&a.name).is_none() {
            return Ok(tag.with_notice(format!("relation \"{}\" does not exist, skipping", a.name)));
        }
        let (view, old_sql) = self.running_view(&a.name)?;
        for key in a.set.keys().chain(&a.reset) {
            if !ALTERABLE.contains(&key.as_str()) {
                let hint = if super::backfill::OPTIONS.contains(&key.as_str()) {
                    "A backfill option applies when a view is created: use CREATE OR REPLACE \
                     MATERIALIZED VIEW."
                } else {
                    "ALTER MATERIALIZED VIEW can change state_ttl."
                };
                return Err(EddyError::InvalidParameter {
                    message: format!(
                        "materialized view option \"{key}\" cannot be changed on a running view"
                    ),
                    hint: Some(hint.into()),
                });
            }
        }
        let mut def = stored_definition(&old_sql)?;
        for (k, val) in &a.set {
            def.options.insert(k.clone(), val.clone());
        }
        for k in &a.reset {
            def.options.remove(k);
        }
        def.sql = crate::sql::canonical::with_options(&old_sql, &def.options)?;
        let (plan, verdict) = self.compare(&old_sql, &def).await?;
        if let Replacement::Rebuild(why) | Replacement::Partial { why, .. } = verdict {
            return Err(EddyError::NotSupported {
                message: format!(
                    "cannot alter materialized view \"{}\" in place: {why}",
                    a.name
                ),
                hint: Some("CREATE OR REPLACE MATERIALIZED VIEW rebuilds it.".into()),
            });
        }
        match view.status().as_str() {
            "running" => {}
            "backfilling" => return Err(backfilling(&a.name)),
            _ => {
                return Err(EddyError::Data {
                    code: "55000",
                    message: format!(
                        "materialized view \"{}\" has failed and cannot be altered; \
                         CREATE OR REPLACE MATERIALIZED VIEW rebuilds it",
                        a.name
                    ),
                })
            }
        }
        self.redefine_in_place(&view, &plan, &def.sql, &old_sql)
            .await?;
        Ok(tag)
    }

    /// What replacing the view whose stored statement is `old_sql` by `new`
    /// would do, and the new plan.
    pub(super) async fn compare(
        &self,
        old_sql: &str,
        new: &CreateView,
    ) -> Result<(ViewPlan, Replacement)> {
        let (plan, inputs) = self.plan(new).await?;
        let kind = |name: &str| inputs.get(name).map_or("?".to_string(), |i| i.kind.clone());
        let old = match self.plan(&stored_definition(old_sql)?).await {
            Ok((old, _)) => old,
            Err(e) => {
                let why = format!("its old definition no longer plans ({e})");
                return Ok((plan, Replacement::Rebuild(why)));
            }
        };
        let verdict = match difference(&shape(&old, &kind)?, &shape(&plan, &kind)?) {
            None => Replacement::Keep,
            Some(what) => {
                let carry = carry::carry(&old, &plan, &kind)?;
                if carry.is_empty() {
                    Replacement::Rebuild(format!(
                        "its operators change ({what}) and no unchanged operator can give its \
                         results to new ones (a grouped aggregate without windows can)"
                    ))
                } else if let Some(both) = carry.shared(&plan.inputs) {
                    Replacement::Rebuild(format!(
                        "its operators change ({what}) and it reads \"{both}\" both through the \
                         operators that would keep their state and through new ones"
                    ))
                } else {
                    Replacement::Partial {
                        carry,
                        old_inputs: old.inputs(),
                        why: what,
                    }
                }
            }
        };
        Ok((plan, verdict))
    }

    /// The materialized view `name` and its stored statement.
    fn running_view(&self, name: &str) -> Result<(Arc<MaterializedView>, String)> {
        let found = self.catalog.with(|e| {
            e.get(name).map(|e| match &e.object {
                ObjectRef::View(v) => Ok((v.clone(), e.sql.clone())),
                _ => Err(e.kind()),
            })
        });
        match found {
            Some(Ok(v)) => Ok(v),
            Some(Err(kind)) => Err(EddyError::Data {
                code: "42809",
                message: format!("\"{name}\" is a {}, not a materialized view", kind.noun()),
            }),
            None => Err(EddyError::UndefinedObject(format!(
                "materialized view \"{name}\" does not exist"
            ))),
        }
    }

    /// The distinct objects of `names` (sorted) and what each is.
    pub(super) fn resolve(&self, names: &[String]) -> Result<(Vec<String>, Vec<InputRef>)> {
        let mut distinct = names.to_vec();
        distinct.sort();
        distinct.dedup();
        let refs = distinct
            .iter()
            .map(|i| {
                self.input_ref(i).ok_or_else(|| {
                    EddyError::UndefinedObject(format!("relation \"{i}\" does not exist"))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((distinct, refs))
    }

    /// Hold the publishers of `refs` (the `distinct` objects `view` reads,
    /// once per entry of `input_names`), stop `view`'s graph at a handover
    /// barrier and return its state. Its tasks are shut down and it is
    /// unsubscribed; the publishers stay held, so whoever subscribes
    /// through them next starts exactly where the old graph stopped. The
    /// caller holds the backfills' handoff lock.
    pub(super) async fn stop_at_handover<'a>(
        &self,
        view: &Arc<MaterializedView>,
        refs: &'a [InputRef],
        distinct: &[String],
        input_names: &[String],
    ) -> Result<(Vec<Held<'a>>, ViewSnapshot)> {
        let name = view.name.as_str();
        let mut held: Vec<Held<'a>> = Vec::with_capacity(refs.len());
        for r in refs {
            held.push(match r {
                InputRef::Stream(s) => s.publisher.hold().await,
                InputRef::View(v) => v.publisher.hold().await,
            });
        }
        let (tx, rx) = oneshot::channel();
        *view.handover.lock() = Some(tx);
        for (h, input) in held.iter_mut().zip(distinct) {
            let want = input_names.iter().filter(|i| *i == input).count();
            if h.send_to(name, Message::Barrier(HANDOVER)).await < want {
                view.handover.lock().take();
                return Err(EddyError::Internal(format!(
                    "materialized view \"{name}\" no longer reads \"{input}\""
                )));
            }
        }
        let snapshot = match tokio::time::timeout(HANDOVER_TIMEOUT, rx).await {
            Ok(Ok(s)) => s,
            _ => {
                // The barrier, if it still arrives, finds no one waiting: the old graph goes on.
                view.handover.lock().take();
                return Err(EddyError::Data {
                    code: "55000",
                    message: format!(
                        "materialized view \"{name}\" did not reach the point where its state \
                         is handed over within {} s (status: {}); it keeps its old definition",
                        HANDOVER_TIMEOUT.as_secs(),
                        view.status()
                    ),
                });
            }
        };
        let old = self.catalog.with(|e| {
            e.get_mut(name)
                .map(|e| std::mem::replace(&mut e.tasks, JoinSet::new()))
        });
        if let Some(mut old) = old {
            old.shutdown().await;
        }
        view.forget_tasks();
        for h in held.iter_mut() {
            h.unsubscribe(name);
        }
        Ok((held, snapshot))
    }

    /// Stop `view`'s graph at a handover barrier and run `plan`'s graph from
    /// the state it handed over, its inputs held still in between.
    async fn hand_over(&self, view: &Arc<MaterializedView>, plan: &ViewPlan) -> Result<()> {
        let name = view.name.as_str();
        let input_names = plan.inputs();
        let (distinct, refs) = self.resolve(&input_names)?;
        // No backfill hands over to a stream meanwhile (checkpoints wait on the DDL lock).
        let _handoff = self.backfills().handoff.lock().await;
        let (mut held, snapshot) = self
            .stop_at_handover(view, &refs, &distinct, &input_names)
            .await?;
        let mut inputs = Vec::with_capacity(input_names.len());
        for input in &input_names {
            let (tx, rx) = mpsc::channel(self.limits.channel_capacity);
            if let Some(i) = distinct.iter().position(|d| d == input) {
                held[i].subscribe(name, tx);
            }
            inputs.push(ViewInput {
                snapshot: Vec::new(),
                rx,
            });
        }
        let mut tasks = JoinSet::new();
        let capacity = self.limits.channel_capacity;
        if let Err(e) = spawn_view(
            view.clone(),
            &plan.graph,
            inputs,
            &mut tasks,
            capacity,
            Some(snapshot),
            &[],
        )
        .await
        {
            for h in held.iter_mut() {
                h.unsubscribe(name);
            }
            let e = EddyError::Internal(format!(
                "the new definition could not take over the state of materialized view \
                 \"{name}\": {e}"
            ));
            view.fail(&e);
            return Err(e);
        }
        self.catalog.with(|e| {
            if let Some(e) = e.get_mut(name) {
                e.tasks = tasks;
            }
        });
        Ok(())
    }

    /// Give `view` the definition `sql` planned as `plan`, in place: recorded
    /// first (a failed write changes nothing), then the handover; if that
    /// fails the old definition is recorded again.
    async fn redefine_in_place(
        &self,
        view: &Arc<MaterializedView>,
        plan: &ViewPlan,
        sql: &str,
        old_sql: &str,
    ) -> Result<()> {
        self.redefine(&view.name, sql)?;
        if let Err(e) = self.hand_over(view, plan).await {
            if let Err(undo) = self.redefine(&view.name, old_sql) {
                tracing::error!(view = %view.name, error = %undo,
                    "cannot record the view's old definition back after a failed replacement");
            }
            return Err(e);
        }
        Ok(())
    }

    /// Store `sql` as the definition of `name` (same catalog id and place:
    /// its checkpointed state stays its own).
    fn redefine(&self, name: &str, sql: &str) -> Result<()> {
        self.catalog.with(|e| {
            if let Some(e) = e.get_mut(name) {
                e.sql = sql.to_string();
            }
        });
        if let Some(d) = &self.durable {
            d.redefined(name, sql)?;
        }
        Ok(())
    }

    /// Replace the view by `v`, built again from its inputs.
    async fn rebuild(&self, v: CreateView) -> Result<()> {
        self.refuse_dependants(&v.name)?;
        let choice = super::backfill::Choice::of(&v)?;
        let (plan, _) = self.plan(&v).await?;
        self.refuse_misses(&v.name, &choice, &plan.inputs())?;
        let (name, sql) = (v.name.clone(), v.sql.clone());
        if let Some(InputRef::View(old)) = self.input_ref(&name) {
            old.changes
                .lock()
                .close(crate::views::changes::Ended::Replaced);
        }
        self.drop_names(std::slice::from_ref(&name)).await?;
        self.create_view(v).await?;
        self.record_created(false, &name, ObjectKind::MaterializedView, &sql, None)
            .await
    }

    /// A view that others read cannot change its rows wholesale (2BP01).
    pub(super) fn refuse_dependants(&self, name: &str) -> Result<()> {
        let dependants = self.catalog.dependants(name);
        if dependants.is_empty() {
            return Ok(());
        }
        Err(EddyError::DependentObjects {
            message: format!(
                "cannot replace materialized view \"{name}\" by a definition with other \
                 operators because other objects depend on it"
            ),
            detail: format!(
                "{} read its rows. A view is replaced in place only when its operators stay \
                 the same (options such as state_ttl may change).",
                dependants.join(", ")
            ),
        })
    }

    /// Refuse (0A000) when one of `inputs`, which the new definition reads
    /// from the start, cannot read again what it delivered.
    pub(super) fn refuse_misses(
        &self,
        name: &str,
        choice: &super::backfill::Choice,
        inputs: &[String],
    ) -> Result<()> {
        for input in inputs {
            if let Some(InputRef::Stream(s)) = self.input_ref(input) {
                if let Some(why) = super::backfill::misses(choice, &s) {
                    return Err(EddyError::NotSupported {
                        message: format!(
                            "cannot rebuild materialized view \"{name}\" with its new \
                             definition: {why}, so the new definition would miss it"
                        ),
                        hint: Some(
                            "Add WITH (backfill = 'none') to start the new definition from the \
                             rows that arrive from now on."
                                .into(),
                        ),
                    });
                }
            }
        }
        Ok(())
    }
}

/// The statement stored for a view, parsed.
pub(super) fn stored_definition(sql: &str) -> Result<CreateView> {
    match crate::sql::parse(sql)?.into_iter().next() {
        Some(Statement::CreateView(v)) => Ok(v),
        _ => Err(EddyError::Internal(format!(
            "the stored definition is not a CREATE MATERIALIZED VIEW: {sql}"
        ))),
    }
}

/// What identifies a plan's operators: its EXPLAIN (every operator, its
/// inputs and exchanges, the output) with `state_ttl` values left out, and
/// each node's id, parallelism and edges (checkpointed state is keyed by id).
pub(super) fn shape(plan: &ViewPlan, kind: &dyn Fn(&str) -> String) -> Result<Vec<String>> {
    let mut lines: Vec<String> = explain(plan, kind)?.iter().map(|l| mask_ttl(l)).collect();
    for n in &plan.graph.nodes {
        lines.push(format!(
            "operator {} on {} partitions, inputs {:?}",
            n.id, n.parallelism, n.inputs
        ));
    }
    Ok(lines)
}

/// The first line where two [`shape`]s differ, as `"old" becomes "new"`
/// (`None`: the same operators).
pub(super) fn difference(before: &[String], after: &[String]) -> Option<String> {
    match before.iter().zip(after).find(|(b, a)| b != a) {
        Some((b, a)) => Some(format!("\"{}\" becomes \"{}\"", b.trim(), a.trim())),
        None if before.len() == after.len() => None,
        None => Some("operators are added or removed".into()),
    }
}

fn command(tag: &str) -> Outcome {
    Outcome::Command {
        tag: tag.into(),
        rows: None,
    }
}

fn backfilling(name: &str) -> EddyError {
    EddyError::Data {
        code: "55000",
        message: format!(
            "materialized view \"{name}\" is backfilling; its definition can change once \
             eddy.views shows it running"
        ),
    }
}
