//! PostgreSQL's `format(template, args…)`: `%s` (the value as text, NULL as nothing), `%I` (an
//! identifier, quoted when needed), `%L` (a literal, NULL as `NULL`), `%%`, and positions
//! (`%2$s`). Metabase's sync builds type names with it.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, StringBuilder};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{exec_err, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::pgtext::{self, Style};

#[derive(Debug, PartialEq, Eq, Hash)]
struct Format {
    signature: Signature,
}

/// `format` as a function.
pub fn udf() -> ScalarUDF {
    ScalarUDF::from(Format {
        signature: Signature::variadic_any(Volatility::Stable),
    })
}

/// PostgreSQL's keywords that are not "unreserved" (reserved, or usable only as a column or
/// function name): `quote_ident` and `%I` quote them, since unquoted they do not read back as a
/// name (PostgreSQL 16, appendix C).
const NOT_UNRESERVED: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "authorization",
    "between",
    "bigint",
    "binary",
    "bit",
    "boolean",
    "both",
    "case",
    "cast",
    "char",
    "character",
    "check",
    "coalesce",
    "collate",
    "collation",
    "column",
    "concurrently",
    "constraint",
    "create",
    "cross",
    "current_catalog",
    "current_date",
    "current_role",
    "current_schema",
    "current_time",
    "current_timestamp",
    "current_user",
    "dec",
    "decimal",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "exists",
    "extract",
    "false",
    "fetch",
    "float",
    "for",
    "foreign",
    "freeze",
    "from",
    "full",
    "grant",
    "greatest",
    "group",
    "grouping",
    "having",
    "ilike",
    "in",
    "initially",
    "inner",
    "inout",
    "int",
    "integer",
    "intersect",
    "interval",
    "into",
    "is",
    "isnull",
    "join",
    "json",
    "json_array",
    "json_arrayagg",
    "json_object",
    "json_objectagg",
    "lateral",
    "leading",
    "least",
    "left",
    "like",
    "limit",
    "localtime",
    "localtimestamp",
    "national",
    "natural",
    "nchar",
    "none",
    "normalize",
    "not",
    "notnull",
    "null",
    "nullif",
    "numeric",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "out",
    "outer",
    "overlaps",
    "overlay",
    "placing",
    "position",
    "precision",
    "primary",
    "real",
    "references",
    "returning",
    "right",
    "row",
    "select",
    "session_user",
    "setof",
    "similar",
    "smallint",
    "some",
    "substring",
    "symmetric",
    "system_user",
    "table",
    "tablesample",
    "then",
    "time",
    "timestamp",
    "to",
    "trailing",
    "treat",
    "trim",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "values",
    "varchar",
    "variadic",
    "verbose",
    "when",
    "where",
    "window",
    "with",
    "xmlattributes",
    "xmlconcat",
    "xmlelement",
    "xmlexists",
    "xmlforest",
    "xmlnamespaces",
    "xmlparse",
    "xmlpi",
    "xmlroot",
    "xmlserialize",
    "xmltable",
];

/// `name` as an SQL identifier, as PostgreSQL's `quote_ident` writes it: unquoted when it reads
/// back as itself (lower case, digits, `_`, not a reserved word), else in double quotes.
pub fn quote_ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !NOT_UNRESERVED.contains(&name);
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// `value` as an SQL string literal (`E'…'` when it holds a backslash).
pub fn quote_literal(value: &str) -> String {
    let quoted = value.replace('\'', "''");
    if value.contains('\\') {
        format!("E'{}'", quoted.replace('\\', "\\\\"))
    } else {
        format!("'{quoted}'")
    }
}

/// One row: `template` with `args` (each `None` for NULL) put in.
fn format_row(template: &str, args: &[Option<String>]) -> Result<String> {
    let mut out = String::with_capacity(template.len());
    let mut chars = template.chars().peekable();
    let mut next_arg = 0usize;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        // %[position$]type
        let mut digits = String::new();
        while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            digits.push(*d);
            chars.next();
        }
        let index = if !digits.is_empty() && chars.peek() == Some(&'$') {
            chars.next();
            match digits.parse::<usize>() {
                Ok(n) if n >= 1 => n - 1,
                _ => {
                    return exec_err!(
                        "format specifies argument 0, but arguments are numbered from 1"
                    )
                }
            }
        } else if digits.is_empty() {
            next_arg
        } else {
            return exec_err!("format(): widths are not supported (in \"%{digits}\")");
        };
        let Some(kind) = chars.next() else {
            return exec_err!("unterminated format() type specifier");
        };
        if kind == '%' && digits.is_empty() {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(index) else {
            return exec_err!("too few arguments for format()");
        };
        next_arg = index + 1;
        match (kind, arg) {
            ('s', Some(v)) => out.push_str(v),
            ('s', None) => {}
            ('I', Some(v)) => out.push_str(&quote_ident(v)),
            ('I', None) => {
                return exec_err!("null values cannot be formatted as an SQL identifier")
            }
            ('L', Some(v)) => out.push_str(&quote_literal(v)),
            ('L', None) => out.push_str("NULL"),
            (other, _) => return exec_err!("unrecognized format() type specifier \"{other}\""),
        }
    }
    Ok(out)
}

impl ScalarUDFImpl for Format {
    fn name(&self) -> &str {
        "format"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let arrays: Vec<ArrayRef> = args
            .args
            .iter()
            .map(|a| a.clone().into_array(n))
            .collect::<Result<_>>()?;
        let mut out = StringBuilder::new();
        let text = |a: &ArrayRef, row: usize| -> Option<String> {
            if a.data_type() == &DataType::Null || a.is_null(row) {
                return None;
            }
            let mut s = String::new();
            pgtext::write_text(a.as_ref(), row, Style::OUTPUT, &mut s);
            Some(s)
        };
        for row in 0..n {
            let Some(template) = text(&arrays[0], row) else {
                out.append_null();
                continue;
            };
            let values: Vec<Option<String>> = arrays[1..].iter().map(|a| text(a, row)).collect();
            out.append_value(format_row(&template, &values)?);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

#[cfg(test)]
mod tests {
    use super::format_row;

    fn f(template: &str, args: &[Option<&str>]) -> String {
        let args: Vec<Option<String>> = args.iter().map(|a| a.map(str::to_string)).collect();
        format_row(template, &args).unwrap_or_else(|e| format!("ERROR {e}"))
    }

    #[test]
    fn formats_as_postgres_does() {
        // Values from PostgreSQL 15.
        assert_eq!(f("Hello %s, %s", &[Some("World"), None]), "Hello World, ");
        assert_eq!(
            f("%I.%I", &[Some("public"), Some("My Table")]),
            "public.\"My Table\""
        );
        // Reserved words are quoted, unreserved ones (name, public) are not.
        assert_eq!(
            f("%I %I %I", &[Some("select"), Some("name"), Some("user")]),
            "\"select\" name \"user\""
        );
        assert_eq!(f("%L and %L", &[Some("it's"), None]), "'it''s' and NULL");
        assert_eq!(f("%L", &[Some("a\\b")]), "E'a\\\\b'");
        assert_eq!(f("%2$s %1$s %s", &[Some("a"), Some("b")]), "b a b");
        assert_eq!(f("100%%", &[]), "100%");
        assert!(f("%s %s", &[Some("a")]).contains("too few arguments"));
        assert!(f("%x", &[Some("a")]).contains("unrecognized format() type specifier"));
    }
}
