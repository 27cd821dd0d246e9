//! Aggregate state for windows that emit when they close: per window, one DataFusion
//! `GroupsAccumulator` per aggregate holding every group of the window (its state is a few
//! arrays indexed by group number, as in DataFusion's own hash aggregate).
//!
//! Emitting on window close, nothing is read from a group until its window closes, so the
//! accumulators are updated in place: a batch costs one hash lookup per row and one
//! `update_batch` per aggregate and window it touches (a HOP's rows are first folded per pane
//! and each pane's partial state merged into its windows). When the watermark passes a
//! window's end, one `evaluate` per aggregate yields every group's value. Emitting on update
//! needs each changed group's value after every batch, which `evaluate` (it consumes the
//! state) cannot give without rebuilding it: that is [`super::Columnar`]'s job.
//!
//! Checkpoints write the same batch as the other layouts (`state` hands the state out; the
//! accumulator is rebuilt from it).

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{
    new_null_array, Array, ArrayRef, AsArray, BooleanArray, Int64Array, UInt32Array,
};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::common::hash_utils::RandomState;
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};

use super::columnar::{
    append_only, cast_to, checkpointed_states, in_columns, number_rows, tagged, Targets,
};
use super::groups::{concat_changes, AggregateSpec, Evaluated};
use super::snapshot::{state_schema, state_types, Checkpoint};
use crate::error::{EddyError, Result};
use crate::sql::EmitMode;
use crate::types::{Changes, EventTime};

/// The groups of one window (or of one HOP pane, [`super::Panes`]).
pub(super) struct Window {
    /// Key (row format) → group number.
    index: HashMap<Arc<[u8]>, usize, RandomState>,
    /// Keys by group number.
    pub(super) keys: Vec<Arc<[u8]>>,
    /// Net input rows by group number.
    pub(super) rows: Vec<i64>,
    /// One per aggregate.
    pub(super) accs: Vec<Box<dyn GroupsAccumulator>>,
    /// Bytes of the keys.
    key_bytes: usize,
}

impl Window {
    /// No groups.
    pub(super) fn new(spec: &AggregateSpec) -> Result<Self> {
        Ok(Window {
            index: HashMap::default(),
            keys: Vec::new(),
            rows: Vec::new(),
            accs: spec
                .aggs
                .iter()
                .map(|a| a.func.create_groups_accumulator())
                .collect::<datafusion::error::Result<_>>()?,
            key_bytes: 0,
        })
    }

    /// The number of group `key`, added if new.
    pub(super) fn group(&mut self, key: &[u8]) -> usize {
        if let Some(g) = self.index.get(key) {
            return *g;
        }
        let key: Arc<[u8]> = key.into();
        self.key_bytes += key.len();
        self.keys.push(key.clone());
        self.rows.push(0);
        self.index.insert(key, self.keys.len() - 1);
        self.keys.len() - 1
    }

    /// Forget the groups numbered `n` and above (added since the window had `n`), before any
    /// of their rows reached the accumulators.
    pub(super) fn truncate(&mut self, n: usize) {
        for key in self.keys.drain(n..) {
            self.key_bytes -= key.len();
            self.index.remove(&key);
        }
        self.rows.truncate(n);
    }

    /// Each aggregate's state fields, by group number, leaving the state as it was (an
    /// accumulator hands its state out and is rebuilt from it).
    pub(super) fn state(&mut self, spec: &AggregateSpec) -> Result<Vec<Vec<ArrayRef>>> {
        let n = self.keys.len();
        let idx: Vec<usize> = (0..n).collect();
        let mut out = Vec::with_capacity(self.accs.len());
        for (acc, agg) in self.accs.iter_mut().zip(&spec.aggs) {
            let state = acc.state(EmitTo::All)?;
            let mut rebuilt = agg.func.create_groups_accumulator()?;
            rebuilt.merge_batch(&state, &idx, n)?;
            *acc = rebuilt;
            out.push(state);
        }
        Ok(out)
    }

    /// Approximate bytes held.
    pub(super) fn bytes(&self) -> usize {
        const PER_GROUP: usize = 2 * std::mem::size_of::<(Arc<[u8]>, usize)>();
        self.key_bytes
            + self.keys.len() * PER_GROUP
            + self.accs.iter().map(|a| a.size()).sum::<usize>()
    }
}

