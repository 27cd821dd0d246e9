//! Variance, standard deviation, covariance, correlation and regression aggregates raise 22003
//! when their running sums overflow, as PostgreSQL's do ("value out of range: overflow").
//!
//! DataFusion's let a sum of squares become `Infinity`, and what came out then depended on how
//! the rows were split: `var_samp` over 1.5, -0.25 and 1e300 was `Infinity` in a view (one
//! accumulator) and `NaN` in a query (partial states merged) — found by
//! `tests/aggregate_sweep.rs`. Each is wrapped: after every batch and merge, an infinite value in
//! the accumulator's state while no input was infinite or NaN fails the aggregate. A flag in the
//! state carries "an input was not finite" through partial aggregation; states without it (written
//! before) still merge.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float32Type, Float64Type};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::AggregateOrderSensitivity;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Documentation, ReversedUDAF, Signature,
};
use datafusion::prelude::SessionContext;

use crate::error::EddyError;

/// The aggregates wrapped, by name (aliases follow their function).
const WRAPPED: &[&str] = &[
    "var_samp",
    "var_pop",
    "stddev",
    "stddev_pop",
    "covar_samp",
    "covar_pop",
    "corr",
    "regr_slope",
    "regr_intercept",
    "regr_r2",
    "regr_sxx",
    "regr_syy",
    "regr_sxy",
];

/// Replaces each aggregate of [`WRAPPED`] registered in `ctx` with its checked form.
pub fn register(ctx: &SessionContext) {
    for name in WRAPPED {
        if let Ok(inner) = ctx.udaf(name) {
            ctx.register_udaf(AggregateUDF::new_from_impl(OverflowChecked { inner }));
        }
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct OverflowChecked {
    inner: Arc<AggregateUDF>,
}

impl AggregateUDFImpl for OverflowChecked {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field(&self, arg_fields: &[FieldRef]) -> Result<FieldRef> {
        self.inner.return_field(arg_fields)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn is_nullable(&self) -> bool {
        self.inner.is_nullable()
    }

    fn default_value(&self, data_type: &DataType) -> Result<ScalarValue> {
        self.inner.default_value(data_type)
    }

    fn order_sensitivity(&self) -> AggregateOrderSensitivity {
        self.inner.inner().order_sensitivity()
    }

    fn reverse_expr(&self) -> ReversedUDAF {
        ReversedUDAF::Identical
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let mut fields = self.inner.inner().state_fields(args)?;
        fields.push(Arc::new(Field::new(
            "input_not_finite",
            DataType::Boolean,
            true,
        )));
        Ok(fields)
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Checked::boxed(self.name(), self.inner.inner().accumulator(args)?)
    }

    fn create_sliding_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Checked::boxed(
            self.name(),
            self.inner.inner().create_sliding_accumulator(args)?,
        )
    }
}

/// An accumulator and whether an input was infinite or NaN.
#[derive(Debug)]
struct Checked {
    name: String,
    inner: Box<dyn Accumulator>,
    /// Columns of the inner accumulator's state.
    inner_state: usize,
    input_not_finite: bool,
}

impl Checked {
    fn boxed(name: &str, mut inner: Box<dyn Accumulator>) -> Result<Box<dyn Accumulator>> {
        let inner_state = inner.state()?.len();
        Ok(Box::new(Checked {
            name: name.to_string(),
            inner,
            inner_state,
            input_not_finite: false,
        }))
    }

    /// Fails when the state holds an infinite value that no input explains.
    fn check(&mut self) -> Result<()> {
        if self.input_not_finite {
            return Ok(());
        }
        let overflowed = self.inner.state()?.iter().any(|v| match v {
            ScalarValue::Float64(Some(f)) => f.is_infinite(),
            ScalarValue::Float32(Some(f)) => f.is_infinite(),
            _ => false,
        });
        if overflowed {
            return Err(DataFusionError::External(Box::new(EddyError::Data {
                code: "22003",
                message: format!("value out of range: overflow (in {})", self.name),
            })));
        }
        Ok(())
    }
}

/// Whether `a` holds an infinite or NaN float.
fn not_finite(a: &ArrayRef) -> bool {
    match a.data_type() {
        DataType::Float64 => a
            .as_primitive::<Float64Type>()
            .iter()
            .any(|v| v.is_some_and(|f| !f.is_finite())),
        DataType::Float32 => a
            .as_primitive::<Float32Type>()
            .iter()
            .any(|v| v.is_some_and(|f| !f.is_finite())),
        _ => false,
    }
}

impl Accumulator for Checked {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.input_not_finite |= values.iter().any(not_finite);
        self.inner.update_batch(values)?;
        self.check()
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        self.inner.evaluate()
    }

    fn size(&self) -> usize {
        self.inner.size() + std::mem::size_of::<Self>()
            - std::mem::size_of::<Box<dyn Accumulator>>()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let mut state = self.inner.state()?;
        state.push(ScalarValue::Boolean(Some(self.input_not_finite)));
        Ok(state)
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let (inner, flag) = states.split_at(self.inner_state.min(states.len()));
        if let Some(flag) = flag.first().filter(|f| f.data_type() == &DataType::Boolean) {
            self.input_not_finite |= flag.as_boolean().true_count() > 0;
        }
        self.inner.merge_batch(inner)?;
        self.check()
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        // The flag stays: an input that was not finite may still be inside the sums.
        self.inner.retract_batch(values)
    }

    fn supports_retract_batch(&self) -> bool {
        self.inner.supports_retract_batch()
    }
}
