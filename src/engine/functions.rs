//! SQL functions: `CREATE [OR REPLACE] FUNCTION f(a type, …) RETURNS type
//! LANGUAGE sql AS $$ SELECT expr $$` (or `AS 'SELECT expr'`, or the
//! standard `RETURN expr`), as PostgreSQL writes them. The body is one
//! expression over the arguments (by name or as `$1`, `$2`, …); it is
//! planned once at CREATE with every function a query may call, and runs as
//! a scalar function in queries and views alike. Functions are recorded in
//! the catalog and come back on restart before the views that call them.

use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::DFSchema;
use datafusion::logical_expr::{
    ColumnarValue, DdlStatement, Expr, ExprSchemable, LogicalPlan, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility,
};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast;

use super::durable::Persisted;
use super::{Engine, Outcome};
use crate::error::{EddyError, Result};
use crate::sql::ObjectKind;

/// Persisted catalog entries of functions are named apart from relations.
fn entry_name(name: &str) -> String {
    format!("function {name}")
}

impl Engine {
    /// `CREATE [OR REPLACE] FUNCTION`.
    pub(super) async fn create_function(
        &self,
        f: ast::CreateFunction,
        sql: String,
        record: bool,
    ) -> Result<Outcome> {
        let name = crate::sql::statement::normalize_object_name(&f.name)?;
        let ours = self.sql_functions.lock().contains(&name);
        if !ours && self.ctx.state().scalar_functions().contains_key(&name) {
            return Err(EddyError::DuplicateFunction(format!(
                "function {name} already exists as a built-in function; choose another name"
            )));
        }
        if ours && !f.or_replace {
            return Err(EddyError::DuplicateFunction(format!(
                "function \"{name}\" already exists"
            )));
        }
        if ours {
            self.refuse_if_called(&name, "replace")?;
        }
        let udf = self.plan_function(&name, f).await?;
        self.ctx.register_udf(udf);
        self.sql_functions.lock().insert(name.clone());
        if let (Some(d), true) = (&self.durable, record) {
            let entry = entry_name(&name);
            d.dropped(std::slice::from_ref(&entry))?;
            let id = d.reserve_id();
            d.created(Persisted {
                name: entry,
                kind: "function".into(),
                sql,
                id,
            })?;
        }
        Ok(Outcome::Command {
            tag: "CREATE FUNCTION".into(),
            rows: None,
        })
    }

    /// `DROP FUNCTION`: refused while a materialized view calls it.
    pub(super) fn drop_functions(&self, names: Vec<String>, if_exists: bool) -> Result<Outcome> {
        for name in &names {
            if !self.sql_functions.lock().contains(name) && !if_exists {
                return Err(EddyError::UndefinedFunction(format!(
                    "function {name} does not exist"
                )));
            }
            self.refuse_if_called(name, "drop")?;
        }
        for name in names {
            if self.sql_functions.lock().remove(&name) {
                self.ctx.deregister_udf(&name);
                if let Some(d) = &self.durable {
                    d.dropped(&[entry_name(&name)])?;
                }
            }
        }
        Ok(Outcome::Command {
            tag: "DROP FUNCTION".into(),
            rows: None,
        })
    }

    /// Fail if a materialized view's query calls `name` (it runs the
    /// definition it was created with, and must find it on restart).
    fn refuse_if_called(&self, name: &str, what: &str) -> Result<()> {
        let mut callers: Vec<String> = self.catalog.with(|e| {
            e.iter()
                .filter(|(_, o)| o.kind() == ObjectKind::MaterializedView && calls(&o.sql, name))
                .map(|(n, _)| n.clone())
                .collect()
        });
        callers.sort();
        match callers.first() {
            None => Ok(()),
            Some(v) => Err(EddyError::DependentObjects {
                message: format!(
                    "cannot {what} function {name} because materialized view {v} depends on it"
                ),
                detail: format!(
                    "materialized views calling it: {}; drop them first",
                    callers.join(", ")
                ),
            }),
        }
    }

