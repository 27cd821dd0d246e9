//! A connection's settings: `SET`, `SET LOCAL`, `RESET` and `SHOW`, answered as PostgreSQL
//! answers them, and honest where eddy differs.
//!
//! Each setting eddy knows is one of three kinds:
//! - **honoured**: eddy reads it (`statement_timeout`, `extra_float_digits`, `state_ttl`,
//!   `application_name`);
//! - **one value**: eddy works one way (UTC, UTF8, ISO dates, the `public` schema); that value
//!   (and its spellings) is accepted, any other is refused with 0A000 and a hint, never
//!   accepted and then ignored;
//! - **inert**: tunes PostgreSQL's own machinery, which eddy has not (`work_mem`,
//!   `lock_timeout`, …): accepted and shown back, with no effect — tools send them on connect.
//!
//! Any other name is refused as PostgreSQL refuses one it does not know (42704), except names
//! with a dot, which PostgreSQL keeps as custom settings (`myapp.tenant`); `datafusion.*` is
//! refused ([`super::session::refuse_shared_settings`]).
//!
//! Values live in the connection's metadata: `set:<name>` for the session, `local:<name>` for
//! `SET LOCAL` (until the transaction block ends). A value the client sent at startup
//! (`application_name`, `extra_float_digits`) counts for honoured settings; for one-value
//! settings it is not shown, because eddy does not use it.

use std::collections::HashMap;

use datafusion::sql::sqlparser::ast::{self, ContextModifier, Expr, Set};

use crate::error::{EddyError, Result};

mod checks;
use checks::*;

const SESSION: &str = "set:";
const LOCAL: &str = "local:";

/// How eddy treats a setting (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Honoured,
    OneValue,
    Inert,
}

/// One setting eddy knows.
struct Setting {
    /// PostgreSQL's spelling: `SHOW`'s column and the `ParameterStatus` name.
    name: &'static str,
    /// The value before any `SET`.
    default: &'static str,
    kind: Kind,
    /// Reported to the client when it changes (PostgreSQL's `GUC_REPORT` settings).
    report: bool,
    /// Checks a value and gives the form stored and shown; a value eddy does not support is
    /// an error that says so.
    check: fn(&str) -> Result<String>,
}

const SETTINGS: &[Setting] = &[
    Setting {
        name: "application_name",
        default: "",
        kind: Kind::Honoured,
        report: true,
        check: application_name,
    },
    Setting {
        name: "bytea_output",
        default: "hex",
        kind: Kind::OneValue,
        report: false,
        check: bytea_output,
    },
    Setting {
        name: "client_encoding",
        default: "UTF8",
        kind: Kind::OneValue,
        report: true,
        check: client_encoding,
    },
    Setting {
        name: "DateStyle",
        default: "ISO, MDY",
        kind: Kind::OneValue,
        report: true,
        check: date_style,
    },
    Setting {
        name: "extra_float_digits",
        default: "1",
        kind: Kind::Honoured,
        report: false,
        check: extra_float_digits,
    },
    Setting {
        name: "IntervalStyle",
        default: "postgres",
        kind: Kind::OneValue,
        report: true,
        check: interval_style,
    },
    Setting {
        name: "search_path",
        default: "public",
        kind: Kind::OneValue,
        report: false,
        check: search_path,
    },
    Setting {
        name: "standard_conforming_strings",
        default: "on",
        kind: Kind::OneValue,
        report: true,
        check: standard_conforming_strings,
    },
    Setting {
        name: "state_ttl",
        default: "",
        kind: Kind::Honoured,
        report: false,
        check: state_ttl,
    },
    Setting {
        name: "statement_timeout",
        default: "0",
        kind: Kind::Honoured,
        report: false,
        check: statement_timeout,
    },
    Setting {
        name: "TimeZone",
        default: "Etc/UTC",
        kind: Kind::OneValue,
        report: true,
        check: time_zone,
    },
    inert("check_function_bodies", "on"),
    inert("client_min_messages", "notice"),
    inert("default_table_access_method", "heap"),
    inert("default_tablespace", ""),
    inert("idle_in_transaction_session_timeout", "0"),
    inert("jit", "on"),
    inert("lock_timeout", "0"),
    inert("maintenance_work_mem", "64MB"),
    inert("row_security", "on"),
    inert("synchronous_commit", "on"),
    inert("work_mem", "4MB"),
    inert("xmloption", "content"),
];

const fn inert(name: &'static str, default: &'static str) -> Setting {
    Setting {
        name,
        default,
        kind: Kind::Inert,
        report: false,
        check: any_value,
    }
}

