//! The `file` connector: newline-delimited records (JSON or CSV) from a file
//! or a directory of files (read in name order), read once or followed as
//! they grow (`'file.follow' = 'true'`; new files in a directory are picked up
//! too). Runs on its own blocking thread and hands decoded batches to the
//! stream over a bounded channel.
//!
//! ```sql
//! CREATE SOURCE bids (auction BIGINT, price BIGINT, ts TIMESTAMP NOT NULL,
//!                     WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
//!   INCLUDE file AS path, offset AS line
//!   WITH (connector = 'file', path = '/data/bids.jsonl', format = 'json');
//! ```
//!
//! A file read once ends with a final watermark at the end of time, so every
//! window closes (as Flink does at the end of bounded input).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::format::Record;
use super::ingest::Ingest;
use super::pipeline::{Done, Pipeline};
use super::runner::Produced;
use super::BatchBounds;
use crate::error::EddyError;

/// Bytes read from a file at a time.
const READ_CHUNK_BYTES: usize = 1 << 20;
/// Longest record (line) kept; longer lines are rejected, truncated to [`REJECTED_PREFIX_BYTES`].
pub const RECORD_BYTES_MAX: usize = 16 << 20;
/// How often a sleeping reader checks whether its source was dropped.
const DROP_CHECK: Duration = Duration::from_millis(50);
/// Longest `file.poll_interval_ms` (one hour): larger values would overflow
/// the reader's clock arithmetic and say nothing useful.
const POLL_INTERVAL_MS_MAX: u64 = 3_600_000;
/// How much of an over-long line is kept in its dead letter.
const REJECTED_PREFIX_BYTES: usize = 4096;

/// Options of a file source.
#[derive(Debug, Clone)]
pub struct FileOptions {
    /// A file, or a directory whose files are read in name order.
    pub path: PathBuf,
    /// Keep reading as files grow and appear.
    pub follow: bool,
    /// How often a followed path is checked for new data.
    pub poll_interval: Duration,
    /// CSV files start with a header line.
    pub skip_header: bool,
}

impl FileOptions {
    /// Read the file options, removing them from `options`.
    pub fn from_options(
        options: &mut BTreeMap<String, String>,
        skip_header: bool,
    ) -> Result<Self, String> {
        let path = options
            .remove("path")
            .ok_or("connector 'file' needs a path option: WITH (connector = 'file', path = '…')")?;
        let follow = match options.remove("file.follow").as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(v) => return Err(format!("file.follow must be true or false, got '{v}'")),
        };
        let poll_ms = match options.remove("file.poll_interval_ms") {
            None => 200,
            Some(v) => v
                .parse::<u64>()
                .ok()
                .filter(|ms| (1..=POLL_INTERVAL_MS_MAX).contains(ms))
                .ok_or(format!(
                    "file.poll_interval_ms must be a whole number from 1 to \
                     {POLL_INTERVAL_MS_MAX} (one hour), got '{v}'"
                ))?,
        };
        Ok(FileOptions {
            path: PathBuf::from(path),
            follow,
            poll_interval: Duration::from_millis(poll_ms),
            skip_header,
        })
    }
}

/// Where reading one file has got to.
#[derive(Debug, Default)]
struct Cursor {
    /// Bytes consumed.
    pos: u64,
    /// Lines seen (for record line numbers and the header).
    line: i64,
    /// The unfinished last line.
    partial: Vec<u8>,
    /// The current line is over-long: drop bytes until its end.
    overlong: bool,
}

/// Files under `path` in name order (just `path` when it is a file).
fn list(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                p.is_file()
                    && !p
                        .file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with('.'))
            })
            .collect();
        files.sort();
        Ok(files)
    } else {
        std::fs::metadata(path).map(|_| vec![path.to_path_buf()])
    }
}

/// Where a chunk ends: the position after its last line.
type Tag = Option<serde_json::Value>;

struct Reader {
    opts: FileOptions,
    pipeline: Pipeline<Tag>,
    bounds: BatchBounds,
    tx: mpsc::Sender<Produced>,
    pending: Vec<Record>,
    /// Over-long lines, reported as records holding their first bytes.
    overlong: Vec<(Record, String)>,
    /// Resuming from a checkpoint: lines up to this one (file, line) were read already.
    resume: Option<(PathBuf, i64)>,
    /// Reading a range for a view's backfill: lines after this one (file,
    /// line) are left to the source's own reader (see [`read_file_range`]).
    bound: Option<Option<(PathBuf, i64)>>,
}

