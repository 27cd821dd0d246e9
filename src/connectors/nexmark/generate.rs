//! Nexmark events to Arrow batches, and the reader thread that delivers them at the configured rate.

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{
    ArrayRef, Int64Array, LargeStringArray, StringArray, StringViewArray, TimestampMillisecondArray,
};
use datafusion::arrow::compute::{can_cast_types, cast};
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use nexmark::event::Event;
use nexmark::EventGenerator;
use tokio::sync::mpsc;

use super::{EventKind, NexmarkOptions};
use crate::connectors::runner::Produced;
use crate::error::{EddyError, Result};

/// How a standard column's values are read from an event.
#[derive(Clone, Copy)]
enum Read {
    Int(fn(&Event) -> i64),
    Str(fn(&Event) -> &str),
    /// Milliseconds since the epoch.
    Time(fn(&Event) -> i64),
}

impl Read {
    fn natural_type(self) -> DataType {
        match self {
            Read::Int(_) => DataType::Int64,
            Read::Str(_) => DataType::Utf8,
            Read::Time(_) => DataType::Timestamp(TimeUnit::Millisecond, None),
        }
    }
}

/// The generator never produces a mismatched event for a type-filtered stream; these defaults
/// only satisfy the match.
macro_rules! field {
    ($variant:ident, $e:ident => $body:expr, $default:expr) => {
        |ev: &Event| match ev {
            Event::$variant($e) => $body,
            _ => $default,
        }
    };
}

fn standard(kind: EventKind) -> Vec<(&'static str, Read)> {
    match kind {
        EventKind::Person => vec![
            ("id", Read::Int(field!(Person, p => p.id as i64, 0))),
            ("name", Read::Str(field!(Person, p => p.name.as_str(), ""))),
            (
                "email_address",
                Read::Str(field!(Person, p => p.email_address.as_str(), "")),
            ),
            (
                "credit_card",
                Read::Str(field!(Person, p => p.credit_card.as_str(), "")),
            ),
            ("city", Read::Str(field!(Person, p => p.city.as_str(), ""))),
            (
                "state",
                Read::Str(field!(Person, p => p.state.as_str(), "")),
            ),
            (
                "date_time",
                Read::Time(field!(Person, p => p.date_time as i64, 0)),
            ),
            (
                "extra",
                Read::Str(field!(Person, p => p.extra.as_str(), "")),
            ),
        ],
        EventKind::Auction => vec![
            ("id", Read::Int(field!(Auction, a => a.id as i64, 0))),
            (
                "item_name",
                Read::Str(field!(Auction, a => a.item_name.as_str(), "")),
            ),
            (
                "description",
                Read::Str(field!(Auction, a => a.description.as_str(), "")),
            ),
            (
                "initial_bid",
                Read::Int(field!(Auction, a => a.initial_bid as i64, 0)),
            ),
            (
                "reserve",
                Read::Int(field!(Auction, a => a.reserve as i64, 0)),
            ),
            (
                "date_time",
                Read::Time(field!(Auction, a => a.date_time as i64, 0)),
            ),
            (
                "expires",
                Read::Time(field!(Auction, a => a.expires as i64, 0)),
            ),
            (
                "seller",
                Read::Int(field!(Auction, a => a.seller as i64, 0)),
            ),
            (
                "category",
                Read::Int(field!(Auction, a => a.category as i64, 0)),
            ),
            (
                "extra",
                Read::Str(field!(Auction, a => a.extra.as_str(), "")),
            ),
        ],
        EventKind::Bid => vec![
            ("auction", Read::Int(field!(Bid, b => b.auction as i64, 0))),
            ("bidder", Read::Int(field!(Bid, b => b.bidder as i64, 0))),
            ("price", Read::Int(field!(Bid, b => b.price as i64, 0))),
            (
                "channel",
                Read::Str(field!(Bid, b => b.channel.as_str(), "")),
            ),
            ("url", Read::Str(field!(Bid, b => b.url.as_str(), ""))),
            (
                "date_time",
                Read::Time(field!(Bid, b => b.date_time as i64, 0)),
            ),
            ("extra", Read::Str(field!(Bid, b => b.extra.as_str(), ""))),
        ],
    }
}

