//! Which view inputs backfill, and from where (see `connectors::backfill`):
//! `CREATE MATERIALIZED VIEW … WITH (backfill = 'startup' | 'earliest' |
//! 'none' | '<timestamp>', backfill.rows_per_second = N)`.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::ddl::InputRef;
use super::Engine;
use crate::connectors::backfill::{self, Job, ReplaySpec, Start};
use crate::connectors::StreamObject;
use crate::error::{EddyError, Result};
use crate::sql::{CreateView, ObjectKind};
use crate::types::Message;
use crate::views::MaterializedView;

/// The view options this module reads.
pub(super) const OPTIONS: [&str; 2] = ["backfill", "backfill.rows_per_second"];

/// A view's choice of backfill, from its options.
#[derive(Debug, Clone)]
pub(super) struct Choice {
    /// `None`: `backfill = 'none'`.
    start: Option<Start>,
    rows_per_second: u64,
}

impl Choice {
    /// Read the options of `v`.
    pub(super) fn of(v: &CreateView) -> Result<Self> {
        let start = match v.options.get("backfill").map(|s| s.trim().to_lowercase()) {
            None => Some(Start::Startup),
            Some(s) => match s.as_str() {
                "startup" | "true" | "on" => Some(Start::Startup),
                "earliest" => Some(Start::Earliest),
                "none" | "false" | "off" => None,
                _ => Some(Start::Timestamp(parse_time(&s).ok_or_else(|| {
                    EddyError::InvalidParameter {
                        message: format!(
                            "invalid value for materialized view option \"backfill\": \"{s}\""
                        ),
                        hint: Some(
                            "Use 'startup' (from where the source started; the default), \
                             'earliest', 'none', or a timestamp such as '2026-01-31 12:00:00' \
                             (Kafka sources)."
                                .into(),
                        ),
                    }
                })?)),
            },
        };
        let rows_per_second = match v.options.get("backfill.rows_per_second") {
            None => 0,
            Some(s) => s
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    EddyError::invalid(format!(
                        "backfill.rows_per_second must be a positive integer, got '{s}'"
                    ))
                })?,
        };
        Ok(Choice {
            start,
            rows_per_second,
        })
    }
}

/// Why a view built now with `choice` would miss rows `s` already
/// delivered: `s` cannot read them again (a generator; a table without a
/// log). `None` when nothing would be missed.
pub(super) fn misses(choice: &Choice, s: &StreamObject) -> Option<String> {
    if choice.start.is_none() || s.is_upsert() || s.holds_everything() {
        return None;
    }
    let replays = match (s.kind, s.replay()) {
        (ObjectKind::Table, _) => s.has_log(),
        (_, Some(_)) => true,
        _ => false,
    };
    (!replays).then(|| {
        format!(
            "{} \"{}\" cannot read again the rows it already delivered",
            s.kind.noun(),
            s.name
        )
    })
}

/// `2026-01-31 12:00:00[.fff]` (UTC) or `2026-01-31` as epoch milliseconds.
fn parse_time(s: &str) -> Option<i64> {
    let t = s.trim();
    for f in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(dt) = chrono::NaiveDateTime::parse_from_str(t, f) {
            return Some(dt.and_utc().timestamp_millis());
        }
    }
    let d = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d").ok()?;
    Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis())
}

impl Engine {
    /// Where `view`'s input `input` backfills from, if it does: a restored
    /// view resumes a backfill its checkpoint was in; a new one backfills a
    /// Kafka or file source, or a table with a log, unless `backfill = 'none'`.
    pub(super) fn backfill_start(
        &self,
        choice: &Choice,
        name: &str,
        index: usize,
        input: &InputRef,
        restored: Option<&crate::state::ViewSnapshot>,
    ) -> Result<Option<(Arc<StreamObject>, Start)>> {
        let InputRef::Stream(s) = input else {
            return Ok(None);
        };
        if let Some(r) = restored {
            return Ok(r
                .backfills
                .get(&index.to_string())
                .filter(|saved| saved["input"].as_str() == Some(s.name.as_str()))
                .map(|saved| (s.clone(), Start::Resume(saved.clone()))));
        }
        let Some(start) = &choice.start else {
            return Ok(None);
        };
        let replays = match (s.kind, s.replay()) {
            (ObjectKind::Table, _) => !s.is_upsert() && s.has_log(),
            // An upsert source's snapshot is its current rows: nothing to backfill.
            (_, Some(_)) => !s.is_upsert(),
            _ => false,
        };
        if !replays {
            return Ok(None);
        }
        if let Start::Timestamp(_) = start {
            if !matches!(s.replay(), Some(ReplaySpec::Kafka { .. })) {
                return Err(EddyError::invalid(format!(
                    "materialized view \"{name}\": backfill from a time needs a Kafka source; \
                     \"{}\" is a {} (use backfill = 'startup' or 'none')",
                    s.name,
                    s.kind.noun()
                )));
            }
        }
        Ok(Some((s.clone(), start.clone())))
    }

    /// Start backfilling `stream` into the view input `tx`; the driver is
    /// added to `drivers` and spawned with the view's tasks by [`spawn_backfills`].
    pub(super) fn backfill(
        &self,
        choice: &Choice,
        view: &str,
        index: usize,
        stream: Arc<StreamObject>,
        start: Start,
        tx: mpsc::Sender<Message>,
    ) -> (Arc<backfill::Backfill>, Driver) {
        let job = Job {
            replay: stream.replay().cloned(),
            stream,
            start,
            rows_per_second: choice.rows_per_second,
            tx,
            view: view.to_string(),
            index,
            dead_letters: self.dead_letters.clone(),
        };
        let (handle, run) = backfill::start(&self.backfills, job);
        (handle, Box::pin(run))
    }

    /// The backfills running (`eddy.views`, checkpoints).
    pub(super) fn backfills(&self) -> &Arc<crate::connectors::backfill::Backfills> {
        &self.backfills
    }
}

/// A backfill's future, not yet spawned.
pub(super) type Driver =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send + 'static>>;

/// Spawn `drivers` with the view's tasks: a backfill that fails fails the
/// view; one that ended with something to say (rows no longer available)
/// says it in `eddy.views.last_error`.
pub(super) fn spawn_backfills(
    view: &Arc<MaterializedView>,
    drivers: Vec<(Arc<backfill::Backfill>, Driver)>,
    tasks: &mut JoinSet<()>,
) {
    for (handle, d) in drivers {
        view.backfills.lock().push(handle.clone());
        let view = view.clone();
        tasks.spawn(async move {
            match d.await {
                Ok(()) => {
                    if let Some(note) = handle.note.lock().clone() {
                        *view.last_error.lock() = Some(format!("backfill: {note}"));
                    }
                }
                Err(EddyError::Shutdown(_)) => {}
                Err(e) => view.fail(&EddyError::Connector(format!(
                    "backfill of \"{}\" failed: {e}",
                    handle.input
                ))),
            }
        });
    }
}
