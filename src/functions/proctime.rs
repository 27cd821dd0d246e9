//! `PROCTIME()`: the processing time, as Flink names it — when the row is
//! computed (a view: when it passes the projection; a query: when the
//! batch is evaluated). Unlike `now()` it is not one value per statement.
//! As the time argument of a window TVF it makes processing-time windows
//! (see `crate::sql::window`).

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

/// The `proctime()` scalar function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ProcTime {
    signature: Signature,
}

impl Default for ProcTime {
    fn default() -> Self {
        ProcTime {
            signature: Signature::exact(vec![], Volatility::Volatile),
        }
    }
}

impl ScalarUDFImpl for ProcTime {
    fn name(&self) -> &str {
        "proctime"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Timestamp(TimeUnit::Nanosecond, None))
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        Ok(ColumnarValue::Scalar(ScalarValue::TimestampNanosecond(
            Some(now),
            None,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_the_clock_and_not_folded() {
        let f = ProcTime::default();
        assert_eq!(f.signature().volatility, Volatility::Volatile);
        let args = ScalarFunctionArgs {
            args: vec![],
            arg_fields: vec![],
            number_rows: 1,
            return_field: std::sync::Arc::new(datafusion::arrow::datatypes::Field::new(
                "t",
                f.return_type(&[]).unwrap(),
                false,
            )),
            config_options: Default::default(),
        };
        let ColumnarValue::Scalar(ScalarValue::TimestampNanosecond(Some(t), None)) =
            f.invoke_with_args(args).unwrap()
        else {
            panic!("not a timestamp")
        };
        // After 2026-01-01.
        assert!(t > 1_767_225_600_000_000_000);
    }
}
