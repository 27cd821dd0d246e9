//! Fan-out of one stream to its subscribers.
//!
//! Every object that produces a stream (a table, a source, a materialized
//! view) owns a [`Publisher`]. Publishing holds an async lock across "apply
//! to the object's own store" and "send to every subscriber", and
//! subscribing takes a snapshot under the same lock, so a new subscriber sees
//! each change exactly once: either in its snapshot or on its channel.
//! Channels are bounded; a slow subscriber slows the publisher (backpressure),
//! and nothing is dropped. A subscriber whose receiver is gone (its view
//! failed or was dropped) is removed. A subscriber moved over from another
//! stream (`ALTER SOURCE … ADD COLUMN`) gets each message through its
//! [`Projection`].

use tokio::sync::{mpsc, Mutex, MutexGuard};

use super::message::{Message, Watermark};
use super::projection::{for_subscriber, Projection};

/// One subscriber: a named bounded channel.
struct Subscriber {
    name: String,
    tx: mpsc::Sender<Message>,
    /// Maps this stream's rows to the columns the subscriber was built for.
    projection: Option<Projection>,
}

impl Subscriber {
    /// Send `msg` as this subscriber sees it; false if it cannot take it
    /// (its receiver is gone, or its projection does not fit the rows).
    async fn send(&self, msg: &Message) -> bool {
        match for_subscriber(msg, self.projection.as_ref()) {
            Ok(m) => self.tx.send(m).await.is_ok(),
            Err(e) => {
                tracing::error!(subscriber = %self.name, error = %e,
                    "cannot project the stream's rows to the subscriber's columns; dropping it");
                false
            }
        }
    }
}

#[derive(Default)]
struct Inner {
    subscribers: Vec<Subscriber>,
    watermark: Option<Watermark>,
}

/// Fan-out point of a stream. See the module docs for the ordering guarantee.
#[derive(Default)]
pub struct Publisher {
    inner: Mutex<Inner>,
}

impl Publisher {
    /// Create a publisher with no subscribers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Run `apply` (the owner's own bookkeeping) and send `msg` to every
    /// subscriber, atomically with respect to [`Publisher::subscribe`].
    /// Waits while a subscriber's channel is full.
    pub async fn publish(&self, msg: Message, apply: impl FnOnce(&Message)) {
        let mut inner = self.inner.lock().await;
        apply(&msg);
        if let Message::Watermark(w) = &msg {
            inner.watermark = Some(*w);
        }
        let mut closed = Vec::new();
        for (i, sub) in inner.subscribers.iter().enumerate() {
            if !sub.send(&msg).await {
                closed.push(i);
            }
        }
        for i in closed.into_iter().rev() {
            let sub = inner.subscribers.remove(i);
            tracing::debug!(subscriber = %sub.name, "subscriber went away");
        }
    }

    /// Like [`Publisher::publish`], with the message built under the lock
    /// by `make` (an upsert table turns log rows into changes against its
    /// rows, which a new subscriber's snapshot must see either before or
    /// after, never halfway).
    pub async fn publish_with(
        &self,
        make: impl FnOnce() -> crate::error::Result<Message>,
    ) -> crate::error::Result<()> {
        let mut inner = self.inner.lock().await;
        let msg = make()?;
        let mut closed = Vec::new();
        for (i, sub) in inner.subscribers.iter().enumerate() {
            if !sub.send(&msg).await {
                closed.push(i);
            }
        }
        for i in closed.into_iter().rev() {
            inner.subscribers.remove(i);
        }
        Ok(())
    }

    /// Set the watermark new subscribers start from (after a restore).
    pub async fn set_watermark(&self, w: Watermark) {
        self.inner.lock().await.watermark = Some(w);
    }

    /// Add a subscriber. `snapshot` runs under the publish lock and returns
    /// the messages that bring the subscriber up to date (e.g. a view's
    /// current rows); the latest watermark follows them.
    pub async fn subscribe(
        &self,
        name: &str,
        tx: mpsc::Sender<Message>,
        snapshot: impl FnOnce() -> Vec<Message>,
    ) -> Vec<Message> {
        let mut inner = self.inner.lock().await;
        let mut msgs = snapshot();
        if let Some(w) = inner.watermark {
            msgs.push(Message::Watermark(w));
        }
        inner.subscribers.push(Subscriber {
            name: name.to_string(),
            tx,
            projection: None,
        });
        msgs
    }

    /// Remove a subscriber by name.
    pub async fn unsubscribe(&self, name: &str) {
        self.inner
            .lock()
            .await
            .subscribers
            .retain(|s| s.name != name);
    }

    /// Number of subscribers.
    pub async fn subscriber_count(&self) -> usize {
        self.inner.lock().await.subscribers.len()
    }

