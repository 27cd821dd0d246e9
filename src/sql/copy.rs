//! `COPY … TO STDOUT` and `COPY … FROM STDIN`: what the statement asks for,
//! checked as PostgreSQL checks it (options, their combinations), before any
//! row moves. The rows themselves are read and written by
//! [`crate::pgtext::copy`]; the wire side is `server::copy`.

use datafusion::sql::sqlparser::ast;

use super::statement::{normalize_ident, normalize_object_name};
use crate::error::{EddyError, Result};
pub use crate::pgtext::copy::{CopyFormat, CopyOptions, ForceQuote};

/// Which way rows go.
#[derive(Debug, Clone)]
pub enum CopyDirection {
    /// `COPY table [(cols)] TO STDOUT` or `COPY (query) TO STDOUT`: the query whose
    /// rows are sent.
    To {
        /// The query, as SQL text.
        query: String,
    },
    /// `COPY (SUBSCRIBE …) TO STDOUT`: changes sent as they come, until the client stops it.
    Subscribe(super::subscribe::Subscribe),
    /// `COPY table [(cols)] FROM STDIN`.
    From {
        /// The table (normalised name).
        table: String,
        /// The columns the rows give, in order (empty: all, in table order).
        columns: Vec<String>,
    },
}

/// A classified `COPY`.
#[derive(Debug, Clone)]
pub struct CopyStatement {
    /// Which way, and what.
    pub direction: CopyDirection,
    /// How rows are written.
    pub options: CopyOptions,
}

fn invalid(message: impl Into<String>) -> EddyError {
    EddyError::Syntax {
        message: message.into(),
        position: None,
    }
}

/// Classify `COPY`, or say why it cannot run.
pub fn classify_copy(stmt: &ast::Statement) -> Result<CopyStatement> {
    let ast::Statement::Copy {
        source,
        to,
        target,
        options,
        legacy_options,
        values,
    } = stmt
    else {
        return Err(EddyError::Internal("not a COPY".into()));
    };
    if !values.is_empty() {
        return Err(EddyError::not_supported(
            "COPY with inline data in the statement text is not supported: send the rows as \
             COPY data (psql: \\copy, or COPY … FROM STDIN followed by the rows)",
        ));
    }
    match (target, *to) {
        (ast::CopyTarget::Stdout, true) | (ast::CopyTarget::Stdin, false) => {}
        (ast::CopyTarget::File { .. } | ast::CopyTarget::Program { .. }, _) => {
            return Err(EddyError::NotSupported {
                message: "COPY to or from a file or program on the server is not supported".into(),
                hint: Some(
                    "Use COPY … TO STDOUT / FROM STDIN (psql: \\copy reads and writes files on \
                     the client), or read a file on the server with CREATE SOURCE … WITH \
                     (connector = 'file', …)."
                        .into(),
                ),
            })
        }
        (ast::CopyTarget::Stdin, true) => return Err(invalid("COPY TO cannot write to STDIN")),
        (ast::CopyTarget::Stdout, false) => {
            return Err(invalid("COPY FROM cannot read from STDOUT"))
        }
    }
    let options = copy_options(options, legacy_options)?;
    let direction = match (source, *to) {
        (ast::CopySource::Query(q), true) => CopyDirection::To {
            query: q.to_string(),
        },
        (ast::CopySource::Query(_), false) => {
            return Err(invalid("COPY FROM takes a table, not a query"))
        }
        (
            ast::CopySource::Table {
                table_name,
                columns,
            },
            true,
        ) => {
            let table = quoted_name(table_name)?;
            let cols = if columns.is_empty() {
                "*".to_string()
            } else {
                columns
                    .iter()
                    .map(|c| quote_ident(&normalize_ident(c)))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            CopyDirection::To {
                query: format!("SELECT {cols} FROM {table}"),
            }
        }
        (
            ast::CopySource::Table {
                table_name,
                columns,
            },
            false,
        ) => CopyDirection::From {
            table: normalize_object_name(table_name)?,
            columns: columns.iter().map(normalize_ident).collect(),
        },
    };
    Ok(CopyStatement { direction, options })
}

/// A table name as SQL, each part quoted as needed.
fn quoted_name(name: &ast::ObjectName) -> Result<String> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| {
            p.as_ident()
                .map(|i| quote_ident(&normalize_ident(i)))
                .ok_or_else(|| invalid(format!("invalid table name in COPY: {name}")))
        })
        .collect::<Result<_>>()?;
    Ok(parts.join("."))
}

