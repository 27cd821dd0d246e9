//! What a view's output stream is like: the description the planner hands
//! to the view's store, its subscribers, sinks and `SHOW`.

use datafusion::arrow::datatypes::SchemaRef;

/// How a view's output watermark relates to its input's.
#[derive(Debug, Clone)]
pub struct OutputTime {
    /// The output column the watermark refers to, if any.
    pub column: Option<String>,
    /// Output watermark = input watermark − `delay_ns` (windowed aggregates
    /// delay by the window size so every later window start stays above it).
    pub delay_ns: i64,
    /// False when the view has no event-time progress (non-windowed aggregates).
    pub forwards: bool,
}

/// A view's output stream.
#[derive(Debug, Clone)]
pub struct ViewOutput {
    /// The view's name.
    pub name: String,
    /// Its rows' schema.
    pub schema: SchemaRef,
    /// Its event time.
    pub time: OutputTime,
    /// True if its rows can be retracted (an updating stream).
    pub updating: bool,
    /// The columns that identify a row of an updating aggregate (its group
    /// keys), for upsert sinks.
    pub key: Option<Vec<String>>,
}
