//! The aggregate's columnar state: DataFusion's vectorised [`GroupsAccumulator`]s.
//!
//! Used when the input never retracts and every aggregate has a `GroupsAccumulator` (count,
//! sum, min, max, avg, bool_and, …); the others keep one boxed `Accumulator` per group
//! ([`super::AggregateOperator`]). Both write the same checkpoint batch, so a view restores
//! whichever layout wrote it.
//!
//! Per group the state is a few byte strings in Arrow's row format: the key, the aggregates'
//! intermediate state (DataFusion's own, the one its multi-phase aggregation passes from the
//! partial to the final step) and, emitting on update, the values last emitted. A batch is
//! folded in with a handful of vectorised calls per aggregate, whatever its number of groups:
//!
//! 1. rows are numbered by group (window end, key): one hash lookup per row;
//! 2. the touched groups' stored states are decoded in one call, merged (`merge_batch`) into a
//!    fresh accumulator, and the batch's rows added (`update_batch` with the group numbers). A
//!    HOP's rows are first folded per pane, and each pane's partial state is merged into the
//!    windows that contain it;
//! 3. the new states (`state`) are encoded back; emitting on update they are also evaluated
//!    and compared, as bytes, with what each group emitted: only groups whose result changed
//!    emit (a retraction of the old row and the new one).
//!
//! A window that closes is evaluated in one call per aggregate over all its groups.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{
    make_array, new_null_array, Array, ArrayRef, Int64Array, UInt32Array,
};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::compute::{cast, take};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::common::hash_utils::RandomState;
use datafusion::logical_expr::EmitTo;

use super::groups::{
    concat_changes, pane_targets, AggCall, AggregateSpec, Evaluated, GroupRef, NO_WINDOW,
};
use super::snapshot::{state_schema, state_types, Checkpoint};
use crate::error::{EddyError, Result};
use crate::sql::EmitMode;
use crate::types::{Changes, EventTime};

/// The checkpoint's schema metadata key naming the layout that wrote it, and the value this
/// layout writes.
const LAYOUT_KEY: &str = "eddy.aggregate.layout";
const COLUMNAR: &str = "columnar";

/// One group's state (its key is the map key).
struct Group {
    /// The aggregates' intermediate state, in row format.
    state: Box<[u8]>,
    /// The aggregate values last emitted, in row format (emit on update).
    emitted: Option<Box<[u8]>>,
    /// Net input rows.
    rows: i64,
}

/// Bytes a group costs beyond its byte strings: the map entry.
const GROUP_OVERHEAD: usize = std::mem::size_of::<(Box<[u8]>, Group)>();

impl Group {
    /// Bytes the group with `key` holds.
    fn cost(&self, key: &[u8]) -> usize {
        GROUP_OVERHEAD + key.len() + self.state.len() + self.emitted.as_ref().map_or(0, |e| e.len())
    }
}

/// The groups of one window.
type Window = HashMap<Box<[u8]>, Group, RandomState>;

/// The columnar aggregate state of one partition.
pub struct Columnar {
    spec: Arc<AggregateSpec>,
    /// Group keys.
    keys: RowConverter,
    /// Every aggregate's state fields, one after the other.
    states: RowConverter,
    /// The aggregates' output values.
    values: RowConverter,
    /// State fields per aggregate.
    widths: Vec<usize>,
    /// State field types, all aggregates.
    state_types: Vec<DataType>,
    /// Output type per aggregate.
    value_types: Vec<DataType>,
    /// A row of null values (what a group that never emitted checkpoints).
    null_values: Box<[u8]>,
    windows: BTreeMap<EventTime, Window>,
    groups: usize,
    state_bytes: usize,
}

