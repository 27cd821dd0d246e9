//! Checkpoints on disk.
//!
//! ```text
//! <data-dir>/checkpoints/0000000042/
//!     view-0.groups.arrow   aggregate groups of the first view (Arrow IPC file)
//!     view-0.rows.arrow     its rows
//!     sink-0.pending.arrow  output an exactly-once sink has not committed yet
//!     …
//!     manifest.json         written last: temp file, fsync, rename, fsync dir
//! ```
//! A checkpoint exists once its manifest does. The manifest lists each
//! file with its size and CRC-32; [`load_latest`] takes the newest
//! checkpoint whose files all match and logs why it skipped any newer one.
//! [`prune`] keeps the newest [`KEEP`] complete checkpoints.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use datafusion::arrow::ipc::reader::FileReader;
use datafusion::arrow::ipc::writer::FileWriter;
use datafusion::arrow::record_batch::RecordBatch;
use serde_json::{json, Value};

use super::{Epoch, SinkSnapshot, StreamPosition, ViewProgress, ViewSnapshot};
use crate::engine::durable::write_atomically;
use crate::error::{EddyError, Result};

/// Format name and version in every manifest.
const FORMAT: &str = "eddy-checkpoint";
const VERSION: u64 = 1;
/// Complete checkpoints kept on disk.
pub const KEEP: usize = 3;
const MANIFEST: &str = "manifest.json";

/// One data file of a checkpoint.
#[derive(Debug, Clone)]
struct FileRef {
    file: String,
    bytes: u64,
    crc32: u32,
}

impl FileRef {
    fn to_json(&self) -> Value {
        json!({"file": self.file, "bytes": self.bytes, "crc32": self.crc32})
    }

    fn from_json(v: &Value) -> Option<Self> {
        Some(FileRef {
            file: v["file"].as_str()?.to_string(),
            bytes: v["bytes"].as_u64()?,
            crc32: u32::try_from(v["crc32"].as_u64()?).ok()?,
        })
    }
}

/// An optional file reference: `null` when absent.
fn file_from_json(v: &Value) -> std::result::Result<Option<FileRef>, String> {
    if v.is_null() {
        return Ok(None);
    }
    FileRef::from_json(v)
        .map(Some)
        .ok_or_else(|| format!("bad file entry {v}"))
}

/// A stream's captured position, with the catalog id of the object it belongs to.
#[derive(Debug, Clone)]
pub struct SavedStream {
    /// Catalog id (a dropped and recreated object gets a new one).
    pub id: u64,
    /// The position.
    pub position: StreamPosition,
}

/// A view's captured state, with its catalog id.
#[derive(Debug, Clone)]
pub struct SavedView {
    /// Catalog id.
    pub id: u64,
    /// The state.
    pub snapshot: ViewSnapshot,
}

/// An exactly-once sink's captured state, with its catalog id.
#[derive(Debug, Clone)]
pub struct SavedSink {
    /// Catalog id.
    pub id: u64,
    /// The state.
    pub snapshot: SinkSnapshot,
}

/// What a checkpoint holds, ready to write or just read back.
#[derive(Debug, Default)]
pub struct Contents {
    /// Tables and sources by name.
    pub streams: HashMap<String, SavedStream>,
    /// Views by name.
    pub views: HashMap<String, SavedView>,
    /// Exactly-once sinks by name.
    pub sinks: HashMap<String, SavedSink>,
    /// `eddy.dead_letters` as it was (sources resume after the records they
    /// rejected, so these are not produced again).
    pub dead_letters: Vec<RecordBatch>,
}

/// A checkpoint read back from disk.
#[derive(Debug)]
pub struct Recovered {
    /// Its epoch.
    pub epoch: Epoch,
    /// What it holds.
    pub contents: Contents,
}

/// The checkpoints directory of a data dir.
pub fn root(data_dir: &Path) -> PathBuf {
    data_dir.join("checkpoints")
}

fn epoch_dir(root: &Path, epoch: Epoch) -> PathBuf {
    root.join(format!("{epoch:010}"))
}

/// Epochs with a directory (complete or not), newest first.
fn epochs(root: &Path) -> Vec<Epoch> {
    let mut out: Vec<Epoch> = std::fs::read_dir(root)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str()?.parse::<Epoch>().ok())
                .collect()
        })
        .unwrap_or_default();
    out.sort_unstable_by(|a, b| b.cmp(a));
    out
}

/// The first epoch not used by any directory under `root`.
pub fn next_epoch(root: &Path) -> Epoch {
    epochs(root).first().map_or(1, |e| e + 1)
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> EddyError + '_ {
    move |e| EddyError::Internal(format!("checkpoint file {}: {e}", path.display()))
}

