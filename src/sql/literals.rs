//! Literals typed as PostgreSQL types them: integer constants in a select list are `integer`
//! ([`int4_constants`]), and a literal cast to an unconstrained `numeric` keeps its own scale
//! ([`numeric_literal_scales`]).
//!
//! **Integers.**
//! PostgreSQL types a literal `1` as `integer` (int4) when it fits, `bigint` otherwise;
//! DataFusion types every integer literal `Int64`. Clients see the difference: node-postgres
//! returns an int8 column as a string, so `SELECT 1` reads `'1'` rather than `1`.
//! [`int4_constants`] casts the literals of a select item that is a constant integer
//! expression (literals, `+ - * / %`, unary minus, parentheses), all of them in int4's range,
//! to `INT`: `SELECT 1`, `SELECT 1 + 1`, `SELECT -5`. The arithmetic is then int4's, and
//! overflows with 22003 as PostgreSQL's does (`SELECT 2147483647 + 1`). Literals elsewhere
//! (next to a column, in a function's arguments, `LIMIT`, `ORDER BY 1`) keep DataFusion's
//! type: there an `Int64` changes no result's type for the worse, while a cast could turn a
//! literal argument some function requires into an expression.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    self, BinaryOperator, CastKind, DataType, ExactNumberInfo, Expr, Query, SelectItem, SetExpr,
    UnaryOperator,
};

/// `2.50::numeric` is `2.50` in PostgreSQL: an unconstrained numeric keeps each value's scale.
/// Arrow's decimals have one scale per column, and DataFusion gives an unconstrained `numeric`
/// 10 (`2.5000000000`). A literal's scale is known, though: this casts a numeric literal
/// (`2.50`, `'2.50'`) to `numeric(38, 2)`, its own scale. Casts of columns keep DataFusion's.
pub fn numeric_literal_scales(query: &mut Query) {
    let _ = ast::visit_expressions_mut(query, |e| {
        if let Expr::Cast {
            expr, data_type, ..
        } = e
        {
            let unconstrained = matches!(
                data_type,
                DataType::Numeric(ExactNumberInfo::None)
                    | DataType::Decimal(ExactNumberInfo::None)
                    | DataType::Dec(ExactNumberInfo::None)
            );
            if let (true, Some(scale)) = (unconstrained, literal_scale(expr)) {
                *data_type = DataType::Numeric(ExactNumberInfo::PrecisionAndScale(38, scale));
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

/// The scale of a plain decimal literal (`2.50`: 2; `-3`: 0), if `e` is one that fits 38 digits.
fn literal_scale(e: &Expr) -> Option<i64> {
    let text = match e {
        Expr::Value(v) => match &v.value {
            ast::Value::Number(n, _) => n.as_str(),
            ast::Value::SingleQuotedString(s) => s.as_str(),
            _ => return None,
        },
        _ => return None,
    };
    let digits = text.trim().trim_start_matches(['-', '+']);
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let plain = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    let ok = plain(int) && plain(frac) && !(int.is_empty() && frac.is_empty());
    let significant = int.trim_start_matches('0').len() + frac.len();
    (ok && significant <= 38).then_some(frac.len() as i64)
}

/// Cast the literals of constant integer select items of `query` to `INT` (see the module
/// docs).
pub fn int4_constants(query: &mut Query) {
    set_expr(&mut query.body);
}

fn set_expr(body: &mut SetExpr) {
    match body {
        SetExpr::Select(select) => {
            for item in &mut select.projection {
                let expr = match item {
                    SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e,
                    _ => continue,
                };
                if int4_constant(expr) {
                    cast_literals(expr);
                }
            }
        }
        SetExpr::Query(q) => set_expr(&mut q.body),
        SetExpr::SetOperation { left, right, .. } => {
            set_expr(left);
            set_expr(right);
        }
        _ => {}
    }
}

/// A literal that PostgreSQL types `integer`.
fn int4_literal(e: &Expr) -> bool {
    match e {
        Expr::Value(v) => match &v.value {
            ast::Value::Number(n, _) => n.parse::<i32>().is_ok(),
            _ => false,
        },
        _ => false,
    }
}

/// An expression of int4 literals and arithmetic only.
fn int4_constant(e: &Expr) -> bool {
    match e {
        Expr::Nested(inner) => int4_constant(inner),
        Expr::UnaryOp {
            op: UnaryOperator::Minus | UnaryOperator::Plus,
            expr,
        } => int4_constant(expr),
        Expr::BinaryOp { left, op, right } => {
            matches!(
                op,
                BinaryOperator::Plus
                    | BinaryOperator::Minus
                    | BinaryOperator::Multiply
                    | BinaryOperator::Divide
                    | BinaryOperator::Modulo
            ) && int4_constant(left)
                && int4_constant(right)
        }
        other => int4_literal(other),
    }
}

fn cast_literals(e: &mut Expr) {
    match e {
        Expr::Nested(inner) | Expr::UnaryOp { expr: inner, .. } => cast_literals(inner),
        Expr::BinaryOp { left, right, .. } => {
            cast_literals(left);
            cast_literals(right);
        }
        literal => {
            let value = std::mem::replace(literal, Expr::Identifier(ast::Ident::new("")));
            *literal = Expr::Cast {
                kind: CastKind::Cast,
                expr: Box::new(value),
                data_type: DataType::Int(None),
                array: false,
                format: None,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str) -> String {
        crate::sql::rewritten_query(sql, |q| {
            int4_constants(q);
            numeric_literal_scales(q);
        })
    }

    #[test]
    fn numeric_literals_keep_their_scale() {
        assert_eq!(
            rewritten(
                "SELECT 2.50::numeric, CAST('7' AS DECIMAL), x::numeric, 1e3::numeric, \
                 3.5::numeric(10, 4) FROM t"
            ),
            "SELECT 2.50::NUMERIC(38,2), CAST('7' AS NUMERIC(38,0)), x::NUMERIC, 1e3::NUMERIC, \
             3.5::NUMERIC(10,4) FROM t"
        );
    }

    #[test]
    fn constant_integer_items_are_int4() {
        assert_eq!(
            rewritten("SELECT 1, 1 + 2 AS three, -(4), x + 1, 3000000000, 1.5 FROM t LIMIT 1"),
            "SELECT CAST(1 AS INT), CAST(1 AS INT) + CAST(2 AS INT) AS three, \
             -(CAST(4 AS INT)), x + 1, 3000000000, 1.5 FROM t LIMIT 1"
        );
        assert_eq!(
            rewritten("SELECT 1 UNION ALL SELECT abs(2) ORDER BY 1"),
            "SELECT CAST(1 AS INT) UNION ALL SELECT abs(2) ORDER BY 1"
        );
    }
}