/// `name` as an identifier that reads back as itself.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn one_byte(what: &str, c: char) -> Result<char> {
    if c.is_ascii() && c != '\n' && c != '\r' {
        Ok(c)
    } else {
        Err(invalid(format!(
            "COPY {what} must be a single one-byte character"
        )))
    }
}

/// The options of `WITH (…)` and of the older `WITH CSV HEADER …` form, checked.
fn copy_options(
    options: &[ast::CopyOption],
    legacy: &[ast::CopyLegacyOption],
) -> Result<CopyOptions> {
    let mut format = CopyFormat::Text;
    let mut delimiter = None;
    let mut null = None;
    let mut header = false;
    let mut quote = None;
    let mut escape = None;
    let mut force_quote = ForceQuote::None;
    for o in options {
        use ast::CopyOption as O;
        match o {
            O::Format(f) => {
                format = match f.value.to_lowercase().as_str() {
                    "text" => CopyFormat::Text,
                    "csv" => CopyFormat::Csv,
                    "binary" => CopyFormat::Binary,
                    other => {
                        return Err(invalid(format!("COPY format \"{other}\" not recognized")))
                    }
                }
            }
            O::Freeze(_) | O::Encoding(_) => {}
            O::Delimiter(c) => delimiter = Some(one_byte("delimiter", *c)?),
            O::Null(s) => null = Some(s.clone()),
            O::Header(h) => header = *h,
            O::Quote(c) => quote = Some(one_byte("quote", *c)?),
            O::Escape(c) => escape = Some(one_byte("escape", *c)?),
            O::ForceQuote(cols) => force_quote = force_quote_of(cols),
            O::ForceNotNull(_) | O::ForceNull(_) => {
                return Err(EddyError::not_supported(
                    "COPY options FORCE_NOT_NULL and FORCE_NULL are not supported",
                ))
            }
        }
    }
    for o in legacy {
        use ast::CopyLegacyOption as L;
        match o {
            L::Binary => format = CopyFormat::Binary,
            L::Delimiter(c) => delimiter = Some(one_byte("delimiter", *c)?),
            L::Null(s) => null = Some(s.clone()),
            L::Header => header = true,
            L::Csv(csv) => {
                format = CopyFormat::Csv;
                for c in csv {
                    use ast::CopyLegacyCsvOption as C;
                    match c {
                        C::Header => header = true,
                        C::Quote(q) => quote = Some(one_byte("quote", *q)?),
                        C::Escape(e) => escape = Some(one_byte("escape", *e)?),
                        C::ForceQuote(cols) => force_quote = force_quote_of(cols),
                        C::ForceNotNull(_) => {
                            return Err(EddyError::not_supported(
                                "COPY option FORCE NOT NULL is not supported",
                            ))
                        }
                    }
                }
            }
            other => {
                return Err(invalid(format!(
                    "COPY option {other} is not a PostgreSQL option"
                )))
            }
        }
    }
    let csv = format == CopyFormat::Csv;
    if format == CopyFormat::Binary && (delimiter.is_some() || null.is_some()) {
        return Err(invalid("cannot specify DELIMITER or NULL in BINARY mode"));
    }
    if !csv && (quote.is_some() || escape.is_some() || force_quote != ForceQuote::None) {
        return Err(invalid(
            "COPY QUOTE, ESCAPE and FORCE_QUOTE are available only in CSV mode",
        ));
    }
    let delimiter = delimiter.unwrap_or(if csv { ',' } else { '\t' });
    let quote = quote.unwrap_or('"');
    let escape = escape.unwrap_or(quote);
    let null = null.unwrap_or_else(|| if csv { String::new() } else { "\\N".into() });
    if !csv && "\\.abcdefghijklmnopqrstuvwxyz0123456789".contains(delimiter) {
        return Err(invalid(format!("COPY delimiter cannot be \"{delimiter}\"")));
    }
    if csv && delimiter == quote {
        return Err(invalid("COPY delimiter and quote must be different"));
    }
    if null.contains(delimiter) {
        return Err(invalid(
            "COPY delimiter character must not appear in the NULL specification",
        ));
    }
    if null.contains('\n') || null.contains('\r') {
        return Err(invalid(
            "COPY null representation cannot use newline or carriage return",
        ));
    }
    Ok(CopyOptions {
        format,
        delimiter,
        null,
        header,
        quote,
        escape,
        force_quote,
    })
}

