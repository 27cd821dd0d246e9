//! The catalog: every table, source and materialized view, with the tasks
//! that keep it running and what depends on what.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::task::JoinSet;

use crate::connectors::kafka::SinkObject;
use crate::connectors::StreamObject;
use crate::sql::ObjectKind;
use crate::views::MaterializedView;

/// What an entry is.
pub enum ObjectRef {
    /// A table or source.
    Stream(Arc<StreamObject>),
    /// A materialized view.
    View(Arc<MaterializedView>),
    /// A sink.
    Sink(Arc<SinkObject>),
}

/// One catalog entry.
pub struct Entry {
    /// The object.
    pub object: ObjectRef,
    /// The `CREATE` statement, for `SHOW CREATE`.
    pub sql: String,
    /// Names of the objects this one reads.
    pub depends_on: Vec<String>,
    /// Tasks that run it (connector, view pipeline); aborted on drop.
    pub tasks: JoinSet<()>,
}

impl Entry {
    /// Table, source or view.
    pub fn kind(&self) -> ObjectKind {
        match &self.object {
            ObjectRef::Stream(s) => s.kind,
            ObjectRef::View(_) => ObjectKind::MaterializedView,
            ObjectRef::Sink(_) => ObjectKind::Sink,
        }
    }
}

/// All objects, by name.
#[derive(Default)]
pub struct Catalog {
    entries: Mutex<BTreeMap<String, Entry>>,
}

impl Catalog {
    /// Run `f` with the entries locked (keep it short: no awaits inside).
    pub fn with<R>(&self, f: impl FnOnce(&mut BTreeMap<String, Entry>) -> R) -> R {
        f(&mut self.entries.lock())
    }

    /// All streams (tables and sources), by name.
    pub fn streams(&self) -> Vec<Arc<StreamObject>> {
        self.with(|e| {
            e.values()
                .filter_map(|e| match &e.object {
                    ObjectRef::Stream(s) => Some(s.clone()),
                    _ => None,
                })
                .collect()
        })
    }

    /// All views, by name.
    pub fn views(&self) -> Vec<Arc<MaterializedView>> {
        self.with(|e| {
            e.values()
                .filter_map(|e| match &e.object {
                    ObjectRef::View(v) => Some(v.clone()),
                    _ => None,
                })
                .collect()
        })
    }

    /// All sinks, by name.
    pub fn sinks(&self) -> Vec<Arc<SinkObject>> {
        self.with(|e| {
            e.values()
                .filter_map(|e| match &e.object {
                    ObjectRef::Sink(s) => Some(s.clone()),
                    _ => None,
                })
                .collect()
        })
    }

    /// Names of objects that read `name` directly.
    pub fn dependants(&self, name: &str) -> Vec<String> {
        self.with(|e| {
            e.iter()
                .filter(|(_, e)| e.depends_on.iter().any(|d| d == name))
                .map(|(n, _)| n.clone())
                .collect()
        })
    }
}
