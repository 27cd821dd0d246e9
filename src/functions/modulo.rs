//! `mod(a, b)`: the remainder of `a / b`, as in Postgres (`a % b`; the sign follows `a`).

use datafusion::arrow::compute::kernels::numeric::rem;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{plan_err, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

/// The `mod` scalar function over integers (as `BIGINT`) and other numbers (as `DOUBLE`).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Mod {
    signature: Signature,
}

impl Default for Mod {
    fn default() -> Self {
        Mod {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for Mod {
    fn name(&self) -> &str {
        "mod"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let [a, b] = arg_types else {
            return plan_err!("mod takes two arguments, not {}", arg_types.len());
        };
        let integer = |t: &DataType| t.is_integer() || t == &DataType::Null;
        if integer(a) && integer(b) {
            Ok(vec![DataType::Int64; 2])
        } else if (a.is_numeric() || a == &DataType::Null)
            && (b.is_numeric() || b == &DataType::Null)
        {
            Ok(vec![DataType::Float64; 2])
        } else {
            plan_err!("mod takes two numbers, not {a} and {b}")
        }
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(arg_types.first().cloned().unwrap_or(DataType::Int64))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [a, b] = args.args.as_slice() else {
            return plan_err!("mod takes two arguments");
        };
        let rows = args.number_rows;
        let (a, b) = (a.to_array(rows)?, b.to_array(rows)?);
        Ok(ColumnarValue::Array(rem(&a, &b)?))
    }
}
