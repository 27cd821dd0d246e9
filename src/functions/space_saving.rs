//! The Space-Saving summary (Metwally, Agrawal, El Abbadi 2005): the heavy
//! hitters of a stream in a fixed number of counters.
//!
//! Each monitored item has a count and an error. A new item, when every
//! counter is taken, replaces the item with the smallest count `min` and
//! starts at `min + 1` with error `min`. For every monitored item,
//! `count - error <= true count <= count`, and any item whose true count
//! exceeds `N / capacity` (N = items seen) is monitored. Two summaries merge
//! (Agarwal et al., "Mergeable summaries", 2012) with the same guarantee, so
//! partial summaries from aggregate partitions and checkpoints combine.

use std::collections::{BTreeSet, HashMap};

/// One monitored item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counter {
    /// The item.
    pub item: String,
    /// Estimated count: never below the true count.
    pub count: u64,
    /// How much `count` may exceed the true count.
    pub error: u64,
}

/// A Space-Saving summary with a fixed number of counters.
#[derive(Debug, Clone)]
pub struct SpaceSaving {
    capacity: usize,
    counters: Vec<Counter>,
    /// Item → index in `counters`.
    index: HashMap<String, usize>,
    /// (count, index) of every counter, to find the smallest.
    by_count: BTreeSet<(u64, usize)>,
}

impl SpaceSaving {
    /// An empty summary with `capacity` counters (at least 1).
    pub fn new(capacity: usize) -> Self {
        SpaceSaving {
            capacity: capacity.max(1),
            counters: Vec::new(),
            index: HashMap::new(),
            by_count: BTreeSet::new(),
        }
    }

    /// Number of counters.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes held, roughly.
    pub fn size(&self) -> usize {
        self.counters
            .iter()
            .map(|c| 2 * c.item.len() + 64)
            .sum::<usize>()
            + std::mem::size_of::<Self>()
    }

    /// Count one occurrence of `item`.
    pub fn add(&mut self, item: &str) {
        self.add_counted(item, 1, 0);
    }

    /// Add `count` occurrences of `item`, of which up to `error` may not have happened.
    fn add_counted(&mut self, item: &str, count: u64, error: u64) {
        if let Some(&i) = self.index.get(item) {
            self.bump(i, count, error);
            return;
        }
        if self.counters.len() < self.capacity {
            let i = self.counters.len();
            self.counters.push(Counter {
                item: item.to_string(),
                count,
                error,
            });
            self.index.insert(item.to_string(), i);
            self.by_count.insert((count, i));
            return;
        }
        // Every counter is taken: the smallest one is handed to the new item.
        let Some(&(min, i)) = self.by_count.iter().next() else {
            return;
        };
        let old = std::mem::replace(&mut self.counters[i].item, item.to_string());
        self.index.remove(&old);
        self.index.insert(item.to_string(), i);
        self.counters[i].error = min;
        self.bump(i, count, error);
    }

    fn bump(&mut self, i: usize, count: u64, error: u64) {
        let c = &mut self.counters[i];
        self.by_count.remove(&(c.count, i));
        c.count += count;
        c.error += error;
        self.by_count.insert((c.count, i));
    }

    /// The smallest count when every counter is taken, else 0: an item that
    /// is not monitored occurred at most this often.
    pub fn floor(&self) -> u64 {
        if self.counters.len() < self.capacity {
            0
        } else {
            self.by_count.iter().next().map_or(0, |(c, _)| *c)
        }
    }