fn find(name: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.name.eq_ignore_ascii_case(name))
}

/// What a `SET` or `RESET` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// The command tag (`SET`, `RESET`).
    pub tag: &'static str,
    /// Settings whose new value the client is told (`ParameterStatus`): name, value.
    pub report: Vec<(String, String)>,
    /// A warning for the client (PostgreSQL's, e.g. `SET LOCAL` outside a transaction block).
    pub warning: Option<String>,
}

/// Apply `SET …` / `RESET …` to `metadata`; `None` if `stmt` is neither. `in_block` says
/// whether a transaction block is open (`SET LOCAL` lasts until it ends).
pub fn apply(
    stmt: &ast::Statement,
    metadata: &mut HashMap<String, String>,
    in_block: bool,
) -> Option<Result<Applied>> {
    match stmt {
        ast::Statement::Set(set) => Some(apply_set(set, metadata, in_block)),
        ast::Statement::Reset(r) => Some(apply_reset(&r.reset, metadata)),
        _ => None,
    }
}

fn apply_set(set: &Set, metadata: &mut HashMap<String, String>, in_block: bool) -> Result<Applied> {
    let (local, name, value) = match set {
        Set::SingleAssignment {
            scope,
            hivevar: false,
            variable,
            values,
        } => {
            let local = match scope {
                None | Some(ContextModifier::Session) => false,
                Some(ContextModifier::Local) => true,
                Some(other) => {
                    return Err(EddyError::not_supported(format!(
                        "SET {other} is not supported"
                    )))
                }
            };
            let value = set_value(values)?;
            (local, variable.to_string(), value)
        }
        Set::SetTimeZone { local, value } => (*local, "TimeZone".to_string(), set_value([value])?),
        Set::SetNames { charset_name, .. } => (
            false,
            "client_encoding".to_string(),
            Some(charset_name.value.clone()),
        ),
        Set::SetNamesDefault {} => (false, "client_encoding".to_string(), None),
        // Each statement is its own transaction whatever the mode; BEGIN takes modes alike.
        Set::SetTransaction { .. } => {
            return Ok(Applied {
                tag: "SET",
                ..Applied::default()
            })
        }
        Set::SetRole { .. } => return Err(EddyError::not_supported("SET ROLE is not supported")),
        Set::SetSessionAuthorization(_) => {
            return Err(EddyError::not_supported(
                "SET SESSION AUTHORIZATION is not supported",
            ))
        }
        other => {
            return Err(EddyError::not_supported(format!(
                "this form of SET is not supported: {other}"
            )))
        }
    };
    let lower = name.to_ascii_lowercase();
    let warning = (local && !in_block)
        .then(|| "SET LOCAL can only be used in transaction blocks".to_string());
    let Some(setting) = find(&lower) else {
        if lower.contains('.') {
            // PostgreSQL keeps any dotted name as a custom setting.
            if warning.is_none() {
                store(metadata, local, &lower, value);
            }
            return Ok(Applied {
                tag: "SET",
                report: vec![],
                warning,
            });
        }
        return Err(unknown(&name));
    };
    let value = match value {
        Some(v) => Some((setting.check)(&v)?),
        None => None,
    };
    if warning.is_some() {
        // As in PostgreSQL: checked, then without effect.
        return Ok(Applied {
            tag: "SET",
            report: vec![],
            warning,
        });
    }
    store(metadata, local, &lower, value);
    Ok(Applied {
        tag: "SET",
        report: reported(setting, metadata),
        warning: None,
    })
}

fn apply_reset(reset: &ast::Reset, metadata: &mut HashMap<String, String>) -> Result<Applied> {
    let mut report = vec![];
    match reset {
        ast::Reset::ALL => {
            let changed: Vec<&Setting> = SETTINGS
                .iter()
                .filter(|s| metadata.contains_key(&key(SESSION, s.name)))
                .collect();
            metadata.retain(|k, _| !k.starts_with(SESSION));
            for s in changed {
                report.extend(reported(s, metadata));
            }
        }
        ast::Reset::ConfigurationParameter(name) => {
            let name = name.to_string();
            let lower = name.to_ascii_lowercase();
            match find(&lower) {
                Some(s) => {
                    metadata.remove(&key(SESSION, s.name));
                    report = reported(s, metadata);
                }
                None if lower.contains('.') => {
                    metadata.remove(&key(SESSION, &lower));
                }
                None => return Err(unknown(&name)),
            }
        }
    }
    Ok(Applied {
        tag: "RESET",
        report,
        warning: None,
    })
}

