//! Stream joins: a symmetric hash join of two change streams.
//!
//! Each side keeps its rows in Arrow's row format, grouped by the equi-join
//! key. A change on one side probes the other side's rows with the same key,
//! the residual condition (time bounds, other predicates) filters the
//! candidate pairs, and the pairs that pass are emitted with the change's
//! weight; then the change updates its own side. That is the delta rule
//! Δ(A ⋈ B) = ΔA ⋈ B + A' ⋈ ΔB, so updating inputs work too.
//!
//! How long a side keeps a row is its [`Retention`]:
//! - interval and window joins: until the *other* side's watermark makes a
//!   match impossible (the planner derives the bound from the time
//!   condition);
//! - regular joins: `state_ttl` of processing time;
//! - lookup (stream–table) joins: the table side keeps its current rows
//!   until they are deleted and emits nothing when it changes; the stream
//!   side probes and keeps nothing.
//!
//! A LEFT join emits a left row padded with NULLs while it has no match; the
//! first match retracts that row, and losing the last match brings it back.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use datafusion::arrow::array::{new_null_array, Array, ArrayRef, AsArray, Int64Array, UInt32Array};
use datafusion::arrow::compute::{interleave, take};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{OwnedRow, RowConverter, Rows, SortField};
use datafusion::common::hash_utils::RandomState;
use datafusion::physical_expr::PhysicalExpr;

use crate::error::{EddyError, Result};
use crate::operators::window::event_times_ns;
use crate::types::Changes;

/// INNER, LEFT or FULL (a RIGHT join is planned as a LEFT one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    /// Matching pairs only.
    Inner,
    /// Every left row; NULLs for the right columns while it has no match.
    Left,
    /// Every row of both sides; NULLs for the other side's columns while it has no match.
    Full,
    /// The left rows that have a match (`IN`, `EXISTS`): left columns only, each row once.
    Semi,
    /// The left rows without a match (`NOT EXISTS`, `NOT IN` over non-NULL keys): left
    /// columns only; a row goes when its first match comes and is back when its last goes.
    Anti,
}

impl JoinKind {
    /// Whether rows of `side` without a match come out padded with NULLs.
    pub fn pads(self, side: usize) -> bool {
        match self {
            JoinKind::Inner | JoinKind::Semi => false,
            JoinKind::Left | JoinKind::Anti => side == 0,
            JoinKind::Full => true,
        }
    }

    /// A semi or anti join: the output is the left rows alone.
    pub fn filters_left(self) -> bool {
        matches!(self, JoinKind::Semi | JoinKind::Anti)
    }

    /// Whether a left row with `matches` matches is in a semi / anti join's output.
    fn shows(self, matches: i64) -> bool {
        match self {
            JoinKind::Anti => matches == 0,
            _ => matches > 0,
        }
    }
}

/// How long one side of a join keeps a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// Until the other side's watermark passes `row[col] + after_ns`.
    EventTime {
        /// A timestamp column of this side.
        col: usize,
        /// How far past the column's value a match is still possible.
        after_ns: i64,
    },
    /// For `ns` of processing time after the row arrived (`state_ttl`).
    Ttl {
        /// Nanoseconds.
        ns: i64,
    },
    /// Until the row is deleted (the table side of a lookup join).
    UntilDeleted,
    /// Not kept: the stream side of a lookup join probes and moves on.
    NotKept,
}

/// A join, fixed at planning time.
#[derive(Debug)]
pub struct JoinSpec {
    /// INNER, LEFT or FULL.
    pub kind: JoinKind,
    /// Equi-join key expressions, per side, over that side's rows.
    pub keys: [Vec<Arc<dyn PhysicalExpr>>; 2],
    /// The rest of the condition, over the output schema (left ++ right).
    pub filter: Option<Arc<dyn PhysicalExpr>>,
    /// Each side's row schema.
    pub schemas: [SchemaRef; 2],
    /// Left columns, then right columns.
    pub output_schema: SchemaRef,
    /// How long each side keeps its rows.
    pub retention: [Retention; 2],
    /// The table side of a lookup join: its changes update the state only.
    pub lookup: Option<usize>,
    /// Most rows one side may hold.
    pub max_rows: usize,
}

