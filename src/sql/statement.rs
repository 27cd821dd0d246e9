//! The typed statement layer: every statement is classified once into
//! [`Statement`]; nothing downstream dispatches on strings.

use std::collections::BTreeMap;

use datafusion::sql::sqlparser::ast;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;

use super::access::{self, Access};
use super::cursor::CursorStatement;
use super::tokens::{
    self, is_word, parser_error, split_statements, starts_with_words, strip_emit_clause,
    EmitClause, StatementTokens, DIALECT,
};
use crate::error::{EddyError, Result};

/// Source formats whose records upsert and delete rows by a `PRIMARY KEY`.
pub const KEYED_FORMATS: [&str; 4] = [
    "upsert_json",
    "debezium_json",
    "upsert_avro",
    "debezium_avro",
];

/// Source formats whose writer schemas come from a schema registry.
const REGISTRY_FORMATS: [&str; 3] = ["upsert_avro", "debezium_avro", "protobuf"];

/// The dialect column definitions are parsed in (see [`parse_create_stream`]).
const COLUMN_DIALECT: datafusion::sql::sqlparser::dialect::GenericDialect =
    datafusion::sql::sqlparser::dialect::GenericDialect {};

/// The kinds of catalog object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    /// An append-only stream fed by `INSERT`.
    Table,
    /// A stream fed by a connector.
    Source,
    /// A continuously maintained query result.
    MaterializedView,
    /// A view's changes written to an external system.
    Sink,
}

impl ObjectKind {
    /// The SQL words for this kind (`TABLE`, `SOURCE`, `MATERIALIZED VIEW`).
    pub fn sql_name(self) -> &'static str {
        match self {
            ObjectKind::Table => "TABLE",
            ObjectKind::Source => "SOURCE",
            ObjectKind::MaterializedView => "MATERIALIZED VIEW",
            ObjectKind::Sink => "SINK",
        }
    }

    /// Lower-case name for messages.
    pub fn noun(self) -> &'static str {
        match self {
            ObjectKind::Table => "table",
            ObjectKind::Source => "source",
            ObjectKind::MaterializedView => "materialized view",
            ObjectKind::Sink => "sink",
        }
    }
}

/// `WATERMARK FOR column AS expr`.
#[derive(Debug, Clone)]
pub struct WatermarkDef {
    /// The event-time column.
    pub column: String,
    /// The watermark expression over the row (e.g. `ts - INTERVAL '2' SECOND`).
    pub expr: ast::Expr,
}

/// `CREATE TABLE` / `CREATE SOURCE`.
#[derive(Debug, Clone)]
pub struct CreateStream {
    /// Table or source.
    pub kind: ObjectKind,
    /// Object name (normalised: unquoted names lower-cased).
    pub name: String,
    /// `IF NOT EXISTS` was given.
    pub if_not_exists: bool,
    /// Column definitions.
    pub columns: Vec<ast::ColumnDef>,
    /// The watermark clause.
    pub watermark: Option<WatermarkDef>,
    /// `INCLUDE item [AS name], …`: metadata columns (item, column name), in order.
    pub includes: Vec<(String, String)>,
    /// `PRIMARY KEY (…)` of an upsert table (empty: append-only).
    pub primary_key: Vec<String>,
    /// `WITH (…)` options, keys lower-cased.
    pub options: BTreeMap<String, String>,
    /// Options whose value is a secret: key → secret name (`'k' = SECRET name`).
    pub secrets: BTreeMap<String, String>,
    /// The statement text, for `SHOW CREATE`.
    pub sql: String,
}

/// How a materialized view publishes results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmitMode {
    /// Live results, including partial results of open windows.
    OnUpdate,
    /// A window's rows appear once the watermark passes its end, then never change.
    OnWindowClose,
}

impl EmitMode {
    /// The name shown in `eddy.views.emit_mode`.
    pub fn name(self) -> &'static str {
        match self {
            EmitMode::OnUpdate => "on_update",
            EmitMode::OnWindowClose => "on_window_close",
        }
    }
}

/// `CREATE MATERIALIZED VIEW name AS query [EMIT …]`.
#[derive(Debug, Clone)]
pub struct CreateView {
    /// View name.
    pub name: String,
    /// `IF NOT EXISTS` was given.
    pub if_not_exists: bool,
    /// `OR REPLACE` was given: an existing view takes the new definition.
    pub or_replace: bool,
    /// The defining query (window TVFs still in it).
    pub query: Box<ast::Query>,
    /// Emission mode.
    pub emit: EmitMode,
    /// `WITH (…)` options, keys lower-cased.
    pub options: BTreeMap<String, String>,
    /// The statement text, for `SHOW CREATE`.
    pub sql: String,
    /// Tables joined `FOR SYSTEM_TIME AS OF …` (lookup joins by processing time).
    pub as_of: Vec<String>,
}

