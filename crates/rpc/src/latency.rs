//! Durations, counted in fixed buckets where they happen (a FUSE operation, a UFS request)
//! and sent to the master, which exports them as Prometheus histograms. Fixed bounds make the
//! counts of every process add up, and make a report a few hundred bytes.

use crate::pb;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Upper bounds of the buckets, in seconds: 100 µs to 10 s.
pub const BOUNDS: [f64; 16] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Operation names a report may carry, and their longest length.
pub const MAX_OPS: usize = 16;
pub const MAX_OP_LEN: usize = 32;

/// One histogram: counts per bucket (the last above every bound) and the sum, in nanoseconds.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BOUNDS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = BOUNDS.iter().position(|b| s <= *b).unwrap_or(BOUNDS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }

    pub fn snapshot(&self, op: &str) -> pb::Latency {
        pb::Latency {
            op: op.to_string(),
            buckets: self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect(),
            sum_seconds: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

/// Histograms of a fixed set of operations.
#[derive(Debug)]
pub struct OpLatencies {
    ops: &'static [&'static str],
    histograms: Vec<Histogram>,
}

impl OpLatencies {
    pub fn new(ops: &'static [&'static str]) -> OpLatencies {
        OpLatencies { ops, histograms: ops.iter().map(|_| Histogram::default()).collect() }
    }

    /// Counts the time until the returned guard drops under `op` (one of the set's).
    pub fn time(&self, op: &'static str) -> Timer<'_> {
        let h = self.ops.iter().position(|o| *o == op).map(|i| &self.histograms[i]);
        Timer { h, start: Instant::now() }
    }

    /// Every operation that happened at least once.
    pub fn snapshot(&self) -> Vec<pb::Latency> {
        self.ops.iter().zip(&self.histograms).map(|(op, h)| h.snapshot(op)).filter(|l| l.buckets.iter().any(|c| *c > 0)).collect()
    }
}

pub struct Timer<'a> {
    h: Option<&'a Histogram>,
    start: Instant,
}

impl Drop for Timer<'_> {
    fn drop(&mut self) {
        if let Some(h) = self.h {
            h.observe(self.start.elapsed());
        }
    }
}

/// A report's histograms as the master takes them: a bounded number, named by short
/// lowercase words, each with exactly the buckets of [`BOUNDS`]; anything else is dropped.
pub fn validated(list: Vec<pb::Latency>) -> Vec<pb::Latency> {
    list.into_iter()
        .filter(|l| l.buckets.len() == BOUNDS.len() + 1 && l.sum_seconds.is_finite() && l.sum_seconds >= 0.0)
        .filter(|l| !l.op.is_empty() && l.op.len() <= MAX_OP_LEN && l.op.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        .take(MAX_OPS)
        .collect()
}

/// This process's CPU time, resident memory, open descriptors and start time, from
/// `/proc/self` (zeros where it cannot be read).
pub fn process_figures() -> pb::ProcessFigures {
    let mut p = pb::ProcessFigures::default();
    // SAFETY: sysconf with valid constants has no preconditions.
    let (tick, page) = unsafe { (libc::sysconf(libc::_SC_CLK_TCK) as f64, libc::sysconf(libc::_SC_PAGESIZE) as u64) };
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the command name (which may hold spaces) start at field 3.
        let rest: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
        let field = |n: usize| rest.get(n - 3).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        if tick > 0.0 {
            p.cpu_seconds = (field(14) + field(15)) as f64 / tick;
            let boot = std::fs::read_to_string("/proc/stat")
                .ok()
                .and_then(|s| s.lines().find_map(|l| l.strip_prefix("btime ").and_then(|v| v.trim().parse::<u64>().ok())))
                .unwrap_or(0);
            p.start_time_seconds = boot as f64 + field(22) as f64 / tick;
        }
        p.resident_bytes = field(24) * page;
    }
    p.open_fds = std::fs::read_dir("/proc/self/fd").map(|d| d.count() as u64).unwrap_or(0);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_land_in_their_buckets_and_bad_reports_are_dropped() {
        let l = OpLatencies::new(&["read", "lookup"]);
        l.histograms[0].observe(Duration::from_micros(50));
        l.histograms[0].observe(Duration::from_millis(3));
        l.histograms[0].observe(Duration::from_secs(60));
        let snap = l.snapshot();
        assert_eq!(snap.len(), 1, "lookup never happened");
        assert_eq!(snap[0].buckets[0], 1);
        assert_eq!(snap[0].buckets[5], 1, "3 ms is under 5 ms");
        assert_eq!(snap[0].buckets[BOUNDS.len()], 1, "60 s is above every bound");
        assert!((snap[0].sum_seconds - 60.00305).abs() < 1e-6);
        let mut bad = snap[0].clone();
        bad.buckets.pop();
        let mut named = snap[0].clone();
        named.op = "Read; DROP".into();
        assert_eq!(validated(vec![snap[0].clone(), bad, named]).len(), 1);
        let p = process_figures();
        assert!(p.resident_bytes > 0 && p.open_fds > 0 && p.start_time_seconds > 1e9, "{p:?}");
    }
}
