//! Write-ahead logs of `INSERT`-fed tables: an acknowledged `INSERT` is never
//! lost. Each table's rows are appended to segment files under
//! `<data-dir>/tables/<catalog id>/` (never a path made of the table's name)
//! and fsynced before the `INSERT` is acknowledged; on restart they are
//! replayed into the table once every view is back, so views over tables are
//! rebuilt from all rows.
//!
//! ## Format
//!
//! A segment is named by the number of its first row (`00000000000000004096.wal`)
//! and holds one frame per `INSERT` chunk:
//! `"EDL1" | rows: u32 | length: u32 | crc32: u32 | payload`, all little
//! endian, where the payload is an Arrow IPC stream (schema, batches, end).
//! A frame cut short at the end of the newest segment is a crash during an
//! `INSERT` that was never acknowledged: reading stops there. A whole frame
//! whose checksum does not match is corruption: it is skipped and reported
//! (the rows of the frames around it are still replayed). Segments written
//! by versions before frames (`00000001.arrows`, plain IPC streams) are still
//! read, before the framed ones.
//!
//! ## Bounds
//!
//! A segment is closed at [`SEGMENT_BYTES_MAX`]; [`TableLog::compact`] removes
//! whole segments whose rows every kept checkpoint covers, so a long-lived
//! table's log stays small. A log still holding [`TABLE_LOG_BYTES_MAX`]
//! refuses further `INSERT`s with SQLSTATE 53400, writing nothing.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::record_batch::RecordBatch;

use crate::error::{EddyError, Result};

/// Most bytes a table's log may hold.
pub const TABLE_LOG_BYTES_MAX: u64 = 1 << 30;
/// A segment is closed, and a new one started, beyond this size.
pub const SEGMENT_BYTES_MAX: u64 = 64 << 20;
/// Marks the start of a frame.
const FRAME_MAGIC: &[u8; 4] = b"EDL1";
/// Bytes of a frame header.
const HEADER_BYTES: usize = 16;
/// Extension of framed segments.
const SEGMENT_EXT: &str = "wal";
/// Extension of segments written before frames.
const LEGACY_EXT: &str = "arrows";

/// One segment file.
#[derive(Debug, Clone)]
struct Segment {
    path: PathBuf,
    /// Number of the segment's first row in the table's log.
    first_row: u64,
    rows: u64,
    bytes: u64,
}

/// What [`TableLog::replay`] read.
#[derive(Debug, Default)]
pub struct Replayed {
    /// Number of the first row of `batches` (rows before it were compacted away).
    pub first_row: u64,
    /// The logged rows, in order.
    pub batches: Vec<RecordBatch>,
    /// Frames skipped because their checksum did not match: the log number
    /// of their first row, how many rows they held, and where they are.
    pub corrupt: Vec<(u64, u64, String)>,
}

/// The log of one table.
pub struct TableLog {
    dir: PathBuf,
    schema: SchemaRef,
    /// Segments in order; the last one is appended to.
    segments: Vec<Segment>,
    /// The segment being appended to, once opened in this run.
    writer: Option<File>,
}

impl std::fmt::Debug for TableLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TableLog({})", self.dir.display())
    }
}

fn io(dir: &Path, e: impl std::fmt::Display) -> EddyError {
    EddyError::Internal(format!("table log {}: {e}", dir.display()))
}

impl TableLog {
    /// The log directory of the table with catalog id `id` under `data_dir`.
    /// Named by the id alone: user text never becomes part of a path.
    pub fn dir(data_dir: &Path, id: u64) -> PathBuf {
        data_dir.join("tables").join(format!("{id:010}"))
    }

    /// Where versions before catalog-id directories kept the log of table
    /// `name`, if `name` is a single safe path component (see
    /// [`crate::sql::statement::check_object_name`]).
    pub fn legacy_dir(data_dir: &Path, name: &str) -> Option<PathBuf> {
        crate::sql::statement::check_object_name(name).ok()?;
        (name != "." && !name.is_empty()).then(|| data_dir.join("tables").join(name))
    }

    /// Open the log in `dir` for appending (creating it), after existing segments.
    pub fn open(dir: PathBuf, schema: SchemaRef) -> Result<Self> {
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        let segments = scan(&dir)?;
        Ok(TableLog {
            dir,
            schema,
            segments,
            writer: None,
        })
    }

