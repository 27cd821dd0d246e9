//! Batch generation: every cell a pure function of `(seed, column, row)`.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, LargeStringBuilder, PrimitiveArray, PrimitiveBuilder, StringBuilder,
    StringViewBuilder,
};
use datafusion::arrow::datatypes::{
    ArrowPrimitiveType, ArrowTimestampType, DataType, Date32Type, Float32Type, Float64Type,
    Int16Type, Int32Type, Int64Type, Int8Type, SchemaRef, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt16Type, UInt32Type,
    UInt64Type, UInt8Type,
};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use rand::distr::Alphanumeric;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::{DatagenOptions, FieldSpec, Gen, IntGen, BATCH_ROWS_MAX, NANOS_PER_DAY};

/// SplitMix64's finalizer: a bijective 64-bit mix.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A generator producing batches of rows of `schema`.
#[derive(Debug)]
pub struct DatagenGenerator {
    /// The schema of every batch.
    schema: SchemaRef,
    /// What to generate, one spec per column.
    options: DatagenOptions,
    /// Per-column seeds derived from `options.seed`.
    column_seeds: Vec<u64>,
    /// Rows after which the stream ends: `number_of_rows` or a sequence's length, whichever is least.
    row_limit: Option<u64>,
    /// Rows produced so far.
    position: u64,
    /// Set when the options do not fit the schema or a batch could not be built; the generator then
    /// produces nothing more.
    failed: bool,
}

impl DatagenGenerator {
    /// Creates a generator at position 0. `options` must come from [`DatagenOptions::parse`] over the
    /// same schema; otherwise an error is logged and [`Self::next_batch`] returns `None`.
    pub fn new(schema: SchemaRef, options: DatagenOptions) -> Self {
        let fields = schema.fields();
        let failed = fields.len() != options.fields.len()
            || fields.iter().zip(&options.fields).any(|(field, spec)| {
                field.data_type() != &spec.data_type
                    || (spec.null_rate > 0.0 && !field.is_nullable())
            });
        if failed {
            tracing::error!(
                "datagen: options were parsed for another schema; the source produces no rows"
            );
        }
        let column_seeds = (1..=options.fields.len() as u64)
            .map(|c| mix64(options.seed ^ mix64(c)))
            .collect();
        let sequence_rows = options.fields.iter().filter_map(|spec| match spec.draw {
            Gen::Int(IntGen::Sequence { start, end }) => {
                Some(u64::try_from(end - start + 1).unwrap_or(u64::MAX))
            }
            _ => None,
        });
        let row_limit = options
            .number_of_rows
            .into_iter()
            .chain(sequence_rows)
            .min();
        Self {
            schema,
            options,
            column_seeds,
            row_limit,
            position: 0,
            failed,
        }
    }

    /// The next up to `max_rows` rows (at most 65,536; fewer when the row limit is reached), or `None`
    /// once exhausted. `now_nanos` (ns since the Unix epoch) is the clock for timestamp and date
    /// columns. For a given seed, row `r` is the same whatever the batch sizes, except for timestamps,
    /// which follow `now_nanos`. `max_rows == 0` gives an empty batch.
    pub fn next_batch(&mut self, max_rows: usize, now_nanos: i64) -> Option<RecordBatch> {
        let remaining = self
            .row_limit
            .map_or(u64::MAX, |limit| limit.saturating_sub(self.position));
        if self.failed || remaining == 0 {
            return None;
        }
        let rows = usize::try_from(remaining)
            .unwrap_or(usize::MAX)
            .min(max_rows)
            .min(BATCH_ROWS_MAX);
        let columns = self
            .options
            .fields
            .iter()
            .zip(&self.column_seeds)
            .map(|(spec, &seed)| {
                let span = Span {
                    first_row: self.position,
                    rows,
                    seed,
                    null_rate: spec.null_rate,
                };
                column(spec, span, now_nanos)
            })
            .collect::<Option<Vec<_>>>();
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        let batch = columns
            .ok_or_else(|| "a column spec does not match its type".to_string())
            .and_then(|columns| {
                RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)
                    .map_err(|e| e.to_string())
            });
        match batch {
            Ok(batch) => {
                self.position = self.position.saturating_add(rows as u64);
                Some(batch)
            }
            Err(error) => {
                tracing::error!("datagen: cannot build a batch ({error}); the source stops");
                self.failed = true;
                None
            }
        }
    }

    /// Rows produced so far (the generator position, to be saved in a checkpoint).
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Moves the generator to `position` (e.g. one saved by a checkpoint); the next batch starts at
    /// that row, exactly as if the rows before it had been produced. O(1).
    pub fn set_position(&mut self, position: u64) {
        self.position = position;
    }
}

