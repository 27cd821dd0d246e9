//! Aggregate state for windows that emit when they close: per window — or, for a HOP, per
//! *pane* (the slide a row falls in) — a [`GroupTable`] of the groups with one DataFusion
//! `GroupsAccumulator` per aggregate holding them all.
//!
//! Emitting on close, nothing is read from a group until its window closes, so a batch costs
//! one hash lookup per row and one `update_batch` per aggregate and window (or pane) it
//! touches. When the watermark passes a window's end, one `evaluate` per aggregate yields every
//! group's value. Emitting on update needs each changed group's value after every batch,
//! which `evaluate` (it consumes the state) cannot give without rebuilding it: that is
//! [`super::Columnar`]'s job.
//!
//! A HOP of size 10 s sliding by 2 s puts every row in 5 windows. Kept per pane, a row costs
//! one lookup and one `update_batch` into its pane's accumulators, as a TUMBLE of the slide
//! would. When a window closes, its panes hand out their state (once per pane: a finished
//! pane is frozen into its state arrays) and the window merges them, group by group: per
//! window one lookup per pane group, however many rows the panes took. A pane is freed when
//! the last window containing it has closed. Every other window (TUMBLE, CUMULATE, SESSION,
//! TUMBLE_ROWS) is its own pane.
//!
//! Checkpoints keep the per-window format every aggregate layout writes (each open window's
//! state, a HOP's panes merged), so any layout restores them; restored windows are kept whole
//! as *bases*, and a window closing merges its base with what its panes took since.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array, UInt32Array};
use datafusion::arrow::compute::{filter_record_batch, take};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::logical_expr::EmitTo;

use super::columnar::{append_only, cast_to, in_columns, tagged};
use super::groups::{
    agg_inputs, concat_changes, timestamps_of, AggregateSpec, PaneSpec, WindowKey,
};
use super::snapshot::{state_schema, state_types, Checkpoint};
use super::table::{checkpoint_batch, load, GroupTable};
use crate::error::{EddyError, Result};
use crate::operators::window::event_times_ns;
use crate::sql::EmitMode;
use crate::types::{Changes, EventTime};

/// One pane's groups.
struct Pane {
    groups: GroupTable,
    /// Set once the watermark has passed the pane's end and a window needed its state: each
    /// aggregate's state fields by group number (the accumulators are then empty).
    frozen: Option<Vec<Vec<ArrayRef>>>,
}

impl Pane {
    /// Freeze the pane if it is still filling.
    fn freeze(&mut self) -> Result<()> {
        if self.frozen.is_none() {
            self.frozen = Some(self.groups.take_state()?);
        }
        Ok(())
    }

    /// Make a frozen pane take rows again (a row for a pane the watermark has passed: window
    /// assignment drops those as late, so only a restored watermark lower than before gets
    /// here).
    fn thaw(&mut self) -> Result<()> {
        if let Some(frozen) = self.frozen.take() {
            let n = self.groups.len();
            let idx: Vec<usize> = (0..n).collect();
            for (acc, state) in self.groups.accs.iter_mut().zip(&frozen) {
                acc.merge_batch(state, &idx, n)?;
            }
        }
        Ok(())
    }

    /// Each aggregate's state by group number, leaving the pane as it was.
    fn state(&mut self, spec: &AggregateSpec) -> Result<Vec<Vec<ArrayRef>>> {
        match &self.frozen {
            Some(f) => Ok(f.clone()),
            None => self.groups.state(spec),
        }
    }

    fn bytes(&self) -> usize {
        let frozen: usize = self
            .frozen
            .iter()
            .flatten()
            .flatten()
            .map(|a| a.get_array_memory_size())
            .sum();
        self.groups.bytes() + frozen
    }
}

/// Where a row's window is.
#[derive(Clone, Copy)]
enum Shape {
    /// A HOP aggregated per pane.
    Hop(PaneSpec),
    /// Every window is its own pane; the group column the key names gives the window's end.
    Own(WindowKey),
}

/// The state of one partition of an aggregate emitting on window close.
pub struct Closing {
    spec: Arc<AggregateSpec>,
    shape: Shape,
    /// The group expressions other than the window bounds: a group's key within a pane or a
    /// window.
    inner: Vec<usize>,
    /// Keys (the `inner` columns) in row format.
    keys: RowConverter,
    widths: Vec<usize>,
    state_types: Vec<DataType>,
    value_types: Vec<DataType>,
    /// By pane end.
    panes: BTreeMap<EventTime, Pane>,
    /// Windows restored from a checkpoint, by window end.
    bases: BTreeMap<EventTime, GroupTable>,
    /// The end of the last window emitted.
    closed: Option<EventTime>,
    /// Groups held: pane groups and restored window groups.
    groups: usize,
    /// Groups of the last pane freed, and of the last window merged from panes: room a new
    /// one gets up front (a table growing rehashes its index every time it doubles).
    hint: usize,
    window_hint: usize,
}

