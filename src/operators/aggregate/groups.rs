//! The keyed aggregate operator, windowed or not.
//!
//! State is a map from window end to the groups of that window (one window,
//! end = +∞, when not windowed). Each group holds one DataFusion
//! [`Accumulator`] per aggregate, so every DataFusion aggregate works
//! unchanged (`count(DISTINCT …)`, `approx_distinct`,
//! `approx_percentile_cont`, …), plus the last result it emitted.
//!
//! * **Emit on update**: after each input batch, every group the batch
//!   touched is re-evaluated (`Accumulator::evaluate` does not consume
//!   state); if its result changed, the old row is retracted (-1) and the new
//!   one inserted (+1).
//! * **Emit on window close**: nothing is emitted until the watermark passes
//!   a window's end; then each group of that window is emitted once (+1).
//!
//! When the watermark passes a window's end its state is freed. Rows below
//! the watermark never reach this operator (window assignment drops and
//! counts them), so a closed window is never touched again.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, Int64Array, UInt32Array};
use datafusion::arrow::compute::{cast, concat_batches, take};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::common::hash_utils::RandomState;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Accumulator;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::PhysicalExpr;

use crate::error::{EddyError, Result};
use crate::operators::window::{event_times_ns, nanos_per_unit, WindowKind, WindowSpec};
use crate::sql::EmitMode;
use crate::types::{Changes, EventTime};

/// One aggregate call: the function, its argument expressions and an optional FILTER.
#[derive(Debug, Clone)]
pub struct AggCall {
    /// The DataFusion aggregate.
    pub func: Arc<AggregateFunctionExpr>,
    /// Argument expressions over the operator's input.
    pub args: Vec<Arc<dyn PhysicalExpr>>,
    /// `FILTER (WHERE …)`.
    pub filter: Option<Arc<dyn PhysicalExpr>>,
}

/// Where the window is in the group key.
#[derive(Debug, Clone, Copy)]
pub struct WindowKey {
    /// Index of the group expression holding `window_start` or `window_end`.
    pub group_index: usize,
    /// True if that expression is `window_end` (else `window_start`).
    pub is_end: bool,
    /// Window size in nanoseconds.
    pub size_ns: i64,
}

/// Where a SESSION (or TUMBLE_ROWS) window's bounds are in the aggregate's input.
#[derive(Debug, Clone, Copy)]
pub struct SessionSpec {
    /// Inactivity that closes a session (ns).
    pub gap_ns: i64,
    /// TUMBLE_ROWS: a window is complete after this many rows of its key
    /// (`gap_ns` is unused).
    pub rows: Option<usize>,
    /// Input columns `window_start` and `window_end` (at least one is
    /// there; window assignment put each row's event time in both).
    pub start_col: Option<usize>,
    /// See `start_col`.
    pub end_col: Option<usize>,
    /// Index among the group expressions of the window column(s), which are
    /// not part of the session key.
    pub window_groups: [Option<usize>; 2],
}

/// A HOP aggregate that shares work per slide. Rows arrive assigned to their *pane* (the slide
/// they fall in: a TUMBLE of the slide); each group of a batch's rows in one pane is folded into
/// the `size / slide` windows that contain the pane, once per window, instead of every row
/// being copied into each window first. Group keys are the window's bounds, as without panes.
#[derive(Debug, Clone, Copy)]
pub struct PaneSpec {
    /// The HOP slide: the pane length (ns).
    pub slide_ns: i64,
    /// The HOP size, a multiple of the slide (ns).
    pub size_ns: i64,
    /// Group expressions that are `window_start` / `window_end` (pane bounds on input).
    pub start_group: Option<usize>,
    /// See `start_group`.
    pub end_group: Option<usize>,
}

impl PaneSpec {
    /// The window assignment that puts each row in its pane.
    pub fn pane_window(&self, hop: &WindowSpec) -> WindowSpec {
        WindowSpec {
            kind: WindowKind::Tumble,
            size_ns: self.slide_ns,
            slide_ns: self.slide_ns,
            time_index: hop.time_index,
            time_column: hop.time_column.clone(),
            processing_time: hop.processing_time,
        }
    }

    /// Whether group expression `i` is a window bound (it does not route rows to partitions:
    /// a pane's groups feed windows that other panes feed too).
    pub fn is_bound(&self, i: usize) -> bool {
        self.start_group == Some(i) || self.end_group == Some(i)
    }

