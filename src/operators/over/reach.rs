//! How far a row's window-function value reaches: which neighbours of a
//! changed row may see their output change, and which rows must be present
//! to compute them again.
//!
//! A row's output depends on rows up to some extent before it (its frame's
//! start, `LAG`'s offset) and after it (its frame's end, `LEAD`'s offset).
//! A change at key `c` therefore changes the outputs of rows from `c` back
//! by the *after* extent to `c` forward by the *before* extent; computing
//! those again needs their own frames, one more extent out on each side.
//! Extents over-approximate: a row counted once per distinct key (several
//! copies of a row count as one) and one extra row per side, so a range
//! may hold rows whose output did not change — those cancel when old and
//! new outputs are compared.

use std::collections::BTreeMap;
use std::ops::Bound;

use datafusion::arrow::row::RowConverter;
use datafusion::common::ScalarValue;

use crate::error::Result;

/// A row's place in its partition: its ORDER BY values (row-encoded, so
/// bytes compare as the ORDER BY does), then the whole row (ties in a
/// fixed order).
pub type Key = (Box<[u8]>, Box<[u8]>);

/// How far outputs reach on one side of a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Extent {
    /// This many rows.
    Rows(usize),
    /// Rows whose (single) ORDER BY value is within this offset
    /// (`RANGE … PRECEDING`); `None`: only the row's peers (equal values).
    Range(Option<ScalarValue>),
    /// To the partition's start (before) or end (after).
    Unbounded,
}

impl Extent {
    /// Shown in EXPLAIN.
    pub fn describe(&self) -> String {
        match self {
            Extent::Rows(n) => format!("{n} rows"),
            Extent::Range(Some(ScalarValue::IntervalMonthDayNano(Some(i)))) if i.months == 0 => {
                let ns = i64::from(i.days)
                    .saturating_mul(86_400_000_000_000)
                    .saturating_add(i.nanoseconds);
                format!("range {}", crate::types::time::fmt_ns(ns))
            }
            Extent::Range(Some(v)) => format!("range {v}"),
            Extent::Range(None) => "peers".into(),
            Extent::Unbounded => "unbounded".into(),
        }
    }
}

/// The first key of a stretch of a partition (inclusive).
#[derive(Debug, Clone)]
pub enum Lo {
    /// The partition's first row.
    Start,
    /// Keys from this one (it need not be held).
    Key(Key),
}

/// The last key of a stretch of a partition (inclusive).
#[derive(Debug, Clone)]
pub enum Hi {
    /// The partition's last row.
    End,
    /// Keys up to this one.
    Key(Key),
    /// Keys whose ORDER BY part is at most this.
    Order(Box<[u8]>),
}

impl Hi {
    /// True if `k` is at or before this bound.
    pub fn admits(&self, k: &Key) -> bool {
        match self {
            Hi::End => true,
            Hi::Key(h) => k <= h,
            Hi::Order(o) => k.0 <= *o,
        }
    }
}

impl Lo {
    /// True if `k` is at or after this bound.
    pub fn admits(&self, k: &Key) -> bool {
        match self {
            Lo::Start => true,
            Lo::Key(l) => k >= l,
        }
    }
}

/// Value arithmetic on the (single) ORDER BY column, for RANGE extents.
pub struct Values<'a> {
    /// The ORDER BY encoder (one column when a RANGE offset is used).
    pub conv: &'a RowConverter,
    /// The ORDER BY column sorts descending ("before" means larger values).
    pub descending: bool,
}

impl Values<'_> {
    /// The value an encoded ORDER BY part holds.
    fn decode(&self, order: &[u8]) -> Result<ScalarValue> {
        let parser = self.conv.parser();
        let cols = self.conv.convert_rows([parser.parse(order)])?;
        Ok(ScalarValue::try_from_array(&cols[0], 0)?)
    }

    /// The encoded ORDER BY part of `v`.
    fn encode(&self, v: &ScalarValue) -> Result<Box<[u8]>> {
        let rows = self.conv.convert_columns(&[v.to_array()?])?;
        Ok(rows.row(0).as_ref().into())
    }

    /// `order` moved by `off` towards the partition's start (`back`) or end;
    /// `None` when it cannot be computed (NULL, overflow): then unbounded.
    fn shifted(&self, order: &[u8], off: &Option<ScalarValue>, back: bool) -> Option<Box<[u8]>> {
        let Some(off) = off else {
            return Some(order.into());
        };
        let v = self.decode(order).ok()?;
        if v.is_null() {
            return None;
        }
        let moved = if back != self.descending {
            v.sub_checked(off)
        } else {
            v.add_checked(off)
        };
        self.encode(&moved.ok()?).ok()
    }
}

