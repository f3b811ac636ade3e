//! Latency samples and their summaries.
//!
//! Every latency in the harness is kept as a sample in milliseconds (`f64`) so
//! that percentiles are exact (no histogram bucketing). A distribution may also
//! have *missing* samples — events that never arrived within the scenario's
//! window — which count as "later than the window": a percentile that falls
//! among them is reported as `None` (shown as `> window`), never invented.

use serde::{Deserialize, Serialize};

/// A set of latency samples in milliseconds, plus the number that never came.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Samples {
    /// Observed values, in milliseconds (unsorted until [`Samples::summary`]).
    pub values: Vec<f64>,
    /// Expected observations that did not arrive within `window_ms`.
    pub missing: usize,
    /// How long the harness waited for the missing ones (ms), if any.
    pub window_ms: Option<f64>,
}

/// Percentiles of a [`Samples`]; `None` means "beyond the window" (missing).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub count: usize,
    pub missing: usize,
    pub min: Option<f64>,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
    pub mean: Option<f64>,
    pub window_ms: Option<f64>,
}

impl Samples {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, v: f64) {
        self.values.push(v);
    }

    /// Adds another set's observations (its missing ones too).
    pub fn extend(&mut self, other: &Samples) {
        self.values.extend_from_slice(&other.values);
        self.missing += other.missing;
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Sorts the values and computes the summary. Missing samples sort last.
    pub fn summary(&mut self) -> Summary {
        self.values.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        let n = self.values.len();
        let total = n + self.missing;
        let pick = |q: f64| -> Option<f64> {
            if total == 0 {
                return None;
            }
            // nearest-rank percentile over all expected observations
            let rank = ((q * total as f64).ceil() as usize).clamp(1, total);
            if rank <= n {
                Some(self.values[rank - 1])
            } else {
                None
            }
        };
        Summary {
            count: n,
            missing: self.missing,
            min: self.values.first().copied(),
            p50: pick(0.50),
            p90: pick(0.90),
            p99: pick(0.99),
            max: if self.missing > 0 { None } else { self.values.last().copied() },
            mean: if n > 0 && self.missing == 0 { Some(self.values.iter().sum::<f64>() / n as f64) } else { None },
            window_ms: self.window_ms,
        }
    }
}

/// Median of a list of values (used to combine repeated runs).
pub fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 { v[m] } else { (v[m - 1] + v[m]) / 2.0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_nearest_rank() {
        let mut s = Samples::new();
        for i in 1..=100 {
            s.push(i as f64);
        }
        let sum = s.summary();
        assert_eq!(sum.p50, Some(50.0));
        assert_eq!(sum.p99, Some(99.0));
        assert_eq!(sum.max, Some(100.0));
    }

    #[test]
    fn missing_samples_are_beyond_the_window() {
        let mut s = Samples::new();
        for i in 1..=90 {
            s.push(i as f64);
        }
        s.missing = 10;
        let sum = s.summary();
        assert_eq!(sum.p50, Some(50.0));
        assert_eq!(sum.p90, Some(90.0));
        assert_eq!(sum.p99, None);
        assert_eq!(sum.max, None);
    }

    #[test]
    fn median_even_and_odd() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
    }
}