fn write_file(dir: &Path, name: &str, batches: &[RecordBatch]) -> Result<Option<FileRef>> {
    let Some(first) = batches.first() else {
        return Ok(None);
    };
    let mut buf = Vec::new();
    {
        let mut w = FileWriter::try_new(&mut buf, &first.schema())?;
        for b in batches {
            w.write(b)?;
        }
        w.finish()?;
    }
    let path = dir.join(name);
    let mut f = std::fs::File::create(&path).map_err(io(&path))?;
    f.write_all(&buf).map_err(io(&path))?;
    f.sync_all().map_err(io(&path))?;
    Ok(Some(FileRef {
        file: name.to_string(),
        bytes: buf.len() as u64,
        crc32: crc32fast::hash(&buf),
    }))
}

fn read_file(dir: &Path, r: &FileRef) -> Result<Vec<RecordBatch>> {
    let path = dir.join(&r.file);
    let bytes = std::fs::read(&path).map_err(io(&path))?;
    if bytes.len() as u64 != r.bytes || crc32fast::hash(&bytes) != r.crc32 {
        return Err(EddyError::Internal(format!(
            "{} does not match its checksum ({} bytes, expected {})",
            path.display(),
            bytes.len(),
            r.bytes
        )));
    }
    let reader = FileReader::try_new(std::io::Cursor::new(bytes), None)?;
    Ok(reader.collect::<std::result::Result<Vec<_>, _>>()?)
}

/// Write checkpoint `epoch` under `root`; returns the bytes written. The
/// checkpoint is complete when this returns.
pub fn write(root: &Path, epoch: Epoch, contents: &Contents) -> Result<u64> {
    let dir = epoch_dir(root, epoch);
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let mut bytes = 0;
    let mut views = Vec::new();
    let mut names: Vec<&String> = contents.views.keys().collect();
    names.sort();
    for (i, name) in names.into_iter().enumerate() {
        let v = &contents.views[name];
        let groups = write_file(&dir, &format!("view-{i}.groups.arrow"), &v.snapshot.groups)?;
        let rows = write_file(&dir, &format!("view-{i}.rows.arrow"), &v.snapshot.rows)?;
        let sessions = write_file(
            &dir,
            &format!("view-{i}.sessions.arrow"),
            &v.snapshot.sessions,
        )?;
        let top_n = write_file(&dir, &format!("view-{i}.topn.arrow"), &v.snapshot.top_n)?;
        let join_l = write_file(&dir, &format!("view-{i}.join0.arrow"), &v.snapshot.join[0])?;
        let join_r = write_file(&dir, &format!("view-{i}.join1.arrow"), &v.snapshot.join[1])?;
        bytes += [&groups, &rows, &sessions, &top_n, &join_l, &join_r]
            .iter()
            .map(|f| f.as_ref().map_or(0, |f| f.bytes))
            .sum::<u64>();
        views.push(json!({
            "name": name,
            "id": v.id,
            "progress": v.snapshot.progress.to_json(),
            "groups": groups.as_ref().map(FileRef::to_json),
            "rows": rows.as_ref().map(FileRef::to_json),
            "sessions": sessions.as_ref().map(FileRef::to_json),
            "top_n": top_n.as_ref().map(FileRef::to_json),
            "join": [join_l.as_ref().map(FileRef::to_json), join_r.as_ref().map(FileRef::to_json)],
        }));
    }
    let mut sinks = Vec::new();
    let mut names: Vec<&String> = contents.sinks.keys().collect();
    names.sort();
    for (i, name) in names.into_iter().enumerate() {
        let k = &contents.sinks[name];
        let pending = write_file(
            &dir,
            &format!("sink-{i}.pending.arrow"),
            &k.snapshot.pending,
        )?;
        bytes += pending.as_ref().map_or(0, |f| f.bytes);
        sinks.push(json!({
            "name": name,
            "id": k.id,
            "delivered_at": k.snapshot.delivered_at
                .map(|(partition, offset)| json!({"partition": partition, "offset": offset})),
            "in_transaction": k.snapshot.in_transaction,
            "end_offsets": k.snapshot.end_offsets.iter()
                .map(|(p, o)| (p.to_string(), json!(o)))
                .collect::<serde_json::Map<String, Value>>(),
            "pending": pending.as_ref().map(FileRef::to_json),
        }));
    }
    let mut names: Vec<&String> = contents.streams.keys().collect();
    names.sort();
    let streams: Vec<Value> = names
        .into_iter()
        .map(|name| {
            let s = &contents.streams[name];
            json!({"name": name, "id": s.id, "position": s.position.to_json()})
        })
        .collect();
    let dead_letters = write_file(&dir, "dead_letters.arrow", &contents.dead_letters)?;
    bytes += dead_letters.as_ref().map_or(0, |f| f.bytes);
    let manifest = json!({
        "format": FORMAT,
        "version": VERSION,
        "epoch": epoch,
        "created_at_ms": chrono::Utc::now().timestamp_millis(),
        "streams": streams,
        "views": views,
        "sinks": sinks,
        "dead_letters": dead_letters.as_ref().map(FileRef::to_json),
    });
    let text = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| EddyError::Internal(format!("cannot encode manifest: {e}")))?;
    bytes += text.len() as u64;
    write_atomically(&dir.join(MANIFEST), &text)?;
    Ok(bytes)
}