/// `CREATE SINK name FROM view WITH (…)`.
#[derive(Debug, Clone)]
pub struct CreateSink {
    /// Sink name.
    pub name: String,
    /// `IF NOT EXISTS` was given.
    pub if_not_exists: bool,
    /// The view (or source or table) whose changes are written.
    pub from: String,
    /// `WITH (…)` options, keys lower-cased.
    pub options: BTreeMap<String, String>,
    /// Options whose value is a secret: key → secret name (`'k' = SECRET name`).
    pub secrets: BTreeMap<String, String>,
    /// The statement text, for `SHOW CREATE`.
    pub sql: String,
}

/// A classified statement.
#[derive(Debug, Clone)]
pub enum Statement {
    /// `CREATE TABLE` or `CREATE SOURCE`.
    CreateStream(Box<CreateStream>),
    /// `CREATE MATERIALIZED VIEW`.
    CreateView(CreateView),
    /// `CREATE SINK`.
    CreateSink(CreateSink),
    /// `EXPLAIN CREATE MATERIALIZED VIEW`: show the streaming operator graph.
    ExplainView(CreateView),
    /// `EXPLAIN ANALYZE MATERIALIZED VIEW v`: a running view's operator graph with each
    /// operator's live counters.
    ExplainAnalyzeView(String),
    /// `INSERT INTO table …`.
    Insert(Box<ast::Statement>),
    /// `DELETE FROM table [WHERE …]` (upsert tables).
    Delete(Box<ast::Statement>),
    /// A query DataFusion answers (`SELECT`, `VALUES`, `EXPLAIN SELECT`, …),
    /// with its original text (psql's catalog queries are matched on it).
    Query(Box<ast::Statement>, String),
    /// `SHOW TABLES | SOURCES | MATERIALIZED VIEWS`.
    ShowObjects(ObjectKind),
    /// `SHOW CREATE kind name`.
    ShowCreate(ObjectKind, String),
    /// `DESCRIBE name`.
    Describe(String),
    /// `DROP kind [IF EXISTS] names [CASCADE]`.
    Drop {
        /// What kind of object.
        kind: ObjectKind,
        /// Names to drop.
        names: Vec<String>,
        /// `IF EXISTS` was given.
        if_exists: bool,
        /// `CASCADE` was given.
        cascade: bool,
    },
    /// Session noise drivers send (`SET`, `SHOW var`, `BEGIN`, `COMMIT`, …).
    Session(Box<ast::Statement>),
    /// `CREATE [OR REPLACE] FUNCTION … LANGUAGE sql`: a SQL function, and
    /// the statement's text.
    CreateFunction(Box<ast::CreateFunction>, String),
    /// `DROP FUNCTION [IF EXISTS] f[(types)], …`.
    DropFunction {
        /// Function names.
        names: Vec<String>,
        /// `IF EXISTS` was given.
        if_exists: bool,
    },
    /// `CHECKPOINT`: take a checkpoint now.
    Checkpoint,
    /// Users and secrets (see [`access`]).
    Access(Access),
    /// `COPY … TO STDOUT` / `COPY … FROM STDIN` (run by the server, which moves the rows).
    Copy(Box<super::copy::CopyStatement>),
    /// `DECLARE … CURSOR`, `FETCH`, `CLOSE` (run by the server, which keeps a connection's
    /// cursors).
    Cursor(super::cursor::CursorStatement),
    /// `SUBSCRIBE …`: a view's changes as they come (run by the server, which streams them).
    Subscribe(super::subscribe::Subscribe),
    /// `ALTER MATERIALIZED VIEW name SET (…) | RESET (…)`.
    AlterView(super::alter::AlterView),
    /// `ALTER SOURCE name ADD COLUMN …`.
    AlterSource(super::alter_source::AlterSource),
}

/// `COPY (SUBSCRIBE …) TO …` or `DECLARE c CURSOR FOR SUBSCRIBE …`: the outer statement,
/// read with `SELECT 1` in the subscription's place, then given the subscription.
fn nest_subscription(
    sql: &str,
    outer: Vec<datafusion::sql::sqlparser::tokenizer::TokenWithSpan>,
    inner: Vec<datafusion::sql::sqlparser::tokenizer::TokenWithSpan>,
    text: &str,
) -> Result<Statement> {
    let sub = super::subscribe::parse(sql, inner)?;
    let outer = classify(
        sql,
        StatementTokens {
            tokens: outer,
            text: text.to_string(),
        },
    )?;
    match outer {
        Statement::Copy(mut c) if matches!(c.direction, super::copy::CopyDirection::To { .. }) => {
            c.direction = super::copy::CopyDirection::Subscribe(sub);
            Ok(Statement::Copy(c))
        }
        Statement::Cursor(CursorStatement::Declare { name, hold, .. }) => {
            Ok(Statement::Cursor(CursorStatement::Declare {
                name,
                hold,
                query: super::cursor::CursorQuery::Subscribe(sub),
            }))
        }
        _ => Err(EddyError::syntax(
            "SUBSCRIBE stands alone, in COPY (SUBSCRIBE …) TO STDOUT, or in DECLARE … CURSOR \
             FOR SUBSCRIBE …",
        )),
    }
}

/// Parse a query string into classified statements.
pub fn parse(sql: &str) -> Result<Vec<Statement>> {
    split_statements(sql)?
        .into_iter()
        .map(|st| classify(sql, st))
        .collect()
}

