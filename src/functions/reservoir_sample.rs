//! `reservoir_sample(expr, k)`: a uniform random sample of `k` non-null
//! values of `expr` (all of them while there are fewer), as a list.
//!
//! Algorithm R (Vitter 1985): the `n`-th value replaces a random slot with
//! probability `k / n`, so every value seen is in the sample with the same
//! probability. Partial samples (aggregate partitions, checkpoints) merge by
//! drawing without replacement from the union of the parts they sample. The
//! random sequence is seeded, so a replay of the same stream gives the same
//! sample.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, UInt64Type};
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature, Volatility};
use datafusion::physical_expr::expressions::Literal;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Largest `k`.
const K_MAX: i64 = 100_000;
/// Seed of every sample's random sequence.
const SEED: u64 = 0x5eed_5a3b;

/// The `reservoir_sample` aggregate.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ReservoirSample {
    signature: Signature,
}

impl Default for ReservoirSample {
    fn default() -> Self {
        ReservoirSample {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

fn list_of(t: &DataType) -> DataType {
    DataType::List(Arc::new(Field::new_list_field(t.clone(), true)))
}

impl AggregateUDFImpl for ReservoirSample {
    fn name(&self) -> &str {
        "reservoir_sample"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        Ok(list_of(&args[0]))
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let k = args.exprs[1]
            .downcast_ref::<Literal>()
            .and_then(|l| match *l.value() {
                ScalarValue::Int32(Some(v)) => Some(v as i64),
                ScalarValue::Int64(Some(v)) => Some(v),
                ScalarValue::UInt32(Some(v)) => Some(v as i64),
                ScalarValue::UInt64(Some(v)) => i64::try_from(v).ok(),
                _ => None,
            });
        let Some(k) = k.filter(|k| (1..=K_MAX).contains(k)) else {
            return plan_err!(
                "reservoir_sample: k must be an integer constant from 1 to {K_MAX}, got {}",
                args.exprs[1]
            );
        };
        Ok(Box::new(SampleAccumulator::new(
            args.expr_fields[0].data_type().clone(),
            k as usize,
            SEED,
        )))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let t = args.input_fields[0].data_type();
        Ok(vec![
            Arc::new(Field::new(
                format!("{}[sample]", args.name),
                list_of(t),
                true,
            )),
            Arc::new(Field::new(
                format!("{}[seen]", args.name),
                DataType::UInt64,
                true,
            )),
        ])
    }
}

#[derive(Debug)]
struct SampleAccumulator {
    data_type: DataType,
    k: usize,
    sample: Vec<ScalarValue>,
    /// Non-null values seen (or stood for, after a merge).
    seen: u64,
    rng: StdRng,
}

impl SampleAccumulator {
    fn new(data_type: DataType, k: usize, seed: u64) -> Self {
        SampleAccumulator {
            data_type,
            k,
            sample: Vec::with_capacity(k.min(1024)),
            seen: 0,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// Keep `k` of `sides` (a uniform sample of a part of the stream, and
    /// how many values that part had): draw `k` values without replacement
    /// from the union of the parts, a part chosen with probability
    /// proportional to its values not yet drawn, then a random value of its
    /// sample (itself a uniform sample of the part).
    fn merge_samples(&mut self, mut sides: Vec<(Vec<ScalarValue>, u64)>) {
        let mut out = Vec::with_capacity(self.k.min(1024));
        while out.len() < self.k {
            let total: u64 = sides
                .iter()
                .filter(|(v, _)| !v.is_empty())
                .map(|(_, n)| *n)
                .sum();
            if total == 0 {
                break;
            }
            let mut r = self.rng.random_range(0..total);
            let Some(side) = sides
                .iter_mut()
                .filter(|(v, _)| !v.is_empty())
                .find(|(_, n)| {
                    let hit = r < *n;
                    r = r.saturating_sub(*n);
                    hit
                })
            else {
                break;
            };
            let i = self.rng.random_range(0..side.0.len());
            out.push(side.0.swap_remove(i));
            side.1 -= 1;
        }
        self.sample = out;
    }
}

impl Accumulator for SampleAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let arr = &values[0];
        for i in 0..arr.len() {
            if arr.is_null(i) {
                continue;
            }
            self.seen += 1;
            if self.sample.len() < self.k {
                self.sample.push(ScalarValue::try_from_array(arr, i)?);
            } else {
                let j = self.rng.random_range(0..self.seen);
                if (j as usize) < self.k {
                    self.sample[j as usize] = ScalarValue::try_from_array(arr, i)?;
                }
            }
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::List(ScalarValue::new_list_nullable(
            &self.sample,
            &self.data_type,
        )))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.sample.iter().map(ScalarValue::size).sum::<usize>()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.evaluate()?, ScalarValue::UInt64(Some(self.seen))])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let [samples, seen] = states else {
            return exec_err!(
                "reservoir_sample: expected 2 state columns, got {}",
                states.len()
            );
        };
        let samples = samples.as_list::<i32>();
        let seen = seen.as_primitive::<UInt64Type>();
        let mut sides = vec![(std::mem::take(&mut self.sample), self.seen)];
        for row in 0..samples.len() {
            if samples.is_null(row) || seen.is_null(row) {
                continue;
            }
            let values = samples.value(row);
            let values = (0..values.len())
                .map(|i| ScalarValue::try_from_array(&values, i))
                .collect::<Result<Vec<_>>>()?;
            self.seen += seen.value(row);
            sides.push((values, seen.value(row)));
        }
        self.merge_samples(sides);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::Int64Array;

    use super::*;

    fn sample_of(acc: &mut SampleAccumulator) -> Vec<i64> {
        acc.sample
            .iter()
            .map(|v| match v {
                ScalarValue::Int64(Some(v)) => *v,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    /// Every value of 0..100 is picked about equally often over many
    /// independent samples of 10 (and every sample has 10 distinct values).
    #[test]
    fn samples_are_uniform() {
        let input: ArrayRef = Arc::new(Int64Array::from_iter_values(0..100));
        let mut hits = [0u32; 100];
        let trials = 2000;
        for seed in 0..trials {
            let mut acc = SampleAccumulator::new(DataType::Int64, 10, seed);
            // In several batches, as a stream arrives.
            for chunk in 0..4 {
                acc.update_batch(&[input.slice(chunk * 25, 25)]).unwrap();
            }
            let mut s = sample_of(&mut acc);
            s.sort();
            s.dedup();
            assert_eq!(s.len(), 10);
            for v in s {
                hits[v as usize] += 1;
            }
        }
        // Expected 200 per value; a binomial(2000, 0.1) is within ±60 (4.5 σ).
        for (v, h) in hits.iter().enumerate() {
            assert!((140..=260).contains(h), "value {v} picked {h} times");
        }
    }

    /// Merged halves sample the whole stream uniformly too.
    #[test]
    fn merged_samples_are_uniform() {
        let mut hits = [0u32; 2];
        for seed in 0..2000 {
            // 10 values 0 (a tenth of the stream) and 90 values 1.
            let mut a = SampleAccumulator::new(DataType::Int64, 5, seed);
            a.update_batch(&[Arc::new(Int64Array::from(vec![0i64; 10]))])
                .unwrap();
            let mut b = SampleAccumulator::new(DataType::Int64, 5, seed + 7919);
            b.update_batch(&[Arc::new(Int64Array::from(vec![1i64; 90]))])
                .unwrap();
            let state: Vec<ArrayRef> = b
                .state()
                .unwrap()
                .iter()
                .map(|s| s.to_array().unwrap())
                .collect();
            a.merge_batch(&state).unwrap();
            assert_eq!(a.seen, 100);
            for v in sample_of(&mut a) {
                hits[v as usize] += 1;
            }
        }
        // 10 000 picks, a tenth of them zeros: about 1000.
        assert!((850..=1150).contains(&hits[0]), "{hits:?}");
    }
}
