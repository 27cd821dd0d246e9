//! HOP windows that emit when they close, with state kept per *pane* (the slide each row
//! falls in) rather than per window.
//!
//! A HOP of size 10 s sliding by 2 s puts every row in 5 windows. Kept per window
//! ([`super::Closing`]), each batch's groups are merged into all 5: five hash lookups and
//! five partial merges per group and batch. Kept per pane, a row costs one lookup and one
//! `update_batch` into its pane's accumulators, as a TUMBLE of the slide would. When the
//! watermark passes a window's end, the window's panes hand out their state (once per pane:
//! a finished pane is frozen into its state arrays) and the window merges them, group by
//! group, then evaluates: per window, one lookup per pane group, however many rows the panes
//! took. A pane is freed when the last window containing it has closed.
//!
//! Checkpoints keep the per-window format every aggregate layout writes (each open window's
//! state, its panes merged), so any layout restores them; restored windows are kept whole as
//! *bases*, and a window closing merges its base with the panes filled since.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array, UInt32Array};
use datafusion::arrow::compute::{filter_record_batch, take};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::logical_expr::EmitTo;

use super::closing::{checkpoint_batch, load, Window};
use super::columnar::{append_only, cast_to, in_columns, tagged};
use super::groups::{agg_inputs, concat_changes, timestamps_of, AggregateSpec, PaneSpec};
use super::snapshot::{state_schema, state_types, Checkpoint};
use crate::error::{EddyError, Result};
use crate::operators::window::event_times_ns;
use crate::sql::EmitMode;
use crate::types::{Changes, EventTime};

/// One pane's groups.
struct Pane {
    groups: Window,
    /// Set once the watermark has passed the pane's end and a window needed its state: each
    /// aggregate's state fields by group number (the accumulators are then empty).
    frozen: Option<Vec<Vec<ArrayRef>>>,
}

impl Pane {
    /// Freeze the pane if it is still filling.
    fn freeze(&mut self) -> Result<()> {
        if self.frozen.is_none() {
            let state = self
                .groups
                .accs
                .iter_mut()
                .map(|a| a.state(EmitTo::All))
                .collect::<datafusion::error::Result<_>>()?;
            self.frozen = Some(state);
        }
        Ok(())
    }

