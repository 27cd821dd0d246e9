//! Parsing and checking of nexmark WITH options.

use std::collections::BTreeMap;

use nexmark::config::{NexmarkConfig, RateShape};
use nexmark::event::EventType;

use crate::error::{EddyError, Result};

/// Base time of the first event when none is given: 2024-01-01 00:00:00 UTC, in ms.
pub const DEFAULT_BASE_TIME_MS: u64 = 1_704_067_200_000;
/// Events per second of event time when the delivery rate does not set it (the generator's own
/// default).
pub const DEFAULT_EVENT_RATE: u64 = 10_000;
/// Delivery rate when none is given: a gentle live stream, not a benchmark.
pub const DEFAULT_RATE: u64 = 10_000;
/// Rows per batch when none is given.
pub const DEFAULT_BATCH_ROWS: usize = 8192;
/// Most rows per batch.
pub const MAX_BATCH_ROWS: usize = 65_536;
/// Event ids of seed `s` start at `(s - 1) * SEED_STRIDE`.
const SEED_STRIDE: u64 = 1_000_000_000;

/// Which of the three Nexmark streams a source carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// New people (`person`).
    Person,
    /// New auctions (`auction`).
    Auction,
    /// Bids on auctions (`bid`).
    Bid,
}

impl EventKind {
    /// The kind named by `'nexmark.table.type'`.
    pub fn from_options(options: &BTreeMap<String, String>) -> Result<Self> {
        match options.get("nexmark.table.type").map(|s| s.to_lowercase()) {
            Some(t) if t == "person" => Ok(EventKind::Person),
            Some(t) if t == "auction" => Ok(EventKind::Auction),
            Some(t) if t == "bid" => Ok(EventKind::Bid),
            Some(other) => Err(EddyError::InvalidParameter {
                message: format!("invalid 'nexmark.table.type' '{other}'"),
                hint: Some("Use 'person', 'auction' or 'bid'.".into()),
            }),
            None => Err(EddyError::InvalidParameter {
                message: "connector 'nexmark' needs 'nexmark.table.type'".into(),
                hint: Some(
                    "Add 'nexmark.table.type' = 'bid' (or 'person', 'auction'): each event kind \
                     is its own source."
                        .into(),
                ),
            }),
        }
    }

    /// The generator's name for the kind.
    pub fn event_type(self) -> EventType {
        match self {
            EventKind::Person => EventType::Person,
            EventKind::Auction => EventType::Auction,
            EventKind::Bid => EventType::Bid,
        }
    }
}

/// Parsed nexmark options.
#[derive(Debug, Clone)]
pub struct NexmarkOptions {
    /// The event kind of the source.
    pub kind: EventKind,
    /// Events of all kinds the generator emits before the source ends; `None` = endless.
    pub events: Option<u64>,
    /// Events of all kinds delivered per second; 0 = as fast as possible.
    pub rate: u64,
    /// Rows per batch.
    pub batch_rows: usize,
    /// Threads generating an unthrottled source (default: the number of cores).
    pub threads: usize,
    /// The generator's configuration (event-time rate, base time, proportions, ratios).
    pub config: NexmarkConfig,
}

/// Options that take a non-negative integer, with the config field they set.
type Setter = fn(&mut NexmarkConfig, usize);

const CONFIG_OPTIONS: &[(&str, Setter)] = &[
    ("nexmark.person.proportion", |c, v| c.person_proportion = v),
    ("nexmark.auction.proportion", |c, v| {
        c.auction_proportion = v
    }),
    ("nexmark.bid.proportion", |c, v| c.bid_proportion = v),
    ("nexmark.active.people", |c, v| c.active_people = v),
    ("nexmark.in.flight.auctions", |c, v| {
        c.in_flight_auctions = v
    }),
    ("nexmark.num.categories", |c, v| c.num_categories = v),
    ("nexmark.hot.seller.ratio", |c, v| c.hot_seller_ratio = v),
    ("nexmark.hot.auction.ratio", |c, v| c.hot_auction_ratio = v),
    ("nexmark.hot.bidder.ratio", |c, v| c.hot_bidder_ratio = v),
    ("nexmark.hot.channel.ratio", |c, v| c.hot_channel_ratio = v),
    ("nexmark.avg.person.bytes", |c, v| {
        c.avg_person_byte_size = v
    }),
    ("nexmark.avg.auction.bytes", |c, v| {
        c.avg_auction_byte_size = v
    }),
    ("nexmark.avg.bid.bytes", |c, v| c.avg_bid_byte_size = v),
];

const OTHER_OPTIONS: &[&str] = &[
    "nexmark.table.type",
    "nexmark.events",
    "nexmark.rate",
    "nexmark.event.rate",
    "nexmark.base.time",
    "nexmark.seed",
    "nexmark.batch.rows",
    "nexmark.threads",
];
/// Most generator threads per source.
const MAX_THREADS: u64 = 64;

fn number(key: &str, value: &str) -> Result<u64> {
    value.trim().parse::<u64>().map_err(|_| {
        EddyError::invalid(format!(
            "option '{key}' must be a non-negative integer, not '{value}'"
        ))
    })
}

