//! `eddy.dead_letters`: every record a source rejected, kept with its raw
//! bytes, where it came from and why, in a bounded store (oldest out first;
//! evictions are counted per source in `eddy.sources.dead_letters_evicted`).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, BinaryArray, Int32Array, Int64Array, StringArray, TimestampNanosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::TableType;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use parking_lot::Mutex;

/// Bytes of bookkeeping counted per dead letter on top of its payload, key and error.
const ENTRY_OVERHEAD_BYTES: usize = 96;

/// One rejected record.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Source name.
    pub source: Arc<str>,
    /// Kafka partition, if any.
    pub partition: Option<i32>,
    /// Kafka offset or file line number.
    pub offset: Option<i64>,
    /// Message key, if any.
    pub key: Option<Vec<u8>>,
    /// The record's raw bytes.
    pub payload: Vec<u8>,
    /// Why it was rejected.
    pub error: String,
    /// When eddy received it (ns since the epoch).
    pub received_at_ns: i64,
    /// The source's eviction counter.
    pub evicted: Arc<AtomicU64>,
}

impl DeadLetter {
    fn bytes(&self) -> usize {
        self.payload.len()
            + self.key.as_ref().map_or(0, Vec::len)
            + self.error.len()
            + ENTRY_OVERHEAD_BYTES
    }
}

/// Where a Kafka record sits: source, partition, offset.
type Position = (Arc<str>, i32, i64);

struct Inner {
    rows: VecDeque<(u64, DeadLetter)>,
    bytes: usize,
    next_id: u64,
    /// Kafka positions of the kept letters: a record read again after a
    /// restart (between a checkpoint and the crash) is not kept twice.
    positions: std::collections::HashSet<Position>,
    /// Each source's count of its dead letters evicted by the bound.
    evicted_by_source: HashMap<Arc<str>, Arc<AtomicU64>>,
}

fn position(l: &DeadLetter) -> Option<Position> {
    Some((l.source.clone(), l.partition?, l.offset?))
}

/// The bounded store behind `eddy.dead_letters`.
pub struct DeadLetterStore {
    inner: Mutex<Inner>,
    max_rows: usize,
    max_bytes: usize,
    evicted_total: AtomicU64,
}

impl std::fmt::Debug for DeadLetterStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetterStore")
            .field("max_rows", &self.max_rows)
            .finish()
    }
}

impl DeadLetterStore {
    /// A store keeping at most `max_rows` dead letters and `max_bytes` bytes.
    pub fn new(max_rows: usize, max_bytes: usize) -> Self {
        DeadLetterStore {
            inner: Mutex::new(Inner {
                rows: VecDeque::new(),
                bytes: 0,
                next_id: 1,
                positions: std::collections::HashSet::new(),
                evicted_by_source: HashMap::new(),
            }),
            max_rows,
            max_bytes,
            evicted_total: AtomicU64::new(0),
        }
    }

