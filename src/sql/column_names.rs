//! PostgreSQL's names for a query's result columns.
//!
//! DataFusion names an unaliased select item after its whole expression (`count(*)`,
//! `current_setting(Utf8("search_path"))`, `Int64(1) + Int64(2)`); PostgreSQL names it after
//! its function, column or cast type, and `?column?` otherwise (`count`, `current_setting`,
//! `?column?`). Clients read these names: psql prints them, drivers key rows by them, ORMs map
//! them. [`ResultNames`] computes PostgreSQL's names from the query's select list, following
//! the rules of PostgreSQL's `FigureColname`; [`ResultNames::apply`] puts them on a result schema. Only the
//! names a client sees change: DataFusion's plan keeps its own (which must be unique, where
//! PostgreSQL's need not be: `SELECT 1, 2` has two `?column?` columns).

use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::sql::sqlparser::ast::{self, Expr, SelectItem, SetExpr};

use super::statement::normalize_ident;

/// What one select item contributes to the result's columns.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    /// One column with PostgreSQL's name for it (`None`: aliased, DataFusion's name is the
    /// alias already).
    Column(Option<String>),
    /// `*` or `t.*`: as many columns as the relation has, named as DataFusion names them.
    Wildcard,
}

/// PostgreSQL's names for a query's result columns, read from its select list before it runs
/// (its result then gets them with [`ResultNames::apply`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultNames(Vec<Item>);

impl ResultNames {
    /// The names of `stmt`'s columns; `None` when `stmt` is no query with a select list.
    pub fn of(stmt: &ast::Statement) -> Option<Self> {
        let ast::Statement::Query(q) = stmt else {
            return None;
        };
        let select = first_select(&q.body)?;
        Some(ResultNames(select.projection.iter().map(item).collect()))
    }

    /// `schema`, the query's result, with PostgreSQL's names where its columns can be matched
    /// to the select list (else as it is).
    pub fn apply(&self, schema: &SchemaRef) -> SchemaRef {
        match align(&self.0, schema.fields().len()) {
            Some(names) => rename(schema, &names),
            None => schema.clone(),
        }
    }
}

/// The select list that names a query's columns: the first of a set operation's.
fn first_select(body: &SetExpr) -> Option<&ast::Select> {
    match body {
        SetExpr::Select(s) => Some(s),
        SetExpr::Query(q) => first_select(&q.body),
        SetExpr::SetOperation { left, .. } => first_select(left),
        _ => None,
    }
}

fn item(i: &SelectItem) -> Item {
    match i {
        SelectItem::UnnamedExpr(e) => Item::Column(Some(column_name(e))),
        SelectItem::ExprWithAlias { .. } | SelectItem::ExprWithAliases { .. } => Item::Column(None),
        SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(_, _) => Item::Wildcard,
    }
}

/// Match items to `n` columns: items before the first wildcard from the left, items after the
/// last from the right; without a wildcard, one column each.
fn align(items: &[Item], n: usize) -> Option<Vec<Option<String>>> {
    let name = |i: &Item| match i {
        Item::Column(c) => c.clone(),
        Item::Wildcard => None,
    };
    let first = items.iter().position(|i| *i == Item::Wildcard);
    let Some(first) = first else {
        return (items.len() == n).then(|| items.iter().map(name).collect());
    };
    let last = items.iter().rposition(|i| *i == Item::Wildcard)?;
    let trailing = items.len() - last - 1;
    if first + trailing > n {
        return None;
    }
    let mut names = vec![None; n];
    for (k, i) in items[..first].iter().enumerate() {
        names[k] = name(i);
    }
    for (k, i) in items[last + 1..].iter().enumerate() {
        names[n - trailing + k] = name(i);
    }
    Some(names)
}

/// `schema`, a result of `stmt`, with PostgreSQL's column names.
pub fn pg_schema(stmt: &ast::Statement, schema: &SchemaRef) -> SchemaRef {
    match ResultNames::of(stmt) {
        Some(names) => names.apply(schema),
        None => schema.clone(),
    }
}

/// As [`pg_schema`], for a query's text (a cursor's, `COPY (query)`'s).
pub fn pg_schema_of_sql(sql: &str, schema: &SchemaRef) -> SchemaRef {
    match crate::sql::parse(sql).ok().as_deref() {
        Some([crate::sql::Statement::Query(q, _)]) => pg_schema(q, schema),
        _ => schema.clone(),
    }
}