impl NexmarkOptions {
    /// Parse the options of `CREATE SOURCE … WITH (connector = 'nexmark', …)` (without
    /// `connector`). Unknown keys are an error that lists the known ones.
    pub fn parse(options: &BTreeMap<String, String>) -> Result<Self> {
        let kind = EventKind::from_options(options)?;
        for key in options.keys() {
            let known = OTHER_OPTIONS.contains(&key.as_str())
                || CONFIG_OPTIONS.iter().any(|(k, _)| k == key);
            if !known {
                let all: Vec<&str> = OTHER_OPTIONS
                    .iter()
                    .copied()
                    .chain(CONFIG_OPTIONS.iter().map(|(k, _)| *k))
                    .collect();
                return Err(EddyError::InvalidParameter {
                    message: format!("unknown option '{key}' for connector 'nexmark'"),
                    hint: Some(format!("Known options: {}.", all.join(", "))),
                });
            }
        }
        let get = |key: &str| options.get(key).map(|v| number(key, v)).transpose();
        let events = get("nexmark.events")?;
        let rate = get("nexmark.rate")?.unwrap_or(DEFAULT_RATE);
        let event_rate = match get("nexmark.event.rate")? {
            Some(r) => r,
            None if rate > 0 => rate,
            None => DEFAULT_EVENT_RATE,
        };
        if event_rate == 0 {
            return Err(EddyError::invalid(
                "option 'nexmark.event.rate' must be at least 1 event per second of event time",
            ));
        }
        let batch_rows = get("nexmark.batch.rows")?.map_or(DEFAULT_BATCH_ROWS, |b| b as usize);
        if !(1..=MAX_BATCH_ROWS).contains(&batch_rows) {
            return Err(EddyError::invalid(format!(
                "option 'nexmark.batch.rows' must be between 1 and {MAX_BATCH_ROWS}"
            )));
        }
        let threads = match get("nexmark.threads")? {
            Some(t) if (1..=MAX_THREADS).contains(&t) => t as usize,
            Some(_) => {
                return Err(EddyError::invalid(format!(
                    "option 'nexmark.threads' must be between 1 and {MAX_THREADS}"
                )))
            }
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let base_time = match options.get("nexmark.base.time").map(|s| s.trim()) {
            None => DEFAULT_BASE_TIME_MS,
            Some(s) if s.eq_ignore_ascii_case("now") => {
                chrono::Utc::now().timestamp_millis().max(0) as u64
            }
            Some(s) => number("nexmark.base.time", s)?,
        };
        let seed = get("nexmark.seed")?.unwrap_or(1);
        if seed == 0 {
            return Err(EddyError::invalid("option 'nexmark.seed' starts at 1"));
        }
        let mut config = NexmarkConfig {
            base_time,
            first_rate: event_rate as usize,
            next_rate: event_rate as usize,
            rate_shape: RateShape::Square,
            first_event_id: ((seed - 1) * SEED_STRIDE) as usize,
            ..NexmarkConfig::default()
        };
        for (key, set) in CONFIG_OPTIONS {
            if let Some(v) = get(key)? {
                set(&mut config, v as usize);
            }
        }
        let proportion = match kind {
            EventKind::Person => config.person_proportion,
            EventKind::Auction => config.auction_proportion,
            EventKind::Bid => config.bid_proportion,
        };
        if proportion == 0 {
            return Err(EddyError::invalid(
                "the source's own event kind has proportion 0: it would never produce a row",
            ));
        }
        for (what, v) in [
            ("nexmark.active.people", config.active_people),
            ("nexmark.in.flight.auctions", config.in_flight_auctions),
            ("nexmark.num.categories", config.num_categories),
            ("nexmark.hot.seller.ratio", config.hot_seller_ratio),
            ("nexmark.hot.auction.ratio", config.hot_auction_ratio),
            ("nexmark.hot.bidder.ratio", config.hot_bidder_ratio),
            ("nexmark.hot.channel.ratio", config.hot_channel_ratio),
        ] {
            if v == 0 {
                return Err(EddyError::invalid(format!(
                    "option '{what}' must be at least 1"
                )));
            }
        }
        Ok(NexmarkOptions {
            kind,
            events,
            rate,
            batch_rows,
            threads,
            config,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<NexmarkOptions> {
        let map = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        NexmarkOptions::parse(&map)
    }

    #[test]
    fn defaults_and_overrides() {
        let o = parse(&[("nexmark.table.type", "bid")]).unwrap();
        assert_eq!(o.kind, EventKind::Bid);
        assert_eq!((o.events, o.rate), (None, DEFAULT_RATE));
        assert_eq!(o.config.first_rate, DEFAULT_RATE as usize);
        assert_eq!(o.config.base_time, DEFAULT_BASE_TIME_MS);
        let o = parse(&[
            ("nexmark.table.type", "Auction"),
            ("nexmark.events", "1000"),
            ("nexmark.rate", "0"),
            ("nexmark.seed", "3"),
            ("nexmark.bid.proportion", "10"),
        ])
        .unwrap();
        assert_eq!(o.kind, EventKind::Auction);
        assert_eq!((o.events, o.rate), (Some(1000), 0));
        assert_eq!(o.config.first_rate, DEFAULT_EVENT_RATE as usize);
        assert_eq!(o.config.first_event_id, 2 * SEED_STRIDE as usize);
        assert_eq!(o.config.bid_proportion, 10);
    }

    #[test]
    fn errors_name_the_option() {
        let e = parse(&[]).unwrap_err().to_string();
        assert!(e.contains("nexmark.table.type"), "{e}");
        let e = parse(&[("nexmark.table.type", "bids")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("'bids'"), "{e}");
        let e = parse(&[("nexmark.table.type", "bid"), ("nexmark.evnets", "1")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown option 'nexmark.evnets'"), "{e}");
        let e = parse(&[("nexmark.table.type", "bid"), ("nexmark.rate", "-1")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("'nexmark.rate'"), "{e}");
        let e = parse(&[
            ("nexmark.table.type", "bid"),
            ("nexmark.bid.proportion", "0"),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("proportion 0"), "{e}");
    }
}