fn read(root: &Path, epoch: Epoch) -> Result<Recovered> {
    let dir = epoch_dir(root, epoch);
    let path = dir.join(MANIFEST);
    let text = std::fs::read(&path).map_err(io(&path))?;
    let bad = |what: String| EddyError::Internal(format!("{}: {what}", path.display()));
    let m: Value =
        serde_json::from_slice(&text).map_err(|e| bad(format!("not a manifest: {e}")))?;
    if m["format"] != FORMAT || m["version"] != VERSION || m["epoch"] != epoch {
        return Err(bad(format!(
            "format {} version {} epoch {} is not readable here",
            m["format"], m["version"], m["epoch"]
        )));
    }
    let list = |key: &str| -> Result<Vec<Value>> {
        m[key]
            .as_array()
            .cloned()
            .ok_or_else(|| bad(format!("no {key} list")))
    };
    let mut contents = Contents::default();
    for s in list("streams")? {
        let (Some(name), Some(id), Some(position)) = (
            s["name"].as_str(),
            s["id"].as_u64(),
            StreamPosition::from_json(&s["position"]),
        ) else {
            return Err(bad(format!("bad stream entry {s}")));
        };
        contents
            .streams
            .insert(name.to_string(), SavedStream { id, position });
    }
    for v in list("views")? {
        let (Some(name), Some(id), Some(progress)) = (
            v["name"].as_str(),
            v["id"].as_u64(),
            ViewProgress::from_json(&v["progress"]),
        ) else {
            return Err(bad(format!("bad view entry {v}")));
        };
        let groups = match file_from_json(&v["groups"]).map_err(bad)? {
            Some(f) => read_file(&dir, &f)?,
            None => Vec::new(),
        };
        let rows = match file_from_json(&v["rows"]).map_err(bad)? {
            Some(f) => read_file(&dir, &f)?,
            None => Vec::new(),
        };
        // Absent in checkpoints written before SESSION windows and Top-N.
        let sessions = match file_from_json(&v["sessions"]).map_err(bad)? {
            Some(f) => read_file(&dir, &f)?,
            None => Vec::new(),
        };
        let top_n = match file_from_json(&v["top_n"]).map_err(bad)? {
            Some(f) => read_file(&dir, &f)?,
            None => Vec::new(),
        };
        // Absent in checkpoints written before joins.
        let mut join = [Vec::new(), Vec::new()];
        for (s, slot) in join.iter_mut().enumerate() {
            if let Some(f) = file_from_json(&v["join"][s]).map_err(bad)? {
                *slot = read_file(&dir, &f)?;
            }
        }
        contents.views.insert(
            name.to_string(),
            SavedView {
                id,
                snapshot: ViewSnapshot {
                    progress,
                    groups,
                    rows,
                    sessions,
                    top_n,
                    join,
                },
            },
        );
    }
    // Absent in checkpoints written before dead letters were kept.
    if let Some(f) = file_from_json(&m["dead_letters"]).map_err(bad)? {
        contents.dead_letters = read_file(&dir, &f)?;
    }
    // Checkpoints written before sinks took part have no "sinks" list.
    for k in m["sinks"].as_array().cloned().unwrap_or_default() {
        let (Some(name), Some(id)) = (k["name"].as_str(), k["id"].as_u64()) else {
            return Err(bad(format!("bad sink entry {k}")));
        };
        let at = &k["delivered_at"];
        let delivered_at = if at.is_null() {
            None
        } else {
            let partition = at["partition"].as_i64().and_then(|p| i32::try_from(p).ok());
            match (partition, at["offset"].as_i64()) {
                (Some(p), Some(o)) => Some((p, o)),
                _ => return Err(bad(format!("bad sink entry {k}"))),
            }
        };
        let pending = match file_from_json(&k["pending"]).map_err(bad)? {
            Some(f) => read_file(&dir, &f)?,
            None => Vec::new(),
        };
        contents.sinks.insert(
            name.to_string(),
            SavedSink {
                id,
                snapshot: SinkSnapshot {
                    delivered_at,
                    in_transaction: k["in_transaction"].as_u64().unwrap_or(0),
                    end_offsets: k["end_offsets"]
                        .as_object()
                        .map(|m| {
                            m.iter()
                                .filter_map(|(p, o)| Some((p.parse().ok()?, o.as_i64()?)))
                                .collect()
                        })
                        .unwrap_or_default(),
                    pending,
                },
            },
        );
    }
    Ok(Recovered { epoch, contents })
}

