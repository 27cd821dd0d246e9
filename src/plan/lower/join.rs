//! Lowering a two-input `JOIN` into a [`JoinPlan`]: the equi-join keys, the
//! residual condition, and how long each side keeps its rows.
//!
//! Each side's rows are kept only as long as a row of the other side can
//! still match them. The bound comes from the time condition:
//! `b.ts BETWEEN a.ts - INTERVAL '5' SECOND AND a.ts + INTERVAL '10' SECOND`
//! (interval join), or equal window bounds (window join), read as
//! `lo <= right_time - left_time <= hi`. A left row can then be dropped once
//! the right watermark passes `left_time + hi`, a right row once the left
//! watermark passes `right_time - lo`. Without a bound the view needs a
//! `state_ttl`; a lookup join against an upsert table keeps only the table.

use std::sync::Arc;

use datafusion::common::{Column, DFSchema};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Join, JoinType, Operator};

use super::finish::{close, close_as_origin};
use super::{uncast, Chain, Lowerer, Origin, PlanInputs};
use crate::error::{EddyError, Result};
use crate::operators::join::{JoinKind, JoinSpec, Retention};
use crate::operators::window::WindowKind;
use crate::plan::graph::At;

/// A timestamp column of one side. When `rising`, it rises with the side's
/// watermark: later rows have `col >= watermark + offset_ns`.
#[derive(Debug, Clone, Copy)]
struct TimeCol {
    col: usize,
    offset_ns: i64,
    /// The window size when `col` is a window bound (0 for the event time).
    window_ns: i64,
    /// Bounded below by the watermark (else just a timestamp, say an auction's `expires`).
    rising: bool,
}

/// `lo <= right[r] - left[l] <= hi`.
#[derive(Debug, Clone, Copy)]
struct Bound {
    l: TimeCol,
    r: TimeCol,
    lo: Option<i64>,
    hi: Option<i64>,
}

/// What the rest of the planner needs to know about the join's output.
#[derive(Clone, Copy)]
pub(super) struct JoinFacts {
    /// It has an event-time watermark.
    pub watermarked: bool,
    /// How far below the joined watermark an output row's `time_col` can be
    /// (`None`: unbounded, e.g. a row kept by `state_ttl`).
    pub time_delay_ns: Option<i64>,
}

fn not_supported(message: impl Into<String>, hint: &str) -> EddyError {
    EddyError::NotSupported {
        message: message.into(),
        hint: Some(hint.into()),
    }
}