fn reported(s: &Setting, metadata: &HashMap<String, String>) -> Vec<(String, String)> {
    match s.report {
        true => vec![(s.name.to_string(), value_of(s, metadata))],
        false => vec![],
    }
}

fn key(scope: &str, name: &str) -> String {
    format!("{scope}{}", name.to_ascii_lowercase())
}

fn store(metadata: &mut HashMap<String, String>, local: bool, name: &str, value: Option<String>) {
    let scope = if local { LOCAL } else { SESSION };
    match value {
        Some(v) => metadata.insert(key(scope, name), v),
        None if local => metadata.insert(key(scope, name), default_of(name)),
        None => metadata.remove(&key(scope, name)),
    };
}

fn default_of(name: &str) -> String {
    find(name)
        .map(|s| s.default.to_string())
        .unwrap_or_default()
}

/// The text of a `SET`'s value: `None` for `DEFAULT` (and `LOCAL` of `SET TIME ZONE`).
fn set_value<'a>(values: impl IntoIterator<Item = &'a Expr>) -> Result<Option<String>> {
    let mut parts = vec![];
    for v in values {
        let text = match v {
            Expr::Value(v) => match &v.value {
                ast::Value::SingleQuotedString(s)
                | ast::Value::EscapedStringLiteral(s)
                | ast::Value::DollarQuotedString(ast::DollarQuotedString { value: s, .. }) => {
                    s.clone()
                }
                ast::Value::Number(n, _) => n.to_string(),
                ast::Value::Boolean(b) => if *b { "on" } else { "off" }.to_string(),
                other => other.to_string(),
            },
            Expr::Identifier(id) if id.quote_style.is_none() => {
                let word = id.value.to_ascii_lowercase();
                if word == "default" || word == "local" {
                    return Ok(None);
                }
                word
            }
            Expr::Identifier(id) => id.value.clone(),
            Expr::UnaryOp {
                op: ast::UnaryOperator::Minus,
                expr,
            } => format!("-{}", set_value([expr.as_ref()])?.unwrap_or_default()),
            other => other.to_string(),
        };
        parts.push(text);
    }
    Ok(Some(parts.join(", ")))
}

fn unknown(name: &str) -> EddyError {
    EddyError::Data {
        code: "42704",
        message: format!("unrecognized configuration parameter \"{name}\""),
    }
}

/// The transaction block ended: `SET LOCAL` values go.
pub fn end_transaction(metadata: &mut HashMap<String, String>) {
    metadata.retain(|k, _| !k.starts_with(LOCAL));
}

/// The value a setting has now: `SET LOCAL`, then `SET`, then (for honoured settings) what
/// the client sent at startup, then the default.
fn value_of(s: &Setting, metadata: &HashMap<String, String>) -> String {
    let lower = s.name.to_ascii_lowercase();
    metadata
        .get(&key(LOCAL, &lower))
        .or_else(|| metadata.get(&key(SESSION, &lower)))
        .cloned()
        .or_else(|| {
            (s.kind == Kind::Honoured)
                .then(|| startup_value(s, metadata))
                .flatten()
        })
        .unwrap_or_else(|| s.default.to_string())
}

fn startup_value(s: &Setting, metadata: &HashMap<String, String>) -> Option<String> {
    let sent = metadata
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(s.name))
        .map(|(_, v)| v)?;
    (s.check)(sent).ok()
}

/// The current value of setting `name` (any spelling), if eddy knows it.
pub fn current(metadata: &HashMap<String, String>, name: &str) -> Option<String> {
    find(name).map(|s| value_of(s, metadata))
}

/// `SHOW name`'s column and value, or `SHOW ALL`'s rows (name, setting, description).
pub enum Shown {
    /// One setting: its column name and value.
    One(String, String),
    /// Every setting eddy knows.
    All(Vec<[String; 3]>),
}

