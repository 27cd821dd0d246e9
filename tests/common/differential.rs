//! Comparing eddy with PostgreSQL call by call, against a checked-in table of known
//! differences (issue 15). Used by `tests/postgres_differential.rs` (scalar functions, operators,
//! casts) and `tests/aggregate_sweep.rs` (aggregates).
//!
//! Each call has a list of answers (per row, or per group): a value as text, `NULL`, or
//! `ERROR <class>` for a data error. Where both systems offer the call, the answers must be equal
//! unless the table lists the difference with both answers and why; an entry that no longer holds,
//! or that the README's "Differences from PostgreSQL" section does not name, fails too.

use std::collections::{BTreeMap, BTreeSet};

use super::PgClient;

/// One known difference: the answers of both systems for one call on one row, and why.
struct Known {
    postgres: String,
    eddy: String,
    why: String,
}

/// Longer values are shown abbreviated in the table.
const SHOWN_CHARS_MAX: usize = 120;

/// A value as the table holds it: tabs, newlines and backslashes escaped; a value longer than
/// [`SHOWN_CHARS_MAX`] characters as its start and its length.
pub fn field(v: &str) -> String {
    let n = v.chars().count();
    let v = if n > SHOWN_CHARS_MAX {
        format!(
            "{}… ({n} characters)",
            v.chars().take(40).collect::<String>()
        )
    } else {
        v.to_string()
    };
    v.replace('\\', "\\\\")
        .replace('\t', "\\t")
        .replace('\n', "\\n")
}

/// The outcome of one query: its first column per row, or the error's SQLSTATE and text.
pub async fn query(c: &PgClient, sql: &str) -> Result<Vec<String>, (String, String)> {
    match super::rows(c, sql).await {
        Ok(r) => Ok(r.into_iter().map(|mut r| r.swap_remove(0)).collect()),
        Err(e) => Err((e.get(..5).unwrap_or("").to_string(), e)),
    }
}

/// Whether an error says the call does not exist in this system (no such function or operator,
/// no such signature or cast, or a feature it lacks) rather than that a value could not be
/// computed.
pub fn not_offered(sqlstate: &str) -> bool {
    sqlstate.starts_with("42") || sqlstate == "0A000"
}

/// The answer of a query expected to return one row and column: the value, `ERROR <class>`
/// for a data error, `None` when the system does not offer the call (or returns another shape).
pub async fn one_answer(c: &PgClient, sql: &str) -> Option<String> {
    match query(c, sql).await {
        Ok(mut v) if v.len() == 1 => Some(v.swap_remove(0)),
        Ok(_) => None,
        Err((state, _)) if not_offered(&state) => None,
        Err((state, _)) => Some(format!("ERROR {}", state.get(..2).unwrap_or(""))),
    }
}

/// The comparison of many calls against one table of known differences.
pub struct Differential {
    table: &'static str,
    known: BTreeMap<(String, usize), Known>,
    used: BTreeSet<(String, usize)>,
    /// Calls both systems offer.
    pub compared: usize,
    /// Of those, calls equal on every row.
    pub agreed: usize,
    /// Calls only eddy offers.
    pub eddy_only: usize,
    /// Calls only PostgreSQL offers.
    pub pg_only: usize,
    /// Function names compared.
    pub compared_names: BTreeSet<String>,
    /// Function names whose every call agreed.
    pub agreeing_names: BTreeSet<String>,
    unexplained: Vec<String>,
    stale: Vec<String>,
}