    /// Bytes the log holds.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// Number of the row the next append starts at (rows logged, counting
    /// those compacted away).
    pub fn next_row(&self) -> u64 {
        self.segments.last().map_or(0, |s| s.first_row + s.rows)
    }

    /// Every batch still logged, in order, from [`Replayed::first_row`].
    pub fn replay(&self) -> Result<Replayed> {
        let mut out = Replayed {
            first_row: self.segments.first().map_or(0, |s| s.first_row),
            ..Replayed::default()
        };
        for seg in &self.segments {
            if seg.path.extension().is_some_and(|x| x == LEGACY_EXT) {
                out.batches.extend(read_legacy(&seg.path)?);
                continue;
            }
            let bytes = std::fs::read(&seg.path).map_err(|e| io(&seg.path, e))?;
            let mut row = seg.first_row;
            for frame in frames(&bytes) {
                match frame {
                    Frame::Whole { rows, payload } => {
                        out.batches.extend(decode(&seg.path, payload)?);
                        row += rows;
                    }
                    Frame::Corrupt { at, rows } => {
                        out.corrupt.push((
                            row,
                            rows,
                            format!("{} at byte {at}: checksum mismatch", seg.path.display()),
                        ));
                        row += rows;
                    }
                    Frame::Torn { at } => {
                        tracing::warn!(segment = %seg.path.display(), at, "table log ends in a torn frame (never acknowledged); reading stops there");
                    }
                }
            }
        }
        Ok(out)
    }

    /// Append `batches` as one frame and fsync. Blocking: call from a
    /// blocking thread.
    pub fn append(&mut self, batches: &[RecordBatch]) -> Result<()> {
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let mut payload = Vec::new();
        {
            let mut w =
                StreamWriter::try_new(&mut payload, &self.schema).map_err(|e| io(&self.dir, e))?;
            for b in batches {
                w.write(b).map_err(|e| io(&self.dir, e))?;
            }
            w.finish().map_err(|e| io(&self.dir, e))?;
        }
        let frame_bytes = (HEADER_BYTES + payload.len()) as u64;
        if self.bytes() + frame_bytes > TABLE_LOG_BYTES_MAX {
            return Err(EddyError::LimitExceeded(format!(
                "the table's write-ahead log is full ({TABLE_LOG_BYTES_MAX} bytes not yet covered \
                 by checkpoints); nothing was inserted"
            )));
        }
        let (Ok(rows32), Ok(len32)) = (u32::try_from(rows), u32::try_from(payload.len())) else {
            return Err(EddyError::LimitExceeded(
                "one INSERT chunk is too large for the table's log; nothing was inserted".into(),
            ));
        };
        let rotate = self.writer.is_none()
            || self
                .segments
                .last()
                .is_some_and(|s| s.bytes >= SEGMENT_BYTES_MAX);
        if rotate {
            self.start_segment()?;
        }
        let mut frame = Vec::with_capacity(HEADER_BYTES + payload.len());
        frame.extend_from_slice(FRAME_MAGIC);
        frame.extend_from_slice(&rows32.to_le_bytes());
        frame.extend_from_slice(&len32.to_le_bytes());
        frame.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        frame.extend_from_slice(&payload);
        let dir = self.dir.clone();
        let w = self.writer.as_mut().ok_or_else(|| io(&dir, "no writer"))?;
        w.write_all(&frame).map_err(|e| io(&dir, e))?;
        w.sync_data().map_err(|e| io(&dir, e))?;
        if let Some(seg) = self.segments.last_mut() {
            seg.rows += rows as u64;
            seg.bytes += frame.len() as u64;
        }
        Ok(())
    }