/// Batches of one event kind, in the declared schema, from a position that checkpoints record.
#[derive(Clone)]
pub struct NexmarkBatches {
    schema: SchemaRef,
    /// One reader per schema column.
    reads: Vec<Read>,
    options: NexmarkOptions,
    generator: EventGenerator,
}

impl NexmarkBatches {
    /// Batches of `options.kind` with the columns of `schema`: each must be a standard column of
    /// the kind (by name) whose values cast to the declared type.
    pub fn new(schema: SchemaRef, options: NexmarkOptions) -> Result<Self> {
        let columns = standard(options.kind);
        let mut reads = Vec::new();
        for field in schema.fields() {
            let Some((_, read)) = columns.iter().find(|(n, _)| n == field.name()) else {
                let names: Vec<&str> = columns.iter().map(|(n, _)| *n).collect();
                return Err(EddyError::UndefinedColumn(
                    format!(
                        "column \"{}\" is not a nexmark {:?} column; they are: {}",
                        field.name(),
                        options.kind,
                        names.join(", ")
                    )
                    .to_lowercase(),
                ));
            };
            if !can_cast_types(&read.natural_type(), field.data_type()) {
                return Err(EddyError::DatatypeMismatch(format!(
                    "nexmark column \"{}\" is {} and cannot be declared {}",
                    field.name(),
                    read.natural_type(),
                    field.data_type()
                )));
            }
            reads.push(*read);
        }
        let generator = Self::generator(&options, 0);
        Ok(NexmarkBatches {
            schema,
            reads,
            options,
            generator,
        })
    }

    fn generator(options: &NexmarkOptions, offset: u64) -> EventGenerator {
        EventGenerator::new(options.config.clone())
            .with_type_filter(options.kind.event_type())
            .with_offset(offset)
    }

    /// Events of this kind produced so far: the position a checkpoint records.
    pub fn position(&self) -> u64 {
        self.generator.offset()
    }

    /// Resume after `position` events of this kind.
    pub fn set_position(&mut self, position: u64) {
        self.generator = Self::generator(&self.options, position);
    }

    /// Whether the generator has emitted all `nexmark.events` (events of every kind).
    pub fn exhausted(&self) -> bool {
        self.options
            .events
            .is_some_and(|n| self.generator.global_offset() >= n)
    }

    /// The next batch: at most `batch_rows` rows, and only events whose global offset (counting
    /// events of all kinds) is below `due`. `None` once the source is exhausted; an empty batch
    /// when no event is due yet.
    pub fn next_batch(&mut self, due: u64) -> Result<Option<RecordBatch>> {
        if self.exhausted() {
            return Ok(None);
        }
        let mut events = Vec::with_capacity(self.options.batch_rows.min(1024));
        while events.len() < self.options.batch_rows
            && !self.exhausted()
            && self.generator.global_offset() < due
        {
            match self.generator.next() {
                Some(e) => events.push(e),
                None => break,
            }
        }
        let columns = self
            .reads
            .iter()
            .zip(self.schema.fields())
            .map(|(read, field)| column(*read, &events, field.data_type()))
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(RecordBatch::try_new(self.schema.clone(), columns)?))
    }
}

fn column(read: Read, events: &[Event], target: &DataType) -> Result<ArrayRef> {
    let array: ArrayRef = match read {
        Read::Int(f) => Arc::new(Int64Array::from_iter_values(events.iter().map(f))),
        Read::Time(f) => Arc::new(TimestampMillisecondArray::from_iter_values(
            events.iter().map(f),
        )),
        Read::Str(f) => match target {
            DataType::Utf8View => Arc::new(StringViewArray::from_iter_values(events.iter().map(f))),
            DataType::LargeUtf8 => {
                Arc::new(LargeStringArray::from_iter_values(events.iter().map(f)))
            }
            _ => Arc::new(StringArray::from_iter_values(events.iter().map(f))),
        },
    };
    if array.data_type() == target {
        Ok(array)
    } else {
        Ok(cast(&array, target)?)
    }
}