/// Answer `SHOW …` for a connection's setting; `None` for settings fixed for the server's
/// life, which [`crate::sql`] turns into a query.
pub fn show(stmt: &ast::Statement, metadata: &HashMap<String, String>) -> Option<Result<Shown>> {
    let ast::Statement::ShowVariable { variable } = stmt else {
        return None;
    };
    let words: Vec<String> = variable.iter().map(|w| w.value.clone()).collect();
    let name = words.join(" ");
    let lower = name.to_ascii_lowercase();
    if lower == "all" {
        let rows = SETTINGS
            .iter()
            .map(|s| {
                [
                    s.name.to_string(),
                    value_of(s, metadata),
                    describe(s.kind).to_string(),
                ]
            })
            .collect();
        return Some(Ok(Shown::All(rows)));
    }
    let lower = if lower == "time zone" {
        "timezone".to_string()
    } else {
        lower
    };
    if let Some(s) = find(&lower) {
        return Some(Ok(Shown::One(s.name.to_string(), value_of(s, metadata))));
    }
    if words.len() > 1 {
        // A custom setting: sqlparser reads `SHOW myapp.tenant` as two words.
        let dotted = words.join(".").to_ascii_lowercase();
        let value = metadata
            .get(&key(LOCAL, &dotted))
            .or_else(|| metadata.get(&key(SESSION, &dotted)));
        if let Some(v) = value {
            return Some(Ok(Shown::One(dotted, v.clone())));
        }
    }
    if words.len() == 1 && crate::functions::settings::fixed_setting(&lower).is_some() {
        return None;
    }
    if lower == "transaction isolation level" {
        return None;
    }
    Some(Err(unknown(&name)))
}

/// The column `SHOW …` answers with, for the extended protocol's Describe.
pub fn show_columns(stmt: &ast::Statement) -> Vec<String> {
    match show(stmt, &HashMap::new()) {
        Some(Ok(Shown::One(column, _))) => vec![column],
        Some(Ok(Shown::All(_))) => vec!["name".into(), "setting".into(), "description".into()],
        _ => vec!["setting".into()],
    }
}

fn describe(kind: Kind) -> &'static str {
    match kind {
        Kind::Honoured => "used by eddy",
        Kind::OneValue => "eddy supports this value only",
        Kind::Inert => "accepted for PostgreSQL clients; no effect in eddy",
    }
}

/// The connection's `statement_timeout` in milliseconds (0: none).
pub fn statement_timeout_ms(metadata: &HashMap<String, String>) -> u64 {
    current(metadata, "statement_timeout")
        .and_then(|v| duration_ms(&v).ok())
        .unwrap_or(0)
}

