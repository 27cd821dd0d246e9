//! Output column names as Postgres gives them: an unaliased `a.b` (a table
//! column or a struct field) is named `b`. DataFusion would name a struct
//! field access `a[b]`, which is awkward to query in a view.

use datafusion::sql::sqlparser::ast::{Expr, Query, SelectItem, SetExpr};

/// Alias each unaliased compound identifier in `query`'s outermost select list by its last part.
pub fn name_compound_columns(query: &mut Query) {
    name_set_expr(&mut query.body);
}

fn name_set_expr(body: &mut SetExpr) {
    match body {
        SetExpr::Select(select) => {
            for item in &mut select.projection {
                if let SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) = item {
                    if let Some(last) = parts.last().cloned() {
                        let expr = Expr::CompoundIdentifier(std::mem::take(parts));
                        *item = SelectItem::ExprWithAlias { expr, alias: last };
                    }
                }
            }
        }
        SetExpr::Query(q) => name_set_expr(&mut q.body),
        SetExpr::SetOperation { left, right, .. } => {
            name_set_expr(left);
            name_set_expr(right);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::ast::Statement;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;
    use crate::sql::tokens::DIALECT;

    #[test]
    fn compound_identifiers_get_their_last_part_as_name() {
        let mut stmt = Parser::new(&DIALECT)
            .try_with_sql("SELECT t.topic_name, \"group\".city AS c, n FROM x")
            .and_then(|mut p| p.parse_statement())
            .unwrap();
        let Statement::Query(q) = &mut stmt else {
            panic!("not a query")
        };
        name_compound_columns(q);
        assert_eq!(
            stmt.to_string(),
            "SELECT t.topic_name AS topic_name, \"group\".city AS c, n FROM x"
        );
    }
}