pub(super) fn parser_for(
    tokens: Vec<datafusion::sql::sqlparser::tokenizer::TokenWithSpan>,
) -> Parser<'static> {
    Parser::new(&DIALECT).with_tokens_with_locations(tokens)
}

fn classify(sql: &str, st: StatementTokens) -> Result<Statement> {
    let t = &st.tokens;
    let perr = |e| parser_error(sql, e);
    if starts_with_words(t, &["CREATE", "TABLE"]) || starts_with_words(t, &["CREATE", "SOURCE"]) {
        return parse_create_stream(sql, st);
    }
    if starts_with_words(t, &["CREATE", "MATERIALIZED", "VIEW"])
        || starts_with_words(t, &["CREATE", "OR", "REPLACE", "MATERIALIZED", "VIEW"])
    {
        return parse_create_view(sql, st, false).map(Statement::CreateView);
    }
    if starts_with_words(t, &["ALTER", "MATERIALIZED", "VIEW"]) {
        return super::alter::parse_alter_view(sql, st).map(Statement::AlterView);
    }
    if starts_with_words(t, &["ALTER", "SOURCE"]) {
        return super::alter_source::parse_alter_source(sql, st).map(Statement::AlterSource);
    }
    if starts_with_words(t, &["EXPLAIN", "ANALYZE", "MATERIALIZED", "VIEW"]) {
        let mut p = parser_for(st.tokens.clone());
        for _ in 0..4 {
            p.next_token();
        }
        let name = normalize_object_name(&p.parse_object_name(false).map_err(perr)?)?;
        expect_end(sql, &mut p)?;
        return Ok(Statement::ExplainAnalyzeView(name));
    }
    if starts_with_words(t, &["EXPLAIN", "CREATE", "MATERIALIZED", "VIEW"])
        || starts_with_words(
            t,
            &["EXPLAIN", "CREATE", "OR", "REPLACE", "MATERIALIZED", "VIEW"],
        )
    {
        return parse_create_view(sql, st, true).map(Statement::ExplainView);
    }
    if starts_with_words(t, &["CREATE", "SINK"]) {
        return parse_create_sink(sql, st);
    }
    if starts_with_words(t, &["CREATE", "VIEW"]) {
        return Err(EddyError::NotSupported {
            message: "CREATE VIEW is not supported".into(),
            hint: Some("Use CREATE MATERIALIZED VIEW for a continuously maintained result.".into()),
        });
    }
    if starts_with_words(t, &["SHOW"])
        || starts_with_words(t, &["DESCRIBE"])
        || starts_with_words(t, &["DESC"])
    {
        if let Some(s) = parse_show(sql, &st)? {
            return Ok(s);
        }
    }
    if let Some(s) = access::parse_access(sql, &st)? {
        return Ok(s);
    }
    if starts_with_words(t, &["SUBSCRIBE"]) {
        return super::subscribe::parse(sql, st.tokens).map(Statement::Subscribe);
    }
    if let Some((outer, inner)) = super::subscribe::split_nested(t) {
        return nest_subscription(sql, outer, inner, &st.text);
    }
    if starts_with_words(t, &["CHECKPOINT"]) {
        let mut p = parser_for(st.tokens.clone());
        p.next_token();
        expect_end(sql, &mut p)?;
        return Ok(Statement::Checkpoint);
    }
    if starts_with_words(t, &["DROP"]) {
        if let Some(s) = parse_drop(sql, &st)? {
            return Ok(s);
        }
    }
    // Flink's TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), …)) in a query, as in a view.
    let mut tokens = st.tokens.clone();
    let fetch_timeout = if starts_with_words(t, &["FETCH"]) {
        let timeout = super::subscribe::strip_fetch_timeout(sql, &mut tokens)?;
        super::subscribe::add_fetch_from(&mut tokens);
        timeout
    } else {
        None
    };
    tokens::rewrite_flink_windows(&mut tokens);
    // A query reads the table as it is now: what a temporal join would see.
    tokens::strip_system_time(&mut tokens);
    let mut p = parser_for(tokens);
    let stmt = p.parse_statement().map_err(perr)?;
    if p.peek_token().token != Token::EOF {
        return Err(parser_error(
            sql,
            datafusion::sql::sqlparser::parser::ParserError::ParserError(format!(
                "unexpected {} at {}",
                p.peek_token().token,
                p.peek_token().span.start
            )),
        ));
    }
    if let Some(q) = show_fixed_setting(&stmt)? {
        return Ok(q);
    }
    use ast::Statement as S;
    Ok(match stmt {
        S::Query(_) | S::Explain { .. } | S::ExplainTable { .. } => {
            Statement::Query(Box::new(stmt), st.text.clone())
        }
        S::Insert(_) => Statement::Insert(Box::new(stmt)),
        S::Delete(_) => Statement::Delete(Box::new(stmt)),
        S::CreateFunction(f) => Statement::CreateFunction(Box::new(f), st.text.clone()),
        S::DropFunction(d) => Statement::DropFunction {
            names: d
                .func_desc
                .iter()
                .map(|f| normalize_object_name(&f.name))
                .collect::<Result<_>>()?,
            if_exists: d.if_exists,
        },
        S::Update(_) => {
            return Err(EddyError::NotSupported {
                message: "UPDATE is not supported".into(),
                hint: Some(
                    "INSERT a row with the same key into an upsert table (PRIMARY KEY) to \
                     replace it."
                        .into(),
                ),
            })
        }
        S::Set(_)
        | S::ShowVariable { .. }
        | S::ShowStatus { .. }
        | S::StartTransaction { .. }
        | S::Savepoint { .. }
        | S::ReleaseSavepoint { .. }
        | S::Commit { .. }
        | S::Rollback { .. }
        | S::Discard { .. }
        | S::Reset(_)
        | S::Deallocate { .. } => Statement::Session(Box::new(stmt)),
        S::Declare { .. } | S::Fetch { .. } | S::Close { .. } => {
            let mut c = super::cursor::classify_cursor(&stmt)?
                .ok_or_else(|| EddyError::Internal("not a cursor statement".into()))?;
            if let CursorStatement::Fetch { timeout, .. } = &mut c {
                *timeout = fetch_timeout;
            }
            Statement::Cursor(c)
        }
        S::Copy { .. } => Statement::Copy(Box::new(super::copy::classify_copy(&stmt)?)),
        other => {
            return Err(EddyError::not_supported(format!(
                "{} is not supported",
                statement_kind(&other.to_string())
            )))
        }
    })
}

