//! The value checks of the settings in [`super::SETTINGS`]: each takes a value as a client
//! wrote it and gives the form stored and shown, or PostgreSQL's error for a bad value, or
//! 0A000 with a hint for a value eddy does not support.

use crate::error::{EddyError, Result};
pub(super) use crate::pgtext::datetime::duration_ms;

pub(super) fn any_value(v: &str) -> Result<String> {
    Ok(v.to_string())
}

fn invalid(name: &str, value: &str, hint: Option<&str>) -> EddyError {
    EddyError::InvalidParameter {
        message: format!("invalid value for parameter \"{name}\": \"{value}\""),
        hint: hint.map(str::to_string),
    }
}

fn one_value(message: String, hint: &str) -> EddyError {
    EddyError::NotSupported {
        message,
        hint: Some(hint.to_string()),
    }
}

pub(super) fn application_name(v: &str) -> Result<String> {
    // PostgreSQL keeps printable ASCII (others become '?') and at most 63 bytes.
    let clean: String = v
        .chars()
        .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
        .take(63)
        .collect();
    Ok(clean)
}

pub(super) fn bytea_output(v: &str) -> Result<String> {
    match v.to_ascii_lowercase().as_str() {
        "hex" => Ok("hex".into()),
        "escape" => Err(one_value(
            "SET bytea_output to 'escape' is not supported: eddy writes bytea in hex".into(),
            "Read the hex form (\\x…) in the client, or encode(col, 'base64') in the query.",
        )),
        _ => Err(invalid(
            "bytea_output",
            v,
            Some("Available values: escape, hex."),
        )),
    }
}

pub(super) fn client_encoding(v: &str) -> Result<String> {
    let norm: String = v
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase();
    match norm.as_str() {
        "utf8" | "unicode" => Ok("UTF8".into()),
        _ => Err(one_value(
            format!("SET client_encoding to '{v}' is not supported: eddy speaks UTF8 only"),
            "Have the client encode and decode UTF8.",
        )),
    }
}

pub(super) fn date_style(v: &str) -> Result<String> {
    let mut output = None;
    let mut order = "MDY";
    for part in v.split(|c: char| c == ',' || c.is_whitespace()) {
        match part.to_ascii_lowercase().as_str() {
            "" => {}
            "iso" => output = Some("ISO"),
            "sql" | "postgres" | "german" => output = Some("other"),
            "mdy" | "us" | "noneuropean" => order = "MDY",
            "dmy" | "european" => order = "DMY",
            "ymd" => order = "YMD",
            _ => return Err(invalid("DateStyle", v, None)),
        }
    }
    match output {
        Some("ISO") | None => Ok(format!("ISO, {order}")),
        _ => Err(one_value(
            format!("SET DateStyle to '{v}' is not supported: eddy writes dates in ISO style"),
            "Format the value in the query: to_char(ts, 'DD.MM.YYYY HH24:MI:SS').",
        )),
    }
}

pub(super) fn extra_float_digits(v: &str) -> Result<String> {
    match v.trim().parse::<i32>() {
        Ok(n) if (-15..=3).contains(&n) => Ok(n.to_string()),
        Ok(n) => Err(EddyError::InvalidParameter {
            message: format!(
                "{n} is outside the valid range for parameter \"extra_float_digits\" (-15 .. 3)"
            ),
            hint: None,
        }),
        Err(_) => Err(EddyError::InvalidParameter {
            message: format!("invalid value for parameter \"extra_float_digits\": \"{v}\""),
            hint: None,
        }),
    }
}

pub(super) fn interval_style(v: &str) -> Result<String> {
    match v.to_ascii_lowercase().as_str() {
        "postgres" => Ok("postgres".into()),
        "postgres_verbose" | "sql_standard" | "iso_8601" => Err(one_value(
            format!(
                "SET IntervalStyle to '{v}' is not supported: eddy writes intervals in the \
                 postgres style"
            ),
            "Take the parts in the query: extract(epoch FROM i), or to_char(i, 'HH24:MI:SS').",
        )),
        _ => Err(invalid(
            "IntervalStyle",
            v,
            Some("Available values: postgres, postgres_verbose, sql_standard, iso_8601."),
        )),
    }
}

pub(super) fn search_path(v: &str) -> Result<String> {
    let schemas: Vec<String> = v
        .split(',')
        .map(|s| s.trim().trim_matches('"').to_string())
        .collect();
    let ok = schemas.iter().any(|s| s == "public")
        && schemas
            .iter()
            .all(|s| matches!(s.as_str(), "public" | "$user" | "pg_catalog"));
    if ok {
        return Ok(v.to_string());
    }
    Err(one_value(
        format!(
            "SET search_path to '{v}' is not supported: eddy finds unqualified names in \
             public (and pg_catalog) only"
        ),
        "Qualify the names of other schemas, as in eddy.sources or information_schema.tables.",
    ))
}

pub(super) fn standard_conforming_strings(v: &str) -> Result<String> {
    match v.to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" => Ok("on".into()),
        "off" | "false" | "no" | "0" => Err(one_value(
            "SET standard_conforming_strings to off is not supported: eddy reads \
             backslashes in '…' literally"
                .into(),
            "Write escapes in E'…' strings, as in E'a\\nb'.",
        )),
        _ => Err(invalid(
            "standard_conforming_strings",
            v,
            Some("Use on or off."),
        )),
    }
}

pub(super) fn state_ttl(v: &str) -> Result<String> {
    crate::plan::parse_state_ttl(v).map(|_| v.to_string())
}

pub(super) fn statement_timeout(v: &str) -> Result<String> {
    let ms = duration_ms(v).map_err(|bad| {
        invalid(
            "statement_timeout",
            v,
            bad.then_some(
                "Valid units for this parameter are \"us\", \"ms\", \"s\", \"min\", \"h\", and \"d\".",
            ),
        )
    })?;
    Ok(show_ms(ms))
}

/// Milliseconds as PostgreSQL shows them: in the largest unit that divides them.
pub(super) fn show_ms(ms: u64) -> String {
    if ms == 0 {
        return "0".into();
    }
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("min", 60_000),
        ("s", 1_000),
    ] {
        if ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

pub(super) fn time_zone(v: &str) -> Result<String> {
    let norm = v.trim().to_ascii_lowercase();
    let utc = matches!(
        norm.as_str(),
        "utc"
            | "etc/utc"
            | "gmt"
            | "etc/gmt"
            | "z"
            | "zulu"
            | "universal"
            | "etc/universal"
            | "uct"
            | "utc0"
            | "gmt0"
            | "0"
            | "+0"
            | "-0"
            | "+00"
            | "+00:00"
            | "00:00"
    ) || norm.starts_with("interval '+00:00'")
        || norm.starts_with("interval '00:00'")
        || norm.starts_with("interval '0'");
    if utc {
        return Ok(v.trim().to_string());
    }
    Err(one_value(
        format!("SET TimeZone to '{v}' is not supported: eddy runs every session in UTC"),
        "Convert in the query: ts AT TIME ZONE 'Europe/Berlin'.",
    ))
}