/// The first key reached going back from `from` by the farthest of `extents`
/// (plus `extra` rows for a positional extent).
pub fn back(
    map: &BTreeMap<Key, usize>,
    from: &Lo,
    extents: &[Extent],
    values: &Values<'_>,
    extra: usize,
) -> Lo {
    let Lo::Key(from) = from else {
        return Lo::Start;
    };
    let mut lo = from.clone();
    for e in extents {
        let candidate = match e {
            Extent::Unbounded => return Lo::Start,
            Extent::Rows(n) => {
                let n = n + extra;
                if n == 0 {
                    continue;
                }
                match map
                    .range((Bound::Unbounded, Bound::Excluded(from)))
                    .rev()
                    .nth(n - 1)
                {
                    Some((k, _)) => k.clone(),
                    None => return Lo::Start,
                }
            }
            Extent::Range(off) => match values.shifted(&from.0, off, true) {
                Some(o) => (o, Box::from([])),
                None => return Lo::Start,
            },
        };
        if candidate < lo {
            lo = candidate;
        }
    }
    Lo::Key(lo)
}

/// The last key reached going forward from `from` by the farthest of
/// `extents` (plus `extra` rows for a positional extent).
pub fn forward(
    map: &BTreeMap<Key, usize>,
    from: &Hi,
    extents: &[Extent],
    values: &Values<'_>,
    extra: usize,
) -> Hi {
    let order: Box<[u8]> = match from {
        Hi::End => return Hi::End,
        Hi::Key(k) => k.0.clone(),
        Hi::Order(o) => o.clone(),
    };
    let mut hi = from.clone();
    for e in extents {
        let candidate = match e {
            Extent::Unbounded => return Hi::End,
            Extent::Rows(n) => {
                let n = n + extra;
                if n == 0 {
                    continue;
                }
                match beyond(map, from).nth(n - 1) {
                    Some(k) => Hi::Key(k.clone()),
                    None => return Hi::End,
                }
            }
            Extent::Range(off) => match values.shifted(&order, off, false) {
                Some(o) => Hi::Order(o),
                None => return Hi::End,
            },
        };
        if further(&candidate, &hi) {
            hi = candidate;
        }
    }
    hi
}

/// The keys after `hi`, in order.
fn beyond<'m>(map: &'m BTreeMap<Key, usize>, hi: &Hi) -> Box<dyn Iterator<Item = &'m Key> + 'm> {
    match hi {
        Hi::End => Box::new(std::iter::empty()),
        Hi::Key(k) => Box::new(
            map.range((Bound::Excluded(k.clone()), Bound::Unbounded))
                .map(|(k, _)| k),
        ),
        Hi::Order(o) => {
            let o = o.clone();
            let probe: Key = (o.clone(), Box::from([]));
            Box::new(
                map.range(probe..)
                    .map(|(k, _)| k)
                    .skip_while(move |k| k.0 == o),
            )
        }
    }
}

/// True if bound `a` reaches past bound `b`.
fn further(a: &Hi, b: &Hi) -> bool {
    match (a, b) {
        (_, Hi::End) => false,
        (Hi::End, _) => true,
        (Hi::Key(x), Hi::Key(y)) => x > y,
        (Hi::Key(x), Hi::Order(o)) => x.0 > *o,
        (Hi::Order(o), Hi::Key(y)) => *o >= y.0,
        (Hi::Order(x), Hi::Order(y)) => x > y,
    }
}

/// The keys from `lo` to `hi` (both inclusive), in order, with their counts.
pub fn between<'m>(
    map: &'m BTreeMap<Key, usize>,
    lo: &Lo,
    hi: &'m Hi,
) -> impl Iterator<Item = (&'m Key, usize)> + 'm {
    let start = match lo {
        Lo::Start => Bound::Unbounded,
        Lo::Key(k) => Bound::Included(k.clone()),
    };
    map.range((start, Bound::Unbounded))
        .take_while(move |(k, _)| hi.admits(k))
        .map(|(k, n)| (k, *n))
}