    /// Start a new segment at the next row (each server run starts one).
    fn start_segment(&mut self) -> Result<()> {
        let first_row = self.next_row();
        let path = self.dir.join(format!("{first_row:020}.{SEGMENT_EXT}"));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| io(&path, e))?;
        // A segment at this row already exists when the last run wrote no whole
        // frame to it: empty, or only a torn frame, never acknowledged.
        let existing = file.metadata().map_err(|e| io(&path, e))?.len();
        if existing > 0 {
            let only_torn = self
                .segments
                .last()
                .is_some_and(|s| s.path == path && s.rows == 0);
            if !only_torn {
                return Err(io(&path, "segment for the next row exists and holds rows"));
            }
            file.set_len(0).map_err(|e| io(&path, e))?;
            if let Some(s) = self.segments.last_mut() {
                s.bytes = 0;
            }
        }
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        if self.segments.last().is_none_or(|s| s.path != path) {
            self.segments.push(Segment {
                path,
                first_row,
                rows: 0,
                bytes: 0,
            });
        }
        self.writer = Some(file);
        Ok(())
    }

    /// The segments as they are now, to read rows from without holding the
    /// log (see [`LogRange::read`]).
    pub fn range(&self) -> LogRange {
        LogRange {
            segments: self.segments.clone(),
        }
    }

    /// Remove whole closed segments whose rows all come before `row` (rows
    /// that every kept checkpoint covers and `SELECT` no longer keeps), oldest
    /// first, while the log holds more than `keep_bytes` (views created later
    /// backfill from what is kept). Returns the bytes freed.
    pub fn compact(&mut self, row: u64, keep_bytes: u64) -> u64 {
        let mut freed = 0;
        let total = self.bytes();
        let open = self.segments.len().saturating_sub(1);
        let mut keep_from = 0;
        for (i, seg) in self.segments.iter().enumerate().take(open) {
            if seg.first_row + seg.rows > row || total - freed <= keep_bytes {
                break;
            }
            match std::fs::remove_file(&seg.path) {
                Ok(()) => {
                    freed += seg.bytes;
                    keep_from = i + 1;
                }
                Err(e) => {
                    tracing::warn!(segment = %seg.path.display(), error = %e, "cannot remove a compacted table log segment");
                    break;
                }
            }
        }
        self.segments.drain(..keep_from);
        freed
    }
}

/// The segments of a log at one moment, read without holding the log: a
/// view's backfill reads a table's rows from here while `INSERT`s go on.
#[derive(Debug, Clone)]
pub struct LogRange {
    segments: Vec<Segment>,
}

impl LogRange {
    /// Number of the first row still logged.
    pub fn first_row(&self) -> u64 {
        self.segments.first().map_or(0, |s| s.first_row)
    }

    /// Hand `each` the logged rows numbered `from..to`, in order, a frame at
    /// a time (a segment is read whole: at most [`SEGMENT_BYTES_MAX`] plus one
    /// frame in memory). Returns the rows that could not be read: in corrupt
    /// frames, or in segments compacted away meanwhile. Stops early when
    /// `each` returns false. Blocking.
    pub fn read(
        &self,
        from: u64,
        to: u64,
        mut each: impl FnMut(RecordBatch) -> bool,
    ) -> Result<u64> {
        let mut lost = 0;
        for seg in &self.segments {
            if seg.first_row + seg.rows <= from || seg.first_row >= to {
                continue;
            }
            let parts: Vec<Part> = if seg.path.extension().is_some_and(|x| x == LEGACY_EXT) {
                read_legacy(&seg.path)?
                    .into_iter()
                    .map(Part::Rows)
                    .collect()
            } else {
                match std::fs::read(&seg.path) {
                    Ok(bytes) => frame_parts(&seg.path, &bytes)?,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        lost += seg.rows;
                        continue;
                    }
                    Err(e) => return Err(io(&seg.path, e)),
                }
            };
            let mut row = seg.first_row;
            for part in parts {
                let (batch, n) = match part {
                    Part::Rows(b) => {
                        let n = b.num_rows() as u64;
                        (Some(b), n)
                    }
                    Part::Lost(n) => (None, n),
                };
                let (lo, hi) = (from.max(row), to.min(row + n));
                row += n;
                if lo >= hi {
                    continue;
                }
                match batch {
                    Some(b) => {
                        let first = lo - (row - n);
                        if !each(b.slice(first as usize, (hi - lo) as usize)) {
                            return Ok(lost);
                        }
                    }
                    None => lost += hi - lo,
                }
            }
        }
        Ok(lost)
    }
}

/// Rows of a segment as read: a batch, or rows of a corrupt frame.
enum Part {
    Rows(RecordBatch),
    Lost(u64),
}