    /// The function `f` describes, its body planned over its arguments.
    async fn plan_function(&self, name: &str, f: ast::CreateFunction) -> Result<ScalarUDF> {
        let language = f.language.as_ref().map(|l| l.value.to_ascii_lowercase());
        if language.as_deref().is_some_and(|l| l != "sql") {
            return Err(EddyError::NotSupported {
                message: format!(
                    "functions in LANGUAGE {} are not supported",
                    language.unwrap_or_default()
                ),
                hint: Some("Write the function in LANGUAGE sql: one SELECT expression.".into()),
            });
        }
        let arg_names: Vec<Option<String>> = f
            .args
            .iter()
            .flatten()
            .map(|a| a.name.as_ref().map(crate::sql::statement::normalize_ident))
            .collect();
        let f = with_expression_body(f, &arg_names)?;
        let state = self.ctx.state();
        let plan = state
            .statement_to_plan(DfStatement::Statement(Box::new(
                ast::Statement::CreateFunction(f),
            )))
            .await?;
        let LogicalPlan::Ddl(DdlStatement::CreateFunction(c)) = plan else {
            return Err(EddyError::Internal(
                "function planning gave no function".into(),
            ));
        };
        let args = c.args.unwrap_or_default();
        let fields: Vec<Field> = args
            .iter()
            .enumerate()
            .map(|(i, a)| Field::new(format!("${}", i + 1), a.data_type.clone(), true))
            .collect();
        let schema = DFSchema::try_from(Schema::new(fields))?;
        let body = c.params.function_body.ok_or_else(|| {
            EddyError::syntax(format!("function {name} has no body (AS $$ SELECT … $$)"))
        })?;
        // Arguments are columns $1, $2, … of the argument schema.
        let body = body
            .transform(|e| {
                Ok(match e {
                    Expr::Placeholder(p) => {
                        Transformed::yes(Expr::Column(datafusion::common::Column::from_name(p.id)))
                    }
                    other => Transformed::no(other),
                })
            })?
            .data;
        let returns = match c.return_type {
            Some(t) => t,
            None => body.get_type(&schema)?,
        };
        let body = body.cast_to(&returns, &schema)?;
        let expr = crate::plan::physical_expr(&state, body, &schema)?;
        Ok(ScalarUDF::new_from_impl(SqlFunction {
            name: name.to_string(),
            // Arguments are cast to the declared types, as PostgreSQL does.
            signature: Signature::user_defined(c.params.behavior.unwrap_or(Volatility::Volatile)),
            schema: Arc::new(schema.as_arrow().clone()),
            returns,
            expr,
        }))
    }
}

/// `f` with its body as one expression in which arguments are `$n`: the
/// string of `AS $$ SELECT expr $$` parsed, names replaced by positions.
fn with_expression_body(
    mut f: ast::CreateFunction,
    names: &[Option<String>],
) -> Result<ast::CreateFunction> {
    let expr = match f.function_body.take() {
        Some(ast::CreateFunctionBody::Return(e)) => e,
        Some(ast::CreateFunctionBody::AsBeforeOptions { body, .. })
        | Some(ast::CreateFunctionBody::AsAfterOptions(body)) => {
            let text = match &body {
                ast::Expr::Value(v) => match &v.value {
                    ast::Value::SingleQuotedString(s) => s.clone(),
                    ast::Value::DollarQuotedString(d) => d.value.clone(),
                    _ => body.to_string(),
                },
                other => other.to_string(),
            };
            select_expression(&text)?
        }
        _ => {
            return Err(EddyError::NotSupported {
                message: "this form of function body is not supported".into(),
                hint: Some("Write AS $$ SELECT expr $$ or RETURN expr.".into()),
            })
        }
    };
    let expr = positional(expr, names);
    f.function_body = Some(ast::CreateFunctionBody::Return(expr));
    f.language = None;
    Ok(f)
}