    /// Fold `other` into this summary.
    pub fn merge(&mut self, other: &SpaceSaving) {
        let (mine, theirs) = (self.floor(), other.floor());
        let mut merged: HashMap<&str, (u64, u64)> = HashMap::new();
        for c in &self.counters {
            merged.insert(&c.item, (c.count + theirs, c.error + theirs));
        }
        for c in &other.counters {
            merged
                .entry(&c.item)
                .and_modify(|(n, e)| {
                    // Counted on both sides: replace the guess for `other` by its counter.
                    *n = *n - theirs + c.count;
                    *e = *e - theirs + c.error;
                })
                .or_insert((c.count + mine, c.error + mine));
        }
        let mut all: Vec<Counter> = merged
            .into_iter()
            .map(|(item, (count, error))| Counter {
                item: item.to_string(),
                count,
                error,
            })
            .collect();
        sort_counters(&mut all);
        all.truncate(self.capacity);
        *self = SpaceSaving::from_counters(self.capacity, all);
    }

    /// Rebuild a summary from its counters (as [`SpaceSaving::counters`] gave them).
    pub fn from_counters(capacity: usize, counters: Vec<Counter>) -> Self {
        let mut s = SpaceSaving::new(capacity);
        for c in counters.into_iter().take(s.capacity) {
            s.add_counted(&c.item, c.count, c.error);
        }
        s
    }

    /// Every counter, highest count first (ties by item).
    pub fn counters(&self) -> Vec<Counter> {
        let mut all = self.counters.clone();
        sort_counters(&mut all);
        all
    }
}

fn sort_counters(c: &mut [Counter]) {
    c.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.item.cmp(&b.item)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn exact(items: &[String]) -> HashMap<String, u64> {
        let mut m = HashMap::new();
        for i in items {
            *m.entry(i.clone()).or_insert(0) += 1;
        }
        m
    }

    fn check_bounds(s: &SpaceSaving, items: &[String]) {
        let truth = exact(items);
        let n = items.len() as u64;
        for c in s.counters() {
            let t = truth.get(&c.item).copied().unwrap_or(0);
            assert!(c.count >= t, "{c:?} below the true count {t}");
            assert!(c.count - c.error <= t, "{c:?} error does not cover {t}");
        }
        // Every item above N / capacity is monitored.
        for (item, t) in &truth {
            if *t > n / s.capacity() as u64 {
                assert!(
                    s.counters().iter().any(|c| &c.item == item),
                    "{item} ({t} of {n}) is missing"
                );
            }
        }
    }

    fn skewed() -> impl Strategy<Value = Vec<String>> {
        // Zipf-ish: small numbers much more often.
        prop::collection::vec((0u32..40, 0u32..40), 0..600).prop_map(|v| {
            v.into_iter()
                .map(|(a, b)| format!("t{}", a * b / 40))
                .collect()
        })
    }

    proptest! {
        #[test]
        fn counts_bound_the_truth(items in skewed(), capacity in 1usize..12) {
            let mut s = SpaceSaving::new(capacity);
            for i in &items {
                s.add(i);
            }
            check_bounds(&s, &items);
        }

        #[test]
        fn merged_summaries_bound_the_truth(
            items in skewed(), split in 0usize..600, capacity in 1usize..12
        ) {
            let split = split.min(items.len());
            let (mut a, mut b) = (SpaceSaving::new(capacity), SpaceSaving::new(capacity));
            for i in &items[..split] {
                a.add(i);
            }
            for i in &items[split..] {
                b.add(i);
            }
            a.merge(&b);
            check_bounds(&a, &items);
        }
    }

    #[test]
    fn exact_while_there_is_room() {
        let mut s = SpaceSaving::new(3);
        for i in ["a", "b", "a", "c", "a", "b"] {
            s.add(i);
        }
        let got: Vec<(String, u64, u64)> = s
            .counters()
            .into_iter()
            .map(|c| (c.item, c.count, c.error))
            .collect();
        assert_eq!(
            got,
            vec![("a".into(), 3, 0), ("b".into(), 2, 0), ("c".into(), 1, 0)]
        );
        // A fourth item takes over the smallest counter ("c", 1): count 2, error 1.
        s.add("d");
        assert_eq!(s.counters()[2].item, "d");
        assert_eq!((s.counters()[2].count, s.counters()[2].error), (2, 1));
    }
}