impl JoinSpec {
    /// The spec of one of `count` partitions: the row bound is the whole
    /// join's, split evenly (each partition holds its keys' rows).
    pub fn per_partition(&self, count: usize) -> JoinSpec {
        JoinSpec {
            kind: self.kind,
            keys: self.keys.clone(),
            filter: self.filter.clone(),
            schemas: self.schemas.clone(),
            output_schema: self.output_schema.clone(),
            retention: self.retention,
            lookup: self.lookup,
            max_rows: self.max_rows.div_ceil(count.max(1)).max(1),
        }
    }
}

struct Entry {
    seq: u64,
    row: OwnedRow,
    expires: i64,
    /// Pairs of this row that passed the condition: an outer join emits the
    /// NULL-padded row while this is 0.
    matches: i64,
}

/// A join key in row format, shared by the key map and the expiry index.
type Key = Arc<[u8]>;

/// One side's rows, by key.
struct Side {
    conv: RowConverter,
    /// Per key, its rows in arrival order (expiry mostly takes the oldest: the front).
    by_key: hashbrown::HashMap<Key, VecDeque<Entry>, RandomState>,
    /// (expires, seq) → key, for rows that expire.
    expiry: BTreeMap<(i64, u64), Key>,
    rows: usize,
    bytes: usize,
}

/// Per-row bookkeeping overhead counted in `state_bytes`.
const ENTRY_OVERHEAD: usize = 64;

impl Side {
    fn new(schema: &Schema) -> Result<Self> {
        let fields = schema
            .fields()
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        Ok(Side {
            conv: RowConverter::new(fields)?,
            by_key: hashbrown::HashMap::with_hasher(RandomState::with_seed(0x6a6f_696e)),
            expiry: BTreeMap::new(),
            rows: 0,
            bytes: 0,
        })
    }

    fn remove_entry(&mut self, key: &[u8], pos: usize) {
        if let Some(e) = self.take(key, pos) {
            self.expiry.remove(&(e.expires, e.seq));
        }
    }

    /// Take row `pos` of `key` out of `by_key` (not out of `expiry`).
    fn take(&mut self, key: &[u8], pos: usize) -> Option<Entry> {
        let list = self.by_key.get_mut(key)?;
        let e = list.remove(pos)?;
        self.rows -= 1;
        self.bytes = self
            .bytes
            .saturating_sub(e.row.as_ref().len() + key.len() + ENTRY_OVERHEAD);
        if list.is_empty() {
            self.by_key.remove(key);
        }
        Some(e)
    }

    /// Drop rows whose expiry is below `t`.
    fn expire(&mut self, t: i64) {
        while let Some(entry) = self.expiry.first_entry() {
            if entry.key().0 >= t {
                break;
            }
            let ((_, seq), key) = entry.remove_entry();
            if let Some(pos) = self
                .by_key
                .get(&key)
                .and_then(|l| l.iter().position(|e| e.seq == seq))
            {
                // Its expiry entry is gone already.
                self.take(&key, pos);
            }
        }
    }
}

/// The operator (one per view; it runs in the view's front task).
pub struct JoinOperator {
    spec: Arc<JoinSpec>,
    key_conv: Option<RowConverter>,
    sides: [Side; 2],
    seq: u64,
}

/// Where an output row comes from: a candidate pair, or a row of one side
/// padded with NULLs: of the arriving side (its index in the batch) or of
/// the other side (the index of its candidate pair).
#[derive(Clone, Copy)]
enum Out {
    Pair(usize),
    Padded { side: usize, index: usize },
}

impl JoinOperator {
    /// An operator for `spec` with no state.
    pub fn new(spec: Arc<JoinSpec>) -> Result<Self> {
        let key_types = spec.keys[0]
            .iter()
            .map(|e| Ok(SortField::new(e.data_type(&spec.schemas[0])?)))
            .collect::<Result<Vec<_>>>()?;
        let key_conv = if key_types.is_empty() {
            None
        } else {
            Some(RowConverter::new(key_types)?)
        };
        let sides = [Side::new(&spec.schemas[0])?, Side::new(&spec.schemas[1])?];
        Ok(JoinOperator {
            spec,
            key_conv,
            sides,
            seq: 0,
        })
    }

