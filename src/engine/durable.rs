//! Catalog durability: every table, source, view and sink is recorded in
//! `<data-dir>/catalog.json` (its `CREATE` statement, in creation order) and
//! recreated from it on start, so a restart does not forget what users built.
//!
//! The file is replaced atomically after each `CREATE` / `DROP`: written to a
//! temporary file, fsynced, renamed over the old one, and the directory
//! fsynced. A file this version cannot read stops the server with a clear
//! error rather than silently starting empty.

use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::error::{EddyError, Result};
use crate::storage::write_atomically;

/// Format name and version written into the file.
const FORMAT: &str = "eddy-catalog";
const VERSION: u64 = 1;
/// File name inside the data dir.
pub const CATALOG_FILE: &str = "catalog.json";

/// One recorded object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Persisted {
    /// Object name.
    pub name: String,
    /// `table`, `source`, `materialized view` or `sink`.
    pub kind: String,
    /// The `CREATE` statement as the user wrote it.
    pub sql: String,
    /// Never reused: an object dropped and created again gets a new id, so
    /// checkpointed state of the old one is not mistaken for the new one's.
    pub id: u64,
}

/// The durable list of objects, in creation order.
#[derive(Debug)]
pub struct DurableCatalog {
    path: PathBuf,
    objects: Mutex<Vec<Persisted>>,
    next_id: Mutex<u64>,
}

