//! What eddy tells clients it is, in PostgreSQL's shape: `version()`, `SHOW server_version`, the
//! `server_version` a client receives at startup, and `current_setting(name)` for the settings
//! fixed for the server's life.
//!
//! Clients and drivers parse these: SQLAlchemy reads the major and minor version out of
//! `version()` with a pattern that expects `PostgreSQL 16.6 …`, psql and JDBC read
//! `server_version` to choose the catalog queries they send. eddy answers as the PostgreSQL
//! release whose protocol and catalog it follows, and names itself after it.

use datafusion::arrow::array::{Array, AsArray, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};

/// The PostgreSQL release whose wire protocol and catalog eddy follows.
pub const PG_VERSION: &str = "16.6";

/// `server_version_num` of [`PG_VERSION`].
pub const PG_VERSION_NUM: &str = "160006";

/// `SHOW server_version`, and the `server_version` sent at startup: `16.6 (eddy 0.1.0)`, as a
/// packaged PostgreSQL says `16.6 (Debian 16.6-1.pgdg120+1)`.
pub fn server_version() -> String {
    format!("{PG_VERSION} (eddy {})", env!("CARGO_PKG_VERSION"))
}

/// `SELECT version()`.
pub fn version_text() -> String {
    format!(
        "PostgreSQL {PG_VERSION} (eddy {}) on {}-{}, compiled by rustc, 64-bit",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH,
        std::env::consts::OS
    )
}

/// The value of a setting fixed for the server's life, by its (case-insensitive) name.
pub fn fixed_setting(name: &str) -> Option<String> {
    Some(match name.to_ascii_lowercase().as_str() {
        "server_version" => server_version(),
        "server_version_num" => PG_VERSION_NUM.into(),
        "server_encoding" | "client_encoding" => "UTF8".into(),
        "integer_datetimes" | "standard_conforming_strings" => "on".into(),
        "max_identifier_length" => "63".into(),
        "max_index_keys" => "32".into(),
        "block_size" => "8192".into(),
        "lc_collate" | "lc_ctype" => "C".into(),
        "default_transaction_read_only" | "transaction_read_only" | "in_hot_standby" => {
            "off".into()
        }
        // Names resolve in public whatever a session sets (SHOW search_path says so too).
        "search_path" => "public".into(),
        // Each statement applies when it runs; what a client reads is committed.
        "transaction_isolation" | "default_transaction_isolation" => "read committed".into(),
        _ => return None,
    })
}

/// `version()`: see [`version_text`].
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Version {
    signature: Signature,
}

impl Default for Version {
    fn default() -> Self {
        Version {
            signature: Signature::exact(vec![], Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for Version {
    fn name(&self) -> &str {
        "version"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, _: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(
            version_text(),
        ))))
    }
}

/// `current_setting(name [, missing_ok])` for the settings of [`fixed_setting`]. A setting a
/// session can change (`TimeZone`, `statement_timeout`, …) is refused with a hint to `SHOW` it:
/// a function evaluated without the session would answer the server's default, not the
/// session's value.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CurrentSetting {
    signature: Signature,
}

impl Default for CurrentSetting {
    fn default() -> Self {
        CurrentSetting {
            signature: Signature::one_of(
                vec![
                    TypeSignature::Exact(vec![DataType::Utf8]),
                    TypeSignature::Exact(vec![DataType::Utf8, DataType::Boolean]),
                ],
                Volatility::Stable,
            ),
        }
    }
}

impl ScalarUDFImpl for CurrentSetting {
    fn name(&self) -> &str {
        "current_setting"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let missing_ok = match args.args.get(1) {
            None => false,
            Some(ColumnarValue::Scalar(ScalarValue::Boolean(b))) => b.unwrap_or(false),
            Some(_) => return plan_err!("current_setting: missing_ok must be a constant"),
        };
        let rows = args.number_rows;
        let names = args.args[0].to_array(rows)?;
        let names = names.as_string::<i32>();
        let mut out = Vec::with_capacity(names.len());
        for i in 0..names.len() {
            if names.is_null(i) {
                out.push(None);
                continue;
            }
            let name = names.value(i);
            match fixed_setting(name) {
                Some(v) => out.push(Some(v)),
                None if missing_ok => out.push(None),
                None => {
                    return exec_err!(
                        "unrecognized configuration parameter \"{name}\" for current_setting() \
                         (eddy answers only the settings fixed for the server's life; use \
                         SHOW {name} for a session's setting)"
                    )
                }
            }
        }
        let array = StringArray::from(out);
        Ok(match args.args[0] {
            ColumnarValue::Scalar(_) => {
                ColumnarValue::Scalar(ScalarValue::try_from_array(&array, 0)?)
            }
            ColumnarValue::Array(_) => ColumnarValue::Array(std::sync::Arc::new(array)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlalchemys_version_pattern_reads_major_and_minor() {
        // SQLAlchemy's psycopg dialect: `.*(?:PostgreSQL|EnterpriseDB) (\d+)\.?(\d+)?…`.
        let v = version_text();
        let rest = v
            .split("PostgreSQL ")
            .nth(1)
            .expect("PostgreSQL in version()");
        let mut nums = rest.split(|c: char| !c.is_ascii_digit());
        assert_eq!(nums.next(), Some("16"));
        assert_eq!(nums.next(), Some("6"));
        assert!(server_version().starts_with("16.6 (eddy "));
        assert_eq!(
            fixed_setting("SERVER_VERSION_NUM").as_deref(),
            Some("160006")
        );
        assert_eq!(fixed_setting("TimeZone"), None);
    }
}
