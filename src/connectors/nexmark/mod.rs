//! The `nexmark` connector: the Nexmark benchmark's person, auction and bid events, from the
//! `nexmark` crate's generator (the one RisingWave and Arroyo use).
//!
//! ```sql
//! CREATE SOURCE bid WITH (connector = 'nexmark', 'nexmark.table.type' = 'bid',
//!                         'nexmark.events' = 10000000, 'nexmark.rate' = 0);
//! ```
//!
//! Each event kind is its own stream. Without a column list a source gets the kind's standard
//! columns ([`standard_columns`]) and `WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND`.
//! A column list may name any of the standard columns, in any order and with any type they cast
//! to; a list holding only a `WATERMARK` clause keeps the standard columns with that watermark.
//!
//! Options ([`NexmarkOptions`]): the kind, how many events of all kinds the generator emits (the
//! source ends after them, and its watermark then moves to the end of time so that every window
//! closes), the delivery rate, the event-time rate, the base time, the generator's proportions
//! and ratios, and how many threads generate an unthrottled source. Output is a pure function of
//! the options (except `'nexmark.base.time' = 'now'`): the same options give the same rows, in the
//! same order, however many threads make them, and a checkpoint resumes at the next event.

mod generate;
mod options;

pub use generate::{read_nexmark, NexmarkBatches};
pub use options::{EventKind, NexmarkOptions};

use datafusion::sql::sqlparser::ast::{ColumnDef, Expr};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;

use crate::error::{EddyError, Result};
use crate::sql::{CreateStream, WatermarkDef};

/// The watermark delay of a source declared without a `WATERMARK` clause.
pub const DEFAULT_WATERMARK: &str = "date_time - INTERVAL '4' SECOND";

/// The standard columns of an event kind, as a column list in SQL.
pub fn standard_columns(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Person => {
            "id BIGINT NOT NULL, name VARCHAR NOT NULL, email_address VARCHAR NOT NULL, \
             credit_card VARCHAR NOT NULL, city VARCHAR NOT NULL, state VARCHAR NOT NULL, \
             date_time TIMESTAMP(3) NOT NULL, extra VARCHAR NOT NULL"
        }
        EventKind::Auction => {
            "id BIGINT NOT NULL, item_name VARCHAR NOT NULL, description VARCHAR NOT NULL, \
             initial_bid BIGINT NOT NULL, reserve BIGINT NOT NULL, date_time TIMESTAMP(3) NOT NULL, \
             expires TIMESTAMP(3) NOT NULL, seller BIGINT NOT NULL, category BIGINT NOT NULL, \
             extra VARCHAR NOT NULL"
        }
        EventKind::Bid => {
            "auction BIGINT NOT NULL, bidder BIGINT NOT NULL, price BIGINT NOT NULL, \
             channel VARCHAR NOT NULL, url VARCHAR NOT NULL, date_time TIMESTAMP(3) NOT NULL, \
             extra VARCHAR NOT NULL"
        }
    }
}

fn parser_error(e: impl std::fmt::Display) -> EddyError {
    EddyError::Internal(format!("nexmark standard columns: {e}"))
}

/// Fill in a nexmark source's standard columns and watermark when its statement has no columns.
/// Other statements pass through unchanged.
pub fn with_standard_columns(mut c: CreateStream) -> Result<CreateStream> {
    if c.options.get("connector").map(String::as_str) != Some("nexmark") || !c.columns.is_empty() {
        return Ok(c);
    }
    let kind = EventKind::from_options(&c.options)?;
    let mut p = Parser::new(&GenericDialect {})
        .try_with_sql(standard_columns(kind))
        .map_err(parser_error)?;
    let mut columns: Vec<ColumnDef> = Vec::new();
    loop {
        columns.push(p.parse_column_def().map_err(parser_error)?);
        if !p.consume_token(&Token::Comma) {
            break;
        }
    }
    c.columns = columns;
    if c.watermark.is_none() {
        let expr: Expr = Parser::new(&GenericDialect {})
            .try_with_sql(DEFAULT_WATERMARK)
            .and_then(|mut p| p.parse_expr())
            .map_err(parser_error)?;
        c.watermark = Some(WatermarkDef {
            column: "date_time".into(),
            expr,
        });
    }
    Ok(c)
}