/// The rows of one column in one batch.
#[derive(Clone, Copy)]
struct Span {
    /// Stream position of the first row.
    first_row: u64,
    /// Number of rows.
    rows: usize,
    /// The column's seed.
    seed: u64,
    /// Probability that a cell is null.
    null_rate: f64,
}

impl Span {
    /// Calls `cell` once per row in order: `None` for a null, else the row's own generator and index.
    fn for_each(self, mut cell: impl FnMut(Option<(&mut SmallRng, u64)>)) {
        for row in self.first_row..self.first_row.saturating_add(self.rows as u64) {
            let mut rng = SmallRng::seed_from_u64(mix64(self.seed ^ mix64(row)));
            if self.null_rate > 0.0 && rng.random::<f64>() < self.null_rate {
                cell(None);
            } else {
                cell(Some((&mut rng, row)));
            }
        }
    }
}

/// Builds one column; `None` if `spec` does not fit its own data type (`parse` never makes such).
fn column(spec: &FieldSpec, span: Span, now_nanos: i64) -> Option<ArrayRef> {
    let strings_bytes = |length: usize| span.rows.saturating_mul(length);
    let array: ArrayRef = match (&spec.data_type, &spec.draw) {
        (DataType::Int8, Gen::Int(g)) => Arc::new(ints::<Int8Type>(g, span)),
        (DataType::Int16, Gen::Int(g)) => Arc::new(ints::<Int16Type>(g, span)),
        (DataType::Int32, Gen::Int(g)) => Arc::new(ints::<Int32Type>(g, span)),
        (DataType::Int64, Gen::Int(g)) => Arc::new(ints::<Int64Type>(g, span)),
        (DataType::UInt8, Gen::Int(g)) => Arc::new(ints::<UInt8Type>(g, span)),
        (DataType::UInt16, Gen::Int(g)) => Arc::new(ints::<UInt16Type>(g, span)),
        (DataType::UInt32, Gen::Int(g)) => Arc::new(ints::<UInt32Type>(g, span)),
        (DataType::UInt64, Gen::Int(g)) => Arc::new(ints::<UInt64Type>(g, span)),
        (DataType::Float64, &Gen::Float { min, max }) => {
            Arc::new(primitive::<Float64Type>(span, |rng, _| {
                uniform_float(rng, min, max)
            }))
        }
        (DataType::Float32, &Gen::Float { min, max }) => {
            Arc::new(primitive::<Float32Type>(span, |rng, _| {
                // Narrowing may round up onto `max`; keep the range half-open.
                let v = uniform_float(rng, min, max) as f32;
                if v < max as f32 || min >= max {
                    v
                } else {
                    min as f32
                }
            }))
        }
        (DataType::Utf8, &Gen::Str { length }) => {
            let mut b = StringBuilder::with_capacity(span.rows, strings_bytes(length));
            strings(span, length, |s| b.append_option(s));
            Arc::new(b.finish())
        }
        (DataType::LargeUtf8, &Gen::Str { length }) => {
            let mut b = LargeStringBuilder::with_capacity(span.rows, strings_bytes(length));
            strings(span, length, |s| b.append_option(s));
            Arc::new(b.finish())
        }
        (DataType::Utf8View, &Gen::Str { length }) => {
            let mut b = StringViewBuilder::with_capacity(span.rows);
            strings(span, length, |s| b.append_option(s));
            Arc::new(b.finish())
        }
        (DataType::Boolean, Gen::Bool) => {
            let mut b = BooleanBuilder::with_capacity(span.rows);
            span.for_each(|cell| b.append_option(cell.map(|(rng, _)| rng.random::<bool>())));
            Arc::new(b.finish())
        }
        (DataType::Timestamp(unit, tz), &Gen::Time { max_past_nanos }) => {
            let clock = (now_nanos, max_past_nanos);
            match unit {
                TimeUnit::Second => instants::<TimestampSecondType>(span, clock, tz),
                TimeUnit::Millisecond => instants::<TimestampMillisecondType>(span, clock, tz),
                TimeUnit::Microsecond => instants::<TimestampMicrosecondType>(span, clock, tz),
                TimeUnit::Nanosecond => instants::<TimestampNanosecondType>(span, clock, tz),
            }
        }
        (DataType::Date32, &Gen::Time { max_past_nanos }) => {
            Arc::new(primitive::<Date32Type>(span, |rng, _| {
                let days = past_instant(rng, now_nanos, max_past_nanos).div_euclid(NANOS_PER_DAY);
                i32::try_from(days).unwrap_or_default() // |i64 ns| / 1 day < 2^17: always fits
            }))
        }
        _ => return None,
    };
    Some(array)
}