/// The parts of a segment's frames, in order.
fn frame_parts(path: &Path, bytes: &[u8]) -> Result<Vec<Part>> {
    let mut out = Vec::new();
    for frame in frames(bytes) {
        match frame {
            Frame::Whole { payload, .. } => {
                out.extend(decode(path, payload)?.into_iter().map(Part::Rows))
            }
            Frame::Corrupt { rows, .. } => out.push(Part::Lost(rows)),
            Frame::Torn { .. } => {}
        }
    }
    Ok(out)
}

/// One frame of a segment, as read.
enum Frame<'a> {
    Whole { rows: u64, payload: &'a [u8] },
    Corrupt { at: usize, rows: u64 },
    Torn { at: usize },
}

/// The frames of a segment's bytes, in order; ends at a torn frame.
fn frames(bytes: &[u8]) -> impl Iterator<Item = Frame<'_>> {
    let mut at = 0usize;
    let mut done = false;
    std::iter::from_fn(move || {
        if done || at >= bytes.len() {
            return None;
        }
        let header = bytes.get(at..at + HEADER_BYTES);
        let Some(h) = header.filter(|h| &h[..4] == FRAME_MAGIC) else {
            done = true;
            return Some(Frame::Torn { at });
        };
        let word = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        let (rows, len, crc) = (u64::from(word(4)), word(8) as usize, word(12));
        let start = at + HEADER_BYTES;
        let Some(payload) = bytes.get(start..start + len) else {
            done = true;
            return Some(Frame::Torn { at });
        };
        let frame_at = at;
        at = start + len;
        Some(if crc32fast::hash(payload) == crc {
            Frame::Whole { rows, payload }
        } else {
            Frame::Corrupt { at: frame_at, rows }
        })
    })
}

/// Rows of a segment's whole frames (from their headers, without decoding).
fn count_rows(bytes: &[u8]) -> u64 {
    frames(bytes)
        .map(|f| match f {
            Frame::Whole { rows, .. } | Frame::Corrupt { rows, .. } => rows,
            Frame::Torn { .. } => 0,
        })
        .sum()
}

fn decode(path: &Path, payload: &[u8]) -> Result<Vec<RecordBatch>> {
    let reader = StreamReader::try_new(payload, None).map_err(|e| io(path, e))?;
    reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| io(path, e))
}

/// A segment written before frames: an IPC stream, possibly torn at its end.
fn read_legacy(path: &Path) -> Result<Vec<RecordBatch>> {
    let file = File::open(path).map_err(|e| io(path, e))?;
    let reader = match StreamReader::try_new(BufReader::new(file), None) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(segment = %path.display(), error = %e, "skipping unreadable table log segment");
            return Ok(Vec::new());
        }
    };
    let mut out = Vec::new();
    for batch in reader {
        match batch {
            Ok(b) => out.push(b),
            Err(e) => {
                tracing::warn!(segment = %path.display(), error = %e, "table log ends in a torn batch (never acknowledged); reading stops there");
                break;
            }
        }
    }
    Ok(out)
}

