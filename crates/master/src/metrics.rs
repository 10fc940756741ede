//! The figures a running Dataset exports, in Prometheus text format (OpenMetrics, through
//! prometheus-client). Names follow Prometheus conventions: `cistern_` prefix, base units
//! (bytes), `_total` on counters.

mod components;

pub use components::{LatencyFigures, ProcessFigures};
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
    /// Durations the workers and FUSE clients reported.
    pub latencies: Vec<LatencyFigures>,
    /// The reporting processes' CPU, memory and descriptors.
    pub processes: Vec<ProcessFigures>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LevelFigures {
    pub worker: usize,
    pub medium: String,
    pub used_bytes: u64,
    pub quota_bytes: u64,
    pub evicted_bytes: u64,
    pub demoted_bytes: u64,
    /// What the level holds on disk: data, checksum records, evicted files still open.
    pub on_disk_bytes: u64,
}

// `dataset_namespace`, not `namespace`: Prometheus on Kubernetes adds `namespace` and `pod`
// of the scraped pod itself, which would rename ours to `exported_namespace`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DatasetLabels {
    dataset_namespace: String,
    dataset: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    dataset_namespace: String,
    dataset: String,
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LevelLabels {
    dataset_namespace: String,
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
        let ds = DatasetLabels { dataset_namespace: self.namespace.clone(), dataset: self.dataset.clone() };
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
            let l = SourceLabels { dataset_namespace: ds.dataset_namespace.clone(), dataset: ds.dataset.clone(), source: source.into() };
            served.get_or_create(&l).inc_by(v);
        }
        counter(&mut reg, "cistern_ufs_fetches", "Requests sent to the under storage", self.ufs_fetches);
        counter(&mut reg, "cistern_ufs_fetched_bytes", "Bytes fetched from the under storage, readahead included", self.ufs_fetched_bytes);
        counter(&mut reg, "cistern_short_circuit_bytes", "Bytes of the local ones that clients read from the cache files themselves", self.short_circuit_bytes);
        counter(&mut reg, "cistern_peer_fetched_bytes", "Bytes workers took from other workers' caches instead of the under storage", self.peer_fetched_bytes);
        counter(&mut reg, "cistern_cache_errors", "Cache reads and writes that failed and were served from the UFS instead", self.cache_errors);
        counter(&mut reg, "cistern_corrupt_blocks", "Cached blocks that failed their checksum and were refetched", self.corrupt_blocks);
        let hits = self.local_bytes + self.remote_bytes;
        if hits + self.ufs_bytes > 0 {
            let ratio = family::<DatasetLabels, Gauge<f64, std::sync::atomic::AtomicU64>>(&mut reg, "cistern_cache_hit_ratio", "Share of the bytes served to readers that came from the cache (0 to 1)");
            ratio.get_or_create(&ds).set(hits as f64 / (hits + self.ufs_bytes) as f64);
        }
        let used = family::<LevelLabels, Gauge>(&mut reg, "cistern_level_used_bytes", "Bytes cached on a tier level");
        let quota = family::<LevelLabels, Gauge>(&mut reg, "cistern_level_quota_bytes", "Quota of a tier level");
        let evicted = family::<LevelLabels, Counter>(&mut reg, "cistern_level_evicted_bytes", "Bytes evicted from a tier level");
        let demoted = family::<LevelLabels, Counter>(&mut reg, "cistern_level_demoted_bytes", "Bytes moved down to the next level");
        let on_disk = family::<LevelLabels, Gauge>(&mut reg, "cistern_level_on_disk_bytes", "Bytes a tier level holds on disk: data, checksum records, and evicted files other processes still hold open (never above the quota)");
        for l in &self.levels {
            let labels = LevelLabels {
                dataset_namespace: ds.dataset_namespace.clone(),
                dataset: ds.dataset.clone(),
                worker: l.worker.to_string(),
                medium: l.medium.clone(),
            };
            used.get_or_create(&labels).set(l.used_bytes as i64);
            quota.get_or_create(&labels).set(l.quota_bytes as i64);
            evicted.get_or_create(&labels).inc_by(l.evicted_bytes);
            demoted.get_or_create(&labels).inc_by(l.demoted_bytes);
            on_disk.get_or_create(&labels).set(l.on_disk_bytes as i64);
        }
        components::encode(self, &mut reg);
        process_metrics(&mut reg);
        let mut out = String::new();
        encode(&mut out, &reg).expect("writing to a String does not fail");
        out
    }
}