impl Lowerer<'_> {
    /// `left JOIN right ON …` (plus the `WHERE` conjuncts above an inner join).
    pub(super) fn join(&self, j: &Join, extra: Option<&Expr>) -> Result<Chain> {
        let Some(kind) = join_kind(j)? else {
            return self.right_join(j);
        };
        let mut sides = [
            self.side(&j.left, self.lower(&j.left)?)?,
            self.side(&j.right, self.lower(&j.right)?)?,
        ];
        check_windows(&sides)?;
        let schemas = [j.left.schema(), j.right.schema()];
        let (keys, residual) = self.split_condition(j, extra, kind, &mut sides, &schemas)?;
        let time_cols = [
            self.time_cols(&sides[0], schemas[0]),
            self.time_cols(&sides[1], schemas[1]),
        ];
        let bounds = self.bounds(&keys, &residual, &schemas, &time_cols);
        let lookup = lookup_side(kind, &sides, &keys)?;
        let retention = self.retention(&bounds, lookup)?;
        let spec = self.join_spec(j, kind, &keys, residual, retention, lookup)?;
        self.build_join(j, spec, sides, &time_cols)
    }

    /// Split the condition: equalities across the sides are keys; a condition
    /// on one side's columns filters that side before the join (not a side
    /// whose rows stay, padded with NULLs, when they do not match); the rest
    /// is residual.
    fn split_condition(
        &self,
        j: &Join,
        extra: Option<&Expr>,
        kind: JoinKind,
        sides: &mut [Chain; 2],
        schemas: &[&Arc<DFSchema>; 2],
    ) -> Result<([Vec<Expr>; 2], Vec<Expr>)> {
        let mut keys: [Vec<Expr>; 2] = [Vec::new(), Vec::new()];
        for (l, r) in &j.on {
            keys[0].push(l.clone());
            keys[1].push(r.clone());
        }
        let mut residual = Vec::new();
        let conjuncts = j
            .filter
            .iter()
            .chain(extra)
            .flat_map(|e| split_conjunction(e));
        for c in conjuncts {
            if let Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::Eq,
                right,
            }) = c
            {
                match (side_of(left, schemas), side_of(right, schemas)) {
                    (Some(0), Some(1)) => {
                        keys[0].push(left.as_ref().clone());
                        keys[1].push(right.as_ref().clone());
                        continue;
                    }
                    (Some(1), Some(0)) => {
                        keys[0].push(right.as_ref().clone());
                        keys[1].push(left.as_ref().clone());
                        continue;
                    }
                    _ => {}
                }
            }
            match side_of(c, schemas) {
                Some(s) if !kind.pads(s) => {
                    sides[s].push(crate::operators::steps::Step::Filter(
                        self.phys(c, schemas[s])?,
                    ));
                }
                _ => residual.push(c.clone()),
            }
        }
        Ok((keys, residual))
    }

    /// The time bounds between the sides that the keys and the residual state.
    fn bounds(
        &self,
        keys: &[Vec<Expr>; 2],
        residual: &[Expr],
        schemas: &[&Arc<DFSchema>; 2],
        time_cols: &[Vec<TimeCol>; 2],
    ) -> Vec<Bound> {
        let mut bounds = Vec::new();
        for (l, r) in keys[0].iter().zip(&keys[1]) {
            if let (Some(lt), Some(rt)) = (
                time_col_of(l, schemas[0], &time_cols[0]),
                time_col_of(r, schemas[1], &time_cols[1]),
            ) {
                bounds.push(Bound {
                    l: lt,
                    r: rt,
                    lo: Some(0),
                    hi: Some(0),
                });
            }
        }
        for c in residual {
            self.bounds_of(c, schemas, time_cols, &mut bounds);
        }
        bounds
    }

    /// How long each side keeps its rows: until the other side's watermark
    /// passes the bound, the lookup table's current rows, else `state_ttl`.
    fn retention(&self, bounds: &[Bound], lookup: Option<usize>) -> Result<[Retention; 2]> {
        // A left row can go once no later right row can be low enough for it: that needs
        // the right term to rise with the right watermark (and vice versa).
        let left_bound = bounds.iter().filter(|b| b.r.rising).find_map(|b| {
            b.hi.map(|hi| Retention::EventTime {
                col: b.l.col,
                after_ns: hi.saturating_sub(b.r.offset_ns),
            })
        });
        let right_bound = bounds.iter().filter(|b| b.l.rising).find_map(|b| {
            b.lo.map(|lo| Retention::EventTime {
                col: b.r.col,
                after_ns: lo.saturating_neg().saturating_sub(b.l.offset_ns),
            })
        });
        let mut retention = [left_bound, right_bound];
        if let Some(t) = lookup {
            retention[t] = Some(Retention::UntilDeleted);
            retention[1 - t] = Some(Retention::NotKept);
        }
        if let [Some(l), Some(r)] = retention {
            return Ok([l, r]);
        }
        let Some(ns) = self.state_ttl else {
            let which = match retention {
                [None, None] => "both inputs",
                [None, _] => "the left input",
                _ => "the right input",
            };
            return Err(EddyError::InvalidParameter {
                message: format!(
                    "this join would keep the rows of {which} forever: nothing in its \
                     condition bounds how long a row can still find a match"
                ),
                hint: Some(
                    "Bound it in event time (b.ts BETWEEN a.ts - INTERVAL '1' MINUTE AND \
                     a.ts + INTERVAL '1' MINUTE, or equal window bounds), or give the \
                     view a state TTL: CREATE MATERIALIZED VIEW … WITH (state_ttl = \
                     '1 hour') AS …"
                        .into(),
                ),
            });
        };
        Ok(retention.map(|r| r.unwrap_or(Retention::Ttl { ns })))
    }

    /// The join operator's spec.
    fn join_spec(
        &self,
        j: &Join,
        kind: JoinKind,
        keys: &[Vec<Expr>; 2],
        residual: Vec<Expr>,
        retention: [Retention; 2],
        lookup: Option<usize>,
    ) -> Result<Arc<JoinSpec>> {
        let schemas = [j.left.schema(), j.right.schema()];
        let key_phys = |s: usize| {
            keys[s]
                .iter()
                .map(|e| self.phys(e, schemas[s]))
                .collect::<Result<Vec<_>>>()
        };
        // The pairs the condition is evaluated on: a semi or anti join's output has the
        // left columns only, its condition reads both sides.
        let pair = match kind.filters_left() {
            true => Arc::new(schemas[0].join(schemas[1])?),
            false => j.schema.clone(),
        };
        let filter = match residual.into_iter().reduce(Expr::and) {
            Some(f) => Some(self.phys(&f, &pair)?),
            None => None,
        };
        Ok(Arc::new(JoinSpec {
            kind,
            keys: [key_phys(0)?, key_phys(1)?],
            filter,
            schemas: [schemas[0].inner().clone(), schemas[1].inner().clone()],
            output_schema: pair.inner().clone(),
            retention,
            lookup,
            max_rows: self.max_groups.saturating_mul(self.partitions.max(1)),
        }))
    }

    /// Close both sides, add the join node, and continue on its output.
    fn build_join(
        &self,
        j: &Join,
        spec: Arc<JoinSpec>,
        sides: [Chain; 2],
        time_cols: &[Vec<TimeCol>; 2],
    ) -> Result<Chain> {
        let (time_col, time_delay_ns) = output_time(&spec, &sides, time_cols);
        // A semi join's row comes once, with its first match; an anti join's goes then.
        let retracts = matches!(spec.kind, JoinKind::Left | JoinKind::Full | JoinKind::Anti);
        // A side's changes change the output, unless it is a lookup join's table
        // (a stream row joins the version it meets). Two upsert inputs join as
        // updating streams.
        let updating = (retracts && spec.lookup.is_none())
            || sides
                .iter()
                .enumerate()
                .any(|(i, s)| s.origin.facts.updating && spec.lookup != Some(i));
        let watermarked = match spec.lookup {
            Some(t) => sides[1 - t].watermarked(),
            None => sides.iter().all(Chain::watermarked),
        };
        let (window, window_cols) = output_window(&spec, &sides);
        let at = self.join_node(&spec, sides)?;
        Ok(Chain {
            window,
            window_cols,
            time_col,
            joined: Some(JoinFacts {
                watermarked,
                time_delay_ns,
            }),
            ..Chain::over(Origin::plain(
                "join",
                PlanInputs {
                    schema: j.schema.inner().clone(),
                    time_column: watermarked.then(|| "(join)".to_string()),
                    updating,
                    kind: "join".into(),
                    upsert: false,
                },
                at,
            ))
        })
    }

    /// Both sides closed (each dropping its late rows when the other frees
    /// rows by its watermark) and the join node after them.
    fn join_node(&self, spec: &JoinSpec, sides: [Chain; 2]) -> Result<At> {
        // A side the other frees rows by (in event time) drops its late rows, unless
        // its window assignment does.
        let drop_late = |c: &Chain, s: usize| match spec.retention[1 - s] {
            Retention::EventTime { .. } if !(c.assign && c.window.is_some()) => {
                let f = &c.origin.facts;
                f.schema.index_of(f.time_column.as_deref()?).ok()
            }
            _ => None,
        };
        let [l, r] = sides;
        let clocks = [l.watermarked(), r.watermarked()];
        let table_input = spec
            .lookup
            .map(|t| if t == 0 { &l } else { &r }.origin.at.edge);
        let (dl, dr) = (drop_late(&l, 0), drop_late(&r, 1));
        let at = [
            close(self, l, spec.schemas[0].clone(), dl)?.at,
            close(self, r, spec.schemas[1].clone(), dr)?.at,
        ];
        let mut b = self.build.borrow_mut();
        if let Some(crate::runtime::Edge::Input(k)) = table_input {
            if b.graph.prefer_input.is_some() {
                return Err(not_supported(
                    "more than one join with an upsert table in one view is not supported yet",
                    "Join the stream with one table in a view, and that view with the next table.",
                ));
            }
            b.graph.prefer_input = Some(k);
        }
        crate::plan::graph::join(&mut b, at, spec, clocks, self.partitions.max(1))
    }

    /// A join side as a chain the join can read: one with an aggregate or a
    /// ranking is closed first, and the join reads its output.
    fn side(&self, plan: &datafusion::logical_expr::LogicalPlan, chain: Chain) -> Result<Chain> {
        if chain.agg.is_none() && chain.rank.is_none() {
            return Ok(chain);
        }
        let origin = close_as_origin(self, chain, plan.schema().inner().clone(), None)?;
        Ok(Chain::over(origin))
    }

    /// `a RIGHT JOIN b` is `b LEFT JOIN a` with the columns put back in order.
    fn right_join(&self, j: &datafusion::logical_expr::Join) -> Result<Chain> {
        let swapped = datafusion::logical_expr::Join::try_new(
            j.right.clone(),
            j.left.clone(),
            j.on.iter().map(|(l, r)| (r.clone(), l.clone())).collect(),
            j.filter.clone(),
            JoinType::Left,
            j.join_constraint,
            j.null_equality,
            false,
        )?;
        let mut chain = self.join(&swapped, None)?;
        let (n_left, n_right) = (
            j.left.schema().fields().len(),
            j.right.schema().fields().len(),
        );
        // Position in the swapped output (right ++ left) of output column `i` (left ++ right).
        let from = |i: usize| if i < n_left { n_right + i } else { i - n_left };
        let to = |p: usize| {
            if p >= n_right {
                p - n_right
            } else {
                p + n_left
            }
        };
        let exprs = (0..n_left + n_right)
            .map(|i| {
                let p = from(i);
                Arc::new(datafusion::physical_expr::expressions::Column::new(
                    swapped.schema.field(p).name(),
                    p,
                )) as Arc<dyn datafusion::physical_expr::PhysicalExpr>
            })
            .collect();
        chain.window_cols = (chain.window_cols.0.map(to), chain.window_cols.1.map(to));
        chain.time_col = chain.time_col.map(to);
        chain.push(crate::operators::steps::Step::Project {
            exprs,
            schema: j.schema.inner().clone(),
        });
        Ok(chain)
    }

    /// The columns of a side that rise with its watermark.
    fn time_cols(&self, c: &Chain, schema: &DFSchema) -> Vec<TimeCol> {
        if !c.watermarked() {
            return Vec::new();
        }
        // Rows of a join come out up to this far below its watermark (none rise with it when
        // that is unbounded).
        let lag = match &c.joined {
            Some(j) => j.time_delay_ns,
            None => Some(0),
        };
        let Some(lag) = lag else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if let Some(col) = c.time_col {
            out.push(TimeCol {
                col,
                offset_ns: -lag,
                window_ns: 0,
                rising: true,
            });
        }
        if let Some((w, _)) = &c.window {
            if let Some(col) = c.window_cols.1 {
                out.push(TimeCol {
                    col,
                    offset_ns: -lag,
                    window_ns: w.size_ns,
                    rising: true,
                });
            }
            if let Some(col) = c.window_cols.0 {
                out.push(TimeCol {
                    col,
                    offset_ns: -w.size_ns - lag,
                    window_ns: w.size_ns,
                    rising: true,
                });
            }
        }
        out.retain(|t| {
            matches!(
                schema.field(t.col).data_type(),
                datafusion::arrow::datatypes::DataType::Timestamp(_, _)
            )
        });
        out
    }

    /// Add the time bound a residual conjunct states, if it is one.
    fn bounds_of(
        &self,
        c: &Expr,
        schemas: &[&Arc<DFSchema>; 2],
        time_cols: &[Vec<TimeCol>; 2],
        out: &mut Vec<Bound>,
    ) {
        let mut cmp = |a: &Expr, op: Operator, b: &Expr| {
            let (Some(x), Some(y)) = (
                self.offset_term(a, schemas, time_cols),
                self.offset_term(b, schemas, time_cols),
            ) else {
                return;
            };
            // x.col + x.k  op  y.col + y.k, as right - left  op'  v.
            let (l, r, v, op) = match (x.0, y.0) {
                (1, 0) => (y.1, x.1, y.2 - x.2, op),
                (0, 1) => (x.1, y.1, x.2 - y.2, flip(op)),
                _ => return,
            };
            let (lo, hi) = match op {
                Operator::Lt | Operator::LtEq => (None, Some(v)),
                Operator::Gt | Operator::GtEq => (Some(v), None),
                Operator::Eq => (Some(v), Some(v)),
                _ => return,
            };
            out.push(Bound { l, r, lo, hi });
        };
        match c {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => cmp(left, *op, right),
            Expr::Between(Between {
                expr,
                negated: false,
                low,
                high,
            }) => {
                cmp(expr, Operator::GtEq, low);
                cmp(expr, Operator::LtEq, high);
            }
            _ => {}
        }
    }

    /// `col`, `col + interval` or `col - interval` over a side's time column:
    /// (side, column, constant ns).
    fn offset_term(
        &self,
        e: &Expr,
        schemas: &[&Arc<DFSchema>; 2],
        time_cols: &[Vec<TimeCol>; 2],
    ) -> Option<(usize, TimeCol, i64)> {
        match uncast(e) {
            Expr::Column(c) => {
                let (s, i) = locate(c, schemas)?;
                let t = match time_cols[s].iter().find(|t| t.col == i) {
                    Some(t) => *t,
                    // Any other timestamp column can still be the bound of a row of its side.
                    None if matches!(
                        schemas[s].field(i).data_type(),
                        datafusion::arrow::datatypes::DataType::Timestamp(_, _)
                    ) =>
                    {
                        TimeCol {
                            col: i,
                            offset_ns: 0,
                            window_ns: 0,
                            rising: false,
                        }
                    }
                    None => return None,
                };
                Some((s, t, 0))
            }
            Expr::BinaryExpr(BinaryExpr { left, op, right })
                if matches!(op, Operator::Plus | Operator::Minus) =>
            {
                let (s, t, k) = self.offset_term(left, schemas, time_cols)?;
                let Expr::Literal(v, _) = uncast(right) else {
                    return None;
                };
                let ns = super::time::interval_value_ns(v)?;
                Some((
                    s,
                    t,
                    if *op == Operator::Plus {
                        k + ns
                    } else {
                        k - ns
                    },
                ))
            }
            _ => None,
        }
    }
}