/// The newest checkpoint that reads back whole, and the complete ones newer
/// than it that do not (epoch, why), newest first. Those are skipped, and the
/// caller must say so where users look (`eddy.checkpoints`, sinks).
pub fn load_latest(root: &Path) -> (Option<Recovered>, Vec<(Epoch, String)>) {
    let mut corrupt = Vec::new();
    for epoch in epochs(root) {
        if !epoch_dir(root, epoch).join(MANIFEST).exists() {
            tracing::info!(
                epoch,
                "checkpoint has no manifest (never completed); skipped"
            );
            continue;
        }
        match read(root, epoch) {
            Ok(r) => return (Some(r), corrupt),
            Err(e) => {
                tracing::error!(
                    epoch,
                    error = %e,
                    "checkpoint is corrupt; falling back to an older checkpoint"
                );
                corrupt.push((epoch, e.to_string()));
            }
        }
    }
    (None, corrupt)
}

/// Remove all but the newest [`KEEP`] complete checkpoints, and any
/// incomplete one older than the newest complete one.
pub fn prune(root: &Path) {
    let mut complete = 0;
    for epoch in epochs(root) {
        let dir = epoch_dir(root, epoch);
        let keep = dir.join(MANIFEST).exists() && complete < KEEP;
        if dir.join(MANIFEST).exists() {
            complete += 1;
        }
        if !keep && complete > 0 {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::warn!(epoch, error = %e, "cannot remove an old checkpoint");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn contents(v: i64) -> Contents {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        let batch =
            RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![v, v + 1]))]).unwrap();
        let mut c = Contents::default();
        c.streams.insert(
            "t".into(),
            SavedStream {
                id: 1,
                position: StreamPosition {
                    rows: v as u64,
                    watermark: Some(v),
                    connector: None,
                },
            },
        );
        c.views.insert(
            "v".into(),
            SavedView {
                id: 2,
                snapshot: ViewSnapshot {
                    progress: ViewProgress::default(),
                    groups: vec![],
                    rows: vec![batch.clone()],
                    sessions: vec![],
                    top_n: vec![],
                    join: Default::default(),
                },
            },
        );
        c.sinks.insert(
            "k".into(),
            SavedSink {
                id: 3,
                snapshot: SinkSnapshot {
                    delivered_at: Some((2, v)),
                    in_transaction: 1,
                    end_offsets: vec![(0, 7), (2, v + 1)],
                    pending: vec![batch],
                },
            },
        );
        c
    }

    #[test]
    fn round_trip_fallback_and_prune() {
        let dir = std::env::temp_dir().join(format!("eddy-ckpt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let root = root(&dir);
        assert!(load_latest(&root).0.is_none());
        for e in 1..=5 {
            assert_eq!(next_epoch(&root), e);
            write(&root, e, &contents(e as i64)).unwrap();
            prune(&root);
        }
        assert_eq!(epochs(&root), vec![5, 4, 3]);
        let (r, corrupt) = load_latest(&root);
        let r = r.unwrap();
        assert!(corrupt.is_empty());
        assert_eq!(r.epoch, 5);
        assert_eq!(r.contents.streams["t"].position.rows, 5);
        assert_eq!(r.contents.views["v"].snapshot.rows[0].num_rows(), 2);
        let k = &r.contents.sinks["k"];
        assert_eq!((k.id, k.snapshot.delivered_at), (3, Some((2, 5))));
        assert_eq!(k.snapshot.pending[0].num_rows(), 2);
        assert_eq!(k.snapshot.end_offsets, vec![(0, 7), (2, 6)]);
        // Flip a byte of the newest checkpoint's data: it is skipped.
        let f = epoch_dir(&root, 5).join("view-0.rows.arrow");
        let mut bytes = std::fs::read(&f).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(&f, bytes).unwrap();
        let (r, corrupt) = load_latest(&root);
        assert_eq!(r.unwrap().epoch, 4);
        assert_eq!(corrupt.len(), 1);
        assert_eq!(corrupt[0].0, 5);
        assert!(corrupt[0].1.contains("checksum"), "{corrupt:?}");
        // An epoch directory without a manifest (a crash mid-write) is skipped
        // too, and is not corrupt: it never completed.
        std::fs::create_dir_all(epoch_dir(&root, 6)).unwrap();
        let (r, corrupt) = load_latest(&root);
        assert_eq!((r.unwrap().epoch, corrupt.len()), (4, 1));
        assert_eq!(next_epoch(&root), 7);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