/// `SHOW server_version` and the other settings fixed for the server's life, as a query of
/// the value ([`crate::functions::settings`]): PostgreSQL's answer, where the session hooks
/// would name DataFusion.
fn show_fixed_setting(stmt: &ast::Statement) -> Result<Option<Statement>> {
    let ast::Statement::ShowVariable { variable } = stmt else {
        return Ok(None);
    };
    let words: Vec<String> = variable
        .iter()
        .map(|w| w.value.to_ascii_lowercase())
        .collect();
    let (column, value) = match words.join(" ").as_str() {
        // PostgreSQL's column for SHOW TRANSACTION ISOLATION LEVEL.
        "transaction isolation level" => (
            "transaction_isolation".to_string(),
            crate::functions::settings::fixed_setting("transaction_isolation"),
        ),
        name if words.len() == 1 => (
            name.to_string(),
            crate::functions::settings::fixed_setting(name),
        ),
        _ => return Ok(None),
    };
    let Some(value) = value else {
        return Ok(None);
    };
    let sql = format!("SELECT '{}' AS \"{column}\"", value.replace('\'', "''"));
    let query = Parser::new(&DIALECT)
        .try_with_sql(&sql)
        .and_then(|mut p| p.parse_statement())
        .map_err(|e| parser_error(&sql, e))?;
    Ok(Some(Statement::Query(Box::new(query), sql)))
}

/// What kind of statement `s` (sqlparser's rendering) is: its leading keywords (`GRANT`,
/// `CREATE INDEX`, `ALTER TABLE`), not the names and values after them.
fn statement_kind(s: &str) -> String {
    use datafusion::sql::sqlparser::keywords::ALL_KEYWORDS;
    let mut words = s.split_whitespace().peekable();
    // CREATE UNIQUE INDEX, ALTER TABLE, DROP INDEX: the object's kind follows.
    let n = match words.peek() {
        Some(&("CREATE" | "ALTER" | "DROP")) => 3,
        _ => 1,
    };
    let words: Vec<&str> = words
        .take(n)
        .take_while(|w| ALL_KEYWORDS.binary_search(w).is_ok())
        .collect();
    match words.is_empty() {
        true => "this statement".into(),
        false => words.join(" "),
    }
}

/// Normalise an identifier: unquoted names fold to lower case, as in Postgres.
pub fn normalize_ident(id: &ast::Ident) -> String {
    match id.quote_style {
        Some(_) => id.value.clone(),
        None => id.value.to_lowercase(),
    }
}

/// Normalise an object name (only unqualified names are eddy objects).
pub fn normalize_object_name(name: &ast::ObjectName) -> Result<String> {
    let parts: Vec<String> = name
        .0
        .iter()
        .filter_map(|p| p.as_ident().map(normalize_ident))
        .collect();
    let one = match parts.as_slice() {
        [one] => one.clone(),
        [schema, one] if schema == "public" => one.clone(),
        _ => {
            return Err(EddyError::not_supported(format!(
                "qualified name \"{name}\": eddy objects live in schema public"
            )))
        }
    };
    check_object_name(&one)?;
    Ok(one)
}

/// Refuse object names that could be mistaken for paths or break logs and
/// messages: empty names, `/` or `\\`, `..`, NUL and other control
/// characters (SQLSTATE 42602). eddy never builds a path from a name (storage
/// is named by catalog id); this keeps such names out of the catalog too.
pub fn check_object_name(name: &str) -> Result<()> {
    let bad = if name.is_empty() {
        Some("it is empty")
    } else if name.contains(['/', '\\']) {
        Some("it contains a slash")
    } else if name.contains("..") {
        Some("it contains \"..\"")
    } else if name.chars().any(char::is_control) {
        Some("it contains a control character")
    } else {
        None
    };
    match bad {
        Some(why) => Err(EddyError::InvalidName(format!(
            "invalid object name {}: {why}",
            quote_for_message(name)
        ))),
        None => Ok(()),
    }
}