/// The kind of join `j` is (`None`: a RIGHT JOIN, planned as the mirrored LEFT JOIN).
fn join_kind(j: &Join) -> Result<Option<JoinKind>> {
    Ok(Some(match j.join_type {
        JoinType::Inner => JoinKind::Inner,
        JoinType::Left => JoinKind::Left,
        JoinType::Right => return Ok(None),
        JoinType::Full => JoinKind::Full,
        JoinType::LeftSemi => JoinKind::Semi,
        JoinType::LeftAnti if j.null_aware => {
            return Err(not_supported(
                "NOT IN over a subquery whose values can be NULL is not supported in a \
                 materialized view (one NULL would empty the result)",
                "Use NOT EXISTS (SELECT … WHERE s.k = t.k), or declare the columns NOT NULL.",
            ))
        }
        JoinType::LeftAnti => JoinKind::Anti,
        other => {
            return Err(not_supported(
                format!("{other} JOIN is not supported in a materialized view"),
                "Use an INNER or LEFT JOIN.",
            ))
        }
    }))
}

/// SESSION and count windows close by arrival, which a join cannot bound.
fn check_windows(sides: &[Chain; 2]) -> Result<()> {
    for s in sides {
        if s.window
            .as_ref()
            .is_some_and(|(w, _)| matches!(w.kind, WindowKind::Session | WindowKind::Rows))
        {
            return Err(not_supported(
                "SESSION and TUMBLE_ROWS windows cannot be joined",
                "Join TUMBLE, HOP or CUMULATE windows, or aggregate the sessions in \
                 their own view and join that view.",
            ));
        }
    }
    Ok(())
}