/// The segments in `dir`, in order: legacy ones first (numbered by run), then
/// framed ones by first row. Row counts come from frame headers (legacy
/// segments are read once to count).
fn scan(dir: &Path) -> Result<Vec<Segment>> {
    let mut legacy: Vec<PathBuf> = Vec::new();
    let mut framed: Vec<(u64, PathBuf)> = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(dir, e)),
    };
    for p in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        let ext = p.extension().and_then(|x| x.to_str());
        let stem = p.file_stem().and_then(|s| s.to_str());
        match (ext, stem.and_then(|s| s.parse::<u64>().ok())) {
            (Some(LEGACY_EXT), Some(_)) => legacy.push(p),
            (Some(SEGMENT_EXT), Some(first)) => framed.push((first, p)),
            _ => {}
        }
    }
    legacy.sort();
    framed.sort();
    let mut out = Vec::new();
    let mut next = 0u64;
    for path in legacy {
        let rows: u64 = read_legacy(&path)?
            .iter()
            .map(|b| b.num_rows() as u64)
            .sum();
        let bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
        out.push(Segment {
            path,
            first_row: next,
            rows,
            bytes,
        });
        next += rows;
    }
    for (first_row, path) in framed {
        let mut bytes = Vec::new();
        File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(|e| io(&path, e))?;
        let rows = count_rows(&bytes);
        // Legacy segments count from 0; a framed segment names its own first row.
        let first_row = first_row.max(next);
        out.push(Segment {
            path,
            first_row,
            rows,
            bytes: bytes.len() as u64,
        });
        next = first_row + rows;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{AsArray, Int64Array};
    use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]))
    }

    fn batch(v: Vec<i64>) -> RecordBatch {
        RecordBatch::try_new(schema(), vec![Arc::new(Int64Array::from(v))]).unwrap()
    }

    fn values(r: &Replayed) -> Vec<i64> {
        r.batches
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect()
    }

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("eddy-table-log-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn appended_batches_replay_across_runs_and_a_torn_tail_is_skipped() {
        let dir = scratch("torn");
        let mut log = TableLog::open(dir.clone(), schema()).unwrap();
        log.append(&[batch(vec![1, 2])]).unwrap();
        log.append(&[batch(vec![3])]).unwrap();
        drop(log);
        let mut log = TableLog::open(dir.clone(), schema()).unwrap();
        assert_eq!(log.next_row(), 3);
        log.append(&[batch(vec![4])]).unwrap();
        drop(log);
        // Tear the second segment's end.
        let seg = dir.join(format!("{:020}.wal", 3));
        let len = std::fs::metadata(&seg).unwrap().len();
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        f.set_len(len - 3).unwrap();
        let log = TableLog::open(dir.clone(), schema()).unwrap();
        let r = log.replay().unwrap();
        assert_eq!(values(&r), vec![1, 2, 3]);
        assert!(r.corrupt.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_corrupt_frame_is_skipped_and_reported_and_the_rest_replays() {
        let dir = scratch("crc");
        let mut log = TableLog::open(dir.clone(), schema()).unwrap();
        log.append(&[batch(vec![1])]).unwrap();
        log.append(&[batch(vec![2])]).unwrap();
        log.append(&[batch(vec![3])]).unwrap();
        drop(log);
        let seg = dir.join(format!("{:020}.wal", 0));
        let mut bytes = std::fs::read(&seg).unwrap();
        let frame = bytes.len() / 3;
        // Flip a byte inside the second frame's payload.
        bytes[frame + frame / 2] ^= 0xff;
        std::fs::write(&seg, &bytes).unwrap();
        let log = TableLog::open(dir.clone(), schema()).unwrap();
        assert_eq!(log.next_row(), 3, "headers still count the rows");
        let r = log.replay().unwrap();
        assert_eq!(values(&r), vec![1, 3]);
        assert_eq!(r.corrupt.len(), 1, "{:?}", r.corrupt);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn segments_rotate_and_compaction_drops_covered_ones() {
        let dir = scratch("compact");
        let mut log = TableLog::open(dir.clone(), schema()).unwrap();
        for run in 0..3i64 {
            log.append(&[batch(vec![run * 10, run * 10 + 1])]).unwrap();
            // A new run starts a new segment.
            log = TableLog::open(dir.clone(), schema()).unwrap();
        }
        log.append(&[batch(vec![30])]).unwrap();
        assert_eq!(log.segments.len(), 4);
        // Rows 0..3 covered: only the first segment (rows 0, 1) is wholly before row 3.
        let freed = log.compact(3, 0);
        assert!(freed > 0);
        assert_eq!(log.segments.len(), 3);
        // The open segment is never removed.
        log.compact(u64::MAX, 0);
        assert_eq!(log.segments.len(), 1);
        drop(log);
        let log = TableLog::open(dir.clone(), schema()).unwrap();
        let r = log.replay().unwrap();
        assert_eq!(r.first_row, 6);
        assert_eq!(values(&r), vec![30]);
        assert_eq!(log.next_row(), 7);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn legacy_segments_are_read_first() {
        let dir = scratch("legacy");
        std::fs::create_dir_all(&dir).unwrap();
        let file = File::create(dir.join("00000001.arrows")).unwrap();
        let mut w = StreamWriter::try_new(file, &schema()).unwrap();
        w.write(&batch(vec![1, 2])).unwrap();
        w.finish().unwrap();
        drop(w);
        let mut log = TableLog::open(dir.clone(), schema()).unwrap();
        assert_eq!(log.next_row(), 2);
        log.append(&[batch(vec![3])]).unwrap();
        let r = TableLog::open(dir.clone(), schema())
            .unwrap()
            .replay()
            .unwrap();
        assert_eq!(values(&r), vec![1, 2, 3]);
        assert!(dir.join(format!("{:020}.wal", 2)).exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