    /// Approximate bytes held (both sides).
    pub fn state_bytes(&self) -> usize {
        self.sides.iter().map(|s| s.bytes).sum()
    }

    /// Rows held per side.
    pub fn rows_held(&self) -> [usize; 2] {
        [self.sides[0].rows, self.sides[1].rows]
    }

    /// Key rows of `batch` (side `s`) and which rows have a NULL key (they never match).
    fn keys(&self, s: usize, batch: &RecordBatch) -> Result<(Option<Rows>, Vec<bool>)> {
        let n = batch.num_rows();
        let Some(conv) = &self.key_conv else {
            return Ok((None, vec![false; n]));
        };
        let mut cols = Vec::with_capacity(self.spec.keys[s].len());
        for (i, e) in self.spec.keys[s].iter().enumerate() {
            let mut col = e.evaluate(batch)?.into_array(n)?;
            let want = e_type(&self.spec.keys[0][i], &self.spec.schemas[0])?;
            if col.data_type() != &want {
                col = datafusion::arrow::compute::cast(&col, &want)?;
            }
            cols.push(col);
        }
        let null: Vec<bool> = (0..n).map(|i| cols.iter().any(|c| c.is_null(i))).collect();
        Ok((Some(conv.convert_columns(&cols)?), null))
    }

    /// Fold in changes of side `s` (0 = left, 1 = right); `now_ns` is the
    /// processing time (for `state_ttl`). Returns the changes to the join's output.
    pub fn process(&mut self, s: usize, changes: &Changes, now_ns: i64) -> Result<Changes> {
        let spec = self.spec.clone();
        let batch = &changes.batch;
        let o = 1 - s;
        let (keys, null_key) = self.keys(s, batch)?;
        let key_of = |i: usize| -> &[u8] { keys.as_ref().map_or(&[], |k| k.row(i).data()) };
        let emits = spec.lookup != Some(s);
        // Candidate pairs: (row of the batch, position in the other side's key list).
        let mut pairs: Vec<(usize, usize)> = Vec::new();
        if emits {
            for (i, _) in null_key.iter().enumerate().filter(|(_, null)| !**null) {
                if let Some(list) = self.sides[o].by_key.get(key_of(i)) {
                    pairs.extend((0..list.len()).map(|j| (i, j)));
                }
            }
        }
        let cand = self.candidates(s, batch, &pairs, &key_of)?;
        let pass: Vec<bool> = match (&spec.filter, &cand) {
            (Some(f), Some(c)) if c.num_rows() > 0 => {
                let mask = f.evaluate(c)?.into_array(c.num_rows())?;
                let mask = mask
                    .as_boolean_opt()
                    .ok_or_else(|| EddyError::Internal("join condition is not boolean".into()))?;
                (0..mask.len())
                    .map(|k| mask.is_valid(k) && mask.value(k))
                    .collect()
            }
            _ => vec![true; pairs.len()],
        };
        // Sequential bookkeeping, in row order.
        let (pad_mine, pad_theirs) = (spec.kind.pads(s), spec.kind.pads(o));
        let mut out: Vec<(Out, i64)> = Vec::new();
        let mut k = 0;
        let rows = if spec.retention[s] == Retention::NotKept {
            None
        } else {
            Some(self.sides[s].conv.convert_columns(batch.columns())?)
        };
        let expires = self.expiries(s, batch, now_ns)?;
        for (i, &expires_at) in expires.iter().enumerate() {
            let w = changes.weight(i);
            if w != 1 && w != -1 {
                return Err(EddyError::Internal(format!("join input has weight {w}")));
            }
            let start = k;
            while k < pairs.len() && pairs[k].0 == i {
                k += 1;
            }
            if emits {
                let mut passed = 0;
                for p in start..k {
                    if !pass[p] {
                        continue;
                    }
                    passed += 1;
                    let list = self.sides[o]
                        .by_key
                        .get_mut(key_of(i))
                        .ok_or_else(|| EddyError::Internal("join key vanished".into()))?;
                    let theirs = &mut list[pairs[p].1];
                    let padded = Out::Padded { side: o, index: p };
                    if spec.kind.filters_left() {
                        // A right row: the left row it matches may appear or go.
                        let before = theirs.matches;
                        theirs.matches += w;
                        if s == 1 {
                            let delta = i64::from(spec.kind.shows(theirs.matches))
                                - i64::from(spec.kind.shows(before));
                            if delta != 0 {
                                out.push((padded, delta));
                            }
                        }
                        continue;
                    }
                    if pad_theirs && w > 0 && theirs.matches == 0 {
                        out.push((padded, -1));
                    }
                    out.push((Out::Pair(p), w));
                    theirs.matches += w;
                    if pad_theirs && w < 0 && theirs.matches == 0 {
                        out.push((padded, 1));
                    }
                }
                let shown = match spec.kind.filters_left() {
                    true => s == 0 && spec.kind.shows(passed),
                    false => pad_mine && passed == 0,
                };
                if shown {
                    out.push((Out::Padded { side: s, index: i }, w));
                }
                if let (Some(rows), true) = (&rows, w > 0) {
                    self.insert(s, key_of(i), rows.row(i).owned(), expires_at, passed)?;
                }
            } else if let (Some(rows), true) = (&rows, w > 0) {
                self.insert(s, key_of(i), rows.row(i).owned(), expires_at, 0)?;
            }
            if let (Some(rows), true) = (&rows, w < 0) {
                let side = &mut self.sides[s];
                let row = rows.row(i);
                if let Some(pos) = side
                    .by_key
                    .get(key_of(i))
                    .and_then(|l| l.iter().position(|e| e.row.row() == row))
                {
                    side.remove_entry(key_of(i), pos);
                }
            }
        }
        self.output(s, batch, cand, &out)
    }