    /// Make a frozen pane take rows again (a row for a pane the watermark has passed: window
    /// assignment drops those as late, so only a restored watermark lower than before gets
    /// here).
    fn thaw(&mut self) -> Result<()> {
        if let Some(frozen) = self.frozen.take() {
            let n = self.groups.keys.len();
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

/// The state of one partition of a HOP aggregate emitting on window close.
pub struct Panes {
    spec: Arc<AggregateSpec>,
    hop: PaneSpec,
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
    bases: BTreeMap<EventTime, Window>,
    /// The end of the last window emitted.
    closed: Option<EventTime>,
    /// Groups held: pane groups and restored window groups.
    groups: usize,
}

impl Panes {
    /// The state for `spec`, or `None` unless it is a HOP aggregated per pane that emits on
    /// window close, never retracts and has only vectorised aggregates (see
    /// [`vectorizable`]).
    pub fn try_new(spec: Arc<AggregateSpec>) -> Result<Option<Self>> {
        let Some(hop) = spec.panes else {
            return Ok(None);
        };
        if spec.emit != EmitMode::OnWindowClose
            || !in_columns(&spec)
            || hop.slide_ns <= 0
            || hop.size_ns % hop.slide_ns != 0
        {
            return Ok(None);
        }
        let n_groups = spec.group_exprs.len();
        let fields = spec.output_schema.fields();
        let inner: Vec<usize> = (0..n_groups).filter(|i| !hop.is_bound(*i)).collect();
        let key_fields: Vec<SortField> = inner
            .iter()
            .map(|i| SortField::new(fields[*i].data_type().clone()))
            .collect();
        if !RowConverter::supports_fields(&key_fields) {
            return Ok(None);
        }
        let per_agg = state_types(&spec)?;
        Ok(Some(Panes {
            keys: RowConverter::new(key_fields)?,
            widths: per_agg.iter().map(Vec::len).collect(),
            state_types: per_agg.into_iter().flatten().collect(),
            value_types: fields[n_groups..]
                .iter()
                .map(|f| f.data_type().clone())
                .collect(),
            inner,
            hop,
            spec,
            panes: BTreeMap::new(),
            bases: BTreeMap::new(),
            closed: None,
            groups: 0,
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
            + self.bases.values().map(Window::bytes).sum::<usize>()
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
                    groups: Window::new(&self.spec)?,
                    frozen: None,
                }),
            };
            pane.thaw()?;
            let before = pane.groups.keys.len();
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
            added += pane.groups.keys.len() - before;
            numbered.push((before, groups));
        }
        if self.groups + added > self.spec.max_groups {
            for ((end, _), (before, _)) in segments.iter().zip(&numbered) {
                let pane = self.pane(*end)?;
                pane.groups.truncate(*before);
                if pane.groups.keys.is_empty() {
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
            let total = pane.groups.keys.len();
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
        let (bound, add) = match (self.hop.start_group, self.hop.end_group) {
            (Some(i), _) => (i, self.hop.slide_ns),
            (None, Some(i)) => (i, 0),
            (None, None) => {
                return Err(EddyError::Internal(
                    "a pane aggregate without window bounds".into(),
                ))
            }
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

    /// The end of the last window containing the pane ending at `pane_end`.
    fn last_window(&self, pane_end: EventTime) -> EventTime {
        pane_end.saturating_add(self.hop.size_ns - self.hop.slide_ns)
    }

    /// The first window not yet emitted that holds state: the earliest unemitted window of
    /// the first pane, or a restored window if earlier. Panes whose windows have all been
    /// emitted are freed on the way.
    fn next_window(&mut self) -> Option<EventTime> {
        let from_panes = loop {
            let Some((&p, pane)) = self.panes.first_key_value() else {
                break None;
            };
            let next = match self.closed {
                Some(c) => p.max(c.saturating_add(self.hop.slide_ns)),
                None => p,
            };
            if next <= self.last_window(p) {
                break Some(next);
            }
            self.groups -= pane.groups.keys.len();
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
            let window = self.merge(end, true)?;
            if let Some(c) = self.emit(end, window)? {
                parts.push(c);
            }
            self.closed = Some(end);
        }
        concat_changes(&self.spec.output_schema, parts)
    }

    /// The window ending at `end`: its restored base (taken out when `closing`) and its
    /// panes' groups merged.
    fn merge(&mut self, end: EventTime, closing: bool) -> Result<Window> {
        let mut window = match self.bases.remove(&end) {
            Some(base) if closing => {
                self.groups -= base.keys.len();
                base
            }
            Some(mut base) => {
                let mut copy = Window::new(&self.spec)?;
                let state = base.state(&self.spec)?;
                merge_into(&mut copy, &base.keys, &base.rows, &state)?;
                self.bases.insert(end, base);
                copy
            }
            None => Window::new(&self.spec)?,
        };
        let first = end.saturating_sub(self.hop.size_ns - self.hop.slide_ns);
        for pane in self.panes.range_mut(first..=end).map(|(_, p)| p) {
            if closing {
                pane.freeze()?;
                let state = pane.frozen.as_deref().unwrap_or_default();
                merge_into(&mut window, &pane.groups.keys, &pane.groups.rows, state)?;
            } else {
                let state = pane.state(&self.spec)?;
                merge_into(&mut window, &pane.groups.keys, &pane.groups.rows, &state)?;
            }
        }
        Ok(window)
    }

    /// The output rows of the window ending at `end`.
    fn emit(&self, end: EventTime, mut window: Window) -> Result<Option<Changes>> {
        let n = window.keys.len();
        if n == 0 {
            return Ok(None);
        }
        let mut cols = self.key_columns(end, &window.keys)?;
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
    fn key_columns(&self, end: EventTime, keys: &[Arc<[u8]>]) -> Result<Vec<ArrayRef>> {
        let n = keys.len();
        let parser = self.keys.parser();
        let mut inner = if self.inner.is_empty() {
            Vec::new()
        } else {
            self.keys
                .convert_rows(keys.iter().map(|k| parser.parse(k)))?
        }
        .into_iter();
        let fields = self.spec.output_schema.fields();
        let mut cols = Vec::with_capacity(fields.len());
        for (i, field) in fields[..self.spec.group_exprs.len()].iter().enumerate() {
            let bound = if self.hop.start_group == Some(i) {
                Some(end.saturating_sub(self.hop.size_ns))
            } else if self.hop.end_group == Some(i) {
                Some(end)
            } else {
                None
            };
            cols.push(match bound {
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
            let mut end = p;
            while end <= self.last_window(p) {
                if self.closed.is_none_or(|c| end > c) {
                    open.insert(end);
                }
                end = end.saturating_add(self.hop.slide_ns);
            }
        }
        let mut ends = Vec::new();
        let mut rows = Vec::new();
        let mut key_cols: Vec<Vec<ArrayRef>> = vec![Vec::new(); self.spec.group_exprs.len()];
        let mut states: Vec<Vec<ArrayRef>> = vec![Vec::new(); self.state_types.len()];
        for end in open {
            let mut window = self.merge(end, false)?;
            let n = window.keys.len();
            if n == 0 {
                continue;
            }
            ends.extend(std::iter::repeat_n(end, n));
            rows.extend(&window.rows);
            for (parts, c) in key_cols
                .iter_mut()
                .zip(self.key_columns(end, &window.keys)?)
            {
                parts.push(c);
            }
            let fields = window.state(&self.spec)?.into_iter().flatten();
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
        Ok(())
    }
}

/// Merge groups `keys` (with `rows` each and aggregate states `state`, by group number) into
/// `window`.
fn merge_into(
    window: &mut Window,
    keys: &[Arc<[u8]>],
    rows: &[i64],
    state: &[Vec<ArrayRef>],
) -> Result<()> {
    let groups: Vec<usize> = keys.iter().map(|k| window.group(k)).collect();
    for (g, r) in groups.iter().zip(rows) {
        window.rows[*g] += r;
    }
    let total = window.keys.len();
    for (acc, s) in window.accs.iter_mut().zip(state) {
        acc.merge_batch(s, &groups, total)?;
    }
    Ok(())
}