/// The expression of a body `SELECT expr` (no FROM, one column).
fn select_expression(text: &str) -> Result<ast::Expr> {
    let refuse = || EddyError::NotSupported {
        message: format!(
            "a SQL function body must be one SELECT expression: {}",
            text.trim()
        ),
        hint: Some("SELECT without FROM, of one value computed from the arguments.".into()),
    };
    let dialect = datafusion::sql::sqlparser::dialect::PostgreSqlDialect {};
    let mut stmts = datafusion::sql::sqlparser::parser::Parser::parse_sql(&dialect, text)
        .map_err(|e| EddyError::syntax(format!("in the function body: {e}")))?;
    let Some(ast::Statement::Query(q)) = stmts.pop().filter(|_| stmts.is_empty()) else {
        return Err(refuse());
    };
    let ast::SetExpr::Select(s) = *q.body else {
        return Err(refuse());
    };
    match (s.from.is_empty(), s.projection.as_slice()) {
        (true, [ast::SelectItem::UnnamedExpr(e)]) => Ok(e.clone()),
        (true, [ast::SelectItem::ExprWithAlias { expr, .. }]) => Ok(expr.clone()),
        _ => Err(refuse()),
    }
}

/// True if `sql` calls function `name` (a word `name` before `(`).
fn calls(sql: &str, name: &str) -> bool {
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    let dialect = datafusion::sql::sqlparser::dialect::PostgreSqlDialect {};
    let Ok(tokens) = Tokenizer::new(&dialect, sql).tokenize() else {
        return false;
    };
    let significant: Vec<&Token> = tokens
        .iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect();
    significant.windows(2).any(|w| {
        matches!((w[0], w[1]), (Token::Word(x), Token::LParen)
            if crate::sql::statement::normalize_ident(&ast::Ident { value: x.value.clone(), quote_style: x.quote_style, span: datafusion::sql::sqlparser::tokenizer::Span::empty() }) == name)
    })
}

/// A SQL function: its body evaluated over the arguments as columns.
#[derive(Debug)]
struct SqlFunction {
    name: String,
    signature: Signature,
    /// Columns `$1`, `$2`, … with the declared argument types.
    schema: Arc<Schema>,
    returns: DataType,
    expr: Arc<dyn PhysicalExpr>,
}

impl PartialEq for SqlFunction {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.signature == other.signature
    }
}

impl Eq for SqlFunction {}

impl std::hash::Hash for SqlFunction {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl ScalarUDFImpl for SqlFunction {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(self.returns.clone())
    }

    fn coerce_types(&self, given: &[DataType]) -> datafusion::error::Result<Vec<DataType>> {
        let declared: Vec<DataType> = self
            .schema
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        let fits = given.len() == declared.len()
            && given
                .iter()
                .zip(&declared)
                .all(|(g, d)| datafusion::arrow::compute::can_cast_types(g, d));
        if !fits {
            let list = |t: &[DataType]| {
                t.iter()
                    .map(|t| t.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return datafusion::common::plan_err!(
                "function {}({}) does not exist; it takes ({})",
                self.name,
                list(given),
                list(&declared)
            );
        }
        Ok(declared)
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        let rows = args.number_rows;
        let columns = args
            .args
            .into_iter()
            .map(|a| a.into_array(rows))
            .collect::<datafusion::error::Result<Vec<ArrayRef>>>()?;
        let batch = RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )?;
        self.expr.evaluate(&batch)
    }
}

/// `expr` with argument names replaced by their positions (`$1`, …).
fn positional(mut expr: ast::Expr, names: &[Option<String>]) -> ast::Expr {
    use std::ops::ControlFlow;
    let _ = ast::visit_expressions_mut(&mut expr, |e| {
        if let ast::Expr::Identifier(id) = e {
            let n = crate::sql::statement::normalize_ident(id);
            if let Some(i) = names.iter().position(|a| a.as_deref() == Some(n.as_str())) {
                *e = ast::Expr::value(ast::Value::Placeholder(format!("${}", i + 1)));
            }
        }
        ControlFlow::<()>::Continue(())
    });
    expr
}