/// The lookup join: one side is an upsert table, the other an append-only
/// stream (a retraction could not be matched against the table version its
/// insert saw). Returns the table's side.
fn lookup_side(kind: JoinKind, sides: &[Chain; 2], keys: &[Vec<Expr>; 2]) -> Result<Option<usize>> {
    let upsert = |c: &Chain| c.origin.facts.upsert;
    let appends = |c: &Chain| !c.updating_in();
    let lookup = match (upsert(&sides[0]), upsert(&sides[1])) {
        (false, true) | (true, false) if kind == JoinKind::Full => {
            return Err(not_supported(
                "a FULL JOIN with an upsert table is not supported",
                "Join the stream with the table (LEFT JOIN keeps every stream row).",
            ))
        }
        (false, true) if appends(&sides[0]) => Some(1),
        (true, false) if appends(&sides[1]) && kind == JoinKind::Inner => Some(0),
        (true, false) if appends(&sides[1]) => {
            return Err(not_supported(
                "a LEFT JOIN that keeps the rows of an upsert table is not supported",
                "Put the stream on the left: stream LEFT JOIN table.",
            ))
        }
        _ => None,
    };
    if lookup.is_some() && keys[0].is_empty() {
        return Err(EddyError::InvalidParameter {
            message: "a join with an upsert table needs an equality condition on its columns"
                .into(),
            hint: Some("JOIN t ON s.k = t.k".into()),
        });
    }
    Ok(lookup)
}