    /// Stop the stream where it is: until the [`Held`] is dropped nothing is
    /// published and nobody subscribes (a view taking over another's
    /// subscriptions, `engine::replace`).
    pub async fn hold(&self) -> Held<'_> {
        Held {
            inner: self.inner.lock().await,
        }
    }
}

/// A [`Publisher`] stopped by [`Publisher::hold`].
pub struct Held<'a> {
    inner: MutexGuard<'a, Inner>,
}

impl Held<'_> {
    /// Send `msg` to the subscribers named `name` only (waits while a
    /// channel is full); returns how many took it.
    pub async fn send_to(&mut self, name: &str, msg: Message) -> usize {
        let mut sent = 0;
        for sub in self.inner.subscribers.iter().filter(|s| s.name == name) {
            if sub.send(&msg).await {
                sent += 1;
            }
        }
        sent
    }

    /// Remove the subscribers named `name`.
    pub fn unsubscribe(&mut self, name: &str) {
        self.inner.subscribers.retain(|s| s.name != name);
    }

    /// Add a subscriber that continues exactly where the stream stands (no
    /// catch-up messages).
    pub fn subscribe(&mut self, name: &str, tx: mpsc::Sender<Message>) {
        self.inner.subscribers.push(Subscriber {
            name: name.to_string(),
            tx,
            projection: None,
        });
    }

    /// Move every subscriber of this (held) stream to `to`, another held
    /// stream whose rows `projection` maps to this one's columns: they go on
    /// reading `to` where this one stopped, seeing the columns they were
    /// built for. Fails, moving nobody, if a subscriber's own projection does
    /// not fit.
    pub fn move_subscribers(
        &mut self,
        to: &mut Held<'_>,
        projection: &Projection,
    ) -> crate::error::Result<usize> {
        let mut moved = Vec::with_capacity(self.inner.subscribers.len());
        for sub in &self.inner.subscribers {
            let p = match &sub.projection {
                None => projection.clone(),
                Some(own) => own.after(projection).ok_or_else(|| {
                    crate::error::EddyError::Internal(format!(
                        "subscriber \"{}\" reads columns the new stream lacks",
                        sub.name
                    ))
                })?,
            };
            moved.push(p);
        }
        let n = moved.len();
        for (sub, p) in self.inner.subscribers.drain(..).zip(moved) {
            to.inner.subscribers.push(Subscriber {
                projection: Some(p),
                ..sub
            });
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::message::Watermark;

    #[tokio::test]
    async fn subscriber_sees_snapshot_then_live() {
        let p = Publisher::new();
        p.publish(Message::Watermark(Watermark::EventTime(5)), |_| {})
            .await;
        let (tx, mut rx) = mpsc::channel(4);
        let snap = p.subscribe("a", tx, Vec::new).await;
        assert!(matches!(
            snap.as_slice(),
            [Message::Watermark(Watermark::EventTime(5))]
        ));
        p.publish(Message::Watermark(Watermark::EventTime(6)), |_| {})
            .await;
        assert!(matches!(
            rx.recv().await,
            Some(Message::Watermark(Watermark::EventTime(6)))
        ));
        drop(rx);
        p.publish(Message::Barrier(1), |_| {}).await;
        assert_eq!(p.subscriber_count().await, 0);
    }

    #[tokio::test]
    async fn moved_subscribers_see_their_own_columns() {
        use crate::types::Changes;
        use datafusion::arrow::array::{ArrayRef, Int64Array};
        use datafusion::arrow::record_batch::RecordBatch;
        let (old, new, newer) = (Publisher::new(), Publisher::new(), Publisher::new());
        let (tx, mut rx) = mpsc::channel(4);
        old.subscribe("v", tx, Vec::new).await;
        {
            let (mut from, mut to) = (old.hold().await, new.hold().await);
            // [a] then [a, x]: the subscriber reads column 0.
            assert_eq!(
                from.move_subscribers(&mut to, &Projection::new(vec![0]))
                    .unwrap(),
                1
            );
        }
        {
            let (mut from, mut to) = (new.hold().await, newer.hold().await);
            // [a, x] then [y, a, x]: composed, it reads column 1.
            from.move_subscribers(&mut to, &Projection::new(vec![1, 2]))
                .unwrap();
        }
        assert_eq!(old.subscriber_count().await, 0);
        let col = |v: i64| std::sync::Arc::new(Int64Array::from(vec![v])) as ArrayRef;
        let batch =
            RecordBatch::try_from_iter(vec![("y", col(1)), ("a", col(2)), ("x", col(3))]).unwrap();
        newer
            .publish(Message::Data(Changes::inserts(batch)), |_| {})
            .await;
        let Some(Message::Data(c)) = rx.recv().await else {
            panic!("no data")
        };
        assert_eq!(c.batch.num_columns(), 1);
        assert_eq!(c.batch.schema().field(0).name(), "a");
    }
}
