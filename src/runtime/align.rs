//! The one place barriers are aligned and watermarks merged: a task's input
//! channels in, one ordered stream of [`Event`]s out.
//!
//! A task reads several channels, grouped into ports (a port fed by an
//! upstream node that runs on N partitions has N channels). The aligner:
//! - drains each channel's catch-up backlog first (preferred port first),
//!   then reads live channels in turn (the preferred port, when set, before
//!   the others on every read, so a lookup table's changes reach the join
//!   before the next stream row);
//! - per channel keeps the watermark (never backwards), per port the minimum
//!   over its channels that are not idle, and reports a port's watermark
//!   when that minimum advances;
//! - aligns barriers: a channel that delivered the barrier of the epoch in
//!   progress is not read again until every channel has delivered it; then
//!   the barrier is reported once. A channel that delivers another epoch's
//!   barrier meanwhile breaks the protocol and is an error.

use std::collections::VecDeque;
use std::task::Poll;

use tokio::sync::mpsc;

use crate::error::{EddyError, Result};
use crate::types::{Changes, EventTime, Message, Watermark};

/// One input channel of a task.
pub struct Channel {
    /// The port the channel feeds.
    pub port: usize,
    /// Messages that bring the task up to date, read before `rx`.
    pub backlog: VecDeque<Message>,
    /// The live channel.
    pub rx: mpsc::Receiver<Message>,
}

/// What the task does next.
#[derive(Debug)]
pub enum Event {
    /// Rows arrived on a port.
    Data(usize, Changes),
    /// A port's watermark advanced to this.
    Watermark(usize, EventTime),
    /// Every channel delivered this barrier.
    Barrier(u64),
}

struct State {
    port: usize,
    backlog: VecDeque<Message>,
    rx: mpsc::Receiver<Message>,
    watermark: Option<EventTime>,
    idle: bool,
    blocked: bool,
}

/// Aligns barriers and merges watermarks over a task's channels.
pub struct Aligner {
    channels: Vec<State>,
    /// Per port, the last watermark reported.
    ports: Vec<Option<EventTime>>,
    /// The barrier being aligned.
    epoch: Option<u64>,
    /// Read order of live channels: preferred port's first, then the rest from `start`.
    preferred: Vec<usize>,
    others: Vec<usize>,
    start: usize,
}

impl Aligner {
    /// An aligner over `channels`, feeding `ports` ports; `prefer` is the
    /// port read first.
    pub fn new(channels: Vec<Channel>, ports: usize, prefer: Option<usize>) -> Self {
        let (preferred, others) =
            (0..channels.len()).partition(|&c| Some(channels[c].port) == prefer);
        Aligner {
            channels: channels
                .into_iter()
                .map(|c| State {
                    port: c.port,
                    backlog: c.backlog,
                    rx: c.rx,
                    watermark: None,
                    idle: false,
                    blocked: false,
                })
                .collect(),
            ports: vec![None; ports],
            epoch: None,
            preferred,
            others,
            start: 0,
        }
    }

    /// Each port's last reported watermark.
    pub fn watermarks(&self) -> &[Option<EventTime>] {
        &self.ports
    }

    /// The next event; `None` once a channel has closed (the view is stopping).
    pub async fn next(&mut self) -> Result<Option<Event>> {
        loop {
            let Some((c, msg)) = self.read().await else {
                return Ok(None);
            };
            if let Some(event) = self.handle(c, msg)? {
                return Ok(Some(event));
            }
        }
    }

    /// The next message from a channel that is not blocked: backlogs first.
    async fn read(&mut self) -> Option<(usize, Message)> {
        for k in 0..self.channels.len() {
            let c = self.nth(k, 0);
            if let Some(m) = self.channels[c].backlog.pop_front() {
                return Some((c, m));
            }
        }
        std::future::poll_fn(|cx| {
            let n = self.others.len();
            for k in 0..self.channels.len() {
                let c = self.nth(k, self.start);
                let ch = &mut self.channels[c];
                if ch.blocked {
                    continue;
                }
                match ch.rx.poll_recv(cx) {
                    Poll::Ready(Some(m)) => {
                        if let Some(k) = self.others.iter().position(|&o| o == c) {
                            self.start = (k + 1) % n.max(1);
                        }
                        return Poll::Ready(Some((c, m)));
                    }
                    Poll::Ready(None) => return Poll::Ready(None),
                    Poll::Pending => {}
                }
            }
            Poll::Pending
        })
        .await
    }