/// `name` in double quotes for a message, control characters escaped.
fn quote_for_message(name: &str) -> String {
    format!("\"{}\"", name.escape_debug())
}

fn parse_create_stream(sql: &str, st: StatementTokens) -> Result<Statement> {
    let perr = |e| parser_error(sql, e);
    // Column types such as `STRUCT<a INT, b VARCHAR>` and `T[]` parse in the
    // generic dialect, not the Postgres one.
    let mut p = Parser::new(&COLUMN_DIALECT).with_tokens_with_locations(st.tokens);
    p.expect_keyword(Keyword::CREATE).map_err(perr)?;
    let kind = if p.parse_keyword(Keyword::TABLE) {
        ObjectKind::Table
    } else {
        p.next_token(); // SOURCE
        ObjectKind::Source
    };
    let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = normalize_object_name(&p.parse_object_name(false).map_err(perr)?)?;
    let mut columns = Vec::new();
    let mut watermark = None;
    let mut primary_key = Vec::new();
    let mut key_clauses = 0;
    // The column list is optional for connectors with standard columns (nexmark); others say
    // they need columns when the source is created.
    let mut in_columns = p.consume_token(&Token::LParen);
    while in_columns {
        if is_word(&p.peek_token().token, "WATERMARK") {
            p.next_token();
            p.expect_keyword(Keyword::FOR).map_err(perr)?;
            let column = normalize_ident(&p.parse_identifier().map_err(perr)?);
            p.expect_keyword(Keyword::AS).map_err(perr)?;
            let expr = p.parse_expr().map_err(perr)?;
            if watermark.is_some() {
                return Err(EddyError::syntax(format!(
                    "{} \"{name}\" has more than one WATERMARK clause",
                    kind.noun()
                )));
            }
            watermark = Some(WatermarkDef { column, expr });
        } else if p.parse_keywords(&[Keyword::PRIMARY, Keyword::KEY]) {
            let cols = p
                .parse_parenthesized_column_list(
                    datafusion::sql::sqlparser::parser::IsOptional::Mandatory,
                    false,
                )
                .map_err(perr)?;
            primary_key.extend(cols.iter().map(normalize_ident));
            key_clauses += 1;
        } else {
            let mut col = p.parse_column_def().map_err(perr)?;
            let before = col.options.len();
            col.options
                .retain(|o| !matches!(o.option, ast::ColumnOption::PrimaryKey(_)));
            if col.options.len() != before {
                primary_key.push(normalize_ident(&col.name));
                key_clauses += 1;
            }
            columns.push(col);
        }
        if p.consume_token(&Token::Comma) {
            continue;
        }
        p.expect_token(&Token::RParen).map_err(perr)?;
        in_columns = false;
    }
    let mut includes = Vec::new();
    if p.parse_keyword(Keyword::INCLUDE) {
        loop {
            let t = p.next_token();
            let item = match &t.token {
                Token::Word(w) => w.value.to_lowercase(),
                other => {
                    return Err(EddyError::Syntax {
                        message: format!(
                            "syntax error: expected partition, offset, timestamp, key or file after INCLUDE, found {other}"
                        ),
                        position: Some(tokens::char_position(sql, t.span.start)),
                    })
                }
            };
            let column = if p.parse_keyword(Keyword::AS) {
                normalize_ident(&p.parse_identifier().map_err(perr)?)
            } else {
                item.clone()
            };
            includes.push((item, column));
            if !p.consume_token(&Token::Comma) {
                break;
            }
        }
    }
    let Options { options, secrets } = if p.parse_keyword(Keyword::WITH) {
        parse_options(sql, &mut p)?
    } else {
        Options::default()
    };
    expect_end(sql, &mut p)?;
    if kind == ObjectKind::Table && !includes.is_empty() {
        return Err(EddyError::syntax(format!(
            "table \"{name}\" is fed by INSERT and has no metadata to INCLUDE"
        )));
    }
    if kind == ObjectKind::Source && !options.contains_key("connector") {
        return Err(EddyError::InvalidParameter {
            message: format!("source \"{name}\" needs a connector"),
            hint: Some("Add WITH (connector = 'datagen', …).".into()),
        });
    }
    if kind == ObjectKind::Table && options.contains_key("connector") {
        return Err(EddyError::InvalidParameter {
            message: format!("table \"{name}\" is fed by INSERT and takes no connector"),
            hint: Some("Use CREATE SOURCE for a connector.".into()),
        });
    }
    if key_clauses > 1 {
        return Err(EddyError::InvalidParameter {
            message: format!("multiple primary keys for table \"{name}\" are not allowed"),
            hint: None,
        });
    }
    let keyed_format = options
        .get("format")
        .is_some_and(|f| KEYED_FORMATS.contains(&f.to_lowercase().as_str()));
    if kind == ObjectKind::Source && !primary_key.is_empty() && !keyed_format {
        return Err(EddyError::NotSupported {
            message: format!(
                "source \"{name}\" has a PRIMARY KEY but its format is not keyed: records of \
                 format '{}' are appended, not upserted",
                options.get("format").map_or("json", String::as_str)
            ),
            hint: Some(
                "Use format = 'upsert_json' or 'upsert_avro' (a null value deletes the Kafka \
                 key's row), 'debezium_json' or 'debezium_avro' (change events), or drop the \
                 PRIMARY KEY."
                    .into(),
            ),
        });
    }
    if kind == ObjectKind::Source && primary_key.is_empty() && keyed_format {
        return Err(EddyError::InvalidParameter {
            message: format!(
                "source \"{name}\" with format '{}' needs a PRIMARY KEY: its records update and \
                 delete rows by key",
                options.get("format").map_or("", String::as_str)
            ),
            hint: Some("Add PRIMARY KEY (…) after the columns.".into()),
        });
    }
    let format = options.get("format").map(|f| f.to_lowercase());
    if let Some(f) = format.filter(|f| REGISTRY_FORMATS.contains(&f.as_str())) {
        if !options.contains_key("schema.registry.url")
            && !secrets.contains_key("schema.registry.url")
        {
            return Err(EddyError::InvalidParameter {
                message: format!(
                    "source \"{name}\" with format '{f}' needs a schema registry: its records \
                     name their writer schemas by id"
                ),
                hint: Some(
                    "Add 'schema.registry.url' = 'http://…' (and 'schema.registry.username' / \
                     'schema.registry.password' if it asks for them)."
                        .into(),
                ),
            });
        }
    }
    Ok(Statement::CreateStream(Box::new(CreateStream {
        kind,
        name,
        if_not_exists,
        columns,
        watermark,
        includes,
        primary_key,
        options,
        secrets,
        sql: st.text,
    })))
}