impl Columnar {
    /// The columnar state for `spec`, or `None` where it cannot hold it: the input retracts,
    /// an aggregate has no `GroupsAccumulator`, there are no aggregates, or a type has no row
    /// format.
    pub fn try_new(spec: Arc<AggregateSpec>) -> Result<Option<Self>> {
        if !in_columns(&spec) {
            return Ok(None);
        }
        let n_groups = spec.group_exprs.len();
        let fields = spec.output_schema.fields();
        let sort_fields = |types: &[DataType]| -> Vec<SortField> {
            types.iter().map(|t| SortField::new(t.clone())).collect()
        };
        let key_types: Vec<DataType> = fields[..n_groups]
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        let value_types: Vec<DataType> = fields[n_groups..]
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        let per_agg = state_types(&spec)?;
        let widths = per_agg.iter().map(Vec::len).collect();
        let state_types: Vec<DataType> = per_agg.into_iter().flatten().collect();
        for types in [&key_types, &value_types, &state_types] {
            if !RowConverter::supports_fields(&sort_fields(types)) {
                return Ok(None);
            }
        }
        let values = RowConverter::new(sort_fields(&value_types))?;
        let nulls: Vec<ArrayRef> = value_types.iter().map(|t| new_null_array(t, 1)).collect();
        let null_values = Box::from(values.convert_columns(&nulls)?.row(0).data());
        Ok(Some(Columnar {
            keys: RowConverter::new(sort_fields(&key_types))?,
            states: RowConverter::new(sort_fields(&state_types))?,
            values,
            widths,
            state_types,
            value_types,
            null_values,
            spec,
            windows: BTreeMap::new(),
            groups: 0,
            state_bytes: 0,
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
        self.state_bytes
    }

    /// Fold a batch into state; emitting on update, return the groups whose result changed.
    pub fn process(&mut self, changes: &Changes) -> Result<Option<Changes>> {
        let batch = &changes.batch;
        let n = batch.num_rows();
        if n == 0 {
            return Ok(None);
        }
        append_only(changes)?;
        let input = Evaluated::new(&self.spec, &self.keys, batch)?;

        // 1. Number the rows by group.
        let (slot_keys, slot_rows, row_slot) = number_rows(&input, n);
        let targets = Targets::new(&self.keys, &self.spec, &slot_keys, &slot_rows)?;
        let nu = targets.keys.len();

        // 2. Stored states of the groups that exist, decoded in one call. Groups are numbered
        //    existing ones first: a GroupsAccumulator takes every group below the total it is
        //    given to be in the batch (DataFusion numbers groups as rows bring them), so the old
        //    states fill 0..old and the batch's rows bring the new groups after them.
        let mut pos = vec![0usize; nu];
        let old_states = {
            let mut old_rows = Vec::new();
            let mut fresh_targets = Vec::new();
            for (u, (end, key)) in targets.keys.iter().enumerate() {
                match self.windows.get(end).and_then(|w| w.get(key)) {
                    Some(g) => {
                        pos[u] = old_rows.len();
                        old_rows.push(&g.state);
                    }
                    None => fresh_targets.push(u),
                }
            }
            let fresh = fresh_targets.len();
            for (i, u) in fresh_targets.into_iter().enumerate() {
                pos[u] = nu - fresh + i;
            }
            if self.groups + fresh > self.spec.max_groups {
                return Err(EddyError::LimitExceeded(format!(
                    "aggregate state is full: {} groups in one partition (limit {})",
                    self.groups, self.spec.max_groups
                )));
            }
            let parser = self.states.parser();
            (!old_rows.is_empty())
                .then(|| {
                    self.states
                        .convert_rows(old_rows.iter().map(|r| parser.parse(r)))
                })
                .transpose()?
        };

        let n_old = old_states.as_ref().map_or(0, |o| o[0].len());
        let old_idx: Vec<usize> = (0..n_old).collect();
        let row_group: Vec<usize> = match &targets.contributions {
            None => row_slot.iter().map(|s| pos[*s]).collect(),
            Some(_) => Vec::new(),
        };
        let dst: Vec<usize> = match &targets.contributions {
            None => Vec::new(),
            Some((_, dst)) => dst.iter().map(|u| pos[*u]).collect(),
        };

        // 3. Old states + the batch's rows, per aggregate.
        let mut new_states: Vec<ArrayRef> = Vec::with_capacity(self.state_types.len());
        let mut col = 0;
        for (j, agg) in self.spec.aggs.iter().enumerate() {
            let w = self.widths[j];
            let mut acc = agg.func.create_groups_accumulator()?;
            if let Some(old) = &old_states {
                acc.merge_batch(&old[col..col + w], &old_idx, n_old)?;
            }
            let mask = input.masks[j].as_ref();
            match &targets.contributions {
                None => acc.update_batch(&input.args[j], &row_group, mask, nu)?,
                Some((src, _)) => {
                    let mut pane = agg.func.create_groups_accumulator()?;
                    pane.update_batch(&input.args[j], &row_slot, mask, slot_keys.len())?;
                    let partial = pane
                        .state(EmitTo::All)?
                        .iter()
                        .map(|a| take(a.as_ref(), src, None))
                        .collect::<std::result::Result<Vec<_>, _>>()?;
                    acc.merge_batch(&partial, &dst, nu)?;
                }
            }
            for (a, t) in acc
                .state(EmitTo::All)?
                .into_iter()
                .zip(&self.state_types[col..col + w])
            {
                new_states.push(cast_to(a, t)?);
            }
            col += w;
        }
        let encoded = self.states.convert_columns(&new_states)?;
        let on_update = self.spec.emit == EmitMode::OnUpdate;
        let value_rows = if on_update {
            Some(
                self.values
                    .convert_columns(&self.evaluate(&new_states, nu)?)?,
            )
        } else {
            None
        };
        drop(old_states);

        // 4. Store; on update, collect what changed.
        let mut retracts: Vec<(usize, Box<[u8]>)> = Vec::new();
        let mut inserts: Vec<usize> = Vec::new();
        for (u, (end, key)) in targets.keys.iter().enumerate() {
            let window = self.windows.entry(*end).or_default();
            // Step 2 numbered the existing groups first: one lookup for those, none for new ones.
            let mut fresh = None;
            let group = if pos[u] >= n_old {
                self.groups += 1;
                self.state_bytes += GROUP_OVERHEAD + key.len();
                fresh.insert(Group {
                    state: Box::default(),
                    emitted: None,
                    rows: 0,
                })
            } else {
                window
                    .get_mut(key)
                    .ok_or_else(|| EddyError::Internal("group vanished".into()))?
            };
            let before = group.state.len() + group.emitted.as_ref().map_or(0, |e| e.len());
            let state = encoded.row(pos[u]);
            if group.state.len() == state.data().len() {
                group.state.copy_from_slice(state.data());
            } else {
                group.state = Box::from(state.data());
            }
            group.rows += targets.rows[u];
            if let Some(values) = &value_rows {
                let new = values.row(pos[u]).data();
                if group.emitted.as_deref() != Some(new) {
                    if let Some(prev) = group.emitted.replace(Box::from(new)) {
                        retracts.push((u, prev));
                    }
                    inserts.push(u);
                }
            }
            let after = group.state.len() + group.emitted.as_ref().map_or(0, |e| e.len());
            self.state_bytes = self.state_bytes.saturating_sub(before) + after;
            if let Some(g) = fresh {
                window.insert(key.clone(), g);
            }
        }
        match value_rows {
            Some(values) if !inserts.is_empty() => {
                let vals = {
                    let parser = self.values.parser();
                    let old = retracts.iter().map(|(_, b)| parser.parse(b));
                    self.values
                        .convert_rows(old.chain(inserts.iter().map(|u| values.row(pos[*u]))))?
                };
                let keys = retracts
                    .iter()
                    .map(|(u, _)| *u)
                    .chain(inserts.iter().copied())
                    .map(|u| targets.keys[u].1.as_ref());
                let mut weights = vec![-1i64; retracts.len()];
                weights.resize(retracts.len() + inserts.len(), 1);
                self.output(keys, vals, weights).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// The watermark advanced to `wm`: close (and emitting on window close, emit) every window
    /// whose end is at or below it, and free its state.
    pub fn on_watermark(&mut self, wm: EventTime) -> Result<Option<Changes>> {
        if self.spec.window.is_none() {
            return Ok(None);
        }
        let mut parts = Vec::new();
        while let Some(entry) = self.windows.first_entry() {
            if *entry.key() > wm {
                break;
            }
            let window = entry.remove();
            self.groups -= window.len();
            let bytes: usize = window.iter().map(|(k, g)| g.cost(k)).sum();
            self.state_bytes = self.state_bytes.saturating_sub(bytes);
            if self.spec.emit != EmitMode::OnWindowClose {
                continue;
            }
            let groups: Vec<(&Box<[u8]>, &Group)> =
                window.iter().filter(|(_, g)| g.rows > 0).collect();
            if groups.is_empty() {
                continue;
            }
            let states = {
                let parser = self.states.parser();
                self.states
                    .convert_rows(groups.iter().map(|(_, g)| parser.parse(&g.state)))?
            };
            let vals = self.evaluate(&states, groups.len())?;
            let keys = groups.iter().map(|(k, _)| k.as_ref());
            parts.push(self.output(keys, vals, vec![1; groups.len()])?);
        }
        concat_changes(&self.spec.output_schema, parts)
    }

    /// The values of `n` groups from their states.
    fn evaluate(&self, states: &[ArrayRef], n: usize) -> Result<Vec<ArrayRef>> {
        let idx: Vec<usize> = (0..n).collect();
        let mut out = Vec::with_capacity(self.spec.aggs.len());
        let mut col = 0;
        for (j, agg) in self.spec.aggs.iter().enumerate() {
            let w = self.widths[j];
            let mut acc = agg.func.create_groups_accumulator()?;
            acc.merge_batch(&states[col..col + w], &idx, n)?;
            out.push(cast_to(acc.evaluate(EmitTo::All)?, &self.value_types[j])?);
            col += w;
        }
        Ok(out)
    }

    /// An output batch: `keys` (row format) with their `values` and weights.
    fn output<'a>(
        &self,
        keys: impl Iterator<Item = &'a [u8]>,
        values: Vec<ArrayRef>,
        weights: Vec<i64>,
    ) -> Result<Changes> {
        let mut cols = if self.spec.group_exprs.is_empty() {
            Vec::new()
        } else {
            let parser = self.keys.parser();
            self.keys.convert_rows(keys.map(|k| parser.parse(k)))?
        };
        cols.extend(values);
        let batch = RecordBatch::try_new(self.spec.output_schema.clone(), cols)?;
        Ok(Changes::with_weights(batch, Int64Array::from(weights)))
    }

    /// Every group as one batch, in the layout of [`state_schema`].
    pub fn snapshot(&mut self) -> Result<RecordBatch> {
        let schema = state_schema(&self.spec)?;
        if self.groups == 0 {
            return Ok(RecordBatch::new_empty(schema));
        }
        let mut ends = Vec::with_capacity(self.groups);
        let mut rows = Vec::with_capacity(self.groups);
        let mut flags = Vec::with_capacity(self.groups);
        let mut keys: Vec<&[u8]> = Vec::with_capacity(self.groups);
        let mut states: Vec<&[u8]> = Vec::with_capacity(self.groups);
        let mut emitted: Vec<&[u8]> = Vec::with_capacity(self.groups);
        for (end, window) in &self.windows {
            for (key, g) in window {
                ends.push(*end);
                rows.push(g.rows);
                flags.push(g.emitted.is_some());
                keys.push(key);
                states.push(&g.state);
                emitted.push(g.emitted.as_deref().unwrap_or(&self.null_values));
            }
        }
        let mut cols: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(ends))];
        if !self.spec.group_exprs.is_empty() {
            cols.extend(decode(&self.keys, &keys)?);
        }
        cols.push(Arc::new(Int64Array::from(rows)));
        cols.extend(decode(&self.states, &states)?);
        cols.push(Arc::new(datafusion::arrow::array::BooleanArray::from(
            flags,
        )));
        cols.extend(decode(&self.values, &emitted)?);
        Ok(RecordBatch::try_new(tagged(schema), cols)?)
    }

    /// Load groups from checkpoint batches (of [`state_schema`], any layout).
    pub fn restore(&mut self, batches: &[RecordBatch]) -> Result<()> {
        for batch in batches {
            let cp = Checkpoint::read(&self.spec, batch)?;
            let keys = (!self.spec.group_exprs.is_empty())
                .then(|| self.keys.convert_columns(cp.keys))
                .transpose()?;
            let states = checkpointed_states(batch, &self.spec, &self.widths, cp.states)?;
            let states = self.states.convert_columns(&states)?;
            let emitted: Rows = self.values.convert_columns(cp.values)?;
            for r in 0..batch.num_rows() {
                let key: Box<[u8]> = keys
                    .as_ref()
                    .map_or(Box::default(), |k| k.row(r).data().into());
                let g = Group {
                    state: states.row(r).data().into(),
                    emitted: cp.emitted.value(r).then(|| emitted.row(r).data().into()),
                    rows: cp.rows.value(r),
                };
                let bytes = g.cost(&key);
                let end = if self.spec.window.is_some() {
                    cp.ends.value(r)
                } else {
                    NO_WINDOW
                };
                if self
                    .windows
                    .entry(end)
                    .or_default()
                    .insert(key, g)
                    .is_none()
                {
                    self.groups += 1;
                    self.state_bytes += bytes;
                }
            }
        }
        Ok(())
    }
}

/// Where a batch's groups go: without panes each group is a target; with panes each pane's
/// group feeds the windows that contain the pane.
pub(super) struct Targets {
    /// The groups changed: (window end, key).
    pub(super) keys: Vec<GroupRef>,
    /// Input rows per target.
    pub(super) rows: Vec<i64>,
    /// With panes: (pane group, target) pairs.
    pub(super) contributions: Option<(UInt32Array, Vec<usize>)>,
}

impl Targets {
    /// The targets of a batch's groups (`slot_keys`, with `slot_rows` rows each).
    pub(super) fn new(
        converter: &RowConverter,
        spec: &AggregateSpec,
        slot_keys: &[(EventTime, &[u8])],
        slot_rows: &[i64],
    ) -> Result<Self> {
        let Some(p) = spec.panes else {
            return Ok(Targets {
                keys: slot_keys.iter().map(|(e, k)| (*e, Box::from(*k))).collect(),
                rows: slot_rows.to_vec(),
                contributions: None,
            });
        };
        let mut index: HashMap<GroupRef, usize, RandomState> = HashMap::default();
        let mut keys = Vec::new();
        let mut rows = Vec::new();
        let mut src = Vec::new();
        let mut dst = Vec::new();
        for (s, windows) in pane_targets(converter, &p, slot_keys)?
            .into_iter()
            .enumerate()
        {
            for t in windows {
                let u = match index.get(&t) {
                    Some(u) => *u,
                    None => {
                        keys.push(t.clone());
                        rows.push(0);
                        index.insert(t, keys.len() - 1);
                        keys.len() - 1
                    }
                };
                rows[u] += slot_rows[s];
                src.push(s as u32);
                dst.push(u);
            }
        }
        Ok(Targets {
            keys,
            rows,
            contributions: Some((UInt32Array::from(src), dst)),
        })
    }
}

/// The batch's groups (window end, key) in order of first appearance, the rows of each, and
/// each row's group number.
pub(super) type Numbered<'a> = (Vec<(EventTime, &'a [u8])>, Vec<i64>, Vec<usize>);

/// Number the `n` rows of `input` by group: one hash lookup per row.
pub(super) fn number_rows(input: &Evaluated, n: usize) -> Numbered<'_> {
    let mut slots: HashMap<(EventTime, &[u8]), usize, RandomState> = HashMap::default();
    let mut slot_keys: Vec<(EventTime, &[u8])> = Vec::new();
    let mut slot_rows: Vec<i64> = Vec::new();
    let mut row_slot: Vec<usize> = Vec::with_capacity(n);
    for i in 0..n {
        let key = input.key(i);
        let slot = *slots.entry(key).or_insert_with(|| {
            slot_keys.push(key);
            slot_rows.push(0);
            slot_keys.len() - 1
        });
        slot_rows[slot] += 1;
        row_slot.push(slot);
    }
    (slot_keys, slot_rows, row_slot)
}