impl DurableCatalog {
    /// Open (or start) the catalog file in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        let path = dir.join(CATALOG_FILE);
        let (objects, next_id) = match std::fs::read(&path) {
            Ok(bytes) => parse(&bytes)
                .map_err(|e| EddyError::Internal(format!("cannot read {}: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Vec::new(), 1),
            Err(e) => {
                return Err(EddyError::Internal(format!(
                    "cannot read {}: {e}",
                    path.display()
                )))
            }
        };
        Ok(DurableCatalog {
            path,
            objects: Mutex::new(objects),
            next_id: Mutex::new(next_id),
        })
    }

    /// The recorded objects, in creation order.
    pub fn objects(&self) -> Vec<Persisted> {
        self.objects.lock().clone()
    }

    /// Take the next id for an object about to be created (its storage is
    /// named by it before the object is recorded). An id reserved but never
    /// recorded is simply skipped: ids are never reused.
    pub fn reserve_id(&self) -> u64 {
        let mut next = self.next_id.lock();
        let id = *next;
        *next += 1;
        id
    }

    /// Record a created object (replacing one of the same name) and write
    /// the file. Its `id` is assigned here unless it was reserved (non-zero).
    pub fn created(&self, mut object: Persisted) -> Result<()> {
        let mut g = self.objects.lock();
        let mut next = self.next_id.lock();
        if object.id == 0 {
            object.id = *next;
        }
        let next_after = (*next).max(object.id + 1);
        g.retain(|o| o.name != object.name);
        g.push(object);
        write_atomically(&self.path, &render(&g, next_after))?;
        *next = next_after;
        Ok(())
    }

    /// Give the recorded object `name` a new statement, keeping its id and
    /// its place in the creation order, and write the file.
    pub fn redefined(&self, name: &str, sql: &str) -> Result<()> {
        let mut g = self.objects.lock();
        let Some(o) = g.iter_mut().find(|o| o.name == name) else {
            return Err(EddyError::Internal(format!("\"{name}\" is not recorded")));
        };
        let before = std::mem::replace(&mut o.sql, sql.to_string());
        if let Err(e) = write_atomically(&self.path, &render(&g, *self.next_id.lock())) {
            if let Some(o) = g.iter_mut().find(|o| o.name == name) {
                o.sql = before;
            }
            return Err(e);
        }
        Ok(())
    }

    /// The id of the recorded object `name`.
    pub fn id_of(&self, name: &str) -> Option<u64> {
        self.objects
            .lock()
            .iter()
            .find(|o| o.name == name)
            .map(|o| o.id)
    }

    /// The record of `name`, if there is one.
    pub fn record_of(&self, name: &str) -> Option<Persisted> {
        self.objects.lock().iter().find(|o| o.name == name).cloned()
    }

    /// Forget dropped objects and write the file.
    pub fn dropped(&self, names: &[String]) -> Result<()> {
        let mut g = self.objects.lock();
        g.retain(|o| !names.contains(&o.name));
        write_atomically(&self.path, &render(&g, *self.next_id.lock()))
    }
}

fn render(objects: &[Persisted], next_id: u64) -> Vec<u8> {
    let list: Vec<Value> = objects
        .iter()
        .map(|o| json!({"name": o.name, "kind": o.kind, "sql": o.sql, "id": o.id}))
        .collect();
    let doc = json!({"format": FORMAT, "version": VERSION, "next_id": next_id, "objects": list});
    let mut out = serde_json::to_vec_pretty(&doc).unwrap_or_default();
    out.push(b'\n');
    out
}

fn parse(bytes: &[u8]) -> std::result::Result<(Vec<Persisted>, u64), String> {
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    if doc["format"] != FORMAT {
        return Err(format!("not an eddy catalog (format {})", doc["format"]));
    }
    if doc["version"] != VERSION {
        return Err(format!(
            "catalog version {} is not supported (this eddy reads version {VERSION})",
            doc["version"]
        ));
    }
    let list = doc["objects"].as_array().ok_or("no objects list")?;
    let objects = list
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let field = |k: &str| {
                o[k].as_str()
                    .map(str::to_string)
                    .ok_or(format!("object without {k}: {o}"))
            };
            Ok(Persisted {
                name: field("name")?,
                kind: field("kind")?,
                sql: field("sql")?,
                // Catalogs written before ids existed: number objects in order.
                id: o["id"].as_u64().unwrap_or(i as u64 + 1),
            })
        })
        .collect::<std::result::Result<Vec<_>, String>>()?;
    let max_id = objects.iter().map(|o| o.id).max().unwrap_or(0);
    let next_id = doc["next_id"].as_u64().unwrap_or(0).max(max_id + 1);
    Ok((objects, next_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_in_order_and_drop() {
        let dir = std::env::temp_dir().join(format!("eddy-durable-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let _ = std::fs::remove_file(dir.join(CATALOG_FILE));
        let c = DurableCatalog::open(&dir).unwrap();
        let obj = |n: &str| Persisted {
            name: n.into(),
            kind: "table".into(),
            sql: format!("CREATE TABLE {n} (v INT)"),
            id: 0,
        };
        c.created(obj("b")).unwrap();
        c.created(obj("a")).unwrap();
        c.created(obj("c")).unwrap();
        c.dropped(&["a".into()]).unwrap();
        let again = DurableCatalog::open(&dir).unwrap();
        let names: Vec<(String, u64)> = again
            .objects()
            .into_iter()
            .map(|o| (o.name, o.id))
            .collect();
        assert_eq!(names, vec![("b".into(), 1), ("c".into(), 3)]);
        // Ids are never reused, even after a restart.
        again.created(obj("a")).unwrap();
        assert_eq!(again.id_of("a"), Some(4));
        // A reserved id is the one recorded; one reserved and never used is skipped.
        let reserved = again.reserve_id();
        assert_eq!(reserved, 5);
        assert_eq!(again.reserve_id(), 6);
        again
            .created(Persisted {
                id: reserved,
                ..obj("d")
            })
            .unwrap();
        assert_eq!(again.id_of("d"), Some(5));
        again.created(obj("e")).unwrap();
        assert_eq!(again.id_of("e"), Some(7));
        std::fs::write(
            dir.join(CATALOG_FILE),
            b"{\"format\": \"eddy-catalog\", \"version\": 9}",
        )
        .unwrap();
        let err = DurableCatalog::open(&dir).unwrap_err().to_string();
        assert!(err.contains("version 9 is not supported"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
