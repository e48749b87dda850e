//! The pure parts of `cargo xtask bench`: the open-loop schedule (coordinated-omission
//! correction), percentiles, `/proc` parsing and the markdown/JSON report.
//!
//! Kept free of I/O so that `#[test]`s can check the arithmetic the numbers rest on.

use hdrhistogram::Histogram;
use std::time::Duration;

/// A latency histogram in nanoseconds, 1 ns to 60 s, 3 significant figures.
pub(crate) fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 60_000_000_000, 3)?)
}

/// Records one latency, saturating at the histogram's bound instead of dropping it.
pub(crate) fn record(h: &mut Histogram<u64>, d: Duration) {
    let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).clamp(1, h.high());
    // `saturating_record` cannot fail.
    h.saturating_record(ns);
}

/// Percentile `q` (0..=100) of `h` in microseconds.
pub(crate) fn pct_us(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q / 100.0) as f64 / 1_000.0
}

/// When request `j` of connection `conn` is *intended* to be sent, as an offset from the
/// start of an open-loop phase at `rate` requests/s spread over `conns` connections.
///
/// Connections interleave evenly (connection `c` owns slots `c, c + conns, c + 2·conns…`),
/// so the aggregate schedule is exactly one request every `1/rate` s. Latency is measured
/// from this instant, not from when the request actually left (the wrk2 correction): a
/// stall that delays later sends shows up in their latency instead of being omitted.
pub(crate) fn intended_offset(conn: u64, j: u64, rate: u64, conns: u64) -> Duration {
    let slot = j.saturating_mul(conns).saturating_add(conn);
    Duration::from_nanos(slot.saturating_mul(1_000_000_000) / rate.max(1))
}

/// Latency of a request intended at `intended`, sent at `sent` and completed at `done`, on
/// a connection whose previous answer arrived at `prev_done` (all offsets from the phase
/// start).
///
/// When the connection was still busy at the intended instant, the wait is the server's
/// doing and counts (the wrk2 correction): latency runs from `intended`. When it was free,
/// any gap between `intended` and `sent` is the load generator's own timer lateness —
/// Tokio's timer rounds sleeps up to the next millisecond — and counting it would add up
/// to 1 ms to every request, direct or not; latency then runs from `sent`.
pub(crate) fn corrected_latency(intended: Duration, prev_done: Duration, sent: Duration, done: Duration) -> Duration {
    let from = if prev_done > intended { intended } else { sent };
    done.saturating_sub(from)
}

/// CPU time (utime + stime) in clock ticks from the text of `/proc/<pid>/stat`.
///
/// The second field (`comm`) is in parentheses and may itself contain spaces and `)`, so
/// fields are counted after the *last* `)`: state is field 3, utime 14, stime 15.
pub(crate) fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state) → utime is index 14 - 3 = 11, stime 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// A `kB` field such as `VmRSS` from the text of `/proc/<pid>/status`, in KiB.
pub(crate) fn parse_status_kib(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let v = l.strip_prefix(field)?.strip_prefix(':')?;
        v.split_whitespace().next()?.parse().ok()
    })
}

/// Quantile `q` (0..=100, nearest rank) of a few samples; zero when there are none.
pub(crate) fn quantile(samples: &[Duration], q: f64) -> Duration {
    let mut s = samples.to_vec();
    s.sort_unstable();
    if s.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q / 100.0) * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}

/// One size of the `snapshot_load` bench, as its table row reports it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SnapshotLoad {
    pub(crate) keys: u64,
    pub(crate) decode_ms: f64,
    pub(crate) apply_ms: f64,
    pub(crate) rss_after_mib: f64,
    pub(crate) hwm_mib: f64,
}

/// Parses a result row of the `snapshot_load` bench:
/// `| keys | encoded MiB | read ms | decode ms | apply ms | RSS before | RSS after | RSS added | VmHWM |`.
pub(crate) fn parse_snapshot_load_row(line: &str) -> Option<SnapshotLoad> {
    let cells: Vec<&str> = line.trim().strip_prefix('|')?.strip_suffix('|')?.split('|').map(str::trim).collect();
    if cells.len() != 9 {
        return None;
    }
    let f = |i: usize| cells[i].parse::<f64>().ok();
    Some(SnapshotLoad {
        keys: cells[0].parse().ok()?,
        decode_ms: f(3)?,
        apply_ms: f(4)?,
        rss_after_mib: f(6)?,
        hwm_mib: f(8)?,
    })
}

