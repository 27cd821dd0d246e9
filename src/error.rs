//! eddy's error type: one enum by category, each mapped to a Postgres SQLSTATE.
//!
//! Messages follow Postgres style: a lower-case primary message that says what
//! is wrong (and where, when a position is known), an optional detail and an
//! optional hint that says how to fix it.

use datafusion::error::DataFusionError;
use pgwire::error::{ErrorInfo, PgWireError};

/// Deepest expression nesting a statement may have (estimated on tokens;
/// checked in `sql::complexity`).
pub const MAX_EXPRESSION_DEPTH: usize = 1_000;

/// The result type used throughout eddy.
pub type Result<T, E = EddyError> = std::result::Result<T, E>;

/// Every error eddy reports, by category.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EddyError {
    /// The SQL text does not parse (SQLSTATE 42601).
    #[error("{message}")]
    Syntax {
        /// What is wrong and where.
        message: String,
        /// 1-based character position in the statement, when known.
        position: Option<usize>,
    },
    /// A name that cannot name an object (42602).
    #[error("{0}")]
    InvalidName(String),
    /// A statement nests too deeply to be planned safely (54001).
    #[error("{message}")]
    TooComplex {
        /// What bound was crossed.
        message: String,
        /// 1-based character position where it was crossed, when known.
        position: Option<usize>,
    },
    /// The user's role may not run the statement (42501).
    #[error("{0}")]
    InsufficientPrivilege(String),
    /// A named object does not exist (42P01).
    #[error("{0}")]
    UndefinedObject(String),
    /// A column does not exist (42703).
    #[error("{0}")]
    UndefinedColumn(String),
    /// An object with this name already exists (42P07).
    #[error("{0}")]
    DuplicateObject(String),
    /// A function with this name and arguments already exists (42723).
    #[error("{0}")]
    DuplicateFunction(String),
    /// A function does not exist (42883).
    #[error("{0}")]
    UndefinedFunction(String),
    /// Valid SQL that eddy does not support (yet) (0A000).
    #[error("{message}")]
    NotSupported {
        /// What is not supported.
        message: String,
        /// How to get what the user wants instead.
        hint: Option<String>,
    },
    /// An invalid parameter or option value (22023).
    #[error("{message}")]
    InvalidParameter {
        /// What is wrong with the value.
        message: String,
        /// How to fix it.
        hint: Option<String>,
    },
    /// Other objects depend on the one being dropped (2BP01).
    #[error("{message}")]
    DependentObjects {
        /// What depends on what.
        message: String,
        /// Names of the dependants.
        detail: String,
    },
    /// A NOT NULL column received a NULL (23502).
    #[error("{0}")]
    NotNullViolation(String),
    /// A date/time value out of the range eddy can carry (22008).
    #[error("{0}")]
    DatetimeOverflow(String),
    /// Wrong data type for a value (42804).
    #[error("{0}")]
    DatatypeMismatch(String),
    /// A bound (rows, bytes, connections) was hit (53400).
    #[error("{0}")]
    LimitExceeded(String),
    /// Planning failed for a reason in the user's query (42000 range via DataFusion).
    #[error("{0}")]
    Plan(String),
    /// Execution failed (XX000 unless DataFusion says otherwise).
    #[error("{0}")]
    Execution(String),
    /// A connector failed (58000).
    #[error("{0}")]
    Connector(String),
    /// The statement was canceled: a cancel request or `statement_timeout` (57014).
    #[error("{0}")]
    Canceled(String),
    /// Memory for a query ran out (53200).
    #[error("{message}")]
    OutOfMemory {
        /// What could not be allocated.
        message: String,
    },
    /// The server is shutting down or an object is being dropped (57P01).
    #[error("{0}")]
    Shutdown(String),
    /// A value that cannot be used (a data exception: 22P02 invalid text,
    /// 22003 out of range, 22007 bad date/time, 22012 division by zero) or an
    /// operator that does not exist for its types (42883), or a role or
    /// secret that does not exist (42704) or already does (42710).
    #[error("{message}")]
    Data {
        /// The SQLSTATE.
        code: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A bug: an invariant did not hold (XX000).
    #[error("internal error: {0}")]
    Internal(String),
}