/// The checkpoint schema, marked as written by a `GroupsAccumulator` layout.
pub(super) fn tagged(schema: SchemaRef) -> SchemaRef {
    let meta = [(LAYOUT_KEY.to_string(), COLUMNAR.to_string())].into();
    Arc::new(schema.as_ref().clone().with_metadata(meta))
}

/// The state columns `states` of a checkpoint `batch`, as a `GroupsAccumulator` merges them.
/// A boxed layout's checkpoint differs for `avg` over no values: the boxed accumulator keeps
/// (count 0, sum NULL), the vectorised one (NULL, NULL) — given a count of 0 it would count
/// the group as having values and return NaN.
pub(super) fn checkpointed_states(
    batch: &RecordBatch,
    spec: &AggregateSpec,
    widths: &[usize],
    states: &[ArrayRef],
) -> Result<Vec<ArrayRef>> {
    let mut out = states.to_vec();
    if batch
        .schema()
        .metadata()
        .get(LAYOUT_KEY)
        .map(String::as_str)
        == Some(COLUMNAR)
    {
        return Ok(out);
    }
    let mut col = 0;
    for (j, agg) in spec.aggs.iter().enumerate() {
        let w = widths[j];
        if matches!(agg.func.fun().name(), "avg" | "mean") && w == 2 {
            let nulls = NullBuffer::union(out[col].nulls(), out[col + 1].nulls());
            for a in &mut out[col..col + 2] {
                let data = a.to_data().into_builder().nulls(nulls.clone()).build()?;
                *a = make_array(data);
            }
        }
        col += w;
    }
    Ok(out)
}

