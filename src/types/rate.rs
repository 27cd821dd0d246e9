//! Rows per second over the last few whole seconds (`eddy.sources.rows_per_s`,
//! `eddy.views.rows_per_s`): a small ring of per-second counts, cheap to add to once per batch.

use parking_lot::Mutex;

/// Whole seconds averaged over.
const WINDOW: u64 = 5;
/// Slots: the window, and the second in progress.
const SLOTS: usize = WINDOW as usize + 1;

#[derive(Debug, Default)]
struct Ring {
    /// The second the newest slot counts (seconds since the Unix epoch).
    now: u64,
    counts: [u64; SLOTS],
}

impl Ring {
    /// Move to second `now`, emptying the slots of the seconds that passed.
    fn advance(&mut self, now: u64) {
        if now <= self.now {
            return;
        }
        let passed = (now - self.now).min(SLOTS as u64);
        for s in 1..=passed {
            self.counts[((self.now + s) % SLOTS as u64) as usize] = 0;
        }
        self.now = now;
    }
}

/// Counts rows as they pass; says how many passed per second lately.
#[derive(Debug, Default)]
pub struct RateMeter(Mutex<Ring>);

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl RateMeter {
    /// `n` rows passed now.
    pub fn add(&self, n: u64) {
        self.add_at(unix_secs(), n);
    }

    fn add_at(&self, second: u64, n: u64) {
        let mut r = self.0.lock();
        r.advance(second);
        let slot = (second % SLOTS as u64) as usize;
        r.counts[slot] += n;
    }

    /// Rows per second over the last [`WINDOW`] whole seconds.
    pub fn per_second(&self) -> f64 {
        self.per_second_at(unix_secs())
    }

    fn per_second_at(&self, second: u64) -> f64 {
        let mut r = self.0.lock();
        r.advance(second);
        let current = (second % SLOTS as u64) as usize;
        let total: u64 = (0..SLOTS)
            .filter(|&i| i != current)
            .map(|i| r.counts[i])
            .sum();
        total as f64 / WINDOW as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_over_whole_seconds_and_forgets_old_ones() {
        let m = RateMeter::default();
        for s in 100..105 {
            m.add_at(s, 1000);
        }
        // At 105 the five whole seconds 100..=104 had 1000 each.
        assert_eq!(m.per_second_at(105), 1000.0);
        // The second in progress does not count yet.
        m.add_at(105, 7);
        assert_eq!(m.per_second_at(105), 1000.0);
        // Three seconds later only 103, 104 and 105 are in the window.
        assert_eq!(m.per_second_at(108), (2000.0 + 7.0) / 5.0);
        assert_eq!(m.per_second_at(200), 0.0);
    }
}