/// How often a throttled reader delivers a batch at most.
const TICK: Duration = Duration::from_millis(5);

/// Generate batches and hand them to the publisher until the source is exhausted or dropped
/// (the channel closes). Runs on a blocking thread. At the end the watermark moves to the end of
/// time, so every window of a bounded run closes, as for a bounded source in Flink.
///
/// A source generates on `nexmark.threads` threads (the generator costs about a CPU-microsecond
/// per event): thread `w` makes batches `w`, `w + threads`, … and they are delivered in order,
/// so the stream is the same as from one thread. A throttled source delivers each batch when its
/// last event is due, in batches of about 5 ms of events.
pub fn read_nexmark(
    mut batches: NexmarkBatches,
    tx: mpsc::Sender<Produced>,
    resume: Option<serde_json::Value>,
) {
    if let Some(p) = resume.as_ref().and_then(|p| p["position"].as_u64()) {
        batches.set_position(p);
    }
    let threads = batches.options.threads;
    let end = if threads > 1 {
        generate_parallel(batches, &tx, threads)
    } else {
        generate_paced(batches, &tx)
    };
    if let Some(last) = end {
        let failed = matches!(last, Produced::Failed(_));
        if tx.blocking_send(last).is_ok() && !failed {
            let _ = tx.blocking_send(Produced::Finished);
        }
    }
}

/// What ends a run: the end-of-time watermark when the source is exhausted, or the failure.
fn ending(result: Result<()>) -> Produced {
    match result {
        Ok(()) => Produced::Watermark(i64::MAX),
        Err(e) => Produced::Failed(e),
    }
}

fn rows(batch: RecordBatch, position: u64) -> Produced {
    Produced::Rows(
        batch,
        None,
        Some(serde_json::json!({ "position": position })),
    )
}

/// One thread, at `nexmark.rate` events per second (0: as fast as it can). `None` when the
/// channel closed.
fn generate_paced(mut batches: NexmarkBatches, tx: &mpsc::Sender<Produced>) -> Option<Produced> {
    let rate = batches.options.rate;
    let start = Instant::now();
    // Events of all kinds at the start: the rate counts events of all kinds, as the generator does.
    let first = batches.generator.global_offset();
    loop {
        let due = match rate {
            0 => u64::MAX,
            r => first + (start.elapsed().as_secs_f64() * r as f64) as u64,
        };
        match batches.next_batch(due) {
            Ok(Some(batch)) if batch.num_rows() == 0 => std::thread::sleep(TICK),
            Ok(Some(batch)) => {
                if tx.blocking_send(rows(batch, batches.position())).is_err() {
                    return None;
                }
            }
            Ok(None) => return Some(ending(Ok(()))),
            Err(e) => return Some(ending(Err(e))),
        }
    }
}

/// A worker's batch, the position after it and the global offset (events of all kinds) after
/// it; `None` past the end.
type Chunk = Result<Option<(RecordBatch, u64, u64)>>;

/// Rows of a throttled source's batches: about 5 ms of events at `rate`.
fn paced_batch_rows(rate: u64, batch_rows: usize) -> u64 {
    (rate / 200).clamp(64, batch_rows as u64)
}