    /// Timestamps at which this side's rows expire.
    fn expiries(&self, s: usize, batch: &RecordBatch, now_ns: i64) -> Result<Vec<i64>> {
        let n = batch.num_rows();
        Ok(match self.spec.retention[s] {
            Retention::EventTime { col, after_ns } => {
                let t = event_times_ns(batch.column(col))?;
                (0..n)
                    .map(|i| {
                        if t.is_null(i) {
                            i64::MIN
                        } else {
                            t.value(i).saturating_add(after_ns)
                        }
                    })
                    .collect()
            }
            Retention::Ttl { ns } => vec![now_ns.saturating_add(ns); n],
            Retention::UntilDeleted | Retention::NotKept => vec![i64::MAX; n],
        })
    }

    fn insert(
        &mut self,
        s: usize,
        key: &[u8],
        row: OwnedRow,
        expires: i64,
        matches: i64,
    ) -> Result<()> {
        let side = &mut self.sides[s];
        if side.rows >= self.spec.max_rows {
            let which = if s == 0 { "left" } else { "right" };
            return Err(EddyError::LimitExceeded(format!(
                "the join holds more than {} rows of its {which} input; bound it more tightly \
                 (a smaller state_ttl or time interval) or raise --max-groups",
                self.spec.max_rows
            )));
        }
        self.seq += 1;
        let seq = self.seq;
        side.bytes += row.as_ref().len() + key.len() + ENTRY_OVERHEAD;
        side.rows += 1;
        let entry = Entry {
            seq,
            row,
            expires,
            matches,
        };
        // One allocation of the key, shared with the expiry index; one lookup.
        let key: Key = match side.by_key.get_key_value_mut(key) {
            Some((k, list)) => {
                list.push_back(entry);
                k.clone()
            }
            None => {
                let k: Key = key.into();
                side.by_key.insert(k.clone(), VecDeque::from([entry]));
                k
            }
        };
        if expires != i64::MAX {
            side.expiry.insert((expires, seq), key);
        }
        Ok(())
    }