fn parse_create_sink(sql: &str, st: StatementTokens) -> Result<Statement> {
    let perr = |e| parser_error(sql, e);
    let mut p = parser_for(st.tokens);
    p.expect_keyword(Keyword::CREATE).map_err(perr)?;
    p.next_token(); // SINK
    let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = normalize_object_name(&p.parse_object_name(false).map_err(perr)?)?;
    p.expect_keyword(Keyword::FROM).map_err(perr)?;
    let from = normalize_object_name(&p.parse_object_name(false).map_err(perr)?)?;
    let Options { options, secrets } = if p.parse_keyword(Keyword::WITH) {
        parse_options(sql, &mut p)?
    } else {
        Options::default()
    };
    expect_end(sql, &mut p)?;
    if !options.contains_key("connector") {
        return Err(EddyError::InvalidParameter {
            message: format!("sink \"{name}\" needs a connector"),
            hint: Some(
                "Add WITH (connector = 'kafka', topic = '…', 'properties.bootstrap.server' = '…')."
                    .into(),
            ),
        });
    }
    Ok(Statement::CreateSink(CreateSink {
        name,
        if_not_exists,
        from,
        options,
        secrets,
        sql: st.text,
    }))
}

fn parse_create_view(sql: &str, st: StatementTokens, explain: bool) -> Result<CreateView> {
    let perr = |e| parser_error(sql, e);
    let mut tokens = st.tokens;
    let emit = match strip_emit_clause(&mut tokens) {
        Some(EmitClause::OnWindowClose) => EmitMode::OnWindowClose,
        _ => EmitMode::OnUpdate,
    };
    tokens::rewrite_flink_windows(&mut tokens);
    let as_of = tokens::strip_system_time(&mut tokens);
    let mut p = parser_for(tokens);
    if explain {
        p.next_token();
    }
    p.expect_keyword(Keyword::CREATE).map_err(perr)?;
    let or_replace = p.parse_keywords(&[Keyword::OR, Keyword::REPLACE]);
    p.expect_keywords(&[Keyword::MATERIALIZED, Keyword::VIEW])
        .map_err(perr)?;
    let at = p.peek_token();
    let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    if or_replace && if_not_exists {
        // PostgreSQL has no CREATE OR REPLACE … IF NOT EXISTS either.
        return Err(EddyError::Syntax {
            message: "syntax error at or near \"IF\": OR REPLACE and IF NOT EXISTS cannot be \
                      combined"
                .into(),
            position: Some(tokens::char_position(sql, at.span.start)),
        });
    }
    let name = normalize_object_name(&p.parse_object_name(false).map_err(perr)?)?;
    let options = if p.parse_keyword(Keyword::WITH) {
        let o = parse_options(sql, &mut p)?;
        if let Some(k) = o.secrets.keys().next() {
            return Err(EddyError::invalid(format!(
                "option '{k}' of a materialized view cannot be a secret"
            )));
        }
        o.options
    } else {
        BTreeMap::new()
    };
    p.expect_keyword(Keyword::AS).map_err(perr)?;
    let query = p.parse_query().map_err(perr)?;
    expect_end(sql, &mut p)?;
    Ok(CreateView {
        name,
        if_not_exists,
        or_replace,
        query,
        emit,
        options,
        sql: st.text,
        as_of,
    })
}