/// The state of one partition of an aggregate that emits on window close.
pub struct Closing {
    spec: Arc<AggregateSpec>,
    keys: RowConverter,
    widths: Vec<usize>,
    state_types: Vec<DataType>,
    value_types: Vec<DataType>,
    windows: BTreeMap<EventTime, Window>,
    groups: usize,
}

impl Closing {
    /// The state for `spec`, or `None` unless it emits on window close, is windowed, never
    /// retracts and every aggregate has a `GroupsAccumulator` (see [`vectorizable`]).
    pub fn try_new(spec: Arc<AggregateSpec>) -> Result<Option<Self>> {
        if spec.emit != EmitMode::OnWindowClose || spec.window.is_none() || !in_columns(&spec) {
            return Ok(None);
        }
        let n_groups = spec.group_exprs.len();
        let fields = spec.output_schema.fields();
        let key_fields: Vec<SortField> = fields[..n_groups]
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        if !RowConverter::supports_fields(&key_fields) {
            return Ok(None);
        }
        let per_agg = state_types(&spec)?;
        Ok(Some(Closing {
            keys: RowConverter::new(key_fields)?,
            widths: per_agg.iter().map(Vec::len).collect(),
            state_types: per_agg.into_iter().flatten().collect(),
            value_types: fields[n_groups..]
                .iter()
                .map(|f| f.data_type().clone())
                .collect(),
            spec,
            windows: BTreeMap::new(),
            groups: 0,
        }))
    }

    /// The spec the state was made for.
    pub fn spec(&self) -> &Arc<AggregateSpec> {
        &self.spec
    }

    /// Number of groups held.
    pub fn groups(&self) -> usize {
        self.groups
    }

    /// Approximate bytes of state held.
    pub fn state_bytes(&self) -> usize {
        self.windows.values().map(Window::bytes).sum()
    }

    /// Fold a batch into state (nothing is emitted before a window closes).
    pub fn process(&mut self, changes: &Changes) -> Result<Option<Changes>> {
        let batch = &changes.batch;
        let n = batch.num_rows();
        if n == 0 {
            return Ok(None);
        }
        append_only(changes)?;
        let input = Evaluated::new(&self.spec, &self.keys, batch)?;
        let (slot_keys, slot_rows, row_slot) = number_rows(&input, n);
        let targets = Targets::new(&self.keys, &self.spec, &slot_keys, &slot_rows)?;
        let fresh = targets
            .keys
            .iter()
            .filter(|(end, key)| {
                !self
                    .windows
                    .get(end)
                    .is_some_and(|w| w.index.contains_key(key.as_ref()))
            })
            .count();
        if self.groups + fresh > self.spec.max_groups {
            return Err(EddyError::LimitExceeded(format!(
                "aggregate state is full: {} groups in one partition (limit {})",
                self.groups, self.spec.max_groups
            )));
        }
        // Each target's window and group number there.
        let mut group_of = Vec::with_capacity(targets.keys.len());
        for (u, (end, key)) in targets.keys.iter().enumerate() {
            if !self.windows.contains_key(end) {
                self.windows.insert(*end, Window::new(&self.spec)?);
            }
            let Some(window) = self.windows.get_mut(end) else {
                return Err(EddyError::Internal("window vanished".into()));
            };
            let g = window.group(key);
            window.rows[g] += targets.rows[u];
            group_of.push((*end, g));
        }
        self.groups += fresh;
        match &targets.contributions {
            None => self.update(&input, &row_slot, &group_of),
            Some((src, dst)) => {
                self.merge_panes(&input, &row_slot, slot_keys.len(), src, dst, &group_of)
            }
        }
    }

    /// Rows straight into their windows' accumulators (`row_slot[i]` is row i's target).
    fn update(
        &mut self,
        input: &Evaluated,
        row_slot: &[usize],
        group_of: &[(EventTime, usize)],
    ) -> Result<Option<Changes>> {
        // Rows per window: usually a batch lies in one window.
        let mut per_window: BTreeMap<EventTime, Vec<u32>> = BTreeMap::new();
        for (i, s) in row_slot.iter().enumerate() {
            per_window.entry(group_of[*s].0).or_default().push(i as u32);
        }
        let single = per_window.len() == 1;
        for (end, rows) in per_window {
            let Some(window) = self.windows.get_mut(&end) else {
                return Err(EddyError::Internal("window vanished".into()));
            };
            let total = window.keys.len();
            let groups: Vec<usize> = rows
                .iter()
                .map(|i| group_of[row_slot[*i as usize]].1)
                .collect();
            let idx = UInt32Array::from(rows);
            for (j, acc) in window.accs.iter_mut().enumerate() {
                let mask = input.masks[j].as_ref();
                if single {
                    acc.update_batch(&input.args[j], &groups, mask, total)?;
                } else {
                    let args = input.args[j]
                        .iter()
                        .map(|a| take(a.as_ref(), &idx, None))
                        .collect::<std::result::Result<Vec<_>, _>>()?;
                    let mask = match mask {
                        Some(m) => Some(take(m, &idx, None)?.as_boolean().clone()),
                        None => None,
                    };
                    acc.update_batch(&args, &groups, mask.as_ref(), total)?;
                }
            }
        }
        Ok(None)
    }

