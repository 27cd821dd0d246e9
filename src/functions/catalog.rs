//! Catalog functions that clients call while looking around, beside those
//! `datafusion-pg-catalog` registers: psql's `\df` (`pg_function_is_visible`), psycopg's and
//! SQLAlchemy's type lookups (`to_regtype`), SQLAlchemy's reflection
//! (`pg_get_serial_sequence`), psql's `\dT` and `\d+` (`obj_description`, `col_description`).
//! Object ids are `Int32`, as in the crate's `pg_catalog` tables.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int32Array, ListBuilder, StringArray, StringBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{
    create_udf, ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// PostgreSQL's built-in types clients look up by name: every name `to_regtype` accepts for
/// one (its `typname`, its SQL spelling), and its oid. Array types are the element's name
/// with `[]`, or `_` before the `typname`.
const TYPES: &[(&[&str], i32, i32)] = &[
    // (names, oid, array oid)
    (&["bool", "boolean"], 16, 1000),
    (&["bytea"], 17, 1001),
    (&["char", "\"char\""], 18, 1002),
    (&["name"], 19, 1003),
    (&["int8", "bigint"], 20, 1016),
    (&["int2", "smallint"], 21, 1005),
    (&["int4", "integer", "int"], 23, 1007),
    (&["text"], 25, 1009),
    (&["oid"], 26, 1028),
    (&["json"], 114, 199),
    (&["float4", "real"], 700, 1021),
    (&["float8", "double precision"], 701, 1022),
    (&["bpchar", "character"], 1042, 1014),
    (&["varchar", "character varying"], 1043, 1015),
    (&["date"], 1082, 1182),
    (&["time", "time without time zone"], 1083, 1183),
    (&["timestamp", "timestamp without time zone"], 1114, 1115),
    (&["timestamptz", "timestamp with time zone"], 1184, 1185),
    (&["interval"], 1186, 1187),
    (&["numeric", "decimal"], 1700, 1231),
    (&["uuid"], 2950, 2951),
    (&["jsonb"], 3802, 3807),
];

/// The oid of the type `name` names (`bigint`, `pg_catalog.int8`, `integer[]`, `_int4`),
/// or `None` when eddy has no such type.
pub fn type_oid(name: &str) -> Option<i32> {
    let lower = name.trim().to_ascii_lowercase();
    let bare = lower.strip_prefix("pg_catalog.").unwrap_or(&lower);
    let (element, array) = match bare.strip_suffix("[]") {
        Some(e) => (e.trim_end(), true),
        None => match bare.strip_prefix('_') {
            Some(e) => (e, true),
            None => (bare, false),
        },
    };
    TYPES
        .iter()
        .find(|(names, _, _)| names.contains(&element))
        .map(|&(_, oid, array_oid)| if array { array_oid } else { oid })
}

fn rows(args: &[ColumnarValue]) -> Vec<ArrayRef> {
    let n = args
        .iter()
        .find_map(|a| match a {
            ColumnarValue::Array(a) => Some(a.len()),
            ColumnarValue::Scalar(_) => None,
        })
        .unwrap_or(1);
    args.iter()
        .map(|a| a.clone().into_array(n))
        .collect::<Result<_>>()
        .unwrap_or_default()
}

/// `to_regtype(text)`: the type's oid, NULL when there is no such type.
fn to_regtype() -> ScalarUDF {
    let f = |args: &[ColumnarValue]| -> Result<ColumnarValue> {
        let cols = rows(args);
        let names = cols[0].as_string::<i32>();
        let out: Int32Array = (0..names.len())
            .map(|i| {
                (!names.is_null(i))
                    .then(|| type_oid(names.value(i)))
                    .flatten()
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    };
    create_udf(
        "to_regtype",
        vec![DataType::Utf8],
        DataType::Int32,
        Volatility::Stable,
        Arc::new(f),
    )
}

/// `pg_X_is_visible(oid)`: true for every object (eddy has one search path over all its
/// schemas), NULL for NULL; the oid may be any integer.
#[derive(Debug, PartialEq, Eq, Hash)]
struct IsVisible {
    name: &'static str,
    signature: Signature,
}

impl ScalarUDFImpl for IsVisible {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let oids = rows(&args.args);
        let oids = &oids[0];
        let out: BooleanArray = (0..oids.len())
            .map(|i| (!oids.is_null(i)).then_some(true))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

fn is_visible(name: &'static str) -> ScalarUDF {
    ScalarUDF::from(IsVisible {
        name,
        signature: Signature::any(1, Volatility::Stable),
    })
}

/// `pg_get_serial_sequence(table, column)`: NULL — eddy has no sequences, so no column is
/// filled from one.
fn pg_get_serial_sequence() -> ScalarUDF {
    let f = |args: &[ColumnarValue]| -> Result<ColumnarValue> {
        let cols = rows(args);
        let n = cols.first().map_or(1, |c| c.len());
        let out = StringArray::new_null(n);
        Ok(ColumnarValue::Array(Arc::new(out)))
    };
    create_udf(
        "pg_get_serial_sequence",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(f),
    )
}

/// A catalog function whose answer is NULL for every object eddy has: comments
/// (`obj_description`, `col_description`; eddy has no `COMMENT ON`), and the texts psql's `\df`
/// shows for functions that `pg_proc` does not list.
#[derive(Debug, PartialEq, Eq, Hash)]
struct AlwaysNull {
    name: &'static str,
    signature: Signature,
}

impl ScalarUDFImpl for AlwaysNull {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, _: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None)))
    }
}