    /// The `k`-th channel in read order: the preferred port's, then the
    /// others starting at `start`.
    fn nth(&self, k: usize, start: usize) -> usize {
        match self.preferred.get(k) {
            Some(&c) => c,
            None => {
                let k = k - self.preferred.len();
                self.others[(start + k) % self.others.len()]
            }
        }
    }

    fn handle(&mut self, c: usize, msg: Message) -> Result<Option<Event>> {
        let port = self.channels[c].port;
        match msg {
            Message::Data(changes) => {
                self.channels[c].idle = false;
                Ok((changes.num_rows() > 0).then_some(Event::Data(port, changes)))
            }
            Message::Watermark(w) => {
                let ch = &mut self.channels[c];
                match w {
                    Watermark::EventTime(t) => {
                        ch.idle = false;
                        if ch.watermark.is_some_and(|cur| t <= cur) {
                            return Ok(None);
                        }
                        ch.watermark = Some(t);
                    }
                    Watermark::Idle => ch.idle = true,
                }
                Ok(self.port_advanced(port).map(|t| Event::Watermark(port, t)))
            }
            Message::Barrier(epoch) => {
                match self.epoch {
                    Some(cur) if cur != epoch => {
                        return Err(EddyError::Internal(format!(
                            "barrier {epoch} arrived while barrier {cur} was being aligned"
                        )))
                    }
                    _ => self.epoch = Some(epoch),
                }
                self.channels[c].blocked = true;
                if self.channels.iter().all(|ch| ch.blocked) {
                    self.channels.iter_mut().for_each(|ch| ch.blocked = false);
                    self.epoch = None;
                    return Ok(Some(Event::Barrier(epoch)));
                }
                Ok(None)
            }
        }
    }

    /// The port's new watermark, if the minimum over its active channels advanced.
    fn port_advanced(&mut self, port: usize) -> Option<EventTime> {
        let active: Vec<Option<EventTime>> = self
            .channels
            .iter()
            .filter(|ch| ch.port == port && !ch.idle)
            .map(|ch| ch.watermark)
            .collect();
        let min = crate::operators::merged(&active)?;
        let slot = self.ports.get_mut(port)?;
        if slot.is_some_and(|cur| min <= cur) {
            return None;
        }
        *slot = Some(min);
        Some(min)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Array, Int64Array};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::record_batch::RecordBatch;

    use super::*;