    /// The candidate pairs as output rows (left columns, then right).
    fn candidates<'a>(
        &self,
        s: usize,
        batch: &RecordBatch,
        pairs: &[(usize, usize)],
        key_of: &dyn Fn(usize) -> &'a [u8],
    ) -> Result<Option<RecordBatch>> {
        if pairs.is_empty() {
            return Ok(None);
        }
        let o = 1 - s;
        let idx = UInt32Array::from_iter_values(pairs.iter().map(|p| p.0 as u32));
        let mine = batch
            .columns()
            .iter()
            .map(|c| Ok(take(c.as_ref(), &idx, None)?))
            .collect::<Result<Vec<ArrayRef>>>()?;
        let side = &self.sides[o];
        let stored = pairs
            .iter()
            .map(|&(i, j)| side.by_key[key_of(i)][j].row.row());
        let theirs = side.conv.convert_rows(stored)?;
        let cols = if s == 0 {
            [mine, theirs].concat()
        } else {
            [theirs, mine].concat()
        };
        Ok(Some(RecordBatch::try_new(
            self.spec.output_schema.clone(),
            cols,
        )?))
    }

    /// Assemble the output rows in order.
    fn output(
        &self,
        s: usize,
        batch: &RecordBatch,
        cand: Option<RecordBatch>,
        out: &[(Out, i64)],
    ) -> Result<Changes> {
        let schema = &self.spec.output_schema;
        if out.is_empty() {
            return Ok(Changes::inserts(RecordBatch::new_empty(
                self.result_schema(),
            )));
        }
        let n_left = self.spec.schemas[0].fields().len();
        // Rows of `side` padded with NULLs: the batch's rows (the arriving side) or the
        // other side's columns of the candidate pairs.
        let padded = |side: usize| -> Result<Option<Vec<ArrayRef>>> {
            if !out
                .iter()
                .any(|(o, _)| matches!(o, Out::Padded { side: x, .. } if *x == side))
            {
                return Ok(None);
            }
            let own: Vec<ArrayRef> = if side == s {
                batch.columns().to_vec()
            } else {
                let c = cand
                    .as_ref()
                    .ok_or_else(|| EddyError::Internal("padded row without a pair".into()))?;
                if side == 0 {
                    c.columns()[..n_left].to_vec()
                } else {
                    c.columns()[n_left..].to_vec()
                }
            };
            let len = own.first().map_or(0, |c| c.len());
            let (before, after) = schema.fields().split_at(n_left);
            let nulls = |fields: &[datafusion::arrow::datatypes::FieldRef]| -> Vec<ArrayRef> {
                fields
                    .iter()
                    .map(|f| new_null_array(f.data_type(), len))
                    .collect()
            };
            Ok(Some(if side == 0 {
                [own, nulls(after)].concat()
            } else {
                [nulls(before), own].concat()
            }))
        };
        let pads = [padded(0)?, padded(1)?];
        let mut sources: Vec<&[ArrayRef]> = Vec::new();
        let mut slot = [0usize; 3];
        for (k, cols) in [
            cand.as_ref().map(|c| c.columns()),
            pads[0].as_deref(),
            pads[1].as_deref(),
        ]
        .into_iter()
        .enumerate()
        {
            if let Some(cols) = cols {
                slot[k] = sources.len();
                sources.push(cols);
            }
        }
        let idx: Vec<(usize, usize)> = out
            .iter()
            .map(|(o, _)| match o {
                Out::Pair(p) => (slot[0], *p),
                Out::Padded { side, index } => (slot[1 + side], *index),
            })
            .collect();
        let mut cols = Vec::with_capacity(schema.fields().len());
        for c in 0..schema.fields().len() {
            let arrays: Vec<&dyn Array> = sources.iter().map(|cols| cols[c].as_ref()).collect();
            cols.push(interleave(&arrays, &idx)?);
        }
        if self.spec.kind.filters_left() {
            cols.truncate(n_left);
        }
        let batch = RecordBatch::try_new(self.result_schema(), cols)?;
        let weights = Int64Array::from_iter_values(out.iter().map(|(_, w)| *w));
        Ok(Changes::with_weights(batch, weights))
    }

    /// The schema of the join's output: the pairs', or the left rows' for a
    /// semi or anti join.
    fn result_schema(&self) -> SchemaRef {
        match self.spec.kind.filters_left() {
            true => self.spec.schemas[0].clone(),
            false => self.spec.output_schema.clone(),
        }
    }

    /// Side `s`'s watermark reached `w`: the other side drops rows no later row of `s` can match.
    pub fn on_watermark(&mut self, s: usize, w: i64) {
        let o = 1 - s;
        if matches!(self.spec.retention[o], Retention::EventTime { .. }) {
            self.sides[o].expire(w);
        }
    }

    /// Processing time reached `now_ns`: rows past their `state_ttl` go.
    pub fn on_time(&mut self, now_ns: i64) {
        for s in 0..2 {
            if matches!(self.spec.retention[s], Retention::Ttl { .. }) {
                self.sides[s].expire(now_ns);
            }
        }
    }

    /// The rows side `s` holds, with their expiry and match count (see [`snapshot_schema`]).
    pub fn snapshot(&self, s: usize) -> Result<Vec<RecordBatch>> {
        let side = &self.sides[s];
        if side.rows == 0 {
            return Ok(Vec::new());
        }
        let entries: Vec<&Entry> = side.by_key.values().flatten().collect();
        let mut cols = side
            .conv
            .convert_rows(entries.iter().map(|e| e.row.row()))?;
        cols.push(Arc::new(Int64Array::from_iter_values(
            entries.iter().map(|e| e.expires),
        )));
        cols.push(Arc::new(Int64Array::from_iter_values(
            entries.iter().map(|e| e.matches),
        )));
        Ok(vec![RecordBatch::try_new(
            snapshot_schema(&self.spec.schemas[s]),
            cols,
        )?])
    }

    /// Hold checkpointed rows of side `s` again, their expiry moved by
    /// `shift` ns (a changed `state_ttl`).
    pub fn restore(&mut self, s: usize, batches: &[RecordBatch], shift: i64) -> Result<()> {
        let width = self.spec.schemas[s].fields().len();
        for b in batches {
            if b.num_columns() != width + 2 {
                return Err(EddyError::Internal(
                    "checkpointed join state does not match the join".into(),
                ));
            }
            let rows =
                RecordBatch::try_new(self.spec.schemas[s].clone(), b.columns()[..width].to_vec())?;
            let (keys, _) = self.keys(s, &rows)?;
            let conv_rows = self.sides[s].conv.convert_columns(rows.columns())?;
            let expires = b
                .column(width)
                .as_primitive::<datafusion::arrow::datatypes::Int64Type>();
            let matches = b
                .column(width + 1)
                .as_primitive::<datafusion::arrow::datatypes::Int64Type>();
            for i in 0..b.num_rows() {
                let key: Vec<u8> = keys
                    .as_ref()
                    .map_or(Vec::new(), |k| k.row(i).data().to_vec());
                self.insert(
                    s,
                    &key,
                    conv_rows.row(i).owned(),
                    expires.value(i).saturating_add(shift),
                    matches.value(i),
                )?;
            }
        }
        Ok(())
    }
}