fn always_null(name: &'static str) -> ScalarUDF {
    ScalarUDF::from(AlwaysNull {
        name,
        signature: Signature::variadic_any(Volatility::Stable),
    })
}

/// `pg_size_pretty(bigint)` as PostgreSQL writes it: `8192 bytes`, `20 kB`, `13 MB` (below
/// 10240 of a unit the next is not used; halves round away from zero).
pub fn size_pretty(size: i64) -> String {
    const UNITS: [(&str, i64, bool, u32); 6] = [
        ("bytes", 10 * 1024, false, 0),
        ("kB", 20 * 1024 - 1, true, 10),
        ("MB", 20 * 1024 - 1, true, 20),
        ("GB", 20 * 1024 - 1, true, 30),
        ("TB", 20 * 1024 - 1, true, 40),
        ("PB", 20 * 1024 - 1, true, 50),
    ];
    let half_rounded = |x: i64| (x + if x < 0 { -1 } else { 1 }) / 2;
    let mut size = size;
    for (i, &(name, limit, round, bits)) in UNITS.iter().enumerate() {
        let last = i + 1 == UNITS.len();
        if last || size.unsigned_abs() < limit as u64 {
            if round {
                size = half_rounded(size);
            }
            return format!("{size} {name}");
        }
        let (_, _, next_round, next_bits) = UNITS[i + 1];
        let shift = next_bits - bits - u32::from(next_round) + u32::from(round);
        size /= 1i64 << shift;
    }
    format!("{size} PB")
}

fn pg_size_pretty() -> ScalarUDF {
    let f = |args: &[ColumnarValue]| -> Result<ColumnarValue> {
        let cols = rows(args);
        let sizes = cols[0].as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        let out: StringArray = (0..sizes.len())
            .map(|i| (!sizes.is_null(i)).then(|| size_pretty(sizes.value(i))))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    };
    create_udf(
        "pg_size_pretty",
        vec![DataType::Int64],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(f),
    )
}

/// `pg_get_expr(expr, relation [, pretty])`: NULL for a NULL expression, as in PostgreSQL (a
/// column without a default reads NULL, which pgcli and psql test for); otherwise `''`, as
/// `datafusion-pg-catalog`'s did for every call: eddy's own relations have no stored
/// expressions, and the catalog's static rows are not decompiled.
#[derive(Debug, PartialEq, Eq, Hash)]
struct PgGetExpr {
    signature: Signature,
}

impl ScalarUDFImpl for PgGetExpr {
    fn name(&self) -> &str {
        "pg_get_expr"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let cols = rows(&args.args);
        let Some(exprs) = cols.first() else {
            return Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None)));
        };
        let out: StringArray = (0..exprs.len())
            .map(|i| (exprs.data_type() != &DataType::Null && !exprs.is_null(i)).then_some(""))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// `current_schemas(include_implicit)`: the search path, `{public}`, with the implicit
/// `pg_catalog` first when asked for (as PostgreSQL answers for the default `"$user", public`).
fn current_schemas() -> ScalarUDF {
    let f = |args: &[ColumnarValue]| -> Result<ColumnarValue> {
        let cols = rows(args);
        let implicit = cols[0].as_boolean();
        let mut out = ListBuilder::new(StringBuilder::new());
        for i in 0..implicit.len() {
            if implicit.is_null(i) {
                out.append_null();
                continue;
            }
            if implicit.value(i) {
                out.values().append_value("pg_catalog");
            }
            out.values().append_value("public");
            out.append(true);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    };
    create_udf(
        "current_schemas",
        vec![DataType::Boolean],
        DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
        Volatility::Stable,
        Arc::new(f),
    )
}

/// The functions of this module.
pub fn udfs() -> Vec<ScalarUDF> {
    vec![
        to_regtype(),
        current_schemas(),
        ScalarUDF::from(PgGetExpr {
            signature: Signature::variadic_any(Volatility::Stable),
        }),
        is_visible("pg_function_is_visible"),
        is_visible("pg_type_is_visible"),
        is_visible("pg_collation_is_visible"),
        pg_get_serial_sequence(),
        pg_size_pretty(),
        always_null("obj_description"),
        always_null("col_description"),
        always_null("shobj_description"),
        always_null("pg_get_function_result"),
        always_null("pg_get_indexdef"),
        always_null("pg_get_viewdef"),
        always_null("pg_get_function_arguments"),
        always_null("pg_get_function_identity_arguments"),
    ]
}

#[cfg(test)]
mod tests {
    use super::{size_pretty, type_oid};

    #[test]
    fn sizes_are_pretty_as_postgres_writes_them() {
        // Values from PostgreSQL 15: SELECT pg_size_pretty(n::bigint).
        assert_eq!(size_pretty(0), "0 bytes");
        assert_eq!(size_pretty(8192), "8192 bytes");
        assert_eq!(size_pretty(10239), "10239 bytes");
        assert_eq!(size_pretty(10240), "10 kB");
        assert_eq!(size_pretty(1_000_000), "977 kB");
        assert_eq!(size_pretty(123_456_789), "118 MB");
        assert_eq!(size_pretty(-10240), "-10 kB");
        assert_eq!(size_pretty(1 << 50), "1024 TB");
    }

    #[test]
    fn type_names_resolve_as_postgres_resolves_them() {
        assert_eq!(type_oid("bigint"), Some(20));
        assert_eq!(type_oid("pg_catalog.int8"), Some(20));
        assert_eq!(type_oid("Timestamp Without Time Zone"), Some(1114));
        assert_eq!(type_oid("integer[]"), Some(1007));
        assert_eq!(type_oid("_int4"), Some(1007));
        assert_eq!(type_oid("hstore"), None);
    }
}
