//! A client's subscription as a stream of Arrow batches, the rows `SUBSCRIBE` sends:
//! `eddy_position`, with `PROGRESS` also `eddy_progressed` and `eddy_watermark`, then
//! `eddy_diff` and the columns. Progress rows (`eddy_progressed` true, no diff, no columns)
//! say that every change up to their position has been sent; one is sent whenever the client
//! has caught up, and when the view's watermark moves.
//!
//! The stream never ends by itself: the client stops it (cancel, `CLOSE`, disconnect), or it
//! ends with an error when the subscriber fell behind (with the position to resume from), or
//! the view was dropped or failed.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use datafusion::arrow::array::TimestampNanosecondArray;
use datafusion::arrow::array::{new_null_array, ArrayRef, BooleanArray, Int64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::RecordBatchStream;
use futures::Stream;
use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::changes::{Ended, Event, Receiver};
use crate::error::{EddyError, Result};
use crate::types::Changes;

/// The query over the view's changes (`SUBSCRIBE (SELECT … WHERE …)`): rows and weights in,
/// rows and weights out.
pub type MapChanges = Box<dyn Fn(&Changes) -> Result<Changes> + Send>;

/// A subscription's rows, as they come.
pub struct Subscription {
    view: String,
    schema: SchemaRef,
    initial: VecDeque<Event>,
    rx: mpsc::Receiver<Event>,
    ended: Arc<Mutex<Option<Ended>>>,
    buffer: usize,
    info: Arc<super::changes::SubscriberInfo>,
    map: Option<MapChanges>,
    progress: bool,
    /// The last position whose changes were taken from the buffer.
    position: i64,
    watermark: Option<i64>,
    /// The last progress row sent.
    sent: Option<(i64, Option<i64>)>,
    done: bool,
}

/// The columns a subscription sends before the view's (or query's) columns.
pub fn prefix_fields(progress: bool) -> Vec<Field> {
    let mut f = vec![Field::new("eddy_position", DataType::Int64, false)];
    if progress {
        f.push(Field::new("eddy_progressed", DataType::Boolean, false));
        f.push(Field::new(
            "eddy_watermark",
            DataType::Timestamp(TimeUnit::Nanosecond, None),
            true,
        ));
    }
    f.push(Field::new("eddy_diff", DataType::Int64, true));
    f
}

impl Subscription {
    /// The stream of `receiver`'s events from view `view`, whose rows (after `map`) have
    /// `columns`.
    pub fn new(
        view: &str,
        receiver: Receiver,
        columns: &Schema,
        map: Option<MapChanges>,
        progress: bool,
    ) -> Self {
        Subscription {
            view: view.to_string(),
            schema: Self::schema_for(columns, progress),
            initial: receiver.initial.into(),
            rx: receiver.rx,
            ended: receiver.ended,
            buffer: receiver.buffer,
            info: receiver.info,
            map,
            progress,
            position: 0,
            watermark: receiver.watermark,
            sent: None,
            done: false,
        }
    }

    /// The rows a subscription to `columns` sends: the prefix, then the columns (nullable:
    /// progress rows have none).
    pub fn schema_for(columns: &Schema, progress: bool) -> SchemaRef {
        let mut fields = prefix_fields(progress);
        fields.extend(
            columns
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true)),
        );
        Arc::new(Schema::new(fields))
    }

    fn end_error(&self) -> Option<EddyError> {
        // A log that went away without a word: its view was dropped.
        match self.ended.lock().clone().unwrap_or(Ended::Dropped) {
            Ended::Lagged => Some(EddyError::LimitExceeded(format!(
                "subscription to \"{}\" fell behind: more than {} changes waited to be sent; \
                 resume with SUBSCRIBE … AS OF {}",
                self.view, self.buffer, self.position
            ))),
            Ended::Dropped => Some(EddyError::UndefinedObject(format!(
                "materialized view \"{}\" was dropped",
                self.view
            ))),
            Ended::Replaced => Some(EddyError::Data {
                code: "55000",
                message: format!(
                    "materialized view \"{}\" was replaced by a definition with other \
                     operators and is being rebuilt; subscribe again for its new rows",
                    self.view
                ),
            }),
            Ended::Failed(e) => Some(EddyError::Execution(format!(
                "materialized view \"{}\" failed: {e}",
                self.view
            ))),
        }
    }

    /// The rows of `changes` at `position`.
    fn data(&self, position: i64, changes: &Changes) -> Result<Option<RecordBatch>> {
        let mapped;
        let changes = match &self.map {
            Some(map) => {
                mapped = map(changes)?;
                &mapped
            }
            None => changes,
        };
        let n = changes.num_rows();
        if n == 0 {
            return Ok(None);
        }
        let mut columns: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(vec![position; n]))];
        if self.progress {
            columns.push(Arc::new(BooleanArray::from(vec![false; n])));
            columns.push(Arc::new(TimestampNanosecondArray::from(vec![
                self.watermark;
                n
            ])));
        }
        columns.push(match &changes.weights {
            Some(w) => w.clone(),
            None => Arc::new(Int64Array::from(vec![1; n])),
        });
        columns.extend(changes.batch.columns().iter().cloned());
        Ok(Some(RecordBatch::try_new(self.schema.clone(), columns)?))
    }

    /// A progress row, if one is due.
    fn progress_row(&mut self) -> Result<Option<RecordBatch>> {
        let now = (self.position, self.watermark);
        if !self.progress || self.sent == Some(now) {
            return Ok(None);
        }
        self.sent = Some(now);
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![self.position])),
            Arc::new(BooleanArray::from(vec![true])),
            Arc::new(TimestampNanosecondArray::from(vec![self.watermark])),
        ];
        columns.extend(
            self.schema.fields()[3..]
                .iter()
                .map(|f| new_null_array(f.data_type(), 1)),
        );
        Ok(Some(RecordBatch::try_new(self.schema.clone(), columns)?))
    }

    fn next_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        if let Some(e) = self.initial.pop_front() {
            return Poll::Ready(Some(e));
        }
        self.rx.poll_recv(cx)
    }
}