impl EddyError {
    /// Shorthand for [`EddyError::NotSupported`] without a hint.
    pub fn not_supported(message: impl Into<String>) -> Self {
        EddyError::NotSupported {
            message: message.into(),
            hint: None,
        }
    }

    /// Shorthand for [`EddyError::InvalidParameter`] without a hint.
    pub fn invalid(message: impl Into<String>) -> Self {
        EddyError::InvalidParameter {
            message: message.into(),
            hint: None,
        }
    }

    /// Shorthand for a syntax error without a position.
    pub fn syntax(message: impl Into<String>) -> Self {
        EddyError::Syntax {
            message: message.into(),
            position: None,
        }
    }

    /// The Postgres SQLSTATE for this error.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            EddyError::Syntax { .. } => "42601",
            EddyError::InvalidName(_) => "42602",
            EddyError::InsufficientPrivilege(_) => "42501",
            EddyError::TooComplex { .. } => "54001",
            EddyError::UndefinedObject(_) => "42P01",
            EddyError::UndefinedColumn(_) => "42703",
            EddyError::DuplicateObject(_) => "42P07",
            EddyError::DuplicateFunction(_) => "42723",
            EddyError::UndefinedFunction(_) => "42883",
            EddyError::NotSupported { .. } => "0A000",
            EddyError::InvalidParameter { .. } => "22023",
            EddyError::DependentObjects { .. } => "2BP01",
            EddyError::NotNullViolation(_) => "23502",
            EddyError::DatatypeMismatch(_) => "42804",
            EddyError::DatetimeOverflow(_) => "22008",
            EddyError::LimitExceeded(_) => "53400",
            EddyError::Plan(_) => "42000",
            EddyError::Execution(_) => "XX000",
            EddyError::Connector(_) => "58000",
            EddyError::Canceled(_) => "57014",
            EddyError::OutOfMemory { .. } => "53200",
            EddyError::Shutdown(_) => "57P01",
            EddyError::Data { code, .. } => code,
            EddyError::Internal(_) => "XX000",
        }
    }

    /// Convert into the pgwire error sent to the client.
    pub fn into_pg(self) -> PgWireError {
        let code = self.sqlstate().to_string();
        let mut info = ErrorInfo::new("ERROR".to_string(), code, self.to_string());
        match self {
            EddyError::Syntax {
                position: Some(p), ..
            } => info.position = Some(p.to_string()),
            EddyError::TooComplex { position, .. } => {
                info.position = position.map(|p| p.to_string());
                info.hint = Some(format!(
                    "Split the expression into smaller ones (e.g. over several views), or \
                     use IN (...) instead of a long chain of OR. At most {} levels are allowed.",
                    MAX_EXPRESSION_DEPTH
                ));
            }
            EddyError::NotSupported { hint, .. } | EddyError::InvalidParameter { hint, .. } => {
                info.hint = hint
            }
            EddyError::OutOfMemory { .. } => {
                info.hint = Some(
                    "Ad-hoc queries share the memory set by --query-memory-mb; narrow the query \
                     (filters, LIMIT, fewer columns) or start eddy with more."
                        .into(),
                )
            }
            EddyError::DependentObjects { detail, .. } => {
                info.detail = Some(detail);
                info.hint = Some("Use DROP ... CASCADE to drop the dependent objects too.".into())
            }
            _ => {}
        }
        PgWireError::UserError(Box::new(info))
    }
}

impl From<DataFusionError> for EddyError {
    fn from(e: DataFusionError) -> Self {
        classify_datafusion(e)
    }
}

impl From<datafusion::arrow::error::ArrowError> for EddyError {
    fn from(e: datafusion::arrow::error::ArrowError) -> Self {
        classify_arrow(&e)
    }
}

