//! Stopping a running statement: a client's cancel request or its
//! `statement_timeout`, both reported as SQLSTATE 57014 as in PostgreSQL.
//!
//! An [`Interrupt`] is made per statement by the server and handed to the
//! parts of the engine that may safely stop midway: evaluating a query (the
//! result stream ends with the error), and the `SELECT` part of an `INSERT …
//! SELECT` (between chunks, never while a chunk is being logged). Statements
//! that change the catalog run to completion.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use datafusion::arrow::record_batch::RecordBatch;
use futures::{Stream, StreamExt};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::{EddyError, Result};

/// Why and when a running statement must stop. See the module docs.
#[derive(Debug, Default)]
pub struct Interrupt {
    /// The connection's count of cancel requests, and its value when the
    /// statement started: a request counts once the count passes it.
    cancel: Option<(watch::Receiver<u64>, u64)>,
    /// When `statement_timeout` runs out.
    deadline: Option<Instant>,
}

impl Interrupt {
    /// Nothing can stop the statement.
    pub fn none() -> Self {
        Interrupt::default()
    }

    /// Stop once the connection's cancel count (`cancel`) goes up from now,
    /// or after `timeout`, whichever comes first.
    pub fn new(cancel: Option<watch::Receiver<u64>>, timeout: Option<Duration>) -> Self {
        Interrupt {
            cancel: cancel.map(|rx| {
                let now = *rx.borrow();
                (rx, now)
            }),
            deadline: timeout.map(|t| Instant::now() + t),
        }
    }

    /// True when nothing can fire.
    pub fn is_none(&self) -> bool {
        self.cancel.is_none() && self.deadline.is_none()
    }

    /// Resolves, with the error to report, once the statement must stop.
    /// Cancel-safe: dropping it loses nothing.
    pub async fn fired(&mut self) -> EddyError {
        loop {
            let deadline = self.deadline;
            let sleep = async move {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            let cancel = async {
                match &mut self.cancel {
                    Some((rx, start)) => {
                        let start = *start;
                        rx.wait_for(|n| *n > start).await.is_ok()
                    }
                    None => std::future::pending().await,
                }
            };
            let cancel_requested = tokio::select! {
                () = sleep => None,
                requested = cancel => Some(requested),
            };
            match cancel_requested {
                None => {
                    return EddyError::Canceled(
                        "canceling statement due to statement timeout".into(),
                    )
                }
                Some(true) => {
                    self.cancel = None;
                    return EddyError::Canceled("canceling statement due to user request".into());
                }
                // The sender went away (the connection closed): nobody can cancel any more.
                Some(false) => self.cancel = None,
            }
        }
    }

    /// Run `work` unless the statement must stop first (then `work` is
    /// dropped: use only where dropping it midway is safe).
    pub async fn run<T>(&mut self, work: impl Future<Output = Result<T>>) -> Result<T> {
        if self.is_none() {
            return work.await;
        }
        tokio::select! {
            biased;
            e = self.fired() => Err(e),
            r = work => r,
        }
    }
}

/// A stream of result batches.
pub type BatchStream =
    Pin<Box<dyn Stream<Item = datafusion::error::Result<RecordBatch>> + Send + 'static>>;

/// `stream`, ending with the interrupt's error once it fires (dropping the
/// rest of the query, which stops its execution).
pub fn interruptible(stream: BatchStream, interrupt: Interrupt) -> BatchStream {
    if interrupt.is_none() {
        return stream;
    }
    let state = (stream, interrupt, false);
    Box::pin(futures::stream::unfold(
        state,
        |(mut stream, mut interrupt, done)| async move {
            if done {
                return None;
            }
            tokio::select! {
                biased;
                e = interrupt.fired() => {
                    let e = datafusion::error::DataFusionError::External(Box::new(e));
                    Some((Err(e), (stream, interrupt, true)))
                }
                item = stream.next() => item.map(|i| (i, (stream, interrupt, false))),
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn timeout_and_cancel_fire_with_57014() {
        let mut i = Interrupt::new(None, Some(Duration::from_millis(20)));
        let r = i
            .run(async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Ok(())
            })
            .await;
        let e = r.unwrap_err();
        assert_eq!(e.sqlstate(), "57014");
        assert!(e.to_string().contains("statement timeout"), "{e}");

        // A request made before the statement started does not count; one after does.
        let (tx, rx) = watch::channel(0u64);
        tx.send_modify(|n| *n += 1);
        let mut i = Interrupt::new(Some(rx), None);
        assert_eq!(i.run(async { Ok(1) }).await.unwrap(), 1);
        tx.send_modify(|n| *n += 1);
        let e = i
            .run(std::future::pending::<Result<()>>())
            .await
            .unwrap_err();
        assert!(e.to_string().contains("user request"), "{e}");

        // Work that finishes first is not disturbed; a dropped sender never fires.
        let (tx, rx) = watch::channel(0u64);
        drop(tx);
        let mut i = Interrupt::new(Some(rx), Some(Duration::from_secs(30)));
        assert_eq!(i.run(async { Ok(7) }).await.unwrap(), 7);
    }

    #[tokio::test]
    async fn a_stream_ends_with_the_error() {
        let endless: BatchStream = Box::pin(futures::stream::pending());
        let mut s = interruptible(
            endless,
            Interrupt::new(None, Some(Duration::from_millis(10))),
        );
        let first = s.next().await.unwrap().unwrap_err();
        assert!(first.to_string().contains("statement timeout"), "{first}");
        assert!(s.next().await.is_none());
    }
}