impl Stream for Subscription {
    type Item = datafusion::error::Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        let wrap = |r: Result<Option<RecordBatch>>| {
            r.map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))
        };
        loop {
            match this.next_event(cx) {
                Poll::Ready(Some(Event::Data { position, changes })) => {
                    this.position = position;
                    match wrap(this.data(position, &changes)) {
                        Ok(Some(b)) => {
                            this.info.rows_sent.fetch_add(
                                b.num_rows() as u64,
                                std::sync::atomic::Ordering::Relaxed,
                            );
                            this.info
                                .position
                                .store(position, std::sync::atomic::Ordering::Relaxed);
                            return Poll::Ready(Some(Ok(b)));
                        }
                        Ok(None) => {}
                        Err(e) => {
                            this.done = true;
                            return Poll::Ready(Some(Err(e)));
                        }
                    }
                }
                Poll::Ready(Some(Event::Progress {
                    position,
                    watermark,
                })) => {
                    this.position = position;
                    let moved = watermark != this.watermark;
                    this.watermark = watermark;
                    if moved {
                        if let Some(b) = wrap(this.progress_row()).transpose() {
                            return Poll::Ready(Some(b));
                        }
                    }
                }
                Poll::Ready(None) => {
                    this.done = true;
                    return Poll::Ready(
                        this.end_error().map(|e| {
                            Err(datafusion::error::DataFusionError::External(Box::new(e)))
                        }),
                    );
                }
                Poll::Pending => {
                    // Caught up: say how far.
                    return match wrap(this.progress_row()).transpose() {
                        Some(b) => Poll::Ready(Some(b)),
                        None => Poll::Pending,
                    };
                }
            }
        }
    }
}

impl RecordBatchStream for Subscription {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}