    /// HOP: fold the batch per pane group, then merge each pane's partial state into the
    /// windows containing the pane (`src[k]` → target `dst[k]`).
    fn merge_panes(
        &mut self,
        input: &Evaluated,
        row_slot: &[usize],
        n_slots: usize,
        src: &UInt32Array,
        dst: &[usize],
        group_of: &[(EventTime, usize)],
    ) -> Result<Option<Changes>> {
        let mut lists: BTreeMap<EventTime, (Vec<u32>, Vec<usize>)> = BTreeMap::new();
        for (k, u) in dst.iter().enumerate() {
            let (end, g) = group_of[*u];
            let e = lists.entry(end).or_default();
            e.0.push(src.value(k));
            e.1.push(g);
        }
        // Per window: which pane groups feed it (as take indices) and its groups they feed.
        let per_window: Vec<(EventTime, UInt32Array, Vec<usize>)> = lists
            .into_iter()
            .map(|(end, (slots, groups))| (end, UInt32Array::from(slots), groups))
            .collect();
        for (j, agg) in self.spec.aggs.iter().enumerate() {
            let mut pane = agg.func.create_groups_accumulator()?;
            pane.update_batch(&input.args[j], row_slot, input.masks[j].as_ref(), n_slots)?;
            let partial = pane.state(EmitTo::All)?;
            for (end, idx, groups) in &per_window {
                let Some(window) = self.windows.get_mut(end) else {
                    return Err(EddyError::Internal("window vanished".into()));
                };
                let taken = partial
                    .iter()
                    .map(|a| take(a.as_ref(), idx, None))
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                let total = window.keys.len();
                window.accs[j].merge_batch(&taken, groups, total)?;
            }
        }
        Ok(None)
    }

    /// The watermark advanced to `wm`: emit and free every window whose end is at or below it.
    pub fn on_watermark(&mut self, wm: EventTime) -> Result<Option<Changes>> {
        let mut parts = Vec::new();
        while let Some(entry) = self.windows.first_entry() {
            if *entry.key() > wm {
                break;
            }
            let mut window = entry.remove();
            self.groups -= window.keys.len();
            let mut cols = if self.spec.group_exprs.is_empty() {
                Vec::new()
            } else {
                let parser = self.keys.parser();
                self.keys
                    .convert_rows(window.keys.iter().map(|k| parser.parse(k)))?
            };
            for (acc, t) in window.accs.iter_mut().zip(&self.value_types) {
                cols.push(cast_to(acc.evaluate(EmitTo::All)?, t)?);
            }
            let n = window.keys.len();
            let batch = RecordBatch::try_new(self.spec.output_schema.clone(), cols)?;
            // Append-only input: every group has rows; the filter keeps the contract explicit.
            let keep = BooleanArray::from_iter(window.rows.iter().map(|r| Some(*r > 0)));
            let batch = datafusion::arrow::compute::filter_record_batch(&batch, &keep)?;
            if n > 0 && batch.num_rows() > 0 {
                let weights = Int64Array::from(vec![1; batch.num_rows()]);
                parts.push(Changes::with_weights(batch, weights));
            }
        }
        concat_changes(&self.spec.output_schema, parts)
    }