/// The change row of the `snapshot_load` bench: one change on a loaded gateway against a
/// full re-apply of the snapshot.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ChangeApply {
    pub(crate) keys: u64,
    pub(crate) full_ms: f64,
    pub(crate) mint_ms: f64,
    pub(crate) revoke_ms: f64,
    pub(crate) mint_bytes: f64,
    pub(crate) snapshot_mib: f64,
}

/// Parses a change row of the `snapshot_load` bench:
/// `| keys | full re-apply ms | mint change ms | revoke change ms | mint change bytes | snapshot MiB |`.
pub(crate) fn parse_change_row(line: &str) -> Option<ChangeApply> {
    let cells: Vec<&str> = line.trim().strip_prefix('|')?.strip_suffix('|')?.split('|').map(str::trim).collect();
    if cells.len() != 6 {
        return None;
    }
    let f = |i: usize| cells[i].parse::<f64>().ok();
    Some(ChangeApply {
        keys: cells[0].parse().ok()?,
        full_ms: f(1)?,
        mint_ms: f(2)?,
        revoke_ms: f(3)?,
        mint_bytes: f(4)?,
        snapshot_mib: f(5)?,
    })
}

/// CPU microseconds per request from a tick delta.
pub(crate) fn cpu_us_per_request(ticks: u64, clk_tck: u64, requests: u64) -> Option<f64> {
    if requests == 0 || clk_tck == 0 {
        return None;
    }
    Some(ticks as f64 * 1e6 / clk_tck as f64 / requests as f64)
}

/// Whether a lower or a higher value is better, and the bound a target sets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Target {
    /// The measured value must be at most this.
    AtMost(f64),
    /// The measured value must be at least this.
    AtLeast(f64),
    /// Informational: no target.
    None,
}

/// How the overhead column is derived from direct and tollgate values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Compare {
    /// tollgate − direct (latencies): the target applies to the difference.
    Difference,
    /// tollgate / direct (throughput): the target applies to the ratio.
    Ratio,
    /// No direct counterpart (gateway CPU, RSS): the target applies to the tollgate value.
    Own,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    pub(crate) measure: String,
    pub(crate) unit: &'static str,
    pub(crate) direct: Option<f64>,
    pub(crate) tollgate: Option<f64>,
    pub(crate) compare: Compare,
    pub(crate) target: Target,
}

impl Row {
    /// The value the target applies to (difference, ratio or own value).
    pub(crate) fn judged(&self) -> Option<f64> {
        match self.compare {
            Compare::Difference => Some(self.tollgate? - self.direct?),
            Compare::Ratio => {
                let d = self.direct?;
                if d == 0.0 { None } else { Some(self.tollgate? / d) }
            }
            Compare::Own => self.tollgate,
        }
    }

    /// `Some(true)` if the target is met, `None` without a target or a value.
    pub(crate) fn met(&self) -> Option<bool> {
        let v = self.judged()?;
        match self.target {
            Target::AtMost(t) => Some(v <= t),
            Target::AtLeast(t) => Some(v >= t),
            Target::None => None,
        }
    }

    fn target_text(&self) -> String {
        let unit = if self.compare == Compare::Ratio { "×" } else { self.unit };
        match self.target {
            Target::AtMost(t) => format!("≤ {} {unit}", num(t)),
            Target::AtLeast(t) => format!("≥ {} {unit}", num(t)),
            Target::None => "—".into(),
        }
    }
}

fn num(v: f64) -> String {
    if v.abs() >= 100.0 { format!("{v:.0}") } else { format!("{v:.2}") }
}

fn cell(v: Option<f64>, unit: &str) -> String {
    v.map_or_else(|| "—".into(), |v| format!("{} {unit}", num(v)))
}