/// `WITH (…)` options: plain values, and those that name a secret.
#[derive(Default)]
pub(super) struct Options {
    pub(super) options: BTreeMap<String, String>,
    pub(super) secrets: BTreeMap<String, String>,
}

/// `( key = value, … )` where key is a word, dotted words or a string, and
/// value a string, number, word, or `SECRET name` (see [`access`]).
pub(super) fn parse_options(sql: &str, p: &mut Parser) -> Result<Options> {
    let perr = |e| parser_error(sql, e);
    p.expect_token(&Token::LParen).map_err(perr)?;
    let mut out = Options::default();
    if p.consume_token(&Token::RParen) {
        return Ok(out);
    }
    loop {
        let mut key = String::new();
        loop {
            let t = p.next_token();
            match &t.token {
                Token::Word(w) => key.push_str(&w.value),
                Token::SingleQuotedString(s) => key.push_str(s),
                Token::Number(n, _) => key.push_str(n),
                _ => {
                    return Err(EddyError::Syntax {
                        message: format!(
                            "syntax error: expected an option name, found {}",
                            t.token
                        ),
                        position: Some(tokens::char_position(sql, t.span.start)),
                    })
                }
            }
            if !p.consume_token(&Token::Period) {
                break;
            }
            key.push('.');
        }
        p.expect_token(&Token::Eq).map_err(perr)?;
        let key = key.to_lowercase();
        let t = p.next_token();
        if is_word(&t.token, "SECRET") && matches!(p.peek_token().token, Token::Word(_)) {
            let secret = normalize_ident(&p.parse_identifier().map_err(perr)?);
            if out.secrets.insert(key.clone(), secret).is_some() {
                return Err(EddyError::syntax(format!("option '{key}' given twice")));
            }
        } else {
            if access::is_credential_option(&key) {
                return Err(EddyError::InvalidParameter {
                    message: format!(
                        "option '{key}' holds a credential and must come from a secret, not be \
                     written in the statement"
                    ),
                    hint: Some(format!(
                        "CREATE SECRET name AS '…'; then write '{key}' = SECRET name."
                    )),
                });
            }
            let value = match &t.token {
                Token::SingleQuotedString(s) => s.clone(),
                Token::Number(n, _) => n.clone(),
                Token::Word(w) => w.value.clone(),
                Token::Minus => match p.next_token().token {
                    Token::Number(n, _) => format!("-{n}"),
                    other => {
                        return Err(EddyError::syntax(format!(
                            "syntax error: expected a number after '-', found {other}"
                        )))
                    }
                },
                _ => {
                    return Err(EddyError::Syntax {
                        message: format!(
                            "syntax error: expected a value for option '{key}', found {}",
                            t.token
                        ),
                        position: Some(tokens::char_position(sql, t.span.start)),
                    })
                }
            };
            if out.options.insert(key.clone(), value).is_some() {
                return Err(EddyError::syntax(format!("option '{key}' given twice")));
            }
        }
        if out.options.contains_key(&key) && out.secrets.contains_key(&key) {
            return Err(EddyError::syntax(format!("option '{key}' given twice")));
        }
        if p.consume_token(&Token::Comma) {
            continue;
        }
        p.expect_token(&Token::RParen).map_err(perr)?;
        return Ok(out);
    }
}

fn expect_end(sql: &str, p: &mut Parser) -> Result<()> {
    let t = p.peek_token();
    if t.token == Token::EOF {
        Ok(())
    } else {
        Err(EddyError::Syntax {
            message: format!("syntax error at or near \"{}\"", t.token),
            position: Some(tokens::char_position(sql, t.span.start)),
        })
    }
}

/// Parse `kind` words: TABLE(S) | SOURCE(S) | MATERIALIZED VIEW(S).
fn parse_kind(p: &mut Parser, plural: bool) -> Option<ObjectKind> {
    let t = p.peek_token().token;
    let (table, source, mat, sink) = if plural {
        ("TABLES", "SOURCES", "VIEWS", "SINKS")
    } else {
        ("TABLE", "SOURCE", "VIEW", "SINK")
    };
    if is_word(&t, sink) {
        p.next_token();
        return Some(ObjectKind::Sink);
    }
    if is_word(&t, table) {
        p.next_token();
        Some(ObjectKind::Table)
    } else if is_word(&t, source) {
        p.next_token();
        Some(ObjectKind::Source)
    } else if is_word(&t, "MATERIALIZED") {
        p.next_token();
        if is_word(&p.peek_token().token, mat) {
            p.next_token();
            Some(ObjectKind::MaterializedView)
        } else {
            None
        }
    } else {
        None
    }
}

