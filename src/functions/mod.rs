//! Functions eddy adds to DataFusion's.
//!
//! - `repeat`, `lpad`, `array_repeat`, `range`, …: DataFusion's, refused
//!   (54000) where one call would build too much ([`bounded`]).
//! - `mod(a, b)`: Postgres's remainder function ([`modulo`]).
//! - `proctime()`: the processing time, as Flink names it ([`proctime`]).
//! - `approx_top_k(expr, k [, capacity])`: heavy hitters in fixed memory,
//!   with per-item error bounds ([`approx_top_k`]).
//! - `reservoir_sample(expr, k)`: a uniform sample ([`reservoir_sample`]).
//! - `to_char(timestamp | date | number, template)` with PostgreSQL's patterns, in place of
//!   DataFusion's chrono-style one ([`to_char`], [`to_char_number`]).
//! - `to_timestamp(text, template)`, `to_date(text, template)` with PostgreSQL's patterns
//!   ([`to_timestamp`]).
//! - `to_number(text, template)` with PostgreSQL's numeric patterns ([`to_number`]).
//! - integer `+`, `-`, `*` raise 22003 on overflow instead of wrapping ([`checked`]).
//! - variance, covariance, correlation and regression aggregates raise 22003 when their sums
//!   overflow ([`float_overflow`]).
//! - float-to-integer casts round, a bare number cast to interval is seconds, `date ± interval`
//!   is a timestamp, `SIMILAR TO` reads SQL patterns ([`pg_operators`]).
//! - `regexp_*` with an empty flags string read no flags ([`regexp_flags`]).
//! - `version()` and `current_setting(name)` answer as PostgreSQL 16.6 ([`settings`]).
//! - casts to text and the arguments of `concat` and `||` write values as PostgreSQL does
//!   ([`text_cast`]).

pub mod approx_top_k;
pub mod bounded;
pub mod catalog;
pub mod checked;
pub mod float_overflow;
pub mod format;
pub mod json_build;
pub mod modulo;
pub mod pg_operators;
pub mod proctime;
pub mod regexp_flags;
pub mod reservoir_sample;
pub mod settings;
pub mod space_saving;
pub(crate) mod template;
pub mod text_cast;
pub mod timestamp_text;
pub mod to_char;
pub mod to_char_number;
pub mod to_number;
pub mod to_timestamp;

use datafusion::arrow::array::ArrayRef;
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{AggregateUDF, ColumnarValue, ScalarUDF};
use datafusion::prelude::SessionContext;
use std::sync::Arc;

use datafusion::execution::FunctionRegistry;

/// Inside `impl ScalarUDFImpl for W`, where `W` wraps a DataFusion function in `self.inner`
/// (an `Arc<ScalarUDF>`) and changes only `invoke_with_args`: every other method, forwarded.
macro_rules! forward_to_inner {
    () => {
        fn name(&self) -> &str {
            self.inner.name()
        }

        fn aliases(&self) -> &[String] {
            self.inner.aliases()
        }

        fn signature(&self) -> &datafusion::logical_expr::Signature {
            self.inner.signature()
        }

        fn return_type(
            &self,
            arg_types: &[datafusion::arrow::datatypes::DataType],
        ) -> datafusion::common::Result<datafusion::arrow::datatypes::DataType> {
            self.inner.return_type(arg_types)
        }

        fn return_field_from_args(
            &self,
            args: datafusion::logical_expr::ReturnFieldArgs,
        ) -> datafusion::common::Result<datafusion::arrow::datatypes::FieldRef> {
            self.inner.return_field_from_args(args)
        }

        fn coerce_types(
            &self,
            arg_types: &[datafusion::arrow::datatypes::DataType],
        ) -> datafusion::common::Result<Vec<datafusion::arrow::datatypes::DataType>> {
            self.inner.coerce_types(arg_types)
        }

        fn simplify(
            &self,
            args: Vec<datafusion::logical_expr::Expr>,
            info: &datafusion::logical_expr::simplify::SimplifyContext,
        ) -> datafusion::common::Result<datafusion::logical_expr::simplify::ExprSimplifyResult> {
            self.inner.simplify(args, info)
        }

        fn short_circuits(&self) -> bool {
            self.inner.short_circuits()
        }

        fn output_ordering(
            &self,
            inputs: &[datafusion::logical_expr::sort_properties::ExprProperties],
        ) -> datafusion::common::Result<datafusion::logical_expr::sort_properties::SortProperties> {
            self.inner.output_ordering(inputs)
        }

        fn preserves_lex_ordering(
            &self,
            inputs: &[datafusion::logical_expr::sort_properties::ExprProperties],
        ) -> datafusion::common::Result<bool> {
            self.inner.preserves_lex_ordering(inputs)
        }

        fn documentation(&self) -> Option<&datafusion::logical_expr::Documentation> {
            self.inner.documentation()
        }
    };
}
pub(crate) use forward_to_inner;

/// `f` over `v` as an array; a scalar in, a scalar out.
pub(crate) fn map_array(
    v: &ColumnarValue,
    rows: usize,
    f: impl Fn(&ArrayRef) -> Result<ArrayRef>,
) -> Result<ColumnarValue> {
    match v {
        ColumnarValue::Scalar(s) => {
            let out = f(&s.to_array()?)?;
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?))
        }
        ColumnarValue::Array(_) => Ok(ColumnarValue::Array(f(&v.to_array(rows)?)?)),
    }
}

/// Register eddy's functions with `ctx`.
pub fn register(ctx: &SessionContext) {
    bounded::register(ctx);
    ctx.register_udf(ScalarUDF::from(modulo::Mod::default()));
    ctx.register_udf(ScalarUDF::from(proctime::ProcTime::default()));
    ctx.register_udf(ScalarUDF::from(settings::Version::default()));
    for f in catalog::udfs()
        .into_iter()
        .chain(json_build::udfs())
        .chain([format::udf()])
    {
        ctx.register_udf(f);
    }
    ctx.register_udf(ScalarUDF::from(settings::CurrentSetting::default()));
    ctx.register_udf(ScalarUDF::from(to_char::ToChar::default()));
    to_timestamp::register(ctx);
    ctx.register_udf(ScalarUDF::from(to_number::ToNumber::default()));
    float_overflow::register(ctx);
    regexp_flags::register(ctx);
    // Cannot fail: SessionContext keeps the rewrite in a list.
    let _ = ctx
        .state_ref()
        .write()
        .register_function_rewrite(Arc::new(text_cast::PgTextRewrite::default()));
    let _ = ctx
        .state_ref()
        .write()
        .register_function_rewrite(Arc::new(pg_operators::PgOperators::default()));
    ctx.add_analyzer_rule(checked::analyzer_rule());
    ctx.add_analyzer_rule(timestamp_text::analyzer_rule());
    // Again after type coercion, for the casts to text it adds (a function's text argument).
    ctx.add_analyzer_rule(Arc::new(
        datafusion::optimizer::analyzer::function_rewrite::ApplyFunctionRewrites::new(vec![
            Arc::new(text_cast::PgTextRewrite::default()),
        ]),
    ));
    ctx.add_optimizer_rule(Arc::new(text_cast::PgTextOptimizerRule::default()));
    ctx.register_udaf(AggregateUDF::from(approx_top_k::ApproxTopK::default()));
    ctx.register_udaf(AggregateUDF::from(
        reservoir_sample::ReservoirSample::default(),
    ));
}