impl Differential {
    /// A comparison against `text`, the contents of `table` (its path, for messages): lines of
    /// six tab-separated fields (call, row, input, postgres, eddy, why); `#` starts a comment.
    pub fn new(table: &'static str, text: &str) -> Self {
        let mut known = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let f: Vec<&str> = line.split('\t').collect();
            assert!(
                f.len() == 6,
                "{table} line {}: want 6 tab-separated fields (call, row, input, postgres, \
                 eddy, why), got {}",
                n + 1,
                f.len()
            );
            let row: usize = f[1].parse().unwrap_or_else(|_| {
                panic!("{table} line {}: row {:?} is not a number", n + 1, f[1])
            });
            assert!(
                !f[5].trim().is_empty(),
                "{table} line {}: the why is empty",
                n + 1
            );
            let prev = known.insert(
                (f[0].to_string(), row),
                Known {
                    postgres: f[3].to_string(),
                    eddy: f[4].to_string(),
                    why: f[5].to_string(),
                },
            );
            assert!(prev.is_none(), "{table} line {}: duplicate entry", n + 1);
        }
        Differential {
            table,
            known,
            used: BTreeSet::new(),
            compared: 0,
            agreed: 0,
            eddy_only: 0,
            pg_only: 0,
            compared_names: BTreeSet::new(),
            agreeing_names: BTreeSet::new(),
            unexplained: Vec::new(),
            stale: Vec::new(),
        }
    }

    /// Known differences listed.
    pub fn known_rows(&self) -> usize {
        self.known.len()
    }

    /// Compares the answers of `call` (rows numbered from `first_row`); `input_of(row)` says
    /// what the row's arguments were.
    pub fn compare(
        &mut self,
        call: &str,
        ours: Option<Vec<String>>,
        theirs: Option<Vec<String>>,
        first_row: usize,
        input_of: impl Fn(usize) -> String,
    ) {
        let (ours, theirs) = match (ours, theirs) {
            (Some(o), Some(t)) => (o, t),
            (Some(_), None) => return self.eddy_only += 1,
            (None, Some(_)) => return self.pg_only += 1,
            (None, None) => return,
        };
        self.compared += 1;
        let name = call.split('(').next().unwrap_or_default().to_string();
        self.compared_names.insert(name.clone());
        let mut all_agree = true;
        for (i, (o, t)) in ours.iter().zip(&theirs).enumerate() {
            let k = i + first_row;
            let key = (call.to_string(), k);
            match self.known.get(&key) {
                Some(entry) => {
                    self.used.insert(key);
                    all_agree = false;
                    if entry.postgres != field(t) || entry.eddy != field(o) {
                        self.stale.push(format!(
                            "{call} row {k}: the table says PostgreSQL {:?} and eddy {:?} \
                             ({}), now PostgreSQL {t:?} and eddy {o:?}",
                            entry.postgres, entry.eddy, entry.why
                        ));
                    }
                }
                None if o == t => {}
                None => {
                    all_agree = false;
                    self.unexplained.push(format!(
                        "{}\t{k}\t{}\t{}\t{}\t",
                        field(call),
                        field(&input_of(k)),
                        field(t),
                        field(o)
                    ));
                }
            }
        }
        if all_agree {
            self.agreed += 1;
            self.agreeing_names.insert(name);
        }
    }

    /// Fails unless every difference was known, every entry still holds and was compared, and
    /// `readme`'s "Differences from PostgreSQL" section names every call of the table.
    pub fn finish(mut self, readme: &str) {
        let section = readme
            .split("### Differences from PostgreSQL")
            .nth(1)
            .and_then(|s| s.split("\n### ").next())
            .expect("README.md has a section \"Differences from PostgreSQL\"");
        for call in self.known.keys().map(|k| &k.0).collect::<BTreeSet<_>>() {
            if !section.contains(&format!("`{}`", call.replace('|', "\\|"))) {
                self.stale.push(format!(
                    "{call}: in {} but not in README.md's \"Differences from PostgreSQL\"",
                    self.table
                ));
            }
        }
        for key in self.known.keys().filter(|k| !self.used.contains(*k)) {
            self.stale.push(format!(
                "{} row {}: listed, but no longer compared (the call is gone or one side \
                 lacks it)",
                key.0, key.1
            ));
        }
        if !self.unexplained.is_empty() {
            eprintln!(
                "differences not in {} (call, row, input, postgres, eddy, why):",
                self.table
            );
            for u in &self.unexplained {
                eprintln!("{u}");
            }
        }
        for s in &self.stale {
            eprintln!("STALE {s}");
        }
        assert!(
            self.unexplained.is_empty() && self.stale.is_empty(),
            "{} differences from PostgreSQL are not in {} and {} entries of it no longer hold \
             (see above)",
            self.unexplained.len(),
            self.table,
            self.stale.len()
        );
    }
}