/// Arrow's errors about values (casts, parsing, arithmetic) are data
/// exceptions in PostgreSQL's terms, not internal errors.
fn classify_arrow(e: &datafusion::arrow::error::ArrowError) -> EddyError {
    use datafusion::arrow::error::ArrowError as A;
    let message = e.to_string();
    let lower = message.to_lowercase();
    let code = match e {
        A::DivideByZero => "22012",
        A::ArithmeticOverflow(_) => "22003",
        A::CastError(_)
            if lower.contains("timestamp") && lower.contains("exceeds the representable") =>
        {
            "22008" // datetime field overflow
        }
        A::CastError(_) if lower.contains("overflow") || lower.contains("out of range") => "22003",
        A::CastError(_) => "22P02",
        A::ParseError(_) if lower.contains("timestamp") || lower.contains("date") => "22007",
        A::ParseError(_) => "22P02",
        A::InvalidArgumentError(_)
            if lower.contains("arithmetic operation") || lower.contains("binary operation") =>
        {
            "42883"
        }
        A::InvalidArgumentError(_)
            if lower.contains("too large to store") || lower.contains("too small to store") =>
        {
            "22003"
        }
        A::ComputeError(_) if lower.contains("overflow") => "22003",
        A::ComputeError(_) if lower.contains("square root of a negative") => "2201F",
        A::ComputeError(_)
            if lower.contains("regular expression did not compile")
                || lower.contains("regex parse error") =>
        {
            "2201B"
        }
        _ => return EddyError::Execution(message),
    };
    EddyError::Data { code, message }
}

/// Map a DataFusion error to the category a Postgres client expects.
fn classify_datafusion(e: DataFusionError) -> EddyError {
    let root = e.find_root();
    match root {
        DataFusionError::SQL(err, _) => EddyError::syntax(err.to_string()),
        DataFusionError::Execution(msg)
        | DataFusionError::Plan(msg)
        | DataFusionError::Internal(msg)
            if no_such_function(msg) =>
        {
            EddyError::Data {
                code: "42883",
                message: msg.clone(),
            }
        }
        DataFusionError::Plan(msg) => classify_plan_message(msg),
        DataFusionError::SchemaError(err, _) => schema_error(err),
        DataFusionError::NotImplemented(msg) => EddyError::not_supported(msg.clone()),
        DataFusionError::ArrowError(err, _) => classify_arrow(err),
        DataFusionError::Execution(msg) => execution_message(msg),
        DataFusionError::ResourcesExhausted(msg) => EddyError::OutOfMemory {
            message: format!("out of memory for queries: {msg}"),
        },
        DataFusionError::External(err) => match err.downcast_ref::<EddyError>() {
            Some(eddy) => eddy.clone(),
            // A function's own error (regexp_replace's regex::Error, …).
            None => execution_message(&err.to_string()),
        },
        other => EddyError::Execution(other.message().to_string()),
    }
}

/// DataFusion's name-resolution errors, by their kind, in PostgreSQL's words.
fn schema_error(err: &datafusion::common::SchemaError) -> EddyError {
    use datafusion::common::SchemaError as S;
    match err {
        // PostgreSQL: column "x" does not exist; column t.x does not exist.
        S::FieldNotFound { field, .. } => EddyError::UndefinedColumn(match &field.relation {
            Some(r) => format!("column {}.{} does not exist", r.table(), field.name),
            None => format!("column \"{}\" does not exist", field.name),
        }),
        S::AmbiguousReference { field } => EddyError::Data {
            code: "42702",
            message: format!("column reference \"{}\" is ambiguous", field.name),
        },
        S::DuplicateQualifiedField { .. } | S::DuplicateUnqualifiedField { .. } => {
            EddyError::Data {
                code: "42701",
                message: lowercase_first(&err.to_string()),
            }
        }
    }
}

/// Execution errors that are the user's values, with PostgreSQL's codes.
fn execution_message(msg: &str) -> EddyError {
    let code = if msg.contains("decimal_places") && msg.contains("out of supported") {
        "22003"
    } else if msg.contains("requires non-empty constant string")
        || msg.contains("factorial of a negative number")
    {
        "22023"
    } else if msg.contains("Overflow happened") {
        "22003"
    } else if msg.contains("exceeds the representable") || msg.ends_with("is out of range") {
        "22008" // datetime field overflow: make_date(…, 13, …), dates beyond Arrow's range
    } else if msg.starts_with("Error parsing timestamp from") {
        "22007"
    } else if msg.contains("must be non-null scalar") {
        "0A000" // date_trunc's granularity from a column: DataFusion takes only a constant
    } else if msg.contains("got invalid index") || msg.contains("out of bounds") {
        "2202E" // array_subscript_error
    } else if msg.contains("regex parse error") {
        "2201B" // invalid_regular_expression
    } else if msg.starts_with("Error parsing") {
        "22007"
    } else if argument_message(msg) {
        "22023" // invalid_parameter_value
    } else {
        return EddyError::Execution(msg.to_string());
    };
    EddyError::Data {
        code,
        message: msg.to_string(),
    }
}