/// `threads` workers, each making every `threads`-th batch, merged back in order.
fn generate_parallel(
    batches: NexmarkBatches,
    tx: &mpsc::Sender<Produced>,
    threads: usize,
) -> Option<Produced> {
    let base = batches.position();
    let rate = batches.options.rate;
    let chunk = match rate {
        0 => batches.options.batch_rows as u64,
        r => paced_batch_rows(r, batches.options.batch_rows),
    };
    let first = batches.generator.global_offset();
    let start = Instant::now();
    std::thread::scope(|scope| {
        let mut inboxes = Vec::with_capacity(threads);
        for w in 0..threads {
            let (out, inbox) = std::sync::mpsc::sync_channel::<Chunk>(2);
            inboxes.push(inbox);
            let mut mine = batches.clone();
            mine.options.batch_rows = chunk as usize;
            scope.spawn(move || {
                let mut c = w as u64;
                loop {
                    mine.set_position(base + c * chunk);
                    let made = mine
                        .next_batch(u64::MAX)
                        .map(|b| b.map(|b| (b, mine.position(), mine.generator.global_offset())));
                    let last = !matches!(made, Ok(Some(_)));
                    // A closed inbox: the merger stopped.
                    if out.send(made).is_err() || last {
                        return;
                    }
                    c += threads as u64;
                }
            });
        }
        let mut c = 0;
        let end = loop {
            let Ok(made) = inboxes[c % threads].recv() else {
                break Some(ending(Err(EddyError::Internal(
                    "a nexmark generator thread stopped".into(),
                ))));
            };
            match made {
                Ok(Some((batch, position, global))) => {
                    if rate > 0 {
                        let due = Duration::from_secs_f64((global - first) as f64 / rate as f64);
                        if let Some(wait) = due.checked_sub(start.elapsed()) {
                            std::thread::sleep(wait);
                        }
                    }
                    if tx.blocking_send(rows(batch, position)).is_err() {
                        break None;
                    }
                }
                Ok(None) => break Some(ending(Ok(()))),
                Err(e) => break Some(ending(Err(e))),
            }
            c += 1;
        };
        // Workers blocked on a full inbox see it closed and return; the scope joins them.
        drop(inboxes);
        end
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use datafusion::arrow::compute::concat_batches;

    use super::*;

    fn batches(threads: usize) -> NexmarkBatches {
        let options: BTreeMap<String, String> = [
            ("nexmark.table.type", "bid"),
            ("nexmark.events", "5000"),
            ("nexmark.rate", "0"),
            ("nexmark.batch.rows", "300"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .chain([("nexmark.threads".to_string(), threads.to_string())])
        .collect();
        let options = NexmarkOptions::parse(&options).unwrap();
        let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(vec![
            datafusion::arrow::datatypes::Field::new("auction", DataType::Int64, false),
            datafusion::arrow::datatypes::Field::new(
                "date_time",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                false,
            ),
            datafusion::arrow::datatypes::Field::new("extra", DataType::Utf8View, false),
        ]));
        NexmarkBatches::new(schema, options).unwrap()
    }

    /// Everything a reader delivers: the rows, the last position, and whether it ended with the
    /// end-of-time watermark and `Finished`.
    fn read(b: NexmarkBatches, resume: Option<u64>) -> (RecordBatch, u64, bool) {
        let schema = b.schema.clone();
        let (tx, mut rx) = mpsc::channel(4);
        let resume = resume.map(|p| serde_json::json!({ "position": p }));
        let reader = std::thread::spawn(move || read_nexmark(b, tx, resume));
        let (mut out, mut position) = (Vec::new(), 0);
        let (mut end_of_time, mut finished) = (false, false);
        while let Some(p) = rx.blocking_recv() {
            match p {
                Produced::Rows(batch, _, pos) => {
                    out.push(batch);
                    position = pos.and_then(|p| p["position"].as_u64()).unwrap();
                }
                Produced::Watermark(w) => end_of_time = w == i64::MAX,
                Produced::Finished => finished = true,
                other => panic!("unexpected {other:?}"),
            }
        }
        reader.join().unwrap();
        let rows = concat_batches(&schema, &out).unwrap();
        (rows, position, end_of_time && finished)
    }

    #[test]
    fn threads_and_resume_give_the_same_stream() {
        let (one, end, ended) = read(batches(1), None);
        // 5,000 events of all kinds hold 4,600 bids (proportions 1:3:46).
        assert_eq!((one.num_rows(), end, ended), (4600, 4600, true));
        let times = one
            .column(1)
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>();
        assert!(times.unwrap().values().windows(2).all(|w| w[0] <= w[1]));
        let (three, end, ended) = read(batches(3), None);
        assert_eq!((end, ended), (4600, true));
        assert_eq!(one, three);
        let (tail, _, _) = read(batches(3), Some(1000));
        assert_eq!(tail, one.slice(1000, 3600));
    }
}
