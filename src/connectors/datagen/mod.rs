//! The `datagen` connector: a deterministic, seeded generator of rows for integer, float, string,
//! boolean, timestamp and date columns.
//!
//! ```sql
//! CREATE SOURCE g (id BIGINT NOT NULL, v INT, name VARCHAR, ts TIMESTAMP NOT NULL)
//!   WITH (connector = 'datagen', rows_per_second = '1000', number_of_rows = '5000', seed = '42',
//!         'fields.id.kind' = 'sequence', 'fields.id.start' = '1', 'fields.id.end' = '1000000',
//!         'fields.v.min' = '0', 'fields.v.max' = '9', 'fields.name.length' = '8',
//!         'fields.ts.max_past' = '5s');
//! ```
//!
//! Column properties (`fields.<column>.<property>`):
//! - `kind`: `random` (default) or `sequence` (integer columns only: `start`, `start + 1`, … `end`, after
//!   which the stream ends, as in Flink). `start` defaults to 0, `end` to the type's maximum.
//! - `min`, `max`: integers are uniform in `[min, max]`, floats in `[min, max)`; default `0..1000`
//!   (clipped to the type). Given only one bound beyond the default range, the other widens to fit.
//! - `length`: strings are `length` random ASCII letters and digits (default 10, at most 4096).
//! - `max_past`: timestamps and dates are `now` minus a uniform offset in `[0, max_past]` (default 0);
//!   a duration such as `250ms`, `5s`, `2m`, `1h`, `1d` (a bare number means milliseconds).
//! - `null_rate`: probability in `[0, 1]` of a null (default 0: never null). Not on `NOT NULL` columns.
//!
//! Determinism: the cell of column `c` in row `r` is a pure function of `(seed, c, r)` — every cell
//! draws from its own `SmallRng` seeded by mixing the three — so output does not depend on how rows
//! are split into batches, and the generator resumes at any position in O(1). Timestamps and dates
//! follow the caller's clock; only their offsets are seeded. `SmallRng` may change between `rand`
//! releases, so a stream is reproducible within a build, not across `rand` upgrades.

mod generate;
mod options;

pub use generate::DatagenGenerator;
pub(crate) use options::parse_duration_nanos;
pub use options::DatagenOptions;

use datafusion::arrow::datatypes::DataType;

/// Longest generated string; with [`BATCH_ROWS_MAX`], a string column stays under 256 MiB a batch.
const STRING_LENGTH_MAX: usize = 4096;
/// Most rows in one batch, whatever the caller asks for.
const BATCH_ROWS_MAX: usize = 65_536;
const NANOS_PER_DAY: i64 = 86_400_000_000_000;

/// How the values of an integer column are drawn.
#[derive(Debug, Clone, PartialEq)]
enum IntGen {
    /// `start + row`, for rows `0..=end - start`.
    Sequence { start: i128, end: i128 },
    /// Uniform in `[min, max]` (`min <= max`, both within the column type).
    Random { min: i128, max: i128 },
}

/// How one column's values are drawn.
#[derive(Debug, Clone, PartialEq)]
enum Gen {
    /// Integers of any width and signedness (`i128` holds them all).
    Int(IntGen),
    /// Uniform in `[min, max)`, or exactly `min` when they are equal.
    Float { min: f64, max: f64 },
    /// `length` random ASCII letters and digits.
    Str { length: usize },
    /// `true` or `false`, 50/50.
    Bool,
    /// `now` minus a uniform offset in `[0, max_past_nanos]`.
    Time { max_past_nanos: i64 },
}

/// The generation spec of one column.
#[derive(Debug, Clone, PartialEq)]
struct FieldSpec {
    /// The column type the spec was checked against.
    data_type: DataType,
    /// How values are drawn.
    draw: Gen,
    /// Probability in `[0, 1]` that a cell is null.
    null_rate: f64,
}

/// Helpers shared by the tests of [`options`] and [`generate`].
#[cfg(test)]
mod test_util {
    use std::sync::Arc;

    use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

    use super::DatagenOptions;

    pub(super) const NOW: i64 = 1_700_000_000_123_456_789;

    pub(super) fn schema_of(fields: Vec<Field>) -> SchemaRef {
        Arc::new(Schema::new(fields))
    }

    pub(super) fn example_schema() -> SchemaRef {
        schema_of(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("v", DataType::Int32, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("price", DataType::Float64, true),
            Field::new("ok", DataType::Boolean, true),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                false,
            ),
        ])
    }

    /// Parses options written as `key=value, key=value`.
    pub(super) fn parse(schema: &SchemaRef, options: &str) -> Result<DatagenOptions, String> {
        let pairs = options.split(", ").filter_map(|pair| pair.split_once('='));
        let map = pairs
            .map(|(k, v)| (k.trim().to_string(), v.to_string()))
            .collect();
        DatagenOptions::parse(schema, &map)
    }
}