fn parse_show(sql: &str, st: &StatementTokens) -> Result<Option<Statement>> {
    let perr = |e| parser_error(sql, e);
    let mut p = parser_for(st.tokens.clone());
    let first = p.next_token().token;
    if is_word(&first, "DESCRIBE") || is_word(&first, "DESC") {
        let name = normalize_object_name(&p.parse_object_name(false).map_err(perr)?)?;
        expect_end(sql, &mut p)?;
        return Ok(Some(Statement::Describe(name)));
    }
    if is_word(&p.peek_token().token, "CREATE") {
        p.next_token();
        let Some(kind) = parse_kind(&mut p, false) else {
            return Err(EddyError::syntax(
                "syntax error: expected TABLE, SOURCE, MATERIALIZED VIEW or SINK after SHOW CREATE",
            ));
        };
        let name = normalize_object_name(&p.parse_object_name(false).map_err(perr)?)?;
        expect_end(sql, &mut p)?;
        return Ok(Some(Statement::ShowCreate(kind, name)));
    }
    match parse_kind(&mut p, true) {
        Some(kind) => {
            expect_end(sql, &mut p)?;
            Ok(Some(Statement::ShowObjects(kind)))
        }
        None => Ok(None),
    }
}

fn parse_drop(sql: &str, st: &StatementTokens) -> Result<Option<Statement>> {
    let perr = |e| parser_error(sql, e);
    let mut p = parser_for(st.tokens.clone());
    p.next_token();
    let Some(kind) = parse_kind(&mut p, false) else {
        return Ok(None);
    };
    let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
    let names = p
        .parse_comma_separated(|p| p.parse_object_name(false))
        .map_err(perr)?
        .iter()
        .map(normalize_object_name)
        .collect::<Result<Vec<_>>>()?;
    let cascade = p.parse_keyword(Keyword::CASCADE);
    if !cascade {
        let _restrict = p.parse_keyword(Keyword::RESTRICT);
    }
    expect_end(sql, &mut p)?;
    Ok(Some(Statement::Drop {
        kind,
        names,
        if_exists,
        cascade,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(sql: &str) -> Statement {
        let mut v = parse(sql).unwrap();
        assert_eq!(v.len(), 1);
        v.remove(0)
    }

    #[test]
    fn create_table_with_watermark() {
        let Statement::CreateStream(c) = one(
            "CREATE TABLE Bids (auction BIGINT NOT NULL, ts TIMESTAMP NOT NULL, \
             WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)",
        ) else {
            panic!("not a stream")
        };
        assert_eq!(c.name, "bids");
        assert_eq!(c.kind, ObjectKind::Table);
        assert_eq!(c.columns.len(), 2);
        let wm = c.watermark.unwrap();
        assert_eq!(wm.column, "ts");
        assert_eq!(wm.expr.to_string(), "ts - INTERVAL '2' SECOND");
    }

    #[test]
    fn create_source_with_options() {
        let Statement::CreateStream(c) = one(
            "CREATE SOURCE g (id BIGINT) WITH (connector = 'datagen', rows_per_second = 10, \
             'fields.id.kind' = 'sequence', fields.id.start = '1')",
        ) else {
            panic!("not a stream")
        };
        assert_eq!(c.kind, ObjectKind::Source);
        assert_eq!(c.options["connector"], "datagen");
        assert_eq!(c.options["rows_per_second"], "10");
        assert_eq!(c.options["fields.id.kind"], "sequence");
        assert_eq!(c.options["fields.id.start"], "1");
    }

    #[test]
    fn create_view_emit_and_flink_form() {
        let Statement::CreateView(v) = one(
            "CREATE MATERIALIZED VIEW v AS SELECT window_start, count(*) FROM \
             TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '10' SECOND)) \
             GROUP BY window_start EMIT ON WINDOW CLOSE;",
        ) else {
            panic!("not a view")
        };
        assert_eq!(v.emit, EmitMode::OnWindowClose);
        assert!(v
            .query
            .to_string()
            .contains("TUMBLE(bids, ts, INTERVAL '10' SECOND)"));
    }

    #[test]
    fn show_drop_describe() {
        assert!(matches!(
            one("SHOW SOURCES"),
            Statement::ShowObjects(ObjectKind::Source)
        ));
        assert!(matches!(
            one("show materialized views"),
            Statement::ShowObjects(ObjectKind::MaterializedView)
        ));
        assert!(matches!(one("DESCRIBE x"), Statement::Describe(n) if n == "x"));
        assert!(matches!(one("checkpoint"), Statement::Checkpoint));
        assert!(parse("CHECKPOINT now").is_err());
        let Statement::Drop {
            kind,
            names,
            if_exists,
            cascade,
        } = one("DROP MATERIALIZED VIEW IF EXISTS a, b CASCADE")
        else {
            panic!("not a drop")
        };
        assert_eq!(kind, ObjectKind::MaterializedView);
        assert_eq!(names, vec!["a", "b"]);
        assert!(if_exists && cascade);
        assert!(matches!(
            one("SET extra_float_digits = 3"),
            Statement::Session(_)
        ));
    }

    #[test]
    fn syntax_error_has_position() {
        let e = parse("SELEC 1").unwrap_err();
        assert_eq!(e.sqlstate(), "42601");
        let e = parse("CREATE TABLE t (a BIGINT, WATERMARK ts AS ts)").unwrap_err();
        let EddyError::Syntax { position, .. } = e else {
            panic!("{e}")
        };
        assert_eq!(position, Some(37));
    }
}