/// One value (drawn by `value` from the row's generator and index) or null per row of `span`.
fn primitive<T: ArrowPrimitiveType>(
    span: Span,
    mut value: impl FnMut(&mut SmallRng, u64) -> T::Native,
) -> PrimitiveArray<T> {
    let mut builder = PrimitiveBuilder::<T>::with_capacity(span.rows);
    span.for_each(|cell| match cell {
        Some((rng, row)) => builder.append_value(value(rng, row)),
        None => builder.append_null(),
    });
    builder.finish()
}

/// An integer column of type `T`.
fn ints<T: ArrowPrimitiveType>(draw: &IntGen, span: Span) -> PrimitiveArray<T>
where
    T::Native: TryFrom<i128> + Default,
{
    primitive::<T>(span, |rng, row| {
        let v = match *draw {
            IntGen::Sequence { start, .. } => start.saturating_add(i128::from(row)),
            IntGen::Random { min, max } => rng.random_range(min..=max),
        };
        // Always fits: `parse` checked the bounds against this type; a sequence stops at `end`.
        <T::Native as TryFrom<i128>>::try_from(v).unwrap_or_default()
    })
}

/// A timestamp column of type `T` (any unit) in time zone `tz`.
fn instants<T: ArrowTimestampType>(
    span: Span,
    (now_nanos, max_past_nanos): (i64, i64),
    tz: &Option<Arc<str>>,
) -> ArrayRef {
    let nanos_per_unit: i64 = match T::UNIT {
        TimeUnit::Second => 1_000_000_000,
        TimeUnit::Millisecond => 1_000_000,
        TimeUnit::Microsecond => 1_000,
        TimeUnit::Nanosecond => 1,
    };
    let array = primitive::<T>(span, |rng, _| {
        past_instant(rng, now_nanos, max_past_nanos).div_euclid(nanos_per_unit)
    });
    Arc::new(array.with_timezone_opt(tz.clone()))
}

/// Uniform in `[min, max)`, or `min` when the range is empty.
fn uniform_float(rng: &mut SmallRng, min: f64, max: f64) -> f64 {
    let v = min + rng.random::<f64>() * (max - min);
    if v < max {
        v
    } else {
        min
    }
}

/// `now_nanos` minus a uniform offset in `[0, max_past_nanos]`.
fn past_instant(rng: &mut SmallRng, now_nanos: i64, max_past_nanos: i64) -> i64 {
    let offset = if max_past_nanos > 0 {
        rng.random_range(0..=max_past_nanos)
    } else {
        0
    };
    now_nanos.saturating_sub(offset)
}