/// `schema` with the columns renamed to `names` (where given).
fn rename(schema: &SchemaRef, names: &[Option<String>]) -> SchemaRef {
    if names.len() != schema.fields().len()
        || names
            .iter()
            .zip(schema.fields())
            .all(|(n, f)| n.as_deref().is_none_or(|n| n == f.name()))
    {
        return schema.clone();
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .zip(names)
        .map(|(f, n)| match n {
            Some(n) => f.as_ref().clone().with_name(n),
            None => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// PostgreSQL's name for an unaliased select item.
pub fn column_name(e: &Expr) -> String {
    figure(e).0.unwrap_or_else(|| "?column?".to_string())
}

/// How sure a name is: a cast names its value by its type only if nothing better is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Strength {
    None,
    Weak,
    Strong,
}

fn strong(name: impl Into<String>) -> (Option<String>, Strength) {
    (Some(name.into()), Strength::Strong)
}

fn weak(name: impl Into<String>) -> (Option<String>, Strength) {
    (Some(name.into()), Strength::Weak)
}

/// PostgreSQL's `FigureColnameInternal`, over sqlparser's expressions.
fn figure(e: &Expr) -> (Option<String>, Strength) {
    match e {
        Expr::Identifier(id) => strong(normalize_ident(id)),
        Expr::CompoundIdentifier(parts) => match parts.last() {
            Some(id) => strong(normalize_ident(id)),
            None => (None, Strength::None),
        },
        Expr::CompoundFieldAccess { root, access_chain } => match access_chain.last() {
            Some(ast::AccessExpr::Dot(Expr::Identifier(id))) => strong(normalize_ident(id)),
            _ => figure(root),
        },
        Expr::Function(f) => match f.name.0.last().and_then(|p| p.as_ident()) {
            Some(id) => strong(normalize_ident(id)),
            None => (None, Strength::None),
        },
        Expr::Nested(inner) | Expr::Collate { expr: inner, .. } => figure(inner),
        Expr::Cast {
            expr, data_type, ..
        } => {
            let inner = figure(expr);
            if inner.1 > Strength::Weak {
                inner
            } else {
                weak(type_name(data_type))
            }
        }
        Expr::TypedString(t) => weak(type_name(&t.data_type)),
        Expr::Interval(_) => weak("interval"),
        Expr::Case { .. } => weak("case"),
        Expr::Array(_) => strong("array"),
        Expr::Tuple(_) => strong("row"),
        Expr::Exists { .. } => strong("exists"),
        Expr::Subquery(q) => match first_select(&q.body).and_then(|s| s.projection.first()) {
            Some(SelectItem::ExprWithAlias { alias, .. }) => strong(normalize_ident(alias)),
            Some(SelectItem::UnnamedExpr(e)) => match figure(e) {
                (Some(n), _) => strong(n),
                none => none,
            },
            _ => (None, Strength::None),
        },
        Expr::Extract { .. } => strong("extract"),
        Expr::Ceil { .. } => strong("ceil"),
        Expr::Floor { .. } => strong("floor"),
        Expr::Position { .. } => strong("position"),
        Expr::Substring { .. } => strong("substring"),
        Expr::Overlay { .. } => strong("overlay"),
        Expr::Trim { trim_where, .. } => strong(match trim_where {
            Some(ast::TrimWhereField::Leading) => "ltrim",
            Some(ast::TrimWhereField::Trailing) => "rtrim",
            _ => "btrim",
        }),
        Expr::AtTimeZone { .. } => strong("timezone"),
        _ => (None, Strength::None),
    }
}

/// The name PostgreSQL gives a type in a cast's column name (`int4`, not `integer`).
fn type_name(t: &ast::DataType) -> String {
    let text = t.to_string().to_ascii_lowercase();
    // An array is named by its element type, as in PostgreSQL (`'{1}'::int[]` is `int4`).
    let text = text.trim_end_matches("[]");
    let base = text.split('(').next().unwrap_or(text).trim();
    let name = match base {
        "int" | "integer" | "int4" => "int4",
        "bigint" | "int8" => "int8",
        "smallint" | "int2" => "int2",
        "real" | "float4" => "float4",
        "double" | "double precision" | "float8" | "float" => "float8",
        "numeric" | "decimal" | "dec" => "numeric",
        "varchar" | "character varying" => "varchar",
        "char" | "character" => "bpchar",
        "boolean" | "bool" => "bool",
        "timestamp" | "timestamp without time zone" => "timestamp",
        "timestamp with time zone" | "timestamptz" => "timestamptz",
        "time" | "time without time zone" => "time",
        "time with time zone" | "timetz" => "timetz",
        other if other.starts_with("interval") => "interval",
        other => other.rsplit('.').next().unwrap_or(other),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PostgreSQL 15's column names, one per select item.
    fn names(sql: &str) -> Vec<String> {
        let stmt = crate::sql::parse(sql).unwrap().remove(0);
        let crate::sql::Statement::Query(q, _) = stmt else {
            panic!("not a query: {sql}");
        };
        let ast::Statement::Query(q) = *q else {
            panic!("not a query: {sql}");
        };
        first_select(&q.body)
            .unwrap()
            .projection
            .iter()
            .map(|i| match item(i) {
                Item::Column(Some(n)) => n,
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn names_as_postgresql_gives_them() {
        // Each expected name is what PostgreSQL 15 answered for the same select list.
        assert_eq!(
            names(
                "SELECT count(*), current_setting('search_path'), 1, 'a', a + 1, t.b, \"Mixed\", \
                 Upper(x), pg_catalog.version() FROM t"
            ),
            [
                "count",
                "current_setting",
                "?column?",
                "?column?",
                "?column?",
                "b",
                "Mixed",
                "upper",
                "version"
            ]
        );
        assert_eq!(
            names(
                "SELECT 1::int, '1'::bigint, x::text, CAST(y AS double precision), \
                 count(*)::int, (a + 1)::numeric(10,2), '{1}'::int[], true, NULL, \
                 TIMESTAMP '2020-01-01 00:00:00', DATE '2020-01-01', INTERVAL '1' SECOND"
            ),
            [
                "int4",
                "int8",
                "x",
                "y",
                "count",
                "numeric",
                "int4",
                "?column?",
                "?column?",
                "timestamp",
                "date",
                "interval"
            ]
        );
        assert_eq!(
            names(
                "SELECT CASE WHEN a THEN 1 END, CASE WHEN a THEN 1 END::text, ARRAY[1, 2], \
                 EXISTS (SELECT 1), (SELECT max(v) FROM u), (SELECT v AS w FROM u), \
                 extract(year FROM ts), trim(s), (x), coalesce(a, b), ROW(1, 2) FROM t"
            ),
            [
                "case", "text", "array", "exists", "max", "w", "extract", "btrim", "x", "coalesce",
                "row"
            ]
        );
        assert_eq!(
            names(
                "SELECT CAST(1 AS varchar), 1::char, 1.5::real, 1::float, (1)::smallint, \
                 'a'::text || 'b', -b, NOT a, a IS NULL, b IN (1, 2), nullif(b, 1), \
                 row_number() OVER (), '1'::bytea, x::varchar(3), ('1'::text)::int, \
                 (SELECT 1), ltrim(s), trim(LEADING 'x' FROM s), position('a' IN s), \
                 substring(s FROM 1), ceil(1.5), ts AT TIME ZONE 'UTC', current_user, now() \
                 FROM t"
            ),
            [
                "varchar",
                "bpchar",
                "float4",
                "float8",
                "int2",
                "?column?",
                "?column?",
                "?column?",
                "?column?",
                "?column?",
                "nullif",
                "row_number",
                "bytea",
                "x",
                "int4",
                "?column?",
                "ltrim",
                "ltrim",
                "position",
                "substring",
                "ceil",
                "timezone",
                "current_user",
                "now"
            ]
        );
    }

    #[test]
    fn wildcards_keep_their_columns_and_align_the_rest() {
        let items = [
            Item::Column(Some("count".into())),
            Item::Wildcard,
            Item::Column(None),
            Item::Column(Some("?column?".into())),
        ];
        assert_eq!(
            align(&items, 5),
            Some(vec![
                Some("count".into()),
                None,
                None,
                None,
                Some("?column?".into())
            ])
        );
        assert_eq!(align(&items, 2), None);
        assert_eq!(align(&items[..1], 2), None);
    }

    #[test]
    fn rename_keeps_types_and_allows_repeats() {
        use datafusion::arrow::datatypes::DataType;
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("Int64(1)", DataType::Int64, false),
            Field::new("Int64(2)", DataType::Int64, false),
            Field::new("x", DataType::Utf8, true),
        ]));
        let renamed = rename(
            &schema,
            &[Some("?column?".into()), Some("?column?".into()), None],
        );
        let got: Vec<(&str, &DataType)> = renamed
            .fields()
            .iter()
            .map(|f| (f.name().as_str(), f.data_type()))
            .collect();
        assert_eq!(
            got,
            [
                ("?column?", &DataType::Int64),
                ("?column?", &DataType::Int64),
                ("x", &DataType::Utf8)
            ]
        );
    }
}
