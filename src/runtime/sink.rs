//! The end of a view's graph: rows applied to the view's store and
//! published to subscribers, the output watermark published, and at each
//! barrier the view's checkpoint completed and handed to the hub.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;

use super::task::Item;
use crate::error::Result;
use crate::state::HANDOVER;
use crate::types::{EventTime, Message, Watermark};
use crate::views::MaterializedView;

/// Writes a view's output into the view.
pub(crate) struct ViewSink {
    view: Arc<MaterializedView>,
    /// The last watermark published downstream.
    published: Option<EventTime>,
    /// The graph handed its state over (a [`HANDOVER`] barrier): what still
    /// comes is its successor's to produce, and is dropped.
    handed_over: bool,
}

impl ViewSink {
    /// A sink for `view`, which had published `published` before a restart.
    pub(crate) async fn new(view: Arc<MaterializedView>, published: Option<EventTime>) -> Self {
        if let Some(p) = published {
            view.watermark.fetch_max(
                p.saturating_add(view.output.time.delay_ns),
                Ordering::Relaxed,
            );
            view.publisher.set_watermark(Watermark::EventTime(p)).await;
        }
        ViewSink {
            view,
            published,
            handed_over: false,
        }
    }

    pub(super) async fn accept(&mut self, item: Item) -> Result<()> {
        if self.handed_over {
            return Ok(());
        }
        match item {
            Item::Data(changes) => self.view.apply(changes).await,
            Item::Watermark(input) => {
                // eddy.views shows the graph's event-time progress; downstream
                // sees it delayed as the plan's output time says.
                self.view.advance_watermark(input);
                let out_time = &self.view.output.time;
                let t = input.saturating_sub(out_time.delay_ns);
                if !out_time.forwards || self.published.is_some_and(|p| t <= p) {
                    return Ok(());
                }
                self.published = Some(t);
                self.view
                    .publisher
                    .publish(Message::Watermark(Watermark::EventTime(t)), |_| {})
                    .await;
                Ok(())
            }
            Item::Barrier(HANDOVER) => {
                self.hand_over();
                Ok(())
            }
            Item::Barrier(epoch) => self.checkpoint(epoch).await,
        }
    }

    /// Every operator captured its state at the [`HANDOVER`] barrier: give it
    /// (with the watermark published) to whoever asked, and stop. A barrier
    /// nobody waits for any more (the statement gave up) is ignored, and
    /// the graph goes on.
    fn hand_over(&mut self) {
        let mut snap = self.view.take_pending(HANDOVER);
        snap.published_watermark = self.published;
        if let Some(tx) = self.view.handover.lock().take() {
            self.handed_over = tx.send(snap).is_ok();
        }
    }

    /// Every operator of the view captured its state for `epoch`: add the
    /// view's rows, hand the whole to the hub, pass the barrier downstream.
    async fn checkpoint(&mut self, epoch: u64) -> Result<()> {
        let view = &self.view;
        let (rows, position) = view.rows_at_position()?;
        let mut snap = view.take_pending(epoch);
        snap.published_watermark = self.published;
        snap.position = Some(position);
        snap.rows = if rows.is_empty() {
            vec![RecordBatch::new_empty(view.schema.clone())]
        } else {
            rows.as_ref().clone()
        };
        if let Some(hub) = &view.hub {
            hub.deposit(epoch, &view.name, snap);
        }
        view.publisher
            .publish(Message::Barrier(epoch), |_| {})
            .await;
        Ok(())
    }
}
