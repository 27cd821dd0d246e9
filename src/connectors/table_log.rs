//! Write-ahead logs of `INSERT`-fed tables: an acknowledged `INSERT` is never
//! lost. Each table's rows are appended to Arrow IPC stream files under
//! `<data-dir>/tables/<name>/` and fsynced before the `INSERT` is
//! acknowledged; on restart they are replayed into the table once every view
//! is back, so views over tables are rebuilt from all rows.
//!
//! Every server run appends to a new segment (`00000001.arrows`, …). A
//! segment cut short by a crash is read up to its last whole batch (that
//! `INSERT` was never acknowledged). Until checkpoints compact them, logs are
//! bounded per table (`TABLE_LOG_BYTES_MAX`): an `INSERT` beyond it fails with
//! SQLSTATE 53400 and nothing is written.

use std::fs::{File, OpenOptions};
use std::io::BufReader;
use std::path::{Path, PathBuf};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::record_batch::RecordBatch;

use crate::error::{EddyError, Result};

/// Most bytes a table's log may hold.
pub const TABLE_LOG_BYTES_MAX: u64 = 1 << 30;

/// The log of one table.
pub struct TableLog {
    dir: PathBuf,
    schema: SchemaRef,
    writer: Option<StreamWriter<File>>,
    bytes: u64,
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
    /// The log directory of table `name` under `data_dir`.
    pub fn dir(data_dir: &Path, name: &str) -> PathBuf {
        data_dir.join("tables").join(name)
    }

    /// Open the log in `dir` for appending (creating it), after existing segments.
    pub fn open(dir: PathBuf, schema: SchemaRef) -> Result<Self> {
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        let bytes = segments(&dir)?
            .iter()
            .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
            .sum();
        Ok(TableLog {
            dir,
            schema,
            writer: None,
            bytes,
        })
    }

    /// Every batch logged so far, in order (a torn tail is skipped with a warning).
    pub fn replay(&self) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        for path in segments(&self.dir)? {
            let file = File::open(&path).map_err(|e| io(&path, e))?;
            let reader = match StreamReader::try_new(BufReader::new(file), None) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(segment = %path.display(), error = %e, "skipping unreadable table log segment");
                    continue;
                }
            };
            for batch in reader {
                match batch {
                    Ok(b) => out.push(b),
                    Err(e) => {
                        tracing::warn!(segment = %path.display(), error = %e, "table log ends in a torn batch (never acknowledged); reading stops there");
                        break;
                    }
                }
            }
        }
        Ok(out)
    }

    /// Append `batches` and fsync. Blocking: call from a blocking thread.
    pub fn append(&mut self, batches: &[RecordBatch]) -> Result<()> {
        let size: u64 = batches
            .iter()
            .map(|b| b.get_array_memory_size() as u64)
            .sum();
        if self.bytes + size > TABLE_LOG_BYTES_MAX {
            return Err(EddyError::LimitExceeded(format!(
                "the table's write-ahead log is full ({TABLE_LOG_BYTES_MAX} bytes); \
                 nothing was inserted"
            )));
        }
        if self.writer.is_none() {
            let next = segments(&self.dir)?.len() + 1;
            let path = self.dir.join(format!("{next:08}.arrows"));
            let file = OpenOptions::new()
                .create_new(true)
                .write(true)
                .open(&path)
                .map_err(|e| io(&path, e))?;
            let w = StreamWriter::try_new(file, &self.schema).map_err(|e| io(&path, e))?;
            self.writer = Some(w);
            if let Ok(d) = File::open(&self.dir) {
                let _ = d.sync_all();
            }
        }
        let dir = self.dir.clone();
        let w = self.writer.as_mut().ok_or_else(|| io(&dir, "no writer"))?;
        for b in batches {
            w.write(b).map_err(|e| io(&dir, e))?;
        }
        w.flush().map_err(|e| io(&dir, e))?;
        w.get_ref().sync_data().map_err(|e| io(&dir, e))?;
        self.bytes += size;
        Ok(())
    }
}

/// Segment files in order.
fn segments(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "arrows"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io(dir, e)),
    };
    v.sort();
    Ok(v)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn appended_batches_replay_across_runs_and_a_torn_tail_is_skipped() {
        let dir = std::env::temp_dir().join(format!("eddy-table-log-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]));
        let batch = |v: Vec<i64>| {
            RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(v))]).unwrap()
        };
        let mut log = TableLog::open(dir.clone(), schema.clone()).unwrap();
        log.append(&[batch(vec![1, 2])]).unwrap();
        log.append(&[batch(vec![3])]).unwrap();
        drop(log);
        let mut log = TableLog::open(dir.clone(), schema.clone()).unwrap();
        log.append(&[batch(vec![4])]).unwrap();
        drop(log);
        // Tear the second segment's end.
        let seg = dir.join("00000002.arrows");
        let len = std::fs::metadata(&seg).unwrap().len();
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        f.set_len(len - 3).unwrap();
        let log = TableLog::open(dir.clone(), schema).unwrap();
        let rows: Vec<usize> = log.replay().unwrap().iter().map(|b| b.num_rows()).collect();
        assert_eq!(rows, vec![2, 1]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