/// The output's event-time column (the stream's, else the left's) and how
/// far below the joined watermark its rows can come out (`None`: unbounded).
fn output_time(
    spec: &JoinSpec,
    sides: &[Chain; 2],
    time_cols: &[Vec<TimeCol>; 2],
) -> (Option<usize>, Option<i64>) {
    let n_left = spec.schemas[0].fields().len();
    let timed = match spec.lookup {
        Some(0) => 1,
        _ => 0,
    };
    let time_col = sides[timed]
        .time_col
        .map(|c| if timed == 1 { c + n_left } else { c });
    let delay = match spec.retention[timed] {
        Retention::NotKept => Some(0),
        // Kept by a column that rises with the watermark: its rows come out at most
        // this far below it (kept by another timestamp, say `expires`: unbounded).
        Retention::EventTime { col, after_ns } => time_cols[timed]
            .iter()
            .find(|t| t.col == col)
            .map(|t| after_ns.max(0).saturating_add(t.window_ns)),
        Retention::Ttl { .. } | Retention::UntilDeleted => None,
    };
    (time_col, delay)
}

/// The window the output's rows are in: the left's, else the right's (a
/// semi or anti join has the left columns only).
fn output_window(
    spec: &JoinSpec,
    sides: &[Chain; 2],
) -> (Option<super::Window>, super::WindowCols) {
    let [l, r] = sides;
    if l.window.is_some() || spec.kind.filters_left() {
        return (l.window.clone(), l.window_cols);
    }
    let n_left = spec.schemas[0].fields().len();
    let shift = |c: Option<usize>| c.map(|c| c + n_left);
    (
        r.window.clone(),
        (shift(r.window_cols.0), shift(r.window_cols.1)),
    )
}