    /// Messages written as text: `d5` a row with value 5, `w5` a watermark,
    /// `b1` barrier 1, `idle`.
    fn msg(s: &str) -> Message {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        let n: i64 = s
            .trim_start_matches(char::is_alphabetic)
            .parse()
            .unwrap_or(0);
        match &s[..1] {
            "d" => Message::Data(Changes::inserts(
                RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![n]))]).unwrap(),
            )),
            "w" => Message::Watermark(Watermark::EventTime(n)),
            "b" => Message::Barrier(n as u64),
            _ => Message::Watermark(Watermark::Idle),
        }
    }

    fn show(e: &Event) -> String {
        match e {
            Event::Data(p, c) => {
                let v = c.batch.column(0).as_any().downcast_ref::<Int64Array>();
                format!("{p}:d{}", v.map_or(-1, |v| v.value(0)))
            }
            Event::Watermark(p, t) => format!("{p}:w{t}"),
            Event::Barrier(e) => format!("B{e}"),
        }
    }

    /// Channels (port, backlog, live messages, stays open), all messages sent up front.
    fn aligner(spec: &[(usize, &str, &str)], ports: usize, prefer: Option<usize>) -> Aligner {
        let channels = spec
            .iter()
            .map(|(port, backlog, live)| {
                let (tx, rx) = mpsc::channel(64);
                for m in live.split_whitespace() {
                    tx.try_send(msg(m)).unwrap();
                }
                // Keep the channel open: a closed one ends the task.
                std::mem::forget(tx);
                Channel {
                    port: *port,
                    backlog: backlog.split_whitespace().map(msg).collect(),
                    rx,
                }
            })
            .collect();
        Aligner::new(channels, ports, prefer)
    }

    async fn events(a: &mut Aligner, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        for _ in 0..n {
            match a.next().await {
                Ok(Some(e)) => out.push(show(&e)),
                Ok(None) => out.push("closed".into()),
                Err(e) => {
                    out.push(format!("error: {e}"));
                    break;
                }
            }
        }
        out
    }

    /// A channel that delivered barrier 1 is not read until the other did,
    /// even though its barrier 2 (and rows between) are already queued.
    #[tokio::test]
    async fn a_barrier_does_not_overtake_another() {
        let mut a = aligner(
            &[(0, "", "d1 b1 d2 b2 d3"), (1, "", "d10 d11 b1 d12 b2")],
            2,
            None,
        );
        let got = events(&mut a, 8).await;
        let pos = |s: &str| got.iter().position(|g| g == s).unwrap();
        assert!(pos("0:d1") < pos("B1") && pos("1:d10") < pos("B1") && pos("1:d11") < pos("B1"));
        assert!(pos("B1") < pos("0:d2") && pos("B1") < pos("1:d12"));
        assert!(pos("0:d2") < pos("B2") && pos("1:d12") < pos("B2"));
        assert!(pos("B2") < pos("0:d3"));
        assert_eq!(
            got.iter().filter(|g| g.starts_with('B')).count(),
            2,
            "{got:?}"
        );
    }

    #[tokio::test]
    async fn a_barrier_of_another_epoch_while_aligning_is_an_error() {
        let mut a = aligner(&[(0, "", "b1"), (1, "", "b2")], 2, None);
        let got = events(&mut a, 2).await;
        assert!(
            got.last()
                .unwrap()
                .contains("barrier 2 arrived while barrier 1"),
            "{got:?}"
        );
    }

    /// Port 0 has two channels (two upstream partitions): its watermark is
    /// their minimum; port 1 is independent; a watermark never goes back.
    #[tokio::test]
    async fn watermarks_merge_per_port_and_never_go_back() {
        let mut a = aligner(
            &[(0, "", "w5 w9"), (0, "", "w3 w7"), (1, "", "w2 w1")],
            2,
            None,
        );
        let got = events(&mut a, 3).await;
        let port0: Vec<&String> = got.iter().filter(|g| g.starts_with("0:")).collect();
        assert_eq!(port0, ["0:w3", "0:w7"], "{got:?}");
        assert_eq!(
            got.iter()
                .filter(|g| g.starts_with("1:"))
                .collect::<Vec<_>>(),
            ["1:w2"]
        );
        assert_eq!(a.watermarks(), &[Some(7), Some(2)]);
    }

    /// An idle channel does not hold its port's watermark back.
    #[tokio::test]
    async fn an_idle_channel_does_not_hold_the_port_back() {
        let mut a = aligner(&[(0, "", "idle"), (0, "", "w4")], 1, None);
        assert_eq!(events(&mut a, 1).await, ["0:w4"]);
    }

    /// Backlogs come before live messages, the preferred port's first, and
    /// the preferred port is read before the others while it has messages.
    #[tokio::test]
    async fn backlog_first_then_the_preferred_port() {
        let mut a = aligner(&[(0, "d1", "d2 d3"), (1, "d10", "d11 d12")], 2, Some(1));
        let got = events(&mut a, 6).await;
        assert_eq!(got, ["1:d10", "0:d1", "1:d11", "1:d12", "0:d2", "0:d3"]);
    }

    #[tokio::test]
    async fn a_closed_channel_ends_the_stream() {
        let (tx, rx) = mpsc::channel(4);
        tx.try_send(msg("d1")).unwrap();
        drop(tx);
        let mut a = Aligner::new(
            vec![Channel {
                port: 0,
                backlog: VecDeque::new(),
                rx,
            }],
            1,
            None,
        );
        assert_eq!(events(&mut a, 2).await, ["0:d1", "closed"]);
    }
}