/// A name for the reader's threads: the path's last component.
fn source_name(opts: &FileOptions) -> String {
    opts.path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A file source's position: the last line handed over.
pub fn file_position(file: &str, line: i64) -> serde_json::Value {
    serde_json::json!({ "file": file, "line": line })
}

/// Read a position written by [`file_position`].
fn parse_position(v: &serde_json::Value) -> Option<(PathBuf, i64)> {
    Some((PathBuf::from(v["file"].as_str()?), v["line"].as_i64()?))
}

/// Read the configured path until it is exhausted (or forever, following) or
/// the stream is dropped. Runs on a blocking thread.
pub fn read_files(
    opts: FileOptions,
    ingest: Ingest,
    bounds: BatchBounds,
    tx: mpsc::Sender<Produced>,
    resume: Option<serde_json::Value>,
) {
    run_reader(opts, ingest, bounds, tx, resume, None)
}

/// Read the path once, after `start` (a position [`read_files`] handed
/// over, or none: from the first line) up to and including `target` (the
/// position of the source's own reader; none: nothing), then send
/// `Produced::Finished`, without the end-of-input watermark. For a view's
/// backfill: `ingest` should be a replay (no dead letters twice). Runs on a
/// blocking thread.
pub fn read_file_range(
    mut opts: FileOptions,
    ingest: Ingest,
    bounds: BatchBounds,
    tx: mpsc::Sender<Produced>,
    start: Option<serde_json::Value>,
    target: Option<serde_json::Value>,
) {
    opts.follow = false;
    let bound = Some(target.as_ref().and_then(parse_position));
    run_reader(opts, ingest, bounds, tx, start, bound)
}

fn run_reader(
    opts: FileOptions,
    ingest: Ingest,
    bounds: BatchBounds,
    tx: mpsc::Sender<Produced>,
    resume: Option<serde_json::Value>,
    bound: Option<Option<(PathBuf, i64)>>,
) {
    let pipeline = match Pipeline::new(ingest, bounds.decode_threads, &source_name(&opts)) {
        Ok(p) => p,
        Err(e) => {
            let _ = tx.blocking_send(Produced::Failed(e));
            return;
        }
    };
    let mut r = Reader {
        opts,
        pipeline,
        bounds,
        tx,
        pending: Vec::new(),
        overlong: Vec::new(),
        resume: resume.as_ref().and_then(parse_position),
        bound,
    };
    // A range ending before anything was read holds nothing.
    let result = if matches!(r.bound, Some(None)) {
        r.send(Produced::Finished).map_err(EddyError::from)
    } else {
        r.run()
    };
    if let Err(e) = result {
        let _ = r.tx.blocking_send(Produced::Failed(e));
    }
}

/// Why reading a file stopped.
enum ReadError {
    /// The file could not be read (retried when following).
    Io(std::io::Error),
    /// The source stops: a record failed with `on_error = 'fail'`, or it was dropped.
    Stop(EddyError),
}

impl From<std::io::Error> for ReadError {
    fn from(e: std::io::Error) -> Self {
        ReadError::Io(e)
    }
}

/// The channel closed: the source was dropped.
struct Closed;

impl From<Closed> for EddyError {
    fn from(_: Closed) -> Self {
        EddyError::Shutdown("source dropped".into())
    }
}

impl Reader {
    fn run(&mut self) -> Result<(), EddyError> {
        let mut cursors: BTreeMap<PathBuf, Cursor> = BTreeMap::new();
        let mut retrying = false;
        loop {
            if self.tx.is_closed() {
                return Ok(());
            }
            match list(&self.opts.path) {
                Ok(files) => {
                    if retrying {
                        retrying = false;
                        self.send(Produced::Healthy)?;
                    }
                    for f in files {
                        let cursor = cursors.entry(f.clone()).or_default();
                        let read = match self.read_file(&f, cursor) {
                            Ok(()) => Ok(()),
                            // Decoding stopped the source (`on_error = 'fail'`) or it was dropped.
                            Err(ReadError::Stop(e)) => return Err(e),
                            Err(ReadError::Io(e)) => Err(e),
                        };
                        if let Err(e) = read {
                            let msg = format!("cannot read {}: {e}", f.display());
                            if !self.opts.follow {
                                return Err(EddyError::Connector(msg));
                            }
                            retrying = true;
                            self.send(Produced::Retrying(msg))?;
                        }
                    }
                }
                Err(e) => {
                    let msg = format!("cannot read {}: {e}", self.opts.path.display());
                    if !self.opts.follow {
                        return Err(EddyError::Connector(msg));
                    }
                    retrying = true;
                    self.send(Produced::Retrying(msg))?;
                }
            }
            if !self.opts.follow {
                // Read once: a last line without a newline is a record too.
                for (path, c) in cursors.iter_mut() {
                    if !c.partial.is_empty() {
                        c.line += 1;
                        let line = std::mem::take(&mut c.partial);
                        self.line(path, c.line, line);
                    }
                }
                self.flush()?;
                self.drain()?;
                if self.bound.is_none() {
                    self.send(Produced::Watermark(i64::MAX))?;
                }
                self.send(Produced::Finished)?;
                return Ok(());
            }
            self.flush()?;
            self.drain()?;
            // Sleep in short slices so a dropped source ends promptly.
            let until = std::time::Instant::now() + self.opts.poll_interval;
            while std::time::Instant::now() < until && !self.tx.is_closed() {
                std::thread::sleep(
                    DROP_CHECK.min(until.saturating_duration_since(std::time::Instant::now())),
                );
            }
        }
    }

    fn send(&self, p: Produced) -> Result<(), Closed> {
        self.tx.blocking_send(p).map_err(|_| Closed)
    }

    /// Read what is new in `path`, splitting it into line records.
    fn read_file(&mut self, path: &Path, c: &mut Cursor) -> Result<(), ReadError> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        if len < c.pos {
            // Truncated or replaced: start over.
            tracing::warn!(file = %path.display(), "file shrank; reading it again from the start");
            *c = Cursor::default();
        }
        if len == c.pos {
            return Ok(());
        }
        file.seek(SeekFrom::Start(c.pos))?;
        let name: Arc<str> = path.display().to_string().into();
        let mut buf = vec![0u8; READ_CHUNK_BYTES];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            c.pos += n as u64;
            let mut rest = &buf[..n];
            while let Some(nl) = memchr::memchr(b'\n', rest) {
                let piece = &rest[..nl];
                rest = &rest[nl + 1..];
                c.line += 1;
                if c.overlong {
                    c.overlong = false;
                    continue;
                }
                let line = if c.partial.is_empty() {
                    piece.to_vec()
                } else {
                    let mut line = std::mem::take(&mut c.partial);
                    line.extend_from_slice(piece);
                    line
                };
                self.line_named(&name, c.line, line);
                if self.pending.len() >= self.bounds.max_rows {
                    self.flush().map_err(ReadError::Stop)?;
                }
            }
            if !c.overlong {
                c.partial.extend_from_slice(rest);
                if c.partial.len() > RECORD_BYTES_MAX {
                    let mut head = std::mem::take(&mut c.partial);
                    head.truncate(REJECTED_PREFIX_BYTES);
                    let rec = Record {
                        payload: head,
                        offset: c.line + 1,
                        file: Some(name.clone()),
                        ..Default::default()
                    };
                    let e =
                        format!("record longer than {RECORD_BYTES_MAX} bytes (first bytes kept)");
                    self.overlong.push((rec, e));
                    c.overlong = true;
                }
            }
        }
        Ok(())
    }

    fn line(&mut self, path: &Path, line_no: i64, line: Vec<u8>) {
        let name: Arc<str> = path.display().to_string().into();
        self.line_named(&name, line_no, line);
    }

    fn line_named(&mut self, name: &Arc<str>, line_no: i64, mut line: Vec<u8>) {
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line_no == 1 && self.opts.skip_header {
            return;
        }
        if let Some((file, last)) = &self.resume {
            let path = Path::new(name.as_ref());
            if path < file.as_path() || (path == file && line_no <= *last) {
                return;
            }
        }
        if let Some(bound) = &self.bound {
            let path = Path::new(name.as_ref());
            let within = bound.as_ref().is_some_and(|(file, last)| {
                path < file.as_path() || (path == file && line_no <= *last)
            });
            if !within {
                return;
            }
        }
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            return;
        }
        self.pending.push(Record {
            payload: line,
            offset: line_no,
            file: Some(name.clone()),
            ..Default::default()
        });
    }

    /// Start decoding what is pending; hand over the chunks decoded by now.
    fn flush(&mut self) -> Result<(), EddyError> {
        for (rec, error) in std::mem::take(&mut self.overlong) {
            self.pipeline.reject_one(rec, error)?;
        }
        if !self.pending.is_empty() {
            while !self.pipeline.has_room() {
                if let Some(done) = self.pipeline.next(true) {
                    self.publish(done)?;
                }
            }
            let records = std::mem::take(&mut self.pending);
            let position = records
                .last()
                .and_then(|r| Some(file_position(r.file.as_deref()?, r.offset)));
            self.pipeline.submit(records, position);
        }
        while let Some(done) = self.pipeline.next(false) {
            self.publish(done)?;
        }
        Ok(())
    }

    /// Hand over every chunk still decoding.
    fn drain(&mut self) -> Result<(), EddyError> {
        while let Some(done) = self.pipeline.next(true) {
            self.publish(done)?;
        }
        Ok(())
    }

    /// A decoded chunk, in order: hand its rows over with its position.
    fn publish(&mut self, done: Done<Tag>) -> Result<(), EddyError> {
        match (done.processed.rows, done.tag) {
            (Some((batch, _)), position) => self.send(Produced::Rows(batch, None, position))?,
            (None, Some(position)) => self.send(Produced::Position(position))?,
            (None, None) => {}
        }
        match done.processed.failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
