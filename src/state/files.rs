//! Checkpoints on disk.
//!
//! ```text
//! <data-dir>/checkpoints/0000000042/
//!     view-0.rows.arrow     rows of the first view (Arrow IPC file)
//!     view-0.node-3.groups.arrow   state part `groups` of its 4th operator partition
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

use super::{Epoch, NodeSnapshot, OperatorState, SinkSnapshot, StreamPosition, ViewSnapshot};
use crate::error::{EddyError, Result};
use crate::storage::write_atomically;

/// Format name and version in every manifest.
const FORMAT: &str = "eddy-checkpoint";
const VERSION: u64 = 2;
/// The format before views were graphs of operators: read, never written.
const VERSION_FIXED_SHAPE: u64 = 1;
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
        let rows = write_file(&dir, &format!("view-{i}.rows.arrow"), &v.snapshot.rows)?;
        bytes += rows.as_ref().map_or(0, |f| f.bytes);
        let mut nodes = Vec::new();
        for (j, n) in v.snapshot.nodes.iter().enumerate() {
            let mut state = serde_json::Map::new();
            for (part, batches) in &n.state.parts {
                if !part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(EddyError::Internal(format!(
                        "operator {} names a state part {part:?}",
                        n.id
                    )));
                }
                if let Some(f) =
                    write_file(&dir, &format!("view-{i}.node-{j}.{part}.arrow"), batches)?
                {
                    bytes += f.bytes;
                    state.insert(part.clone(), f.to_json());
                }
            }
            nodes.push(json!({
                "id": n.id,
                "partition": n.partition,
                "watermarks": n.watermarks,
                "forwarded": n.forwarded,
                "rows_late": n.rows_late,
                "state": state,
            }));
        }
        views.push(json!({
            "name": name,
            "id": v.id,
            "published_watermark": v.snapshot.published_watermark,
            "position": v.snapshot.position,
            "backfills": v.snapshot.backfills,
            "rows": rows.as_ref().map(FileRef::to_json),
            "nodes": nodes,
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
    let mut streams: Vec<Value> = Vec::new();
    for (i, name) in names.into_iter().enumerate() {
        let s = &contents.streams[name];
        let current = write_file(
            &dir,
            &format!("stream-{i}.current.arrow"),
            &s.position.current,
        )?;
        bytes += current.as_ref().map_or(0, |f| f.bytes);
        streams.push(json!({
            "name": name,
            "id": s.id,
            "position": s.position.to_json(),
            "current": current.as_ref().map(FileRef::to_json),
        }));
    }
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
    let version = m["version"].as_u64();
    let known = version == Some(VERSION) || version == Some(VERSION_FIXED_SHAPE);
    if m["format"] != FORMAT || !known || m["epoch"] != epoch {
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
        let (Some(name), Some(id), Some(mut position)) = (
            s["name"].as_str(),
            s["id"].as_u64(),
            StreamPosition::from_json(&s["position"]),
        ) else {
            return Err(bad(format!("bad stream entry {s}")));
        };
        if let Some(f) = file_from_json(&s["current"]).map_err(bad)? {
            position.current = read_file(&dir, &f)?;
        }
        contents
            .streams
            .insert(name.to_string(), SavedStream { id, position });
    }
    for v in list("views")? {
        let (Some(name), Some(id)) = (v["name"].as_str(), v["id"].as_u64()) else {
            return Err(bad(format!("bad view entry {v}")));
        };
        let snapshot = if version == Some(VERSION_FIXED_SHAPE) {
            fixed_shape_view(&dir, &v).map_err(|e| bad(format!("view {name}: {e}")))?
        } else {
            graph_view(&dir, &v).map_err(|e| bad(format!("view {name}: {e}")))?
        };
        contents
            .views
            .insert(name.to_string(), SavedView { id, snapshot });
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

/// The batches of an optional file entry.
fn read_optional(dir: &Path, v: &Value) -> Result<Vec<RecordBatch>> {
    match file_from_json(v).map_err(EddyError::Internal)? {
        Some(f) => read_file(dir, &f),
        None => Ok(Vec::new()),
    }
}

fn watermarks(v: &Value) -> Vec<Option<i64>> {
    v.as_array()
        .map(|a| a.iter().map(Value::as_i64).collect())
        .unwrap_or_default()
}

/// A view entry of the current format: rows, then each operator partition.
fn graph_view(dir: &Path, v: &Value) -> Result<ViewSnapshot> {
    let bad = |what: &str| EddyError::Internal(format!("bad {what} in {v}"));
    let mut nodes = Vec::new();
    for n in v["nodes"].as_array().ok_or_else(|| bad("node list"))? {
        let (Some(id), Some(partition)) = (n["id"].as_str(), n["partition"].as_u64()) else {
            return Err(bad("node entry"));
        };
        let mut state = OperatorState::default();
        for (part, f) in n["state"].as_object().ok_or_else(|| bad("node state"))? {
            state.put(part, read_optional(dir, f)?);
        }
        nodes.push(NodeSnapshot {
            id: id.to_string(),
            partition: usize::try_from(partition).map_err(|_| bad("partition"))?,
            watermarks: watermarks(&n["watermarks"]),
            forwarded: n["forwarded"].as_i64(),
            rows_late: n["rows_late"].as_u64().unwrap_or(0),
            state,
        });
    }
    Ok(ViewSnapshot {
        published_watermark: v["published_watermark"].as_i64(),
        rows: read_optional(dir, &v["rows"])?,
        position: v["position"].as_i64(),
        backfills: v["backfills"]
            .as_object()
            .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
        nodes,
    })
}

/// A view entry of format 1 (fixed-shape plans): its fields become the
/// state of the operators the graph of such a view has — `aggregate`,
/// `sessions`, `top_n`, `join`, the windows and late-row filters in front.
fn fixed_shape_view(dir: &Path, v: &Value) -> Result<ViewSnapshot> {
    let progress = &v["progress"];
    let input = progress["input_watermark"].as_i64();
    let sides = watermarks(&progress["side_watermarks"]);
    let node = |id: &str, wms: Vec<Option<i64>>, state: OperatorState| NodeSnapshot {
        id: id.to_string(),
        partition: 0,
        forwarded: wms.iter().copied().flatten().min(),
        watermarks: wms,
        rows_late: 0,
        state,
    };
    let mut nodes = vec![NodeSnapshot {
        // No such operator: its late rows count toward the view's first one.
        id: "format-1-progress".into(),
        rows_late: progress["rows_late"].as_u64().unwrap_or(0),
        ..NodeSnapshot::default()
    }];
    let state = |part: &str, key: &Value| -> Result<OperatorState> {
        Ok(OperatorState::single(part, read_optional(dir, key)?))
    };
    if let [l, r] = sides[..] {
        let mut join = state("left", &v["join"][0])?;
        join.extend(state("right", &v["join"][1])?);
        nodes.push(node("join", vec![l, r], join));
        for (id, w) in [
            ("window", l),
            ("window_2", r),
            ("drop_late", l),
            ("drop_late_2", r),
        ] {
            nodes.push(node(id, vec![w], OperatorState::default()));
        }
    } else {
        nodes.push(node("window", vec![input], OperatorState::default()));
    }
    nodes.push(node("top_n", vec![input], state("rows", &v["top_n"])?));
    nodes.push(node(
        "sessions",
        vec![input],
        state("rows", &v["sessions"])?,
    ));
    nodes.push(node(
        "aggregate",
        vec![input],
        state("groups", &v["groups"])?,
    ));
    Ok(ViewSnapshot {
        published_watermark: progress["published_watermark"].as_i64(),
        rows: read_optional(dir, &v["rows"])?,
        position: None,
        nodes,
        backfills: Default::default(),
    })
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
                    current: vec![batch.clone()],
                },
            },
        );
        c.views.insert(
            "v".into(),
            SavedView {
                id: 2,
                snapshot: ViewSnapshot {
                    published_watermark: Some(v),
                    rows: vec![batch.clone()],
                    position: Some(v + 1),
                    nodes: vec![NodeSnapshot {
                        id: "join".into(),
                        partition: 1,
                        watermarks: vec![Some(v), None],
                        forwarded: None,
                        rows_late: 4,
                        state: OperatorState::single("left", vec![batch.clone()]),
                    }],
                    backfills: [("s".to_string(), serde_json::json!({"rows": v}))].into(),
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
        assert_eq!(r.contents.streams["t"].position.current[0].num_rows(), 2);
        let view = &r.contents.views["v"].snapshot;
        assert_eq!(view.rows[0].num_rows(), 2);
        assert_eq!(view.published_watermark, Some(5));
        assert_eq!(view.position, Some(6));
        assert_eq!(view.backfills["s"], serde_json::json!({"rows": 5}));
        let node = &view.nodes[0];
        assert_eq!(
            (node.id.as_str(), node.partition, node.rows_late),
            ("join", 1, 4)
        );
        assert_eq!(node.watermarks, [Some(5), None]);
        assert_eq!(node.state.parts["left"][0].num_rows(), 2);
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

    /// A checkpoint written before views were operator graphs loads: its
    /// fixed fields become the state of the operators such a view has.
    #[test]
    fn format_1_checkpoints_load_as_operator_state() {
        let dir = std::env::temp_dir().join(format!("eddy-ckpt-v1-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let root = root(&dir);
        let epoch_path = epoch_dir(&root, 3);
        std::fs::create_dir_all(&epoch_path).unwrap();
        let c = contents(1);
        let batch = c.views["v"].snapshot.rows[0].clone();
        let groups = write_file(
            &epoch_path,
            "view-0.groups.arrow",
            std::slice::from_ref(&batch),
        )
        .unwrap()
        .unwrap();
        let rows = write_file(&epoch_path, "view-0.rows.arrow", &[batch])
            .unwrap()
            .unwrap();
        let manifest = json!({
            "format": FORMAT, "version": 1, "epoch": 3, "streams": [], "sinks": [],
            "views": [{
                "name": "v", "id": 9,
                "progress": {"input_watermark": 70, "partition_watermarks": [60, 60],
                             "published_watermark": 50, "rows_late": 6, "side_watermarks": []},
                "groups": groups.to_json(), "rows": rows.to_json(),
                "sessions": null, "top_n": null, "join": [null, null],
            }],
        });
        std::fs::write(epoch_path.join(MANIFEST), manifest.to_string()).unwrap();
        let (r, corrupt) = load_latest(&root);
        assert!(corrupt.is_empty(), "{corrupt:?}");
        let v = &r.unwrap().contents.views["v"].snapshot;
        assert_eq!((v.published_watermark, v.rows[0].num_rows()), (Some(50), 2));
        let find = |id: &str| v.nodes.iter().find(|n| n.id == id).unwrap();
        assert_eq!(find("aggregate").state.parts["groups"][0].num_rows(), 2);
        assert_eq!(find("aggregate").watermarks, [Some(70)]);
        assert_eq!(find("window").watermarks, [Some(70)]);
        assert!(find("top_n").state.is_empty());
        assert_eq!(v.nodes.iter().map(|n| n.rows_late).sum::<u64>(), 6);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
