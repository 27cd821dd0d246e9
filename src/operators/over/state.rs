//! The rows of an OVER operator by partition, and the recomputation of the
//! outputs a batch changes (see [`super`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{Int64Array, UInt32Array};
use datafusion::arrow::compute::{concat_batches, take_record_batch};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::hash_utils::RandomState;

use super::reach::{back, between, forward, Hi, Key, Lo, Values};
use super::OverSpec;
use crate::error::{EddyError, Result};
use crate::types::{Changes, EventTime};

/// One partition's rows: key → number of copies.
type Part = BTreeMap<Key, usize>;

/// Every partition's rows, and the encoders for keys and rows.
pub struct Rows {
    spec: Arc<OverSpec>,
    partition_conv: Option<RowConverter>,
    order_conv: RowConverter,
    row_conv: RowConverter,
    output_conv: RowConverter,
    /// Encodes the event-time column alone (to find where the watermark falls).
    time_conv: Option<RowConverter>,
    parts: HashMap<Box<[u8]>, Part, RandomState>,
    rows: usize,
    bytes: usize,
}

/// A partition key and its changed rows: (key, weight).
type Touched = (Box<[u8]>, Vec<(Key, i64)>);

/// Output rows of a stretch, with the weight they go out with.
type Emitted = Vec<(RecordBatch, i64)>;