/// How DataFusion's functions say an argument is not one they take (found by
/// tests/expression_sweep.rs: these reached clients as XX000, an internal error).
fn argument_message(msg: &str) -> bool {
    [
        "requires",
        "expects",
        "must be",
        "must not be",
        "can't be",
        "only support",
        "only accepts",
        "not allowed",
        "Cannot generate",
        "invalid Unicode",
        "is not Struct",
    ]
    .iter()
    .any(|p| msg.contains(p))
}

/// DataFusion's ways of saying that no function or operator takes these
/// argument types (PostgreSQL: 42883 undefined_function).
fn no_such_function(msg: &str) -> bool {
    let lower = msg.to_lowercase();
    [
        "coercion failed",
        "failed to match any signature",
        "unsupported data type",
        "unsupported list datatype",
        "not supported for",
    ]
    .iter()
    .any(|p| lower.contains(p))
}

fn classify_plan_message(msg: &str) -> EddyError {
    if let Some(name) = between(msg, "table '", "' not found") {
        let short = name.rsplit('.').next().unwrap_or(name);
        return EddyError::UndefinedObject(format!("relation \"{short}\" does not exist"));
    }
    if msg.contains("Invalid function") || msg.contains("No function matches") {
        // PostgreSQL: function … does not exist.
        return EddyError::Data {
            code: "42883",
            message: lowercase_first(msg),
        };
    }
    // PostgreSQL's codes for the type and name errors DataFusion's planner reports.
    let code = if msg.contains("requires a boolean expression") {
        "42804" // argument of NOT must be type boolean
    } else if msg.contains("Unary operator")
        || msg.contains("Cannot infer common string type for string concat")
        || msg.contains("does not support zero arguments")
        || msg.contains("Failed to coerce arguments to satisfy a call to")
        || msg.contains("Cannot get result type for temporal operation")
        || msg.contains("Cannot get result type for arithmetic operation")
        || msg.contains("Negation only supports")
        || (msg.contains("requires") && msg.contains(", but received"))
        || (msg.contains("expects") && msg.contains(" but received "))
        || (msg.contains("expects") && msg.contains("arguments but received"))
    {
        "42883" // operator (or function of that many arguments) does not exist
    } else if msg.contains("Cannot infer common argument type")
        || msg.contains("compatible types")
        || msg.contains("Cannot coerce")
        || (msg.contains("Failed to coerce then") && msg.contains("to common type"))
        || msg.contains("There isn't a common type to coerce")
    {
        "42804" // CASE types … cannot be matched
    } else if msg.contains("Cannot automatically convert") {
        "42846" // cannot cast type … to …
    } else if msg.contains("Aggregate function calls cannot be nested")
        || msg.contains("must be in GROUP BY or an aggregate function")
        || msg.contains("Aggregate functions are not allowed in the WHERE clause")
    {
        "42803" // grouping_error, as PostgreSQL
    } else if msg.contains("Substring without for/from") {
        "42601"
    } else if msg.contains("Projections require unique expression names") {
        return EddyError::NotSupported {
            message: lowercase_first(msg),
            hint: Some(
                "Unlike PostgreSQL, eddy needs distinct output column names: add AS name to \
                 repeated expressions."
                    .into(),
            ),
        };
    } else if msg.contains("Ambiguous reference") {
        "42702"
    } else if msg.contains("non-boolean predicate") {
        "42804" // argument of WHERE must be type boolean
    } else {
        return EddyError::Plan(msg.to_string());
    };
    EddyError::Data {
        code,
        message: msg.to_string(),
    }
}

/// The text between `start` and the next `end` in `s`.
fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = s.find(start)? + start.len();
    let len = s[from..].find(end)?;
    Some(&s[from..from + len])
}