fn e_type(e: &Arc<dyn PhysicalExpr>, schema: &Schema) -> Result<DataType> {
    Ok(e.data_type(schema)?)
}

/// A side's checkpoint schema: its columns, then `__expires` and `__matches`.
pub fn snapshot_schema(side: &Schema) -> SchemaRef {
    let mut fields: Vec<Field> = side.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new("__expires", DataType::Int64, false));
    fields.push(Field::new("__matches", DataType::Int64, false));
    Arc::new(Schema::new(fields))
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::TimestampNanosecondArray;
    use datafusion::arrow::datatypes::{Int64Type, TimeUnit};
    use datafusion::physical_expr::expressions::Column;

    use super::*;

    const S: i64 = 1_000_000_000;

    fn side() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), false),
        ]))
    }

    /// `l LEFT JOIN r ON l.k = r.k`, left rows kept until the right watermark
    /// passes l.ts + 10 s, right rows until the left watermark passes r.ts.
    fn op(kind: JoinKind) -> JoinOperator {
        // As DataFusion's join schema: a side that can be padded is nullable.
        let mut fields: Vec<Field> = side()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(kind == JoinKind::Full))
            .collect();
        fields.extend(
            side()
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true)),
        );
        let key: Arc<dyn PhysicalExpr> = Arc::new(Column::new("k", 0));
        let spec = JoinSpec {
            kind,
            keys: [vec![key.clone()], vec![key]],
            filter: None,
            schemas: [side(), side()],
            output_schema: Arc::new(Schema::new(fields)),
            retention: [
                Retention::EventTime {
                    col: 1,
                    after_ns: 10 * S,
                },
                Retention::EventTime {
                    col: 1,
                    after_ns: 0,
                },
            ],
            lookup: None,
            max_rows: 4,
        };
        JoinOperator::new(Arc::new(spec)).unwrap()
    }

    fn rows(rows: &[(i64, i64)], weight: i64) -> Changes {
        let b = RecordBatch::try_new(
            side(),
            vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(TimestampNanosecondArray::from_iter_values(
                    rows.iter().map(|r| r.1 * S),
                )),
            ],
        )
        .unwrap();
        Changes::with_weights(b, Int64Array::from(vec![weight; rows.len()]))
    }

    /// (left k, right ts in s or -1 for NULL, weight).
    fn out(c: &Changes) -> Vec<(i64, i64, i64)> {
        let k = c.batch.column(0).as_primitive::<Int64Type>();
        let rt = c
            .batch
            .column(3)
            .as_primitive::<datafusion::arrow::datatypes::TimestampNanosecondType>();
        (0..c.num_rows())
            .map(|i| {
                let t = if rt.is_null(i) { -1 } else { rt.value(i) / S };
                (k.value(i), t, c.weight(i))
            })
            .collect()
    }

    #[test]
    fn left_join_pads_then_retracts_and_watermarks_free_state() {
        let mut j = op(JoinKind::Left);
        // No match yet: the left row comes out padded with NULLs.
        assert_eq!(
            out(&j.process(0, &rows(&[(1, 0)], 1), 0).unwrap()),
            vec![(1, -1, 1)]
        );
        // Its first match retracts the padded row; a second match adds a pair.
        assert_eq!(
            out(&j
                .process(1, &rows(&[(1, 3), (1, 4), (2, 4)], 1), 0)
                .unwrap()),
            vec![(1, -1, -1), (1, 3, 1), (1, 4, 1)]
        );
        // Retracting both matches brings the padded row back.
        assert_eq!(
            out(&j.process(1, &rows(&[(1, 3), (1, 4)], -1), 0).unwrap()),
            vec![(1, 3, -1), (1, 4, -1), (1, -1, 1)]
        );
        assert_eq!(j.rows_held(), [1, 1]);
        // The left watermark passes the right row's time: it can match no later left row.
        j.on_watermark(0, 4 * S);
        assert_eq!(j.rows_held(), [1, 1]);
        j.on_watermark(0, 4 * S + 1);
        assert_eq!(j.rows_held(), [1, 0]);
        // The right watermark passes 0 s + 10 s: the left row goes too.
        j.on_watermark(1, 10 * S + 1);
        assert_eq!(j.rows_held(), [0, 0]);
        assert_eq!(j.state_bytes(), 0);
    }

    /// (left k, left ts in s, weight) of a semi / anti join's output (left columns only).
    fn left_rows(c: &Changes) -> Vec<(i64, i64, i64)> {
        assert_eq!(c.batch.num_columns(), 2, "left columns only");
        let k = c.batch.column(0).as_primitive::<Int64Type>();
        let t = c
            .batch
            .column(1)
            .as_primitive::<datafusion::arrow::datatypes::TimestampNanosecondType>();
        (0..c.num_rows())
            .map(|i| (k.value(i), t.value(i) / S, c.weight(i)))
            .collect()
    }

    #[test]
    fn semi_join_shows_a_left_row_once_while_it_has_matches() {
        let mut j = op(JoinKind::Semi);
        // No match yet: nothing.
        assert!(left_rows(&j.process(0, &rows(&[(1, 0)], 1), 0).unwrap()).is_empty());
        // Two matches: the left row once.
        assert_eq!(
            left_rows(&j.process(1, &rows(&[(1, 3), (1, 4)], 1), 0).unwrap()),
            vec![(1, 0, 1)]
        );
        // A left row that arrives with a match comes at once.
        assert_eq!(
            left_rows(&j.process(0, &rows(&[(1, 2)], 1), 0).unwrap()),
            vec![(1, 2, 1)]
        );
        // Retracting one match keeps the row; retracting the last one takes it back.
        assert!(left_rows(&j.process(1, &rows(&[(1, 3)], -1), 0).unwrap()).is_empty());
        assert_eq!(
            left_rows(&j.process(1, &rows(&[(1, 4)], -1), 0).unwrap()),
            vec![(1, 0, -1), (1, 2, -1)]
        );
    }

    #[test]
    fn anti_join_shows_a_left_row_while_it_has_no_match() {
        let mut j = op(JoinKind::Anti);
        assert_eq!(
            left_rows(&j.process(0, &rows(&[(1, 0), (2, 0)], 1), 0).unwrap()),
            vec![(1, 0, 1), (2, 0, 1)]
        );
        // Its first match takes it out; a second changes nothing.
        assert_eq!(
            left_rows(&j.process(1, &rows(&[(1, 3)], 1), 0).unwrap()),
            vec![(1, 0, -1)]
        );
        assert!(left_rows(&j.process(1, &rows(&[(1, 4)], 1), 0).unwrap()).is_empty());
        // Losing both matches brings it back.
        assert_eq!(
            left_rows(&j.process(1, &rows(&[(1, 3), (1, 4)], -1), 0).unwrap()),
            vec![(1, 0, 1)]
        );
    }

    #[test]
    fn full_join_pads_both_sides() {
        let mut j = op(JoinKind::Full);
        // A right row with no match: padded on the left (out() shows the left key as 0 for NULL).
        let c = j.process(1, &rows(&[(1, 3)], 1), 0).unwrap();
        assert_eq!(c.batch.column(0).null_count(), 1);
        assert_eq!(c.weight(0), 1);
        // A left row matching it retracts the right's padded row and emits the pair.
        let c = j.process(0, &rows(&[(1, 0)], 1), 0).unwrap();
        let nulls: Vec<bool> = (0..c.num_rows())
            .map(|i| c.batch.column(0).is_null(i))
            .collect();
        let weights: Vec<i64> = (0..c.num_rows()).map(|i| c.weight(i)).collect();
        assert_eq!((nulls, weights), (vec![true, false], vec![-1, 1]));
        // A left row without a match: padded on the right.
        assert_eq!(
            out(&j.process(0, &rows(&[(2, 0)], 1), 0).unwrap()),
            vec![(2, -1, 1)]
        );
    }

    #[test]
    fn state_round_trips_through_a_snapshot_and_is_bounded() {
        let mut j = op(JoinKind::Inner);
        j.process(0, &rows(&[(1, 0), (2, 1)], 1), 0).unwrap();
        let snap = [j.snapshot(0).unwrap(), j.snapshot(1).unwrap()];
        let mut k = op(JoinKind::Inner);
        k.restore(0, &snap[0], 0).unwrap();
        k.restore(1, &snap[1], 0).unwrap();
        assert_eq!(k.rows_held(), [2, 0]);
        assert_eq!(
            out(&k.process(1, &rows(&[(2, 5)], 1), 0).unwrap()),
            vec![(2, 5, 1)]
        );
        // At most 4 rows per side.
        let err = k.process(0, &rows(&[(3, 0), (4, 0), (5, 0)], 1), 0);
        assert!(matches!(err, Err(EddyError::LimitExceeded(_))), "{err:?}");
    }
}