impl Rows {
    /// No rows yet.
    pub fn new(spec: Arc<OverSpec>) -> Result<Self> {
        let schema = &spec.input_schema;
        let part_types = spec
            .partition_by
            .iter()
            .map(|e| Ok(SortField::new(e.data_type(schema)?)))
            .collect::<Result<Vec<_>>>()?;
        let order_fields = spec
            .order_by
            .iter()
            .map(|s| {
                Ok(SortField::new_with_options(
                    s.expr.data_type(schema)?,
                    s.options,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let fields = |s: &datafusion::arrow::datatypes::Schema| {
            s.fields()
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect::<Vec<_>>()
        };
        // Encodes like the first ORDER BY column (the event time when evicting).
        let time_conv = match (spec.evict_by, spec.order_by.first()) {
            (Some(c), Some(first)) => Some(RowConverter::new(vec![SortField::new_with_options(
                schema.field(c).data_type().clone(),
                first.options,
            )])?),
            _ => None,
        };
        Ok(Rows {
            partition_conv: match part_types.is_empty() {
                true => None,
                false => Some(RowConverter::new(part_types)?),
            },
            order_conv: RowConverter::new(order_fields)?,
            row_conv: RowConverter::new(fields(schema))?,
            output_conv: RowConverter::new(fields(&spec.output_schema))?,
            time_conv,
            parts: HashMap::default(),
            rows: 0,
            bytes: 0,
            spec,
        })
    }

    /// Approximate bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn values(&self) -> Values<'_> {
        Values {
            conv: &self.order_conv,
            descending: self
                .spec
                .order_by
                .first()
                .is_some_and(|s| s.options.descending),
        }
    }

    /// Apply `changes`; returns the changes of the output.
    pub fn apply(&mut self, changes: &Changes) -> Result<Changes> {
        let mut emitted = Emitted::new();
        for (part, rows) in self.group(changes)? {
            emitted.extend(self.apply_to(part, rows)?);
        }
        self.consolidate(emitted)
    }

    /// Apply `changes` without computing outputs (restoring state).
    pub fn apply_quietly(&mut self, changes: &Changes) -> Result<()> {
        for (part, rows) in self.group(changes)? {
            for (key, w) in rows {
                self.put(&part, key, w)?;
            }
        }
        Ok(())
    }

    /// The changed rows of each touched partition: (key, weight).
    fn group(&self, changes: &Changes) -> Result<Vec<Touched>> {
        let batch = &changes.batch;
        let parts = match &self.partition_conv {
            Some(conv) => Some(
                conv.convert_columns(&crate::operators::evaluate(&self.spec.partition_by, batch)?)?,
            ),
            None => None,
        };
        let order_exprs: Vec<_> = self.spec.order_by.iter().map(|s| s.expr.clone()).collect();
        // Without ORDER BY every row is a peer: rows order by their own bytes.
        let orders = match order_exprs.is_empty() {
            true => None,
            false => Some(
                self.order_conv
                    .convert_columns(&crate::operators::evaluate(&order_exprs, batch)?)?,
            ),
        };
        let full = self.row_conv.convert_columns(batch.columns())?;
        let mut index: HashMap<Box<[u8]>, usize, RandomState> = HashMap::default();
        let mut out: Vec<Touched> = Vec::new();
        for i in 0..batch.num_rows() {
            let part: Box<[u8]> = parts
                .as_ref()
                .map_or_else(|| Box::from([]), |p| p.row(i).as_ref().into());
            let slot = *index.entry(part.clone()).or_insert_with(|| {
                out.push((part, Vec::new()));
                out.len() - 1
            });
            let order: Box<[u8]> = orders
                .as_ref()
                .map_or_else(|| Box::from([]), |o| o.row(i).as_ref().into());
            let key = (order, full.row(i).as_ref().into());
            out[slot].1.push((key, changes.weight(i)));
        }
        Ok(out)
    }

    /// Add (`w > 0`) or remove one copy of `key` in partition `part`.
    fn put(&mut self, part: &[u8], key: Key, w: i64) -> Result<()> {
        let size = key.0.len() + key.1.len();
        if w > 0 {
            if self.rows >= self.spec.max_rows {
                return Err(EddyError::LimitExceeded(format!(
                    "a window function (OVER) holds more than {} rows; bound its input with \
                     a watermark and a ROWS or RANGE … PRECEDING frame ordered by event time, \
                     or with a temporal filter",
                    self.spec.max_rows
                )));
            }
            let rows = self.parts.entry(part.into()).or_default();
            let n = rows.entry(key).or_insert(0);
            if *n == 0 {
                self.bytes += size;
            }
            *n += 1;
            self.rows += 1;
        } else if let Some(rows) = self.parts.get_mut(part) {
            // Retracting a row not held (never inserted here): nothing to do.
            if let Some(n) = rows.get_mut(&key) {
                *n -= 1;
                self.rows -= 1;
                if *n == 0 {
                    rows.remove(&key);
                    self.bytes -= size;
                }
            }
            if rows.is_empty() {
                self.parts.remove(part);
            }
        }
        Ok(())
    }

    /// Apply one partition's changes; returns the outputs retracted and inserted.
    fn apply_to(&mut self, part: Box<[u8]>, changes: Vec<(Key, i64)>) -> Result<Emitted> {
        let (Some(first), Some(last)) = (
            changes.iter().map(|c| &c.0).min().cloned(),
            changes.iter().map(|c| &c.0).max().cloned(),
        ) else {
            return Ok(Emitted::new());
        };
        // The stretch whose outputs may change, and the rows computing them reads.
        let empty = Part::new();
        let (lo, hi, from, to) = {
            let rows = self.parts.get(&part).unwrap_or(&empty);
            let values = self.values();
            let (before, after) = (&self.spec.before, &self.spec.after);
            let lo = back(rows, &Lo::Key(first), after, &values, 1);
            let hi = forward(rows, &Hi::Key(last), before, &values, 1);
            let from = back(rows, &lo, before, &values, 0);
            let to = forward(rows, &hi, after, &values, 0);
            (lo, hi, from, to)
        };
        let mut emitted = Emitted::new();
        if let Some(old) = self.outputs(&part, [&from, &lo], [&hi, &to])? {
            emitted.push((old, -1));
        }
        for (key, w) in changes {
            self.put(&part, key, w)?;
        }
        if let Some(new) = self.outputs(&part, [&from, &lo], [&hi, &to])? {
            emitted.push((new, 1));
        }
        Ok(emitted)
    }

    /// The outputs of the rows in `lo..=hi`, computed over the rows in
    /// `from..=to` (which hold every frame they read).
    fn outputs(
        &self,
        part: &[u8],
        [from, lo]: [&Lo; 2],
        [hi, to]: [&Hi; 2],
    ) -> Result<Option<RecordBatch>> {
        let Some(rows) = self.parts.get(part) else {
            return Ok(None);
        };
        let parser = self.row_conv.parser();
        let mut encoded = Vec::new();
        let (mut start, mut end) = (None, 0);
        for (key, n) in between(rows, from, to) {
            let inside = lo.admits(key) && hi.admits(key);
            for _ in 0..n {
                if inside {
                    start.get_or_insert(encoded.len());
                    end = encoded.len() + 1;
                }
                encoded.push(parser.parse(&key.1));
            }
        }
        let Some(start) = start else {
            return Ok(None);
        };
        let input = RecordBatch::try_new(
            self.spec.input_schema.clone(),
            self.row_conv.convert_rows(encoded)?,
        )?;
        let mut columns = input.columns().to_vec();
        for f in &self.spec.functions {
            columns.push(f.evaluate(&input)?);
        }
        let out = RecordBatch::try_new(self.spec.output_schema.clone(), columns)?;
        Ok(Some(out.slice(start, end - start)))
    }

    /// One output change per row whose net weight is not zero (a row
    /// retracted and inserted with the same value is no change).
    fn consolidate(&self, emitted: Emitted) -> Result<Changes> {
        let schema = self.spec.output_schema.clone();
        let batches: Vec<&RecordBatch> = emitted.iter().map(|(b, _)| b).collect();
        let all = concat_batches(&schema, batches)?;
        let weights: Vec<i64> = emitted
            .iter()
            .flat_map(|(b, w)| std::iter::repeat_n(*w, b.num_rows()))
            .collect();
        let encoded = self.output_conv.convert_columns(all.columns())?;
        let mut net: HashMap<&[u8], (u32, i64), RandomState> = HashMap::default();
        let mut order = Vec::new();
        for (i, w) in weights.iter().enumerate() {
            let e = net.entry(encoded.row(i).data()).or_insert_with(|| {
                order.push(encoded.row(i).data());
                (i as u32, 0)
            });
            e.1 += w;
        }
        let (mut take, mut out_w) = (Vec::new(), Vec::new());
        // Retractions first, so a reader never sees a row twice.
        for sign in [-1i64, 1] {
            for k in &order {
                let (i, w) = net[k];
                if w.signum() == sign {
                    for _ in 0..w.unsigned_abs() {
                        take.push(i);
                        out_w.push(sign);
                    }
                }
            }
        }
        let batch = take_record_batch(&all, &UInt32Array::from(take))?;
        Ok(Changes::with_weights(batch, Int64Array::from(out_w)))
    }

    /// Free rows below watermark `w` that no later change can reach: a
    /// later row sorts at or after `w`, so what it can change and read is
    /// found going back from there.
    pub fn evict_below(&mut self, w: EventTime) -> Result<()> {
        let (Some(conv), Some(col)) = (&self.time_conv, self.spec.evict_by) else {
            return Ok(());
        };
        let t = datafusion::arrow::compute::cast(
            &datafusion::arrow::array::TimestampNanosecondArray::from(vec![w]),
            self.spec.input_schema.field(col).data_type(),
        )?;
        let probe: Key = (
            conv.convert_columns(&[t])?.row(0).as_ref().into(),
            Box::from([]),
        );
        let values = self.values();
        let cuts: Vec<(Box<[u8]>, Key)> = self
            .parts
            .iter()
            .filter_map(|(part, rows)| {
                let lo = back(rows, &Lo::Key(probe.clone()), &self.spec.after, &values, 1);
                match back(rows, &lo, &self.spec.before, &values, 0) {
                    Lo::Key(k) if rows.first_key_value().is_some_and(|(f, _)| *f < k) => {
                        Some((part.clone(), k))
                    }
                    _ => None,
                }
            })
            .collect();
        for (part, cut) in cuts {
            let Some(rows) = self.parts.get_mut(&part) else {
                continue;
            };
            let kept = rows.split_off(&cut);
            for (key, n) in std::mem::replace(rows, kept) {
                self.rows -= n;
                self.bytes -= key.0.len() + key.1.len();
            }
            if rows.is_empty() {
                self.parts.remove(&part);
            }
        }
        Ok(())
    }

    /// Every row held (input schema), one row per copy.
    pub fn snapshot(&self) -> Result<Vec<RecordBatch>> {
        let parser = self.row_conv.parser();
        let mut encoded = Vec::new();
        for rows in self.parts.values() {
            for (key, n) in rows {
                for _ in 0..*n {
                    encoded.push(parser.parse(&key.1));
                }
            }
        }
        if encoded.is_empty() {
            return Ok(Vec::new());
        }
        Ok(vec![RecordBatch::try_new(
            self.spec.input_schema.clone(),
            self.row_conv.convert_rows(encoded)?,
        )?])
    }
}
