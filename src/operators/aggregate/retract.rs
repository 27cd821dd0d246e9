//! Accumulators for aggregates over an updating input, where a row can be
//! taken back in any order. DataFusion's "sliding" accumulators are built
//! for window frames, where rows leave oldest first: a sliding `max` keeps
//! only the values that can still become the maximum, so taking back the
//! current maximum while a smaller, older value is still there loses that
//! value. Aggregates whose retraction does not depend on order (count, sum,
//! avg, variance, distinct counts) use DataFusion's as they are; `min` and
//! `max` keep every value with its count here; others are refused.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Accumulator;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;

use crate::error::{EddyError, Result};

/// Aggregates DataFusion retracts correctly in any order.
const ORDER_FREE: &[&str] = &[
    "count",
    "sum",
    "avg",
    "mean",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "var",
    "var_pop",
    "var_samp",
    "variance",
    "variance_pop",
];

/// An accumulator for `func` that takes rows back in any order, or why
/// there is none.
pub fn retracting(func: &AggregateFunctionExpr) -> Result<Box<dyn Accumulator>> {
    let name = func.fun().name().to_ascii_lowercase();
    match name.as_str() {
        "max" | "min" => Ok(Box::new(MinMax::new(
            name == "max",
            func.field().data_type().clone(),
        ))),
        n if ORDER_FREE.contains(&n) => {
            let acc = func.create_sliding_accumulator()?;
            if acc.supports_retract_batch() {
                Ok(acc)
            } else {
                Err(cannot(func))
            }
        }
        _ => Err(cannot(func)),
    }
}

fn cannot(func: &AggregateFunctionExpr) -> EddyError {
    EddyError::NotSupported {
        message: format!(
            "{} cannot take back rows, so it cannot aggregate an updating input",
            func.name()
        ),
        hint: Some(
            "Over an updating input (a view that emits on update, a join that retracts) use \
             count, sum, avg, min, max or variance; or make the input EMIT ON WINDOW CLOSE."
                .into(),
        ),
    }
}

/// A value ordered as SQL orders values of one type.
#[derive(Debug, Clone, PartialEq)]
struct Ordered(ScalarValue);

impl Eq for Ordered {}

impl PartialOrd for Ordered {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ordered {
    fn cmp(&self, other: &Self) -> Ordering {
        // Values of one column share a type, so they always compare.
        self.0.partial_cmp(&other.0).unwrap_or(Ordering::Equal)
    }
}

/// `min` / `max` over a multiset: every value with how many rows hold it.
#[derive(Debug)]
struct MinMax {
    max: bool,
    data_type: DataType,
    values: BTreeMap<Ordered, i64>,
    /// Bytes of the values held (kept as they change: `size` is asked often).
    bytes: usize,
}

impl MinMax {
    fn new(max: bool, data_type: DataType) -> Self {
        MinMax {
            max,
            data_type,
            values: BTreeMap::new(),
            bytes: 0,
        }
    }

    fn add(&mut self, array: &ArrayRef, weight: i64) -> datafusion::error::Result<()> {
        for i in (0..array.len()).filter(|&i| array.is_valid(i)) {
            self.add_value(ScalarValue::try_from_array(array, i)?, weight);
        }
        Ok(())
    }

    fn add_value(&mut self, v: ScalarValue, weight: i64) {
        let size = v.size() + std::mem::size_of::<i64>();
        let key = Ordered(v);
        let n = self.values.entry(key.clone()).or_insert_with(|| {
            self.bytes += size;
            0
        });
        *n += weight;
        if *n <= 0 {
            self.values.remove(&key);
            self.bytes = self.bytes.saturating_sub(size);
        }
    }
}

impl Accumulator for MinMax {
    fn update_batch(&mut self, values: &[ArrayRef]) -> datafusion::error::Result<()> {
        match values.first() {
            Some(a) => self.add(a, 1),
            None => Ok(()),
        }
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> datafusion::error::Result<()> {
        match values.first() {
            Some(a) => self.add(a, -1),
            None => Ok(()),
        }
    }

    fn supports_retract_batch(&self) -> bool {
        true
    }

    fn evaluate(&mut self) -> datafusion::error::Result<ScalarValue> {
        let best = match self.max {
            true => self.values.keys().next_back(),
            false => self.values.keys().next(),
        };
        match best {
            Some(v) => Ok(v.0.clone()),
            None => ScalarValue::try_from(&self.data_type),
        }
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.bytes
    }

    /// The values and their counts, as two lists.
    fn state(&mut self) -> datafusion::error::Result<Vec<ScalarValue>> {
        let values: Vec<ScalarValue> = self.values.keys().map(|k| k.0.clone()).collect();
        let counts: Vec<ScalarValue> = self
            .values
            .values()
            .map(|n| ScalarValue::Int64(Some(*n)))
            .collect();
        Ok(vec![
            ScalarValue::List(ScalarValue::new_list_nullable(&values, &self.data_type)),
            ScalarValue::List(ScalarValue::new_list_nullable(&counts, &DataType::Int64)),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> datafusion::error::Result<()> {
        let [values, counts] = states else {
            return Err(datafusion::error::DataFusionError::Internal(
                "min/max state is two lists".into(),
            ));
        };
        let (values, counts) = (values.as_list::<i32>(), counts.as_list::<i32>());
        for row in (0..values.len()).filter(|&r| values.is_valid(r)) {
            let (v, n) = (values.value(row), counts.value(row));
            let n = n.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
            for i in 0..v.len() {
                self.add_value(ScalarValue::try_from_array(&v, i)?, n.value(i));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::Int64Array;

    use super::*;

    fn ints(v: &[i64]) -> Vec<ArrayRef> {
        vec![Arc::new(Int64Array::from(v.to_vec()))]
    }

    /// The case a sliding max gets wrong: the maximum goes while an older, smaller value stays.
    #[test]
    fn max_survives_taking_back_the_maximum_first() {
        let mut m = MinMax::new(true, DataType::Int64);
        m.update_batch(&ints(&[3, 5, 5])).unwrap();
        m.retract_batch(&ints(&[5])).unwrap();
        assert_eq!(m.evaluate().unwrap(), ScalarValue::Int64(Some(5)));
        m.retract_batch(&ints(&[5])).unwrap();
        assert_eq!(m.evaluate().unwrap(), ScalarValue::Int64(Some(3)));
        // Its state round-trips (checkpoints), counts included.
        m.update_batch(&ints(&[7, 7])).unwrap();
        let state: Vec<ArrayRef> = m
            .state()
            .unwrap()
            .iter()
            .map(|s| s.to_array().unwrap())
            .collect();
        let mut back = MinMax::new(true, DataType::Int64);
        back.merge_batch(&state).unwrap();
        back.retract_batch(&ints(&[7])).unwrap();
        assert_eq!(back.evaluate().unwrap(), ScalarValue::Int64(Some(7)));
        back.retract_batch(&ints(&[7, 3])).unwrap();
        assert_eq!(back.evaluate().unwrap(), ScalarValue::Int64(None));
        // Nothing held: only the accumulator itself counts.
        assert_eq!(back.size(), std::mem::size_of_val(&back));
    }
}