    /// Windows per pane.
    fn windows(&self) -> i64 {
        self.size_ns / self.slide_ns
    }
}

/// Everything the operator needs, fixed at planning time.
#[derive(Debug, Clone)]
pub struct AggregateSpec {
    /// Group-by expressions over the input.
    pub group_exprs: Vec<Arc<dyn PhysicalExpr>>,
    /// The aggregates.
    pub aggs: Vec<AggCall>,
    /// Output: group columns, then one column per aggregate.
    pub output_schema: SchemaRef,
    /// Set when grouped by a window bound.
    pub window: Option<WindowKey>,
    /// Set for SESSION windows: rows wait in a [`super::sessions::SessionBuffer`]
    /// until their session closes.
    pub session: Option<SessionSpec>,
    /// Emission mode.
    pub emit: EmitMode,
    /// Most groups one partition may hold.
    pub max_groups: usize,
    /// The input can retract rows: use DataFusion's retractable ("sliding") accumulators.
    pub retract: bool,
    /// A HOP window aggregated per pane.
    pub panes: Option<PaneSpec>,
}

impl AggregateSpec {
    /// The group expressions whose values route rows to partitions: all but
    /// SESSION window bounds (rows of one session key must meet in one
    /// partition whatever their times) and the window bounds of a pane
    /// aggregate (a key's panes feed the same windows).
    pub fn routing_groups(&self) -> Vec<usize> {
        (0..self.group_exprs.len())
            .filter(|&i| {
                !(self
                    .session
                    .is_some_and(|s| s.window_groups.contains(&Some(i)))
                    || self.panes.is_some_and(|p| p.is_bound(i)))
            })
            .collect()
    }
}

pub(super) struct GroupState {
    pub(super) accs: Vec<Box<dyn Accumulator>>,
    /// Net number of input rows (inserts minus deletes).
    pub(super) rows: i64,
    /// The result row last emitted (aggregate values only).
    pub(super) emitted: Option<Vec<ScalarValue>>,
    /// Bytes counted for this group in `state_bytes`.
    pub(super) bytes: usize,
}

/// A group of the state: (window end, key in row format).
pub(super) type GroupRef = (EventTime, Box<[u8]>);

/// Not-windowed state lives under this "window end".
pub(super) const NO_WINDOW: EventTime = EventTime::MAX;

/// The operator. One instance per partition.
pub struct AggregateOperator {
    pub(super) spec: Arc<AggregateSpec>,
    pub(super) converter: RowConverter,
    pub(super) windows: BTreeMap<EventTime, HashMap<Box<[u8]>, GroupState, RandomState>>,
    pub(super) groups: usize,
    pub(super) state_bytes: usize,
}

impl AggregateOperator {
    /// Create the operator for `spec`.
    pub fn new(spec: Arc<AggregateSpec>) -> Result<Self> {
        let n_groups = spec.group_exprs.len();
        let fields = spec.output_schema.fields()[..n_groups]
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        Ok(AggregateOperator {
            converter: RowConverter::new(fields)?,
            spec,
            windows: BTreeMap::new(),
            groups: 0,
            state_bytes: 0,
        })
    }

    /// The spec the operator was made for.
    pub fn spec(&self) -> &Arc<AggregateSpec> {
        &self.spec
    }

    /// Number of groups held.
    pub fn groups(&self) -> usize {
        self.groups
    }

    /// Approximate bytes of state held.
    pub fn state_bytes(&self) -> usize {
        self.state_bytes
    }

