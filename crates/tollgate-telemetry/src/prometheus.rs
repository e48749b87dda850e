//! The Prometheus text exposition format (version 0.0.4), as both planes write their
//! `GET /metrics`: `# HELP` / `# TYPE` lines, escaped label values, one line per sample,
//! and fixed-bucket duration histograms.
//!
//! Only the format lives here; each plane keeps its own registry of series. Rendering
//! writes into a `String` (writing to one cannot fail, so there is no error to handle).
//! Scrapers and tests read this output byte for byte: a change here changes both planes.

use std::fmt::{Display, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The `Content-Type` of a scrape answer.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The type of a metric family, as its `# TYPE` line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A value that only goes up.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// Cumulative buckets, a sum and a count.
    Histogram,
}

impl Kind {
    /// The name in the `# TYPE` line.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Writes the `# HELP` and `# TYPE` lines that open the family `name`.
pub fn header(out: &mut String, name: &str, kind: Kind, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {}", kind.as_str());
}

/// `v` as a label value: backslash, double quote and newline escaped.
pub fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Label pairs in the form a sample's braces hold: `a="x",b="y"`, every value escaped.
pub fn labels(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (name, value)) in pairs.iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        let _ = write!(out, "{sep}{name}=\"{}\"", escape(value));
    }
    out
}

/// Writes one sample line: `name{labels} value`, or `name value` when `labels` is empty.
/// `labels` is what [`labels`] makes.
pub fn sample(out: &mut String, name: &str, labels: &str, value: impl Display) {
    if labels.is_empty() {
        let _ = writeln!(out, "{name} {value}");
    } else {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

/// A fixed-bucket histogram of durations, exposed in seconds. Lock-free: observing is a
/// few relaxed atomic adds, so it may sit on the request path.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Box<[AtomicU64]>,
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// An empty histogram with these upper bounds (seconds, ascending; `+Inf` is implied).
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
        }
    }

    /// Counts one duration in the first bucket that holds it (only in `+Inf` when it
    /// is above every bound).
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = self.bounds.iter().position(|&b| secs <= b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Counts one plain value (a ratio, a size) in the first bucket that holds it; the
    /// bounds are then in that value's unit, not seconds. A NaN lands only in `+Inf`;
    /// the sum adds only positive finite values.
    pub fn observe_value(&self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|&b| v <= b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        // The sum is kept in billionths, like durations in nanoseconds.
        let scaled = if v.is_finite() && v > 0.0 { (v * 1e9).min(u64::MAX as f64) as u64 } else { 0 };
        self.sum_nanos.fetch_add(scaled, Ordering::Relaxed);
    }

    /// Writes the series `name_bucket` (cumulative, one per bound plus `+Inf`),
    /// `name_sum` and `name_count` with `labels` (made by [`labels`]; may be empty).
    /// The family's [`header`] is the caller's, since one family holds many label sets.
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (b, c) in self.bounds.iter().zip(self.counts.iter()) {
            cumulative += c.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_labels_and_samples_are_the_exposition_format() {
        let mut out = String::new();
        header(&mut out, "x_total", Kind::Counter, "Things.");
        sample(&mut out, "x_total", &labels(&[("route", "/a/{id}"), ("method", "GET")]), 3);
        sample(&mut out, "x_total", "", 4);
        assert_eq!(
            out,
            "# HELP x_total Things.\n# TYPE x_total counter\nx_total{route=\"/a/{id}\",method=\"GET\"} 3\nx_total 4\n"
        );
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(labels(&[("k", "a\"b")]), "k=\"a\\\"b\"");
        assert_eq!(labels(&[]), "");
    }

    #[test]
    fn plain_values_fill_buckets_in_their_own_unit() {
        static RATIO: &[f64] = &[1.0, 2.0];
        let h = Histogram::new(RATIO);
        for v in [1.0, 1.5, 7.0, f64::NAN] {
            h.observe_value(v);
        }
        let mut out = String::new();
        h.render(&mut out, "r", "");
        assert_eq!(
            out,
            "r_bucket{le=\"1\"} 1\nr_bucket{le=\"2\"} 2\nr_bucket{le=\"+Inf\"} 4\nr_sum{} 9.5\nr_count{} 4\n"
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative_with_sum_and_count() {
        static BOUNDS: &[f64] = &[0.001, 0.5, 1.0];
        let h = Histogram::new(BOUNDS);
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(250));
        h.observe(Duration::from_secs(3));
        let mut out = String::new();
        h.render(&mut out, "d_seconds", "route=\"r\"");
        let want = concat!(
            "d_seconds_bucket{route=\"r\",le=\"0.001\"} 1\n",
            "d_seconds_bucket{route=\"r\",le=\"0.5\"} 2\n",
            "d_seconds_bucket{route=\"r\",le=\"1\"} 2\n",
            "d_seconds_bucket{route=\"r\",le=\"+Inf\"} 3\n",
            "d_seconds_sum{route=\"r\"} 3.2505\n",
            "d_seconds_count{route=\"r\"} 3\n",
        );
        assert_eq!(out, want);
        let mut bare = String::new();
        Histogram::new(BOUNDS).render(&mut bare, "e", "");
        assert!(bare.starts_with("e_bucket{le=\"0.001\"} 0\n") && bare.ends_with("e_sum{} 0\ne_count{} 0\n"), "{bare}");
    }
}