/// The connection's `extra_float_digits`.
pub fn float_digits(metadata: &HashMap<String, String>) -> i8 {
    current(metadata, "extra_float_digits")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// The connection's `state_ttl`, if one is set.
pub fn state_ttl_of(metadata: &HashMap<String, String>) -> Option<String> {
    current(metadata, "state_ttl").filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stmt(sql: &str) -> ast::Statement {
        match crate::sql::parse(sql).unwrap().remove(0) {
            crate::sql::Statement::Session(s) => *s,
            other => panic!("not a session statement: {other:?}"),
        }
    }

    fn set(sql: &str, m: &mut HashMap<String, String>) -> Result<Applied> {
        apply(&stmt(sql), m, false).expect("a SET or RESET")
    }

    fn shown(sql: &str, m: &HashMap<String, String>) -> String {
        match show(&stmt(sql), m) {
            Some(Ok(Shown::One(_, v))) => v,
            _ => panic!("no value for {sql}"),
        }
    }

    #[test]
    fn honoured_settings_are_kept_and_shown_as_postgresql_shows_them() {
        let mut m = HashMap::new();
        assert_eq!(shown("SHOW statement_timeout", &m), "0");
        set("SET statement_timeout = '5000ms'", &mut m).unwrap();
        assert_eq!(shown("SHOW statement_timeout", &m), "5s");
        assert_eq!(statement_timeout_ms(&m), 5000);
        set("SET statement_timeout TO 1500", &mut m).unwrap();
        assert_eq!(shown("SHOW statement_timeout", &m), "1500ms");
        set("SET statement_timeout = '2min'", &mut m).unwrap();
        assert_eq!(statement_timeout_ms(&m), 120_000);
        let e = set("SET statement_timeout = '5 parsecs'", &mut m).unwrap_err();
        assert_eq!(e.sqlstate(), "22023");
        set("SET statement_timeout TO DEFAULT", &mut m).unwrap();
        assert_eq!(statement_timeout_ms(&m), 0);

        set("SET extra_float_digits = 3", &mut m).unwrap();
        assert_eq!(float_digits(&m), 3);
        assert_eq!(
            set("SET extra_float_digits = 9", &mut m)
                .unwrap_err()
                .sqlstate(),
            "22023"
        );
        set("RESET extra_float_digits", &mut m).unwrap();
        assert_eq!(float_digits(&m), 1);

        let applied = set("SET application_name = 'etl'", &mut m).unwrap();
        assert_eq!(
            applied.report,
            vec![("application_name".to_string(), "etl".to_string())]
        );
    }

    #[test]
    fn one_value_settings_take_their_value_and_refuse_others() {
        let mut m = HashMap::new();
        for ok in [
            "SET TIME ZONE 'UTC'",
            "SET TimeZone = 'Etc/UTC'",
            "SET timezone TO 'GMT'",
            "SET search_path TO \"$user\", public",
            "SET search_path = public",
            "SET client_encoding = 'utf-8'",
            "SET NAMES 'UTF8'",
            "SET DateStyle = 'ISO, DMY'",
            "SET standard_conforming_strings = on",
            "SET IntervalStyle = postgres",
            "SET bytea_output = 'hex'",
        ] {
            set(ok, &mut m).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        assert_eq!(shown("SHOW TimeZone", &m), "GMT");
        assert_eq!(shown("SHOW DateStyle", &m), "ISO, DMY");
        for refused in [
            "SET TIME ZONE 'Europe/Berlin'",
            "SET search_path = analytics",
            "SET search_path = ''",
            "SET client_encoding = 'LATIN1'",
            "SET DateStyle = 'German'",
            "SET IntervalStyle = 'iso_8601'",
            "SET bytea_output = 'escape'",
            "SET standard_conforming_strings = off",
        ] {
            let e = set(refused, &mut m).unwrap_err();
            assert_eq!(e.sqlstate(), "0A000", "{refused}: {e}");
        }
        // A refused value changed nothing.
        assert_eq!(shown("SHOW TimeZone", &m), "GMT");
    }

    #[test]
    fn startup_values_count_for_honoured_settings_only() {
        let mut m = HashMap::new();
        m.insert("extra_float_digits".into(), "3".into());
        m.insert("TimeZone".into(), "America/New_York".into());
        assert_eq!(float_digits(&m), 3);
        assert_eq!(shown("SHOW timezone", &m), "Etc/UTC");
    }

    #[test]
    fn unknown_names_are_refused_and_dotted_names_kept() {
        let mut m = HashMap::new();
        let e = set("SET ROLE admin", &mut m).unwrap_err();
        assert_eq!(e.to_string(), "SET ROLE is not supported");
        let e = set("SET no_such_thing = 1", &mut m).unwrap_err();
        assert_eq!(e.sqlstate(), "42704");
        assert_eq!(
            e.to_string(),
            "unrecognized configuration parameter \"no_such_thing\""
        );
        assert!(show(&stmt("SHOW no_such_thing"), &m).unwrap().is_err());
        set("SET myapp.tenant = 'acme'", &mut m).unwrap();
        assert_eq!(shown("SHOW myapp.tenant", &m), "acme");
        set("SET work_mem = '64MB'", &mut m).unwrap();
        assert_eq!(shown("SHOW work_mem", &m), "64MB");
        // Fixed for the server's life: the SQL layer answers it with a query.
        assert!(matches!(
            crate::sql::parse("SHOW server_version").unwrap()[0],
            crate::sql::Statement::Query(..)
        ));
    }

    #[test]
    fn set_local_lasts_until_the_block_ends() {
        let mut m = HashMap::new();
        let applied = set("SET LOCAL statement_timeout = '1s'", &mut m).unwrap();
        assert_eq!(
            applied.warning.as_deref(),
            Some("SET LOCAL can only be used in transaction blocks")
        );
        assert_eq!(statement_timeout_ms(&m), 0);
        set("SET statement_timeout = '5s'", &mut m).unwrap();
        apply(&stmt("SET LOCAL statement_timeout = '1s'"), &mut m, true)
            .unwrap()
            .unwrap();
        assert_eq!(statement_timeout_ms(&m), 1000);
        end_transaction(&mut m);
        assert_eq!(statement_timeout_ms(&m), 5000);
    }

    #[test]
    fn reset_all_reports_what_changed() {
        let mut m = HashMap::new();
        set("SET application_name = 'a'", &mut m).unwrap();
        set("SET state_ttl = '1 hour'", &mut m).unwrap();
        assert_eq!(state_ttl_of(&m).as_deref(), Some("1 hour"));
        let applied = set("RESET ALL", &mut m).unwrap();
        assert_eq!(applied.tag, "RESET");
        assert_eq!(
            applied.report,
            vec![("application_name".to_string(), String::new())]
        );
        assert_eq!(state_ttl_of(&m), None);
        assert!(matches!(
            show(&stmt("SHOW ALL"), &m),
            Some(Ok(Shown::All(rows))) if rows.len() == SETTINGS.len()
        ));
    }
}