/// The markdown table: measure | direct | tollgate | overhead/ratio | target | met?
pub(crate) fn markdown(rows: &[Row]) -> String {
    let mut out = String::from(
        "| measure | direct | tollgate | overhead / ratio | target | met? |\n|---|---:|---:|---:|---|:---:|\n",
    );
    for r in rows {
        let overhead = match (r.compare, r.judged()) {
            (Compare::Difference, Some(v)) => format!("{}{} {}", if v >= 0.0 { "+" } else { "" }, num(v), r.unit),
            (Compare::Ratio, Some(v)) => format!("{v:.2}×"),
            _ => "—".into(),
        };
        let met = match r.met() {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "—",
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            r.measure,
            cell(r.direct, r.unit),
            cell(r.tollgate, r.unit),
            overhead,
            r.target_text(),
            met
        ));
    }
    out
}

/// The JSON copy of the report.
pub(crate) fn json(rows: &[Row], meta: serde_json::Value) -> serde_json::Value {
    let rows: Vec<_> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "measure": r.measure, "unit": r.unit, "direct": r.direct, "tollgate": r.tollgate,
                "judged": r.judged(), "target": r.target_text(), "met": r.met(),
            })
        })
        .collect();
    serde_json::json!({"meta": meta, "rows": rows})
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn open_loop_schedule_is_one_request_per_interval_across_connections() {
        // 1,000 req/s over 4 connections: slots 0,1,2,3 ms then 4 ms for connection 0's second.
        let offs: Vec<u64> = (0..2)
            .flat_map(|j| (0..4).map(move |c| (c, j)))
            .map(|(c, j)| intended_offset(c, j, 1_000, 4).as_micros() as u64)
            .collect();
        assert_eq!(offs, vec![0, 1_000, 2_000, 3_000, 4_000, 5_000, 6_000, 7_000]);
        assert_eq!(intended_offset(3, 9, 5_000, 8), Duration::from_micros(15_000));
    }

    #[test]
    fn a_stall_counts_against_every_request_it_delayed() {
        // 1 connection at 1,000 req/s; the server stalls 100 ms on request 0, then answers
        // instantly. Requests 1..100 leave late; measured from their intended time their
        // latencies fall from ~99 ms to ~0, as wrk2 reports, rather than ~0 each.
        let mut h = histogram().unwrap();
        let mut now = Duration::ZERO;
        for j in 0..200u64 {
            let intended = intended_offset(0, j, 1_000, 1);
            let (prev_done, sent) = (now, now.max(intended));
            now = sent + if j == 0 { Duration::from_millis(100) } else { Duration::from_micros(10) };
            record(&mut h, corrected_latency(intended, prev_done, sent, now));
        }
        assert!(pct_us(&h, 50.0) > 1_000.0, "p50 {} µs hides the stall", pct_us(&h, 50.0));
        assert!(pct_us(&h, 99.0) > 90_000.0);
        let ms = Duration::from_millis;
        assert_eq!(corrected_latency(ms(5), ms(0), ms(5), ms(3)), Duration::ZERO);
    }

    #[test]
    fn the_generators_own_timer_lateness_does_not_count() {
        // The connection was idle at the intended 10 ms; the timer woke at 10.9 ms and the
        // answer took 20 µs: 20 µs, not 920 µs.
        let us = Duration::from_micros;
        assert_eq!(corrected_latency(us(10_000), us(5_000), us(10_900), us(10_920)), us(20));
        // Busy until 10.5 ms (previous answer late): the request waited from 10 ms.
        assert_eq!(corrected_latency(us(10_000), us(10_500), us(10_500), us(10_520)), us(520));
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut h = histogram().unwrap();
        for us in 1..=1_000u64 {
            record(&mut h, Duration::from_micros(us));
        }
        let p50 = pct_us(&h, 50.0);
        let p99 = pct_us(&h, 99.0);
        assert!((499.0..=501.0).contains(&p50), "{p50}");
        assert!((989.0..=991.0).contains(&p99), "{p99}");
    }

    #[test]
    fn proc_stat_is_parsed_after_the_last_paren_of_comm() {
        let stat = "4242 (tollgate) gw (x)) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
                    250 37 0 0 20 0 3 0 123456 1000000 2000 18446744073709551615";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(287));
        assert_eq!(parse_stat_cpu_ticks("12 (x) S 1 2"), None);
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
        assert_eq!(cpu_us_per_request(287, 100, 100_000), Some(28.7));
        assert_eq!(cpu_us_per_request(1, 100, 0), None);
    }

    #[test]
    fn quantiles_of_a_few_samples_are_nearest_rank() {
        let ms: Vec<Duration> = (1..=20).rev().map(Duration::from_millis).collect();
        assert_eq!(quantile(&ms, 50.0), Duration::from_millis(10));
        assert_eq!(quantile(&ms, 99.0), Duration::from_millis(20));
        assert_eq!(quantile(&ms, 100.0), Duration::from_millis(20));
        assert_eq!(quantile(&[], 50.0), Duration::ZERO);
    }

    #[test]
    fn snapshot_load_rows_are_parsed_and_headers_skipped() {
        let row = "| 100000 | 21.3 | 4 | 180 | 420 | 9.1 | 52.7 | 43.6 | 80.2 |";
        let s = parse_snapshot_load_row(row).unwrap();
        assert_eq!(s.keys, 100_000);
        assert_eq!((s.decode_ms, s.apply_ms, s.rss_after_mib, s.hwm_mib), (180.0, 420.0, 52.7, 80.2));
        assert_eq!(
            parse_snapshot_load_row("| keys | encoded MiB | read ms | decode ms | apply ms | a | b | c | d |"),
            None
        );
        assert_eq!(parse_snapshot_load_row("|---:|---:|---:|---:|---:|---:|---:|---:|---:|"), None);
        let change = parse_change_row("| 100000 | 512 | 2.250 | 1.900 | 302 | 31.4 |").unwrap();
        assert_eq!(
            change,
            ChangeApply {
                keys: 100_000,
                full_ms: 512.0,
                mint_ms: 2.25,
                revoke_ms: 1.9,
                mint_bytes: 302.0,
                snapshot_mib: 31.4
            }
        );
        assert_eq!(parse_snapshot_load_row("| 100000 | 512 | 2.250 | 1.900 | 302 | 31.4 |"), None, "tables kept apart");
        assert_eq!(parse_change_row(row), None);
        assert_eq!(parse_snapshot_load_row("snapshot load (decode + DataPlane::apply)"), None);
    }

    #[test]
    fn proc_status_fields_in_kib() {
        let status = "Name:\ttollgate-gateway\nVmHWM:\t   30720 kB\nVmRSS:\t   20480 kB\nVmRSSX:\t1 kB\n";
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(20_480));
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(30_720));
        assert_eq!(parse_status_kib(status, "VmSwap"), None);
    }

    #[test]
    fn table_judges_difference_ratio_and_own_value() {
        let rows = vec![
            Row {
                measure: "p50 single connection".into(),
                unit: "µs",
                direct: Some(40.0),
                tollgate: Some(120.0),
                compare: Compare::Difference,
                target: Target::AtMost(50.0),
            },
            Row {
                measure: "saturated throughput".into(),
                unit: "req/s",
                direct: Some(20_000.0),
                tollgate: Some(6_000.0),
                compare: Compare::Ratio,
                target: Target::AtLeast(0.25),
            },
            Row {
                measure: "gateway CPU per request".into(),
                unit: "µs",
                direct: None,
                tollgate: Some(42.0),
                compare: Compare::Own,
                target: Target::AtMost(50.0),
            },
        ];
        assert_eq!(rows[0].met(), Some(false));
        assert_eq!(rows[1].met(), Some(true));
        assert_eq!(rows[2].met(), Some(true));
        let md = markdown(&rows);
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(lines.len(), 5, "{md}");
        assert_eq!(lines[2], "| p50 single connection | 40.00 µs | 120 µs | +80.00 µs | ≤ 50.00 µs | **no** |");
        assert_eq!(lines[3], "| saturated throughput | 20000 req/s | 6000 req/s | 0.30× | ≥ 0.25 × | yes |");
        assert_eq!(lines[4], "| gateway CPU per request | — | 42.00 µs | — | ≤ 50.00 µs | yes |");
        let j = json(&rows, serde_json::json!({}));
        assert_eq!(j["rows"][1]["met"], true);
        assert_eq!(j["rows"][0]["judged"], 80.0);
    }
}