/// This process's CPU time, resident memory, open descriptors and start time, under the names
/// Prometheus's own client libraries use (`process_*`); read from `/proc/self` as every
/// component reads its own ([`cistern_rpc::latency::process_figures`]).
fn process_metrics(reg: &mut Registry) {
    use prometheus_client::metrics::counter::ConstCounter;
    use prometheus_client::metrics::gauge::ConstGauge;
    let p = cistern_rpc::latency::process_figures();
    reg.register("process_cpu_seconds", "CPU time the process used, user and system", ConstCounter::new(p.cpu_seconds));
    reg.register("process_start_time_seconds", "When the process started, in seconds since the Unix epoch", ConstGauge::new(p.start_time_seconds));
    reg.register("process_resident_memory_bytes", "Resident memory of the process", ConstGauge::new(p.resident_bytes as i64));
    reg.register("process_open_fds", "Open file descriptors of the process", ConstGauge::new(p.open_fds as i64));
}

/// The same exposition in Prometheus's classic text format (0.0.4), for scrapers and tools
/// that do not ask for OpenMetrics (`promtool check metrics`, older Prometheus): a counter's
/// HELP and TYPE name its `_total` sample, and there is no `# EOF`.
pub fn to_classic(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> =
        openmetrics.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.strip_suffix(" counter")).collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters.contains(name).then(|| format!("{p}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
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
        assert!(text.contains(r#"cistern_cache_used_bytes{dataset_namespace="default",dataset="demo"} 700"#), "{text}");
        assert!(text.contains(r#"cistern_read_bytes_total{dataset_namespace="default",dataset="demo",source="ufs"} 22"#), "{text}");
        assert!(text.contains(r#"cistern_level_used_bytes{dataset_namespace="default",dataset="demo",worker="0",medium="MEM"} 700"#), "{text}");
        assert!(text.contains("cistern_ufs_total_bytes"), "{text}");
        assert!(text.ends_with("# EOF\n"));
        assert!(text.contains(r#"cistern_cache_hit_ratio{dataset_namespace="default",dataset="demo"} 0.333"#), "{text}");
        assert!(text.contains("process_resident_memory_bytes ") && text.contains("process_cpu_seconds_total "), "{text}");
        let calculating = Figures { ufs_total_bytes: None, ..f }.encode();
        assert!(!calculating.contains("cistern_ufs_total_bytes"), "no made-up total while counting");
    }

    /// What `promtool check metrics` (Debian's `prometheus` package; CI installs it) says of
    /// the classic exposition: nothing. Without promtool the test says so and checks only the
    /// renaming.
    #[test]
    fn the_classic_exposition_passes_promtool() {
        let f = Figures {
            namespace: "default".into(),
            dataset: "demo".into(),
            ufs_total_bytes: Some(1000),
            ufs_files: Some(3),
            local_bytes: 5,
            remote_bytes: 6,
            ufs_bytes: 7,
            levels: vec![LevelFigures { worker: 1, medium: "SSD".into(), used_bytes: 1, quota_bytes: 2, ..Default::default() }],
            latencies: vec![
                LatencyFigures { component: "worker".into(), instance: "1".into(), op: "read".into(), buckets: vec![1; 17], sum_seconds: 4.5 },
                LatencyFigures { component: "fuse".into(), instance: "node-a/42".into(), op: "lookup".into(), buckets: vec![2; 17], sum_seconds: 0.5 },
            ],
            processes: vec![ProcessFigures { component: "worker".into(), instance: "1".into(), cpu_seconds: 1.5, resident_bytes: 4096, open_fds: 9 }],
            ..Default::default()
        };
        let classic = to_classic(&f.encode());
        assert!(classic.contains("# TYPE cistern_read_bytes_total counter") && !classic.contains("# EOF"), "{classic}");
        assert!(classic.contains(r#"cistern_ufs_request_duration_seconds_bucket{le="+Inf",dataset_namespace="default",dataset="demo",instance="1",op="read"} 17"#), "{classic}");
        assert!(classic.contains(r#"cistern_fuse_operation_duration_seconds_count{dataset_namespace="default",dataset="demo",instance="node-a/42",op="lookup"} 34"#), "{classic}");
        assert!(classic.contains("cistern_component_cpu_seconds_total{"), "{classic}");
        let promtool = std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn();
        let Ok(mut child) = promtool else {
            assert!(std::env::var_os("CI").is_none(), "promtool is not installed (CI installs Debian's prometheus package)");
            eprintln!("promtool not found: skipped the promtool check");
            return;
        };
        use std::io::Write;
        child.stdin.take().unwrap().write_all(classic.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics:\n{said}\n{classic}");
    }
}