fn force_quote_of(cols: &[ast::Ident]) -> ForceQuote {
    if cols.len() == 1 && cols[0].value == "*" && cols[0].quote_style.is_none() {
        ForceQuote::All
    } else {
        ForceQuote::Columns(cols.iter().map(normalize_ident).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(sql: &str) -> Result<CopyStatement> {
        let stmts = datafusion::sql::sqlparser::parser::Parser::parse_sql(
            &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
            sql,
        )
        .map_err(|e| invalid(e.to_string()))?;
        classify_copy(&stmts[0])
    }

    #[test]
    fn defaults_follow_the_format() {
        let c = copy("COPY t TO STDOUT").unwrap();
        assert_eq!(c.options.format, CopyFormat::Text);
        assert_eq!(
            (c.options.delimiter, c.options.null.as_str()),
            ('\t', "\\N")
        );
        let CopyDirection::To { query } = c.direction else {
            panic!("direction")
        };
        assert_eq!(query, "SELECT * FROM \"t\"");
        let c = copy("COPY t (a, \"B\") TO STDOUT WITH (FORMAT csv, HEADER)").unwrap();
        assert_eq!(c.options.format, CopyFormat::Csv);
        assert_eq!((c.options.delimiter, c.options.null.as_str()), (',', ""));
        assert!(c.options.header);
        let CopyDirection::To { query } = c.direction else {
            panic!("direction")
        };
        assert_eq!(query, "SELECT \"a\", \"B\" FROM \"t\"");
        // psycopg2's copy_expert habit: the pre-9.0 form.
        let c = copy("COPY (SELECT 1) TO STDOUT WITH CSV HEADER").unwrap();
        assert_eq!(c.options.format, CopyFormat::Csv);
        assert!(c.options.header);
        let c =
            copy("COPY t (a, b) FROM STDIN WITH (FORMAT csv, DELIMITER ';', NULL 'x')").unwrap();
        let CopyDirection::From { table, columns } = c.direction else {
            panic!("direction")
        };
        assert_eq!(
            (table.as_str(), columns),
            ("t", vec!["a".to_string(), "b".to_string()])
        );
        assert_eq!((c.options.delimiter, c.options.null.as_str()), (';', "x"));
    }

    #[test]
    fn wrong_combinations_are_refused_as_postgres_does() {
        let msg = |sql: &str| copy(sql).unwrap_err().to_string();
        assert!(msg("COPY t TO STDOUT (FORMAT text, QUOTE '''')").contains("only in CSV mode"));
        assert!(msg("COPY t TO STDOUT (FORMAT binary, NULL 'x')").contains("BINARY mode"));
        assert!(msg("COPY t TO STDOUT (FORMAT csv, DELIMITER '\"')").contains("must be different"));
        assert!(msg("COPY t TO STDOUT (FORMAT xml)").contains("not recognized"));
        let e = copy("COPY t TO '/tmp/x'").unwrap_err();
        assert_eq!(e.sqlstate(), "0A000");
        assert_eq!(
            copy("COPY (SELECT 1) FROM STDIN").unwrap_err().sqlstate(),
            "42601"
        );
    }
}
