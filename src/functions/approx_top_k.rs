//! `approx_top_k(expr, k [, capacity])`: the `k` most frequent values of
//! `expr` with a fixed memory budget, as a list of
//! `{item, count, error}` (highest count first).
//!
//! Backed by a [`SpaceSaving`] summary of `capacity` counters (default
//! `max(10·k, 100)`): `count` never under-counts, and the true count is at
//! least `count - error`. Any value that makes up more than `1/capacity` of
//! the rows is in the summary. Values are compared as text.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, ListArray, StringArray, StructArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields, Int64Type};
use datafusion::common::utils::SingleRowListArrayBuilder;
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, Signature, TypeSignature, Volatility,
};
use datafusion::physical_expr::expressions::Literal;
use datafusion::physical_expr::PhysicalExpr;

use super::space_saving::{Counter, SpaceSaving};

/// Largest `k`.
const K_MAX: i64 = 10_000;
/// Largest `capacity`.
const CAPACITY_MAX: i64 = 1_000_000;

/// The `approx_top_k` aggregate.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ApproxTopK {
    signature: Signature,
}

impl Default for ApproxTopK {
    fn default() -> Self {
        ApproxTopK {
            signature: Signature::one_of(
                vec![TypeSignature::Any(2), TypeSignature::Any(3)],
                Volatility::Immutable,
            ),
        }
    }
}

/// `{item, count, error}`.
fn entry_fields() -> Fields {
    Fields::from(vec![
        Field::new("item", DataType::Utf8, true),
        Field::new("count", DataType::Int64, false),
        Field::new("error", DataType::Int64, false),
    ])
}

fn list_of(t: DataType) -> DataType {
    DataType::List(Arc::new(Field::new_list_field(t, true)))
}

/// A positive integer literal argument.
fn int_literal(e: &Arc<dyn PhysicalExpr>, what: &str, max: i64) -> Result<usize> {
    let v = e.downcast_ref::<Literal>().and_then(|l| match *l.value() {
        ScalarValue::Int8(Some(v)) => Some(v as i64),
        ScalarValue::Int16(Some(v)) => Some(v as i64),
        ScalarValue::Int32(Some(v)) => Some(v as i64),
        ScalarValue::Int64(Some(v)) => Some(v),
        ScalarValue::UInt8(Some(v)) => Some(v as i64),
        ScalarValue::UInt16(Some(v)) => Some(v as i64),
        ScalarValue::UInt32(Some(v)) => Some(v as i64),
        ScalarValue::UInt64(Some(v)) => i64::try_from(v).ok(),
        _ => None,
    });
    match v {
        Some(v) if (1..=max).contains(&v) => Ok(v as usize),
        _ => plan_err!("approx_top_k: {what} must be an integer constant from 1 to {max}, got {e}"),
    }
}

impl AggregateUDFImpl for ApproxTopK {
    fn name(&self) -> &str {
        "approx_top_k"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(list_of(DataType::Struct(entry_fields())))
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let k = int_literal(&args.exprs[1], "k", K_MAX)?;
        let capacity = match args.exprs.get(2) {
            Some(e) => int_literal(e, "capacity", CAPACITY_MAX)?,
            None => (10 * k).max(100),
        };
        if capacity < k {
            return plan_err!("approx_top_k: capacity ({capacity}) must be at least k ({k})");
        }
        Ok(Box::new(TopKAccumulator {
            k,
            summary: SpaceSaving::new(capacity),
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let f = |name: &str, t: DataType| {
            Arc::new(Field::new(format!("{}[{name}]", args.name), t, true))
        };
        Ok(vec![
            f("items", list_of(DataType::Utf8)),
            f("counts", list_of(DataType::Int64)),
            f("errors", list_of(DataType::Int64)),
            f("capacity", DataType::Int64),
        ])
    }
}

#[derive(Debug)]
struct TopKAccumulator {
    k: usize,
    summary: SpaceSaving,
}

impl Accumulator for TopKAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let text = cast(&values[0], &DataType::Utf8)?;
        let text = text.as_string::<i32>();
        for v in text.iter().flatten() {
            self.summary.add(v);
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let top: Vec<Counter> = self.summary.counters().into_iter().take(self.k).collect();
        let entries = StructArray::try_new(
            entry_fields(),
            vec![
                Arc::new(StringArray::from_iter_values(
                    top.iter().map(|c| c.item.as_str()),
                )),
                Arc::new(Int64Array::from_iter_values(
                    top.iter().map(|c| c.count as i64),
                )),
                Arc::new(Int64Array::from_iter_values(
                    top.iter().map(|c| c.error as i64),
                )),
            ],
            None,
        )?;
        Ok(SingleRowListArrayBuilder::new(Arc::new(entries)).build_list_scalar())
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.summary.size()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let all = self.summary.counters();
        let list = |a: ArrayRef| SingleRowListArrayBuilder::new(a).build_list_scalar();
        Ok(vec![
            list(Arc::new(StringArray::from_iter_values(
                all.iter().map(|c| c.item.as_str()),
            ))),
            list(Arc::new(Int64Array::from_iter_values(
                all.iter().map(|c| c.count as i64),
            ))),
            list(Arc::new(Int64Array::from_iter_values(
                all.iter().map(|c| c.error as i64),
            ))),
            ScalarValue::Int64(Some(self.summary.capacity() as i64)),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let [items, counts, errors, capacity] = states else {
            return exec_err!(
                "approx_top_k: expected 4 state columns, got {}",
                states.len()
            );
        };
        let (items, counts, errors): (&ListArray, &ListArray, &ListArray) =
            (items.as_list(), counts.as_list(), errors.as_list());
        let capacity = capacity.as_primitive::<Int64Type>();
        for row in 0..items.len() {
            if items.is_null(row) {
                continue;
            }
            let (i, c, e) = (items.value(row), counts.value(row), errors.value(row));
            let (i, c, e) = (
                i.as_string::<i32>(),
                c.as_primitive::<Int64Type>(),
                e.as_primitive::<Int64Type>(),
            );
            let counters = (0..i.len())
                .map(|j| Counter {
                    item: i.value(j).to_string(),
                    count: c.value(j).max(0) as u64,
                    error: e.value(j).max(0) as u64,
                })
                .collect();
            let cap = usize::try_from(capacity.value(row)).unwrap_or(1);
            self.summary
                .merge(&SpaceSaving::from_counters(cap, counters));
        }
        Ok(())
    }
}
