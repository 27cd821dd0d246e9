//! Functions eddy adds to DataFusion's.
//!
//! - `repeat`, `lpad`, `array_repeat`, `range`, …: DataFusion's, refused
//!   (54000) where one call would build too much ([`bounded`]).
//! - `mod(a, b)`: Postgres's remainder function ([`modulo`]).
//! - `approx_top_k(expr, k [, capacity])`: heavy hitters in fixed memory,
//!   with per-item error bounds ([`approx_top_k`]).
//! - `reservoir_sample(expr, k)`: a uniform sample ([`reservoir_sample`]).
//! - `to_char(timestamp, template)` with PostgreSQL's patterns, in place of
//!   DataFusion's chrono-style one ([`to_char`]).

pub mod approx_top_k;
pub mod bounded;
pub mod modulo;
pub mod reservoir_sample;
pub mod space_saving;
pub mod to_char;

use datafusion::logical_expr::{AggregateUDF, ScalarUDF};
use datafusion::prelude::SessionContext;

/// Register eddy's functions with `ctx`.
pub fn register(ctx: &SessionContext) {
    bounded::register(ctx);
    ctx.register_udf(ScalarUDF::from(modulo::Mod::default()));
    ctx.register_udf(ScalarUDF::from(to_char::ToChar::default()));
    ctx.register_udaf(AggregateUDF::from(approx_top_k::ApproxTopK::default()));
    ctx.register_udaf(AggregateUDF::from(
        reservoir_sample::ReservoirSample::default(),
    ));
}
