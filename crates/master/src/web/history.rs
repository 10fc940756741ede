//! The figures over time, kept in memory so the page can plot what happened without a
//! Prometheus: one sample every [`SAMPLE_EVERY`], the last [`KEPT`] of them (one hour).

use crate::metrics::Figures;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);
pub const KEPT: usize = 720;

/// Counters (bytes and requests since the workers started) and gauges at one instant; the
/// page plots the counters as rates between samples.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Sample {
    /// Milliseconds since the Unix epoch.
    pub t: u64,
    pub local_bytes: u64,
    pub remote_bytes: u64,
    pub ufs_bytes: u64,
    pub ufs_fetches: u64,
    pub cache_errors: u64,
    pub cached_bytes: u64,
    /// Bytes used on each medium (MEM, SSD, HDD), summed over workers.
    pub used_by_medium: BTreeMap<String, u64>,
}

impl Sample {
    pub fn of(f: &Figures) -> Sample {
        let mut used_by_medium = BTreeMap::new();
        for l in &f.levels {
            *used_by_medium.entry(l.medium.clone()).or_insert(0) += l.used_bytes;
        }
        let t = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
        Sample {
            t,
            local_bytes: f.local_bytes,
            remote_bytes: f.remote_bytes,
            ufs_bytes: f.ufs_bytes,
            ufs_fetches: f.ufs_fetches,
            cache_errors: f.cache_errors,
            cached_bytes: f.cached_bytes,
            used_by_medium,
        }
    }
}

#[derive(Default)]
pub struct History(Mutex<VecDeque<Sample>>);

impl History {
    pub fn push(&self, s: Sample) {
        let mut samples = self.0.lock().expect("history lock");
        if samples.len() == KEPT {
            samples.pop_front();
        }
        samples.push_back(s);
    }

    /// The kept samples, oldest first, and `now` after them (not kept): the page's last point
    /// is always current.
    pub fn with(&self, now: Sample) -> Vec<Sample> {
        let samples = self.0.lock().expect("history lock");
        samples.iter().cloned().chain(std::iter::once(now)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_hour_is_kept_and_the_oldest_goes_first() {
        let h = History::default();
        for i in 0..KEPT as u64 + 10 {
            h.push(Sample { t: i, ..Default::default() });
        }
        let all = h.with(Sample { t: 9999, ..Default::default() });
        assert_eq!(all.len(), KEPT + 1);
        assert_eq!(all[0].t, 10);
        assert_eq!(all.last().unwrap().t, 9999);
    }
}
