//! The figures a running Dataset exports, in Prometheus text format (OpenMetrics, through
//! prometheus-client). Names follow Prometheus conventions: `cistern_` prefix, base units
//! (bytes), `_total` on counters.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// One snapshot of a Dataset's figures.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Figures {
    pub namespace: String,
    pub dataset: String,
    /// `None` while the background count runs.
    pub ufs_total_bytes: Option<u64>,
    pub ufs_files: Option<u64>,
    pub cached_bytes: u64,
    pub capacity_bytes: u64,
    /// Bytes served to readers, by where they came from.
    pub local_bytes: u64,
    pub remote_bytes: u64,
    pub ufs_bytes: u64,
    /// Requests to the UFS and the bytes they brought (including readahead).
    pub ufs_fetches: u64,
    pub ufs_fetched_bytes: u64,
    pub corrupt_blocks: u64,
    /// Bytes of `local_bytes` that clients on the worker's node read from the cache files.
    pub short_circuit_bytes: u64,
    /// Cache reads and writes that failed and went to the UFS instead.
    pub cache_errors: u64,
    /// Bytes workers took from each other instead of the UFS.
    pub peer_fetched_bytes: u64,
    pub levels: Vec<LevelFigures>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LevelFigures {
    pub worker: usize,
    pub medium: String,
    pub used_bytes: u64,
    pub quota_bytes: u64,
    pub evicted_bytes: u64,
    pub demoted_bytes: u64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DatasetLabels {
    namespace: String,
    dataset: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    namespace: String,
    dataset: String,
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LevelLabels {
    namespace: String,
    dataset: String,
    worker: String,
    medium: String,
}

/// Registers one metric family and returns it for filling.
fn family<L, M>(reg: &mut Registry, name: &str, help: &str) -> Family<L, M>
where
    L: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync + 'static,
    M: prometheus_client::metrics::TypedMetric + prometheus_client::encoding::EncodeMetric + Default + std::fmt::Debug + Send + Sync + 'static,
{
    let f = Family::<L, M>::default();
    reg.register(name, help, f.clone());
    f
}

impl Figures {
    /// The Prometheus text exposition of these figures.
    pub fn encode(&self) -> String {
        let mut reg = Registry::default();
        let ds = DatasetLabels { namespace: self.namespace.clone(), dataset: self.dataset.clone() };
        let gauge = |reg: &mut Registry, name: &str, help: &str, v: u64| {
            family::<DatasetLabels, Gauge>(reg, name, help).get_or_create(&ds).set(v as i64);
        };
        let counter = |reg: &mut Registry, name: &str, help: &str, v: u64| {
            family::<DatasetLabels, Counter>(reg, name, help).get_or_create(&ds).inc_by(v);
        };
        gauge(&mut reg, "cistern_cache_capacity_bytes", "Sum of the cache quotas of all workers and levels", self.capacity_bytes);
        gauge(&mut reg, "cistern_cache_used_bytes", "Bytes cached", self.cached_bytes);
        if let (Some(total), Some(files)) = (self.ufs_total_bytes, self.ufs_files) {
            gauge(&mut reg, "cistern_ufs_total_bytes", "Size of the dataset in its under storage", total);
            gauge(&mut reg, "cistern_ufs_files", "Files in the dataset", files);
        }
        let served = family::<SourceLabels, Counter>(&mut reg, "cistern_read_bytes", "Bytes served to readers, by source");
        for (source, v) in [("local", self.local_bytes), ("remote", self.remote_bytes), ("ufs", self.ufs_bytes)] {
            let l = SourceLabels { namespace: ds.namespace.clone(), dataset: ds.dataset.clone(), source: source.into() };
            served.get_or_create(&l).inc_by(v);
        }
        counter(&mut reg, "cistern_ufs_fetches", "Requests sent to the under storage", self.ufs_fetches);
        counter(&mut reg, "cistern_ufs_fetched_bytes", "Bytes fetched from the under storage, readahead included", self.ufs_fetched_bytes);
        counter(&mut reg, "cistern_short_circuit_bytes", "Bytes of the local ones that clients read from the cache files themselves", self.short_circuit_bytes);
        counter(&mut reg, "cistern_peer_fetched_bytes", "Bytes workers took from other workers' caches instead of the under storage", self.peer_fetched_bytes);
        counter(&mut reg, "cistern_cache_errors", "Cache reads and writes that failed and were served from the UFS instead", self.cache_errors);
        counter(&mut reg, "cistern_corrupt_blocks", "Cached blocks that failed their checksum and were refetched", self.corrupt_blocks);
        let used = family::<LevelLabels, Gauge>(&mut reg, "cistern_level_used_bytes", "Bytes cached on a tier level");
        let quota = family::<LevelLabels, Gauge>(&mut reg, "cistern_level_quota_bytes", "Quota of a tier level");
        let evicted = family::<LevelLabels, Counter>(&mut reg, "cistern_level_evicted_bytes", "Bytes evicted from a tier level");
        let demoted = family::<LevelLabels, Counter>(&mut reg, "cistern_level_demoted_bytes", "Bytes moved down to the next level");
        for l in &self.levels {
            let labels = LevelLabels {
                namespace: ds.namespace.clone(),
                dataset: ds.dataset.clone(),
                worker: l.worker.to_string(),
                medium: l.medium.clone(),
            };
            used.get_or_create(&labels).set(l.used_bytes as i64);
            quota.get_or_create(&labels).set(l.quota_bytes as i64);
            evicted.get_or_create(&labels).inc_by(l.evicted_bytes);
            demoted.get_or_create(&labels).inc_by(l.demoted_bytes);
        }
        let mut out = String::new();
        encode(&mut out, &reg).expect("writing to a String does not fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_counters_gauges_and_levels() {
        let f = Figures {
            namespace: "default".into(),
            dataset: "demo".into(),
            ufs_total_bytes: Some(1000),
            ufs_files: Some(3),
            cached_bytes: 700,
            capacity_bytes: 4096,
            local_bytes: 11,
            ufs_bytes: 22,
            levels: vec![LevelFigures { worker: 0, medium: "MEM".into(), used_bytes: 700, quota_bytes: 4096, ..Default::default() }],
            ..Default::default()
        };
        let text = f.encode();
        assert!(text.contains(r#"cistern_cache_used_bytes{namespace="default",dataset="demo"} 700"#), "{text}");
        assert!(text.contains(r#"cistern_read_bytes_total{namespace="default",dataset="demo",source="ufs"} 22"#), "{text}");
        assert!(text.contains(r#"cistern_level_used_bytes{namespace="default",dataset="demo",worker="0",medium="MEM"} 700"#), "{text}");
        assert!(text.contains("cistern_ufs_total_bytes"), "{text}");
        assert!(text.ends_with("# EOF\n"));
        let calculating = Figures { ufs_total_bytes: None, ..f }.encode();
        assert!(!calculating.contains("cistern_ufs_total_bytes"), "no made-up total while counting");
    }
}