fn lowercase_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_by_category() {
        assert_eq!(EddyError::syntax("x").sqlstate(), "42601");
        assert_eq!(EddyError::UndefinedObject("x".into()).sqlstate(), "42P01");
        assert_eq!(EddyError::DuplicateObject("x".into()).sqlstate(), "42P07");
        assert_eq!(EddyError::not_supported("x").sqlstate(), "0A000");
    }

    #[test]
    fn value_errors_are_data_exceptions() {
        use datafusion::arrow::error::ArrowError as A;
        let code =
            |e: A| EddyError::from(DataFusionError::ArrowError(Box::new(e), None)).sqlstate();
        assert_eq!(
            code(A::CastError(
                "Cannot cast string 'abc' to value of Int32 type".into()
            )),
            "22P02"
        );
        assert_eq!(code(A::CastError("Overflowing on NaN".into())), "22003");
        assert_eq!(
            code(A::ParseError("Error parsing timestamp from 'a'".into())),
            "22007"
        );
        assert_eq!(code(A::DivideByZero), "22012");
        assert_eq!(
            code(A::InvalidArgumentError(
                "Invalid arithmetic operation: !Timestamp(ns)".into()
            )),
            "42883"
        );
        assert_eq!(code(A::SchemaError("x".into())), "XX000");
        assert_eq!(
            code(A::InvalidArgumentError(
                "1.00 is too large to store in a Decimal128".into()
            )),
            "22003"
        );
        let e = EddyError::from(DataFusionError::Execution(
            "Function 'round' failed to match any signature".into(),
        ));
        assert_eq!(e.sqlstate(), "42883");
        // Value errors DataFusion's functions raise as plain execution errors (found by
        // tests/postgres_differential.rs, which compares the SQLSTATE class with PostgreSQL's).
        for (msg, code) in [
            ("Month value '-7' is out of range", "22008"),
            ("factorial of a negative number is undefined", "22023"),
            (
                "Overflow happened on FACTORIAL(9223372036854775807)",
                "22003",
            ),
            (
                "Error parsing timestamp from '3' using format '3': input is not enough",
                "22007",
            ),
            (
                "Cannot cast Date32 value -719162 to Timestamp(ns): converted value exceeds the \
                 representable i64 range",
                "22008",
            ),
            (
                "Granularity of `date_trunc` must be non-null scalar Utf8",
                "0A000",
            ),
            ("array_element got invalid index: -9000000000", "2202E"),
            ("regex parse error:\n    (?abc)abc", "2201B"),
            (
                "Error parsing 'abc' as time. Tried formats: [\"%H:%M\"]",
                "22007",
            ),
            ("negative count not allowed: -7", "22023"),
            ("arrays_zip expects array arguments, got Int32", "22023"),
            ("invalid Unicode scalar value: -9000000000", "22023"),
        ] {
            let e = EddyError::from(DataFusionError::Execution(msg.into()));
            assert_eq!(e.sqlstate(), code, "{msg}");
        }
        for (msg, code) in [
            (
                "Unary operator 'NOT' requires a boolean expression, got Int64",
                "42804",
            ),
            ("Unary operator '-' only supports signed numeric", "42883"),
            (
                "Cannot infer common argument type for logical boolean operation",
                "42804",
            ),
            ("Ambiguous reference to unqualified field x", "42702"),
            (
                "Cannot infer common string type for string concat operation Boolean || Int64",
                "42883",
            ),
            (
                "Failed to coerce then (Boolean) and else (Int64) to common types in CASE",
                "42804",
            ),
            (
                "Cannot automatically convert Timestamp(ns) to Boolean",
                "42846",
            ),
            (
                "Function 'power' expects 2 arguments but received 1",
                "42883",
            ),
            (
                "Aggregate function calls cannot be nested: 'count(…)'",
                "42803",
            ),
            ("Projections require unique expression names but …", "0A000"),
            ("something else entirely", "42000"),
        ] {
            assert_eq!(
                EddyError::from(DataFusionError::Plan(msg.into())).sqlstate(),
                code
            );
        }
    }

    #[test]
    fn datafusion_missing_table_is_undefined_object() {
        let e = EddyError::from(DataFusionError::Plan(
            "table 'eddy.public.nope' not found".into(),
        ));
        assert_eq!(e.sqlstate(), "42P01");
        assert_eq!(e.to_string(), "relation \"nope\" does not exist");
    }
}