impl Closing {
    /// The state for `spec`, or `None` unless it is windowed, emits on window close and its
    /// state can be columnar (see [`in_columns`]).
    pub fn try_new(spec: Arc<AggregateSpec>) -> Result<Option<Self>> {
        let shape = match (spec.panes, spec.window) {
            (Some(p), _) if p.slide_ns > 0 && p.size_ns % p.slide_ns == 0 => Shape::Hop(p),
            (None, Some(w)) => Shape::Own(w),
            _ => return Ok(None),
        };
        if spec.emit != EmitMode::OnWindowClose || !in_columns(&spec) {
            return Ok(None);
        }
        let n_groups = spec.group_exprs.len();
        let fields = spec.output_schema.fields();
        let inner: Vec<usize> = (0..n_groups)
            .filter(|i| bound(shape, *i, 0).is_none())
            .collect();
        let key_fields: Vec<SortField> = inner
            .iter()
            .map(|i| SortField::new(fields[*i].data_type().clone()))
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
            inner,
            shape,
            spec,
            panes: BTreeMap::new(),
            bases: BTreeMap::new(),
            closed: None,
            groups: 0,
            hint: 0,
            window_hint: 0,
        }))
    }

    /// The spec the state was made for.
    pub fn spec(&self) -> &Arc<AggregateSpec> {
        &self.spec
    }

    /// Number of groups held (a group of a pane counts once, however many windows it feeds).
    pub fn groups(&self) -> usize {
        self.groups
    }

    /// Approximate bytes of state held.
    pub fn state_bytes(&self) -> usize {
        self.panes.values().map(Pane::bytes).sum::<usize>()
            + self.bases.values().map(GroupTable::bytes).sum::<usize>()
    }

    /// A key's rows in `keys`, the empty key without keys.
    fn key(keys: &Option<Rows>, i: usize) -> &[u8] {
        keys.as_ref().map_or(&[][..], |k| k.row(i).data())
    }

    /// Fold a batch into its panes (nothing is emitted before a window closes).
    pub fn process(&mut self, changes: &Changes) -> Result<Option<Changes>> {
        let batch = &changes.batch;
        let n = batch.num_rows();
        if n == 0 {
            return Ok(None);
        }
        append_only(changes)?;
        let cols = self
            .spec
            .group_exprs
            .iter()
            .map(|e| e.evaluate(batch).and_then(|v| v.into_array(n)))
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        let ends = self.pane_ends(&cols)?;
        let keys = if self.inner.is_empty() {
            None
        } else {
            let inner: Vec<ArrayRef> = self.inner.iter().map(|i| cols[*i].clone()).collect();
            Some(self.keys.convert_columns(&inner)?)
        };
        // Rows by pane: usually a batch lies in one.
        let first = ends.first().copied().unwrap_or_default();
        let segments: Vec<(EventTime, Option<UInt32Array>)> = if ends.iter().all(|e| *e == first) {
            vec![(first, None)]
        } else {
            let mut by_pane: BTreeMap<EventTime, Vec<u32>> = BTreeMap::new();
            for (i, e) in ends.iter().enumerate() {
                by_pane.entry(*e).or_default().push(i as u32);
            }
            by_pane
                .into_iter()
                .map(|(e, rows)| (e, Some(UInt32Array::from(rows))))
                .collect()
        };
        // Number every row's group in its pane; undo the new groups if they overflow.
        let mut numbered = Vec::with_capacity(segments.len());
        let mut added = 0;
        for (end, rows) in &segments {
            let pane = match self.panes.entry(*end) {
                Entry::Occupied(o) => o.into_mut(),
                Entry::Vacant(v) => v.insert(Pane {
                    groups: GroupTable::new(&self.spec, self.hint)?,
                    frozen: None,
                }),
            };
            pane.thaw()?;
            let before = pane.groups.len();
            let groups: Vec<usize> = match rows {
                None => (0..n)
                    .map(|i| pane.groups.group(Self::key(&keys, i)))
                    .collect(),
                Some(rows) => rows
                    .values()
                    .iter()
                    .map(|i| pane.groups.group(Self::key(&keys, *i as usize)))
                    .collect(),
            };
            added += pane.groups.len() - before;
            numbered.push((before, groups));
        }
        if self.groups + added > self.spec.max_groups {
            for ((end, _), (before, _)) in segments.iter().zip(&numbered) {
                let pane = self.pane(*end)?;
                pane.groups.truncate(*before);
                if pane.groups.len() == 0 {
                    self.panes.remove(end);
                }
            }
            return Err(EddyError::LimitExceeded(format!(
                "aggregate state is full: {} groups in one partition (limit {})",
                self.groups, self.spec.max_groups
            )));
        }
        self.groups += added;
        let (args, masks) = agg_inputs(&self.spec, batch)?;
        for ((end, rows), (_, groups)) in segments.iter().zip(&numbered) {
            let pane = self.pane(*end)?;
            for g in groups {
                pane.groups.rows[*g] += 1;
            }
            let total = pane.groups.len();
            for (j, acc) in pane.groups.accs.iter_mut().enumerate() {
                match rows {
                    None => acc.update_batch(&args[j], groups, masks[j].as_ref(), total)?,
                    Some(idx) => {
                        let args = args[j]
                            .iter()
                            .map(|a| take(a.as_ref(), idx, None))
                            .collect::<std::result::Result<Vec<_>, _>>()?;
                        let mask = match &masks[j] {
                            Some(m) => Some(take(m, idx, None)?.as_boolean().clone()),
                            None => None,
                        };
                        acc.update_batch(&args, groups, mask.as_ref(), total)?;
                    }
                }
            }
        }
        Ok(None)
    }

    /// Each row's pane end, from the window bound among the group columns `cols`.
    fn pane_ends(&self, cols: &[ArrayRef]) -> Result<Vec<EventTime>> {
        let (bound, add) = match self.shape {
            Shape::Hop(PaneSpec {
                start_group: Some(i),
                slide_ns,
                ..
            }) => (i, slide_ns),
            Shape::Hop(PaneSpec {
                end_group: Some(i), ..
            }) => (i, 0),
            Shape::Hop(_) => {
                return Err(EddyError::Internal(
                    "a pane aggregate without window bounds".into(),
                ))
            }
            Shape::Own(w) if w.is_end => (w.group_index, 0),
            Shape::Own(w) => (w.group_index, w.size_ns),
        };
        Ok(event_times_ns(&cols[bound])?
            .values()
            .iter()
            .map(|v| v.saturating_add(add))
            .collect())
    }

    fn pane(&mut self, end: EventTime) -> Result<&mut Pane> {
        self.panes
            .get_mut(&end)
            .ok_or_else(|| EddyError::Internal("pane vanished".into()))
    }

    /// The ends of the windows containing the pane ending at `pane_end`.
    fn windows_of(&self, pane_end: EventTime) -> impl Iterator<Item = EventTime> {
        let (slide, n) = match self.shape {
            Shape::Hop(p) => (p.slide_ns, p.size_ns / p.slide_ns),
            Shape::Own(_) => (0, 1),
        };
        (0..n).map(move |k| pane_end.saturating_add(k * slide))
    }

    /// The end of the last window containing the pane ending at `pane_end`.
    fn last_window(&self, pane_end: EventTime) -> EventTime {
        self.windows_of(pane_end).last().unwrap_or(pane_end)
    }

    /// The first window not yet emitted that holds state: the earliest unemitted window of
    /// the first pane, or a restored window if earlier. Panes whose windows have all been
    /// emitted are freed on the way.
    fn next_window(&mut self) -> Option<EventTime> {
        let from_panes = loop {
            let Some((&p, pane)) = self.panes.first_key_value() else {
                break None;
            };
            let next = match (self.closed, self.shape) {
                (Some(c), Shape::Hop(h)) => p.max(c.saturating_add(h.slide_ns)),
                _ => p,
            };
            if next <= self.last_window(p) {
                break Some(next);
            }
            self.groups -= pane.groups.len();
            self.hint = pane.groups.len();
            self.panes.pop_first();
        };
        let from_bases = self.bases.first_key_value().map(|(e, _)| *e);
        match (from_panes, from_bases) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The watermark advanced to `wm`: emit every window whose end is at or below it, and
    /// free the panes no open window contains.
    pub fn on_watermark(&mut self, wm: EventTime) -> Result<Option<Changes>> {
        let mut parts = Vec::new();
        while let Some(end) = self.next_window() {
            if end > wm {
                break;
            }
            let window = self.close(end)?;
            self.window_hint = window.len();
            if let Some(c) = self.emit(end, window)? {
                parts.push(c);
            }
            // A window that is its own pane took the pane with it.
            if let Shape::Hop(_) = self.shape {
                self.closed = Some(end);
            }
        }
        concat_changes(&self.spec.output_schema, parts)
    }

    /// The window ending at `end`, taken out of the state: its restored base and its panes'
    /// groups merged (a window that is its own pane is that pane).
    fn close(&mut self, end: EventTime) -> Result<GroupTable> {
        let base = self.bases.remove(&end);
        if let Some(b) = &base {
            self.groups -= b.len();
        }
        if let Shape::Own(_) = self.shape {
            let Some(mut pane) = self.panes.remove(&end) else {
                return base.map_or_else(|| GroupTable::new(&self.spec, 0), Ok);
            };
            self.groups -= pane.groups.len();
            self.hint = pane.groups.len();
            pane.thaw()?;
            let Some(mut window) = base else {
                return Ok(pane.groups);
            };
            let state = pane.groups.take_state()?;
            merge_into(&mut window, &pane.groups, &state)?;
            return Ok(window);
        }
        let mut window = match base {
            Some(b) => b,
            None => GroupTable::new(&self.spec, self.window_hint)?,
        };
        for pane in self
            .panes
            .range_mut(self.first_pane(end)..=end)
            .map(|(_, p)| p)
        {
            pane.freeze()?;
            let state = pane.frozen.as_deref().unwrap_or_default();
            merge_into(&mut window, &pane.groups, state)?;
        }
        Ok(window)
    }

    /// The end of the first pane of the window ending at `end`.
    fn first_pane(&self, end: EventTime) -> EventTime {
        match self.shape {
            Shape::Hop(h) => end.saturating_sub(h.size_ns - h.slide_ns),
            Shape::Own(_) => end,
        }
    }

    /// The output rows of the window ending at `end`.
    fn emit(&self, end: EventTime, mut window: GroupTable) -> Result<Option<Changes>> {
        let n = window.len();
        if n == 0 {
            return Ok(None);
        }
        let mut cols = self.key_columns(end, &window)?;
        for (acc, t) in window.accs.iter_mut().zip(&self.value_types) {
            cols.push(cast_to(acc.evaluate(EmitTo::All)?, t)?);
        }
        let batch = RecordBatch::try_new(self.spec.output_schema.clone(), cols)?;
        // Append-only input: every group has rows; the filter keeps the contract explicit.
        let keep = BooleanArray::from_iter(window.rows.iter().map(|r| Some(*r > 0)));
        let batch = filter_record_batch(&batch, &keep)?;
        if batch.num_rows() == 0 {
            return Ok(None);
        }
        let weights = Int64Array::from(vec![1; batch.num_rows()]);
        Ok(Some(Changes::with_weights(batch, weights)))
    }

    /// The group columns of the window ending at `end` for groups `keys`: the window bounds
    /// and the key columns, in the order of the GROUP BY.
    fn key_columns(&self, end: EventTime, groups: &GroupTable) -> Result<Vec<ArrayRef>> {
        let n = groups.len();
        let parser = self.keys.parser();
        let mut inner = if self.inner.is_empty() {
            Vec::new()
        } else {
            self.keys
                .convert_rows(groups.keys().map(|k| parser.parse(k)))?
        }
        .into_iter();
        let fields = self.spec.output_schema.fields();
        let mut cols = Vec::with_capacity(fields.len());
        for (i, field) in fields[..self.spec.group_exprs.len()].iter().enumerate() {
            cols.push(match bound(self.shape, i, end) {
                Some(t) => timestamps_of(field.data_type(), std::iter::repeat_n(t, n))?,
                None => inner
                    .next()
                    .ok_or_else(|| EddyError::Internal("a pane key column is missing".into()))?,
            });
        }
        Ok(cols)
    }

    /// Every open window's groups as one batch, in the layout of [`state_schema`]: the
    /// format the other layouts write, so any of them restores it.
    pub fn snapshot(&mut self) -> Result<RecordBatch> {
        if self.groups == 0 {
            return Ok(RecordBatch::new_empty(tagged(state_schema(&self.spec)?)));
        }
        let mut open: BTreeSet<EventTime> = self.bases.keys().copied().collect();
        for &p in self.panes.keys() {
            open.extend(
                self.windows_of(p)
                    .filter(|end| self.closed.is_none_or(|c| *end > c)),
            );
        }
        // Each pane's state once, whatever the number of windows it is in.
        let mut pane_states = BTreeMap::new();
        for (&p, pane) in self.panes.iter_mut() {
            pane_states.insert(p, pane.state(&self.spec)?);
        }
        let mut ends = Vec::new();
        let mut rows = Vec::new();
        let mut key_cols: Vec<Vec<ArrayRef>> = vec![Vec::new(); self.spec.group_exprs.len()];
        let mut states: Vec<Vec<ArrayRef>> = vec![Vec::new(); self.state_types.len()];
        for end in open {
            let mut window = GroupTable::new(&self.spec, 0)?;
            if let Some(base) = self.bases.get_mut(&end) {
                let state = base.state(&self.spec)?;
                merge_into(&mut window, base, &state)?;
            }
            for (p, state) in pane_states.range(self.first_pane(end)..=end) {
                merge_into(&mut window, &self.panes[p].groups, state)?;
            }
            let n = window.len();
            if n == 0 {
                continue;
            }
            ends.extend(std::iter::repeat_n(end, n));
            rows.extend(&window.rows);
            for (parts, c) in key_cols.iter_mut().zip(self.key_columns(end, &window)?) {
                parts.push(c);
            }
            let fields = window.take_state()?.into_iter().flatten();
            for ((parts, a), t) in states.iter_mut().zip(fields).zip(&self.state_types) {
                parts.push(cast_to(a, t)?);
            }
        }
        let key_cols = key_cols
            .into_iter()
            .map(|parts| {
                let refs: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
                Ok(datafusion::arrow::compute::concat(&refs)?)
            })
            .collect::<Result<Vec<_>>>()?;
        checkpoint_batch(&self.spec, &self.value_types, ends, key_cols, rows, states)
    }

    /// Load windows from checkpoint batches (of [`state_schema`], any layout) as bases.
    pub fn restore(&mut self, batches: &[RecordBatch]) -> Result<()> {
        for batch in batches {
            let cp = Checkpoint::read(&self.spec, batch)?;
            let keys = (!self.inner.is_empty())
                .then(|| {
                    let inner: Vec<ArrayRef> =
                        self.inner.iter().map(|i| cp.keys[*i].clone()).collect();
                    self.keys.convert_columns(&inner)
                })
                .transpose()?;
            self.groups += load(
                &mut self.bases,
                &self.spec,
                &self.widths,
                batch,
                &cp,
                keys.as_ref(),
            )?;
        }
        // A window that is its own pane goes on filling as one.
        if let Shape::Own(_) = self.shape {
            for (end, groups) in std::mem::take(&mut self.bases) {
                match self.panes.entry(end) {
                    Entry::Vacant(v) => {
                        v.insert(Pane {
                            groups,
                            frozen: None,
                        });
                    }
                    Entry::Occupied(mut o) => {
                        // The window already took rows: merge what was restored into them.
                        let pane = o.get_mut();
                        self.groups -= groups.len();
                        let before = pane.groups.len();
                        let mut groups = groups;
                        let state = groups.state(&self.spec)?;
                        merge_into(&mut pane.groups, &groups, &state)?;
                        self.groups += pane.groups.len() - before;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Merge the groups of `from` (with aggregate states `state`, by group number) into `window`.
fn merge_into(window: &mut GroupTable, from: &GroupTable, state: &[Vec<ArrayRef>]) -> Result<()> {
    let groups: Vec<usize> = from.keys().map(|k| window.group(k)).collect();
    for (g, r) in groups.iter().zip(&from.rows) {
        window.rows[*g] += r;
    }
    let total = window.len();
    for (acc, s) in window.accs.iter_mut().zip(state) {
        acc.merge_batch(s, &groups, total)?;
    }
    Ok(())
}

/// Where group column `i` is a bound of the window ending at `end`, that bound.
fn bound(shape: Shape, i: usize, end: EventTime) -> Option<EventTime> {
    match shape {
        Shape::Hop(h) if h.start_group == Some(i) => Some(end.saturating_sub(h.size_ns)),
        Shape::Hop(h) if h.end_group == Some(i) => Some(end),
        Shape::Own(w) if w.group_index == i && w.is_end => Some(end),
        Shape::Own(w) if w.group_index == i => Some(end.saturating_sub(w.size_ns)),
        _ => None,
    }
}