/// Calls `append` per row with a fresh random alphanumeric string of `length`, or `None` for a null.
fn strings(span: Span, length: usize, mut append: impl FnMut(Option<&str>)) {
    let mut text = String::with_capacity(length);
    span.for_each(|cell| match cell {
        None => append(None),
        Some((rng, _)) => {
            text.clear();
            for _ in 0..length {
                let byte: u8 = rng.sample(Alphanumeric);
                text.push(char::from(byte));
            }
            append(Some(text.as_str()));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{example_schema, parse, schema_of, NOW};
    use super::*;
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::compute::concat_batches;
    use datafusion::arrow::datatypes::Field;
    use std::collections::BTreeSet;

    /// The options of the example in the module docs.
    const EXAMPLE: &str = "rows_per_second=1000, number_of_rows=5000, seed=42, \
        fields.id.kind=sequence, fields.id.start=1, fields.id.end=1000000, fields.v.kind=random, \
        fields.v.min=0, fields.v.max=9, fields.name.length=8, fields.ts.max_past=5s";

    fn generator(schema: &SchemaRef, options: &str) -> DatagenGenerator {
        DatagenGenerator::new(
            schema.clone(),
            parse(schema, options).expect("valid options"),
        )
    }

    /// Every batch until exhaustion (at most 1,000), concatenated, and the batch sizes.
    fn drain(schema: &SchemaRef, options: &str, max_rows: usize) -> (RecordBatch, Vec<usize>) {
        let mut g = generator(schema, options);
        let batches: Vec<_> = (0..1000)
            .map_while(|_| g.next_batch(max_rows, NOW))
            .collect();
        let sizes = batches.iter().map(RecordBatch::num_rows).collect();
        (concat_batches(schema, &batches).expect("one schema"), sizes)
    }

    #[test]
    fn same_seed_same_rows_whatever_the_batch_sizes() {
        let schema = example_schema();
        let (all, sizes) = drain(&schema, EXAMPLE, 1000);
        assert_eq!(sizes, vec![1000; 5]);
        let (again, sizes) = drain(&schema, EXAMPLE, 777);
        assert_eq!((all.clone(), sizes.len()), (again, 7));
        let (other, _) = drain(&schema, &EXAMPLE.replace("seed=42", "seed=43"), 1000);
        assert_eq!(
            all.column(0),
            other.column(0),
            "a sequence does not depend on the seed"
        );
        for column in 1..5 {
            assert_ne!(all.column(column), other.column(column), "column {column}");
        }
        let mut g = generator(&schema, EXAMPLE);
        g.set_position(1234);
        assert_eq!(
            g.next_batch(10, NOW),
            Some(all.slice(1234, 10)),
            "resumes mid-stream"
        );
        assert_eq!(g.position(), 1244);
    }

    #[test]
    fn sequence_ends_exactly_at_end_and_number_of_rows_caps() {
        let schema = schema_of(vec![Field::new("id", DataType::Int64, false)]);
        let seq = "fields.id.kind=sequence, fields.id.start=1, fields.id.end=10";
        let (all, sizes) = drain(&schema, seq, 4);
        assert_eq!(sizes, vec![4, 4, 2]);
        let ids = all.column(0).as_primitive::<Int64Type>().values().to_vec();
        assert_eq!(ids, (1..=10).collect::<Vec<i64>>());
        let mut g = generator(&schema, seq);
        assert_eq!(g.next_batch(0, NOW).map(|b| b.num_rows()), Some(0));
        assert_eq!(g.next_batch(100, NOW).map(|b| b.num_rows()), Some(10));
        assert_eq!((g.next_batch(100, NOW), g.position()), (None, 10));
        assert_eq!(
            drain(&schema, &format!("{seq}, number_of_rows=7"), 4).1,
            vec![4, 3]
        );
        let tiny = schema_of(vec![Field::new("b", DataType::Int8, false)]);
        let (all, _) = drain(&tiny, "fields.b.kind=sequence, fields.b.start=120", 99);
        let values = all.column(0).as_primitive::<Int8Type>().values().to_vec();
        assert_eq!(
            values,
            (120..=127).collect::<Vec<i8>>(),
            "end defaults to the type's max"
        );
    }

    #[test]
    fn values_stay_in_their_ranges() {
        let (all, _) = drain(&example_schema(), EXAMPLE, 1000);
        assert!(
            all.columns().iter().all(|c| c.null_count() == 0),
            "no null_rate, no nulls"
        );
        let v = all.column(1).as_primitive::<Int32Type>().values();
        assert_eq!(
            v.iter().copied().collect::<BTreeSet<i32>>(),
            (0..=9).collect()
        );
        let alnum = |s: &str| s.len() == 8 && s.chars().all(|c| c.is_ascii_alphanumeric());
        assert!(all
            .column(2)
            .as_string::<i32>()
            .iter()
            .all(|s| s.is_some_and(alnum)));
        let price = all.column(3).as_primitive::<Float64Type>().values();
        assert!(price.iter().all(|x| (0.0..1000.0).contains(x)));
        assert!(price.iter().any(|x| *x > 900.0) && price.iter().any(|x| *x < 100.0));
        let trues = all.column(4).as_boolean().true_count();
        assert!((2200..2800).contains(&trues), "{trues} true of 5000");
        let now_ms = NOW.div_euclid(1_000_000);
        let ts = all
            .column(5)
            .as_primitive::<TimestampMillisecondType>()
            .values();
        assert!(ts.iter().all(|t| (now_ms - 5000..=now_ms).contains(t)));
        assert!(
            ts.iter().any(|t| *t < now_ms - 4000),
            "offsets spread over max_past"
        );
    }

    #[test]
    fn every_supported_type_generates_within_bounds() {
        let utc = DataType::Timestamp(TimeUnit::Second, Some("UTC".into()));
        let types = [
            ("i8", DataType::Int8),
            ("u64", DataType::UInt64),
            ("neg", DataType::Int16),
            ("f32", DataType::Float32),
            ("large", DataType::LargeUtf8),
            ("view", DataType::Utf8View),
            ("s", utc),
            ("ns", DataType::Timestamp(TimeUnit::Nanosecond, None)),
            ("d", DataType::Date32),
        ];
        let schema = schema_of(
            types
                .into_iter()
                .map(|(n, t)| Field::new(n, t, false))
                .collect(),
        );
        let options = "fields.u64.min=18446744073709551000, fields.neg.max=-5, fields.f32.min=-1, \
            fields.f32.max=1, fields.view.length=3, number_of_rows=2000";
        let (all, sizes) = drain(&schema, options, 300);
        assert_eq!((all.num_rows(), sizes.len()), (2000, 7));
        let i8s = all.column(0).as_primitive::<Int8Type>().values();
        assert!(
            i8s.iter().all(|x| *x >= 0),
            "default range clipped to 0..=127"
        );
        assert!(
            i8s.iter().filter(|x| **x == 0).count() < 100,
            "no out-of-range fallbacks"
        );
        let u64s = all.column(1).as_primitive::<UInt64Type>().values();
        assert!(u64s.iter().all(|x| *x >= 18_446_744_073_709_551_000));
        let negs = all.column(2).as_primitive::<Int16Type>().values();
        assert!(negs.iter().all(|x| *x <= -5) && negs.iter().any(|x| *x < -1000));
        let f32s = all.column(3).as_primitive::<Float32Type>().values();
        assert!(f32s.iter().all(|x| (-1.0..1.0).contains(x)));
        assert!(all
            .column(4)
            .as_string::<i64>()
            .iter()
            .all(|s| s.is_some_and(|s| s.len() == 10)));
        assert!(all
            .column(5)
            .as_string_view()
            .iter()
            .all(|s| s.is_some_and(|s| s.len() == 3)));
        assert_eq!(all.column(6).data_type(), schema.field(6).data_type());
        let secs = all.column(6).as_primitive::<TimestampSecondType>().values();
        assert!(
            secs.iter().all(|t| *t == NOW / 1_000_000_000),
            "max_past 0: exactly now"
        );
        let nanos = all
            .column(7)
            .as_primitive::<TimestampNanosecondType>()
            .values();
        assert!(nanos.iter().all(|t| *t == NOW));
        let days = all.column(8).as_primitive::<Date32Type>().values();
        assert!(days.iter().all(|d| i64::from(*d) == NOW / NANOS_PER_DAY));
    }

    #[test]
    fn null_rate_is_roughly_honoured() {
        let names = ["a", "b", "c"];
        let schema = schema_of(names.map(|n| Field::new(n, DataType::Int32, true)).to_vec());
        let options = "fields.a.null_rate=0.1, fields.b.null_rate=1, number_of_rows=10000";
        let (all, _) = drain(&schema, options, 4096);
        let nulls = all.column(0).null_count();
        assert!(
            (800..=1200).contains(&nulls),
            "{nulls} nulls of 10000 at rate 0.1"
        );
        assert_eq!(
            (all.column(1).null_count(), all.column(2).null_count()),
            (10_000, 0)
        );
    }
}
