//! The one way modsynth turns many measurements into a median and a p99.
//!
//! [`Histogram`] counts values in an HDR histogram (the `hdrhistogram` crate): memory
//! bounded by the range of values seen, not by how many, and a quantile is a walk
//! over the buckets instead of a sort of the samples. Values are kept in 1024ths of
//! their unit, to three significant digits: within 0.1 % or 1/2048 of the unit,
//! whichever is larger (a 257-sample latency is exact, as is every whole number
//! up to 2048: the worker's latency target needs one-sample resolution; 1.234 ms
//! reads back as 1.234375 ms and 12 345.678 ms as 12 344 ms).
//! Quantiles are nearest-rank: the smallest recorded value at or below which `q`
//! of the values lie.
//!
//! The supervisor's `/status` timings, the worker's parameter latency and the
//! bench's rows all use it. It allocates when a value beyond the range seen so far
//! arrives, so it never runs on the audio thread: the worker's audio thread hands
//! its latencies over a ring and the control thread records them.
//!
//! ```
//! use modsynth_model::histogram::Histogram;
//!
//! let mut h = Histogram::new();
//! assert_eq!(h.quantile(0.99), None);
//! for _ in 0..98 {
//!     h.record(200.0);
//! }
//! h.record(257.0);
//! h.record(257.0);
//! assert_eq!(h.quantile(0.5), Some(200.0));
//! assert_eq!(h.quantile(0.98), Some(200.0));
//! assert_eq!(h.quantile(0.99), Some(257.0));
//! assert_eq!((h.len(), h.last()), (100, Some(257.0)));
//! ```

/// Values are stored as integer 1024ths of their unit: a power of two, so whole
/// numbers land on bucket boundaries and stay exact up to 2048.
const SCALE: f64 = 1024.0;
/// Significant digits kept of each value (0.1 % at most off).
const DIGITS: u8 = 3;

/// Counts of recorded values, for quantiles (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct Histogram {
    /// 1024ths of each value; grows its range when a larger value arrives.
    counts: hdrhistogram::Histogram<u64>,
    /// The value recorded last, as given.
    last: Option<f64>,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram::new()
    }
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Histogram {
        Histogram {
            // Cannot fail: 3 significant digits are within hdrhistogram's 0..=5.
            counts: hdrhistogram::Histogram::new(DIGITS).expect("3 significant digits"),
            last: None,
        }
    }

    /// Counts `value`. Negative values and NaN count as 0 (nothing modsynth
    /// measures is negative); values beyond about 10^12 count as that.
    pub fn record(&mut self, value: f64) {
        let scaled = (value * SCALE).round();
        let scaled = if scaled.is_nan() || scaled < 0.0 {
            0
        } else {
            scaled.min(9.0e15) as u64
        };
        // Grows the range as needed (at most about 350 KiB for the largest values);
        // fails only for values beyond u64, which `scaled` never is.
        if self.counts.record(scaled).is_err() {
            self.counts.saturating_record(scaled);
        }
        self.last = Some(value);
    }

    /// How many values were recorded.
    pub fn len(&self) -> u64 {
        self.counts.len()
    }

    /// Whether nothing was recorded yet.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// The value recorded last.
    pub fn last(&self) -> Option<f64> {
        self.last
    }

    /// The nearest-rank `q` quantile (`q` in 0..=1, clamped): the smallest recorded
    /// value with at least `q` of all values at or below it. `None` while empty.
    ///
    /// ```
    /// let mut h = modsynth_model::histogram::Histogram::new();
    /// for v in [1.0, 2.0, 3.0, 4.0] {
    ///     h.record(v);
    /// }
    /// assert_eq!(h.quantile(0.5), Some(2.0));
    /// assert_eq!(h.quantile(0.51), Some(3.0));
    /// assert_eq!(h.quantile(1.0), Some(4.0));
    /// assert_eq!(h.quantile(0.0), Some(1.0));
    /// ```
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.counts.len();
        if n == 0 {
            return None;
        }
        // Nearest rank, computed here: hdrhistogram's own rounds the rank to the
        // nearest count (p99 of 100 values would be the 99th or the 100th by how
        // the float falls).
        let rank = (q.clamp(0.0, 1.0) * n as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for bucket in self.counts.iter_recorded() {
            seen += bucket.count_since_last_iteration();
            if seen >= rank {
                let v = self.counts.lowest_equivalent(bucket.value_iterated_to());
                return Some(v as f64 / SCALE);
            }
        }
        Some(self.counts.max() as f64 / SCALE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank_over_the_values() {
        let mut h = Histogram::new();
        for v in 1..=1000 {
            h.record(v as f64);
        }
        assert_eq!(h.quantile(0.5), Some(500.0));
        assert_eq!(h.quantile(0.99), Some(990.0));
        assert_eq!(h.quantile(0.999), Some(999.0));
        assert_eq!(h.quantile(1.0), Some(1000.0));
        assert_eq!(h.len(), 1000);
    }

    #[test]
    fn small_and_fractional_values_keep_three_digits() {
        let mut h = Histogram::new();
        for v in [0.001, 0.35, 1.234, 12.5, 4095.0] {
            h.record(v);
            let got = h.quantile(1.0).unwrap();
            let within = (v * 1e-3).max(1.0 / 2048.0);
            assert!((got - v).abs() <= within, "{v} came back as {got}");
        }
        assert_eq!(h.quantile(0.2), Some(1.0 / 1024.0));
    }

    #[test]
    fn large_values_are_within_a_thousandth() {
        let mut h = Histogram::new();
        h.record(12_345.678);
        let got = h.quantile(0.5).unwrap();
        assert_eq!(got, 12_344.0);
        assert!(
            got <= 12_345.678,
            "a quantile is a value at or below: {got}"
        );
    }

    #[test]
    fn negative_nan_and_huge_values_are_counted_not_lost() {
        let mut h = Histogram::new();
        h.record(-5.0);
        h.record(f64::NAN);
        h.record(f64::INFINITY);
        h.record(1e300);
        assert_eq!(h.len(), 4);
        assert_eq!(h.quantile(0.5), Some(0.0));
        assert!(h.quantile(1.0).unwrap() > 1e12);
    }

    #[test]
    fn every_integer_sample_latency_up_to_two_periods_of_1024_is_exact() {
        // The worker's latency target (p99 <= one period) needs one-sample
        // resolution (see the module docs of the worker's engine).
        for v in 0..=2048u32 {
            let mut h = Histogram::new();
            h.record(v as f64);
            assert_eq!(h.quantile(0.99), Some(v as f64), "{v}");
        }
    }
}