    pub(super) fn new_group(&self) -> Result<GroupState> {
        let accs = self
            .spec
            .aggs
            .iter()
            .map(|a| {
                if self.spec.retract {
                    super::retracting(&a.func)
                } else {
                    Ok(a.func.create_accumulator()?)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(GroupState {
            accs,
            rows: 0,
            emitted: None,
            bytes: 0,
        })
    }

    /// Fold a batch of changes into state; in emit-on-update mode return the
    /// resulting output changes.
    pub fn process(&mut self, changes: &Changes) -> Result<Option<Changes>> {
        let batch = &changes.batch;
        let n = batch.num_rows();
        if n == 0 {
            return Ok(None);
        }
        let input = Evaluated::new(&self.spec, &self.converter, batch)?;
        let (args, masks) = (&input.args, &input.masks);

        // Group the batch's rows: (window end, key) -> (insert rows, delete rows).
        let mut slots: HashMap<(EventTime, &[u8]), usize, RandomState> = HashMap::default();
        let mut keys: Vec<(EventTime, &[u8])> = Vec::new();
        let mut inserts: Vec<Vec<u32>> = Vec::new();
        let mut deletes: Vec<Vec<u32>> = Vec::new();
        for i in 0..n {
            let key = input.key(i);
            let slot = *slots.entry(key).or_insert_with(|| {
                keys.push(key);
                inserts.push(Vec::new());
                deletes.push(Vec::new());
                keys.len() - 1
            });
            if changes.weight(i) > 0 {
                inserts[slot].push(i as u32);
            } else {
                deletes[slot].push(i as u32);
            }
        }

        // Where each slot's rows go: its own group or, per pane, every window containing it.
        let targets: Vec<Vec<GroupRef>> = match self.spec.panes {
            None => keys
                .iter()
                .map(|(e, k)| vec![(*e, Box::from(*k))])
                .collect(),
            Some(p) => pane_targets(&self.converter, &p, &keys)?,
        };
        for (slot, slot_targets) in targets.iter().enumerate() {
            // Each aggregate's (inserted, deleted) values, taken once for all targets.
            let mut vals: Vec<[Option<Vec<ArrayRef>>; 2]> = Vec::with_capacity(args.len());
            for (j, arg) in args.iter().enumerate() {
                let mut pair = [None, None];
                for (side, list) in [&inserts[slot], &deletes[slot]].into_iter().enumerate() {
                    let idx: Vec<u32> = match &masks[j] {
                        None => list.clone(),
                        Some(m) => list
                            .iter()
                            .copied()
                            .filter(|i| m.is_valid(*i as usize) && m.value(*i as usize))
                            .collect(),
                    };
                    if idx.is_empty() {
                        continue;
                    }
                    let idx = UInt32Array::from(idx);
                    pair[side] = Some(
                        arg.iter()
                            .map(|a| take(a.as_ref(), &idx, None))
                            .collect::<std::result::Result<Vec<_>, _>>()?,
                    );
                }
                vals.push(pair);
            }
            let net = inserts[slot].len() as i64 - deletes[slot].len() as i64;
            for (end, key) in slot_targets {
                let exists = self.windows.get(end).is_some_and(|w| w.contains_key(key));
                if !exists {
                    if self.groups >= self.spec.max_groups {
                        return Err(EddyError::LimitExceeded(format!(
                            "aggregate state is full: {} groups in one partition (limit {})",
                            self.groups, self.spec.max_groups
                        )));
                    }
                    let g = self.new_group()?;
                    self.windows.entry(*end).or_default().insert(key.clone(), g);
                    self.groups += 1;
                }
                let Some(group) = self.windows.get_mut(end).and_then(|w| w.get_mut(key)) else {
                    return Err(EddyError::Internal("group vanished".into()));
                };
                for (acc, [ins, del]) in group.accs.iter_mut().zip(&vals) {
                    if let Some(v) = ins {
                        acc.update_batch(v)?;
                    }
                    if let Some(v) = del {
                        acc.retract_batch(v)?;
                    }
                }
                group.rows += net;
                let bytes = key.len() + group.accs.iter().map(|a| a.size()).sum::<usize>();
                self.state_bytes = self.state_bytes.saturating_sub(group.bytes) + bytes;
                group.bytes = bytes;
            }
        }

        if self.spec.emit == EmitMode::OnWindowClose {
            return Ok(None);
        }
        let changed: Vec<(EventTime, Box<[u8]>)> = targets.into_iter().flatten().collect();
        self.emit_updates(&changed)
    }
}

/// For each slot key (groups of one pane), the windows containing its pane: (window end, the
/// key with the window's bounds in place of the pane's).
pub(super) fn pane_targets(
    converter: &RowConverter,
    p: &PaneSpec,
    keys: &[(EventTime, &[u8])],
) -> Result<Vec<Vec<GroupRef>>> {
    let parser = converter.parser();
    let cols = converter.convert_rows(keys.iter().map(|(_, k)| parser.parse(k)))?;
    let (bound, is_end) = match (p.start_group, p.end_group) {
        (Some(i), _) => (i, false),
        (None, Some(i)) => (i, true),
        (None, None) => {
            return Err(EddyError::Internal(
                "a pane aggregate without window bounds".into(),
            ))
        }
    };
    let pane_starts: Vec<i64> = event_times_ns(&cols[bound])?
        .values()
        .iter()
        .map(|v| if is_end { v - p.slide_ns } else { *v })
        .collect();
    let mut out: Vec<Vec<GroupRef>> = (0..keys.len())
        .map(|_| Vec::with_capacity(p.windows() as usize))
        .collect();
    for k in 0..p.windows() {
        let starts: Vec<i64> = pane_starts.iter().map(|s| s - k * p.slide_ns).collect();
        let mut window_cols = cols.clone();
        for (group, add) in [(p.start_group, 0), (p.end_group, p.size_ns)] {
            if let Some(g) = group {
                window_cols[g] =
                    timestamps_of(cols[g].data_type(), starts.iter().map(|s| s + add))?;
            }
        }
        let rows = converter.convert_columns(&window_cols)?;
        for (i, o) in out.iter_mut().enumerate() {
            o.push((starts[i] + p.size_ns, Box::from(rows.row(i).data())));
        }
    }
    Ok(out)
}

impl AggregateOperator {
    /// Re-evaluate `changed` groups and emit retractions/insertions for those whose result changed.
    fn emit_updates(&mut self, changed: &[(EventTime, Box<[u8]>)]) -> Result<Option<Changes>> {
        let mut out = OutputBuilder::default();
        for (end, key) in changed {
            let Some(window) = self.windows.get_mut(end) else {
                continue;
            };
            let Some(group) = window.get_mut(key) else {
                continue;
            };
            if group.rows <= 0 {
                if let Some(prev) = group.emitted.take() {
                    out.push(key.clone(), prev, -1);
                }
                let bytes = group.bytes;
                window.remove(key);
                self.groups -= 1;
                self.state_bytes = self.state_bytes.saturating_sub(bytes);
                continue;
            }
            let values = group
                .accs
                .iter_mut()
                .map(|a| a.evaluate())
                .collect::<datafusion::error::Result<Vec<_>>>()?;
            if group.emitted.as_ref() == Some(&values) {
                continue;
            }
            if let Some(prev) = group.emitted.replace(values.clone()) {
                out.push(key.clone(), prev, -1);
            }
            out.push(key.clone(), values, 1);
        }
        out.finish(&self.converter, &self.spec.output_schema)
    }

    /// The watermark advanced to `wm`: close (and in EOWC mode emit) every
    /// window whose end is at or below it, and free its state.
    pub fn on_watermark(&mut self, wm: EventTime) -> Result<Option<Changes>> {
        if self.spec.window.is_none() {
            return Ok(None);
        }
        let mut out = OutputBuilder::default();
        while let Some(entry) = self.windows.first_entry() {
            if *entry.key() > wm {
                break;
            }
            let window = entry.remove();
            for (key, mut group) in window {
                self.groups -= 1;
                self.state_bytes = self.state_bytes.saturating_sub(group.bytes);
                if self.spec.emit == EmitMode::OnWindowClose && group.rows > 0 {
                    let values = group
                        .accs
                        .iter_mut()
                        .map(|a| a.evaluate())
                        .collect::<datafusion::error::Result<Vec<_>>>()?;
                    out.push(key, values, 1);
                }
            }
        }
        out.finish(&self.converter, &self.spec.output_schema)
    }
}

/// A batch's inputs to the aggregate, evaluated once: group keys in row format, window ends,
/// aggregate arguments and FILTER masks.
pub(super) struct Evaluated {
    /// Group keys (none without GROUP BY: every row is in the one group with the empty key).
    keys: Option<Rows>,
    /// Each row's window end, when windowed.
    ends: Option<Vec<EventTime>>,
    /// Per aggregate, its argument arrays.
    pub(super) args: Vec<Vec<ArrayRef>>,
    /// Per aggregate, its FILTER.
    pub(super) masks: Vec<Option<BooleanArray>>,
}

impl Evaluated {
    /// Evaluate `spec`'s expressions over `batch`.
    pub(super) fn new(
        spec: &AggregateSpec,
        converter: &RowConverter,
        batch: &RecordBatch,
    ) -> Result<Self> {
        let n = batch.num_rows();
        let group_arrays = spec
            .group_exprs
            .iter()
            .map(|e| e.evaluate(batch).and_then(|v| v.into_array(n)))
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        let keys = if group_arrays.is_empty() {
            None
        } else {
            Some(converter.convert_columns(&group_arrays)?)
        };
        let ends = match spec.window {
            None => None,
            Some(wk) => {
                let t = event_times_ns(&group_arrays[wk.group_index])?;
                Some(
                    t.values()
                        .iter()
                        .map(|v| if wk.is_end { *v } else { v + wk.size_ns })
                        .collect(),
                )
            }
        };
        let (args, masks) = agg_inputs(spec, batch)?;
        Ok(Evaluated {
            keys,
            ends,
            args,
            masks,
        })
    }

    /// Row `i`'s group: (window end, key).
    pub(super) fn key(&self, i: usize) -> (EventTime, &[u8]) {
        let end = self.ends.as_ref().map_or(NO_WINDOW, |e| e[i]);
        (end, self.keys.as_ref().map_or(&[][..], |r| r.row(i).data()))
    }
}

/// Per aggregate of `spec`, its argument arrays and its FILTER mask over `batch`.
pub(super) type AggInputs = (Vec<Vec<ArrayRef>>, Vec<Option<BooleanArray>>);

/// Evaluate every aggregate's arguments and FILTER over `batch`.
pub(super) fn agg_inputs(spec: &AggregateSpec, batch: &RecordBatch) -> Result<AggInputs> {
    let n = batch.num_rows();
    let args = spec
        .aggs
        .iter()
        .map(|a| {
            a.args
                .iter()
                .map(|e| e.evaluate(batch).and_then(|v| v.into_array(n)))
                .collect::<datafusion::error::Result<Vec<_>>>()
        })
        .collect::<datafusion::error::Result<_>>()?;
    let masks = spec
        .aggs
        .iter()
        .map(|a| match &a.filter {
            None => Ok(None),
            Some(f) => {
                let v = f.evaluate(batch)?.into_array(n)?;
                Ok(v.as_any().downcast_ref::<BooleanArray>().cloned())
            }
        })
        .collect::<datafusion::error::Result<_>>()?;
    Ok((args, masks))
}

/// Nanosecond times as an array of timestamp type `t` (a window bound's).
pub(super) fn timestamps_of(t: &DataType, ns: impl Iterator<Item = i64>) -> Result<ArrayRef> {
    let DataType::Timestamp(unit, _) = t else {
        return Err(EddyError::Internal(format!("window bound of type {t}")));
    };
    let per = nanos_per_unit(*unit);
    let raw: ArrayRef = Arc::new(Int64Array::from_iter_values(ns.map(|v| v / per)));
    Ok(cast(&raw, t)?)
}

/// Collects output rows and turns them into one [`Changes`] batch.
#[derive(Default)]
struct OutputBuilder {
    keys: Vec<Box<[u8]>>,
    values: Vec<Vec<ScalarValue>>,
    weights: Vec<i64>,
}

impl OutputBuilder {
    fn push(&mut self, key: Box<[u8]>, values: Vec<ScalarValue>, weight: i64) {
        self.keys.push(key);
        self.values.push(values);
        self.weights.push(weight);
    }

    fn finish(self, converter: &RowConverter, schema: &SchemaRef) -> Result<Option<Changes>> {
        if self.keys.is_empty() {
            return Ok(None);
        }
        let mut cols = if schema.fields().len() == self.values.first().map_or(0, Vec::len) {
            Vec::new()
        } else {
            let parser = converter.parser();
            converter.convert_rows(self.keys.iter().map(|k| parser.parse(k)))?
        };
        let n_groups = cols.len();
        for (j, field) in schema.fields()[n_groups..].iter().enumerate() {
            let arr = ScalarValue::iter_to_array(self.values.iter().map(|v| v[j].clone()))?;
            let arr = if arr.data_type() == field.data_type() {
                arr
            } else {
                cast(&arr, field.data_type())?
            };
            cols.push(arr);
        }
        let batch = RecordBatch::try_new(schema.clone(), cols)?;
        Ok(Some(Changes::with_weights(
            batch,
            Int64Array::from(self.weights),
        )))
    }
}

/// Concatenate change batches of one schema.
pub fn concat_changes(schema: &SchemaRef, parts: Vec<Changes>) -> Result<Option<Changes>> {
    match parts.len() {
        0 => Ok(None),
        1 => Ok(parts.into_iter().next()),
        _ => {
            let batches: Vec<&RecordBatch> = parts.iter().map(|c| &c.batch).collect();
            let batch = concat_batches(schema, batches)?;
            let weights: Vec<i64> = parts
                .iter()
                .flat_map(|c| (0..c.num_rows()).map(move |i| c.weight(i)))
                .collect();
            Ok(Some(Changes::with_weights(
                batch,
                Int64Array::from(weights),
            )))
        }
    }
}