    /// Every group as one batch, in the layout of [`state_schema`]. Each accumulator hands out
    /// its state and is rebuilt from it.
    pub fn snapshot(&mut self) -> Result<RecordBatch> {
        let schema = tagged(state_schema(&self.spec)?);
        if self.groups == 0 {
            return Ok(RecordBatch::new_empty(schema));
        }
        let mut ends = Vec::with_capacity(self.groups);
        let mut rows: Vec<i64> = Vec::with_capacity(self.groups);
        let mut keys: Vec<Arc<[u8]>> = Vec::with_capacity(self.groups);
        let mut states: Vec<Vec<ArrayRef>> = vec![Vec::new(); self.state_types.len()];
        for (end, window) in self.windows.iter_mut() {
            let n = window.keys.len();
            ends.extend(std::iter::repeat_n(*end, n));
            rows.extend(&window.rows);
            keys.extend(window.keys.iter().cloned());
            let fields = window.state(&self.spec)?.into_iter().flatten();
            for ((parts, a), t) in states.iter_mut().zip(fields).zip(&self.state_types) {
                parts.push(cast_to(a, t)?);
            }
        }
        let key_cols = if self.spec.group_exprs.is_empty() {
            Vec::new()
        } else {
            let parser = self.keys.parser();
            self.keys
                .convert_rows(keys.iter().map(|k| parser.parse(k)))?
        };
        checkpoint_batch(&self.spec, &self.value_types, ends, key_cols, rows, states)
    }

    /// Load groups from checkpoint batches (of [`state_schema`], any layout).
    pub fn restore(&mut self, batches: &[RecordBatch]) -> Result<()> {
        for batch in batches {
            let cp = Checkpoint::read(&self.spec, batch)?;
            let keys = (!self.spec.group_exprs.is_empty())
                .then(|| self.keys.convert_columns(cp.keys))
                .transpose()?;
            self.groups += load(
                &mut self.windows,
                &self.spec,
                &self.widths,
                batch,
                &cp,
                keys.as_ref(),
            )?;
        }
        Ok(())
    }
}

/// Merge the groups of checkpoint `batch` (read as `cp`) into `windows` (by window end), each
/// under its row in `keys` (the empty key where there are none). Returns how many groups
/// were added.
pub(super) fn load(
    windows: &mut BTreeMap<EventTime, Window>,
    spec: &AggregateSpec,
    widths: &[usize],
    batch: &RecordBatch,
    cp: &Checkpoint<'_>,
    keys: Option<&Rows>,
) -> Result<usize> {
    let states = checkpointed_states(batch, spec, widths, cp.states)?;
    let mut added = 0;
    // Rows per window, with their group numbers there.
    let mut per_window: BTreeMap<EventTime, (Vec<u32>, Vec<usize>)> = BTreeMap::new();
    for r in 0..cp.ends.len() {
        let end = cp.ends.value(r);
        let window = match windows.entry(end) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) => v.insert(Window::new(spec)?),
        };
        let key = keys.map_or(&[][..], |k| k.row(r).data());
        let before = window.keys.len();
        let g = window.group(key);
        added += window.keys.len() - before;
        window.rows[g] += cp.rows.value(r);
        let e = per_window.entry(end).or_default();
        e.0.push(r as u32);
        e.1.push(g);
    }
    for (end, (rs, groups)) in per_window {
        let Some(window) = windows.get_mut(&end) else {
            return Err(EddyError::Internal("window vanished".into()));
        };
        let idx = UInt32Array::from(rs);
        let total = window.keys.len();
        let mut col = 0;
        for (j, acc) in window.accs.iter_mut().enumerate() {
            let w = widths[j];
            let taken = states[col..col + w]
                .iter()
                .map(|a| take(a.as_ref(), &idx, None))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            acc.merge_batch(&taken, &groups, total)?;
            col += w;
        }
    }
    Ok(added)
}

/// A checkpoint batch in the layout of [`state_schema`] from its parts: each group's window
/// end, key columns, net rows and state fields (`states[f]` holds field f's arrays, one per
/// window, in the order of `ends`). Emitting on close, no group has emitted.
pub(super) fn checkpoint_batch(
    spec: &AggregateSpec,
    value_types: &[DataType],
    ends: Vec<EventTime>,
    key_cols: Vec<ArrayRef>,
    rows: Vec<i64>,
    states: Vec<Vec<ArrayRef>>,
) -> Result<RecordBatch> {
    let schema = tagged(state_schema(spec)?);
    let total = rows.len();
    let mut cols: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(ends))];
    cols.extend(key_cols);
    cols.push(Arc::new(Int64Array::from(rows)));
    for parts in states {
        let refs: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
        cols.push(datafusion::arrow::compute::concat(&refs)?);
    }
    cols.push(Arc::new(BooleanArray::from(vec![false; total])));
    for t in value_types {
        cols.push(new_null_array(t, total));
    }
    Ok(RecordBatch::try_new(schema, cols)?)
}
