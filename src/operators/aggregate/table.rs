//! The groups of one window or pane, in a table: their keys in Arrow's row format, a number
//! per group, and one DataFusion `GroupsAccumulator` per aggregate holding every group's state
//! by that number (as in DataFusion's own hash aggregate); and the checkpoint batches the
//! columnar layouts read and write.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::sync::Arc;

use datafusion::arrow::array::{
    new_null_array, Array, ArrayRef, BooleanArray, Int64Array, UInt32Array,
};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::Rows;
use datafusion::common::hash_utils::RandomState;
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use hashbrown::HashTable;

use super::columnar::{checkpointed_states, tagged};
use super::groups::AggregateSpec;
use super::snapshot::{state_schema, Checkpoint};
use crate::error::{EddyError, Result};
use crate::types::EventTime;

/// The groups of one window or pane.
///
/// Keys are kept one after another in one buffer, and the index holds each group's hash with
/// its number: no allocation per group, and growing the index never hashes a key again.
pub(super) struct GroupTable {
    /// (hash of the key, group number).
    index: HashTable<(u64, usize)>,
    /// Every group's key (row format), one after the other.
    key_data: Vec<u8>,
    /// Where each group's key ends in `key_data`.
    key_ends: Vec<usize>,
    /// Net input rows by group number.
    pub(super) rows: Vec<i64>,
    /// One per aggregate.
    pub(super) accs: Vec<Box<dyn GroupsAccumulator>>,
}

impl GroupTable {
    /// No groups; room for `capacity` without growing.
    pub(super) fn new(spec: &AggregateSpec, capacity: usize) -> Result<Self> {
        Ok(GroupTable {
            index: HashTable::with_capacity(capacity),
            key_data: Vec::new(),
            key_ends: Vec::with_capacity(capacity),
            rows: Vec::with_capacity(capacity),
            accs: spec
                .aggs
                .iter()
                .map(|a| a.func.create_groups_accumulator())
                .collect::<datafusion::error::Result<_>>()?,
        })
    }

    /// Number of groups.
    pub(super) fn len(&self) -> usize {
        self.key_ends.len()
    }

    /// The key of group `g`.
    pub(super) fn key(&self, g: usize) -> &[u8] {
        let start = if g == 0 { 0 } else { self.key_ends[g - 1] };
        &self.key_data[start..self.key_ends[g]]
    }

    /// The keys by group number.
    pub(super) fn keys(&self) -> impl Iterator<Item = &[u8]> {
        (0..self.len()).map(|g| self.key(g))
    }

    /// The number of group `key`, added if new.
    pub(super) fn group(&mut self, key: &[u8]) -> usize {
        let hash = HASHER.hash_one(key);
        let (data, ends) = (&self.key_data, &self.key_ends);
        let same = |&(h, g): &(u64, usize)| {
            let start = if g == 0 { 0 } else { ends[g - 1] };
            h == hash && &data[start..ends[g]] == key
        };
        if let Some((_, g)) = self.index.find(hash, same) {
            return *g;
        }
        let g = self.key_ends.len();
        self.key_data.extend_from_slice(key);
        self.key_ends.push(self.key_data.len());
        self.rows.push(0);
        self.index.insert_unique(hash, (hash, g), |(h, _)| *h);
        g
    }

    /// Forget the groups numbered `n` and above (added since the window had `n`), before any
    /// of their rows reached the accumulators.
    pub(super) fn truncate(&mut self, n: usize) {
        if n >= self.len() {
            return;
        }
        self.index.retain(|(_, g)| *g < n);
        self.key_data
            .truncate(if n == 0 { 0 } else { self.key_ends[n - 1] });
        self.key_ends.truncate(n);
        self.rows.truncate(n);
    }

    /// Each aggregate's state fields, by group number, taken out: the accumulators are left
    /// empty (a table about to be dropped or frozen).
    pub(super) fn take_state(&mut self) -> Result<Vec<Vec<ArrayRef>>> {
        Ok(self
            .accs
            .iter_mut()
            .map(|a| a.state(EmitTo::All))
            .collect::<datafusion::error::Result<_>>()?)
    }

    /// Each aggregate's state fields, by group number, leaving the state as it was (an
    /// accumulator hands its state out and is rebuilt from it).
    pub(super) fn state(&mut self, spec: &AggregateSpec) -> Result<Vec<Vec<ArrayRef>>> {
        let n = self.len();
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
        self.key_data.capacity()
            + self.key_ends.capacity() * std::mem::size_of::<usize>()
            + self.rows.capacity() * std::mem::size_of::<i64>()
            + self.index.allocation_size()
            + self.accs.iter().map(|a| a.size()).sum::<usize>()
    }
}

/// Hashes group keys (the hash is kept with the group, never compared across processes).
static HASHER: RandomState = RandomState::with_seed(0);

/// Merge the groups of checkpoint `batch` (read as `cp`) into `windows` (by window end), each
/// under its row in `keys` (the empty key where there are none). Returns how many groups
/// were added.
pub(super) fn load(
    windows: &mut BTreeMap<EventTime, GroupTable>,
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
            Entry::Vacant(v) => v.insert(GroupTable::new(spec, 0)?),
        };
        let key = keys.map_or(&[][..], |k| k.row(r).data());
        let before = window.len();
        let g = window.group(key);
        added += window.len() - before;
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
        let total = window.len();
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