fn flip(op: Operator) -> Operator {
    match op {
        Operator::Lt => Operator::Gt,
        Operator::LtEq => Operator::GtEq,
        Operator::Gt => Operator::Lt,
        Operator::GtEq => Operator::LtEq,
        other => other,
    }
}

/// Which side a column belongs to, and its index there.
fn locate(c: &Column, schemas: &[&Arc<DFSchema>; 2]) -> Option<(usize, usize)> {
    (0..2).find_map(|s| schemas[s].index_of_column(c).ok().map(|i| (s, i)))
}

/// The side every column of `e` comes from (`None` if none or both).
fn side_of(e: &Expr, schemas: &[&Arc<DFSchema>; 2]) -> Option<usize> {
    let mut side = None;
    for c in e.column_refs() {
        let (s, _) = locate(c, schemas)?;
        if side.is_some_and(|x| x != s) {
            return None;
        }
        side = Some(s);
    }
    side
}

/// The time column `e` is, if it is a plain reference to one.
fn time_col_of(e: &Expr, schema: &DFSchema, cols: &[TimeCol]) -> Option<TimeCol> {
    let Expr::Column(c) = uncast(e) else {
        return None;
    };
    let i = schema.index_of_column(c).ok()?;
    cols.iter().find(|t| t.col == i).copied()
}