    /// Add dead letters, evicting the oldest beyond the bounds. A Kafka
    /// record already kept (same source, partition and offset) is skipped.
    pub fn push(&self, letters: impl IntoIterator<Item = DeadLetter>) {
        let mut g = self.inner.lock();
        for l in letters {
            if let Some(p) = position(&l) {
                if !g.positions.insert(p) {
                    continue;
                }
            }
            let id = g.next_id;
            g.next_id += 1;
            g.bytes += l.bytes();
            g.rows.push_back((id, l));
        }
        while g.rows.len() > self.max_rows || (g.bytes > self.max_bytes && !g.rows.is_empty()) {
            if let Some((_, old)) = g.rows.pop_front() {
                g.bytes -= old.bytes();
                if let Some(p) = position(&old) {
                    g.positions.remove(&p);
                }
                old.evicted.fetch_add(1, Ordering::Relaxed);
                self.evicted_total.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The counter of `source`'s dead letters evicted by the bound (shared
    /// by every source of that name, and by letters restored from a checkpoint).
    pub fn evicted_counter(&self, source: &str) -> Arc<AtomicU64> {
        self.inner
            .lock()
            .evicted_by_source
            .entry(source.into())
            .or_default()
            .clone()
    }

    /// The kept dead letters as batches of `eddy.dead_letters` rows, for a checkpoint.
    pub fn snapshot(&self) -> datafusion::error::Result<Vec<RecordBatch>> {
        let b = self.batch()?;
        Ok(if b.num_rows() == 0 {
            Vec::new()
        } else {
            vec![b]
        })
    }

    /// Put back dead letters from a checkpoint (before any source runs).
    pub fn restore(&self, batches: &[RecordBatch]) -> crate::error::Result<()> {
        use datafusion::arrow::array::{Array, AsArray};
        use datafusion::arrow::datatypes::{Int32Type, Int64Type, TimestampNanosecondType};
        let mut letters = Vec::new();
        for b in batches {
            // A file from disk: a column of the wrong type is an error, not a panic.
            let bad = |name: &str| {
                crate::error::EddyError::Internal(format!(
                    "checkpointed dead letters: column {name} is missing or of the wrong type"
                ))
            };
            let col = |name: &str| b.column_by_name(name).ok_or_else(|| bad(name));
            let int64 = |name: &str| {
                col(name)?
                    .as_primitive_opt::<Int64Type>()
                    .ok_or_else(|| bad(name))
            };
            let text = |name: &str| col(name)?.as_string_opt::<i32>().ok_or_else(|| bad(name));
            let id = int64("id")?;
            let source = text("source")?;
            let partition = col("partition")?
                .as_primitive_opt::<Int32Type>()
                .ok_or_else(|| bad("partition"))?;
            let offset = int64("offset")?;
            let key = text("key")?;
            let error = text("error")?;
            let at = col("received_at")?
                .as_primitive_opt::<TimestampNanosecondType>()
                .ok_or_else(|| bad("received_at"))?;
            let payload = col("payload_bytes")?
                .as_binary_opt::<i32>()
                .ok_or_else(|| bad("payload_bytes"))?;
            for i in 0..b.num_rows() {
                let source: Arc<str> = source.value(i).into();
                letters.push((
                    id.value(i) as u64,
                    DeadLetter {
                        evicted: self.evicted_counter(&source),
                        source,
                        partition: partition.is_valid(i).then(|| partition.value(i)),
                        offset: offset.is_valid(i).then(|| offset.value(i)),
                        key: key.is_valid(i).then(|| key.value(i).as_bytes().to_vec()),
                        payload: payload.value(i).to_vec(),
                        error: error.value(i).to_string(),
                        received_at_ns: at.value(i),
                    },
                ));
            }
        }
        let mut g = self.inner.lock();
        for (id, l) in letters {
            g.next_id = g.next_id.max(id + 1);
            g.bytes += l.bytes();
            if let Some(p) = position(&l) {
                g.positions.insert(p);
            }
            g.rows.push_back((id, l));
        }
        Ok(())
    }

    /// Dead letters currently kept.
    pub fn len(&self) -> usize {
        self.inner.lock().rows.len()
    }

    /// True when none are kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Dead letters evicted so far (all sources).
    pub fn evicted(&self) -> u64 {
        self.evicted_total.load(Ordering::Relaxed)
    }

    fn schema() -> SchemaRef {
        let f = |n: &str, t: DataType, null: bool| Field::new(n, t, null);
        Arc::new(Schema::new(vec![
            f("id", DataType::Int64, false),
            f("source", DataType::Utf8, false),
            f("partition", DataType::Int32, true),
            f("offset", DataType::Int64, true),
            f("key", DataType::Utf8, true),
            f("payload", DataType::Utf8, false),
            f("error", DataType::Utf8, false),
            f(
                "received_at",
                DataType::Timestamp(TimeUnit::Nanosecond, None),
                false,
            ),
            f("payload_bytes", DataType::Binary, false),
        ]))
    }

    fn batch(&self) -> datafusion::error::Result<RecordBatch> {
        let g = self.inner.lock();
        let rows = &g.rows;
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let cols: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|(id, _)| *id as i64),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|(_, l)| l.source.as_ref()),
            )),
            Arc::new(Int32Array::from_iter(rows.iter().map(|(_, l)| l.partition))),
            Arc::new(Int64Array::from_iter(rows.iter().map(|(_, l)| l.offset))),
            Arc::new(StringArray::from_iter(
                rows.iter().map(|(_, l)| l.key.as_deref().map(text)),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|(_, l)| text(&l.payload)),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|(_, l)| l.error.as_str()),
            )),
            Arc::new(TimestampNanosecondArray::from_iter_values(
                rows.iter().map(|(_, l)| l.received_at_ns),
            )),
            Arc::new(BinaryArray::from_iter_values(
                rows.iter().map(|(_, l)| l.payload.as_slice()),
            )),
        ];
        Ok(RecordBatch::try_new(Self::schema(), cols)?)
    }
}