/// Whether `spec`'s state can be columnar: it has aggregates, its input never retracts and
/// every aggregate has a `GroupsAccumulator` for its types (supported in general is not
/// supported for every type: avg over an uncoerced integer, say).
pub(super) fn in_columns(spec: &AggregateSpec) -> bool {
    !spec.retract
        && !spec.aggs.is_empty()
        && spec.aggs.iter().all(vectorizable)
        && spec
            .aggs
            .iter()
            .all(|a| a.func.create_groups_accumulator().is_ok())
}

/// Fail on a retraction: the columnar layouts are planned for append-only inputs.
pub(super) fn append_only(changes: &Changes) -> Result<()> {
    if changes.weights.is_some() && (0..changes.num_rows()).any(|i| changes.weight(i) <= 0) {
        return Err(EddyError::Internal(
            "a retraction reached an aggregate planned for an append-only input".into(),
        ));
    }
    Ok(())
}

/// Whether `a` runs columnar with PostgreSQL's results. DataFusion's vectorised accumulators
/// for DISTINCT aggregates are rarely used by DataFusion itself (it rewrites a DISTINCT into a
/// nested GROUP BY), and `bit_xor(DISTINCT …)`'s panics on merge; its vectorised `min`/`max`
/// over floats skip NaN, where PostgreSQL (and DataFusion's row-at-a-time accumulator) take
/// NaN as the largest value. Those keep an accumulator per group.
pub(super) fn vectorizable(a: &AggCall) -> bool {
    let float_min_max =
        matches!(a.func.fun().name(), "min" | "max") && a.func.field().data_type().is_floating();
    a.func.groups_accumulator_supported() && !a.func.is_distinct() && !float_min_max
}

/// `a` as type `t` (DataFusion's state and result types can differ from the planned ones in
/// details such as a decimal's precision).
pub(super) fn cast_to(a: ArrayRef, t: &DataType) -> Result<ArrayRef> {
    Ok(if a.data_type() == t { a } else { cast(&a, t)? })
}

/// Row-format byte strings back to columns.
pub(super) fn decode(converter: &RowConverter, rows: &[&[u8]]) -> Result<Vec<ArrayRef>> {
    let parser = converter.parser();
    Ok(converter.convert_rows(rows.iter().map(|r| parser.parse(r)))?)
}