/// `eddy.dead_letters` as a table.
#[derive(Debug)]
pub struct DeadLetterTable(pub Arc<DeadLetterStore>);

#[async_trait]
impl TableProvider for DeadLetterTable {
    fn schema(&self) -> SchemaRef {
        DeadLetterStore::schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let batch = self.0.batch()?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            self.schema(),
            projection.cloned(),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dead letter at the next offset of partition 0.
    fn letter(payload: &str, evicted: &Arc<AtomicU64>) -> DeadLetter {
        static NEXT: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
        DeadLetter {
            source: "s".into(),
            partition: Some(0),
            offset: Some(NEXT.fetch_add(1, Ordering::Relaxed)),
            key: None,
            payload: payload.as_bytes().to_vec(),
            error: "bad".into(),
            received_at_ns: 0,
            evicted: evicted.clone(),
        }
    }

    #[test]
    fn oldest_are_evicted_and_counted() {
        let store = DeadLetterStore::new(2, usize::MAX);
        let evicted = Arc::new(AtomicU64::new(0));
        store.push(["a", "b", "c"].map(|p| letter(p, &evicted)));
        assert_eq!(store.len(), 2);
        assert_eq!(evicted.load(Ordering::Relaxed), 1);
        let b = store.batch().unwrap();
        let payloads = b.column(5).as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(payloads.value(0), "b");
        assert_eq!(payloads.value(1), "c");
    }

    #[test]
    fn a_snapshot_restores_letters_ids_and_counters() {
        let store = DeadLetterStore::new(10, usize::MAX);
        let evicted = store.evicted_counter("s");
        store.push(["a", "b"].map(|p| letter(p, &evicted)));
        let snap = store.snapshot().unwrap();
        let again = DeadLetterStore::new(10, usize::MAX);
        again.restore(&snap).unwrap();
        assert_eq!(again.batch().unwrap(), store.batch().unwrap());
        // New letters continue the ids; the source's eviction counter is shared.
        again.push([letter("c", &again.evicted_counter("s"))]);
        let ids = again.batch().unwrap();
        let ids = ids.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(ids.values().to_vec(), vec![1, 2, 3]);
        assert!(Arc::ptr_eq(
            &again.evicted_counter("s"),
            &again.evicted_counter("s")
        ));
        assert!(DeadLetterStore::new(1, 1).snapshot().unwrap().is_empty());
        // A damaged file (a column of another type) is an error, not a panic.
        let wrong = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, false)])),
            vec![Arc::new(StringArray::from(vec!["x"]))],
        )
        .unwrap();
        let e = DeadLetterStore::new(1, 1).restore(&[wrong]).unwrap_err();
        assert!(e.to_string().contains("column id"), "{e}");
    }

    #[test]
    fn byte_bound_holds() {
        let store = DeadLetterStore::new(100, 2 * (ENTRY_OVERHEAD_BYTES + 10));
        let evicted = Arc::new(AtomicU64::new(0));
        store.push((0..5).map(|_| letter("0123456", &evicted)));
        assert_eq!(store.len(), 2);
        assert_eq!(store.evicted(), 3);
    }

    /// A Kafka record read again after a restart (the reader resumes at the
    /// checkpoint, behind letters it had already reported) is kept once;
    /// file lines (no partition) and evicted positions are not remembered.
    #[test]
    fn a_kafka_record_rejected_again_is_kept_once() {
        let store = DeadLetterStore::new(3, usize::MAX);
        let evicted = store.evicted_counter("s");
        let at = |offset: i64, partition: Option<i32>| DeadLetter {
            offset: Some(offset),
            partition,
            ..letter("x", &evicted)
        };
        store.push([at(10, Some(0)), at(11, Some(0)), at(10, Some(1))]);
        let again = DeadLetterStore::new(3, usize::MAX);
        again.restore(&store.snapshot().unwrap()).unwrap();
        again.push([at(10, Some(0)), at(11, Some(0))]);
        assert_eq!(again.len(), 3);
        again.push([at(5, None), at(5, None)]);
        assert_eq!(again.len(), 3);
        assert_eq!(again.evicted(), 2);
        // (10, 0) was evicted: seen again, it is kept again.
        again.push([at(10, Some(0))]);
        let b = again.batch().unwrap();
        let offsets = b.column(3).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(offsets.values().to_vec(), vec![5, 5, 10]);
    }
}
